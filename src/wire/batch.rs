//! Page batches: many pages of one round in one frame.
//!
//! ```text
//! payload = round:u32 count:u32 entry[count]
//! entry   = page:u64 encoding:u8 reserved:u8 length:u16 payload[length]
//!           │        │           (zero)      └ per encoding: Zero 0, Raw 4096,
//!           │        └ 0 zero, 1 raw, 2 LZ4, 3 delta    LZ4 1..=4096, Delta 0..=4096
//!           └ guest-physical page number (address / 4096)
//! ```
//!
//! The receiver gets a [`PageBatch`] that borrows the receive buffer; its
//! iterator yields each page's number, encoding and payload slice, to be
//! decoded straight into guest memory. The sender builds them with
//! `batch_builder::PageBatchBuilder`.

use super::cursor::Reader;
use super::error::WireError;
use super::kind::FrameKind;
use super::limits::{BATCH_HEADER_LEN, MAX_BATCH_PAGES, PAGE_ENTRY_LEN};
use super::page::{Encoding, Page, decode_page};
use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The fixed prefix of one page entry, read in place.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct PageEntry {
    pub(super) page: U64,
    pub(super) encoding: u8,
    pub(super) reserved: u8,
    pub(super) length: U16,
}

const _: () = assert!(std::mem::size_of::<PageEntry>() == PAGE_ENTRY_LEN);

/// One page of a received batch, borrowing the frame buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRef<'a> {
    /// Guest-physical page number.
    pub page: u64,
    /// How the page travels.
    pub encoding: Encoding,
    /// The encoded bytes, as [`Encoding::accepts_len`] allows for `encoding`.
    pub payload: &'a [u8],
}

impl PageRef<'_> {
    /// Decodes this page into `dest` (for `Delta`, `dest` holds the copy the
    /// receiver already has). See [`decode_page`].
    pub fn decode_into(&self, dest: &mut Page) -> Result<(), WireError> {
        decode_page(self.encoding, self.payload, dest).map_err(|problem| WireError::BadPage {
            page: self.page,
            encoding: self.encoding,
            problem,
        })
    }
}

/// A received page batch. Its entries were checked when the frame was
/// parsed (count, encodings, lengths), so iterating cannot fail; decoding a
/// page's payload still can (LZ4 and delta contents are checked then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageBatch<'a> {
    /// The migration round the pages belong to.
    pub round: u32,
    count: u32,
    entries: &'a [u8],
}

/// Splits one entry off the front of `rest`, checking it completely.
fn split_entry(rest: &[u8]) -> Result<(PageRef<'_>, &[u8]), WireError> {
    let malformed = |problem| WireError::Malformed {
        kind: FrameKind::PageBatch,
        problem,
    };
    let (entry, rest) = PageEntry::ref_from_prefix(rest)
        .map_err(|_| malformed("the batch ends inside a page entry"))?;
    let page = entry.page.get();
    let encoding = Encoding::from_u8(entry.encoding).ok_or(WireError::UnknownEncoding {
        page,
        encoding: entry.encoding,
    })?;
    if entry.reserved != 0 {
        return Err(malformed("a page entry's reserved byte is not zero"));
    }
    let len = usize::from(entry.length.get());
    if !encoding.accepts_len(len) {
        return Err(malformed("a page payload length does not fit its encoding"));
    }
    if rest.len() < len {
        return Err(malformed("the batch ends inside a page payload"));
    }
    let (payload, rest) = rest.split_at(len);
    Ok((
        PageRef {
            page,
            encoding,
            payload,
        },
        rest,
    ))
}

impl<'a> PageBatch<'a> {
    /// Parses and checks a batch payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(payload, FrameKind::PageBatch);
        let round = reader.u32()?;
        let count = reader.u32()?;
        if count as usize > MAX_BATCH_PAGES {
            return Err(reader.malformed("the batch holds more pages than the limit"));
        }
        let entries = &payload[BATCH_HEADER_LEN..];
        let mut rest = entries;
        for _ in 0..count {
            rest = split_entry(rest)?.1;
        }
        if !rest.is_empty() {
            return Err(reader.malformed("the batch has bytes after its last page"));
        }
        Ok(PageBatch {
            round,
            count,
            entries,
        })
    }

    /// Number of pages in the batch.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the batch holds no page.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The pages, in the order the sender added them.
    pub fn pages(&self) -> PageIter<'a> {
        PageIter {
            rest: self.entries,
            left: self.count,
        }
    }

    /// The payload bytes after the round and count (for re-encoding).
    pub(crate) fn write_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.round.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(self.entries);
    }
}

impl<'a> IntoIterator for PageBatch<'a> {
    type Item = PageRef<'a>;
    type IntoIter = PageIter<'a>;
    fn into_iter(self) -> PageIter<'a> {
        self.pages()
    }
}

/// Iterator over the pages of a checked [`PageBatch`].
#[derive(Clone, Debug)]
pub struct PageIter<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for PageIter<'a> {
    type Item = PageRef<'a>;

    fn next(&mut self) -> Option<PageRef<'a>> {
        if self.left == 0 {
            return None;
        }
        // Checked when the batch was parsed; an error here cannot happen,
        // and would end the iteration rather than panic.
        let (page, rest) = split_entry(self.rest).ok()?;
        self.rest = rest;
        self.left -= 1;
        Some(page)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}
