//! A destination whose LPAR memory is allocated on demand can run out of
//! room halfway through a migration. Writing a received page into a full
//! file system raises SIGBUS, which would kill the destination agent and
//! every guest it runs; the receive path populates each batch's pages
//! first, so the migration fails with the manual's "not enough memory"
//! message instead, the destination holds nothing it cannot keep, and the
//! guest runs on at the source.

mod common;

use common::{Root, SmallTmpfs, try_migrate_between};
use lpar_mover::partition::sim::SimLpar;
use lpar_mover::partition::{LparConfig, MemoryBacking, PartitionError, Vcpus};
use std::sync::Arc;
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn lpar(root: &std::path::Path, name: &str, backing: MemoryBacking, program: &str) -> SimLpar {
    let config = LparConfig {
        name: name.into(),
        number: 1,
        vcpus: 2,
        memory_bytes: 64 * MIB,
        program: program.into(),
        memory_backing: backing,
        ..LparConfig::default_lpar()
    };
    SimLpar::create(root, &config).unwrap()
}

#[test]
fn a_destination_that_runs_out_of_room_fails_the_migration_and_the_guest_runs_on() {
    let root = Root::new("full-destination");
    // 32 MiB of guest data, into a destination file system of 8 MiB.
    let program = "hot:32MiB,content=random,rate=400000";
    let small = match SmallTmpfs::mount(&root.0.join("small"), "8m") {
        Ok(m) => m,
        Err(reason) => lpar_mover::skip!(reason),
    };
    let source = Arc::new(lpar(&root.0, "source", MemoryBacking::Reserved, program));
    let destination = Arc::new(lpar(
        &small.0,
        "destination",
        MemoryBacking::OnDemand,
        program,
    ));
    source.resume().unwrap();
    common::wait_for(
        "the guest to populate its set",
        Duration::from_secs(30),
        || source.writes() >= 32 * MIB / 4096,
    );

    let (sent, received) = try_migrate_between(&source, &destination, 2, Duration::from_secs(60));

    // Still here: this process did not die of SIGBUS. The destination
    // says why, as the manual words it, and what to do.
    let error = received.expect_err("8 MiB cannot hold 32 MiB of guest data");
    let emg = error
        .emg(lpar_mover::emg::Module::MoverDestination)
        .to_string();
    assert!(emg.contains("not enough memory"), "{emg}");
    assert!(emg.contains(&small.0.display().to_string()), "{emg}");
    assert!(
        matches!(
            error,
            lpar_mover::engine::EngineError::Partition(PartitionError::NoRoom { .. })
        ),
        "{error:?}"
    );
    assert!(sent.is_err(), "the source cannot have committed");

    // Exactly one owner: the guest runs on at the source.
    assert!(source.is_running(), "the source guest must run on");
    let w = source.writes();
    common::wait_for("the source guest to write", Duration::from_secs(10), || {
        source.writes() > w
    });
    assert!(!destination.is_running());
}
