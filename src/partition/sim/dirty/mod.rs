//! Dirty-page tracking for the `sim` backend, by the kernel.
//!
//! Two mechanisms, chosen at start-up:
//! 1. `uffd-wp`: userfaultfd async write-protect + `PAGEMAP_SCAN` (Linux 6.7+);
//!    no fault ever reaches user space, a harvest is one ioctl per 4096 runs.
//! 2. `mprotect`: write-protect + a `SIGSEGV` handler, for older kernels;
//!    every first write to a page costs a signal.
//!
//! `auto` probes `uffd-wp` once per process on a scratch shared mapping (a
//! real write must be reported) and falls back to `mprotect` with a log line
//! saying why.

mod mprotect;
mod uapi;
mod uffd;

pub use mprotect::MprotectLog;
pub use uffd::UffdWpLog;

use crate::partition::{DirtyLog, PAGE_SIZE, PageSet, PartitionError};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// A page-aligned host mapping of guest memory to track.
///
/// Contract: the mapping stays valid for as long as any log built on it.
#[derive(Clone, Copy, Debug)]
pub struct TrackedRange {
    /// Start of the mapping.
    pub base: *mut u8,
    /// Length of the mapping, bytes.
    pub len: usize,
    /// Guest page number of the first page of the mapping.
    pub first_page: u64,
}

// SAFETY: a TrackedRange is an address range, not a reference; the logs only
// pass it to the kernel (ioctl, mprotect) or compare addresses with it.
unsafe impl Send for TrackedRange {}

impl TrackedRange {
    fn uffd_range(&self) -> uapi::UffdioRange {
        uapi::UffdioRange {
            start: self.base as u64,
            len: self.len as u64,
        }
    }

    fn page_of(&self, addr: u64) -> u64 {
        self.first_page + (addr - self.base as u64) / PAGE_SIZE as u64
    }
}

/// Which tracker to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TrackerKind {
    /// `uffd-wp` when this kernel supports it, else `mprotect`.
    #[default]
    Auto,
    /// userfaultfd write-protection, harvested with `PAGEMAP_SCAN` (Linux 6.7 and later).
    UffdWp,
    /// `mprotect` and a SIGSEGV handler: works everywhere, costs a fault per first write.
    Mprotect,
}

impl FromStr for TrackerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(TrackerKind::Auto),
            "uffd-wp" | "uffd" => Ok(TrackerKind::UffdWp),
            "mprotect" => Ok(TrackerKind::Mprotect),
            other => Err(format!(
                "unknown dirty tracker '{other}': use auto, uffd-wp or mprotect"
            )),
        }
    }
}

impl fmt::Display for TrackerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrackerKind::Auto => "auto",
            TrackerKind::UffdWp => "uffd-wp",
            TrackerKind::Mprotect => "mprotect",
        })
    }
}

/// Resolves `Auto` to the mechanism that works here (probed once, logged).
pub fn resolve(kind: TrackerKind) -> TrackerKind {
    static PROBED: OnceLock<TrackerKind> = OnceLock::new();
    match kind {
        TrackerKind::Auto => *PROBED.get_or_init(|| match probe_uffd_wp() {
            Ok(()) => {
                log::info!(
                    "dirty tracker: uffd-wp (userfaultfd async write-protect + PAGEMAP_SCAN)"
                );
                TrackerKind::UffdWp
            }
            Err(why) => {
                log::warn!(
                    "dirty tracker: uffd-wp unavailable ({why}); falling back to mprotect + SIGSEGV, \
                     which costs a signal per first write"
                );
                TrackerKind::Mprotect
            }
        }),
        explicit => explicit,
    }
}

/// Opens a dirty log of `kind` (resolving `Auto`) over `range`.
pub fn open(kind: TrackerKind, range: TrackedRange) -> Result<Box<dyn DirtyLog>, PartitionError> {
    Ok(match resolve(kind) {
        TrackerKind::UffdWp => Box::new(UffdWpLog::new(range)?),
        _ => Box::new(MprotectLog::new(range)?),
    })
}

/// Checks that uffd-wp really reports a write on a shared mapping here.
fn probe_uffd_wp() -> Result<(), String> {
    const PAGES: usize = 4;
    // Guest memory is shared memory (tmpfs); so is a memfd.
    let fd =
        nix::sys::memfd::memfd_create(c"lpar-mover-probe", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| format!("memfd_create: {e}"))?;
    let file = std::fs::File::from(fd);
    file.set_len((PAGES * PAGE_SIZE) as u64)
        .map_err(|e| e.to_string())?;
    // SAFETY: the memfd is ours alone; nobody else maps it.
    let mut shared = unsafe { memmap2::MmapMut::map_mut(&file) }.map_err(|e| e.to_string())?;
    shared[0] = 1; // populated page, plus three unpopulated ones
    let range = TrackedRange {
        base: shared.as_mut_ptr(),
        len: PAGES * PAGE_SIZE,
        first_page: 0,
    };
    let mut log = UffdWpLog::new(range).map_err(|e| e.to_string())?;
    log.start().map_err(|e| e.to_string())?;
    let mut seen = PageSet::new();
    log.harvest(&mut seen).map_err(|e| e.to_string())?;
    if !seen.is_empty() {
        return Err(format!("reported {} pages before any write", seen.len()));
    }
    shared[2 * PAGE_SIZE] = 7;
    log.harvest(&mut seen).map_err(|e| e.to_string())?;
    if seen.iter().collect::<Vec<_>>() != [2] {
        return Err(format!(
            "a write to page 2 was reported as {:?}",
            seen.ranges()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_uffd_wp_probe_passes_on_a_6_7_kernel_or_says_why() {
        match super::probe_uffd_wp() {
            Ok(()) => {}
            Err(why) if why.contains("UFFDIO_API") || why.contains("userfaultfd") => {
                crate::skip::skip(
                    "partition::sim::dirty::tests::the_uffd_wp_probe_passes_on_a_6_7_kernel_or_says_why",
                    &format!("uffd-wp unavailable here: {why}"),
                )
            }
            Err(why) => panic!("uffd-wp probe failed: {why}"),
        }
    }
}
