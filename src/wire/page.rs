//! Per-page encodings and the choice between them.
//!
//! | encoding | payload | used when |
//! |---|---|---|
//! | `Zero`  | none | every byte is zero (a zero page is never sent as data) |
//! | `Raw`   | the 4096 bytes | nothing else is smaller |
//! | `Lz4`   | `lz4_flex` block, decompresses to 4096 bytes | it is at most [`LZ4_MAX_PAYLOAD`] bytes |
//! | `Delta` | XOR against the receiver's copy, zero-run encoded (see [`super::delta`]) | the sender passed the copy it sent in an earlier round, and it is smaller |

use super::delta::{self, DeltaError};
pub use super::limits::{PAGE_SIZE, Page};
use thiserror::Error;

/// LZ4 is used only when the compressed page is at most this long (3/4 of a
/// page). Why: a smaller saving does not pay for itself on a fast path. At
/// 10 Gbit/s a 4 KiB page takes ~3.3 µs of wire time, so saving a quarter
/// buys ~0.8 µs, about what decompressing a page costs the receiver on its
/// critical path; below that the receiver, not the wire, becomes the limit.
/// Text-like pages compress far below this; random pages never reach it.
pub const LZ4_MAX_PAYLOAD: usize = PAGE_SIZE * 3 / 4;

/// A delta this small is taken without trying LZ4: the most LZ4 could
/// save is these bytes (0.4 µs of wire time at 10 Gbit/s), less than an
/// LZ4 attempt on a page costs the sender (1 to 3 µs measured), so hot
/// pages that change a little stay cheap to send.
pub const DELTA_GOOD_ENOUGH: usize = PAGE_SIZE / 8;

/// Every `SAMPLE_STRIDE`-th byte is sampled to guess whether LZ4 can pay.
const SAMPLE_STRIDE: usize = 16;

/// Sum of squared byte counts over the 256 samples below which a page looks
/// uniformly random. Uniform bytes give about 511; text-like pages (a few
/// dozen symbols) give over 2000, a half-zero page over 16000.
const UNIFORM_COLLISIONS: u32 = 768;

/// Whether `page` looks incompressible (bytes spread evenly over all 256
/// values), judged from a sample in about a tenth of an LZ4 attempt. A
/// page it misjudges is still sent correctly, only raw.
pub fn looks_incompressible(page: &Page) -> bool {
    let mut counts = [0u16; 256];
    for &byte in page.iter().step_by(SAMPLE_STRIDE) {
        counts[usize::from(byte)] += 1;
    }
    let collisions: u32 = counts.iter().map(|&c| u32::from(c) * u32::from(c)).sum();
    collisions < UNIFORM_COLLISIONS
}

/// Worst-case LZ4 block size of one page.
const LZ4_SCRATCH: usize = lz4_flex::block::get_maximum_output_size(PAGE_SIZE);

/// How one page travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// An all-zero page: no payload.
    Zero = 0,
    /// The page's 4096 bytes as they are.
    Raw = 1,
    /// An LZ4 block that decompresses to the page.
    Lz4 = 2,
    /// Changes against the copy the receiver already holds.
    Delta = 3,
}

impl Encoding {
    /// Every encoding, in byte order.
    pub const ALL: [Encoding; 4] = [
        Encoding::Zero,
        Encoding::Raw,
        Encoding::Lz4,
        Encoding::Delta,
    ];

    /// The encoding a byte on the wire names, if any.
    pub fn from_u8(byte: u8) -> Option<Encoding> {
        Encoding::ALL.into_iter().find(|e| *e as u8 == byte)
    }

    /// Whether `len` is a possible payload length for this encoding. Checked
    /// when a batch is parsed, so a receiver's iterator only yields pages
    /// whose length is plausible.
    pub fn accepts_len(self, len: usize) -> bool {
        match self {
            Encoding::Zero => len == 0,
            Encoding::Raw => len == PAGE_SIZE,
            Encoding::Lz4 => (1..=PAGE_SIZE).contains(&len),
            Encoding::Delta => len <= PAGE_SIZE,
        }
    }

    /// The encoding's name (for errors and statistics).
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Zero => "zero",
            Encoding::Raw => "raw",
            Encoding::Lz4 => "LZ4",
            Encoding::Delta => "delta",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a page payload could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PageError {
    #[error("a zero page carries {len} payload bytes instead of none")]
    /// A zero page with a payload.
    ZeroWithPayload {
        /// The payload length found.
        len: usize,
    },
    #[error("a raw page carries {len} bytes instead of 4096")]
    /// A raw page of the wrong length.
    RawLength {
        /// The payload length found.
        len: usize,
    },
    #[error("the LZ4 block is corrupt")]
    /// The LZ4 block does not decompress.
    Lz4Corrupt,
    #[error("the LZ4 block decompresses to {len} bytes instead of 4096")]
    /// The LZ4 block decompresses to the wrong length.
    Lz4Length {
        /// The decompressed length.
        len: usize,
    },
    #[error("a delta record ends before its declared length")]
    /// A delta record is cut short.
    DeltaTruncated,
    #[error("a delta record reaches beyond the end of the page")]
    /// A delta record writes outside the page.
    DeltaOutOfPage,
}

impl From<DeltaError> for PageError {
    fn from(e: DeltaError) -> Self {
        match e {
            DeltaError::Truncated => PageError::DeltaTruncated,
            DeltaError::OutOfPage => PageError::DeltaOutOfPage,
        }
    }
}

/// Whether every byte of `page` is zero, checked 64 bytes at a time with
/// word-wise ORs (the compiler vectorises the inner loop).
pub fn is_zero_page(page: &Page) -> bool {
    page.chunks_exact(64).all(|block| {
        block.chunks_exact(8).fold(0u64, |acc, w| {
            acc | u64::from_ne_bytes(w.try_into().expect("8-byte chunk"))
        }) == 0
    })
}

/// Appends the cheapest encoding of `new` to `out` and says which it is.
///
/// `previous` is the copy of this page that the receiver holds (the one sent
/// in an earlier round), if the sender kept it; `Delta` is only possible
/// with it. `new` must not change during the call: when the guest is still
/// running, copy the page out of guest memory first (that bounce copy is
/// also what the sender keeps as the next round's `previous`).
pub fn encode_page(new: &Page, previous: Option<&Page>, out: &mut Vec<u8>) -> Encoding {
    encode_page_with(new, previous, true, out)
}

/// [`encode_page`], with LZ4 allowed or not. A sender whose path is faster
/// than it can compress turns LZ4 off: the attempt would cost more time
/// than the bytes it saves take on the wire.
pub fn encode_page_with(
    new: &Page,
    previous: Option<&Page>,
    lz4: bool,
    out: &mut Vec<u8>,
) -> Encoding {
    if is_zero_page(new) {
        return Encoding::Zero;
    }
    let start = out.len();
    let mut best = (Encoding::Raw, PAGE_SIZE);
    if let Some(old) = previous
        && let Some(len) = delta::encode_delta(new, old, out, PAGE_SIZE - 1)
    {
        if len <= DELTA_GOOD_ENOUGH {
            return Encoding::Delta;
        }
        best = (Encoding::Delta, len);
    }
    // LZ4 goes after the delta (if any) and replaces it only when smaller.
    if lz4 && !looks_incompressible(new) {
        let lz_start = out.len();
        let limit = LZ4_MAX_PAYLOAD.min(best.1 - 1);
        out.resize(lz_start + LZ4_SCRATCH, 0);
        match lz4_flex::block::compress_into(new, &mut out[lz_start..]) {
            Ok(len) if len <= limit => {
                out.copy_within(lz_start..lz_start + len, start);
                out.truncate(start + len);
                return Encoding::Lz4;
            }
            _ => out.truncate(lz_start),
        }
    }
    if best.0 == Encoding::Delta {
        return Encoding::Delta;
    }
    out.extend_from_slice(new);
    Encoding::Raw
}

/// Reproduces a page from its payload into `dest`. For `Delta`, `dest` must
/// hold the copy the delta was computed against (the receiver's current
/// page). On error the migration must be aborted: an LZ4 error may have
/// overwritten part of `dest` (other encodings leave it untouched).
pub fn decode_page(encoding: Encoding, payload: &[u8], dest: &mut Page) -> Result<(), PageError> {
    match encoding {
        Encoding::Zero if payload.is_empty() => {
            dest.fill(0);
            Ok(())
        }
        Encoding::Zero => Err(PageError::ZeroWithPayload { len: payload.len() }),
        Encoding::Raw => {
            let raw: &Page = payload
                .try_into()
                .map_err(|_| PageError::RawLength { len: payload.len() })?;
            dest.copy_from_slice(raw);
            Ok(())
        }
        Encoding::Lz4 => match lz4_flex::block::decompress_into(payload, dest) {
            Ok(PAGE_SIZE) => Ok(()),
            Ok(len) => Err(PageError::Lz4Length { len }),
            Err(_) => Err(PageError::Lz4Corrupt),
        },
        Encoding::Delta => delta::apply_delta(payload, dest).map_err(PageError::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(new: &Page, previous: Option<&Page>) -> (Encoding, usize) {
        let mut out = vec![0xAA; 3]; // encode_page appends
        let enc = encode_page(new, previous, &mut out);
        assert_eq!(&out[..3], &[0xAA; 3]);
        let payload = &out[3..];
        assert!(
            enc.accepts_len(payload.len()),
            "{enc} with {} bytes",
            payload.len()
        );
        let mut dest: Box<Page> = match (enc, previous) {
            (Encoding::Delta, Some(old)) => Box::new(*old),
            _ => Box::new([0x5A; PAGE_SIZE]),
        };
        decode_page(enc, payload, &mut dest).unwrap();
        assert_eq!(&dest[..], &new[..], "{enc} did not reproduce the page");
        (enc, payload.len())
    }

    fn page_from(bytes: &[u8]) -> Box<Page> {
        let mut page = Box::new([0u8; PAGE_SIZE]);
        for (i, b) in page.iter_mut().enumerate() {
            *b = bytes[i % bytes.len()];
        }
        page
    }

    /// Text-like: words from a small vocabulary, as in logs and configs.
    fn text_page(seed: &[u8]) -> Box<Page> {
        const WORDS: [&str; 8] = [
            "lpar ", "memory ", "page ", "the ", "migrate ", "0x4050 ", "host\n", "dirty ",
        ];
        let mut text = Vec::with_capacity(PAGE_SIZE + 16);
        let mut i = 0;
        while text.len() < PAGE_SIZE {
            text.extend_from_slice(
                WORDS[usize::from(seed[i % seed.len()]) % WORDS.len()].as_bytes(),
            );
            i += 1;
        }
        page_from(&text[..PAGE_SIZE])
    }

    #[test]
    fn zero_page_has_no_payload() {
        assert_eq!(round_trip(&[0; PAGE_SIZE], None), (Encoding::Zero, 0));
        assert_eq!(
            round_trip(&[0; PAGE_SIZE], Some(&[1; PAGE_SIZE])),
            (Encoding::Zero, 0)
        );
    }

    #[test]
    fn zero_detection_sees_the_last_byte() {
        let mut page = [0u8; PAGE_SIZE];
        assert!(is_zero_page(&page));
        page[PAGE_SIZE - 1] = 1;
        assert!(!is_zero_page(&page));
    }

    #[test]
    fn text_compresses_with_lz4_below_the_threshold() {
        let (enc, len) = round_trip(&text_page(b"\x01\x05\x02\x07\x03"), None);
        assert_eq!(enc, Encoding::Lz4);
        assert!(len <= LZ4_MAX_PAYLOAD);
    }

    #[test]
    fn incompressible_page_goes_raw() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut page = Box::new([0u8; PAGE_SIZE]);
        for b in page.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        assert_eq!(round_trip(&page, None), (Encoding::Raw, PAGE_SIZE));
    }

    #[test]
    fn only_uniformly_random_pages_skip_the_lz4_attempt() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut random = [0u8; PAGE_SIZE];
        for b in random.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        assert!(looks_incompressible(&random));
        assert!(!looks_incompressible(&text_page(b"\x01\x02\x03")));
        let mut half = random;
        half[..PAGE_SIZE / 2].fill(0);
        assert!(!looks_incompressible(&half));
        let (enc, _) = round_trip(&half, None);
        assert_eq!(enc, Encoding::Lz4);
    }

    #[test]
    fn small_change_to_a_hot_page_goes_as_delta() {
        let old = text_page(b"\x03\x01\x04\x01\x05\x09\x02\x06");
        let mut new = old.clone();
        new[2000..2004].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(round_trip(&new, Some(&old)), (Encoding::Delta, 8));
    }

    #[test]
    fn decoder_refuses_wrong_lengths() {
        let mut dest = [0u8; PAGE_SIZE];
        assert_eq!(
            decode_page(Encoding::Zero, &[0], &mut dest),
            Err(PageError::ZeroWithPayload { len: 1 })
        );
        assert_eq!(
            decode_page(Encoding::Raw, &[0; 10], &mut dest),
            Err(PageError::RawLength { len: 10 })
        );
        let short = lz4_flex::block::compress(&[7u8; 100]);
        assert_eq!(
            decode_page(Encoding::Lz4, &short, &mut dest),
            Err(PageError::Lz4Length { len: 100 })
        );
        assert_eq!(
            decode_page(Encoding::Lz4, &[0xff; 8], &mut dest),
            Err(PageError::Lz4Corrupt)
        );
        let long = lz4_flex::block::compress(&[7u8; PAGE_SIZE + 1]);
        assert_eq!(
            decode_page(Encoding::Lz4, &long, &mut dest),
            Err(PageError::Lz4Corrupt)
        );
    }

    proptest! {
        #[test]
        fn random_pages_round_trip(bytes in proptest::collection::vec(any::<u8>(), PAGE_SIZE)) {
            round_trip(&page_from(&bytes), None);
        }

        #[test]
        fn sparse_pages_round_trip(writes in proptest::collection::vec((0..PAGE_SIZE, any::<u8>()), 0..64)) {
            let mut page = Box::new([0u8; PAGE_SIZE]);
            for (at, b) in writes { page[at] = b; }
            let (enc, _) = round_trip(&page, None);
            prop_assert!(enc != Encoding::Raw || !is_zero_page(&page));
        }

        #[test]
        fn text_pages_round_trip(seed in proptest::collection::vec(any::<u8>(), 1..64)) {
            let (enc, len) = round_trip(&text_page(&seed), None);
            prop_assert_eq!(enc, Encoding::Lz4);
            prop_assert!(len <= LZ4_MAX_PAYLOAD);
        }

        #[test]
        fn small_deltas_round_trip(
            base in proptest::collection::vec(any::<u8>(), 1..512),
            writes in proptest::collection::vec((0..PAGE_SIZE, any::<u8>()), 1..32),
        ) {
            let old = page_from(&base);
            let mut new = old.clone();
            for (at, b) in writes { new[at] = b; }
            let (enc, len) = round_trip(&new, Some(&old));
            if !is_zero_page(&new) {
                prop_assert!(len < PAGE_SIZE, "{} took {} bytes", enc, len);
            }
        }

        #[test]
        fn any_page_against_any_previous_round_trips(
            new in proptest::collection::vec(any::<u8>(), 1..256),
            old in proptest::collection::vec(any::<u8>(), 1..256),
        ) {
            round_trip(&page_from(&new), Some(&page_from(&old)));
        }

        #[test]
        fn decoder_is_total(enc in 0u8..4, payload in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let mut dest = [0u8; PAGE_SIZE];
            let _ = decode_page(Encoding::from_u8(enc).unwrap(), &payload, &mut dest);
        }
    }
}
