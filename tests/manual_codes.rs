//! The manual's codes and texts, as an operator sees them from `moverctl`
//! (issue 13: an operator looks an error up by its code and text).

mod agent_common;

use agent_common::{Agent, Scratch, define_running, stderr};

#[test]
fn a_migration_to_the_same_host_gets_the_manuals_one_code() {
    let scratch = Scratch::new("codes-same");
    let a = Agent::start(&scratch, "hostA", &[]);
    define_running(&a, "s1", "32MiB", "idle");
    for mode in ["live", "shutdown"] {
        let out = a.ctl(&["migrate", "s1", "--to", &a.addr, "--mode", mode]);
        assert_ne!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        let e = stderr(&out);
        // The checklist's item, or the refusal itself: the same words, and
        // the same code, MMS `0x00 00000003 0020 02`.
        assert!(
            e.contains("Source and destination are the same host (hostA)."),
            "{mode}: {e}"
        );
        if mode == "shutdown" {
            assert!(e.contains("EMG0000000003002002:"), "{mode}: {e}");
        }
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
    let out = a.ctl(&["--json", "validate", "u1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let usb = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == "usb")
        .unwrap_or_else(|| panic!("no usb item: {v}"));
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
