//! What can end a migration in the engine, in words for the operator.

use crate::emg::{Emg, Module, phase, reason};
use crate::partition::PartitionError;
use crate::wire::WireError;
use std::fmt;
use std::io;

/// How the manual opens a lost connection between the two LPAR Movers.
const CONNECTION_REFUSED: &str = "Connection refused (LPAR Mover-LPAR Mover):";

#[derive(Debug)]
pub enum EngineError {
    /// Reading or writing migration stream `stream` failed.
    Stream { stream: usize, source: io::Error },
    /// The peer sent bytes that are not a valid frame.
    Wire { stream: usize, error: WireError },
    /// Guest memory or vCPUs refused an operation.
    Partition(PartitionError),
    /// The peer sent a valid frame that makes no sense at this point.
    Protocol { stream: usize, what: String },
    /// A round ended with fewer or more pages than the sender said it sent.
    RoundIncomplete {
        stream: usize,
        round: u32,
        expected: u64,
        received: u64,
    },
    /// The peer ended the migration with its own error.
    PeerAborted(Emg),
    /// The operator cancelled the migration.
    Cancelled,
    /// The migration did not finish within its timeout.
    TimedOut,
    /// The peer did not answer in time.
    NoReply { waiting_for: String },
    /// The destination's image differs from what the source sent.
    DigestMismatch { source: u64, destination: u64 },
    /// The destination LPAR does not match the incoming one.
    ConfigMismatch { what: String },
    /// The destination refused the switchover (device semantics).
    Switchover(super::switchover::SwitchoverError),
    /// The suspension overran its hard limit before Commit (the device
    /// state could not be moved and loaded in time): the source resumes.
    SuspensionOverrun { limit_ms: f64, elapsed_ms: f64 },
    /// A failure after Commit: the LPAR belongs to the destination, but
    /// whether it runs there is unknown until recovery.
    AfterCommit(Box<EngineError>),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream { stream, source } => write!(
                f,
                "{CONNECTION_REFUSED} migration stream {stream} failed: {source}"
            ),
            Self::Wire { stream, error } => write!(f, "migration stream {stream}: {error}"),
            Self::Partition(e) => write!(f, "{e}"),
            Self::Protocol { stream, what } => {
                write!(f, "migration stream {stream}: unexpected {what}")
            }
            Self::RoundIncomplete {
                stream,
                round,
                expected,
                received,
            } => write!(
                f,
                "round {round} on stream {stream} ended with {received} pages received, \
                 but the source sent {expected}"
            ),
            Self::PeerAborted(e) => write!(f, "the peer aborted the migration: {e}"),
            Self::Cancelled => write!(f, "Terminated by user."),
            Self::TimedOut => write!(
                f,
                "LPAR Migration process was canceled Memory write is intensive. (The \
                 migration did not complete within its timeout: the guest writes memory \
                 faster than the migration path carries it.)"
            ),
            Self::NoReply { waiting_for } => write!(
                f,
                "{CONNECTION_REFUSED} no answer from the peer while waiting for {waiting_for}"
            ),
            Self::DigestMismatch {
                source,
                destination,
            } => write!(
                f,
                "the destination's image digest {destination:#018x} differs from the source's \
                 {source:#018x}"
            ),
            Self::ConfigMismatch { what } => {
                write!(f, "the destination LPAR does not match: {what}")
            }
            Self::Switchover(e) => write!(f, "{e}"),
            Self::SuspensionOverrun {
                limit_ms,
                elapsed_ms,
            } => write!(
                f,
                "Transferring device data cannot be completed within an LPAR suspension period. \
                 (The LPAR was suspended {elapsed_ms:.1} ms before the destination was ready, \
                 over the {limit_ms:.1} ms limit; it runs on at the source.)"
            ),
            Self::AfterCommit(e) => write!(f, "after commit: {e}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<PartitionError> for EngineError {
    fn from(e: PartitionError) -> Self {
        EngineError::Partition(e)
    }
}

impl EngineError {
    /// The EMG the destination is told when the source gives up for this
    /// reason.
    pub fn abort_emg(&self) -> Emg {
        match self {
            EngineError::Cancelled => Emg::new(
                Module::MoverSource,
                phase::MEMORY_TRANSFER,
                0,
                "Terminated by user.",
                "None.",
            )
            .reason(reason::TERMINATED_BY_USER),
            other => Emg::new(
                Module::MoverSource,
                phase::MEMORY_TRANSFER,
                0x10,
                format!("The source ended the migration: {other}"),
                "Discard the incoming LPAR; the source keeps running it.",
            ),
        }
    }

    /// The EMG an operator sees; `module` says which side detected it.
    pub fn emg(&self, module: Module) -> Emg {
        let message = self.to_string();
        let mk =
            |phase, cause, action: &str| Emg::new(module, phase, cause, message.clone(), action);
        match self {
            EngineError::Partition(e) => e.emg(),
            EngineError::PeerAborted(e) => e.clone(),
            EngineError::Wire { error, .. } => (*error).into(),
            EngineError::Stream { stream, .. } => mk(
                phase::CONNECTION_LOST,
                0x01,
                "Check the migration path between the two hosts (link, addresses, firewall) \
                 and retry; the LPAR keeps running on the source.",
            )
            .reason(reason::CONNECTION_REFUSED)
            .detail(*stream as u64),
            EngineError::Protocol { stream, .. } => mk(
                phase::MEMORY_TRANSFER,
                0x02,
                "Check that both agents run compatible builds (moverctl version) and retry.",
            )
            .detail(*stream as u64),
            EngineError::RoundIncomplete { round, .. } => mk(
                phase::MEMORY_TRANSFER,
                0x03,
                "Pages were lost in transit: retry the migration; if it recurs, check the \
                 migration path for faults.",
            )
            .detail(u64::from(*round)),
            // The manual's LPAR Mover `0x00 00000000 0030 0M`, op3 0x20.
            EngineError::Cancelled => {
                mk(phase::LPAR_MOVER, 0, "None.").reason(reason::TERMINATED_BY_USER)
            }
            EngineError::TimedOut => mk(
                phase::MEMORY_TRANSFER,
                0x04,
                "Extend the timeout (moverctl extend), lower the guest's write load, or use a \
                 faster migration path; the LPAR keeps running on the source.",
            ),
            EngineError::NoReply { .. } => mk(
                phase::CONNECTION_LOST,
                0x05,
                "Check that the peer agent is running and the migration path works, then retry.",
            )
            .reason(reason::CONNECTION_REFUSED),
            EngineError::DigestMismatch { .. } => mk(
                phase::DEVICE_STATE,
                0x06,
                "Memory was corrupted in transit; the LPAR keeps running on the source. Retry, \
                 and check the migration path if it recurs.",
            ),
            EngineError::ConfigMismatch { .. } => mk(
                phase::DEFINE,
                0x07,
                "Define the destination LPAR with the source's memory size and vCPU count.",
            ),
            EngineError::Switchover(e) => e.emg(),
            EngineError::SuspensionOverrun { .. } => mk(
                phase::DEVICE_STATE,
                0x08,
                "Execute the LPAR migration again. When it fails though you attempt it several \
                 times, reduce the memory load on the guest OS as much as possible (or raise \
                 the source agent's suspend_limit_ms).",
            ),
            EngineError::AfterCommit(e) => {
                let mut emg = e.emg(module);
                emg.message = format!("after commit: {}", emg.message);
                emg.action = "Run moverctl recover on the LPAR: ownership passed to the \
                              destination, whether it runs there must be checked."
                    .into();
                emg.needing_recovery()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_timeout_and_a_lost_stream_read_as_the_manual_prints_them() {
        // "Terminated by user.": LPAR Mover `0x00 00000000 0030 04`, op3 0x20.
        let e = EngineError::Cancelled.emg(Module::MoverSource);
        assert_eq!((e.op1(), e.reason), (0x0000_0000_0000_3004, 0x20), "{e}");
        assert_eq!(e.message, "Terminated by user.");
        let e = EngineError::TimedOut.emg(Module::MoverSource);
        assert!(
            e.message
                .starts_with("LPAR Migration process was canceled Memory write is intensive."),
            "{e}"
        );
        let e = EngineError::SuspensionOverrun {
            limit_ms: 5.0,
            elapsed_ms: 7.0,
        }
        .emg(Module::MoverSource);
        assert!(
            e.message.starts_with(
                "Transferring device data cannot be completed within an LPAR suspension period."
            ),
            "{e}"
        );
        assert!(!e.needs_recovery, "{e}");
        // A lost connection: op3 0x02, "Connection refused (LPAR Mover-LPAR Mover)".
        for lost in [
            EngineError::Stream {
                stream: 1,
                source: io::Error::from(io::ErrorKind::ConnectionReset),
            },
            EngineError::NoReply {
                waiting_for: "Ready".into(),
            },
        ] {
            let e = lost.emg(Module::MoverDestination);
            assert_eq!(e.reason, 0x02, "{e}");
            assert!(
                e.message
                    .starts_with("Connection refused (LPAR Mover-LPAR Mover):"),
                "{e}"
            );
        }
    }
}
