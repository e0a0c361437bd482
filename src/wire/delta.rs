//! Delta encoding of a page against the copy the receiver already holds:
//! XOR the two, then zero-run encode the XOR.
//!
//! ```text
//! payload = record*            (empty payload: the page did not change)
//! record  = skip:u16 count:u16 xor[count]
//!           │        │         └ new ^ old for the `count` bytes that follow
//!           │        └ 1..=4096 bytes that differ (short equal gaps included)
//!           └ bytes left unchanged since the end of the previous record
//! ```
//!
//! Bytes after the last record are unchanged. Two differing stretches
//! separated by at most [`RECORD_OVERHEAD`] equal bytes share one record,
//! since a new record would cost as much as the gap.

use super::limits::{PAGE_SIZE, Page};

/// What is wrong with a delta payload (the page decoder names it as a
/// `PageError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaError {
    /// A record is cut short.
    Truncated,
    /// A record writes outside the page.
    OutOfPage,
}

/// Bytes of a record's prefix (skip and count).
pub const RECORD_OVERHEAD: usize = 4;

fn word(page: &Page, at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&page[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// First index at or after `from` where the pages differ, compared a word at
/// a time.
fn next_difference(new: &Page, old: &Page, from: usize) -> Option<usize> {
    let mut i = from;
    while i < PAGE_SIZE && !i.is_multiple_of(8) {
        if new[i] != old[i] {
            return Some(i);
        }
        i += 1;
    }
    while i < PAGE_SIZE {
        let x = word(new, i) ^ word(old, i);
        if x != 0 {
            // Little-endian load: the lowest set byte is the lowest address.
            return Some(i + (x.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    None
}

/// Appends the delta from `old` to `new` to `out` and returns its length, or
/// returns `None` (leaving `out` as it was) as soon as it would exceed
/// `limit` bytes.
pub fn encode_delta(new: &Page, old: &Page, out: &mut Vec<u8>, limit: usize) -> Option<usize> {
    let start = out.len();
    let mut pos = 0;
    while let Some(first) = next_difference(new, old, pos) {
        // Extend the record while equal gaps stay short.
        let mut end = first + 1;
        let mut i = end;
        while i < PAGE_SIZE && i - end <= RECORD_OVERHEAD {
            if new[i] != old[i] {
                end = i + 1;
            }
            i += 1;
        }
        let count = end - first;
        if out.len() - start + RECORD_OVERHEAD + count > limit {
            out.truncate(start);
            return None;
        }
        out.extend_from_slice(&((first - pos) as u16).to_le_bytes());
        out.extend_from_slice(&(count as u16).to_le_bytes());
        out.extend(
            new[first..end]
                .iter()
                .zip(&old[first..end])
                .map(|(a, b)| a ^ b),
        );
        pos = end;
    }
    Some(out.len() - start)
}

/// Walks the records of `payload`, calling `apply(offset, xor_bytes)` for
/// each, after checking that every record lies inside the page.
fn walk(payload: &[u8], mut apply: impl FnMut(usize, &[u8])) -> Result<(), DeltaError> {
    let mut rest = payload;
    let mut pos = 0usize;
    while !rest.is_empty() {
        let Some((prefix, tail)) = rest.split_first_chunk::<RECORD_OVERHEAD>() else {
            return Err(DeltaError::Truncated);
        };
        let skip = usize::from(u16::from_le_bytes([prefix[0], prefix[1]]));
        let count = usize::from(u16::from_le_bytes([prefix[2], prefix[3]]));
        pos += skip;
        if pos + count > PAGE_SIZE {
            return Err(DeltaError::OutOfPage);
        }
        if tail.len() < count {
            return Err(DeltaError::Truncated);
        }
        let (xor, tail) = tail.split_at(count);
        apply(pos, xor);
        pos += count;
        rest = tail;
    }
    Ok(())
}

/// Applies a delta to `dest`, which holds the copy the delta was computed
/// against. The payload is checked completely before `dest` is touched, so a
/// malformed delta leaves `dest` unchanged.
pub fn apply_delta(payload: &[u8], dest: &mut Page) -> Result<(), DeltaError> {
    walk(payload, |_, _| {})?;
    walk(payload, |at, xor| {
        for (d, x) in dest[at..at + xor.len()].iter_mut().zip(xor) {
            *d ^= x;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(fill: u8) -> Box<Page> {
        Box::new([fill; PAGE_SIZE])
    }

    #[test]
    fn unchanged_page_is_an_empty_delta() {
        let old = page(7);
        let mut out = Vec::new();
        assert_eq!(encode_delta(&old, &old, &mut out, PAGE_SIZE), Some(0));
        let mut dest = old.clone();
        apply_delta(&out, &mut dest).unwrap();
        assert_eq!(dest, old);
    }

    #[test]
    fn one_changed_word_costs_one_record() {
        let old = page(1);
        let mut new = old.clone();
        new[100..108].copy_from_slice(b"changed!");
        let mut out = Vec::new();
        assert_eq!(
            encode_delta(&new, &old, &mut out, PAGE_SIZE),
            Some(RECORD_OVERHEAD + 8)
        );
        assert_eq!(&out[..4], &[100, 0, 8, 0]);
        let mut dest = old.clone();
        apply_delta(&out, &mut dest).unwrap();
        assert_eq!(dest, new);
    }

    #[test]
    fn short_gaps_merge_into_one_record_and_long_gaps_split() {
        let old = page(0);
        let mut new = old.clone();
        new[10] = 1;
        new[15] = 1; // gap of 4 equal bytes: merged
        new[30] = 1; // gap of 14: new record
        new[4095] = 9; // last byte
        let mut out = Vec::new();
        let n = encode_delta(&new, &old, &mut out, PAGE_SIZE).unwrap();
        assert_eq!(n, (4 + 6) + (4 + 1) + (4 + 1));
        let mut dest = old.clone();
        apply_delta(&out, &mut dest).unwrap();
        assert_eq!(dest, new);
    }

    #[test]
    fn gives_up_beyond_the_limit_and_leaves_out_untouched() {
        let old = page(0);
        let new = page(0xff);
        let mut out = vec![42];
        assert_eq!(encode_delta(&new, &old, &mut out, 100), None);
        assert_eq!(out, vec![42]);
    }

    #[test]
    fn malformed_deltas_are_refused_without_touching_dest() {
        let mut dest = page(3);
        assert_eq!(apply_delta(&[0, 0], &mut dest), Err(DeltaError::Truncated));
        assert_eq!(
            apply_delta(&[0, 0, 4, 0, 1], &mut dest),
            Err(DeltaError::Truncated)
        );
        // A good record first, then one running past the page end.
        let bad = [0, 0, 1, 0, 0xff, 0xff, 0x0f, 2, 0, 1, 1];
        assert_eq!(apply_delta(&bad, &mut dest), Err(DeltaError::OutOfPage));
        assert_eq!(dest, page(3));
    }
}
