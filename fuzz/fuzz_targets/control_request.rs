//! The management protocol's request decoder and line framing over
//! arbitrary bytes: never a panic; what decodes re-encodes to a request
//! that decodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::control::line::{Line, read_line};
use lpar_mover::control::decode_request;

fuzz_target!(|data: &[u8]| {
    let mut reader = std::io::BufReader::with_capacity(64, data);
    let mut buf = Vec::new();
    // Small limit so the oversized path is reached too.
    while let Ok(Line::Complete | Line::Oversized) = read_line(&mut reader, &mut buf, 4096) {
        if let Ok(request) = decode_request(&buf) {
            let again = decode_request(request.encode().as_bytes()).expect("re-encoded request decodes");
            assert_eq!(again, request);
        }
    }
    let _ = decode_request(data);
});
