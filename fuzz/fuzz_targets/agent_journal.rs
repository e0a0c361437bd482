//! The recovery journal parser: a torn or hostile journal file (or a peer's
//! `journal-read` reply) is an error or a shorter summary, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = lpar_mover::agent::journal::parse(text, std::path::Path::new("fuzz"));
    }
});
