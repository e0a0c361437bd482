//! The named bounds of the wire format. Every length that arrives from the
//! peer is checked against one of these before anything is buffered or
//! allocated for it, so a hostile or corrupted stream cannot make a receiver
//! allocate more than [`MAX_FRAME_PAYLOAD`] plus a header per stream.

/// Size of the fixed frame header (`FrameHeader`) on the wire.
pub const HEADER_LEN: usize = 24;

/// Guest page size: the dirty-tracking granularity.
pub const PAGE_SIZE: usize = 4096;

/// One guest page.
pub type Page = [u8; PAGE_SIZE];

/// The largest payload any frame may declare.
///
/// Why 2 MiB: a receiver buffers a whole frame before it can check the CRC,
/// so this is the per-stream receive memory (times 8 streams: 16 MiB, small
/// next to any LPAR). It holds a full page batch ([`MAX_BATCH_PAYLOAD`],
/// ~1 MiB of raw pages) and device state or configuration up to 2 MiB, while
/// keeping one frame's CRC check and write-out short enough (~1 ms at
/// 10 Gbit/s) that keepalives and aborts are never stuck behind it.
pub const MAX_FRAME_PAYLOAD: usize = 2 * 1024 * 1024;

/// Pages per batch: 256 pages = 1 MiB of guest memory, large enough to
/// amortise the header and syscall per frame, small enough that a round's
/// pages spread evenly over parallel streams.
pub const MAX_BATCH_PAGES: usize = 256;

/// Batch payload prefix: round (u32) and page count (u32).
pub const BATCH_HEADER_LEN: usize = 8;

/// Per-page entry prefix: page number (u64), encoding (u8), reserved (u8),
/// payload length (u16).
pub const PAGE_ENTRY_LEN: usize = 12;

/// A batch of [`MAX_BATCH_PAGES`] pages all sent raw.
pub const MAX_BATCH_PAYLOAD: usize =
    BATCH_HEADER_LEN + MAX_BATCH_PAGES * (PAGE_ENTRY_LEN + PAGE_SIZE);

/// Opaque LPAR configuration: far more than any configuration needs.
pub const MAX_LPAR_CONFIG: usize = 1024 * 1024;

/// Opaque device state (encoded by the `state` layer): vCPUs, interrupt
/// controllers, timers, NVRAM; NVRAM dominates and stays well below this.
pub const MAX_DEVICE_STATE: usize = MAX_FRAME_PAYLOAD;

/// Each string of the build identity (crate version, git commit).
pub const MAX_IDENTITY_STRING: usize = 64;

/// The authentication proof in a hello (an HMAC tag or a challenge nonce).
pub const MAX_AUTH_PROOF: usize = 128;

/// Hello: version, migration id, two length-prefixed identity strings, the
/// identity's wire version, a length-prefixed proof.
pub const MAX_HELLO_PAYLOAD: usize =
    2 + 16 + 2 * (1 + MAX_IDENTITY_STRING) + 2 + 2 + MAX_AUTH_PROOF;

/// The message and the action of an abort, each, in UTF-8 bytes. Longer
/// text is cut at a character boundary when encoded: an abort must always be
/// sendable.
pub const MAX_EMG_TEXT: usize = 1024;

/// Abort: fixed EMG operands (24 bytes) then two length-prefixed strings.
pub const MAX_ABORT_PAYLOAD: usize = 24 + 2 * (2 + MAX_EMG_TEXT);

/// End of round: round (u32), pages in the round (u64).
pub const END_OF_ROUND_PAYLOAD: usize = 12;

/// Switchover: step (u8), timestamp (u64), image digest (u64).
pub const SWITCHOVER_PAYLOAD: usize = 17;

/// Keepalive: timestamp (u64).
pub const KEEPALIVE_PAYLOAD: usize = 8;

/// Rehearsal: the load's duration in nanoseconds (u64).
pub const REHEARSAL_PAYLOAD: usize = 8;

/// Most FC ports and most NICs one Identities frame may list (each count is
/// bounded separately, so a hostile count cannot make the decoder allocate
/// more than this many entries).
pub const MAX_IDENTITY_PORTS: usize = 64;

/// Identities: FC port count (u8), per port WWPN and migration WWPN (8 + 8
/// bytes), NIC count (u8), per NIC MAC (6 bytes) and manual flag (u8).
pub const MAX_IDENTITIES_PAYLOAD: usize = 2 + MAX_IDENTITY_PORTS * (16 + 7);

/// The receive buffer never grows beyond one maximal frame plus this much
/// read-ahead (so a reader can pull the next frame's start with the tail of
/// the current one).
pub const READ_AHEAD: usize = 64 * 1024;

/// Upper bound of a [`super::FrameDecoder`]'s buffer.
pub const MAX_RECEIVE_BUFFER: usize = HEADER_LEN + MAX_FRAME_PAYLOAD + READ_AHEAD;
