//! A policy's kept position (`<policy file>.state`) and `moverctl policy
//! resume`: the operator's choice after a stop (Continue or End) or a
//! failed entry (Retry, Skip or End), as the manual's Confirmation window
//! offers it (H:l.8827-8838, 11174-11218).
//!
//! ```text
//! <file>.state  {"policy_blake3":"<hex of the policy file>","outcome":"stopped"|"ended",
//!                "next":<0-based entry>,"entries":[EntryResult…]}
//! ```
//!
//! The state is written beside the policy file (mode 0600) when a run ends
//! early and removed when a run reaches the end or the operator ends it. A
//! resume checks the policy file is the one that stopped (its BLAKE3).

use super::format::{cause, policy_error};
use super::runner::{EntryResult, EntryStatus, PolicyOutcome, Run};
use super::{finish, load};
use crate::cli::session::{Failure, Global};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the operator chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Continue,
    Retry,
    Skip,
    End,
}

#[derive(Serialize, Deserialize)]
struct Kept {
    policy_blake3: String,
    outcome: PolicyOutcome,
    next: usize,
    entries: Vec<EntryResult>,
}

fn state_file(policy: &Path) -> PathBuf {
    let policy = policy
        .canonicalize()
        .unwrap_or_else(|_| policy.to_path_buf());
    let mut s = policy.as_os_str().to_owned();
    s.push(".state");
    PathBuf::from(s)
}

/// Whether `policy` has a kept position.
pub fn exists(policy: &Path) -> bool {
    state_file(policy).exists()
}

/// Drops `policy`'s kept position.
pub fn forget(policy: &Path) {
    let _ = std::fs::remove_file(state_file(policy));
}

/// Keeps where `run` ended, for a resume.
pub fn keep(policy: &Path, bytes: &[u8], run: &Run) -> Result<(), Failure> {
    let kept = Kept {
        policy_blake3: policy_digest(bytes),
        outcome: run.outcome,
        next: run.next,
        entries: run.results.clone(),
    };
    let path = state_file(policy);
    let text = serde_json::to_vec_pretty(&kept).expect("the state serialises");
    crate::partition::host::write_atomically(&path, &text)
        .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", path.display())))
}

fn refused(message: String, action: &str) -> Failure {
    Failure::Refused(policy_error(cause::INVALID, message, action))
}

/// The digest a state file names its policy file by (BLAKE3, hex).
pub fn policy_digest(policy_bytes: &[u8]) -> String {
    blake3::hash(policy_bytes).to_hex().to_string()
}

/// Where a kept policy stands, as read back from its state file.
#[derive(Clone, Debug)]
pub struct Position {
    /// How the run that kept it ended (stopped or ended).
    pub outcome: PolicyOutcome,
    /// The entry a resume starts from (0-based; `entries.len()`: none).
    pub next: usize,
    /// Every entry's result so far.
    pub entries: Vec<EntryResult>,
}

/// Reads a state file (`text`) kept for the policy file `policy_bytes` of
/// `entries` entries. Total: any bytes give a position that fits the
/// policy, or a refusal (an EMG of the client) saying why it does not.
pub fn parse_state(
    text: &[u8],
    policy_bytes: &[u8],
    entries: usize,
) -> Result<Position, crate::emg::Emg> {
    let refuse = |message: String, action: &str| policy_error(cause::INVALID, message, action);
    let kept: Kept = serde_json::from_slice(text).map_err(|e| {
        refuse(
            format!("the policy's state does not parse: {e}"),
            "Run the policy again (moverctl policy run), which starts it over.",
        )
    })?;
    let ended_early = matches!(kept.outcome, PolicyOutcome::Stopped | PolicyOutcome::Ended);
    if kept.policy_blake3 != policy_digest(policy_bytes)
        || kept.entries.len() != entries
        || kept.next > entries
        || !ended_early
    {
        return Err(refuse(
            "the policy file changed since it stopped: its position no longer applies".into(),
            "Restore the file as it was to resume it, or run it again from the start.",
        ));
    }
    Ok(Position {
        outcome: kept.outcome,
        next: kept.next,
        entries: kept.entries,
    })
}

/// `moverctl policy resume <file> --continue|--retry|--skip|--end`.
pub fn resume(g: &Global, file: &Path, choice: Choice) -> Result<(), Failure> {
    let (policy, bytes) = load(file)?;
    let path = state_file(file);
    let text = std::fs::read(&path).map_err(|_| {
        refused(
            format!(
                "policy {} has nothing to resume: it was not stopped and did not end at a \
                 failed entry",
                file.display()
            ),
            "Run it (moverctl policy run).",
        )
    })?;
    let kept = parse_state(&text, &bytes, policy.entries.len()).map_err(|mut e| {
        e.message = format!("{}: {}", path.display(), e.message);
        Failure::Refused(e)
    })?;
    let at = kept.entries.get(kept.next).map(|r| r.status);
    let failed = at == Some(EntryStatus::Failed);
    let first = match choice {
        Choice::End => {
            forget(file);
            return finish(g, file, &policy, kept.outcome, &kept.entries);
        }
        Choice::Retry | Choice::Skip if !failed => {
            return Err(refused(
                format!(
                    "policy {} stopped before entry {} and no entry waits after a failure",
                    file.display(),
                    kept.next + 1
                ),
                "Continue it (--continue) or end it (--end).",
            ));
        }
        Choice::Continue if failed => {
            return Err(refused(
                format!(
                    "entry {} of policy {} failed: choose what to do with it",
                    kept.next + 1,
                    file.display()
                ),
                "Retry it after fixing its cause (--retry), skip it (--skip) or end the \
                 policy (--end).",
            ));
        }
        Choice::Retry | Choice::Continue => kept.next,
        Choice::Skip => kept.next + 1,
    };
    super::drive(g, file, &policy, &bytes, |run| run(kept.entries, first))
}
