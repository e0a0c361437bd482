//! The sending half of one stream: numbers frames and seals them.

use super::error::WireError;
use super::frame::Frame;
use super::header::{FrameKind, HEADER_LEN, Integrity, seal};

/// Encodes the frames of one stream, numbering them 0, 1, 2, … in the order
/// they are encoded (which must be the order they are written).
#[derive(Debug, Default)]
pub struct FrameEncoder {
    next_sequence: u64,
    integrity: Integrity,
}

impl FrameEncoder {
    /// An encoder for a new stream whose frames carry their checksum: its
    /// first frame gets sequence 0.
    pub fn new() -> Self {
        FrameEncoder::default()
    }

    /// An encoder for a new stream protected as `integrity` says.
    pub fn with_integrity(integrity: Integrity) -> Self {
        FrameEncoder {
            next_sequence: 0,
            integrity,
        }
    }

    /// Whether this stream's frames carry their checksum.
    pub fn integrity(&self) -> Integrity {
        self.integrity
    }

    /// The sequence number the next frame will carry.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    pub(crate) fn take_sequence(&mut self) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        sequence
    }

    /// Appends the complete frame (header and payload) to `out`. On error
    /// (a payload over its limit) `out` is left as it was and no sequence
    /// number is used up.
    pub fn encode(&mut self, frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), WireError> {
        let kind = frame.kind();
        let oversized = |length: usize| WireError::Oversized {
            sequence: self.next_sequence,
            kind,
            length: length as u64,
            max: kind.max_payload() as u64,
        };
        // Refuse an oversized blob before copying it.
        if let Frame::LparConfig(bytes)
        | Frame::DeviceState(bytes)
        | Frame::DeviceStateBase(bytes)
        | Frame::DeviceStateDelta(bytes) = frame
            && bytes.len() > kind.max_payload()
        {
            return Err(oversized(bytes.len()));
        }
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        let written = frame.write_payload(out);
        let length = out.len() - start - HEADER_LEN;
        if let Err(err) = written {
            out.truncate(start);
            return Err(err);
        }
        if length > kind.max_payload() {
            out.truncate(start);
            return Err(oversized(length));
        }
        let sequence = self.take_sequence();
        seal(&mut out[start..], kind, sequence, self.integrity);
        Ok(())
    }

    /// Appends a frame of `kind` around an already-encoded `payload`,
    /// without looking inside it (for relaying, tests and fuzzing). The
    /// length is still held to the kind's bound.
    pub fn encode_raw(
        &mut self,
        kind: FrameKind,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        if payload.len() > kind.max_payload() {
            return Err(WireError::Oversized {
                sequence: self.next_sequence,
                kind,
                length: payload.len() as u64,
                max: kind.max_payload() as u64,
            });
        }
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        out.extend_from_slice(payload);
        let sequence = self.take_sequence();
        seal(&mut out[start..], kind, sequence, self.integrity);
        Ok(())
    }
}
