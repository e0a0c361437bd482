//! Shutdown-mode migrations as the agent runs them (the engine part is
//! [`crate::engine::shutdown`]).
//!
//! ```text
//! moverctl                 source agent                       destination agent
//! migrate --mode shutdown ▶ busy check (Act or Dea), the checklist in
//!                          Shutdown mode (no migration path needed), → migrating
//!        ◀── {migration: id}
//!                          0x4010 greeting checks
//!                          Act: ask the guest to shut down,
//!                               wait ≤ --shutdown-timeout (300 s)
//!                          0x4070 capture device state (shutdown mode)
//!                          0x4080 receive-shutdown ─────────────▶ 0x5020 define a fresh LPAR
//!                                 (journaled first: write-ahead)  0x5070 switchover rules, load
//!                                                                 0x5080 activate if asked
//!                                 ◀── {state, switchover} ──────── 0x50a0
//!                          0x4090 release the source LPAR
//!                          0x40a0 completed
//! ```
//!
//! A guest that does not shut down in time fails the migration with the
//! manual's message and keeps running on the source. A refusal by the
//! destination leaves the LPAR here, deactivated. A lost connection while
//! the destination may have defined it leaves it needs-recovery (resolved
//! by `recover` from the journals).

use super::Agent;
use super::busy::{self, Operation};
use super::history::Incoming;
use super::migration::Migration;
use super::validation;
use crate::control::{
    Address, LparState, MigrationMode, Side, cause, protocol_error, reply, request,
};
use crate::emg::{Emg, Module};
use crate::engine::shutdown::{
    DEFAULT_SHUTDOWN_WAIT, capture, from_hex, install, to_hex, wait_shut_down,
};
use crate::engine::stage::Stage;
use crate::partition::{LparConfig, Partition};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `phase` of the manual's MMS Thread "Could not accept a migration with
/// activated LPAR" (F009), used when the guest does not shut down.
pub const PHASE_ACTIVATED_LPAR: u16 = 0xF009;

/// The guest of `lpar` ignored the shutdown request for `limit`.
pub fn shutdown_timed_out(lpar: &str, limit: Duration) -> Emg {
    Emg::new(
        Module::Executor,
        PHASE_ACTIVATED_LPAR,
        0x03,
        format!(
            "Could not accept a migration with activated LPAR. Please shutdown the LPAR. \
             (Process: Guest OS Shutdown, Shutdown waiting: the guest of '{lpar}' did not shut \
             down within {} s)",
            limit.as_secs()
        ),
        "Shut the guest OS down (or raise the waiting time with --shutdown-timeout) and \
         retry; the LPAR keeps running on the source.",
    )
    .reason(0x01)
}

/// `migrate-shutdown`: checks the busy rules, marks the LPAR migrating and
/// starts the migration thread; replies with the migration id.
pub fn start(
    agent: &Arc<Agent>,
    name: &str,
    to: &str,
    activate_destination: bool,
    shutdown_timeout_s: Option<u64>,
) -> Result<reply::MigrationStarted, Emg> {
    let address = Address::parse(to).map_err(|m| {
        protocol_error(
            cause::BAD_ARGUMENTS,
            m,
            "Give the destination agent as host:port or a socket path.",
        )
    })?;
    let limit = shutdown_timeout_s.map_or(DEFAULT_SHUTDOWN_WAIT, Duration::from_secs);
    // As for a live migration: the busy rules, then the checklist with the
    // items Shutdown mode needs (Tables 2-8/2-9), before anything changes.
    {
        let inv = agent.inventory.lock().unwrap();
        busy::check(name, inv.get(name)?.state, Operation::MigrateShutdown)?;
        busy::check_wwn_rollbacks(&agent.config.name, &inv.wwn_rollbacks_pending())?;
    }
    let report = validation::validate(agent, name, to, MigrationMode::Shutdown, None, false)?;
    if let Some(refusal) = validation::refusal(name, &report.checks) {
        return Err(refusal);
    }
    let (config, lpar, was) = {
        let mut inv = agent.inventory.lock().unwrap();
        let entry = inv.get(name)?;
        let was = entry.state;
        busy::check(name, was, Operation::MigrateShutdown)?;
        busy::check_wwn_rollbacks(&agent.config.name, &inv.wwn_rollbacks_pending())?;
        let config = entry.config.clone();
        let lpar = inv.lpar(name)?;
        inv.set_state(name, LparState::Migrating)?;
        (config, lpar, was)
    };
    let m = Arc::new(Migration::new(
        agent.next_id(),
        &config,
        Side::Source,
        to,
        limit.as_secs(),
    ));
    if let Err(e) = m.open_journal(
        &agent.config.state_dir,
        crate::control::MigrationMode::Shutdown,
    ) {
        let _ = agent.inventory.lock().unwrap().set_state(name, was);
        return Err(e);
    }
    agent.register(m.clone());
    agent.note_source(&m, to, MigrationMode::Shutdown);
    let id = m.id;
    let a = agent.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("shutdown-migrate-{id}"))
        .spawn(move || {
            let (a2, m2) = (a.clone(), m.clone());
            super::panics::migration_thread(&a2, &m2, move || {
                let mut outcome = Outcome::Here(was);
                let result = source_steps(
                    &a,
                    &m,
                    &lpar,
                    &config,
                    &address,
                    activate_destination,
                    limit,
                    &mut outcome,
                );
                drop(lpar);
                let mut inv = a.inventory.lock().unwrap();
                let (result, resumed_here) = match (result, outcome) {
                    (Ok(report), _) => {
                        a.enter(&m, Stage::SrcReleasing);
                        (inv.remove(&config.name).map(|()| report), false)
                    }
                    (Err(mut e), Outcome::InDoubt) => {
                        e.needs_recovery = true;
                        let _ = inv.set_state(&config.name, LparState::NeedsRecovery);
                        (Err(e), false)
                    }
                    (Err(e), Outcome::Here(state)) => {
                        let _ = inv.set_state(&config.name, state);
                        (Err(e), true)
                    }
                };
                drop(inv);
                a.finish(&m, result, resumed_here);
            })
        });
    if let Err(e) = spawned {
        let _ = agent.inventory.lock().unwrap().set_state(name, was);
        return Err(super::migration::thread_refused(&e));
    }
    log::info!("migration {id}: '{name}' to {to} in shutdown mode");
    Ok(reply::MigrationStarted { migration: id })
}

/// Where the LPAR is if the migration fails.
enum Outcome {
    /// Here, in this state (Act if the guest never shut down, else Dea).
    Here(LparState),
    /// Perhaps defined at the destination: recovery decides.
    InDoubt,
}

#[allow(clippy::too_many_arguments)]
fn source_steps(
    agent: &Arc<Agent>,
    m: &Migration,
    lpar: &Arc<dyn Partition>,
    config: &LparConfig,
    to: &Address,
    activate: bool,
    limit: Duration,
    outcome: &mut Outcome,
) -> Result<Value, Emg> {
    agent.enter(m, Stage::SrcValidating);
    let (mut client, theirs, ours) = super::migration::open_destination(agent, to)?;
    let mut shutdown_ms = 0.0;
    if lpar.is_running() {
        let t = Instant::now();
        lpar.request_shutdown().map_err(|e| e.emg())?;
        if !wait_shut_down(|| lpar.is_shut_down(), limit) {
            return Err(shutdown_timed_out(&config.name, limit));
        }
        shutdown_ms = t.elapsed().as_secs_f64() * 1e3;
        lpar.pause().map_err(|e| e.emg())?;
        *outcome = Outcome::Here(LparState::Dea);
        log::info!(
            "migration {}: the guest of '{}' shut down in {shutdown_ms:.1} ms",
            m.id,
            config.name
        );
    }
    agent.enter(m, Stage::SrcDeviceState);
    let state = capture(&**lpar).map_err(|e| e.emg(Module::MoverSource))?;
    // Write-ahead: journaled before the destination may define it.
    agent.enter(m, Stage::SrcSwitchingOver);
    let reply = client.request(request::ReceiveShutdown {
        config: config.clone(),
        device_state: to_hex(&state),
        activate,
        source_agent: ours.agent.clone(),
        source_migration: m.id,
        source_address: agent.advertised.get().cloned(),
        history_key: Some(m.history.lock().unwrap().key.clone()),
        history: agent.history_to_ship(&config.name),
    });
    let reply = match reply {
        Ok(r) => {
            m.journal_peer(r.migration);
            r
        }
        Err(e) => {
            if e.module == Module::Client || e.cause == cause::CONNECTION {
                *outcome = Outcome::InDoubt;
            }
            return Err(e);
        }
    };
    Ok(json!({
        "mode": crate::control::MigrationMode::Shutdown,
        "shutdown_ms": shutdown_ms,
        "device_state_bytes": state.len(),
        "destination_agent": theirs.agent,
        "destination": reply,
    }))
}

/// `receive-shutdown`: the destination side, start to end within the
/// request.
pub fn receive(
    agent: &Arc<Agent>,
    mut config: LparConfig,
    device_state: &str,
    activate: bool,
    incoming: Incoming,
) -> Result<reply::ShutdownReceived, Emg> {
    let bytes = from_hex(device_state).map_err(|m| {
        protocol_error(
            cause::BAD_ARGUMENTS,
            m,
            "Install the same lpar-mover release on both hosts.",
        )
    })?;
    let lpar = super::migration::define_incoming(agent, &mut config)?;
    let (source_agent, source_migration) =
        (incoming.source_agent.clone(), incoming.source_migration);
    let m = Arc::new(Migration::new(
        agent.next_id(),
        &config,
        Side::Destination,
        &source_agent,
        0,
    ));
    let name = config.name.clone();
    let undefine = |agent: &Agent| {
        if let Err(e) = agent.inventory.lock().unwrap().remove(&name) {
            log::error!("cannot remove the incoming LPAR '{name}': {e}");
        }
    };
    if let Err(e) = m.open_journal(
        &agent.config.state_dir,
        crate::control::MigrationMode::Shutdown,
    ) {
        drop(lpar);
        undefine(agent);
        return Err(e);
    }
    m.journal_peer(source_migration);
    agent.register(m.clone());
    agent.note_incoming_to(&m, MigrationMode::Shutdown, incoming);
    log::info!(
        "migration {}: receiving '{name}' in shutdown mode from {source_agent} (its migration \
         {source_migration})",
        m.id
    );
    agent.enter(&m, Stage::DstDefining);
    agent.enter(&m, Stage::DstLoadingState);
    // The configured vfcID pools less what this host's LPARs hold, as a
    // live migration's switchover uses.
    let host = super::validation::destination_host(
        &agent.config,
        &agent.inventory.lock().unwrap(),
        &config,
    );
    let result = install(&*lpar, &config, &host, &bytes)
        .map_err(|e| e.emg(Module::MoverDestination))
        .and_then(|outcome| {
            agent.enter(&m, Stage::DstResuming);
            let state = if activate {
                if let Some(max) = agent.config.resources.max_active_lpars {
                    let active = agent.inventory.lock().unwrap().active_count();
                    if active >= max as usize {
                        return Err(super::validation::too_many_active(
                            &agent.config.name,
                            active,
                            max,
                        ));
                    }
                }
                lpar.resume().map_err(|e| e.emg())?;
                LparState::Act
            } else {
                LparState::Dea
            };
            let mut inv = agent.inventory.lock().unwrap();
            inv.arrived(&name, outcome.vfc_ids.clone(), state)?;
            drop(inv);
            Ok(reply::ShutdownReceived {
                migration: m.id,
                state,
                switchover: serde_json::to_value(outcome).expect("outcomes serialise"),
            })
        });
    drop(lpar);
    if result.is_err() {
        undefine(agent);
    }
    let report = result
        .as_ref()
        .map(|r| serde_json::to_value(r).expect("replies serialise"));
    agent.finish(&m, report.map_err(Emg::clone), result.is_ok());
    result
}
