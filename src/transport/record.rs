//! The TLS 1.3 record layer of an encrypted migration stream, after the
//! handshake: each direction sealed with its own traffic key, so a stream
//! splits into a writer and a reader that never share a lock.
//!
//! rustls runs the handshake ([`super::tls`]); once both ends have proved
//! the one-time key over its exporter, each end takes the negotiated traffic
//! secrets out of rustls (`dangerous_extract_secrets`, the kTLS interface)
//! and from there on seals and opens ordinary TLS 1.3 application-data
//! records (RFC 8446 §5.2) itself, with the same AEAD (aws-lc-rs: AES-GCM
//! with AES-NI/VAES). Why not keep the rustls connection: one connection
//! object serves both directions, and the engine reads replies on stream 0
//! on one thread while another writes pages on it; behind one lock, a
//! blocked read would stall the writer.
//!
//! ```text
//! +------+-----------+-------------+------------------------------+---------+
//! | 0x17 | 0x03 0x03 | length u16be| AEAD(data ‖ 0x17)            | tag[16] |
//! +------+-----------+-------------+------------------------------+---------+
//!   type   legacy version  = ciphertext + 16 ≤ MAX_CIPHERTEXT
//! nonce = iv XOR (0^4 ‖ seq u64be); AAD = the 5-byte header; seq counts
//! records per direction from the value rustls hands over.
//! ```
//!
//! Only application data is accepted after the handshake: the server sends
//! no session tickets ([`super::tls`] turns them off) and neither end sends
//! KeyUpdate, so any other inner content type is refused. A direction
//! refuses to seal or open more than [`RECORD_LIMIT`] records (RFC 8446
//! §5.5's bound for AES-GCM, rounded down): at full 16 KiB records that is
//! 256 GiB per stream and direction, far beyond one migration's rounds.

use aws_lc_rs::aead::{
    AES_128_GCM, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey,
};
use rustls::ConnectionTrafficSecrets;

/// Length of a record header.
pub const HEADER_LEN: usize = 5;
/// Largest plaintext in one record (2^14, RFC 8446 §5.1).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// Largest ciphertext a peer may announce: the plaintext, its content-type
/// byte and the tag. RFC 8446 allows 256 bytes more for padding; these
/// agents never pad, so a longer record is refused before it is read.
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 1 + TAG_LEN;
/// Records sealed or opened per direction before the key is worn out.
pub const RECORD_LIMIT: u64 = 1 << 24;

const APPLICATION_DATA: u8 = 0x17;
const LEGACY_VERSION: [u8; 2] = [0x03, 0x03];

/// Why a record cannot be sealed or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record type {0:#04x} where encrypted application data (0x17) was expected")]
    Type(u8),
    #[error("record version {0:#06x} where 0x0303 was expected")]
    Version(u16),
    #[error("record of {0} bytes, more than {MAX_CIPHERTEXT}")]
    TooLong(usize),
    #[error("record of {0} bytes, shorter than its tag")]
    TooShort(usize),
    #[error("record failed authentication (corrupted, or not from the peer that shook hands)")]
    Decrypt,
    #[error("inner content type {0:#04x} after the handshake (only application data is allowed)")]
    Content(u8),
    #[error("the stream's key reached its limit of {RECORD_LIMIT} records")]
    Exhausted,
    #[error("the negotiated key has the wrong length")]
    Key,
}

/// One direction's AEAD key, fixed IV and record counter.
pub struct Direction {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Direction {
    /// The direction rustls negotiated, continuing at record `seq`.
    pub fn new(seq: u64, secrets: &ConnectionTrafficSecrets) -> Result<Self, RecordError> {
        let (alg, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&CHACHA20_POLY1305, key, iv),
            _ => return Err(RecordError::Key),
        };
        let key = UnboundKey::new(alg, key.as_ref()).map_err(|_| RecordError::Key)?;
        let iv: [u8; NONCE_LEN] = iv.as_ref().try_into().map_err(|_| RecordError::Key)?;
        Ok(Direction {
            key: LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// A direction from raw key bytes (AES-128-GCM for 16 bytes, AES-256-GCM
    /// for 32): tests, benches and fuzz targets.
    pub fn from_raw(key: &[u8], iv: [u8; NONCE_LEN]) -> Result<Self, RecordError> {
        let alg = match key.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            _ => return Err(RecordError::Key),
        };
        let key = UnboundKey::new(alg, key).map_err(|_| RecordError::Key)?;
        Ok(Direction {
            key: LessSafeKey::new(key),
            iv,
            seq: 0,
        })
    }

    fn next_nonce(&mut self) -> Result<Nonce, RecordError> {
        if self.seq >= RECORD_LIMIT {
            return Err(RecordError::Exhausted);
        }
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        self.seq += 1;
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// Seals `data` (at most [`MAX_PLAINTEXT`] bytes) as one record into
    /// the start of `out`, which must hold at least [`sealed_len`]`(data.len())`
    /// bytes; returns that length. The cipher reads `data` where it is and
    /// writes the ciphertext straight into `out` (no copy of the plaintext
    /// first), the content-type byte sealed after it.
    pub fn seal_into(&mut self, data: &[u8], out: &mut [u8]) -> Result<usize, RecordError> {
        debug_assert!(data.len() <= MAX_PLAINTEXT);
        let total = sealed_len(data.len());
        if out.len() < total {
            return Err(RecordError::TooShort(out.len()));
        }
        let header = header(total - HEADER_LEN);
        let nonce = self.next_nonce()?;
        let (head, rest) = out[..total].split_at_mut(HEADER_LEN);
        head.copy_from_slice(&header);
        let (body, type_and_tag) = rest.split_at_mut(data.len());
        self.key
            .seal_out_of_place_scatter(
                nonce,
                Aad::from(header),
                data,
                body,
                &[APPLICATION_DATA],
                type_and_tag,
            )
            .map_err(|_| RecordError::Exhausted)?;
        Ok(total)
    }

    /// Appends `data` (at most [`MAX_PLAINTEXT`] bytes) to `out` as one
    /// sealed record.
    pub fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        let at = out.len();
        out.resize(at + sealed_len(data.len()), 0);
        self.seal_into(data, &mut out[at..]).map(|_| ())
    }

    /// Opens one whole record (header and body) in place; returns the range
    /// of `record` that holds its plaintext.
    pub fn open(&mut self, record: &mut [u8]) -> Result<std::ops::Range<usize>, RecordError> {
        let len = whole(record)?;
        let mut aad = [0u8; HEADER_LEN];
        aad.copy_from_slice(&record[..HEADER_LEN]);
        let nonce = self.next_nonce()?;
        let plain = self
            .key
            .open_in_place(
                nonce,
                Aad::from(aad),
                &mut record[HEADER_LEN..HEADER_LEN + len],
            )
            .map_err(|_| RecordError::Decrypt)?;
        Ok(HEADER_LEN..HEADER_LEN + content_len(plain)?)
    }

    /// Opens one whole record (header and body) into the start of `out`,
    /// which must hold at least the record's body less its tag (the
    /// plaintext and its content-type byte); returns the plaintext's length.
    /// The cipher reads the record where it is and writes the plaintext
    /// straight into `out`. On an error, `out` may hold bytes that failed
    /// authentication: the caller must not use them.
    pub fn open_into(&mut self, record: &[u8], out: &mut [u8]) -> Result<usize, RecordError> {
        let len = whole(record)?;
        let inner = len - TAG_LEN;
        if out.len() < inner {
            return Err(RecordError::TooShort(out.len()));
        }
        let (body, tag) = record[HEADER_LEN..].split_at(inner);
        let nonce = self.next_nonce()?;
        let mut aad = [0u8; HEADER_LEN];
        aad.copy_from_slice(&record[..HEADER_LEN]);
        self.key
            .open_separate_gather(nonce, Aad::from(aad), body, tag, &mut out[..inner])
            .map_err(|_| RecordError::Decrypt)?;
        content_len(&out[..inner])
    }
}

/// Bytes one record of `data_len` plaintext bytes takes on the wire.
pub const fn sealed_len(data_len: usize) -> usize {
    HEADER_LEN + data_len + 1 + TAG_LEN
}

/// The body length of `record`, which must be exactly one whole record.
fn whole(record: &[u8]) -> Result<usize, RecordError> {
    let len = body_len(record)?;
    if record.len() != HEADER_LEN + len {
        return Err(RecordError::TooShort(record.len()));
    }
    Ok(len)
}

/// The length of the content in an opened inner plaintext, which ends with
/// its content type after any zeros.
fn content_len(plain: &[u8]) -> Result<usize, RecordError> {
    let Some(last) = plain.iter().rposition(|&b| b != 0) else {
        return Err(RecordError::Content(0));
    };
    if plain[last] != APPLICATION_DATA {
        return Err(RecordError::Content(plain[last]));
    }
    Ok(last)
}

fn header(len: usize) -> [u8; HEADER_LEN] {
    let l = (len as u16).to_be_bytes();
    [
        APPLICATION_DATA,
        LEGACY_VERSION[0],
        LEGACY_VERSION[1],
        l[0],
        l[1],
    ]
}

/// Validates a record header (the first [`HEADER_LEN`] bytes of `buf`) and
/// returns the length of the body that follows it. Total: any input yields a
/// length within bounds or a typed error.
pub fn body_len(buf: &[u8]) -> Result<usize, RecordError> {
    if buf.len() < HEADER_LEN {
        return Err(RecordError::TooShort(buf.len()));
    }
    if buf[0] != APPLICATION_DATA {
        return Err(RecordError::Type(buf[0]));
    }
    if buf[1..3] != LEGACY_VERSION {
        return Err(RecordError::Version(u16::from_be_bytes([buf[1], buf[2]])));
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if len > MAX_CIPHERTEXT {
        return Err(RecordError::TooLong(len));
    }
    if len < TAG_LEN + 1 {
        return Err(RecordError::TooShort(len));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Direction, Direction) {
        let key = [7u8; 16];
        let iv = [3u8; NONCE_LEN];
        (
            Direction::from_raw(&key, iv).unwrap(),
            Direction::from_raw(&key, iv).unwrap(),
        )
    }

    #[test]
    fn records_round_trip_and_hide_their_plaintext() {
        let (mut tx, mut rx) = pair();
        let mut out = Vec::new();
        let marker = b"MARKER-in-guest-memory".repeat(100);
        tx.seal(&marker, &mut out).unwrap();
        tx.seal(b"", &mut out).unwrap();
        let first = HEADER_LEN + body_len(&out).unwrap();
        assert!(!out.windows(6).any(|w| w == b"MARKER"));
        let (a, b) = out.split_at_mut(first);
        let r = rx.open(a).unwrap();
        assert_eq!(&a[r], &marker[..]);
        let r = rx.open(b).unwrap();
        assert!(r.is_empty());
    }

    #[test]
    fn records_open_into_another_buffer_as_they_open_in_place() {
        let (mut tx, mut rx) = pair();
        let data: Vec<u8> = (0..MAX_PLAINTEXT).map(|i| (i * 31 % 256) as u8).collect();
        let mut wire = vec![0u8; sealed_len(data.len()) + sealed_len(7)];
        let n = tx.seal_into(&data, &mut wire).unwrap();
        assert_eq!(n, sealed_len(data.len()));
        assert_eq!(
            tx.seal_into(b"too big", &mut [0u8; 20]),
            Err(RecordError::TooShort(20))
        );
        let m = tx.seal_into(b"seventh", &mut wire[n..]).unwrap();
        // The first into a separate buffer, the second in place.
        let mut out = vec![0u8; MAX_PLAINTEXT + 1];
        assert_eq!(
            rx.open_into(&wire[..n], &mut out[..100]),
            Err(RecordError::TooShort(100))
        );
        assert_eq!(rx.open_into(&wire[..n], &mut out).unwrap(), data.len());
        assert!(out[..data.len()] == data[..]);
        let r = rx.open(&mut wire[n..n + m]).unwrap();
        assert_eq!(&wire[n..][r], b"seventh");
    }

    #[test]
    fn a_record_bent_in_transit_does_not_open_into_a_buffer() {
        let (mut tx, mut rx) = pair();
        let mut wire = Vec::new();
        tx.seal(b"guest page bytes", &mut wire).unwrap();
        wire[HEADER_LEN + 3] ^= 0x80;
        let mut out = [0u8; 64];
        assert_eq!(rx.open_into(&wire, &mut out), Err(RecordError::Decrypt));
    }

    #[test]
    fn a_flipped_bit_a_replayed_or_reordered_record_is_refused() {
        let (mut tx, mut rx) = pair();
        let mut one = Vec::new();
        tx.seal(b"first", &mut one).unwrap();
        let mut two = Vec::new();
        tx.seal(b"second", &mut two).unwrap();
        // Out of order: the second record under the first sequence number.
        assert_eq!(rx.open(&mut two.clone()), Err(RecordError::Decrypt));
        let (_, mut rx) = pair();
        let mut bad = one.clone();
        bad[HEADER_LEN + 1] ^= 1;
        assert_eq!(rx.open(&mut bad), Err(RecordError::Decrypt));
        let (_, mut rx) = pair();
        rx.open(&mut one.clone()).unwrap();
        // Replayed: the first record again, now at sequence 1.
        assert_eq!(rx.open(&mut one), Err(RecordError::Decrypt));
    }

    #[test]
    fn headers_are_checked_before_any_byte_of_the_body_is_read() {
        assert_eq!(body_len(&[0x16, 3, 3, 0, 40]), Err(RecordError::Type(0x16)));
        assert_eq!(
            body_len(&[0x17, 3, 1, 0, 40]),
            Err(RecordError::Version(0x0301))
        );
        assert_eq!(
            body_len(&[0x17, 3, 3, 0xff, 0xff]),
            Err(RecordError::TooLong(0xffff))
        );
        assert_eq!(body_len(&[0x17, 3, 3, 0, 3]), Err(RecordError::TooShort(3)));
        assert_eq!(body_len(&[0x17, 3, 3, 0, 17]), Ok(17));
    }
}
