//! The handshake decoders face whatever connects to the migration port:
//! every input must yield a message or a typed error, never a panic, and a
//! decoded message must re-encode to the exact bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::transport::handshake::{Challenge, Decision, Hello, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Challenge::decode(data) {
        assert_eq!(&c.encode()[..], data);
    }
    if let Ok(r) = Response::decode(data) {
        assert_eq!(&r.encode()[..], data);
    }
    if let Ok(d) = Decision::decode(data) {
        assert_eq!(&d.encode()[..], data);
    }
    if let Ok(h) = Hello::decode(data) {
        assert_eq!(&h.encode()[..], data);
    }
});
