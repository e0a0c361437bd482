//! Shutdown-mode migration between two real agents: a deactivated LPAR
//! moves its configuration and device identities (no memory, no vCPU
//! state); an activated one is shut down first, or the migration fails at
//! the waiting limit and the LPAR keeps running on the source.

mod agent_common;

use agent_common::{Agent, Scratch, exists, stderr, wait_for};
use lpar_mover::state::DeviceState;
use std::time::{Duration, Instant};

fn devices(agent: &Agent, lpar: &str) -> DeviceState {
    let bytes =
        std::fs::read(agent.state_dir.join("lpars").join(lpar).join("devices.bin")).unwrap();
    DeviceState::decode(&bytes).unwrap()
}

fn memory_is_zero(agent: &Agent, lpar: &str) -> bool {
    let bytes = std::fs::read(agent.state_dir.join("lpars").join(lpar).join("memory")).unwrap();
    bytes.iter().all(|b| *b == 0)
}

fn guest_writes(agent: &Agent, lpar: &str) -> u64 {
    agent.lpar(lpar)["guest_writes"].as_u64().unwrap()
}

fn create(a: &Agent, name: &str, program: &str) {
    a.ctl_json(&[
        "lpar",
        "create",
        name,
        "--vcpus",
        "2",
        "--memory",
        "64MiB",
        "--program",
        program,
    ]);
}

#[test]
fn a_deactivated_lpar_moves_its_configuration_and_identities_without_memory() {
    let scratch = Scratch::new("shut-dea");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    create(&a, "s1", "hot:4MiB,content=random");
    // It ran once: its memory is not blank.
    a.ctl_json(&["lpar", "activate", "s1"]);
    wait_for("the guest to write", Duration::from_secs(10), || {
        guest_writes(&a, "s1") > 100
    });
    a.ctl_json(&["lpar", "deactivate", "s1"]);
    assert!(!memory_is_zero(&a, "s1"));
    let before = devices(&a, "s1");

    let out = a.ctl_json(&["migrate", "s1", "--to", &b.addr, "--mode", "shutdown"]);
    let report = &out["report"];
    assert_eq!(report["mode"], "shutdown", "{out}");
    assert_eq!(report["shutdown_ms"], 0.0, "a Dea LPAR is not shut down");

    assert!(a.lpar_names().is_empty());
    assert!(!exists(&a.state_dir.join("lpars").join("s1")));
    let l = b.lpar("s1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Dea"), Some(false))
    );
    assert_eq!(
        (
            l["vcpus"].as_u64(),
            l["memory_bytes"].as_u64(),
            l["program"].as_str()
        ),
        (Some(2), Some(64 << 20), Some("hot:4MiB,content=random"))
    );
    // Identities (UUID, NVRAM) arrive; vCPU state and memory do not.
    let after = devices(&b, "s1");
    assert_eq!(after.firmware, before.firmware);
    assert!(after.vcpus.is_empty(), "{:?}", after.vcpus);
    assert!(memory_is_zero(&b, "s1"));
    // It boots on the destination from power-on.
    b.ctl_json(&["lpar", "activate", "s1"]);
    wait_for("the guest to boot", Duration::from_secs(10), || {
        guest_writes(&b, "s1") > 0
    });
}

#[test]
fn an_activated_guest_is_shut_down_first_and_started_on_the_destination_only_if_asked() {
    let scratch = Scratch::new("shut-act");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    for (name, program) in [("busy", "hot:4MiB,content=random"), ("idle", "idle")] {
        create(&a, name, program);
        a.ctl_json(&["lpar", "activate", name]);
    }
    wait_for("the guest to write", Duration::from_secs(10), || {
        guest_writes(&a, "busy") > 1000
    });
    let out = a.ctl_json(&[
        "migrate",
        "busy",
        "--to",
        &b.addr,
        "--mode",
        "shutdown",
        "--activate-destination",
    ]);
    assert!(
        out["report"]["shutdown_ms"].as_f64().unwrap() > 0.0,
        "{out}"
    );
    let l = b.lpar("busy");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    wait_for(
        "the guest to run at the destination",
        Duration::from_secs(10),
        || guest_writes(&b, "busy") > 10,
    );
    assert_eq!(a.lpar_names(), vec!["idle".to_string()]);

    // An idle guest also shuts down; without --activate-destination it
    // arrives deactivated.
    a.ctl_json(&["migrate", "idle", "--to", &b.addr, "--mode", "shutdown"]);
    let l = b.lpar("idle");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Dea"), Some(false))
    );
    assert!(a.lpar_names().is_empty());
}

#[test]
fn a_guest_that_ignores_the_shutdown_request_times_out_and_keeps_running_on_the_source() {
    let scratch = Scratch::new("shut-ignore");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    create(&a, "stubborn", "hot:4MiB,shutdown=ignore");
    a.ctl_json(&["lpar", "activate", "stubborn"]);
    let t = Instant::now();
    let out = a.ctl(&[
        "migrate",
        "stubborn",
        "--to",
        &b.addr,
        "--mode",
        "shutdown",
        "--shutdown-timeout",
        "1",
    ]);
    let waited = t.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Could not accept a migration with activated LPAR")
            && err.contains("Shutdown waiting"),
        "{err}"
    );
    assert!(err.contains("EMG"), "{err}");
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    let l = a.lpar("stubborn");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    let w = guest_writes(&a, "stubborn");
    wait_for("the guest to run on", Duration::from_secs(10), || {
        guest_writes(&a, "stubborn") > w
    });
    assert!(b.lpar_names().is_empty());
}

#[test]
fn a_shutdown_mode_move_is_in_the_history_of_both_hosts_and_its_history_travels() {
    let scratch = Scratch::new("shutdown-history");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    let c = Agent::start(&scratch, "hostC", &[]);
    create(&a, "h1", "idle");
    a.ctl_json(&["lpar", "activate", "h1"]);
    // A live move first, so the LPAR has a history to carry.
    a.ctl_json(&["migrate", "h1", "--to", &b.addr]);
    b.ctl_json(&["migrate", "h1", "--to", &c.addr, "--mode", "shutdown"]);

    let record = |agent: &Agent| {
        let h = agent.ctl_json(&["history", "h1"]);
        let moves = h["migrations"].as_array().unwrap().clone();
        moves
            .into_iter()
            .find(|m| m["destination_agent"] == "hostC")
            .unwrap_or_else(|| panic!("no move to hostC in {h}"))
    };
    let (on_b, on_c) = (record(&b), record(&c));
    for m in [&on_b, &on_c] {
        assert_eq!(m["mode"], "shutdown", "{m}");
        assert_eq!(m["outcome"], "completed", "{m}");
        assert_eq!(m["source_agent"], "hostB", "{m}");
        assert_eq!(m["source_address"], b.addr.as_str(), "{m}");
    }
    // One key on both sides, the source's.
    let key = on_b["key"].as_str().unwrap();
    assert!(key.starts_with("hostB/"), "{on_b}");
    assert_eq!(on_c["key"], key);
    // `history` without an LPAR: every migration the agent knows, named.
    let all = b.ctl_json(&["history"]);
    assert!(all.get("lpar").is_none(), "{all}");
    let moves = all["migrations"].as_array().unwrap();
    assert_eq!(moves.len(), 2, "{all}");
    assert!(moves.iter().all(|m| m["lpar"] == "h1"), "{all}");
    let text = String::from_utf8_lossy(&b.ctl(&["history"]).stdout).to_string();
    assert!(text.contains(" h1 ") && text.contains("shutdown"), "{text}");
    // The LPAR's earlier move came with it.
    let h = c.ctl_json(&["history", "h1"]);
    let moves = h["migrations"].as_array().unwrap();
    assert!(
        moves
            .iter()
            .any(|m| m["source_agent"] == "hostA" && m["mode"] == "live"),
        "{h}"
    );
}
