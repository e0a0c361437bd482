//! Helpers the integration tests share: a throw-away LPAR root, waiting
//! for a condition, and authenticated migration streams on loopback.

#![allow(dead_code)] // each test file uses a different subset

use lpar_mover::transport::{MigrationPath, PathListener, connect_streams};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
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

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `n` authenticated streams from path 127.0.0.2 to path 127.0.0.1:
/// (the source's ends, the destination's ends).
pub fn stream_pairs(n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
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
