//! The migration history of every LPAR: one record per migration and
//! side, appended to `<state dir>/history.jsonl` as it ends.
//!
//! ```text
//! <state dir>/history.jsonl   one JSON record per line, appended with
//!                             O_APPEND + fsync (a crash loses at most the
//!                             line being written; a torn last line is
//!                             skipped when read)
//! record {"key":"<source agent>/<source migration>/<start ns>","lpar","mode":"live"|"shutdown",
//!         "side":"source"|"destination","recorded_by",
//!         "source_agent","source_address","destination_agent",
//!         "destination_address","started_ns","ended_ns",
//!         "outcome":"completed"|"failed"|"cancelled","error":<Emg>|null,
//!         "suspension_ms":<f64>|null,
//!         "source_number":<u32>|null,"destination_number":<u32>|null}
//! ```
//!
//! Both agents record a migration under the same key. The history travels
//! with the LPAR: the source sends the LPAR's records in `prepare-incoming`
//! and the destination keeps them once the LPAR is its own, so the agent
//! that hosts an LPAR can answer for all its past moves. `history` merges
//! the two sides' records of a migration into one (the source's, which has
//! the report, first). `moverctl return` reads the newest completed
//! migration into this host to find where the LPAR came from.

use crate::control::{
    HistoryOutcome as Outcome, HistoryRecord as Record, MigrationMode, Side, reply,
};
use crate::emg::{Emg, Module, phase};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How many of an LPAR's records travel with it in `prepare-incoming`
/// (the newest), so the request stays far under the 1 MiB line cap.
pub const MAX_SHIPPED: usize = 100;

/// What a migration knows of its own record before it ends.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    pub key: String,
    /// `live` or `shutdown`.
    pub mode: MigrationMode,
    pub source_agent: String,
    pub source_address: Option<String>,
    pub destination_agent: String,
    pub destination_address: Option<String>,
    pub started_ns: u64,
    /// The LPAR's number on the source host, when this side knows it.
    pub source_number: Option<u32>,
    /// The LPAR's number on the destination host, when this side knows it.
    pub destination_number: Option<u32>,
    /// Records that came with an incoming LPAR, kept once it is ours.
    pub imported: Vec<Record>,
}

impl Pending {
    /// Completes the record from the migration's result.
    pub fn finish(
        &self,
        lpar: &str,
        side: Side,
        recorded_by: &str,
        result: &Result<Value, Emg>,
    ) -> Record {
        let mut destination_agent = self.destination_agent.clone();
        let mut suspension_ms = None;
        if let Ok(report) = result {
            if let Some(d) = report["destination_agent"].as_str() {
                destination_agent = d.to_string();
            }
            suspension_ms = report["source"]["suspension"]["total_ms"].as_f64();
        }
        Record {
            key: self.key.clone(),
            lpar: lpar.to_string(),
            mode: self.mode,
            side,
            recorded_by: recorded_by.to_string(),
            source_agent: self.source_agent.clone(),
            source_address: self.source_address.clone(),
            destination_agent,
            destination_address: self.destination_address.clone(),
            started_ns: self.started_ns,
            ended_ns: crate::engine::wall_clock_ns(),
            outcome: Outcome::of(result),
            error: result.as_ref().err().cloned(),
            suspension_ms,
            source_number: self.source_number,
            destination_number: self.destination_number,
        }
    }
}

fn history_error(cause: u32, message: String) -> Emg {
    Emg::new(
        Module::Management,
        phase::INFORMATION,
        cause,
        message,
        "Check that the state directory exists, is writable and has room (moverd --state-dir).",
    )
}

/// The history file of one agent.
pub struct History {
    file: PathBuf,
    /// Serialises appends and reads.
    lock: Mutex<()>,
}

impl History {
    pub fn new(state_dir: &Path) -> History {
        History {
            file: state_dir.join("history.jsonl"),
            lock: Mutex::new(()),
        }
    }

    /// Appends `records` durably (one write and one fsync for the lot).
    pub fn append(&self, records: &[Record]) -> Result<(), Emg> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).expect("records serialise"));
            text.push('\n');
        }
        let _g = self.lock.lock().unwrap();
        let created = !self.file.exists();
        let mut f = crate::partition::host::private_file()
            .create(true)
            .append(true)
            .open(&self.file)
            .map_err(|e| history_error(0x25, format!("{}: {e}", self.file.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|e| {
                history_error(
                    0x26,
                    format!("cannot append to {}: {e}", self.file.display()),
                )
            })?;
        if created {
            // The new directory entry must survive a crash too.
            if let Some(dir) = self.file.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
        }
        Ok(())
    }

    /// Calls `each` with every line of the file, read as a stream so that
    /// a long history never sits in memory whole.
    fn scan(&self, mut each: impl FnMut(&str)) -> Result<(), Emg> {
        use std::io::BufRead;
        let _g = self.lock.lock().unwrap();
        let f = match std::fs::File::open(&self.file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(history_error(0x27, format!("{}: {e}", self.file.display()))),
        };
        for line in std::io::BufReader::new(f).lines() {
            let line =
                line.map_err(|e| history_error(0x27, format!("{}: {e}", self.file.display())))?;
            if !line.trim().is_empty() {
                each(&line);
            }
        }
        Ok(())
    }

    /// The records of `lpar` (every LPAR's for `None`) in file order, the
    /// newest `keep` at most. Lines that do not parse (a torn last line
    /// after a crash) are skipped with a warning.
    pub fn records_of(&self, lpar: Option<&str>, keep: usize) -> Result<Vec<Record>, Emg> {
        let mut out = std::collections::VecDeque::new();
        self.scan(|line| match serde_json::from_str::<Head>(line) {
            Ok(h) if lpar.is_none_or(|l| h.lpar == l) => match serde_json::from_str::<Record>(line)
            {
                Ok(r) => {
                    if out.len() == keep {
                        out.pop_front();
                    }
                    out.push_back(r);
                }
                Err(e) => log::warn!("history: skipping a record that does not parse ({e})"),
            },
            Ok(_) => {}
            Err(e) => log::warn!("history: skipping a line that does not parse ({e})"),
        })?;
        Ok(out.into())
    }

    /// The migrations of `lpar` (of every LPAR for `None`), one per key
    /// (the source side's record where both are held), oldest first.
    pub fn of(&self, lpar: Option<&str>) -> Result<Vec<Record>, Emg> {
        Ok(merge(self.records_of(lpar, usize::MAX)?.into_iter()))
    }

    /// Records to import with an incoming LPAR: those not already held.
    pub fn new_records(&self, incoming: Vec<Record>) -> Result<Vec<Record>, Emg> {
        let mut seen = std::collections::HashSet::new();
        self.scan(|line| {
            if let Ok(h) = serde_json::from_str::<Head>(line)
                && incoming.iter().any(|r| r.lpar == h.lpar)
            {
                seen.insert((h.key, h.recorded_by));
            }
        })?;
        Ok(incoming
            .into_iter()
            .filter(|r| !seen.contains(&(r.key.clone(), r.recorded_by.clone())))
            .collect())
    }
}

/// What `scan` reads of every line before deciding to parse it whole.
#[derive(Deserialize)]
struct Head {
    key: String,
    lpar: String,
    recorded_by: String,
}

/// One record per key, the source side's preferred, oldest first.
pub fn merge(records: impl Iterator<Item = Record>) -> Vec<Record> {
    let mut by_key: BTreeMap<String, Record> = BTreeMap::new();
    for mut r in records {
        match by_key.get_mut(&r.key) {
            // Each side knows the LPAR's number on its own host: the kept
            // record takes the other's.
            Some(held) if held.side == Side::Source => {
                held.source_number = held.source_number.or(r.source_number);
                held.destination_number = held.destination_number.or(r.destination_number);
            }
            held => {
                if let Some(held) = held {
                    r.source_number = r.source_number.or(held.source_number);
                    r.destination_number = r.destination_number.or(held.destination_number);
                }
                by_key.insert(r.key.clone(), r);
            }
        }
    }
    let mut out: Vec<Record> = by_key.into_values().collect();
    out.sort_by_key(|r| (r.started_ns, r.ended_ns));
    out
}

/// What the source tells the destination of an incoming migration's
/// history: its key and address, and the LPAR's records.
pub struct Incoming {
    pub source_agent: String,
    pub source_migration: u64,
    pub source_address: Option<String>,
    pub key: Option<String>,
    pub imported: Vec<Record>,
}

impl super::Agent {
    pub(super) fn history(&self) -> History {
        History::new(&self.config.state_dir)
    }

    /// The newest records of `lpar`, to send with it.
    pub(super) fn history_to_ship(&self, lpar: &str) -> Vec<Record> {
        match self.history().records_of(Some(lpar), MAX_SHIPPED) {
            Ok(mine) => mine,
            Err(e) => {
                log::warn!("the history of '{lpar}' stays here: {e}");
                Vec::new()
            }
        }
    }

    /// Gives the destination the source's record (it has the suspension
    /// time), best effort: the migration has completed whatever happens.
    pub(super) fn send_record(&self, peer: &str, record: Record) {
        let sent = crate::control::Address::parse(peer)
            .map_err(|m| {
                Emg::new(
                    Module::MoverSource,
                    phase::INFORMATION,
                    0x28,
                    m,
                    "Give the destination agent as host:port or a socket path.",
                )
            })
            .and_then(|a| self.open_peer(&a, Module::MoverSource))
            .and_then(|mut c| {
                c.request(crate::control::request::HistoryRecord {
                    records: vec![record],
                })
            });
        if let Err(e) = sent {
            log::warn!("the destination {peer} keeps its own record only: {e}");
        }
    }

    /// `history-record`: keeps the records not already held.
    pub(super) fn keep_records(&self, records: Vec<Record>) -> Result<reply::Kept, Emg> {
        let h = self.history();
        let new = h.new_records(records)?;
        h.append(&new)?;
        Ok(reply::Kept { kept: new.len() })
    }

    /// `history`: the migrations of `lpar` this agent knows.
    pub(super) fn history_of(&self, lpar: Option<&str>) -> Result<reply::History, Emg> {
        Ok(reply::History {
            host: self.config.name.clone(),
            lpar: lpar.map(str::to_string),
            migrations: self.history().of(lpar)?,
        })
    }

    /// `host-resources`: what this host has and what is free, for
    /// `moverctl migrate --auto-destination`.
    pub(super) fn host_resources(&self) -> reply::HostResources {
        let inv = self.inventory.lock().unwrap();
        let r = &self.config.resources;
        let used = inv.memory_in_use();
        reply::HostResources {
            host: self.config.name.clone(),
            cpus: r.cpus,
            memory_bytes: r.memory,
            memory_in_use_bytes: used,
            memory_free_bytes: r.memory.saturating_sub(used),
            lpars: inv.names().len(),
        }
    }

    /// `host-info`: [`Self::host_resources`] with the host's build,
    /// backend, identity and migration paths, and the migrations not yet
    /// in a final stage (busy).
    pub(super) fn host_info(&self) -> reply::HostInfo {
        let r = self.host_resources();
        let facts = self.config.facts();
        let migrating: Vec<u64> = self
            .migrations
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| {
                !crate::engine::stage::Stage::from_code(m.status().stage)
                    .is_some_and(crate::engine::stage::Stage::is_final)
            })
            .map(|(id, _)| *id)
            .collect();
        reply::HostInfo {
            host: r.host,
            build: facts.build,
            backend: facts.backend,
            identity: facts.identity,
            cpus: r.cpus,
            memory_bytes: r.memory_bytes,
            memory_in_use_bytes: r.memory_in_use_bytes,
            memory_free_bytes: r.memory_free_bytes,
            lpars: r.lpars,
            paths: facts.paths,
            busy: !migrating.is_empty(),
            migrating,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pending(key: &str, started: u64) -> Pending {
        Pending {
            key: key.into(),
            mode: MigrationMode::Live,
            source_agent: "A".into(),
            source_address: Some("127.0.0.1:1".into()),
            destination_agent: "127.0.0.1:2".into(),
            destination_address: Some("127.0.0.1:2".into()),
            started_ns: started,
            source_number: None,
            destination_number: None,
            imported: Vec::new(),
        }
    }

    #[test]
    fn records_survive_reopening_and_merge_by_key_preferring_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path());
        let ok = Ok(json!({"destination_agent": "B", "source": {"suspension": {"total_ms": 1.5}}}));
        let mut p = pending("A/1", 10);
        p.source_number = Some(3);
        let src = p.finish("web1", Side::Source, "A", &ok);
        let mut p = pending("A/1", 11);
        p.destination_number = Some(1);
        let dst = p.finish("web1", Side::Destination, "B", &Ok(json!({})));
        let cancelled = Err(Emg::new(Module::MoverSource, 0, 1, "m", "a").reason(0x20));
        let other = pending("A/2", 20).finish("db1", Side::Source, "A", &cancelled);
        h.append(&[dst, src.clone()]).unwrap();
        h.append(std::slice::from_ref(&other)).unwrap();
        // A torn line (crash mid-append) is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("history.jsonl"))
            .unwrap()
            .write_all(b"{\"key\":\"A/3\",\"lp")
            .unwrap();
        let h = History::new(dir.path());
        assert_eq!(h.records_of(Some("web1"), 9).unwrap().len(), 2);
        assert_eq!(h.records_of(Some("web1"), 1).unwrap(), vec![src.clone()]);
        let web = h.of(Some("web1")).unwrap();
        // The source's record, with the LPAR number each side knew.
        assert_eq!(web.len(), 1);
        assert_eq!((web[0].side, web[0].source_number), (Side::Source, Some(3)));
        assert_eq!(web[0].destination_number, Some(1));
        assert_eq!(web[0].key, src.key);
        assert_eq!(web[0].destination_agent, "B");
        assert_eq!(web[0].suspension_ms, Some(1.5));
        assert_eq!(h.of(Some("db1")).unwrap()[0].outcome, Outcome::Cancelled);
        // Without an LPAR: every migration, each once, of both LPARs.
        let all: Vec<String> = h.of(None).unwrap().into_iter().map(|r| r.lpar).collect();
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all.contains(&"web1".to_string()) && all.contains(&"db1".to_string()));
        // Importing what is already held adds nothing.
        assert!(h.new_records(vec![src, other]).unwrap().is_empty());
    }
}
