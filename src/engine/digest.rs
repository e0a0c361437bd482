//! The image digest both ends keep while pages cross, so the destination
//! can prove it holds exactly what the source sent before it reports ready,
//! without hashing all of memory inside the suspension.
//!
//! Each page has a 64-bit content hash (XXH3); the image digest is the
//! wrapping sum over all pages of `mix(page number, hash) − mix(page
//! number, hash of a zero page)`, so a zero page adds nothing and an
//! all-zero image's digest is 0. Both ends start from an all-zero image (a
//! new destination LPAR is sparse; a source page never sent was never
//! written) and update one page in O(1) whenever it is sent or applied, so
//! at the pause the digest is already there, and the destination only
//! compares.
//!
//! Cost scales with populated memory, not with the LPAR's size: each page's
//! hash is kept XORed with the zero page's, in zero-filled memory the
//! kernel maps lazily, so starting costs nothing per page and only the
//! entries of pages sent (8 bytes each) become resident.
//!
//! What it proves: every page the source sent last arrived intact and in
//! order (no older copy won). What it cannot prove by itself: that the
//! dirty log reported every write. For that the source audits its own
//! memory after Commit, while its vCPUs stay paused and the guest already
//! runs on the destination: every populated page must still hash to what
//! the digest recorded for it ([`ImageDigest::audit`]); a page that does
//! not was written and never sent.

use crate::partition::{GuestMemory, PAGE_SIZE, Page, PartitionError};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use twox_hash::XxHash3_64;

pub fn page_hash(page: &Page) -> u64 {
    XxHash3_64::oneshot(page)
}

/// splitmix64 of the hash keyed by the page number, so equal contents at
/// different pages (and swapped pages) change the sum.
fn mix(page: u64, hash: u64) -> u64 {
    let mut z = hash ^ page.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub struct ImageDigest {
    /// Per page: its hash XOR the zero page's (0 for a zero page).
    hashes: Box<[AtomicU64]>,
    total: AtomicU64,
    zero: u64,
}

/// `pages` zeroed atomics, from zero-filled memory (mapped lazily by the
/// kernel for large sizes: untouched entries cost no RSS).
fn zeroed_atomics(pages: usize) -> Box<[AtomicU64]> {
    let layout = std::alloc::Layout::array::<AtomicU64>(pages).expect("digest size fits");
    if layout.size() == 0 {
        return Box::new([]);
    }
    // SAFETY: the layout has a non-zero size. An all-zero byte pattern is a
    // valid AtomicU64 (it has the same in-memory representation as u64), so
    // the zeroed allocation holds `pages` initialised values, and a Box of
    // the slice frees it with the same layout.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<AtomicU64>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, pages))
    }
}

impl ImageDigest {
    /// The digest of an all-zero image of `pages` pages (0, at no cost per
    /// page).
    pub fn zeroed(pages: u64) -> Self {
        ImageDigest {
            hashes: zeroed_atomics(pages as usize),
            total: AtomicU64::new(0),
            zero: page_hash(&[0u8; PAGE_SIZE]),
        }
    }

    /// The digest of an all-zero image the size of `memory`: where both
    /// ends start.
    pub fn blank_for(memory: &dyn GuestMemory) -> Self {
        Self::zeroed(memory.size_bytes() / PAGE_SIZE as u64)
    }

    /// Records that page `page` now holds content with hash `hash`. Callers
    /// never update one page from two threads at once (a round's pages are
    /// split between workers and rounds do not overlap).
    pub fn set(&self, page: u64, hash: u64) {
        let Some(slot) = self.hashes.get(page as usize) else {
            return;
        };
        let old = slot.swap(hash ^ self.zero, Ordering::Relaxed) ^ self.zero;
        self.total.fetch_add(
            mix(page, hash).wrapping_sub(mix(page, old)),
            Ordering::Relaxed,
        );
    }

    pub fn value(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    /// Compares every populated page of `memory` with the hash recorded
    /// for it (a page never recorded must be zero). Only meaningful while
    /// nothing writes `memory`: on the source after the pause.
    pub fn audit(&self, memory: &dyn GuestMemory) -> Result<MemoryAudit, PartitionError> {
        let started = std::time::Instant::now();
        let populated = memory.populated()?;
        let mut page_buf: Box<Page> = Box::new([0; PAGE_SIZE]);
        let mut audit = MemoryAudit::default();
        for page in populated.iter() {
            memory.read_page(page, &mut page_buf)?;
            let recorded = self
                .hashes
                .get(page as usize)
                .map_or(self.zero, |slot| slot.load(Ordering::Relaxed) ^ self.zero);
            audit.pages += 1;
            if page_hash(&page_buf) != recorded {
                audit.stale_pages += 1;
                if audit.first_stale.len() < MemoryAudit::LISTED {
                    audit.first_stale.push(page);
                }
            }
        }
        audit.ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(audit)
    }
}

/// The source's memory after the pause against the image it sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemoryAudit {
    /// Populated pages compared.
    pub pages: u64,
    /// Pages whose content is not the last copy sent: written, and not
    /// reported by the dirty log (0 on every correct migration).
    pub stale_pages: u64,
    /// The first [`MemoryAudit::LISTED`] of them, by page number.
    pub first_stale: Vec<u64>,
    /// How long the comparison took (after Commit, outside the suspension).
    pub ms: f64,
}

impl MemoryAudit {
    /// How many stale pages a report names.
    pub const LISTED: usize = 16;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn page(v: u8) -> Page {
        [v; PAGE_SIZE]
    }

    proptest! {
        /// Same final contents, any history and any order: same digest;
        /// any difference in the final contents: a different digest.
        #[test]
        fn digest_depends_only_on_final_contents(
            writes in proptest::collection::vec((0u64..64, any::<u8>()), 0..200),
            flip in 0u64..64,
        ) {
            let a = ImageDigest::zeroed(64);
            let b = ImageDigest::zeroed(64);
            let mut last = [0u8; 64];
            for &(p, v) in &writes {
                a.set(p, page_hash(&page(v)));
                last[p as usize] = v;
            }
            for (p, &v) in last.iter().enumerate().rev() {
                b.set(p as u64, page_hash(&page(v)));
            }
            prop_assert_eq!(a.value(), b.value());
            b.set(flip, page_hash(&page(last[flip as usize].wrapping_add(1))));
            prop_assert_ne!(a.value(), b.value());
        }
    }

    #[test]
    fn a_huge_blank_image_costs_nothing_per_page_and_zero_pages_add_nothing() {
        // A 1 TiB LPAR (2 GiB of entries) would take seconds and 2 GiB of
        // memory if each entry were touched at the start; lazily zeroed, it
        // takes neither (the test's RSS stays small).
        let resident = || {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
            pages * PAGE_SIZE as u64
        };
        let before = resident();
        let huge = ImageDigest::zeroed(1 << 28);
        assert_eq!(huge.value(), 0);
        let grown = resident().saturating_sub(before);
        assert!(grown < 1 << 30, "{grown} bytes resident for a blank digest");
        let far = (1 << 28) - 1;
        huge.set(far, page_hash(&page(7)));
        assert_ne!(huge.value(), 0);
        huge.set(far, page_hash(&page(0)));
        assert_eq!(huge.value(), 0, "a page written back to zero");
        // Out of range: ignored.
        huge.set(1 << 28, page_hash(&page(7)));
        assert_eq!(huge.value(), 0);
        assert_eq!(ImageDigest::zeroed(0).value(), 0);
    }

    #[test]
    fn the_audit_finds_exactly_the_pages_written_and_never_recorded() {
        use crate::partition::sim::SimLpar;
        let dir = tempfile::tempdir().unwrap();
        let config = crate::partition::LparConfig {
            memory_bytes: 1 << 20,
            program: "idle".into(),
            ..crate::partition::LparConfig::default_lpar()
        };
        let lpar = SimLpar::create(dir.path(), &config).unwrap();
        let digest = ImageDigest::blank_for(&lpar);
        for p in [3u64, 7, 200] {
            lpar.write_page(p, &page(p as u8)).unwrap();
            digest.set(p, page_hash(&page(p as u8)));
        }
        let clean = digest.audit(&lpar).unwrap();
        assert_eq!((clean.pages, clean.stale_pages), (3, 0), "{clean:?}");
        // Behind the digest's back: a recorded page changes, a new one
        // appears, and one is written with what it already held.
        lpar.write_page(7, &page(70)).unwrap();
        lpar.write_page(100, &page(1)).unwrap();
        lpar.write_page(3, &page(3)).unwrap();
        let found = digest.audit(&lpar).unwrap();
        assert_eq!(found.stale_pages, 2, "{found:?}");
        assert_eq!(found.first_stale, vec![7, 100]);
    }

    #[test]
    fn swapped_pages_change_the_digest() {
        let a = ImageDigest::zeroed(2);
        let b = ImageDigest::zeroed(2);
        a.set(0, page_hash(&page(1)));
        a.set(1, page_hash(&page(2)));
        b.set(0, page_hash(&page(2)));
        b.set(1, page_hash(&page(1)));
        assert_ne!(a.value(), b.value());
    }
}
