//! Guest memory of a KVM LPAR: a shared-memory file (`<dir>/memory`)
//! mapped here and given to KVM as memory slot 0 at guest-physical 0, so
//! the engine reads and writes the very pages the guest sees; and the log
//! of writes the VMM itself makes (KVM logs only the guest's).

use crate::partition::{PAGE_SIZE, Page, PartitionError};
use memmap2::MmapRaw;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct GuestRam {
    pub file: File,
    pub map: MmapRaw,
    /// One bit per page written by the VMM since the last harvest.
    vmm_dirty: Vec<AtomicU64>,
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
        Ok(GuestRam {
            file,
            map,
            vmm_dirty,
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
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), PAGE_SIZE) };
        Ok(())
    }

    /// Writes by the VMM: logged before they land, so a harvest that
    /// races with them reports the page now or next time.
    pub fn write(&self, page: u64, data: &Page) -> Result<(), PartitionError> {
        let dst = self.page_ptr(page)?;
        self.mark(page);
        // SAFETY: 4 KiB inside the live mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, PAGE_SIZE) };
        Ok(())
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
    /// button), logged like [`GuestRam::write`].
    pub fn write_bytes(&self, addr: u64, bytes: &[u8]) -> Result<(), PartitionError> {
        let end = addr + bytes.len() as u64;
        if end > self.map.len() as u64 {
            return Err(PartitionError::PageOutOfRange {
                page: end.div_ceil(PAGE_SIZE as u64),
                pages: self.pages(),
            });
        }
        for p in addr / PAGE_SIZE as u64..end.div_ceil(PAGE_SIZE as u64) {
            self.mark(p);
        }
        // SAFETY: [addr, end) is inside the mapping (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(addr as usize),
                bytes.len(),
            )
        };
        Ok(())
    }

    pub fn read_bytes(&self, addr: u64, out: &mut [u8]) -> Result<(), PartitionError> {
        let end = addr + out.len() as u64;
        if end > self.map.len() as u64 {
            return Err(PartitionError::PageOutOfRange {
                page: end / PAGE_SIZE as u64,
                pages: self.pages(),
            });
        }
        // SAFETY: [addr, end) is inside the mapping (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(addr as usize),
                out.as_mut_ptr(),
                out.len(),
            )
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
