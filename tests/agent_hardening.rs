//! What a hostile or careless client may send a real `moverd serve` must not
//! wedge the host: huge durations, byte-by-byte drips before
//! authentication, crowds of unauthenticated connections, tiny bandwidth
//! caps, a peer that is not the agent it claims, and token files others can
//! read.

mod agent_common;

use agent_common::{Agent, Conn, Hold, Scratch, TOKEN, define_running, refused_start, stderr};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn cause(r: &Value) -> u64 {
    r["error"]["cause"]
        .as_u64()
        .unwrap_or_else(|| panic!("an error reply: {r}"))
}

#[test]
fn huge_durations_are_refused_at_the_protocol_edge_and_leave_the_host_usable() {
    let scratch = Scratch::new("durations");
    let hold = Hold::new(&scratch, "d");
    let mut a = Agent::start_with_env(&scratch, "hostA", &[], &hold.env());
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "d1", "32MiB", "hot:1MiB");

    // More hostile requests than the agent has connection slots, each on
    // its own connection: a panic in a handler used to leak one slot each.
    let hostile = [
        (
            "migrate",
            json!({"lpar": "d1", "to": b.addr, "timeout_s": u64::MAX}),
        ),
        (
            "migrate",
            json!({"lpar": "d1", "to": b.addr, "max_suspend_ms": u64::MAX}),
        ),
        (
            "migrate-shutdown",
            json!({"lpar": "d1", "to": b.addr, "shutdown_timeout_s": u64::MAX}),
        ),
    ];
    for i in 0..70 {
        let (command, arguments) = &hostile[i % hostile.len()];
        let mut c = a.connect();
        let r = c.request(json!({"id": i, "execute": command, "arguments": arguments}));
        assert_eq!(cause(&r), 0x16, "{command}: {r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("at most"),
            "{r}"
        );
    }
    let out = a.ctl(&[
        "migrate",
        "d1",
        "--to",
        &b.addr,
        "--timeout",
        "18446744073709551615",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("timeout_s"), "{}", stderr(&out));
    assert_eq!(a.lpar("d1")["state"], "Act");

    // Extend during 0x4050: refused beyond the bound, the migration goes on
    // and cancel still works.
    let id = a.ctl_json(&["migrate", "d1", "--to", &b.addr, "--no-wait"])["migration"].to_string();
    hold.wait_held(&a, &id);
    let mut c = a.connect();
    let r = c.request(json!({"id": 1, "execute": "extend",
        "arguments": {"id": id.parse::<u64>().unwrap(), "seconds": u64::MAX}}));
    assert_eq!(cause(&r), 0x16, "{r}");
    let r = c.request(json!({"id": 2, "execute": "extend",
        "arguments": {"id": id.parse::<u64>().unwrap(), "seconds": 60}}));
    assert_eq!(r["return"]["timeout_s"], 960, "{r}");
    a.ctl_json(&["cancel", &id]);
    hold.release();
    agent_common::wait_for("the cancel", Duration::from_secs(30), || {
        a.ctl_json(&["status", &id])["stage"] == 0x40e0
    });
    assert_eq!(a.lpar("d1")["state"], "Act");
    assert!(b.lpar_names().is_empty());

    assert!(!a.log().contains("panicked"), "{}", a.log());

    // A fresh migration still succeeds (restarted without the hold).
    a.restart();
    let r = a.ctl_json(&["migrate", "d1", "--to", &b.addr]);
    assert_eq!(r["report"]["source"]["verified"], true, "{r}");
}

#[test]
fn tiny_bandwidth_caps_are_refused_before_anything_moves() {
    let scratch = Scratch::new("tinycap");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "c1", "32MiB", "hot:1MiB");
    let out = a.ctl(&["migrate", "c1", "--to", &b.addr, "--bandwidth", "1000B/s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 Gbit/s"), "{}", stderr(&out));
    let mut c = a.connect();
    let r = c.request(json!({"id": 1, "execute": "migrate",
        "arguments": {"lpar": "c1", "to": b.addr, "bandwidth": 0}}));
    assert_eq!(cause(&r), 0x16, "{r}");
    assert_eq!(a.lpar("c1")["state"], "Act");
    assert!(b.lpar_names().is_empty());
    // The manual's minimum itself is accepted.
    let r = a.ctl_json(&["migrate", "c1", "--to", &b.addr, "--bandwidth", "1Gbit/s"]);
    assert_eq!(r["report"]["source"]["verified"], true, "{r}");
}

/// An agent whose unauthenticated connections time out after 1 s.
fn impatient_agent(scratch: &Scratch) -> Agent {
    let config = scratch.0.join("impatient.toml");
    std::fs::write(&config, "auth_timeout_s = 1\n").unwrap();
    Agent::start(scratch, "hostA", &["--config", config.to_str().unwrap()])
}

#[test]
fn the_authentication_deadline_holds_against_a_byte_by_byte_drip() {
    let scratch = Scratch::new("drip");
    let agent = impatient_agent(&scratch);
    let mut c = Conn::open(&agent.addr);
    c.greeting();
    let mut writer = c.writer.try_clone().unwrap();
    // One space every 100 ms: never a whole line, for up to 8 s.
    let drip = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until && writer.write_all(b" ").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let started = Instant::now();
    let last = c.recv().expect("the closing error");
    let waited = started.elapsed();
    assert_eq!(cause(&last), 0x13, "{last}");
    assert!(c.recv().is_none(), "closed after the error");
    assert!(
        waited < Duration::from_secs(3),
        "closed only after {waited:?} of drip"
    );
    drip.join().unwrap();
}

/// A TCP connection to `addr` from the loopback address `from`.
fn connect_from(from: [u8; 4], addr: &str) -> TcpStream {
    let to: SocketAddr = addr.parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

#[test]
fn unauthenticated_connections_cannot_crowd_out_clients_and_peers() {
    let scratch = Scratch::new("crowd");
    let agent = Agent::start(&scratch, "hostA", &[]);
    // 64 connections from one address that never authenticate.
    let crowd: Vec<TcpStream> = (0..64)
        .map(|_| connect_from([127, 0, 0, 1], &agent.addr))
        .collect();
    // Most of them are refused at once, with the reason.
    let mut refused = 0;
    for s in &crowd {
        let mut c = Conn::over(s.try_clone().unwrap());
        let first = c.recv().expect("a greeting or an error");
        if first.get("error").is_some() {
            assert_eq!(cause(&first), 0x15, "{first}");
            refused += 1;
        }
    }
    assert!(refused >= 48, "only {refused} of 64 refused");
    // A client from elsewhere still gets in, authenticates and is served;
    // so do 64 authenticated ones (the slots clients and peers need).
    let mut served: Vec<Conn> = Vec::new();
    for i in 0..64 {
        let mut c = Conn::over(connect_from([127, 0, 0, 2 + (i % 8) as u8], &agent.addr));
        c.greeting();
        let r = c.request(json!({"id": 0, "execute": "authenticate",
            "arguments": {"token": TOKEN}}));
        assert!(r.get("return").is_some(), "client {i}: {r}");
        served.push(c);
    }
    let r = served[63].request(json!({"id": 1, "execute": "lpar-list"}));
    assert!(r["return"]["lpars"].is_array(), "{r}");
    // Beyond them an authenticated connection is refused with the reason.
    let mut extra = Conn::over(connect_from([127, 0, 0, 20], &agent.addr));
    extra.greeting();
    let r = extra.request(json!({"id": 0, "execute": "authenticate",
        "arguments": {"token": TOKEN}}));
    assert_eq!(cause(&r), 0x15, "{r}");
    drop(crowd);
}

#[test]
fn arguments_are_not_decoded_before_authentication() {
    let scratch = Scratch::new("authfirst");
    let agent = Agent::start(&scratch, "hostA", &[]);
    let mut c = Conn::open(&agent.addr);
    c.greeting();
    for (id, request) in [
        (
            1,
            json!({"id": 1, "execute": "lpar-delete", "arguments": {"name": 5}}),
        ),
        (2, json!({"id": 2, "execute": "format-disks"})),
        (
            3,
            json!({"id": 3, "execute": "migrate", "arguments": {"bogus": true}}),
        ),
    ] {
        let r = c.request(request);
        assert_eq!(r["id"], id);
        assert_eq!(cause(&r), 0x13, "{r}");
        let text = r.to_string();
        assert!(
            !text.contains("lpar-list") && !text.contains("unknown field"),
            "the schema leaks before authentication: {r}"
        );
    }
}

#[test]
fn a_token_file_others_can_read_is_refused_by_agent_and_client() {
    let scratch = Scratch::new("tokenmode");
    let token = scratch.token_file();
    let state = scratch.0.join("hostA");
    for mode in [0o644, 0o620, 0o604] {
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
        let err = refused_start(&[
            "serve",
            "--name",
            "hostA",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().unwrap(),
            "--token-file",
            token.to_str().unwrap(),
        ]);
        assert!(
            err.contains(&format!("chmod 600 {}", token.display())),
            "{mode:o}: {err}"
        );
    }
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let agent = Agent::start(&scratch, "hostA", &[]);
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let out = agent.ctl(&["lpar", "list"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

/// A listener that greets like an agent named `name` (with a real build
/// identity) and records every line a client sends it.
fn impostor(name: &str, real: &Agent) -> (String, std::sync::mpsc::Receiver<String>) {
    let mut greeting = Conn::open(&real.addr).greeting();
    greeting["greeting"]["agent"] = json!(name);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let _ = writeln!(s, "{greeting}");
            let tx = tx.clone();
            std::thread::spawn(move || {
                let reader = BufReader::new(s.try_clone().unwrap());
                for line in reader.lines() {
                    let Ok(line) = line else { return };
                    // Refuses everything, so a client never waits on it.
                    let id = serde_json::from_str::<Value>(&line)
                        .map_or(json!(null), |v| v["id"].clone());
                    let e = json!({"module": "Management", "phase": 0x20, "cause": 0x14,
                        "detail": 0, "reason": 0, "needs_recovery": false,
                        "message": "impostor", "action": "none"});
                    let _ = writeln!(s, "{}", json!({"id": id, "error": e}));
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn the_token_goes_only_to_a_peer_the_configuration_knows() {
    let scratch = Scratch::new("peers");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    define_running(&a, "p1", "32MiB", "hot:1MiB");
    let (evil, heard) = impostor("evil", &b);
    for args in [
        vec!["migrate", "p1", "--to", evil.as_str()],
        vec!["connectivity-test", "--to", evil.as_str()],
        vec!["validate", "p1", "--to", evil.as_str()],
    ] {
        let out = a.ctl(&args);
        assert!(!out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("'evil'") && stderr(&out).contains("peer"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let said: Vec<String> = heard.try_iter().collect();
    assert!(
        said.iter().all(|l| !l.contains(TOKEN)),
        "the token went to an unknown peer: {said:?}"
    );
    assert_eq!(a.lpar("p1")["state"], "Act");
    // A known peer is still served.
    let r = a.ctl_json(&["migrate", "p1", "--to", &b.addr]);
    assert_eq!(r["report"]["source"]["verified"], true, "{r}");
}
