//! What `moverctl` does for each subcommand, kept out of the binary so it
//! can be tested.

pub mod ctl;
pub mod demo;
pub mod oneshot;
pub mod selftest;
