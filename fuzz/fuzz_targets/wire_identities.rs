//! Parsing of the Identities payload (destination slot's WWPNs and MACs)
//! over arbitrary bytes: never panics, never allocates past its bound, and
//! what parses re-encodes identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::wire::{Frame, FrameEncoder, FrameKind, HEADER_LEN};

fuzz_target!(|payload: &[u8]| {
    if let Ok(frame) = Frame::parse(FrameKind::Identities, payload) {
        let mut bytes = Vec::new();
        FrameEncoder::new().encode(&frame, &mut bytes).expect("re-encodes");
        assert_eq!(&bytes[HEADER_LEN..], payload);
    }
});
