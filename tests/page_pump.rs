//! The page pump between two real LPARs over authenticated TCP streams on
//! loopback: rounds of dirty pages while the guest runs, a final round while
//! it is paused, and the destination's memory equal to the source's. A
//! corrupted byte in transit is caught, never applied silently.

use lpar_mover::engine::EngineError;
mod common;

use common::{Root, stream_pairs};
use lpar_mover::engine::digest::ImageDigest;
use lpar_mover::engine::integrity_of;
use lpar_mover::engine::pump::{Event, InStream, Integrity, OutStream, PageReceiver, PageSender};
use lpar_mover::partition::sim::SimLpar;
use lpar_mover::partition::{GuestMemory, Partition, Vcpus};
use lpar_mover::wire::WireError;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

fn lpar(root: &Root, name: &str, program: &str) -> Arc<SimLpar> {
    common::sim_lpar(root, name, 64 << 20, program)
}

fn boxed<S: std::io::Read + std::io::Write + Send + 'static>(
    out: Vec<S>,
    inn: Vec<S>,
) -> (Vec<OutStream>, Vec<InStream>) {
    (
        out.into_iter().map(|s| Box::new(s) as OutStream).collect(),
        inn.into_iter().map(|s| Box::new(s) as InStream).collect(),
    )
}

fn expect_round(events: &crossbeam::channel::Receiver<Event>, round: u32, pages: u64) {
    match events.recv_timeout(Duration::from_secs(30)).unwrap() {
        Event::RoundComplete { round: r, pages: p } => {
            assert_eq!((r, p), (round, pages), "round reported by the destination")
        }
        other => panic!("expected round {round} complete, got {other:?}"),
    }
}

#[test]
fn rounds_of_dirty_pages_converge_to_identical_memory() {
    let root = Root::new("pump");
    let source = lpar(&root, "source", "skewed,content=text,rate=20000");
    let destination = lpar(&root, "destination", "idle");
    let (out, inn) = stream_pairs(4);
    let integrity = integrity_of(&out);
    let (out, inn) = boxed(out, inn);
    let sent = Arc::new(ImageDigest::blank_for(&*source));
    let applied = Arc::new(ImageDigest::blank_for(&*destination));
    let (receiver, events) =
        PageReceiver::start(destination.clone(), inn, integrity, applied.clone());
    let sender = PageSender::start(source.clone(), out, integrity, sent.clone());

    source.resume().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut log = source.dirty_log().unwrap();
    log.start().unwrap();
    // Round 0: everything the guest has touched so far.
    let round0 = source.populated().unwrap();
    let stats = sender.send_round(0, &round0).unwrap();
    expect_round(&events, 0, round0.len());
    assert_eq!(stats.pages, round0.len());
    // Rounds 1..3 while the guest keeps writing.
    for round in 1..4 {
        std::thread::sleep(Duration::from_millis(30));
        let mut dirty = lpar_mover::partition::PageSet::new();
        log.harvest(&mut dirty).unwrap();
        assert!(
            !dirty.is_empty(),
            "a running guest dirtied nothing in round {round}"
        );
        sender.send_round(round, &dirty).unwrap();
        expect_round(&events, round, dirty.len());
    }
    // Final round with the guest paused.
    source.pause().unwrap();
    let mut last = lpar_mover::partition::PageSet::new();
    log.harvest(&mut last).unwrap();
    sender.send_round(4, &last).unwrap();
    expect_round(&events, 4, last.len());
    assert_eq!(destination.digest().unwrap(), source.digest().unwrap());
    assert_eq!(
        applied.value(),
        sent.value(),
        "incremental image digests disagree"
    );

    drop(sender.finish()); // closes the streams: readers see a clean end
    receiver.finish();
    assert!(events.try_recv().is_err(), "no event after a clean end");
}

/// Forwards a stream, flipping one byte after `offset` bytes.
fn corrupting_relay(offset: usize) -> (TcpStream, TcpStream) {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let downstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let (up_addr, down_addr) = (
        upstream.local_addr().unwrap(),
        downstream.local_addr().unwrap(),
    );
    std::thread::spawn(move || {
        let (mut from, _) = upstream.accept().unwrap();
        let mut to = TcpStream::connect(down_addr).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut seen = 0usize;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if seen <= offset && offset < seen + n {
                buf[offset - seen] ^= 0x40;
            }
            seen += n;
            if to.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let sender_end = TcpStream::connect(up_addr).unwrap();
    let (receiver_end, _) = downstream.accept().unwrap();
    (sender_end, receiver_end)
}

#[test]
fn a_corrupted_page_frame_is_refused_not_applied() {
    let root = Root::new("corrupt");
    let source = lpar(&root, "source", "hot:4MiB,content=random,writes=2000");
    let destination = lpar(&root, "destination", "idle");
    source.resume().unwrap();
    while source.writes() < 4000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    source.pause().unwrap();
    let (out, inn) = corrupting_relay(100_000);
    let (out, inn) = boxed(vec![out], vec![inn]);
    let (receiver, events) = PageReceiver::start(
        destination.clone(),
        inn,
        Integrity::Checksummed,
        Arc::new(ImageDigest::blank_for(&*destination)),
    );
    let sender = PageSender::start(
        source.clone(),
        out,
        Integrity::Checksummed,
        Arc::new(ImageDigest::blank_for(&*source)),
    );
    let _ = sender.send_round(0, &source.populated().unwrap());
    match events.recv_timeout(Duration::from_secs(30)).unwrap() {
        Event::Failed(EngineError::Wire {
            error: WireError::ChecksumMismatch { .. },
            ..
        }) => {}
        other => panic!("expected a checksum failure, got {other:?}"),
    }
    drop(sender.finish());
    receiver.finish();
}
