//! An agent's `history.jsonl` (its own appends, records imported from a
//! peer, a torn last line after a crash, or a damaged file): reading it
//! never panics, returns only the asked LPAR's records, at most `keep` of
//! them, and `of` (merged, for one LPAR or all) holds one record per key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::agent::history::History;
use std::sync::OnceLock;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("lpar-mover-fuzz-history-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(dir().join("history.jsonl"), data).unwrap();
    let history = History::new(dir());
    for lpar in ["web1", "", "a"] {
        let Ok(records) = history.records_of(Some(lpar), 3) else {
            continue;
        };
        assert!(records.len() <= 3);
        assert!(records.iter().all(|r| r.lpar == lpar));
        let merged = history.of(Some(lpar)).expect("read once, read again");
        let mut keys: Vec<&str> = merged.iter().map(|r| r.key.as_str()).collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "one record per key");
        assert!(merged.iter().all(|r| r.lpar == lpar));
    }
    // Every LPAR's: still one record per key, and each asked-for LPAR's
    // records are among them.
    if let Ok(all) = history.of(None) {
        let mut keys: Vec<&str> = all.iter().map(|r| r.key.as_str()).collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "one record per key");
    }
});
