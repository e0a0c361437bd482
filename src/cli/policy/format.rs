//! The policy file: its format (drawn in [`super`]), its bounds, and the
//! parser that turns any bytes into a validated [`Policy`] or an EMG.

use crate::cli::options::MigrationOptions;
use crate::control::{Address, MigrationMode};
use crate::emg::{Emg, Module, phase};
use serde::{Deserialize, Serialize};

/// The largest policy file read: far more than any real policy needs,
/// small enough that a wrong file (an image, a log) is refused at once.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;
/// Entries in one policy.
pub const MAX_ENTRIES: usize = 1000;
/// Retries of one entry.
pub const MAX_RETRIES: u32 = 100;

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
    /// The migrate options, as `moverctl migrate` takes them.
    #[serde(flatten)]
    pub options: MigrationOptions,
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub name: String,
    pub mode: MigrationMode,
    pub on_failure: OnFailure,
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    name: Option<String>,
    mode: MigrationMode,
    #[serde(default)]
    on_failure: Option<String>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default, rename = "entry")]
    entries: Vec<EntryFile>,
}

/// An `[[entry]]` table. `deny_unknown_fields` does not work beside
/// `flatten`, so keys neither here nor in [`MigrationOptions`] land in
/// `unknown` and are refused by [`parse`].
#[derive(Deserialize)]
struct EntryFile {
    lpar: String,
    to: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    mode: Option<MigrationMode>,
    #[serde(flatten)]
    options: MigrationOptions,
    #[serde(flatten)]
    unknown: std::collections::BTreeMap<String, toml::Value>,
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

pub(crate) fn policy_error(
    cause: u32,
    message: impl Into<String>,
    action: impl Into<String>,
) -> Emg {
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
                    m.label(),
                    f.mode.label()
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
        if let Some(key) = e.unknown.keys().next() {
            return Err(policy_error(
                cause::MALFORMED,
                format!("entry {n}: unknown key `{}`", key.escape_debug()),
                "Write the policy as TOML: mode, on_failure and [[entry]] tables with lpar and to.",
            ));
        }
        entries.push(Entry {
            lpar: e.lpar,
            from: e.from,
            to: e.to,
            options: e.options,
        });
    }
    Ok(Policy {
        name: f.name.unwrap_or_else(|| "policy".into()),
        mode: f.mode,
        on_failure,
        entries,
    })
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
        assert_eq!(p.mode, MigrationMode::Live);
        assert_eq!(p.on_failure, OnFailure::Retry { retries: 2 });
        let names: Vec<&str> = p.entries.iter().map(|e| e.lpar.as_str()).collect();
        assert_eq!(names, ["web1", "db1"]);
        assert_eq!(p.entries[0].options.bandwidth, Some(100 << 20));
        assert_eq!(p.entries[0].options.max_suspend_ms, Some(20));
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
                cause::MALFORMED,
                "bandwidth: 'fast' is not a rate; give a rate as a number and a unit",
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
