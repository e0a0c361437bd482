//! Cost of dirty tracking on a 1 GiB guest: harvest with 0.1%, 1% and 100%
//! of pages dirty, and the first write to a protected page, for both
//! trackers. Prints medians of repeated runs (run with `cargo bench --bench
//! dirty_tracking`).
//!
//! Target (issue 2): a 1 GiB harvest with 1% dirty under 2 ms with uffd-wp.
//!
//! Then the harvest that runs inside the suspension, on a 4 GiB guest of
//! which 256 MiB were ever touched, with a few hundred pages dirty (issue 4:
//! it must cost a small part of a 2 ms budget).

use lpar_mover::partition::sim::dirty::{self, TrackedRange, TrackerKind};
use lpar_mover::partition::{PAGE_SIZE, PageSet};
use memmap2::MmapRaw;
use std::time::{Duration, Instant};

const MEMORY: usize = 1 << 30;
const PAGES: usize = MEMORY / PAGE_SIZE;
const RUNS: usize = 15;

fn guest_memory() -> MmapRaw {
    let fd =
        nix::sys::memfd::memfd_create(c"bench", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    let file = std::fs::File::from(fd);
    file.set_len(MEMORY as u64).unwrap();
    let map = MmapRaw::map_raw(&file).unwrap();
    for p in 0..PAGES {
        touch(&map, p); // populated, as a running guest's memory is
    }
    map
}

fn touch(map: &MmapRaw, page: usize) {
    // SAFETY: page < PAGES, inside the mapping.
    unsafe { map.as_mut_ptr().add(page * PAGE_SIZE).write_volatile(1) };
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Every `stride`-th page, offset per run so runs do not repeat a pattern.
fn dirty_pages(fraction_per_mille: usize, run: usize) -> Vec<usize> {
    let count = PAGES * fraction_per_mille / 1000;
    let stride = PAGES / count;
    (0..count).map(|i| (i * stride + run * 7) % PAGES).collect()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we use.
    let map = guest_memory();
    let range = TrackedRange {
        base: map.as_mut_ptr(),
        len: MEMORY,
        first_page: 0,
    };
    println!("1 GiB guest, {PAGES} pages, populated; medians of {RUNS} runs");
    println!(
        "{:<10} {:>8} {:>14} {:>14}",
        "tracker", "dirty", "harvest ms", "pages found"
    );
    let mut kinds = vec![TrackerKind::Mprotect];
    if dirty::resolve(TrackerKind::Auto) == TrackerKind::UffdWp {
        kinds.insert(0, TrackerKind::UffdWp);
    } else {
        println!("uffd-wp unavailable on this kernel: measuring mprotect only");
    }
    for &kind in &kinds {
        let mut log = dirty::open(kind, range).unwrap();
        log.start().unwrap();
        let mut set = PageSet::new();
        for per_mille in [1, 10, 1000] {
            let mut times = Vec::new();
            let mut found = 0;
            for run in 0..RUNS {
                for p in dirty_pages(per_mille, run) {
                    touch(&map, p);
                }
                set.clear();
                let t = Instant::now();
                log.harvest(&mut set).unwrap();
                times.push(t.elapsed());
                found = set.len();
            }
            println!(
                "{:<10} {:>7.1}% {:>14.3} {:>14}",
                log.mechanism(),
                per_mille as f64 / 10.0,
                median(times).as_secs_f64() * 1e3,
                found
            );
        }
        // First write to a protected, populated page.
        let mut per_page = Vec::new();
        for _ in 0..5 {
            set.clear();
            log.harvest(&mut set).unwrap();
            let pages = 65_536;
            let t = Instant::now();
            for p in 0..pages {
                touch(&map, p * (PAGES / pages));
            }
            per_page.push(t.elapsed() / pages as u32);
        }
        println!(
            "{:<10} first write to a protected page: {:.2} µs (median)",
            log.mechanism(),
            median(per_page).as_secs_f64() * 1e6
        );
        log.stop().unwrap();
    }
    if kinds[0] == TrackerKind::UffdWp {
        sparse_pause_harvest();
    }
}

fn sparse_pause_harvest() {
    const SPARSE: usize = 4 << 30;
    const HOT_PAGES: usize = (256 << 20) / PAGE_SIZE;
    let fd =
        nix::sys::memfd::memfd_create(c"bench", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    let file = std::fs::File::from(fd);
    file.set_len(SPARSE as u64).unwrap();
    let map = MmapRaw::map_raw(&file).unwrap();
    for p in 0..HOT_PAGES {
        touch(&map, p);
    }
    let range = TrackedRange {
        base: map.as_mut_ptr(),
        len: SPARSE,
        first_page: 0,
    };
    let mut log = dirty::open(TrackerKind::UffdWp, range).unwrap();
    let page_tables_kib = || -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmPTE:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let tables_before = page_tables_kib();
    let t = Instant::now();
    log.start().unwrap();
    let start = t.elapsed();
    let tables_added = page_tables_kib() - tables_before;
    let mut set = PageSet::new();
    let mut times = Vec::new();
    for run in 0..RUNS {
        for i in 0..300 {
            touch(&map, (i * 211 + run * 13) % HOT_PAGES);
        }
        set.clear();
        let t = Instant::now();
        log.harvest(&mut set).unwrap();
        times.push(t.elapsed());
    }
    println!(
        "uffd-wp    4 GiB guest, 256 MiB touched: start {:.3} ms (+{tables_added} KiB page tables), \
         harvest of ~300 dirty pages {:.3} ms (median)",
        start.as_secs_f64() * 1e3,
        median(times).as_secs_f64() * 1e3
    );
}
