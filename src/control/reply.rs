//! The reply of each command (`"return"`), one type per command as its
//! [`Request::Reply`](super::Request::Reply) names it. The agent builds
//! its replies from these types and clients read them back into the same
//! types, so a renamed field fails to compile instead of reading `null`.
//!
//! ```text
//! {"id":<u64>,"return":<the command's reply>}  |  {"id":<u64|null>,"error":<Emg>}
//! ```
//!
//! Clients accept fields they do not know (an agent of a later minor
//! version may add some). Migration reports stay JSON values
//! (`serde_json::Value`): the engine writes them and moverctl prints them,
//! nobody branches on their fields but a few named here.

use super::vocabulary::{HistoryRecord, HostFacts, JournalSummary, LparState, MigrationMode, Side};
use crate::emg::Emg;
use crate::partition::FcPortConfig;
use crate::transport::OneTimeKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::SocketAddr;

/// `authenticate`: an empty object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

/// One LPAR as `lpar-create`, `lpar-show`, `lpar-activate`,
/// `lpar-deactivate` and `lpar-list` describe it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lpar {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: LparState,
    /// Its vCPUs.
    pub vcpus: u32,
    /// Its guest memory.
    pub memory_bytes: u64,
    /// The guest program (the sim's, or the built-in KVM guest's).
    pub program: String,
    /// The partition backend hosting it (`sim`, `kvm`).
    #[serde(default = "super::vocabulary::default_backend")]
    pub backend: String,
    /// Its logical FC ports.
    #[serde(default)]
    pub fc_ports: Vec<FcPortConfig>,
    /// The vfcID each FC port holds on this host when a switchover
    /// assigned it (validation and the next switchover count it as used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vfc_ids: Vec<u16>,
    /// Its logical NICs (segment, MAC and whether set by hand, VLAN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<crate::partition::NicConfig>,
    /// Whether its vCPUs run.
    pub running: bool,
    /// Guest writes counted so far (`null`: its files are not attached).
    pub guest_writes: Option<u64>,
    /// The longest stall the guest saw, ms (`null`: not attached).
    pub guest_max_stall_ms: Option<f64>,
    /// Its service ratio (as configured; it migrates unchanged).
    #[serde(default = "default_service_ratio")]
    pub service_ratio: u16,
    /// The share of this host's shared CPUs that ratio means here: its
    /// ratio over the sum of the activated LPARs' ratios (its own counted
    /// if it is not activated), in percent. After a migration it differs
    /// from the source's: the manual's reason to recompute the ratio.
    #[serde(default)]
    pub service_share_percent: f64,
    /// How its guest memory is backed (`reserved` or `on-demand`).
    #[serde(default)]
    pub memory_backing: crate::partition::MemoryBacking,
}

fn default_service_ratio() -> u16 {
    crate::partition::DEFAULT_SERVICE_RATIO
}

/// `lpar-delete`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    /// The LPAR's name.
    pub name: String,
    /// Always true.
    pub deleted: bool,
}

/// `lpar-list`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LparList {
    /// The agent's name.
    pub host: String,
    /// Every LPAR it holds.
    pub lpars: Vec<Lpar>,
}

/// `lpar-console`: up to `CONSOLE_CHUNK` bytes of the serial console.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Console {
    /// The LPAR's name.
    pub name: String,
    /// Where `text` starts in the console log.
    pub offset: u64,
    /// Where the next request should start.
    pub next_offset: u64,
    /// The console log's size.
    pub size: u64,
    /// The bytes, as UTF-8 (invalid sequences replaced).
    pub text: String,
}

/// `migrate`, `migrate-shutdown`: the migration's id on this agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationStarted {
    /// The migration id; events and `status` name it.
    pub migration: u64,
}

/// What `status` says of one migration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// Its id on this agent.
    pub migration: u64,
    /// The LPAR.
    pub lpar: String,
    /// This agent's side.
    pub side: Side,
    /// The other agent (its address on the source, its name on the
    /// destination).
    pub peer: String,
    /// The stage code (`engine::stage`).
    pub stage: u16,
    /// The stage's text.
    pub stage_text: String,
    /// The pre-copy round.
    pub round: u32,
    /// The LPAR's memory.
    pub memory_bytes: u64,
    /// Dirty memory still to send.
    pub remaining_bytes: u64,
    /// Transfer rate over the last round.
    pub rate_bytes_per_s: f64,
    /// The vCPU throttle.
    pub throttle_percent: u8,
    /// The migration's timeout.
    pub timeout_s: u64,
    /// Why it failed.
    pub error: Option<Emg>,
    /// The report of a completed migration: `Some(None)` is `null` (none
    /// yet), `None` leaves the field out (the list of all migrations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Option<Value>>,
}

/// `status`: one migration (`id` given) or all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Status {
    /// The migration asked for, with its report.
    One(Box<MigrationStatus>),
    /// Every migration this agent knows, without reports.
    All {
        /// The migrations.
        migrations: Vec<MigrationStatus>,
    },
}

/// `extend`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extended {
    /// The migration.
    pub migration: u64,
    /// Its new timeout.
    pub timeout_s: u64,
}

/// `cancel`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cancelling {
    /// The migration.
    pub migration: u64,
    /// Always true: the migration fails with reason 0x20 soon.
    pub cancelling: bool,
}

/// `prepare-incoming`: where the source connects its streams, and
/// `connectivity-incoming`'s listener alike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncomingPrepared {
    /// The destination's migration id.
    pub migration: u64,
    /// The listener's address on the migration path.
    pub address: String,
    /// The one-time key (64 hex digits).
    pub key: String,
    /// The transfer id the streams present.
    pub transfer_id: u64,
}

/// Where and how a source connects the streams of a migration path, as
/// `prepare-incoming` and `connectivity-incoming` invite it.
#[derive(Debug)]
pub struct Invitation {
    /// The destination's listener.
    pub address: SocketAddr,
    /// The one-time key the streams present.
    pub key: OneTimeKey,
    /// The transfer id they present.
    pub transfer_id: u64,
}

impl Invitation {
    fn read(address: &str, key: &str, transfer_id: u64) -> Result<Invitation, String> {
        Ok(Invitation {
            address: address
                .parse()
                .map_err(|e| format!("address '{address}': {e}"))?,
            key: OneTimeKey::from_hex(key).map_err(|e| format!("key: {e}"))?,
            transfer_id,
        })
    }
}

impl IncomingPrepared {
    /// The listener, its key and transfer id, checked.
    pub fn invitation(&self) -> Result<Invitation, String> {
        Invitation::read(&self.address, &self.key, self.transfer_id)
    }
}

impl ProbeListening {
    /// The listener, its key and transfer id, checked.
    pub fn invitation(&self) -> Result<Invitation, String> {
        Invitation::read(&self.address, &self.key, self.transfer_id)
    }
}

/// `connectivity-incoming`: the listener for one connectivity test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeListening {
    /// The listener's address on the migration path.
    pub address: String,
    /// The one-time key (64 hex digits).
    pub key: String,
    /// The destination's path it listens on.
    pub path: String,
    /// The transfer id the streams present.
    pub transfer_id: u64,
}

/// `history`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The agent's name.
    pub host: String,
    /// The LPAR asked about; none: every LPAR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lpar: Option<String>,
    /// Its migrations (or all), oldest first, one record per migration.
    pub migrations: Vec<HistoryRecord>,
}

/// `host-resources`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostResources {
    /// The agent's name.
    pub host: String,
    /// Its CPUs.
    pub cpus: u32,
    /// Its memory for LPARs.
    pub memory_bytes: u64,
    /// Memory its LPARs take.
    pub memory_in_use_bytes: u64,
    /// Memory left.
    pub memory_free_bytes: u64,
    /// How many LPARs it holds.
    pub lpars: usize,
}

/// `host-info`: what this host is and does now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The agent's name.
    pub host: String,
    /// Its build.
    pub build: crate::build_identity::BuildIdentity,
    /// The partition backend hosting its LPARs (`sim`, `kvm`).
    pub backend: String,
    /// Its host's identity.
    pub identity: super::vocabulary::Identity,
    /// Its CPUs.
    pub cpus: u32,
    /// Its memory for LPARs.
    pub memory_bytes: u64,
    /// Memory its LPARs take.
    pub memory_in_use_bytes: u64,
    /// Memory left.
    pub memory_free_bytes: u64,
    /// How many LPARs it holds.
    pub lpars: usize,
    /// Its migration paths.
    pub paths: Vec<crate::transport::MigrationPath>,
    /// Whether a migration (either side) has not reached a final stage.
    pub busy: bool,
    /// The ids of those migrations on this agent.
    pub migrating: Vec<u64>,
}

/// `history-record`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// Records that were new here.
    pub kept: usize,
}

/// `recover`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recovered {
    /// The LPAR.
    pub lpar: String,
    /// Whether ownership had passed to the destination.
    pub committed: bool,
    /// The host the LPAR runs on now.
    pub runs_on: String,
    /// The host its other copy was removed from.
    pub removed_from: String,
}

/// The copy of an LPAR a host holds, as `journal-read` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Copy {
    /// Its state.
    pub state: LparState,
    /// Whether its vCPUs run.
    pub running: bool,
}

/// `journal-read`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalRead {
    /// The agent's name.
    pub host: String,
    /// Its latest journal of the LPAR.
    pub journal: Option<JournalSummary>,
    /// Its copy of the LPAR.
    pub copy: Option<Copy>,
}

/// `recover-resolve`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// The agent's name.
    pub host: String,
    /// The LPAR.
    pub lpar: String,
    /// Whether the copy was kept (else removed).
    pub kept: bool,
}

/// `receive-shutdown`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShutdownReceived {
    /// The destination's migration id.
    pub migration: u64,
    /// The LPAR's state there.
    pub state: LparState,
    /// What the switchover did (WWPNs, MACs, vfcIDs): the engine's
    /// `SwitchoverOutcome`.
    pub switchover: Value,
}

/// A logical FC port's WWPN pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WwpnPair {
    /// The port.
    pub port: usize,
    /// Its WWPN.
    pub wwpn: String,
    /// Its migration WWPN.
    pub migration_wwpn: String,
}

/// `rollback-wwn`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WwnRolledBack {
    /// The LPAR.
    pub lpar: String,
    /// Its state now.
    pub state: LparState,
    /// Its FC ports' configured WWPN pairs, given back.
    pub fc_ports: Vec<WwpnPair>,
}

/// Version of [`AgentBackup`] this release writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

/// `backup`: an agent's configuration (the manual's "HVM configuration"):
/// every LPAR's definition, state and assigned vfcIDs. Guest memory is not
/// part of it (a restored LPAR starts afresh, as after reactivating the
/// HVM); neither is the migration history, which is the management
/// side's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentBackup {
    /// [`BACKUP_FORMAT`].
    pub format: u32,
    /// The agent it was taken on (a backup restores on that host only).
    pub host: String,
    /// When it was taken, seconds since the Unix epoch.
    pub taken_unix_s: u64,
    /// Every LPAR of the host, by name.
    pub lpars: Vec<BackupLpar>,
}

/// One LPAR of an [`AgentBackup`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupLpar {
    /// Its name.
    pub name: String,
    /// Its state when backed up.
    pub state: LparState,
    /// Its definition.
    pub config: crate::partition::LparConfig,
    /// The vfcIDs a switchover gave its FC ports here, in port order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vfc_ids: Vec<u16>,
}

/// `restore`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Restored {
    /// The agent's name.
    pub host: String,
    /// When the restored backup was taken.
    pub taken_unix_s: u64,
    /// The LPARs now defined (all deactivated), by name.
    pub lpars: Vec<String>,
    /// Defined afresh from the backup (absent, or defined differently).
    pub redefined: Vec<String>,
    /// Deleted: not in the backup.
    pub removed: Vec<String>,
}

/// `wwn-status`: the manual's WWN Status List.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WwnStatusList {
    /// The agent's name.
    pub host: String,
    /// Every LPAR with WWNs to roll back (state `wwn-rollback-pending`),
    /// by name; empty when migrations may leave this host.
    pub lpars: Vec<WwnStatus>,
}

/// One row of the WWN Status List.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WwnStatus {
    /// The LPAR.
    pub lpar: String,
    /// Whether its guest runs (here, on the source of the failed migration).
    pub running: bool,
    /// Its FC ports' WWPN pairs, which `rollback-wwn` gives back.
    pub fc_ports: Vec<WwpnPair>,
}

/// A validation item's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The item holds.
    Pass,
    /// It does not; `error` says what to change.
    Fail,
    /// It does not apply (in this mode).
    Skip,
    /// It holds, but the manual warns of what was found (the migration
    /// may be slow or time out); never refuses.
    Warn,
}

/// One item of the validation checklist as found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The item's name (`agent::validation`'s table).
    pub item: String,
    /// The side that checked it.
    pub side: Side,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// The values found (and, for a failure, what to change: see `error`).
    pub detail: String,
    /// A failure's EMG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Emg>,
}

/// What one connectivity test measured (`connectivity-test`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connectivity {
    /// The source's path name.
    pub source_path: String,
    /// The source's path address.
    pub source_addr: String,
    /// The destination agent's name.
    pub destination_agent: String,
    /// The destination's path name.
    pub destination_path: String,
    /// The destination's path address.
    pub destination_addr: String,
    /// Streams used.
    pub streams: usize,
    /// Shortest round trip, ms.
    pub rtt_min_ms: f64,
    /// Mean round trip, ms.
    pub rtt_avg_ms: f64,
    /// Payload the destination confirmed.
    pub bytes: u64,
    /// How long the payload took.
    pub seconds: f64,
    /// Goodput, bits/s.
    pub bits_per_s: f64,
}

/// `validate`: every item of both agents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// The LPAR.
    pub lpar: String,
    /// The mode validated for.
    pub mode: MigrationMode,
    /// The source agent's name.
    pub source: String,
    /// The destination agent's name.
    pub destination: String,
    /// Whether every item passed (or was skipped).
    pub passed: bool,
    /// The items, source's first.
    pub checks: Vec<Check>,
    /// The connectivity test the bandwidth item used (live mode).
    #[serde(default)]
    pub connectivity: Option<Connectivity>,
}

/// `validate-incoming`: the destination's facts and items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncomingChecks {
    /// The destination's facts.
    pub host: HostFacts,
    /// Its items.
    pub checks: Vec<Check>,
}

/// `rehearse-incoming`: the placeholder defined and deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placeholder {
    /// The destination agent's name.
    pub host: String,
    /// The LPAR.
    pub lpar: String,
    /// The memory reserved.
    pub memory_bytes: u64,
    /// How long defining it took, ms.
    pub define_ms: f64,
    /// How long deleting it took, ms.
    pub release_ms: f64,
    /// Whether it is gone again.
    pub released: bool,
}

/// `rehearse`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rehearsal {
    /// Whether validation passed.
    pub passed: bool,
    /// The validation.
    pub validation: ValidationReport,
    /// The placeholder step (absent when validation failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<Placeholder>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_status_says_report_null_and_the_list_leaves_it_out() {
        let s = MigrationStatus {
            migration: 1,
            lpar: "l".into(),
            side: Side::Source,
            peer: "p".into(),
            stage: 0x4050,
            stage_text: "t".into(),
            round: 0,
            memory_bytes: 1,
            remaining_bytes: 1,
            rate_bytes_per_s: 0.0,
            throttle_percent: 0,
            timeout_s: 900,
            error: None,
            report: Some(None),
        };
        let one = serde_json::to_value(Status::One(Box::new(s.clone()))).unwrap();
        assert!(one.get("report").is_some_and(Value::is_null), "{one}");
        let all = Status::All {
            migrations: vec![MigrationStatus { report: None, ..s }],
        };
        let all = serde_json::to_value(all).unwrap();
        assert!(all["migrations"][0].get("report").is_none(), "{all}");
        assert!(matches!(
            serde_json::from_value::<Status>(one).unwrap(),
            Status::One(_)
        ));
        assert!(matches!(
            serde_json::from_value::<Status>(all).unwrap(),
            Status::All { .. }
        ));
    }
}
