//! Reading one bounded line: the framing of the management protocol.

use std::io::{self, BufRead};

/// What one call to [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (without its `\n`) is in the buffer.
    Complete,
    /// The line was longer than the limit; it was read and thrown away up
    /// to and including its newline.
    Oversized,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), holding at
/// most `limit` bytes of it in memory.
pub fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, limit: usize) -> io::Result<Line> {
    buf.clear();
    let mut oversized = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(Line::Eof);
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !oversized {
            if buf.len() + take > limit {
                oversized = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok(if oversized {
                Line::Oversized
            } else {
                Line::Complete
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn lines_are_split_and_bounded() {
        let input = b"short\nthis one is far too long\nok\npartial".to_vec();
        let mut r = BufReader::with_capacity(4, &input[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut r, &mut buf, 10).unwrap(), Line::Complete);
        assert_eq!(buf, b"short");
        assert_eq!(read_line(&mut r, &mut buf, 10).unwrap(), Line::Oversized);
        assert!(buf.is_empty());
        assert_eq!(read_line(&mut r, &mut buf, 10).unwrap(), Line::Complete);
        assert_eq!(buf, b"ok");
        assert_eq!(read_line(&mut r, &mut buf, 10).unwrap(), Line::Eof);
    }
}
