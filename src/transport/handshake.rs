//! The per-stream authentication exchange: fixed-size messages, their total
//! decoders, the HMACs, and the two ends of the exchange. The layout is
//! drawn in the [module doc of `transport`](super); [`super::secure`] runs
//! it inside TLS (or, for `--insecure-plaintext`, after a [`Hello`]) with
//! the deadline on every socket operation.

use super::error::{HandshakeError, Side, TransportError, os};
use super::key::{KeyRegistry, OneTimeKey, os_random};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// First bytes of every handshake message: "LPMT" (LPAR Mover Transport).
pub const MAGIC: [u8; 4] = *b"LPMT";
/// Version of this handshake. A peer with another version is refused as
/// malformed: the handshake is the one place both agents meet before the
/// `wire` layer negotiates anything, so it never changes lightly. Version 2
/// runs inside TLS 1.3, binds both answers to the TLS exporter and has the
/// destination prove the key too (its verdict carries a tag).
pub const HANDSHAKE_VERSION: u8 = 2;
/// Length of the channel binding: the TLS exporter of the stream's session
/// ([`super::tls::EXPORTER_LABEL`]), all zeros on a plaintext stream.
pub const BINDING_LEN: usize = 32;
/// No TLS session to bind to (a `--insecure-plaintext` stream).
pub const NO_BINDING: [u8; BINDING_LEN] = [0; BINDING_LEN];
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
/// Size of a verdict message: the header and the destination's proof.
pub const VERDICT_MSG_LEN: usize = HEADER_LEN + TAG_LEN;
/// Size of the plaintext hello (the first bytes of a plaintext stream).
pub const HELLO_MSG_LEN: usize = HEADER_LEN;

const KIND_CHALLENGE: u8 = 0x01;
const KIND_RESPONSE: u8 = 0x02;
const KIND_VERDICT: u8 = 0x03;
const KIND_HELLO: u8 = 0x04;

/// Source → destination, first on a stream that offers its payload in
/// clear (`--insecure-plaintext`); an encrypted stream starts with a TLS
/// ClientHello instead (first byte 0x16, never `L`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello;

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_MSG_LEN] {
        header(KIND_HELLO, 0)
    }

    /// Total: any input yields a hello or a typed error.
    pub fn decode(buf: &[u8]) -> Result<Self, HandshakeError> {
        match check_header(buf, KIND_HELLO, "hello", HELLO_MSG_LEN)? {
            0 => Ok(Hello),
            _ => Err(HandshakeError::Reserved),
        }
    }
}

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
    /// The stream offered its payload in clear to a destination that
    /// accepts encrypted streams only (sent after a [`Hello`]).
    EncryptionRequired,
}

/// The verdict message: the outcome and, with `Accepted`, the destination's
/// proof that it holds the key too,
/// `HMAC-SHA256(key, "lpmt destination" ‖ nonce ‖ id ‖ stream ‖ binding)`;
/// zeros with a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub proof: [u8; TAG_LEN],
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
            Verdict::EncryptionRequired => 6,
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
            6 => Verdict::EncryptionRequired,
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

impl Decision {
    /// A refusal (no proof).
    pub fn refusal(verdict: Verdict) -> Self {
        Decision {
            verdict,
            proof: [0; TAG_LEN],
        }
    }

    pub fn encode(&self) -> [u8; VERDICT_MSG_LEN] {
        let mut out = [0u8; VERDICT_MSG_LEN];
        out[..HEADER_LEN].copy_from_slice(&header(KIND_VERDICT, self.verdict.code()));
        out[HEADER_LEN..].copy_from_slice(&self.proof);
        out
    }

    /// Total: any input yields a decision or a typed error.
    pub fn decode(buf: &[u8]) -> Result<Self, HandshakeError> {
        let verdict =
            Verdict::from_code(check_header(buf, KIND_VERDICT, "verdict", VERDICT_MSG_LEN)?)?;
        let mut proof = [0u8; TAG_LEN];
        proof.copy_from_slice(&buf[HEADER_LEN..]);
        Ok(Decision { verdict, proof })
    }
}

/// Which end computes a tag: the labels keep a source's answer from ever
/// passing as the destination's proof, or the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prover {
    Source,
    Destination,
}

/// What one tag binds: the challenge, the migration, the stream and the
/// TLS session it travels in.
#[derive(Clone, Copy, Debug)]
pub struct Bound<'a> {
    pub nonce: &'a [u8; CHALLENGE_LEN],
    pub migration_id: u64,
    pub stream: u16,
    pub binding: &'a [u8; BINDING_LEN],
}

fn mac(key: &OneTimeKey, who: Prover, b: &Bound<'_>) -> HmacSha256 {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(match who {
        Prover::Source => b"lpmt source\0",
        Prover::Destination => b"lpmt destination\0",
    });
    m.update(b.nonce);
    m.update(&b.migration_id.to_le_bytes());
    m.update(&b.stream.to_le_bytes());
    m.update(b.binding);
    m
}

/// The tag a holder of `key` computes as `who` for `b`.
pub fn answer(key: &OneTimeKey, who: Prover, b: &Bound<'_>) -> [u8; TAG_LEN] {
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&mac(key, who, b).finalize().into_bytes());
    tag
}

/// Checks a tag in constant time.
pub fn verify(key: &OneTimeKey, who: Prover, b: &Bound<'_>, tag: &[u8; TAG_LEN]) -> bool {
    mac(key, who, b).verify_slice(tag).is_ok()
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
        binding: &[u8; BINDING_LEN],
        r: &Response,
        peer: SocketAddr,
    ) -> Result<(), TransportError> {
        let side = Side::Destination;
        let stream = r.stream;
        let bound = |migration_id| Bound {
            nonce,
            migration_id,
            stream,
            binding,
        };
        if verify(self.key, Prover::Source, &bound(self.migration_id), &r.tag) {
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
            verify(k, Prover::Source, &bound(r.migration_id), &r.tag)
        }) {
            return Err(TransportError::KeyReplayed {
                side,
                peer,
                stream,
                migration_id,
            });
        }
        if r.migration_id != self.migration_id
            && verify(self.key, Prover::Source, &bound(r.migration_id), &r.tag)
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
        TransportError::PlaintextRefused { .. } => Verdict::EncryptionRequired,
        _ => return None,
    })
}

/// Destination end of the exchange on a stream whose transport (TLS or
/// plaintext) is set up: challenge, response, verdict. `io` enforces the
/// deadline. Returns the stream's index.
pub(crate) fn serve<S: Read + Write>(
    io: &mut S,
    peer: SocketAddr,
    expect: &Expectation<'_>,
    binding: &[u8; BINDING_LEN],
    timeout: Duration,
) -> Result<u16, TransportError> {
    let side = Side::Destination;
    let io_err = |e: io::Error| exchange_error(side, peer, timeout, e);
    let nonce = expect.fresh_nonce()?;
    write_msg(io, &Challenge { nonce }.encode()).map_err(io_err)?;
    let mut buf = [0u8; RESPONSE_MSG_LEN];
    io.read_exact(&mut buf).map_err(io_err)?;
    let response = Response::decode(&buf).map_err(|reason| TransportError::HandshakeMalformed {
        side,
        peer,
        reason,
    })?;
    match expect.judge(&nonce, binding, &response, peer) {
        Ok(()) => {
            let bound = Bound {
                nonce: &nonce,
                migration_id: expect.migration_id,
                stream: response.stream,
                binding,
            };
            let decision = Decision {
                verdict: Verdict::Accepted,
                proof: answer(expect.key, Prover::Destination, &bound),
            };
            write_msg(io, &decision.encode()).map_err(io_err)?;
            Ok(response.stream)
        }
        Err(refusal) => {
            if let Some(v) = verdict_of(&refusal) {
                // Best effort: the peer learns why before the connection closes.
                let _ = write_msg(io, &Decision::refusal(v).encode());
            }
            Err(refusal)
        }
    }
}

/// Tells a plaintext source that this destination wants encryption.
pub(crate) fn refuse_plaintext<S: Write>(io: &mut S) {
    let _ = write_msg(io, &Decision::refusal(Verdict::EncryptionRequired).encode());
}

/// How the source end of the exchange ended, when it was not refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Proof {
    Accepted,
    /// The listener closed the connection before challenging it (busy).
    ClosedUnanswered,
}

/// Source end of the exchange on a stream whose transport is set up.
pub(crate) fn prove<S: Read + Write>(
    io: &mut S,
    peer: SocketAddr,
    key: &OneTimeKey,
    migration_id: u64,
    stream: u16,
    binding: &[u8; BINDING_LEN],
    timeout: Duration,
) -> Result<Proof, TransportError> {
    let side = Side::Source;
    let io_err = |e: io::Error| exchange_error(side, peer, timeout, e);
    let malformed = |reason| TransportError::HandshakeMalformed { side, peer, reason };
    let mut buf = [0u8; CHALLENGE_MSG_LEN];
    let mut got = 0;
    while got < buf.len() {
        match io.read(&mut buf[got..]) {
            // A listener with all handshake slots taken closes new
            // connections unanswered; the caller may try again.
            Ok(0) if got == 0 => return Ok(Proof::ClosedUnanswered),
            Err(e) if got == 0 && e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(Proof::ClosedUnanswered);
            }
            Ok(0) => return Err(io_err(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    // A refusal before any challenge: plaintext offered to a destination
    // that wants encryption (a verdict is as long as a challenge).
    if buf[5] == KIND_VERDICT {
        let v = Decision::decode(&buf).map_err(malformed)?.verdict;
        return Err(refusal(v, side, peer, migration_id, stream));
    }
    let challenge = Challenge::decode(&buf).map_err(malformed)?;
    let bound = Bound {
        nonce: &challenge.nonce,
        migration_id,
        stream,
        binding,
    };
    let response = Response {
        stream,
        migration_id,
        tag: answer(key, Prover::Source, &bound),
    };
    write_msg(io, &response.encode()).map_err(io_err)?;
    let mut buf = [0u8; VERDICT_MSG_LEN];
    io.read_exact(&mut buf).map_err(io_err)?;
    let decision = Decision::decode(&buf).map_err(malformed)?;
    match decision.verdict {
        Verdict::Accepted if verify(key, Prover::Destination, &bound, &decision.proof) => {
            Ok(Proof::Accepted)
        }
        // Whoever answered does not hold the key: not one byte of the
        // guest may go to it.
        Verdict::Accepted => Err(TransportError::DestinationUnproven { peer, stream }),
        v => Err(refusal(v, side, peer, migration_id, stream)),
    }
}

fn refusal(
    v: Verdict,
    side: Side,
    peer: SocketAddr,
    migration_id: u64,
    stream: u16,
) -> TransportError {
    match v {
        Verdict::Accepted | Verdict::AuthenticationFailed => {
            TransportError::AuthenticationFailed { side, peer, stream }
        }
        Verdict::KeyReplayed => TransportError::KeyReplayed {
            side,
            peer,
            stream,
            migration_id,
        },
        Verdict::AnswerReplayed => TransportError::AnswerReplayed { side, peer, stream },
        Verdict::WrongMigration => TransportError::WrongMigration {
            side,
            peer,
            expected: migration_id,
            got: migration_id,
        },
        Verdict::StreamIndex => TransportError::StreamIndex {
            side,
            peer,
            stream,
            // Unknown here: the destination's count is not on the wire.
            wanted: 0,
        },
        Verdict::EncryptionRequired => TransportError::PlaintextRefused { side, peer },
    }
}

pub(crate) fn exchange_error(
    side: Side,
    peer: SocketAddr,
    timeout: Duration,
    e: io::Error,
) -> TransportError {
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

/// `write_all` and `flush` (a TLS stream sends on flush).
fn write_msg<S: Write>(io: &mut S, buf: &[u8]) -> io::Result<()> {
    io.write_all(buf)?;
    io.flush()
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
            Verdict::EncryptionRequired,
        ] {
            let d = Decision {
                verdict: v,
                proof: [5; TAG_LEN],
            };
            assert_eq!(Decision::decode(&d.encode()), Ok(d));
        }
        assert_eq!(Hello::decode(&Hello.encode()), Ok(Hello));
        assert_eq!(r.encode().len(), 48);
        assert_eq!(Decision::refusal(Verdict::Accepted).encode().len(), 40);
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
            Err(HandshakeError::Version { want: 2, got: 9 })
        );
        assert!(matches!(
            Response::decode(&c),
            Err(HandshakeError::Length { .. })
        ));
        let mut v = Decision::refusal(Verdict::Accepted).encode();
        v[6] = 0xff;
        assert_eq!(Decision::decode(&v), Err(HandshakeError::Verdict(0xff)));
    }

    #[test]
    fn the_answer_binds_key_challenge_migration_stream_session_and_end() {
        let k = OneTimeKey::generate().unwrap();
        let other = OneTimeKey::generate().unwrap();
        let n = [1u8; CHALLENGE_LEN];
        let session = [4u8; BINDING_LEN];
        let b = Bound {
            nonce: &n,
            migration_id: 42,
            stream: 0,
            binding: &session,
        };
        let tag = answer(&k, Prover::Source, &b);
        assert!(verify(&k, Prover::Source, &b, &tag));
        assert!(!verify(&other, Prover::Source, &b, &tag));
        assert!(!verify(&k, Prover::Destination, &b, &tag));
        let n2 = [2u8; CHALLENGE_LEN];
        let other_session = [5u8; BINDING_LEN];
        for changed in [
            Bound { nonce: &n2, ..b },
            Bound {
                migration_id: 43,
                ..b
            },
            Bound { stream: 1, ..b },
            Bound {
                binding: &other_session,
                ..b
            },
        ] {
            assert!(!verify(&k, Prover::Source, &changed, &tag));
        }
    }
}
