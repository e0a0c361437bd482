//! Building page batches (the format is in [`super::batch`]): the sender
//! fills one reusable [`PageBatchBuilder`] (no allocation per page: pages
//! are encoded straight into the frame buffer, header space reserved in
//! front) and seals it with the stream's [`FrameEncoder`].

use super::batch::PageEntry;
use super::encoder::FrameEncoder;
use super::header::{HEADER_LEN, seal};
use super::kind::FrameKind;
use super::limits::{BATCH_HEADER_LEN, MAX_BATCH_PAGES, MAX_BATCH_PAYLOAD, PAGE_ENTRY_LEN};
use super::page::{Encoding, PAGE_SIZE, Page, encode_page_with};
use zerocopy::IntoBytes;
use zerocopy::little_endian::{U16, U64};

/// The batch is full: seal and send it, then begin a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the page batch is full")]
pub struct BatchFull;

/// Builds page-batch frames in one reusable buffer.
///
/// ```
/// # use lpar_mover::wire::*;
/// let mut batch = PageBatchBuilder::new();
/// let mut stream = FrameEncoder::new();
/// batch.begin(0);
/// let page = [7u8; PAGE_SIZE];
/// batch.push_page(0x100, &page, None).unwrap();
/// let frame: &[u8] = batch.seal(&mut stream); // write these bytes to the stream
/// # assert!(frame.len() > HEADER_LEN);
/// ```
#[derive(Debug)]
pub struct PageBatchBuilder {
    buf: Vec<u8>,
    round: u32,
    count: u32,
    max_pages: usize,
}

impl Default for PageBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PageBatchBuilder {
    /// A builder for batches of up to [`MAX_BATCH_PAGES`] pages.
    pub fn new() -> Self {
        Self::with_max_pages(MAX_BATCH_PAGES)
    }

    /// A builder for smaller batches (at most [`MAX_BATCH_PAGES`]).
    pub fn with_max_pages(max_pages: usize) -> Self {
        let max_pages = max_pages.clamp(1, MAX_BATCH_PAGES);
        // Room for a full batch plus the encoder's scratch space for one page,
        // so filling the batch never reallocates.
        let capacity = HEADER_LEN + MAX_BATCH_PAYLOAD + 3 * PAGE_SIZE;
        let mut builder = PageBatchBuilder {
            buf: Vec::with_capacity(capacity),
            round: 0,
            count: 0,
            max_pages,
        };
        builder.begin(0);
        builder
    }

    /// Empties the buffer and starts a batch of `round`.
    pub fn begin(&mut self, round: u32) {
        self.buf.clear();
        self.buf.resize(HEADER_LEN + BATCH_HEADER_LEN, 0);
        self.round = round;
        self.count = 0;
    }

    /// The round the batch being built belongs to.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// Pages added so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no page was added since [`begin`](Self::begin).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the batch holds its most pages: seal it before adding more.
    pub fn is_full(&self) -> bool {
        self.len() >= self.max_pages
    }

    /// Encodes page number `page` into the batch, choosing the cheapest
    /// encoding (see [`encode_page`](super::page::encode_page)), and says which was chosen.
    pub fn push_page(
        &mut self,
        page: u64,
        new: &Page,
        previous: Option<&Page>,
    ) -> Result<Encoding, BatchFull> {
        self.push_page_with(page, new, previous, true)
    }

    /// [`push_page`](Self::push_page) with LZ4 allowed or not (see
    /// [`encode_page_with`]).
    pub fn push_page_with(
        &mut self,
        page: u64,
        new: &Page,
        previous: Option<&Page>,
        lz4: bool,
    ) -> Result<Encoding, BatchFull> {
        if self.is_full() {
            return Err(BatchFull);
        }
        let entry_at = self.buf.len();
        self.buf.resize(entry_at + PAGE_ENTRY_LEN, 0);
        let encoding = encode_page_with(new, previous, lz4, &mut self.buf);
        let len = self.buf.len() - entry_at - PAGE_ENTRY_LEN;
        self.write_entry(entry_at, page, encoding, len);
        Ok(encoding)
    }

    /// Adds a page that is already encoded.
    ///
    /// # Panics
    /// If `payload`'s length is impossible for `encoding` (a caller bug).
    pub fn push_encoded(
        &mut self,
        page: u64,
        encoding: Encoding,
        payload: &[u8],
    ) -> Result<(), BatchFull> {
        assert!(
            encoding.accepts_len(payload.len()),
            "{} bytes cannot be a {encoding} page",
            payload.len()
        );
        if self.is_full() {
            return Err(BatchFull);
        }
        let entry_at = self.buf.len();
        self.buf.resize(entry_at + PAGE_ENTRY_LEN, 0);
        self.buf.extend_from_slice(payload);
        self.write_entry(entry_at, page, encoding, payload.len());
        Ok(())
    }

    fn write_entry(&mut self, at: usize, page: u64, encoding: Encoding, len: usize) {
        let entry = PageEntry {
            page: U64::new(page),
            encoding: encoding as u8,
            reserved: 0,
            length: U16::new(len as u16),
        };
        self.buf[at..at + PAGE_ENTRY_LEN].copy_from_slice(entry.as_bytes());
        self.count += 1;
    }

    /// Finishes the frame with the next sequence number of `stream` and
    /// returns its bytes, ready to be written. The batch stays in the buffer
    /// until [`begin`](Self::begin) is called again.
    pub fn seal(&mut self, stream: &mut FrameEncoder) -> &[u8] {
        self.buf[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&self.round.to_le_bytes());
        self.buf[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&self.count.to_le_bytes());
        let sequence = stream.take_sequence();
        seal(
            &mut self.buf,
            FrameKind::PageBatch,
            sequence,
            stream.integrity(),
        );
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;
    use crate::wire::batch::PageBatch;

    fn body(frame: &[u8]) -> &[u8] {
        &frame[HEADER_LEN..]
    }

    #[test]
    fn built_batch_parses_back_page_by_page() {
        let mut builder = PageBatchBuilder::new();
        let mut stream = FrameEncoder::new();
        builder.begin(3);
        let zero = [0u8; PAGE_SIZE];
        let text = [b'a'; PAGE_SIZE];
        let mut hot = text;
        hot[9] = b'b';
        assert_eq!(builder.push_page(1, &zero, None), Ok(Encoding::Zero));
        assert_eq!(builder.push_page(2, &text, None), Ok(Encoding::Lz4));
        assert_eq!(builder.push_page(3, &hot, Some(&text)), Ok(Encoding::Delta));
        let frame = builder.seal(&mut stream).to_vec();
        let batch = PageBatch::parse(body(&frame)).unwrap();
        assert_eq!((batch.round, batch.len()), (3, 3));
        let mut memory = [
            [0x11u8; PAGE_SIZE],
            [0x22; PAGE_SIZE],
            [0x33; PAGE_SIZE],
            text,
        ];
        for page in batch {
            page.decode_into(&mut memory[page.page as usize]).unwrap();
        }
        assert_eq!(memory[1], zero);
        assert_eq!(memory[2], text);
        assert_eq!(memory[3], hot);
    }

    #[test]
    fn builder_is_reused_without_growing() {
        let mut builder = PageBatchBuilder::with_max_pages(MAX_BATCH_PAGES);
        let mut stream = FrameEncoder::new();
        let capacity = builder.buf.capacity();
        let mut page = [0u8; PAGE_SIZE];
        for round in 0..2 {
            builder.begin(round);
            let mut n = 0u64;
            while !builder.is_full() {
                // Incompressible: every page goes raw, the worst case for size.
                let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for b in page.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                builder.push_page(n, &page, None).unwrap();
                n += 1;
            }
            assert_eq!(builder.push_page(n, &page, None), Err(BatchFull));
            let frame = builder.seal(&mut stream);
            assert!(frame.len() - HEADER_LEN <= MAX_BATCH_PAYLOAD);
        }
        assert_eq!(builder.buf.capacity(), capacity);
    }

    #[test]
    fn batch_parser_refuses_bad_entries() {
        let mut builder = PageBatchBuilder::new();
        builder
            .push_encoded(5, Encoding::Raw, &[1; PAGE_SIZE])
            .unwrap();
        let frame = builder.seal(&mut FrameEncoder::new()).to_vec();
        let good = body(&frame).to_vec();
        assert!(PageBatch::parse(&good).is_ok());

        let mut bad = good.clone();
        bad[8 + 8] = 9; // encoding byte
        assert_eq!(
            PageBatch::parse(&bad),
            Err(WireError::UnknownEncoding {
                page: 5,
                encoding: 9
            })
        );

        let mut bad = good.clone();
        bad[8 + 10..8 + 12].copy_from_slice(&100u16.to_le_bytes()); // raw length
        assert!(matches!(
            PageBatch::parse(&bad),
            Err(WireError::Malformed { .. })
        ));

        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&2u32.to_le_bytes()); // count beyond the entries
        assert!(matches!(
            PageBatch::parse(&bad),
            Err(WireError::Malformed { .. })
        ));

        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            PageBatch::parse(&bad),
            Err(WireError::Malformed { .. })
        ));

        let mut bad = good;
        bad.push(0); // trailing byte
        assert!(matches!(
            PageBatch::parse(&bad),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn corrupt_lz4_page_is_a_bad_page_error() {
        let mut builder = PageBatchBuilder::new();
        builder.push_encoded(9, Encoding::Lz4, &[0xff; 8]).unwrap();
        let frame = builder.seal(&mut FrameEncoder::new()).to_vec();
        let batch = PageBatch::parse(body(&frame)).unwrap();
        let page = batch.pages().next().unwrap();
        let mut dest = [0u8; PAGE_SIZE];
        assert!(matches!(
            page.decode_into(&mut dest),
            Err(WireError::BadPage { page: 9, .. })
        ));
    }
}
