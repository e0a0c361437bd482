//! One migration, source side and destination side.
//!
//! So far: the page pump ([`pump`]), which moves rounds of guest pages over
//! N streams with round barriers, and the MAC announcement the destination
//! sends after resume ([`announce`]). Rounds, convergence, suspend and
//! switchover build on it (issue 4).

pub mod announce;
mod error;
mod lz4_policy;
pub mod pump;

pub use error::EngineError;
