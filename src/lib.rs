//! lpar-mover: live migration of logical partitions between hypervisor hosts.
//!
//! Layers, lowest first (data flows down the table on the source and up it
//! on the destination). A module may use the rows before its own and never
//! one after it (`partition` uses `state`: a backend saves and restores
//! the device state); `tests/layers.rs` reads this table and
//! fails on any `crate::` path that runs the wrong way, and on any circle
//! between folders:
//!
//! | module        | owns |
//! |---------------|------|
//! | [`state`]     | the device-state model and its versioned binary encoding |
//! | [`partition`] | the integration boundary with the hypervisor, and the `sim` backend |
//! | [`wire`]      | the migration stream: frames and page encodings |
//! | [`transport`] | the migration path: N authenticated TCP streams, pacing, timeouts |
//! | [`engine`]    | one migration, source and destination; the stage-code table |
//! | [`control`]   | the management protocol shared by `moverd` and `moverctl`: its typed commands, replies, events and vocabulary |
//! | [`agent`]     | the host: inventory, busy rules, migrations, the management server |
//! | [`cli`]       | what each `moverctl` / `moverd` subcommand does |
//!
//! The binaries (`src/bin/`) sit on top of them all.
//!
//! [`emg`] is the one error type every layer converts into. [`testbed`]
//! builds test hosts (network namespaces) for tests and benchmarks;
//! [`skip`](mod@skip) is how a test says it cannot run here (and fails in CI instead).

// The docs are for integrators and maintainers alike (`cargo doc
// --document-private-items`, as CI builds them): a public item may point at
// the private one that does the work.
#![allow(rustdoc::private_intra_doc_links)]

pub mod agent;
pub mod build_identity;
pub mod cli;
#[warn(missing_docs)]
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
