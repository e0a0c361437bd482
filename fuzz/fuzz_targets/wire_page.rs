//! Page decoding (zero, raw, LZ4, delta) over arbitrary payloads, and the
//! encoder's round trip over pages built from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::wire::{Encoding, PAGE_SIZE, decode_page, encode_page};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else { return };
    // Decoding arbitrary payloads: never a panic.
    let mut dest = [selector; PAGE_SIZE];
    let _ = decode_page(Encoding::ALL[usize::from(selector % 4)], payload, &mut dest);

    // Encoding pages built from the input: always an exact round trip.
    if payload.is_empty() {
        return;
    }
    let half = payload.len() / 2;
    let (a, b) = payload.split_at(half.max(1).min(payload.len()));
    let fill = |src: &[u8]| {
        let mut page = [0u8; PAGE_SIZE];
        if !src.is_empty() {
            // Sparse writes when the selector asks, else a repeated pattern.
            if selector & 0x80 != 0 {
                for w in src.chunks(3) {
                    if let [hi, lo, v] = *w {
                        page[(usize::from(hi) << 8 | usize::from(lo)) % PAGE_SIZE] = v;
                    }
                }
            } else {
                for (i, byte) in page.iter_mut().enumerate() {
                    *byte = src[i % src.len()];
                }
            }
        }
        page
    };
    let old = fill(a);
    let mut new = old;
    let fresh = fill(b);
    for (i, (n, f)) in new.iter_mut().zip(fresh.iter()).enumerate() {
        if selector & 0x40 == 0 || i % 64 < 8 {
            *n ^= f;
        }
    }
    let mut out = Vec::new();
    let enc = encode_page(&new, Some(&old), &mut out);
    assert!(enc.accepts_len(out.len()));
    let mut dest = old;
    decode_page(enc, &out, &mut dest).expect("own encoding decodes");
    assert_eq!(dest, new);
});
