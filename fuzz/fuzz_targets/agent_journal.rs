//! The recovery journal parser: a torn or hostile journal file (or a peer's
//! `journal-read` reply) is an error or a shorter summary, never a panic.
//! Cutting a journal anywhere (a crash mid-append) never makes a migration
//! that had not reached its commit record (source 0x4080, destination
//! 0x5080) look committed, and only ever removes records from the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::agent::journal::{parse, whole_records};
use lpar_mover::control::{JournalSummary as Summary, Side};
use lpar_mover::engine::stage::Stage;

/// What recovery concludes from this one journal.
fn committed(s: &Summary) -> Option<bool> {
    match s.side {
        Side::Source => Summary::committed(Some(s), None),
        Side::Destination => Summary::committed(None, Some(s)),
    }
}

fn commit_stage(s: &Summary) -> Stage {
    match s.side {
        Side::Source => Stage::SrcSwitchingOver,
        Side::Destination => Stage::DstResuming,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz");
    let all = parse(text, path).ok();
    // What a reopened journal keeps reads the same as the whole file.
    let n = whole_records(data);
    let cut = std::str::from_utf8(&data[..n]).expect("whole records end on a newline");
    assert_eq!(parse(cut, path).ok(), all);

    // Every cut: at each line end and one byte either side of it.
    let mut cuts: Vec<usize> = vec![0, data.len()];
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            cuts.extend([i, i + 1, (i + 2).min(data.len())]);
        }
    }
    for at in cuts {
        let Ok(prefix) = std::str::from_utf8(&data[..at]) else {
            continue;
        };
        let Ok(short) = parse(prefix, path) else {
            continue;
        };
        let full = all.as_ref().expect("a journal whose prefix parses parses");
        assert_eq!((&short.lpar, short.side, short.migration), (&full.lpar, full.side, full.migration));
        assert!(full.stages.starts_with(&short.stages), "a cut changed a stage");
        assert!(short.outcome.is_none() || short.outcome == full.outcome);
        if committed(&short) == Some(true) {
            assert!(
                full.reached(commit_stage(full)),
                "cut at {at}: looks committed, but the journal never reached {:?}",
                commit_stage(full)
            );
        }
    }
});
