//! What a hosting process (the agent, the one-shot modes, the CLI) takes
//! from this layer without naming a backend type: a backend chosen by its
//! name, and the private-file helpers the agent's own state uses.
//!
//! | name  | backend | where an LPAR runs |
//! |-------|---------|--------------------|
//! | `sim` | [`SimBackend`] | vCPU threads of the hosting process over shared-memory files |
//! | `kvm` | `partition::kvm` | a VM on `/dev/kvm` in its own `moverd lpar-vmm` process, started by the host and outliving it |
//!
//! A name this build does not know, or a backend this machine cannot run
//! (no `/dev/kvm`), is refused here with the reason, so `moverd serve
//! --backend` fails at start rather than on the first LPAR.

use super::{Backend, PartitionError, SimBackend};
use std::path::Path;
use std::sync::Arc;

pub use super::sim::shm::{DEFAULT_ROOT, private_dir_all, private_file, write_atomically};

/// The backend names operators may give (`moverd serve --backend`).
pub const BACKENDS: [&str; 2] = ["sim", "kvm"];

/// The backend called `kind`, keeping its LPARs under `root`.
pub fn open_backend(kind: &str, root: &Path) -> Result<Arc<dyn Backend>, PartitionError> {
    match kind {
        "sim" => Ok(Arc::new(SimBackend::new(root))),
        "kvm" => open_kvm(root),
        other => Err(PartitionError::BadConfig {
            why: format!(
                "there is no backend '{}'; this build has {BACKENDS:?}",
                other.escape_debug()
            ),
        }),
    }
}

/// The `moverd` binary: this process if it is one, else the one beside it
/// (`moverctl selftest`).
fn moverd_program() -> Result<std::path::PathBuf, PartitionError> {
    let exe = std::env::current_exe().map_err(|e| PartitionError::BadConfig {
        why: format!("cannot find this program: {e}"),
    })?;
    if exe.file_stem().is_some_and(|n| n == "moverd") {
        return Ok(exe);
    }
    let beside = exe.with_file_name("moverd");
    if beside.exists() {
        Ok(beside)
    } else {
        Err(PartitionError::BadConfig {
            why: format!(
                "the kvm backend runs each VM in `moverd lpar-vmm`; no moverd beside {}",
                exe.display()
            ),
        })
    }
}

/// The `kvm` backend, if `/dev/kvm` opens.
fn open_kvm(root: &Path) -> Result<Arc<dyn Backend>, PartitionError> {
    match super::kvm::unavailable() {
        Some(why) => Err(PartitionError::BadConfig {
            why: format!("the kvm backend cannot run on this host: {why}"),
        }),
        // Each VM in its own `moverd lpar-vmm` process, which outlives us.
        None => Ok(Arc::new(super::kvm::KvmBackend::with_vmm_processes(
            root,
            moverd_program()?,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_chosen_by_name_and_unknown_names_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sim = open_backend("sim", dir.path()).unwrap();
        assert_eq!(sim.kind(), "sim");
        assert_eq!(sim.root(), dir.path());
        let e = open_backend("xen", dir.path()).err().unwrap();
        assert!(e.to_string().contains("no backend 'xen'"), "{e}");
    }
}
