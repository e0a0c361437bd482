//! `moverctl bench --reference`: how fast memory can move on this machine at
//! all, measured in the same run as the migrations it is compared with.
//!
//! Two plain copies of `bytes` (the median run's populated memory) into
//! fresh memory, so that the kernel's cost of handing out and zeroing new
//! pages (what a destination LPAR pays too) is in both:
//!
//! * `memory`: `memcpy` from a source buffer into a fresh anonymous mapping;
//! * `socket`: the same bytes written by one thread over one loopback TCP
//!   socket and read by another straight into a fresh mapping.
//!
//! The source buffer is [`CHUNK`] bytes of incompressible data sent over
//! and over, so the reference needs `bytes + CHUNK` of memory, not twice
//! `bytes`. It is made once ([`Source::new`]) and serves every copy of a
//! bench.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

/// The source buffer's size.
pub const CHUNK: usize = 64 << 20;

/// One reference measurement.
#[derive(Clone, Copy, Debug)]
pub struct Reference {
    pub bytes: u64,
    /// Gigabytes (10^9 bytes) per second copied into fresh memory.
    pub memory_gbps: f64,
    /// Gigabytes per second over one loopback socket into fresh memory.
    pub socket_gbps: f64,
}

/// The incompressible bytes every reference copy sends, [`CHUNK`] long.
#[derive(Clone)]
pub struct Source(std::sync::Arc<Vec<u8>>);

impl Source {
    pub fn new() -> Source {
        // xorshift64*: incompressible, like `content=random`.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut chunk = vec![0u8; CHUNK];
        for word in chunk.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            word.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        Source(std::sync::Arc::new(chunk))
    }
}

impl Default for Source {
    fn default() -> Self {
        Self::new()
    }
}

/// Fresh, untouched memory of `bytes` (the kernel zeroes each page when it
/// is first written).
fn fresh(bytes: usize) -> std::io::Result<memmap2::MmapMut> {
    memmap2::MmapMut::map_anon(bytes.max(1))
}

/// Measures both references for `bytes`, and checks each copy arrived
/// whole (a reference that lost bytes would flatter the machine).
pub fn measure(source: &Source, bytes: u64) -> std::io::Result<Reference> {
    let chunk = &source.0;
    let n = bytes as usize;
    let gbps = |secs: f64| bytes as f64 / secs.max(1e-9) / 1e9;

    let mut dest = fresh(n)?;
    let t = Instant::now();
    for part in dest.chunks_mut(CHUNK) {
        part.copy_from_slice(&chunk[..part.len()]);
    }
    let memory_gbps = gbps(t.elapsed().as_secs_f64());
    check(&dest, chunk)?;
    drop(dest);

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut dest = fresh(n)?;
    let t = Instant::now();
    let sent = source.clone();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let chunk = &sent.0;
        let mut s = TcpStream::connect(addr)?;
        let mut left = n;
        while left > 0 {
            let len = left.min(CHUNK);
            s.write_all(&chunk[..len])?;
            left -= len;
        }
        Ok(())
    });
    let (mut s, _) = listener.accept()?;
    s.read_exact(&mut dest)?;
    let socket_gbps = gbps(t.elapsed().as_secs_f64());
    writer
        .join()
        .map_err(|_| std::io::Error::other("the reference writer panicked"))??;
    check(&dest, chunk)?;
    Ok(Reference {
        bytes,
        memory_gbps,
        socket_gbps,
    })
}

fn check(dest: &[u8], chunk: &[u8]) -> std::io::Result<()> {
    for part in dest.chunks(CHUNK) {
        if part != &chunk[..part.len()] {
            return Err(std::io::Error::other("the reference copy differs"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_references_move_the_bytes_and_measure_a_rate() {
        // Not a multiple of the chunk, to cover the short last part.
        let r = measure(&Source::new(), CHUNK as u64 + 12_345).unwrap();
        assert_eq!(r.bytes, CHUNK as u64 + 12_345);
        assert!(r.memory_gbps > 0.0 && r.memory_gbps.is_finite(), "{r:?}");
        assert!(r.socket_gbps > 0.0 && r.socket_gbps.is_finite(), "{r:?}");
    }
}
