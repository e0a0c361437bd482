//! Backup and restore of an agent's configuration (the manual's HVM
//! configuration backup): `moverctl backup FILE` / `restore FILE` bring the
//! inventory back as it was, every LPAR deactivated; a backup during a
//! migration is refused, as the manual says.

mod agent_common;

use agent_common::{Agent, Hold, Scratch, define_running, stderr};
use serde_json::Value;

/// (name, state, vCPUs, memory) of every LPAR, by name.
fn inventory(a: &Agent) -> Vec<(String, String, u64, u64)> {
    a.ctl_json(&["lpar", "list"])["lpars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["state"].as_str().unwrap().to_string(),
                l["vcpus"].as_u64().unwrap(),
                l["memory_bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_restored_backup_brings_the_inventory_back_as_it_was() {
    let scratch = Scratch::new("backup");
    let mut a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "web1", "32MiB", "hot:1MiB");
    a.ctl_json(&["lpar", "create", "db1", "--memory", "16MiB", "--vcpus", "1"]);
    let file = scratch.0.join("hostA.backup");
    let f = file.to_str().unwrap();
    let out = a.ctl(&["backup", f]);
    assert!(out.status.success(), "{}", stderr(&out));
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved["host"], "hostA");
    let numbers = |b: &Value| -> Vec<(String, u64)> {
        b["lpars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["name"].as_str().unwrap().to_string(),
                    l["config"]["number"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        numbers(&saved),
        [("db1".to_string(), 2), ("web1".to_string(), 1)]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the backup is private: {mode:o}");

    // Changed after the backup: one LPAR deleted, one added.
    a.ctl_json(&["lpar", "delete", "db1"]);
    a.ctl_json(&["lpar", "create", "tmp1", "--memory", "8MiB"]);

    // A running guest refuses the restore; another host's backup too.
    let out = a.ctl(&["restore", f]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("'web1' is activated"),
        "{}",
        stderr(&out)
    );
    let out = b.ctl(&["restore", f]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("duplicate"), "{}", stderr(&out));
    assert_eq!(a.lpar_names(), vec!["tmp1".to_string(), "web1".to_string()]);

    a.ctl_json(&["lpar", "deactivate", "web1"]);
    let r = a.ctl_json(&["restore", f]);
    assert_eq!(r["removed"], serde_json::json!(["tmp1"]), "{r}");
    assert_eq!(r["redefined"], serde_json::json!(["db1"]), "{r}");
    let expected = vec![
        ("db1".to_string(), "Dea".to_string(), 1, 16 << 20),
        ("web1".to_string(), "Dea".to_string(), 2, 32 << 20),
    ];
    assert_eq!(inventory(&a), expected);
    // As persisted: a restarted agent holds the same inventory, and the
    // restored LPARs run.
    a.restart();
    assert_eq!(inventory(&a), expected);
    assert!(!a.state_dir.join("lpars/tmp1").exists());
    a.ctl_json(&["lpar", "activate", "db1"]);
    a.ctl_json(&["lpar", "activate", "web1"]);
    assert_eq!(a.lpar("web1")["running"], true);

    // LPAR numbers: a new LPAR takes the youngest free one, so a deletion
    // never makes two LPARs share a number.
    a.ctl_json(&["lpar", "create", "n3", "--memory", "8MiB"]);
    a.ctl_json(&["lpar", "deactivate", "web1"]);
    a.ctl_json(&["lpar", "delete", "web1"]);
    a.ctl_json(&["lpar", "create", "n1", "--memory", "8MiB"]);
    a.ctl_json(&["lpar", "create", "n4", "--memory", "8MiB"]);
    let out = a.ctl(&["backup", f]);
    assert!(out.status.success(), "{}", stderr(&out));
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let pairs = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(n, k)| (n.to_string(), *k)).collect()
    };
    assert_eq!(
        numbers(&saved),
        pairs(&[("db1", 2), ("n1", 1), ("n3", 3), ("n4", 4)])
    );
}

#[test]
fn a_backup_during_a_migration_is_refused() {
    let scratch = Scratch::new("backup-busy");
    let hold = Hold::new(&scratch, "backup-busy");
    let a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "web1", "32MiB", "hot:1MiB");
    let file = scratch.0.join("during.backup");
    let f = file.to_str().unwrap();
    let out = a.ctl_json(&["migrate", "web1", "--to", &b.addr, "--no-wait"]);
    let id = out["migration"].to_string();
    hold.wait_held(&a, &id);
    for agent in [&a, &b] {
        let out = agent.ctl(&["backup", f]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let e = stderr(&out);
        // The manual's "blade is busy", MMS `0x00 00000002 0020 02`.
        assert!(e.starts_with("EMG0000000002002002:"), "{e}");
        assert!(e.contains("defective"), "{e}");
        assert!(!file.exists());
    }
    hold.release();
    agent_common::wait_for(
        "the migration to end",
        std::time::Duration::from_secs(60),
        || b.lpar_names() == vec!["web1".to_string()] && b.lpar("web1")["state"] == "Act",
    );
    let out = b.ctl(&["backup", f]);
    assert!(out.status.success(), "{}", stderr(&out));
}
