//! Helpers the integration tests share: a throw-away LPAR root, waiting
//! for a condition, and authenticated migration streams on loopback.

#![allow(dead_code)] // each test file uses a different subset

use lpar_mover::engine::EngineError;
use lpar_mover::engine::destination::{DestinationReport, receive_live};
use lpar_mover::engine::report::MigrationReport;
use lpar_mover::engine::source::{LiveOptions, MigrationControl, migrate_live};
use lpar_mover::engine::switchover::DestinationHost;
use lpar_mover::partition::sim::SimLpar;
use lpar_mover::partition::{LparConfig, Partition};
use lpar_mover::transport::{MigrationPath, MigrationStream, PathListener, connect_streams};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A fresh LPAR root under /dev/shm, removed when dropped.
pub struct Root(pub PathBuf);

impl Root {
    pub fn new(tag: &str) -> Root {
        let dir = PathBuf::from(format!(
            "/dev/shm/lpar-mover-test-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Root(dir)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs of `size` (as `mount -o size=` takes it) mounted at `dir`,
/// unmounted when dropped.
pub struct SmallTmpfs(pub PathBuf);

impl SmallTmpfs {
    /// Mounts it, or says why not (it needs root).
    pub fn mount(dir: &std::path::Path, size: &str) -> Result<SmallTmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("no mount command: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a small tmpfs (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallTmpfs(dir.to_path_buf()))
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A stopped sim LPAR `name` under `root`: 2 vCPUs running `program`.
pub fn sim_lpar(root: &Root, name: &str, memory_bytes: u64, program: &str) -> Arc<SimLpar> {
    let config = LparConfig {
        name: name.into(),
        number: 1,
        vcpus: 2,
        memory_bytes,
        program: program.into(),
        ..LparConfig::default_lpar()
    };
    Arc::new(SimLpar::create(&root.0, &config).unwrap())
}

/// `destination` receiving a live migration on `inn`, in a thread of its
/// own, as a destination host made for its configuration.
pub fn receive_in_background(
    destination: &Arc<SimLpar>,
    inn: Vec<MigrationStream>,
) -> JoinHandle<Result<DestinationReport, EngineError>> {
    let destination = destination.clone();
    std::thread::spawn(move || {
        let host = DestinationHost::open_for(destination.config());
        receive_live(destination, inn, &host)
    })
}

/// Migrates `source` live to `destination` over `streams` loopback streams
/// with the default options and a deadline of `timeout`: what each side
/// made of it.
pub fn try_migrate_between(
    source: &Arc<SimLpar>,
    destination: &Arc<SimLpar>,
    streams: usize,
    timeout: Duration,
) -> (
    Result<MigrationReport, EngineError>,
    Result<DestinationReport, EngineError>,
) {
    try_migrate_over(source, destination, stream_pairs(streams), timeout)
}

/// [`try_migrate_between`] over the given stream pairs (the source's ends,
/// the destination's ends).
pub fn try_migrate_over(
    source: &Arc<SimLpar>,
    destination: &Arc<SimLpar>,
    (out, inn): (Vec<MigrationStream>, Vec<MigrationStream>),
    timeout: Duration,
) -> (
    Result<MigrationReport, EngineError>,
    Result<DestinationReport, EngineError>,
) {
    let receiving = receive_in_background(destination, inn);
    let control = Arc::new(MigrationControl::new(timeout));
    let sent = migrate_live(
        source.clone(),
        out,
        &LiveOptions::default(),
        &control,
        &mut |_| {},
    );
    let received = receiving.join().expect("the receiving thread survives");
    (sent, received)
}

/// [`try_migrate_between`], where a failure on either side panics with
/// its reason.
pub fn migrate_between(
    source: &Arc<SimLpar>,
    destination: &Arc<SimLpar>,
    streams: usize,
    timeout: Duration,
) -> MigrationReport {
    let (sent, received) = try_migrate_between(source, destination, streams, timeout);
    let report = sent.unwrap_or_else(|e| panic!("{}", e.emg(lpar_mover::emg::Module::MoverSource)));
    received.unwrap();
    report
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `n` authenticated, encrypted streams from path 127.0.0.2 to path
/// 127.0.0.1: (the source's ends, the destination's ends).
pub fn stream_pairs(n: usize) -> (Vec<MigrationStream>, Vec<MigrationStream>) {
    let destination = MigrationPath::new("mig", Ipv4Addr::new(127, 0, 0, 1));
    let source = MigrationPath::new("mig", Ipv4Addr::new(127, 0, 0, 2));
    let listener = PathListener::bind(&destination, 0).unwrap();
    let key = listener.issue_key().unwrap();
    let remote = listener.local_addr();
    std::thread::scope(|s| {
        let accept = s.spawn(|| {
            listener
                .accept_streams(n, &key, 7, Instant::now() + Duration::from_secs(10))
                .unwrap()
        });
        let sent = connect_streams(&source, remote, n, &key, 7, Duration::from_secs(10)).unwrap();
        (sent, accept.join().unwrap())
    })
}

/// What a relayed stream does to the source → destination bytes.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    None,
    /// Flip one bit of the byte at this offset.
    Corrupt(usize),
    /// Close both directions after this many bytes.
    Drop(usize),
}

/// `n` plain TCP stream pairs on loopback, stream 1 (or 0 if n == 1)
/// passing through a relay that applies `fault`: for engine tests, which
/// take streams that are already connected (authentication is the
/// transport's and is tested there). The payload is in clear, so a fault
/// lands on a frame rather than on a TLS record.
pub fn relayed_pairs(n: usize, fault: Fault) -> (Vec<MigrationStream>, Vec<MigrationStream>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    let faulty = 1.min(n - 1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut sources = Vec::new();
    let mut destinations = Vec::new();
    for i in 0..n {
        let src = TcpStream::connect(addr).unwrap();
        let (dst, _) = listener.accept().unwrap();
        if i != faulty {
            sources.push(src);
            destinations.push(dst);
            continue;
        }
        // Put a relay between them: src ↔ (a, b) ↔ dst.
        let (a, _) = {
            let relay = TcpListener::bind("127.0.0.1:0").unwrap();
            let source_end = TcpStream::connect(relay.local_addr().unwrap()).unwrap();
            let accepted = relay.accept().unwrap();
            sources.push(source_end);
            accepted
        };
        drop(src);
        let b = dst;
        let relay = TcpListener::bind("127.0.0.1:0").unwrap();
        let destination_end = TcpStream::connect(relay.local_addr().unwrap()).unwrap();
        let (c, _) = relay.accept().unwrap();
        drop(b);
        destinations.push(destination_end);
        let pipe = move |mut from: TcpStream, mut to: TcpStream, fault: Fault| {
            let mut buf = vec![0u8; 65536];
            let mut seen = 0usize;
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                match fault {
                    Fault::Corrupt(at) if seen <= at && at < seen + n => buf[at - seen] ^= 0x40,
                    Fault::Drop(at) if seen + n > at => {
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                        return;
                    }
                    _ => {}
                }
                seen += n;
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        };
        let (a2, c2) = (a.try_clone().unwrap(), c.try_clone().unwrap());
        std::thread::spawn(move || pipe(a, c, fault));
        std::thread::spawn(move || pipe(c2, a2, Fault::None));
    }
    let plain = |v: Vec<TcpStream>| v.into_iter().map(MigrationStream::plaintext).collect();
    (plain(sources), plain(destinations))
}
