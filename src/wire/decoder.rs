//! The receiving half of one stream: a total, incremental frame decoder.
//!
//! Bytes go straight from the socket into the decoder's buffer
//! ([`FrameDecoder::read_from`], or [`spare`](FrameDecoder::spare) +
//! [`commit`](FrameDecoder::commit) for any other source), and frames come
//! out borrowing that buffer, so a page travels socket → receive buffer →
//! guest memory with no copy in between. The buffer grows only to hold the
//! frame in progress, whose length was checked against its kind's bound
//! first; it never exceeds [`MAX_RECEIVE_BUFFER`].

use super::error::WireError;
use super::frame::Frame;
use super::header::{
    FrameHeader, FrameKind, HEADER_LEN, Integrity, MAGIC, check_version, frame_crc,
};
use super::limits::{MAX_RECEIVE_BUFFER, READ_AHEAD};
use std::cell::Cell;
use std::io::{self, Read};
use std::ops::Range;
use zerocopy::FromBytes;

/// Decodes the frames of one stream, in order, checking each header, bound,
/// checksum (on a [checksummed](Integrity::Checksummed) stream) and
/// sequence number. After the first error the stream is dead
/// and every later call returns that error again.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// First byte not yet consumed.
    start: usize,
    /// One past the last byte received.
    end: usize,
    /// Bytes (from `start`) the frame in progress needs.
    need: usize,
    expected_sequence: u64,
    integrity: Integrity,
    /// A `Cell` so a payload error can be recorded while the returned frame
    /// still borrows the buffer.
    failed: Cell<Option<WireError>>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder expecting a stream's first frame (sequence 0), each frame
    /// with its checksum.
    pub fn new() -> Self {
        Self::with_integrity(Integrity::Checksummed)
    }

    /// A decoder for a stream protected as `integrity` says: on an
    /// [authenticated](Integrity::Authenticated) stream the checksums are
    /// not checked.
    pub fn with_integrity(integrity: Integrity) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            end: 0,
            need: HEADER_LEN,
            expected_sequence: 0,
            integrity,
            failed: Cell::new(None),
        }
    }

    /// The sequence number the next frame must carry.
    pub fn expected_sequence(&self) -> u64 {
        self.expected_sequence
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Makes room for the rest of the frame in progress plus some read-ahead,
    /// moving the unconsumed bytes to the front only when the frame would not
    /// fit behind them.
    fn make_room(&mut self) {
        let want = (self.need + READ_AHEAD).min(MAX_RECEIVE_BUFFER);
        if self.start > 0 && self.start + want > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < want {
            // Exact, so the bound holds (amortised growth could double it).
            self.buf.reserve_exact(want - self.buf.len());
            self.buf.resize(want, 0);
        }
    }

    /// Free space to receive into; write some bytes there, then
    /// [`commit`](Self::commit) them. Empty only while a complete frame is
    /// waiting: call [`next_frame`](Self::next_frame) until it returns `None`
    /// before receiving more.
    pub fn spare(&mut self) -> &mut [u8] {
        self.make_room();
        &mut self.buf[self.end..]
    }

    /// Declares that the first `n` bytes of [`spare`](Self::spare) hold
    /// received data.
    ///
    /// # Panics
    /// If `n` is larger than the spare space (a caller bug).
    pub fn commit(&mut self, n: usize) {
        assert!(
            self.end + n <= self.buf.len(),
            "commit beyond the spare space"
        );
        self.end += n;
    }

    /// Receives once from `source` straight into the buffer; returns the
    /// byte count (0: end of stream, then call [`finish`](Self::finish)).
    pub fn read_from<R: Read + ?Sized>(&mut self, source: &mut R) -> io::Result<usize> {
        let spare = self.spare();
        if spare.is_empty() {
            return Err(io::Error::other(
                "a complete frame is waiting: call next_frame first",
            ));
        }
        let n = source.read(spare)?;
        self.commit(n);
        Ok(n)
    }

    /// Copies as much of `bytes` as fits and returns how many bytes were
    /// taken; feed the rest after draining [`next_frame`](Self::next_frame).
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let spare = self.spare();
        let n = spare.len().min(bytes.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        self.commit(n);
        n
    }

    /// The next complete frame, `None` if more bytes are needed, or the
    /// error that killed the stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WireError> {
        if let Some(err) = self.failed.get() {
            return Err(err);
        }
        let (kind, payload) = match self.locate() {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(err) => {
                self.failed.set(Some(err));
                return Err(err);
            }
        };
        let this = &*self;
        Frame::parse(kind, &this.buf[payload])
            .map(Some)
            .inspect_err(|err| this.failed.set(Some(*err)))
    }

    /// Checks the frame at the front of the buffer and consumes it; returns
    /// its kind and where its payload lies in the buffer.
    fn locate(&mut self) -> Result<Option<(FrameKind, Range<usize>)>, WireError> {
        let avail = &self.buf[self.start..self.end];
        let Ok((header, _)) = FrameHeader::ref_from_prefix(avail) else {
            self.need = HEADER_LEN;
            return Ok(None);
        };
        let header = *header;
        if header.magic != MAGIC {
            return Err(WireError::BadMagic {
                found: header.magic,
            });
        }
        // The versioning rule lives in `check_version`: ours and the one before.
        check_version(header.version.get())?;
        let sequence = header.sequence.get();
        let kind = FrameKind::from_u8(header.kind).ok_or(WireError::UnknownKind {
            sequence,
            kind: header.kind,
        })?;
        if header.flags != 0 {
            return Err(WireError::UnknownFlags {
                sequence,
                kind,
                flags: header.flags,
            });
        }
        let length = header.length.get();
        if length as usize > kind.max_payload() {
            return Err(WireError::Oversized {
                sequence,
                kind,
                length: u64::from(length),
                max: kind.max_payload() as u64,
            });
        }
        let total = HEADER_LEN + length as usize;
        self.need = total;
        if avail.len() < total {
            return Ok(None);
        }
        if self.integrity == Integrity::Checksummed {
            let (head, payload) = avail[..total].split_at(HEADER_LEN);
            let computed = frame_crc(head.try_into().expect("HEADER_LEN bytes"), payload);
            if computed != header.crc.get() {
                return Err(WireError::ChecksumMismatch {
                    sequence,
                    kind,
                    stated: header.crc.get(),
                    computed,
                });
            }
        }
        let expected = self.expected_sequence;
        if sequence != expected {
            return Err(if sequence.wrapping_add(1) == expected {
                WireError::DuplicateFrame {
                    expected,
                    got: sequence,
                }
            } else if sequence < expected {
                WireError::ReorderedFrame {
                    expected,
                    got: sequence,
                }
            } else {
                WireError::MissingFrames {
                    expected,
                    got: sequence,
                }
            });
        }
        self.expected_sequence += 1;
        let payload = self.start + HEADER_LEN..self.start + total;
        self.start += total;
        self.need = HEADER_LEN;
        Ok(Some((kind, payload)))
    }

    /// Call at end of stream: an error if the stream died or stopped in the
    /// middle of a frame.
    pub fn finish(&mut self) -> Result<(), WireError> {
        if let Some(err) = self.failed.get() {
            return Err(err);
        }
        let buffered = self.buffered();
        if buffered == 0 {
            return Ok(());
        }
        let needed = match FrameHeader::ref_from_prefix(&self.buf[self.start..self.end]) {
            Ok((header, _)) => HEADER_LEN + header.length.get() as usize,
            Err(_) => HEADER_LEN,
        };
        let err = WireError::Truncated { buffered, needed };
        self.failed.set(Some(err));
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FrameEncoder, Keepalive};

    #[test]
    fn frames_split_at_every_byte_boundary_still_decode() {
        let mut enc = FrameEncoder::new();
        let mut stream = Vec::new();
        for t in 0..3 {
            enc.encode(
                &Frame::Keepalive(Keepalive { timestamp_ns: t }),
                &mut stream,
            )
            .unwrap();
        }
        let mut dec = FrameDecoder::new();
        let mut seen = Vec::new();
        for byte in &stream {
            assert_eq!(dec.feed(std::slice::from_ref(byte)), 1);
            while let Some(frame) = dec.next_frame().unwrap() {
                seen.push(frame.clone().kind());
            }
        }
        assert_eq!(seen.len(), 3);
        dec.finish().unwrap();
    }

    #[test]
    fn reads_straight_from_a_reader_until_end_of_stream() {
        use crate::wire::{PAGE_SIZE, PageBatchBuilder};
        let mut enc = FrameEncoder::new();
        let mut stream = Vec::new();
        let mut builder = PageBatchBuilder::new();
        for round in 0..3u32 {
            builder.begin(round);
            let mut n = 0u64;
            while !builder.is_full() {
                let mut page = [0u8; PAGE_SIZE];
                for (i, b) in page.iter_mut().enumerate() {
                    *b = (i as u64 * 31 + n * 7 + u64::from(round)).to_le_bytes()[0]
                        ^ (i >> 5) as u8;
                }
                builder.push_page(n, &page, None).unwrap();
                n += 1;
            }
            stream.extend_from_slice(builder.seal(&mut enc));
            enc.encode(
                &Frame::Keepalive(Keepalive { timestamp_ns: 9 }),
                &mut stream,
            )
            .unwrap();
        }
        let mut source = io::Cursor::new(stream);
        let mut dec = FrameDecoder::new();
        let mut pages = 0;
        let mut frames = 0;
        while dec.read_from(&mut source).unwrap() > 0 {
            while let Some(frame) = dec.next_frame().unwrap() {
                frames += 1;
                if let Frame::PageBatch(batch) = frame {
                    pages += batch.len();
                }
            }
            assert!(dec.buf.len() <= MAX_RECEIVE_BUFFER);
        }
        dec.finish().unwrap();
        assert_eq!((frames, pages), (6, 3 * crate::wire::MAX_BATCH_PAGES));
    }

    #[test]
    fn only_an_authenticated_stream_goes_without_checksums() {
        let keepalive = Frame::Keepalive(Keepalive { timestamp_ns: 7 });
        let mut bare = Vec::new();
        let mut enc = FrameEncoder::with_integrity(Integrity::Authenticated);
        enc.encode(&keepalive, &mut bare).unwrap();
        assert_eq!(&bare[12..16], &[0; 4], "no checksum computed");
        // On an authenticated stream the frame decodes...
        let mut dec = FrameDecoder::with_integrity(Integrity::Authenticated);
        dec.feed(&bare);
        assert_eq!(dec.next_frame().unwrap(), Some(keepalive.clone()));
        // ...a plaintext stream refuses it: nothing a peer sends turns the
        // check off.
        let mut dec = FrameDecoder::new();
        dec.feed(&bare);
        assert!(matches!(
            dec.next_frame(),
            Err(WireError::ChecksumMismatch { .. })
        ));
        // A checksummed frame still decodes where checks are off.
        let mut sum = Vec::new();
        FrameEncoder::new().encode(&keepalive, &mut sum).unwrap();
        assert_ne!(&sum[12..16], &[0; 4]);
        let mut dec = FrameDecoder::with_integrity(Integrity::Authenticated);
        dec.feed(&sum);
        assert_eq!(dec.next_frame().unwrap(), Some(keepalive));
    }

    #[test]
    fn buffer_stays_within_its_bound_and_errors_stick() {
        let mut dec = FrameDecoder::new();
        let junk = vec![0xEEu8; 3 * MAX_RECEIVE_BUFFER];
        let taken = dec.feed(&junk);
        assert!(taken <= MAX_RECEIVE_BUFFER);
        assert!(dec.buf.capacity() <= MAX_RECEIVE_BUFFER);
        let err = dec.next_frame().unwrap_err();
        assert!(matches!(err, WireError::BadMagic { .. }));
        assert_eq!(dec.next_frame().unwrap_err(), err);
        assert_eq!(dec.finish().unwrap_err(), err);
    }
}
