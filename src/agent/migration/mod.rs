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
//!
//! This module holds the migration record both sides keep; [`source`] runs
//! the source's steps and [`destination`] the destination's.

mod destination;
mod record;
mod source;

pub(in crate::agent) use destination::define_incoming;
pub use destination::{abandon_incoming, prepare_incoming};
pub(in crate::agent) use source::open_destination;
pub use source::{SourceRequest, start_source};

use super::Agent;
use crate::agent::journal::Journal;
use crate::control::{Event, cause, protocol_error};
use crate::control::{Side, reply};
use crate::emg::{Emg, Module, phase};
use crate::engine::source::MigrationControl;
use crate::engine::stage::Stage;
use crate::partition::LparConfig;
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the destination waits for the source's streams.
pub const ACCEPT_DEADLINE: Duration = Duration::from_secs(30);
/// How long the source gives the stream set-up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One migration, source or destination side.
pub struct Migration {
    pub id: u64,
    pub lpar: String,
    pub side: Side,
    /// The other agent (source: the `--to` address; destination: its name).
    pub peer: String,
    control: Option<Arc<MigrationControl>>,
    /// Destination: the source said its streams will not come
    /// (`abandon-incoming`).
    abandoned: AtomicBool,
    /// What `status` says of it (the stage, progress, outcome).
    status: Mutex<reply::MigrationStatus>,
    /// The recovery journal: every stage is appended (and fsynced) here.
    journal: Mutex<Option<Journal>>,
    /// Its history record so far (see `agent::history`).
    pub(super) history: Mutex<crate::agent::history::Pending>,
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
            abandoned: AtomicBool::new(false),
            status: Mutex::new(reply::MigrationStatus {
                migration: id,
                lpar: config.name.clone(),
                side,
                peer: peer.to_string(),
                stage: stage.code(),
                stage_text: stage.text().to_string(),
                round: 0,
                memory_bytes: config.memory_bytes,
                remaining_bytes: config.memory_bytes,
                rate_bytes_per_s: 0.0,
                throttle_percent: 0,
                timeout_s,
                error: None,
                // `null` until it completes.
                report: Some(None),
            }),
            history: Mutex::new(crate::agent::history::Pending {
                started_ns: crate::engine::wall_clock_ns(),
                // Each side knows the LPAR's number on its own host.
                source_number: (side == Side::Source).then_some(config.number),
                destination_number: (side == Side::Destination).then_some(config.number),
                ..Default::default()
            }),
            journal: Mutex::new(None),
        }
    }

    /// Opens this migration's journal under `state_dir` (`begin` record).
    pub(super) fn open_journal(
        &self,
        state_dir: &std::path::Path,
        mode: crate::control::MigrationMode,
    ) -> Result<(), Emg> {
        let j = Journal::create(state_dir, &self.lpar, self.side, self.id, &self.peer, mode)?;
        *self.journal.lock().unwrap() = Some(j);
        Ok(())
    }

    /// Records the other side's migration id.
    pub(super) fn journal_peer(&self, migration: u64) {
        if let Some(j) = self.journal.lock().unwrap().as_mut()
            && let Err(e) = j.append(&crate::agent::journal::Record::Peer { migration })
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

    /// What `status` says of this migration.
    pub fn status(&self) -> reply::MigrationStatus {
        self.status.lock().unwrap().clone()
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
                    self.side.label()
                ),
                "Ask the source agent while the memory transfer runs (moverctl monitor shows \
                 the stage).",
            )),
        }
    }

    pub fn extend(&self, seconds: u64) -> Result<reply::Extended, Emg> {
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
        Ok(reply::Extended {
            migration: self.id,
            timeout_s: s.timeout_s,
        })
    }

    pub fn cancel(&self) -> Result<reply::Cancelling, Emg> {
        self.in_control_stage("Cancel")?.cancel();
        Ok(reply::Cancelling {
            migration: self.id,
            cancelling: true,
        })
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
        self.publish(&Event::MigrationStage {
            migration: m.id,
            lpar: m.lpar.clone(),
            stage: stage.code(),
            text: stage.text().to_string(),
        });
        // After the event: a migration held at this stage has announced it.
        #[cfg(feature = "fault-injection")]
        super::faults::at_stage(stage);
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
                m.status.lock().unwrap().report = Some(Some(report.clone()));
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

/// The EMG when the thread that runs a migration cannot be started (the
/// LPAR is back in its state from before the request).
pub(in crate::agent) fn thread_refused(e: &std::io::Error) -> Emg {
    Emg::new(
        Module::Executor,
        phase::CONNECT,
        0x01,
        format!("cannot start the migration thread: {e}"),
        "The host is short of threads or memory; retry later.",
    )
}

/// How long deactivating an LPAR waits for the migration it cancels to end.
const CANCEL_WAIT: Duration = Duration::from_secs(60);

impl Agent {
    /// Table 5-2 note 1: deactivating or reactivating the LPAR a source
    /// migration is moving cancels that migration. Cancels it and waits
    /// until it has ended (the LPAR back in its state here); returns its id,
    /// or `None` when `lpar` is in no source migration. Outside stage 0x4050
    /// the cancel is refused as `cancel` refuses it.
    pub(super) fn cancel_migration_of(&self, lpar: &str) -> Result<Option<u64>, Emg> {
        let m = self
            .migrations
            .lock()
            .unwrap()
            .values()
            .find(|m| m.lpar == lpar && m.side == Side::Source && !m.is_finished())
            .cloned();
        let Some(m) = m else {
            return Ok(None);
        };
        m.cancel().map_err(|mut e| {
            e.message = format!(
                "deactivating or reactivating '{lpar}' cancels its migration {}, and {}",
                m.id, e.message
            );
            e
        })?;
        log::info!(
            "migration {} of '{lpar}': cancelled by a (de)activation",
            m.id
        );
        let until = Instant::now() + CANCEL_WAIT;
        while !m.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Some(m.id))
    }
}
