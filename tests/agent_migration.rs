//! Live migration between two `moverd serve` processes, driven only through
//! `moverctl` (and the protocol): the LPAR moves and keeps running; extend
//! and cancel work during stage 0x4050; the busy rule refuses a second
//! migration of the same LPAR; validation refuses, with the destination's
//! item, before anything moves.

mod agent_common;

use agent_common::{Agent, Hold, Scratch, define_running, stderr, wait_for};
use serde_json::Value;
use std::time::Duration;

fn guest_writes(agent: &Agent, lpar: &str) -> u64 {
    agent.lpar(lpar)["guest_writes"].as_u64().unwrap()
}

#[test]
fn live_migration_moves_the_running_lpar_to_the_other_agent() {
    let scratch = Scratch::new("live");
    let a = Agent::start(&scratch, "hostA", &["--memory", "1GiB"]);
    let b = Agent::start(&scratch, "hostB", &["--memory", "1GiB"]);
    define_running(&a, "web1", "256MiB", "hot:32MiB");
    std::thread::sleep(Duration::from_millis(300));

    let out = a.ctl_json(&["migrate", "web1", "--to", &b.addr, "--max-suspend-ms", "20"]);
    let report = &out["report"]["source"];
    assert_eq!(report["verified"], true, "{out}");
    assert_eq!(out["report"]["destination_agent"], "hostB");
    let suspension = report["suspension"]["total_ms"].as_f64().unwrap();
    eprintln!(
        "live migration of 256 MiB (hot:32MiB): total {:.1} ms, suspension {suspension:.3} ms, {} rounds",
        report["total_ms"].as_f64().unwrap(),
        report["rounds"].as_array().unwrap().len()
    );

    // The source released it; the destination runs it.
    assert!(
        a.lpar_names().is_empty(),
        "source still lists {:?}",
        a.lpar_names()
    );
    let l = b.lpar("web1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    let before = guest_writes(&b, "web1");
    wait_for(
        "the guest to write on the destination",
        Duration::from_secs(10),
        || guest_writes(&b, "web1") > before,
    );

    // The source's status says completed; extend is refused now (not 0x4050).
    let s = a.ctl_json(&["status", &out["migration"].to_string()]);
    assert_eq!(s["stage"], 0x40a0, "{s}");
    let refused = a.ctl(&["extend", &out["migration"].to_string(), "60"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("0x4050"), "{}", stderr(&refused));

    // And it can come back.
    let back = b.ctl_json(&["migrate", "web1", "--to", &a.addr]);
    assert_eq!(back["report"]["source"]["verified"], true);
    assert_eq!(a.lpar("web1")["state"], "Act");
    assert!(b.lpar_names().is_empty());
}

/// A migration that stays in 0x4050 until `hold` is released (`a` was
/// started with [`Hold::env`]).
fn slow_migration(a: &Agent, b: &Agent, hold: &Hold) -> String {
    define_running(a, "busy1", "64MiB", "hot:4MiB,content=random");
    let out = a.ctl_json(&[
        "migrate",
        "busy1",
        "--to",
        &b.addr,
        "--streams",
        "2",
        "--no-wait",
    ]);
    let id = out["migration"].to_string();
    hold.wait_held(a, &id);
    id
}

/// Starts a migration of `lpar` with a `timeout_s` deadline, held at 0x4050;
/// returns its id and when its deadline falls (at the latest).
fn held_migration_with_timeout(
    a: &Agent,
    b: &Agent,
    hold: &Hold,
    lpar: &str,
    timeout_s: u64,
) -> (String, std::time::Instant) {
    define_running(a, lpar, "32MiB", "hot:4MiB,content=random");
    let out = a.ctl_json(&[
        "migrate",
        lpar,
        "--to",
        &b.addr,
        "--timeout",
        &timeout_s.to_string(),
        "--no-wait",
    ]);
    // The deadline was set before the reply left the agent.
    let deadline = std::time::Instant::now() + Duration::from_secs(timeout_s);
    let id = out["migration"].to_string();
    hold.wait_held(a, &id);
    (id, deadline)
}

/// Whether migration `id` on `a` completed (0x40a0) or failed (0x40e0).
fn ended(a: &Agent, id: &str) -> bool {
    let stage = &a.ctl_json(&["status", id])["stage"];
    stage == 0x40a0 || stage == 0x40e0
}

/// Waits until `deadline` has passed by a second.
fn sleep_past(deadline: std::time::Instant) {
    let until = deadline + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        std::thread::sleep(until - std::time::Instant::now());
    }
}

#[test]
fn extend_moves_the_real_deadline_and_without_it_the_migration_times_out() {
    let scratch = Scratch::new("extend");
    let hold = Hold::new(&scratch, "extend");
    let a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);

    // Held in 0x4050 (the memory transfer cannot go on) with a 3 s
    // timeout, extended, then held past the old deadline: still in 0x4050,
    // and once released it completes.
    let (id, deadline) = held_migration_with_timeout(&a, &b, &hold, "ext1", 3);
    let r = a.ctl_json(&["extend", &id, "600"]);
    assert_eq!(r["timeout_s"], 603, "{r}");
    sleep_past(deadline);
    let s = a.ctl_json(&["status", &id]);
    assert_eq!(s["stage"], 0x4050, "{s}");
    hold.release();
    wait_for(
        "the extended migration to end",
        Duration::from_secs(60),
        || ended(&a, &id),
    );
    let s = a.ctl_json(&["status", &id]);
    assert_eq!(s["stage"], 0x40a0, "extended past its old deadline: {s}");
    assert_eq!(b.lpar("ext1")["state"], "Act");

    // The same without the extension: the deadline ends it, in 0x4050,
    // with the timeout's EMG, and the LPAR keeps running on the source.
    let (id, deadline) = held_migration_with_timeout(&a, &b, &hold, "ext2", 3);
    sleep_past(deadline);
    hold.release();
    wait_for(
        "the unextended migration to end",
        Duration::from_secs(60),
        || ended(&a, &id),
    );
    let s = a.ctl_json(&["status", &id]);
    assert_eq!(s["stage"], 0x40e0, "{s}");
    assert!(
        s["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("LPAR Migration process was canceled Memory write is intensive."),
        "{s}"
    );
    assert_eq!(a.lpar("ext2")["state"], "Act");
}

#[test]
fn during_memory_transfer_extend_works_a_second_migration_is_busy_and_cancel_keeps_the_source() {
    let scratch = Scratch::new("cancel");
    let hold = Hold::new(&scratch, "cancel");
    let a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);
    let id = slow_migration(&a, &b, &hold);

    // Extend: the timeout shown moves by exactly the extension (that it
    // moves the real deadline is the next test's).
    let before = a.ctl_json(&["status", &id])["timeout_s"].as_u64().unwrap();
    let r = a.ctl_json(&["extend", &id, "60"]);
    assert_eq!(r["timeout_s"].as_u64().unwrap(), before + 60);

    // Busy rules: a second migration and other operations are refused.
    let second = a.ctl(&["migrate", "busy1", "--to", &b.addr, "--no-wait"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("The specified LPAR is busy"),
        "{}",
        stderr(&second)
    );
    let delete = a.ctl(&["lpar", "delete", "busy1"]);
    assert_eq!(delete.status.code(), Some(1));
    // The destination holds the incoming LPAR as migrating meanwhile.
    assert_eq!(b.lpar("busy1")["state"], "migrating");

    // Monitor shows stage and progress events as JSON lines while it runs.
    let monitor = std::process::Command::new(env!("CARGO_BIN_EXE_moverctl"))
        .args(["--json", "--agent", &a.addr, "--token-file"])
        .arg(&a.token_file)
        .args(["monitor", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Cancel: the migration fails with "Terminated by user" (reason 0x20).
    a.ctl_json(&["cancel", &id]);
    hold.release();
    wait_for("the migration to end", Duration::from_secs(30), || {
        let s = a.ctl_json(&["status", &id]);
        s["stage"] == 0x40e0
    });
    let s = a.ctl_json(&["status", &id]);
    assert_eq!(s["error"]["reason"], 0x20, "{s}");
    let out = monitor.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "monitor ends with the failure");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["event"] == "MIGRATION_FAILED"),
        "{lines:?}"
    );

    // Source: still Act and running. Destination: clean.
    let l = a.lpar("busy1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    let w = l["guest_writes"].as_u64().unwrap();
    wait_for("the guest to keep writing", Duration::from_secs(10), || {
        guest_writes(&a, "busy1") > w
    });
    wait_for(
        "the destination to discard",
        Duration::from_secs(30),
        || b.lpar_names().is_empty(),
    );
    assert!(
        !b.state_dir.join("lpars/busy1").exists(),
        "destination files removed"
    );
}

#[test]
fn a_destination_short_of_memory_is_refused_by_validation_with_its_own_emg() {
    let scratch = Scratch::new("short");
    let a = Agent::start(&scratch, "hostA", &["--memory", "1GiB"]);
    let b = Agent::start(&scratch, "hostB", &["--memory", "64MiB"]);
    define_running(&a, "db1", "128MiB", "hot:8MiB");

    // The destination's item, with the manual's message, reaches the client;
    // refused by validation is exit 1.
    let out = a.ctl(&["migrate", "db1", "--to", &b.addr]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("memory (destination)"), "{err}");
    assert!(
        err.contains("there is not enough memory in the destination blade"),
        "{err}"
    );
    assert!(err.contains("64 MiB free of 64 MiB on hostB"), "{err}");
    assert!(
        err.contains("Action: Reserve enough amount of free memory"),
        "{err}"
    );

    // The same EMG, field by field, in JSON.
    let json = a.ctl(&["--json", "migrate", "db1", "--to", &b.addr]);
    assert_eq!(json.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["error"]["module"], "Management", "{v}");
    assert_eq!(v["error"]["phase"], 0x80, "{v}");

    // Nothing moved: the source still runs it, the destination has nothing.
    let l = a.lpar("db1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );
    assert!(b.lpar_names().is_empty());
}

#[test]
fn concurrent_migrations_of_one_lpar_admit_exactly_one() {
    let scratch = Scratch::new("concurrent");
    let hold = Hold::new(&scratch, "concurrent");
    let a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "hot1", "64MiB", "hot:4MiB,content=random");
    let mut conns: Vec<_> = (0..6).map(|_| a.connect()).collect();
    let barrier = std::sync::Barrier::new(conns.len());
    let replies: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .iter_mut()
            .map(|c| {
                let (barrier, to) = (&barrier, b.addr.clone());
                s.spawn(move || {
                    barrier.wait();
                    c.request(serde_json::json!({"id": 1, "execute": "migrate",
                        "arguments": {"lpar": "hot1", "to": to}}))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: Vec<&Value> = replies
        .iter()
        .filter(|r| r.get("return").is_some())
        .collect();
    assert_eq!(accepted.len(), 1, "{replies:?}");
    for r in replies.iter().filter(|r| r.get("error").is_some()) {
        assert_eq!(r["error"]["phase"], 0xF003, "{r}");
        assert_eq!(r["error"]["reason"], 0x101, "{r}");
    }
    let id = accepted[0]["return"]["migration"].to_string();
    hold.wait_held(&a, &id);
    a.ctl_json(&["cancel", &id]);
    hold.release();
    wait_for("the cancel", Duration::from_secs(30), || {
        a.lpar("hot1")["state"] == "Act"
    });
}

#[test]
fn a_host_in_a_migration_refuses_another_migration_in_or_out() {
    let scratch = Scratch::new("hostbusy");
    let hold = Hold::new(&scratch, "hostbusy");
    let a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);
    let c = Agent::start(&scratch, "hostC", &[]);
    let id = slow_migration(&a, &b, &hold);
    // Another LPAR out of the busy source, and another into the busy
    // destination: both refused with the manual's "blade is busy".
    define_running(&a, "other1", "32MiB", "hot:1MiB");
    define_running(&c, "other2", "32MiB", "hot:1MiB");
    for (from, lpar, to) in [(&a, "other1", &c), (&c, "other2", &b)] {
        let out = from.ctl(&["migrate", lpar, "--to", &to.addr, "--no-wait"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("The specified blade is busy"),
            "{}",
            stderr(&out)
        );
    }
    // Other LPARs on the busy host stay operable.
    a.ctl_json(&["lpar", "deactivate", "other1"]);
    a.ctl_json(&["cancel", &id]);
    hold.release();
    wait_for("the migration to end", Duration::from_secs(30), || {
        a.ctl_json(&["status", &id])["stage"] == 0x40e0
    });
    // Free again: the next migration out of host A is accepted.
    let out = c.ctl_json(&["migrate", "other2", "--to", &a.addr]);
    assert_eq!(out["report"]["source"]["verified"], true, "{out}");
}

#[test]
fn migrate_takes_a_migration_path_by_name() {
    let scratch = Scratch::new("paths");
    let a = Agent::start(&scratch, "hostA", &["--path", "alt=127.0.0.201"]);
    let b = Agent::start(&scratch, "hostB", &["--path", "alt=127.0.0.202"]);
    define_running(&a, "app1", "32MiB", "hot:1MiB");
    let out = a.ctl(&["migrate", "app1", "--to", &b.addr, "--path", "nosuch"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no migration path 'nosuch'"),
        "{}",
        stderr(&out)
    );
    let out = a.ctl_json(&[
        "migrate",
        "app1",
        "--to",
        &b.addr,
        "--path",
        "alt",
        "--bandwidth",
        "1Gbit/s",
    ]);
    assert_eq!(out["report"]["source"]["verified"], true, "{out}");
    assert_eq!(b.lpar("app1")["state"], "Act");
    // The report names the path, and every stream's socket ran between the
    // two hosts' `alt` addresses (not the default path's).
    let path = &out["report"]["path"];
    assert_eq!(path["name"], "alt", "{out}");
    let streams = path["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 4, "the default stream count: {out}");
    for s in streams {
        let ip = |end: &str| {
            s[end]
                .as_str()
                .unwrap()
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .ip()
                .to_string()
        };
        assert_eq!(
            (ip("local"), ip("remote")),
            ("127.0.0.201".to_string(), "127.0.0.202".to_string()),
            "{out}"
        );
    }
    // And back over the default path, which the report names instead.
    let back = b.ctl_json(&["migrate", "app1", "--to", &a.addr]);
    assert_ne!(back["report"]["path"]["name"], "alt", "{back}");
}

#[test]
fn deactivating_the_lpar_being_migrated_cancels_the_migration_and_deactivates_it() {
    // Table 5-2 note 1: "if the LPAR to migrate is deactivated or
    // reactivated, LPAR migration would be cancelled".
    let scratch = Scratch::new("deact-cancels");
    let hold = Hold::new(&scratch, "deact-cancels");
    let a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);
    let id = slow_migration(&a, &b, &hold);
    let deactivating = {
        let (addr, token) = (a.addr.clone(), a.token_file.clone());
        std::thread::spawn(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_moverctl"))
                .args(["--json", "--agent", &addr, "--token-file"])
                .arg(&token)
                .args(["lpar", "deactivate", "busy1"])
                .output()
                .unwrap()
        })
    };
    // The deactivation waits for the cancelled migration to end.
    wait_for("the cancel to be asked", Duration::from_secs(10), || {
        a.log().contains("cancelled by a (de)activation")
    });
    hold.release();
    let out = deactivating.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s = a.ctl_json(&["status", &id]);
    assert_eq!(
        (s["stage"].as_u64(), s["error"]["reason"].as_u64()),
        (Some(0x40e0), Some(0x20)),
        "{s}"
    );
    let l = a.lpar("busy1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Dea"), Some(false)),
        "{l}"
    );
    wait_for(
        "the destination to drop its copy",
        Duration::from_secs(30),
        || b.lpar_names().is_empty(),
    );
}

/// The bytes a file holds in memory (its allocated blocks).
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn an_lpar_backed_on_demand_migrates_so_and_each_host_holds_only_what_its_guest_wrote() {
    const MIB: u64 = 1 << 20;
    let scratch = Scratch::new("on-demand");
    let a = Agent::start(&scratch, "hostA", &["--memory", "4GiB"]);
    let b = Agent::start(&scratch, "hostB", &["--memory", "4GiB"]);
    let memory =
        |agent: &Agent, lpar: &str| agent.state_dir.join("lpars").join(lpar).join("memory");
    // Reserved (the default): all of its memory is the host's at once.
    a.ctl_json(&[
        "lpar",
        "create",
        "dedicated1",
        "--memory",
        "64MiB",
        "--program",
        "idle",
    ]);
    assert_eq!(allocated(&memory(&a, "dedicated1")), 64 * MIB);
    // On demand: only the 4 MiB working set and the 12 MiB it loads.
    a.ctl_json(&[
        "lpar",
        "create",
        "sparse1",
        "--memory",
        "2GiB",
        "--program",
        "hot:4MiB,resident=12MiB,rate=2000",
        "--memory-backing",
        "on-demand",
    ]);
    assert_eq!(allocated(&memory(&a, "sparse1")), 0);
    a.ctl_json(&["lpar", "activate", "sparse1"]);
    wait_for(
        "the guest to load its data",
        Duration::from_secs(20),
        || allocated(&memory(&a, "sparse1")) >= 16 * MIB,
    );

    let out = a.ctl_json(&["migrate", "sparse1", "--to", &b.addr]);
    assert_eq!(out["report"]["source"]["verified"], true, "{out}");
    let config = std::fs::read_to_string(b.state_dir.join("lpars/sparse1/config.json")).unwrap();
    assert!(config.contains("\"on-demand\""), "{config}");
    assert_eq!(b.lpar("sparse1")["memory_backing"], "on-demand");
    assert_eq!(a.lpar("dedicated1")["memory_backing"], "reserved");
    let held = allocated(&memory(&b, "sparse1"));
    assert!(
        (16 * MIB..20 * MIB).contains(&held),
        "the destination holds {held} bytes of a 2 GiB LPAR whose guest wrote 16 MiB"
    );
    // Bad input names the choices.
    let refused = a.ctl(&["lpar", "create", "x1", "--memory-backing", "lazy"]);
    assert!(
        stderr(&refused).contains("use reserved or on-demand"),
        "{}",
        stderr(&refused)
    );
}
