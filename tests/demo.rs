//! The README's main job: `moverctl demo` migrates an LPAR live between two
//! `moverd` processes and the guest keeps running on the destination.

use std::process::Command;

#[test]
fn demo_migrates_between_two_agent_processes() {
    let out = Command::new(env!("CARGO_BIN_EXE_moverctl"))
        .args([
            "demo",
            "--memory",
            "64MiB",
            "--program",
            "hot:8MiB,rate=20000",
            "--json",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = out.id();
    let out = out.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["verified"], true, "{report}");
    assert!(report["rounds"].as_u64().unwrap() >= 1);
    assert!(report["suspension_ms"].as_f64().unwrap() > 0.0);
    assert!(report["bytes_sent"].as_u64().unwrap() > 0);
    assert!(
        report["guest_writes_after_switchover"].as_u64().unwrap() > 0,
        "the guest did not run on the destination: {report}"
    );
    // The demo's two host directories are gone.
    let hosts = format!("/dev/shm/lpar-mover/demo-{pid}");
    assert!(
        !std::path::Path::new(&hosts).exists(),
        "demo left {hosts} behind"
    );
}
