//! What every agent command of `moverctl` shares: the global options,
//! connecting and authenticating to the agent, how a command fails (and so
//! its exit code), and printing a reply.

use crate::control::{Address, Client, Request, request};
use crate::emg::{Emg, Module};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use std::path::PathBuf;

/// Causes of `moverctl`'s own refusals (module MMC).
pub mod cause {
    /// `return`: no completed migration brought the LPAR here.
    pub const NO_ORIGIN: u32 = 0x50;
    /// `migrate --auto-destination`: no candidate has room.
    pub const NO_DESTINATION: u32 = 0x51;
}

/// Options every agent command takes.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// The agent: host:port or a Unix socket path.
    #[arg(long, global = true, env = "MOVER_AGENT", default_value = crate::agent::config::DEFAULT_LISTEN)]
    pub agent: String,
    /// File holding the agent's access token.
    #[arg(long, global = true, env = "MOVER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// How to check the agents' TLS certificates.
    #[command(flatten)]
    pub tls: super::identity::ClientTlsArgs,
}

/// How a command ended, when not well.
#[derive(Debug)]
pub enum Failure {
    /// The agent refused the request (exit 1).
    Refused(Emg),
    /// The operation failed, or the agent could not be reached (exit 2).
    Failed(Emg),
    /// Bad usage (exit 3).
    Usage(String),
    /// Already printed in full; exit with this code.
    Shown(i32),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Failed(_) => 2,
            Failure::Usage(_) => 3,
            Failure::Shown(code) => *code,
        }
    }

    /// Prints the failure: EMG format with its action, or JSON.
    pub fn print(&self, json: bool) {
        match (self, json) {
            (Failure::Refused(e) | Failure::Failed(e), true) => {
                println!("{}", json!({ "error": e, "emg": e.to_string() }))
            }
            (Failure::Refused(e) | Failure::Failed(e), false) => eprintln!("{e}"),
            (Failure::Usage(m), _) => eprintln!("moverctl: {m}"),
            (Failure::Shown(_), _) => {}
        }
    }
}

pub(crate) fn connect(g: &Global) -> Result<Client, Failure> {
    let address = Address::parse(&g.agent).map_err(Failure::Usage)?;
    let token_file = g.token_file.as_ref().ok_or_else(|| {
        Failure::Usage("no token file: give --token-file or set MOVER_TOKEN_FILE".into())
    })?;
    let token = crate::agent::config::read_token(token_file).map_err(|mut e| {
        e.module = Module::Client;
        Failure::Usage(e.to_string())
    })?;
    let mut client = Client::connect(&address, Module::Client).map_err(Failure::Failed)?;
    client
        .request(request::Authenticate { token })
        .map_err(Failure::Refused)?;
    Ok(client)
}

/// Sends `request`; the agent's refusal is exit 1.
pub(crate) fn ask<R: Request>(client: &mut Client, request: R) -> Result<R::Reply, Failure> {
    client.request(request).map_err(Failure::Refused)
}

/// Prints a typed reply as the agent sent it (`--json`: one object) or as
/// `field value` lines.
pub(crate) fn print_reply(g: &Global, reply: &impl Serialize) -> Result<(), Failure> {
    print_value(g, &serde_json::to_value(reply).expect("replies serialise"));
    Ok(())
}

pub(crate) fn print_value(g: &Global, v: &Value) {
    if g.json {
        println!("{v}");
    } else if let Some(m) = v.as_object() {
        for (k, v) in m {
            println!(
                "{k:<20} {}",
                v.as_str().map_or(v.to_string(), str::to_string)
            );
        }
    }
}
