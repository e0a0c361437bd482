//! Guest memory of a KVM LPAR: a shared-memory file (`<dir>/memory`)
//! mapped here and given to KVM, so the engine reads and writes the very
//! pages the guest sees; and the log of writes the VMM itself makes (KVM
//! logs only the guest's).
//!
//! Layout ([`slots`]): the file's first [`HOLE_START`] bytes are slot 0 at
//! guest-physical 0; the rest, if any, is slot 1 at [`HIGH_BASE`] (4 GiB),
//! so the 32-bit MMIO hole (I/O APIC at `0xFEC00000`, LAPIC at
//! `0xFEE00000`, the TSS, the BIOS area) holds no RAM. Pages are numbered
//! by file offset / 4 KiB (the engine's page index): page `i` of slot 1 is
//! guest-physical `HIGH_BASE + (i * 4096 - HOLE_START)`.

use crate::partition::{PAGE_SIZE, Page, PartitionError};
use memmap2::MmapRaw;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Guest-physical start of the 32-bit MMIO hole: RAM stops here (3 GiB,
/// a multiple of 64 pages, so each slot's dirty bitmap starts on a word).
pub const HOLE_START: u64 = 0xC000_0000;
/// Guest-physical address of the RAM above the hole (the file from
/// [`HOLE_START`] on).
pub const HIGH_BASE: u64 = 1 << 32;

/// One KVM memory slot over part of the guest-memory file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// KVM slot number.
    pub id: u32,
    /// Guest-physical address of its first byte.
    pub guest_phys: u64,
    /// Offset of its first byte in the file (page index * 4096).
    pub file_offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Slot {
    /// Page index (file offset / 4 KiB) of the slot's first page.
    pub fn first_page(&self) -> u64 {
        self.file_offset / PAGE_SIZE as u64
    }

    pub fn pages(&self) -> u64 {
        self.len / PAGE_SIZE as u64
    }
}

/// The slots of a guest with `bytes` of memory: low RAM below the hole,
/// the rest at 4 GiB.
pub fn slots(bytes: u64) -> Vec<Slot> {
    let low = bytes.min(HOLE_START);
    let mut out = vec![Slot {
        id: 0,
        guest_phys: 0,
        file_offset: 0,
        len: low,
    }];
    if bytes > HOLE_START {
        out.push(Slot {
            id: 1,
            guest_phys: HIGH_BASE,
            file_offset: HOLE_START,
            len: bytes - HOLE_START,
        });
    }
    out
}

/// The guest-physical regions of `bytes` of memory (as [`slots`]).
pub fn regions(bytes: u64) -> Vec<crate::partition::MemoryRegion> {
    slots(bytes)
        .iter()
        .map(|s| crate::partition::MemoryRegion {
            guest_base: s.guest_phys,
            len: s.len,
        })
        .collect()
}

pub(crate) struct GuestRam {
    pub file: File,
    pub map: MmapRaw,
    /// The memory file's path, for errors.
    path: PathBuf,
    /// One bit per page written by the VMM since the last harvest.
    vmm_dirty: Vec<AtomicU64>,
    slots: Vec<Slot>,
}

impl GuestRam {
    /// Maps `file` (already sized).
    pub fn map(file: File, path: &Path) -> Result<Self, PartitionError> {
        let map = MmapRaw::map_raw(&file).map_err(|e| PartitionError::SharedMemory {
            path: path.display().to_string(),
            source: e,
        })?;
        let pages = map.len() / PAGE_SIZE;
        let vmm_dirty = (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        let slots = slots(map.len() as u64);
        Ok(GuestRam {
            file,
            map,
            path: path.to_path_buf(),
            vmm_dirty,
            slots,
        })
    }

    /// The KVM memory slots over this memory.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Bytes of RAM below the hole (slot 0).
    pub fn low_bytes(&self) -> u64 {
        self.slots[0].len
    }

    /// The file offset of guest-physical `[addr, addr + len)`, which must
    /// lie inside one slot.
    fn offset_of(&self, addr: u64, len: u64) -> Result<u64, PartitionError> {
        let end = addr.saturating_add(len);
        self.slots
            .iter()
            .find(|s| addr >= s.guest_phys && end <= s.guest_phys + s.len)
            .map(|s| addr - s.guest_phys + s.file_offset)
            .ok_or(PartitionError::PageOutOfRange {
                page: end.div_ceil(PAGE_SIZE as u64),
                pages: self.pages(),
            })
    }

    pub fn pages(&self) -> u64 {
        (self.map.len() / PAGE_SIZE) as u64
    }

    pub fn host_addr(&self) -> u64 {
        self.map.as_mut_ptr() as u64
    }

    pub fn page_ptr(&self, page: u64) -> Result<*mut u8, PartitionError> {
        if page >= self.pages() {
            return Err(PartitionError::PageOutOfRange {
                page,
                pages: self.pages(),
            });
        }
        // SAFETY: page < pages, so the offset is inside the mapping.
        Ok(unsafe { self.map.as_mut_ptr().add(page as usize * PAGE_SIZE) })
    }

    pub fn read(&self, page: u64, out: &mut Page) -> Result<(), PartitionError> {
        let src = self.page_ptr(page)?;
        // SAFETY: 4 KiB inside the live mapping; a torn copy of a page a
        // vCPU writes meanwhile is reported again by the dirty log.
        unsafe { crate::partition::volatile::copy_from_guest(src, out) };
        Ok(())
    }

    /// Writes by the VMM: logged before they land, so a harvest that
    /// races with them reports the page now or next time.
    pub fn write(&self, page: u64, data: &Page) -> Result<(), PartitionError> {
        let dst = self.page_ptr(page)?;
        self.mark(page);
        // SAFETY: 4 KiB inside the live mapping.
        unsafe { crate::partition::volatile::copy_to_guest(dst, data) };
        Ok(())
    }

    /// Allocates and maps `pages` for writing (see
    /// [`populate_for_write`](crate::partition::sim::shm::populate_for_write)).
    pub fn populate_for_write(
        &self,
        backing: crate::partition::MemoryBacking,
        pages: &mut dyn Iterator<Item = u64>,
    ) -> Result<(), PartitionError> {
        crate::partition::sim::shm::populate_for_write(&self.map, &self.path, backing, pages)
    }

    /// In-place update; callers make sure no vCPU runs.
    pub fn update(&self, page: u64, f: &mut dyn FnMut(&mut Page)) -> Result<(), PartitionError> {
        let dst = self.page_ptr(page)?;
        self.mark(page);
        // SAFETY: a page-aligned 4 KiB inside the mapping; the caller
        // checked that no vCPU runs, so nothing else writes it during `f`.
        f(unsafe { &mut *(dst as *mut Page) });
        Ok(())
    }

    /// Writes `bytes` at guest-physical `addr` (the loader, the power
    /// button), logged like [`GuestRam::write`]. The range lies in one slot.
    pub fn write_bytes(&self, addr: u64, bytes: &[u8]) -> Result<(), PartitionError> {
        let at = self.offset_of(addr, bytes.len() as u64)?;
        let end = at + bytes.len() as u64;
        for p in at / PAGE_SIZE as u64..end.div_ceil(PAGE_SIZE as u64) {
            self.mark(p);
        }
        // SAFETY: [at, end) is inside the mapping (offset_of checked it
        // lies in a slot, and the slots tile the mapping).
        unsafe {
            crate::partition::volatile::copy_to_guest(self.map.as_mut_ptr().add(at as usize), bytes)
        };
        Ok(())
    }

    /// Reads guest-physical `[addr, addr + out.len())` (in one slot).
    pub fn read_bytes(&self, addr: u64, out: &mut [u8]) -> Result<(), PartitionError> {
        let at = self.offset_of(addr, out.len() as u64)?;
        // SAFETY: [at, at + len) is inside the mapping (as in write_bytes).
        unsafe {
            crate::partition::volatile::copy_from_guest(self.map.as_ptr().add(at as usize), out)
        };
        Ok(())
    }

    fn mark(&self, page: u64) {
        self.vmm_dirty[(page / 64) as usize].fetch_or(1 << (page % 64), Ordering::SeqCst);
    }

    /// Takes the VMM-write bitmap (word `i` covers pages `64 i ..`), ORing
    /// it into `into` and clearing it atomically word by word.
    pub fn take_vmm_dirty(&self, into: &mut [u64]) {
        for (w, out) in self.vmm_dirty.iter().zip(into.iter_mut()) {
            if w.load(Ordering::Relaxed) != 0 {
                *out |= w.swap(0, Ordering::SeqCst);
            }
        }
    }

    /// The whole of guest memory, for hashing while no vCPU runs.
    ///
    /// # Safety
    /// The caller makes sure nothing writes guest memory while the slice
    /// lives (vCPUs paused, no VMM write).
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is live for &self; stability is the caller's.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_past_the_hole_moves_to_4_gib() {
        assert_eq!(slots(1 << 30).len(), 1);
        assert_eq!(slots(HOLE_START).len(), 1);
        let s = slots(5 << 30);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].guest_phys, s[0].len), (0, HOLE_START));
        assert_eq!(
            (s[1].id, s[1].guest_phys, s[1].file_offset, s[1].len),
            (1, HIGH_BASE, HOLE_START, (5 << 30) - HOLE_START)
        );
        assert_eq!(
            s[1].first_page() % 64,
            0,
            "slot 1's bitmap starts on a word"
        );
        let r = regions(5 << 30);
        assert_eq!(r.iter().map(|r| r.len).sum::<u64>(), 5 << 30);
        assert!(
            r[0].guest_base + r[0].len <= 0xFEC0_0000,
            "below the I/O APIC"
        );
    }

    #[test]
    fn guest_physical_addresses_translate_per_slot() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(5 << 30).unwrap(); // sparse: nothing is touched but two pages
        let ram = GuestRam::map(file, Path::new("test")).unwrap();
        ram.write_bytes(HIGH_BASE + 4096, b"high").unwrap();
        let mut page = [0u8; PAGE_SIZE];
        ram.read(HOLE_START / PAGE_SIZE as u64 + 1, &mut page)
            .unwrap();
        assert_eq!(
            &page[..4],
            b"high",
            "4 GiB + 4 KiB is file page 3 GiB / 4 KiB + 1"
        );
        let mut back = [0u8; 4];
        ram.read_bytes(HIGH_BASE + 4096, &mut back).unwrap();
        assert_eq!(&back, b"high");
        assert!(
            ram.write_bytes(HOLE_START, b"x").is_err(),
            "the hole holds no RAM"
        );
        assert!(
            ram.write_bytes(HOLE_START - 2, b"xyz").is_err(),
            "no range across the hole"
        );
        assert!(
            ram.read_bytes(HIGH_BASE + (2 << 30), &mut back).is_err(),
            "past the end"
        );
        let mut bm = vec![0u64; (ram.pages() as usize).div_ceil(64)];
        ram.take_vmm_dirty(&mut bm);
        let mut set = crate::partition::PageSet::new();
        super::super::dirty::bitmap_to_pages(&bm, &mut set);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![HOLE_START / 4096 + 1]);
    }
}
