//! The harvest of a 4 GiB guest with 1% of its pages dirty: the KVM dirty
//! log (`KVM_GET_DIRTY_LOG` + `KVM_CLEAR_DIRTY_LOG` of what it reports)
//! against the `sim` uffd-wp harvest, in the same run. Prints medians
//! (`cargo bench --bench kvm_dirty_log`). Target: KVM under 1 ms
//! (measured 0.315 ms, uffd-wp 5.0 ms, medians of 3 runs at load ~6 on 2
//! shared cores; 1.004 ms before the harvest reused its bitmap, cleared
//! only the non-zero span and turned runs of bits into ranges at once).
//!
//! The KVM guest is a 47-byte multiboot stub (below) that writes every
//! 75th page from 4 MiB up to the 3 GiB hole (a 32-bit guest without
//! paging reaches no further; the last GiB is KVM's second slot, at
//! 4 GiB, and is harvested clean), offset by its round number, and counts
//! rounds at guest-physical 0x1000: ~10,450 pages, 1% of 4 GiB. The bench
//! pauses it after each round and times the harvest. Skips without
//! /dev/kvm.

use lpar_mover::partition::kvm::{self, KvmLpar};
use lpar_mover::partition::sim::dirty::{self, TrackedRange, TrackerKind};
use lpar_mover::partition::{GuestMemory, LparConfig, PAGE_SIZE, PageSet, Partition, Vcpus};
use memmap2::MmapRaw;
use std::time::{Duration, Instant};

const MEMORY: u64 = 4 << 30;
const PAGES: usize = (MEMORY as usize) / PAGE_SIZE;
const RUNS: usize = 15;

/// A flat multiboot v1 kernel at 1 MiB (flag bit 16). Its code:
///
/// ```text
///        xor esi, esi              ; round r = 0
/// outer: mov eax, esi / xor edx, edx / mov ecx, 75 / div ecx
///        lea edi, [edx + 0x400]    ; page 1024 + r % 75
/// inner: cmp edi, 0xC0000 / jae done   ; stop at the 3 GiB hole
///        mov eax, edi / shl eax, 12 / mov [eax], esi
///        add edi, 75 / jmp inner
/// done:  inc esi / mov [0x1000], esi / jmp outer
/// ```
fn stub() -> Vec<u8> {
    let (magic, flags) = (0x1BAD_B002u32, 0x0001_0000u32);
    let mut img = Vec::new();
    for w in [
        magic,
        flags,
        0u32.wrapping_sub(magic.wrapping_add(flags)),
        0x10_0000, // header_addr
        0x10_0000, // load_addr
        0,         // load_end_addr: the whole file
        0,         // bss_end_addr
        0x10_0020, // entry
    ] {
        img.extend_from_slice(&w.to_le_bytes());
    }
    img.extend_from_slice(&[
        0x31, 0xF6, 0x89, 0xF0, 0x31, 0xD2, 0xB9, 0x4B, 0x00, 0x00, 0x00, 0xF7, 0xF1, 0x8D, 0xBA,
        0x00, 0x04, 0x00, 0x00, 0x81, 0xFF, 0x00, 0x00, 0x0C, 0x00, 0x73, 0x0C, 0x89, 0xF8, 0xC1,
        0xE0, 0x0C, 0x89, 0x30, 0x83, 0xC7, 0x4B, 0xEB, 0xEC, 0x46, 0x89, 0x35, 0x00, 0x10, 0x00,
        0x00, 0xEB, 0xD2,
    ]);
    img
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rounds(lpar: &KvmLpar) -> u32 {
    let mut page = [0u8; PAGE_SIZE];
    lpar.read_page(1, &mut page).unwrap();
    u32::from_le_bytes(page[..4].try_into().unwrap())
}

fn kvm_harvest() -> Option<(Duration, u64)> {
    if let Some(why) = kvm::unavailable() {
        lpar_mover::skip::skip(
            "kvm_dirty_log",
            &format!("the KVM harvest needs /dev/kvm ({why})"),
        );
        return None;
    }
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let config = LparConfig {
        name: "bench".into(),
        vcpus: 1,
        memory_bytes: MEMORY,
        program: "stub".into(),
        ..LparConfig::default_lpar()
    };
    let lpar = KvmLpar::create_with(dir.path(), &config, &stub(), "").unwrap();
    let mut log = lpar.dirty_log().unwrap();
    log.start().unwrap();
    lpar.resume().unwrap();
    let mut set = PageSet::new();
    let (mut times, mut found) = (Vec::new(), 0);
    let mut last = 0;
    for run in 0..=RUNS {
        let t = Instant::now();
        while rounds(&lpar) <= last {
            assert!(t.elapsed() < Duration::from_secs(300), "the stub stopped");
            std::thread::sleep(Duration::from_millis(1));
        }
        lpar.pause().unwrap();
        last = rounds(&lpar);
        set.clear();
        let t0 = Instant::now();
        log.harvest(&mut set).unwrap();
        let dt = t0.elapsed();
        if run > 0 {
            // Run 0 also holds the boot's writes.
            times.push(dt);
            found = set.len();
        }
        lpar.resume().unwrap();
    }
    lpar.pause().unwrap();
    Some((median(times), found))
}

fn uffd_harvest() -> Option<(Duration, u64)> {
    if dirty::resolve(TrackerKind::Auto) != TrackerKind::UffdWp {
        lpar_mover::skip::skip(
            "kvm_dirty_log (uffd-wp side)",
            "uffd-wp with PAGEMAP_SCAN is unavailable on this kernel (needs Linux 6.7+)",
        );
        return None;
    }
    let fd =
        nix::sys::memfd::memfd_create(c"bench", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    let file = std::fs::File::from(fd);
    file.set_len(MEMORY).unwrap();
    let map = MmapRaw::map_raw(&file).unwrap();
    let touch = |p: usize| {
        // SAFETY: p < PAGES, inside the mapping.
        unsafe { map.as_mut_ptr().add(p * PAGE_SIZE).write_volatile(1) }
    };
    for p in 0..PAGES {
        touch(p);
    }
    let range = TrackedRange {
        base: map.as_mut_ptr(),
        len: MEMORY as usize,
        first_page: 0,
    };
    let mut log = dirty::open(TrackerKind::UffdWp, range).unwrap();
    log.start().unwrap();
    let mut set = PageSet::new();
    let (mut times, mut found) = (Vec::new(), 0);
    for run in 0..RUNS {
        for p in (1024 + run % 100..PAGES).step_by(100) {
            touch(p);
        }
        set.clear();
        let t0 = Instant::now();
        log.harvest(&mut set).unwrap();
        times.push(t0.elapsed());
        found = set.len();
    }
    Some((median(times), found))
}

fn main() {
    println!("4 GiB guest ({PAGES} pages), 1% of the pages dirty; medians of {RUNS} harvests");
    println!("{:<8} {:>12} {:>12}", "log", "harvest ms", "pages found");
    for (name, result) in [("kvm", kvm_harvest()), ("uffd-wp", uffd_harvest())] {
        if let Some((t, found)) = result {
            println!("{name:<8} {:>12.3} {found:>12}", t.as_secs_f64() * 1e3);
        }
    }
}
