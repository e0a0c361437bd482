//! The per-stream authentication exchange: three fixed-size messages, their
//! total decoders, the HMAC, and the two ends of the exchange with deadlines.
//! The layout is drawn in the [module doc of `transport`](super).

use super::error::{HandshakeError, Side, TransportError, os};
use super::key::{KeyRegistry, OneTimeKey, os_random};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

type HmacSha256 = Hmac<Sha256>;

/// First bytes of every handshake message: "LPMT" (LPAR Mover Transport).
pub const MAGIC: [u8; 4] = *b"LPMT";
/// Version of this handshake. A peer with another version is refused as
/// malformed: the handshake is the one place both agents meet before the
/// `wire` layer negotiates anything, so it never changes lightly.
pub const HANDSHAKE_VERSION: u8 = 1;
/// Length of the destination's random challenge.
pub const CHALLENGE_LEN: usize = 32;
/// Length of the HMAC-SHA256 answer.
pub const TAG_LEN: usize = 32;

const HEADER_LEN: usize = 8;
/// Size of a challenge message; every message has a fixed size, so a reader
/// never trusts a length field and never reads more than this many bytes.
pub const CHALLENGE_MSG_LEN: usize = HEADER_LEN + CHALLENGE_LEN;
/// Size of a response message.
pub const RESPONSE_MSG_LEN: usize = HEADER_LEN + 8 + TAG_LEN;
/// Size of a verdict message.
pub const VERDICT_MSG_LEN: usize = HEADER_LEN;

const KIND_CHALLENGE: u8 = 0x01;
const KIND_RESPONSE: u8 = 0x02;
const KIND_VERDICT: u8 = 0x03;

/// Destination → source: prove you hold the key, for this fresh challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: [u8; CHALLENGE_LEN],
}

/// Source → destination: which stream this is, of which migration, and the
/// proof `HMAC-SHA256(key, nonce || migration_id (LE u64) || stream (LE u16))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub stream: u16,
    pub migration_id: u64,
    pub tag: [u8; TAG_LEN],
}

/// Destination → source: the outcome. Anything but `Accepted` is followed by
/// the destination closing the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    AuthenticationFailed,
    KeyReplayed,
    AnswerReplayed,
    WrongMigration,
    StreamIndex,
}

impl Verdict {
    fn code(self) -> u16 {
        match self {
            Verdict::Accepted => 0,
            Verdict::AuthenticationFailed => 1,
            Verdict::KeyReplayed => 2,
            Verdict::AnswerReplayed => 3,
            Verdict::WrongMigration => 4,
            Verdict::StreamIndex => 5,
        }
    }

    fn from_code(code: u16) -> Result<Self, HandshakeError> {
        Ok(match code {
            0 => Verdict::Accepted,
            1 => Verdict::AuthenticationFailed,
            2 => Verdict::KeyReplayed,
            3 => Verdict::AnswerReplayed,
            4 => Verdict::WrongMigration,
            5 => Verdict::StreamIndex,
            other => return Err(HandshakeError::Verdict(other)),
        })
    }
}

fn header(kind: u8, field: u16) -> [u8; HEADER_LEN] {
    let f = field.to_le_bytes();
    [
        MAGIC[0],
        MAGIC[1],
        MAGIC[2],
        MAGIC[3],
        HANDSHAKE_VERSION,
        kind,
        f[0],
        f[1],
    ]
}

/// Checks length, magic, version and kind; returns the header's u16 field.
fn check_header(
    buf: &[u8],
    kind: u8,
    name: &'static str,
    want: usize,
) -> Result<u16, HandshakeError> {
    if buf.len() != want {
        return Err(HandshakeError::Length {
            kind: name,
            want,
            got: buf.len(),
        });
    }
    if buf[0..4] != MAGIC {
        return Err(HandshakeError::Magic);
    }
    if buf[4] != HANDSHAKE_VERSION {
        return Err(HandshakeError::Version {
            want: HANDSHAKE_VERSION,
            got: buf[4],
        });
    }
    if buf[5] != kind {
        return Err(HandshakeError::Kind {
            kind: name,
            got: buf[5],
        });
    }
    Ok(u16::from_le_bytes([buf[6], buf[7]]))
}

impl Challenge {
    pub fn encode(&self) -> [u8; CHALLENGE_MSG_LEN] {
        let mut out = [0u8; CHALLENGE_MSG_LEN];
        out[..HEADER_LEN].copy_from_slice(&header(KIND_CHALLENGE, 0));
        out[HEADER_LEN..].copy_from_slice(&self.nonce);
        out
    }

    /// Total: any input yields a challenge or a typed error.
    pub fn decode(buf: &[u8]) -> Result<Self, HandshakeError> {
        if check_header(buf, KIND_CHALLENGE, "challenge", CHALLENGE_MSG_LEN)? != 0 {
            return Err(HandshakeError::Reserved);
        }
        let mut nonce = [0u8; CHALLENGE_LEN];
        nonce.copy_from_slice(&buf[HEADER_LEN..]);
        Ok(Challenge { nonce })
    }
}

impl Response {
    pub fn encode(&self) -> [u8; RESPONSE_MSG_LEN] {
        let mut out = [0u8; RESPONSE_MSG_LEN];
        out[..HEADER_LEN].copy_from_slice(&header(KIND_RESPONSE, self.stream));
        out[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&self.migration_id.to_le_bytes());
        out[HEADER_LEN + 8..].copy_from_slice(&self.tag);
        out
    }

    /// Total: any input yields a response or a typed error.
    pub fn decode(buf: &[u8]) -> Result<Self, HandshakeError> {
        let stream = check_header(buf, KIND_RESPONSE, "response", RESPONSE_MSG_LEN)?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&buf[HEADER_LEN..HEADER_LEN + 8]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&buf[HEADER_LEN + 8..]);
        Ok(Response {
            stream,
            migration_id: u64::from_le_bytes(id),
            tag,
        })
    }
}

impl Verdict {
    pub fn encode(&self) -> [u8; VERDICT_MSG_LEN] {
        header(KIND_VERDICT, self.code())
    }

    /// Total: any input yields a verdict or a typed error.
    pub fn decode(buf: &[u8]) -> Result<Self, HandshakeError> {
        Verdict::from_code(check_header(buf, KIND_VERDICT, "verdict", VERDICT_MSG_LEN)?)
    }
}

fn mac(
    key: &OneTimeKey,
    nonce: &[u8; CHALLENGE_LEN],
    migration_id: u64,
    stream: u16,
) -> HmacSha256 {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(nonce);
    m.update(&migration_id.to_le_bytes());
    m.update(&stream.to_le_bytes());
    m
}

/// The answer a holder of `key` gives to `nonce` for stream `stream`.
pub fn answer(
    key: &OneTimeKey,
    nonce: &[u8; CHALLENGE_LEN],
    migration_id: u64,
    stream: u16,
) -> [u8; TAG_LEN] {
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(
        &mac(key, nonce, migration_id, stream)
            .finalize()
            .into_bytes(),
    );
    tag
}

/// Checks an answer in constant time.
pub fn verify(
    key: &OneTimeKey,
    nonce: &[u8; CHALLENGE_LEN],
    migration_id: u64,
    stream: u16,
    tag: &[u8; TAG_LEN],
) -> bool {
    mac(key, nonce, migration_id, stream)
        .verify_slice(tag)
        .is_ok()
}

/// What the destination expects of the streams of one migration, and what it
/// has already granted (shared by the concurrent handshakes).
pub(crate) struct Expectation<'a> {
    pub key: &'a OneTimeKey,
    pub migration_id: u64,
    pub streams: usize,
    pub registry: &'a KeyRegistry,
    pub granted: Mutex<Granted>,
}

#[derive(Default)]
pub(crate) struct Granted {
    streams: Vec<bool>,
    tags: Vec<[u8; TAG_LEN]>,
    nonces: Vec<[u8; CHALLENGE_LEN]>,
}

impl Granted {
    pub fn new(streams: usize) -> Self {
        Granted {
            streams: vec![false; streams],
            tags: Vec::with_capacity(streams),
            nonces: Vec::new(),
        }
    }
}

impl Expectation<'_> {
    fn granted(&self) -> std::sync::MutexGuard<'_, Granted> {
        self.granted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh nonce, never handed out twice to streams of this migration.
    fn fresh_nonce(&self) -> Result<[u8; CHALLENGE_LEN], TransportError> {
        loop {
            let mut nonce = [0u8; CHALLENGE_LEN];
            os_random(&mut nonce)?;
            let mut g = self.granted();
            if !g.nonces.contains(&nonce) {
                g.nonces.push(nonce);
                return Ok(nonce);
            }
        }
    }

    /// Decides on one response; grants its stream index when accepted.
    fn judge(
        &self,
        nonce: &[u8; CHALLENGE_LEN],
        r: &Response,
        peer: SocketAddr,
    ) -> Result<(), TransportError> {
        let side = Side::Destination;
        let stream = r.stream;
        if verify(self.key, nonce, self.migration_id, stream, &r.tag) {
            let mut g = self.granted();
            let idx = usize::from(stream);
            if idx >= self.streams || g.streams[idx] {
                return Err(TransportError::StreamIndex {
                    side,
                    peer,
                    stream,
                    wanted: self.streams,
                });
            }
            g.streams[idx] = true;
            g.tags.push(r.tag);
            return Ok(());
        }
        if self.granted().tags.contains(&r.tag) {
            return Err(TransportError::AnswerReplayed { side, peer, stream });
        }
        if let Some(migration_id) = self.registry.find_consumed(self.migration_id, |k| {
            verify(k, nonce, r.migration_id, stream, &r.tag)
        }) {
            return Err(TransportError::KeyReplayed {
                side,
                peer,
                stream,
                migration_id,
            });
        }
        if r.migration_id != self.migration_id
            && verify(self.key, nonce, r.migration_id, stream, &r.tag)
        {
            return Err(TransportError::WrongMigration {
                side,
                peer,
                expected: self.migration_id,
                got: r.migration_id,
            });
        }
        Err(TransportError::AuthenticationFailed { side, peer, stream })
    }
}

fn verdict_of(e: &TransportError) -> Option<Verdict> {
    Some(match e {
        TransportError::AuthenticationFailed { .. } => Verdict::AuthenticationFailed,
        TransportError::KeyReplayed { .. } => Verdict::KeyReplayed,
        TransportError::AnswerReplayed { .. } => Verdict::AnswerReplayed,
        TransportError::WrongMigration { .. } => Verdict::WrongMigration,
        TransportError::StreamIndex { .. } => Verdict::StreamIndex,
        _ => return None,
    })
}

/// Destination end of the exchange on a freshly accepted stream: challenge,
/// response, verdict, all before `deadline`. Returns the stream's index.
pub(crate) fn serve(
    sock: &mut TcpStream,
    peer: SocketAddr,
    expect: &Expectation<'_>,
    timeout: Duration,
) -> Result<u16, TransportError> {
    let deadline = Instant::now() + timeout;
    let side = Side::Destination;
    let io_err = |e: io::Error| exchange_error(side, peer, timeout, e);
    let nonce = expect.fresh_nonce()?;
    write_by(sock, &Challenge { nonce }.encode(), deadline).map_err(io_err)?;
    let mut buf = [0u8; RESPONSE_MSG_LEN];
    read_by(sock, &mut buf, deadline).map_err(io_err)?;
    let response = Response::decode(&buf).map_err(|reason| TransportError::HandshakeMalformed {
        side,
        peer,
        reason,
    })?;
    match expect.judge(&nonce, &response, peer) {
        Ok(()) => {
            write_by(sock, &Verdict::Accepted.encode(), deadline).map_err(io_err)?;
            sock.set_read_timeout(None).map_err(io_err)?;
            sock.set_write_timeout(None).map_err(io_err)?;
            Ok(response.stream)
        }
        Err(refusal) => {
            if let Some(v) = verdict_of(&refusal) {
                // Best effort: the peer learns why before the connection closes.
                let _ = write_by(sock, &v.encode(), deadline);
            }
            Err(refusal)
        }
    }
}

/// How the source end of the exchange ended, when it was not refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Proof {
    Accepted,
    /// The listener closed the connection before challenging it (busy).
    ClosedUnanswered,
}

/// Source end of the exchange on a freshly connected stream.
pub(crate) fn prove(
    sock: &mut TcpStream,
    peer: SocketAddr,
    key: &OneTimeKey,
    migration_id: u64,
    stream: u16,
    timeout: Duration,
) -> Result<Proof, TransportError> {
    let deadline = Instant::now() + timeout;
    let side = Side::Source;
    let io_err = |e: io::Error| exchange_error(side, peer, timeout, e);
    let malformed = |reason| TransportError::HandshakeMalformed { side, peer, reason };
    let mut buf = [0u8; CHALLENGE_MSG_LEN];
    match read_by(sock, &mut buf, deadline) {
        Ok(()) => {}
        // A listener with all handshake slots taken closes new connections
        // unanswered; the caller may try again.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            return Ok(Proof::ClosedUnanswered);
        }
        Err(e) => return Err(io_err(e)),
    }
    let challenge = Challenge::decode(&buf).map_err(malformed)?;
    let response = Response {
        stream,
        migration_id,
        tag: answer(key, &challenge.nonce, migration_id, stream),
    };
    write_by(sock, &response.encode(), deadline).map_err(io_err)?;
    let mut buf = [0u8; VERDICT_MSG_LEN];
    read_by(sock, &mut buf, deadline).map_err(io_err)?;
    let verdict = Verdict::decode(&buf).map_err(malformed)?;
    sock.set_read_timeout(None).map_err(io_err)?;
    sock.set_write_timeout(None).map_err(io_err)?;
    match verdict {
        Verdict::Accepted => Ok(Proof::Accepted),
        Verdict::AuthenticationFailed => {
            Err(TransportError::AuthenticationFailed { side, peer, stream })
        }
        Verdict::KeyReplayed => Err(TransportError::KeyReplayed {
            side,
            peer,
            stream,
            migration_id,
        }),
        Verdict::AnswerReplayed => Err(TransportError::AnswerReplayed { side, peer, stream }),
        Verdict::WrongMigration => Err(TransportError::WrongMigration {
            side,
            peer,
            expected: migration_id,
            got: migration_id,
        }),
        Verdict::StreamIndex => Err(TransportError::StreamIndex {
            side,
            peer,
            stream,
            // Unknown here: the destination's count is not on the wire.
            wanted: 0,
        }),
    }
}

fn exchange_error(side: Side, peer: SocketAddr, timeout: Duration, e: io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::HandshakeTimeout {
            side,
            peer,
            timeout,
        },
        io::ErrorKind::UnexpectedEof => TransportError::ConnectionLost {
            side,
            peer,
            stream: 0,
            source: os(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection during the handshake",
            )),
        },
        _ => super::error::stream_error(side, peer, 0, e),
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

/// `read_exact` that gives up at `deadline`, however slowly the peer trickles.
fn read_by(sock: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        sock.set_read_timeout(Some(remaining(deadline)?))?;
        match sock.read(&mut buf[done..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `write_all` that gives up at `deadline`.
fn write_by(sock: &mut TcpStream, buf: &[u8], deadline: Instant) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        sock.set_write_timeout(Some(remaining(deadline)?))?;
        match sock.write(&buf[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_have_their_fixed_sizes() {
        let c = Challenge {
            nonce: [7; CHALLENGE_LEN],
        };
        assert_eq!(Challenge::decode(&c.encode()), Ok(c));
        let r = Response {
            stream: 3,
            migration_id: 0x1122_3344_5566_7788,
            tag: [9; TAG_LEN],
        };
        assert_eq!(Response::decode(&r.encode()), Ok(r));
        for v in [
            Verdict::Accepted,
            Verdict::KeyReplayed,
            Verdict::StreamIndex,
        ] {
            assert_eq!(Verdict::decode(&v.encode()), Ok(v));
        }
        assert_eq!(r.encode().len(), 48);
    }

    #[test]
    fn decoders_name_what_is_wrong() {
        let c = Challenge {
            nonce: [0; CHALLENGE_LEN],
        }
        .encode();
        assert!(matches!(
            Challenge::decode(&c[..10]),
            Err(HandshakeError::Length { got: 10, .. })
        ));
        let mut bad = c;
        bad[0] = b'X';
        assert_eq!(Challenge::decode(&bad), Err(HandshakeError::Magic));
        let mut bad = c;
        bad[4] = 9;
        assert_eq!(
            Challenge::decode(&bad),
            Err(HandshakeError::Version { want: 1, got: 9 })
        );
        assert!(matches!(
            Response::decode(&c),
            Err(HandshakeError::Length { .. })
        ));
        let mut v = Verdict::Accepted.encode();
        v[6] = 0xff;
        assert_eq!(Verdict::decode(&v), Err(HandshakeError::Verdict(0xff)));
    }

    #[test]
    fn the_answer_binds_key_challenge_migration_and_stream() {
        let k = OneTimeKey::generate().unwrap();
        let other = OneTimeKey::generate().unwrap();
        let n = [1u8; CHALLENGE_LEN];
        let tag = answer(&k, &n, 42, 0);
        assert!(verify(&k, &n, 42, 0, &tag));
        assert!(!verify(&other, &n, 42, 0, &tag));
        assert!(!verify(&k, &[2u8; CHALLENGE_LEN], 42, 0, &tag));
        assert!(!verify(&k, &n, 43, 0, &tag));
        assert!(!verify(&k, &n, 42, 1, &tag));
    }
}
