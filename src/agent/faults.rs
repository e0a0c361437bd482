//! Fault injection for the recovery tests and the fault matrix. Compiled
//! only with the `fault-injection` feature, which the test builds turn on
//! (the crate's dev-dependency on itself) and a release build never does:
//! `moverd` as shipped holds no hook. Inert unless the variables are set:
//!
//! - `MOVERD_FAULT_KILL_AT=<stage code>` (e.g. `0x4080`): the agent kills
//!   itself with SIGKILL right after journaling that stage, as a crash at
//!   that instant would.
//! - `MOVERD_FAULT_PAUSE_AT=<stage code>` with `MOVERD_FAULT_PAUSE_FILE=
//!   <path>`: right after journaling that stage the agent creates the file
//!   and holds the migration there until the file is removed (at most 60 s),
//!   so a test can kill an agent, cut the path or cancel exactly there.
//! - `MOVERD_FAULT_CORRUPT_AT=<stage code>`: the next write to a migration
//!   stream this agent makes after journaling that stage leaves with a bit
//!   flipped, as on a bad path: the frame checksum (plaintext) or the
//!   record tag (TLS) must catch it.

use crate::engine::stage::Stage;
use std::time::Duration;

/// Acts on the variables that name `stage`; called right after the stage
/// is journaled.
pub fn at_stage(stage: Stage) {
    let at = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|v| u16::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
            == Some(stage.code())
    };
    if at("MOVERD_FAULT_KILL_AT") {
        log::warn!("fault injection: SIGKILL at {stage}");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        std::process::exit(137);
    }
    if at("MOVERD_FAULT_CORRUPT_AT") {
        log::warn!("fault injection: corrupting the next stream write after {stage}");
        crate::transport::corrupt_next_write();
    }
    if at("MOVERD_FAULT_PAUSE_AT")
        && let Ok(file) = std::env::var("MOVERD_FAULT_PAUSE_FILE")
    {
        log::warn!("fault injection: holding at {stage} until {file} is removed");
        let _ = std::fs::write(&file, format!("{:#06x}\n", stage.code()));
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while std::path::Path::new(&file).exists() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
