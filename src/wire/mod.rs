//! The migration stream (issue 3): framed, versioned, checksummed messages
//! and the page encodings. This comment is the specification; it changes
//! with the code. `wire` knows nothing about sockets or partitions: it turns
//! frames into bytes and bytes into frames.
//!
//! # Frames
//!
//! Every stream is a sequence of frames, each a fixed 24-byte header and a
//! payload; all integers are little-endian:
//!
//! ```text
//!  0       4       6   7   8       12      16              24
//!  ┌───────┬───────┬───┬───┬───────┬───────┬───────────────┬──────────────────┐
//!  │ magic │version│knd│flg│length │ crc32 │   sequence    │ payload          │
//!  │"LPMW" │  u16  │u8 │ 0 │  u32  │       │      u64      │ (length bytes)   │
//!  └───────┴───────┴───┴───┴───────┴───────┴───────────────┴──────────────────┘
//!   crc32 = CRC-32 (IEEE) of header (crc32 field as zero) ‖ payload, or 0
//!           on a stream that authenticates every byte itself (TLS 1.3)
//!   sequence = 0 for a stream's first frame, +1 per frame, per stream
//! ```
//!
//! Which of the two a stream's frames use is [`Integrity`], chosen by each
//! end from the stream it set up, never from a frame: a plaintext stream's
//! decoder checks every checksum, whatever the peer sends.
//!
//! | kind | name | payload (see `frame`, `batch`, `abort`) | bound |
//! |---|---|---|---|
//! | 1 | Hello | version, migration id (u128), build identity, authentication proof | [`MAX_HELLO_PAYLOAD`] |
//! | 2 | LparConfig | opaque bytes | [`MAX_LPAR_CONFIG`] |
//! | 3 | PageBatch | round, then (page number, encoding, payload) × count | [`MAX_BATCH_PAYLOAD`], [`MAX_BATCH_PAGES`] |
//! | 4 | EndOfRound | round, pages sent in the round | 12 bytes |
//! | 5 | DeviceState | opaque bytes (the `state` layer's encoding) | [`MAX_DEVICE_STATE`] |
//! | 6 | Switchover | step (suspended, ready, commit, running), timestamp, image digest | 17 bytes |
//! | 7 | Abort | an [`Emg`](crate::emg::Emg): operands as integers, message and action as UTF-8 | [`MAX_ABORT_PAYLOAD`] |
//! | 8 | Keepalive | timestamp | 8 bytes |
//! | 9 | Identities | the destination slot's WWPN pairs and MACs (see `frame`) | [`MAX_IDENTITIES_PAYLOAD`] |
//! | 10 | DeviceStateBase | opaque bytes: the device state as read while the guest ran | [`MAX_DEVICE_STATE`] |
//! | 11 | DeviceStateDelta | the final device state as runs of bytes that differ from the base ([`state_delta`]) | [`MAX_DEVICE_STATE`] |
//! | 12 | Rehearsal | how long the destination took to load the device-state base (ns) | 8 bytes |
//!
//! Every payload is bounded by [`MAX_FRAME_PAYLOAD`]; the decoder checks the
//! declared length against the kind's bound as soon as the header arrives,
//! before it buffers the payload, so no input can make it allocate more
//! than [`MAX_RECEIVE_BUFFER`] per stream.
//!
//! # The exchange
//!
//! ```text
//! source                                               destination
//!   │── Hello (version, build, migration id, proof) ─────▶│ on every stream
//!   │◀──────────────────────────────────────────── Hello ─│
//!   │── LparConfig ──────────────────────────────────────▶│
//!   │── DeviceStateBase (version 4, if the partition ────▶│ kept for the delta, and
//!   │     can read its devices while the guest runs)      │ loaded as a rehearsal
//!   │◀──────────────── Rehearsal (the load's time) ───────│ (version 5)
//!   │                                                     │
//!   │── PageBatch(round 0) ─┐  on any stream, in          │
//!   │── PageBatch(round 0) ─┤  any interleaving  ────────▶│ decode into guest memory
//!   │── EndOfRound(0, pages) on every stream ────────────▶│ barrier: round 0 complete
//!   │── PageBatch(round k) … EndOfRound(k, pages) ───────▶│   (k = 1, 2, …, pages
//!   │                                                     │    dirtied in round k-1)
//!   │   (vCPUs stopped at t)                              │
//!   │── PageBatch(final) … DeviceState or ──────────────▶│ apply device semantics,
//!   │     DeviceStateDelta against the base (stream 0) …  │
//!   │── EndOfRound(final) ───────────────────────────────▶│ load (while the pages land)
//!   │── Switchover(Suspended, t, image digest) ──────────▶│ final round is complete:
//!   │                                                     │ compare the digests
//!   │◀──────────────── Identities (the slot's WWPNs, MACs) ─│ (version 2 on)
//!   │◀──────────────────── Switchover(Ready, its digest) ─│
//!   │── Switchover(Commit) ──────────────────────────────▶│ ownership passes
//!   │◀─────────────────────────── Switchover(Running, t) ─│ first vCPU ran at t
//!
//!   Up to version 2 the DeviceState followed Suspended, after the final
//!   round; a version-3 source sends it that way to a version-2
//!   destination, and a destination takes either order. Since version 4
//!   the bulky device state (VRAM, NVRAM, MMIO snapshots) crosses before
//!   the pause as DeviceStateBase, and the pause carries only the bytes
//!   that changed; a source sends the whole DeviceState to an older
//!   destination, or when the delta would be no smaller. Since version 5
//!   the destination loads the base into its LPAR at once, as a rehearsal
//!   (the final load then writes into memory already in place), and tells
//!   a version-5 source how long that took: the source's predicted
//!   suspension includes the destination's load.
//!
//!   Abort(Emg) may be sent by either side at any point and ends the
//!   migration; Keepalive may be sent by either side on an idle stream.
//! ```
//!
//! Within one stream frames arrive in order (the decoder enforces it with
//! the sequence numbers: a duplicated, reordered or missing frame is an
//! error). Across streams there is no order: a round's pages may travel on
//! any stream, and the receiver must finish applying round k (all streams'
//! EndOfRound(k)) before it applies pages of round k+1, so an older copy of
//! a page never overwrites a newer one. The EndOfRound page count lets the
//! receiver check it got every page of the round.
//!
//! # Pages
//!
//! Each page travels as Zero (no payload), Raw (4096 bytes), Lz4 (an
//! `lz4_flex` block, used only when at most [`LZ4_MAX_PAYLOAD`] bytes) or
//! Delta (XOR against the copy the receiver holds from an earlier round,
//! zero-run encoded; see `delta`). [`encode_page`] picks the smallest;
//! [`decode_page`] reproduces the page exactly.
//!
//! # Using it
//!
//! One [`FrameEncoder`] and one [`FrameDecoder`] per stream; page batches
//! are filled in a reusable [`PageBatchBuilder`] and decoded straight into
//! guest memory:
//!
//! ```
//! use lpar_mover::wire::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Sender.
//! let mut stream = FrameEncoder::new();
//! let mut batch = PageBatchBuilder::new();
//! let mut socket = Vec::new(); // stands for the stream's socket
//! batch.begin(0);
//! batch.push_page(7, &[1; PAGE_SIZE], None)?;
//! socket.extend_from_slice(batch.seal(&mut stream));
//! stream.encode(&Frame::EndOfRound(EndOfRound { round: 0, pages: 1 }), &mut socket)?;
//!
//! // Receiver: socket → decoder buffer → guest memory, no copy between.
//! let mut guest = vec![[0u8; PAGE_SIZE]; 8];
//! let mut decoder = FrameDecoder::new();
//! let mut source = std::io::Cursor::new(socket);
//! while decoder.read_from(&mut source)? > 0 {
//!     while let Some(frame) = decoder.next_frame()? {
//!         match frame {
//!             Frame::PageBatch(batch) => {
//!                 for page in batch.pages() {
//!                     page.decode_into(&mut guest[page.page as usize])?;
//!                 }
//!             }
//!             Frame::EndOfRound(end) => assert_eq!(end.pages, 1),
//!             _ => {}
//!         }
//!     }
//! }
//! decoder.finish()?; // the stream must not end inside a frame
//! assert_eq!(guest[7], [1; PAGE_SIZE]);
//! # Ok(()) }
//! ```
//!
//! # Versioning
//!
//! Every header carries the sender's [`PROTOCOL_VERSION`], and so does the
//! Hello. A receiver accepts its own version and the one before
//! ([`PREVIOUS_PROTOCOL_VERSION`]) and refuses any other with
//! [`WireError::UnsupportedVersion`], naming both versions; the check is
//! [`check_version`]. Bump the version with every incompatible change.

include!("version.rs");

mod abort;
mod batch;
mod batch_builder;
mod cursor;
mod decoder;
mod delta;
mod encoder;
mod error;
mod frame;
mod header;
mod kind;
pub mod limits;
mod page;
pub mod state_delta;

pub use abort::parse_emg;
pub use batch::{PageBatch, PageIter, PageRef};
pub use batch_builder::{BatchFull, PageBatchBuilder};
pub use decoder::FrameDecoder;
pub use encoder::FrameEncoder;
pub use error::WireError;
pub use frame::{
    EndOfRound, Frame, Hello, Keepalive, MigrationId, Rehearsal, Switchover, SwitchoverStep,
};
pub use header::{FrameHeader, Integrity, MAGIC, check_version};
pub use kind::FrameKind;
pub use limits::*;
pub use page::{
    DELTA_GOOD_ENOUGH, Encoding, LZ4_MAX_PAYLOAD, PageError, decode_page, encode_page,
    encode_page_with, is_zero_page, looks_incompressible,
};
