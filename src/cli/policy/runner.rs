//! Running a policy: each entry an ordinary `migrate` on its source agent,
//! waited for, retried, skipped or ending the policy as `on_failure` says.
//! A policy that ends early (stopped, or at a failed entry) says where
//! ([`Run::next`]), so that the operator can resume it from there.
//! It depends only on the management client, so a management server can run
//! policies with it as `moverctl policy run` does.

use super::format::{Entry, OnFailure, Policy, cause, policy_error};
use crate::cli::options::Move;
use crate::control::Client;
use crate::control::MigrationMode;
use crate::control::reply::MigrationStarted;
use crate::emg::Emg;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How one entry ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryStatus {
    Completed,
    Failed,
    NotRun,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EntryResult {
    pub entry: usize,
    pub lpar: String,
    pub from: String,
    pub to: String,
    pub status: EntryStatus,
    pub attempts: u32,
    /// The source agent's id of the last attempt's migration.
    pub migration: Option<u64>,
    pub suspension_ms: Option<f64>,
    pub error: Option<Emg>,
}

/// How the whole policy ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyOutcome {
    /// Every entry completed.
    Completed,
    /// It ran to its end, with failed entries skipped.
    Failed,
    /// An entry failed and on_failure (or exhausted retries) ended it.
    Ended,
    /// The operator stopped it after an entry.
    Stopped,
}

/// What the runner reports while it runs.
pub enum Progress<'a> {
    /// An attempt of an entry is about to start.
    Attempt(&'a EntryResult),
    /// That attempt failed with this EMG.
    Failed(&'a Emg),
    /// The entry is done with, for this run: completed, or failed for good
    /// (skipped, or ending the policy).
    Ended(&'a EntryResult),
}

/// How a run ended, and where a resume starts.
pub struct Run {
    pub outcome: PolicyOutcome,
    pub results: Vec<EntryResult>,
    /// Stopped: the first entry not run; ended: the failed entry.
    pub next: usize,
}

/// Every entry of `policy`, not run yet.
pub fn fresh_results(policy: &Policy, default_from: &str) -> Vec<EntryResult> {
    policy
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| EntryResult {
            entry: i + 1,
            lpar: e.lpar.clone(),
            from: e.from.clone().unwrap_or_else(|| default_from.to_string()),
            to: e.to.clone(),
            status: EntryStatus::NotRun,
            attempts: 0,
            migration: None,
            suspension_ms: None,
            error: None,
        })
        .collect()
}

/// Runs `policy`'s entries in order. `connect` opens an authenticated
/// client to a source agent; `default_from` is the source of entries that
/// name none; `stop_requested` is asked between entries and before a retry.
pub fn run_policy(
    policy: &Policy,
    default_from: &str,
    connect: &mut dyn FnMut(&str) -> Result<Client, Emg>,
    stop_requested: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Run {
    let results = fresh_results(policy, default_from);
    run_from(policy, results, 0, connect, stop_requested, progress)
}

/// Runs `policy`'s entries from `start` on (0-based), `results` holding
/// what earlier runs did: the operator's Retry runs a failed entry again
/// (its attempts add up), Skip and Continue start after it.
pub fn run_from(
    policy: &Policy,
    mut results: Vec<EntryResult>,
    start: usize,
    connect: &mut dyn FnMut(&str) -> Result<Client, Emg>,
    stop_requested: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Run {
    let mut early = None;
    'entries: for (i, entry) in policy.entries.iter().enumerate().skip(start) {
        if i > start && stop_requested() {
            early = Some((PolicyOutcome::Stopped, i));
            break;
        }
        let r = &mut results[i];
        let max_attempts = match policy.on_failure {
            OnFailure::Retry { retries } => retries + 1,
            _ => 1,
        };
        let mut tries = 0;
        loop {
            r.attempts += 1;
            tries += 1;
            progress(Progress::Attempt(r));
            match run_entry(connect, policy.mode, entry, &r.from) {
                Ok((id, report)) => {
                    r.status = EntryStatus::Completed;
                    r.migration = Some(id);
                    r.suspension_ms = report["source"]["suspension"]["total_ms"].as_f64();
                    r.error = None;
                    progress(Progress::Ended(r));
                    break;
                }
                Err((id, e)) => {
                    r.status = EntryStatus::Failed;
                    r.migration = id.or(r.migration);
                    progress(Progress::Failed(&e));
                    r.error = Some(e);
                    if tries < max_attempts {
                        if stop_requested() {
                            progress(Progress::Ended(r));
                            early = Some((PolicyOutcome::Stopped, i));
                            break 'entries;
                        }
                        continue;
                    }
                    progress(Progress::Ended(r));
                    match policy.on_failure {
                        OnFailure::Skip => break,
                        OnFailure::Retry { .. } | OnFailure::End => {
                            early = Some((PolicyOutcome::Ended, i));
                            break 'entries;
                        }
                    }
                }
            }
        }
    }
    let (outcome, next) = early.unwrap_or_else(|| {
        let failed = results.iter().any(|r| r.status == EntryStatus::Failed);
        let outcome = if failed {
            PolicyOutcome::Failed
        } else {
            PolicyOutcome::Completed
        };
        (outcome, policy.entries.len())
    });
    Run {
        outcome,
        results,
        next,
    }
}

/// One attempt of one entry: `migrate` on its source agent, waited for.
/// The error carries the migration id when the migration had started.
fn run_entry(
    connect: &mut dyn FnMut(&str) -> Result<Client, Emg>,
    mode: MigrationMode,
    entry: &Entry,
    from: &str,
) -> Result<(u64, Value), (Option<u64>, Emg)> {
    let mut client = connect(from).map_err(|e| (None, e))?;
    let how = match mode {
        MigrationMode::Live => Move::Live,
        // The guest (if running) is shut down first, waiting `timeout_s`
        // (the agent's default if none); the LPAR arrives deactivated.
        MigrationMode::Shutdown => Move::Shutdown {
            activate_destination: false,
            shutdown_timeout_s: entry.options.timeout_s,
        },
    };
    let command = entry.options.command(&entry.lpar, &entry.to, how);
    let reply = client.call(command).map_err(|e| (None, e))?;
    let id = serde_json::from_value::<MigrationStarted>(reply)
        .map_err(|e| {
            (
                None,
                policy_error(
                    cause::ENTRY_FAILED,
                    format!("the agent's reply has no migration id: {e}"),
                    "Install the same lpar-mover release on the client and the agents.",
                ),
            )
        })?
        .migration;
    let report = client
        .wait_for_migration(id, &mut |_| {})
        .map_err(|e| (Some(id), e))?;
    Ok((id, report))
}
