//! The bandwidth cap: one token bucket shared by all streams of a migration.
//!
//! A writer short of tokens waits on a condition variable, not in one
//! sleep: [`Pacer::release`] (a migration that gives up: cancel, timeout,
//! failure) wakes every waiter at once and lifts the cap, so no wait for
//! tokens outlasts the migration, however small the cap.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Largest piece a [`PacedWriter`] hands to the socket at once, so that a cap
/// is enforced smoothly rather than in bursts of whole page batches.
pub const PACE_CHUNK: usize = 256 * 1024;

/// Burst the bucket may accumulate while idle: `rate × PACE_BURST_TIME`, at
/// least one [`PACE_CHUNK`]. Short, so a paused sender cannot later exceed
/// the cap by much.
pub const PACE_BURST_TIME: Duration = Duration::from_millis(20);

/// A thread-safe token bucket in bytes. Callers take tokens before writing;
/// when the bucket is empty they sleep for exactly the time the debt takes to
/// refill, outside the lock. Debt is allowed, so concurrent writers are
/// serialised fairly: each later caller sees the earlier callers' debt.
pub struct Pacer {
    state: Mutex<Bucket>,
    /// Signalled by [`Pacer::release`].
    released_cv: Condvar,
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// The cap is lifted: nobody waits any more.
    released: bool,
}

impl Pacer {
    /// A cap of `bytes_per_sec` (at least 1), shared as `Arc<Pacer>`.
    pub fn new(bytes_per_sec: u64) -> Arc<Self> {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = Self::burst_for(rate);
        Arc::new(Pacer {
            state: Mutex::new(Bucket {
                rate,
                burst,
                tokens: burst,
                last: Instant::now(),
                released: false,
            }),
            released_cv: Condvar::new(),
        })
    }

    fn burst_for(rate: f64) -> f64 {
        (rate * PACE_BURST_TIME.as_secs_f64()).max(PACE_CHUNK as f64)
    }

    /// Changes the cap while streams run (the operator eases or tightens it).
    pub fn set_rate(&self, bytes_per_sec: u64) {
        let mut b = self.lock();
        b.refill();
        b.rate = bytes_per_sec.max(1) as f64;
        b.burst = Self::burst_for(b.rate);
        b.tokens = b.tokens.min(b.burst);
    }

    pub fn rate(&self) -> u64 {
        self.lock().rate as u64
    }

    /// Takes `bytes` tokens, waiting as long as the cap requires, or until
    /// [`Pacer::release`].
    pub fn acquire(&self, bytes: usize) {
        let mut b = self.lock();
        if b.released {
            return;
        }
        b.refill();
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            return;
        }
        // The debt takes this long to refill; waited out on the condition
        // variable (the lock is free meanwhile), so release ends it at once.
        let debt = Duration::try_from_secs_f64(-b.tokens / b.rate).unwrap_or(Duration::MAX);
        let until = crate::units::later(Instant::now(), debt);
        while !b.released {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            b = self
                .released_cv
                .wait_timeout(b, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Lifts the cap for good and wakes every writer waiting for tokens: the
    /// migration is ending, and what is left to write (an Abort) must not
    /// wait.
    pub fn release(&self) {
        self.lock().released = true;
        self.released_cv.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Bucket {
    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }
}

/// A writer that takes tokens from an optional shared [`Pacer`] before each
/// piece it writes. Without a pacer it is a plain pass-through.
pub struct PacedWriter<W: Write> {
    inner: W,
    pacer: Option<Arc<Pacer>>,
}

impl<W: Write> PacedWriter<W> {
    pub fn new(inner: W, pacer: Option<Arc<Pacer>>) -> Self {
        PacedWriter { inner, pacer }
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for PacedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.pacer {
            None => self.inner.write(buf),
            Some(p) => {
                let piece = &buf[..buf.len().min(PACE_CHUNK)];
                p.acquire(piece.len());
                // Tokens for a short write are not refunded: the error is at
                // most one chunk, and refunding would let bursts through.
                self.inner.write(piece)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed_copy(pacer: &Arc<Pacer>, writers: usize, bytes_each: usize) -> Duration {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..writers {
                let p = pacer.clone();
                s.spawn(move || {
                    let mut w = PacedWriter::new(io::sink(), Some(p));
                    let buf = vec![0u8; 64 * 1024];
                    let mut left = bytes_each;
                    while left > 0 {
                        let n = left.min(buf.len());
                        w.write_all(&buf[..n]).unwrap();
                        left -= n;
                    }
                });
            }
        });
        t.elapsed()
    }

    fn assert_close(got: Duration, want: Duration) {
        let ratio = got.as_secs_f64() / want.as_secs_f64();
        assert!(
            (0.85..1.20).contains(&ratio),
            "took {got:?}, expected {want:?} (ratio {ratio:.3})"
        );
    }

    #[test]
    fn a_capped_transfer_takes_the_expected_time() {
        // 16 MB at 32 MB/s: 0.5 s, less the initial burst (one chunk).
        let rate = 32_000_000u64;
        let pacer = Pacer::new(rate);
        let bytes = 16_000_000usize;
        let want = Duration::from_secs_f64((bytes - PACE_CHUNK) as f64 / rate as f64);
        assert_close(timed_copy(&pacer, 1, bytes), want);
    }

    #[test]
    fn the_cap_is_shared_by_all_streams() {
        // 4 writers × 4 MB at 32 MB/s together: 0.5 s, not 0.125 s.
        let rate = 32_000_000u64;
        let pacer = Pacer::new(rate);
        let want = Duration::from_secs_f64((16_000_000 - PACE_CHUNK) as f64 / rate as f64);
        assert_close(timed_copy(&pacer, 4, 4_000_000), want);
    }

    #[test]
    fn release_ends_every_wait_at_once_however_small_the_cap() {
        // 1000 B/s: one chunk of debt is a wait of four minutes.
        let pacer = Pacer::new(1000);
        let t = Instant::now();
        let writers: Vec<_> = (0..3)
            .map(|_| {
                let p = pacer.clone();
                std::thread::spawn(move || {
                    let mut w = PacedWriter::new(io::sink(), Some(p));
                    w.write_all(&vec![0u8; 3 * PACE_CHUNK]).unwrap();
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        pacer.release();
        for w in writers {
            w.join().unwrap();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
        // Released for good: later writes do not wait either.
        let mut w = PacedWriter::new(io::sink(), Some(pacer));
        w.write_all(&vec![0u8; 4 * PACE_CHUNK]).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn the_cap_can_change_while_writing() {
        let pacer = Pacer::new(1_000_000_000);
        pacer.set_rate(16_000_000);
        assert_eq!(pacer.rate(), 16_000_000);
        let want = Duration::from_secs_f64((8_000_000 - PACE_CHUNK) as f64 / 16e6);
        assert_close(timed_copy(&pacer, 2, 4_000_000), want);
    }
}
