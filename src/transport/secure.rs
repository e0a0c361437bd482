//! One stream from a connected TCP socket to a [`MigrationStream`]: TLS 1.3
//! (or, only when asked, a plaintext [`Hello`]), then the key proofs of
//! [`handshake`] inside it, every socket operation bounded by the stream's
//! handshake deadline.
//!
//! The destination tells the two apart by the first byte: a TLS record
//! starts with 0x16, the hello with `L`. A destination that accepts
//! encrypted streams only answers a hello with the verdict
//! `EncryptionRequired` and closes: the source reports
//! [`TransportError::PlaintextRefused`], and its LPAR never stopped.

use super::error::{Side, TransportError};
use super::handshake::{
    self, BINDING_LEN, Expectation, HELLO_MSG_LEN, Hello, MAGIC, NO_BINDING, Proof,
};
use super::key::OneTimeKey;
use super::record::{Direction, RecordError};
use super::stream::MigrationStream;
use super::tls;
use rustls::{Connection, ConnectionCommon};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a migration's payload crosses the path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// TLS 1.3 on every stream (the default). A listener with this setting
    /// refuses plaintext streams.
    #[default]
    Tls,
    /// The payload in clear, for benchmarks: a source sends a plaintext
    /// hello; a listener accepts plaintext streams (and encrypted ones).
    InsecurePlaintext,
}

/// The socket, with the deadline applied to every read and write: a peer
/// that trickles bytes cannot stretch the handshake past it.
struct DeadlineIo<'a> {
    sock: &'a TcpStream,
    deadline: Instant,
}

impl DeadlineIo<'_> {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::ErrorKind::TimedOut.into())
        } else {
            Ok(left)
        }
    }
}

impl Read for DeadlineIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.set_read_timeout(Some(self.remaining()?))?;
        let mut s = self.sock;
        s.read(buf)
    }
}

impl Write for DeadlineIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_write_timeout(Some(self.remaining()?))?;
        let mut s = self.sock;
        s.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn exchange(
    side: Side,
    peer: SocketAddr,
    timeout: Duration,
) -> impl Fn(io::Error) -> TransportError {
    move |e: io::Error| {
        if e.kind() == io::ErrorKind::InvalidData {
            // rustls reports a protocol failure (bad signature, no common
            // suite, a peer that is not TLS) as invalid data.
            TransportError::Tls {
                side,
                peer,
                reason: e.to_string(),
            }
        } else {
            handshake::exchange_error(side, peer, timeout, e)
        }
    }
}

fn tls_failed(side: Side, peer: SocketAddr) -> impl Fn(rustls::Error) -> TransportError {
    move |e| TransportError::Tls {
        side,
        peer,
        reason: e.to_string(),
    }
}

/// Drives the TLS handshake to its end; returns the session's binding.
fn shake<D>(
    conn: &mut ConnectionCommon<D>,
    io: &mut DeadlineIo<'_>,
    side: Side,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<[u8; BINDING_LEN], TransportError> {
    while conn.is_handshaking() {
        conn.complete_io(io)
            .map_err(exchange(side, peer, timeout))?;
    }
    tls::exporter(conn).map_err(tls_failed(side, peer))
}

/// The stream, sealed with the keys rustls negotiated.
fn seal(
    tcp: TcpStream,
    conn: Connection,
    side: Side,
    peer: SocketAddr,
) -> Result<MigrationStream, TransportError> {
    let suite = tls::suite_name(&conn);
    let secrets = conn
        .dangerous_extract_secrets()
        .map_err(tls_failed(side, peer))?;
    let direction = |(seq, s): &(u64, rustls::ConnectionTrafficSecrets)| {
        Direction::new(*seq, s).map_err(|e: RecordError| TransportError::Tls {
            side,
            peer,
            reason: e.to_string(),
        })
    };
    let (tx, rx) = (direction(&secrets.tx)?, direction(&secrets.rx)?);
    Ok(MigrationStream::sealed(tcp, tx, rx, suite))
}

fn untimed(tcp: &TcpStream, side: Side, peer: SocketAddr) -> Result<(), TransportError> {
    tcp.set_read_timeout(None)
        .and_then(|()| tcp.set_write_timeout(None))
        .map_err(|e| super::error::stream_error(side, peer, 0, e))
}

/// Source end on a freshly connected socket: `None` when the listener
/// closed it unanswered (busy; the caller retries).
#[allow(clippy::too_many_arguments)]
pub(crate) fn prove_stream(
    tcp: TcpStream,
    peer: SocketAddr,
    key: &OneTimeKey,
    migration_id: u64,
    stream: u16,
    timeout: Duration,
    encryption: Encryption,
) -> Result<Option<MigrationStream>, TransportError> {
    let side = Side::Source;
    let mut io = DeadlineIo {
        sock: &tcp,
        deadline: Instant::now() + timeout,
    };
    let out = match encryption {
        Encryption::InsecurePlaintext => {
            io.write_all(&Hello.encode())
                .map_err(exchange(side, peer, timeout))?;
            match handshake::prove(
                &mut io,
                peer,
                key,
                migration_id,
                stream,
                &NO_BINDING,
                timeout,
            )? {
                Proof::ClosedUnanswered => None,
                Proof::Accepted => {
                    untimed(&tcp, side, peer)?;
                    Some(MigrationStream::plaintext(tcp))
                }
            }
        }
        Encryption::Tls => {
            let mut conn = tls::client().map_err(tls_failed(side, peer))?;
            let binding = match shake(&mut conn, &mut io, side, peer, timeout) {
                Ok(b) => b,
                // Closed before its first answer: busy, like a plaintext
                // listener that closes unanswered.
                Err(TransportError::ConnectionLost { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let proof = {
                let mut s = rustls::Stream::new(&mut conn, &mut io);
                handshake::prove(&mut s, peer, key, migration_id, stream, &binding, timeout)?
            };
            match proof {
                Proof::ClosedUnanswered => None,
                Proof::Accepted => {
                    untimed(&tcp, side, peer)?;
                    Some(seal(tcp, Connection::Client(conn), side, peer)?)
                }
            }
        }
    };
    Ok(out)
}

/// Destination end on a freshly accepted socket: the stream's index and
/// the stream, or why it was refused.
pub(crate) fn serve_stream(
    tcp: TcpStream,
    peer: SocketAddr,
    expect: &Expectation<'_>,
    timeout: Duration,
    encryption: Encryption,
) -> Result<(u16, MigrationStream), TransportError> {
    let side = Side::Destination;
    let failed = exchange(side, peer, timeout);
    let mut io = DeadlineIo {
        sock: &tcp,
        deadline: Instant::now() + timeout,
    };
    let mut first = [0u8; 1];
    loop {
        tcp.set_read_timeout(Some(io.remaining().map_err(&failed)?))
            .map_err(&failed)?;
        match tcp.peek(&mut first) {
            Ok(0) => return Err(failed(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(e)),
        }
    }
    let (index, stream) = if first[0] == MAGIC[0] {
        let mut hello = [0u8; HELLO_MSG_LEN];
        io.read_exact(&mut hello).map_err(&failed)?;
        Hello::decode(&hello).map_err(|reason| TransportError::HandshakeMalformed {
            side,
            peer,
            reason,
        })?;
        if encryption == Encryption::Tls {
            handshake::refuse_plaintext(&mut io);
            return Err(TransportError::PlaintextRefused { side, peer });
        }
        let index = handshake::serve(&mut io, peer, expect, &NO_BINDING, timeout)?;
        untimed(&tcp, side, peer)?;
        (index, MigrationStream::plaintext(tcp))
    } else {
        let server = tls::server().map_err(|reason| TransportError::Tls { side, peer, reason })?;
        let mut conn = server;
        let binding = shake(&mut conn, &mut io, side, peer, timeout)?;
        let index = {
            let mut s = rustls::Stream::new(&mut conn, &mut io);
            handshake::serve(&mut s, peer, expect, &binding, timeout)?
        };
        untimed(&tcp, side, peer)?;
        (index, seal(tcp, Connection::Server(conn), side, peer)?)
    };
    Ok((index, stream))
}
