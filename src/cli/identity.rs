//! `moverd init`, `moverd init-ca` and `moverd identity`: make an agent's
//! key and certificate (or the site CA), and show the fingerprint an
//! operator puts in the peers' `trusted_peers`.

use crate::emg::{Emg, Module, phase};
use crate::transport::identity::{
    self, AgentIdentity, CA_CERT_FILE, CERT_FILE, DEFAULT_VALIDITY_DAYS, KEY_FILE, Validity,
    show_time,
};
use clap::Args;
use std::path::{Path, PathBuf};

/// Where an identity goes: a directory, or the one an agent's
/// configuration names (`identity_dir`, else `state_dir`).
#[derive(Args, Debug, Clone, Default)]
pub struct Where {
    /// The agent's configuration file: its identity_dir (else state_dir)
    /// and name.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The identity directory (overrides the configuration's).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `moverd init`.
#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    #[command(flatten)]
    pub place: Where,
    /// The agent's name (default: the configuration's `name`).
    #[arg(long)]
    pub name: Option<String>,
    /// Sign with the site CA in this directory (`moverd init-ca`) instead
    /// of self-signing.
    #[arg(long, value_name = "CA_DIR")]
    pub ca: Option<PathBuf>,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
    pub days: u32,
}

fn usage(message: String) -> Emg {
    Emg::new(
        Module::Management,
        phase::INFORMATION,
        0x01,
        message,
        "Give --dir (and --name), or --config with the agent's configuration file.",
    )
}

/// The directory and the name the options and configuration give.
fn resolve(place: &Where) -> Result<(PathBuf, Option<String>), Emg> {
    let table = match &place.config {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?
            .parse::<toml::Table>()
            .map_err(|e| usage(format!("{}: {e}", p.display())))?,
        None => toml::Table::new(),
    };
    let text = |k: &str| table.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let dir = place
        .dir
        .clone()
        .or_else(|| text("identity_dir").map(PathBuf::from))
        .or_else(|| text("state_dir").map(PathBuf::from))
        .ok_or_else(|| usage("no identity directory".into()))?;
    Ok((dir, text("name")))
}

/// Creates the agent's identity and prints where and its fingerprint.
pub fn init(args: &InitArgs) -> Result<(), Emg> {
    let (dir, configured) = resolve(&args.place)?;
    let name = args
        .name
        .clone()
        .or(configured)
        .ok_or_else(|| usage("no agent name: give --name".into()))?;
    let validity = Validity::days_from_now(args.days.max(1));
    let fingerprint = identity::init(&dir, &name, validity, args.ca.as_deref())?;
    let signer = match &args.ca {
        Some(ca) => format!("signed by the site CA {}", ca.join(CA_CERT_FILE).display()),
        None => "self-signed".to_string(),
    };
    println!("identity of {name} created in {}", dir.display());
    println!(
        "  key          {} (mode 0600)",
        dir.join(KEY_FILE).display()
    );
    println!(
        "  certificate  {} ({signer}), valid until {}",
        dir.join(CERT_FILE).display(),
        show_time(validity.not_after)
    );
    println!("  fingerprint  {fingerprint}");
    println!(
        "Peers trust this agent by that fingerprint (trusted_peers){}.",
        if args.ca.is_some() {
            ", or by the site CA (trusted_ca)"
        } else {
            ""
        }
    );
    Ok(())
}

/// `moverd init-ca --dir <dir>`: the site CA.
pub fn init_ca(dir: &Path) -> Result<(), Emg> {
    let fingerprint = identity::init_ca(dir)?;
    println!("site CA created in {}", dir.display());
    println!(
        "  key          {} (mode 0600; keep it where certificates are issued)",
        dir.join(identity::CA_KEY_FILE).display()
    );
    println!(
        "  certificate  {} (every agent's trusted_ca)",
        dir.join(CA_CERT_FILE).display()
    );
    println!("  fingerprint  {fingerprint}");
    println!(
        "Sign each agent's certificate with it: moverd init --ca {}",
        dir.display()
    );
    Ok(())
}

/// `moverd identity`: the agent's fingerprint and validity.
pub fn show(place: &Where) -> Result<(), Emg> {
    let (dir, name) = resolve(place)?;
    let id = AgentIdentity::load(&dir)?;
    if let Some(name) = name {
        println!("agent        {name}");
    }
    println!("fingerprint  {}", id.fingerprint);
    println!(
        "valid        {} to {}{}",
        show_time(id.validity.not_before),
        show_time(id.validity.not_after),
        if id.validity.not_after < identity::now() {
            " (EXPIRED)"
        } else {
            ""
        }
    );
    println!("certificate  {}", dir.join(CERT_FILE).display());
    Ok(())
}

/// `moverctl`'s options for the agents' TLS certificates.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientTlsArgs {
    /// The site CA's certificate: an agent on TCP must present a
    /// certificate it signed (TLS). Without this and --agent-fingerprint,
    /// TCP is plaintext, which TLS-only agents refuse.
    #[arg(long, global = true, env = "MOVER_AGENT_CA", value_name = "FILE")]
    pub agent_ca: Option<PathBuf>,
    /// An agent key to trust over TCP (TLS), as `moverd identity` prints
    /// it (sha256:…); repeatable, comma-separated in the environment.
    #[arg(
        long,
        global = true,
        env = "MOVER_AGENT_FINGERPRINT",
        value_delimiter = ',',
        value_name = "SHA256"
    )]
    pub agent_fingerprint: Vec<String>,
}

impl ClientTlsArgs {
    /// Installs these settings as the process's default for every
    /// management connection (see `control::secure`).
    pub fn install(&self) -> Result<(), Emg> {
        let pins = self
            .agent_fingerprint
            .iter()
            .map(|f| identity::Fingerprint::parse(f))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|m| {
                Emg::new(
                    Module::Client,
                    phase::INFORMATION,
                    0x01,
                    format!("--agent-fingerprint: {m}"),
                    "Give the fingerprint as `moverd identity` prints it on the agent's host.",
                )
            })?;
        let tls = crate::control::secure::ClientTls::from_options(self.agent_ca.as_deref(), &pins)
            .map_err(|mut e| {
                e.module = Module::Client;
                e
            })?;
        crate::control::secure::set_default_client_tls(tls);
        Ok(())
    }
}
