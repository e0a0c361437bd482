//! What can be wrong with a migration stream, written for the operator, and
//! its one conversion into an [`Emg`].

use super::header::{FrameKind, PREVIOUS_PROTOCOL_VERSION};
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
    BadMagic { found: [u8; 4] },

    #[error(
        "the peer speaks wire protocol version {theirs}, but this agent speaks version {ours} \
         and accepts only versions {ours} and {prev}",
        prev = PREVIOUS_PROTOCOL_VERSION
    )]
    UnsupportedVersion { theirs: u16, ours: u16 },

    #[error("frame {sequence} has unknown kind {kind}: the peer runs a newer or a corrupted agent")]
    UnknownKind { sequence: u64, kind: u8 },

    #[error("{kind} frame {sequence} sets unknown flags {flags:#04x}")]
    UnknownFlags {
        sequence: u64,
        kind: FrameKind,
        flags: u8,
    },

    #[error(
        "{kind} frame {sequence} declares {length} payload bytes, more than the limit of {max}"
    )]
    Oversized {
        sequence: u64,
        kind: FrameKind,
        length: u64,
        max: u64,
    },

    #[error(
        "{kind} frame {sequence} fails its checksum (frame says {stated:#010x}, \
         contents give {computed:#010x}): it was corrupted in transit"
    )]
    ChecksumMismatch {
        sequence: u64,
        kind: FrameKind,
        stated: u32,
        computed: u32,
    },

    #[error("frame {got} arrived twice (expected frame {expected} next)")]
    DuplicateFrame { expected: u64, got: u64 },

    #[error("frame {got} arrived after later frames (expected frame {expected} next)")]
    ReorderedFrame { expected: u64, got: u64 },

    #[error("frames {expected} to {} are missing: frame {got} arrived next", got - 1)]
    MissingFrames { expected: u64, got: u64 },

    #[error("the stream ended inside a frame ({buffered} of {needed} bytes received)")]
    Truncated { buffered: usize, needed: usize },

    #[error("{kind} frame is malformed: {problem}")]
    Malformed {
        kind: FrameKind,
        problem: &'static str,
    },

    #[error("page {page:#x} has unknown encoding {encoding}")]
    UnknownEncoding { page: u64, encoding: u8 },

    #[error("page {page:#x} ({encoding}) cannot be decoded: {problem}")]
    BadPage {
        page: u64,
        encoding: Encoding,
        problem: PageError,
    },
}

/// Cause codes of wire errors (the `CCCCCCCC` of op1), one per variant.
pub mod cause {
    pub const BAD_MAGIC: u32 = 0x0301;
    pub const UNSUPPORTED_VERSION: u32 = 0x0302;
    pub const UNKNOWN_KIND: u32 = 0x0303;
    pub const UNKNOWN_FLAGS: u32 = 0x0304;
    pub const OVERSIZED: u32 = 0x0305;
    pub const CHECKSUM_MISMATCH: u32 = 0x0306;
    pub const DUPLICATE_FRAME: u32 = 0x0307;
    pub const REORDERED_FRAME: u32 = 0x0308;
    pub const MISSING_FRAMES: u32 = 0x0309;
    pub const TRUNCATED: u32 = 0x030A;
    pub const MALFORMED: u32 = 0x030B;
    pub const UNKNOWN_ENCODING: u32 = 0x030C;
    pub const BAD_PAGE: u32 = 0x030D;
}

impl WireError {
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
