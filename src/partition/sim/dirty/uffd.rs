//! Dirty tracking with userfaultfd write-protect in async mode plus the
//! `PAGEMAP_SCAN` ioctl (Linux 6.7 and later).
//!
//! `start` write-protects what the range maps (see there for why not the
//! whole range) under userfaultfd with `UFFD_FEATURE_WP_ASYNC`: a write to a protected page is resolved by the
//! kernel itself (no fault reaches us, the vCPU never blocks) and leaves the
//! page table entry marked *written*. `harvest` asks `PAGEMAP_SCAN` for the
//! written pages with `PM_SCAN_WP_MATCHING`, which re-protects each page as
//! it reports it, under the page-table lock: a write either lands before the
//! scan reaches its entry (reported now) or after (faults, reported next
//! time). Nothing is lost between the read and the re-arm.

use super::TrackedRange;
use super::uapi::*;
use crate::partition::{DirtyLog, PAGE_SIZE, PageSet, PartitionError};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const MECHANISM: &str = "uffd-wp";

/// Regions returned per `PAGEMAP_SCAN` call; the scan resumes at `walk_end`
/// when the buffer fills, so this bounds memory, not correctness.
const SCAN_BATCH: usize = 4096;

/// A dirty log built on userfaultfd write-protection: the kernel marks written pages, a harvest reads and re-arms them.
pub struct UffdWpLog {
    uffd: OwnedFd,
    pagemap: File,
    range: TrackedRange,
    regions: Vec<PageRegion>,
    started: bool,
}

fn err(call: &'static str, source: io::Error) -> PartitionError {
    PartitionError::DirtyLog {
        mechanism: MECHANISM,
        call,
        source,
    }
}

impl UffdWpLog {
    /// Opens a userfaultfd with async write-protect and registers `range`
    /// with it. Tracking begins at [`DirtyLog::start`].
    pub fn new(range: TrackedRange) -> Result<Self, PartitionError> {
        // SAFETY: userfaultfd(2) takes only flags and returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_userfaultfd,
                libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY,
            )
        };
        if fd < 0 {
            return Err(err("userfaultfd", io::Error::last_os_error()));
        }
        // SAFETY: fd was just returned by the kernel and is owned by nobody else.
        let uffd = unsafe { OwnedFd::from_raw_fd(fd as i32) };

        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_ASYNC
                | UFFD_FEATURE_WP_UNPOPULATED
                | UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
            ioctls: 0,
        };
        // SAFETY: api is a valid, initialised uffdio_api for the duration of the call.
        unsafe { uffdio_api(uffd.as_raw_fd(), &mut api) }
            .map_err(|e| err("UFFDIO_API (WP_ASYNC)", e.into()))?;

        let mut reg = UffdioRegister {
            range: range.uffd_range(),
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: reg is valid; the range is a live mapping owned by the
        // caller for as long as this log exists (TrackedRange's contract).
        unsafe { uffdio_register(uffd.as_raw_fd(), &mut reg) }
            .map_err(|e| err("UFFDIO_REGISTER (WP)", e.into()))?;

        let pagemap =
            File::open("/proc/self/pagemap").map_err(|e| err("open /proc/self/pagemap", e))?;
        Ok(UffdWpLog {
            uffd,
            pagemap,
            range,
            regions: vec![PageRegion::default(); SCAN_BATCH],
            started: false,
        })
    }

    fn write_protect(&self, range: UffdioRange, protect: bool) -> Result<(), PartitionError> {
        let mut wp = UffdioWriteprotect {
            range,
            mode: if protect {
                UFFDIO_WRITEPROTECT_MODE_WP
            } else {
                0
            },
        };
        // SAFETY: wp is valid and the range lies in the one registered with this uffd.
        unsafe { uffdio_writeprotect(self.uffd.as_raw_fd(), &mut wp) }
            .map_err(|e| err("UFFDIO_WRITEPROTECT", e.into()))?;
        Ok(())
    }

    /// Runs `PAGEMAP_SCAN` over the whole range for pages in `category`,
    /// calling `found` with each run's address range.
    fn scan(
        &mut self,
        flags: u64,
        category: u64,
        mut found: impl FnMut(u64, u64),
    ) -> Result<(), PartitionError> {
        let base = self.range.base as u64;
        let end = base + self.range.len as u64;
        let mut cursor = base;
        while cursor < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                flags,
                start: cursor,
                end,
                vec: self.regions.as_mut_ptr() as u64,
                vec_len: self.regions.len() as u64,
                category_mask: category,
                // Only entries that map something: a hole (no page table,
                // or an empty entry) otherwise counts as written on recent
                // kernels, and a protecting scan fills it with markers.
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: category,
                ..Default::default()
            };
            // SAFETY: arg points at a buffer of vec_len page_regions that
            // lives across the call; the kernel writes at most vec_len.
            let count = unsafe { pagemap_scan(self.pagemap.as_raw_fd(), &mut arg) }
                .map_err(|e| err("PAGEMAP_SCAN", e.into()))?;
            for r in &self.regions[..count as usize] {
                found(r.start, r.end);
            }
            if arg.walk_end <= cursor {
                // The kernel made no progress: fail (the engine then aborts,
                // the source keeps running) rather than spin.
                return Err(err(
                    "PAGEMAP_SCAN",
                    io::Error::other(format!("scan made no progress at {cursor:#x}")),
                ));
            }
            cursor = arg.walk_end;
        }
        Ok(())
    }
}

impl DirtyLog for UffdWpLog {
    fn mechanism(&self) -> &'static str {
        MECHANISM
    }

    /// Write-protects what this process's page tables map, not the whole
    /// range: protecting it all would make the kernel build page tables
    /// and install markers for every never-touched page (8 MiB of tables,
    /// and a million-entry walk per harvest for 4 GiB, inside the
    /// suspension). One write-protecting scan does it: it treats every
    /// unprotected entry of an existing table as written and protects it,
    /// and skips ranges that have no table at all. A write to such a range
    /// later faults in a fresh, unprotected entry, which the next harvest
    /// reports (and protects). Pages reported here were written before
    /// `start` returned, which the contract leaves to the first copy.
    fn start(&mut self) -> Result<(), PartitionError> {
        self.scan(
            PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            PAGE_IS_WRITTEN,
            |_, _| {},
        )?;
        self.started = true;
        Ok(())
    }

    fn harvest(&mut self, out: &mut PageSet) -> Result<(), PartitionError> {
        if !self.started {
            return Ok(());
        }
        let range = self.range;
        // Same scan as `start`, reporting what it protects.
        self.scan(
            PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            PAGE_IS_WRITTEN,
            |start, end| out.insert_range(range.page_of(start)..range.page_of(end)),
        )
    }

    fn stop(&mut self) -> Result<(), PartitionError> {
        if self.started {
            self.write_protect(self.range.uffd_range(), false)?;
            self.started = false;
        }
        Ok(())
    }
}

impl Drop for UffdWpLog {
    fn drop(&mut self) {
        let mut range = self.range.uffd_range();
        // SAFETY: range is valid; unregistering a registered range has no
        // other effect. Closing the fd would unregister it as well.
        let _ = unsafe { uffdio_unregister(self.uffd.as_raw_fd(), &mut range) };
    }
}

// The page-size constant the kernel reports in is the same as ours.
const _: () = assert!(PAGE_SIZE == 4096);
