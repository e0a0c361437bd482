//! What can go wrong on the migration path, written for the operator, and its
//! one conversion into an [`Emg`].

use crate::emg::{self, Emg, Module};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Which end of a migration: the end of the migration path that detected
/// an error here, and the crate's one side type above (re-exported as
/// `control::Side`: a migration's side, a validation item's, a journal's).
/// On the management protocol it reads `"source"` or `"destination"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The source agent: it connects the streams and sends.
    Source,
    /// The destination agent: it listens, authenticates and receives.
    Destination,
}

impl Side {
    fn module(self) -> Module {
        match self {
            Side::Source => Module::MoverSource,
            Side::Destination => Module::MoverDestination,
        }
    }

    fn path_phase(self) -> u16 {
        match self {
            Side::Source => emg::phase::SOURCE_PATH,
            Side::Destination => emg::phase::DESTINATION_PATH,
        }
    }

    /// The side as the protocol spells it.
    pub fn label(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// An operating-system error, shared so that a [`TransportError`] stays
/// `Clone` and every holder of a copy sees the original cause.
pub type OsError = Arc<io::Error>;

/// Why the handshake bytes a peer sent cannot be a handshake message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("{got} bytes where a {kind} message has {want}")]
    Length {
        kind: &'static str,
        want: usize,
        got: usize,
    },
    #[error("bad magic (not an lpar-mover migration stream)")]
    Magic,
    #[error("handshake version {got}, this agent speaks {want}")]
    Version { want: u8, got: u8 },
    #[error("message kind {got:#04x} where {kind} was expected")]
    Kind { kind: &'static str, got: u8 },
    #[error("unknown verdict code {0}")]
    Verdict(u16),
    #[error("reserved bytes are not zero")]
    Reserved,
}

/// Everything the migration path can report. Each message says what happened
/// and between which addresses; [`Emg`] adds the suggested action.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the migration path address {addr} is not present on this host ({side} path)")]
    PathAddressNotLocal { side: Side, addr: Ipv4Addr },

    #[error("cannot bind the {side} migration path to {addr}: {source}")]
    BindFailed {
        side: Side,
        addr: SocketAddr,
        #[source]
        source: OsError,
    },

    #[error(
        "cannot bind to interface {interface} (SO_BINDTODEVICE) for path address {addr}: {source}"
    )]
    BindToDevice {
        side: Side,
        interface: String,
        addr: Ipv4Addr,
        #[source]
        source: OsError,
    },

    #[error("connection refused by {remote} (from path address {local})")]
    ConnectionRefused { local: Ipv4Addr, remote: SocketAddr },

    #[error("no connection from path address {local} to {remote} within {timeout:?}")]
    ConnectTimeout {
        local: Ipv4Addr,
        remote: SocketAddr,
        timeout: Duration,
    },

    #[error("cannot connect from path address {local} to {remote}: {source}")]
    ConnectFailed {
        local: Ipv4Addr,
        remote: SocketAddr,
        #[source]
        source: OsError,
    },

    #[error(
        "the source abandoned the migration before its streams reached {local} (after {waited:?})"
    )]
    SourceAbandoned { local: SocketAddr, waited: Duration },

    #[error("{accepted} of {wanted} migration streams reached {local} within {waited:?}")]
    AcceptTimeout {
        local: SocketAddr,
        accepted: usize,
        wanted: usize,
        waited: Duration,
    },

    #[error("handshake with {peer} did not complete within {timeout:?}")]
    HandshakeTimeout {
        side: Side,
        peer: SocketAddr,
        timeout: Duration,
    },

    #[error("malformed handshake from {peer}: {reason}")]
    HandshakeMalformed {
        side: Side,
        peer: SocketAddr,
        reason: HandshakeError,
    },

    #[error("stream {stream} with {peer} failed authentication (wrong migration key)")]
    AuthenticationFailed {
        side: Side,
        peer: SocketAddr,
        stream: u16,
    },

    #[error(
        "stream {stream} with {peer} used the one-time key already consumed by migration {migration_id:#x}"
    )]
    KeyReplayed {
        side: Side,
        peer: SocketAddr,
        stream: u16,
        migration_id: u64,
    },

    #[error("stream {stream} with {peer} replayed an answer already used by another stream")]
    AnswerReplayed {
        side: Side,
        peer: SocketAddr,
        stream: u16,
    },

    #[error(
        "stream with {peer} belongs to migration {got:#x}, this listener expects {expected:#x}"
    )]
    WrongMigration {
        side: Side,
        peer: SocketAddr,
        expected: u64,
        got: u64,
    },

    #[error(
        "stream index {stream} with {peer} is out of range or already connected{}",
        accepts(*.wanted)
    )]
    StreamIndex {
        side: Side,
        peer: SocketAddr,
        stream: u16,
        wanted: usize,
    },

    #[error(
        "Connection refused (LPAR Mover-LPAR Mover): the peer {peer} stopped answering on stream {stream} (user timeout or keepalive expired)"
    )]
    PeerDead {
        side: Side,
        peer: SocketAddr,
        stream: usize,
        #[source]
        source: OsError,
    },

    #[error(
        "Connection refused (LPAR Mover-LPAR Mover): stream {stream} to {peer} was lost: {source}"
    )]
    ConnectionLost {
        side: Side,
        peer: SocketAddr,
        stream: usize,
        #[source]
        source: OsError,
    },

    #[error("TLS with {peer} failed on the {side} migration path: {reason}")]
    Tls {
        side: Side,
        peer: SocketAddr,
        reason: String,
    },

    #[error(
        "a migration stream from {peer} offered guest memory in clear; the destination accepts encrypted migration streams only"
    )]
    PlaintextRefused { side: Side, peer: SocketAddr },

    #[error(
        "the listener at {peer} accepted stream {stream} without proving it holds the migration key: it is not the destination that issued it"
    )]
    DestinationUnproven { peer: SocketAddr, stream: u16 },

    #[error("the one-time key {0}")]
    KeyUnusable(&'static str),

    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),

    #[error("invalid migration path settings: {0}")]
    InvalidPath(String),

    #[error("{context} on the {side} migration path failed: {source}")]
    Io {
        side: Side,
        context: &'static str,
        #[source]
        source: OsError,
    },
}

fn accepts(wanted: usize) -> String {
    match wanted {
        0 => String::new(),
        n => format!(" (the destination accepts {n} streams)"),
    }
}

/// The `cause` half-word of op1 for each variant (stable: operators grep for it).
pub mod cause {
    pub const PATH_ADDRESS_NOT_LOCAL: u32 = 0x01;
    pub const BIND_FAILED: u32 = 0x02;
    pub const BIND_TO_DEVICE: u32 = 0x03;
    pub const CONNECTION_REFUSED: u32 = 0x10;
    pub const CONNECT_TIMEOUT: u32 = 0x11;
    pub const CONNECT_FAILED: u32 = 0x12;
    pub const ACCEPT_TIMEOUT: u32 = 0x13;
    pub const SOURCE_ABANDONED: u32 = 0x14;
    pub const HANDSHAKE_TIMEOUT: u32 = 0x20;
    pub const HANDSHAKE_MALFORMED: u32 = 0x21;
    pub const AUTHENTICATION_FAILED: u32 = 0x22;
    pub const KEY_REPLAYED: u32 = 0x23;
    pub const ANSWER_REPLAYED: u32 = 0x24;
    pub const WRONG_MIGRATION: u32 = 0x25;
    pub const STREAM_INDEX: u32 = 0x26;
    pub const TLS: u32 = 0x27;
    pub const PLAINTEXT_REFUSED: u32 = 0x28;
    pub const DESTINATION_UNPROVEN: u32 = 0x29;
    pub const PEER_DEAD: u32 = 0x30;
    pub const CONNECTION_LOST: u32 = 0x31;
    pub const KEY_UNUSABLE: u32 = 0x40;
    pub const RNG: u32 = 0x41;
    pub const INVALID_PATH: u32 = 0x42;
    pub const IO: u32 = 0x4f;
}

impl TransportError {
    /// The end that detected the error (decides the EMG module).
    pub fn side(&self) -> Side {
        use TransportError::*;
        match self {
            PathAddressNotLocal { side, .. }
            | BindFailed { side, .. }
            | BindToDevice { side, .. }
            | HandshakeTimeout { side, .. }
            | HandshakeMalformed { side, .. }
            | AuthenticationFailed { side, .. }
            | KeyReplayed { side, .. }
            | AnswerReplayed { side, .. }
            | WrongMigration { side, .. }
            | StreamIndex { side, .. }
            | PeerDead { side, .. }
            | ConnectionLost { side, .. }
            | Tls { side, .. }
            | PlaintextRefused { side, .. }
            | Io { side, .. } => *side,
            ConnectionRefused { .. }
            | ConnectTimeout { .. }
            | ConnectFailed { .. }
            | DestinationUnproven { .. } => Side::Source,
            AcceptTimeout { .. } | SourceAbandoned { .. } | KeyUnusable(_) | Rng(_) => {
                Side::Destination
            }
            InvalidPath(_) => Side::Source,
        }
    }

    /// True for the refusals an attacker or a misconfigured peer provokes:
    /// these are logged with `warn!` where they are detected.
    pub fn is_refusal(&self) -> bool {
        use TransportError::*;
        matches!(
            self,
            AuthenticationFailed { .. }
                | KeyReplayed { .. }
                | AnswerReplayed { .. }
                | WrongMigration { .. }
                | StreamIndex { .. }
                | HandshakeMalformed { .. }
                | HandshakeTimeout { .. }
                | Tls { .. }
                | PlaintextRefused { .. }
                | DestinationUnproven { .. }
        )
    }

    fn codes(&self) -> (u16, u32, u64, u64, String) {
        use TransportError::*;
        let side = self.side();
        let connect = emg::phase::CONNECT;
        let lost = emg::phase::CONNECTION_LOST;
        let path = side.path_phase();
        let refused = emg::reason::CONNECTION_REFUSED;
        let init = emg::reason::INIT_CONNECTION_FAILED;
        let check_auth = "Restart the migration so the destination issues a new one-time key; \
                          if it recurs, look for an unexpected host connecting to the migration path.";
        match self {
            PathAddressNotLocal { addr, .. } => (path, cause::PATH_ADDRESS_NOT_LOCAL, 0, init, format!(
                "Assign {addr} to the {} migration path interface, or correct the path address in the agent configuration.",
                side.label()
            )),
            BindFailed { .. } => (path, cause::BIND_FAILED, 0, init,
                "Check that no other process uses the migration port and that the path address is configured, then retry.".into()),
            BindToDevice { interface, .. } => (path, cause::BIND_TO_DEVICE, 0, init, format!(
                "Check that interface {interface} exists and carries the path address, and that moverd runs with CAP_NET_RAW."
            )),
            ConnectionRefused { remote, .. } => (connect, cause::CONNECTION_REFUSED, 0, refused, format!(
                "Check that the destination agent is running and listening on {remote}, and that no firewall rejects the migration path."
            )),
            ConnectTimeout { remote, .. } => (connect, cause::CONNECT_TIMEOUT, 0, init, format!(
                "Check the migration path cabling, routing and firewall between this host and {remote}."
            )),
            ConnectFailed { remote, .. } => (connect, cause::CONNECT_FAILED, 0, init, format!(
                "Check the migration path between this host and {remote}, then retry."
            )),
            SourceAbandoned { .. } => (connect, cause::SOURCE_ABANDONED, 0, init,
                "Nothing was received here and the LPAR defined for it is removed; read the source agent's error for this migration, fix what it names and migrate again.".into()),
            AcceptTimeout { .. } => (connect, cause::ACCEPT_TIMEOUT, 0, init,
                "Check that the source agent can reach this host's migration path address, then retry the migration.".into()),
            HandshakeTimeout { .. } => (connect, cause::HANDSHAKE_TIMEOUT, 0, init,
                "Check the migration path for packet loss, and that the peer is an lpar-mover agent of a compatible version.".into()),
            HandshakeMalformed { .. } => (connect, cause::HANDSHAKE_MALFORMED, 0, init,
                "Check that the peer is an lpar-mover agent of a compatible version; something else is connecting to the migration port.".into()),
            AuthenticationFailed { stream, .. } => (connect, cause::AUTHENTICATION_FAILED, u64::from(*stream), refused, check_auth.into()),
            KeyReplayed { stream, .. } => (connect, cause::KEY_REPLAYED, u64::from(*stream), refused, check_auth.into()),
            AnswerReplayed { stream, .. } => (connect, cause::ANSWER_REPLAYED, u64::from(*stream), refused, check_auth.into()),
            WrongMigration { got, .. } => (connect, cause::WRONG_MIGRATION, *got, refused,
                "Check that the source is migrating to the destination that issued this migration, then retry.".into()),
            StreamIndex { stream, .. } => (connect, cause::STREAM_INDEX, u64::from(*stream), refused,
                "Check that both agents agree on the number of migration streams, then retry.".into()),
            PeerDead { stream, peer, .. } => (lost, cause::PEER_DEAD, *stream as u64, refused, format!(
                "Check the peer host {} and the migration path; the migration was abandoned and can be retried.", peer.ip()
            )),
            ConnectionLost { stream, peer, .. } => (lost, cause::CONNECTION_LOST, *stream as u64, refused, format!(
                "Check the agent on {} and the migration path; the migration was abandoned and can be retried.", peer.ip()
            )),
            Tls { .. } => (connect, cause::TLS, 0, refused,
                "Check that the peer is an lpar-mover agent of this version (TLS 1.3 with AES-GCM) and that nothing on the migration path intercepts it, then retry; the LPAR keeps running on the source.".into()),
            PlaintextRefused { .. } => (connect, cause::PLAINTEXT_REFUSED, 0, refused,
                "Migrate without --insecure-plaintext; to measure in clear, start the destination agent with --allow-insecure-plaintext. The LPAR keeps running on the source.".into()),
            DestinationUnproven { stream, peer } => (connect, cause::DESTINATION_UNPROVEN, u64::from(*stream), refused, format!(
                "Check what listens on {peer}: the destination agent's migration path address must lead to it. No guest memory was sent; the LPAR keeps running on the source."
            )),
            KeyUnusable(_) => (connect, cause::KEY_UNUSABLE, 0, init,
                "Restart the migration so the destination issues a new one-time key.".into()),
            Rng(_) => (connect, cause::RNG, 0, init,
                "Check the host's entropy source (getrandom); the migration cannot be authenticated without it.".into()),
            InvalidPath(_) => (path, cause::INVALID_PATH, 0, init,
                "Correct the migration path in the agent configuration.".into()),
            Io { .. } => (connect, cause::IO, 0, init,
                "Check the migration path and the host's resources, then retry.".into()),
        }
    }
}

impl From<TransportError> for Emg {
    fn from(e: TransportError) -> Emg {
        let (phase, cause, detail, reason, action) = e.codes();
        Emg::new(e.side().module(), phase, cause, e.to_string(), action)
            .detail(detail)
            .reason(reason)
    }
}

/// Classifies an error from reading or writing an established stream.
pub(crate) fn stream_error(
    side: Side,
    peer: SocketAddr,
    stream: usize,
    e: io::Error,
) -> TransportError {
    let source = Arc::new(e);
    match source.raw_os_error() {
        Some(libc::ETIMEDOUT) | Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) => {
            TransportError::PeerDead {
                side,
                peer,
                stream,
                source,
            }
        }
        _ => TransportError::ConnectionLost {
            side,
            peer,
            stream,
            source,
        },
    }
}

pub(crate) fn os(e: io::Error) -> OsError {
    Arc::new(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "192.0.2.7:7700".parse().unwrap()
    }

    #[test]
    fn refused_connection_becomes_a_source_connect_emg_naming_the_address() {
        let e: Emg = TransportError::ConnectionRefused {
            local: Ipv4Addr::new(192, 0, 2, 1),
            remote: peer(),
        }
        .into();
        assert_eq!(e.module, Module::MoverSource);
        assert_eq!(e.phase, emg::phase::CONNECT);
        assert_eq!(e.reason, emg::reason::CONNECTION_REFUSED);
        assert!(e.message.contains("192.0.2.7:7700") && e.message.contains("192.0.2.1"));
        assert!(e.action.contains("listening on 192.0.2.7:7700"));
    }

    #[test]
    fn a_missing_path_address_is_a_path_phase_error_of_its_side() {
        let e: Emg = TransportError::PathAddressNotLocal {
            side: Side::Destination,
            addr: Ipv4Addr::new(10, 9, 9, 9),
        }
        .into();
        assert_eq!(e.module, Module::MoverDestination);
        assert_eq!(e.phase, emg::phase::DESTINATION_PATH);
        assert_eq!(e.reason, emg::reason::INIT_CONNECTION_FAILED);
        assert!(
            e.to_string()
                .contains("10.9.9.9 is not present on this host")
        );
    }

    #[test]
    fn a_timed_out_stream_is_a_dead_peer_in_the_connection_lost_phase() {
        let e = stream_error(
            Side::Source,
            peer(),
            3,
            io::Error::from_raw_os_error(libc::ETIMEDOUT),
        );
        assert!(matches!(e, TransportError::PeerDead { stream: 3, .. }));
        let e: Emg = e.into();
        assert_eq!(e.phase, emg::phase::CONNECTION_LOST);
        assert_eq!(e.detail, 3);
        assert_eq!(e.cause, cause::PEER_DEAD);
        // The manual's lost connection: op3 0x02 and its words.
        assert_eq!(e.reason, emg::reason::CONNECTION_REFUSED);
        assert!(
            e.message
                .starts_with("Connection refused (LPAR Mover-LPAR Mover):"),
            "{e}"
        );
    }
}
