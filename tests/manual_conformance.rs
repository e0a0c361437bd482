//! Issue 13, "follow the manual exactly": the manual's success and progress
//! texts as `moverctl` prints them in text mode (an operator follows the
//! manual's screens), its management-path rule, the LPAR number in the
//! history, the suspension hard limit and the pre-flight warnings.

mod agent_common;

use agent_common::{Agent, Hold, Scratch, define_running, next_path_octet, peer_args, stderr};
use std::process::{Command, Stdio};

#[test]
fn cancel_says_canceling_then_completed_as_the_progress_window_does() {
    let scratch = Scratch::new("texts-cancel");
    let hold = Hold::new(&scratch, "texts-cancel");
    let a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "c1", "32MiB", "hot:2MiB,content=random");
    let id = a.ctl_json(&["migrate", "c1", "--to", &b.addr, "--no-wait"])["migration"].to_string();
    hold.wait_held(&a, &id);

    // Text mode waits for the cancelled migration to end.
    let cancel = Command::new(env!("CARGO_BIN_EXE_moverctl"))
        .args(["--agent", &a.addr, "--token-file"])
        .arg(&a.token_file)
        .args(["cancel", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line comes once the agent has accepted the cancel.
    let mut cancel = cancel;
    let mut stdout = std::io::BufReader::new(cancel.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first, "Progress : Canceling … Migration\n");
    hold.release();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = cancel.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(rest, "Progress : Migration completed!\n");
    let s = a.ctl_json(&["status", &id]);
    assert_eq!(s["error"]["reason"], 0x20, "{s}");
    assert_eq!(a.lpar("c1")["state"], "Act");
}

#[test]
fn the_connectivity_test_and_the_rehearsal_end_with_the_manuals_texts() {
    let scratch = Scratch::new("texts-conn");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    let out = a.ctl(&["connectivity-test", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().last(),
        Some("Connectivity Test completed!"),
        "{text}"
    );

    define_running(&a, "h1", "32MiB", "idle");
    let out = a.ctl(&["rehearse", "h1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("Migration completed!")),
        "{text}"
    );
}

#[test]
fn the_history_shows_the_lpar_number_on_each_host_and_a_new_lpar_takes_the_youngest_free_one() {
    let scratch = Scratch::new("texts-number");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    for name in ["x1", "x2"] {
        define_running(&a, name, "32MiB", "idle");
    }
    for name in ["y1", "y2"] {
        define_running(&b, name, "32MiB", "idle");
    }
    // y1 (#1) leaves hostB: the next LPAR there takes number 1 again.
    b.ctl_json(&["lpar", "deactivate", "y1"]);
    b.ctl_json(&["lpar", "delete", "y1"]);

    a.ctl_json(&["migrate", "x2", "--to", &b.addr]);
    let h = b.ctl_json(&["history", "x2"]);
    let m = &h["migrations"][0];
    assert_eq!(
        (
            m["source_number"].as_u64(),
            m["destination_number"].as_u64()
        ),
        (Some(2), Some(1)),
        "{h}"
    );
    let out = b.ctl(&["history", "x2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hostA#2") && text.contains("hostB#1"),
        "{text}"
    );
    // Shutdown mode too.
    a.ctl_json(&["lpar", "deactivate", "x1"]);
    a.ctl_json(&["migrate", "x1", "--to", &b.addr, "--mode", "shutdown"]);
    let h = b.ctl_json(&["history", "x1"]);
    let m = &h["migrations"][0];
    assert_eq!(
        (
            m["source_number"].as_u64(),
            m["destination_number"].as_u64()
        ),
        (Some(1), Some(3)),
        "{h}"
    );
}

/// An agent whose management path is on NIC segment `1a` and whose one
/// migration path is `path` (`<ipv4>[,segment=…][,vlan=…]`, named `mig`).
fn agent_on_segments(scratch: &Scratch, name: &str, path: &str) -> Agent {
    let state_dir = scratch.0.join(name);
    let mut args: Vec<String> = [
        "serve",
        "--insecure-plaintext-management",
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--management-segment",
        "1a",
        "--path",
        &format!("mig={path}"),
        "--state-dir",
        &state_dir.display().to_string(),
        "--token-file",
        &scratch.token_file().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(peer_args());
    Agent::spawn(name, args, state_dir, scratch.token_file())
}

#[test]
fn a_migration_path_on_the_management_paths_segment_needs_a_vlan_id() {
    let scratch = Scratch::new("conf-segment");
    let ip = |n: u8| format!("127.0.0.{n}");
    // Another address than the management path's, but the same segment.
    let a = agent_on_segments(
        &scratch,
        "hostA",
        &format!("{},segment=1a", ip(next_path_octet())),
    );
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "p1", "32MiB", "idle");
    let out = a.ctl(&["migrate", "p1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("The specified Migration Path collides with the Management Path Settings."),
        "{e}"
    );
    assert!(e.contains("Set a VLANID for a migration path"), "{e}");
    // The item: MMS Thread `0x00 00000004 F00d 03`, op3 0x01.
    let out = a.ctl(&["--json", "validate", "p1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == "migration-path" && c["outcome"] == "fail")
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    let item = &c["error"];
    assert_eq!(
        (
            item["module"].as_str(),
            item["phase"].as_u64(),
            item["cause"].as_u64(),
            item["reason"].as_u64()
        ),
        (Some("Executor"), Some(0xF00D), Some(4), Some(1)),
        "{c}"
    );
    assert_eq!(a.lpar("p1")["state"], "Act");
    drop(a);

    // Its own segment, or a VLAN ID on the shared one: no collision.
    for path in [
        format!("{},segment=1b", ip(next_path_octet())),
        format!("{},segment=1a,vlan=10", ip(next_path_octet())),
    ] {
        let name = if path.contains("vlan") {
            "hostV"
        } else {
            "hostS"
        };
        let a = agent_on_segments(&scratch, name, &path);
        define_running(&a, "p2", "32MiB", "idle");
        let v = a.ctl_json(&["validate", "p2", "--to", &b.addr]);
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["item"] == "migration-path" && c["side"] == "source")
            .cloned()
            .unwrap();
        assert_eq!(c["outcome"], "pass", "{path}: {v}");
    }
}

#[test]
fn a_suspension_over_the_hard_limit_fails_and_the_lpar_runs_on_at_the_source() {
    let scratch = Scratch::new("conf-suspend");
    // The source holds the migration just after pausing the LPAR (stage
    // 0x4060), so the suspension lasts at least as long as the hold.
    let pause = scratch.0.join("hold-suspend");
    let pause_s = pause.display().to_string();
    let a = Agent::start_with_env(
        &scratch,
        "hostA",
        &["--suspend-limit-ms", "50"],
        &[
            ("MOVERD_FAULT_PAUSE_AT", "0x4060"),
            ("MOVERD_FAULT_PAUSE_FILE", pause_s.as_str()),
        ],
    );
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "s1", "32MiB", "hot:1MiB");
    let id = a.ctl_json(&["migrate", "s1", "--to", &b.addr, "--no-wait"])["migration"].to_string();
    agent_common::wait_for(
        "the suspension to be held",
        std::time::Duration::from_secs(30),
        || pause.exists(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = std::fs::remove_file(&pause);
    let out = a.ctl(&["monitor", &id]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(
            "Transferring device data cannot be completed within an LPAR suspension period."
        ),
        "{e}"
    );
    assert!(e.contains("(0):LPARMover(SRC)"), "{e}");
    // Exactly one owner: the source, running; the destination holds nothing.
    let l = a.lpar("s1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true)),
        "{l}"
    );
    let w = l["guest_writes"].as_u64().unwrap();
    agent_common::wait_for(
        "the guest to run on at the source",
        std::time::Duration::from_secs(10),
        || a.lpar("s1")["guest_writes"].as_u64().unwrap() > w,
    );
    agent_common::wait_for(
        "the destination to drop its copy",
        std::time::Duration::from_secs(30),
        || b.lpar_names().is_empty(),
    );
}

/// Creates and activates `name` with one shared NIC on `segment`, over the
/// protocol.
fn define_running_on_segment(a: &Agent, name: &str, segment: &str, mac: u8) {
    let mut c = a.connect();
    let r = c.request(serde_json::json!({"id": 1, "execute": "lpar-create", "arguments": {
        "name": name, "vcpus": 1, "memory_bytes": 32u64 << 20, "program": "idle",
        "nics": [{"segment": segment, "mode": "shared", "mac": format!("02:00:00:00:00:{mac:02x}")}],
    }}));
    assert!(r.get("return").is_some(), "{r}");
    let r = c.request(serde_json::json!({"id": 2, "execute": "lpar-activate",
                                         "arguments": {"name": name}}));
    assert!(r.get("return").is_some(), "{r}");
}

#[test]
fn a_path_on_a_segment_an_activated_lpar_uses_is_a_warning_shown_by_validate_and_the_report() {
    let scratch = Scratch::new("conf-warn");
    let a = agent_on_segments(
        &scratch,
        "hostA",
        &format!("127.0.0.{},segment=1b", next_path_octet()),
    );
    let config = scratch.0.join("b.toml");
    std::fs::write(
        &config,
        "[resources]\ncpus = 8\nmemory = \"2GiB\"\nnic_segments = [\"1b\"]\n",
    )
    .unwrap();
    let b = Agent::start(&scratch, "hostB", &["--config", config.to_str().unwrap()]);
    define_running_on_segment(&a, "w1", "1b", 1);

    let v = a.ctl_json(&["validate", "w1", "--to", &b.addr]);
    assert_eq!(v["passed"], true, "{v}");
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == "path-segment" && c["side"] == "source")
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(c["outcome"], "warn", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("NIC segment 1b, which an activated LPAR uses"),
        "{c}"
    );
    let out = a.ctl(&["validate", "w1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("WARN  source       path-segment"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The device status of the destination's ports: nothing named, passes.
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["item"] == "device-status" && c["outcome"] == "pass"),
        "{v}"
    );

    // The migration goes ahead, and its report carries the warning.
    let out = a.ctl(&["migrate", "w1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    // Each stage as the Migration Progress window shows it.
    assert!(
        text.contains(
            "executing migration process… Stage = 0x4050: (SRC) Transferring Memory Data"
        ),
        "{text}"
    );
    assert!(
        text.contains("warning: path-segment (source): host hostA: migration path mig"),
        "{text}"
    );
    assert_eq!(b.lpar("w1")["state"], "Act");
}

#[test]
fn a_destination_nic_port_that_is_down_refuses_concurrent_maintenance_mode() {
    let scratch = Scratch::new("conf-down");
    let a = Agent::start(&scratch, "hostA", &[]);
    // A segment on an interface this machine does not have: its port is
    // not up (the unit tests cover `operstate` down; making a real one
    // down needs root).
    let config = scratch.0.join("b.toml");
    std::fs::write(
        &config,
        "[resources]\ncpus = 8\nmemory = \"2GiB\"\nnic_segments = [\"1c@nosuchnic0\"]\n",
    )
    .unwrap();
    let b = Agent::start(&scratch, "hostB", &["--config", config.to_str().unwrap()]);
    define_running_on_segment(&a, "d1", "1c", 2);
    let out = a.ctl(&["migrate", "d1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("device-status (destination): Device Status: a NIC port of host hostB is down"),
        "{e}"
    );
    assert!(e.contains("interface nosuchnic0 does not exist"), "{e}");
    // Shutdown mode: a warning only.
    a.ctl_json(&["lpar", "deactivate", "d1"]);
    let v = a.ctl_json(&["validate", "d1", "--to", &b.addr, "--mode", "shutdown"]);
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == "device-status")
        .cloned()
        .unwrap();
    assert_eq!(c["outcome"], "warn", "{c}");
}

#[test]
fn a_host_at_its_maximum_of_activated_lpars_refuses_another_live_or_by_activation() {
    let scratch = Scratch::new("conf-max");
    let a = Agent::start(&scratch, "hostA", &[]);
    let config = scratch.0.join("b.toml");
    std::fs::write(
        &config,
        "[resources]\ncpus = 8\nmemory = \"2GiB\"\nmax_active_lpars = 1\n",
    )
    .unwrap();
    let b = Agent::start(&scratch, "hostB", &["--config", config.to_str().unwrap()]);
    define_running(&b, "m1", "32MiB", "idle");
    define_running(&a, "m2", "32MiB", "idle");
    let text = "The MMS could not activate LPAR. The number of activated LPAR reaches the maximum.";
    let out = a.ctl(&["migrate", "m2", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(text), "{}", stderr(&out));
    assert_eq!(a.lpar("m2")["state"], "Act");
    // Activating one more on hostB: the same refusal, MMS `0x00 80000004 0030 02`.
    b.ctl_json(&["lpar", "create", "m3", "--memory", "32MiB"]);
    let out = b.ctl(&["lpar", "activate", "m3"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("EMG0080000004003002:"), "{e}");
    assert!(e.contains(text), "{e}");
    assert_eq!(b.lpar("m3")["state"], "Dea");
    // Shutdown mode moves it deactivated.
    a.ctl_json(&["lpar", "deactivate", "m2"]);
    a.ctl_json(&["migrate", "m2", "--to", &b.addr, "--mode", "shutdown"]);
    assert_eq!(b.lpar("m2")["state"], "Dea");
}
