//! One migration, source side and destination side.
//!
//! So far: the page pump ([`pump`]), which moves rounds of guest pages over
//! N streams with round barriers, and the pre-copy policy
//! ([`convergence`]) that decides after each round whether to continue,
//! throttle or suspend. The source and destination state machines
//! (suspend, device state, switchover, commit) build on them (issue 4).

pub mod convergence;
pub mod destination;
pub mod digest;
mod error;
mod lz4_policy;
pub mod pump;
pub mod report;
pub mod source;

pub use error::EngineError;

/// Nanoseconds since the Unix epoch: switchover timestamps cross hosts.
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
