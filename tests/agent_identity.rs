//! Agent identities with real `moverd serve` processes: agents that trust
//! each other migrate over mutual TLS without the token, and validation
//! names the peer; an unknown key, an expired certificate, a certificate
//! the site CA did not sign or issued for another agent name, and
//! plaintext offered to a TLS listener are
//! each refused with their EMG while the LPAR keeps running on the source;
//! an agent refuses to start with a key file others can read, or with a
//! certificate that is not its key's; a TLS listener that is full answers
//! with its EMG after the handshake instead of a bare close.

mod agent_common;

use agent_common::{Agent, Scratch, next_path_octet, peer_args, refused_start};
use lpar_mover::transport::identity::{self, Fingerprint, Validity};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An identity for `name` under the scratch directory.
fn make_identity(
    scratch: &Scratch,
    name: &str,
    validity: Validity,
    ca: Option<&Path>,
) -> (PathBuf, Fingerprint) {
    let dir = scratch.0.join(format!("{name}-id"));
    let fp = identity::init(&dir, name, validity, ca).unwrap();
    (dir, fp)
}

/// `moverd serve` for `name` with the identity in `dir` and `trust` flags.
fn start_tls(scratch: &Scratch, name: &str, dir: &Path, trust: &[String]) -> Agent {
    start_tls_at(scratch, name, dir, trust, "127.0.0.1:0")
}

/// [`start_tls`] listening on `listen` (a Unix socket: plain, for moverctl).
fn start_tls_at(
    scratch: &Scratch,
    name: &str,
    dir: &Path,
    trust: &[String],
    listen: &str,
) -> Agent {
    let state_dir = scratch.0.join(name);
    let mut args: Vec<String> = ["serve", "--name", name, "--listen", listen]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "--path".into(),
        format!("mig=127.0.0.{}", next_path_octet()),
    ]);
    args.extend(["--state-dir".into(), state_dir.display().to_string()]);
    args.extend([
        "--token-file".into(),
        scratch.token_file().display().to_string(),
    ]);
    args.extend(["--identity-dir".into(), dir.display().to_string()]);
    args.extend(peer_args());
    args.extend(trust.iter().cloned());
    Agent::spawn(name, args, state_dir, scratch.token_file())
}

fn pin(fp: &Fingerprint) -> Vec<String> {
    vec!["--trusted-peer".into(), fp.to_string()]
}

/// `moverctl --json` against a TLS agent, trusting its key `fp`.
fn ctl(agent: &Agent, fp: &Fingerprint, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moverctl"))
        .args(["--json", "--agent", &agent.addr, "--token-file"])
        .arg(&agent.token_file)
        .args(["--agent-fingerprint", &fp.to_string()])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(agent: &Agent, fp: &Fingerprint, args: &[&str]) -> Value {
    let out = ctl(agent, fp, args);
    assert!(
        out.status.success(),
        "moverctl {args:?}: {}{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        agent.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The EMG of a command that must fail.
fn refused(agent: &Agent, fp: &Fingerprint, args: &[&str]) -> Value {
    let out = ctl(agent, fp, args);
    assert!(!out.status.success(), "moverctl {args:?} succeeded");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["error"].clone()
}

fn define_running(agent: &Agent, fp: &Fingerprint, name: &str) {
    ok(
        agent,
        fp,
        &[
            "lpar",
            "create",
            name,
            "--memory",
            "64MiB",
            "--program",
            "hot:8MiB",
        ],
    );
    ok(agent, fp, &["lpar", "activate", name]);
}

fn assert_still_running(agent: &Agent, fp: &Fingerprint, name: &str) {
    let shown = ok(agent, fp, &["lpar", "show", name]);
    assert_eq!(shown["running"], true, "{shown}");
}

/// Migrating `lpar` from `a` to `b` fails with `cause`; the LPAR runs on.
fn migration_refused(a: &Agent, fa: &Fingerprint, b: &Agent, cause: u64, words: &str) {
    define_running(a, fa, "l1");
    let e = refused(a, fa, &["migrate", "l1", "--to", &b.addr]);
    assert_eq!(
        e["cause"],
        cause,
        "{e}\nsource log:\n{}\ndestination log:\n{}",
        a.log(),
        b.log()
    );
    let text = e["message"].as_str().unwrap_or_default();
    assert!(text.contains(words), "{e}");
    assert!(!e["action"].as_str().unwrap_or_default().is_empty(), "{e}");
    assert_still_running(a, fa, "l1");
}

#[test]
fn agents_that_trust_each_other_migrate_over_mutual_tls_and_validation_names_the_peer() {
    let scratch = Scratch::new("id-ok");
    let v = Validity::days_from_now(2);
    let (da, fa) = make_identity(&scratch, "hostA", v, None);
    let (db, fb) = make_identity(&scratch, "hostB", v, None);
    let a = start_tls(&scratch, "hostA", &da, &pin(&fb));
    let b = start_tls(&scratch, "hostB", &db, &pin(&fa));
    define_running(&a, &fa, "l1");
    let report = ok(&a, &fa, &["validate", "l1", "--to", &b.addr]);
    let checks = report["checks"].as_array().expect("a checklist");
    let peer = checks
        .iter()
        .find(|c| c["item"] == "peer-identity")
        .unwrap_or_else(|| panic!("no peer-identity item: {report}"));
    let detail = peer["detail"].as_str().unwrap();
    assert!(
        detail.contains("hostB") && detail.contains(&fb.to_string()),
        "{detail}"
    );
    ok(&a, &fa, &["migrate", "l1", "--to", &b.addr]);
    assert_still_running(&b, &fb, "l1");
    assert!(
        b.log().contains(&format!("authenticated by its key {fa}")),
        "{}",
        b.log()
    );
}

#[test]
fn an_unknown_key_is_refused_and_the_lpar_stays_on_the_source() {
    let scratch = Scratch::new("id-unknown");
    let v = Validity::days_from_now(2);
    let (da, fa) = make_identity(&scratch, "hostA", v, None);
    let (db, fb) = make_identity(&scratch, "hostB", v, None);
    let (_, fc) = make_identity(&scratch, "hostC", v, None);
    let a = start_tls(&scratch, "hostA", &da, &pin(&fb));
    // B trusts C, not A.
    let b = start_tls(&scratch, "hostB", &db, &pin(&fc));
    migration_refused(&a, &fa, &b, 0x1B, &fa.to_string());
    // A client pinning another key than the agent's refuses it too.
    let e = refused(&b, &fc, &["lpar", "list"]);
    assert_eq!(e["cause"], 0x1B, "{e}");
    assert_eq!(e["module"], "Client", "{e}");
}

#[test]
fn an_expired_certificate_is_refused_and_the_lpar_stays_on_the_source() {
    let scratch = Scratch::new("id-expired");
    let now = identity::now();
    let expired = Validity {
        not_before: now - 10 * 86_400,
        not_after: now - 86_400,
    };
    // The destination's certificate expired: the source refuses it.
    let (da, fa) = make_identity(&scratch, "hostA", Validity::days_from_now(2), None);
    let (db, fb) = make_identity(&scratch, "hostB", expired, None);
    let a = start_tls(&scratch, "hostA", &da, &pin(&fb));
    let b = start_tls(&scratch, "hostB", &db, &pin(&fa));
    assert!(b.log().contains("expired"), "{}", b.log());
    migration_refused(&a, &fa, &b, 0x1C, "expired");
    // And the destination refuses a source whose certificate expired.
    let scratch = Scratch::new("id-expired-src");
    let (dc, fc) = make_identity(&scratch, "hostC", expired, None);
    let (dd, fd) = make_identity(&scratch, "hostB", Validity::days_from_now(2), None);
    let sock = scratch.0.join("hostC.sock").display().to_string();
    let c = start_tls_at(&scratch, "hostC", &dc, &pin(&fd), &sock);
    let d = start_tls(&scratch, "hostB", &dd, &pin(&fc));
    // Over its Unix socket (plain) moverctl drives the expired agent.
    agent_common::define_running(&c, "l1", "64MiB", "hot:8MiB");
    let out = c.ctl(&["--json", "migrate", "l1", "--to", &d.addr]);
    assert!(!out.status.success());
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["error"]["cause"], 0x1C, "{e}");
    assert_eq!(
        e["error"]["module"], "Management",
        "the destination refused: {e}"
    );
    assert_eq!(c.lpar("l1")["running"], true);
    // A client that pins another key than the agent's refuses it.
    let e = refused(&d, &fc, &["lpar", "list"]);
    assert_eq!(e["cause"], 0x1B, "{e}");
    drop((c, d));
}

#[test]
fn a_certificate_the_site_ca_did_not_sign_is_refused_and_the_lpar_stays_on_the_source() {
    let scratch = Scratch::new("id-wrong");
    let (site, other) = (scratch.0.join("site-ca"), scratch.0.join("other-ca"));
    identity::init_ca(&site).unwrap();
    identity::init_ca(&other).unwrap();
    let v = Validity::days_from_now(2);
    let (da, fa) = make_identity(&scratch, "hostA", v, Some(&other));
    let (db, _) = make_identity(&scratch, "hostB", v, Some(&site));
    let trust = vec![
        "--trusted-ca".to_string(),
        site.join(identity::CA_CERT_FILE).display().to_string(),
    ];
    let a = start_tls(&scratch, "hostA", &da, &trust);
    let b = start_tls(&scratch, "hostB", &db, &trust);
    migration_refused(&a, &fa, &b, 0x1D, "site CA");
}

#[test]
fn a_site_ca_certificate_answers_for_its_own_agent_name_only() {
    let scratch = Scratch::new("id-name");
    let site = scratch.0.join("site-ca");
    identity::init_ca(&site).unwrap();
    let v = Validity::days_from_now(2);
    let (da, fa) = make_identity(&scratch, "hostA", v, Some(&site));
    let (db, fb) = make_identity(&scratch, "hostB", v, Some(&site));
    let trust = vec![
        "--trusted-ca".to_string(),
        site.join(identity::CA_CERT_FILE).display().to_string(),
    ];
    let a = start_tls(&scratch, "hostA", &da, &trust);
    let b = start_tls(&scratch, "hostB", &db, &trust);
    // hostC runs with hostB's certificate: the site CA signed it, but for
    // hostB.
    let c = start_tls(&scratch, "hostC", &db, &trust);
    define_running(&a, &fa, "l1");
    let report = ok(&a, &fa, &["validate", "l1", "--to", &b.addr]);
    assert_eq!(report["passed"], true, "{report}");
    let e = refused(&a, &fa, &["migrate", "l1", "--to", &c.addr]);
    assert_eq!(e["cause"], 0x1D, "{e}\nsource log:\n{}", a.log());
    let text = e["message"].as_str().unwrap_or_default();
    assert!(text.contains("introduces itself as 'hostC'"), "{e}");
    assert!(
        e["action"]
            .as_str()
            .unwrap_or_default()
            .contains("--name hostC"),
        "{e}"
    );
    assert_still_running(&a, &fa, "l1");
    // The other way round, the destination checks the name: hostC calls
    // hostA with hostB's certificate and says it is hostC.
    define_running(&c, &fb, "l2");
    let e = refused(&c, &fb, &["migrate", "l2", "--to", &a.addr]);
    assert_eq!(
        e["cause"],
        0x1D,
        "{e}
destination log:
{}",
        a.log()
    );
    let text = e["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("connecting from") && text.contains("introduces itself as 'hostC'"),
        "{e}"
    );
    assert_still_running(&c, &fb, "l2");
    assert!(
        !ok(&a, &fa, &["lpar", "list"]).to_string().contains("l2"),
        "the destination defined the impostor's LPAR"
    );
}

#[test]
fn a_full_tls_listener_answers_with_its_emg_not_a_bare_close() {
    let scratch = Scratch::new("id-full");
    let (da, fa) = make_identity(&scratch, "hostA", Validity::days_from_now(2), None);
    let a = start_tls(&scratch, "hostA", &da, &[]);
    // Connections from one address that never start their handshake, until
    // the agent holds half its quota for them: the next from that address
    // is refused.
    let held: Vec<std::net::TcpStream> = (0..lpar_mover::agent::server::MAX_UNAUTHENTICATED / 2)
        .map(|_| std::net::TcpStream::connect(&a.addr).unwrap())
        .collect();
    let e = refused(&a, &fa, &["lpar", "list"]);
    assert_eq!(e["cause"], 0x15, "{e}\nlog:\n{}", a.log());
    let text = e["message"].as_str().unwrap_or_default();
    assert!(text.contains("waiting to authenticate"), "{e}");
    assert!(!e["action"].as_str().unwrap_or_default().is_empty(), "{e}");
    // Once they are gone, the agent serves again.
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ctl(&a, &fa, &["lpar", "list"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after the connections closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn plaintext_offered_to_a_tls_listener_is_refused_and_the_lpar_stays_on_the_source() {
    let scratch = Scratch::new("id-plain");
    let (db, fb) = make_identity(&scratch, "hostB", Validity::days_from_now(2), None);
    // A: no identity, plaintext management (explicitly).
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = start_tls(&scratch, "hostB", &db, &pin(&fb));
    agent_common::define_running(&a, "l1", "64MiB", "hot:8MiB");
    let out = a.ctl(&["--json", "migrate", "l1", "--to", &b.addr]);
    assert!(!out.status.success());
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["error"]["cause"], 0x1E, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("plaintext"),
        "{e}"
    );
    assert_eq!(a.lpar("l1")["running"], true);
    // moverctl without TLS settings is refused the same way.
    let out = b.ctl(&["--json", "lpar", "list"]);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["error"]["cause"], 0x1E, "{e}");
}

#[test]
fn an_agent_refuses_to_start_with_a_key_others_can_read_or_a_certificate_not_its_keys() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("id-start");
    let v = Validity::days_from_now(2);
    let (da, _) = make_identity(&scratch, "hostA", v, None);
    let (db, _) = make_identity(&scratch, "hostB", v, None);
    let key = da.join(identity::KEY_FILE);
    let (state, token) = (scratch.0.join("hostA"), scratch.token_file());
    let args = |dir: &Path| {
        vec![
            "serve".to_string(),
            "--name".into(),
            "hostA".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--token-file".into(),
            token.display().to_string(),
            "--identity-dir".into(),
            dir.display().to_string(),
        ]
    };
    let run = |dir: &Path| {
        let a = args(dir);
        refused_start(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = run(&da);
        assert!(
            err.contains(&format!("chmod 600 {}", key.display())),
            "{mode:o}: {err}"
        );
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::copy(db.join(identity::CERT_FILE), da.join(identity::CERT_FILE)).unwrap();
    let err = run(&da);
    assert!(err.contains("does not go with the key"), "{err}");
    // No identity at all, on TCP, without the explicit plaintext setting.
    let err = run(&scratch.0.join("nowhere"));
    assert!(err.contains("moverd init"), "{err}");
}

#[test]
fn moverd_init_prints_the_fingerprint_that_moverd_identity_shows() {
    let scratch = Scratch::new("id-init");
    let dir = scratch.0.join("id");
    let moverd = env!("CARGO_BIN_EXE_moverd");
    let out = Command::new(moverd)
        .args(["init", "--name", "hostA", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let fp = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("fingerprint"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    let shown = Command::new(moverd)
        .args(["identity", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&fp));
    // A second init keeps the identity.
    let again = Command::new(moverd)
        .args(["init", "--name", "hostA", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}
