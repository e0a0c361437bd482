//! One migration, source side and destination side.
//!
//! ```text
//! source::migrate_live                         destination::receive_live
//!   convergence: continue / suspend; throttle: how hard, from each harvest
//!   pump::PageSender ── N streams ───────────▶ pump::PageReceiver
//!     (digest of every page sent)                (digest of every page applied)
//!   switchover: DeviceState + final round ─▶ switchover::apply (Table 1-2), load
//!               Suspended(digest) ──────────▶ compare digests
//!                    ◀─ Identities (slot's) ◀─ Ready → Commit → Running
//!                                              announce: RARP per logical MAC
//! ```
//!
//! The source and destination modules draw their exchange in their own
//! docs; [`pump`] draws the page path, [`digest`] says what the image
//! digest proves, `convergence` how the suspension is predicted (with the
//! parts `prediction` measures besides the copy), `throttle`
//! how hard the vCPUs are throttled so that the rounds shrink,
//! [`switchover`] which device rules the destination applies before Ready
//! and `host_clock` how the host-clock difference for the RTC is
//! estimated.

pub mod announce;
mod barrier;
pub(crate) mod convergence;
pub mod destination;
pub mod digest;
mod error;
#[cfg(feature = "fault-injection")]
pub mod faults;
mod frames;
pub(crate) mod host_clock;
mod lz4_policy;
mod migration_control;
mod prediction;
pub mod pump;
mod replies;
pub mod report;
pub(crate) mod shutdown;
pub mod source;
pub mod stage;
mod state_transfer;
pub mod switchover;
pub(crate) mod throttle;

pub use error::EngineError;

use crate::transport::{MigrationStream, Protection};
use crate::wire::Integrity;

/// What a migration's streams guarantee of their frames: an encrypted
/// stream's records are authenticated, so its frames need no checksum.
pub fn integrity_of(streams: &[MigrationStream]) -> Integrity {
    if streams.iter().all(|s| s.protection() == Protection::Tls13) {
        Integrity::Authenticated
    } else {
        Integrity::Checksummed
    }
}

/// Nanoseconds since the Unix epoch: switchover timestamps cross hosts.
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub use crate::units::later;
