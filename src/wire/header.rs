//! The fixed frame header, its checksum, and the versioning rule.
//!
//! ```text
//!  0       4       6   7   8       12      16              24
//!  ┌───────┬───────┬───┬───┬───────┬───────┬───────────────┐
//!  │ magic │version│knd│flg│length │ crc32 │   sequence    │  then `length` payload bytes
//!  │"LPMW" │  u16  │u8 │u8 │  u32  │  u32  │      u64      │
//!  └───────┴───────┴───┴───┴───────┴───────┴───────────────┘
//! ```
//!
//! All integers are little-endian and unaligned (the header is read in place
//! through `zerocopy`). The CRC32 covers the 24 header bytes with the `crc32`
//! field taken as zero, followed by the payload. On a stream that
//! authenticates every byte itself (TLS 1.3) the field is zero and unchecked:
//! see [`Integrity`].

use super::error::WireError;
pub use super::kind::FrameKind;
pub use super::limits::HEADER_LEN;
use super::{PREVIOUS_PROTOCOL_VERSION, PROTOCOL_VERSION};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"LPMW";

/// Byte range of the `crc32` field inside the header.
const CRC_RANGE: std::ops::Range<usize> = 12..16;

/// The fixed header that starts every frame, read in place from the receive
/// buffer.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FrameHeader {
    /// [`MAGIC`]: `LPMW`.
    pub magic: [u8; 4],
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: U16,
    /// The [`FrameKind`] byte.
    pub kind: u8,
    /// Reserved: no flag is defined in this version, so it must be zero.
    pub flags: u8,
    /// Payload length in bytes, not counting the header.
    pub length: U32,
    /// CRC32C of the header (with this field zero) and the payload.
    pub crc: U32,
    /// Per-stream frame counter: 0 for the first frame, then +1 per frame.
    pub sequence: U64,
}

const _: () = assert!(std::mem::size_of::<FrameHeader>() == HEADER_LEN);

impl std::fmt::Display for FrameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The versioning rule: a receiver accepts frames of its own
/// [`PROTOCOL_VERSION`] and of the version just before it
/// ([`PREVIOUS_PROTOCOL_VERSION`]), and refuses every other version with an
/// error that names both sides' versions. Version 0 is the pre-release
/// layout, identical to version 1; when a later version changes a layout,
/// the payload parsers branch on the version accepted here.
pub fn check_version(theirs: u16) -> Result<u16, WireError> {
    if theirs == PROTOCOL_VERSION || theirs == PREVIOUS_PROTOCOL_VERSION {
        Ok(theirs)
    } else {
        Err(WireError::UnsupportedVersion {
            theirs,
            ours: PROTOCOL_VERSION,
        })
    }
}

/// What protects a stream's frames against corruption in transit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Integrity {
    /// Every frame carries the CRC32 of itself, checked on receipt: the
    /// frames cross in clear (`--insecure-plaintext`, or any other byte
    /// stream).
    #[default]
    Checksummed,
    /// The stream under the frames authenticates every byte (TLS 1.3: a
    /// 128-bit AEAD tag per record, which fails on any change, loss, replay
    /// or reordering), so the `crc32` field is zero and is not checked. A
    /// CRC would only recheck what the tag proved, at the price of another
    /// pass over every page on both ends. Chosen from the stream the frames
    /// travel on, never from anything the peer sends.
    Authenticated,
}

/// CRC32 of a whole frame (header then payload) with the crc field as zero.
pub(crate) fn frame_crc(header: &[u8; HEADER_LEN], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..CRC_RANGE.start]);
    hasher.update(&[0; 4]);
    hasher.update(&header[CRC_RANGE.end..]);
    hasher.update(payload);
    hasher.finalize()
}

/// Fills in the header of `frame` (its first [`HEADER_LEN`] bytes, followed
/// by the payload) and, on a checksummed stream, its checksum. `frame` must
/// be at least a header long and its payload must fit the kind's bound (the
/// callers check).
pub(crate) fn seal(frame: &mut [u8], kind: FrameKind, sequence: u64, integrity: Integrity) {
    let (head, payload) = frame.split_at_mut(HEADER_LEN);
    let header = FrameHeader {
        magic: MAGIC,
        version: U16::new(PROTOCOL_VERSION),
        kind: kind as u8,
        flags: 0,
        length: U32::new(payload.len() as u32),
        crc: U32::new(0),
        sequence: U64::new(sequence),
    };
    head.copy_from_slice(header.as_bytes());
    if integrity == Integrity::Checksummed {
        let head: &mut [u8; HEADER_LEN] = head.try_into().expect("split at HEADER_LEN");
        let crc = frame_crc(head, payload);
        head[CRC_RANGE].copy_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_the_drawing() {
        let mut frame = vec![0u8; HEADER_LEN + 3];
        frame[HEADER_LEN..].copy_from_slice(b"abc");
        seal(
            &mut frame,
            FrameKind::Keepalive,
            0x0102_0304_0506_0708,
            Integrity::Checksummed,
        );
        assert_eq!(&frame[0..4], b"LPMW");
        assert_eq!(&frame[4..6], &PROTOCOL_VERSION.to_le_bytes());
        assert_eq!(frame[6], 8);
        assert_eq!(frame[7], 0);
        assert_eq!(&frame[8..12], &3u32.to_le_bytes());
        assert_eq!(&frame[16..24], &0x0102_0304_0506_0708u64.to_le_bytes());
        let (header, rest) = FrameHeader::ref_from_prefix(&frame).unwrap();
        assert_eq!(rest, b"abc");
        let head: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
        assert_eq!(header.crc.get(), frame_crc(&head, b"abc"));
    }

    #[test]
    fn accepts_own_and_previous_version_only() {
        assert_eq!(check_version(PROTOCOL_VERSION), Ok(PROTOCOL_VERSION));
        assert!(check_version(PREVIOUS_PROTOCOL_VERSION).is_ok());
        let err = check_version(PROTOCOL_VERSION + 1).unwrap_err();
        assert_eq!(
            err,
            WireError::UnsupportedVersion {
                theirs: PROTOCOL_VERSION + 1,
                ours: PROTOCOL_VERSION
            }
        );
        let text = err.to_string();
        assert!(text.contains(&(PROTOCOL_VERSION + 1).to_string()));
        assert!(text.contains(&PROTOCOL_VERSION.to_string()));
    }
}
