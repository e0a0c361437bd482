//! The LPARs this host holds, persisted in `<state dir>/inventory.json`.
//!
//! ```text
//! <state dir>/
//!   inventory.json   {"version":1,"lpars":[{"name","state","config"}…]}
//!                    replaced atomically: write .tmp, fsync, rename
//!   lpars/<name>/    the sim LPAR's shared-memory files (partition::sim::shm)
//! ```
//!
//! Every state change is persisted before it is reported. On start the
//! agent re-attaches each LPAR's files (a running guest carries on: its
//! vCPU threads restart from their committed registers); an LPAR found
//! `migrating` becomes `needs-recovery`, because the agent that died in the
//! middle cannot know whether ownership passed.

use crate::emg::{Emg, Module, phase};
use crate::partition::sim::SimLpar;
use crate::partition::sim::shm::write_atomically;
use crate::partition::{LparConfig, Vcpus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The manual's LPAR states, plus the migration states of this agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LparState {
    /// Activated (running).
    Act,
    /// Deactivated (defined, not running).
    Dea,
    /// Failed.
    Fai,
    #[serde(rename = "migrating")]
    Migrating,
    #[serde(rename = "needs-recovery")]
    NeedsRecovery,
    #[serde(rename = "wwn-rollback-pending")]
    WwnRollbackPending,
}

impl LparState {
    pub fn label(self) -> &'static str {
        match self {
            LparState::Act => "Act",
            LparState::Dea => "Dea",
            LparState::Fai => "Fai",
            LparState::Migrating => "migrating",
            LparState::NeedsRecovery => "needs-recovery",
            LparState::WwnRollbackPending => "wwn-rollback-pending",
        }
    }
}

/// One LPAR of the inventory.
pub struct Entry {
    pub config: LparConfig,
    pub state: LparState,
    /// The hosted LPAR; `None` when its files could not be attached.
    pub lpar: Option<Arc<SimLpar>>,
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    version: u32,
    lpars: Vec<PersistedLpar>,
}

#[derive(Serialize, Deserialize)]
struct PersistedLpar {
    name: String,
    state: LparState,
    config: LparConfig,
}

const FILE: &str = "inventory.json";
const VERSION: u32 = 1;

pub struct Inventory {
    host: String,
    file: PathBuf,
    root: PathBuf,
    entries: BTreeMap<String, Entry>,
}

fn state_error(cause: u32, message: String) -> Emg {
    Emg::new(
        Module::Management,
        phase::INFORMATION,
        cause,
        message,
        "Check that the state directory exists, is writable and has room (moverd --state-dir).",
    )
}

impl Inventory {
    /// Loads the inventory of `state_dir` (empty if none) and re-attaches
    /// every LPAR under `lpar_root`. Returns what changed, for the log.
    pub fn open(
        host: &str,
        state_dir: &Path,
        lpar_root: &Path,
    ) -> Result<(Inventory, Vec<String>), Emg> {
        std::fs::create_dir_all(lpar_root).map_err(|e| {
            state_error(0x20, format!("cannot create {}: {e}", lpar_root.display()))
        })?;
        let file = state_dir.join(FILE);
        let mut inv = Inventory {
            host: host.to_string(),
            file: file.clone(),
            root: lpar_root.to_path_buf(),
            entries: BTreeMap::new(),
        };
        let mut notes = Vec::new();
        let persisted = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice::<Persisted>(&bytes).map_err(|e| {
                state_error(0x21, format!("{} does not parse: {e}", file.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((inv, notes)),
            Err(e) => return Err(state_error(0x22, format!("{}: {e}", file.display()))),
        };
        let mut changed = false;
        for p in persisted.lpars {
            let mut state = p.state;
            let lpar = match SimLpar::attach(lpar_root, &p.name) {
                Ok(l) => Some(Arc::new(l)),
                Err(e) => {
                    notes.push(format!("LPAR '{}': files lost ({e}); marked Fai", p.name));
                    state = LparState::Fai;
                    None
                }
            };
            if state == LparState::Migrating {
                notes.push(format!(
                    "LPAR '{}' was migrating when the agent stopped: needs recovery",
                    p.name
                ));
                state = LparState::NeedsRecovery;
            }
            if state != p.state {
                changed = true;
            }
            notes.push(format!("re-attached LPAR '{}' ({})", p.name, state.label()));
            inv.entries.insert(
                p.name,
                Entry {
                    config: p.config,
                    state,
                    lpar,
                },
            );
        }
        if changed {
            inv.persist()?;
        }
        Ok((inv, notes))
    }

    fn persist(&self) -> Result<(), Emg> {
        let p = Persisted {
            version: VERSION,
            lpars: self
                .entries
                .iter()
                .map(|(name, e)| PersistedLpar {
                    name: name.clone(),
                    state: e.state,
                    config: e.config.clone(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&p).expect("inventory serialises");
        write_atomically(&self.file, &bytes)
            .map_err(|e| state_error(0x23, format!("cannot save the inventory: {e}")))
    }

    pub fn get(&self, name: &str) -> Result<&Entry, Emg> {
        self.entries.get(name).ok_or_else(|| {
            Emg::new(
                Module::Management,
                phase::INFORMATION,
                0x02,
                format!(
                    "The specified LPAR '{name}' is not defined on host {}.",
                    self.host
                ),
                "Check the LPAR name (moverctl lpar list).",
            )
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The hosted LPAR, or an error if its files are lost.
    pub fn lpar(&self, name: &str) -> Result<Arc<SimLpar>, Emg> {
        self.get(name)?.lpar.clone().ok_or_else(|| {
            Emg::new(
                Module::SourceHvm,
                phase::PARTITION,
                0x01,
                format!("LPAR '{name}' has no guest memory on this host (files lost)"),
                "Delete the LPAR and define it again.",
            )
        })
    }

    /// Guest memory reserved by every LPAR defined here.
    pub fn memory_in_use(&self) -> u64 {
        self.entries.values().map(|e| e.config.memory_bytes).sum()
    }

    /// Defines `config` (files created, vCPUs stopped) in `state`.
    pub fn define(&mut self, config: &LparConfig, state: LparState) -> Result<Arc<SimLpar>, Emg> {
        if self.contains(&config.name) {
            return Err(Emg::new(
                Module::Management,
                phase::DEFINE,
                0x03,
                format!(
                    "An LPAR named '{}' is already defined on host {}.",
                    config.name, self.host
                ),
                "Choose another name, or delete the existing LPAR first.",
            ));
        }
        config.validate().map_err(|e| e.emg())?;
        // A stale directory from a crash before the inventory recorded it.
        let _ = std::fs::remove_dir_all(self.root.join(&config.name));
        let lpar = Arc::new(SimLpar::create(&self.root, config).map_err(|e| e.emg())?);
        self.entries.insert(
            config.name.clone(),
            Entry {
                config: config.clone(),
                state,
                lpar: Some(lpar.clone()),
            },
        );
        if let Err(e) = self.persist() {
            self.entries.remove(&config.name);
            return Err(e);
        }
        Ok(lpar)
    }

    pub fn set_state(&mut self, name: &str, state: LparState) -> Result<(), Emg> {
        self.get(name)?;
        let entry = self.entries.get_mut(name).expect("checked above");
        let old = entry.state;
        entry.state = state;
        if let Err(e) = self.persist() {
            self.entries.get_mut(name).expect("present").state = old;
            return Err(e);
        }
        Ok(())
    }

    /// Removes `name` from the inventory and deletes its files.
    pub fn remove(&mut self, name: &str) -> Result<(), Emg> {
        self.get(name)?;
        let entry = self.entries.remove(name).expect("checked above");
        self.persist()?;
        let dir = self.root.join(name);
        drop(entry);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(state_error(
                0x24,
                format!("cannot remove {}: {e}", dir.display()),
            )),
        }
    }

    /// One LPAR as `lpar-show` and `lpar-list` report it.
    pub fn describe(&self, name: &str) -> Result<Value, Emg> {
        let e = self.get(name)?;
        let (running, writes, stall) = match &e.lpar {
            Some(l) => (l.is_running(), l.writes(), l.max_stall_ns() as f64 / 1e6),
            None => (false, 0, 0.0),
        };
        Ok(json!({
            "name": name,
            "state": e.state,
            "vcpus": e.config.vcpus,
            "memory_bytes": e.config.memory_bytes,
            "program": e.config.program,
            "fc_ports": e.config.fc_ports,
            "running": running,
            "guest_writes": writes,
            "guest_max_stall_ms": stall,
        }))
    }

    /// An LPAR this host is migrating (in or out), if any.
    pub fn migrating(&self) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, e)| e.state == LparState::Migrating)
            .map(|(name, _)| name.as_str())
    }

    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }
}
