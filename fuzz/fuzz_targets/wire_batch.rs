//! Page-batch parsing over arbitrary payloads, then decoding every page.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::wire::{PAGE_SIZE, PageBatch};

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = PageBatch::parse(data) {
        let mut page = [0u8; PAGE_SIZE];
        let mut n = 0;
        for p in batch.pages() {
            let _ = p.decode_into(&mut page);
            n += 1;
        }
        assert_eq!(n, batch.len());
    }
});
