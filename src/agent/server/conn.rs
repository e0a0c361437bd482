//! One management connection as the event loop holds it: a non-blocking
//! socket, the bounded line reader on it, the bytes waiting to be written,
//! and where the connection stands (authenticating, idle, a request in
//! flight, closing).

use super::slots::Slot;
use super::tls::TlsSocket;
use crate::control::MAX_LINE;
use crate::control::line::{Line, LineReader};
use crate::transport::identity::Fingerprint;
use crossbeam::channel::Receiver;
use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use rustls::pki_types::CertificateDer;
use std::io::{self, ErrorKind, Read, Write};
use std::time::Instant;

/// Bytes queued for a client before the server stops taking its requests
/// and moving its events into the queue: a client that does not read
/// holds at most this much (plus one reply) of the agent's memory. Its
/// events back up into its bounded event queue, and once that is full the
/// event bus drops it from the events (it still gets its replies).
pub const OUT_LIMIT: usize = 1 << 20;

/// A management socket, TCP or Unix, non-blocking.
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// TCP with TLS (an agent with an identity).
    Tls(Box<TlsSocket>),
}

impl Socket {
    pub fn peer(&self) -> String {
        match self {
            Socket::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "tcp peer".into(), |a| a.to_string()),
            Socket::Tls(s) => s
                .tcp
                .peer_addr()
                .map_or_else(|_| "tcp peer".into(), |a| a.to_string()),
            Socket::Unix(_) => "unix peer".into(),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
            Socket::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
            Socket::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tls(s) => s.flush_tls(),
            _ => Ok(()),
        }
    }
}

impl Source for Socket {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.register(r, t, i),
            Socket::Unix(s) => s.register(r, t, i),
            Socket::Tls(s) => s.tcp.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.reregister(r, t, i),
            Socket::Unix(s) => s.reregister(r, t, i),
            Socket::Tls(s) => s.tcp.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.deregister(r),
            Socket::Unix(s) => s.deregister(r),
            Socket::Tls(s) => s.tcp.deregister(r),
        }
    }
}

/// What reading found next.
pub enum Input {
    /// A complete line: copy it out with [`Conn::line`].
    Line,
    /// A line over [`MAX_LINE`] was read through and dropped.
    Oversized,
    /// Nothing more for now.
    Nothing,
    /// The peer closed its side, or the socket failed.
    Closed,
}

pub struct Conn {
    reader: LineReader<Socket>,
    out: Vec<u8>,
    written: usize,
    pub slot: Slot,
    pub peer: String,
    /// Until authenticated: when the connection is closed unless it has.
    pub auth_deadline: Option<Instant>,
    pub bad_tokens: u32,
    /// The event-bus subscription and its queue, once authenticated.
    pub events: Option<(u64, Receiver<String>)>,
    /// A request is being served on a thread: its reply comes first.
    pub busy: bool,
    /// Nothing more is read; close once the queue is written.
    pub closing: bool,
    /// The greeting (or a TLS refusal) is queued: at once on a plain
    /// socket, after the handshake on TLS.
    pub greeted: bool,
    /// The peer agent's key, when its certificate authenticated it.
    pub peer_key: Option<Fingerprint>,
    /// That certificate: the agent names a request claims are checked
    /// against it.
    pub peer_cert: Option<CertificateDer<'static>>,
    /// Sent instead of the greeting once the TLS handshake is done (the
    /// server was full when this connection came).
    pub refusal: Option<crate::emg::Emg>,
}

impl Conn {
    pub fn new(socket: Socket, slot: Slot, auth_deadline: Instant) -> Conn {
        let peer = socket.peer();
        Conn {
            reader: LineReader::new(socket, MAX_LINE),
            out: Vec::new(),
            written: 0,
            slot,
            peer,
            auth_deadline: Some(auth_deadline),
            bad_tokens: 0,
            events: None,
            busy: false,
            closing: false,
            greeted: false,
            peer_key: None,
            peer_cert: None,
            refusal: None,
        }
    }

    pub fn socket(&mut self) -> &mut Socket {
        self.reader.get_mut()
    }

    /// Whether the next request may be taken: none in flight, and the
    /// client is reading what it was sent.
    pub fn ready_for_input(&self) -> bool {
        !self.busy && !self.closing && self.queued() < OUT_LIMIT
    }

    /// The next line, if one has fully arrived. Call only until it returns
    /// [`Input::Nothing`] (the socket is drained: mio reports readiness
    /// again only for new bytes) or the connection stops taking input.
    pub fn next_input(&mut self) -> Input {
        match self.reader.read_line() {
            Ok(Line::Complete) => Input::Line,
            Ok(Line::Oversized) => Input::Oversized,
            Ok(Line::Eof) => Input::Closed,
            Err(e) if e.kind() == ErrorKind::WouldBlock => Input::Nothing,
            Err(e) if e.kind() == ErrorKind::Interrupted => self.next_input(),
            Err(_) => Input::Closed,
        }
    }

    /// The line [`Input::Line`] announced.
    pub fn line(&self) -> &[u8] {
        self.reader.line()
    }

    /// Queues `line` and a newline for writing.
    pub fn send(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.push(b'\n');
    }

    /// Moves queued events into the write queue while it has room.
    pub fn take_events(&mut self) {
        while self.queued() < OUT_LIMIT {
            let Some(line) = self.events.as_ref().and_then(|(_, rx)| rx.try_recv().ok()) else {
                break;
            };
            self.send(&line);
        }
    }

    pub fn queued(&self) -> usize {
        self.out.len() - self.written
    }

    /// Writes as much of the queue as the socket takes. An error means the
    /// connection is gone.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            let (out, written) = (&self.out, self.written);
            match self.reader.get_mut().write(&out[written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // TLS: what rustls still holds for the socket.
        self.reader.get_mut().flush()?;
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        } else if self.written > OUT_LIMIT {
            // Keep the buffer from growing without bound while the client
            // drains it slowly.
            self.out.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }

    /// Done: nothing in flight and everything written.
    pub fn finished(&self) -> bool {
        self.closing && !self.busy && self.queued() == 0
    }
}
