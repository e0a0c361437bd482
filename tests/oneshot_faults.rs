//! Faults between two agent processes (`moverd send` → `moverd receive`):
//! a corrupted or dropped stream and a timeout each end the migration with
//! the right EMG, the destination deletes its copy, and the LPAR is left
//! running on the source (its files re-attach and the guest carries on).

mod common;

use lpar_mover::partition::sim::SimLpar;
use lpar_mover::partition::{GuestMemory, Vcpus};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Clone, Copy)]
enum Fault {
    /// Flip a bit at this byte offset of the second stream (source → destination).
    Corrupt(usize),
    /// Close the second stream after this many bytes.
    Drop(usize),
}

/// A TCP relay in front of `to`: the second connection through it carries
/// `fault`; the others pass untouched (the first is stream 0's).
fn relay(to: SocketAddr, fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { return };
            let Ok(outbound) = TcpStream::connect(to) else {
                return;
            };
            let faulty = count.fetch_add(1, Ordering::SeqCst) == 1;
            let (a, b) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            std::thread::spawn(move || pump(a, b, faulty.then_some(fault)));
            std::thread::spawn(move || pump(outbound, inbound, None));
        }
    });
    addr
}

fn pump(mut from: TcpStream, mut to: TcpStream, fault: Option<Fault>) {
    let mut buf = vec![0u8; 64 << 10];
    let mut offset = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        match fault {
            Some(Fault::Corrupt(at)) if (offset..offset + n).contains(&at) => {
                chunk[at - offset] ^= 0x10;
            }
            Some(Fault::Drop(at)) if offset + n > at => {
                // The cut: both directions of both sides, at once.
                let _ = to.write_all(&chunk[..at - offset]);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
            _ => {}
        }
        offset += n;
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    // Pass the end on, as TCP would; the other direction ends by itself
    // (cutting it here could drop an Abort still on its way back).
    let _ = to.shutdown(Shutdown::Write);
}

struct Ended {
    sender: Output,
    receiver: Output,
}

const MEMORY: u64 = 256 << 20;
const PROGRAM: &str = "hot:32MiB,content=random,rate=50000";
/// A program that halts after a known number of writes (2 vCPUs, 1.2 s at
/// its rate): what the source's memory must hold at the end is known. A
/// sweep that ends before it wraps writes each page at most once, so damage
/// done to a page already written (the pages a migration reads) is still
/// there at the end, not overwritten by the guest.
const FINITE_PROGRAM: &str = "sweep,content=random,rate=50000,writes=30000";
const FINITE_TOTAL: u64 = 2 * 30_000;

fn lpar_args(root: &common::Root, host: &str, program: &str) -> Vec<String> {
    [
        "--memory",
        &MEMORY.to_string(),
        "--program",
        program,
        "--state-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([root.0.join(host).display().to_string()])
    .collect()
}

/// Runs a one-shot migration with `fault` on the path (None: direct) and
/// `send_extra` arguments for the sender.
fn migrate(root: &common::Root, fault: Option<Fault>, send_extra: &[&str]) -> Ended {
    migrate_program(root, fault, send_extra, PROGRAM)
}

fn migrate_program(
    root: &common::Root,
    fault: Option<Fault>,
    send_extra: &[&str],
    program: &str,
) -> Ended {
    let moverd = env!("CARGO_BIN_EXE_moverd");
    let mut receiver = Command::new(moverd)
        .arg("receive")
        .args(lpar_args(root, "host-b", program))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(receiver.stdout.take().unwrap());
    let mut handoff = String::new();
    stdout.read_line(&mut handoff).unwrap();
    let words: Vec<&str> = handoff.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"LISTENING"), "{handoff}");
    let listening: SocketAddr = words[1].parse().unwrap();
    let to = match fault {
        Some(f) => relay(listening, f),
        None => listening,
    };
    let sender = Command::new(moverd)
        .args(["send", "--to", &to.to_string(), "--key", words[3]])
        .args(["--path", "127.0.0.2", "--warm-up-ms", "300"])
        .args(send_extra)
        .args(lpar_args(root, "host-a", program))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let mut receiver = receiver.wait_with_output().unwrap();
    stdout.read_to_end(&mut receiver.stdout).unwrap();
    Ended { sender, receiver }
}

/// The migration failed on both sides, the destination's copy is gone and
/// the source's LPAR re-attaches running, its guest still writing (or, for
/// a program of `finite_total` writes, having written them all: on a loaded
/// machine a short program can end before the failure is detected).
fn assert_failed_cleanly(root: &common::Root, ended: &Ended, finite_total: Option<u64>) -> String {
    let emg = String::from_utf8_lossy(&ended.sender.stderr).into_owned();
    assert!(
        !ended.sender.status.success(),
        "the sender reported success"
    );
    assert!(emg.contains("EMG"), "no EMG from the sender: {emg}");
    assert!(
        !ended.receiver.status.success(),
        "the receiver reported success"
    );
    assert!(
        !root.0.join("host-b/lpar1").exists(),
        "the destination kept a partial copy"
    );
    let source = SimLpar::attach(&root.0.join("host-a"), "lpar1")
        .expect("the source LPAR re-attaches after its agent exits");
    assert!(source.is_running(), "the source LPAR was left stopped");
    let writes = source.writes();
    common::wait_for(
        "the source guest to carry on",
        Duration::from_secs(10),
        || source.writes() > writes + 100 || Some(source.writes()) == finite_total,
    );
    source.pause().unwrap();
    emg
}

#[test]
fn a_corrupted_stream_between_agents_fails_with_the_destinations_emg() {
    let root = common::Root::new("faults-corrupt");
    let ended = migrate(&root, Some(Fault::Corrupt(200_000)), &[]);
    let emg = assert_failed_cleanly(&root, &ended, None);
    assert!(
        emg.contains("LPARMover(DST)"),
        "not the destination's EMG: {emg}\nreceiver: {}",
        String::from_utf8_lossy(&ended.receiver.stderr)
    );
    // The stream is TLS: its AEAD catches the flipped bit before the frame
    // checksum would.
    assert!(emg.contains("record failed authentication"), "{emg}");
}

#[test]
fn a_dropped_stream_between_agents_fails_and_loses_nothing() {
    let root = common::Root::new("faults-drop");
    let ended = migrate_program(&root, Some(Fault::Drop(200_000)), &[], FINITE_PROGRAM);
    assert_failed_cleanly(&root, &ended, Some(FINITE_TOTAL));
    // Nothing lost: run to its end, the source's memory is exactly what an
    // LPAR never migrated holds after the same program.
    let source = SimLpar::attach(&root.0.join("host-a"), "lpar1").unwrap();
    source.resume().unwrap();
    common::wait_for(
        "the source program to end",
        Duration::from_secs(120),
        || source.writes() == FINITE_TOTAL,
    );
    source.pause().unwrap();
    let reference = SimLpar::create(
        &root.0.join("reference"),
        &lpar_mover::partition::LparConfig {
            name: "reference".into(),
            memory_bytes: MEMORY,
            program: FINITE_PROGRAM.into(),
            ..lpar_mover::partition::LparConfig::default_lpar()
        },
    )
    .unwrap();
    reference.resume().unwrap();
    common::wait_for(
        "the reference program to end",
        Duration::from_secs(120),
        || reference.writes() == FINITE_TOTAL,
    );
    reference.pause().unwrap();
    assert_eq!(
        source.digest().unwrap(),
        reference.digest().unwrap(),
        "the source's memory differs from an unmigrated run of the same program"
    );
}

#[test]
fn a_timeout_between_agents_fails_and_leaves_the_source_running() {
    let root = common::Root::new("faults-timeout");
    // 32 MiB at 10 MB/s cannot finish within the 1 s timeout.
    let ended = migrate(&root, None, &["--timeout", "1", "--bandwidth", "10MB/s"]);
    let emg = assert_failed_cleanly(&root, &ended, None);
    assert!(emg.contains("timeout"), "{emg}");
}
