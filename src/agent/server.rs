//! The management server: one thread per connection (at most
//! [`MAX_CONNECTIONS`]), each with a writer thread that serialises its
//! replies and the events fanned out to it.
//!
//! ```text
//! accept ─▶ connection thread: greeting; loop { read bounded line → decode →
//!               unauthenticated? only `authenticate` (3 wrong tokens or auth_timeout_s: close)
//!               else Agent::handle } ── lines ──▶ writer thread ──▶ socket
//! EventBus ── lines (bounded queue) ──────────────▶ writer thread
//! ```

use super::Agent;
use crate::control::line::{Line, LineReader};
use crate::control::{
    Address, Command, MAX_BAD_TOKENS, MAX_LINE, Stream, cause, decode_request, encode_greeting,
    encode_reply, protocol_error,
};
use crate::emg::Emg;
use crossbeam::channel::{self, Sender};
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Connections served at once; more are refused with an error line.
pub const MAX_CONNECTIONS: usize = 64;
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
    let active = Arc::new(AtomicUsize::new(0));
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
                        spawn(&agent, &active, Stream::Tcp(s));
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
                    Ok(s) => spawn(&agent, &active, Stream::Unix(s)),
                    Err(e) => log::warn!("accept: {e}"),
                }
            }
        }
    }
    Ok(())
}

fn spawn(agent: &Arc<Agent>, active: &Arc<AtomicUsize>, mut stream: Stream) {
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        active.fetch_sub(1, Ordering::SeqCst);
        let e = protocol_error(
            cause::TOO_MANY_CONNECTIONS,
            format!("the agent serves at most {MAX_CONNECTIONS} connections at once"),
            "Close idle connections and retry.",
        );
        let _ = writeln!(stream, "{}", encode_reply(None, &Err(e)));
        return;
    }
    let agent = agent.clone();
    let active2 = active.clone();
    let r = std::thread::Builder::new()
        .name("mgmt-conn".into())
        .spawn(move || {
            let peer = stream.peer();
            if let Err(e) = connection(&agent, stream) {
                log::debug!("connection from {peer}: {e}");
            }
            active2.fetch_sub(1, Ordering::SeqCst);
        });
    if r.is_err() {
        active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn connection(agent: &Arc<Agent>, stream: Stream) -> std::io::Result<()> {
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
    let result = serve_lines(agent, stream, &tx);
    drop(tx);
    let _ = writer.join();
    closer.shutdown();
    result
}

fn serve_lines(agent: &Arc<Agent>, stream: Stream, tx: &Sender<String>) -> std::io::Result<()> {
    let send = |line: String| {
        tx.send(line)
            .map_err(|_| std::io::Error::from(ErrorKind::BrokenPipe))
    };
    send(encode_greeting(&agent.greeting()))?;
    let auth_timeout = Duration::from_secs(agent.config.auth_timeout_s);
    let auth_deadline = Instant::now() + auth_timeout;
    let mut reader = LineReader::new(stream, MAX_LINE);
    let mut bad_tokens = 0;
    let mut subscription = None;
    let result = loop {
        if subscription.is_none() {
            let left = auth_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
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
            reader.get_ref().set_read_timeout(Some(left))?;
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
        let request = match decode_request(line) {
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
                        reader.get_ref().set_read_timeout(None)?;
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
            (_, None) => {
                let e = protocol_error(
                    cause::NOT_AUTHENTICATED,
                    "not authenticated: only \"authenticate\" is served before a valid token",
                    "Authenticate first (execute \"authenticate\" with the token).",
                );
                send(encode_reply(id, &Err(e)))?;
            }
            (_, Some(_)) => {
                let result = agent.handle(request.command);
                send(encode_reply(id, &result))?;
            }
        }
    };
    if let Some(s) = subscription {
        agent.events.unsubscribe(s);
    }
    result
}
