//! Sim LPARs on `/dev/shm` and the engine's page pump between two of them
//! over loopback migration streams: the set-up the stream benches share
//! (`stream_throughput`, `encrypted_throughput`).
//!
//! Every LPAR lives under [`root`] (one directory per bench process), is
//! idle (its program never writes) and is removed with [`remove_all`].

use lpar_mover::engine::digest::ImageDigest;
use lpar_mover::engine::integrity_of;
use lpar_mover::engine::pump::{Event, InStream, OutStream, PageReceiver, PageSender};
use lpar_mover::partition::sim::SimLpar;
use lpar_mover::partition::sim::program::fill_page;
use lpar_mover::partition::{GuestMemory, LparConfig, PAGE_SIZE};
use lpar_mover::transport::{
    MigrationPath, PacedWriter, Pacer, PathListener, StreamOptions, connect_streams_with,
};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// This bench process's directory of LPARs.
pub fn root() -> PathBuf {
    PathBuf::from(format!("/dev/shm/lpar-mover-bench-{}", std::process::id()))
}

/// Removes every LPAR of this process.
pub fn remove_all() {
    let _ = std::fs::remove_dir_all(root());
}

/// Removes every LPAR of this process when dropped, also when a missed
/// target panics (gigabytes of `/dev/shm` must not outlive the bench).
pub struct Scratch;

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_all();
    }
}

/// An idle LPAR of `memory` bytes named `name` (a fresh one: any earlier
/// LPAR of that name is removed first), its memory sparse.
pub fn lpar(name: &str, memory: u64) -> Arc<SimLpar> {
    let _ = std::fs::remove_dir_all(root().join(name));
    let config = LparConfig {
        name: name.into(),
        number: 1,
        vcpus: 1,
        memory_bytes: memory,
        program: "idle".into(),
        ..LparConfig::default_lpar()
    };
    Arc::new(SimLpar::create(&root(), &config).unwrap())
}

/// Writes every page of `lpar` with `fill_page(content, …)`: content 2 is
/// incompressible, 1 compressible text, a distinct seed per page.
pub fn fill(lpar: &SimLpar, content: u64) {
    let mut page = [0u8; PAGE_SIZE];
    for p in 0..lpar.size_bytes() / PAGE_SIZE as u64 {
        fill_page(content, p.wrapping_mul(0x9E37_79B9) | 1, &mut page);
        lpar.write_page(p, &page).unwrap();
    }
}

/// Panics unless the destination holds exactly the source's memory.
pub fn verify(source: &SimLpar, destination: &SimLpar, what: &str) {
    assert!(
        source.digest().unwrap() == destination.digest().unwrap(),
        "{what}: the destination's memory differs from the source's"
    );
}

/// One round of every populated page of `source` into `destination` over
/// `streams` loopback streams set up with `opts` (TLS or plaintext), each
/// behind a [`PacedWriter`] sharing `pacer`. Returns the time from queueing
/// the round to the destination's report that all of it was applied
/// (stream set-up excluded).
pub fn pump(
    source: &Arc<SimLpar>,
    destination: &Arc<SimLpar>,
    streams: usize,
    pacer: Option<Arc<Pacer>>,
    opts: &StreamOptions,
) -> Duration {
    let path = MigrationPath::new("mig", Ipv4Addr::new(127, 0, 0, 1));
    let listener = PathListener::bind_with(&path, 0, opts.clone(), Default::default()).unwrap();
    let key = listener.issue_key().unwrap();
    let remote = listener.local_addr();
    let (out, inn) = std::thread::scope(|s| {
        let accept = s.spawn(|| {
            listener
                .accept_streams(streams, &key, 1, Instant::now() + Duration::from_secs(10))
                .unwrap()
        });
        let source_path = MigrationPath::new("mig", Ipv4Addr::new(127, 0, 0, 2));
        let out = connect_streams_with(
            &source_path,
            remote,
            streams,
            &key,
            1,
            Duration::from_secs(10),
            opts,
        )
        .unwrap();
        (out, accept.join().unwrap())
    });
    assert_eq!(
        out[0].cipher_suite().is_some(),
        opts.encryption == lpar_mover::transport::Encryption::Tls,
        "the streams are not protected as asked"
    );
    let integrity = integrity_of(&out);
    let out = out
        .into_iter()
        .map(|s| Box::new(PacedWriter::new(s, pacer.clone())) as OutStream)
        .collect();
    let inn = inn.into_iter().map(|s| Box::new(s) as InStream).collect();
    let (receiver, events) = PageReceiver::start(
        destination.clone(),
        inn,
        integrity,
        Arc::new(ImageDigest::blank_for(&**destination)),
    );
    let sender = PageSender::start(
        source.clone(),
        out,
        integrity,
        Arc::new(ImageDigest::blank_for(&**source)),
    );
    let pages = source.populated().unwrap();
    let t = Instant::now();
    sender.send_round(0, &pages).unwrap();
    match events.recv().unwrap() {
        Event::RoundComplete { pages: n, .. } => assert_eq!(n, pages.len()),
        other => panic!("{other:?}"),
    }
    let elapsed = t.elapsed();
    drop(sender.finish());
    receiver.finish();
    elapsed
}

/// CPU time this process has used so far (all threads, user and system):
/// what a pump costs whatever the load of the machine.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
