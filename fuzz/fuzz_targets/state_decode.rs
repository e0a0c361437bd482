//! Feeds arbitrary bytes to the device-state decoder, twice per input:
//!
//! 1. as they are, which exercises the framing (magic, version, length,
//!    CRC);
//! 2. as a *body* wrapped in a valid header and CRC, which the CRC would
//!    otherwise keep the fuzzer from ever reaching.
//!
//! The decoder must return an error or a state, never panic, hang or
//! allocate beyond its bounds; and a state it accepts must re-encode to
//! exactly the bytes it came from (the encoding is canonical).

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::state::{DeviceState, FORMAT_MAJOR, FORMAT_MINOR, MAGIC, format};

fn check(bytes: &[u8]) {
    let _ = format::frame_len(bytes);
    if let Ok(state) = DeviceState::decode(bytes) {
        // Only our own minor version is canonical: a newer minor's
        // appended fields are skipped and do not come back.
        if bytes[10..12] == FORMAT_MINOR.to_le_bytes() {
            let again = state.encode().expect("a decoded state re-encodes");
            assert!(again == bytes, "the encoding is canonical");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);

    let mut framed = Vec::with_capacity(data.len() + 28);
    framed.extend_from_slice(&MAGIC);
    framed.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    framed.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    framed.extend_from_slice(&0u32.to_le_bytes());
    framed.extend_from_slice(&(data.len() as u64).to_le_bytes());
    framed.extend_from_slice(data);
    let crc = crc32(&framed);
    framed.extend_from_slice(&crc.to_le_bytes());
    check(&framed);
});

/// CRC32 (IEEE), bitwise: the fuzz crate does not depend on crc32fast.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
