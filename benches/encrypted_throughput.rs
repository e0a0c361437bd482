//! What TLS 1.3 on the migration path costs (issue 16): the engine's page
//! pump moving incompressible guest memory over 4 streams on loopback,
//! encrypted (the default) against `--insecure-plaintext`, interleaved in
//! one run so noise from other processes falls on both alike.
//!
//! Two scenarios, each verified by digest on every run:
//!
//! * **fresh**: into a newly created, sparse destination LPAR (every page
//!   written faults in; what a migration does);
//! * **populated**: into a destination whose memory is already populated
//!   (zeroed), so only the copy and the socket remain: the worst case for
//!   the cipher's share.
//!
//! Targets (issue 16), encrypted against plaintext: fresh at least 0.9×,
//! populated at least 0.8×. On loopback both ends encrypt and decrypt on the
//! same cores, so this is harsher than two hosts, each with its own.
//!
//! One run on the 2-core development host while four other builds ran
//! (load average 15-18, so both figures are far below the machine's):
//!
//! ```text
//! destination      TLS GB/s   plain GB/s    ratio
//! fresh               0.216        0.179    1.21×   (page faults bound both)
//! populated           0.228        0.458    0.50×   (target 0.8×: missed)
//! ```
//!
//! ```text
//! cargo bench --bench encrypted_throughput                      # 2 GiB, 3 runs
//! ENCRYPTED_BENCH_MIB=512 cargo bench --bench encrypted_throughput
//! LPAR_MOVER_BENCH_QUICK=1 cargo bench --bench encrypted_throughput   # 32 MiB, 1 run
//! ```

#[path = "support/mod.rs"]
mod support;

use lpar_mover::engine::digest::ImageDigest;
use lpar_mover::engine::pump::{Event, InStream, OutStream, PageReceiver, PageSender};
use lpar_mover::partition::sim::SimLpar;
use lpar_mover::partition::sim::program::fill_page;
use lpar_mover::partition::{GuestMemory, LparConfig, PAGE_SIZE};
use lpar_mover::transport::{
    Encryption, MigrationPath, PacedWriter, PathListener, StreamOptions, connect_streams_with,
};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STREAMS: usize = 4;

fn root() -> PathBuf {
    PathBuf::from(format!(
        "/dev/shm/lpar-mover-tls-bench-{}",
        std::process::id()
    ))
}

fn lpar(name: &str, memory: u64) -> Arc<SimLpar> {
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

fn fresh(name: &str, memory: u64) -> Arc<SimLpar> {
    let _ = std::fs::remove_dir_all(root().join(name));
    lpar(name, memory)
}

/// Populates every page of `l` (with zeros).
fn populate(l: &SimLpar) {
    let zero = [0u8; PAGE_SIZE];
    for p in 0..l.size_bytes() / PAGE_SIZE as u64 {
        l.write_page(p, &zero).unwrap();
    }
}

fn pump(source: &Arc<SimLpar>, destination: &Arc<SimLpar>, encryption: Encryption) -> Duration {
    let opts = StreamOptions {
        encryption,
        ..StreamOptions::default()
    };
    let path = MigrationPath::new("mig", Ipv4Addr::new(127, 0, 0, 1));
    let listener = PathListener::bind_with(&path, 0, opts.clone(), Default::default()).unwrap();
    let key = listener.issue_key().unwrap();
    let remote = listener.local_addr();
    let (out, inn) = std::thread::scope(|s| {
        let accept = s.spawn(|| {
            listener
                .accept_streams(STREAMS, &key, 1, Instant::now() + Duration::from_secs(10))
                .unwrap()
        });
        let source_path = MigrationPath::new("mig", Ipv4Addr::new(127, 0, 0, 2));
        let out = connect_streams_with(
            &source_path,
            remote,
            STREAMS,
            &key,
            1,
            Duration::from_secs(10),
            &opts,
        )
        .unwrap();
        (out, accept.join().unwrap())
    });
    assert_eq!(
        out[0].cipher_suite().is_some(),
        encryption == Encryption::Tls
    );
    let out = out
        .into_iter()
        .map(|s| Box::new(PacedWriter::new(s, None)) as OutStream)
        .collect();
    let inn = inn.into_iter().map(|s| Box::new(s) as InStream).collect();
    let (receiver, events) = PageReceiver::start(
        destination.clone(),
        inn,
        Arc::new(ImageDigest::blank_for(&**destination)),
    );
    let sender = PageSender::start(
        source.clone(),
        out,
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
    assert!(
        source.digest().unwrap() == destination.digest().unwrap(),
        "the destination's memory differs from the source's"
    );
    elapsed
}

fn main() {
    let memory = support::size(
        std::env::var("ENCRYPTED_BENCH_MIB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(2048)
            << 20,
        32 << 20,
    );
    let runs = support::size(3, 1);
    let _ = std::fs::remove_dir_all(root());
    let source = lpar("source", memory);
    let mut page = [0u8; PAGE_SIZE];
    for p in 0..memory / PAGE_SIZE as u64 {
        fill_page(2, p.wrapping_mul(0x9E37_79B9) | 1, &mut page);
        source.write_page(p, &page).unwrap();
    }
    let gbps = |d: Duration| memory as f64 / d.as_secs_f64() / 1e9;
    println!(
        "{} MiB incompressible, {STREAMS} streams, loopback; medians of {runs} interleaved runs",
        memory >> 20
    );
    println!(
        "{:<12} {:>12} {:>12} {:>8}",
        "destination", "TLS GB/s", "plain GB/s", "ratio"
    );
    for (label, want) in [("fresh", 0.9), ("populated", 0.8)] {
        let (mut tls, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            for (encryption, into) in [
                (Encryption::Tls, &mut tls),
                (Encryption::InsecurePlaintext, &mut plain),
            ] {
                let destination = fresh("destination", memory);
                if label == "populated" {
                    populate(&destination);
                }
                into.push(pump(&source, &destination, encryption));
                drop(destination);
            }
        }
        let (t, p) = (support::median(&tls), support::median(&plain));
        let ratio = p.as_secs_f64() / t.as_secs_f64();
        println!(
            "{label:<12} {:>12.3} {:>12.3} {:>7.2}×",
            gbps(t),
            gbps(p),
            ratio
        );
        support::target(
            ratio >= want,
            &format!("{label}: TLS at {ratio:.2}× plaintext (at least {want:.1}×)"),
        );
    }
    let _ = std::fs::remove_dir_all(root());
}
