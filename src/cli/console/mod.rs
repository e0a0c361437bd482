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
//! * `/api/login`: the agents' token (the console's `--token-file`), or
//!   each agent's when they differ (a `--config` file's `[[agents]]`),
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
//! * `/api/policy…`: a policy file (`moverctl policy`'s format) run by
//!   the console itself, entry after entry, its entries' outcomes relayed
//!   as `POLICY` events ([`policy`]).
//!
//! The agents, by flags or by a file (`--config`), or both:
//!
//! ```toml
//! [[agents]]
//! address = "hvm1:7400"                    # host:port or a Unix socket path
//! token_file = "/etc/lpar-mover/hvm1.token" # optional: default --token-file
//! ```
//!
//! The listener is loopback by default (`--listen 127.0.0.1:8080`); a
//! request whose `Host` is not the listen address (or `localhost` on its
//! port) is refused, so a DNS name rebound to 127.0.0.1 cannot reach it.

pub mod agents;
pub mod api;
pub mod auth;
pub mod error;
pub mod handlers;
pub mod links;
pub mod policy;
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
    /// An agent to manage: host:port or a Unix socket path (repeat for
    /// each); its token is --token-file's.
    #[arg(
        long = "agent",
        id = "agent",
        value_name = "ADDR",
        required_unless_present = "config"
    )]
    pub agents: Vec<String>,
    /// A TOML file listing agents (`[[agents]]` with `address` and an
    /// optional `token_file`), for agents with tokens of their own.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Whether `agents` were named (on the command line or by
    /// `MOVER_AGENT`) rather than the global `--agent`'s default; set by
    /// `moverctl` from its argument matches.
    #[arg(skip = true)]
    pub agents_given: bool,
}

/// One `[[agents]]` entry of a console `--config` file.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    address: String,
    #[serde(default)]
    token_file: Option<std::path::PathBuf>,
}

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ConsoleFile {
    #[serde(default)]
    agents: Vec<AgentEntry>,
}

fn token_of(file: &Path) -> Result<String, Emg> {
    crate::agent::config::read_token(file).map_err(|mut e| {
        e.module = crate::emg::Module::Client;
        e
    })
}

/// Each agent's address and token, from the flags and the `--config` file.
pub fn agents(args: &ConsoleArgs, token_file: Option<&Path>) -> Result<Vec<(String, String)>, Emg> {
    let no_token = || server::usage("no token file: give --token-file or set MOVER_TOKEN_FILE");
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |address: &str, token: String| -> Result<(), Emg> {
        Address::parse(address).map_err(|e| server::usage(&format!("agent {address}: {e}")))?;
        if out.iter().any(|(a, _)| a == address) {
            return Err(server::usage(&format!("agent {address} is listed twice")));
        }
        out.push((address.to_string(), token));
        Ok(())
    };
    let named = args.agents_given || args.config.is_none();
    for a in args.agents.iter().filter(|_| named) {
        add(a, token_of(token_file.ok_or_else(no_token)?)?)?;
    }
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| server::usage(&format!("cannot read {}: {e}", path.display())))?;
        let file: ConsoleFile = toml::from_str(&text)
            .map_err(|e| server::usage(&format!("{}: {e}", path.display())))?;
        for entry in file.agents {
            let tf = entry
                .token_file
                .as_deref()
                .or(token_file)
                .ok_or_else(no_token)?;
            add(&entry.address, token_of(tf)?)?;
        }
    }
    if out.is_empty() {
        return Err(server::usage(
            "no agent: give --agent or a --config file with [[agents]]",
        ));
    }
    Ok(out)
}

/// Runs the console until the process is killed. Prints
/// `CONSOLE http://<addr>/` on standard output once it listens.
pub fn run(args: &ConsoleArgs, token_file: Option<&Path>) -> Result<(), Emg> {
    let console = std::sync::Arc::new(api::Console::new(agents(args, token_file)?));
    console.agents.start_relays();
    server::serve(&args.listen, console)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lpm-console-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn token(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    fn args(agents: &[&str], config: Option<std::path::PathBuf>, given: bool) -> ConsoleArgs {
        ConsoleArgs {
            listen: "127.0.0.1:0".into(),
            agents: agents.iter().map(|s| s.to_string()).collect(),
            config,
            agents_given: given,
        }
    }

    #[test]
    fn agents_come_from_the_flags_and_the_config_file_each_with_its_token() {
        let dir = scratch("agents");
        let shared = token(&dir, "shared", "s\n");
        let own = token(&dir, "own", "o\n");
        let config = dir.join("console.toml");
        std::fs::write(
            &config,
            format!(
                "[[agents]]\naddress = \"10.0.0.2:7400\"\ntoken_file = \"{}\"\n\
                 [[agents]]\naddress = \"/run/hostC.sock\"\n",
                own.display()
            ),
        )
        .unwrap();
        let got = agents(
            &args(&["10.0.0.1:7400"], Some(config.clone()), true),
            Some(&shared),
        );
        assert_eq!(
            got.unwrap(),
            [
                ("10.0.0.1:7400".to_string(), "s".to_string()),
                ("10.0.0.2:7400".into(), "o".into()),
                ("/run/hostC.sock".into(), "s".into()),
            ]
        );
        // The global --agent's default is not an agent of a --config console.
        let got = agents(
            &args(&["127.0.0.1:7400"], Some(config.clone()), false),
            Some(&shared),
        );
        assert_eq!(got.unwrap().len(), 2);
        // Without --token-file, an entry without its own token file is refused.
        let e = agents(&args(&[], Some(config.clone()), false), None).unwrap_err();
        assert!(e.message.contains("no token file"), "{e}");
        // Twice the same agent, an unknown field, no agent at all.
        let e = agents(&args(&["10.0.0.2:7400"], Some(config), true), Some(&shared)).unwrap_err();
        assert!(e.message.contains("listed twice"), "{e}");
        let bad = dir.join("bad.toml");
        std::fs::write(
            &bad,
            "[[agents]]\naddress = \"10.0.0.3:1\"\ntoken = \"inline\"\n",
        )
        .unwrap();
        assert!(agents(&args(&[], Some(bad), false), Some(&shared)).is_err());
        let empty = dir.join("empty.toml");
        std::fs::write(&empty, "").unwrap();
        let e = agents(&args(&[], Some(empty), false), Some(&shared)).unwrap_err();
        assert!(e.message.contains("no agent"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
