//! The LPARs this host holds, persisted in `<state dir>/inventory.json`.
//!
//! ```text
//! <state dir>/
//!   inventory.json   {"version":1,"lpars":[{"name","state","config"}…]}
//!                    replaced atomically: write .tmp, fsync, rename
//!   lpars/<name>/    each LPAR's files, kept by the host's backend
//!                    (`partition::Backend`: `sim` or `kvm`)
//! ```
//!
//! Every state change is persisted before it is reported, and the
//! inventory in memory changes only once the file is saved: a failed save
//! leaves both as they were. On start the agent re-attaches each LPAR
//! through [`Backend::attach`] (a running guest carries on: `sim` restarts
//! its vCPU threads from their committed registers, `kvm` finds the LPAR's
//! process still running); an LPAR found `migrating` becomes
//! `needs-recovery`, because the agent that died in the middle cannot know
//! whether ownership passed.
//!
//! Also on start: an inventory of another `version` is refused; a
//! directory under `lpars/` that the inventory does not name is left by a
//! crash between creating an LPAR's files and saving (or between saving
//! and deleting them), so it is collected (and logged); but LPAR
//! directories without any `inventory.json` mean the inventory was lost,
//! and the agent refuses to start rather than ignore or delete them.
//! Everything under the state directory is private to the agent (files
//! 0600, directories 0700).

use crate::control::{LparState, reply};
use crate::emg::{Emg, Module, phase};
use crate::partition::config::check_name;
use crate::partition::host::{private_dir_all, write_atomically};
use crate::partition::{Backend, LparConfig, Partition, PartitionError};
use crate::state::DeviceState;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One LPAR of the inventory.
pub struct Entry {
    pub config: LparConfig,
    pub state: LparState,
    /// The hosted LPAR; `None` when its files could not be attached.
    pub lpar: Option<Arc<dyn Partition>>,
    /// The vfcID each logical FC port holds on this host, in port order,
    /// as a switchover or `lpar create` assigned them from the host's
    /// pools (empty when none were: a host without `[resources] fc_ports`,
    /// whose LPARs' ports hold their pinned vfcIDs).
    pub vfc_ids: Vec<u16>,
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    vfc_ids: Vec<u16>,
}

mod restore;

const FILE: &str = "inventory.json";
const VERSION: u32 = 1;

pub struct Inventory {
    host: String,
    file: PathBuf,
    backend: Arc<dyn Backend>,
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

/// Refuses a name that is no LPAR name (it would leave its directory).
pub fn valid_name(name: &str) -> Result<(), Emg> {
    check_name(name).map_err(|e| {
        crate::control::protocol_error(
            crate::control::cause::BAD_ARGUMENTS,
            format!("'{}' is not an LPAR name: {e}", name.escape_debug()),
            "Give the LPAR's name as moverctl lpar list shows it.",
        )
    })
}

impl Inventory {
    /// Loads the inventory of `state_dir` (empty if none) and re-attaches
    /// every LPAR `backend` holds. Returns what changed, for the log.
    pub fn open(
        host: &str,
        state_dir: &Path,
        backend: Arc<dyn Backend>,
    ) -> Result<(Inventory, Vec<String>), Emg> {
        let mut notes = Vec::new();
        let lpar_root = &backend.root().to_path_buf();
        use std::os::unix::fs::PermissionsExt;
        let cannot =
            |dir: &Path, e| state_error(0x20, format!("cannot create {}: {e}", dir.display()));
        private_dir_all(lpar_root)
            // Guest memory's directory, of an older release too: closed to others.
            .and_then(|()| {
                std::fs::set_permissions(lpar_root, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|e| cannot(lpar_root, e))?;
        // The state directory may be the operator's (say /dev/shm): left as
        // it is, but said; what the agent puts in it is private anyway.
        let mode = std::fs::metadata(state_dir)
            .map_err(|e| cannot(state_dir, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            notes.push(format!(
                "the state directory {} is open to others (mode {:04o}); its files are \
                 private, but consider chmod 700 {0}",
                state_dir.display(),
                mode & 0o7777
            ));
        }
        let file = state_dir.join(FILE);
        let mut inv = Inventory {
            host: host.to_string(),
            file: file.clone(),
            backend: backend.clone(),
            entries: BTreeMap::new(),
        };
        let persisted = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice::<Persisted>(&bytes).map_err(|e| {
                state_error(0x21, format!("{} does not parse: {e}", file.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let found = lpar_dirs(lpar_root);
                if !found.is_empty() {
                    return Err(Emg::new(
                        Module::Management,
                        phase::INFORMATION,
                        0x25,
                        format!(
                            "{} is missing but {} holds the LPARs {found:?}: the inventory \
                             was lost",
                            file.display(),
                            lpar_root.display()
                        ),
                        "Restore inventory.json from a backup; or, to start empty, move those \
                         directories out of the state directory (they hold guest memory).",
                    ));
                }
                return Ok((inv, notes));
            }
            Err(e) => return Err(state_error(0x22, format!("{}: {e}", file.display()))),
        };
        if persisted.version != VERSION {
            return Err(Emg::new(
                Module::Management,
                phase::INFORMATION,
                0x26,
                format!(
                    "{} has version {}; this moverd reads version {VERSION}",
                    file.display(),
                    persisted.version
                ),
                "Run the lpar-mover release that wrote this state directory.",
            ));
        }
        let mut changed = false;
        for p in persisted.lpars {
            valid_name(&p.name).map_err(|e| {
                state_error(0x21, format!("{} names an LPAR badly: {e}", file.display()))
            })?;
            let mut state = p.state;
            let lpar = match backend.attach(&p.name) {
                Ok(l) => Some(l),
                Err(e @ PartitionError::NoRoom { .. }) => {
                    notes.push(format!(
                        "LPAR '{}': {e}; marked Fai (its files are kept)",
                        p.name
                    ));
                    state = LparState::Fai;
                    None
                }
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
                    vfc_ids: p.vfc_ids,
                },
            );
        }
        for orphan in lpar_dirs(lpar_root) {
            if inv.entries.contains_key(&orphan) {
                continue;
            }
            let dir = lpar_root.join(&orphan);
            // Through the backend first: a `kvm` orphan may have a process.
            let _ = backend.remove(&orphan);
            let gone = match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
            match gone {
                Ok(()) => notes.push(format!(
                    "collected the orphan LPAR directory {} (no inventory entry: a crash \
                     while it was created or deleted)",
                    dir.display()
                )),
                Err(e) => notes.push(format!(
                    "cannot collect the orphan LPAR directory {}: {e}",
                    dir.display()
                )),
            }
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
                    vfc_ids: e.vfc_ids.clone(),
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
    pub fn lpar(&self, name: &str) -> Result<Arc<dyn Partition>, Emg> {
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
    pub fn define(
        &mut self,
        config: &LparConfig,
        state: LparState,
    ) -> Result<Arc<dyn Partition>, Emg> {
        self.define_holding(config, state, Vec::new())
    }

    /// [`Self::define`], its FC ports holding `vfc_ids` on this host (in
    /// port order; empty: none recorded): its logical HBAs log in with
    /// them and validation counts them as used. One save.
    pub fn define_holding(
        &mut self,
        config: &LparConfig,
        state: LparState,
        vfc_ids: Vec<u16>,
    ) -> Result<Arc<dyn Partition>, Emg> {
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
        // A stale LPAR from a crash before the inventory recorded it.
        let _ = self.backend.remove(&config.name);
        // Out of room is the manual's "not enough memory", whichever file.
        let root = self.backend.root().display().to_string();
        let failed = |e: PartitionError| {
            if e.is_no_room() {
                let bytes = config.memory_bytes;
                PartitionError::NoRoom {
                    path: root.clone(),
                    bytes,
                }
                .emg()
            } else {
                e.emg()
            }
        };
        // Its memory reserved (by the backend) before anything runs or
        // arrives; then saved.
        let result = self.backend.create(&config.name, config).map_err(failed);
        let result = result.and_then(|lpar| {
            if !vfc_ids.is_empty() {
                let mut devices = lpar.save_state().map_err(|e| e.emg())?;
                for (hba, &id) in devices.fc_hbas.iter_mut().zip(&vfc_ids) {
                    hba.vfc_id = id;
                }
                lpar.restore_state(&devices).map_err(|e| e.emg())?;
            }
            self.entries.insert(
                config.name.clone(),
                Entry {
                    config: config.clone(),
                    state,
                    lpar: Some(lpar.clone()),
                    vfc_ids,
                },
            );
            self.persist().map(|()| lpar).inspect_err(|_| {
                self.entries.remove(&config.name);
            })
        });
        if result.is_err() {
            // Nothing refers to the LPAR: gone with the refusal.
            let _ = self.backend.remove(&config.name);
        }
        result
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

    /// Replaces the definition of `config.name` (checked by the caller:
    /// it exists, its guest is stopped, the host has room) and defines its
    /// files afresh, as a changed LPAR is on the HVM: its guest starts anew
    /// when next activated. The vfcIDs a switchover gave its FC ports stay
    /// while the ports stay as they were. On failure it stays as it was.
    pub fn redefine(&mut self, config: &LparConfig) -> Result<(), Emg> {
        self.get(&config.name)?;
        config.validate().map_err(|e| e.emg())?;
        // Its identities (UUID, NVRAM, logical RTC) stay with it.
        let identity = self.lpar(&config.name)?.save_state().map_err(|e| e.emg())?;
        let mut entry = self.entries.remove(&config.name).expect("checked above");
        let old = entry.config.clone();
        entry.lpar = None;
        let _ = self.backend.remove(&config.name);
        let created = self
            .backend
            .create(&config.name, config)
            .and_then(|lpar| carry_identity(&*lpar, &identity).map(|()| lpar));
        let result = match created {
            Ok(lpar) => {
                entry.lpar = Some(lpar);
                entry.config = config.clone();
                if old.fc_ports != config.fc_ports {
                    entry.vfc_ids.clear();
                }
                self.entries.insert(config.name.clone(), entry);
                self.persist()
            }
            Err(e) => {
                self.entries.insert(config.name.clone(), entry);
                Err(e.emg())
            }
        };
        if result.is_err() {
            // Back to the old definition (its files afresh too).
            let e = self.entries.get_mut(&config.name).expect("inserted above");
            e.config = old.clone();
            e.lpar = None;
            let _ = self.backend.remove(&old.name);
            e.lpar = self
                .backend
                .create(&old.name, &old)
                .and_then(|lpar| carry_identity(&*lpar, &identity).map(|()| lpar))
                .ok();
        }
        result
    }

    /// An incoming LPAR has arrived: records the vfcIDs the switchover
    /// gave its FC ports (so that validation and the next switchover on
    /// this host count them as used; empty: none assigned, kept as they
    /// were) and its new `state`, in one save.
    pub fn arrived(&mut self, name: &str, vfc_ids: Vec<u16>, state: LparState) -> Result<(), Emg> {
        self.get(name)?;
        let entry = self.entries.get_mut(name).expect("checked above");
        let old = (entry.vfc_ids.clone(), entry.state);
        if !vfc_ids.is_empty() {
            entry.vfc_ids = vfc_ids;
        }
        entry.state = state;
        if let Err(e) = self.persist() {
            let entry = self.entries.get_mut(name).expect("present");
            (entry.vfc_ids, entry.state) = old;
            return Err(e);
        }
        Ok(())
    }

    /// The vfcIDs `name`'s FC ports hold here, per physical port: those a
    /// switchover assigned, else the pinned ones.
    pub fn vfc_ids_in_use(&self, name: &str) -> Vec<(u16, u16)> {
        let Some(e) = self.entries.get(name) else {
            return Vec::new();
        };
        e.config
            .fc_ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| e.vfc_ids.get(i).copied().or(p.vfc_id).map(|v| (p.port, v)))
            .collect()
    }

    /// Removes `name` from the inventory and deletes its files (the entry
    /// stays if the inventory cannot be saved without it).
    pub fn remove(&mut self, name: &str) -> Result<(), Emg> {
        self.get(name)?;
        let entry = self.entries.remove(name).expect("checked above");
        if let Err(e) = self.persist() {
            self.entries.insert(name.to_string(), entry);
            return Err(e);
        }
        drop(entry);
        match self.backend.remove(name) {
            Ok(()) => Ok(()),
            Err(PartitionError::SharedMemory { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(())
            }
            Err(e) => Err(state_error(
                0x24,
                format!("cannot remove LPAR '{name}': {e}"),
            )),
        }
    }

    /// One LPAR as `lpar-show` and `lpar-list` report it.
    pub fn describe(&self, name: &str) -> Result<reply::Lpar, Emg> {
        let e = self.get(name)?;
        let (running, writes, stall) = match &e.lpar {
            Some(l) => (
                l.is_running(),
                l.guest_writes(),
                l.max_stall_ns().map(|ns| ns as f64 / 1e6),
            ),
            None => (false, None, None),
        };
        Ok(reply::Lpar {
            name: name.to_string(),
            state: e.state,
            vcpus: e.config.vcpus,
            memory_bytes: e.config.memory_bytes,
            program: e.config.program.clone(),
            backend: self.backend.kind().to_string(),
            fc_ports: e.config.fc_ports.clone(),
            vfc_ids: e.vfc_ids.clone(),
            nics: e.config.nics.clone(),
            running,
            guest_writes: writes,
            guest_max_stall_ms: stall,
            service_ratio: e.config.service_ratio,
            service_share_percent: self.service_share_percent(name),
            memory_backing: e.config.memory_backing,
        })
    }

    /// `name`'s share of the shared CPUs among the activated LPARs here
    /// (its own ratio counted whether or not it is activated), percent.
    fn service_share_percent(&self, name: &str) -> f64 {
        let ratio = |e: &Entry| f64::from(e.config.service_ratio);
        let others: f64 = self
            .entries
            .iter()
            .filter(|(n, e)| n.as_str() != name && e.state == LparState::Act)
            .map(|(_, e)| ratio(e))
            .sum();
        let own = self.entries.get(name).map_or(0.0, ratio);
        if own + others == 0.0 {
            return 0.0;
        }
        100.0 * own / (own + others)
    }

    /// An LPAR this host is migrating (in or out), if any.
    pub fn migrating(&self) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, e)| e.state == LparState::Migrating)
            .map(|(name, _)| name.as_str())
    }

    /// The LPARs with WWNs to roll back (the manual's WWN Status List).
    pub fn wwn_rollbacks_pending(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| e.state == LparState::WwnRollbackPending)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The backend hosting this inventory's LPARs.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Every LPAR's configuration here.
    pub fn configs(&self) -> Vec<LparConfig> {
        self.entries.values().map(|e| e.config.clone()).collect()
    }

    /// How many LPARs here are activated.
    pub fn active_count(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.state == LparState::Act)
            .count()
    }

    /// The number a new LPAR here gets: the youngest (smallest) one no LPAR
    /// holds, as the manual assigns a destination LPAR slot.
    pub fn free_number(&self) -> u32 {
        let used: std::collections::BTreeSet<u32> =
            self.entries.values().map(|e| e.config.number).collect();
        (1..)
            .find(|n| !used.contains(n))
            .expect("fewer than u32::MAX LPARs")
    }
}

/// Gives `lpar`, just defined, the identities of its former definition
/// (`old`): firmware (UUID, NVRAM) and logical RTC; its vCPUs at power-on
/// and its devices as its new configuration says.
fn carry_identity(lpar: &dyn Partition, old: &DeviceState) -> Result<(), PartitionError> {
    let mut state = lpar.save_state()?;
    state.firmware = old.firmware.clone();
    if old.rtc.is_some() {
        state.rtc = old.rtc;
    }
    state.vcpus.clear();
    lpar.restore_state(&state)
}

/// The names of the directories under `root` (LPARs' files).
fn lpar_dirs(root: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
