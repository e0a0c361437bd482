//! WWN rollback: a live migration of an LPAR with FC ports that fails after
//! the suspension began leaves it `wwn-rollback-pending` (running on the
//! source, refusing other operations); `moverctl rollback-wwn` gives its
//! ports back their WWPN pairs and frees it.

mod agent_common;

use agent_common::{Agent, Hold, Scratch, stderr, wait_for};
use serde_json::json;
use std::time::Duration;

const FC: &str = "50:06:0e:80:12:34:56:01/50:06:0e:80:12:34:56:81";
/// The pair of `FC`, as the LPAR's device state must carry it.
const PAIR: (&str, &str) = ("50:06:0e:80:12:34:56:01", "50:06:0e:80:12:34:56:81");

/// The (WWPN, migration WWPN) of each logical FC HBA in the device state
/// `agent` holds for `lpar` (the sim backend's `devices.bin`): what the
/// LPAR's ports log in with, not the configuration they came from.
fn device_identities(agent: &Agent, lpar: &str) -> Vec<(String, String)> {
    let path = agent.state_dir.join("lpars").join(lpar).join("devices.bin");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let state = lpar_mover::state::DeviceState::decode(&bytes).expect("a device state");
    state
        .fc_hbas
        .iter()
        .map(|h| (h.wwpn.to_string(), h.migration_wwpn.to_string()))
        .collect()
}

fn pair() -> Vec<(String, String)> {
    vec![(PAIR.0.to_string(), PAIR.1.to_string())]
}

/// An agent with a shared FC port whose vfcIDs 1–8 are free.
fn fc_agent(scratch: &Scratch, name: &str, env: &[(&str, &str)]) -> Agent {
    let file = scratch.0.join(format!("{name}-fc.toml"));
    std::fs::write(
        &file,
        "[resources]\ncpus = 4\nmemory = \"1GiB\"\n\
         fc_ports = [{ name = \"fc0\", vfc_ids = [1, 2, 3, 4, 5, 6, 7, 8] }]\n",
    )
    .unwrap();
    let config = file.display().to_string();
    Agent::start_with_env(scratch, name, &["--config", &config], env)
}

fn fc_lpar(a: &Agent, name: &str) {
    a.ctl_json(&[
        "lpar",
        "create",
        name,
        "--memory",
        "64MiB",
        "--program",
        "hot:4MiB,content=random",
        "--fc-port",
        FC,
    ]);
    a.ctl_json(&["lpar", "activate", name]);
}

#[test]
fn a_live_migration_failing_after_suspension_needs_a_wwn_rollback_and_the_host_refuses_migrations_until_then()
 {
    let scratch = Scratch::new("wwn");
    let a = fc_agent(&scratch, "hostA", &[]);
    let mut b = fc_agent(&scratch, "hostB", &[("MOVERD_FAULT_KILL_AT", "0x5070")]);
    fc_lpar(&a, "w1");
    assert_eq!(device_identities(&a, "w1"), pair());

    // Another LPAR of the same host, with nothing to roll back.
    a.ctl_json(&["lpar", "create", "plain", "--memory", "16MiB"]);
    a.ctl_json(&["lpar", "activate", "plain"]);
    assert_eq!(a.ctl_json(&["rollback-wwn", "--list"])["lpars"], json!([]));

    let out = a.ctl(&["migrate", "w1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let l = a.lpar("w1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("wwn-rollback-pending"), Some(true))
    );
    for args in [
        vec!["migrate", "w1", "--to", b.addr.as_str()],
        vec!["lpar", "delete", "w1"],
    ] {
        let out = a.ctl(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("rollback-wwn"), "{}", stderr(&out));
    }

    // The WWN Status List names it with its pair.
    let list = a.ctl_json(&["rollback-wwn", "--list"]);
    assert_eq!(list["host"], "hostA", "{list}");
    assert_eq!(list["lpars"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["lpars"][0]["lpar"], "w1", "{list}");
    assert_eq!(list["lpars"][0]["fc_ports"][0]["wwpn"], PAIR.0, "{list}");
    // The host refuses every migration out of it, of the other LPAR too
    // and in either mode, with the manual's MMS `0x00 00000007 0020 02`.
    for mode in ["live", "shutdown"] {
        let out = a.ctl(&["migrate", "plain", "--to", &b.addr, "--mode", mode]);
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", stderr(&out));
        let e = stderr(&out);
        assert!(e.starts_with("EMG0000000007002002:"), "{mode}: {e}");
        assert!(
            e.contains("LPAR Migration was canceled. Migration WWNs are already used."),
            "{e}"
        );
        assert!(e.contains("w1"), "{e}");
    }
    assert_eq!(a.lpar("plain")["state"], "Act");

    // The source's LPAR carries its own pair throughout (the destination's
    // half-loaded copy never took it from it).
    assert_eq!(device_identities(&a, "w1"), pair());
    let r = a.ctl_json(&["rollback-wwn", "w1"]);
    assert_eq!(r["state"], "Act", "{r}");
    // What the reply says the ports went back to is what the device state
    // holds after the rollback.
    let replied: Vec<(String, String)> = r["fc_ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["wwpn"].as_str().unwrap().to_string(),
                p["migration_wwpn"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(replied, device_identities(&a, "w1"), "{r}");
    assert_eq!(device_identities(&a, "w1"), pair());
    let l = a.lpar("w1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    // Rolled back: the entry leaves the list.
    let out = a.ctl(&["rollback-wwn", "w1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(a.ctl_json(&["rollback-wwn", "--list"])["lpars"], json!([]));

    // The destination's half-loaded copy is recovered away; then the LPAR
    // migrates with its own WWPNs.
    b.restart();
    let r = b.ctl_json(&["recover", "w1", "--peer", &a.addr]);
    assert_eq!(r["runs_on"], "hostA", "{r}");
    a.ctl_json(&["migrate", "w1", "--to", &b.addr]);
    // The destination's LPAR logs in with the same pair; the source's
    // device state is gone.
    assert_eq!(device_identities(&b, "w1"), pair());
    assert!(!a.state_dir.join("lpars/w1").exists());
    // The refusal is lifted: the other LPAR leaves too.
    a.ctl_json(&["migrate", "plain", "--to", &b.addr, "--mode", "live"]);
    assert_eq!(b.lpar("plain")["state"], "Act");
}

#[test]
fn a_failure_before_suspension_leaves_no_wwns_to_roll_back() {
    let scratch = Scratch::new("wwn-early");
    let hold = Hold::new(&scratch, "wwn-early");
    let a = fc_agent(&scratch, "hostA", &hold.env());
    let b = fc_agent(&scratch, "hostB", &[]);
    fc_lpar(&a, "w2");
    let out = a.ctl_json(&["migrate", "w2", "--to", &b.addr, "--no-wait"]);
    let id = out["migration"].to_string();
    hold.wait_held(&a, &id);
    a.ctl_json(&["cancel", &id]);
    hold.release();
    wait_for("the cancel", Duration::from_secs(30), || {
        a.ctl_json(&["status", &id])["stage"] == 0x40e0
    });
    assert_eq!(a.lpar("w2")["state"], "Act");
}
