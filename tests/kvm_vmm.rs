//! KVM LPARs in processes of their own (`moverd lpar-vmm`): the process
//! that created one can die by `kill -9` and the guest runs on; another
//! process attaches and drives it, and a save/restore between two LPAR
//! processes continues the guest. Skips (saying why) without /dev/kvm.

use lpar_mover::partition::{Backend, KvmBackend, LparConfig, PAGE_SIZE, kvm};
#[allow(unused_imports)]
use lpar_mover::partition::{DeviceModel, GuestMemory, Vcpus};
use std::path::Path;
use std::time::{Duration, Instant};

const OWNER_ENV: &str = "LPAR_MOVER_TEST_OWNER_ROOT";

fn backend(root: &Path) -> KvmBackend {
    KvmBackend::with_vmm_processes(root, env!("CARGO_BIN_EXE_moverd"))
}

fn config(name: &str) -> LparConfig {
    LparConfig {
        name: name.into(),
        vcpus: 2,
        memory_bytes: 16 << 20,
        program: "hot:256KiB,content=zero,rate=2000".into(),
        ..LparConfig::default_lpar()
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Not a test of its own: the owner process the test below kills. It
/// creates and starts LPAR `owned`, says so, then waits to be killed.
#[test]
fn owner_process_helper() {
    let Ok(root) = std::env::var(OWNER_ENV) else {
        return;
    };
    let lpar = backend(Path::new(&root))
        .create("owned", &config("owned"))
        .unwrap();
    lpar.resume().unwrap();
    println!("OWNER-READY");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn kill_9_of_the_owner_leaves_the_guest_running_and_attach_drives_it_on() {
    if let Some(why) = kvm::unavailable() {
        lpar_mover::skip::skip("kvm_vmm", &format!("KVM tests need /dev/kvm ({why})"));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut owner = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["owner_process_helper", "--exact", "--nocapture"])
        .env(OWNER_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = owner.stdout.take().unwrap();
    let mut seen = String::new();
    wait_for("the owner to start the LPAR", || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let n = out.read(&mut buf).unwrap_or(0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.contains("OWNER-READY")
    });
    let console = dir.path().join("owned").join("console.log");
    let hb = || {
        lpar_mover::partition::guest::console::heartbeats(
            &std::fs::read_to_string(&console).unwrap_or_default(),
        )
        .len()
    };
    wait_for("a heartbeat", || hb() > 0);
    // SIGKILL: the owner gets no chance to clean up.
    owner.kill().unwrap();
    owner.wait().unwrap();
    let after_kill = hb();
    wait_for("heartbeats after the owner died", || hb() > after_kill + 1);

    // A new process attaches (here: this one) and drives the guest.
    let agent = backend(dir.path());
    assert_eq!(agent.list().unwrap(), vec!["owned"]);
    let src = agent.attach("owned").unwrap();
    assert!(src.is_running(), "the guest runs on after its owner died");
    let w0 = src.guest_writes().unwrap();
    wait_for("writes", || src.guest_writes().unwrap() > w0);

    // Save it there, restore into a second LPAR process: it continues.
    let dst = agent.create("moved", &config("moved")).unwrap();
    src.pause().unwrap();
    let paused = src.guest_writes().unwrap();
    let state = src.save_state().unwrap();
    let mut page = [0u8; PAGE_SIZE];
    for p in 0..src.size_bytes() / PAGE_SIZE as u64 {
        src.read_page(p, &mut page).unwrap();
        dst.write_page(p, &page).unwrap();
    }
    dst.restore_state(&state).unwrap();
    assert_eq!(dst.digest().unwrap(), src.digest().unwrap());
    agent.remove("owned").unwrap();
    dst.resume().unwrap();
    wait_for("writes after the move", || {
        dst.guest_writes().unwrap() > paused + 20
    });
    dst.pause().unwrap();
    let log = std::fs::read_to_string(dir.path().join("moved").join("console.log")).unwrap();
    assert!(!log.contains("lpar-guest boot"), "{log}");
    agent.remove("moved").unwrap();
}
