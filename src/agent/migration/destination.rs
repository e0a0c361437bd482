//! The destination side: defining the incoming LPAR, the listener and key,
//! and the thread that receives it.

use super::*;
use crate::agent::Agent;
use crate::agent::busy::{self};
use crate::agent::validation::{self};
use crate::control::LparState;
use crate::control::reply::IncomingPrepared;
use crate::control::{cause, protocol_error};
use crate::emg::{Emg, Module, phase};
use crate::engine::EngineError;
use crate::engine::destination::{DestinationReport, receive_live_staged};
use crate::engine::stage::Stage;
use crate::partition::{LparConfig, Partition};
use crate::transport::{Encryption, MAX_STREAMS, PathListener, StreamOptions};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Defines an incoming LPAR as `migrating` on this (destination) host:
/// its name must be free, the host in no other migration, and the
/// resources there. One lock, so concurrent requests cannot both pass.
pub(in crate::agent) fn define_incoming(
    agent: &Agent,
    config: &mut LparConfig,
) -> Result<Arc<dyn Partition>, Emg> {
    let mut inv = agent.inventory.lock().unwrap();
    if inv.contains(&config.name) {
        return Err(Emg::new(
            Module::MoverDestination,
            phase::DEFINE,
            0x03,
            format!(
                "An LPAR named '{}' is already defined on the destination host {}.",
                config.name, agent.config.name
            ),
            "Delete or rename the LPAR on the destination, or choose another destination.",
        ));
    }
    busy::check_host(&agent.config.name, inv.migrating())?;
    agent.check_resources(&inv, config, Module::MoverDestination)?;
    config.number = inv.free_number();
    inv.define(config, LparState::Migrating)
}

/// `abandon-incoming`: the source of incoming migration `id` gives it up
/// before its streams came, so the receiving thread stops waiting for them
/// and removes the LPAR defined for it (instead of holding it until
/// [`ACCEPT_DEADLINE`]). Only the migration's own source may say so, and
/// only while this side still waits for the streams: once they connected,
/// the migration ends through them.
pub fn abandon_incoming(
    agent: &Agent,
    id: u64,
    source_agent: &str,
    reason: &str,
) -> Result<crate::control::reply::Empty, Emg> {
    let m = agent.migration(id)?;
    if m.side != crate::control::Side::Destination || m.peer != source_agent {
        return Err(protocol_error(
            cause::NO_SUCH_MIGRATION,
            format!(
                "migration {id} on host {} is not an incoming migration from {source_agent}",
                agent.config.name
            ),
            "Name the migration id the destination's prepare-incoming returned.",
        ));
    }
    let stage = m.stage();
    if stage != Stage::DstWaitingForPath {
        return Err(protocol_error(
            cause::WRONG_STAGE,
            format!("migration {id} is past waiting for its streams ({stage})"),
            "Cancel it on the source: its streams carry the abort from there.",
        ));
    }
    log::warn!(
        "migration {id}: {source_agent} abandons it before its streams connected: {}",
        reason.escape_debug()
    );
    m.abandoned.store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(crate::control::reply::Empty {})
}

/// `prepare-incoming`: the destination side. Checks room, defines the LPAR
/// (state `migrating`), opens a migration-path listener and a one-time key,
/// and starts the thread that receives the LPAR.
pub fn prepare_incoming(
    agent: &Arc<Agent>,
    mut config: LparConfig,
    streams: usize,
    path: Option<&str>,
    source_agent: &str,
    source_migration: u64,
) -> Result<IncomingPrepared, Emg> {
    if streams == 0 || streams > MAX_STREAMS {
        return Err(protocol_error(
            cause::BAD_ARGUMENTS,
            format!("{streams} streams: the migration path takes 1 to {MAX_STREAMS}"),
            "Choose a stream count from 1 to 64.",
        ));
    }
    let lpar = define_incoming(agent, &mut config)?;
    let undefine = |agent: &Agent| {
        if let Err(e) = agent.inventory.lock().unwrap().remove(&config.name) {
            log::error!("cannot remove the incoming LPAR '{}': {e}", config.name);
        }
    };
    // The source's path by name when this host has one, else the default.
    let own_path = agent
        .config
        .path_named(path)
        .unwrap_or_else(|_| agent.config.migration_path());
    // TLS 1.3 only, unless this agent's operator allowed plaintext.
    let opts = StreamOptions {
        encryption: match agent.config.allow_insecure_plaintext {
            true => Encryption::InsecurePlaintext,
            false => Encryption::Tls,
        },
        ..StreamOptions::default()
    };
    let listener = match PathListener::bind_with(&own_path, 0, opts, Default::default()) {
        Ok(l) => l,
        Err(e) => {
            drop(lpar);
            undefine(agent);
            return Err(e.into());
        }
    };
    let key = match listener.issue_key() {
        Ok(k) => k,
        Err(e) => {
            drop(lpar);
            undefine(agent);
            return Err(e.into());
        }
    };
    let mut id_bytes = [0u8; 8];
    crate::transport::os_random(&mut id_bytes)?;
    let transfer_id = u64::from_le_bytes(id_bytes);
    let m = Arc::new(Migration::new(
        agent.next_id(),
        &config,
        Side::Destination,
        source_agent,
        0,
    ));
    if let Err(e) = m.open_journal(&agent.config.state_dir, crate::control::MigrationMode::Live) {
        drop(lpar);
        undefine(agent);
        return Err(e);
    }
    m.journal_peer(source_migration);
    agent.register(m.clone());
    let reply = IncomingPrepared {
        migration: m.id,
        address: listener.local_addr().to_string(),
        key: key.to_hex(),
        transfer_id,
    };
    log::info!(
        "migration {}: receiving '{}' from {source_agent} (its migration {source_migration})",
        m.id,
        config.name
    );
    agent.enter(&m, Stage::DstWaitingForPath);
    // The configured vfcID pools (less those in use) and segment map;
    // slot identities derived from the LPAR's.
    let host =
        validation::destination_host(&agent.config, &agent.inventory.lock().unwrap(), &config);
    let a = agent.clone();
    let name = config.name.clone();
    std::thread::Builder::new()
        .name(format!("receive-{}", m.id))
        .spawn(move || {
            let (a2, m2) = (a.clone(), m.clone());
            crate::agent::panics::migration_thread(&a2, &m2, move || {
                let result = (|| {
                    let inn = listener
                        .accept_streams_unless(
                            streams,
                            &key,
                            transfer_id,
                            Instant::now() + ACCEPT_DEADLINE,
                            &m.abandoned,
                        )
                        .map_err(|e| (Emg::from(e), false))?;
                    a.enter(&m, Stage::DstReceivingMemory);
                    let mut stage = |s, report: &DestinationReport| {
                        if s == Stage::DstAnnouncing {
                            // The guest runs here now: say so, with the
                            // vfcIDs its ports took, before the source (and
                            // so its client) hears it.
                            let vfc_ids = report.switchover.as_ref().map(|o| o.vfc_ids.clone());
                            record_running(&a, &name, vfc_ids.unwrap_or_default());
                        }
                        a.enter(&m, s)
                    };
                    receive_live_staged(lpar.clone(), inn, &host, &mut stage).map_err(|e| {
                        let aborted = matches!(e, EngineError::PeerAborted(_));
                        (e.emg(Module::MoverDestination), aborted)
                    })
                })();
                drop(lpar);
                let mut resumed_here = false;
                let result = match result {
                    Ok(report) => {
                        resumed_here = true;
                        Ok(json!({ "destination": report }))
                    }
                    Err((e, aborted)) if !aborted && m.stage_reached_loading() => {
                        // In doubt: the image was loaded and Ready may have
                        // reached a source that then committed and died. Keep
                        // the paused copy; `recover` decides from the journals.
                        let mut e = e;
                        e.needs_recovery = true;
                        if let Err(pe) = a
                            .inventory
                            .lock()
                            .unwrap()
                            .set_state(&name, LparState::NeedsRecovery)
                        {
                            log::error!("cannot record LPAR '{name}' as needs-recovery: {pe}");
                        }
                        Err(e)
                    }
                    Err((e, _)) => {
                        // Before commit nothing here owns the LPAR: discard it.
                        undefine_named(&a, &name);
                        Err(e)
                    }
                };
                a.finish(&m, result, resumed_here);
            })
        })
        .map_err(|e| {
            Emg::new(
                Module::MoverDestination,
                phase::DEFINE,
                0x04,
                format!("cannot start the receiving thread: {e}"),
                "The host is short of threads or memory; retry later.",
            )
        })?;
    Ok(reply)
}

fn record_running(agent: &Agent, name: &str, vfc_ids: Vec<u16>) {
    let mut inv = agent.inventory.lock().unwrap();
    if let Err(e) = inv.arrived(name, vfc_ids, LparState::Act) {
        // The guest runs on regardless; a restarted agent finds it through
        // the journal's Resuming record.
        log::error!("cannot record the incoming LPAR '{name}' as active: {e}");
    }
}

fn undefine_named(agent: &Agent, name: &str) {
    if let Err(e) = agent.inventory.lock().unwrap().remove(name) {
        log::error!("cannot remove the incoming LPAR '{name}': {e}");
    }
}
