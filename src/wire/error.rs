//! What can be wrong with a migration stream, written for the operator, and
//! its one conversion into an [`Emg`].

use super::PREVIOUS_PROTOCOL_VERSION;
use super::kind::FrameKind;
use super::page::{Encoding, PageError};
use crate::emg::{self, Emg, Module};
use thiserror::Error;

/// A stream that fails to decode. Once a [`super::FrameDecoder`] returns one
/// of these the stream is dead: it returns the same error from then on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    #[error(
        "the migration stream does not start with the lpar-mover magic (found {found:02x?}): \
         the peer is not an lpar-mover agent, or the stream lost its framing"
    )]
    /// The stream does not start with the frame magic.
    BadMagic {
        /// The four bytes found where the magic belongs.
        found: [u8; 4],
    },

    #[error(
        "the peer speaks wire protocol version {theirs}, but this agent speaks version {ours} \
         and accepts only versions {ours} and {prev}",
        prev = PREVIOUS_PROTOCOL_VERSION
    )]
    /// The peer speaks a protocol version this build does not accept.
    UnsupportedVersion {
        /// The version the peer's frame carries.
        theirs: u16,
        /// This agent's [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
        ours: u16,
    },

    #[error("frame {sequence} has unknown kind {kind}: the peer runs a newer or a corrupted agent")]
    /// A frame of a kind this version does not define.
    UnknownKind {
        /// The frame's sequence number on its stream.
        sequence: u64,
        /// The kind byte that names no [`FrameKind`].
        kind: u8,
    },

    #[error("{kind} frame {sequence} sets unknown flags {flags:#04x}")]
    /// A frame sets flags this version does not define.
    UnknownFlags {
        /// The frame's sequence number on its stream.
        sequence: u64,
        /// The frame's kind.
        kind: FrameKind,
        /// The flags byte as received.
        flags: u8,
    },

    #[error(
        "{kind} frame {sequence} declares {length} payload bytes, more than the limit of {max}"
    )]
    /// A frame declares more payload than its kind may carry.
    Oversized {
        /// The frame's sequence number on its stream.
        sequence: u64,
        /// The frame's kind.
        kind: FrameKind,
        /// The payload length the header declares.
        length: u64,
        /// The limit for this kind (see [`limits`](super::limits)).
        max: u64,
    },

    #[error(
        "{kind} frame {sequence} fails its checksum (frame says {stated:#010x}, \
         contents give {computed:#010x}): it was corrupted in transit"
    )]
    /// A frame's CRC32C does not match its contents.
    ChecksumMismatch {
        /// The frame's sequence number on its stream.
        sequence: u64,
        /// The frame's kind.
        kind: FrameKind,
        /// The CRC32C the header carries.
        stated: u32,
        /// The CRC32C of what arrived.
        computed: u32,
    },

    #[error("frame {got} arrived twice (expected frame {expected} next)")]
    /// A frame's sequence number was seen already.
    DuplicateFrame {
        /// The sequence number due next.
        expected: u64,
        /// The (older) sequence number that arrived.
        got: u64,
    },

    #[error("frame {got} arrived after later frames (expected frame {expected} next)")]
    /// A frame arrived after later frames of its stream.
    ReorderedFrame {
        /// The sequence number due next.
        expected: u64,
        /// The sequence number that arrived.
        got: u64,
    },

    #[error("frames {expected} to {} are missing: frame {got} arrived next", got - 1)]
    /// Frames are missing before the one that arrived.
    MissingFrames {
        /// The first missing sequence number.
        expected: u64,
        /// The (later) sequence number that arrived.
        got: u64,
    },

    #[error("the stream ended inside a frame ({buffered} of {needed} bytes received)")]
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes of the frame received before the end.
        buffered: usize,
        /// Bytes the whole frame needs.
        needed: usize,
    },

    #[error("{kind} frame is malformed: {problem}")]
    /// A frame's payload does not parse as its kind.
    Malformed {
        /// The frame's kind.
        kind: FrameKind,
        /// What is wrong with its payload.
        problem: &'static str,
    },

    #[error("page {page:#x} has unknown encoding {encoding}")]
    /// A page with an encoding this version does not define.
    UnknownEncoding {
        /// The guest page number.
        page: u64,
        /// The encoding byte that names no [`Encoding`].
        encoding: u8,
    },

    #[error("page {page:#x} ({encoding}) cannot be decoded: {problem}")]
    /// A page payload that does not decode.
    BadPage {
        /// The guest page number.
        page: u64,
        /// The page's encoding.
        encoding: Encoding,
        /// Why it does not decode.
        problem: PageError,
    },
}

/// Cause codes of wire errors (the `CCCCCCCC` of op1), one per variant.
pub mod cause {
    /// [`WireError::BadMagic`](super::WireError::BadMagic).
    pub const BAD_MAGIC: u32 = 0x0301;
    /// [`WireError::UnsupportedVersion`](super::WireError::UnsupportedVersion).
    pub const UNSUPPORTED_VERSION: u32 = 0x0302;
    /// [`WireError::UnknownKind`](super::WireError::UnknownKind).
    pub const UNKNOWN_KIND: u32 = 0x0303;
    /// [`WireError::UnknownFlags`](super::WireError::UnknownFlags).
    pub const UNKNOWN_FLAGS: u32 = 0x0304;
    /// [`WireError::Oversized`](super::WireError::Oversized).
    pub const OVERSIZED: u32 = 0x0305;
    /// [`WireError::ChecksumMismatch`](super::WireError::ChecksumMismatch).
    pub const CHECKSUM_MISMATCH: u32 = 0x0306;
    /// [`WireError::DuplicateFrame`](super::WireError::DuplicateFrame).
    pub const DUPLICATE_FRAME: u32 = 0x0307;
    /// [`WireError::ReorderedFrame`](super::WireError::ReorderedFrame).
    pub const REORDERED_FRAME: u32 = 0x0308;
    /// [`WireError::MissingFrames`](super::WireError::MissingFrames).
    pub const MISSING_FRAMES: u32 = 0x0309;
    /// [`WireError::Truncated`](super::WireError::Truncated).
    pub const TRUNCATED: u32 = 0x030A;
    /// [`WireError::Malformed`](super::WireError::Malformed).
    pub const MALFORMED: u32 = 0x030B;
    /// [`WireError::UnknownEncoding`](super::WireError::UnknownEncoding).
    pub const UNKNOWN_ENCODING: u32 = 0x030C;
    /// [`WireError::BadPage`](super::WireError::BadPage).
    pub const BAD_PAGE: u32 = 0x030D;
}

impl WireError {
    /// This error's cause code (the `cause` constant of its variant).
    pub fn cause(&self) -> u32 {
        match self {
            WireError::BadMagic { .. } => cause::BAD_MAGIC,
            WireError::UnsupportedVersion { .. } => cause::UNSUPPORTED_VERSION,
            WireError::UnknownKind { .. } => cause::UNKNOWN_KIND,
            WireError::UnknownFlags { .. } => cause::UNKNOWN_FLAGS,
            WireError::Oversized { .. } => cause::OVERSIZED,
            WireError::ChecksumMismatch { .. } => cause::CHECKSUM_MISMATCH,
            WireError::DuplicateFrame { .. } => cause::DUPLICATE_FRAME,
            WireError::ReorderedFrame { .. } => cause::REORDERED_FRAME,
            WireError::MissingFrames { .. } => cause::MISSING_FRAMES,
            WireError::Truncated { .. } => cause::TRUNCATED,
            WireError::Malformed { .. } => cause::MALFORMED,
            WireError::UnknownEncoding { .. } => cause::UNKNOWN_ENCODING,
            WireError::BadPage { .. } => cause::BAD_PAGE,
        }
    }

    /// The EMG detail operand: the frame sequence number or the page number
    /// the error is about, where there is one.
    pub fn detail(&self) -> u64 {
        match *self {
            WireError::UnsupportedVersion { theirs, .. } => u64::from(theirs),
            WireError::UnknownKind { sequence, .. }
            | WireError::UnknownFlags { sequence, .. }
            | WireError::Oversized { sequence, .. }
            | WireError::ChecksumMismatch { sequence, .. } => sequence,
            WireError::DuplicateFrame { got, .. }
            | WireError::ReorderedFrame { got, .. }
            | WireError::MissingFrames { got, .. } => got,
            WireError::UnknownEncoding { page, .. } | WireError::BadPage { page, .. } => page,
            WireError::BadMagic { .. }
            | WireError::Truncated { .. }
            | WireError::Malformed { .. } => 0,
        }
    }

    /// What the operator should do about it.
    pub fn action(&self) -> &'static str {
        match self {
            WireError::BadMagic { .. } => {
                "Check that the migration path address belongs to an lpar-mover agent, then retry the migration."
            }
            WireError::UnsupportedVersion { .. } => {
                "Update lpar-mover on the older host so both agents are at most one wire version apart, then retry."
            }
            WireError::UnknownKind { .. }
            | WireError::UnknownFlags { .. }
            | WireError::UnknownEncoding { .. } => {
                "Check that both hosts run compatible lpar-mover builds (moverctl validate), then retry the migration."
            }
            WireError::ChecksumMismatch { .. } => {
                "Check the migration path NIC and cabling for errors, then retry the migration."
            }
            WireError::DuplicateFrame { .. }
            | WireError::ReorderedFrame { .. }
            | WireError::MissingFrames { .. } => {
                "Check for devices on the migration path that rewrite TCP streams, then retry the migration."
            }
            WireError::Truncated { .. } => {
                "Check the migration path and that the peer agent is still running, then retry the migration."
            }
            WireError::Oversized { .. }
            | WireError::Malformed { .. }
            | WireError::BadPage { .. } => {
                "Retry the migration; if it recurs, collect both agents' logs and report a wire-format fault."
            }
        }
    }

    /// The phase of the migration this error belongs to.
    pub fn phase(&self) -> u16 {
        match self {
            // The hello carries the version: incompatibility is found while
            // connecting.
            WireError::UnsupportedVersion { .. } => emg::phase::CONNECT,
            WireError::Truncated { .. } => emg::phase::CONNECTION_LOST,
            _ => emg::phase::MEMORY_TRANSFER,
        }
    }
}

impl From<WireError> for Emg {
    fn from(err: WireError) -> Emg {
        Emg::new(
            Module::MoverDestination,
            err.phase(),
            err.cause(),
            format!("The migration stream was rejected: {err}."),
            err.action(),
        )
        .detail(err.detail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_variant() -> Vec<WireError> {
        let kind = FrameKind::PageBatch;
        vec![
            WireError::BadMagic { found: *b"GET " },
            WireError::UnsupportedVersion { theirs: 7, ours: 1 },
            WireError::UnknownKind {
                sequence: 1,
                kind: 99,
            },
            WireError::UnknownFlags {
                sequence: 1,
                kind,
                flags: 1,
            },
            WireError::Oversized {
                sequence: 1,
                kind,
                length: 1 << 40,
                max: 10,
            },
            WireError::ChecksumMismatch {
                sequence: 1,
                kind,
                stated: 1,
                computed: 2,
            },
            WireError::DuplicateFrame {
                expected: 5,
                got: 4,
            },
            WireError::ReorderedFrame {
                expected: 5,
                got: 2,
            },
            WireError::MissingFrames {
                expected: 5,
                got: 9,
            },
            WireError::Truncated {
                buffered: 3,
                needed: 24,
            },
            WireError::Malformed { kind, problem: "x" },
            WireError::UnknownEncoding {
                page: 3,
                encoding: 9,
            },
            WireError::BadPage {
                page: 3,
                encoding: Encoding::Lz4,
                problem: PageError::Lz4Corrupt,
            },
        ]
    }

    #[test]
    fn each_variant_has_its_own_cause() {
        let mut causes: Vec<u32> = every_variant().iter().map(WireError::cause).collect();
        causes.sort_unstable();
        causes.dedup();
        assert_eq!(causes.len(), every_variant().len());
    }

    #[test]
    fn emg_names_the_destination_mover_the_phase_and_the_problem() {
        for err in every_variant() {
            let emg = Emg::from(err);
            assert_eq!(emg.module, Module::MoverDestination);
            assert_eq!(emg.cause, err.cause());
            assert!(emg.message.contains(&err.to_string()));
            assert!(!emg.action.is_empty());
        }
        let emg = Emg::from(WireError::Truncated {
            buffered: 1,
            needed: 2,
        });
        assert_eq!(emg.phase, emg::phase::CONNECTION_LOST);
        let emg = Emg::from(WireError::MissingFrames {
            expected: 5,
            got: 9,
        });
        assert_eq!(emg.phase, emg::phase::MEMORY_TRANSFER);
        assert_eq!(emg.detail, 9);
        assert!(emg.message.contains("frames 5 to 8 are missing"));
    }

    #[test]
    fn version_error_names_both_versions() {
        let text = WireError::UnsupportedVersion { theirs: 7, ours: 1 }.to_string();
        assert!(text.contains("version 7"), "{text}");
        assert!(text.contains("version 1"), "{text}");
    }
}
