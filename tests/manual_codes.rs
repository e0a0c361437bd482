//! The manual's codes and texts, as an operator sees them from `moverctl`
//! (issue 13: an operator looks an error up by its code and text).

mod agent_common;

use agent_common::{Agent, Scratch, define_running, stderr};

/// The item `item` of a `moverctl validate --json` run that failed.
fn failed_item(a: &Agent, args: &[&str], item: &str) -> serde_json::Value {
    let mut all = vec!["--json", "validate"];
    all.extend_from_slice(args);
    let out = a.ctl(&all);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == item)
        .unwrap_or_else(|| panic!("no {item} item: {v}"))
        .clone();
    assert_eq!(c["outcome"], "fail", "{c}");
    c
}

#[test]
fn a_migration_to_the_same_host_gets_the_manuals_one_code_in_both_modes() {
    let scratch = Scratch::new("codes-same");
    let a = Agent::start(&scratch, "hostA", &[]);
    define_running(&a, "s1", "32MiB", "idle");
    for mode in ["live", "shutdown"] {
        // The checklist runs in both modes and refuses before anything moves.
        let out = a.ctl(&["migrate", "s1", "--to", &a.addr, "--mode", mode]);
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", stderr(&out));
        let e = stderr(&out);
        assert!(
            e.contains("Source and destination are the same host (hostA)."),
            "{mode}: {e}"
        );
        // MMS `0x00 00000003 0020 02`.
        let c = failed_item(
            &a,
            &["s1", "--to", &a.addr, "--mode", mode],
            "different-hosts",
        );
        let e = &c["error"];
        assert_eq!(
            (
                e["module"].as_str(),
                e["phase"].as_u64(),
                e["cause"].as_u64()
            ),
            (Some("Management"), Some(0x20), Some(3)),
            "{mode}: {c}"
        );
    }
    assert_eq!(a.lpar("s1")["state"], "Act");
}

#[test]
fn not_enough_memory_is_the_manuals_f00b() {
    let scratch = Scratch::new("codes-mem");
    let config = scratch.0.join("small.toml");
    std::fs::write(&config, "[resources]\ncpus = 4\nmemory = \"64MiB\"\n").unwrap();
    let a = Agent::start(&scratch, "hostA", &["--config", config.to_str().unwrap()]);
    let out = a.ctl(&["lpar", "create", "big", "--memory", "128MiB"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    // MMS Thread `0x00 ******** F00b 03`, op3 0x01.
    assert!(e.contains("EMG0000000001f00b03:"), "{e}");
    assert!(e.contains(":0000000000000001:(0):"), "{e}");
    assert!(
        e.contains("There is not enough memory to activate the specified LPAR."),
        "{e}"
    );
    assert!(a.lpar_names().is_empty());
}

#[test]
fn a_usb_device_in_use_refuses_concurrent_maintenance_not_shutdown_mode() {
    let scratch = Scratch::new("codes-usb");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    a.ctl_json(&[
        "lpar",
        "create",
        "u1",
        "--memory",
        "32MiB",
        "--program",
        "idle",
        "--usb",
        "#R",
    ]);
    a.ctl_json(&["lpar", "activate", "u1"]);
    let out = a.ctl(&["migrate", "u1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(
            "usb (source): LPAR Migration was canceled. USB is attached to the specified LPAR"
        ),
        "{e}"
    );
    let usb = failed_item(&a, &["u1", "--to", &b.addr], "usb");
    // The manual's source LPAR Mover `0x00 00000000 0030 04`, op3 0x33.
    assert_eq!(usb["error"]["module"], "MoverSource", "{usb}");
    assert_eq!(
        (
            usb["error"]["phase"].as_u64(),
            usb["error"]["reason"].as_u64()
        ),
        (Some(0x30), Some(0x33)),
        "{usb}"
    );
    assert_eq!(a.lpar("u1")["state"], "Act");
    // Shutdown mode carries no used state: the LPAR moves.
    a.ctl_json(&["migrate", "u1", "--to", &b.addr, "--mode", "shutdown"]);
    assert_eq!(b.lpar_names(), vec!["u1".to_string()]);
}

#[test]
fn migrate_without_a_mode_picks_it_from_the_lpar_state_and_prints_the_outcome() {
    // IBM's rule: an active partition moves active, an inactive one
    // inactive; and the text output says "Migration completed!" with the
    // report, as the manual's progress window does.
    let scratch = Scratch::new("codes-mode");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    a.ctl_json(&[
        "lpar",
        "create",
        "d1",
        "--memory",
        "32MiB",
        "--program",
        "idle",
    ]);
    define_running(&a, "r1", "32MiB", "hot:1MiB");

    let out = a.ctl(&["migrate", "d1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mode: shutdown ('d1' is Dea"),
        "{}",
        stderr(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Migration completed! now on hostB (shutdown mode)"),
        "{text}"
    );
    assert_eq!(b.lpar("d1")["state"], "Dea");

    let out = a.ctl(&["migrate", "r1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mode: live ('r1' is Act"),
        "{}",
        stderr(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Migration completed! now on hostB"), "{text}");
    assert!(text.contains("suspension"), "{text}");
    assert_eq!(b.lpar("r1")["state"], "Act");
}
