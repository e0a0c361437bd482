//! The words the management protocol shares with the agent and the CLI,
//! each defined once: the migration mode, the side, an LPAR's state, the
//! history record, a journal's summary, what an agent tells another about
//! itself, and the bandwidth rule. Agent and CLI use these types; none of
//! them defines its own.
//!
//! | word | type | on the protocol |
//! |---|---|---|
//! | migration mode | [`MigrationMode`] (defined in `state`, whose device state depends on it) | `"live"` \| `"shutdown"` |
//! | side | [`Side`] (defined in `transport`, whose errors name it) | `"source"` \| `"destination"` |
//! | LPAR state | [`LparState`] | `"Act"`, `"Dea"`, `"Fai"`, `"migrating"`, `"needs-recovery"`, `"wwn-rollback-pending"` |
//! | history record | [`HistoryRecord`], [`HistoryOutcome`] | `history`, `history-record`, `prepare-incoming` |
//! | journal summary | [`JournalSummary`] | `journal-read`, `recover-resolve` |
//! | host facts | [`HostFacts`], [`Identity`] | `validate-incoming` |
//! | the 1 Gbit/s rule | [`MIN_GOODPUT_BITS`] | the `bandwidth` item, the `bandwidth` bound |

use crate::build_identity::BuildIdentity;
use crate::emg::Emg;
use crate::engine::stage::Stage;
use crate::transport::MigrationPath;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use crate::state::MigrationMode;
pub use crate::transport::Side;

/// The manual's 1 Gbit/s path requirement, as TCP payload: the line rate
/// less Ethernet/IP/TCP framing (about 5 %) and some room for a loaded
/// host, so a path shaped to exactly 1 Gbit/s passes and a slower one fails.
pub const MIN_GOODPUT_BITS: f64 = 0.9e9;

/// The partition backend an agent runs unless told otherwise, and the one
/// an agent that predates the `backend` field of [`HostFacts`] runs.
pub const DEFAULT_BACKEND: &str = "sim";

/// The manual's LPAR states, plus the migration states of an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LparState {
    /// Activated (running).
    Act,
    /// Deactivated (defined, not running).
    Dea,
    /// Failed.
    Fai,
    /// Moving: it refuses every operation until the migration ends.
    #[serde(rename = "migrating")]
    Migrating,
    /// An interrupted migration left it; only `recover` (or deactivation)
    /// is accepted.
    #[serde(rename = "needs-recovery")]
    NeedsRecovery,
    /// A failed live migration left its WWNs exchanged; `rollback-wwn`
    /// gives them back.
    #[serde(rename = "wwn-rollback-pending")]
    WwnRollbackPending,
}

impl LparState {
    /// The state as the protocol spells it.
    pub fn label(self) -> &'static str {
        match self {
            LparState::Act => "Act",
            LparState::Dea => "Dea",
            LparState::Fai => "Fai",
            LparState::Migrating => "migrating",
            LparState::NeedsRecovery => "needs-recovery",
            LparState::WwnRollbackPending => "wwn-rollback-pending",
        }
    }
}

/// How a migration ended, as its history record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HistoryOutcome {
    /// The LPAR runs on the destination.
    Completed,
    /// It failed; the record's `error` says why.
    Failed,
    /// Cancelled by the user (the manual's reason 0x20).
    Cancelled,
}

impl HistoryOutcome {
    /// The outcome of a migration that ended with `result`.
    pub fn of<T>(result: &Result<T, Emg>) -> HistoryOutcome {
        match result {
            Ok(_) => HistoryOutcome::Completed,
            Err(e) if e.reason == crate::emg::reason::TERMINATED_BY_USER => {
                HistoryOutcome::Cancelled
            }
            Err(_) => HistoryOutcome::Failed,
        }
    }
}

/// One migration of one LPAR as one agent saw it (a line of the agent's
/// `history.jsonl`, and an item of the `history` reply).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// `<source agent>/<source migration id>/<source start ns>`: the same
    /// on both sides, unique across agent restarts.
    pub key: String,
    /// The LPAR's name.
    pub lpar: String,
    /// Live or shutdown mode.
    pub mode: MigrationMode,
    /// The side of the agent that recorded it.
    pub side: Side,
    /// The agent that recorded it.
    pub recorded_by: String,
    /// The source agent's name.
    pub source_agent: String,
    /// The source agent's management address, where `return` sends the
    /// LPAR back.
    pub source_address: Option<String>,
    /// The destination agent's name.
    pub destination_agent: String,
    /// The destination agent's management address.
    pub destination_address: Option<String>,
    /// When the source started it (Unix epoch, ns).
    pub started_ns: u64,
    /// When it ended here (Unix epoch, ns).
    pub ended_ns: u64,
    /// How it ended.
    pub outcome: HistoryOutcome,
    /// Why it failed.
    pub error: Option<Emg>,
    /// How long the guest was suspended (source records of completed live
    /// migrations).
    pub suspension_ms: Option<f64>,
    /// The LPAR's number on the source host (the manual's history shows
    /// it with each host); `null` when this record's side did not know it.
    #[serde(default)]
    pub source_number: Option<u32>,
    /// The LPAR's number on the destination host (`null` likewise).
    #[serde(default)]
    pub destination_number: Option<u32>,
}

/// What one recovery journal says, as the peer is told over
/// `journal-read` (the file format is `agent::journal`'s).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JournalSummary {
    /// The LPAR's name.
    pub lpar: String,
    /// The side whose journal it is.
    pub side: Side,
    /// The migration id on that side.
    pub migration: u64,
    /// The other agent (its address on the source, its name on the
    /// destination).
    pub peer: String,
    /// Live or shutdown mode (live in journals older than the field).
    #[serde(default)]
    pub mode: MigrationMode,
    /// The other side's migration id, when it was recorded.
    #[serde(default)]
    pub peer_migration: Option<u64>,
    /// Every stage recorded, in order.
    pub stages: Vec<u16>,
    /// The `end` record's outcome, if the migration finished.
    pub outcome: Option<String>,
    /// Whether a failed migration resumed the LPAR on this side.
    pub resumed_here: bool,
    /// The journal file this host read it from (never sent).
    #[serde(skip)]
    pub path: PathBuf,
}

impl JournalSummary {
    /// Whether the journal recorded `stage`.
    pub fn reached(&self, stage: Stage) -> bool {
        self.stages.contains(&stage.code())
    }

    /// Whether the journal has its `end` record.
    pub fn finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// Whether `other` can be the other side of this migration: the
    /// opposite side, and migration ids that match where recorded.
    pub fn pairs_with(&self, other: &JournalSummary) -> bool {
        self.side != other.side
            && self.peer_migration.is_none_or(|p| p == other.migration)
            && other.peer_migration.is_none_or(|p| p == self.migration)
    }

    /// Whether the journals say ownership passed to the destination:
    /// `Some(true)` passed, `Some(false)` did not, `None` cannot tell.
    pub fn committed(
        source: Option<&JournalSummary>,
        destination: Option<&JournalSummary>,
    ) -> Option<bool> {
        if destination.is_some_and(|d| d.reached(Stage::DstResuming)) {
            return Some(true);
        }
        match source {
            Some(s) if s.reached(Stage::SrcSwitchingOver) => Some(!s.resumed_here),
            Some(_) => Some(false),
            // Without the source's journal: the source commits only after
            // the destination loaded and verified (0x5070).
            None => match destination {
                Some(d) if !d.reached(Stage::DstLoadingState) => Some(false),
                _ => None,
            },
        }
    }
}

/// A host's identity as validation compares it (`[identity]` in the
/// agent's configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The HVM model; live mode needs the same on both hosts.
    pub hvm_model: String,
    /// The HVM time zone; both hosts need the same.
    pub time_zone: String,
    /// The NTP servers; both hosts need one in common.
    #[serde(default)]
    pub ntp_servers: Vec<String>,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            hvm_model: "sim".into(),
            time_zone: "UTC".into(),
            ntp_servers: Vec::new(),
        }
    }
}

/// What one agent tells the other about itself for validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// The agent's name.
    pub agent: String,
    /// Its build.
    pub build: BuildIdentity,
    /// Its host's identity.
    pub identity: Identity,
    /// Its migration paths.
    pub paths: Vec<MigrationPath>,
    /// The management listen address.
    pub management: String,
    /// The partition backend hosting the agent's LPARs (`sim`, `kvm`); an
    /// agent that predates the field runs `sim`.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// The shared NIC segment of the management path, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_segment: Option<String>,
}

pub(crate) fn default_backend() -> String {
    DEFAULT_BACKEND.to_string()
}

impl HostFacts {
    /// The path called `name`, or the first configured.
    pub fn path(&self, name: Option<&str>) -> Option<&MigrationPath> {
        match name {
            Some(n) => self.paths.iter().find(|p| p.name == n),
            None => self.paths.first(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vocabulary_reads_as_the_protocol_spells_it() {
        for (mode, text) in [
            (MigrationMode::Live, "\"live\""),
            (MigrationMode::Shutdown, "\"shutdown\""),
        ] {
            assert_eq!(serde_json::to_string(&mode).unwrap(), text);
            assert_eq!(serde_json::from_str::<MigrationMode>(text).unwrap(), mode);
            assert_eq!(format!("\"{mode}\""), text);
        }
        assert_eq!(
            serde_json::to_string(&Side::Destination).unwrap(),
            "\"destination\""
        );
        for state in [LparState::Act, LparState::NeedsRecovery] {
            let text = serde_json::to_string(&state).unwrap();
            assert_eq!(text, format!("\"{}\"", state.label()));
        }
        assert_eq!(MigrationMode::default(), MigrationMode::Live);
        assert!("paused".parse::<MigrationMode>().is_err());
    }
}
