//! The built-in guest on this machine's /dev/kvm, booted by
//! `guests/tools/kvm_smoke.c` (a minimal reference VMM, built here with
//! gcc): boot line, both vCPUs up through INIT-SIPI-SIPI, heartbeats with
//! growing write counts, no calibration warning, and the TSC frequency
//! taken from kvmclock. It checks the guest against the real KVM
//! instruction emulator (no IRET, no unsupported instruction) before and
//! independently of the KVM backend. Skips, saying why, without a usable
//! /dev/kvm.

use lpar_mover::guest::IMAGE;
use lpar_mover::guest::console::{self, Line};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn kvm_usable() -> bool {
    match std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(err) => {
            eprintln!(
                "skipped: /dev/kvm cannot be opened read-write ({err}); the guest was not booted on KVM"
            );
            false
        }
    }
}

#[test]
fn the_guest_runs_two_vcpus_on_kvm() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runner = dir.path().join("kvm_smoke");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/guests/tools/kvm_smoke.c");
    let built = Command::new("gcc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&runner)
        .arg(source)
        .arg("-lpthread")
        .status()
        .expect("gcc (needed for the build anyway)");
    assert!(built.success(), "kvm_smoke.c does not build");
    let image = dir.path().join("lpar-guest.elf");
    std::fs::write(&image, IMAGE).unwrap();
    let (out, err) = (dir.path().join("console"), dir.path().join("mailbox"));
    let mut child = Command::new(&runner)
        .arg(&image)
        .arg("hot:256KiB,content=zero")
        .args(["2", "0"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let enough = |log: &str| {
        (0..2).all(|cpu| {
            console::heartbeats(log)
                .iter()
                .filter(|hb| hb.cpu == cpu)
                .count()
                >= 3
        })
    };
    let log = loop {
        let log = std::fs::read_to_string(&out).unwrap_or_default();
        if enough(&log) {
            break log;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "kvm_smoke exited ({status}); console:\n{log}\nstderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("no 3 heartbeats per vCPU in 300 s; console:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(1100)); // one more mailbox line
    let _ = child.kill();
    let _ = child.wait();
    let lines = console::parse_log(&log);
    assert!(
        lines.contains(&Line::Boot {
            cpus: 2,
            program: "hot:256KiB,content=zero".into()
        }),
        "{log}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| matches!(l, Line::Warning(_) | Line::Error(_))),
        "{log}"
    );
    for cpu in 0..2 {
        let hbs: Vec<_> = console::heartbeats(&log)
            .into_iter()
            .filter(|hb| hb.cpu == cpu)
            .collect();
        for pair in hbs.windows(2) {
            assert!(
                pair[1].writes > pair[0].writes && pair[1].tsc > pair[0].tsc,
                "{hbs:?}"
            );
        }
    }
    let mailbox = std::fs::read_to_string(&err).unwrap();
    let last = mailbox.lines().last().expect("a mailbox line");
    let field = |key: &str| -> u64 {
        last.split(' ')
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in '{last}'"))
    };
    assert_eq!(field("cpus"), 2, "{last}");
    let kvmclock = field("kvmclock_tsc_hz");
    assert!(kvmclock > 0, "KVM offers kvmclock: {last}");
    assert_eq!(field("tsc_hz"), kvmclock, "{last}");
    assert!(field("total_writes") > 0, "{last}");
    eprintln!("{last}");
}
