//! Policy migration: `moverctl policy run <file>` moves LPARs one entry
//! after another, as the manual's policy migration does.
//!
//! ```toml
//! name = "firmware-hvm1"     # optional, shown in the result
//! mode = "live"              # live | shutdown: ONE mode per policy
//! on_failure = "retry"       # retry | skip | end (default end)
//! retries = 2                # with retry: attempts after the first (default 1)
//!
//! [[entry]]                  # run in file order
//! lpar = "web1"
//! to = "hvm2:7400"           # the destination agent
//! from = "hvm1:7400"         # the source agent (default: --agent)
//! mode = "live"              # optional; a mode other than the policy's is refused
//! max_suspend_ms = 20        # optional per-entry migrate options, as
//! bandwidth = "1G"           #   migrate's flags (cli::options): a rate in
//! streams = 4                #   network units (1G = 1Gbit/s; 128MiB/s),
//! timeout_s = 900            #   at least 0.9 Gbit/s
//! path = "mig"
//! ```
//!
//! The client drives the policy, as the manual's management server does:
//! each entry is an ordinary `migrate` sent to its source agent, and the
//! next entry starts only when the agents report the previous one ended.
//! The agents need no notion of a policy and a policy may span any number
//! of hosts.
//!
//! - An entry that fails (refused, or failed during the migration) is
//!   handled by `on_failure`: `retry` runs it again up to `retries` more
//!   times and then ends the policy; `skip` records it and goes on; `end`
//!   stops the policy there.
//! - Stop: SIGINT or SIGTERM, or `moverctl policy stop <file>` (which
//!   leaves `<file>.stop`), never interrupts an entry in progress: the
//!   current entry finishes, then the policy ends with the rest not run. A
//!   second SIGINT exits at once; the agents finish or fail the migration
//!   in progress on their own.
//! - A shutdown-mode policy runs each entry as `migrate --mode shutdown`
//!   (a running guest is shut down first; `timeout_s` is the wait for it;
//!   the LPAR arrives deactivated).
//!
//! Exit codes: 0 every entry completed; 1 the policy was refused (does not
//! parse, mixes modes); 2 an entry failed or the policy was
//! stopped before its end.

mod format;
mod runner;

pub use format::{
    Entry, MAX_ENTRIES, MAX_POLICY_BYTES, MAX_RETRIES, OnFailure, Policy, cause, parse,
};
pub use runner::{EntryResult, EntryStatus, PolicyOutcome, Progress, run_policy};

use super::ctl::{Failure, Global, connect};
use clap::Subcommand;
use format::policy_error;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Run a policy file's entries in order; prints a per-entry result.
    Run { file: PathBuf },
    /// Ask the policy running from `file` to stop after its current entry.
    Stop { file: PathBuf },
}

/// Set by SIGINT/SIGTERM: stop after the current entry.
static STOP: AtomicBool = AtomicBool::new(false);

/// `<policy file>.stop`, beside the file wherever the command runs from.
fn stop_file(policy: &Path) -> PathBuf {
    let policy = policy
        .canonicalize()
        .unwrap_or_else(|_| policy.to_path_buf());
    let mut s = policy.as_os_str().to_owned();
    s.push(".stop");
    PathBuf::from(s)
}

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts)
/// and turns them into [`STOP`] on a thread of their own, so a signal never
/// interrupts a read from an agent.
fn catch_stop_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("policy-stop".into())
        .spawn(move || {
            while set.wait().is_ok() {
                if STOP.swap(true, Ordering::SeqCst) {
                    eprintln!(
                        "moverctl: stopping now; the migration in progress goes on in the agents"
                    );
                    std::process::exit(130);
                }
                eprintln!("moverctl: stop requested: the policy ends after the current entry");
            }
        });
}

/// `moverctl policy …`.
pub fn run(g: &Global, command: PolicyCommand) -> Result<(), Failure> {
    match command {
        PolicyCommand::Stop { file } => {
            std::fs::write(stop_file(&file), b"stop\n").map_err(|e| {
                Failure::Usage(format!("cannot write {}: {e}", stop_file(&file).display()))
            })?;
            if g.json {
                println!("{}", json!({ "policy": file, "stop_requested": true }));
            } else {
                println!("stop requested: the policy ends after its current entry");
            }
            Ok(())
        }
        PolicyCommand::Run { file } => run_file(g, &file),
    }
}

fn run_file(g: &Global, file: &Path) -> Result<(), Failure> {
    let bytes = std::fs::read(file).map_err(|e| {
        Failure::Refused(policy_error(
            cause::UNREADABLE,
            format!("cannot read the policy {}: {e}", file.display()),
            "Give the path of a readable policy file.",
        ))
    })?;
    let policy = parse(&bytes).map_err(Failure::Refused)?;
    let stop = stop_file(file);
    let _ = std::fs::remove_file(&stop);
    catch_stop_signals();
    let stop_requested = || STOP.load(Ordering::SeqCst) || stop.exists();
    let mut connect_to = |from: &str| {
        let at = Global {
            agent: from.to_string(),
            ..g.clone()
        };
        connect(&at).map_err(|f| match f {
            Failure::Refused(e) | Failure::Failed(e) => e,
            Failure::Shown(code) => policy_error(
                cause::ENTRY_FAILED,
                format!("the entry failed (exit code {code})"),
                "See the messages above.",
            ),
            Failure::Usage(m) => policy_error(
                cause::INVALID,
                m,
                "Give --token-file (or MOVER_TOKEN_FILE) and valid agent addresses.",
            ),
        })
    };
    let (outcome, results) = run_policy(
        &policy,
        &g.agent,
        &mut connect_to,
        &stop_requested,
        &mut |p| match p {
            Progress::Attempt(r) if !g.json => println!(
                "entry {}: {} {} → {} (attempt {})",
                r.entry, r.lpar, r.from, r.to, r.attempts
            ),
            Progress::Failed(e) if !g.json => eprintln!("{e}"),
            _ => {}
        },
    );
    let _ = std::fs::remove_file(&stop);
    if g.json {
        println!(
            "{}",
            json!({
                "policy": policy.name,
                "mode": policy.mode,
                "on_failure": policy.on_failure,
                "outcome": outcome,
                "entries": results,
            })
        );
        if outcome != PolicyOutcome::Completed {
            return Err(Failure::Shown(2));
        }
        return Ok(());
    }
    print_table(&policy, outcome, &results);
    match outcome {
        PolicyOutcome::Completed => Ok(()),
        PolicyOutcome::Stopped => Err(Failure::Failed(policy_error(
            cause::STOPPED,
            format!(
                "policy '{}' was stopped: {} of {} entries not run",
                policy.name,
                results
                    .iter()
                    .filter(|r| r.status == EntryStatus::NotRun)
                    .count(),
                results.len()
            ),
            "Run a policy with the remaining entries to continue.",
        ))),
        PolicyOutcome::Failed | PolicyOutcome::Ended => Err(Failure::Failed(policy_error(
            cause::ENTRY_FAILED,
            format!(
                "policy '{}': {} of {} entries did not complete",
                policy.name,
                results
                    .iter()
                    .filter(|r| r.status != EntryStatus::Completed)
                    .count(),
                results.len()
            ),
            "See each entry's EMG above; fix the cause and run the remaining entries again.",
        ))),
    }
}

fn print_table(policy: &Policy, outcome: PolicyOutcome, results: &[EntryResult]) {
    println!(
        "policy '{}' ({} mode, on failure {}): {}",
        policy.name,
        policy.mode.label(),
        match policy.on_failure {
            OnFailure::Retry { retries } => format!("retry ×{retries}"),
            OnFailure::Skip => "skip".into(),
            OnFailure::End => "end".into(),
        },
        match outcome {
            PolicyOutcome::Completed => "completed",
            PolicyOutcome::Failed => "completed with failed entries",
            PolicyOutcome::Ended => "ended at a failed entry",
            PolicyOutcome::Stopped => "stopped by the operator",
        }
    );
    println!(
        "{:>3}  {:<16} {:<22} {:<22} {:<10} {:>8} {:>12}  EMG",
        "#", "LPAR", "from", "to", "result", "attempts", "suspension"
    );
    for r in results {
        println!(
            "{:>3}  {:<16} {:<22} {:<22} {:<10} {:>8} {:>12}  {}",
            r.entry,
            r.lpar,
            r.from,
            r.to,
            match r.status {
                EntryStatus::Completed => "completed",
                EntryStatus::Failed => "failed",
                EntryStatus::NotRun => "not run",
            },
            r.attempts,
            r.suspension_ms
                .map_or(String::from("-"), |s| format!("{s:.3} ms")),
            r.error.as_ref().map_or(String::new(), |e| format!(
                "{:08x}{:04x}{:02x} {}",
                e.cause,
                e.phase,
                e.module.code(),
                e.message
            ))
        );
    }
}
