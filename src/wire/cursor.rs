//! Bounds-checked reading and writing of little-endian payload fields.

use super::error::WireError;
use super::header::FrameKind;

/// Reads fields off the front of a payload; every read is checked, so a
/// short payload is a [`WireError::Malformed`], never a panic.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    kind: FrameKind,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(payload: &'a [u8], kind: FrameKind) -> Self {
        Reader {
            rest: payload,
            kind,
        }
    }

    pub(crate) fn malformed(&self, problem: &'static str) -> WireError {
        WireError::Malformed {
            kind: self.kind,
            problem,
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(self.malformed("the payload ends inside a field"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn u128(&mut self) -> Result<u128, WireError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    /// A UTF-8 string behind a length prefix of `prefix` bytes (1 or 2),
    /// refused when longer than `max`.
    pub(crate) fn string(&mut self, prefix: usize, max: usize) -> Result<String, WireError> {
        let len = if prefix == 1 {
            usize::from(self.u8()?)
        } else {
            usize::from(self.u16()?)
        };
        if len > max {
            return Err(self.malformed("a text field is longer than its limit"));
        }
        let bytes = self.bytes(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| self.malformed("a text field is not UTF-8"))
    }

    /// The payload must be used up exactly.
    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("the payload has trailing bytes"))
        }
    }
}

/// Appends `text`, cut to at most `max` bytes at a character boundary,
/// behind a length prefix of `prefix` bytes (1 or 2).
pub(crate) fn put_string(out: &mut Vec<u8>, text: &str, prefix: usize, max: usize) {
    let mut len = text.len().min(max);
    while !text.is_char_boundary(len) {
        len -= 1;
    }
    if prefix == 1 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&(len as u16).to_le_bytes());
    }
    out.extend_from_slice(&text.as_bytes()[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_payload_is_malformed_not_a_panic() {
        let mut r = Reader::new(&[1, 2, 3], FrameKind::Keepalive);
        assert!(matches!(r.u64(), Err(WireError::Malformed { .. })));
    }

    #[test]
    fn strings_are_cut_at_a_character_boundary() {
        let mut out = Vec::new();
        put_string(&mut out, "aé", 1, 2); // 'é' is two bytes: only "a" fits
        assert_eq!(out, vec![1, b'a']);
        let mut r = Reader::new(&out, FrameKind::Abort);
        assert_eq!(r.string(1, 2).unwrap(), "a");
        r.finish().unwrap();
    }

    #[test]
    fn overlong_and_non_utf8_strings_are_refused() {
        let mut r = Reader::new(&[3, b'a', b'b', b'c'], FrameKind::Hello);
        assert!(r.string(1, 2).is_err());
        let mut r = Reader::new(&[1, 0xff], FrameKind::Hello);
        assert!(r.string(1, 2).is_err());
    }
}
