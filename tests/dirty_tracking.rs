//! The dirty trackers against real writes: every written page is reported,
//! and writes racing with a harvest are never lost. Run for both trackers.

use lpar_mover::partition::sim::dirty::{self, TrackedRange, TrackerKind};
use lpar_mover::partition::{PAGE_SIZE, PageSet};
use memmap2::MmapRaw;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Guest-memory-like mapping: shared memory, as the sim backend uses.
fn shared_mapping(pages: usize) -> MmapRaw {
    let fd = nix::sys::memfd::memfd_create(c"dirty-test", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .unwrap();
    let file = std::fs::File::from(fd);
    file.set_len((pages * PAGE_SIZE) as u64).unwrap();
    MmapRaw::map_raw(&file).unwrap()
}

fn range(map: &MmapRaw) -> TrackedRange {
    TrackedRange {
        base: map.as_mut_ptr(),
        len: map.len(),
        first_page: 0,
    }
}

fn write(map: &MmapRaw, page: usize, value: u64) {
    // SAFETY: the offset is inside the mapping.
    unsafe {
        (map.as_mut_ptr()
            .add(page * PAGE_SIZE + 8 * (value as usize % 512)) as *mut u64)
            .write_volatile(value)
    };
}

fn uffd_available() -> bool {
    dirty::resolve(TrackerKind::Auto) == TrackerKind::UffdWp
}

fn reports_every_written_page(
    kind: TrackerKind,
    before: &BTreeSet<usize>,
    written: &BTreeSet<usize>,
) {
    const PAGES: usize = 1024;
    let map = shared_mapping(PAGES);
    for &p in before {
        write(&map, p, 1); // populated before tracking starts
    }
    let mut log = dirty::open(kind, range(&map)).unwrap();
    log.start().unwrap();
    for &p in written {
        write(&map, p, 2);
    }
    let mut seen = PageSet::new();
    log.harvest(&mut seen).unwrap();
    let seen: BTreeSet<usize> = seen.iter().map(|p| p as usize).collect();
    assert!(
        written.is_subset(&seen),
        "missed pages: {:?}",
        written.difference(&seen).collect::<Vec<_>>()
    );
    // No write happened outside `written`, so an exact tracker reports nothing else.
    assert_eq!(
        seen, *written,
        "{kind} reported pages that were not written"
    );
    let mut again = PageSet::new();
    log.harvest(&mut again).unwrap();
    assert!(
        again.is_empty(),
        "{kind} re-reported {:?} without new writes",
        again.ranges()
    );
    log.stop().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn uffd_wp_reports_every_written_page(
        before in proptest::collection::btree_set(0usize..1024, 0..200),
        written in proptest::collection::btree_set(0usize..1024, 0..300),
    ) {
        if !uffd_available() {
            lpar_mover::skip!("uffd-wp with PAGEMAP_SCAN is not available on this kernel (needs Linux 6.7+)", Ok(()));
        }
        reports_every_written_page(TrackerKind::UffdWp, &before, &written);
    }

    #[test]
    fn mprotect_reports_every_written_page(
        before in proptest::collection::btree_set(0usize..1024, 0..200),
        written in proptest::collection::btree_set(0usize..1024, 0..300),
    ) {
        reports_every_written_page(TrackerKind::Mprotect, &before, &written);
    }
}

/// Copies the reported pages out of the mapping, as the engine's sender
/// does. Reading while the writer writes is the point: a torn page is
/// reported again by the next harvest.
fn copy_pages(map: &MmapRaw, pages: &PageSet, copy: &mut [u8]) {
    for p in pages.iter() {
        let p = p as usize;
        // SAFETY: the page lies inside the mapping and `copy`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                map.as_ptr().add(p * PAGE_SIZE),
                copy[p * PAGE_SIZE..].as_mut_ptr(),
                PAGE_SIZE,
            )
        };
    }
}

/// The migration invariant in miniature: a writer keeps writing while we
/// harvest and copy what was reported; after the writer stops and one last
/// harvest, the copy must equal memory. A write lost between a harvest's
/// read and its re-arm would leave the copy stale.
fn racing_writes_are_never_lost(kind: TrackerKind) {
    const PAGES: usize = 4096;
    let map = Arc::new(shared_mapping(PAGES));
    let mut log = dirty::open(kind, range(&map)).unwrap();
    let mut copy = vec![0u8; PAGES * PAGE_SIZE];
    log.start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (map, stop) = (map.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut x: u64 = 0x1234_5678_9abc_def1;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                n += 1;
                write(&map, (x % PAGES as u64) as usize, n);
            }
            n
        })
    };
    let mut harvested = 0;
    let mut set = PageSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(400);
    while std::time::Instant::now() < deadline {
        set.clear();
        log.harvest(&mut set).unwrap();
        harvested += set.len();
        copy_pages(&map, &set, &mut copy);
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    set.clear();
    log.harvest(&mut set).unwrap();
    copy_pages(&map, &set, &mut copy);
    // SAFETY: nobody writes the mapping any more.
    let memory = unsafe { std::slice::from_raw_parts(map.as_ptr(), PAGES * PAGE_SIZE) };
    let stale: Vec<usize> = (0..PAGES)
        .filter(|&p| {
            memory[p * PAGE_SIZE..(p + 1) * PAGE_SIZE] != copy[p * PAGE_SIZE..(p + 1) * PAGE_SIZE]
        })
        .collect();
    assert!(
        stale.is_empty(),
        "{kind}: {} pages lost their last write, e.g. {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
    assert!(
        writes > 1000 && harvested > 500,
        "the race was not exercised: {writes} writes, {harvested} pages harvested"
    );
}

#[test]
fn uffd_wp_never_loses_a_racing_write() {
    if !uffd_available() {
        lpar_mover::skip!(
            "uffd-wp with PAGEMAP_SCAN is not available on this kernel (needs Linux 6.7+)"
        );
    }
    racing_writes_are_never_lost(TrackerKind::UffdWp);
}

#[test]
fn mprotect_never_loses_a_racing_write() {
    racing_writes_are_never_lost(TrackerKind::Mprotect);
}

#[test]
fn auto_picks_uffd_wp_on_this_kernel() {
    // The development and CI kernels are 6.7+; fail loudly if the probe
    // regresses there rather than silently testing only the fallback.
    let release = nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse::<u32>().ok());
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version >= (6, 7) {
        assert_eq!(
            dirty::resolve(TrackerKind::Auto),
            TrackerKind::UffdWp,
            "kernel {release}"
        );
    } else {
        lpar_mover::skip!(format!("kernel {release} predates PAGEMAP_SCAN"));
    }
}

#[test]
fn uffd_wp_tracks_writes_into_memory_never_touched_before_start() {
    if !uffd_available() {
        lpar_mover::skip!("uffd-wp unavailable on this kernel");
    }
    // 64 MiB with one populated page: `start` protects only what is mapped,
    // so pages in other 2 MiB regions have no page table yet. A first write
    // there must still be reported, once per write.
    let map = shared_mapping(16_384);
    write(&map, 0, 1);
    let mut log = dirty::open(TrackerKind::UffdWp, range(&map)).unwrap();
    log.start().unwrap();
    let mut seen = PageSet::new();
    log.harvest(&mut seen).unwrap();
    assert!(seen.is_empty(), "before any write: {:?}", seen.ranges());
    for round in 1..=3 {
        write(&map, 8_192, round);
        write(&map, 16_383, round);
        seen.clear();
        log.harvest(&mut seen).unwrap();
        assert_eq!(
            seen.iter().collect::<Vec<_>>(),
            [8_192, 16_383],
            "round {round}"
        );
    }
    seen.clear();
    log.harvest(&mut seen).unwrap();
    assert!(seen.is_empty(), "after the last write: {:?}", seen.ranges());
}
