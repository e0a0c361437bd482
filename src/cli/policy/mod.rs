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
//! - The operator decides after the fact (the manual's Confirmation
//!   window): a policy that was stopped, or that ended at a failed entry,
//!   keeps its position in `<file>.state`, and `moverctl policy resume
//!   <file>` goes on as the operator chooses: `--continue` (after a stop:
//!   run the remaining entries), `--retry` (run the failed entry again, once
//!   its cause is fixed, then the rest), `--skip` (leave it failed and run
//!   the rest) or `--end` (end the policy here; the position is dropped). A
//!   resume of a policy file changed since it stopped is refused.
//! - A shutdown-mode policy runs each entry as `migrate --mode shutdown`
//!   (a running guest is shut down first; `timeout_s` is the wait for it;
//!   the LPAR arrives deactivated).
//!
//! Exit codes: 0 every entry completed; 1 the policy was refused (does not
//! parse, mixes modes); 2 an entry failed or the policy was
//! stopped before its end.

mod format;
pub mod resume;
mod runner;

pub use format::{
    Entry, MAX_ENTRIES, MAX_POLICY_BYTES, MAX_RETRIES, OnFailure, Policy, cause, parse,
};
pub use runner::{
    EntryResult, EntryStatus, PolicyOutcome, Progress, Run, fresh_results, run_from, run_policy,
};

use super::session::{Failure, Global, connect};
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
    /// Go on with a policy that was stopped or ended at a failed entry:
    /// the operator's Continue, Retry, Skip or End.
    #[command(group(clap::ArgGroup::new("choice").required(true)))]
    Resume {
        file: PathBuf,
        /// After a stop: run the remaining entries.
        #[arg(long = "continue", group = "choice")]
        continue_: bool,
        /// Run the failed entry again (fix its cause first), then the rest.
        #[arg(long, group = "choice")]
        retry: bool,
        /// Leave the failed entry failed and run the rest.
        #[arg(long, group = "choice")]
        skip: bool,
        /// End the policy here.
        #[arg(long, group = "choice")]
        end: bool,
    },
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
        PolicyCommand::Resume {
            file,
            continue_,
            retry,
            skip,
            end: _,
        } => {
            let choice = if continue_ {
                resume::Choice::Continue
            } else if retry {
                resume::Choice::Retry
            } else if skip {
                resume::Choice::Skip
            } else {
                resume::Choice::End
            };
            resume::resume(g, &file, choice)
        }
    }
}

/// The policy in `file`, and its bytes (for the resume check).
fn load(file: &Path) -> Result<(Policy, Vec<u8>), Failure> {
    let bytes = std::fs::read(file).map_err(|e| {
        Failure::Refused(policy_error(
            cause::UNREADABLE,
            format!("cannot read the policy {}: {e}", file.display()),
            "Give the path of a readable policy file.",
        ))
    })?;
    let policy = parse(&bytes).map_err(Failure::Refused)?;
    Ok((policy, bytes))
}

fn run_file(g: &Global, file: &Path) -> Result<(), Failure> {
    let (policy, bytes) = load(file)?;
    // A new run starts over: a kept position is dropped.
    resume::forget(file);
    drive(g, file, &policy, &bytes, |run| {
        let results = fresh_results(&policy, &g.agent);
        run(results, 0)
    })
}

/// Runs the policy through `start` (which calls `run(results, first)`),
/// with the stop file, signals and progress wired, then keeps the position
/// if it ended early and prints the outcome.
fn drive(
    g: &Global,
    file: &Path,
    policy: &Policy,
    bytes: &[u8],
    start: impl FnOnce(&mut dyn FnMut(Vec<EntryResult>, usize) -> Run) -> Run,
) -> Result<(), Failure> {
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
    let mut progress = |p: Progress<'_>| match p {
        Progress::Attempt(r) if !g.json => println!(
            "entry {}: {} {} → {} (attempt {})",
            r.entry, r.lpar, r.from, r.to, r.attempts
        ),
        Progress::Failed(e) if !g.json => eprintln!("{e}"),
        _ => {}
    };
    let run = start(&mut |results, first| {
        run_from(
            policy,
            results,
            first,
            &mut connect_to,
            &stop_requested,
            &mut progress,
        )
    });
    let _ = std::fs::remove_file(&stop);
    match run.outcome {
        PolicyOutcome::Stopped | PolicyOutcome::Ended => resume::keep(file, bytes, &run)?,
        PolicyOutcome::Completed | PolicyOutcome::Failed => resume::forget(file),
    }
    finish(g, file, policy, run.outcome, &run.results)
}

/// Prints the outcome (JSON or the table) and turns it into the exit code.
fn finish(
    g: &Global,
    file: &Path,
    policy: &Policy,
    outcome: PolicyOutcome,
    results: &[EntryResult],
) -> Result<(), Failure> {
    if g.json {
        println!(
            "{}",
            json!({
                "policy": policy.name,
                "mode": policy.mode,
                "on_failure": policy.on_failure,
                "outcome": outcome,
                "resumable": resume::exists(file),
                "entries": results,
            })
        );
        if outcome != PolicyOutcome::Completed {
            return Err(Failure::Shown(2));
        }
        return Ok(());
    }
    print_table(policy, outcome, results);
    let f = file.display();
    let not = |pred: fn(&EntryResult) -> bool| results.iter().filter(|r| pred(r)).count();
    let resumable = resume::exists(file);
    match outcome {
        PolicyOutcome::Completed => Ok(()),
        PolicyOutcome::Stopped => Err(Failure::Failed(policy_error(
            cause::STOPPED,
            format!(
                "policy '{}' was stopped: {} of {} entries not run",
                policy.name,
                not(|r| r.status == EntryStatus::NotRun),
                results.len()
            ),
            if resumable {
                format!("Continue it (moverctl policy resume {f} --continue) or end it (--end).")
            } else {
                "Run a policy with the remaining entries to continue.".into()
            },
        ))),
        PolicyOutcome::Failed | PolicyOutcome::Ended => Err(Failure::Failed(policy_error(
            cause::ENTRY_FAILED,
            format!(
                "policy '{}': {} of {} entries did not complete",
                policy.name,
                not(|r| r.status != EntryStatus::Completed),
                results.len()
            ),
            if resumable {
                format!(
                    "See the failed entry's EMG above. Fix its cause and retry it (moverctl \
                     policy resume {f} --retry), skip it (--skip) or end the policy (--end)."
                )
            } else {
                "See each entry's EMG above; fix the cause and run the remaining entries again."
                    .into()
            },
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
