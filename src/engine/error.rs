//! What can end a migration in the engine, in words for the operator.

use crate::emg::{Emg, Module, phase, reason};
use crate::partition::PartitionError;
use crate::wire::WireError;
use std::fmt;
use std::io;

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
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream { stream, source } => {
                write!(f, "migration stream {stream} failed: {source}")
            }
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
    /// The EMG an operator sees; `module` says which side detected it.
    pub fn into_emg(self, module: Module) -> Emg {
        let message = self.to_string();
        match self {
            EngineError::Partition(e) => e.into(),
            EngineError::PeerAborted(e) => e,
            EngineError::Wire { error, .. } => error.into(),
            EngineError::Stream { stream, .. } => Emg::new(
                module,
                phase::CONNECTION_LOST,
                0x01,
                format!("Connection refused (LPAR Mover-LPAR Mover): {message}"),
                "Check the migration path between the two hosts (link, addresses, firewall) \
                 and retry; the LPAR keeps running on the source.",
            )
            .reason(reason::CONNECTION_REFUSED)
            .detail(stream as u64),
            EngineError::Protocol { stream, .. } => Emg::new(
                module,
                phase::MEMORY_TRANSFER,
                0x02,
                message,
                "Check that both agents run compatible builds (moverctl version) and retry.",
            )
            .detail(stream as u64),
            EngineError::RoundIncomplete { round, .. } => Emg::new(
                module,
                phase::MEMORY_TRANSFER,
                0x03,
                message,
                "Pages were lost in transit: retry the migration; if it recurs, check the \
                 migration path for faults.",
            )
            .detail(u64::from(round)),
        }
    }
}
