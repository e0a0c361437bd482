//! The cost of one agent ↔ LPAR-process round trip over the Unix socket
//! (`partition::kvm::channel`), and of the calls that cross it inside a
//! suspension: pause + resume, an empty harvest, a device-state save
//! (split into the encode + decode of the state and the KVM calls, timed
//! on a VM in this process).
//! Prints medians (`cargo bench --bench kvm_round_trip`). Skips without
//! /dev/kvm.

use lpar_mover::partition::kvm::KvmLpar;
use lpar_mover::partition::{Backend, DeviceModel, KvmBackend, LparConfig, PageSet, Vcpus, kvm};
use std::time::{Duration, Instant};

const RUNS: usize = 2000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    if let Some(why) = kvm::unavailable() {
        lpar_mover::skip::skip(
            "kvm_round_trip",
            &format!("the KVM LPAR process needs /dev/kvm ({why})"),
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = KvmBackend::with_vmm_processes(dir.path(), env!("CARGO_BIN_EXE_moverd"));
    let config = LparConfig {
        name: "rt".into(),
        vcpus: 2,
        memory_bytes: 16 << 20,
        program: "idle".into(),
        ..LparConfig::default_lpar()
    };
    let lpar = backend.create("rt", &config).unwrap();
    lpar.resume().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    println!("agent <-> LPAR process (Unix socket), medians of {RUNS}");
    let rt = time(RUNS, || lpar.throttle(0).unwrap());
    println!(
        "{:<28} {:>10.1} us",
        "round trip (throttle 0)",
        rt.as_secs_f64() * 1e6
    );
    let st = time(RUNS, || {
        lpar.is_shut_down();
    });
    println!("{:<28} {:>10.1} us", "status", st.as_secs_f64() * 1e6);
    let pr = time(RUNS / 10, || {
        lpar.pause().unwrap();
        lpar.resume().unwrap();
    });
    println!(
        "{:<28} {:>10.1} us",
        "pause + resume",
        pr.as_secs_f64() * 1e6
    );
    let mut log = lpar.dirty_log().unwrap();
    log.start().unwrap();
    lpar.pause().unwrap();
    let mut set = PageSet::new();
    let hv = time(RUNS, || {
        set.clear();
        log.harvest(&mut set).unwrap();
    });
    println!(
        "{:<28} {:>10.1} us",
        "harvest (paused, 16 MiB)",
        hv.as_secs_f64() * 1e6
    );
    let saved = lpar.save_state().unwrap();
    let sv = time(RUNS / 10, || {
        lpar.save_state().unwrap();
    });
    println!(
        "{:<28} {:>10.1} us",
        "save device state",
        sv.as_secs_f64() * 1e6
    );
    let enc = time(RUNS / 10, || {
        let s = lpar_mover::state::DeviceState::decode(&saved.encode().unwrap()).unwrap();
        std::hint::black_box(s);
    });
    println!(
        "{:<28} {:>10.1} us",
        "  of which encode + decode",
        enc.as_secs_f64() * 1e6
    );
    log.stop().unwrap();
    drop(lpar);
    backend.remove("rt").unwrap();
    // The same save with the VM in this process: the KVM calls alone.
    let local = KvmLpar::create(
        dir.path(),
        &LparConfig {
            name: "rt-local".into(),
            ..config
        },
    )
    .unwrap();
    local.resume().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    local.pause().unwrap();
    let sl = time(RUNS / 10, || {
        local.save_state().unwrap();
    });
    println!(
        "{:<28} {:>10.1} us",
        "  of which KVM calls",
        sl.as_secs_f64() * 1e6
    );
}
