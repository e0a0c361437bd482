//! Whether LZ4 pays on this stream, decided from what the stream measures.
//!
//! Compression pays when the path, not the CPU, limits the stream: a page
//! costs `encode + wire_bytes / path_rate`, and LZ4 trades encode time for
//! wire bytes. Each sender worker keeps running estimates of its path rate
//! (bytes written / time blocked in `write`, which includes pacing and a
//! full socket) and of both choices' per-page cost and size, picks the
//! cheaper per batch, and now and then probes the other choice so the
//! estimates follow the workload. On unshaped loopback the CPU is the limit
//! and pages go raw; on a 1 Gbit/s path text-like pages go compressed.

/// Batches between probes of the choice not currently taken.
const PROBE_EVERY: u32 = 32;

/// Weight of a new sample in the running averages.
const ALPHA: f64 = 0.2;

#[derive(Clone, Copy, Debug, Default)]
struct Choice {
    /// Encode time per page, ns.
    ns_per_page: f64,
    /// Wire bytes per page.
    bytes_per_page: f64,
    measured: bool,
}

impl Choice {
    fn update(&mut self, ns_per_page: f64, bytes_per_page: f64) {
        if self.measured {
            self.ns_per_page += ALPHA * (ns_per_page - self.ns_per_page);
            self.bytes_per_page += ALPHA * (bytes_per_page - self.bytes_per_page);
        } else {
            *self = Choice {
                ns_per_page,
                bytes_per_page,
                measured: true,
            };
        }
    }

    fn cost(&self, path_bytes_per_ns: f64) -> f64 {
        self.ns_per_page + self.bytes_per_page / path_bytes_per_ns
    }
}

#[derive(Debug, Default)]
pub struct Lz4Policy {
    raw: Choice,
    lz4: Choice,
    /// Path rate in bytes per ns while writing.
    path_rate: Option<f64>,
    batches: u32,
    current: bool,
}

impl Lz4Policy {
    pub fn new() -> Self {
        // Start compressed: on a slow path that is right from the first byte.
        Lz4Policy {
            current: true,
            ..Default::default()
        }
    }

    /// Whether the next batch should try LZ4.
    pub fn choose(&mut self) -> bool {
        self.batches += 1;
        let probe = self.batches.is_multiple_of(PROBE_EVERY);
        let best = match (self.path_rate, self.raw.measured, self.lz4.measured) {
            (Some(rate), true, true) => self.lz4.cost(rate) < self.raw.cost(rate),
            // Measure each choice once before comparing.
            (_, false, _) => false,
            (_, _, false) => true,
            (None, _, _) => self.current,
        };
        self.current = if probe { !best } else { best };
        self.current
    }

    /// Records a batch sent with `lz4` as chosen: `pages` pages encoded in
    /// `encode_ns`, `wire_bytes` written in `write_ns`.
    pub fn record(
        &mut self,
        lz4: bool,
        pages: u64,
        encode_ns: u64,
        wire_bytes: u64,
        write_ns: u64,
    ) {
        if pages == 0 {
            return;
        }
        let per_page = |v: u64| v as f64 / pages as f64;
        let choice = if lz4 { &mut self.lz4 } else { &mut self.raw };
        choice.update(per_page(encode_ns), per_page(wire_bytes));
        let rate = wire_bytes as f64 / write_ns.max(1) as f64;
        self.path_rate = Some(match self.path_rate {
            Some(r) => r + ALPHA * (rate - r),
            None => rate,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the policy a path of `rate` bytes/ns and a CPU that compresses
    /// a page to `lz4_bytes` in `lz4_ns`, and returns how often it chose LZ4.
    fn run(rate: f64, lz4_ns: f64, lz4_bytes: f64) -> u32 {
        let mut p = Lz4Policy::new();
        let mut chosen = 0;
        for _ in 0..320 {
            let lz4 = p.choose();
            let (ns, bytes) = if lz4 {
                (lz4_ns, lz4_bytes)
            } else {
                (300.0, 4096.0)
            };
            let pages = 256;
            let wire = (bytes * pages as f64) as u64;
            p.record(
                lz4,
                pages,
                (ns * pages as f64) as u64,
                wire,
                (wire as f64 / rate) as u64,
            );
            chosen += u32::from(lz4);
        }
        chosen
    }

    #[test]
    fn slow_path_compresses_text() {
        // 1 Gbit/s (0.125 B/ns); LZ4 takes 10 µs to shrink a page to 1 KiB:
        // raw costs 33 µs a page, compressed 18 µs.
        assert!(run(0.125, 10_000.0, 1024.0) > 280);
    }

    #[test]
    fn fast_path_sends_raw() {
        // Loopback at 1 B/ns: raw costs 4.4 µs a page, compressed 11 µs.
        assert!(run(1.0, 10_000.0, 1024.0) < 40);
    }

    #[test]
    fn incompressible_pages_go_raw_even_on_a_slow_path() {
        // LZ4 does not shrink them (the encoder falls back to raw) and costs time.
        assert!(run(0.125, 2_000.0, 4096.0) < 40);
    }
}
