//! The KVM backend booting the built-in guest: heartbeats on COM1, the
//! write count and TSC carried across a save/restore onto a second VM.
//! Skips (saying why) where /dev/kvm cannot be opened; CI has it.

use lpar_mover::partition::guest::console;
use lpar_mover::partition::kvm::{self, KvmLpar};
use lpar_mover::partition::{DeviceModel, GuestMemory, LparConfig, PAGE_SIZE, Partition, Vcpus};
use std::time::{Duration, Instant};

fn skip() -> bool {
    if let Some(why) = kvm::unavailable() {
        lpar_mover::skip::skip("kvm_lpar", &format!("KVM tests need /dev/kvm ({why})"));
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

/// Copies `src`'s memory and device state into `dst` (both paused).
fn migrate(src: &KvmLpar, dst: &KvmLpar) -> lpar_mover::state::DeviceState {
    let state = src.save_state().unwrap();
    let mut page = [0u8; PAGE_SIZE];
    for p in 0..src.size_bytes() / PAGE_SIZE as u64 {
        src.read_page(p, &mut page).unwrap();
        dst.write_page(p, &page).unwrap();
    }
    // Through the wire format, as a real move carries it.
    let state = lpar_mover::state::DeviceState::decode(&state.encode().unwrap()).unwrap();
    dst.restore_state(&state).unwrap();
    state
}

#[test]
fn a_guest_saved_on_one_vm_continues_on_another_without_gap_or_time_jump() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = "hot:256KiB,content=zero,rate=2000";
    let src = KvmLpar::create(dir.path(), &config("src", 2, program)).unwrap();
    let dst = KvmLpar::create(dir.path(), &config("dst", 2, program)).unwrap();
    src.resume().unwrap();
    wait_for("a heartbeat with writes", Duration::from_secs(120), || {
        src.guest_writes().unwrap() > 100 && !console::heartbeats(&src.console()).is_empty()
    });
    src.pause().unwrap();
    let paused_at = Instant::now();
    let before = src.mailbox().expect("the guest's mailbox");
    let state = migrate(&src, &dst);
    assert_eq!(
        dst.digest().unwrap(),
        src.digest().unwrap(),
        "memory digests"
    );
    assert_eq!(dst.guest_writes(), Some(before.total_writes));
    let tsc_at_pause = state.vcpus[0].tsc;
    assert!(state.tsc_khz > 0, "the TSC frequency is carried");
    drop(src); // the source VM is gone, as after a move
    dst.resume().unwrap();
    wait_for(
        "writes on the destination",
        Duration::from_secs(120),
        || dst.guest_writes().unwrap() > before.total_writes + 50,
    );
    wait_for(
        "a heartbeat on the destination",
        Duration::from_secs(120),
        || !console::heartbeats(&dst.console()).is_empty(),
    );
    dst.pause().unwrap();
    let elapsed = paused_at.elapsed();
    let after_state = dst.save_state().unwrap();
    let after = dst.mailbox().unwrap();
    let log = dst.console();
    assert!(
        !log.contains("lpar-guest boot"),
        "the destination did not boot again: {log}"
    );
    // Every vCPU carries on from its own count: no gap, no repeat.
    for (b, a) in before.cpus.iter().zip(&after.cpus) {
        assert!(
            a.writes > b.writes,
            "vCPU {} wrote nothing after the move",
            b.index
        );
        assert_eq!(a.start_page, b.start_page);
    }
    // The total is the sum of the per-vCPU counts (no lost or doubled
    // write), up to one write per vCPU paused between its own count and
    // the shared total.
    let sum: u64 = after.cpus.iter().map(|c| c.writes).sum();
    assert!(
        sum.abs_diff(after.total_writes) <= after.cpus.len() as u64,
        "total {} against per-vCPU sum {sum}",
        after.total_writes
    );
    for hb in console::heartbeats(&log) {
        let floor = before.cpus[hb.cpu as usize].writes;
        assert!(
            hb.writes >= floor,
            "heartbeat {hb:?} is below the count at the move ({floor})"
        );
        assert!(
            hb.tsc >= tsc_at_pause,
            "the TSC went backwards: {hb:?} < {tsc_at_pause}"
        );
    }
    // The guest's TSC moved by no more than the wall time since the
    // source paused (the suspension plus the destination's run) + 1 ms.
    let tsc_now = after_state.vcpus[0].tsc;
    let khz = u128::from(state.tsc_khz);
    let allowed = (elapsed.as_micros() + 1000) * khz / 1000;
    let moved = u128::from(tsc_now - tsc_at_pause);
    assert!(
        moved <= allowed,
        "TSC moved {moved} ticks in {elapsed:?} (allowed {allowed})"
    );
    assert!(!dst.failed());
}
