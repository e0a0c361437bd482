//! A management connection over TLS, non-blocking, for the event loop: the
//! first byte tells TLS (a handshake record, `0x16`) from plaintext, which
//! is refused; then rustls runs over the socket, and reads and writes are
//! its plaintext.
//!
//! ```text
//! Sniffing ─ 0x16 ─▶ Tls: read_tls ▶ process_new_packets ▶ plaintext out;
//!          │              write: plaintext in ▶ write_tls (what the socket takes now,
//!          │              the rest on the next writable event: `flush_tls`)
//!          └ else ─▶ Plaintext: input discarded, reads say "closed"; writes go in clear
//!                    (the one refusal line), then the connection closes
//! ```

use crate::transport::peer_tls::HANDSHAKE_RECORD;
use mio::net::TcpStream;
use rustls::ServerConnection;
use std::io::{self, ErrorKind, Read, Write};

/// What the first byte said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing read yet.
    Sniffing,
    Tls,
    /// The client spoke in clear: refused.
    Plaintext,
}

pub struct TlsSocket {
    pub tcp: TcpStream,
    pub tls: ServerConnection,
    pub mode: Mode,
}

impl TlsSocket {
    pub fn new(tcp: TcpStream, tls: ServerConnection) -> TlsSocket {
        TlsSocket {
            tcp,
            tls,
            mode: Mode::Sniffing,
        }
    }

    /// Whether the handshake is done (and the connection is TLS).
    pub fn established(&self) -> bool {
        self.mode == Mode::Tls && !self.tls.is_handshaking()
    }

    /// Writes what rustls holds for the socket, as far as it takes it.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        while self.mode == Mode::Tls && self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn sniff(&mut self) -> io::Result<()> {
        let mut first = [0u8; 1];
        match self.tcp.peek(&mut first)? {
            0 => Err(ErrorKind::UnexpectedEof.into()),
            _ if first[0] == HANDSHAKE_RECORD => {
                self.mode = Mode::Tls;
                Ok(())
            }
            _ => {
                self.mode = Mode::Plaintext;
                Ok(())
            }
        }
    }
}

impl Read for TlsSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.mode == Mode::Sniffing {
            self.sniff()?;
        }
        if self.mode == Mode::Plaintext {
            // Drained so that closing does not reset the connection before
            // the refusal is read.
            let mut sink = [0u8; 4096];
            while self.tcp.read(&mut sink)? > 0 {}
            return Ok(0);
        }
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.tls.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            let processed = self.tls.process_new_packets();
            // Handshake messages, or the alert that explains an error.
            self.flush_tls()?;
            if let Err(e) = processed {
                return Err(io::Error::new(ErrorKind::InvalidData, e));
            }
        }
    }
}

impl Write for TlsSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.mode {
            Mode::Plaintext => self.tcp.write(buf),
            Mode::Sniffing | Mode::Tls => {
                let n = self.tls.writer().write(buf)?;
                self.flush_tls()?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}
