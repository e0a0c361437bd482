//! The recovery journal: one file per migration and side, appended and
//! fsynced at every stage transition, so that an agent that died in the
//! middle (or its peer) can tell afterwards whether ownership passed.
//!
//! ```text
//! <state dir>/journal/<lpar>/<start unix ms>-<migration id>-<side>.jsonl
//!   {"record":"begin","lpar","side","migration","peer","mode":"live"|"shutdown","t_ms"}
//!   {"record":"peer","migration"}   the other side's migration id, once known
//!   {"record":"stage","stage":16464,"text":"(SRC) Transferring Memory Data","t_ms"}
//!   …
//!   {"record":"end","outcome":"completed"|"failed"|"recovered","resumed_here":bool,"t_ms"}
//! ```
//!
//! The commit rule (write-ahead): the source records `0x4080 Switching
//! Over` *before* it sends Commit, and the destination records `0x5080
//! Resuming LPAR` when Commit arrives, before it resumes. So ownership may
//! have passed only if the source's journal reached `0x4080` without a later
//! `failed` end that resumed the LPAR at the source, and it certainly passed
//! if the destination's journal reached `0x5080`. A journal without an
//! `end` record is an unfinished migration: on restart its LPAR needs
//! recovery.
//!
//! Lines are bounded ([`MAX_LINE`]) and a journal is read at most
//! [`MAX_FILE`] bytes: a torn last line (a crash mid-append) is ignored
//! when read, and cut off (and logged) before anything is appended to a
//! reopened journal, so that the new record starts a line of its own.
//! Journal files are private to the agent (0600, directories 0700), and
//! an LPAR name becomes a directory only once it passed
//! [`super::inventory::valid_name`].

use crate::control::{JournalSummary as Summary, MigrationMode, Side};
use crate::emg::{Emg, Module};
use crate::engine::stage::Stage;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The longest journal line read back (records are a few hundred bytes).
pub const MAX_LINE: usize = 4096;
/// The most of one journal read back (a migration writes some 20 lines).
pub const MAX_FILE: u64 = 1 << 20;

/// Journals kept per LPAR: older finished ones are deleted when a new
/// migration of it starts, so months of migrations do not fill the state
/// directory (the history keeps the record).
pub const KEPT_PER_LPAR: usize = 16;

/// `phase` of the manual's "Reading recovery file has failed" (Recovery).
pub const PHASE_RECOVERY_FILE: u16 = 0x0031;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    Begin {
        lpar: String,
        side: Side,
        migration: u64,
        peer: String,
        #[serde(default)]
        mode: MigrationMode,
        t_ms: u64,
    },
    Peer {
        migration: u64,
    },
    Stage {
        stage: u16,
        text: String,
        t_ms: u64,
    },
    End {
        outcome: String,
        resumed_here: bool,
        t_ms: u64,
    },
}

fn now_ms() -> u64 {
    crate::engine::wall_clock_ns() / 1_000_000
}

fn journal_error(cause: u32, message: String) -> Emg {
    Emg::new(
        Module::Recovery,
        PHASE_RECOVERY_FILE,
        cause,
        format!("Reading recovery file has failed. {message}"),
        "Check that the state directory is writable and has room (moverd --state-dir), \
         then retry the recovery.",
    )
}

/// The journal directory of `lpar` under `state_dir` (a name that is no
/// LPAR name is refused: it could lead out of the state directory).
pub fn dir_for(state_dir: &Path, lpar: &str) -> Result<PathBuf, Emg> {
    super::inventory::valid_name(lpar)?;
    Ok(state_dir.join("journal").join(lpar))
}

/// One migration's journal, open for appending.
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Creates the journal of migration `migration` of `lpar` and writes its
    /// `begin` record durably (the directory entry included).
    pub fn create(
        state_dir: &Path,
        lpar: &str,
        side: Side,
        migration: u64,
        peer: &str,
        mode: MigrationMode,
    ) -> Result<Journal, Emg> {
        let dir = dir_for(state_dir, lpar)?;
        crate::partition::host::private_dir_all(&dir)
            .map_err(|e| journal_error(0x16, format!("cannot create {}: {e}", dir.display())))?;
        let t_ms = now_ms();
        let side_name = side.label();
        prune(&dir);
        let path = dir.join(format!("{t_ms:013}-{migration}-{side_name}.jsonl"));
        let file = crate::partition::host::private_file()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| journal_error(0x16, format!("cannot create {}: {e}", path.display())))?;
        let mut j = Journal { file, path };
        j.append(&Record::Begin {
            lpar: lpar.to_string(),
            side,
            migration,
            peer: peer.to_string(),
            mode,
            t_ms,
        })?;
        // The new file's name must survive a crash too.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(j)
    }

    /// Reopens an existing journal to append (recovery closes it). A torn
    /// last record (a crash mid-append) is cut off first: appended to, it
    /// would hide the new record too.
    pub fn reopen(path: &Path) -> Result<Journal, Emg> {
        let failed =
            |e: std::io::Error| journal_error(0x23, format!("cannot open {}: {e}", path.display()));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(failed)?;
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&file, MAX_FILE), &mut text)
            .map_err(failed)?;
        let whole = whole_records(&text);
        if whole < text.len() {
            log::warn!(
                "journal {}: cut a torn last record ({} bytes) before appending",
                path.display(),
                text.len() - whole
            );
            file.set_len(whole as u64).map_err(failed)?;
            file.sync_data().map_err(failed)?;
        }
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` and fsyncs before returning.
    pub fn append(&mut self, record: &Record) -> Result<(), Emg> {
        let mut line = serde_json::to_string(record).expect("records serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| {
                journal_error(
                    0x23,
                    format!("cannot append to {}: {e}", self.path.display()),
                )
            })
    }

    pub fn stage(&mut self, stage: Stage) -> Result<(), Emg> {
        self.append(&Record::Stage {
            stage: stage.code(),
            text: stage.text().to_string(),
            t_ms: now_ms(),
        })
    }

    pub fn end(&mut self, outcome: &str, resumed_here: bool) -> Result<(), Emg> {
        self.append(&Record::End {
            outcome: outcome.to_string(),
            resumed_here,
            t_ms: now_ms(),
        })
    }
}

/// The length of `text`'s leading run of whole records: lines that end in
/// a newline and parse. [`parse`] reads exactly these records.
pub fn whole_records(text: &[u8]) -> usize {
    let mut whole = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let complete = line.ends_with(b"\n")
            && line.len() <= MAX_LINE + 1
            && serde_json::from_slice::<Record>(&line[..line.len() - 1]).is_ok();
        if !complete {
            break;
        }
        whole += line.len();
    }
    whole
}

/// Parses a journal's text. A torn or malformed line ends the reading
/// (records after it cannot be trusted); a record counts only with its
/// newline (an append returns, and a stage is acted on, only once the
/// newline is written); a journal without `begin` is an error.
pub fn parse(text: &str, path: &Path) -> Result<Summary, Emg> {
    let mut summary: Option<Summary> = None;
    for line in text.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else {
            break;
        };
        if line.len() > MAX_LINE {
            break;
        }
        let Ok(record) = serde_json::from_str::<Record>(line) else {
            break;
        };
        match (record, &mut summary) {
            (
                Record::Begin {
                    lpar,
                    side,
                    migration,
                    peer,
                    mode,
                    ..
                },
                None,
            ) => {
                summary = Some(Summary {
                    lpar,
                    side,
                    migration,
                    peer,
                    mode,
                    peer_migration: None,
                    stages: Vec::new(),
                    outcome: None,
                    resumed_here: false,
                    path: path.to_path_buf(),
                });
            }
            (Record::Stage { stage, .. }, Some(s)) => s.stages.push(stage),
            (Record::Peer { migration }, Some(s)) => s.peer_migration = Some(migration),
            (
                Record::End {
                    outcome,
                    resumed_here,
                    ..
                },
                Some(s),
            ) => {
                s.outcome = Some(outcome);
                s.resumed_here = resumed_here;
            }
            _ => break,
        }
    }
    summary.ok_or_else(|| journal_error(0x16, format!("{} has no begin record", path.display())))
}

/// Deletes the finished journals in `dir` beyond the newest
/// [`KEPT_PER_LPAR`] - 1 (the one about to be created makes it full).
fn prune(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(KEPT_PER_LPAR - 1);
    for p in &names[..excess] {
        if read(p).is_ok_and(|s| s.finished()) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Reads the journal at `path`.
pub fn read(path: &Path) -> Result<Summary, Emg> {
    use std::io::Read;
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(MAX_FILE).read_to_string(&mut text))
        .map_err(|e| journal_error(0x23, format!("cannot read {}: {e}", path.display())))?;
    parse(&text, path)
}

/// The latest journal of `lpar` here, if any.
pub fn latest(state_dir: &Path, lpar: &str) -> Result<Option<Summary>, Emg> {
    let dir = dir_for(state_dir, lpar)?;
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(journal_error(
                0x23,
                format!("cannot list {}: {e}", dir.display()),
            ));
        }
    };
    names.sort();
    match names.last() {
        Some(p) => read(p).map(Some),
        None => Ok(None),
    }
}

/// Every unfinished journal under `state_dir` (the latest per LPAR).
pub fn unfinished(state_dir: &Path) -> Vec<Summary> {
    let Ok(rd) = std::fs::read_dir(state_dir.join("journal")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        match latest(state_dir, &name) {
            Ok(Some(s)) if !s.finished() => out.push(s),
            Ok(_) => {}
            Err(e) => log::warn!("journal of '{name}': {e}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_of(stages: &[Stage], end: Option<bool>, side: Side) -> Summary {
        let dir = std::env::temp_dir().join(format!(
            "lpar-mover-journal-{}-{:?}-{}",
            std::process::id(),
            side,
            stages.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut j = Journal::create(&dir, "l", side, 7, "peer", MigrationMode::Live).unwrap();
        for s in stages {
            j.stage(*s).unwrap();
        }
        if let Some(resumed) = end {
            j.end("failed", resumed).unwrap();
        }
        let s = latest(&dir, "l").unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        s
    }

    #[test]
    fn every_record_is_on_disk_and_read_back() {
        let s = journal_of(
            &[Stage::SrcValidating, Stage::SrcTransferringMemory],
            None,
            Side::Source,
        );
        assert_eq!(s.stages, vec![0x4010, 0x4050]);
        assert!(!s.finished());
        assert_eq!((s.migration, s.peer.as_str()), (7, "peer"));
    }

    #[test]
    fn old_finished_journals_are_pruned() {
        let dir = std::env::temp_dir().join(format!("lpar-mover-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for i in 0..(KEPT_PER_LPAR as u64 + 5) {
            let mut j =
                Journal::create(&dir, "l", Side::Source, i, "p", MigrationMode::Live).unwrap();
            if i != 0 {
                j.end("completed", false).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let n = std::fs::read_dir(dir_for(&dir, "l").unwrap())
            .unwrap()
            .count();
        // The unfinished first one stays, plus the newest KEPT_PER_LPAR.
        assert_eq!(n, KEPT_PER_LPAR + 1);
        assert_eq!(
            latest(&dir, "l").unwrap().unwrap().migration,
            KEPT_PER_LPAR as u64 + 4
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_commit_rule() {
        let src_before = journal_of(&[Stage::SrcTransferringMemory], None, Side::Source);
        let src_commit = journal_of(&[Stage::SrcSwitchingOver], None, Side::Source);
        let src_resumed = journal_of(&[Stage::SrcSwitchingOver], Some(true), Side::Source);
        let dst_loading = journal_of(&[Stage::DstLoadingState], None, Side::Destination);
        let dst_resuming = journal_of(&[Stage::DstResuming], None, Side::Destination);
        let dst_receiving = journal_of(&[Stage::DstReceivingMemory], None, Side::Destination);
        let c = Summary::committed;
        assert_eq!(c(Some(&src_before), Some(&dst_loading)), Some(false));
        assert_eq!(c(Some(&src_commit), Some(&dst_loading)), Some(true));
        assert_eq!(c(Some(&src_resumed), Some(&dst_loading)), Some(false));
        assert_eq!(c(None, Some(&dst_resuming)), Some(true));
        assert_eq!(c(None, Some(&dst_receiving)), Some(false));
        assert_eq!(c(None, Some(&dst_loading)), None);
    }

    #[test]
    fn journals_pair_only_across_sides_with_matching_ids() {
        let p = Path::new("x");
        let begin = |side: &str, id: u64| {
            format!(
                "{{\"record\":\"begin\",\"lpar\":\"l\",\"side\":\"{side}\",\
                 \"migration\":{id},\"peer\":\"p\",\"t_ms\":1}}\n"
            )
        };
        let src = parse(
            &(begin("source", 3) + "{\"record\":\"peer\",\"migration\":9}\n"),
            p,
        )
        .unwrap();
        assert_eq!(
            (src.peer_migration, src.mode),
            (Some(9), MigrationMode::Live)
        );
        let dst = parse(
            &(begin("destination", 9) + "{\"record\":\"peer\",\"migration\":3}\n"),
            p,
        )
        .unwrap();
        let old = parse(&begin("destination", 4), p).unwrap();
        assert!(src.pairs_with(&dst) && dst.pairs_with(&src));
        assert!(!src.pairs_with(&old), "an earlier migration's journal");
        assert!(!src.pairs_with(&src));
    }

    #[test]
    fn a_reopened_journal_cuts_a_torn_record_before_it_appends() {
        let dir = std::env::temp_dir().join(format!("lpar-mover-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut j = Journal::create(&dir, "l", Side::Source, 3, "p", MigrationMode::Live).unwrap();
        j.stage(Stage::SrcTransferringMemory).unwrap();
        let path = j.path().to_path_buf();
        drop(j);
        let whole = std::fs::read(&path).unwrap();
        // A crash in the middle of an append: half a record, no newline.
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"record\":\"stage\",\"stage\":16");
        std::fs::write(&path, &torn).unwrap();
        Journal::reopen(&path)
            .unwrap()
            .end("recovered", false)
            .unwrap();
        let s = read(&path).unwrap();
        assert!(s.finished(), "the end record is read back: {s:?}");
        assert_eq!(s.stages, vec![0x4050]);
        let text = std::fs::read(&path).unwrap();
        assert!(text.starts_with(&whole), "whole records are kept");
        // A record without its newline was never acknowledged: not counted.
        let mut unacked = whole.clone();
        unacked
            .extend_from_slice(b"{\"record\":\"stage\",\"stage\":16512,\"text\":\"t\",\"t_ms\":2}");
        std::fs::write(&path, &unacked).unwrap();
        assert_eq!(read(&path).unwrap().stages, vec![0x4050]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_garbage_is_an_error() {
        let p = Path::new("x");
        let text = "{\"record\":\"begin\",\"lpar\":\"l\",\"side\":\"source\",\"migration\":1,\
                    \"peer\":\"p\",\"t_ms\":1}\n{\"record\":\"stage\",\"stage\":16464,\"text\":\"t\",\"t_ms\":2}\n{\"rec";
        assert_eq!(parse(text, p).unwrap().stages, vec![0x4050]);
        assert!(parse("\u{0}\u{1}garbage", p).is_err());
        assert!(parse("", p).is_err());
    }

    proptest::proptest! {
        /// Cutting a journal to its whole records (as `reopen` does before
        /// it appends) changes nothing `parse` reads.
        #[test]
        fn cutting_to_whole_records_keeps_what_parse_reads(
            stages in proptest::collection::vec(0u16..0x6000, 0..6),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            let mut text = String::from(
                "{\"record\":\"begin\",\"lpar\":\"l\",\"side\":\"source\",\"migration\":1,\
                 \"peer\":\"p\",\"t_ms\":1}\n",
            );
            for s in &stages {
                text.push_str(&format!("{{\"record\":\"stage\",\"stage\":{s},\"text\":\"t\",\"t_ms\":2}}\n"));
            }
            let mut bytes = text.into_bytes();
            bytes.extend_from_slice(&tail);
            let n = whole_records(&bytes);
            proptest::prop_assert!(n <= bytes.len());
            let p = Path::new("x");
            let all = String::from_utf8_lossy(&bytes).into_owned();
            let cut = String::from_utf8_lossy(&bytes[..n]).into_owned();
            proptest::prop_assert_eq!(parse(&all, p).ok(), parse(&cut, p).ok());
        }
    }
}
