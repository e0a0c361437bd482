//! `recover`: resolves an LPAR whose migration did not finish, from the
//! journals of both sides, so that it runs on exactly one host.
//!
//! ```text
//! moverctl recover L ──▶ agent X (holds L, needs-recovery, deactivated)
//!                        read X's latest journal of L
//!                        journal-read L ─────────────▶ peer Y: its journal, its copy
//!                        committed? (control::JournalSummary::committed)
//!                        the losing copy is discarded first, then the
//!                        winner resumes (never two running copies):
//!                          recover-resolve L keep=… ─▶ Y resumes or removes its copy
//!                        X removes or resumes its own copy
//!                        both journals get an `end: recovered` record
//! ```
//!
//! Before commit the LPAR runs on the source and the destination's copy is
//! removed; after commit it runs on the destination and the source's copy
//! is removed. Journals that cannot tell (the source's journal lost after
//! the destination loaded the image) are an error, never a guess.
//!
//! The peer does not take `recover-resolve` on trust: it acts only on a
//! copy that needs recovery (or, told to discard, on none), and only when
//! its own journal, with the one the caller sends, gives the same verdict
//! (so a half-received image is never resumed, and a copy that does not
//! need recovery is never removed). Every LPAR name is checked before it
//! becomes a journal path.

use super::Agent;
use super::inventory::{Inventory, valid_name};
use super::journal::{self, Journal};
use crate::control::{Address, Client, LparState, cause, protocol_error, reply, request};
use crate::control::{JournalSummary as Summary, MigrationMode, Side};
use crate::emg::{Emg, Module};
use crate::engine::stage::Stage;
use std::path::Path;
use std::sync::Arc;

/// `phase` of the Recovery module's LPAR checks (busy, activated).
pub const PHASE_RECOVERY_LPAR: u16 = 0x0011;
/// `phase` of the Recovery module's "Connection refused (MMS-Blade IP=%s)".
pub const PHASE_RECOVERY_CONNECT: u16 = 0x0020;

/// On start: every LPAR with an unfinished journal needs recovery.
pub fn mark_unfinished(state_dir: &Path, inv: &mut Inventory) {
    for s in journal::unfinished(state_dir) {
        let Ok(entry) = inv.get(&s.lpar) else {
            continue;
        };
        if entry.state == LparState::NeedsRecovery {
            continue;
        }
        log::info!(
            "LPAR '{}': migration {} ({:?} side) did not finish: needs recovery",
            s.lpar,
            s.migration,
            s.side
        );
        if let Err(e) = inv.set_state(&s.lpar, LparState::NeedsRecovery) {
            log::error!("cannot mark '{}' needs-recovery: {e}", s.lpar);
        }
    }
}

fn not_needed(lpar: &str, state: LparState) -> Emg {
    Emg::new(
        Module::Recovery,
        PHASE_RECOVERY_LPAR,
        0x27,
        format!(
            "The specified LPAR was not recover from a failed-migration state: '{lpar}' is {} \
             here and needs no recovery.",
            state.label()
        ),
        "Run recover on the host where the LPAR is needs-recovery (moverctl lpar list).",
    )
}

fn activated(lpar: &str, host: &str) -> Emg {
    Emg::new(
        Module::Recovery,
        PHASE_RECOVERY_LPAR,
        0x21,
        format!("Could not recover the LPAR '{lpar}' on {host} because of activated LPAR."),
        "Deactivate the LPAR (moverctl lpar deactivate) and retry the recovery.",
    )
}

/// `journal-read`: this host's latest journal of `lpar` and its copy.
pub fn journal_read(agent: &Arc<Agent>, lpar: &str) -> Result<reply::JournalRead, Emg> {
    valid_name(lpar)?;
    let summary = journal::latest(&agent.config.state_dir, lpar)?;
    let inv = agent.inventory.lock().unwrap();
    let copy = inv.get(lpar).ok().map(|e| reply::Copy {
        state: e.state,
        running: e.lpar.as_ref().is_some_and(|l| l.is_running()),
    });
    Ok(reply::JournalRead {
        host: agent.config.name.clone(),
        journal: summary,
        copy,
    })
}

/// `recover-resolve` as a peer asks it: checked against this host's state
/// and journal (see the module doc), then [`resolve_here`].
pub fn resolve_request(
    agent: &Arc<Agent>,
    lpar: &str,
    keep: bool,
    leave_deactivated: bool,
    caller: Option<Summary>,
) -> Result<reply::Resolved, Emg> {
    valid_name(lpar)?;
    let host = agent.config.name.clone();
    let state = agent.inventory.lock().unwrap().get(lpar).map(|e| e.state);
    match state {
        Ok(LparState::NeedsRecovery) => {}
        Ok(other @ (LparState::Act | LparState::Dea)) if keep => {
            // Kept already: the migration ended here with the LPAR back
            // (a failure before commit); nothing to change.
            if journal::latest(&agent.config.state_dir, lpar)?.is_some_and(|s| s.finished()) {
                return Ok(reply::Resolved {
                    host,
                    lpar: lpar.to_string(),
                    kept: true,
                });
            }
            return Err(not_needed(lpar, other));
        }
        Ok(other) => return Err(not_needed(lpar, other)),
        // No copy here and told to discard it: nothing to do but close.
        Err(_) if !keep => return resolve_here(agent, lpar, false, leave_deactivated),
        Err(e) => return Err(e),
    }
    let local = journal::latest(&agent.config.state_dir, lpar)?
        .filter(|s| !s.finished())
        .ok_or_else(|| {
            Emg::new(
                Module::Recovery,
                journal::PHASE_RECOVERY_FILE,
                0x16,
                format!(
                    "Reading recovery file has failed: host {host} has no unfinished journal of \
                     '{lpar}', so it cannot confirm the verdict."
                ),
                "Run moverctl recover on the host that has the journal; if neither has one, \
                 restore the pre-migration backups.",
            )
        })?;
    let other = caller.filter(|c| local.pairs_with(c));
    let (source, destination) = match local.side {
        Side::Source => (Some(&local), other.as_ref()),
        Side::Destination => (other.as_ref(), Some(&local)),
    };
    let verdict = Summary::committed(source, destination);
    // After commit the destination's copy is the LPAR; before it, the source's.
    let keep_here = verdict.map(|committed| committed == (local.side == Side::Destination));
    if keep_here != Some(keep) {
        return Err(Emg::new(
            Module::Recovery,
            PHASE_RECOVERY_LPAR,
            0x28,
            format!(
                "The specified LPAR was not recover from a failed-migration state: told to {} \
                 the copy of '{lpar}' on {host}, but its journal (migration {}, {} side, \
                 stages {:x?}) says {}.",
                if keep { "keep" } else { "discard" },
                local.migration,
                local.side.label(),
                local.stages,
                match keep_here {
                    Some(true) => "this copy is the LPAR",
                    Some(false) => "this copy is not the LPAR",
                    None => "nothing certain",
                }
            ),
            "Run moverctl recover (it reads both journals) rather than recover-resolve.",
        ));
    }
    resolve_here(agent, lpar, keep, leave_deactivated)
}

/// `recover-resolve`: keeps (resumes, Act; or with `leave_deactivated`,
/// Dea unless already activated) or discards this host's copy.
pub fn resolve_here(
    agent: &Arc<Agent>,
    lpar: &str,
    keep: bool,
    leave_deactivated: bool,
) -> Result<reply::Resolved, Emg> {
    let host = agent.config.name.clone();
    let mut inv = agent.inventory.lock().unwrap();
    if keep {
        let l = inv.lpar(lpar)?;
        let state = if l.is_running() {
            LparState::Act
        } else if leave_deactivated {
            LparState::Dea
        } else {
            l.resume().map_err(|e| e.emg())?;
            LparState::Act
        };
        inv.set_state(lpar, state)?;
    } else if inv.contains(lpar) {
        let l = inv.lpar(lpar).ok();
        if l.as_ref().is_some_and(|l| l.is_running()) {
            return Err(activated(lpar, &host));
        }
        drop(l);
        inv.remove(lpar)?;
    }
    drop(inv);
    close_journal(agent, lpar);
    log::info!(
        "recovery: LPAR '{lpar}' {} on {host}",
        if keep { "runs" } else { "removed" }
    );
    Ok(reply::Resolved {
        host,
        lpar: lpar.to_string(),
        kept: keep,
    })
}

/// Appends `end: recovered` to the latest unfinished journal of `lpar`.
fn close_journal(agent: &Agent, lpar: &str) {
    match journal::latest(&agent.config.state_dir, lpar) {
        Ok(Some(s)) if !s.finished() => {
            if let Err(e) = Journal::reopen(&s.path).and_then(|mut j| j.end("recovered", false)) {
                log::error!("recovery of '{lpar}': {e}");
            }
        }
        Ok(_) => {}
        Err(e) => log::error!("recovery of '{lpar}': {e}"),
    }
}

/// `recover`: see the module doc.
pub fn recover(
    agent: &Arc<Agent>,
    lpar: &str,
    peer: Option<&str>,
) -> Result<reply::Recovered, Emg> {
    valid_name(lpar)?;
    let host = agent.config.name.clone();
    {
        let inv = agent.inventory.lock().unwrap();
        let entry = inv.get(lpar)?;
        if entry.state != LparState::NeedsRecovery {
            return Err(not_needed(lpar, entry.state));
        }
        if entry.lpar.as_ref().is_some_and(|l| l.is_running()) {
            return Err(activated(lpar, &host));
        }
    }
    let local = journal::latest(&agent.config.state_dir, lpar)?.ok_or_else(|| {
        Emg::new(
            Module::Recovery,
            journal::PHASE_RECOVERY_FILE,
            0x16,
            format!("Reading recovery file has failed: host {host} has no journal of '{lpar}'."),
            "Restore the pre-migration backups of the LPAR (the journal is gone).",
        )
    })?;
    let peer = match (peer, local.side) {
        (Some(p), _) => p.to_string(),
        (None, Side::Source) => local.peer.clone(),
        (None, Side::Destination) => {
            return Err(protocol_error(
                cause::BAD_ARGUMENTS,
                format!(
                    "the journal names the source agent '{}', not its management address",
                    local.peer
                ),
                "Give the source agent's address: moverctl recover <lpar> --peer host:port.",
            ));
        }
    };
    let refused = |e: &dyn std::fmt::Display| {
        Emg::new(
            Module::Recovery,
            PHASE_RECOVERY_CONNECT,
            0x00,
            format!("Connection refused (MMS-Blade IP={peer}): {e}"),
            "Check the source or destination link and that its agent runs, then retry.",
        )
    };
    let address = Address::parse(&peer).map_err(|e| refused(&e))?;
    let mut client = agent
        .open_peer(&address, Module::Recovery)
        .map_err(|e| refused(&e))?;
    let reply = client
        .request(request::JournalRead {
            lpar: lpar.to_string(),
        })
        .map_err(|e| refused(&e))?;
    let remote = reply.journal;
    let peer_host = reply.host;
    // The peer's journal must be of the same migration and the other side
    // (an older journal there belongs to an earlier migration).
    let remote = remote.filter(|r| local.pairs_with(r));
    let (source, destination) = match local.side {
        Side::Source => (Some(&local), remote.as_ref()),
        Side::Destination => (remote.as_ref(), Some(&local)),
    };
    let committed = Summary::committed(source, destination).ok_or_else(|| {
        Emg::new(
            Module::Recovery,
            journal::PHASE_RECOVERY_FILE,
            0x23,
            format!(
                "Reading recovery file has failed: the source's journal of '{lpar}' is missing \
                 and the destination had loaded the image, so the journals cannot tell \
                 whether ownership passed."
            ),
            "Retry the recovery after restoring the source host's state directory, or \
             restore the pre-migration backups.",
        )
    })?;
    // The source journals 0x4080 before it asks for the commit; if the
    // destination then holds no copy and never started loading one, the
    // request never arrived (or it refused): the source keeps it.
    let peer_has_copy = reply.copy.is_some();
    let committed = if committed && local.side == Side::Source && !peer_has_copy {
        match destination {
            Some(d) if d.reached(Stage::DstLoadingState) && !d.finished() => {
                return Err(Emg::new(
                    Module::Recovery,
                    PHASE_RECOVERY_LPAR,
                    0x29,
                    format!(
                        "The specified LPAR was not recover from a failed-migration state:                          ownership of '{lpar}' passed to {peer_host}, which no longer holds it."
                    ),
                    "Hardware might be failed: check the destination host, then restore the                      pre-migration backups.",
                ));
            }
            _ => false,
        }
    } else {
        committed
    };
    let keep_here = committed == (local.side == Side::Destination);
    // A shutdown-mode migration moved a stopped guest: it stays stopped.
    let leave_deactivated = local.mode == MigrationMode::Shutdown;
    let call_peer = |client: &mut Client, keep: bool| {
        client
            .request(request::RecoverResolve {
                lpar: lpar.to_string(),
                keep,
                leave_deactivated,
                journal: Some(local.clone()),
            })
            .map(drop)
    };
    // Discard the losing copy first, then resume the winner.
    if keep_here {
        call_peer(&mut client, false)?;
        resolve_here(agent, lpar, true, leave_deactivated)?;
    } else {
        resolve_here(agent, lpar, false, leave_deactivated)?;
        call_peer(&mut client, true)?;
    }
    let runs_on = if keep_here { &host } else { &peer_host };
    let removed_from = if keep_here { &peer_host } else { &host };
    log::info!(
        "recovery of '{lpar}': {} commit, runs on {runs_on}, removed from {removed_from}",
        if committed { "after" } else { "before" }
    );
    Ok(reply::Recovered {
        lpar: lpar.to_string(),
        committed,
        runs_on: runs_on.clone(),
        removed_from: removed_from.clone(),
    })
}
