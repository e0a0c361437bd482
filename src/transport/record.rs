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

    /// Appends `data` (at most [`MAX_PLAINTEXT`] bytes) to `out` as one
    /// sealed record.
    pub fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        debug_assert!(data.len() <= MAX_PLAINTEXT);
        let len = data.len() + 1 + TAG_LEN;
        let header = header(len);
        let nonce = self.next_nonce()?;
        out.extend_from_slice(&header);
        let body = out.len();
        out.extend_from_slice(data);
        out.push(APPLICATION_DATA);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[body..])
            .map_err(|_| RecordError::Exhausted)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens one whole record (header and body) in place; returns the range
    /// of `record` that holds its plaintext.
    pub fn open(&mut self, record: &mut [u8]) -> Result<std::ops::Range<usize>, RecordError> {
        let len = body_len(record)?;
        if record.len() != HEADER_LEN + len {
            return Err(RecordError::TooShort(record.len()));
        }
        let mut aad = [0u8; HEADER_LEN];
        aad.copy_from_slice(&record[..HEADER_LEN]);
        let nonce = self.next_nonce()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut record[HEADER_LEN..])
            .map_err(|_| RecordError::Decrypt)?;
        // The inner plaintext ends with its content type, after any zeros.
        let Some(last) = plain.iter().rposition(|&b| b != 0) else {
            return Err(RecordError::Content(0));
        };
        if plain[last] != APPLICATION_DATA {
            return Err(RecordError::Content(plain[last]));
        }
        Ok(HEADER_LEN..HEADER_LEN + last)
    }
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
