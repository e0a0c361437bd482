//! The agent's state on disk under what an unlucky host does to it: a full
//! file system, a save that fails, a torn journal, stray directories, an
//! inventory of another version, names that try to leave the state
//! directory. Real `moverd serve` processes throughout.

mod agent_common;
mod common;

use agent_common::{Agent, Hold, Scratch, define_running, refused_start, stderr, wait_for};
use common::SmallTmpfs;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn serve_args<'a>(scratch: &'a Scratch, state: &'a str, token: &'a str) -> Vec<&'a str> {
    let _ = scratch;
    vec![
        "serve",
        "--name",
        "hostA",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state,
        "--token-file",
        token,
        "--insecure-plaintext-management",
    ]
}

/// Every directory under `dir` is 0700 and every file 0600.
fn assert_private(dir: &Path) {
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            assert_private(&p);
        } else {
            let mode = m.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
        }
    }
}

#[test]
fn state_files_are_private_to_the_agent() {
    let scratch = Scratch::new("modes");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "m1", "32MiB", "hot:1MiB");
    a.ctl_json(&["migrate", "m1", "--to", &b.addr]);
    b.ctl_json(&["lpar", "create", "m2", "--memory", "16MiB"]);
    // Guest memory, inventory, journals, history: nobody else's business
    // (the state directories themselves are the test's, 0755).
    for agent in [&a, &b] {
        for e in std::fs::read_dir(&agent.state_dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert_private(&p);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
            }
        }
        assert!(agent.log().contains("is open to others"), "{}", agent.log());
    }
}

#[test]
fn a_failed_save_changes_nothing_in_the_inventory() {
    let scratch = Scratch::new("failsave");
    let a = Agent::start(&scratch, "hostA", &[]);
    a.ctl_json(&["lpar", "create", "keep1", "--memory", "16MiB"]);
    // A directory where the inventory's temporary file goes: every save fails.
    let blocker = a.state_dir.join("inventory.json.tmp");
    std::fs::create_dir(&blocker).unwrap();

    let out = a.ctl(&["lpar", "delete", "keep1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot save the inventory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(a.lpar_names(), vec!["keep1".to_string()]);
    assert!(a.state_dir.join("lpars/keep1/memory").exists());

    let out = a.ctl(&["lpar", "activate", "keep1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let l = a.lpar("keep1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Dea"), Some(false))
    );

    let out = a.ctl(&["lpar", "create", "new1", "--memory", "16MiB"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(a.lpar_names(), vec!["keep1".to_string()]);
    assert!(
        !a.state_dir.join("lpars/new1").exists(),
        "files of a refused create"
    );
    let r = a
        .connect()
        .request(json!({"id": 1, "execute": "host-resources"}));
    let r = &r["return"];
    assert_eq!(
        r["memory_free_bytes"].as_u64(),
        r["memory_bytes"].as_u64().map(|m| m - (16 << 20)),
        "{r}"
    );

    std::fs::remove_dir(&blocker).unwrap();
    a.ctl_json(&["lpar", "delete", "keep1"]);
    assert!(a.lpar_names().is_empty());
}

#[test]
fn an_inventory_of_an_unknown_version_or_lost_is_refused_and_orphans_are_collected() {
    let scratch = Scratch::new("invversion");
    let mut a = Agent::start(&scratch, "hostA", &[]);
    a.ctl_json(&["lpar", "create", "kept", "--memory", "16MiB"]);
    a.kill9();
    let state = a.state_dir.clone();
    let token = scratch.token_file();
    let (state_s, token_s) = (state.display().to_string(), token.display().to_string());

    // A directory the inventory does not know (a crash between creating the
    // files and saving the inventory): collected at start, and logged.
    let ghost = state.join("lpars/ghost");
    std::fs::create_dir_all(&ghost).unwrap();
    std::fs::write(ghost.join("memory"), vec![7u8; 1 << 20]).unwrap();
    a.restart();
    assert!(!ghost.exists(), "the orphan directory was not collected");
    assert!(a.log().contains("ghost"), "{}", a.log());
    assert_eq!(a.lpar_names(), vec!["kept".to_string()]);
    a.kill9();

    // Another version: refused, naming it.
    let inventory = state.join("inventory.json");
    let saved = std::fs::read_to_string(&inventory).unwrap();
    std::fs::write(
        &inventory,
        saved.replace("\"version\": 1", "\"version\": 99"),
    )
    .unwrap();
    let err = refused_start(&serve_args(&scratch, &state_s, &token_s));
    assert!(err.contains("version 99"), "{err}");

    // Lost, with LPAR directories left: refused, naming them (they are
    // not silently ignored, nor deleted).
    std::fs::remove_file(&inventory).unwrap();
    let err = refused_start(&serve_args(&scratch, &state_s, &token_s));
    assert!(err.contains("kept"), "{err}");
    assert!(state.join("lpars/kept/memory").exists());
}

/// The newest journal file of `lpar` on `agent`.
fn journal_file(agent: &Agent, lpar: &str) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(agent.state_dir.join("journal").join(lpar))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

#[test]
fn a_torn_journal_line_is_cut_before_recovery_closes_the_journal() {
    let scratch = Scratch::new("torn");
    let hold = Hold::new(&scratch, "t");
    let mut a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "t1", "32MiB", "hot:1MiB");
    let id = a.ctl_json(&["migrate", "t1", "--to", &b.addr, "--no-wait"])["migration"].to_string();
    hold.wait_held(&a, &id);
    a.kill9();
    // A crash in the middle of an append leaves half a record.
    let file = journal_file(&a, "t1");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"record\":\"stage\",\"sta");
    std::fs::write(&file, &text).unwrap();
    a.restart();
    assert_eq!(a.lpar("t1")["state"], "needs-recovery");
    wait_for(
        "the destination to discard",
        Duration::from_secs(60),
        || b.lpar_names().is_empty(),
    );
    a.ctl_json(&["lpar", "deactivate", "t1"]);
    let r = a.ctl_json(&["recover", "t1"]);
    assert_eq!(r["runs_on"], "hostA", "{r}");
    assert!(a.log().contains("torn"), "{}", a.log());
    // Closed for good: a restart finds nothing to recover.
    a.restart();
    let l = a.lpar("t1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true)),
        "{l}"
    );
}

#[test]
fn journal_read_and_recover_resolve_trust_no_name_and_no_state() {
    let scratch = Scratch::new("resolve");
    let a = Agent::start(&scratch, "hostA", &[]);
    // A journal outside the state directory, reachable by "../..".
    let outside = scratch.0.join("evil");
    std::fs::create_dir_all(&outside).unwrap();
    let planted = outside.join("0000000000001-1-source.jsonl");
    let begin = "{\"record\":\"begin\",\"lpar\":\"x\",\"side\":\"source\",\"migration\":1,\
                 \"peer\":\"p\",\"t_ms\":1}\n";
    std::fs::write(&planted, begin).unwrap();
    let mut c = a.connect();
    for (i, request) in [
        json!({"execute": "journal-read", "arguments": {"lpar": "../../evil"}}),
        json!({"execute": "recover-resolve", "arguments": {"lpar": "../../evil", "keep": false}}),
        json!({"execute": "recover-resolve", "arguments": {"lpar": "../../evil", "keep": true}}),
        json!({"execute": "recover", "arguments": {"lpar": "../../evil"}}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut request = request;
        request["id"] = json!(i);
        let r = c.request(request);
        assert!(r.get("error").is_some(), "{r}");
        assert!(r.to_string().contains("name"), "{r}");
    }
    assert_eq!(std::fs::read_to_string(&planted).unwrap(), begin);

    // An LPAR that needs no recovery is neither removed nor resumed.
    a.ctl_json(&["lpar", "create", "dea1", "--memory", "16MiB"]);
    for keep in [false, true] {
        let r = c.request(json!({"id": 9, "execute": "recover-resolve",
            "arguments": {"lpar": "dea1", "keep": keep}}));
        assert!(r.get("error").is_some(), "keep {keep}: {r}");
        let l = a.lpar("dea1");
        assert_eq!(
            (l["state"].as_str(), l["running"].as_bool()),
            (Some("Dea"), Some(false))
        );
    }
}

#[test]
fn recover_resolve_never_resumes_a_partial_image() {
    let scratch = Scratch::new("partial");
    let a = Agent::start(&scratch, "hostA", &[]);
    // The destination dies while the memory arrives (0x5050).
    let mut b = Agent::start_with_env(
        &scratch,
        "hostB",
        &[],
        &[("MOVERD_FAULT_KILL_AT", "0x5050")],
    );
    define_running(&a, "p1", "32MiB", "hot:1MiB");
    let out = a.ctl(&["migrate", "p1", "--to", &b.addr]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert_eq!(a.lpar("p1")["state"], "Act");
    b.restart();
    assert_eq!(b.lpar("p1")["state"], "needs-recovery");
    // Told to keep its half-received copy, the destination refuses: its
    // journal says ownership never passed.
    let mut c = b.connect();
    let r = c.request(json!({"id": 1, "execute": "recover-resolve",
        "arguments": {"lpar": "p1", "keep": true}}));
    assert!(r.get("error").is_some(), "{r}");
    let l = b.lpar("p1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("needs-recovery"), Some(false)),
        "{l}"
    );
    // The journal's verdict resolves it: removed there, running here.
    let r = b.ctl_json(&["recover", "p1", "--peer", &a.addr]);
    assert_eq!(r["runs_on"], "hostA", "{r}");
    assert!(b.lpar_names().is_empty());
}

/// Fills the file system of `dir` to the last byte.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![1u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let small = [1u8; 512];
    while f.write_all(&small).is_ok() {}
}

#[test]
fn a_full_state_file_system_refuses_lpars_and_never_kills_the_agent() {
    let scratch = Scratch::new("fullfs");
    let mount = match SmallTmpfs::mount(&scratch.0.join("small"), "64m") {
        Ok(m) => m,
        Err(reason) => lpar_mover::skip!(reason),
    };
    // The state directory is the small file system itself (the log is beside it).
    let mut a = Agent::start_at(&scratch, "hostA", mount.0.clone(), &[]);

    // More guest memory than the file system holds: refused with the
    // manual's message, nothing left behind.
    let out = a.ctl(&[
        "lpar",
        "create",
        "big",
        "--memory",
        "256MiB",
        "--program",
        "sweep",
    ]);
    if out.status.success() {
        // (Without reservations:) the guest's writes fault into SIGBUS.
        a.ctl(&["lpar", "activate", "big"]);
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            a.child.try_wait().unwrap().is_none(),
            "the agent died: {}",
            a.log()
        );
        panic!("an LPAR larger than the state file system was accepted");
    }
    assert!(
        stderr(&out).contains("not enough memory"),
        "{}",
        stderr(&out)
    );
    assert!(a.lpar_names().is_empty());

    // An LPAR that fits reserves its memory: the file system filling up
    // afterwards cannot take it away from the guest.
    a.ctl_json(&[
        "lpar",
        "create",
        "small",
        "--memory",
        "16MiB",
        "--program",
        "sweep",
    ]);
    fill(&mount.0);
    // Room for the inventory's saves, far from enough for guest pages.
    let filler = std::fs::OpenOptions::new()
        .write(true)
        .open(mount.0.join("filler"))
        .unwrap();
    filler
        .set_len(filler.metadata().unwrap().len() - (256 << 10))
        .unwrap();
    a.ctl_json(&["lpar", "activate", "small"]);
    let w = a.lpar("small")["guest_writes"].as_u64().unwrap();
    wait_for(
        "the guest to sweep its memory",
        Duration::from_secs(20),
        || a.lpar("small")["guest_writes"].as_u64().unwrap() > w + (8 << 20) / 8,
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "the agent died: {}",
        a.log()
    );
    let out = a.ctl(&["lpar", "create", "more", "--memory", "16MiB"]);
    assert!(
        stderr(&out).contains("not enough memory"),
        "{}",
        stderr(&out)
    );

    // A restart on the full file system re-attaches the guest, which runs on.
    a.restart();
    let w = a.lpar("small")["guest_writes"].as_u64().unwrap();
    wait_for("the guest to run on", Duration::from_secs(10), || {
        a.lpar("small")["guest_writes"].as_u64().unwrap() > w
    });
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "the agent died: {}",
        a.log()
    );
    drop(a);
}

/// The `memory-contiguous` item of the check in `moverctl validate`.
fn contiguous_check(src: &Agent, dst: &Agent, lpar: &str) -> serde_json::Value {
    let out = src.ctl(&["--json", "validate", lpar, "--to", &dst.addr]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("validate printed no JSON ({e}): {}", stderr(&out)));
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == "memory-contiguous")
        .unwrap_or_else(|| panic!("no memory-contiguous item in {report}"))
        .clone()
}

#[test]
fn an_lpar_backed_on_demand_needs_room_for_what_it_holds_not_its_size() {
    const MIB: u64 = 1 << 20;
    let scratch = Scratch::new("on-demand-room");
    let mount = match SmallTmpfs::mount(&scratch.0.join("small"), "64m") {
        Ok(m) => m,
        Err(reason) => lpar_mover::skip!(reason),
    };
    let a = Agent::start(&scratch, "hostA", &["--memory", "4GiB"]);
    let b = Agent::start_at(&scratch, "hostB", mount.0.clone(), &["--memory", "4GiB"]);
    // 256 MiB each; hostB's file system holds 64 MiB.
    a.ctl_json(&[
        "lpar",
        "create",
        "sparse1",
        "--memory",
        "256MiB",
        "--program",
        "hot:4MiB,resident=12MiB,rate=2000",
        "--memory-backing",
        "on-demand",
    ]);
    a.ctl_json(&[
        "lpar",
        "create",
        "dedicated1",
        "--memory",
        "256MiB",
        "--program",
        "idle",
    ]);
    a.ctl_json(&["lpar", "activate", "sparse1"]);
    let memory = a.state_dir.join("lpars/sparse1/memory");
    wait_for(
        "the guest to load its data",
        Duration::from_secs(20),
        || {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&memory).unwrap().blocks() * 512 >= 16 * MIB
        },
    );

    // Reserved: the whole 256 MiB, which hostB has not.
    let reserved = contiguous_check(&a, &b, "dedicated1");
    assert_eq!(reserved["outcome"], "fail", "{reserved}");
    // On demand: the 16 MiB its guest populated.
    let sparse = contiguous_check(&a, &b, "sparse1");
    assert_eq!(sparse["outcome"], "pass", "{sparse}");
    let detail = sparse["detail"].as_str().unwrap();
    assert!(detail.contains("256 MiB backed on demand"), "{detail}");
    assert!(detail.contains("MiB of it populated"), "{detail}");

    // And it moves there, verified.
    let out = a.ctl_json(&["migrate", "sparse1", "--to", &b.addr]);
    assert_eq!(out["report"]["source"]["verified"], true, "{out}");
    assert_eq!(b.lpar("sparse1")["memory_backing"], "on-demand");
}
