//! Test hosts in network namespaces: the paths connect, shaping holds,
//! a cut path is cut until restored, and nothing is left behind.

use lpar_mover::testbed::{self, Testbed};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

macro_rules! require_test_hosts {
    ($test:literal) => {
        if let Some(reason) = testbed::skip_reason() {
            lpar_mover::skip::skip(concat!("testbed::", $test), &reason);
            return;
        }
    };
}

/// Sends `bytes` from host 0 to a sink on host 1 over the migration path;
/// returns how long it took.
fn transfer(bed: &Testbed, bytes: usize, port: u16) -> Duration {
    let to = SocketAddr::from((bed.hosts()[1].path_ip, port));
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let sink = bed.spawn_in(1, move || {
        let listener = TcpListener::bind(to).unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let mut total = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return total,
                n => total += n,
            }
        }
    });
    ready.recv().unwrap();
    let took = bed
        .spawn_in(0, move || {
            let t = Instant::now();
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
            s.write_all(&vec![7u8; bytes]).unwrap();
            drop(s);
            t.elapsed()
        })
        .join()
        .unwrap();
    assert_eq!(sink.join().unwrap(), bytes);
    took
}

fn connects(bed: &Testbed, from: usize, to: SocketAddr) -> bool {
    // Long enough for a neighbour entry that failed during a cut to resolve
    // again (SYN retransmits start at 1 s).
    bed.spawn_in(from, move || {
        TcpStream::connect_timeout(&to, Duration::from_millis(2_500)).is_ok()
    })
    .join()
    .unwrap()
}

#[test]
fn hosts_reach_each_other_on_both_paths() {
    require_test_hosts!("hosts_reach_each_other_on_both_paths");
    let bed = Testbed::new(3).unwrap();
    let h2 = bed.hosts()[2].clone();
    // A listener on host 2, on both of its addresses.
    let listening = bed.spawn_in(2, || TcpListener::bind("0.0.0.0:7001").unwrap());
    let _listener = listening.join().unwrap();
    assert!(connects(&bed, 0, SocketAddr::from((h2.mgmt_ip, 7001))));
    assert!(connects(&bed, 1, SocketAddr::from((h2.path_ip, 7001))));
}

#[test]
fn a_shaped_path_carries_no_more_than_its_rate() {
    require_test_hosts!("a_shaped_path_carries_no_more_than_its_rate");
    let bed = Testbed::new(2).unwrap();
    const BYTES: usize = 10 << 20;
    bed.shape_path(200_000_000).unwrap(); // 200 Mbit/s: 10 MiB in >= 0.42 s
    let shaped = transfer(&bed, BYTES, 7102);
    // Unshaped, a veth moves 10 MiB in a few tens of milliseconds.
    assert!(
        shaped >= Duration::from_millis(380),
        "10 MiB at 200 Mbit/s took {shaped:?}"
    );
}

#[test]
fn a_cut_path_stays_cut_until_restored() {
    require_test_hosts!("a_cut_path_stays_cut_until_restored");
    let bed = Testbed::new(2).unwrap();
    let to = SocketAddr::from((bed.hosts()[1].path_ip, 7201));
    let mgmt = SocketAddr::from((bed.hosts()[1].mgmt_ip, 7201));
    let _listener = bed
        .spawn_in(1, || TcpListener::bind("0.0.0.0:7201").unwrap())
        .join()
        .unwrap();
    assert!(connects(&bed, 0, to));
    bed.cut_path(1).unwrap();
    assert!(!connects(&bed, 0, to), "connected over a cut path");
    assert!(
        connects(&bed, 0, mgmt),
        "cutting the migration path cut management"
    );
    bed.restore_path(1).unwrap();
    assert!(connects(&bed, 0, to), "the restored path does not connect");
}

#[test]
fn dropping_the_testbed_removes_every_namespace() {
    require_test_hosts!("dropping_the_testbed_removes_every_namespace");
    let names = Testbed::new(2).unwrap().namespaces();
    assert_eq!(names.len(), 3);
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for name in names {
        assert!(!list.contains(&name), "{name} left behind: {list}");
    }
}

#[test]
fn a_panicking_test_still_removes_its_hosts() {
    require_test_hosts!("a_panicking_test_still_removes_its_hosts");
    let netns = std::panic::catch_unwind(|| {
        let bed = Testbed::new(1).unwrap();
        let name = bed.hosts()[0].netns.clone();
        std::panic::panic_any(name);
    })
    .unwrap_err();
    let name = netns.downcast::<String>().unwrap();
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(name.as_str()));
}
