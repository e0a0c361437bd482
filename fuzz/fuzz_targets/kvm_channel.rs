//! Feeds arbitrary bytes to the decoders of the agent ↔ LPAR-process
//! channel (`partition::kvm::channel`). They must return an error or a
//! message, never panic or allocate beyond their bounds; a message they
//! accept re-encodes to the bytes it came from (error texts excepted,
//! which are decoded lossily).

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::partition::kvm::channel::{Reply, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        assert!(r.encode() == data, "request encoding is canonical");
    }
    if let Ok(r) = Reply::decode(data) {
        if !matches!(r, Reply::Error(_)) {
            assert!(r.encode() == data, "reply encoding is canonical");
        }
    }
});
