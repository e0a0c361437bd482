//! The events of the management protocol: what an agent tells every
//! authenticated connection, between replies, about the migrations it runs.
//!
//! ```text
//! {"event":"MIGRATION_STAGE","data":{"migration","lpar","stage","text"},"timestamp_ns"}
//! {"event":"MIGRATION_PROGRESS","data":{"migration","lpar","round","memory_bytes",
//!          "remaining_bytes","rate_bytes_per_s","throttle_percent"},"timestamp_ns"}
//! {"event":"MIGRATION_COMPLETED","data":{"migration","lpar","report"},"timestamp_ns"}
//! {"event":"MIGRATION_FAILED","data":{"migration","lpar","error"},"timestamp_ns"}
//! ```
//!
//! Each names the migration by this agent's id; `timestamp_ns` (Unix epoch)
//! is added when the event is encoded.

use crate::emg::Emg;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An event, typed by its name; its fields are the event's `data`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    /// The migration entered `stage` (a code of `engine::stage`).
    MigrationStage {
        /// The migration's id on the agent that sends the event.
        migration: u64,
        /// The LPAR.
        lpar: String,
        /// The stage code.
        stage: u16,
        /// The stage's text.
        text: String,
    },
    /// After each pre-copy round (stage 0x4050).
    MigrationProgress {
        /// The migration's id on the agent that sends the event.
        migration: u64,
        /// The LPAR.
        lpar: String,
        /// The round just finished.
        round: u32,
        /// The LPAR's memory.
        memory_bytes: u64,
        /// Dirty memory still to send.
        remaining_bytes: u64,
        /// Transfer rate over the last round.
        rate_bytes_per_s: f64,
        /// The vCPU throttle.
        throttle_percent: u8,
    },
    /// The migration completed.
    MigrationCompleted {
        /// The migration's id on the agent that sends the event.
        migration: u64,
        /// The LPAR.
        lpar: String,
        /// The migration report (the engine's, as JSON).
        report: Value,
    },
    /// The migration failed.
    MigrationFailed {
        /// The migration's id on the agent that sends the event.
        migration: u64,
        /// The LPAR.
        lpar: String,
        /// Why (possibly raised by the other agent).
        error: Emg,
    },
}

impl Event {
    /// The migration the event belongs to.
    pub fn migration(&self) -> u64 {
        match self {
            Event::MigrationStage { migration, .. }
            | Event::MigrationProgress { migration, .. }
            | Event::MigrationCompleted { migration, .. }
            | Event::MigrationFailed { migration, .. } => *migration,
        }
    }

    /// The event as one line (without the newline), stamped now.
    pub fn encode(&self) -> String {
        let mut v = serde_json::to_value(self).expect("events serialise");
        v["timestamp_ns"] = json!(crate::engine::wall_clock_ns());
        v.to_string()
    }
}
