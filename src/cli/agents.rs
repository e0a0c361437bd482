//! One live migration between two `moverd` processes on this machine, as
//! `moverctl demo` and `moverctl bench` run it.
//!
//! ```text
//! moverctl ──spawn──▶ moverd receive   (host-b, path 127.0.0.1)
//!    │                  └ stdout: LISTENING <addr> KEY <hex>, then its report
//!    └─────spawn──▶ moverd send --to <addr> --key <hex>  (host-a, path 127.0.0.2)
//!                       └ stdout: its report (one JSON line)
//! ```
//!
//! Each agent has its own state directory (its own "host") under one
//! directory per run, which is removed, and both agents killed and reaped,
//! whatever happens. While they run, a sampler per agent records its
//! memory overhead beyond the guest memory (see [`super::rss`]).

use super::rss::Sampler;
use crate::emg::{Emg, Module, phase};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// What one run migrates, and how.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub memory: u64,
    /// The guest program (`hot:64MiB`, `idle`, …).
    pub program: String,
    pub max_suspend_ms: u64,
    /// Migration path cap, bytes per second.
    pub bandwidth: Option<u64>,
    /// Agents log warnings only (unless `RUST_LOG` says otherwise), so a
    /// benchmark's output stays readable.
    pub quiet: bool,
    /// Where the two agents run.
    pub hosts: Hosts,
    /// The partition backend of both agents (`sim`, `kvm`).
    pub backend: String,
    /// `kvm`: a multiboot v1 image to boot instead of the built-in guest.
    pub kernel: Option<PathBuf>,
    /// How long the guest runs before the migration starts; `None`: until
    /// its working set is populated, and at least [`MIN_WARM_UP`].
    pub warm_up: Option<std::time::Duration>,
    /// Guest memory in clear on the migration path (both agents get
    /// `--insecure-plaintext`); TLS 1.3 otherwise.
    pub insecure_plaintext: bool,
    /// How the LPAR's guest memory is backed (it migrates with the LPAR).
    pub memory_backing: crate::partition::MemoryBacking,
}

/// The shortest warm-up when none is given.
pub const MIN_WARM_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// Where the agents of a run live.
#[derive(Clone, Debug, Default)]
pub enum Hosts {
    /// Both on this machine's loopback (paths 127.0.0.2 → 127.0.0.1).
    #[default]
    Loopback,
    /// Each in its own network namespace (a [`crate::testbed`] host),
    /// migrating over the namespaces' migration path.
    Netns {
        source: crate::testbed::TestHost,
        destination: crate::testbed::TestHost,
    },
}

impl Hosts {
    fn source(&self) -> (Option<&str>, String) {
        match self {
            Hosts::Loopback => (None, "127.0.0.2".into()),
            Hosts::Netns { source, .. } => (Some(&source.netns), source.path_ip.to_string()),
        }
    }

    fn destination(&self) -> (Option<&str>, String) {
        match self {
            Hosts::Loopback => (None, "127.0.0.1".into()),
            Hosts::Netns { destination, .. } => {
                (Some(&destination.netns), destination.path_ip.to_string())
            }
        }
    }
}

/// What one run produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The source agent's report (an `engine::report::MigrationReport`).
    pub source: serde_json::Value,
    /// The destination agent's report.
    pub destination: serde_json::Value,
    /// Peak `RssAnon + RssFile` of each agent, bytes.
    pub source_overhead_bytes: u64,
    pub destination_overhead_bytes: u64,
}

pub fn agents_error(message: String, action: &str) -> Emg {
    Emg::new(Module::Client, phase::CONNECT, 0x01, message, action)
}

/// The `moverd` binary beside the running `moverctl`.
pub fn moverd_path() -> Result<PathBuf, Emg> {
    std::env::current_exe()
        .map(|p| p.with_file_name("moverd"))
        .ok()
        .filter(|p| p.exists())
        .ok_or_else(|| {
            agents_error(
                "moverd was not found beside moverctl".into(),
                "Build both binaries: cargo build --release, then run target/release/moverctl.",
            )
        })
}

/// The agents of one run and their host directories: on drop, agents still
/// running are killed and reaped and the directories removed.
struct Run {
    hosts: PathBuf,
    agents: Vec<Child>,
}

impl Drop for Run {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            if !matches!(agent.try_wait(), Ok(Some(_))) {
                let _ = agent.kill();
                let _ = agent.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.hosts);
    }
}

/// Migrates `spec` once from a fresh `moverd send` to a fresh
/// `moverd receive`, both started from `moverd` with their host
/// directories under `hosts` (which must not exist yet).
pub fn run_once(moverd: &Path, hosts: PathBuf, spec: &RunSpec) -> Result<RunOutcome, Emg> {
    let mut run = Run {
        hosts,
        agents: Vec::new(),
    };
    let memory = spec.memory.to_string();
    let backing = spec.memory_backing.to_string();
    let spawn = |host: &str, (netns, path): (Option<&str>, String), sub: &[&str]| {
        let mut c = match netns {
            None => Command::new(moverd),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(moverd);
                c
            }
        };
        c.args(sub)
            .args([
                "--memory",
                &memory,
                "--program",
                &spec.program,
                "--path",
                &path,
                "--backend",
                &spec.backend,
                "--memory-backing",
                &backing,
            ])
            .arg("--state-dir")
            .arg(run.hosts.join(host))
            .stdout(Stdio::piped());
        if spec.insecure_plaintext {
            c.arg("--insecure-plaintext");
        }
        if let Some(k) = &spec.kernel {
            c.arg("--kernel")
                .arg(std::path::absolute(k).unwrap_or_else(|_| k.clone()));
        }
        if spec.quiet && std::env::var_os("RUST_LOG").is_none() {
            c.env("RUST_LOG", "warn");
        }
        c.spawn()
            .map_err(|e| agents_error(format!("cannot start moverd: {e}"), "Check the build."))
    };
    let mut receiver = spawn("host-b", spec.hosts.destination(), &["receive"])?;
    let receiver_out = receiver.stdout.take().expect("piped");
    let receiver_rss = Sampler::start(receiver.id());
    run.agents.push(receiver);
    let mut lines = BufReader::new(receiver_out);
    let mut handoff = String::new();
    lines
        .read_line(&mut handoff)
        .map_err(|e| agents_error(format!("reading the receiver: {e}"), "Retry."))?;
    let mut words = handoff.split_whitespace();
    let (Some("LISTENING"), Some(addr), Some("KEY"), Some(key)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(agents_error(
            format!("the receiving agent did not start listening (said {handoff:?})"),
            "Read its error above; the migration path address must be free.",
        ));
    };
    let suspend = spec.max_suspend_ms.to_string();
    let bandwidth = spec.bandwidth.map(|b| format!("{b}B/s"));
    let mut send_args = vec![
        "send",
        "--to",
        addr,
        "--key",
        key,
        "--max-suspend-ms",
        &suspend,
    ];
    if let Some(b) = &bandwidth {
        send_args.extend(["--bandwidth", b]);
    }
    let warm_up = spec.warm_up.unwrap_or(MIN_WARM_UP).as_millis().to_string();
    send_args.extend(["--warm-up-ms", &warm_up]);
    if spec.warm_up.is_none() {
        send_args.push("--warm-up-until-populated");
    }
    let mut sender = spawn("host-a", spec.hosts.source(), &send_args)?;
    let sender_out = BufReader::new(sender.stdout.take().expect("piped"));
    let sender_rss = Sampler::start(sender.id());
    run.agents.push(sender);
    // On an error the receiver is killed by `run`'s drop: it would
    // otherwise wait out its timeouts.
    let (source, source_overhead_bytes) =
        finish(&mut run.agents[1], sender_out, sender_rss, "sending")?;
    let (destination, destination_overhead_bytes) =
        finish(&mut run.agents[0], lines, receiver_rss, "receiving")?;
    Ok(RunOutcome {
        source,
        destination,
        source_overhead_bytes,
        destination_overhead_bytes,
    })
}

/// Reads an agent's stdout to its end, stops its sampler, reaps it and
/// parses its last stdout line as JSON. Returns the report and the agent's
/// peak overhead.
fn finish(
    child: &mut Child,
    mut stdout: BufReader<ChildStdout>,
    rss: Sampler,
    role: &str,
) -> Result<(serde_json::Value, u64), Emg> {
    let mut out = String::new();
    let read = stdout.read_to_string(&mut out);
    // Stopped before the reap, so the sampled pid is still this agent's.
    let overhead = rss.finish();
    read.map_err(|e| agents_error(format!("reading the {role} agent: {e}"), "Retry."))?;
    let status = child
        .wait()
        .map_err(|e| agents_error(e.to_string(), "Retry."))?;
    if !status.success() {
        return Err(agents_error(
            format!("the {role} agent failed ({status}); its EMG is printed above"),
            "Act on the agent's EMG and retry.",
        ));
    }
    let last = out.lines().last().unwrap_or_default();
    let report = serde_json::from_str(last).map_err(|e| {
        agents_error(
            format!("the {role} agent's report does not parse: {e}"),
            "Retry.",
        )
    })?;
    Ok((report, overhead))
}
