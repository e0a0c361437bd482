//! What a migration writes into the LPAR's history (`agent::history`): its
//! key and both ends when it starts, the records that came with an
//! incoming LPAR, and its record when it ends.

use super::Migration;
use crate::agent::Agent;
use crate::agent::history::Incoming;
use crate::control::{HistoryRecord as Record, MigrationMode, Side, reply};
use crate::emg::Emg;
use serde_json::Value;

impl Agent {
    /// A source migration to `to` in `mode` starts: its key and both ends.
    pub(in crate::agent) fn note_source(&self, m: &Migration, to: &str, mode: MigrationMode) {
        let mut p = m.history.lock().unwrap();
        p.mode = mode;
        // Migration ids restart with the agent: the start time keeps the
        // key unique across restarts.
        p.key = format!("{}/{}/{}", self.config.name, m.id, p.started_ns);
        p.source_agent = self.config.name.clone();
        p.source_address = self.advertised.get().cloned();
        p.destination_agent = to.to_string();
        p.destination_address = Some(to.to_string());
    }

    /// An incoming live migration was prepared (reply `prepared`): the
    /// source's key and address, and the LPAR's records to keep once it is
    /// ours.
    pub(in crate::agent) fn note_incoming(
        &self,
        prepared: &reply::IncomingPrepared,
        incoming: Incoming,
    ) {
        let Some(m) = self
            .migrations
            .lock()
            .unwrap()
            .get(&prepared.migration)
            .cloned()
        else {
            return;
        };
        self.note_incoming_to(&m, MigrationMode::Live, incoming);
    }

    /// Incoming migration `m` in `mode`: as [`Self::note_incoming`].
    pub(in crate::agent) fn note_incoming_to(
        &self,
        m: &Migration,
        mode: MigrationMode,
        Incoming {
            source_agent,
            source_migration,
            source_address,
            key,
            imported,
        }: Incoming,
    ) {
        let mut p = m.history.lock().unwrap();
        p.mode = mode;
        p.key = key.unwrap_or_else(|| format!("{source_agent}/{source_migration}"));
        p.source_agent = source_agent;
        p.source_address = source_address;
        p.destination_agent = self.config.name.clone();
        p.destination_address = self.advertised.get().cloned();
        p.imported = imported;
    }

    /// Appends the record of `m` (and, for an LPAR now ours, the records
    /// that came with it) before the outcome is published, so a client
    /// that saw it finds it in `history`. A failure to record is logged:
    /// the migration's outcome stands. Returns the record to send to the
    /// destination (a completed source migration).
    pub(in crate::agent) fn record_history(
        &self,
        m: &Migration,
        result: &Result<Value, Emg>,
    ) -> Option<Record> {
        let p = m.history.lock().unwrap().clone();
        let record = p.finish(&m.lpar, m.side, &self.config.name, result);
        let h = self.history();
        let mut records = Vec::new();
        if result.is_ok() && m.side == Side::Destination {
            match h.new_records(p.imported) {
                Ok(r) => records = r,
                Err(e) => log::warn!("the history that came with '{}' is lost: {e}", m.lpar),
            }
        }
        records.push(record.clone());
        if let Err(e) = h.append(&records) {
            log::error!(
                "migration {} of '{}' is not in the history: {e}",
                m.id,
                m.lpar
            );
        }
        (result.is_ok() && m.side == Side::Source).then_some(record)
    }
}
