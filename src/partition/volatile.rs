//! Copies in and out of guest memory while the guest may be writing it.
//!
//! vCPUs (threads of the agent for `sim`, a VM for `kvm`) write guest memory
//! while the engine copies pages out of it. A plain `memcpy` of memory that
//! another thread writes is a data race in Rust's memory model, whatever the
//! dirty log does afterwards about torn pages. So every access to guest
//! memory that may overlap a guest write is volatile, as vm-memory does it:
//! aligned 8-byte words where the range allows, bytes otherwise. Each word is
//! read or written exactly once and the compiler assumes nothing about it.

/// Copies `out.len()` bytes of guest memory at `src` into `out`.
///
/// # Safety
/// `src .. src + out.len()` lies inside a live mapping of guest memory.
pub unsafe fn copy_from_guest(src: *const u8, out: &mut [u8]) {
    let words = src.align_offset(8) == 0 && out.len().is_multiple_of(8);
    if words {
        for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
            // SAFETY: src is 8-aligned and word i lies inside the range the
            // caller vouches for.
            let word = unsafe { src.cast::<u64>().add(i).read_volatile() };
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
    } else {
        for (i, byte) in out.iter_mut().enumerate() {
            // SAFETY: byte i lies inside the range the caller vouches for.
            *byte = unsafe { src.add(i).read_volatile() };
        }
    }
}

/// Copies `data` into guest memory at `dst`.
///
/// # Safety
/// `dst .. dst + data.len()` lies inside a live, writable mapping of guest
/// memory.
pub unsafe fn copy_to_guest(dst: *mut u8, data: &[u8]) {
    let words = dst.align_offset(8) == 0 && data.len().is_multiple_of(8);
    if words {
        for (i, chunk) in data.chunks_exact(8).enumerate() {
            let word = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk"));
            // SAFETY: dst is 8-aligned and word i lies inside the range the
            // caller vouches for.
            unsafe { dst.cast::<u64>().add(i).write_volatile(word) };
        }
    } else {
        for (i, &byte) in data.iter().enumerate() {
            // SAFETY: byte i lies inside the range the caller vouches for.
            unsafe { dst.add(i).write_volatile(byte) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Aligned or not, whole words or not: what goes in comes out, and
        /// nothing outside the range is touched.
        #[test]
        fn copies_round_trip_and_stay_in_range(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            offset in 0usize..16,
        ) {
            let mut memory = vec![0xa5u8; 512];
            let base = memory.as_mut_ptr();
            // SAFETY: offset + data.len() < 512.
            unsafe { copy_to_guest(base.add(offset), &data) };
            let mut back = vec![0u8; data.len()];
            // SAFETY: as above.
            unsafe { copy_from_guest(base.add(offset), &mut back) };
            prop_assert_eq!(&back, &data);
            prop_assert!(memory[..offset].iter().all(|&b| b == 0xa5));
            prop_assert!(memory[offset + data.len()..].iter().all(|&b| b == 0xa5));
        }
    }
}
