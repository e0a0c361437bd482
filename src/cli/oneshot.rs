//! One-shot agent modes: `moverd receive` and `moverd send` each carry out
//! one live migration and exit. They are what `moverctl demo` starts as two
//! separate processes until the long-running agent and its management
//! protocol exist; the handoff (listening address and one-time key) goes
//! over the receiver's standard output as one line:
//!
//! ```text
//! LISTENING <ip:port> KEY <64 hex digits>
//! ```

use crate::emg::{Emg, Module};
use crate::engine::destination::receive_live;
use crate::engine::source::{LiveOptions, MigrationControl, Progress, migrate_live};
use crate::partition::sim::SimLpar;
use crate::partition::{LparConfig, Vcpus};
use crate::transport::{MigrationPath, OneTimeKey, PathListener, connect_streams};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the receiver waits for the sender's streams.
const ACCEPT_DEADLINE: Duration = Duration::from_secs(30);

/// Defines `config` under `root`, listens on `path`, prints the handoff line,
/// receives the LPAR, lets it run for `run_after` and reports what its guest
/// did there. Returns the destination report as JSON.
pub fn receive(
    root: &Path,
    config: &LparConfig,
    path: Ipv4Addr,
    streams: usize,
    run_after: Duration,
) -> Result<serde_json::Value, Emg> {
    let listener = PathListener::bind(&MigrationPath::new("migration", path), 0)?;
    let key = listener.issue_key()?;
    let lpar = Arc::new(SimLpar::create(root, config)?);
    println!("LISTENING {} KEY {}", listener.local_addr(), key.to_hex());
    let _ = std::io::stdout().flush();
    let received = listener
        .accept_streams(streams, &key, 1, Instant::now() + ACCEPT_DEADLINE)
        .map_err(Emg::from)
        .and_then(|inn| {
            receive_live(lpar.clone(), inn).map_err(|e| e.emg(Module::MoverDestination))
        });
    let report = match received {
        Ok(report) => report,
        Err(e) => {
            // A failed migration leaves nothing behind on the destination.
            discard(lpar);
            return Err(e);
        }
    };
    let writes = lpar.writes();
    std::thread::sleep(run_after);
    let guest_writes_after = lpar.writes() - writes;
    lpar.pause()?;
    Ok(serde_json::json!({
        "destination": report,
        "guest_running": lpar.is_running() || guest_writes_after > 0,
        "guest_writes_after_switchover": guest_writes_after,
        // The stall across the switchover, as the guest's clock saw it; the
        // longest gap of its whole life also counts throttling and warm-up.
        "guest_max_stall_ms": lpar.resume_stall_ns() as f64 / 1e6,
        "guest_longest_gap_ms": lpar.max_stall_ns() as f64 / 1e6,
    }))
}

/// Stops the vCPU threads of a received LPAR that will not run here and
/// deletes its shared-memory files.
fn discard(lpar: Arc<SimLpar>) {
    let dir = lpar.dir().to_path_buf();
    let result = match Arc::try_unwrap(lpar) {
        Ok(lpar) => lpar.destroy().map_err(|e| e.to_string()),
        Err(lpar) => {
            drop(lpar);
            std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())
        }
    };
    if let Err(e) = result {
        log::warn!("could not delete the LPAR files in {}: {e}", dir.display());
    }
}

/// Defines and starts `config` under `root`, lets its guest run for
/// `warm_up`, then migrates it live to `to` with `key`.
#[allow(clippy::too_many_arguments)]
pub fn send(
    root: &Path,
    config: &LparConfig,
    path: Ipv4Addr,
    to: SocketAddr,
    key: &OneTimeKey,
    streams: usize,
    warm_up: Duration,
    options: &LiveOptions,
) -> Result<serde_json::Value, Emg> {
    let lpar = Arc::new(SimLpar::create(root, config)?);
    lpar.resume()?;
    std::thread::sleep(warm_up);
    let out = connect_streams(
        &MigrationPath::new("migration", path),
        to,
        streams,
        key,
        1,
        Duration::from_secs(10),
    )?;
    let control = MigrationControl::new(options.timeout);
    let mut progress = |p: &Progress| match p {
        Progress::Round(r) => log::info!(
            "stage 0x4050 (SRC) Transferring Memory Data: round {} sent {} pages in {:.1} ms",
            r.round,
            r.pages,
            r.duration_ms
        ),
        Progress::Throttled(t) => log::info!("rounds stopped shrinking: vCPUs throttled to {t}%"),
        Progress::Suspending { pages } => log::info!("suspending: {pages} pages left"),
    };
    let report = migrate_live(lpar.clone(), out, options, &control, &mut progress)
        .map_err(|e| e.emg(Module::MoverSource))?;
    Ok(serde_json::to_value(report).expect("report serialises"))
}
