//! Where an agent listens for management connections: `host:port` (TCP) or
//! a filesystem path (Unix socket; anything containing a `/`).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Where an agent listens for management connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `host:port`.
    Tcp(String),
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl Address {
    /// `host:port`, or a path (anything with a `/`) for a Unix socket.
    pub fn parse(text: &str) -> Result<Address, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("an agent address is empty: give host:port or a socket path".into());
        }
        if t.contains('/') {
            return Ok(Address::Unix(PathBuf::from(t)));
        }
        if !t.contains(':') {
            return Err(format!(
                "'{t}' is not an agent address: give host:port (TCP) or a socket path containing '/'"
            ));
        }
        Ok(Address::Tcp(t.to_string()))
    }

    /// Connects, giving up after `timeout` (TCP; a Unix connect is immediate).
    pub fn connect(&self, timeout: Duration) -> io::Result<Stream> {
        match self {
            Address::Tcp(hp) => {
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address resolved");
                for sa in hp.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&sa, timeout) {
                        Ok(s) => {
                            s.set_nodelay(true)?;
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            Address::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(hp) => f.write_str(hp),
            Address::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A management connection, whichever the socket kind.
#[derive(Debug)]
pub enum Stream {
    /// Over TCP.
    Tcp(TcpStream),
    /// Over a Unix socket.
    Unix(UnixStream),
    /// TLS over TCP.
    Tls(super::secure::TlsStream),
}

impl Stream {
    /// A second handle on the same connection.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tls(s) => Stream::Tls(s.try_clone()?),
        })
    }

    /// How long a read may wait (`None`: as long as it takes).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.tcp.set_read_timeout(t),
        }
    }

    /// Closes both directions (errors ignored: it may be closed already).
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tls(s) => s.tcp.shutdown(Shutdown::Both),
        };
    }

    /// The peer, for logs.
    pub fn peer(&self) -> String {
        match self {
            Stream::Tcp(s) | Stream::Tls(super::secure::TlsStream { tcp: s, .. }) => s
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp peer".into()),
            Stream::Unix(_) => "unix peer".into(),
        }
    }

    /// The peer's IP address (TCP only).
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Stream::Tcp(s) | Stream::Tls(super::secure::TlsStream { tcp: s, .. }) => {
                s.peer_addr().ok().map(|a| a.ip())
            }
            Stream::Unix(_) => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_and_unix_addresses_are_told_apart() {
        assert_eq!(
            Address::parse("127.0.0.1:7400").unwrap(),
            Address::Tcp("127.0.0.1:7400".into())
        );
        assert_eq!(
            Address::parse("/run/moverd.sock").unwrap(),
            Address::Unix("/run/moverd.sock".into())
        );
        assert!(
            Address::parse("hostonly")
                .unwrap_err()
                .contains("host:port")
        );
    }
}
