//! The `sim` backend as an operator would see it: memory that costs nothing
//! until touched, pause that really stops writes, guest programs that carry
//! on bit-exactly elsewhere, and an LPAR that survives SIGKILL of its host.

mod common;

use common::{Root, wait_for};
use lpar_mover::partition::sim::SimLpar;
use lpar_mover::partition::sim::shm::{LparFiles, RunState};
use lpar_mover::partition::{DeviceModel, GuestMemory, LparConfig, PAGE_SIZE, Vcpus};
use lpar_mover::state::DeviceState;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

fn config(name: &str, memory: u64, vcpus: u32, program: &str) -> LparConfig {
    LparConfig {
        name: name.into(),
        number: 1,
        vcpus,
        memory_bytes: memory,
        program: program.into(),
        ..LparConfig::default_lpar()
    }
}

#[test]
fn untouched_lpars_commit_no_memory() {
    let root = Root::new("untouched");
    for (name, size) in [("one-gib", 1u64 << 30), ("four-gib", 4u64 << 30)] {
        let lpar = SimLpar::create(&root.0, &config(name, size, 2, "idle")).unwrap();
        lpar.resume().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let meta = std::fs::metadata(lpar.dir().join("memory")).unwrap();
        assert_eq!(meta.len(), size);
        assert_eq!(meta.blocks(), 0, "{name}: an idle LPAR allocated memory");
        assert!(lpar.populated().unwrap().is_empty());
        lpar.destroy().unwrap();
    }
}

#[test]
fn populated_reports_exactly_the_touched_pages() {
    let root = Root::new("populated");
    let lpar = SimLpar::create(&root.0, &config("p", 64 << 20, 1, "idle")).unwrap();
    let page = [7u8; PAGE_SIZE];
    for p in [3u64, 4, 5, 1000, 16383] {
        lpar.write_page(p, &page).unwrap();
    }
    let populated = lpar.populated().unwrap();
    assert_eq!(populated.ranges(), &[3..6, 1000..1001, 16383..16384]);
    assert!(
        lpar.write_page(16384, &page)
            .unwrap_err()
            .to_string()
            .contains("outside guest memory")
    );
}

#[test]
fn paused_lpar_memory_does_not_change() {
    let root = Root::new("quiesce");
    let lpar = SimLpar::create(&root.0, &config("q", 64 << 20, 2, "hot:8MiB")).unwrap();
    lpar.resume().unwrap();
    wait_for("writes", Duration::from_secs(10), || lpar.writes() > 5_000);
    lpar.pause().unwrap();
    let writes = lpar.writes();
    let first = lpar.digest().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(lpar.digest().unwrap(), first, "memory changed while paused");
    assert_eq!(
        lpar.writes(),
        writes,
        "a vCPU committed a write while paused"
    );
    assert_eq!(lpar.run_state(), RunState::Paused);

    lpar.resume().unwrap();
    wait_for("writes after resume", Duration::from_secs(10), || {
        lpar.writes() > writes + 1000
    });
    lpar.pause().unwrap();
    assert_ne!(
        lpar.digest().unwrap(),
        first,
        "the program did not run after resume"
    );
    // Paused, the digest is the hash of the guest memory as the file holds it.
    let file = std::fs::read(lpar.dir().join("memory")).unwrap();
    assert_eq!(lpar.digest().unwrap(), *blake3::hash(&file).as_bytes());
    lpar.resume().unwrap();
    assert!(
        lpar.digest()
            .unwrap_err()
            .to_string()
            .contains("needs the LPAR's vCPUs paused")
    );
}

/// Runs `lpar` until every vCPU has made its last write, then pauses it.
fn run_to_completion(lpar: &SimLpar, total_writes: u64) {
    lpar.resume().unwrap();
    wait_for("the program to halt", Duration::from_secs(120), || {
        lpar.writes() == total_writes
    });
    lpar.pause().unwrap();
}

fn copy_memory(from: &SimLpar, to: &SimLpar) {
    let mut page = [0u8; PAGE_SIZE];
    for p in from.populated().unwrap().iter() {
        from.read_page(p, &mut page).unwrap();
        to.write_page(p, &page).unwrap();
    }
}

#[test]
fn guest_program_continues_bit_exactly_in_another_lpar() {
    let root = Root::new("continue");
    let program = "skewed,content=text,writes=40000";
    let total = 2 * 40_000;
    let reference = SimLpar::create(&root.0, &config("reference", 16 << 20, 2, program)).unwrap();
    run_to_completion(&reference, total);

    let source = SimLpar::create(&root.0, &config("source", 16 << 20, 2, program)).unwrap();
    source.resume().unwrap();
    wait_for("some progress", Duration::from_secs(30), || {
        source.writes() > 10_000
    });
    source.pause().unwrap();
    let paused_at = Instant::now();
    let at_pause = source.writes();
    assert!(at_pause < total, "the source finished before it was moved");

    // Move it: memory and registers into a second LPAR; the source stays paused.
    let destination =
        SimLpar::create(&root.0, &config("destination", 16 << 20, 2, program)).unwrap();
    copy_memory(&source, &destination);
    // Device state crosses as bytes, as it does on the wire.
    let saved = source.save_state().unwrap();
    let bytes = saved.encode().unwrap();
    destination
        .restore_state(&DeviceState::decode(&bytes).unwrap())
        .unwrap();
    assert_eq!(
        destination.save_state().unwrap(),
        saved,
        "device state changed in transit"
    );
    assert_eq!(destination.digest().unwrap(), source.digest().unwrap());
    let moved_in = paused_at.elapsed();
    run_to_completion(&destination, total);

    assert_eq!(
        destination.digest().unwrap(),
        reference.digest().unwrap(),
        "the moved program diverged from an uninterrupted run"
    );
    assert_eq!(source.writes(), at_pause, "the paused source kept writing");
    // The time the guest spent moved shows in its observed stall.
    assert!(destination.max_stall_ns() >= moved_in.as_nanos() as u64);
}

#[test]
fn guest_observed_stall_covers_a_pause() {
    let root = Root::new("stall");
    let lpar = SimLpar::create(
        &root.0,
        &config("stall", 16 << 20, 1, "hot:1MiB,rate=20000"),
    )
    .unwrap();
    lpar.resume().unwrap();
    wait_for("writes", Duration::from_secs(10), || lpar.writes() > 2_000);
    lpar.pause().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    lpar.resume().unwrap();
    let writes = lpar.writes();
    wait_for("writes after the pause", Duration::from_secs(10), || {
        lpar.writes() > writes + 10
    });
    let stall = lpar.max_stall_ns();
    assert!(stall >= 300_000_000, "stall {stall} ns for a 300 ms pause");
    // The stall across the last pause alone, not the lifetime's longest gap.
    let first = lpar.resume_stall_ns();
    assert!(
        (300_000_000..=stall).contains(&first),
        "stall across the pause {first} ns, longest gap {stall} ns"
    );
    lpar.pause().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    lpar.resume().unwrap();
    let writes = lpar.writes();
    wait_for(
        "writes after the second pause",
        Duration::from_secs(10),
        || lpar.writes() > writes + 10,
    );
    // The last pause's own stall: at least its 20 ms, and not the longer
    // first pause's (which the lifetime's longest gap still is).
    let across = lpar.resume_stall_ns();
    assert!(
        across >= 20_000_000 && across < first,
        "stall across a 20 ms pause: {across} ns, the 300 ms one's {first} ns"
    );
    assert!(lpar.max_stall_ns() >= first);
}

#[test]
fn throttle_slows_the_guest_down() {
    let root = Root::new("throttle");
    let lpar =
        SimLpar::create(&root.0, &config("t", 16 << 20, 1, "hot:1MiB,content=zero")).unwrap();
    let rate = |lpar: &SimLpar| {
        let w0 = lpar.writes();
        std::thread::sleep(Duration::from_millis(200));
        lpar.writes() - w0
    };
    lpar.resume().unwrap();
    let full = rate(&lpar);
    lpar.throttle(90).unwrap();
    let throttled = rate(&lpar);
    lpar.throttle(0).unwrap();
    assert!(
        throttled * 3 < full,
        "throttle(90) left {throttled} writes per 200 ms against {full} at full speed"
    );
}

const CHILD_ENV: &str = "LPAR_MOVER_TEST_HOST_ROOT";
const KILL_PROGRAM: &str = "hot:2MiB,content=random,writes=150000";
const KILL_TOTAL: u64 = 150_000;

/// Not a test on its own: the child process of the SIGKILL test, which
/// hosts an LPAR until it is killed.
#[test]
#[ignore = "child process of lpar_survives_sigkill_of_its_host"]
fn child_hosts_lpar_until_killed() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let lpar = SimLpar::create(
        root.as_ref(),
        &config("survivor", 32 << 20, 1, KILL_PROGRAM),
    )
    .unwrap();
    lpar.resume().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn lpar_survives_sigkill_of_its_host() {
    let root = Root::new("sigkill");
    std::fs::create_dir_all(&root.0).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_hosts_lpar_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, &root.0)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = root.0.join("survivor");
    wait_for(
        "the child to create the LPAR",
        Duration::from_secs(30),
        || LparFiles::attach(&dir).is_ok(),
    );
    let (files, _) = LparFiles::attach(&dir).unwrap();
    wait_for("the child's guest to run", Duration::from_secs(30), || {
        files.load_regs(0).gpr[6] > 5_000
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let at_kill = files.load_regs(0).gpr[6];
    assert!(at_kill < KILL_TOTAL, "the guest finished before the kill");
    drop(files);

    // A new host re-attaches: the LPAR is still running and carries on.
    let survivor = SimLpar::attach(&root.0, "survivor").unwrap();
    assert!(survivor.is_running(), "a running LPAR came back paused");
    run_to_completion(&survivor, KILL_TOTAL);

    let reference =
        SimLpar::create(&root.0, &config("reference", 32 << 20, 1, KILL_PROGRAM)).unwrap();
    run_to_completion(&reference, KILL_TOTAL);
    assert_eq!(
        survivor.digest().unwrap(),
        reference.digest().unwrap(),
        "the LPAR did not resume exactly where its killed host left it"
    );
}

#[test]
fn restoring_device_state_needs_stopped_vcpus_and_matching_count() {
    let root = Root::new("restore-rules");
    let two = SimLpar::create(&root.0, &config("two", 1 << 20, 2, "idle")).unwrap();
    let three = SimLpar::create(&root.0, &config("three", 1 << 20, 3, "idle")).unwrap();
    let err = three.restore_state(&two.save_state().unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("2 vCPU register sets for an LPAR with 3 vCPUs"),
        "{err}"
    );
    two.resume().unwrap();
    assert!(
        two.save_state()
            .unwrap_err()
            .to_string()
            .contains("needs the LPAR's vCPUs paused")
    );
    // Shutdown mode carries no vCPUs: the guest starts from power-on.
    let mut cold = DeviceState::sample(3);
    cold.vcpus.clear();
    three.restore_state(&cold).unwrap();
    assert_eq!(three.writes(), 0);
}

#[test]
fn the_device_state_carries_the_nics_and_fc_ports_the_configuration_declares() {
    use lpar_mover::partition::FcPortConfig;
    use lpar_mover::state::{MacAddress, VlanMode, Wwpn};
    let root = Root::new("devices");
    let mut c = config("devices", 4 << 20, 1, "idle");
    let mut nic = c.nics[0].clone();
    nic.mac = MacAddress([0x02, 0, 0, 0, 0x11, 0x22]);
    nic.vlan_mode = VlanMode::Tag;
    nic.vlan_id = 42;
    c.nics.push(nic);
    c.fc_ports.push(FcPortConfig {
        port: 1,
        vfc_id: Some(9),
        wwpn: Wwpn::from_u64(0x5006_0e80_0000_0002),
        migration_wwpn: Wwpn::from_u64(0x5006_0e80_0000_0082),
        ..c.fc_ports[0].clone()
    });
    let lpar = SimLpar::create(&root.0, &c).unwrap();
    let state = lpar.save_state().unwrap();
    let macs: Vec<_> = state.nics.iter().map(|n| n.mac).collect();
    assert_eq!(macs, vec![c.nics[0].mac, c.nics[1].mac]);
    assert_eq!(
        (state.nics[1].vlan_mode, state.nics[1].vlan_id),
        (VlanMode::Tag, 42)
    );
    let hbas: Vec<_> = state
        .fc_hbas
        .iter()
        .map(|h| (h.vfc_id, h.wwpn, h.migration_wwpn))
        .collect();
    assert_eq!(
        hbas,
        vec![
            (1, c.fc_ports[0].wwpn, c.fc_ports[0].migration_wwpn),
            (9, c.fc_ports[1].wwpn, c.fc_ports[1].migration_wwpn),
        ]
    );
    // A configuration without devices defines an LPAR without any.
    let mut bare = config("bare", 4 << 20, 1, "idle");
    bare.nics.clear();
    bare.fc_ports.clear();
    let state = SimLpar::create(&root.0, &bare)
        .unwrap()
        .save_state()
        .unwrap();
    assert!(state.nics.is_empty() && state.fc_hbas.is_empty());
}

#[test]
fn a_shutdown_request_stops_every_vcpu_unless_the_guest_ignores_it() {
    let root = Root::new("shutdown");
    for (name, program) in [("hot", "hot:4MiB"), ("idle", "idle")] {
        let lpar = SimLpar::create(&root.0, &config(name, 64 << 20, 2, program)).unwrap();
        lpar.resume().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!lpar.is_shut_down());
        let t = Instant::now();
        lpar.request_shutdown();
        wait_for("the guest to shut down", Duration::from_secs(5), || {
            lpar.is_shut_down()
        });
        eprintln!("{name}: shut down in {:?}", t.elapsed());
        // Shut down: no more writes.
        let w = lpar.writes();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(lpar.writes(), w, "{name} wrote after shutting down");
        // Powering on again voids the request.
        lpar.pause().unwrap();
        lpar.resume().unwrap();
        assert!(!lpar.is_shut_down());
        lpar.pause().unwrap();
        lpar.destroy().unwrap();
    }

    let lpar = SimLpar::create(
        &root.0,
        &config("stubborn", 64 << 20, 2, "hot:4MiB,shutdown=ignore"),
    )
    .unwrap();
    lpar.resume().unwrap();
    lpar.request_shutdown();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!lpar.is_shut_down());
    let w = lpar.writes();
    wait_for("the guest to write on", Duration::from_secs(5), || {
        lpar.writes() > w
    });
    lpar.pause().unwrap();
    lpar.destroy().unwrap();
}
