//! Parsing of the small fixed payloads (hello, end of round, switchover,
//! keepalive, rehearsal) over arbitrary bytes; what parses re-encodes
//! identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::wire::{Frame, FrameEncoder, FrameKind, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else { return };
    let kinds = [
        FrameKind::Hello,
        FrameKind::EndOfRound,
        FrameKind::Switchover,
        FrameKind::Keepalive,
        FrameKind::Rehearsal,
    ];
    let kind = kinds[usize::from(selector) % kinds.len()];
    if let Ok(frame) = Frame::parse(kind, payload) {
        let mut bytes = Vec::new();
        FrameEncoder::new().encode(&frame, &mut bytes).expect("re-encodes");
        assert_eq!(&bytes[HEADER_LEN..], payload);
    }
});
