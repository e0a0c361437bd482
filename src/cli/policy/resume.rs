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
use crate::cli::ctl::{Failure, Global};
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
        policy_blake3: blake3::hash(bytes).to_hex().to_string(),
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
    let kept: Kept = serde_json::from_slice(&text).map_err(|e| {
        refused(
            format!("{} does not parse: {e}", path.display()),
            "Run the policy again (moverctl policy run), which starts it over.",
        )
    })?;
    if kept.policy_blake3 != blake3::hash(&bytes).to_hex().as_str()
        || kept.entries.len() != policy.entries.len()
        || kept.next > policy.entries.len()
    {
        return Err(refused(
            format!(
                "policy {} changed since it stopped: its position no longer applies",
                file.display()
            ),
            "Restore the file as it was to resume it, or run it again from the start.",
        ));
    }
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
