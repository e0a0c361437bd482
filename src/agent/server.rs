//! The management server: one thread per connection (at most
//! [`MAX_CONNECTIONS`] authenticated plus [`MAX_UNAUTHENTICATED`] waiting
//! to authenticate, see [`Slots`]), each with a writer thread that
//! serialises its replies and the events fanned out to it.
//!
//! ```text
//! accept ─▶ slot? ─▶ connection thread: greeting; loop { read bounded line →
//!               unauthenticated? envelope only, only `authenticate` served
//!                 (3 wrong tokens, or auth_timeout_s however the bytes come: close)
//!               else decode → Agent::handle } ── lines ──▶ writer thread ──▶ socket
//! EventBus ── lines (bounded queue) ──────────────▶ writer thread
//! ```

use super::Agent;
use crate::control::line::{Line, LineReader};
use crate::control::{
    Address, Command, MAX_BAD_TOKENS, MAX_LINE, Stream, cause, decode_envelope, encode_greeting,
    encode_reply, protocol_error,
};
use crate::emg::Emg;
use crossbeam::channel::{self, Sender};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Authenticated connections served at once; more are refused with an
/// error line.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections waiting to authenticate, apart from [`MAX_CONNECTIONS`].
pub const MAX_UNAUTHENTICATED: usize = 32;
/// Of those, from one client address (TCP) once half are taken: a burst
/// from one host (a source agent validating several migrations at once)
/// is served while nobody else waits, and one address can never hold
/// more than half.
pub const MAX_UNAUTHENTICATED_PER_PEER: usize = 4;
/// Lines queued for one connection (replies and events).
pub const QUEUE_DEPTH: usize = 1024;

fn listen_error(address: &str, e: std::io::Error) -> Emg {
    Emg::new(
        crate::emg::Module::Management,
        crate::emg::phase::CONNECT,
        cause::CONNECTION,
        format!("cannot listen on {address}: {e}"),
        "Choose a free address (moverd --listen) or stop the process that holds it.",
    )
}

/// Listens on the configured address and serves until the process ends.
/// Prints `LISTENING <address>` on standard output once ready.
pub fn serve(agent: Arc<Agent>) -> Result<(), Emg> {
    let listen = agent.config.listen.clone();
    let address =
        Address::parse(&listen).map_err(|m| listen_error(&listen, std::io::Error::other(m)))?;
    let slots = Arc::new(Slots::default());
    let announce = |what: String| {
        let _ = agent.advertised.set(what.clone());
        println!("LISTENING {what}");
        let _ = std::io::stdout().flush();
        log::info!("agent {} listening on {what}", agent.config.name);
    };
    match address {
        Address::Tcp(hp) => {
            let l = TcpListener::bind(&hp).map_err(|e| listen_error(&hp, e))?;
            announce(l.local_addr().map_or(hp.clone(), |a| a.to_string()));
            for s in l.incoming() {
                match s {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        spawn(&agent, &slots, Stream::Tcp(s));
                    }
                    Err(e) => log::warn!("accept: {e}"),
                }
            }
        }
        Address::Unix(p) => {
            // A socket file left by a previous run would make bind fail.
            if std::fs::symlink_metadata(&p)
                .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                .unwrap_or(false)
            {
                let _ = std::fs::remove_file(&p);
            }
            let shown = p.display().to_string();
            let l = UnixListener::bind(&p).map_err(|e| listen_error(&shown, e))?;
            announce(shown);
            for s in l.incoming() {
                match s {
                    Ok(s) => spawn(&agent, &slots, Stream::Unix(s)),
                    Err(e) => log::warn!("accept: {e}"),
                }
            }
        }
    }
    Ok(())
}

fn spawn(agent: &Arc<Agent>, slots: &Arc<Slots>, mut stream: Stream) {
    let slot = match slots.admit(stream.peer_ip()) {
        Ok(slot) => slot,
        Err(e) => {
            let _ = writeln!(stream, "{}", encode_reply(None, &Err(e)));
            return;
        }
    };
    let agent = agent.clone();
    let r = std::thread::Builder::new()
        .name("mgmt-conn".into())
        .spawn(move || {
            let peer = stream.peer();
            // The slot is released however the connection ends (its
            // guard is dropped on return and on unwinding alike).
            if let Err(e) = connection(&agent, stream, slot) {
                log::debug!("connection from {peer}: {e}");
            }
        });
    if let Err(e) = r {
        log::warn!("cannot start a connection thread: {e}");
    }
}

fn connection(agent: &Arc<Agent>, stream: Stream, slot: Slot) -> std::io::Result<()> {
    let (tx, rx) = channel::bounded::<String>(QUEUE_DEPTH);
    let mut out = stream.try_clone()?;
    let writer = std::thread::Builder::new()
        .name("mgmt-write".into())
        .spawn(move || {
            for mut line in rx {
                line.push('\n');
                if out.write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
        })?;
    let closer = stream.try_clone()?;
    let result = serve_lines(agent, stream, slot, &tx);
    drop(tx);
    let _ = writer.join();
    closer.shutdown();
    result
}

/// The connection as the line reader sees it: while a deadline is set,
/// every read (not every line) waits at most until it and fails after it,
/// however slowly the bytes trickle in.
struct Deadlined {
    stream: Stream,
    deadline: Option<Instant>,
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        self.stream.read(buf)
    }
}

fn serve_lines(
    agent: &Arc<Agent>,
    stream: Stream,
    mut slot: Slot,
    tx: &Sender<String>,
) -> std::io::Result<()> {
    let send = |line: String| {
        tx.send(line)
            .map_err(|_| std::io::Error::from(ErrorKind::BrokenPipe))
    };
    send(encode_greeting(&agent.greeting()))?;
    let auth_timeout = Duration::from_secs(agent.config.auth_timeout_s);
    let auth_deadline = crate::engine::later(Instant::now(), auth_timeout);
    let mut reader = LineReader::new(
        Deadlined {
            stream,
            deadline: Some(auth_deadline),
        },
        MAX_LINE,
    );
    let mut bad_tokens = 0;
    let mut subscription = None;
    let result = loop {
        if subscription.is_none() && Instant::now() >= auth_deadline {
            let e = protocol_error(
                cause::NOT_AUTHENTICATED,
                format!(
                    "no valid token within {} s: closing",
                    auth_timeout.as_secs()
                ),
                "Authenticate first (execute \"authenticate\" with the token).",
            );
            let _ = send(encode_reply(None, &Err(e)));
            break Ok(());
        }
        match reader.read_line() {
            Ok(Line::Eof) => break Ok(()),
            Ok(Line::Oversized) => {
                let e = protocol_error(
                    cause::OVERSIZED,
                    format!("request line longer than {MAX_LINE} bytes: ignored"),
                    "Send one JSON object per line, at most 1 MiB.",
                );
                send(encode_reply(None, &Err(e)))?;
                continue;
            }
            Ok(Line::Complete) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => break Err(e),
        }
        let line = reader.line();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Before a valid token only the envelope is read: a command's
        // arguments (and the list of commands) stay undisclosed.
        let decoded = match decode_envelope(line) {
            Ok(envelope) if subscription.is_none() && envelope.execute != "authenticate" => {
                let e = protocol_error(
                    cause::NOT_AUTHENTICATED,
                    "not authenticated: only \"authenticate\" is served before a valid token",
                    "Authenticate first (execute \"authenticate\" with the token).",
                );
                send(encode_reply(Some(envelope.id), &Err(e)))?;
                continue;
            }
            Ok(envelope) => envelope.decode(),
            Err(bad) => Err(bad),
        };
        let request = match decoded {
            Ok(r) => r,
            Err(bad) => {
                send(encode_reply(bad.id, &Err(bad.error)))?;
                continue;
            }
        };
        let id = Some(request.id);
        match (&request.command, subscription) {
            (Command::Authenticate { token }, _) => {
                if agent.token_matches(token) {
                    if subscription.is_none() {
                        if let Err(e) = slot.authenticated() {
                            let _ = send(encode_reply(id, &Err(e)));
                            break Ok(());
                        }
                        let r = reader.get_mut();
                        r.deadline = None;
                        r.stream.set_read_timeout(None)?;
                        subscription = Some(agent.events.subscribe(tx.clone()));
                    }
                    send(encode_reply(id, &Ok(serde_json::json!({}))))?;
                } else {
                    bad_tokens += 1;
                    let closing = bad_tokens >= MAX_BAD_TOKENS;
                    let e = protocol_error(
                        cause::BAD_TOKEN,
                        format!(
                            "authentication failed ({bad_tokens} of {MAX_BAD_TOKENS} attempts){}",
                            if closing { ": closing" } else { "" }
                        ),
                        "Use the token in the agent's token file (moverctl --token-file).",
                    );
                    send(encode_reply(id, &Err(e)))?;
                    if closing {
                        break Ok(());
                    }
                }
            }
            (_, None) => unreachable!("only authenticate is decoded before a valid token"),
            (_, Some(_)) => {
                let result = super::panics::serve(agent, request.command);
                send(encode_reply(id, &result))?;
            }
        }
    };
    if let Some(s) = subscription {
        agent.events.unsubscribe(s);
    }
    result
}

/// Connection slots. Authenticated connections (clients, peer agents) have
/// [`MAX_CONNECTIONS`]; connections not yet authenticated have their own
/// quota ([`MAX_UNAUTHENTICATED`]; once half of it is taken, at most
/// [`MAX_UNAUTHENTICATED_PER_PEER`] from one address), so however many a
/// stranger opens, the authenticated ones keep their room, and a stranger
/// at one address cannot keep another address out.
#[derive(Default)]
pub struct Slots {
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    authenticated: usize,
    unauthenticated: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// One connection's slot, released when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    peer: Option<IpAddr>,
    authenticated: bool,
}

fn too_many(message: String) -> Emg {
    protocol_error(
        cause::TOO_MANY_CONNECTIONS,
        message,
        "Close idle connections and retry.",
    )
}

impl Slots {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new (unauthenticated) connection from `peer`.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Slot, Emg> {
        let mut c = self.counts();
        if c.unauthenticated >= MAX_UNAUTHENTICATED {
            return Err(too_many(format!(
                "{MAX_UNAUTHENTICATED} connections are waiting to authenticate"
            )));
        }
        let crowded = c.unauthenticated >= MAX_UNAUTHENTICATED / 2;
        if let Some(ip) = peer {
            let n = c.per_peer.entry(ip).or_default();
            if crowded && *n >= MAX_UNAUTHENTICATED_PER_PEER {
                return Err(too_many(format!(
                    "{MAX_UNAUTHENTICATED_PER_PEER} connections from {ip} are waiting to \
                     authenticate"
                )));
            }
            *n += 1;
        }
        c.unauthenticated += 1;
        Ok(Slot {
            slots: self.clone(),
            peer,
            authenticated: false,
        })
    }

    fn release_unauthenticated(c: &mut Counts, peer: Option<IpAddr>) {
        c.unauthenticated -= 1;
        if let Some(ip) = peer
            && let Some(n) = c.per_peer.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                c.per_peer.remove(&ip);
            }
        }
    }
}

impl Slot {
    /// Moves this connection to the authenticated slots, if one is free.
    fn authenticated(&mut self) -> Result<(), Emg> {
        let mut c = self.slots.counts();
        if c.authenticated >= MAX_CONNECTIONS {
            return Err(too_many(format!(
                "the agent serves at most {MAX_CONNECTIONS} authenticated connections at once"
            )));
        }
        Slots::release_unauthenticated(&mut c, self.peer);
        c.authenticated += 1;
        self.authenticated = true;
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.slots.counts();
        if self.authenticated {
            c.authenticated -= 1;
        } else {
            Slots::release_unauthenticated(&mut c, self.peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(s: &Slots) -> (usize, usize, usize) {
        let c = s.counts();
        (c.authenticated, c.unauthenticated, c.per_peer.len())
    }

    #[test]
    fn strangers_have_their_own_quota_and_slots_come_back_on_every_exit() {
        let slots = Arc::new(Slots::default());
        let one: IpAddr = [10, 0, 0, 1].into();
        // One address alone may take half the quota, no more.
        let mine: Vec<Slot> = (0..MAX_UNAUTHENTICATED / 2)
            .map(|_| slots.admit(Some(one)).unwrap())
            .collect();
        let e = slots.admit(Some(one)).err().unwrap();
        assert_eq!(e.cause, cause::TOO_MANY_CONNECTIONS);
        assert!(e.message.contains("10.0.0.1"), "{e}");
        // Another address, or a Unix socket, still gets in.
        let other = slots.admit(Some([10, 0, 0, 2].into())).unwrap();
        let unix = slots.admit(None).unwrap();
        drop((mine, other, unix));
        assert_eq!(counts(&slots), (0, 0, 0));

        // Authenticated slots are apart from the strangers' quota.
        let mut held = Vec::new();
        for i in 0..MAX_CONNECTIONS {
            let mut s = slots
                .admit(Some([10, 1, 0, (i % 200) as u8].into()))
                .unwrap();
            s.authenticated().unwrap();
            held.push(s);
        }
        let strangers: Vec<Slot> = (0..MAX_UNAUTHENTICATED)
            .map(|i| slots.admit(Some([10, 2, 0, i as u8].into())).unwrap())
            .collect();
        let mut late = slots.admit(None).err();
        assert!(late.take().is_some(), "the strangers' quota is full");
        let mut s = strangers.into_iter().next().unwrap();
        assert!(s.authenticated().is_err(), "no authenticated slot is free");
        drop(s);

        // A connection thread that panics still gives its slot back.
        let s = held.pop().unwrap();
        let r = std::thread::spawn(move || {
            let _slot = s;
            panic!("a bug in a handler");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(counts(&slots).0, MAX_CONNECTIONS - 1);
        drop(held);
        assert_eq!(counts(&slots).0, 0);
    }
}
