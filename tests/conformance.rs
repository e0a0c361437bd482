//! The partition conformance suite (`partition::conformance`) on every
//! backend this build has. One test per contract and backend, so a red
//! test names both.

use lpar_mover::partition::conformance::{self, Profile};
use lpar_mover::partition::{LparConfig, SimBackend};
use std::time::Duration;

fn sim_profile() -> Profile {
    Profile {
        config: LparConfig {
            vcpus: 2,
            memory_bytes: 16 << 20,
            program: "hot:4MiB,rate=20000".into(),
            ..LparConfig::default_lpar()
        },
        run_for: Duration::from_millis(150),
    }
}

macro_rules! sim_checks {
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
    };
}

sim_checks!(
    backend_lifecycle,
    dirty_log_never_misses_a_write,
    vmm_writes_are_logged,
    pause_is_quiescent,
    save_restore_continues_on_a_second_partition,
    populated_never_under_reports,
    throttle_takes_effect,
);
