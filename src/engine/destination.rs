//! The destination side of a live migration (the mirror of [`super::source`]).
//!
//! Pages land straight in the defined-but-not-running LPAR. When the source
//! says it is suspended (with its image digest) and the device state has
//! arrived, the destination checks its own image digest against the
//! source's, loads the device state, reports Ready, and resumes the vCPUs
//! only on Commit. Any failure before Commit sends Abort and leaves the
//! LPAR stopped for the caller to discard.

use super::digest::ImageDigest;
use super::pump::{Event, InStream, OwnedFrame, PageReceiver};
use super::{EngineError, wall_clock_ns};
use crate::build_identity::BuildIdentity;
use crate::emg::Module;
use crate::partition::{LparConfig, Partition};
use crate::state::DeviceState;
use crate::wire::{
    Frame, FrameEncoder, Hello, MigrationId, PROTOCOL_VERSION, Switchover, SwitchoverStep,
};
use crossbeam::channel::Receiver;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest silence from the source before the destination gives up.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DestinationReport {
    pub rounds: u32,
    pub pages: u64,
    /// Device state received → Ready sent (digest check and state load).
    pub load_verify_ms: f64,
    /// Commit received → vCPUs resumed.
    pub resume_ms: f64,
}

/// Receives a live migration into `lpar` over `streams`.
pub fn receive_live(
    lpar: Arc<dyn Partition>,
    streams: Vec<TcpStream>,
) -> Result<DestinationReport, EngineError> {
    let mut replies = Replies::new(&streams[0])?;
    let closer = streams[0].try_clone().ok();
    let inn: Vec<InStream> = streams
        .into_iter()
        .map(|s| Box::new(s) as InStream)
        .collect();
    let digest = Arc::new(ImageDigest::blank_for(&*lpar));
    let (receiver, events) = PageReceiver::start(lpar.clone(), inn, digest.clone());
    let result = receive(&*lpar, &events, &digest, &mut replies);
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
    result
}

fn receive(
    lpar: &dyn Partition,
    events: &Receiver<Event>,
    digest: &ImageDigest,
    replies: &mut Replies,
) -> Result<DestinationReport, EngineError> {
    let mut report = DestinationReport::default();
    let mut suspended: Option<Switchover> = None;
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
            OwnedFrame::Hello(_) if stream == 0 => replies.send(&Frame::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                migration_id: MigrationId(0),
                build: BuildIdentity::current(),
                auth_proof: Vec::new(),
            }))?,
            // A keepalive on stream 0 is the source's ping: echo it.
            OwnedFrame::Keepalive(k) if stream == 0 => replies.send(&Frame::Keepalive(k))?,
            OwnedFrame::Hello(_) | OwnedFrame::Keepalive(_) => {}
            OwnedFrame::LparConfig(bytes) => check_config(lpar.config(), &bytes)?,
            OwnedFrame::Abort(emg) => return Err(EngineError::PeerAborted(emg)),
            OwnedFrame::Switchover(s) if s.step == SwitchoverStep::Suspended => suspended = Some(s),
            OwnedFrame::DeviceState(bytes) => {
                let Some(source) = suspended else {
                    return Err(protocol("device state before Suspended"));
                };
                let t = Instant::now();
                // Suspended follows the final round on stream 0, and a round
                // is reported complete before anything after it: every page
                // is in by now.
                if digest.value() != source.digest {
                    return Err(EngineError::DigestMismatch {
                        source: source.digest,
                        destination: digest.value(),
                    });
                }
                let state =
                    DeviceState::decode(&bytes).map_err(crate::partition::PartitionError::from)?;
                lpar.restore_state(&state)?;
                replies.send(&Frame::Switchover(Switchover {
                    step: SwitchoverStep::Ready,
                    timestamp_ns: wall_clock_ns(),
                    digest: digest.value(),
                }))?;
                report.load_verify_ms = t.elapsed().as_secs_f64() * 1e3;
            }
            OwnedFrame::Switchover(s) if s.step == SwitchoverStep::Commit => {
                let t = Instant::now();
                lpar.resume()?;
                let running = wall_clock_ns();
                report.resume_ms = t.elapsed().as_secs_f64() * 1e3;
                // Ownership has passed: a failed reply no longer matters.
                let _ = replies.send(&Frame::Switchover(Switchover {
                    step: SwitchoverStep::Running,
                    timestamp_ns: running,
                    digest: 0,
                }));
                return Ok(report);
            }
            other => return Err(protocol(&format!("{other:?}"))),
        }
    }
}

fn protocol(what: &str) -> EngineError {
    EngineError::Protocol {
        stream: 0,
        what: what.to_string(),
    }
}

/// The incoming LPAR must match the one defined here for it.
fn check_config(ours: &LparConfig, bytes: &[u8]) -> Result<(), EngineError> {
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
    Ok(())
}

/// The destination's direction of stream 0.
struct Replies {
    stream: TcpStream,
    encoder: FrameEncoder,
    buf: Vec<u8>,
}

impl Replies {
    fn new(stream: &TcpStream) -> Result<Self, EngineError> {
        let stream = stream
            .try_clone()
            .map_err(|source| EngineError::Stream { stream: 0, source })?;
        Ok(Replies {
            stream,
            encoder: FrameEncoder::new(),
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
