//! The migration path: N authenticated, encrypted, paced TCP streams
//! between the source and the destination agent. This layer moves bytes; it
//! does not know what they mean (that is [`wire`](crate::wire)'s job).
//!
//! # Setting up a migration's streams
//!
//! ```text
//! source agent                                         destination agent
//! (connect_streams)                                    (PathListener)
//!                                                      bind(path.addr:port)  listens on the
//!                                                      migration path address only
//!                     ◀── management protocol ──────── issue_key(): 32 bytes, OS RNG,
//!                         (key, migration id, port)    one per migration
//!                                                      accept_streams(n, key, id, deadline):
//!                                                        consume key (a second use is refused)
//! for stream i in 0..n:
//!   socket; [SO_BINDTODEVICE path.interface]
//!   bind(path.addr:0)           (never the management address)
//!   connect ─────────────────── TCP ────────────────▶  accept; handshake thread per stream,
//!                                                      at most max_pending at once
//!   TLS 1.3 handshake (rustls) ◀══════════════════▶    first byte 0x16: TLS (tls.rs)
//!     binding = exporter("EXPORTER-lpar-mover-migration-stream", 32 bytes)
//!   [--insecure-plaintext: HELLO "LPMT" v2 0x04 0 ─▶  first byte 'L': refused with verdict
//!    instead of TLS, binding = 0^32]                   EncryptionRequired unless allowed]
//!   then inside the session:
//!           ◀── CHALLENGE  "LPMT" v2 0x01 0 | nonce[32] ─ fresh random nonce per stream
//!   tag = HMAC-SHA256(key, "lpmt source\0" ‖ nonce ‖ id:u64le ‖ i:u16le ‖ binding)
//!           ─── RESPONSE   "LPMT" v2 0x02 i | id:u64le | tag[32] ─▶
//!                                                      verify in constant time, then:
//!                                                        tag == a tag already granted → AnswerReplayed
//!                                                        verifies with a consumed key → KeyReplayed
//!                                                        right key, other migration   → WrongMigration
//!                                                        i ≥ n or i already granted   → StreamIndex
//!                                                        otherwise                    → AuthenticationFailed
//!           ◀── VERDICT    "LPMT" v2 0x03 code | proof[32] ─ 0 accepted, proof =
//!   proof checked: the destination holds       HMAC(key, "lpmt destination\0" ‖ nonce ‖ id ‖ i ‖ binding);
//!   the key too, else DestinationUnproven      else refused (zero proof), logged (warn!), closed
//! tune: keepalive, TCP_USER_TIMEOUT, TCP_NODELAY       (same options on accepted streams)
//! keys out of rustls → TLS 1.3 records (record.rs), one key per direction
//! payload bytes (wire frames) ═══════════════════════▶ only after the verdict
//! ```
//!
//! Every handshake message is fixed-size (8, 40, 48 and 40 bytes),
//! little-endian, with a 4-byte magic, a version byte and a kind byte; the
//! decoders in [`handshake`] and the record header check in [`record`] are
//! total and never read a length from the peer beyond a named bound. A
//! refused stream does not end [`PathListener::accept_streams`] (a port
//! scanner must not abort a migration); when the deadline passes, the last
//! refusal is reported.
//!
//! # Encryption, and why this way
//!
//! Every stream is TLS 1.3 (rustls with aws-lc-rs, AES-128-GCM preferred)
//! unless the operator asked for `--insecure-plaintext` *and* the
//! destination allows it ([`Encryption`]). The one-time key, not a
//! certificate, authenticates the streams: both ends prove it over the TLS
//! exporter, so a stream is bound to its session, its migration and its
//! index; one recorded from another migration, or relayed by a machine in
//! the middle (two sessions, two exporters), fails its proof. The source
//! sends no guest byte before the destination's proof checks out. After
//! the proofs, each end takes the traffic keys out of rustls and runs the
//! record layer itself ([`record`], [`MigrationStream`]): the engine reads
//! on stream 0 while it writes on it, from two threads, and one rustls
//! connection object would put both behind one lock.
//!
//! # Bounds and timeouts, and why
//!
//! | name | value | why |
//! |---|---|---|
//! | [`MAX_STREAMS`] | 64 | stream index is a `u16`; more streams than this only add contention |
//! | [`DEFAULT_STREAMS`] | 4 | measured, see the constant |
//! | [`DEFAULT_HANDSHAKE_TIMEOUT`] | 3 s | whole handshake of one stream; a silent peer or a slow-loris holds a slot at most this long |
//! | [`DEFAULT_MAX_PENDING_HANDSHAKES`] | 16 | handshakes in flight on a listener; more connections are closed unanswered, and the source retries (20 ms backoff doubling to 500 ms) within its set-up timeout |
//! | handshake sizes | 8 / 40 / 48 / 40 bytes | fixed: the reader never allocates or waits for more |
//! | [`record::MAX_CIPHERTEXT`] | 16 KiB + 17 | a TLS record longer than an unpadded full one is refused from its header |
//! | [`record::RECORD_LIMIT`] | 2^24 records | per stream and direction (RFC 8446 §5.5 for AES-GCM); 256 GiB of full records |
//! | [`DEFAULT_USER_TIMEOUT`] | 5 s | unacknowledged data or a closed zero window for this long means the peer is dead |
//! | keepalive | 2 s idle, 1 s × 3 | an idle stream to a dead peer is noticed after ~5 s |
//! | [`CONSUMED_KEYS_KEPT`] | 256 | consumed keys remembered to name a replay as such |
//! | [`PACE_BURST_TIME`] | 20 ms | how far a paced sender may run ahead of the cap after idling |
//!
//! # Streams are independent
//!
//! Each stream is an ordered byte stream; the streams are not ordered
//! relative to one another. This layer hands the caller
//! [`MigrationStream`]s (clone and shut down like a `TcpStream`); the engine's page pump
//! (`engine::pump`) runs one writer thread per stream, each writing whole
//! frames through a [`PacedWriter`] that shares one [`Pacer`] (the
//! bandwidth cap holds across all streams), and one reader thread per
//! stream on the destination. Order across streams is restored above this
//! layer: every frame carries its stream's sequence number, and an
//! end-of-round frame sent on every stream is a barrier the destination
//! waits for on all of them before it applies the next round.
//!
//! # Failure
//!
//! Any error is a [`TransportError`] whose message names the addresses
//! involved; it converts into an [`Emg`](crate::emg::Emg) for the operator
//! (module by side, phase `CONNECT`, `SOURCE_PATH`/`DESTINATION_PATH` or
//! `CONNECTION_LOST`). Once set up, a stream's I/O errors are the engine's
//! to report; a stream that fails fails the whole migration: the bytes
//! queued on it are lost, so the migration is abandoned (the source keeps
//! running the LPAR) rather than resumed on fewer streams.

mod connect;
mod error;
pub mod handshake;
pub mod identity;
mod key;
mod listener;
mod pacer;
mod path;
pub mod peer_tls;
mod provider;
pub mod record;
mod secure;
mod socket;
mod stream;
pub mod tls;
pub mod x509;

pub use connect::{connect_streams, connect_streams_with};
pub use error::{HandshakeError, OsError, Side, TransportError, cause};
pub(crate) use key::os_random;
pub use key::{CONSUMED_KEYS_KEPT, KEY_LEN, KeyRegistry, OneTimeKey};
pub use listener::PathListener;
pub use pacer::{PACE_BURST_TIME, PACE_CHUNK, PacedWriter, Pacer};
pub use path::{MAX_INTERFACE_NAME, MigrationPath};
pub use secure::Encryption;
pub use socket::{
    AppliedOptions, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_KEEPALIVE_COUNT, DEFAULT_KEEPALIVE_IDLE,
    DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_MAX_PENDING_HANDSHAKES, DEFAULT_SOCKET_BUFFER,
    DEFAULT_USER_TIMEOUT, StreamOptions, applied_options,
};
#[cfg(feature = "fault-injection")]
pub use stream::corrupt_next_write;
pub use stream::{MigrationStream, Protection};

/// Most streams one migration may use (the stream index is a `u16` on the
/// wire of the handshake; beyond a few per core, more streams only contend).
pub const MAX_STREAMS: usize = 64;

/// Streams per migration unless configured otherwise, chosen with
/// `benches/transport_throughput.rs`: 1 GiB over loopback, 5 interleaved runs
/// per configuration, three bench runs on the 2-core development host (shared
/// with other builds, so noisy). Median GB/s relative to a plain
/// single-socket `write_all` of the same bytes in the same run:
///
/// | streams | run 1 | run 2 | run 3 |
/// |---|---|---|---|
/// | 1 | 0.63× | 0.66× | 0.76× |
/// | 2 | 0.62× | 0.89× | 0.73× |
/// | 4 | 0.81× | 0.95× | 0.93× |
/// | 8 | 0.86× | 0.69× | 0.89× |
///
/// Four streams were best or tied in every run; eight never beat them by more
/// than the noise and cost twice the threads and queued memory. On loopback
/// the CPU is the bottleneck (the streams make one bounce copy per byte that
/// the plain copy does not: that alone measured 0.88×), so re-measure on the
/// real migration NICs before raising it.
pub const DEFAULT_STREAMS: usize = 4;
