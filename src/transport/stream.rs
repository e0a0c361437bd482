//! A migration stream as the engine sees it: a TCP stream whose bytes are
//! either TLS 1.3 records ([`super::record`]) or, when the operator asked for
//! `--insecure-plaintext`, the bare payload.
//!
//! A stream clones like a `TcpStream` (one clone reads while another writes,
//! the engine's reply direction on stream 0) and shuts down like one. The
//! two directions keep separate state behind separate locks.
//!
//! No copy of the plaintext beyond what a plaintext stream makes: the
//! writer seals up to [`SEAL_BATCH`] bytes of the caller's buffer straight
//! into its own buffer of records (the cipher reads the caller's bytes where
//! they are) and writes them with one `write_all`; the reader fills its own
//! buffer with as many records as one socket read brings and opens each
//! straight into the caller's buffer when it fits there (in place in its own
//! buffer, then copied out, only when the caller asked for less than a
//! record). One call hands out every whole record already read.

use super::record::{self, Direction, HEADER_LEN, MAX_CIPHERTEXT, MAX_PLAINTEXT};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

/// Records sealed per socket write, and read per socket read at most:
/// 512 KiB of plaintext per system call. Measured with
/// `benches/encrypted_throughput.rs` (512 MiB into a populated LPAR, TLS
/// only, two interleaved runs, load 7-10 on the 2-core development host):
///
/// | records | GB/s | CPU s/GB (both ends) |
/// |---|---|---|
/// | 4 | 0.55, 0.73 | 0.97, 1.05 |
/// | 8 | 0.78, 0.95 | 0.85, 0.86 |
/// | 32 | 1.33, 1.23 | 0.78, 0.76 |
/// | 64 | 1.20, 1.18 | 0.79, 0.81 |
///
/// (plaintext in the same run: 1.47, 1.41 GB/s.) Under load the cost is
/// less the CPU than the wake-ups: a plaintext stream moves a whole frame
/// (up to 1 MiB) per call, and each blocked call waits its turn for a core.
/// The buffers (525 KiB each) are allocated on first use, so a stream only
/// ever written holds no reader buffer and one only read no writer buffer.
const RECORDS_PER_CALL: usize = 32;
/// Plaintext sealed per socket write.
const SEAL_BATCH: usize = RECORDS_PER_CALL * MAX_PLAINTEXT;
/// Ciphertext read per socket read, at most (the reader's buffer).
const OPEN_BUFFER: usize = RECORDS_PER_CALL * (HEADER_LEN + MAX_CIPHERTEXT);

/// Fault injection (the fault matrix; only with the `fault-injection`
/// feature): armed by the agent's `MOVERD_FAULT_CORRUPT_AT` hook, never
/// otherwise. The next write to a migration stream in this process leaves
/// with its last byte's low bit flipped, as corruption on the path would:
/// a plaintext stream's frame checksum must catch it, an encrypted one's
/// record tag.
#[cfg(feature = "fault-injection")]
static CORRUPT_NEXT_WRITE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Arms the fault hook above.
#[cfg(feature = "fault-injection")]
pub fn corrupt_next_write() {
    CORRUPT_NEXT_WRITE.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether this write is the one to corrupt (disarms the hook).
fn corrupting() -> bool {
    #[cfg(feature = "fault-injection")]
    {
        use std::sync::atomic::Ordering;
        CORRUPT_NEXT_WRITE.load(Ordering::Relaxed)
            && CORRUPT_NEXT_WRITE.swap(false, Ordering::SeqCst)
    }
    #[cfg(not(feature = "fault-injection"))]
    false
}

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
    /// Sealed records waiting for one socket write (allocated on the first
    /// write, never cleared: every byte written was sealed into it first).
    buf: Box<[u8]>,
}

struct Reader {
    dir: Direction,
    /// Ciphertext read from the socket: records from `start` to `end`
    /// (allocated on the first read that needs the socket).
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
            buf: Box::default(),
            start: 0,
            end: 0,
            plain: 0..0,
            failed: None,
        };
        let writer = Writer {
            dir: tx,
            buf: Box::default(),
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
            if !buf.is_empty() && corrupting() {
                let mut bent = buf.to_vec();
                *bent.last_mut().expect("not empty") ^= 1;
                (&self.tcp).write_all(&bent)?;
                return Ok(buf.len());
            }
            return self.tcp.write(buf);
        };
        let mut w = lock(&sealed.writer);
        let Writer { dir, buf: out } = &mut *w;
        let take = buf.len().min(SEAL_BATCH);
        if take == 0 {
            return Ok(0);
        }
        if out.is_empty() {
            // On first use: a stream written in one direction only never
            // holds a buffer for the other.
            *out =
                vec![0u8; RECORDS_PER_CALL * record::sealed_len(MAX_PLAINTEXT)].into_boxed_slice();
        }
        let mut sealed = 0;
        for chunk in buf[..take].chunks(MAX_PLAINTEXT) {
            sealed += dir.seal_into(chunk, &mut out[sealed..]).map_err(invalid)?;
        }
        if corrupting() {
            out[sealed - 1] ^= 1;
        }
        // All or nothing: a partly written record leaves the stream
        // unusable, and the error says so.
        (&self.tcp).write_all(&out[..sealed])?;
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
        let mut given = 0;
        loop {
            // Hand out every record already in the buffer that fits, so one
            // call returns as much as one socket read brought in.
            given += r.drain(&mut out[given..]);
            if given == out.len() {
                return Ok(given);
            }
            if let Some(e) = r.failed {
                return if given > 0 {
                    Ok(given)
                } else {
                    Err(invalid(e))
                };
            }
            if given > 0 {
                // A read now could block with plaintext in hand.
                return Ok(given);
            }
            // Not a whole record yet: make room at the end, then read.
            if r.buf.is_empty() {
                r.buf = vec![0u8; OPEN_BUFFER].into_boxed_slice();
            }
            r.compact();
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

impl Reader {
    /// Copies opened plaintext into `out`, opening whole records from the
    /// buffer as needed; returns the bytes copied. Stops at the first
    /// incomplete record or failure (kept in `failed`).
    fn drain(&mut self, out: &mut [u8]) -> usize {
        let mut given = 0;
        while given < out.len() && self.failed.is_none() {
            if !self.plain.is_empty() {
                let n = self.plain.len().min(out.len() - given);
                let at = self.plain.start;
                out[given..given + n].copy_from_slice(&self.buf[at..at + n]);
                self.plain.start += n;
                given += n;
                continue;
            }
            let have = self.end - self.start;
            if have < HEADER_LEN {
                break;
            }
            let len = match record::body_len(&self.buf[self.start..self.end]) {
                Ok(len) => len,
                Err(e) => {
                    self.failed = Some(e);
                    break;
                }
            };
            if have < HEADER_LEN + len {
                break;
            }
            let at = self.start;
            self.start += HEADER_LEN + len;
            let whole = at..at + HEADER_LEN + len;
            if out.len() - given >= len - record::TAG_LEN {
                // Room for all of it: open it straight into the caller's
                // buffer. Bytes past the plaintext (its content type) land
                // there too, beyond what this call reports.
                match self.dir.open_into(&self.buf[whole], &mut out[given..]) {
                    Ok(n) => given += n,
                    Err(e) => self.failed = Some(e),
                }
            } else {
                match self.dir.open(&mut self.buf[whole]) {
                    Ok(p) => self.plain = at + p.start..at + p.end,
                    Err(e) => self.failed = Some(e),
                }
            }
        }
        given
    }

    /// Makes room for at least one whole record after `end`.
    fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < HEADER_LEN + MAX_CIPHERTEXT {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
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
