//! A destination takes a source of the previous version that sends no
//! device-state base before the pause, only the whole device state ahead
//! of the final pages (as version 3 always did, and version 4 does when
//! its partition cannot read its devices while the guest runs; a base and
//! a delta are what `live_migration.rs` covers). Here a hand-driven source
//! (the engine's own page pump, frames as such a source sends them) moves
//! a running LPAR, and the destination still loads the state while the
//! final pages land, checks the digest, reports Ready and runs the LPAR
//! after Commit; it sends that source no Rehearsal (version 5).

mod common;

use common::{Root, stream_pairs};
use lpar_mover::build_identity::BuildIdentity;
use lpar_mover::engine::digest::ImageDigest;
use lpar_mover::engine::integrity_of;
use lpar_mover::engine::pump::{OutStream, OwnedFrame, PageSender};
use lpar_mover::partition::sim::SimLpar;
use lpar_mover::partition::{DeviceModel, GuestMemory, Partition, Vcpus};
use lpar_mover::state::MigrationMode;
use lpar_mover::transport::MigrationStream;
use lpar_mover::wire::{
    FrameDecoder, Hello, Keepalive, MigrationId, PREVIOUS_PROTOCOL_VERSION, PROTOCOL_VERSION,
    Switchover, SwitchoverStep,
};
use std::sync::Arc;
use std::time::Duration;

fn lpar(root: &Root, name: &str) -> Arc<SimLpar> {
    common::sim_lpar(
        root,
        name,
        64 << 20,
        "hot:4MiB,content=text,rate=40000,writes=2000",
    )
}

/// The next frame the destination sends on stream 0.
fn next_reply(decoder: &mut FrameDecoder, stream: &mut MigrationStream) -> OwnedFrame {
    loop {
        if let Some(frame) = decoder.next_frame().unwrap() {
            return OwnedFrame::from_frame(frame).expect("no pages come back");
        }
        assert!(
            decoder.read_from(stream).unwrap() > 0,
            "the destination hung up"
        );
    }
}

/// A source driven by hand over `streams` streams to `destination`, which
/// receives in a thread of its own: the engine's page pump, and the
/// replies stream 0 brings back.
struct HandDriven {
    sender: PageSender,
    digest: Arc<ImageDigest>,
    back: MigrationStream,
    decoder: FrameDecoder,
    receiving: std::thread::JoinHandle<
        Result<lpar_mover::engine::destination::DestinationReport, lpar_mover::engine::EngineError>,
    >,
}

impl HandDriven {
    /// Connects, and says Hello as a source of `version` (the destination
    /// answers with its own).
    fn start(
        source: &Arc<SimLpar>,
        destination: &Arc<SimLpar>,
        streams: usize,
        version: u16,
    ) -> HandDriven {
        let (out, inn) = stream_pairs(streams);
        let back = out[0].try_clone().unwrap();
        let receiving = common::receive_in_background(destination, inn);
        let digest = Arc::new(ImageDigest::blank_for(&**source));
        let integrity = integrity_of(&out);
        let streams = out.into_iter().map(|s| Box::new(s) as OutStream).collect();
        let sender = PageSender::start(source.clone(), streams, integrity, digest.clone());
        let mut driven = HandDriven {
            sender,
            digest,
            back,
            decoder: FrameDecoder::with_integrity(integrity),
            receiving,
        };
        driven
            .sender
            .send_control_all(OwnedFrame::Hello(Hello {
                protocol_version: version,
                migration_id: MigrationId(0),
                build: BuildIdentity::current(),
                auth_proof: Vec::new(),
            }))
            .unwrap();
        assert!(matches!(driven.reply(), OwnedFrame::Hello(_)));
        let config = serde_json::to_vec(source.config()).unwrap();
        driven
            .sender
            .send_control(OwnedFrame::LparConfig(config))
            .unwrap();
        driven
    }

    fn reply(&mut self) -> OwnedFrame {
        next_reply(&mut self.decoder, &mut self.back)
    }

    /// Hangs up; what the destination made of it.
    fn finish(
        self,
    ) -> Result<lpar_mover::engine::destination::DestinationReport, lpar_mover::engine::EngineError>
    {
        drop(self.sender.finish());
        let _ = self.back.shutdown(std::net::Shutdown::Both);
        self.receiving.join().unwrap()
    }
}

#[test]
fn a_previous_version_source_sending_the_whole_state_ahead_of_the_final_pages_still_migrates() {
    let root = Root::new("order-previous");
    let source = lpar(&root, "source");
    let destination = lpar(&root, "destination");
    source.resume().unwrap();
    common::wait_for("the guest to write", Duration::from_secs(30), || {
        source.writes() > 1_000
    });
    source.pause().unwrap();

    let mut run = HandDriven::start(&source, &destination, 2, PREVIOUS_PROTOCOL_VERSION);
    run.sender
        .send_round(0, &source.populated().unwrap())
        .unwrap();
    // The final round (the LPAR is paused), the whole state leading on
    // stream 0, then Suspended.
    let state = source.save_state().unwrap().for_mode(MigrationMode::Live);
    run.sender.queue_pages(1, &source.populated().unwrap());
    run.sender
        .end_round_led(1, OwnedFrame::DeviceState(state.encode().unwrap()));
    run.sender.wait_round_led().unwrap();
    let suspended = Switchover {
        step: SwitchoverStep::Suspended,
        timestamp_ns: lpar_mover::engine::wall_clock_ns(),
        digest: run.digest.value(),
    };
    run.sender
        .send_control(OwnedFrame::Switchover(suspended))
        .unwrap();
    assert!(matches!(run.reply(), OwnedFrame::Identities(_)));
    match run.reply() {
        OwnedFrame::Switchover(s) if s.step == SwitchoverStep::Ready => {
            assert_eq!(
                s.digest,
                run.digest.value(),
                "the destination's image differs"
            )
        }
        other => panic!("{other:?} instead of Ready"),
    }
    run.sender
        .send_control(OwnedFrame::Switchover(Switchover {
            step: SwitchoverStep::Commit,
            timestamp_ns: lpar_mover::engine::wall_clock_ns(),
            digest: 0,
        }))
        .unwrap();
    match run.reply() {
        OwnedFrame::Switchover(s) => assert_eq!(s.step, SwitchoverStep::Running),
        other => panic!("{other:?} instead of Running"),
    }
    let report = run.finish().unwrap();
    assert!(
        report.state_loaded_early,
        "the state led the final pages: loaded while they landed"
    );
    assert!(report.load_verify_ms > 0.0 && report.state_load_ms > 0.0);
    assert!(destination.is_running());
}

/// What the destination answers a source of `version` that sends a
/// device-state base then a ping: every reply up to the ping's echo.
fn replies_to_a_base(version: u16) -> Vec<OwnedFrame> {
    let root = Root::new(&format!("rehearsal-v{version}"));
    let source = lpar(&root, "source");
    let destination = lpar(&root, "destination");
    let mut run = HandDriven::start(&source, &destination, 1, version);
    let base = source.save_state().unwrap().for_mode(MigrationMode::Live);
    run.sender
        .send_control(OwnedFrame::DeviceStateBase(base.encode().unwrap()))
        .unwrap();
    let ping = Keepalive { timestamp_ns: 42 };
    run.sender
        .send_control(OwnedFrame::Keepalive(ping))
        .unwrap();
    let mut replies = vec![];
    loop {
        let reply = run.reply();
        let echo = reply == OwnedFrame::Keepalive(ping);
        replies.push(reply);
        if echo {
            break;
        }
    }
    let _ = run.finish();
    replies
}

#[test]
fn the_destination_rehearses_the_base_load_and_tells_only_a_source_that_reads_it() {
    let current = replies_to_a_base(PROTOCOL_VERSION);
    assert_eq!(current.len(), 2, "{current:?}");
    match &current[0] {
        OwnedFrame::Rehearsal(r) => assert!(r.load_ns > 0, "{r:?}"),
        other => panic!("{other:?} instead of a Rehearsal"),
    }
    // The previous version knows no Rehearsal frame: only the echo.
    let previous = replies_to_a_base(PREVIOUS_PROTOCOL_VERSION);
    assert_eq!(previous.len(), 1, "{previous:?}");
}
