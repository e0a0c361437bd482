//! The handshake decoders face whatever connects to the migration port:
//! every input must yield a message or a typed error, never a panic, and a
//! decoded message must re-encode to the exact bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::transport::handshake::{Challenge, Response, Verdict};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Challenge::decode(data) {
        assert_eq!(&c.encode()[..], data);
    }
    if let Ok(r) = Response::decode(data) {
        assert_eq!(&r.encode()[..], data);
    }
    if let Ok(v) = Verdict::decode(data) {
        assert_eq!(&v.encode()[..], data);
    }
});
