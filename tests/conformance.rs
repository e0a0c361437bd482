//! The partition conformance suite (`partition::conformance`) on every
//! backend this build has. One test per contract and backend, so a red
//! test names both. The KVM ones skip (saying why) without /dev/kvm; CI
//! has it.

use lpar_mover::partition::conformance::{self, Profile};
use lpar_mover::partition::{KvmBackend, LparConfig, SimBackend, kvm};
use std::time::Duration;

fn sim_profile() -> Profile {
    Profile {
        config: LparConfig {
            vcpus: 2,
            memory_bytes: 16 << 20,
            program: "hot:4MiB".into(),
            ..LparConfig::default_lpar()
        },
        run_for: Duration::from_millis(150),
    }
}

/// The built-in guest under KVM, kept small: instruction emulation runs
/// about 1.5 M guest instructions/s where there is no VMX/SVM.
fn kvm_profile() -> Profile {
    Profile {
        config: LparConfig {
            vcpus: 2,
            memory_bytes: 8 << 20,
            program: "hot:256KiB,content=zero,rate=4000".into(),
            ..LparConfig::default_lpar()
        },
        run_for: Duration::from_millis(400),
    }
}

macro_rules! checks {
    ($($check:ident),* $(,)?) => {
        mod sim {
            use super::*;
            $(
                #[test]
                fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let backend = SimBackend::new(dir.path());
                    conformance::$check(&backend, &sim_profile());
                }
            )*
        }
        mod kvm_backend {
            use super::*;
            $(
                #[test]
                fn $check() {
                    if let Some(why) = kvm::unavailable() {
                        lpar_mover::skip::skip(
                            concat!("conformance::", stringify!($check)),
                            &format!("the KVM conformance checks need /dev/kvm ({why})"),
                        );
                        return;
                    }
                    let dir = tempfile::tempdir().unwrap();
                    let backend = KvmBackend::new(dir.path());
                    conformance::$check(&backend, &kvm_profile());
                }
            )*
        }
        mod kvm_process {
            use super::*;
            $(
                #[test]
                fn $check() {
                    if let Some(why) = kvm::unavailable() {
                        lpar_mover::skip::skip(
                            concat!("conformance::", stringify!($check)),
                            &format!("the KVM conformance checks need /dev/kvm ({why})"),
                        );
                        return;
                    }
                    let dir = tempfile::tempdir().unwrap();
                    let backend =
                        KvmBackend::with_vmm_processes(dir.path(), env!("CARGO_BIN_EXE_moverd"));
                    conformance::$check(&backend, &kvm_profile());
                }
            )*
        }
    };
}

checks!(
    backend_lifecycle,
    dirty_log_never_misses_a_write,
    vmm_writes_are_logged,
    pause_is_quiescent,
    save_restore_continues_on_a_second_partition,
    populated_never_under_reports,
    throttle_takes_effect,
    memory_backing_decides_what_the_host_holds,
);
