//! The management server: one `mio` event loop for every management
//! connection, so idle clients cost no threads and a client that is slow
//! to read never holds up another. Requests run on a thread each (a
//! `validate` may measure the path for seconds; migrations run on threads
//! of their own anyway) and hand their reply back through a channel and a
//! waker.
//!
//! ```text
//! listener ─▶ slot? ─▶ Conn: greeting queued
//! readable ─▶ bounded lines ─▶ before a valid token: only `authenticate`
//!                               (3 wrong tokens, or auth_timeout_s: close)
//!                          └─▶ after: one request at a time ─▶ thread:
//!                               Agent::handle ─▶ replies channel + wake
//! EventBus ─▶ per-connection bounded queue + wake ─▶ write queue
//! writable ─▶ write queue ─▶ socket
//! ```
//!
//! A connection takes its next request only when the last one was
//! answered and its write queue is under [`conn::OUT_LIMIT`]; otherwise
//! its bytes wait in the kernel's socket buffer (TCP backpressure). At most
//! [`MAX_CONNECTIONS`] authenticated connections plus
//! [`MAX_UNAUTHENTICATED`] waiting to authenticate are held ([`Slots`]).

mod conn;
mod requests;
mod slots;
mod tls;

pub use slots::{Slot, Slots};

use super::Agent;
use crate::control::{Address, cause, encode_greeting, encode_reply};
use crate::emg::Emg;
use conn::{Conn, Input, Socket};
use crossbeam::channel::{self, Receiver};
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::sync::Arc;
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
/// Events queued for one connection beyond its write queue.
pub const QUEUE_DEPTH: usize = 1024;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection tokens count up from here and are never reused, so a reply
/// for a connection that has gone cannot reach its successor.
const FIRST_CONNECTION: usize = 2;

fn listen_error(address: &str, e: std::io::Error) -> Emg {
    Emg::new(
        crate::emg::Module::Management,
        crate::emg::phase::CONNECT,
        cause::CONNECTION,
        format!("cannot listen on {address}: {e}"),
        "Choose a free address (moverd --listen) or stop the process that holds it.",
    )
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn bind(address: &Address) -> Result<(Listener, String), Emg> {
        Ok(match address {
            Address::Tcp(hp) => {
                let l = std::net::TcpListener::bind(hp).map_err(|e| listen_error(hp, e))?;
                l.set_nonblocking(true).map_err(|e| listen_error(hp, e))?;
                let shown = l.local_addr().map_or(hp.clone(), |a| a.to_string());
                (Listener::Tcp(TcpListener::from_std(l)), shown)
            }
            Address::Unix(p) => {
                // A socket file left by a previous run would make bind fail.
                if std::fs::symlink_metadata(p)
                    .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                    .unwrap_or(false)
                {
                    let _ = std::fs::remove_file(p);
                }
                let shown = p.display().to_string();
                let l = UnixListener::bind(p).map_err(|e| listen_error(&shown, e))?;
                (Listener::Unix(l), shown)
            }
        })
    }

    fn register(&mut self, poll: &Poll) -> std::io::Result<()> {
        let r = poll.registry();
        match self {
            Listener::Tcp(l) => r.register(l, LISTENER, Interest::READABLE),
            Listener::Unix(l) => r.register(l, LISTENER, Interest::READABLE),
        }
    }

    /// The next pending connection and its IP address (TCP), if any.
    fn accept(&self) -> std::io::Result<(Socket, Option<std::net::IpAddr>)> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept()?;
                let _ = s.set_nodelay(true);
                Ok((Socket::Tcp(s), Some(a.ip())))
            }
            Listener::Unix(l) => Ok((Socket::Unix(l.accept()?.0), None)),
        }
    }
}

/// A finished request: the connection it belongs to and its reply line.
type Reply = (Token, String);

/// Listens on the configured address and serves until the process ends.
/// Prints `LISTENING <address>` on standard output once ready.
pub fn serve(agent: Arc<Agent>) -> Result<(), Emg> {
    let listen = agent.config.listen.clone();
    let address =
        Address::parse(&listen).map_err(|m| listen_error(&listen, std::io::Error::other(m)))?;
    let (mut listener, shown) = Listener::bind(&address)?;
    let poll = Poll::new().map_err(|e| listen_error(&listen, e))?;
    listener
        .register(&poll)
        .map_err(|e| listen_error(&listen, e))?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| listen_error(&listen, e))?);
    // TLS on TCP for an agent with an identity, unless told to serve plain.
    let tls = match (&listener, &agent.tls) {
        (Listener::Tcp(_), Some(t)) if !agent.config.insecure_plaintext_management => {
            Some(t.server.clone())
        }
        _ => None,
    };
    let _ = agent.advertised.set(shown.clone());
    println!("LISTENING {shown}");
    let _ = std::io::stdout().flush();
    log::info!(
        "agent {} listening on {shown}{}",
        agent.config.name,
        if tls.is_some() { " (TLS)" } else { "" }
    );
    let (replies_tx, replies) = channel::unbounded::<Reply>();
    let mut server = Server {
        agent,
        poll,
        waker,
        replies_tx,
        slots: Arc::new(Slots::default()),
        conns: HashMap::new(),
        next_token: FIRST_CONNECTION,
        tls,
    };
    server.run(&listener, &replies);
    Ok(())
}

pub(super) struct Server {
    pub(super) agent: Arc<Agent>,
    poll: Poll,
    pub(super) waker: Arc<Waker>,
    pub(super) replies_tx: channel::Sender<Reply>,
    slots: Arc<Slots>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    /// The TLS configuration of a TCP listener with TLS.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Server {
    fn run(&mut self, listener: &Listener, replies: &Receiver<Reply>) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!("management event loop: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let mut touched: Vec<Token> = Vec::new();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(listener, &mut touched),
                    WAKER => {}
                    token => touched.push(token),
                }
            }
            for (token, line) in replies.try_iter() {
                if let Some(c) = self.conns.get_mut(&token) {
                    c.busy = false;
                    c.send(&line);
                    touched.push(token);
                }
            }
            // Events may have arrived for any authenticated connection.
            touched.extend(
                self.conns
                    .iter()
                    .filter(|(_, c)| c.events.as_ref().is_some_and(|(_, rx)| !rx.is_empty()))
                    .map(|(t, _)| *t),
            );
            self.expire_unauthenticated(&mut touched);
            touched.sort_unstable();
            touched.dedup();
            for token in touched {
                self.service(token);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter(|c| !c.closing)
            .filter_map(|c| c.auth_deadline)
            .min()
    }

    fn accept_all(&mut self, listener: &Listener, touched: &mut Vec<Token>) {
        loop {
            let (socket, ip) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("accept: {e}");
                    return;
                }
            };
            let mut socket = match (socket, &self.tls) {
                (Socket::Tcp(tcp), Some(config)) => {
                    match rustls::ServerConnection::new(config.clone()) {
                        Ok(c) => Socket::Tls(Box::new(tls::TlsSocket::new(tcp, c))),
                        Err(e) => {
                            log::warn!("cannot start TLS on a new connection: {e}");
                            continue;
                        }
                    }
                }
                (s, _) => s,
            };
            let mut refusal = None;
            let slot = match (self.slots.admit(ip), &socket) {
                (Ok(slot), _) => slot,
                // TLS: the line can go out only after the handshake, so
                // the connection is held that long (a few at most).
                (Err(e), Socket::Tls(_)) => match self.slots.admit_to_refuse() {
                    Some(slot) => {
                        refusal = Some(e);
                        slot
                    }
                    None => continue,
                },
                (Err(e), _) => {
                    // Best effort: a fresh socket's buffer takes one line.
                    let _ = writeln!(socket, "{}", encode_reply(None, &Err(e)));
                    continue;
                }
            };
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Err(e) = self.poll.registry().register(
                &mut socket,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("cannot watch a new connection: {e}");
                continue;
            }
            let timeout = Duration::from_secs(self.agent.config.auth_timeout_s);
            let deadline = crate::units::later(Instant::now(), timeout);
            let tls = matches!(socket, Socket::Tls(_));
            let mut conn = Conn::new(socket, slot, deadline);
            conn.refusal = refusal;
            if !tls {
                // TLS: after the handshake (requests::on_transport).
                conn.send(&encode_greeting(&self.agent.greeting()));
                conn.greeted = true;
            }
            self.conns.insert(token, conn);
            touched.push(token);
        }
    }

    fn expire_unauthenticated(&mut self, touched: &mut Vec<Token>) {
        let now = Instant::now();
        let timeout = self.agent.config.auth_timeout_s;
        for (token, c) in &mut self.conns {
            if !c.closing && c.auth_deadline.is_some_and(|d| d <= now) {
                c.send(&encode_reply(None, &Err(requests::auth_timed_out(timeout))));
                c.closing = true;
                touched.push(*token);
            }
        }
    }

    /// Reads what the connection sent, takes its requests while it may,
    /// moves its events, writes, and closes it when it is done.
    fn service(&mut self, token: Token) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        let mut alive = true;
        loop {
            // Edge-triggered readiness: input left unread because the
            // connection was not ready is read once it is, here.
            let mut drained = false;
            while c.ready_for_input() {
                match c.next_input() {
                    Input::Line => {
                        let line = c.line().to_vec();
                        requests::on_line(self, token, &mut c, &line);
                    }
                    Input::Oversized => requests::on_oversized(&mut c),
                    Input::Nothing => drained = true,
                    Input::Closed => c.closing = true,
                }
                if drained {
                    break;
                }
            }
            requests::on_transport(self, &mut c);
            c.take_events();
            if let Err(e) = c.flush() {
                log::debug!("connection from {}: {e}", c.peer);
                alive = false;
                break;
            }
            if drained || !c.ready_for_input() {
                break;
            }
        }
        if !alive || c.finished() {
            self.close(c);
        } else {
            self.conns.insert(token, c);
        }
    }

    fn close(&mut self, mut c: Conn) {
        if let Some((id, _)) = c.events.take() {
            self.agent.events.unsubscribe(id);
        }
        let _ = self.poll.registry().deregister(c.socket());
        // Dropping `c` closes the socket and gives its slot back. A request
        // still running answers into the void: its token is never reused.
    }
}
