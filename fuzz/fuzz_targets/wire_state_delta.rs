//! The device-state delta (version 4) a destination applies to the base it
//! was sent before the pause: any bytes, against any base, must rebuild a
//! state or yield the format's reason, never panic; `check` and `apply`
//! agree on what is valid; and a delta made by `diff` rebuilds exactly the
//! state it was made from.
//!
//! Input: `split_lo split_hi` then bytes; the first `split` bytes are the
//! base, the rest the delta (and, for the round trip, the new state).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::wire::state_delta::{apply, check, diff};

fuzz_target!(|data: &[u8]| {
    let Some((split, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let at = usize::from(u16::from_le_bytes(*split)).min(rest.len());
    let (base, tail) = rest.split_at(at);
    let mut out = Vec::new();
    let applied = apply(base, tail, &mut out);
    assert_eq!(applied.is_ok(), check(tail).is_ok(), "check and apply disagree");
    // The tail as a new state: its delta from the base rebuilds it.
    let mut delta = Vec::new();
    if diff(base, tail, &mut delta) {
        assert!(delta.len() < tail.len());
        check(&delta).expect("diff makes valid deltas");
        apply(base, &delta, &mut out).expect("a valid delta applies");
        assert_eq!(out, tail);
    }
});
