//! `moverd`: the mover agent that runs on every HVM host. Argument parsing
//! and wiring only.

use clap::{Args, Parser, Subcommand};
use lpar_mover::cli::oneshot;
use lpar_mover::engine::source::LiveOptions;
use lpar_mover::partition::LparConfig;
use lpar_mover::transport::{DEFAULT_STREAMS, OneTimeKey};
use lpar_mover::units::{parse_rate, parse_size};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "moverd", version, about = "The lpar-mover agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: serve the management protocol (see docs/protocol.md).
    Serve(lpar_mover::agent::config::ServeArgs),
    /// Create this agent's identity: its private key (0600) and
    /// certificate; prints the fingerprint its peers trust it by.
    Init(lpar_mover::cli::identity::InitArgs),
    /// Create the site CA (ca.key, ca.crt) that signs agents'
    /// certificates (moverd init --ca).
    InitCa {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Show this agent's identity: its key fingerprint and validity.
    Identity(lpar_mover::cli::identity::Where),
    /// Host one KVM LPAR in this process (started by a kvm agent, not by
    /// hand): create its VM and serve it on ROOT/NAME/vmm.sock.
    LparVmm {
        #[arg(long)]
        root: PathBuf,
        /// The LPAR's configuration, as JSON.
        #[arg(long)]
        config: String,
    },
    /// One-shot: define an LPAR, receive it live, report as JSON, exit.
    Receive {
        #[command(flatten)]
        lpar: LparArgs,
        /// How long to let the guest run after switchover before reporting.
        #[arg(long, default_value_t = 300)]
        run_after_ms: u64,
        /// This host's interface on a network segment (repeatable): the
        /// LPAR's MACs on that segment are announced there after resume.
        #[arg(long = "segment", value_name = "SEG=IF", value_parser = oneshot::parse_segment)]
        segments: Vec<(String, String)>,
        /// Free vfcIDs on a physical FC port (repeatable); default all.
        #[arg(long = "free-vfc-ids", value_name = "PORT=1-8,12", value_parser = oneshot::parse_free_vfc_ids)]
        free_vfc_ids: Vec<(u16, std::collections::BTreeSet<u16>)>,
        /// Advance the guest's clock by the suspension on resume.
        #[arg(long)]
        compensate_clock: bool,
    },
    /// One-shot: define and start an LPAR, migrate it live, report as JSON, exit.
    Send {
        #[command(flatten)]
        lpar: LparArgs,
        /// The receiver's migration path address (from its LISTENING line).
        #[arg(long)]
        to: SocketAddr,
        /// The one-time key the receiver issued (hex).
        #[arg(long)]
        key: String,
        /// How long the guest runs before the migration starts.
        #[arg(long, default_value_t = 500)]
        warm_up_ms: u64,
        /// After --warm-up-ms, keep warming up until the guest's populated
        /// memory stops growing (at most a minute).
        #[arg(long)]
        warm_up_until_populated: bool,
        #[arg(long, default_value_t = 20)]
        max_suspend_ms: u64,
        #[arg(long, value_parser = parse_rate, help = lpar_mover::units::RATE_HELP)]
        bandwidth: Option<u64>,
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
}

#[derive(Args)]
struct LparArgs {
    #[arg(long, default_value = "lpar1")]
    lpar: String,
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    memory: u64,
    #[arg(long, default_value = "hot:64MiB")]
    program: String,
    /// This host's migration path IPv4 address.
    #[arg(long, default_value = "127.0.0.1")]
    path: Ipv4Addr,
    #[arg(long, default_value_t = DEFAULT_STREAMS)]
    streams: usize,
    /// Where the LPAR's files live.
    #[arg(long, default_value = lpar_mover::partition::host::DEFAULT_ROOT)]
    state_dir: PathBuf,
    /// Where the LPAR runs: sim or kvm.
    #[arg(long, default_value = "sim")]
    backend: String,
    /// kvm: a multiboot v1 image to boot instead of the built-in guest.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// kvm: the kernel command line (default: --program).
    #[arg(long)]
    cmdline: Option<String>,
    /// MAC per NIC, in port order (send: the LPAR's; receive: this slot's).
    #[arg(long = "mac")]
    macs: Vec<lpar_mover::state::MacAddress>,
    /// WWPN per FC port, in port order (send: the LPAR's; receive: this slot's).
    #[arg(long = "wwpn")]
    wwpns: Vec<lpar_mover::state::Wwpn>,
    /// Migration WWPN per FC port, paired with --wwpn.
    #[arg(long = "migration-wwpn")]
    migration_wwpns: Vec<lpar_mover::state::Wwpn>,
    /// Guest memory in clear on the migration path (send: sends it so;
    /// receive: accepts it): benchmarks only. Default TLS 1.3.
    #[arg(long)]
    insecure_plaintext: bool,
    /// send: how the LPAR's guest memory is backed, reserved (all of it
    /// allocated at once) or on-demand (as written); it migrates with the
    /// LPAR.
    #[arg(long, default_value = "reserved")]
    memory_backing: lpar_mover::partition::MemoryBacking,
}

impl LparArgs {
    fn encryption(&self) -> lpar_mover::transport::Encryption {
        match self.insecure_plaintext {
            true => lpar_mover::transport::Encryption::InsecurePlaintext,
            false => lpar_mover::transport::Encryption::Tls,
        }
    }

    fn config(&self) -> LparConfig {
        LparConfig {
            name: self.lpar.clone(),
            memory_bytes: self.memory,
            program: self.program.clone(),
            kernel: self.kernel.as_ref().map(|k| k.display().to_string()),
            cmdline: self.cmdline.clone(),
            memory_backing: self.memory_backing,
            ..LparConfig::default_lpar()
        }
    }

    fn backend(
        &self,
    ) -> Result<std::sync::Arc<dyn lpar_mover::partition::Backend>, lpar_mover::emg::Emg> {
        lpar_mover::partition::host::open_backend(&self.backend, &self.state_dir)
            .map_err(|e| e.emg())
    }

    fn identities(&self) -> oneshot::IdentityFlags {
        oneshot::IdentityFlags {
            macs: self.macs.clone(),
            wwpns: self.wwpns.clone(),
            migration_wwpns: self.migration_wwpns.clone(),
        }
    }
}

/// Ends a command that printed its own output.
fn exit_with(result: Result<(), lpar_mover::emg::Emg>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(emg) => {
            eprintln!("{emg}");
            std::process::exit(1);
        }
    }
}

fn main() {
    lpar_mover::partition::host::keep_freed_memory();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    log::info!("{}", lpar_mover::build_identity::BuildIdentity::current());
    let result = match Cli::parse().command {
        Command::Serve(args) => lpar_mover::agent::run(&args).map(|()| serde_json::Value::Null),
        Command::Init(args) => {
            exit_with(lpar_mover::cli::identity::init(&args));
        }
        Command::InitCa { dir } => exit_with(lpar_mover::cli::identity::init_ca(&dir)),
        Command::Identity(place) => exit_with(lpar_mover::cli::identity::show(&place)),
        Command::LparVmm { root, config } => serde_json::from_str::<LparConfig>(&config)
            .map_err(|e| lpar_mover::partition::PartitionError::BadConfig {
                why: format!("--config: {e}"),
            })
            .and_then(|c| lpar_mover::partition::kvm::vmm::serve(&root, &c))
            .map(|()| serde_json::Value::Null)
            .map_err(Into::into),
        Command::Receive {
            lpar,
            run_after_ms,
            segments,
            free_vfc_ids,
            compensate_clock,
        } => oneshot::destination_host(
            &lpar.config(),
            &lpar.identities(),
            &free_vfc_ids,
            &segments,
            compensate_clock,
        )
        .and_then(|host| {
            oneshot::receive(
                &*lpar.backend()?,
                &lpar.config(),
                lpar.path,
                lpar.streams,
                Duration::from_millis(run_after_ms),
                &host,
                lpar.encryption(),
            )
        }),
        Command::Send {
            lpar,
            to,
            key,
            warm_up_ms,
            warm_up_until_populated,
            max_suspend_ms,
            bandwidth,
            timeout,
        } => OneTimeKey::from_hex(&key)
            .map_err(Into::into)
            .and_then(|key| {
                let options = LiveOptions {
                    max_suspend: Duration::from_millis(max_suspend_ms),
                    timeout: Duration::from_secs(timeout),
                    bandwidth,
                    ..LiveOptions::default()
                };
                let mut config = lpar.config();
                lpar.identities().apply_to(&mut config)?;
                oneshot::send(
                    &*lpar.backend()?,
                    &config,
                    lpar.path,
                    to,
                    &key,
                    lpar.streams,
                    oneshot::WarmUp {
                        at_least: Duration::from_millis(warm_up_ms),
                        until_populated: warm_up_until_populated,
                    },
                    &options,
                    lpar.encryption(),
                )
            }),
    };
    match result {
        Ok(report) => println!("{report}"),
        Err(emg) => {
            eprintln!("{emg}");
            std::process::exit(1);
        }
    }
}
