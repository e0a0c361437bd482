//! An agent killed with SIGKILL loses no LPAR: restarted on the same state
//! directory it re-attaches every LPAR (a running guest carries on), and an
//! LPAR that was migrating when it died needs recovery.

mod agent_common;

use agent_common::{Agent, Hold, Scratch, stderr, wait_for};
use std::time::Duration;

fn guest_writes(agent: &Agent, lpar: &str) -> u64 {
    agent.lpar(lpar)["guest_writes"].as_u64().unwrap()
}

#[test]
fn after_kill_9_the_restarted_agent_reattaches_its_lpars_and_the_guest_runs_on() {
    let scratch = Scratch::new("restart");
    let mut a = Agent::start(&scratch, "hostA", &[]);
    a.ctl_json(&[
        "lpar",
        "create",
        "run1",
        "--memory",
        "64MiB",
        "--program",
        "hot:4MiB",
    ]);
    a.ctl_json(&["lpar", "activate", "run1"]);
    a.ctl_json(&["lpar", "create", "idle1", "--memory", "32MiB"]);
    wait_for("the guest to write", Duration::from_secs(10), || {
        guest_writes(&a, "run1") > 1000
    });
    let before_kill = guest_writes(&a, "run1");

    a.kill9();
    a.restart();
    // The guest's registers are what it last committed before the kill:
    // its progress survived.
    let at_kill = guest_writes(&a, "run1");
    assert!(at_kill >= before_kill, "{at_kill} < {before_kill} writes");
    let l = a.lpar("run1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    wait_for(
        "the re-attached guest to carry on",
        Duration::from_secs(10),
        || guest_writes(&a, "run1") > at_kill,
    );
    assert_eq!(a.lpar("idle1")["state"], "Dea");
    assert_eq!(
        a.lpar_names(),
        vec!["idle1".to_string(), "run1".to_string()]
    );
    assert!(
        a.log().contains("re-attached LPAR 'run1' (Act)"),
        "{}",
        a.log()
    );
}

#[test]
fn an_lpar_migrating_when_its_agent_died_needs_recovery_after_restart() {
    let scratch = Scratch::new("midmigration");
    let hold = Hold::new(&scratch, "mid");
    let mut a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);
    a.ctl_json(&[
        "lpar",
        "create",
        "mig1",
        "--memory",
        "64MiB",
        "--program",
        "hot:4MiB,content=random",
    ]);
    a.ctl_json(&["lpar", "activate", "mig1"]);
    let out = a.ctl_json(&["migrate", "mig1", "--to", &b.addr, "--no-wait"]);
    let id = out["migration"].to_string();
    hold.wait_held(&a, &id);

    a.kill9();
    a.restart();
    assert_eq!(a.lpar("mig1")["state"], "needs-recovery");
    // Until recovered it refuses everything but deactivation.
    let out = a.ctl(&["lpar", "activate", "mig1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("recover"), "{}", stderr(&out));
    let out = a.ctl(&["migrate", "mig1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(1));
    let l = a.ctl_json(&["lpar", "deactivate", "mig1"]);
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("needs-recovery"), Some(false))
    );

    // The destination saw the source vanish before commit and discarded
    // its copy.
    wait_for(
        "the destination to discard",
        Duration::from_secs(60),
        || b.lpar_names().is_empty(),
    );
}

#[test]
fn a_destination_killed_mid_migration_leaves_the_lpar_running_on_the_source() {
    let scratch = Scratch::new("dstkill");
    let hold = Hold::new(&scratch, "dstkill");
    let a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let mut b = Agent::start(&scratch, "hostB", &[]);
    a.ctl_json(&[
        "lpar",
        "create",
        "mig2",
        "--memory",
        "64MiB",
        "--program",
        "hot:4MiB,content=random",
    ]);
    a.ctl_json(&["lpar", "activate", "mig2"]);
    let out = a.ctl_json(&["migrate", "mig2", "--to", &b.addr, "--no-wait"]);
    let id = out["migration"].to_string();
    hold.wait_held(&a, &id);

    b.kill9();
    hold.release();
    wait_for("the source to notice", Duration::from_secs(30), || {
        a.ctl_json(&["status", &id])["stage"] == 0x40e0
    });
    let s = a.ctl_json(&["status", &id]);
    assert_eq!(s["error"]["needs_recovery"], false, "{s}");
    let l = a.lpar("mig2");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    let w = guest_writes(&a, "mig2");
    wait_for(
        "the guest to run on at the source",
        Duration::from_secs(10),
        || guest_writes(&a, "mig2") > w,
    );

    // The restarted destination knows its copy was cut off mid-migration.
    b.restart();
    let l = b.lpar("mig2");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("needs-recovery"), Some(false))
    );
}
