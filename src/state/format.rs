//! The binary encoding of a [`DeviceState`]: framing, versioning, checksum
//! and the bounds a reader enforces.
//!
//! ```text
//!  offset  size  field
//! ┌──────┬──────┬──────────────────────────────────────────────────────────┐
//! │    0 │    8 │ magic  "LPMVDEV\0"                                       │
//! │    8 │    2 │ major version (u16 LE)  incompatible changes             │
//! │   10 │    2 │ minor version (u16 LE)  fields appended to the body      │
//! │   12 │    4 │ reserved, zero (u32 LE)                                  │
//! │   16 │    8 │ body length n (u64 LE), at most MAX_ENCODED_BYTES        │
//! ├──────┼──────┼──────────────────────────────────────────────────────────┤
//! │   24 │    n │ body: the DeviceState fields in declaration order,       │
//! │      │      │ little-endian; Vec = u32 count + items; blob = u32       │
//! │      │      │ length + bytes; Option = u8 tag 0/1 + value; bool = u8   │
//! │      │      │ 0/1; enums = u8 code. Minor 1 appends the exact          │
//! │      │      │ hypervisor records (platform, then each vCPU; drawn in   │
//! │      │      │ `state::exact`)                                          │
//! ├──────┼──────┼──────────────────────────────────────────────────────────┤
//! │ 24+n │    4 │ CRC32 (IEEE, crc32fast) over bytes [0, 24+n)             │
//! └──────┴──────┴──────────────────────────────────────────────────────────┘
//! ```
//!
//! Versioning rule, applied in [`decode`]: a reader accepts its own major
//! version with any minor. A newer minor may only append fields to the end
//! of the body, so a reader skips body bytes it does not know *only* when
//! the minor is newer than its own; otherwise leftover body bytes are an
//! error. Another major version is rejected with both versions named.
//! Anything after the CRC is trailing garbage.
//!
//! Checks run in this order: magic, major version, declared length against
//! the bound and the input, CRC, then the body field by field (each count
//! and length against its named bound and against the bytes that remain,
//! before anything is allocated). The decoder never panics and never
//! allocates more than the input it was given.

use super::DeviceState;
use super::body::{Reader, Writer};
use super::error::StateError;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The first 8 bytes of every encoded device state.
pub const MAGIC: [u8; 8] = *b"LPMVDEV\0";
/// Format major version: a reader refuses any other (see the module doc).
pub const FORMAT_MAJOR: u16 = 1;
/// Format minor version: a reader accepts newer minors, skipping what it
/// does not know.
pub const FORMAT_MINOR: u16 = 1;
/// Bytes of the header (magic, versions, reserved, body length).
pub const HEADER_LEN: usize = 24;
/// Bytes of the trailer (CRC32 over header and body).
pub const TRAILER_LEN: usize = 4;

// Bounds. Each exists so that a hostile or corrupt input cannot make the
// decoder allocate without bound; each is set well above what a real LPAR
// has, and the encoder refuses states beyond them so that whatever we write
// we can read back.

/// vCPUs per LPAR. HVM LPARs have at most a few hundred logical CPUs.
pub const MAX_VCPUS: usize = 512;
/// MSRs per vCPU. KVM saves about 60; 256 leaves room for future ones.
pub const MAX_MSRS: usize = 256;
/// XSAVE area per vCPU. With AMX the area is about 11 KiB.
pub const MAX_XSAVE_BYTES: usize = 16 * 1024;
/// Logical NICs per LPAR: VNIC assignment numbers run #0–#15.
pub const MAX_NICS: usize = 16;
/// Logical FC HBA ports per LPAR.
pub const MAX_FC_HBAS: usize = 32;
/// Any single blob (VRAM, NVRAM, MMIO snapshot, PCI configuration). VRAM is
/// the largest at 16 MiB.
pub const MAX_BLOB_BYTES: usize = 16 * 1024 * 1024;
/// The whole body. A stream reader may use it to bound what it buffers
/// before it can call [`decode`].
pub const MAX_ENCODED_BYTES: usize = 64 * 1024 * 1024;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Header {
    magic: [u8; 8],
    major: U16,
    minor: U16,
    reserved: U32,
    body_len: U64,
}

const _: () = assert!(size_of::<Header>() == HEADER_LEN);

/// Reads and checks the header (magic, major version, body length bound)
/// and returns the total length of the encoded state, header and CRC
/// included. Lets a stream reader know how much to read before [`decode`].
pub fn frame_len(prefix: &[u8]) -> Result<usize, StateError> {
    check_header(prefix).map(|(_, body_len)| HEADER_LEN + body_len + TRAILER_LEN)
}

/// Returns (minor version, body length).
fn check_header(bytes: &[u8]) -> Result<(u16, usize), StateError> {
    let Ok((h, _)) = Header::read_from_prefix(bytes) else {
        return Err(StateError::Truncated {
            what: "header",
            needed: HEADER_LEN as u64,
            available: bytes.len() as u64,
        });
    };
    if h.magic != MAGIC {
        return Err(StateError::BadMagic { found: h.magic });
    }
    let found = (h.major.get(), h.minor.get());
    let supported = (FORMAT_MAJOR, FORMAT_MINOR);
    if found.0 > FORMAT_MAJOR {
        return Err(StateError::NewerMajorVersion { found, supported });
    }
    if found.0 < FORMAT_MAJOR {
        return Err(StateError::OlderMajorVersion { found, supported });
    }
    if h.reserved.get() != 0 {
        return Err(StateError::InvalidValue {
            what: "reserved header field",
            value: u64::from(h.reserved.get()),
        });
    }
    let body_len = h.body_len.get();
    if body_len > MAX_ENCODED_BYTES as u64 {
        return Err(StateError::TooLarge {
            what: "body bytes",
            count: body_len,
            max: MAX_ENCODED_BYTES as u64,
        });
    }
    Ok((found.1, body_len as usize))
}

/// Encodes a state. Fails only if the state exceeds a bound (so that
/// whatever is written can be read back).
pub fn encode(state: &DeviceState) -> Result<Vec<u8>, StateError> {
    let mut out = Vec::with_capacity(size_hint(state));
    encode_into(state, &mut out)?;
    Ok(out)
}

/// About the encoded length of `state`: its blobs and a margin for the
/// rest, so the buffer is allocated once (a state is hundreds of KB, and
/// growing one page by page inside the suspension cost a millisecond).
fn size_hint(state: &DeviceState) -> usize {
    let blobs = state
        .vga
        .snapshot
        .as_ref()
        .map_or(0, |v| v.vram.len() + v.registers.len())
        + state.firmware.nvram.len()
        + state.pci_config.as_ref().map_or(0, Vec::len)
        + state
            .fc_hbas
            .iter()
            .map(|h| h.nvram.len() + h.mmio.as_ref().map_or(0, Vec::len))
            .sum::<usize>();
    blobs + 4096 + 2048 * state.vcpus.len()
}

/// [`encode`] into `out`, replacing what it held and keeping its capacity:
/// a source that encoded a state of this size before the pause encodes
/// the final one into memory that is already there.
pub fn encode_into(state: &DeviceState, out: &mut Vec<u8>) -> Result<(), StateError> {
    let mut w = Writer::reusing(std::mem::take(out), HEADER_LEN);
    w.state(state)?;
    *out = w.into_inner();
    // Minor 1: the exact hypervisor records, platform first, then per vCPU.
    super::exact::encode_owner(out, &state.platform_exact)?;
    for v in &state.vcpus {
        super::exact::encode_owner(out, &v.exact)?;
    }
    let body_len = out.len() - HEADER_LEN;
    if body_len > MAX_ENCODED_BYTES {
        return Err(StateError::TooLarge {
            what: "body bytes",
            count: body_len as u64,
            max: MAX_ENCODED_BYTES as u64,
        });
    }
    let header = Header {
        magic: MAGIC,
        major: U16::new(FORMAT_MAJOR),
        minor: U16::new(FORMAT_MINOR),
        reserved: U32::new(0),
        body_len: U64::new(body_len as u64),
    };
    out[..HEADER_LEN].copy_from_slice(header.as_bytes());
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes exactly one encoded state; see the module doc for what is
/// checked.
pub fn decode(bytes: &[u8]) -> Result<DeviceState, StateError> {
    let (minor, body_len) = check_header(bytes)?;
    let total = HEADER_LEN + body_len + TRAILER_LEN;
    if bytes.len() < total {
        return Err(StateError::Truncated {
            what: "body and CRC",
            needed: (body_len + TRAILER_LEN) as u64,
            available: (bytes.len() - HEADER_LEN) as u64,
        });
    }
    if bytes.len() > total {
        return Err(StateError::TrailingBytes {
            extra: (bytes.len() - total) as u64,
        });
    }
    let (covered, crc) = bytes.split_at(HEADER_LEN + body_len);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32fast::hash(covered);
    if stored != computed {
        return Err(StateError::ChecksumMismatch { stored, computed });
    }
    let mut r = Reader::new(&covered[HEADER_LEN..]);
    let mut state = r.state()?;
    if minor >= 1 {
        let body = &covered[HEADER_LEN..];
        let mut rest = &body[body.len() - r.remaining()..];
        state.platform_exact = super::exact::decode_owner(&mut rest)?;
        for v in &mut state.vcpus {
            v.exact = super::exact::decode_owner(&mut rest)?;
        }
        r = Reader::new(rest);
    }
    // A newer minor appends fields we do not know: skip them. Otherwise
    // every body byte must have been consumed.
    let newer_minor = minor > FORMAT_MINOR;
    if !newer_minor && r.remaining() != 0 {
        return Err(StateError::TrailingBytes {
            extra: r.remaining() as u64,
        });
    }
    Ok(state)
}

impl DeviceState {
    /// Encodes this state in the binary format (see [`format`](crate::state::format)).
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        encode(self)
    }

    /// Encodes into `out` (see [`encode_into`]).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), StateError> {
        encode_into(self, out)
    }

    /// Decodes a state written by [`DeviceState::encode`].
    pub fn decode(bytes: &[u8]) -> Result<DeviceState, StateError> {
        decode(bytes)
    }
}
