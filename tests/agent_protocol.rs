//! The management protocol as a client meets it: greeting, token
//! authentication, and bad input refused without harming the agent. The
//! agent is a real `moverd serve` process; these tests speak raw JSON lines.

mod agent_common;

use agent_common::{Agent, Conn, Scratch, TOKEN, stderr};
use serde_json::json;

#[test]
fn greeting_names_the_agent_its_build_and_the_protocol_version() {
    let scratch = Scratch::new("greeting");
    let agent = Agent::start(&scratch, "hostA", &[]);
    let g = Conn::open(&agent.addr).greeting();
    assert_eq!(g["greeting"]["agent"], "hostA");
    assert_eq!(g["greeting"]["protocol"], 1);
    assert_eq!(
        g["greeting"]["build"]["crate_version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(g["greeting"]["build"]["git_commit"].is_string());
}

#[test]
fn host_info_says_what_the_host_is_and_that_it_is_idle() {
    let scratch = Scratch::new("host-info");
    let agent = Agent::start(&scratch, "hostA", &["--memory", "1GiB"]);
    agent_common::define_running(&agent, "web1", "64MiB", "idle");
    let mut c = agent.connect();
    let g = Conn::open(&agent.addr).greeting();
    let r = c.request(json!({"id": 4, "execute": "host-info"}));
    let info = &r["return"];
    assert_eq!(info["host"], "hostA", "{r}");
    assert_eq!(info["build"], g["greeting"]["build"], "{r}");
    assert_eq!(info["backend"], "sim");
    assert_eq!(info["memory_bytes"], 1u64 << 30);
    assert_eq!(info["memory_in_use_bytes"], 64u64 << 20);
    assert_eq!(info["memory_free_bytes"], (1u64 << 30) - (64u64 << 20));
    assert_eq!(info["lpars"], 1);
    assert!(info["cpus"].as_u64().unwrap() >= 1);
    assert_eq!(info["paths"][0]["name"], "mig", "{r}");
    assert!(
        info["paths"][0]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.")
    );
    assert_eq!(
        (&info["busy"], &info["migrating"]),
        (&json!(false), &json!([]))
    );
    // It takes no arguments.
    let r = c.request(json!({"id": 5, "execute": "host-info", "arguments": {"x": 1}}));
    assert!(r.get("error").is_some(), "{r}");
}

#[test]
fn nothing_is_served_before_a_valid_token_and_three_bad_tokens_close() {
    let scratch = Scratch::new("auth");
    let agent = Agent::start(&scratch, "hostA", &[]);
    let mut c = Conn::open(&agent.addr);
    c.greeting();

    // Not yet authenticated: refused, connection kept.
    let r = c.request(json!({"id": 1, "execute": "lpar-list"}));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not authenticated"),
        "{r}"
    );
    // A wrong token: refused, connection kept.
    let r = c.request(json!({"id": 2, "execute": "authenticate", "arguments": {"token": "nope"}}));
    assert!(
        r["error"]["message"].as_str().unwrap().contains("1 of 3"),
        "{r}"
    );
    // The right one: accepted, commands served.
    let r = c.request(json!({"id": 3, "execute": "authenticate", "arguments": {"token": TOKEN}}));
    assert_eq!(r["return"], json!({}), "{r}");
    let r = c.request(json!({"id": 4, "execute": "lpar-list"}));
    assert_eq!(r["return"]["lpars"], json!([]), "{r}");

    // Three wrong tokens: the third reply says so and the agent hangs up.
    let mut c = Conn::open(&agent.addr);
    c.greeting();
    for i in 1..=3 {
        let r = c.request(json!({"id": i, "execute": "authenticate", "arguments": {"token": "x"}}));
        assert_eq!(r["error"]["module"], "Management", "{r}");
        if i == 3 {
            assert!(
                r["error"]["message"].as_str().unwrap().contains("closing"),
                "{r}"
            );
        }
    }
    assert!(
        c.recv().is_none(),
        "the connection is closed after 3 bad tokens"
    );
}

#[test]
fn an_unauthenticated_connection_is_closed_after_the_auth_timeout() {
    let scratch = Scratch::new("authtimeout");
    let config = scratch.0.join("a.toml");
    std::fs::write(&config, "auth_timeout_s = 1\n").unwrap();
    let agent = Agent::start(&scratch, "hostA", &["--config", config.to_str().unwrap()]);
    let mut c = Conn::open(&agent.addr);
    c.greeting();
    let started = std::time::Instant::now();
    let last = c.recv().expect("a closing error");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no valid token"),
        "{last}"
    );
    assert!(c.recv().is_none());
    let waited = started.elapsed().as_secs_f64();
    assert!((0.8..5.0).contains(&waited), "closed after {waited} s");
}

#[test]
fn malformed_and_oversized_lines_are_refused_and_the_agent_keeps_serving() {
    let scratch = Scratch::new("malformed");
    let agent = Agent::start(&scratch, "hostA", &[]);
    let mut c = agent.connect();

    c.send_raw(b"{this is not json\n").unwrap();
    let r = c.reply_to(&json!(null));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed"),
        "{r}"
    );

    // 2 MiB on one line: over the 1 MiB cap.
    let mut huge = vec![b'x'; 2 << 20];
    huge.push(b'\n');
    c.send_raw(&huge).unwrap();
    let r = c.reply_to(&json!(null));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than"),
        "{r}"
    );

    c.send_raw(b"\x00\xff\xfe\n[1,2,3]\n{\"id\":-1}\n").unwrap();
    for _ in 0..3 {
        let r = c.reply_to(&json!(null));
        assert_eq!(r["error"]["module"], "Management", "{r}");
    }

    let r = c.request(json!({"id": 7, "execute": "lpar-delete", "arguments": {"name": 5}}));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad arguments"),
        "{r}"
    );

    // The same connection and a new one still work.
    let r = c.request(json!({"id": 8, "execute": "lpar-list"}));
    assert!(r["return"]["lpars"].is_array(), "{r}");
    let mut c2 = agent.connect();
    let r = c2.request(json!({"id": 1, "execute": "status"}));
    assert_eq!(r["return"]["migrations"], json!([]), "{r}");
}

#[test]
fn an_unknown_command_is_named_in_the_error_with_its_id() {
    let scratch = Scratch::new("unknown");
    let agent = Agent::start(&scratch, "hostA", &[]);
    let mut c = agent.connect();
    let r = c.request(json!({"id": 42, "execute": "format-disks"}));
    assert_eq!(r["id"], 42);
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("unknown command 'format-disks'"), "{r}");
    assert!(
        r["error"]["action"].as_str().unwrap().contains("lpar-list"),
        "{r}"
    );
}

#[test]
fn moverctl_over_a_unix_socket_and_its_exit_codes() {
    let scratch = Scratch::new("unix");
    let sock = scratch.0.join("a.sock");
    let agent = Agent::spawn(
        "hostA",
        vec![
            "serve".into(),
            "--name".into(),
            "hostA".into(),
            "--listen".into(),
            sock.display().to_string(),
            "--state-dir".into(),
            scratch.0.join("hostA").display().to_string(),
            "--token-file".into(),
            scratch.token_file().display().to_string(),
            "--memory".into(),
            "256MiB".into(),
        ],
        scratch.0.join("hostA"),
        scratch.token_file(),
    );
    assert_eq!(agent.addr, sock.display().to_string());

    let l = agent.ctl_json(&["lpar", "create", "db1", "--memory", "64MiB"]);
    assert_eq!(l["state"], "Dea");
    let l = agent.ctl_json(&["lpar", "activate", "db1"]);
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true))
    );

    // Refused by the agent: exit 1, EMG with its action on stderr.
    let out = agent.ctl(&["lpar", "delete", "db1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("EMG"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Action: Deactivate it first"),
        "{}",
        stderr(&out)
    );
    let out = agent.ctl(&["lpar", "create", "big", "--memory", "1GiB"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not enough memory"),
        "{}",
        stderr(&out)
    );

    // Usage: exit 3.
    let out = agent.ctl(&["lpar", "create"]);
    assert_eq!(out.status.code(), Some(3));
    let out = agent.ctl(&["extend", "1", "soon"]);
    assert_eq!(out.status.code(), Some(3));

    // No agent there: exit 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moverctl"))
        .args(["--agent", "127.0.0.1:1", "--token-file"])
        .arg(scratch.token_file())
        .args(["lpar", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("MMC"), "{}", stderr(&out));

    let l = agent.ctl_json(&["lpar", "deactivate", "db1"]);
    assert_eq!(l["state"], "Dea");
    agent.ctl_json(&["lpar", "delete", "db1"]);
    assert!(agent.lpar_names().is_empty());
}

#[test]
fn connections_beyond_the_limit_are_refused_and_the_agent_recovers() {
    let scratch = Scratch::new("connlimit");
    let agent = Agent::start(&scratch, "hostA", &[]);
    // 64 authenticated connections fill the agent's slots …
    let mut held: Vec<Conn> = (0..64).map(|_| agent.connect()).collect();
    // … so a 65th may greet but not authenticate.
    let mut extra = Conn::open(&agent.addr);
    extra.greeting();
    let r = extra.request(json!({"id": 1, "execute": "authenticate",
        "arguments": {"token": TOKEN}}));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 64"),
        "{r}"
    );
    assert!(extra.recv().is_none());
    let r = held[63].request(json!({"id": 1, "execute": "lpar-list"}));
    assert!(r["return"].is_object(), "{r}");
    held.clear();
    agent_common::wait_for("a free slot", std::time::Duration::from_secs(10), || {
        let mut c = Conn::open(&agent.addr);
        c.greeting();
        c.request(json!({"id": 1, "execute": "authenticate", "arguments": {"token": TOKEN}}))
            .get("return")
            .is_some()
    });
    let mut c = agent.connect();
    let r = c.request(json!({"id": 1, "execute": "lpar-list"}));
    assert!(r["return"].is_object(), "{r}");
}
