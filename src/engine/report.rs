//! What a migration reports: per round, totals, and the suspension with its
//! parts.

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct RoundReport {
    pub round: u32,
    pub pages: u64,
    pub wire_bytes: u64,
    /// Pages sent as zero, raw, LZ4 and delta.
    pub by_encoding: [u64; 4],
    pub duration_ms: f64,
    /// Pages the guest dirtied per second while this round was sent.
    pub dirty_rate: f64,
    /// Wire bytes per second.
    pub bandwidth: f64,
    /// Throttle applied to the vCPUs during the round, percent.
    pub throttle: u8,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SuspensionReport {
    /// Last source vCPU stopped → first destination vCPU ran.
    pub total_ms: f64,
    /// Harvesting and sending the final dirty pages, with the device state
    /// captured meanwhile (and sent too, when it leads).
    pub final_copy_ms: f64,
    pub final_pages: u64,
    /// Writing what follows the final pages: Suspended, and the device
    /// state too when it does not lead.
    pub device_state_ms: f64,
    /// The device state went ahead of the final pages on stream 0, so the
    /// destination loaded it while they landed (a version-3 destination).
    pub device_state_first: bool,
    /// Device-state bytes sent inside the suspension: the whole encoded
    /// state, or (version 4, a partition that can read its devices while
    /// the guest runs) only the runs that differ from the base sent before.
    pub device_state_bytes: u64,
    /// Device-state bytes sent before the pause as that base (0: none).
    pub device_state_base_bytes: u64,
    /// Device state sent until the destination said Ready: the final pages
    /// and the device state still in flight (on a slow path, most of it),
    /// the destination loading the state and comparing digests (its own
    /// report times that part alone), and Ready's way back.
    pub load_verify_ms: f64,
    /// Commit until the first destination vCPU ran.
    pub resume_ms: f64,
    /// What the engine predicted for it when it decided to suspend.
    pub predicted_ms: f64,
    /// What that prediction was made of (the parts add up to it).
    pub predicted_parts: PredictedParts,
}

/// The parts of a predicted suspension, as measured before the pause.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PredictedParts {
    /// The final pages and the device state at the path's measured
    /// bandwidth.
    pub copy_ms: f64,
    /// Two round trips on stream 0 (Suspended → Ready, Commit → Running).
    pub round_trips_ms: f64,
    /// Capturing and encoding the device state here.
    pub state_capture_ms: f64,
    /// Harvesting the dirty log, as the last harvest took.
    pub harvest_ms: f64,
    /// The destination loading the device state, as its rehearsal took
    /// (version 5 destinations; 0 otherwise).
    pub destination_load_ms: f64,
    /// Handing the final round to the stream workers and collecting its
    /// end, as the cheapest round showed.
    pub hand_off_ms: f64,
}

impl PredictedParts {
    /// The parts added up: the prediction they make.
    pub fn total_ms(&self) -> f64 {
        self.copy_ms
            + self.round_trips_ms
            + self.state_capture_ms
            + self.harvest_ms
            + self.destination_load_ms
            + self.hand_off_ms
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MigrationReport {
    pub rounds: Vec<RoundReport>,
    pub total_ms: f64,
    pub bytes_sent: u64,
    pub memory_bytes: u64,
    /// Highest throttle applied, percent.
    pub throttle: u8,
    /// Guest memory populated when the migration started (round 0), bytes.
    pub populated_bytes: u64,
    /// Pages per second the guest itself wrote while it was migrated
    /// (throttled or not): what the migration cost it. `None` when the
    /// guest does not publish its write count.
    pub guest_write_rate: Option<f64>,
    pub suspension: SuspensionReport,
    /// The destination's image digest matched the source's, and the
    /// source's memory after the pause held nothing the digest missed
    /// (`memory_audit`).
    pub verified: bool,
    /// The source's own memory, compared after Commit with the image it
    /// sent: a stale page there is a write the dirty log missed. `None`
    /// when the audit could not run (its error is logged).
    pub memory_audit: Option<super::digest::MemoryAudit>,
    /// The identities this side's LPAR slot took over from the destination
    /// slot in the exchange (Table 1-2: WWPN, migration WWPN and MAC are
    /// "Exchanged"); `None` when the destination did not send them.
    pub slot_identities: Option<SlotIdentities>,
    /// How the memory crossed the migration path: `tls1.3
    /// (TLS13_AES_128_GCM_SHA256)` or `insecure-plaintext`.
    pub encryption: String,
}

/// A slot's exchanged identities, in port order, as printed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SlotIdentities {
    pub wwpns: Vec<String>,
    pub migration_wwpns: Vec<String>,
    pub macs: Vec<String>,
}

impl From<&crate::state::Identities> for SlotIdentities {
    fn from(ids: &crate::state::Identities) -> Self {
        SlotIdentities {
            wwpns: ids.hbas.iter().map(|h| h.wwpn.to_string()).collect(),
            migration_wwpns: ids
                .hbas
                .iter()
                .map(|h| h.migration_wwpn.to_string())
                .collect(),
            macs: ids.nics.iter().map(|n| n.mac.to_string()).collect(),
        }
    }
}
