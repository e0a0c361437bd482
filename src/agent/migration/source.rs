//! The source side of a live migration: the busy rules, the route to the
//! destination agent, and the steps from validation to releasing the LPAR.

use super::*;
use crate::agent::Agent;
use crate::agent::busy::{self, Operation};
use crate::agent::validation;
use crate::control::reply::{Invitation, MigrationStarted};
use crate::control::{Address, Client, Event, Greeting, cause, protocol_error, request};
use crate::control::{LparState, MigrationMode};
use crate::emg::{Emg, Module, phase};
use crate::engine::source::{LiveOptions, Progress, migrate_live};
use crate::engine::stage::Stage;
use crate::partition::{LparConfig, PAGE_SIZE, Partition};
use crate::transport::{
    DEFAULT_STREAMS, Encryption, MAX_STREAMS, MigrationPath, StreamOptions, connect_streams_with,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The arguments of `migrate`.
pub struct SourceRequest {
    pub lpar: String,
    pub to: String,
    pub max_suspend_ms: Option<u64>,
    pub bandwidth: Option<u64>,
    pub streams: Option<usize>,
    pub timeout_s: Option<u64>,
    /// The migration path by name; `None`: the first configured.
    pub path: Option<String>,
    /// Guest memory in clear (`--insecure-plaintext`); TLS 1.3 otherwise.
    pub insecure_plaintext: bool,
}

/// Where a source migration goes and how: the destination agent, this
/// host's migration path, and the stream count.
struct Route {
    to: Address,
    path: MigrationPath,
    streams: usize,
    /// The validation's warnings, for the report.
    warnings: Vec<String>,
    encryption: Encryption,
}

/// `migrate`: checks the busy rules, marks the LPAR migrating and starts the
/// migration thread; replies with the migration id.
pub fn start_source(agent: &Arc<Agent>, req: SourceRequest) -> Result<MigrationStarted, Emg> {
    let to = Address::parse(&req.to).map_err(|m| {
        protocol_error(
            cause::BAD_ARGUMENTS,
            m,
            "Give the destination agent as host:port or a socket path.",
        )
    })?;
    let streams = req.streams.unwrap_or(DEFAULT_STREAMS);
    if streams == 0 || streams > MAX_STREAMS {
        return Err(protocol_error(
            cause::BAD_ARGUMENTS,
            format!("{streams} streams: the migration path takes 1 to {MAX_STREAMS}"),
            "Choose a stream count from 1 to 64 (default 4).",
        ));
    }
    let defaults = LiveOptions::default();
    let timeout_s = req.timeout_s.unwrap_or(defaults.timeout.as_secs());
    // The busy rules answer first (their message is the manual's), then
    // the validation checklist; either refuses before anything changes.
    {
        let inv = agent.inventory.lock().unwrap();
        busy::check(&req.lpar, inv.get(&req.lpar)?.state, Operation::Migrate)?;
        busy::check_wwn_rollbacks(&agent.config.name, &inv.wwn_rollbacks_pending())?;
    }
    let path = agent.config.path_named(req.path.as_deref())?;
    let report = validation::validate(
        agent,
        &req.lpar,
        &req.to,
        MigrationMode::Live,
        req.path.as_deref(),
        false,
    )?;
    if let Some(refusal) = validation::refusal(&req.lpar, &report.checks) {
        // The busy rules still answer first: a migration of this LPAR that
        // started while this one validated makes it busy, whatever the
        // checklist found meanwhile.
        let inv = agent.inventory.lock().unwrap();
        busy::check(&req.lpar, inv.get(&req.lpar)?.state, Operation::Migrate)?;
        return Err(refusal);
    }
    let warnings = validation::warnings(&report.checks);
    let (config, lpar) = {
        let mut inv = agent.inventory.lock().unwrap();
        let entry = inv.get(&req.lpar)?;
        busy::check(&req.lpar, entry.state, Operation::Migrate)?;
        busy::check_host(&agent.config.name, inv.migrating())?;
        busy::check_wwn_rollbacks(&agent.config.name, &inv.wwn_rollbacks_pending())?;
        let config = inv.get(&req.lpar)?.config.clone();
        let lpar = inv.lpar(&req.lpar)?;
        inv.set_state(&req.lpar, LparState::Migrating)?;
        (config, lpar)
    };
    let m = Arc::new(Migration::new(
        agent.next_id(),
        &config,
        Side::Source,
        &req.to,
        timeout_s,
    ));
    if let Err(e) = m.open_journal(&agent.config.state_dir, crate::control::MigrationMode::Live) {
        let _ = agent
            .inventory
            .lock()
            .unwrap()
            .set_state(&req.lpar, LparState::Act);
        return Err(e);
    }
    agent.register(m.clone());
    agent.note_source(&m, &req.to, MigrationMode::Live);
    let options = LiveOptions {
        migration_id: 0,
        max_suspend: req
            .max_suspend_ms
            .map_or(defaults.max_suspend, Duration::from_millis),
        timeout: Duration::from_secs(timeout_s),
        bandwidth: req.bandwidth,
        suspend_limit: Duration::from_millis(agent.config.suspend_limit_ms),
    };
    let id = m.id;
    let a = agent.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("migrate-{id}"))
        .spawn(move || {
            let encryption = match req.insecure_plaintext {
                true => Encryption::InsecurePlaintext,
                false => Encryption::Tls,
            };
            let route = Route {
                to,
                path,
                streams,
                warnings,
                encryption,
            };
            crate::agent::panics::migration_thread(&a, &m, || {
                run_source(&a, &m, lpar, config, &route, options)
            })
        });
    if let Err(e) = spawned {
        let _ = agent
            .inventory
            .lock()
            .unwrap()
            .set_state(&req.lpar, LparState::Act);
        return Err(super::thread_refused(&e));
    }
    log::info!("migration {id}: '{}' to {}", req.lpar, req.to);
    Ok(MigrationStarted { migration: id })
}

fn run_source(
    agent: &Arc<Agent>,
    m: &Migration,
    lpar: Arc<dyn Partition>,
    config: LparConfig,
    route: &Route,
    options: LiveOptions,
) {
    let result = source_steps(agent, m, lpar, &config, route, options);
    if result.is_ok() {
        // Journaled before the inventory lock: a stall here (fsync, or a
        // test's fault hold) must not block the agent's other requests.
        agent.enter(m, Stage::SrcReleasing);
    }
    let mut inv = agent.inventory.lock().unwrap();
    let resumed_here = result.as_ref().is_err_and(|e| !e.needs_recovery);
    let result = match result {
        Ok(report) => {
            // Ownership passed: the paused source copy is released.
            inv.remove(&config.name).map(|()| report)
        }
        Err(e) => {
            let state = if e.needs_recovery {
                LparState::NeedsRecovery
            } else if wwn_rollback_needed(m.stage(), &config) {
                LparState::WwnRollbackPending
            } else {
                LparState::Act
            };
            if let Err(pe) = inv.set_state(&config.name, state) {
                log::error!(
                    "cannot record LPAR '{}' as {}: {pe}",
                    config.name,
                    state.label()
                );
            }
            Err(e)
        }
    };
    drop(inv);
    agent.finish(m, result, resumed_here);
}

/// Opens the management connection to the destination agent of a
/// migration and refuses a destination that is this very host. Returns the
/// connection, the destination's greeting and this agent's.
pub(in crate::agent) fn open_destination(
    agent: &Agent,
    to: &Address,
) -> Result<(Client, Greeting, Greeting), Emg> {
    let client = agent.open_peer(to, Module::MoverSource)?;
    let theirs = client.greeting().clone();
    let ours = agent.greeting();
    if theirs.agent == ours.agent {
        return Err(crate::agent::validation::same_host(&ours.agent));
    }
    Ok((client, theirs, ours))
}

/// Tells the destination that the streams of its incoming migration
/// `remote_migration` will not come (see `abandon-incoming`), so it
/// removes the LPAR it defined now rather than after its accept deadline.
/// Best effort: the deadline still frees it if this cannot be said.
fn abandon(client: &mut Client, remote_migration: u64, ours: &str, why: &Emg) {
    let said = client.request(request::AbandonIncoming {
        migration: remote_migration,
        source_agent: ours.to_string(),
        reason: why.message.clone(),
    });
    if let Err(e) = said {
        log::warn!(
            "cannot tell the destination to drop its migration {remote_migration}; it removes \
             the LPAR when its wait for the streams ends: {e}"
        );
    }
}

fn source_steps(
    agent: &Arc<Agent>,
    m: &Migration,
    lpar: Arc<dyn Partition>,
    config: &LparConfig,
    route: &Route,
    mut options: LiveOptions,
) -> Result<Value, Emg> {
    let (to, path, streams) = (&route.to, &route.path, route.streams);
    agent.enter(m, Stage::SrcValidating);
    let (mut client, theirs, ours) = open_destination(agent, to)?;
    if theirs.build.wire_protocol != ours.build.wire_protocol {
        return Err(Emg::new(
            Module::Executor,
            phase::COMPATIBILITY,
            0x02,
            format!(
                "incompatible builds: this host runs {}, {} runs {}",
                ours.build, theirs.agent, theirs.build
            ),
            "Install the same lpar-mover release on both hosts.",
        ));
    }

    agent.enter(m, Stage::SrcDefiningDestination);
    // A destination that never answers must not outlast the deadline.
    if let Some(c) = &m.control {
        client.set_timeout(Some(c.remaining().max(Duration::from_millis(1))))?;
    }
    let bad_reply = |what: String| {
        Emg::new(
            Module::MoverSource,
            phase::DEFINE,
            0x02,
            format!("the destination's prepare-incoming reply is not valid: {what}"),
            "Install the same lpar-mover release on both hosts.",
        )
    };
    let reply = client.request_or(
        request::PrepareIncoming {
            config: config.clone(),
            streams,
            path: Some(path.name.clone()),
            source_agent: ours.agent.clone(),
            source_migration: m.id,
            source_address: agent.advertised.get().cloned(),
            history_key: Some(m.history.lock().unwrap().key.clone()),
            history: agent.history_to_ship(&config.name),
        },
        bad_reply,
    )?;
    let Invitation {
        address,
        key,
        transfer_id,
    } = reply.invitation().map_err(bad_reply)?;
    let remote_migration = reply.migration;
    m.journal_peer(remote_migration);

    agent.enter(m, Stage::SrcConnectingPath);
    let opts = StreamOptions {
        encryption: route.encryption,
        ..StreamOptions::default()
    };
    let out = connect_streams_with(
        path,
        address,
        streams,
        &key,
        transfer_id,
        CONNECT_TIMEOUT,
        &opts,
    )
    .map_err(|e| {
        let e = Emg::from(e);
        abandon(&mut client, remote_migration, &ours.agent, &e);
        e
    })?;
    // The path as the sockets have it (what the kernel bound), for the report.
    let used = json!({
        "name": path.name,
        "streams": out
            .iter()
            .map(|s| json!({
                "local": s.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                "remote": s.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            }))
            .collect::<Vec<_>>(),
    });

    agent.enter(m, Stage::SrcTransferringMemory);
    options.migration_id = u128::from(transfer_id);
    let control = m.control.clone().expect("source migrations have a control");
    let memory_bytes = config.memory_bytes;
    let mut progress = |p: &Progress| match p {
        Progress::Round(r) => {
            let remaining = (r.dirty_rate * r.duration_ms / 1000.0) as u64 * PAGE_SIZE as u64;
            let remaining = remaining.min(memory_bytes);
            {
                let mut s = m.status.lock().unwrap();
                s.round = r.round;
                s.remaining_bytes = remaining;
                s.rate_bytes_per_s = r.bandwidth;
                s.throttle_percent = r.throttle;
            }
            agent.publish(&Event::MigrationProgress {
                migration: m.id,
                lpar: m.lpar.clone(),
                round: r.round,
                memory_bytes,
                remaining_bytes: remaining,
                rate_bytes_per_s: r.bandwidth,
                throttle_percent: r.throttle,
            });
        }
        Progress::Throttled(t) => {
            log::info!(
                "migration {}: rounds stopped shrinking, vCPUs throttled to {t}%",
                m.id
            );
            m.status.lock().unwrap().throttle_percent = *t;
        }
        Progress::Suspending { pages } => {
            m.status.lock().unwrap().remaining_bytes = pages * PAGE_SIZE as u64;
            agent.enter(m, Stage::SrcFinalCopy);
        }
        // Write-ahead: journaled (fsynced) before Commit leaves.
        Progress::Committing => agent.enter(m, Stage::SrcSwitchingOver),
    };
    let started = Instant::now();
    let report = migrate_live(lpar, out, &options, &control, &mut progress)
        .map_err(|e| e.emg(Module::MoverSource))?;
    log::info!(
        "migration {}: '{}' now runs on {} (destination migration {remote_migration}) after {:.1} ms",
        m.id,
        m.lpar,
        theirs.agent,
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(json!({
        "source": report,
        "destination_agent": theirs.agent,
        "destination_migration": remote_migration,
        "path": used,
        "warnings": route.warnings,
    }))
}
