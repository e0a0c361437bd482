//! The frame decoder over arbitrary bytes, fed in arbitrary chunks: it must
//! yield frames or a typed error, never panic, and every frame it yields
//! must re-encode to bytes that decode to the same frame.
//!
//! The selector's second bit picks the stream's integrity: checksummed
//! (plaintext), or authenticated (TLS), where no CRC is checked and raw
//! bytes reach every payload parser directly. Random bytes rarely pass the
//! CRC, so half the inputs are read as a recipe instead: `(op, len_lo, len_hi, bytes[len])*`, where op 0..8 wraps
//! the bytes in a correctly sealed frame of that kind (reaching every
//! payload parser through the decoder) and any other op inserts the bytes
//! raw (junk, a torn frame or a replayed one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::wire::{Frame, FrameDecoder, FrameEncoder, FrameKind, Integrity, PAGE_SIZE};

fn recipe(mut data: &[u8], integrity: Integrity) -> Vec<u8> {
    let mut enc = FrameEncoder::with_integrity(integrity);
    let mut out = Vec::new();
    while let [op, lo, hi, rest @ ..] = data {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        let (bytes, tail) = rest.split_at(len);
        match FrameKind::ALL.get(usize::from(*op)) {
            Some(kind) => {
                let _ = enc.encode_raw(*kind, bytes, &mut out);
            }
            None => out.extend_from_slice(bytes),
        }
        data = tail;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let integrity = if selector & 2 == 0 {
        Integrity::Checksummed
    } else {
        Integrity::Authenticated
    };
    let built;
    let mut rest = if selector & 1 == 0 {
        rest
    } else {
        built = recipe(rest, integrity);
        &built[..]
    };
    let chunk = usize::from(selector >> 2).max(1) * 13;
    let mut decoder = FrameDecoder::with_integrity(integrity);
    let mut page = [0u8; PAGE_SIZE];
    'stream: loop {
        let n = decoder.feed(&rest[..chunk.min(rest.len())]);
        rest = &rest[n..];
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Frame::PageBatch(batch) = &frame {
                        for p in batch.pages() {
                            let _ = p.decode_into(&mut page);
                        }
                    }
                    let mut bytes = Vec::new();
                    FrameEncoder::with_integrity(integrity)
                        .encode(&frame, &mut bytes)
                        .expect("a decoded frame re-encodes");
                    let mut again = FrameDecoder::with_integrity(integrity);
                    assert_eq!(again.feed(&bytes), bytes.len());
                    assert_eq!(again.next_frame().expect("re-decodes"), Some(frame));
                }
                Ok(None) => break,
                Err(_) => break 'stream,
            }
        }
        if rest.is_empty() {
            let _ = decoder.finish();
            break;
        }
    }
});
