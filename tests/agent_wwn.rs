//! WWN rollback: a live migration of an LPAR with FC ports that fails after
//! the suspension began leaves it `wwn-rollback-pending` (running on the
//! source, refusing other operations); `moverctl rollback-wwn` gives its
//! ports back their WWPN pairs and frees it.

mod agent_common;

use agent_common::{Agent, Hold, Scratch, stderr, wait_for};
use std::time::Duration;

const FC: &str = "50:06:0e:80:12:34:56:01/50:06:0e:80:12:34:56:81";

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
fn a_live_migration_failing_after_suspension_needs_a_wwn_rollback() {
    let scratch = Scratch::new("wwn");
    let a = fc_agent(&scratch, "hostA", &[]);
    let mut b = fc_agent(&scratch, "hostB", &[("MOVERD_FAULT_KILL_AT", "0x5070")]);
    fc_lpar(&a, "w1");
    let configured = a.lpar("w1")["fc_ports"].clone();
    assert_eq!(
        configured[0]["wwpn"], "50:06:0e:80:12:34:56:01",
        "{configured}"
    );

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

    let r = a.ctl_json(&["rollback-wwn", "w1"]);
    assert_eq!(r["state"], "Act", "{r}");
    assert_eq!(r["fc_ports"][0]["wwpn"], configured[0]["wwpn"]);
    assert_eq!(
        r["fc_ports"][0]["migration_wwpn"],
        configured[0]["migration_wwpn"]
    );
    assert_eq!(a.lpar("w1")["state"], "Act");
    // Rolled back: the entry leaves the list.
    let out = a.ctl(&["rollback-wwn", "w1"]);
    assert_eq!(out.status.code(), Some(1));

    // The destination's half-loaded copy is recovered away; then the LPAR
    // migrates with its own WWPNs.
    b.restart();
    let r = b.ctl_json(&["recover", "w1", "--peer", &a.addr]);
    assert_eq!(r["runs_on"], "hostA", "{r}");
    a.ctl_json(&["migrate", "w1", "--to", &b.addr]);
    assert_eq!(b.lpar("w1")["fc_ports"], configured);
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
