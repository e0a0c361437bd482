//! `backup` and `restore`: the manual's backup of the HVM configuration
//! (H:l.8955-9005, 10123-10148), the last resort when recovery keeps
//! failing (H:l.8240-8249).
//!
//! A backup is the inventory: every LPAR's definition ([`LparConfig`]: name,
//! number, CPUs, memory, NICs, FC ports and pinned vfcIDs), its state and the
//! vfcIDs a switchover gave it. Guest memory is not in it: restoring the
//! manual's HVM configuration brings the LPARs back as defined, not their
//! running guests, and a memory image would make the backup as large as
//! the host's RAM. The migration history is not in it either (it is the
//! management side's record and must not go back in time).
//!
//! Rules, as the manual gives them:
//! - No backup during a migration ("a defective HVM configuration is backed
//!   up"): refused with the manual's "blade is busy" (MMS `0x00 00000002
//!   0020 02`).
//! - A backup restores on the host it was taken on only, and the source's
//!   and the destination's are restored together (restoring one side alone
//!   duplicates MACs and WWNs): `moverctl restore` names the host, the
//!   operator restores both agents' backups taken at the same time.
//! - Restore replaces the inventory: LPARs not in the backup are deleted,
//!   those in it are defined as it says (kept files when the definition is
//!   unchanged, defined afresh otherwise), every one deactivated, as after
//!   reactivating the HVM. An unfinished migration journal of a restored
//!   LPAR is closed ("restored"): the backup, not the journal, now says
//!   where it is. Refused while a migration runs or any guest runs here
//!   (restoring would pull its definition from under it).
//!
//! [`LparConfig`]: crate::partition::LparConfig

use super::{Agent, busy, inventory, journal};
use crate::control::{reply, reply::BACKUP_FORMAT};
use crate::emg::{Emg, Module, phase};
use std::collections::BTreeSet;
use std::sync::Arc;

/// `cause` of a refused restore (the Management module's information
/// phase, as the other inventory refusals).
pub const CAUSE_RESTORE_REFUSED: u32 = 0x30;

fn refused(message: String, action: &str) -> Emg {
    Emg::new(
        Module::Management,
        phase::INFORMATION,
        CAUSE_RESTORE_REFUSED,
        message,
        action,
    )
}

/// The manual: never back up (or restore) during a migration.
fn not_during_migration(host: &str, migrating: Option<&str>) -> Result<(), Emg> {
    busy::check_host(host, migrating).map_err(|mut e| {
        e.action = "Wait until the migration ends (moverctl status), then back up or restore: \
                    a configuration saved during a migration is defective."
            .into();
        e
    })
}

/// `backup`: see the module doc.
pub fn backup(agent: &Arc<Agent>) -> Result<reply::AgentBackup, Emg> {
    let inv = agent.inventory.lock().unwrap();
    not_during_migration(&agent.config.name, inv.migrating())?;
    let taken_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let lpars = inv.export();
    log::info!("configuration backed up: {} LPAR(s)", lpars.len());
    Ok(reply::AgentBackup {
        format: BACKUP_FORMAT,
        host: agent.config.name.clone(),
        taken_unix_s,
        lpars,
    })
}

/// `restore`: see the module doc.
pub fn restore(agent: &Arc<Agent>, backup: reply::AgentBackup) -> Result<reply::Restored, Emg> {
    let host = &agent.config.name;
    if backup.format != BACKUP_FORMAT {
        return Err(refused(
            format!(
                "The backup has format {}; this moverd restores format {BACKUP_FORMAT}.",
                backup.format
            ),
            "Restore it with the lpar-mover release that took it.",
        ));
    }
    if &backup.host != host {
        return Err(refused(
            format!(
                "The backup is of host {}, not of {host}: restoring it here would duplicate \
                 MAC addresses and WWNs.",
                backup.host
            ),
            "Restore each host's own backup on that host, the source and the destination \
             together.",
        ));
    }
    let mut names = BTreeSet::new();
    let mut memory = 0u64;
    for l in &backup.lpars {
        inventory::valid_name(&l.name)?;
        if l.config.name != l.name || !names.insert(l.name.as_str()) {
            return Err(refused(
                format!(
                    "The backup names LPAR '{}' twice or inconsistently.",
                    l.name
                ),
                "Restore an unedited backup (moverctl backup writes it).",
            ));
        }
        l.config.validate().map_err(|e| e.emg())?;
        memory = memory.saturating_add(l.config.memory_bytes);
    }
    let r = &agent.config.resources;
    if memory > r.memory {
        return Err(refused(
            format!(
                "The backup's LPARs need {} of memory; host {host} has {}.",
                crate::units::format_size(memory),
                crate::units::format_size(r.memory)
            ),
            "Give the agent the memory it had when the backup was taken ([resources] memory).",
        ));
    }
    let mut inv = agent.inventory.lock().unwrap();
    not_during_migration(host, inv.migrating())?;
    if let Some(running) = inv.names().into_iter().find(|n| {
        inv.get(n)
            .is_ok_and(|e| e.lpar.as_ref().is_some_and(|l| l.is_running()))
    }) {
        return Err(refused(
            format!(
                "LPAR '{running}' is activated on host {host}: a restore would replace its \
                 definition while it runs."
            ),
            "Deactivate every LPAR of the host (moverctl lpar deactivate), then restore.",
        ));
    }
    let (redefined, removed) = inv.restore(&backup.lpars)?;
    for l in &backup.lpars {
        if let Ok(Some(s)) = journal::latest(&agent.config.state_dir, &l.name)
            && !s.finished()
            && let Ok(mut j) = journal::Journal::reopen(&s.path)
        {
            let _ = j.end("restored", false);
        }
    }
    log::info!(
        "configuration restored from the backup of {}: {} LPAR(s), {} redefined, {} removed",
        backup.taken_unix_s,
        backup.lpars.len(),
        redefined.len(),
        removed.len()
    );
    Ok(reply::Restored {
        host: host.clone(),
        taken_unix_s: backup.taken_unix_s,
        lpars: inv.names(),
        redefined,
        removed,
    })
}
