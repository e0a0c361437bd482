//! The recovery journal and `moverctl recover`, with agents as real
//! processes killed with SIGKILL at a chosen stage (`MOVERD_FAULT_KILL_AT`:
//! the agent kills itself right after journaling that stage).

mod agent_common;

use agent_common::{Agent, Hold, Scratch, exists, stderr, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The records of the latest journal of `lpar` under `agent`'s state dir.
fn journal(agent: &Agent, lpar: &str) -> Vec<Value> {
    let dir = agent.state_dir.join("journal").join(lpar);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let text = std::fs::read_to_string(files.last().expect("a journal")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each journal line is a record"))
        .collect()
}

fn stages(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r["record"] == "stage")
        .map(|r| r["stage"].as_u64().unwrap())
        .collect()
}

fn memory_file(agent: &Agent, lpar: &str) -> PathBuf {
    agent.state_dir.join("lpars").join(lpar).join("memory")
}

fn same_memory(a: &Path, b: &Path) -> bool {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    x.len() == y.len() && x == y
}

fn guest_writes(agent: &Agent, lpar: &str) -> u64 {
    agent.lpar(lpar)["guest_writes"].as_u64().unwrap()
}

fn running_lpar(a: &Agent, name: &str) {
    a.ctl_json(&[
        "lpar",
        "create",
        name,
        "--memory",
        "64MiB",
        "--program",
        "hot:4MiB,content=random",
    ]);
    a.ctl_json(&["lpar", "activate", name]);
}

#[test]
fn a_completed_migration_journals_every_stage_on_both_sides() {
    let scratch = Scratch::new("journal-ok");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    running_lpar(&a, "j1");
    a.ctl_json(&["migrate", "j1", "--to", &b.addr]);

    let src = journal(&a, "j1");
    assert_eq!(src[0]["record"], "begin");
    assert_eq!(
        (src[0]["side"].as_str(), src[0]["peer"].as_str()),
        (Some("source"), Some(b.addr.as_str()))
    );
    let s = stages(&src);
    for code in [
        0x4010, 0x4020, 0x4030, 0x4050, 0x4060, 0x4080, 0x4090, 0x40a0,
    ] {
        assert!(
            s.contains(&code),
            "source journal lacks 0x{code:04x}: {s:x?}"
        );
    }
    // In order, and the switch-over (commit) before the release.
    let pos = |c| s.iter().position(|x| *x == c).unwrap();
    assert!(pos(0x4060) < pos(0x4080) && pos(0x4080) < pos(0x4090));
    assert_eq!(src.last().unwrap()["outcome"], "completed");

    wait_for("the destination to finish", Duration::from_secs(10), || {
        journal(&b, "j1").last().unwrap()["record"] == "end"
    });
    let dst = journal(&b, "j1");
    assert_eq!(
        stages(&dst),
        vec![0x5030, 0x5050, 0x5070, 0x5080, 0x5090, 0x50a0]
    );
    assert_eq!(dst.last().unwrap()["outcome"], "completed");
}

#[test]
fn source_killed_after_commit_recovers_onto_the_destination() {
    let scratch = Scratch::new("src-commit");
    let mut a = Agent::start_with_env(
        &scratch,
        "hostA",
        &[],
        &[("MOVERD_FAULT_KILL_AT", "0x4080")],
    );
    let b = Agent::start(&scratch, "hostB", &[]);
    running_lpar(&a, "r1");
    let out = a.ctl(&["migrate", "r1", "--to", &b.addr]);
    assert!(!out.status.success(), "the source died mid-migration");

    // The journal, fsynced at each transition, ends at the commit record.
    let src = journal(&a, "r1");
    assert_eq!(
        stages(&src),
        vec![0x4010, 0x4020, 0x4030, 0x4050, 0x4060, 0x4080]
    );
    assert_ne!(src.last().unwrap()["record"], "end");

    // The destination had loaded and verified the image when the source
    // vanished: it cannot know whether Commit was sent, so it keeps its
    // paused copy as needs-recovery.
    wait_for(
        "the destination to give up",
        Duration::from_secs(30),
        || b.lpar("r1")["state"] == "needs-recovery",
    );
    a.restart();
    let l = a.lpar("r1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("needs-recovery"), Some(false))
    );
    assert_eq!(b.lpar("r1")["running"], false);
    // Until recovered it refuses other operations; a migration with the
    // manual's "damaged" message.
    for (args, says) in [
        (vec!["lpar", "activate", "r1"], "busy"),
        (
            vec!["migrate", "r1", "--to", b.addr.as_str()],
            "The specified LPAR is damaged (Migration LPAR). Recover the LPAR.",
        ),
    ] {
        let out = a.ctl(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    // Both paused: the destination holds the source's memory at pause.
    assert!(same_memory(&memory_file(&a, "r1"), &memory_file(&b, "r1")));

    // The manual's count of LPARs requiring recovery, then its closing text.
    let list = a.ctl(&["lpar", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.lines().last() == Some("LPARs requiring recovery: 1 LPARs"),
        "{text}"
    );
    let out = a.ctl(&["recover", "r1", "--peer", &b.addr]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("'r1' runs on hostB") && text.contains("ownership had passed"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "Recovery completed!"), "{text}");
    assert!(!text.contains("LPARs requiring recovery"), "{text}");
    assert!(a.lpar_names().is_empty());
    assert!(!exists(&a.state_dir.join("lpars").join("r1")));
    let l = b.lpar("r1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    let w = guest_writes(&b, "r1");
    wait_for(
        "the guest to run on at the destination",
        Duration::from_secs(10),
        || guest_writes(&b, "r1") > w,
    );
    assert_eq!(journal(&a, "r1").last().unwrap()["outcome"], "recovered");
    assert_eq!(journal(&b, "r1").last().unwrap()["outcome"], "recovered");
    // Recovered: a second recover is refused.
    let out = a.ctl(&["recover", "r1", "--peer", &b.addr]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn destination_killed_before_commit_recovers_onto_the_source() {
    let scratch = Scratch::new("dst-load");
    let a = Agent::start(&scratch, "hostA", &[]);
    let mut b = Agent::start_with_env(
        &scratch,
        "hostB",
        &[],
        &[("MOVERD_FAULT_KILL_AT", "0x5070")],
    );
    running_lpar(&a, "r2");
    let out = a.ctl(&["migrate", "r2", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Before commit: the source resumed the guest and says so.
    let l = a.lpar("r2");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    let src = journal(&a, "r2");
    let end = src.last().unwrap();
    assert_eq!(
        (end["outcome"].as_str(), end["resumed_here"].as_bool()),
        (Some("failed"), Some(true))
    );
    assert!(!stages(&src).contains(&0x4080));
    assert_eq!(stages(&journal(&b, "r2")).last(), Some(&0x5070));

    b.restart();
    assert_eq!(b.lpar("r2")["state"], "needs-recovery");
    let out = b.ctl(&["lpar", "delete", "r2"]);
    assert_eq!(out.status.code(), Some(1));
    // The destination's journal names the source agent, not its address.
    let out = b.ctl(&["recover", "r2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--peer"), "{}", stderr(&out));

    let r = b.ctl_json(&["recover", "r2", "--peer", &a.addr]);
    assert_eq!(
        (r["committed"].as_bool(), r["runs_on"].as_str()),
        (Some(false), Some("hostA")),
        "{r}"
    );
    assert!(b.lpar_names().is_empty());
    assert!(!exists(&b.state_dir.join("lpars").join("r2")));
    assert_eq!(a.lpar("r2")["state"], "Act");
    let w = guest_writes(&a, "r2");
    wait_for(
        "the guest to run on at the source",
        Duration::from_secs(10),
        || guest_writes(&a, "r2") > w,
    );
}

#[test]
fn an_lpar_must_be_deactivated_before_recovery() {
    let scratch = Scratch::new("rec-active");
    let hold = Hold::new(&scratch, "rec-active");
    let mut a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);
    running_lpar(&a, "r3");
    let out = a.ctl_json(&["migrate", "r3", "--to", &b.addr, "--no-wait"]);
    let id = out["migration"].to_string();
    hold.wait_held(&a, &id);
    a.kill9();
    a.restart();
    assert_eq!(a.lpar("r3")["state"], "needs-recovery");
    // The destination sees the source vanish and discards its copy (a copy
    // still migrating there is not recovery's to touch).
    wait_for(
        "the destination to discard",
        Duration::from_secs(60),
        || b.lpar_names().is_empty(),
    );
    // Held at 0x4050 the guest was never paused: the restarted agent
    // re-attaches it running, and recovery refuses an activated LPAR.
    assert_eq!(a.lpar("r3")["running"], true);
    let out = a.ctl(&["recover", "r3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("activated LPAR"), "{}", stderr(&out));
    assert_eq!(a.lpar("r3")["state"], "needs-recovery");
    a.ctl_json(&["lpar", "deactivate", "r3"]);
    assert_eq!(a.lpar("r3")["running"], false);
    // Before commit: the LPAR comes back on the source (the journal's peer
    // address is still the destination's).
    let r = a.ctl_json(&["recover", "r3"]);
    assert_eq!(
        (r["committed"].as_bool(), r["runs_on"].as_str()),
        (Some(false), Some("hostA")),
        "{r}"
    );
    let l = a.lpar("r3");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    wait_for(
        "the destination to hold nothing",
        Duration::from_secs(60),
        || b.lpar_names().is_empty(),
    );
}

#[test]
fn shutdown_mode_source_killed_before_or_after_the_destination_defined_it() {
    // 0x4080: journaled, the request not yet sent → stays on the source.
    // 0x4090: the destination defined it → it belongs to the destination.
    for (stage, runs_on) in [("0x4080", "hostA"), ("0x4090", "hostB")] {
        let scratch = Scratch::new(&format!("shut-{stage}"));
        let mut a =
            Agent::start_with_env(&scratch, "hostA", &[], &[("MOVERD_FAULT_KILL_AT", stage)]);
        let b = Agent::start(&scratch, "hostB", &[]);
        a.ctl_json(&["lpar", "create", "s1", "--memory", "32MiB"]);
        let out = a.ctl(&["migrate", "s1", "--to", &b.addr, "--mode", "shutdown"]);
        assert!(!out.status.success(), "{stage}");
        a.restart();
        assert_eq!(a.lpar("s1")["state"], "needs-recovery", "{stage}");
        let r = a.ctl_json(&["recover", "s1", "--peer", &b.addr]);
        assert_eq!(r["runs_on"], runs_on, "{stage}: {r}");
        let (winner, loser) = if runs_on == "hostA" {
            (&a, &b)
        } else {
            (&b, &a)
        };
        // A shutdown-mode LPAR stays deactivated wherever it lands.
        let l = winner.lpar("s1");
        assert_eq!(
            (l["state"].as_str(), l["running"].as_bool()),
            (Some("Dea"), Some(false)),
            "{stage}"
        );
        assert!(loser.lpar_names().is_empty(), "{stage}");
    }
}
