//! The final device state as its difference from the base the source sent
//! before the pause (version 4): the bulky parts of a device state (VRAM,
//! NVRAM, MMIO snapshots, hundreds of KB) do not change while a guest is
//! paused and seldom while it runs, so they cross with the memory, and the
//! suspension carries only the bytes that differ.
//!
//! ```text
//! new_len u32 | runs u32 | runs × (offset u32 | len u32 | len bytes)
//! ```
//!
//! All little-endian. The result is the base cut or zero-extended to
//! `new_len`, with every run's bytes written at its offset. Runs are in
//! increasing order, do not overlap or touch, are not empty, and end within
//! `new_len`; `new_len` is at most [`MAX_DEVICE_STATE`]. The rebuilt bytes
//! are an encoded device state, whose own CRC32 then proves the rebuild.

use super::limits::MAX_DEVICE_STATE;

/// Bytes compared at a time: a run covers whole blocks of the new state.
const BLOCK: usize = 64;
/// Bytes of the fixed part (new length, run count).
const HEAD: usize = 8;
/// Bytes of a run's header (offset, length).
const RUN_HEAD: usize = 8;

/// Appends to `out` the delta that turns `base` into `new`; returns false
/// (and leaves `out` as it was) when the delta would not be smaller than
/// `new` itself: send the whole state then.
pub fn diff(base: &[u8], new: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.extend_from_slice(&(new.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut runs = 0u32;
    let mut at = 0;
    while at < new.len() {
        if same_block(base, new, at) {
            at += BLOCK;
            continue;
        }
        let first = at;
        while at < new.len() && !same_block(base, new, at) {
            at += BLOCK;
        }
        let end = at.min(new.len());
        out.extend_from_slice(&(first as u32).to_le_bytes());
        out.extend_from_slice(&((end - first) as u32).to_le_bytes());
        out.extend_from_slice(&new[first..end]);
        runs += 1;
        if out.len() - start >= new.len() {
            break;
        }
    }
    if out.len() - start >= new.len() {
        out.truncate(start);
        return false;
    }
    out[start + 4..start + HEAD].copy_from_slice(&runs.to_le_bytes());
    true
}

/// Whether the block of `new` at `at` equals the same bytes of `base`.
fn same_block(base: &[u8], new: &[u8], at: usize) -> bool {
    let end = (at + BLOCK).min(new.len());
    base.get(at..end) == Some(&new[at..end])
}

/// One run of a delta.
struct Run<'a> {
    offset: usize,
    bytes: &'a [u8],
}

/// Walks `delta`, checking every rule of the format; returns the new
/// length and the runs.
fn runs(delta: &[u8]) -> Result<(usize, Vec<Run<'_>>), &'static str> {
    let u32_at = |at: usize| -> Result<usize, &'static str> {
        delta
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or("the delta ends inside a length")
    };
    let new_len = u32_at(0)?;
    if new_len > MAX_DEVICE_STATE {
        return Err("the rebuilt device state would be longer than its limit");
    }
    let count = u32_at(4)?;
    // Each run takes at least its header: bounds the list allocated below.
    if count > (delta.len() - HEAD) / RUN_HEAD {
        return Err("more runs than the delta has bytes for");
    }
    let mut out = Vec::with_capacity(count);
    let mut at = HEAD;
    let mut covered = 0;
    for _ in 0..count {
        let offset = u32_at(at)?;
        let len = u32_at(at + 4)?;
        at += RUN_HEAD;
        if len == 0 {
            return Err("an empty run");
        }
        if offset < covered || (covered > 0 && offset == covered) {
            return Err("runs out of order, overlapping or touching");
        }
        let end = offset.checked_add(len).filter(|&e| e <= new_len);
        let Some(end) = end else {
            return Err("a run ends past the rebuilt length");
        };
        let bytes = delta
            .get(at..at + len)
            .ok_or("the delta ends inside a run")?;
        at += len;
        covered = end;
        out.push(Run { offset, bytes });
    }
    if at != delta.len() {
        return Err("bytes after the last run");
    }
    Ok((new_len, out))
}

/// Checks that `delta` follows the format (the frame parser's check).
pub fn check(delta: &[u8]) -> Result<(), &'static str> {
    runs(delta).map(|_| ())
}

/// Rebuilds into `out` (replacing its contents) the bytes `delta` makes of
/// `base`.
pub fn apply(base: &[u8], delta: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    let (new_len, runs) = runs(delta)?;
    out.clear();
    out.extend_from_slice(&base[..base.len().min(new_len)]);
    out.resize(new_len, 0);
    for r in runs {
        out[r.offset..r.offset + r.bytes.len()].copy_from_slice(r.bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rebuilt(base: &[u8], new: &[u8]) -> Option<Vec<u8>> {
        let mut delta = Vec::new();
        if !diff(base, new, &mut delta) {
            return None;
        }
        let mut out = vec![7u8; 3];
        apply(base, &delta, &mut out).unwrap();
        Some(out)
    }

    #[test]
    fn a_state_that_changed_in_a_few_places_crosses_as_those_places() {
        let base: Vec<u8> = (0..340_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = base.clone();
        new[10] ^= 1;
        new[200_000..200_100].fill(0xee);
        new.extend_from_slice(b"a longer tail");
        let mut delta = Vec::new();
        assert!(diff(&base, &new, &mut delta));
        assert!(delta.len() < 600, "{} bytes", delta.len());
        let mut out = Vec::new();
        apply(&base, &delta, &mut out).unwrap();
        assert_eq!(out, new);
        // Shorter than the base: cut.
        assert_eq!(rebuilt(&base, &base[..1000]).unwrap(), &base[..1000]);
        // Nothing in common: not worth a delta.
        assert_eq!(rebuilt(&[], &base), None);
    }

    #[test]
    fn malformed_deltas_are_refused_with_their_reason() {
        let run = |offset: u32, len: u32, bytes: &[u8]| {
            let mut v = offset.to_le_bytes().to_vec();
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(bytes);
            v
        };
        let delta = |new_len: u32, runs: &[Vec<u8>]| {
            let mut v = new_len.to_le_bytes().to_vec();
            v.extend_from_slice(&(runs.len() as u32).to_le_bytes());
            for r in runs {
                v.extend_from_slice(r);
            }
            v
        };
        let mut too_many = delta(10, &[]);
        too_many[4] = 5;
        let cases: [(Vec<u8>, &str); 9] = [
            (vec![1, 0], "inside a length"),
            (delta(u32::MAX, &[]), "longer than its limit"),
            (delta(10, &[run(0, 0, b"")]), "empty run"),
            (delta(10, &[run(8, 4, b"abcd")]), "past the rebuilt length"),
            (
                delta(10, &[run(4, 2, b"ab"), run(2, 1, b"c")]),
                "out of order",
            ),
            (delta(10, &[run(0, 2, b"ab"), run(2, 1, b"c")]), "touching"),
            (delta(10, &[run(0, 4, b"ab")]), "inside a run"),
            (too_many, "more runs"),
            (
                [delta(10, &[]), b"x".to_vec()].concat(),
                "after the last run",
            ),
        ];
        for (bytes, why) in cases {
            let e = check(&bytes).unwrap_err();
            assert!(e.contains(why), "{e} is not about {why}");
            assert!(apply(b"base", &bytes, &mut Vec::new()).is_err());
        }
        check(&delta(10, &[run(0, 2, b"ab"), run(3, 1, b"c")])).unwrap();
    }

    proptest! {
        /// Whatever the two states, the delta rebuilds the new one exactly
        /// (or is refused as not worth it), and it is never longer.
        #[test]
        fn a_delta_rebuilds_the_new_state(
            base in proptest::collection::vec(any::<u8>(), 0..2000),
            edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..20),
            new_len in 0usize..2400,
        ) {
            let mut new: Vec<u8> = base.iter().copied().cycle().take(new_len).collect();
            if base.is_empty() {
                new = vec![0; new_len];
            }
            for (at, b) in edits {
                if !new.is_empty() {
                    let i = usize::from(at) % new.len();
                    new[i] = b;
                }
            }
            let mut delta = Vec::new();
            if diff(&base, &new, &mut delta) {
                prop_assert!(delta.len() < new.len());
                check(&delta).unwrap();
                let mut out = Vec::new();
                apply(&base, &delta, &mut out).unwrap();
                prop_assert_eq!(out, new);
            } else {
                prop_assert!(delta.is_empty());
            }
        }
    }
}
