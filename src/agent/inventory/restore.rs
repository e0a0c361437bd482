//! An inventory as a backup holds it, and back: `moverctl backup` and
//! `restore` (see `agent/backup.rs` for the checks around them).

use super::{Entry, Inventory};
use crate::control::{LparState, reply};
use crate::emg::Emg;
use std::collections::BTreeMap;

impl Inventory {
    /// Every LPAR as a backup holds it.
    pub fn export(&self) -> Vec<reply::BackupLpar> {
        self.entries
            .iter()
            .map(|(name, e)| reply::BackupLpar {
                name: name.clone(),
                state: e.state,
                config: e.config.clone(),
                vfc_ids: e.vfc_ids.clone(),
            })
            .collect()
    }

    /// Makes the inventory `lpars` (checked by the caller: valid, unique
    /// names; no guest running here), every LPAR deactivated. An LPAR
    /// defined here as in the backup keeps its files; one defined
    /// differently or absent is defined afresh; one not in the backup is
    /// deleted. Returns (redefined, removed).
    pub fn restore(
        &mut self,
        lpars: &[reply::BackupLpar],
    ) -> Result<(Vec<String>, Vec<String>), Emg> {
        let wanted: BTreeMap<&str, &reply::BackupLpar> =
            lpars.iter().map(|l| (l.name.as_str(), l)).collect();
        let mut removed = Vec::new();
        let mut stale = Vec::new();
        for name in self.names() {
            match wanted.get(name.as_str()) {
                None => removed.push(name),
                // Changed, or its files lost: defined afresh.
                Some(b)
                    if b.config != self.entries[&name].config
                        || self.entries[&name].lpar.is_none() =>
                {
                    stale.push(name)
                }
                Some(_) => {}
            }
        }
        for name in removed.iter().chain(&stale) {
            self.entries.remove(name);
            let _ = self.backend.remove(name);
        }
        let mut redefined = Vec::new();
        let mut failed = None;
        for b in lpars {
            if let Some(e) = self.entries.get_mut(&b.name) {
                e.state = LparState::Dea;
                e.vfc_ids = b.vfc_ids.clone();
                continue;
            }
            let _ = self.backend.remove(&b.name);
            match self.backend.create(&b.name, &b.config) {
                Ok(lpar) => {
                    self.entries.insert(
                        b.name.clone(),
                        Entry {
                            config: b.config.clone(),
                            state: LparState::Dea,
                            lpar: Some(lpar),
                            vfc_ids: b.vfc_ids.clone(),
                        },
                    );
                    redefined.push(b.name.clone());
                }
                Err(e) => {
                    failed = Some(e.emg());
                    break;
                }
            }
        }
        // What was done is saved even when a definition failed: the
        // operator retries the restore from there.
        self.persist()?;
        match failed {
            Some(e) => Err(e),
            None => Ok((redefined, removed)),
        }
    }
}
