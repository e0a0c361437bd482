//! The image digest both ends keep while pages cross, so the destination
//! can prove it holds exactly what the source sent before it reports ready,
//! without hashing all of memory inside the suspension.
//!
//! Each page has a 64-bit content hash (XXH3); the image digest is the
//! wrapping sum over all pages of `mix(page number, hash)`. Both ends start
//! from an all-zero image (a new destination LPAR is sparse; a source page
//! never sent was never written) and update one page in O(1) whenever it is
//! sent or applied, so at the pause the digest is already there.
//!
//! What it proves: every page the source sent last arrived intact and in
//! order (no older copy won). What it cannot prove: that the dirty log
//! reported every write; the trackers' own tests carry that.

use crate::partition::{GuestMemory, PAGE_SIZE, Page};
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
    hashes: Box<[AtomicU64]>,
    total: AtomicU64,
}

impl ImageDigest {
    /// The digest of an all-zero image of `pages` pages.
    pub fn zeroed(pages: u64) -> Self {
        let zero = page_hash(&[0u8; PAGE_SIZE]);
        let total = (0..pages).fold(0u64, |sum, p| sum.wrapping_add(mix(p, zero)));
        ImageDigest {
            hashes: (0..pages).map(|_| AtomicU64::new(zero)).collect(),
            total: AtomicU64::new(total),
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
        let old = slot.swap(hash, Ordering::Relaxed);
        self.total.fetch_add(
            mix(page, hash).wrapping_sub(mix(page, old)),
            Ordering::Relaxed,
        );
    }

    pub fn value(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }
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
