//! Abort payload (EMG) parsing over arbitrary bytes; what parses re-encodes
//! to the same EMG.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::wire::{Frame, FrameKind, parse_emg};

fuzz_target!(|data: &[u8]| {
    if let Ok(emg) = parse_emg(data) {
        let frame = Frame::Abort(emg.clone());
        let mut bytes = Vec::new();
        lpar_mover::wire::FrameEncoder::new().encode(&frame, &mut bytes).expect("re-encodes");
        let again = Frame::parse(FrameKind::Abort, &bytes[lpar_mover::wire::HEADER_LEN..]).expect("re-parses");
        assert_eq!(again, Frame::Abort(emg));
    }
});
