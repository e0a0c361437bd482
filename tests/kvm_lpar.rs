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
    // Only devices the VM has: no VGA memory or EFI store to carry (they
    // were 330 of 353 KB, most of the save's cost inside the suspension).
    assert!(state.vga.snapshot.is_none() && state.firmware.nvram.is_empty());
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
        // A vCPU reads the TSC, then prints its own count (which only it
        // changes, later in its loop): a heartbeat at the count of the move
        // may have read the TSC before the pause and been printed after it
        // (held by the console lock, or paused mid-line). Any later one
        // read it on the destination.
        assert!(
            hb.writes == floor || hb.tsc >= tsc_at_pause,
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

/// A flat multiboot v1 kernel at 1 MiB (flag bit 16) that has KVM write
/// above 4 GiB for it: a 32-bit guest without paging cannot store there
/// itself, but it can point kvmclock (MSR 0x4b564d01) at guest-physical
/// 4 GiB + 4 KiB, and KVM writes the pvclock record there (through the
/// guest's memory slot, so the dirty log sees it) at the next entry after
/// each MSR write, adding 2 to the record's version (its first u32):
///
/// ```text
/// loop:  mov ecx, 0x4b564d01 / mov eax, 0x1001 / mov edx, 1   ; 4 GiB + 0x1000, enable
///        wrmsr / inc dword [0x1000] / jmp loop
/// ```
fn high_writer() -> Vec<u8> {
    flat_kernel(&[
        0xb9, 0x01, 0x4d, 0x56, 0x4b, 0xb8, 0x01, 0x10, 0x00, 0x00, 0xba, 0x01, 0x00, 0x00, 0x00,
        0x0f, 0x30, 0xff, 0x05, 0x00, 0x10, 0x00, 0x00, 0xeb, 0xe7,
    ])
}

/// A flat multiboot v1 image (flag bit 16) loaded at 1 MiB whose `code`
/// starts at its entry, 0x100020.
fn flat_kernel(code: &[u8]) -> Vec<u8> {
    let (magic, flags) = (0x1BAD_B002u32, 0x0001_0000u32);
    let mut img = Vec::new();
    for w in [
        magic,
        flags,
        0u32.wrapping_sub(magic.wrapping_add(flags)),
        0x10_0000, // header_addr
        0x10_0000, // load_addr
        0,         // load_end_addr: the whole file
        0,         // bss_end_addr
        0x10_0020, // entry
    ] {
        img.extend_from_slice(&w.to_le_bytes());
    }
    img.extend_from_slice(code);
    img
}

fn u32_of(lpar: &KvmLpar, page: u64) -> u32 {
    let mut p = [0u8; PAGE_SIZE];
    lpar.read_page(page, &mut p).unwrap();
    u32::from_le_bytes(p[..4].try_into().unwrap())
}

#[test]
fn a_guest_write_above_4_gib_is_logged_at_its_page_index_and_read_there() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = LparConfig {
        memory_bytes: 5 << 30, // sparse: the stub touches a few pages
        ..config("high", 1, "stub")
    };
    let lpar = KvmLpar::create_with(dir.path(), &config, &high_writer(), "").unwrap();
    assert_eq!(lpar.regions().len(), 2, "RAM below the hole and at 4 GiB");
    assert_eq!(lpar.regions()[1].guest_base, kvm::HIGH_BASE);
    assert_eq!(lpar.size_bytes(), 5 << 30);
    let high = kvm::HOLE_START / PAGE_SIZE as u64 + 1; // guest-physical 4 GiB + 4 KiB
    let mut log = lpar.dirty_log().unwrap();
    log.start().unwrap();
    let mut set = lpar_mover::partition::PageSet::new();
    for round in 0..3 {
        let (before, version) = (u32_of(&lpar, 1), u32_of(&lpar, high));
        lpar.resume().unwrap();
        lpar.resume().unwrap();
        wait_for("the stub to count", Duration::from_secs(120), || {
            u32_of(&lpar, 1) > before + 100
        });
        lpar.pause().unwrap();
        assert!(!lpar.failed(), "the stub's vCPU stopped (round {round})");
        set.clear();
        log.harvest(&mut set).unwrap();
        assert!(
            set.contains(high),
            "round {round}: the write at 4 GiB + 4 KiB is not reported at page {high}: {set:?}"
        );
        assert!(set.contains(1), "round {round}: the counter page");
        assert!(
            set.iter().all(|p| p < 16 || p == high),
            "round {round}: only the pages the stub writes: {set:?}"
        );
        let now = u32_of(&lpar, high);
        assert!(
            now > version && now.is_multiple_of(2),
            "the engine reads KVM's pvclock record at page index {high}: version {now} after \
             {version}"
        );
        // Paused: nothing more, in either slot.
        set.clear();
        log.harvest(&mut set).unwrap();
        assert!(set.is_empty(), "round {round}: {set:?} while paused");
    }
    log.stop().unwrap();
}

#[test]
fn the_stall_across_a_resume_is_measured_on_the_guests_clock() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lpar = KvmLpar::create(
        dir.path(),
        &config("stall", 2, "hot:256KiB,content=zero,rate=2000"),
    )
    .unwrap();
    lpar.resume().unwrap();
    wait_for("both vCPUs writing", Duration::from_secs(120), || {
        lpar.mailbox()
            .is_some_and(|m| m.cpus.len() == 2 && m.cpus.iter().all(|c| c.writes > 10))
    });
    assert_eq!(
        lpar.resume_stall_ns(),
        None,
        "no resume since the writes began"
    );
    lpar.pause().unwrap();
    let paused = Duration::from_millis(300);
    std::thread::sleep(paused);
    lpar.resume().unwrap();
    wait_for("a stall figure", Duration::from_secs(120), || {
        lpar.resume_stall_ns().is_some()
    });
    let mut stall = lpar.resume_stall_ns().unwrap();
    // Once every writing vCPU has moved on, the figure is the largest gap.
    wait_for("each vCPU's first write", Duration::from_secs(120), || {
        stall = lpar.resume_stall_ns().unwrap();
        let m = lpar.mailbox().unwrap();
        m.cpus.iter().all(|c| c.writes > 20)
    });
    lpar.pause().unwrap();
    // The TSC runs on while a VM is paused in place, so the gap spans the
    // pause (and is measured by the guest, not by us).
    assert!(
        stall >= paused.as_nanos() as u64,
        "stall {stall} ns across a {paused:?} pause"
    );
    eprintln!(
        "stall across a {paused:?} pause: {:.3} ms",
        stall as f64 / 1e6
    );
}

/// Where the `IN` of [`lsr_reader`] ends: the `inc` after it.
const AFTER_IN: u64 = 0x10_0027;
/// What the VMM's COM1 answers for its line status register.
const LSR: u64 = 0x60;

/// Reads COM1's line status register into AL forever, counting at 0x1000:
///
/// ```text
///        mov dx, 0x3fd
/// loop:  xor eax, eax          ; 0x100024
///        in al, dx             ; 0x100026: an exit to the VMM each time
///        inc dword [0x1000]    ; 0x100027
///        jmp loop
/// ```
///
/// So at any instruction boundary with RIP at the `inc`, EAX holds the
/// VMM's answer.
fn lsr_reader() -> Vec<u8> {
    flat_kernel(&[
        0x66, 0xba, 0xfd, 0x03, 0x31, 0xc0, 0xec, 0xff, 0x05, 0x00, 0x10, 0x00, 0x00, 0xeb, 0xf5,
    ])
}

/// Pausing in the middle of an I/O exit completes it first, so the saved
/// state is between two instructions. With VMX/SVM, KVM moves RIP past an
/// `IN` before the exit and stores its data only on the next `KVM_RUN`:
/// state saved straight after the exit would carry on elsewhere with EAX
/// still 0. About one pause in ten of this guest lands between an exit
/// and the next `KVM_RUN` (measured here). Where KVM emulates every
/// instruction (this machine) RIP stays at the `IN` until completion, and
/// a saved state would run it again: harmless for this port, a repeated
/// byte for an `OUT`.
#[test]
fn a_pause_completes_the_io_exit_it_interrupts() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lpar =
        KvmLpar::create_with(dir.path(), &config("io", 1, "stub"), &lsr_reader(), "").unwrap();
    let mut after_in = 0;
    for round in 0..50 {
        lpar.resume().unwrap();
        let before = u32_of(&lpar, 1);
        wait_for("the stub to read", Duration::from_secs(120), || {
            u32_of(&lpar, 1) > before + 10
        });
        lpar.pause().unwrap();
        assert!(!lpar.failed());
        let regs = lpar.save_state().unwrap().vcpus[0].regs;
        if regs.rip == AFTER_IN {
            after_in += 1;
            assert_eq!(
                regs.gpr[0], LSR,
                "round {round}: RIP is past the IN but EAX does not hold its data"
            );
        }
    }
    eprintln!("{after_in} of 50 pauses landed right after the IN");
}
