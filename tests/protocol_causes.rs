//! The management protocol's cause codes as they travel on the wire: for
//! each of `0x10`–`0x19`, a raw exchange with a real `moverd` that provokes
//! it, and the error's `module`, `phase` and `cause` fields checked as
//! numbers and names (not the message text, which may be reworded). Then
//! the version rule: a client refuses an agent of another protocol version.

mod agent_common;

use agent_common::{Agent, Conn, Scratch, TOKEN, define_running, stderr};
use lpar_mover::control::{self, Address, Client, cause};
use lpar_mover::emg::{Module, phase};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// One row: the cause, the module and phase it travels with, and how to
/// provoke it (returns the error object of the reply that carries it).
struct Row {
    cause: u32,
    module: &'static str,
    phase: u16,
    provoke: fn(&Fixture) -> Value,
}

/// A running pair of agents (B is the destination), and a finished
/// migration on A.
struct Fixture {
    a: Agent,
    b: Agent,
    finished: u64,
    /// A fake agent that greets with another protocol version.
    fake: String,
}

fn error_of(reply: Value) -> Value {
    assert!(reply.get("error").is_some(), "expected an error: {reply}");
    reply["error"].clone()
}

/// A greeted connection, once the agent has room for one (the
/// connections of an earlier row are released as the agent notices them
/// closed).
fn greeted(f: &Fixture) -> Conn {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut c = Conn::open(&f.a.addr);
        let first = c.recv().expect("a greeting or an error line");
        if first.get("greeting").is_some() {
            return c;
        }
        assert!(std::time::Instant::now() < until, "no room: {first}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn authed(f: &Fixture) -> Conn {
    let mut c = greeted(f);
    let r = c.request(json!({"id": 0, "execute": "authenticate", "arguments": {"token": TOKEN}}));
    assert!(r.get("return").is_some(), "{r}");
    c
}

fn malformed(f: &Fixture) -> Value {
    let mut c = authed(f);
    c.send_raw(b"{\"id\": 1, \"execute\": \n").unwrap();
    let r = c.recv().unwrap();
    assert_eq!(r["id"], Value::Null, "{r}");
    error_of(r)
}

fn oversized(f: &Fixture) -> Value {
    let mut c = authed(f);
    let mut line = vec![b'x'; control::MAX_LINE + 10];
    line.push(b'\n');
    c.send_raw(&line).unwrap();
    let r = c.recv().unwrap();
    assert_eq!(r["id"], Value::Null, "{r}");
    error_of(r)
}

fn unknown_command(f: &Fixture) -> Value {
    let mut c = authed(f);
    let r = c.request(json!({"id": 7, "execute": "format-disks"}));
    assert_eq!(r["id"], 7, "{r}");
    error_of(r)
}

fn not_authenticated(f: &Fixture) -> Value {
    let mut c = greeted(f);
    error_of(c.request(json!({"id": 1, "execute": "lpar-list"})))
}

fn bad_token(f: &Fixture) -> Value {
    let mut c = greeted(f);
    error_of(c.request(json!({"id": 1, "execute": "authenticate",
        "arguments": {"token": "not-the-token"}})))
}

fn too_many_connections(f: &Fixture) -> Value {
    // Connections that never authenticate, from one address, until the
    // agent's quota for them is full: the next one gets one error line
    // instead of a greeting, and is closed.
    let mut held = Vec::new();
    for _ in 0..=lpar_mover::agent::server::MAX_UNAUTHENTICATED {
        let mut c = Conn::open(&f.a.addr);
        let first = c.recv().expect("a greeting or an error line");
        if first.get("greeting").is_some() {
            held.push(c);
            continue;
        }
        assert!(c.recv().is_none(), "closed after the error line");
        assert!(!held.is_empty(), "refused with no connection waiting");
        return error_of(first);
    }
    panic!("{} waiting connections all greeted", held.len());
}

fn bad_arguments(f: &Fixture) -> Value {
    let mut c = authed(f);
    error_of(c.request(json!({"id": 3, "execute": "migrate",
        "arguments": {"lpar": "c1", "to": f.b.addr, "timeout_s": 0}})))
}

fn connection(f: &Fixture) -> Value {
    // The source agent is the client of a "destination" that speaks
    // another protocol version: its own connection error comes back (its
    // management service, validating the destination, is the client).
    let mut c = authed(f);
    error_of(c.request(json!({"id": 4, "execute": "migrate",
        "arguments": {"lpar": "c1", "to": f.fake}})))
}

fn wrong_stage(f: &Fixture) -> Value {
    let mut c = authed(f);
    error_of(c.request(json!({"id": 5, "execute": "cancel",
        "arguments": {"id": f.finished}})))
}

fn no_such_migration(f: &Fixture) -> Value {
    let mut c = authed(f);
    error_of(c.request(json!({"id": 6, "execute": "status",
        "arguments": {"id": 987_654}})))
}

const TABLE: &[Row] = &[
    Row {
        cause: cause::MALFORMED,
        module: "Management",
        phase: phase::CONNECT,
        provoke: malformed,
    },
    Row {
        cause: cause::OVERSIZED,
        module: "Management",
        phase: phase::CONNECT,
        provoke: oversized,
    },
    Row {
        cause: cause::UNKNOWN_COMMAND,
        module: "Management",
        phase: phase::CONNECT,
        provoke: unknown_command,
    },
    Row {
        cause: cause::NOT_AUTHENTICATED,
        module: "Management",
        phase: phase::CONNECT,
        provoke: not_authenticated,
    },
    Row {
        cause: cause::BAD_TOKEN,
        module: "Management",
        phase: phase::CONNECT,
        provoke: bad_token,
    },
    Row {
        cause: cause::TOO_MANY_CONNECTIONS,
        module: "Management",
        phase: phase::CONNECT,
        provoke: too_many_connections,
    },
    Row {
        cause: cause::BAD_ARGUMENTS,
        module: "Management",
        phase: phase::CONNECT,
        provoke: bad_arguments,
    },
    Row {
        cause: cause::CONNECTION,
        module: "Management",
        phase: phase::CONNECT,
        provoke: connection,
    },
    Row {
        cause: cause::WRONG_STAGE,
        module: "Management",
        phase: phase::CONNECT,
        provoke: wrong_stage,
    },
    Row {
        cause: cause::NO_SUCH_MIGRATION,
        module: "Management",
        phase: phase::CONNECT,
        provoke: no_such_migration,
    },
];

/// A listener that greets every connection as agent `hostB` speaking
/// protocol `version` (the rest of the greeting copied from a real agent's
/// `greeting`), then reads until the client hangs up.
fn fake_agent(greeting: &Value, version: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut g = greeting.clone();
    g["greeting"]["agent"] = json!("hostB");
    g["greeting"]["protocol"] = json!(version);
    let line = format!("{g}\n");
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let line = line.clone();
            std::thread::spawn(move || {
                let _ = s.write_all(line.as_bytes());
                let mut r = BufReader::new(s);
                let mut buf = String::new();
                while r.read_line(&mut buf).is_ok_and(|n| n > 0) {
                    buf.clear();
                }
            });
        }
    });
    addr
}

#[test]
fn every_protocol_cause_travels_with_its_module_and_phase() {
    assert_eq!(TABLE.len(), 10, "one row per cause 0x10..=0x19");
    let scratch = Scratch::new("causes");
    let a = Agent::start(&scratch, "hostA", &[]);
    let b = Agent::start(&scratch, "hostB", &[]);
    let greeting = Conn::open(&a.addr).greeting();
    // One finished migration on A, for the stage rule.
    define_running(&a, "done1", "16MiB", "hot:1MiB");
    let out = a.ctl_json(&["migrate", "done1", "--to", &b.addr]);
    let finished = out["migration"].as_u64().expect("migration id");
    define_running(&a, "c1", "16MiB", "hot:1MiB");
    let f = Fixture {
        a,
        b,
        finished,
        fake: fake_agent(&greeting, 2),
    };
    for (i, row) in TABLE.iter().enumerate() {
        assert_eq!(row.cause, 0x10 + i as u32, "the table is in cause order");
        let e = (row.provoke)(&f);
        assert_eq!(
            (
                e["cause"].as_u64(),
                e["module"].as_str(),
                e["phase"].as_u64()
            ),
            (
                Some(u64::from(row.cause)),
                Some(row.module),
                Some(u64::from(row.phase))
            ),
            "cause {:#04x}: {e}",
            row.cause
        );
        // The EMG's first operand carries the same codes.
        let op1 = format!(
            "EMG00{:08x}{:04x}{:02x}",
            row.cause,
            row.phase,
            match row.module {
                "Management" => Module::Management.code(),
                other => panic!("no module code for {other} in this table"),
            }
        );
        let emg: lpar_mover::Emg = serde_json::from_value(e.clone()).unwrap();
        assert!(
            emg.to_string().starts_with(&op1),
            "cause {:#04x}: {emg} (want {op1})",
            row.cause
        );
    }
    // Nothing of it stopped the agent, and the refused migration left the
    // LPAR where it was.
    assert_eq!(f.a.lpar("c1")["state"], "Act");
    let mut c = authed(&f);
    let r = c.request(json!({"id": 9, "execute": "lpar-list"}));
    assert!(r["return"].is_object(), "{r}");
}

#[test]
fn a_client_refuses_an_agent_of_another_protocol_version() {
    let scratch = Scratch::new("version");
    let a = Agent::start(&scratch, "hostA", &[]);
    let greeting = Conn::open(&a.addr).greeting();
    assert_eq!(greeting["greeting"]["protocol"], control::PROTOCOL_VERSION);
    // The same greeting with the version changed: refused, before any token.
    for version in [0, u64::from(control::PROTOCOL_VERSION) + 1] {
        let fake = fake_agent(&greeting, version);
        let e = Client::connect(&Address::parse(&fake).unwrap(), Module::Client)
            .err()
            .unwrap_or_else(|| panic!("protocol {version} accepted"));
        // moverctl's: the manual's MMC `0x00 00000000 0006 01`.
        assert_eq!(
            (e.module, e.phase, e.cause),
            (Module::Client, phase::VERSION_MISMATCH, 0),
            "{e}"
        );
        assert!(
            e.message
                .starts_with("The version isn't matched between MMC and MMS."),
            "{e}"
        );
        // An agent driving another: its own connection error.
        let e = Client::connect(&Address::parse(&fake).unwrap(), Module::MoverSource)
            .err()
            .unwrap_or_else(|| panic!("protocol {version} accepted"));
        assert_eq!(
            (e.module, e.phase, e.cause),
            (Module::MoverSource, phase::CONNECT, cause::CONNECTION),
            "{e}"
        );
        assert!(
            e.message
                .contains(&format!("speaks management protocol {version}")),
            "{e}"
        );
        // moverctl says so and fails.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_moverctl"))
            .args(["--agent", &fake, "--token-file"])
            .arg(scratch.token_file())
            .args(["lpar", "list"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(&format!("speaks management protocol {version}")),
            "{}",
            stderr(&out)
        );
    }
    // The real version is accepted by the same client code.
    let mut c = Client::open(&Address::parse(&a.addr).unwrap(), TOKEN, Module::Client).unwrap();
    c.call(control::Command::LparList {}).unwrap();
}
