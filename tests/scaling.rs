//! A migration's cost grows with the memory the guest populated, not with
//! the LPAR's size (issue 14: a 16 GiB LPAR with 4 GiB populated). Two
//! LPARs 16× apart in size, each with the same 16 MiB written, migrate
//! live over loopback; the bytes sent are the populated pages plus the same
//! small overhead, and the time is within a small factor (a cost per page
//! of the LPAR would make the large one about 16× slower). Ratios within
//! one run, medians of three, so a loaded machine moves both alike.

mod common;

use common::{Root, migrate_between, sim_lpar};
use lpar_mover::engine::report::MigrationReport;
use lpar_mover::partition::Vcpus;
use std::time::Duration;

/// Each vCPU writes the 2048 pages of its 8 MiB share once, then halts.
const PROGRAM: &str = "hot:16MiB,content=random,writes=2048";
const POPULATED: u64 = 16 << 20;

fn migrate(memory: u64, i: usize) -> MigrationReport {
    let root = Root::new(&format!("scaling-{}-{i}", memory >> 20));
    let source = sim_lpar(&root, "source", memory, PROGRAM);
    let destination = sim_lpar(&root, "destination", memory, PROGRAM);
    source.resume().unwrap();
    common::wait_for("the guest to populate", Duration::from_secs(60), || {
        source.writes() >= 2 * 2048
    });
    let report = migrate_between(&source, &destination, 2, Duration::from_secs(120));
    assert!(report.verified);
    report
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn cost_follows_populated_memory_not_the_lpar_size() {
    let (small, large) = (256u64 << 20, 4u64 << 30);
    let mut reports = (Vec::new(), Vec::new());
    // Interleaved, so a burst of load hits both sizes.
    for i in 0..3 {
        reports.0.push(migrate(small, i));
        reports.1.push(migrate(large, i));
    }
    for r in reports.0.iter().chain(&reports.1) {
        let populated = r.populated_bytes;
        assert!(
            (POPULATED..POPULATED + (1 << 20)).contains(&populated),
            "{populated} bytes populated"
        );
        // The populated pages once, plus frames and the device state: far
        // below the LPAR.
        assert!(r.bytes_sent < 2 * POPULATED, "{} bytes sent", r.bytes_sent);
    }
    let bytes = |v: &Vec<MigrationReport>| median(v.iter().map(|r| r.bytes_sent as f64).collect());
    let total = |v: &Vec<MigrationReport>| median(v.iter().map(|r| r.total_ms).collect());
    let byte_ratio = bytes(&reports.1) / bytes(&reports.0);
    assert!(
        (0.8..1.25).contains(&byte_ratio),
        "bytes ratio {byte_ratio}"
    );
    let time_ratio = total(&reports.1) / total(&reports.0);
    eprintln!(
        "16× the LPAR, same populated memory: total {:.1} ms against {:.1} ms ({time_ratio:.2}×)",
        total(&reports.1),
        total(&reports.0)
    );
    assert!(
        time_ratio < 4.0,
        "total grew {time_ratio:.2}× with the LPAR size"
    );
}
