//! The policy file parser (`moverctl policy run`) over arbitrary bytes:
//! never a panic; every refusal is an EMG of the client; a policy that
//! parses has at least one entry, at most the named bound, and one mode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::cli::policy::{MAX_ENTRIES, parse};
use lpar_mover::emg::Module;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(p) => assert!(!p.entries.is_empty() && p.entries.len() <= MAX_ENTRIES),
        Err(e) => assert_eq!(e.module, Module::Client),
    }
});
