//! Migrations as the agent runs them, on either side.
//!
//! ```text
//! moverctl            source agent                          destination agent
//! migrate ──────────▶ busy check, LPAR → migrating
//!        ◀── {migration: id}
//!                     0x4010 compare build identity (greeting)
//!                     0x4020 prepare-incoming ───────────▶ room? define LPAR (migrating),
//!                                                           listen on the migration path,
//!                            ◀── {address, key, transfer_id} issue a one-time key
//!                     0x4030 connect N streams (key) ─────▶ 0x5030 accept_streams
//!                     0x4050 engine::source::migrate_live ▶ 0x5050 engine::destination::receive_live
//!                            (progress events per round)
//!                     0x4060 final copy, switchover
//!                     0x4090 release the source LPAR        LPAR → Act   0x50a0
//!                     0x40a0 completed
//! ```
//!
//! A failure before commit leaves the LPAR running here (state back to
//! Act) and the destination removes what it defined; the error, wherever
//! it arose, travels unchanged to the client (`MIGRATION_FAILED`). Extend
//! and cancel reach the engine through its [`MigrationControl`], and only
//! in stage 0x4050.

use super::Agent;
use super::busy::{self, Operation};
use super::inventory::LparState;
use super::journal::Journal;
use super::validation::{self, Mode};
use crate::control::{Address, Client, Command, Event, Greeting, cause, protocol_error};
use crate::emg::{Emg, Module, phase};
use crate::engine::EngineError;
use crate::engine::destination::receive_live_staged;
use crate::engine::source::{LiveOptions, MigrationControl, Progress, migrate_live};
use crate::engine::stage::Stage;
use crate::partition::{LparConfig, PAGE_SIZE, Partition};
use crate::transport::{
    DEFAULT_STREAMS, MAX_STREAMS, MigrationPath, OneTimeKey, PathListener, connect_streams,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the destination waits for the source's streams.
pub const ACCEPT_DEADLINE: Duration = Duration::from_secs(30);
/// How long the source gives the stream set-up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Source,
    Destination,
}

/// What an operator sees of one migration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    pub stage: u16,
    pub stage_text: String,
    pub round: u32,
    pub memory_bytes: u64,
    pub remaining_bytes: u64,
    pub rate_bytes_per_s: f64,
    pub throttle_percent: u8,
    pub timeout_s: u64,
    pub error: Option<Emg>,
    pub report: Option<Value>,
}

/// One migration, source or destination side.
pub struct Migration {
    pub id: u64,
    pub lpar: String,
    pub side: Side,
    /// The other agent (source: the `--to` address; destination: its name).
    pub peer: String,
    control: Option<Arc<MigrationControl>>,
    status: Mutex<Status>,
    /// The recovery journal: every stage is appended (and fsynced) here.
    journal: Mutex<Option<Journal>>,
    /// Its history record so far (see `agent::history`).
    pub(super) history: Mutex<super::history::Pending>,
}

impl Migration {
    pub(super) fn new(
        id: u64,
        config: &LparConfig,
        side: Side,
        peer: &str,
        timeout_s: u64,
    ) -> Self {
        let stage = match side {
            Side::Source => Stage::SrcValidating,
            Side::Destination => Stage::DstDefining,
        };
        Migration {
            id,
            lpar: config.name.clone(),
            side,
            peer: peer.to_string(),
            control: (side == Side::Source)
                .then(|| Arc::new(MigrationControl::new(Duration::from_secs(timeout_s)))),
            status: Mutex::new(Status {
                stage: stage.code(),
                stage_text: stage.text().to_string(),
                round: 0,
                memory_bytes: config.memory_bytes,
                remaining_bytes: config.memory_bytes,
                rate_bytes_per_s: 0.0,
                throttle_percent: 0,
                timeout_s,
                error: None,
                report: None,
            }),
            history: Mutex::new(super::history::Pending {
                started_ns: crate::engine::wall_clock_ns(),
                ..Default::default()
            }),
            journal: Mutex::new(None),
        }
    }

    /// Opens this migration's journal under `state_dir` (`begin` record).
    pub(super) fn open_journal(&self, state_dir: &std::path::Path, mode: &str) -> Result<(), Emg> {
        let j = Journal::create(state_dir, &self.lpar, self.side, self.id, &self.peer, mode)?;
        *self.journal.lock().unwrap() = Some(j);
        Ok(())
    }

    /// Records the other side's migration id.
    pub(super) fn journal_peer(&self, migration: u64) {
        if let Some(j) = self.journal.lock().unwrap().as_mut()
            && let Err(e) = j.append(&super::journal::Record::Peer { migration })
        {
            log::error!("migration {}: {e}", self.id);
        }
    }

    /// Appends the `end` record (the migration is no longer in doubt)
    /// and closes the file (an agent keeps finished migrations for
    /// `status`, and must not keep a descriptor for each).
    fn journal_end(&self, outcome: &str, resumed_here: bool) {
        let mut journal = self.journal.lock().unwrap();
        if let Some(j) = journal.as_mut()
            && let Err(e) = j.end(outcome, resumed_here)
        {
            log::error!("migration {}: {e}", self.id);
        }
        *journal = None;
    }

    pub fn status_json(&self) -> Value {
        let s = self.status.lock().unwrap().clone();
        let mut v = serde_json::to_value(s).expect("status serialises");
        v["migration"] = json!(self.id);
        v["lpar"] = json!(self.lpar);
        v["side"] = json!(self.side);
        v["peer"] = json!(self.peer);
        v
    }

    /// Whether the destination got as far as loading the device state.
    fn stage_reached_loading(&self) -> bool {
        let s = self.stage().code();
        (Stage::DstLoadingState.code()..Stage::DstCompleted.code()).contains(&s)
    }

    /// Completed or failed: nothing will change any more.
    pub fn is_finished(&self) -> bool {
        self.stage().is_final()
    }

    fn stage(&self) -> Stage {
        Stage::from_code(self.status.lock().unwrap().stage).expect("stages come from the table")
    }

    /// Refuses operator control outside stage 0x4050 (the manual's rule).
    fn in_control_stage(&self, what: &str) -> Result<&MigrationControl, Emg> {
        let stage = self.stage();
        match &self.control {
            Some(c) if stage.accepts_operator_control() => Ok(c),
            _ => Err(protocol_error(
                cause::WRONG_STAGE,
                format!(
                    "{what} is accepted only during {}; migration {} ({} side) is at {stage}",
                    Stage::SrcTransferringMemory,
                    self.id,
                    match self.side {
                        Side::Source => "source",
                        Side::Destination => "destination",
                    }
                ),
                "Ask the source agent while the memory transfer runs (moverctl monitor shows \
                 the stage).",
            )),
        }
    }

    pub fn extend(&self, seconds: u64) -> Result<Value, Emg> {
        let control = self.in_control_stage("Timeout extension")?;
        let mut s = self.status.lock().unwrap();
        let max = crate::control::bounds::MAX_TIMEOUT_S;
        let total = s.timeout_s.saturating_add(seconds);
        if total > max {
            return Err(protocol_error(
                cause::BAD_ARGUMENTS,
                format!(
                    "extending migration {} by {seconds} s would make its timeout {total} s: \
                     at most {max} s",
                    self.id
                ),
                format!("Extend by at most {} s.", max.saturating_sub(s.timeout_s)),
            ));
        }
        control.extend(Duration::from_secs(seconds));
        s.timeout_s = total;
        Ok(json!({ "migration": self.id, "timeout_s": s.timeout_s }))
    }

    pub fn cancel(&self) -> Result<Value, Emg> {
        self.in_control_stage("Cancel")?.cancel();
        Ok(json!({ "migration": self.id, "cancelling": true }))
    }
}

impl Agent {
    pub(super) fn enter(&self, m: &Migration, stage: Stage) {
        {
            let mut s = m.status.lock().unwrap();
            s.stage = stage.code();
            s.stage_text = stage.text().to_string();
        }
        if let Some(j) = m.journal.lock().unwrap().as_mut()
            && let Err(e) = j.stage(stage)
        {
            log::error!("migration {}: {e}", m.id);
        }
        log::info!("migration {} of '{}': {stage}", m.id, m.lpar);
        #[cfg(feature = "fault-injection")]
        super::faults::at_stage(stage);
        self.publish(&Event::MigrationStage {
            migration: m.id,
            lpar: m.lpar.clone(),
            stage: stage.code(),
            text: stage.text().to_string(),
        });
    }

    /// Ends `m`: the final stage, the journal's `end` record (with whether
    /// the LPAR runs on at this host after a failure) and the event.
    pub(super) fn finish(&self, m: &Migration, result: Result<Value, Emg>, resumed_here: bool) {
        let outcome = if result.is_ok() {
            "completed"
        } else {
            "failed"
        };
        // In doubt (ownership may have passed): no `end` record, the
        // journal stays open until `recover` closes it.
        let in_doubt = result.as_ref().is_err_and(|e| e.needs_recovery);
        let for_destination = self.record_history(m, &result);
        let (stage, event) = match result {
            Ok(report) => {
                m.status.lock().unwrap().report = Some(report.clone());
                let stage = match m.side {
                    Side::Source => Stage::SrcCompleted,
                    Side::Destination => Stage::DstCompleted,
                };
                let event = Event::MigrationCompleted {
                    migration: m.id,
                    lpar: m.lpar.clone(),
                    report,
                };
                (stage, event)
            }
            Err(error) => {
                log::warn!("migration {} of '{}' failed: {error}", m.id, m.lpar);
                m.status.lock().unwrap().error = Some(error.clone());
                let stage = match m.side {
                    Side::Source => Stage::SrcFailed,
                    Side::Destination => Stage::DstFailed,
                };
                let event = Event::MigrationFailed {
                    migration: m.id,
                    lpar: m.lpar.clone(),
                    error,
                };
                (stage, event)
            }
        };
        self.enter(m, stage);
        if !in_doubt {
            m.journal_end(outcome, resumed_here);
        }
        self.publish(&event);
        if let Some(record) = for_destination {
            // After the event: the client need not wait for this.
            self.send_record(&m.peer, record);
        }
    }
}

/// Whether a live migration that failed at `stage` (before commit, the
/// LPAR running here again) leaves its WWPNs to roll back: once suspended
/// (0x4060 on) the destination may have taken the LPAR's identities and
/// logged in with its migration WWPNs (the manual: after a failed
/// Concurrent Maintenance migration, roll the WWNs back). Only an LPAR with
/// FC ports has any.
pub(super) fn wwn_rollback_needed(stage: Stage, config: &LparConfig) -> bool {
    !config.fc_ports.is_empty()
        && (Stage::SrcFinalCopy.code()..Stage::SrcReleasing.code()).contains(&stage.code())
}

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
}

/// Where a source migration goes and how: the destination agent, this
/// host's migration path, and the stream count.
struct Route {
    to: Address,
    path: MigrationPath,
    streams: usize,
}

/// `migrate`: checks the busy rules, marks the LPAR migrating and starts the
/// migration thread; replies with the migration id.
pub fn start_source(agent: &Arc<Agent>, req: SourceRequest) -> Result<Value, Emg> {
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
    }
    let path = agent.config.path_named(req.path.as_deref())?;
    let report = validation::validate(
        agent,
        &req.lpar,
        &req.to,
        Mode::Live,
        req.path.as_deref(),
        false,
    )?;
    if let Some(refusal) = validation::refusal(&req.lpar, &report.checks) {
        return Err(refusal);
    }
    let (config, lpar) = {
        let mut inv = agent.inventory.lock().unwrap();
        let entry = inv.get(&req.lpar)?;
        busy::check(&req.lpar, entry.state, Operation::Migrate)?;
        busy::check_host(&agent.config.name, inv.migrating())?;
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
    if let Err(e) = m.open_journal(&agent.config.state_dir, "live") {
        let _ = agent
            .inventory
            .lock()
            .unwrap()
            .set_state(&req.lpar, LparState::Act);
        return Err(e);
    }
    agent.register(m.clone());
    agent.note_source(&m, &req.to);
    let options = LiveOptions {
        migration_id: 0,
        max_suspend: req
            .max_suspend_ms
            .map_or(defaults.max_suspend, Duration::from_millis),
        timeout: Duration::from_secs(timeout_s),
        bandwidth: req.bandwidth,
    };
    let id = m.id;
    let a = agent.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("migrate-{id}"))
        .spawn(move || {
            let route = Route { to, path, streams };
            super::panics::migration_thread(&a, &m, || {
                run_source(&a, &m, lpar, config, &route, options)
            })
        });
    if let Err(e) = spawned {
        let _ = agent
            .inventory
            .lock()
            .unwrap()
            .set_state(&req.lpar, LparState::Act);
        return Err(Emg::new(
            Module::Executor,
            phase::CONNECT,
            0x01,
            format!("cannot start the migration thread: {e}"),
            "The host is short of threads or memory; retry later.",
        ));
    }
    log::info!("migration {id}: '{}' to {}", req.lpar, req.to);
    Ok(json!({ "migration": id }))
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
pub(super) fn open_destination(
    agent: &Agent,
    to: &Address,
) -> Result<(Client, Greeting, Greeting), Emg> {
    let client = agent.open_peer(to, Module::MoverSource)?;
    let theirs = client.greeting().clone();
    let ours = agent.greeting();
    if theirs.agent == ours.agent {
        return Err(Emg::new(
            Module::Executor,
            phase::COMPATIBILITY,
            0x01,
            format!("source and destination are the same host ({})", ours.agent),
            "Choose a different destination host.",
        ));
    }
    Ok((client, theirs, ours))
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
    let reply = client.call(Command::PrepareIncoming {
        config: config.clone(),
        streams,
        path: Some(path.name.clone()),
        source_agent: ours.agent.clone(),
        source_migration: m.id,
        source_address: agent.advertised.get().cloned(),
        history_key: Some(m.history.lock().unwrap().key.clone()),
        history: agent.history_to_ship(&config.name),
    })?;
    let bad_reply = |what: &str| {
        Emg::new(
            Module::MoverSource,
            phase::DEFINE,
            0x02,
            format!("the destination's prepare-incoming reply lacks a valid {what}: {reply}"),
            "Install the same lpar-mover release on both hosts.",
        )
    };
    let address: SocketAddr = reply["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| bad_reply("address"))?;
    let key = reply["key"]
        .as_str()
        .and_then(|k| OneTimeKey::from_hex(k).ok())
        .ok_or_else(|| bad_reply("key"))?;
    let transfer_id = reply["transfer_id"]
        .as_u64()
        .ok_or_else(|| bad_reply("transfer_id"))?;
    let remote_migration = reply["migration"].as_u64().unwrap_or(0);
    m.journal_peer(remote_migration);

    agent.enter(m, Stage::SrcConnectingPath);
    let out = connect_streams(path, address, streams, &key, transfer_id, CONNECT_TIMEOUT)?;
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
    }))
}

/// Defines an incoming LPAR as `migrating` on this (destination) host:
/// its name must be free, the host in no other migration, and the
/// resources there. One lock, so concurrent requests cannot both pass.
pub(super) fn define_incoming(
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
    config.number = inv.names().len() as u32 + 1;
    inv.define(config, LparState::Migrating)
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
) -> Result<Value, Emg> {
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
    let listener = match PathListener::bind(&own_path, 0) {
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
    if let Err(e) = m.open_journal(&agent.config.state_dir, "live") {
        drop(lpar);
        undefine(agent);
        return Err(e);
    }
    m.journal_peer(source_migration);
    agent.register(m.clone());
    let reply = json!({
        "migration": m.id,
        "address": listener.local_addr().to_string(),
        "key": key.to_hex(),
        "transfer_id": transfer_id,
    });
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
            super::panics::migration_thread(&a2, &m2, move || {
                let result = (|| {
                    let inn = listener
                        .accept_streams(
                            streams,
                            &key,
                            transfer_id,
                            Instant::now() + ACCEPT_DEADLINE,
                        )
                        .map_err(|e| (Emg::from(e), false))?;
                    a.enter(&m, Stage::DstReceivingMemory);
                    receive_live_staged(lpar.clone(), inn, &host, &mut |s| a.enter(&m, s)).map_err(
                        |e| {
                            let aborted = matches!(e, EngineError::PeerAborted(_));
                            (e.emg(Module::MoverDestination), aborted)
                        },
                    )
                })();
                drop(lpar);
                let mut resumed_here = false;
                let result = match result {
                    Ok(report) => {
                        resumed_here = true;
                        a.inventory
                            .lock()
                            .unwrap()
                            .set_state(&name, LparState::Act)
                            .map(|()| json!({ "destination": report }))
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

fn undefine_named(agent: &Agent, name: &str) {
    if let Err(e) = agent.inventory.lock().unwrap().remove(name) {
        log::error!("cannot remove the incoming LPAR '{name}': {e}");
    }
}
