//! The management protocol between `moverd` and its clients (`moverctl`, a
//! management server, or another agent), in the style of QMP: one JSON
//! object per line (`\n`-terminated, UTF-8), over TCP or a Unix socket.
//!
//! ```text
//! client                                           agent
//!        ◀── {"greeting":{"agent":"hostA","build":{…},"protocol":1}}
//! {"id":1,"execute":"authenticate","arguments":{"token":"…"}} ──▶
//!        ◀── {"id":1,"return":{}}               (or {"id":1,"error":<EMG>})
//! {"id":2,"execute":"migrate","arguments":{"lpar":"web1","to":"hostB:7400"}} ──▶
//!        ◀── {"id":2,"return":{"migration":7}}
//!        ◀── {"event":"MIGRATION_STAGE","data":{…,"stage":16464,…},"timestamp_ns":…}
//!        ◀── {"event":"MIGRATION_PROGRESS","data":{…}}   (after every round)
//!        ◀── {"event":"MIGRATION_COMPLETED","data":{…,"report":{…}}}
//! ```
//!
//! Rules, each enforced by the server (`agent::server`):
//!
//! * The agent speaks first (greeting). Nothing but `authenticate` is served
//!   before a correct token, and of any other request only the envelope
//!   ([`Envelope`]) is read; a refused request keeps the connection. After
//!   [`MAX_BAD_TOKENS`] wrong tokens, or [`AUTH_TIMEOUT`] without a correct
//!   one (checked on every read, however the bytes trickle in), the agent
//!   closes the connection. Tokens are compared in constant time.
//! * Numbers that become durations or rates are bounded ([`bounds`]) before
//!   the agent acts on a request.
//! * Every request carries an `id` (an unsigned integer chosen by the
//!   client); its reply carries the same `id` and either `return` (a JSON
//!   object) or `error` (an [`Emg`](crate::Emg), serialised field by field, so an error
//!   raised on another agent arrives intact). A line that cannot be read as a
//!   request is answered with `"id":null` and an error; the connection stays.
//! * A line longer than [`MAX_LINE`] bytes is refused and skipped up to its
//!   newline: the agent never buffers more than that for one request.
//! * Events (`MIGRATION_STAGE`, `MIGRATION_PROGRESS`, `MIGRATION_COMPLETED`,
//!   `MIGRATION_FAILED`) go to every authenticated connection, interleaved
//!   with replies; they carry the migration id they belong to.
//! * Versioning: [`PROTOCOL_VERSION`] is in the greeting; a client refuses
//!   an agent whose major version differs from its own.
//!
//! The types, one module each: [`commands`] (the [`Command`] enum and one
//! argument struct per command in [`request`], each a [`Request`] naming
//! its reply type), [`reply`] (one reply type per command), [`events`]
//! (the [`Event`] enum), [`vocabulary`] (the words agent and CLI share:
//! migration mode, side, LPAR state, history record, journal summary, host
//! facts). A [`Client`] sends a request and returns its typed reply; the
//! agent answers each command with a value of its reply type.
//!
//! `docs/protocol.md` lists every command and event with an example, and
//! `tests/protocol_doc.rs` checks that each example parses into these
//! types.

pub mod address;
pub mod bounds;
pub mod client;
pub mod commands;
pub mod events;
pub mod line;
mod messages;
pub mod reply;
pub mod secure;
pub mod vocabulary;

pub use address::{Address, Stream};
pub use client::Client;
pub use commands::{COMMANDS, CONSOLE_CHUNK, Command, Request, request};
pub use events::Event;
pub use messages::*;
pub use vocabulary::*;

use std::time::Duration;

/// Version of this protocol, announced in the greeting.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request or reply line, newline excluded. A request needs a few
/// hundred bytes; a migration report some tens of KiB. The bound stops a
/// client from making the agent buffer without limit.
pub const MAX_LINE: usize = 1 << 20;

/// Wrong tokens after which the agent hangs up.
pub const MAX_BAD_TOKENS: u32 = 3;

/// How long a connection may stay unauthenticated.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
