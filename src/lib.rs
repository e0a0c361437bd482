//! lpar-mover: live migration of logical partitions between hypervisor hosts.
//!
//! Layers, top to bottom on the source (bottom to top on the destination);
//! nothing below knows about anything above:
//!
//! | module        | owns |
//! |---------------|------|
//! | [`partition`] | the integration boundary with the hypervisor, and the `sim` backend |
//! | [`state`]     | the device-state model and its versioned binary encoding |
//! | [`wire`]      | the migration stream: frames and page encodings |
//! | [`transport`] | the migration path: N authenticated TCP streams, pacing, timeouts |
//! | [`engine`]    | one migration, source and destination; the stage-code table |
//! | [`agent`]     | the host: inventory, busy rules, migrations, the management server |
//! | [`control`]   | the management protocol shared by `moverd` and `moverctl` |
//!
//! [`emg`] is the one error type every layer converts into. [`testbed`]
//! builds test hosts (network namespaces) for tests and benchmarks;
//! [`skip`] is how a test says it cannot run here (and fails in CI instead).

pub mod agent;
pub mod build_identity;
pub mod cli;
pub mod control;
pub mod emg;
pub mod engine;
#[warn(missing_docs)]
pub mod partition;
pub mod skip;
#[warn(missing_docs)]
pub mod state;
pub mod testbed;
pub mod transport;
pub mod units;
#[warn(missing_docs)]
pub mod wire;

pub use emg::Emg;
