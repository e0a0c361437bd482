//! The management server is one event loop: idle clients cost the agent no
//! threads, and a client that stops reading its replies holds up nobody
//! else. The agent is a real `moverd serve` process.

mod agent_common;

use agent_common::{Agent, Conn, Scratch, TOKEN, wait_for};
use serde_json::json;
use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::Duration;

fn threads(agent: &Agent) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", agent.child.id()))
        .expect("the agent's /proc entry")
        .count()
}

fn authenticated(agent: &Agent) -> Conn {
    let mut c = Conn::open(&agent.addr);
    c.greeting();
    let r = c.request(json!({"id": 0, "execute": "authenticate", "arguments": {"token": TOKEN}}));
    assert_eq!(r["return"], json!({}), "{r}");
    c
}

#[test]
fn sixty_four_idle_clients_cost_the_agent_no_threads() {
    let scratch = Scratch::new("evloop-idle");
    let agent = Agent::start(&scratch, "hostA", &[]);
    // One request first, so whatever the agent starts lazily is running.
    let mut first = authenticated(&agent);
    first.request(json!({"id": 1, "execute": "lpar-list"}));
    drop(first);
    let before = threads(&agent);

    let clients: Vec<Conn> = (0..64).map(|_| authenticated(&agent)).collect();
    // A request's thread ends just after its reply is sent.
    wait_for(
        "the request threads to end",
        Duration::from_secs(10),
        || threads(&agent) <= before,
    );
    let during = threads(&agent);
    assert!(
        during <= before,
        "64 idle connections took {} threads",
        during - before
    );
    // And they are all served.
    for (i, mut c) in clients.into_iter().enumerate() {
        let r = c.request(json!({"id": i + 10, "execute": "lpar-list"}));
        assert_eq!(r["return"]["lpars"], json!([]), "{r}");
    }
}

#[test]
fn a_client_that_never_reads_holds_up_no_other_client() {
    let scratch = Scratch::new("evloop-slow");
    let agent = Agent::start(&scratch, "hostA", &[]);
    let slow = authenticated(&agent);
    // Requests whose replies it never reads, until the agent stops taking
    // them and the kernel's buffers are full both ways.
    let stream: TcpStream = slow.writer.try_clone().unwrap();
    stream.set_nonblocking(true).unwrap();
    let request = b"{\"id\":7,\"execute\":\"lpar-list\"}\n".repeat(1000);
    let mut sent = 0usize;
    'fill: for _ in 0..10_000 {
        let mut rest = &request[..];
        while !rest.is_empty() {
            match (&stream).write(rest) {
                Ok(n) => {
                    sent += n;
                    rest = &rest[n..];
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break 'fill,
                Err(e) => panic!("writing to the agent: {e}"),
            }
        }
    }
    assert!(
        sent > 1 << 20,
        "the agent took only {sent} bytes of requests before pushing back"
    );
    // Another client is served as if nothing were happening.
    let mut other = authenticated(&agent);
    let r = other.request(json!({"id": 2, "execute": "lpar-list"}));
    assert_eq!(r["return"]["lpars"], json!([]), "{r}");
    // The slow client was pushed back, not dropped: reading now, it gets
    // its replies.
    stream.set_nonblocking(false).unwrap();
    let mut slow = slow;
    let r = slow.recv().expect("a reply to the slow client");
    assert_eq!(r["id"], 7, "{r}");
}
