//! What `moverctl` does for each subcommand, kept out of the binary so it
//! can be tested.

pub mod agents;
pub mod backup;
pub mod bench;
pub mod console;
pub mod ctl;
pub mod demo;
pub mod identity;
pub mod lpar_args;
pub mod migrate;
pub mod moves;
pub mod oneshot;
pub mod options;
pub mod plot;
pub mod policy;
pub mod progress;
pub mod reference;
pub mod rss;
pub mod selftest;
pub mod session;
pub mod validate;
