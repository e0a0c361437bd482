//! The source audits its memory after Commit: a migration whose dirty log
//! reported every write audits clean, and one whose final harvest lost a
//! page (the engine's fault hook, standing in for a tracker that missed a
//! write) is reported not verified, naming the page, although the image
//! digests of both ends agreed. Its own test binary: the hook is global.

mod common;

use common::{Root, migrate_between, sim_lpar};
use lpar_mover::engine::report::MigrationReport;
use lpar_mover::partition::Vcpus;
use std::time::Duration;

/// Fast enough that the pause always finds dirty pages.
const PROGRAM: &str = "hot:4MiB,content=random,rate=200000";

/// Migrates a running guest.
fn migrate(tag: &str, forget: bool) -> MigrationReport {
    let root = Root::new(tag);
    let source = sim_lpar(&root, "source", 64 << 20, PROGRAM);
    let destination = sim_lpar(&root, "destination", 64 << 20, PROGRAM);
    source.resume().unwrap();
    common::wait_for("the guest to write", Duration::from_secs(30), || {
        source.writes() >= 4_000
    });
    if forget {
        lpar_mover::engine::faults::forget_a_dirty_page();
    }
    migrate_between(&source, &destination, 2, Duration::from_secs(60))
}

#[test]
fn a_write_the_dirty_log_missed_is_found_after_commit_and_named() {
    let clean = migrate("audit-clean", false);
    let audit = clean.memory_audit.as_ref().expect("the source audits");
    assert!(clean.verified, "{audit:?}");
    assert_eq!(audit.stale_pages, 0, "{audit:?}");
    assert!(
        audit.pages >= 1024,
        "the 4 MiB working set is audited: {audit:?}"
    );

    let lost = migrate("audit-lost", true);
    let dropped = lpar_mover::engine::faults::forgotten_page().expect("the hook dropped a page");
    let audit = lost.memory_audit.as_ref().expect("the source audits");
    assert!(!lost.verified, "a lost page must not be called verified");
    assert_eq!(audit.stale_pages, 1, "{audit:?}");
    assert_eq!(audit.first_stale, vec![dropped]);
}
