//! The agents' events, relayed to the pages as server-sent events.
//!
//! ```text
//! agent ──MIGRATION_* lines──▶ relay thread (one per agent, own connection)
//!                                   │ Hub::push: numbered 1, 2, 3, …
//!                                   ▼
//!                     ring of the last RING events ──▶ each page's stream
//!                     (id: <n>\ndata: {"agent","host","event","data",…}\n\n)
//! ```
//!
//! An agent sends every event to every authenticated connection, so a
//! connection that only reads them misses none while it is up. Each relay
//! thread keeps one open (reconnecting every [`RETRY`] when the agent is
//! down, with an `AGENT_DOWN` / `AGENT_UP` pseudo-event so the page can
//! say so) and pushes what it reads into the [`Hub`]. A page's stream
//! starts after the number it names (`Last-Event-ID`, which the browser
//! sends when it reconnects, or `?since=`) and then waits for the next:
//! nothing is polled and no stage is skipped while the ring holds it.

use super::links::Link;
use crate::control::Event;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Events the hub keeps for streams that reconnect.
pub const RING: usize = 4096;

/// How long a relay waits before it connects again to an agent it lost.
pub const RETRY: Duration = Duration::from_millis(500);

/// How often a stream with nothing to say sends a comment (keeps proxies
/// from closing it, and finds a page that went away).
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// The numbered events, and the condition streams wait on.
#[derive(Default)]
pub struct Hub {
    ring: Mutex<(u64, VecDeque<(u64, String)>)>,
    more: Condvar,
}

impl Hub {
    /// Numbers `event` and wakes every stream.
    pub fn push(&self, mut event: Value) -> u64 {
        let mut g = self.ring.lock().unwrap();
        g.0 += 1;
        let n = g.0;
        event["seq"] = json!(n);
        g.1.push_back((n, event.to_string()));
        if g.1.len() > RING {
            g.1.pop_front();
        }
        self.more.notify_all();
        n
    }

    /// The number of the latest event.
    pub fn latest(&self) -> u64 {
        self.ring.lock().unwrap().0
    }

    /// The events after `since`, waiting up to `wait` for one.
    pub fn after(&self, since: u64, wait: Duration) -> Vec<(u64, String)> {
        let g = self.ring.lock().unwrap();
        let (g, _) = self
            .more
            .wait_timeout_while(g, wait, |g| g.0 <= since)
            .unwrap();
        g.1.iter().filter(|(n, _)| *n > since).cloned().collect()
    }
}

/// The hub's line for `event` from the agent at `address` named `host`.
pub fn relayed(address: &str, host: &str, event: &Event) -> Value {
    let mut v = serde_json::to_value(event).expect("events serialise");
    v["agent"] = json!(address);
    v["host"] = json!(host);
    v["received_ns"] = json!(crate::engine::wall_clock_ns());
    v
}

/// Relays the events of the agent behind `link` into `hub`, for ever.
pub fn relay(link: Arc<Link>, hub: Arc<Hub>) {
    let mut was_up = None;
    loop {
        let mut client = match link.open() {
            Ok(c) => c,
            Err(e) => {
                if was_up != Some(false) {
                    hub.push(json!({"event": "AGENT_DOWN", "agent": link.address,
                                    "data": {"error": e, "emg": e.to_string()}}));
                    was_up = Some(false);
                }
                std::thread::sleep(RETRY);
                continue;
            }
        };
        let host = client.greeting().agent.clone();
        hub.push(json!({"event": "AGENT_UP", "agent": link.address, "host": host, "data": {}}));
        was_up = Some(true);
        loop {
            match client.next_event(Duration::from_secs(60)) {
                Ok(Some(e)) => {
                    hub.push(relayed(&link.address, &host, &e));
                }
                Ok(None) => {}
                Err(e) => {
                    log::warn!("console: events of {}: {e}", link.address);
                    break;
                }
            }
        }
    }
}

/// Writes the event stream after `since` to `out` until the page goes
/// away: the response head first, then each event as it comes, and a
/// comment after `keepalive` without one.
pub fn stream(
    hub: &Hub,
    mut since: u64,
    keepalive: Duration,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
          X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 1000\n\n",
    )?;
    out.flush()?;
    loop {
        let events = hub.after(since, keepalive);
        if events.is_empty() {
            out.write_all(b": keepalive\n\n")?;
        }
        for (n, line) in events {
            write!(out, "id: {n}\ndata: {line}\n\n")?;
            since = n;
        }
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_gets_every_event_after_its_number_in_order() {
        let hub = Arc::new(Hub::default());
        for i in 0..3 {
            hub.push(json!({"event": "X", "i": i}));
        }
        let got = hub.after(1, Duration::ZERO);
        assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2, 3]);
        assert!(got[0].1.contains("\"seq\":2"), "{}", got[0].1);
        // A waiting stream is woken by the next push.
        let h = hub.clone();
        let waiter = std::thread::spawn(move || h.after(3, Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        hub.push(json!({"event": "Y"}));
        let got = waiter.join().unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].1.contains("\"Y\""));
    }

    #[test]
    fn the_ring_keeps_the_latest() {
        let hub = Hub::default();
        for i in 0..RING + 10 {
            hub.push(json!({ "i": i }));
        }
        let got = hub.after(0, Duration::ZERO);
        assert_eq!(got.len(), RING);
        assert_eq!(got[0].0, 11);
        assert_eq!(hub.latest(), (RING + 10) as u64);
    }

    #[test]
    fn the_stream_is_server_sent_events() {
        let hub = Hub::default();
        hub.push(json!({"event": "MIGRATION_STAGE", "data": {"stage": 16464}}));
        // A writer that fails after the first event ends the stream.
        struct Once(Vec<u8>, usize);
        impl Write for Once {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.1 += 1;
                if self.1 > 2 {
                    return Err(std::io::ErrorKind::BrokenPipe.into());
                }
                Ok(())
            }
        }
        let mut w = Once(Vec::new(), 0);
        assert!(stream(&hub, 0, Duration::from_millis(10), &mut w).is_err());
        let text = String::from_utf8(w.0).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/event-stream"));
        assert!(text.contains("id: 1\ndata: {"), "{text}");
        assert!(text.contains("\"stage\":16464"));
    }
}
