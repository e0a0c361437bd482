//! Reading bounded lines: the framing of the management protocol.
//!
//! A [`LineReader`] holds at most `limit` bytes of one line; a longer line
//! is read through and dropped (reported as [`Line::Oversized`]). A read
//! timeout in the middle of a line keeps what was read, so the next call
//! carries on with the same line.

use std::io::{self, BufRead, BufReader, Read};

/// What [`LineReader::read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (without its `\n`) is in [`LineReader::line`].
    Complete,
    /// The line was longer than the limit; it was read and thrown away up
    /// to and including its newline.
    Oversized,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
}

/// Reads lines of at most `limit` bytes from `R`, skipping an oversized
/// line up to its newline instead of buffering it.
pub struct LineReader<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    limit: usize,
    oversized: bool,
    done: bool,
}

impl<R: Read> LineReader<R> {
    /// Reads from `inner`, lines up to `limit` bytes.
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            reader: BufReader::new(inner),
            buf: Vec::new(),
            limit,
            oversized: false,
            done: false,
        }
    }

    /// The reader underneath.
    pub fn get_ref(&self) -> &R {
        self.reader.get_ref()
    }

    /// The reader underneath, mutably.
    pub fn get_mut(&mut self) -> &mut R {
        self.reader.get_mut()
    }

    /// The line that the last [`Line::Complete`] returned.
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    /// Reads up to the end of the next line. An error (a read timeout, say)
    /// keeps the part read so far.
    pub fn read_line(&mut self) -> io::Result<Line> {
        if self.done {
            self.buf.clear();
            self.oversized = false;
            self.done = false;
        }
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(Line::Eof);
            }
            let (take, end) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if !self.oversized {
                if self.buf.len() + take > self.limit {
                    self.oversized = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.reader.consume(if end { take + 1 } else { take });
            if end {
                self.done = true;
                return Ok(if self.oversized {
                    Line::Oversized
                } else {
                    Line::Complete
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_bounded() {
        let input = b"short\nthis one is far too long\nok\npartial".to_vec();
        let mut r = LineReader::new(&input[..], 10);
        assert_eq!(r.read_line().unwrap(), Line::Complete);
        assert_eq!(r.line(), b"short");
        assert_eq!(r.read_line().unwrap(), Line::Oversized);
        assert_eq!(r.read_line().unwrap(), Line::Complete);
        assert_eq!(r.line(), b"ok");
        assert_eq!(r.read_line().unwrap(), Line::Eof);
    }

    /// Delivers its chunks one per read, with a timeout between them.
    struct Stutter(Vec<&'static [u8]>, bool);

    impl Read for Stutter {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if self.0.is_empty() {
                return Ok(0);
            }
            let c = self.0.remove(0);
            out[..c.len()].copy_from_slice(c);
            Ok(c.len())
        }
    }

    #[test]
    fn a_timeout_mid_line_keeps_the_part_already_read() {
        let mut r = LineReader::new(Stutter(vec![b"{\"a\"", b":1}\n"], false), 100);
        let mut timeouts = 0;
        loop {
            match r.read_line() {
                Ok(l) => {
                    assert_eq!(l, Line::Complete);
                    break;
                }
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    timeouts += 1;
                }
            }
        }
        assert_eq!(r.line(), b"{\"a\":1}");
        assert!(timeouts >= 2);
    }
}
