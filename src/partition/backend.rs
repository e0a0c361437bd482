//! The backend boundary: how partitions come into being, survive an agent
//! restart and go away.
//!
//! The agent, the engine and the CLI hold a `&dyn Backend` and the
//! `Arc<dyn Partition>` handles it hands out; nothing outside `partition/`
//! needs to name a backend type. A backend keeps each LPAR under
//! `<root>/<name>/` in files that outlive the process that created it, so a
//! restarted agent calls [`Backend::list`] and [`Backend::attach`] and finds
//! its guests where they were, running or paused.
//!
//! Contracts (the conformance suite, `partition::conformance`, checks them):
//!
//! * [`Backend::create`] defines a new LPAR with its memory reserved (a full
//!   file system fails here, never later as a fault) and its vCPUs stopped:
//!   nothing runs until [`Vcpus::resume`](super::Vcpus::resume).
//! * [`Backend::attach`] returns a handle to an LPAR created by an earlier
//!   process: memory content, vCPU state and run state are as they were.
//! * [`Backend::list`] names every LPAR under the root, sorted.
//! * [`Backend::remove`] stops the LPAR's vCPUs and deletes its files;
//!   handles still held elsewhere fail or see a stopped LPAR afterwards.
//! * A name is a valid LPAR name ([`check_name`]) and must match the
//!   configuration's.

use super::config::check_name;
use super::sim::SimLpar;
use super::{LparConfig, MemoryBacking, Partition, PartitionError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Creates, re-attaches, lists and removes the partitions of one backend.
pub trait Backend: Send + Sync {
    /// The backend's name as operators write it (`sim`, `kvm`); a migration
    /// is only possible between agents whose backends share it.
    fn kind(&self) -> &'static str;

    /// The directory holding one sub-directory per LPAR.
    fn root(&self) -> &Path;

    /// Defines LPAR `name` from `config` (whose `name` must be `name`), with
    /// memory reserved and vCPUs stopped.
    fn create(&self, name: &str, config: &LparConfig)
    -> Result<Arc<dyn Partition>, PartitionError>;

    /// Re-attaches LPAR `name`, created by this or an earlier process.
    fn attach(&self, name: &str) -> Result<Arc<dyn Partition>, PartitionError>;

    /// Every LPAR under [`Backend::root`], sorted by name.
    fn list(&self) -> Result<Vec<String>, PartitionError>;

    /// Stops LPAR `name` and deletes its files.
    fn remove(&self, name: &str) -> Result<(), PartitionError>;
}

/// Checks `name` and that it is the configuration's.
pub(crate) fn check_create(name: &str, config: &LparConfig) -> Result<(), PartitionError> {
    check_name(name)?;
    if config.name != name {
        return Err(PartitionError::BadConfig {
            why: format!(
                "asked to create LPAR '{name}' from the configuration of '{}'",
                config.name
            ),
        });
    }
    config.validate()
}

/// Sub-directories of `root` that hold a `config.json`, sorted.
pub(crate) fn lpar_dirs(root: &Path) -> Result<Vec<String>, PartitionError> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(PartitionError::SharedMemory {
                path: root.display().to_string(),
                source: e,
            });
        }
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().join("config.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// The `sim` backend: LPARs hosted as threads of this process over
/// shared-memory files (see [`super::sim`]).
pub struct SimBackend {
    root: PathBuf,
    /// Handles this backend gave out, so [`Backend::remove`] can stop the
    /// vCPUs of one that is still referenced elsewhere.
    hosted: Mutex<HashMap<String, Arc<SimLpar>>>,
}

impl SimBackend {
    /// A backend keeping its LPARs under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SimBackend {
            root: root.into(),
            hosted: Mutex::new(HashMap::new()),
        }
    }

    fn host(&self, lpar: SimLpar) -> Arc<dyn Partition> {
        let lpar = Arc::new(lpar);
        let name = lpar.config().name.clone();
        self.hosted.lock().unwrap().insert(name, lpar.clone());
        lpar
    }
}

impl Backend for SimBackend {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn create(
        &self,
        name: &str,
        config: &LparConfig,
    ) -> Result<Arc<dyn Partition>, PartitionError> {
        check_create(name, config)?;
        let lpar = SimLpar::create(&self.root, config)?;
        if config.memory_backing != MemoryBacking::Reserved {
            return Ok(self.host(lpar));
        }
        if let Err(e) = lpar.reserve_memory() {
            let _ = lpar.destroy();
            return Err(e);
        }
        Ok(self.host(lpar))
    }

    fn attach(&self, name: &str) -> Result<Arc<dyn Partition>, PartitionError> {
        check_name(name)?;
        if let Some(lpar) = self.hosted.lock().unwrap().get(name) {
            return Ok(lpar.clone());
        }
        Ok(self.host(SimLpar::attach(&self.root, name)?))
    }

    fn list(&self) -> Result<Vec<String>, PartitionError> {
        lpar_dirs(&self.root)
    }

    fn remove(&self, name: &str) -> Result<(), PartitionError> {
        check_name(name)?;
        if let Some(lpar) = self.hosted.lock().unwrap().remove(name) {
            // Handles held elsewhere keep the mapping; the guest stops now.
            lpar.stop();
        }
        let dir = self.root.join(name);
        std::fs::remove_dir_all(&dir).map_err(|e| PartitionError::SharedMemory {
            path: dir.display().to_string(),
            source: e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> LparConfig {
        LparConfig {
            name: name.into(),
            memory_bytes: 1 << 20,
            vcpus: 1,
            program: "idle".into(),
            ..LparConfig::default_lpar()
        }
    }

    #[test]
    fn create_list_attach_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SimBackend::new(dir.path());
        assert!(backend.list().unwrap().is_empty());
        let a = backend.create("b", &config("b")).unwrap();
        backend.create("a", &config("a")).unwrap();
        assert!(!a.is_running(), "a new LPAR's vCPUs are stopped");
        assert_eq!(backend.list().unwrap(), vec!["a", "b"]);
        // A second backend over the same root is an agent after a restart.
        let again = SimBackend::new(dir.path());
        let b = again.attach("b").unwrap();
        assert_eq!(b.config(), a.config());
        backend.remove("a").unwrap();
        assert_eq!(backend.list().unwrap(), vec!["b"]);
        assert!(again.attach("a").is_err());
    }

    #[test]
    fn create_refuses_a_name_that_is_not_the_configurations() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SimBackend::new(dir.path());
        let err = backend.create("x", &config("y")).err().unwrap();
        assert!(matches!(err, PartitionError::BadConfig { .. }), "{err}");
        assert!(backend.create("../x", &config("../x")).is_err());
        assert!(backend.list().unwrap().is_empty());
    }
}
