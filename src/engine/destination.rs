//! The destination side of a live migration (the mirror of [`super::source`]).
//!
//! Pages land straight in the defined-but-not-running LPAR. A version-3
//! source sends the device state ahead of the final pages: the destination
//! applies the device semantics of the manual ([`super::switchover`]:
//! identity exchange, vfcIDs, RTC, clock) and loads it while they land
//! (with clock compensation, which needs the pause time, once Suspended
//! came). When the source says it is suspended (with its image digest),
//! every page is in: the destination compares its own incrementally kept
//! image digest ([`super::digest`]) with the source's, sends its slot's
//! identities back, reports Ready, and
//! resumes the vCPUs only on Commit. Any failure before Commit (a refusal
//! of the switchover included) sends Abort and leaves the LPAR stopped for
//! the caller to discard, so the source keeps running it.
//!
//! After resume the LPAR's logical MACs are announced on this host's
//! interfaces for their segments ([`super::announce`]); the rounds run on
//! their own threads while the guest runs, and their results are in the
//! report.

use super::announce::{Schedule, Target, announce_targets_in_background};
use super::digest::ImageDigest;
use super::host_clock::HostClock;
use super::pump::{Event, InStream, OwnedFrame, PageReceiver};
use super::stage::Stage;
use super::state_transfer::IncomingState;
use super::switchover::{DestinationHost, SwitchoverOutcome};
use super::{EngineError, wall_clock_ns};
use crate::build_identity::BuildIdentity;
use crate::emg::Module;
use crate::partition::{LparConfig, Partition};
use crate::state::{DeviceState, Identities, LogicalNic};
use crate::transport::MigrationStream;
use crate::wire::{
    Frame, FrameEncoder, Hello, Integrity, MigrationId, PROTOCOL_VERSION, Rehearsal, Switchover,
    SwitchoverStep,
};
use crossbeam::channel::Receiver;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The wire protocol version that introduced the Identities frame.
const IDENTITIES_SINCE: u16 = 2;
/// The wire protocol version that introduced the Rehearsal frame.
const REHEARSAL_SINCE: u16 = 5;

/// Longest silence from the source before the destination gives up.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DestinationReport {
    pub rounds: u32,
    pub pages: u64,
    /// Inside the suspension: the later of the device state and Suspended
    /// received → Ready sent (digest check, and the state load when it
    /// could not be done earlier).
    pub load_verify_ms: f64,
    /// Decoding, applying and loading the device state, wherever it fell.
    pub state_load_ms: f64,
    /// The device state came ahead of the final pages and was loaded while
    /// they landed (a version-3 source), outside `load_verify_ms`.
    pub state_loaded_early: bool,
    /// Loading the device-state base before the pause, as a rehearsal of
    /// the final load (version 4 sources on; 0 when none came).
    pub state_rehearsal_ms: f64,
    /// Commit received → vCPUs resumed.
    pub resume_ms: f64,
    /// What the switchover rules did (vfcIDs, identities, clocks).
    pub switchover: Option<SwitchoverOutcome>,
    /// The MAC announcement per interface, after resume.
    pub announce: Vec<AnnounceOutcome>,
}

/// The announcement on one interface.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AnnounceOutcome {
    pub segment: String,
    /// This host's interface on the segment; `None` when it has none.
    pub interface: Option<String>,
    pub macs: Vec<String>,
    pub rounds: u32,
    pub frames_sent: u64,
    /// Why nothing (or not everything) was sent.
    pub error: Option<String>,
}

/// Receives a live migration into `lpar` over `streams`.
pub fn receive_live(
    lpar: Arc<dyn Partition>,
    streams: Vec<MigrationStream>,
    host: &DestinationHost,
) -> Result<DestinationReport, EngineError> {
    receive_live_staged(lpar, streams, host, &mut |_, _| {})
}

/// [`receive_live`], telling `stage` (with the report so far) when the device state arrives
/// ([`Stage::DstLoadingState`]), when Commit does, before the vCPUs
/// resume ([`Stage::DstResuming`]), and once they run, before the source is
/// told ([`Stage::DstAnnouncing`]): the agent's journal records each.
pub fn receive_live_staged(
    lpar: Arc<dyn Partition>,
    streams: Vec<MigrationStream>,
    host: &DestinationHost,
    stage: &mut dyn FnMut(Stage, &DestinationReport),
) -> Result<DestinationReport, EngineError> {
    let integrity = super::integrity_of(&streams);
    let mut replies = Replies::new(&streams[0], integrity)?;
    let closer = streams[0].try_clone().ok();
    let inn: Vec<InStream> = streams
        .into_iter()
        .map(|s| Box::new(s) as InStream)
        .collect();
    let digest = Arc::new(ImageDigest::blank_for(&*lpar));
    let (receiver, events) = PageReceiver::start(lpar.clone(), inn, integrity, digest.clone());
    let result = receive(&*lpar, &events, &digest, &mut replies, host, stage);
    if let Err(e) = &result
        && !matches!(e, EngineError::PeerAborted(_))
    {
        let _ = replies.send(&Frame::Abort(e.emg(Module::MoverDestination)));
    }
    // Unblock the readers: the source closes its side when it is done.
    if let Some(s) = closer {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    receiver.finish();
    result.map(|(mut report, nics, config)| {
        report.announce = announce(&config, &nics, host);
        report
    })
}

/// Announces every logical MAC on this host's interface for its NIC's
/// segment, all interfaces at once, and waits for the rounds (the guest
/// already runs; this only delays the report).
fn announce(
    config: &LparConfig,
    nics: &[LogicalNic],
    host: &DestinationHost,
) -> Vec<AnnounceOutcome> {
    let mut by_segment: Vec<(String, Vec<&LogicalNic>)> = Vec::new();
    for (nic, state) in config.nics.iter().zip(nics) {
        match by_segment.iter_mut().find(|(s, _)| *s == nic.segment) {
            Some((_, list)) => list.push(state),
            None => by_segment.push((nic.segment.clone(), vec![state])),
        }
    }
    let running: Vec<_> = by_segment
        .into_iter()
        .map(|(segment, nics)| {
            let outcome = AnnounceOutcome {
                interface: host.segments.get(&segment).cloned(),
                macs: nics.iter().map(|n| n.mac.to_string()).collect(),
                segment,
                ..Default::default()
            };
            let handle = outcome.interface.as_deref().map(|interface| {
                let targets: Vec<Target> = nics.iter().map(|n| Target::from(*n)).collect();
                announce_targets_in_background(interface, &targets, Schedule::default())
            });
            (outcome, handle)
        })
        .collect();
    running
        .into_iter()
        .map(|(mut outcome, handle)| {
            match handle.map(|h| h.and_then(|h| h.join())) {
                None => {
                    outcome.error = Some(format!(
                        "segment '{}' has no interface on this host (moverd receive --segment {}=<interface>)",
                        outcome.segment, outcome.segment
                    ))
                }
                Some(Ok(r)) => {
                    outcome.rounds = r.rounds;
                    outcome.frames_sent = r.frames_sent;
                }
                Some(Err(e)) => outcome.error = Some(e.to_string()),
            }
            outcome
        })
        .collect()
}

fn receive(
    lpar: &dyn Partition,
    events: &Receiver<Event>,
    digest: &ImageDigest,
    replies: &mut Replies,
    host: &DestinationHost,
    stage: &mut dyn FnMut(Stage, &DestinationReport),
) -> Result<(DestinationReport, Vec<LogicalNic>, LparConfig), EngineError> {
    let mut report = DestinationReport::default();
    let mut suspended: Option<Switchover> = None;
    let mut clock = HostClock::new();
    let mut hello_sent: Option<Instant> = None;
    // A version-1 source knows no Identities frame, one before version 5 no
    // Rehearsal frame: they are not sent to them.
    let mut source_takes_identities = true;
    let mut source_takes_rehearsal = true;
    let mut incoming: Option<LparConfig> = None;
    let mut nics = Vec::new();
    // A device state that came before Suspended: loaded, or decoded and
    // waiting for Suspended's pause time.
    let mut loaded: Option<Loaded> = None;
    let mut waiting: Option<DeviceState> = None;
    // Version 4: the device state as it read before the pause.
    let mut incoming_state = IncomingState::default();
    loop {
        let event = events
            .recv_timeout(IDLE_TIMEOUT)
            .map_err(|_| EngineError::NoReply {
                waiting_for: "the source".into(),
            })?;
        let (stream, frame) = match event {
            Event::Failed(e) => return Err(e),
            Event::RoundComplete { pages, .. } => {
                report.rounds += 1;
                report.pages += pages;
                continue;
            }
            Event::Control { stream, frame } => (stream, frame),
        };
        match frame {
            OwnedFrame::Hello(hello) if stream == 0 => {
                source_takes_identities = hello.protocol_version >= IDENTITIES_SINCE;
                source_takes_rehearsal = hello.protocol_version >= REHEARSAL_SINCE;
                replies.send(&Frame::Hello(Hello {
                    protocol_version: PROTOCOL_VERSION,
                    migration_id: MigrationId(0),
                    build: BuildIdentity::current(),
                    auth_proof: Vec::new(),
                }))?;
                hello_sent = Some(Instant::now());
            }
            // A keepalive on stream 0 is the source's ping: echo it.
            OwnedFrame::Keepalive(k) if stream == 0 => {
                clock.record_stamp(k.timestamp_ns, wall_clock_ns());
                replies.send(&Frame::Keepalive(k))?
            }
            OwnedFrame::Hello(_) | OwnedFrame::Keepalive(_) => {}
            OwnedFrame::LparConfig(bytes) => {
                // The source sends it as soon as our Hello reply arrives:
                // a round trip.
                if let Some(t) = hello_sent.take() {
                    clock.record_round_trip(t.elapsed());
                }
                incoming = Some(check_config(lpar.config(), &bytes)?);
            }
            OwnedFrame::Abort(emg) => return Err(EngineError::PeerAborted(emg)),
            OwnedFrame::Switchover(s) if s.step == SwitchoverStep::Suspended => {
                clock.record_stamp(s.timestamp_ns, wall_clock_ns());
                if suspended.replace(s).is_some() {
                    return Err(protocol("a second Suspended"));
                }
                // Version 3: the device state came first (and is loaded,
                // or waits for the pause time to compensate the clock).
                if loaded.is_some() || waiting.is_some() {
                    let t = Instant::now();
                    if let Some(state) = waiting.take() {
                        loaded = Some(load(lpar, state, &incoming, host, &clock, s.timestamp_ns)?);
                    }
                    let Some(done) = loaded.take() else {
                        unreachable!("loaded above")
                    };
                    nics = ready(
                        done,
                        s,
                        digest,
                        replies,
                        &mut report,
                        source_takes_identities,
                    )?;
                    report.load_verify_ms = t.elapsed().as_secs_f64() * 1e3;
                }
            }
            OwnedFrame::DeviceStateBase(bytes) => {
                if loaded.is_some() || waiting.is_some() {
                    return Err(protocol("a device state base after a device state"));
                }
                // Loaded now, as a rehearsal: the final load then writes
                // into memory and file pages already in place, and the
                // source learns what a load costs here for its prediction.
                // (The final state overwrites this one; an LPAR that never
                // gets it is removed with the failed migration.) Twice,
                // timing the second, decode included as in the final load:
                // the first also pays for memory touched for the first time
                // (its buffers, the device file's pages), which the final
                // load finds in place.
                lpar.restore_state(&incoming_state.take_base(bytes)?)?;
                let t = Instant::now();
                let base = incoming_state.decode_base()?;
                lpar.restore_state(&base)?;
                #[cfg(feature = "fault-injection")]
                super::faults::slow_state_load();
                let took = t.elapsed();
                report.state_rehearsal_ms = took.as_secs_f64() * 1e3;
                if source_takes_rehearsal {
                    replies.send(&Frame::Rehearsal(Rehearsal {
                        load_ns: took.as_nanos().min(u128::from(u64::MAX)) as u64,
                    }))?;
                }
            }
            frame @ (OwnedFrame::DeviceState(_) | OwnedFrame::DeviceStateDelta(_)) => {
                let bytes = incoming_state.state_bytes(frame)?;
                stage(Stage::DstLoadingState, &report);
                if loaded.is_some() || waiting.is_some() || report.switchover.is_some() {
                    return Err(protocol("a second device state"));
                }
                let t = Instant::now();
                let state =
                    DeviceState::decode(&bytes).map_err(crate::partition::PartitionError::from)?;
                match suspended {
                    // Up to version 2: after Suspended, so after the final
                    // round (a round is reported complete before anything
                    // after it): every page is in by now.
                    Some(source) => {
                        let done = load(lpar, state, &incoming, host, &clock, source.timestamp_ns)?;
                        nics = ready(
                            done,
                            source,
                            digest,
                            replies,
                            &mut report,
                            source_takes_identities,
                        )?;
                        report.load_verify_ms = t.elapsed().as_secs_f64() * 1e3;
                    }
                    // Compensating the clock needs the pause time, which
                    // Suspended brings.
                    None if host.compensate_clock => waiting = Some(state),
                    // Loaded while the final pages land.
                    None => {
                        loaded = Some(load(lpar, state, &incoming, host, &clock, 0)?);
                        report.state_loaded_early = true;
                    }
                }
                report.state_load_ms += t.elapsed().as_secs_f64() * 1e3;
            }
            OwnedFrame::Switchover(s) if s.step == SwitchoverStep::Commit => {
                stage(Stage::DstResuming, &report);
                let t = Instant::now();
                lpar.resume()?;
                let running = wall_clock_ns();
                report.resume_ms = t.elapsed().as_secs_f64() * 1e3;
                // The agent records the LPAR as running here before the
                // source hears so: a client the source answers then finds it.
                stage(Stage::DstAnnouncing, &report);
                // Ownership has passed: a failed reply no longer matters.
                let _ = replies.send(&Frame::Switchover(Switchover {
                    step: SwitchoverStep::Running,
                    timestamp_ns: running,
                    digest: 0,
                }));
                let config = incoming.unwrap_or_else(|| lpar.config().clone());
                return Ok((report, nics, config));
            }
            other => return Err(protocol(&format!("{other:?}"))),
        }
    }
}

/// A device state applied and loaded, not yet reported Ready.
struct Loaded {
    slot: Identities,
    outcome: SwitchoverOutcome,
    nics: Vec<LogicalNic>,
}

/// Applies the switchover rules to `state` (see [`super::switchover::apply`])
/// and loads it into `lpar`.
fn load(
    lpar: &dyn Partition,
    state: DeviceState,
    incoming: &Option<LparConfig>,
    host: &DestinationHost,
    clock: &HostClock,
    suspended_at_ns: u64,
) -> Result<Loaded, EngineError> {
    let Some(config) = incoming else {
        return Err(protocol("device state before the LPAR configuration"));
    };
    let (state, slot, outcome) = super::switchover::apply(
        state,
        config,
        host,
        clock.offset_ns().unwrap_or(0),
        suspended_at_ns,
        wall_clock_ns(),
    )
    .map_err(EngineError::Switchover)?;
    lpar.restore_state(&state)?;
    #[cfg(feature = "fault-injection")]
    super::faults::slow_state_load();
    Ok(Loaded {
        slot,
        outcome,
        nics: state.nics,
    })
}

/// With every page in and the state loaded: compares the image digests,
/// sends the slot's identities (to a version-2-on source) and Ready.
fn ready(
    done: Loaded,
    source: Switchover,
    digest: &ImageDigest,
    replies: &mut Replies,
    report: &mut DestinationReport,
    source_takes_identities: bool,
) -> Result<Vec<LogicalNic>, EngineError> {
    if digest.value() != source.digest {
        return Err(EngineError::DigestMismatch {
            source: source.digest,
            destination: digest.value(),
        });
    }
    report.switchover = Some(done.outcome);
    if source_takes_identities {
        replies.send(&Frame::Identities(done.slot))?;
    }
    replies.send(&Frame::Switchover(Switchover {
        step: SwitchoverStep::Ready,
        timestamp_ns: wall_clock_ns(),
        digest: digest.value(),
    }))?;
    Ok(done.nics)
}

fn protocol(what: &str) -> EngineError {
    EngineError::Protocol {
        stream: 0,
        what: what.to_string(),
    }
}

/// Reads the LPAR configuration the source sent (`LparConfig` frame, JSON):
/// it must match this LPAR's memory and vCPUs and pass [`LparConfig::check`].
/// Outside input: fuzzed by `fuzz/fuzz_targets/lpar_config.rs`.
pub fn check_config(ours: &LparConfig, bytes: &[u8]) -> Result<LparConfig, EngineError> {
    let theirs: LparConfig = serde_json::from_slice(bytes)
        .map_err(|e| protocol(&format!("LPAR configuration that does not parse ({e})")))?;
    if theirs.memory_bytes != ours.memory_bytes || theirs.vcpus != ours.vcpus {
        return Err(EngineError::ConfigMismatch {
            what: format!(
                "source LPAR has {} bytes and {} vCPUs, destination LPAR {} bytes and {} vCPUs",
                theirs.memory_bytes, theirs.vcpus, ours.memory_bytes, ours.vcpus
            ),
        });
    }
    theirs.check().map_err(|e| EngineError::ConfigMismatch {
        what: format!("the incoming LPAR configuration: {e}"),
    })?;
    Ok(theirs)
}

/// The destination's direction of stream 0.
struct Replies {
    stream: MigrationStream,
    encoder: FrameEncoder,
    buf: Vec<u8>,
}

impl Replies {
    fn new(stream: &MigrationStream, integrity: Integrity) -> Result<Self, EngineError> {
        let stream = stream
            .try_clone()
            .map_err(|source| EngineError::Stream { stream: 0, source })?;
        Ok(Replies {
            stream,
            encoder: FrameEncoder::with_integrity(integrity),
            buf: Vec::new(),
        })
    }

    fn send(&mut self, frame: &Frame<'_>) -> Result<(), EngineError> {
        self.buf.clear();
        self.encoder
            .encode(frame, &mut self.buf)
            .map_err(|error| EngineError::Wire { stream: 0, error })?;
        self.stream
            .write_all(&self.buf)
            .map_err(|source| EngineError::Stream { stream: 0, source })
    }
}
