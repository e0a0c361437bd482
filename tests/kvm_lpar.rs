//! The KVM backend booting the built-in guest: heartbeats on COM1, the
//! write count and TSC carried across a save/restore onto a second VM.
//! Skips (saying why) where /dev/kvm cannot be opened; CI has it.

use lpar_mover::guest::console;
use lpar_mover::partition::kvm::{self, KvmLpar};
use lpar_mover::partition::{DeviceModel, GuestMemory, LparConfig, PAGE_SIZE, Partition, Vcpus};
use std::time::{Duration, Instant};

fn skip() -> bool {
    if let Some(why) = kvm::unavailable() {
        eprintln!("SKIP: KVM tests need /dev/kvm ({why})");
        return true;
    }
    false
}

fn config(name: &str, vcpus: u32, program: &str) -> LparConfig {
    LparConfig {
        name: name.into(),
        vcpus,
        memory_bytes: 16 << 20,
        program: program.into(),
        ..LparConfig::default_lpar()
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_built_in_guest_boots_and_heartbeats_on_com1() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lpar = KvmLpar::create(
        dir.path(),
        &config("boot", 2, "hot:256KiB,content=zero,rate=500"),
    )
    .unwrap();
    lpar.resume().unwrap();
    wait_for("two heartbeats", Duration::from_secs(120), || {
        console::heartbeats(&lpar.console()).len() >= 2
    });
    lpar.pause().unwrap();
    let log = lpar.console();
    assert!(log.contains("lpar-guest boot cpus=2"), "{log}");
    assert!(!lpar.failed());
    assert!(lpar.guest_writes().unwrap() > 0, "{log}");
}
