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

/// Makes the C heap keep the memory it is given back: allocations up to
/// 32 MiB come from the heap rather than a fresh mapping each, and freed
/// memory is not returned to the kernel until 1 GiB of it sits unused.
///
/// Why: inside the suspension the agent allocates a few hundred KB (a
/// device state cloned, decoded, encoded). From a fresh mapping each page
/// faults and is zeroed on first touch, which measured ~1 ms for 340 KB
/// on the development host (a VM, where a first touch also exits to its
/// hypervisor); from memory the heap kept it is a copy. Called once, first
/// thing, by `moverd`. Only glibc has these knobs; elsewhere a no-op.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (param, value) in [
        (libc::M_MMAP_THRESHOLD, 32 << 20),
        (libc::M_TRIM_THRESHOLD, 1 << 30),
        (libc::M_ARENA_MAX, 1),
    ] {
        // SAFETY: mallopt only sets allocator parameters; it is called
        // before any thread is started.
        let ok = unsafe { libc::mallopt(param, value) };
        if ok != 1 {
            log::warn!("mallopt({param}, {value}) refused: the suspension may be longer");
        }
    }
}

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
