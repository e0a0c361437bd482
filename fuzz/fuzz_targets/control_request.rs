//! The management protocol's request decoder and line framing over
//! arbitrary bytes: never a panic; what decodes re-encodes to a request
//! that decodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::control::line::{Line, LineReader};
use lpar_mover::control::decode_request;

fuzz_target!(|data: &[u8]| {
    // Small limit so the oversized path is reached too.
    let mut reader = LineReader::new(data, 4096);
    while let Ok(line @ (Line::Complete | Line::Oversized)) = reader.read_line() {
        if line == Line::Oversized {
            continue;
        }
        if let Ok(request) = decode_request(reader.line()) {
            // The protocol edge's bounds check is total too.
            let _ = request.command.check_bounds();
            let again = decode_request(request.encode().as_bytes()).expect("re-encoded request decodes");
            assert_eq!(again, request);
        }
    }
    let _ = decode_request(data);
});
