//! Policy migration, return migration, history and auto-destination,
//! between real `moverd serve` processes driven through `moverctl`: which
//! entries ran and where every LPAR ends up, for each `on_failure`; stop
//! after the current entry, then the operator's Continue; Retry, Skip or
//! End after a failed entry (`policy resume`); a mixed-mode policy refused; an LPAR sent back
//! to where it came from with both moves in its history; the destination
//! chosen by free memory.

mod agent_common;

use agent_common::{Agent, Hold, Scratch, define_running, stderr, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn write_policy(scratch: &Scratch, name: &str, text: &str) -> PathBuf {
    let p = scratch.0.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// `moverctl --json policy run <file>` on `agent`: exit code and result.
fn run_policy(agent: &Agent, file: &Path) -> (Option<i32>, Value) {
    let out = agent.ctl(&["--json", "policy", "run", file.to_str().unwrap()]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "policy run printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    });
    (out.status.code(), v)
}

fn statuses(result: &Value) -> Vec<(String, String, u64)> {
    result["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["lpar"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
                e["attempts"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn s(lpar: &str, status: &str, attempts: u64) -> (String, String, u64) {
    (lpar.to_string(), status.to_string(), attempts)
}

fn three_entries(on_failure: &str, first: &str, second: &str, third: &str, to: &str) -> String {
    let mut p = format!("mode = \"live\"\n{on_failure}\n");
    for (lpar, dest) in [(first, to), (second, to), (third, to)] {
        p.push_str(&format!("[[entry]]\nlpar = \"{lpar}\"\nto = \"{dest}\"\n"));
    }
    p
}

#[test]
fn a_failing_entry_is_retried_skipped_or_ends_the_policy_as_on_failure_says() {
    let scratch = Scratch::new("policy-onfail");
    let a = Agent::start(&scratch, "hostA", &["--memory", "1GiB"]);
    let b = Agent::start(&scratch, "hostB", &["--memory", "1GiB"]);
    // C has room for the small LPARs only.
    let c = Agent::start(&scratch, "hostC", &["--memory", "64MiB"]);
    for l in ["r1", "r3", "s1", "s3", "e1", "e3"] {
        define_running(&a, l, "32MiB", "hot:4MiB");
    }
    define_running(&a, "big1", "128MiB", "idle");

    // retry ×2: the nonexistent LPAR is tried three times, then the policy
    // ends; the third entry never runs.
    let file = write_policy(
        &scratch,
        "retry",
        &three_entries(
            "on_failure = \"retry\"\nretries = 2",
            "r1",
            "ghost",
            "r3",
            &b.addr,
        ),
    );
    let (code, r) = run_policy(&a, &file);
    assert_eq!(code, Some(2), "{r}");
    assert_eq!(r["outcome"], "ended", "{r}");
    assert_eq!(
        statuses(&r),
        [
            s("r1", "completed", 1),
            s("ghost", "failed", 3),
            s("r3", "not-run", 0)
        ]
    );
    assert!(
        r["entries"][1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not defined"),
        "{r}"
    );

    // skip: the destination short of memory fails entry 2 during the
    // migration; entry 3 still runs.
    let mut text = String::from("mode = \"live\"\non_failure = \"skip\"\n");
    for (lpar, to) in [("s1", &c.addr), ("big1", &c.addr), ("s3", &b.addr)] {
        text.push_str(&format!("[[entry]]\nlpar = \"{lpar}\"\nto = \"{to}\"\n"));
    }
    let (code, r) = run_policy(&a, &write_policy(&scratch, "skip", &text));
    assert_eq!(code, Some(2), "{r}");
    assert_eq!(r["outcome"], "failed", "{r}");
    assert_eq!(
        statuses(&r),
        [
            s("s1", "completed", 1),
            s("big1", "failed", 1),
            s("s3", "completed", 1)
        ]
    );
    // Validation refuses it before anything moves.
    let e = &r["entries"][1]["error"];
    assert!(
        e["message"].as_str().unwrap().contains("not enough memory"),
        "{r}"
    );
    assert!(e["action"].as_str().unwrap().len() > 10, "{r}");

    // end: stops at the failed entry.
    let file = write_policy(
        &scratch,
        "end",
        &three_entries("on_failure = \"end\"", "e1", "ghost", "e3", &b.addr),
    );
    let (code, r) = run_policy(&a, &file);
    assert_eq!(code, Some(2), "{r}");
    assert_eq!(r["outcome"], "ended", "{r}");
    assert_eq!(
        statuses(&r),
        [
            s("e1", "completed", 1),
            s("ghost", "failed", 1),
            s("e3", "not-run", 0)
        ]
    );

    // Final placement of every LPAR.
    assert_eq!(b.lpar_names(), ["e1", "r1", "s3"]);
    assert_eq!(c.lpar_names(), ["s1"]);
    assert_eq!(a.lpar_names(), ["big1", "e3", "r3"]);
    assert_eq!(a.lpar("big1")["state"], "Act");
    for l in ["e1", "r1", "s3"] {
        assert_eq!(b.lpar(l)["running"], true, "{l}");
    }

    // A policy whose entries all complete exits 0; text mode prints the table.
    let file = write_policy(
        &scratch,
        "home",
        &format!(
            "mode = \"live\"\n[[entry]]\nlpar = \"s1\"\nfrom = \"{}\"\nto = \"{}\"\n",
            c.addr, a.addr
        ),
    );
    let out = b.ctl(&["policy", "run", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("completed") && text.contains("s1"), "{text}");
    assert!(a.lpar_names().contains(&"s1".to_string()));
}

#[test]
fn a_policy_mixing_shutdown_and_live_entries_is_refused_and_moves_nothing() {
    let scratch = Scratch::new("policy-mixed");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "web1", "32MiB", "idle");
    let file = write_policy(
        &scratch,
        "mixed",
        &format!(
            "mode = \"live\"\n[[entry]]\nlpar = \"web1\"\nto = \"{0}\"\n\
             [[entry]]\nlpar = \"web2\"\nto = \"{0}\"\nmode = \"shutdown\"\n",
            b.addr
        ),
    );
    let out = a.ctl(&["policy", "run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot be mixed"), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("EMG"), "{}", stderr(&out));
    assert_eq!(a.lpar_names(), ["web1"]);
    assert!(b.lpar_names().is_empty());
}

#[test]
fn stop_ends_the_policy_after_the_entry_in_progress() {
    let scratch = Scratch::new("policy-stop");
    // The first entry's memory transfer is held until the test lets it go.
    let holds = [Hold::new(&scratch, "a"), Hold::new(&scratch, "b")];
    let a = Agent::start_with_env(&scratch, "hostA", &["--memory", "1GiB"], &holds[0].env());
    let b = Agent::start_with_env(&scratch, "hostB", &["--memory", "1GiB"], &holds[1].env());
    define_running(&a, "slow1", "32MiB", "sweep,content=random,writes=8192");
    for l in ["n2", "n3"] {
        define_running(&a, l, "16MiB", "idle");
    }
    let policy = |from: &Agent, to: &Agent| {
        let mut p = String::from("mode = \"live\"\n");
        p.push_str(&format!(
            "[[entry]]\nlpar = \"slow1\"\nfrom = \"{}\"\nto = \"{}\"\nbandwidth = \"128MiB\"\n",
            from.addr, to.addr
        ));
        for l in ["n2", "n3"] {
            p.push_str(&format!(
                "[[entry]]\nlpar = \"{l}\"\nto = \"{}\"\n",
                to.addr
            ));
        }
        p
    };
    std::thread::sleep(Duration::from_millis(300));

    for (how, from, to, hold) in [
        ("stop-command", &a, &b, &holds[0]),
        ("sigint", &b, &a, &holds[1]),
    ] {
        let file = write_policy(&scratch, how, &policy(from, to));
        let child = Command::new(env!("CARGO_BIN_EXE_moverctl"))
            .args(["--agent", &from.addr, "--token-file"])
            .arg(&from.token_file)
            .args(["--json", "policy", "run", file.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(
            "the first entry's memory transfer",
            Duration::from_secs(20),
            || {
                from.ctl_json(&["status"])["migrations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["lpar"] == "slow1" && m["side"] == "source" && m["stage"] == 0x4050)
            },
        );
        if how == "sigint" {
            // SAFETY: signals the moverctl child this test started.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        } else {
            let out = a.ctl(&["policy", "stop", file.to_str().unwrap()]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
        hold.release();
        let out = child.wait_with_output().unwrap();
        let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "{how}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            )
        });
        assert_eq!(out.status.code(), Some(2), "{how}: {r}");
        assert_eq!(r["outcome"], "stopped", "{how}: {r}");
        assert_eq!(
            statuses(&r),
            [
                s("slow1", "completed", 1),
                s("n2", "not-run", 0),
                s("n3", "not-run", 0)
            ],
            "{how}"
        );
        // The entry in progress finished: slow1 moved, n2 and n3 did not.
        assert_eq!(to.lpar("slow1")["state"], "Act", "{how}");
        assert!(!from.lpar_names().contains(&"slow1".to_string()), "{how}");
        assert_eq!(r["resumable"], true, "{how}: {r}");
        if how == "stop-command" {
            // The manual's Continue: the rest runs from where it stopped
            // (a failed entry's choices do not apply).
            let out = a.ctl(&["policy", "resume", file.to_str().unwrap(), "--retry"]);
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            // Agent A holds every migration at 0x4050: let each go.
            let mut child = Command::new(env!("CARGO_BIN_EXE_moverctl"))
                .args(["--agent", &a.addr, "--token-file"])
                .arg(&a.token_file)
                .args(["--json", "policy", "resume", file.to_str().unwrap()])
                .arg("--continue")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            while child.try_wait().unwrap().is_none() {
                hold.release();
                std::thread::sleep(Duration::from_millis(50));
            }
            let out = child.wait_with_output().unwrap();
            let r: Value =
                serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)));
            assert_eq!(out.status.code(), Some(0), "{r}");
            assert_eq!(r["outcome"], "completed", "{r}");
            assert_eq!(
                statuses(&r),
                [
                    s("slow1", "completed", 1),
                    s("n2", "completed", 1),
                    s("n3", "completed", 1)
                ]
            );
            assert_eq!(r["resumable"], false, "{r}");
        }
    }
    assert_eq!(a.lpar_names(), ["slow1"]);
    assert_eq!(b.lpar_names(), ["n2", "n3"]);
}

/// `moverctl --json policy resume <file> <choice>`: exit code and result.
fn resume(agent: &Agent, file: &Path, choice: &str) -> (Option<i32>, Value) {
    let out = agent.ctl(&["--json", "policy", "resume", file.to_str().unwrap(), choice]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "policy resume printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    });
    (out.status.code(), v)
}

#[test]
fn after_a_failed_entry_the_operator_retries_skips_or_ends_the_policy() {
    let scratch = Scratch::new("policy-resume");
    let a = Agent::start(&scratch, "hostA", &["--memory", "1GiB"]);
    let b = Agent::start(&scratch, "hostB", &["--memory", "1GiB"]);
    for l in ["p1", "p3", "q2", "e2", "c2"] {
        define_running(&a, l, "16MiB", "idle");
    }

    // Retry after fixing the cause: the missing LPAR is defined, the
    // failed entry runs again (its attempts add up), then the rest.
    let file = write_policy(
        &scratch,
        "retry",
        &three_entries("", "p1", "ghost", "p3", &b.addr),
    );
    let (code, r) = run_policy(&a, &file);
    assert_eq!((code, &r["outcome"]), (Some(2), &"ended".into()), "{r}");
    assert_eq!(r["resumable"], true, "{r}");
    // Continue is for a stop: a failed entry needs a choice about it.
    let out = a.ctl(&["policy", "resume", file.to_str().unwrap(), "--continue"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--retry"), "{}", stderr(&out));
    define_running(&a, "ghost", "16MiB", "idle");
    let (code, r) = resume(&a, &file, "--retry");
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(
        statuses(&r),
        [
            s("p1", "completed", 1),
            s("ghost", "completed", 2),
            s("p3", "completed", 1)
        ]
    );
    assert_eq!(r["outcome"], "completed");
    // Done: nothing left to resume.
    let out = a.ctl(&["policy", "resume", file.to_str().unwrap(), "--retry"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // Skip: the failed entry stays failed, the rest runs.
    let file = write_policy(
        &scratch,
        "skip",
        &format!(
            "mode = \"live\"\n[[entry]]\nlpar = \"nobody\"\nto = \"{0}\"\n[[entry]]\nlpar = \"q2\"\nto = \"{0}\"\n",
            b.addr
        ),
    );
    let (code, _) = run_policy(&a, &file);
    assert_eq!(code, Some(2));
    let (code, r) = resume(&a, &file, "--skip");
    assert_eq!((code, &r["outcome"]), (Some(2), &"failed".into()), "{r}");
    assert_eq!(
        statuses(&r),
        [s("nobody", "failed", 1), s("q2", "completed", 1)]
    );
    assert_eq!(r["resumable"], false, "{r}");

    // End: the policy ends there; the rest never runs.
    let text = format!(
        "mode = \"live\"\n[[entry]]\nlpar = \"nobody\"\nto = \"{0}\"\n[[entry]]\nlpar = \"e2\"\nto = \"{0}\"\n",
        b.addr
    );
    let file = write_policy(&scratch, "end", &text);
    run_policy(&a, &file);
    let (code, r) = resume(&a, &file, "--end");
    assert_eq!((code, &r["outcome"]), (Some(2), &"ended".into()), "{r}");
    assert_eq!(
        statuses(&r),
        [s("nobody", "failed", 1), s("e2", "not-run", 0)]
    );
    let out = a.ctl(&["policy", "resume", file.to_str().unwrap(), "--skip"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // A policy file edited since it stopped: its position no longer applies.
    let file = write_policy(&scratch, "edited", &text.replace("e2", "c2"));
    run_policy(&a, &file);
    std::fs::write(&file, text.replace("e2", "c2") + "# edited\n").unwrap();
    let out = a.ctl(&["policy", "resume", file.to_str().unwrap(), "--skip"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("changed"), "{}", stderr(&out));

    assert_eq!(b.lpar_names(), ["ghost", "p1", "p3", "q2"]);
    assert_eq!(a.lpar_names(), ["c2", "e2"]);
}

#[test]
fn return_brings_the_lpar_back_and_its_history_shows_both_moves() {
    let scratch = Scratch::new("policy-return");
    let mut a = Agent::start(&scratch, "hostA", &["--memory", "1GiB"]);
    let b = Agent::start(&scratch, "hostB", &["--memory", "1GiB"]);
    define_running(&a, "web1", "64MiB", "hot:8MiB");
    std::thread::sleep(Duration::from_millis(200));

    a.ctl_json(&["migrate", "web1", "--to", &b.addr]);
    // B hosts it now and knows where it came from.
    let h = b.ctl_json(&["history", "web1"]);
    let moves = h["migrations"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "{h}");
    assert_eq!(
        (&moves[0]["source_agent"], &moves[0]["destination_agent"]),
        (&Value::from("hostA"), &Value::from("hostB"))
    );
    assert_eq!(moves[0]["source_address"], a.addr.as_str());

    let back = b.ctl_json(&["return", "web1"]);
    assert_eq!(back["report"]["source"]["verified"], true, "{back}");
    assert_eq!(back["report"]["destination_agent"], "hostA");
    assert_eq!(a.lpar("web1")["state"], "Act");
    assert!(b.lpar_names().is_empty());

    // A's history, after a crash and restart too: both moves, in order,
    // each with its times, outcome and suspension.
    // B's record of the return (with its suspension) follows the event.
    wait_for("hostB's record on hostA", Duration::from_secs(10), || {
        a.ctl_json(&["history", "web1"])["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["suspension_ms"].is_f64())
    });
    a.restart();
    let h = a.ctl_json(&["history", "web1"]);
    let moves = h["migrations"].as_array().unwrap();
    let route: Vec<(&str, &str, &str)> = moves
        .iter()
        .map(|m| {
            (
                m["source_agent"].as_str().unwrap(),
                m["destination_agent"].as_str().unwrap(),
                m["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        route,
        [
            ("hostA", "hostB", "completed"),
            ("hostB", "hostA", "completed")
        ],
        "{h}"
    );
    for m in moves {
        assert_eq!(m["mode"], "live");
        assert!(m["ended_ns"].as_u64().unwrap() > m["started_ns"].as_u64().unwrap());
        let suspension = m["suspension_ms"].as_f64().unwrap();
        assert!(suspension > 0.0 && suspension < 10_000.0, "{m}");
    }
    eprintln!(
        "return migration: suspensions {:.3} ms and {:.3} ms",
        moves[0]["suspension_ms"].as_f64().unwrap(),
        moves[1]["suspension_ms"].as_f64().unwrap()
    );
    // B recorded its side of both moves as well.
    assert_eq!(
        b.ctl_json(&["history", "web1"])["migrations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A cancelled migration is in the history too, with its EMG.
    let hold = Hold::new(&scratch, "return");
    a.restart_with_env(&hold.env());
    let out = a.ctl_json(&["migrate", "web1", "--to", &b.addr, "--no-wait"]);
    let id = out["migration"].to_string();
    hold.wait_held(&a, &id);
    a.ctl_json(&["cancel", &id]);
    hold.release();
    wait_for(
        "the cancelled migration in the history",
        Duration::from_secs(30),
        || {
            a.ctl_json(&["history", "web1"])["migrations"]
                .as_array()
                .unwrap()
                .len()
                == 3
        },
    );
    let h = a.ctl_json(&["history", "web1"]);
    let last = &h["migrations"][2];
    assert_eq!(last["outcome"], "cancelled", "{h}");
    assert_eq!(last["error"]["reason"], 0x20, "{h}");
    assert_eq!(a.lpar("web1")["state"], "Act");

    // An LPAR without a migration into this host has nowhere to return to.
    let out = a.ctl(&["return", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no completed migration"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn auto_destination_picks_the_candidate_with_room() {
    let scratch = Scratch::new("policy-auto");
    let a = Agent::start(&scratch, "hostA", &["--memory", "1GiB"]);
    let small = Agent::start(&scratch, "hostS", &["--memory", "64MiB"]);
    let roomy = Agent::start(&scratch, "hostR", &["--memory", "512MiB"]);
    define_running(&a, "app1", "128MiB", "idle");

    // Too big for everyone: refused, with each candidate's reason.
    define_running(&a, "huge", "768MiB", "idle");
    let candidates = format!("{},{},{}", a.addr, small.addr, roomy.addr);
    let out = a.ctl(&[
        "migrate",
        "huge",
        "--auto-destination",
        "--candidates",
        &candidates,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no candidate host has room"), "{err}");
    assert!(
        err.contains("is the source host") && err.contains("free, needs"),
        "{err}"
    );

    let out = a.ctl_json(&[
        "migrate",
        "app1",
        "--auto-destination",
        "--candidates",
        &candidates,
    ]);
    assert_eq!(out["report"]["destination_agent"], "hostR", "{out}");
    assert_eq!(roomy.lpar("app1")["state"], "Act");
    assert!(small.lpar_names().is_empty());
}

#[test]
fn a_shutdown_policy_moves_each_lpar_deactivated() {
    let scratch = Scratch::new("policy-shutdown");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    // One running guest (shut down first) and one already deactivated.
    define_running(&a, "web1", "32MiB", "hot:1MiB,rate=1000");
    a.ctl_json(&[
        "lpar",
        "create",
        "db1",
        "--memory",
        "32MiB",
        "--program",
        "idle",
    ]);
    let file = write_policy(
        &scratch,
        "shutdown",
        &format!(
            "mode = \"shutdown\"\n[[entry]]\nlpar = \"web1\"\nto = \"{0}\"\n\
             [[entry]]\nlpar = \"db1\"\nto = \"{0}\"\n",
            b.addr
        ),
    );
    let (code, result) = run_policy(&a, &file);
    assert_eq!(code, Some(0), "{result}");
    assert_eq!(
        statuses(&result),
        [s("web1", "completed", 1), s("db1", "completed", 1)]
    );
    assert!(a.lpar_names().is_empty(), "{:?}", a.lpar_names());
    for lpar in ["web1", "db1"] {
        assert_eq!(b.lpar(lpar)["state"], "Dea", "{lpar}");
    }
}
