//! What the server does with each line a connection sends: before a valid
//! token only the envelope is read and only `authenticate` is served (a
//! command's arguments, and the list of commands, stay undisclosed); after
//! it, each request runs on a thread of its own and its reply comes back
//! through the server's reply channel.

use super::conn::{Conn, Socket};
use super::tls::Mode;
use super::{QUEUE_DEPTH, Server};
use crate::control::{
    Command, MAX_BAD_TOKENS, MAX_LINE, cause, decode_envelope, encode_greeting, encode_reply,
    protocol_error, reply, request,
};
use crate::emg::{Emg, Module};
use crate::transport::identity;
use crossbeam::channel;
use mio::Token;
use std::sync::Arc;

pub fn auth_timed_out(timeout_s: u64) -> Emg {
    protocol_error(
        cause::NOT_AUTHENTICATED,
        format!("no valid token within {timeout_s} s: closing"),
        "Authenticate first (execute \"authenticate\" with the token).",
    )
}

pub fn on_oversized(c: &mut Conn) {
    let e = protocol_error(
        cause::OVERSIZED,
        format!("request line longer than {MAX_LINE} bytes: ignored"),
        "Send one JSON object per line, at most 1 MiB.",
    );
    c.send(&encode_reply(None, &Err(e)));
}

/// A TLS connection once its first byte or its handshake is in: plaintext
/// is refused; after the handshake, a client certificate is checked
/// against the agent's trust (trusted: the peer agent is authenticated
/// without a token; not: one EMG line and close), then the greeting.
pub fn on_transport(server: &Server, c: &mut Conn) {
    if c.greeted {
        return;
    }
    let Socket::Tls(t) = c.socket() else {
        return;
    };
    let chain = match t.mode {
        Mode::Sniffing => return,
        Mode::Plaintext => {
            let e = crate::control::secure::plaintext_refused(&server.agent.config.name, &c.peer);
            log::warn!("refused {}: {}", c.peer, e.message);
            refuse(c, e);
            return;
        }
        Mode::Tls if !t.established() => return,
        Mode::Tls => t.tls.peer_certificates().map(<[_]>::to_vec),
    };
    if let Some(e) = c.refusal.take() {
        refuse(c, e);
        return;
    }
    c.greeted = true;
    let Some(chain) = chain else {
        c.send(&encode_greeting(&server.agent.greeting()));
        return;
    };
    let tls = server
        .agent
        .tls
        .as_ref()
        .expect("TLS sockets come with an identity");
    match tls.trust.check(&chain, identity::now()) {
        Ok(key) => {
            if let Err(e) = admit(server, c) {
                refuse(c, e);
                return;
            }
            log::info!("peer agent {} authenticated by its key {key}", c.peer);
            c.peer_key = Some(key);
            c.peer_cert = chain.into_iter().next();
            c.send(&encode_greeting(&server.agent.greeting()));
        }
        Err(r) => {
            let who = format!("the agent connecting from {}", c.peer);
            let e = crate::control::secure::refusal(Module::Management, &who, &r, &tls.trust);
            log::warn!("refused {}: {}", c.peer, e.message);
            refuse(c, e);
        }
    }
}

/// The agent name a peer's request says it comes from.
fn claimed_agent(command: &Command) -> Option<&str> {
    match command {
        Command::PrepareIncoming { source_agent, .. }
        | Command::AbandonIncoming { source_agent, .. }
        | Command::ReceiveShutdown { source_agent, .. } => Some(source_agent),
        Command::ValidateIncoming { source, .. } => Some(&source.agent),
        _ => None,
    }
}

/// A peer agent authenticated by a site CA's certificate may only speak
/// for the agent name that certificate was issued for: the CA signed every
/// agent of the site, so without this any of them could pose as another in
/// the journals, the history and the validation report. (A pinned key
/// names its agent already; a token holder is an operator, not an agent.)
fn check_claimed_name(server: &Server, c: &Conn, command: &Command) -> Result<(), Emg> {
    let (Some(cert), Some(claimed), Some(tls)) =
        (&c.peer_cert, claimed_agent(command), &server.agent.tls)
    else {
        return Ok(());
    };
    tls.trust.check_name(cert, claimed).map_err(|r| {
        let who = format!("the agent connecting from {}", c.peer);
        crate::control::secure::refusal(Module::Management, &who, &r, &tls.trust)
    })
}

fn refuse(c: &mut Conn, e: Emg) {
    c.send(&encode_reply(None, &Err(e)));
    c.greeted = true;
    c.closing = true;
}

pub fn on_line(server: &Server, token: Token, c: &mut Conn, line: &[u8]) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    if !c.greeted {
        // Application data before the handshake was seen to end.
        on_transport(server, c);
        if c.closing {
            return;
        }
    }
    let authenticated = c.events.is_some();
    let decoded = match decode_envelope(line) {
        Ok(envelope) if !authenticated && envelope.execute != "authenticate" => {
            let e = protocol_error(
                cause::NOT_AUTHENTICATED,
                "not authenticated: only \"authenticate\" is served before a valid token",
                "Authenticate first (execute \"authenticate\" with the token).",
            );
            c.send(&encode_reply(Some(envelope.id), &Err(e)));
            return;
        }
        Ok(envelope) => envelope.decode(),
        Err(bad) => Err(bad),
    };
    let request = match decoded {
        Ok(r) => r,
        Err(bad) => {
            c.send(&encode_reply(bad.id, &Err(bad.error)));
            return;
        }
    };
    let id = Some(request.id);
    match request.command {
        Command::Authenticate { token } => authenticate(server, c, id, &token),
        command => {
            debug_assert!(authenticated, "only authenticate is decoded before a token");
            if let Err(e) = check_claimed_name(server, c, &command) {
                log::warn!("refused {}: {}", c.peer, e.message);
                c.send(&encode_reply(id, &Err(e)));
                return;
            }
            dispatch(server, token, c, id, command);
        }
    }
}

fn authenticate(server: &Server, c: &mut Conn, id: Option<u64>, token: &str) {
    if !server.agent.token_matches(token) {
        c.bad_tokens += 1;
        let closing = c.bad_tokens >= MAX_BAD_TOKENS;
        let e = protocol_error(
            cause::BAD_TOKEN,
            format!(
                "authentication failed ({} of {MAX_BAD_TOKENS} attempts){}",
                c.bad_tokens,
                if closing { ": closing" } else { "" }
            ),
            "Use the token in the agent's token file (moverctl --token-file).",
        );
        c.send(&encode_reply(id, &Err(e)));
        c.closing = closing;
        return;
    }
    if let Err(e) = admit(server, c) {
        c.send(&encode_reply(id, &Err(e)));
        c.closing = true;
        return;
    }
    let welcome = crate::agent::answer::<request::Authenticate>(Ok(reply::Empty {}));
    c.send(&encode_reply(id, &welcome));
}

/// Makes `c` an authenticated connection (once): its slot, its events.
fn admit(server: &Server, c: &mut Conn) -> Result<(), Emg> {
    if c.events.is_some() {
        return Ok(());
    }
    c.slot.authenticated()?;
    c.auth_deadline = None;
    let (tx, rx) = channel::bounded::<String>(QUEUE_DEPTH);
    let waker = server.waker.clone();
    let notify = Arc::new(move || {
        let _ = waker.wake();
    });
    let subscription = server.agent.events.subscribe(tx, notify);
    c.events = Some((subscription, rx));
    Ok(())
}

/// Runs `command` on a thread; its reply wakes the event loop.
fn dispatch(server: &Server, token: Token, c: &mut Conn, id: Option<u64>, command: Command) {
    let agent = server.agent.clone();
    let replies = server.replies_tx.clone();
    let waker = server.waker.clone();
    c.busy = true;
    let spawned = std::thread::Builder::new()
        .name("mgmt-request".into())
        .spawn(move || {
            let result = crate::agent::panics::serve(&agent, command);
            let _ = replies.send((token, encode_reply(id, &result)));
            let _ = waker.wake();
        });
    if let Err(e) = spawned {
        c.busy = false;
        let e = protocol_error(
            cause::INTERNAL,
            format!("cannot start a thread for the request: {e}"),
            "Check the agent host's process and memory limits, then retry.",
        );
        c.send(&encode_reply(id, &Err(e)));
    }
}
