//! `moverctl console`: the operator's console, a web page in front of the
//! management protocol.
//!
//! ```text
//!  browser ──HTTP──▶ moverctl console ──management protocol──▶ moverd (each --agent)
//!          ◀─SSE───          ▲  one event connection per agent ◀── MIGRATION_* events
//! ```
//!
//! One process, no async runtime: `tiny_http` accepts the requests and each
//! is served on a thread of its own ([`server`]). What it serves:
//!
//! * `/`, `/console.js`, `/console.css`: one page, embedded in the binary
//!   (`assets/`, `include_str!`); it holds no data, so it is served to anyone
//!   who can reach the listener.
//! * `/api/login`: the agents' token (the console's `--token-file`),
//!   compared in constant time, buys a session cookie ([`auth`]):
//!   `HttpOnly`, `SameSite=Strict`, random 256 bits. Every other `/api/`
//!   route and the event stream refuse a request without it (401). A POST
//!   must carry `Content-Type: application/json` and, when the browser sends
//!   one, an `Origin` naming the console's own host: a page elsewhere can
//!   neither read nor drive the console.
//! * `/api/…`: a small JSON API ([`api`]); each call becomes one request
//!   to the agent it names (by its address as given with `--agent`, never
//!   any other), sent over that agent's connection ([`links`]); an agent's
//!   refusal comes back as its EMG with HTTP 409, an agent out of reach as
//!   502.
//! * `/api/events`: server-sent events ([`relay`]). One connection per
//!   agent reads its events as they come (the agent sends every event to
//!   every authenticated connection) into a numbered ring; each page's
//!   stream replays from the number it last saw (`Last-Event-ID`), so a
//!   stage is never skipped, even across a reconnect.
//!
//! The listener is loopback by default (`--listen 127.0.0.1:8080`); a
//! request whose `Host` is not the listen address (or `localhost` on its
//! port) is refused, so a DNS name rebound to 127.0.0.1 cannot reach it.

pub mod api;
pub mod auth;
pub mod handlers;
pub mod links;
pub mod relay;
pub mod server;

use crate::control::Address;
use crate::emg::Emg;
use clap::Args;
use std::path::Path;

/// `moverctl console` options (`--token-file` is moverctl's global one).
#[derive(Args, Debug, Clone)]
pub struct ConsoleArgs {
    /// Where the console listens (HTTP). Loopback by default: put it behind
    /// a TLS proxy to reach it from elsewhere.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// An agent to manage: host:port or a Unix socket path (repeat for each).
    #[arg(long = "agent", id = "agent", value_name = "ADDR", required = true)]
    pub agents: Vec<String>,
}

/// Runs the console until the process is killed. Prints
/// `CONSOLE http://<addr>/` on standard output once it listens.
pub fn run(args: &ConsoleArgs, token_file: Option<&Path>) -> Result<(), Emg> {
    let token_file = token_file
        .ok_or_else(|| server::usage("no token file: give --token-file or set MOVER_TOKEN_FILE"))?;
    let token = crate::agent::config::read_token(token_file).map_err(|mut e| {
        e.module = crate::emg::Module::Client;
        e
    })?;
    let mut agents = Vec::new();
    for a in &args.agents {
        Address::parse(a).map_err(|e| server::usage(&format!("--agent {a}: {e}")))?;
        agents.push(a.clone());
    }
    let console = std::sync::Arc::new(api::Console::new(agents, token));
    console.start_relays();
    server::serve(&args.listen, console)
}
