//! The memory an agent process costs beyond the guest memory it maps.
//!
//! A `sim` LPAR's guest memory is a shared-memory file mapped by the agent,
//! so the kernel counts it as the process's `RssShmem`; everything the agent
//! itself allocates (buffers, page queues, its heap and stacks) is
//! `RssAnon`, and its code and libraries are `RssFile`. The overhead is
//! therefore `RssAnon + RssFile`, sampled from `/proc/<pid>/status` every
//! [`INTERVAL`] by a thread, and its peak is what a run reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the sampler reads `/proc/<pid>/status`.
pub const INTERVAL: Duration = Duration::from_millis(2);

/// One reading of a process's resident memory, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rss {
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
}

impl Rss {
    /// What the process costs beyond the shared memory it maps.
    pub fn overhead(&self) -> u64 {
        self.anon + self.file
    }
}

/// Parses the `RssAnon`, `RssFile` and `RssShmem` lines of a
/// `/proc/<pid>/status` text. `None` when they are absent (a zombie, or a
/// kernel thread).
pub fn parse_status(text: &str) -> Option<Rss> {
    let mut rss = Rss::default();
    let mut seen = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let field = match key {
            "RssAnon" => &mut rss.anon,
            "RssFile" => &mut rss.file,
            "RssShmem" => &mut rss.shmem,
            _ => continue,
        };
        let kib: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
        *field = kib * 1024;
        seen += 1;
    }
    (seen == 3).then_some(rss)
}

/// Reads a process's resident memory now.
pub fn read(pid: u32) -> Option<Rss> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Samples a process's overhead until stopped or until the process has
/// exited, keeping the peak. Dropping it stops the thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                // A process that has exited (a zombie until reaped) has no
                // Rss lines: nothing more to see.
                let Some(rss) = read(pid) else { break };
                peak = peak.max(rss.overhead());
                std::thread::sleep(INTERVAL);
            }
            peak
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the peak overhead in bytes (0 if the
    /// process was never seen). Call before reaping the process, so its pid
    /// cannot have been reused.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("finished once");
        thread.join().unwrap_or(0)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse_into_bytes() {
        let status = "Name:\tmoverd\nVmRSS:\t  5000 kB\nRssAnon:\t    1200 kB\n\
                      RssFile:\t     300 kB\nRssShmem:\t 4194304 kB\nThreads:\t4\n";
        let rss = parse_status(status).unwrap();
        assert_eq!(rss.anon, 1200 * 1024);
        assert_eq!(rss.shmem, 4 << 30);
        assert_eq!(rss.overhead(), 1500 * 1024);
        assert_eq!(parse_status("Name:\tzombie\nState:\tZ (zombie)\n"), None);
    }

    #[test]
    fn this_process_is_sampled_and_its_heap_counts() {
        let sampler = Sampler::start(std::process::id());
        // 32 MiB of touched heap must show up as anonymous memory.
        let heap = vec![1u8; 32 << 20];
        std::thread::sleep(INTERVAL * 10);
        let peak = sampler.finish();
        assert!(heap.iter().all(|&b| b == 1));
        assert!(peak >= 32 << 20, "peak {peak}");
    }
}
