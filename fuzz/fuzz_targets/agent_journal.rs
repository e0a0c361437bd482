//! The recovery journal parser: a torn or hostile journal file (or a peer's
//! `journal-read` reply) is an error or a shorter summary, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use lpar_mover::agent::journal::{parse, whole_records};
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("fuzz");
        let all = parse(text, path).ok();
        // What a reopened journal keeps reads the same as the whole file.
        let n = whole_records(data);
        let cut = std::str::from_utf8(&data[..n]).expect("whole records end on a newline");
        assert_eq!(parse(cut, path).ok(), all);
    }
});
