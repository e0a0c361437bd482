//! The KVM dirty log: `KVM_MEM_LOG_DIRTY_PAGES` on the guest-memory slots
//! ([`super::memory::slots`]: low RAM, and RAM at 4 GiB when the guest has
//! more than 3 GiB) with manual protection
//! (`KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`), so a harvest is, slot by slot:
//!
//! 1. `KVM_GET_DIRTY_LOG` into one bitmap kept across harvests, at the
//!    word of the slot's first page index (its file offset / 4 KiB, a
//!    multiple of 64): the bits of the pages written since they were last
//!    re-protected (the kernel leaves them writable);
//! 2. `KVM_CLEAR_DIRTY_LOG` with exactly those bits, only over the span
//!    from the first to the last non-zero word (nothing when none): they
//!    are re-protected;
//!
//! then 3. the VMM's own writes ([`GuestRam`]) are ORed in and 4. the
//! union is reported, as page indexes (file offset / 4 KiB).
//!
//! A guest write between 1 and 2 lands on a page this harvest reports (and
//! the engine reads it after the harvest returns); one after 2 faults and
//! sets its bit for the next harvest: none is lost, and a harvest re-arms
//! only what it reports.

use super::memory::GuestRam;
use super::sys;
use crate::partition::{DirtyLog, PageSet, PartitionError};
use kvm_bindings::{KVM_MEM_LOG_DIRTY_PAGES, kvm_userspace_memory_region};
use kvm_ioctls::VmFd;
use std::sync::Arc;

/// (Re-)registers every slot over `ram`, with or without dirty logging.
pub fn set_slots(vm: &VmFd, ram: &GuestRam, log: bool) -> Result<(), PartitionError> {
    for s in ram.slots() {
        let region = kvm_userspace_memory_region {
            slot: s.id,
            flags: if log { KVM_MEM_LOG_DIRTY_PAGES } else { 0 },
            guest_phys_addr: s.guest_phys,
            memory_size: s.len,
            userspace_addr: ram.host_addr() + s.file_offset,
        };
        // SAFETY: the region is part of `ram`'s live mapping (the slots
        // tile it), which outlives the VM (both are held by the LPAR, the
        // VM dropped first).
        unsafe { vm.set_user_memory_region(region) }.map_err(|e| PartitionError::DirtyLog {
            mechanism: "kvm",
            call: "KVM_SET_USER_MEMORY_REGION",
            source: e.into(),
        })?;
    }
    Ok(())
}

pub(crate) struct KvmDirtyLog {
    vm: Arc<VmFd>,
    ram: Arc<GuestRam>,
    started: bool,
    /// One bit per page of guest memory, reused by every harvest.
    bitmap: Vec<u64>,
}

impl KvmDirtyLog {
    pub fn new(vm: Arc<VmFd>, ram: Arc<GuestRam>) -> Self {
        let words = (ram.pages() as usize).div_ceil(64);
        KvmDirtyLog {
            vm,
            ram,
            started: false,
            bitmap: vec![0; words],
        }
    }
}

fn err(call: &'static str, source: std::io::Error) -> PartitionError {
    PartitionError::DirtyLog {
        mechanism: "kvm",
        call,
        source,
    }
}

/// Adds the set bits of `bitmap` (bit `i` = page `i`) to `out` as ranges,
/// a run of equal bits at a time (`trailing_zeros`), not bit by bit: a
/// 4 GiB bitmap with every 75th page set has ~14,000 non-zero words.
pub fn bitmap_to_pages(bitmap: &[u64], out: &mut PageSet) {
    let mut run: Option<u64> = None;
    for (i, &w) in bitmap.iter().enumerate() {
        let base = i as u64 * 64;
        match w {
            0 => {
                if let Some(start) = run.take() {
                    out.insert_range(start..base);
                }
            }
            u64::MAX => {
                run.get_or_insert(base);
            }
            _ => {
                let mut b = 0u32;
                while b < 64 {
                    let rest = w >> b; // bits above 63 - b read as 0
                    if rest & 1 == 1 {
                        run.get_or_insert(base + u64::from(b));
                        b += (!rest).trailing_zeros();
                    } else {
                        if let Some(start) = run.take() {
                            out.insert_range(start..base + u64::from(b));
                        }
                        b += if rest == 0 {
                            64 - b
                        } else {
                            rest.trailing_zeros()
                        };
                    }
                }
            }
        }
    }
    if let Some(start) = run {
        out.insert_range(start..bitmap.len() as u64 * 64);
    }
}

impl DirtyLog for KvmDirtyLog {
    fn mechanism(&self) -> &'static str {
        "kvm"
    }

    fn start(&mut self) -> Result<(), PartitionError> {
        sys::enable_manual_protect(&self.vm).or_else(|e| {
            // Already enabled on this VM (a second log): fine.
            if e.raw_os_error() == Some(libc::EINVAL) {
                Ok(())
            } else {
                Err(err("KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2)", e))
            }
        })?;
        set_slots(&self.vm, &self.ram, true)?;
        // Writes the VMM made before tracking started are not "since start".
        self.ram.take_vmm_dirty(&mut self.bitmap);
        self.started = true;
        Ok(())
    }

    fn harvest(&mut self, out: &mut PageSet) -> Result<(), PartitionError> {
        if !self.started {
            return Ok(());
        }
        for slot in self.ram.slots() {
            let first = (slot.first_page() / 64) as usize;
            let words = &mut self.bitmap[first..first + (slot.pages() as usize).div_ceil(64)];
            sys::get_dirty_log(&self.vm, slot.id, slot.pages(), words)
                .map_err(|e| err("KVM_GET_DIRTY_LOG", e))?;
            // Re-arm exactly what this harvest reports, over the span of
            // non-zero words only (the kernel walks every word it is given).
            let Some(lo) = words.iter().position(|&w| w != 0) else {
                continue;
            };
            let hi = words.iter().rposition(|&w| w != 0).unwrap_or(lo) + 1;
            let pages = ((hi as u64) * 64).min(slot.pages()) - lo as u64 * 64;
            sys::clear_dirty_log(
                &self.vm,
                slot.id,
                lo as u64 * 64,
                pages as u32,
                &mut words[lo..hi],
            )
            .map_err(|e| err("KVM_CLEAR_DIRTY_LOG", e))?;
        }
        self.ram.take_vmm_dirty(&mut self.bitmap);
        bitmap_to_pages(&self.bitmap, out);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PartitionError> {
        if self.started {
            set_slots(&self.vm, &self.ram, false)?;
            self.started = false;
        }
        Ok(())
    }
}

impl Drop for KvmDirtyLog {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bitmap_to_pages_reports_exactly_the_set_bits(
            words in proptest::collection::vec(
                prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), Just(1u64 << 63), Just(1u64)],
                0..12,
            )
        ) {
            let mut set = PageSet::new();
            bitmap_to_pages(&words, &mut set);
            let want: Vec<u64> = (0..words.len() as u64 * 64)
                .filter(|&p| words[(p / 64) as usize] & (1 << (p % 64)) != 0)
                .collect();
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn bitmap_runs_become_ranges() {
        let mut bm = vec![0u64; 4];
        bm[0] = 0b1011;
        bm[1] = u64::MAX;
        bm[2] = 1;
        bm[3] = 1 << 63;
        let mut set = PageSet::new();
        bitmap_to_pages(&bm, &mut set);
        let pages: Vec<u64> = set.iter().collect();
        let mut want = vec![0, 1, 3];
        want.extend(64..129);
        want.push(255);
        assert_eq!(pages, want);
    }
}
