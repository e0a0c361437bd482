//! A failed migration leaves nothing behind on the destination: when the
//! sending agent dies mid-transfer, `moverd receive` fails with an EMG and
//! deletes the LPAR it defined.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn receiver_deletes_its_lpar_when_the_sender_dies_mid_transfer() {
    let root = common::Root::new("oneshot-cleanup");
    let moverd = env!("CARGO_BIN_EXE_moverd");
    let lpar = |host: &str| {
        let dir = root.0.join(host);
        vec![
            "--memory".to_string(),
            "256MiB".into(),
            "--program".into(),
            "hot:64MiB,content=random".into(),
            "--state-dir".into(),
            dir.display().to_string(),
        ]
    };
    let mut receiver = Command::new(moverd)
        .arg("receive")
        .args(lpar("host-b"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut handoff = String::new();
    BufReader::new(receiver.stdout.take().unwrap())
        .read_line(&mut handoff)
        .unwrap();
    let words: Vec<&str> = handoff.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"LISTENING"), "{handoff}");
    assert!(
        root.0.join("host-b/lpar1/memory").exists(),
        "the receiver defines its LPAR before listening"
    );
    // A slow path keeps the transfer going long enough to cut it: the
    // sender logs each finished pre-copy round, so the cut comes after the
    // first round reached the receiver and while the next is under way.
    let mut sender = Command::new(moverd)
        .args(["send", "--to", words[1], "--key", words[3]])
        .args(["--path", "127.0.0.2", "--warm-up-ms", "50"])
        .args(["--bandwidth", "20MB/s"])
        .args(lpar("host-a"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(sender.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = log.read_line(&mut line).unwrap();
        assert!(n > 0, "the sender ended before its first round: {seen}");
        seen.push_str(&line);
        if line.contains("Transferring Memory Data: round 0 sent") {
            break;
        }
    }
    assert!(
        sender.try_wait().unwrap().is_none(),
        "the transfer ended before it could be cut: {seen}"
    );
    sender.kill().unwrap();
    sender.wait().unwrap();
    let out = receiver.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the receiver reported success");
    assert!(stderr.contains("EMG"), "no EMG from the receiver: {stderr}");
    assert!(
        !root.0.join("host-b/lpar1").exists(),
        "the failed receiver left its LPAR behind"
    );
}
