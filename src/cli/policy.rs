//! Policy migration: `moverctl policy run <file>` moves LPARs one entry
//! after another, as the manual's policy migration does.
//!
//! ```toml
//! name = "firmware-hvm1"     # optional, shown in the result
//! mode = "live"              # live | shutdown: ONE mode per policy
//! on_failure = "retry"       # retry | skip | end (default end)
//! retries = 2                # with retry: attempts after the first (default 1)
//!
//! [[entry]]                  # run in file order
//! lpar = "web1"
//! to = "hvm2:7400"           # the destination agent
//! from = "hvm1:7400"         # the source agent (default: --agent)
//! mode = "live"              # optional; a mode other than the policy's is refused
//! max_suspend_ms = 20        # optional per-entry migrate options
//! bandwidth = "128MiB"       #   (bytes per second; at least 1 Gbit/s)
//! streams = 4
//! timeout_s = 900
//! ```
//!
//! The client drives the policy, as the manual's management server does:
//! each entry is an ordinary `migrate` sent to its source agent, and the
//! next entry starts only when the agents report the previous one ended.
//! The agents need no notion of a policy and a policy may span any number
//! of hosts.
//!
//! - An entry that fails (refused, or failed during the migration) is
//!   handled by `on_failure`: `retry` runs it again up to `retries` more
//!   times and then ends the policy; `skip` records it and goes on; `end`
//!   stops the policy there.
//! - Stop: SIGINT or SIGTERM, or `moverctl policy stop <file>` (which
//!   leaves `<file>.stop`), never interrupts an entry in progress: the
//!   current entry finishes, then the policy ends with the rest not run. A
//!   second SIGINT exits at once; the agents finish or fail the migration
//!   in progress on their own.
//! - A shutdown-mode policy runs each entry as `migrate --mode shutdown`
//!   (a running guest is shut down first; `timeout_s` is the wait for it;
//!   the LPAR arrives deactivated).
//!
//! Exit codes: 0 every entry completed; 1 the policy was refused (does not
//! parse, mixes modes); 2 an entry failed or the policy was
//! stopped before its end.

use super::ctl::{Failure, Global, connect, wait};
use crate::control::{Address, Client, Command};
use crate::emg::{Emg, Module, phase};
use crate::units::parse_size;
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The largest policy file read: far more than any real policy needs,
/// small enough that a wrong file (an image, a log) is refused at once.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;
/// Entries in one policy.
pub const MAX_ENTRIES: usize = 1000;
/// Retries of one entry.
pub const MAX_RETRIES: u32 = 100;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Run a policy file's entries in order; prints a per-entry result.
    Run { file: PathBuf },
    /// Ask the policy running from `file` to stop after its current entry.
    Stop { file: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Live,
    Shutdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum OnFailure {
    Retry { retries: u32 },
    Skip,
    End,
}

/// One entry: a source → destination migration of one LPAR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub lpar: String,
    /// The source agent; `None`: the `--agent` of the command.
    pub from: Option<String>,
    pub to: String,
    pub max_suspend_ms: Option<u64>,
    pub bandwidth: Option<u64>,
    pub streams: Option<usize>,
    pub timeout_s: Option<u64>,
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub name: String,
    pub mode: Mode,
    pub on_failure: OnFailure,
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    name: Option<String>,
    mode: Mode,
    #[serde(default)]
    on_failure: Option<String>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default, rename = "entry")]
    entries: Vec<EntryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    lpar: String,
    to: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    max_suspend_ms: Option<u64>,
    #[serde(default)]
    bandwidth: Option<String>,
    #[serde(default)]
    streams: Option<usize>,
    #[serde(default)]
    timeout_s: Option<u64>,
}

/// Causes of the policy errors (op1's `CCCCCCCC`, module MMC).
pub mod cause {
    pub const UNREADABLE: u32 = 0x40;
    pub const MALFORMED: u32 = 0x41;
    pub const MIXED_MODES: u32 = 0x42;
    pub const INVALID: u32 = 0x43;
    pub const ENTRY_FAILED: u32 = 0x45;
    pub const STOPPED: u32 = 0x46;
}

fn policy_error(cause: u32, message: impl Into<String>, action: impl Into<String>) -> Emg {
    Emg::new(Module::Client, phase::DEFINE, cause, message, action)
}

fn invalid(message: String) -> Emg {
    policy_error(
        cause::INVALID,
        message,
        "Correct the policy file (format in `moverctl policy run --help` and README).",
    )
}

/// Decodes and validates a policy file. Total: any bytes give a policy or
/// an EMG, never a panic.
pub fn parse(bytes: &[u8]) -> Result<Policy, Emg> {
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(invalid(format!(
            "the policy file has {} bytes, more than {MAX_POLICY_BYTES}",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| invalid(format!("the policy file is not UTF-8: {e}")))?;
    let f: PolicyFile = toml::from_str(text).map_err(|e| {
        policy_error(
            cause::MALFORMED,
            format!("the policy file does not parse: {}", e.message()),
            "Write the policy as TOML: mode, on_failure and [[entry]] tables with lpar and to.",
        )
    })?;
    if f.entries.is_empty() {
        return Err(invalid("the policy has no [[entry]]".into()));
    }
    if f.entries.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "the policy has {} entries, more than {MAX_ENTRIES}",
            f.entries.len()
        )));
    }
    let on_failure = match (f.on_failure.as_deref(), f.retries) {
        (Some("retry"), r) => {
            let retries = r.unwrap_or(1);
            if retries == 0 || retries > MAX_RETRIES {
                return Err(invalid(format!(
                    "retries = {retries}: give 1 to {MAX_RETRIES}"
                )));
            }
            OnFailure::Retry { retries }
        }
        (_, Some(_)) => {
            return Err(invalid(
                "retries is given but on_failure is not \"retry\"".into(),
            ));
        }
        (Some("skip"), None) => OnFailure::Skip,
        (Some("end") | None, None) => OnFailure::End,
        (Some(other), None) => {
            return Err(invalid(format!(
                "on_failure = {:?}: use retry, skip or end",
                other.escape_debug().to_string()
            )));
        }
    };
    let mut entries = Vec::with_capacity(f.entries.len());
    for (i, e) in f.entries.into_iter().enumerate() {
        let n = i + 1;
        if let Some(m) = e.mode.filter(|m| *m != f.mode) {
            return Err(policy_error(
                cause::MIXED_MODES,
                format!(
                    "entry {n} ({}) is a {} migration in a {} policy: shutdown and live \
                     entries cannot be mixed in one policy",
                    e.lpar.escape_debug(),
                    mode_name(m),
                    mode_name(f.mode)
                ),
                "Put the shutdown and the live entries in two separate policies.",
            ));
        }
        if e.lpar.is_empty() || e.lpar.len() > 255 {
            return Err(invalid(format!(
                "entry {n}: lpar must have 1 to 255 characters"
            )));
        }
        for (what, a) in [("to", Some(&e.to)), ("from", e.from.as_ref())] {
            if let Some(a) = a {
                Address::parse(a)
                    .map_err(|m| invalid(format!("entry {n}: {what} = {a:?}: {m}")))?;
            }
        }
        let bandwidth = match &e.bandwidth {
            Some(b) => Some(
                parse_size(b).map_err(|m| invalid(format!("entry {n}: bandwidth = {b:?}: {m}")))?,
            ),
            None => None,
        };
        entries.push(Entry {
            lpar: e.lpar,
            from: e.from,
            to: e.to,
            max_suspend_ms: e.max_suspend_ms,
            bandwidth,
            streams: e.streams,
            timeout_s: e.timeout_s,
        });
    }
    Ok(Policy {
        name: f.name.unwrap_or_else(|| "policy".into()),
        mode: f.mode,
        on_failure,
        entries,
    })
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Live => "live",
        Mode::Shutdown => "shutdown",
    }
}

/// How one entry ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryStatus {
    Completed,
    Failed,
    NotRun,
}

#[derive(Clone, Debug, Serialize)]
pub struct EntryResult {
    pub entry: usize,
    pub lpar: String,
    pub from: String,
    pub to: String,
    pub status: EntryStatus,
    pub attempts: u32,
    /// The source agent's id of the last attempt's migration.
    pub migration: Option<u64>,
    pub suspension_ms: Option<f64>,
    pub error: Option<Emg>,
}

/// How the whole policy ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyOutcome {
    /// Every entry completed.
    Completed,
    /// It ran to its end, with failed entries skipped.
    Failed,
    /// An entry failed and on_failure (or exhausted retries) ended it.
    Ended,
    /// The operator stopped it after an entry.
    Stopped,
}

/// Set by SIGINT/SIGTERM: stop after the current entry.
static STOP: AtomicBool = AtomicBool::new(false);

/// `<policy file>.stop`, beside the file wherever the command runs from.
fn stop_file(policy: &Path) -> PathBuf {
    let policy = policy
        .canonicalize()
        .unwrap_or_else(|_| policy.to_path_buf());
    let mut s = policy.as_os_str().to_owned();
    s.push(".stop");
    PathBuf::from(s)
}

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts)
/// and turns them into [`STOP`] on a thread of their own, so a signal never
/// interrupts a read from an agent.
fn catch_stop_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("policy-stop".into())
        .spawn(move || {
            while set.wait().is_ok() {
                if STOP.swap(true, Ordering::SeqCst) {
                    eprintln!(
                        "moverctl: stopping now; the migration in progress goes on in the agents"
                    );
                    std::process::exit(130);
                }
                eprintln!("moverctl: stop requested: the policy ends after the current entry");
            }
        });
}

/// `moverctl policy …`.
pub fn run(g: &Global, command: PolicyCommand) -> Result<(), Failure> {
    match command {
        PolicyCommand::Stop { file } => {
            std::fs::write(stop_file(&file), b"stop\n").map_err(|e| {
                Failure::Usage(format!("cannot write {}: {e}", stop_file(&file).display()))
            })?;
            if g.json {
                println!("{}", json!({ "policy": file, "stop_requested": true }));
            } else {
                println!("stop requested: the policy ends after its current entry");
            }
            Ok(())
        }
        PolicyCommand::Run { file } => run_file(g, &file),
    }
}

fn run_file(g: &Global, file: &Path) -> Result<(), Failure> {
    let bytes = std::fs::read(file).map_err(|e| {
        Failure::Refused(policy_error(
            cause::UNREADABLE,
            format!("cannot read the policy {}: {e}", file.display()),
            "Give the path of a readable policy file.",
        ))
    })?;
    let policy = parse(&bytes).map_err(Failure::Refused)?;
    let stop = stop_file(file);
    let _ = std::fs::remove_file(&stop);
    catch_stop_signals();
    let stop_requested = || STOP.load(Ordering::SeqCst) || stop.exists();

    let mut results: Vec<EntryResult> = policy
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| EntryResult {
            entry: i + 1,
            lpar: e.lpar.clone(),
            from: e.from.clone().unwrap_or_else(|| g.agent.clone()),
            to: e.to.clone(),
            status: EntryStatus::NotRun,
            attempts: 0,
            migration: None,
            suspension_ms: None,
            error: None,
        })
        .collect();
    let mut outcome = PolicyOutcome::Completed;
    'entries: for (i, entry) in policy.entries.iter().enumerate() {
        if i > 0 && stop_requested() {
            outcome = PolicyOutcome::Stopped;
            break;
        }
        let r = &mut results[i];
        let max_attempts = match policy.on_failure {
            OnFailure::Retry { retries } => retries + 1,
            _ => 1,
        };
        loop {
            r.attempts += 1;
            if !g.json {
                println!(
                    "entry {}: {} {} → {} (attempt {})",
                    r.entry, r.lpar, r.from, r.to, r.attempts
                );
            }
            match run_entry(g, policy.mode, entry, &r.from) {
                Ok((id, report)) => {
                    r.status = EntryStatus::Completed;
                    r.migration = Some(id);
                    r.suspension_ms = report["source"]["suspension"]["total_ms"].as_f64();
                    r.error = None;
                    break;
                }
                Err((id, e)) => {
                    r.status = EntryStatus::Failed;
                    r.migration = id.or(r.migration);
                    if !g.json {
                        eprintln!("{e}");
                    }
                    r.error = Some(e);
                    if r.attempts < max_attempts {
                        if stop_requested() {
                            outcome = PolicyOutcome::Stopped;
                            break 'entries;
                        }
                        continue;
                    }
                    match policy.on_failure {
                        OnFailure::Skip => {
                            outcome = PolicyOutcome::Failed;
                            break;
                        }
                        OnFailure::Retry { .. } | OnFailure::End => {
                            outcome = PolicyOutcome::Ended;
                            break 'entries;
                        }
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_file(&stop);
    if g.json {
        println!(
            "{}",
            json!({
                "policy": policy.name,
                "mode": policy.mode,
                "on_failure": policy.on_failure,
                "outcome": outcome,
                "entries": results,
            })
        );
        if outcome != PolicyOutcome::Completed {
            return Err(Failure::Shown(2));
        }
        return Ok(());
    }
    print_table(&policy, outcome, &results);
    match outcome {
        PolicyOutcome::Completed => Ok(()),
        PolicyOutcome::Stopped => Err(Failure::Failed(policy_error(
            cause::STOPPED,
            format!(
                "policy '{}' was stopped: {} of {} entries not run",
                policy.name,
                results
                    .iter()
                    .filter(|r| r.status == EntryStatus::NotRun)
                    .count(),
                results.len()
            ),
            "Run a policy with the remaining entries to continue.",
        ))),
        PolicyOutcome::Failed | PolicyOutcome::Ended => Err(Failure::Failed(policy_error(
            cause::ENTRY_FAILED,
            format!(
                "policy '{}': {} of {} entries did not complete",
                policy.name,
                results
                    .iter()
                    .filter(|r| r.status != EntryStatus::Completed)
                    .count(),
                results.len()
            ),
            "See each entry's EMG above; fix the cause and run the remaining entries again.",
        ))),
    }
}

/// One attempt of one entry: `migrate` on its source agent, waited for.
/// The error carries the migration id when the migration had started.
fn run_entry(
    g: &Global,
    mode: Mode,
    entry: &Entry,
    from: &str,
) -> Result<(u64, Value), (Option<u64>, Emg)> {
    let at = Global {
        agent: from.to_string(),
        ..g.clone()
    };
    let unwrap = |f: Failure| match f {
        Failure::Refused(e) | Failure::Failed(e) => e,
        Failure::Shown(code) => policy_error(
            cause::ENTRY_FAILED,
            format!("the entry failed (exit code {code})"),
            "See the messages above.",
        ),
        Failure::Usage(m) => policy_error(
            cause::INVALID,
            m,
            "Give --token-file (or MOVER_TOKEN_FILE) and valid agent addresses.",
        ),
    };
    let mut client: Client = connect(&at).map_err(|f| (None, unwrap(f)))?;
    let command = match mode {
        Mode::Live => Command::Migrate {
            lpar: entry.lpar.clone(),
            to: entry.to.clone(),
            max_suspend_ms: entry.max_suspend_ms,
            bandwidth: entry.bandwidth,
            streams: entry.streams,
            timeout_s: entry.timeout_s,
            path: None,
        },
        // The guest (if running) is shut down first, with the agent's
        // default wait; the LPAR arrives deactivated.
        Mode::Shutdown => Command::MigrateShutdown {
            lpar: entry.lpar.clone(),
            to: entry.to.clone(),
            activate_destination: false,
            shutdown_timeout_s: entry.timeout_s,
        },
    };
    let reply = client.call(command).map_err(|e| (None, e))?;
    let id = reply["migration"].as_u64().ok_or_else(|| {
        (
            None,
            policy_error(
                cause::ENTRY_FAILED,
                format!("the agent's reply has no migration id: {reply}"),
                "Install the same lpar-mover release on the client and the agents.",
            ),
        )
    })?;
    let report = wait(&mut client, id, &mut |_| {}).map_err(|f| (Some(id), unwrap(f)))?;
    Ok((id, report))
}

fn print_table(policy: &Policy, outcome: PolicyOutcome, results: &[EntryResult]) {
    println!(
        "policy '{}' ({} mode, on failure {}): {}",
        policy.name,
        mode_name(policy.mode),
        match policy.on_failure {
            OnFailure::Retry { retries } => format!("retry ×{retries}"),
            OnFailure::Skip => "skip".into(),
            OnFailure::End => "end".into(),
        },
        match outcome {
            PolicyOutcome::Completed => "completed",
            PolicyOutcome::Failed => "completed with failed entries",
            PolicyOutcome::Ended => "ended at a failed entry",
            PolicyOutcome::Stopped => "stopped by the operator",
        }
    );
    println!(
        "{:>3}  {:<16} {:<22} {:<22} {:<10} {:>8} {:>12}  EMG",
        "#", "LPAR", "from", "to", "result", "attempts", "suspension"
    );
    for r in results {
        println!(
            "{:>3}  {:<16} {:<22} {:<22} {:<10} {:>8} {:>12}  {}",
            r.entry,
            r.lpar,
            r.from,
            r.to,
            match r.status {
                EntryStatus::Completed => "completed",
                EntryStatus::Failed => "failed",
                EntryStatus::NotRun => "not run",
            },
            r.attempts,
            r.suspension_ms
                .map_or(String::from("-"), |s| format!("{s:.3} ms")),
            r.error.as_ref().map_or(String::new(), |e| format!(
                "{:08x}{:04x}{:02x} {}",
                e.cause,
                e.phase,
                e.module.code(),
                e.message
            ))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "firmware-hvm1"
        mode = "live"
        on_failure = "retry"
        retries = 2

        [[entry]]
        lpar = "web1"
        to = "127.0.0.1:7402"
        max_suspend_ms = 20
        bandwidth = "100MiB"

        [[entry]]
        lpar = "db1"
        from = "127.0.0.1:7401"
        to = "/run/mover/b.sock"
        mode = "live"
    "#;

    #[test]
    fn a_policy_parses_into_ordered_entries() {
        let p = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(p.name, "firmware-hvm1");
        assert_eq!(p.mode, Mode::Live);
        assert_eq!(p.on_failure, OnFailure::Retry { retries: 2 });
        let names: Vec<&str> = p.entries.iter().map(|e| e.lpar.as_str()).collect();
        assert_eq!(names, ["web1", "db1"]);
        assert_eq!(p.entries[0].bandwidth, Some(100 << 20));
        assert_eq!(p.entries[0].from, None);
        assert_eq!(p.entries[1].from.as_deref(), Some("127.0.0.1:7401"));
        // Defaults: end on failure, policy named "policy".
        let p = parse(b"mode = \"shutdown\"\n[[entry]]\nlpar = \"a\"\nto = \"h:1\"\n").unwrap();
        assert_eq!((p.on_failure, p.name.as_str()), (OnFailure::End, "policy"));
    }

    fn refused(text: &str) -> Emg {
        parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn mixing_shutdown_and_live_entries_is_refused() {
        let e = refused(
            "mode = \"live\"\n[[entry]]\nlpar = \"a\"\nto = \"h:1\"\n\
             [[entry]]\nlpar = \"b\"\nto = \"h:1\"\nmode = \"shutdown\"\n",
        );
        assert_eq!(e.cause, cause::MIXED_MODES);
        assert!(e.message.contains("cannot be mixed"), "{e}");
        assert!(e.to_string().contains("Action:"), "{e}");
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        let entry = "[[entry]]\nlpar = \"a\"\nto = \"h:1\"\n";
        for (text, cause, words) in [
            ("mode = \"live\"\n", cause::INVALID, "no [[entry]]"),
            (
                "[[entry]]\nlpar = \"a\"\nto = \"h:1\"\n",
                cause::MALFORMED,
                "mode",
            ),
            (
                &format!("mode = \"live\"\non_failure = \"pray\"\n{entry}"),
                cause::INVALID,
                "pray",
            ),
            (
                &format!("mode = \"live\"\non_failure = \"skip\"\nretries = 3\n{entry}"),
                cause::INVALID,
                "retries",
            ),
            (
                &format!("mode = \"live\"\non_failure = \"retry\"\nretries = 0\n{entry}"),
                cause::INVALID,
                "retries = 0",
            ),
            (
                "mode = \"live\"\n[[entry]]\nlpar = \"a\"\nto = \"h:1\"\nbandwidth = \"fast\"\n",
                cause::INVALID,
                "bandwidth",
            ),
            (
                "mode = \"live\"\n[[entry]]\nlpar = \"a\"\nto = \"h:1\"\ncolour = 1\n",
                cause::MALFORMED,
                "colour",
            ),
            (
                "mode = \"live\"\n[[entry]]\nlpar = \"\"\nto = \"h:1\"\n",
                cause::INVALID,
                "lpar",
            ),
            ("mode = \"warp\"\n", cause::MALFORMED, "does not parse"),
        ] {
            let e = refused(text);
            assert_eq!(e.cause, cause, "{text}: {e}");
            assert!(e.message.contains(words), "{text}: {e}");
            assert_eq!(e.module, Module::Client);
        }
        let big = vec![b'#'; MAX_POLICY_BYTES + 1];
        assert_eq!(parse(&big).unwrap_err().cause, cause::INVALID);
        assert_eq!(parse(&[0xff, 0xfe]).unwrap_err().cause, cause::INVALID);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_a_policy_or_an_emg(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Err(e) = parse(&bytes) {
                proptest::prop_assert_eq!(e.module, Module::Client);
            }
        }

        #[test]
        fn generated_policies_keep_their_entries_in_order(
            names in proptest::collection::vec("[a-z][a-z0-9_-]{0,15}", 1..20),
            skip in proptest::bool::ANY,
        ) {
            let mut text = format!(
                "mode = \"live\"\non_failure = \"{}\"\n",
                if skip { "skip" } else { "end" }
            );
            for (i, n) in names.iter().enumerate() {
                text.push_str(&format!("[[entry]]\nlpar = \"{n}\"\nto = \"127.0.0.1:{}\"\n", 7000 + i));
            }
            let p = parse(text.as_bytes()).unwrap();
            let got: Vec<&String> = p.entries.iter().map(|e| &e.lpar).collect();
            proptest::prop_assert_eq!(got, names.iter().collect::<Vec<_>>());
        }
    }
}
