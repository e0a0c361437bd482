//! Finding and checking a multiboot v1 header in arbitrary bytes (a
//! kernel image given with `--kernel` is outside input): never panics, and
//! a flat load it accepts lies inside the file with the entry inside the
//! loaded bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::partition::guest::multiboot::{Header, SEARCH_LIMIT};

fuzz_target!(|image: &[u8]| {
    let Ok(header) = Header::find(image) else { return };
    assert!(header.offset + 12 <= image.len().min(SEARCH_LIMIT));
    assert_eq!(header.offset % 4, 0);
    if let Ok(load) = header.flat_load(image.len()) {
        assert!(load.file_start <= load.file_end && load.file_end <= image.len());
        let loaded_end = u64::from(load.load_addr) + (load.file_end - load.file_start) as u64;
        assert!(u64::from(load.entry) >= u64::from(load.load_addr));
        assert!(u64::from(load.entry) < loaded_end);
        assert!(u64::from(load.bss_end_addr) >= loaded_end);
    }
});
