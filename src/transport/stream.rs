//! A migration stream as the engine sees it: a TCP stream whose bytes are
//! either TLS 1.3 records ([`super::record`]) or, when the operator asked for
//! `--insecure-plaintext`, the bare payload.
//!
//! A stream clones like a `TcpStream` (one clone reads while another writes,
//! the engine's reply direction on stream 0) and shuts down like one. The
//! two directions keep separate state behind separate locks: the writer
//! seals into its own buffer and writes it with one `write_all`, the reader
//! fills its own buffer with as many records as the socket holds and opens
//! them in place.

use super::record::{self, Direction, HEADER_LEN, MAX_CIPHERTEXT, MAX_PLAINTEXT};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

/// Plaintext sealed per socket write: 4 records, one system call per
/// 64 KiB. Small enough that the buffers of a migration's streams (two per
/// stream and side, freed with the stream) do not pile up in the
/// allocator's thread arenas across migrations (the soak checks).
const SEAL_BATCH: usize = 4 * MAX_PLAINTEXT;
/// Ciphertext read per socket read, at most (the reader's buffer).
const OPEN_BUFFER: usize = 4 * (HEADER_LEN + MAX_CIPHERTEXT);

/// Whether a stream's payload is encrypted, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    /// TLS 1.3, AEAD per record, bound to the migration's one-time key.
    Tls13,
    /// The payload in clear (`--insecure-plaintext`).
    InsecurePlaintext,
}

impl Protection {
    /// As the reports spell it.
    pub fn label(self) -> &'static str {
        match self {
            Protection::Tls13 => "tls1.3",
            Protection::InsecurePlaintext => "insecure-plaintext",
        }
    }
}

struct Writer {
    dir: Direction,
    buf: Vec<u8>,
}

struct Reader {
    dir: Direction,
    /// Ciphertext read from the socket: records from `start` to `end`.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Opened plaintext not yet handed out: `buf[plain.start..plain.end]`.
    plain: std::ops::Range<usize>,
    /// A record failed: the stream is unusable from here on.
    failed: Option<record::RecordError>,
}

struct Sealed {
    suite: &'static str,
    writer: Mutex<Writer>,
    reader: Mutex<Reader>,
}

/// One stream of a migration, set up and authenticated by this layer.
pub struct MigrationStream {
    tcp: TcpStream,
    sealed: Option<Arc<Sealed>>,
}

impl std::fmt::Debug for MigrationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("MigrationStream")
            .field("tcp", &self.tcp)
            .field("protection", &self.protection())
            .field("cipher_suite", &self.cipher_suite())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(e: record::RecordError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl MigrationStream {
    /// A stream whose payload crosses in clear.
    pub fn plaintext(tcp: TcpStream) -> Self {
        MigrationStream { tcp, sealed: None }
    }

    /// A stream that seals with `tx` and opens with `rx` (the directions of
    /// a finished TLS 1.3 handshake, cipher suite `suite`).
    pub fn sealed(tcp: TcpStream, tx: Direction, rx: Direction, suite: &'static str) -> Self {
        let reader = Reader {
            dir: rx,
            buf: vec![0u8; OPEN_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            plain: 0..0,
            failed: None,
        };
        let writer = Writer {
            dir: tx,
            buf: Vec::with_capacity(SEAL_BATCH + 4 * (HEADER_LEN + 1 + record::TAG_LEN)),
        };
        MigrationStream {
            tcp,
            sealed: Some(Arc::new(Sealed {
                suite,
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            })),
        }
    }

    pub fn protection(&self) -> Protection {
        match self.sealed {
            Some(_) => Protection::Tls13,
            None => Protection::InsecurePlaintext,
        }
    }

    /// The TLS cipher suite, when encrypted.
    pub fn cipher_suite(&self) -> Option<&'static str> {
        self.sealed.as_ref().map(|s| s.suite)
    }

    /// Another handle on the same stream (shares the socket and the keys).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(MigrationStream {
            tcp: self.tcp.try_clone()?,
            sealed: self.sealed.clone(),
        })
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// The socket underneath (socket options, diagnostics). Reading or
    /// writing it directly would corrupt an encrypted stream.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

impl Write for MigrationStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(sealed) = &self.sealed else {
            return self.tcp.write(buf);
        };
        let mut w = lock(&sealed.writer);
        let Writer { dir, buf: out } = &mut *w;
        out.clear();
        let take = buf.len().min(SEAL_BATCH);
        for chunk in buf[..take].chunks(MAX_PLAINTEXT) {
            dir.seal(chunk, out).map_err(invalid)?;
        }
        if take == 0 {
            return Ok(0);
        }
        // All or nothing: a partly written record leaves the stream
        // unusable, and the error says so.
        (&self.tcp).write_all(out)?;
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl Read for MigrationStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(sealed) = &self.sealed else {
            return self.tcp.read(out);
        };
        if out.is_empty() {
            return Ok(0);
        }
        let mut r = lock(&sealed.reader);
        let r = &mut *r;
        loop {
            if let Some(e) = r.failed {
                return Err(invalid(e));
            }
            if !r.plain.is_empty() {
                let n = r.plain.len().min(out.len());
                out[..n].copy_from_slice(&r.buf[r.plain.start..r.plain.start + n]);
                r.plain.start += n;
                return Ok(n);
            }
            let have = r.end - r.start;
            if have >= HEADER_LEN {
                let len = match record::body_len(&r.buf[r.start..r.end]) {
                    Ok(len) => len,
                    Err(e) => {
                        r.failed = Some(e);
                        continue;
                    }
                };
                if have >= HEADER_LEN + len {
                    let at = r.start;
                    r.start += HEADER_LEN + len;
                    match r.dir.open(&mut r.buf[at..at + HEADER_LEN + len]) {
                        Ok(p) => r.plain = at + p.start..at + p.end,
                        Err(e) => r.failed = Some(e),
                    }
                    continue;
                }
            }
            // Not a whole record yet: make room at the end, then read.
            if r.start == r.end {
                r.start = 0;
                r.end = 0;
            } else if r.buf.len() - r.end < HEADER_LEN + MAX_CIPHERTEXT {
                r.buf.copy_within(r.start..r.end, 0);
                r.end -= r.start;
                r.start = 0;
            }
            let end = r.end;
            let n = (&self.tcp).read(&mut r.buf[end..])?;
            if n == 0 {
                if r.start == r.end {
                    return Ok(0);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the stream in the middle of a TLS record",
                ));
            }
            r.end += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn sealed_pair() -> (MigrationStream, MigrationStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let k1 = [1u8; 16];
        let k2 = [2u8; 16];
        let iv = [9u8; 12];
        let d = |k: &[u8; 16]| Direction::from_raw(k, iv).unwrap();
        (
            MigrationStream::sealed(a, d(&k1), d(&k2), "test"),
            MigrationStream::sealed(b, d(&k2), d(&k1), "test"),
        )
    }

    #[test]
    fn both_directions_carry_bytes_at_once_through_clones() {
        let (a, b) = sealed_pair();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let expect = data.clone();
        let mut a_w = a.try_clone().unwrap();
        let writer = std::thread::spawn(move || a_w.write_all(&data).unwrap());
        let mut b_w = b.try_clone().unwrap();
        b_w.write_all(b"reply on the other direction").unwrap();
        let mut got = vec![0u8; expect.len()];
        let mut b_r = b;
        b_r.read_exact(&mut got).unwrap();
        assert!(got == expect);
        let mut reply = [0u8; 28];
        let mut a_r = a;
        a_r.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"reply on the other direction");
        writer.join().unwrap();
        a_r.shutdown(Shutdown::Write).unwrap();
        assert_eq!(b_r.read(&mut got).unwrap(), 0);
    }

    #[test]
    fn a_tampered_byte_fails_the_reader_for_good() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut raw = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let iv = [9u8; 12];
        let mut tx = Direction::from_raw(&[5u8; 16], iv).unwrap();
        let mut rec = Vec::new();
        tx.seal(b"hello", &mut rec).unwrap();
        rec[7] ^= 0x40;
        raw.write_all(&rec).unwrap();
        let rx = Direction::from_raw(&[5u8; 16], iv).unwrap();
        let tx2 = Direction::from_raw(&[6u8; 16], iv).unwrap();
        let mut b = MigrationStream::sealed(b, tx2, rx, "test");
        let mut buf = [0u8; 16];
        let e = b.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("failed authentication"), "{e}");
        assert!(b.read(&mut buf).is_err());
    }
}
