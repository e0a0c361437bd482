//! The migration options `moverctl migrate`, `moverctl return` and a policy
//! entry share, defined once: the command-line flags (flattened into each
//! command's arguments), the policy file's keys (flattened into each
//! `[[entry]]`), and the one conversion to the protocol's migrate request.
//!
//! | flag | policy key | request field |
//! |---|---|---|
//! | `--max-suspend-ms N` | `max_suspend_ms = N` | `max_suspend_ms` |
//! | `--path NAME` | `path = "NAME"` | `path` |
//! | `--bandwidth RATE` | `bandwidth = "RATE"` | `bandwidth` (bytes/s) |
//! | `--streams N` | `streams = N` | `streams` |
//! | `--timeout S` | `timeout_s = S` | `timeout_s` (shutdown mode: `shutdown_timeout_s`) |
//! | `--insecure-plaintext` | `insecure_plaintext = true` | `insecure_plaintext` (live mode only) |
//!
//! A rate is parsed by [`parse_rate`] alone, in network units
//! (`1G` = `1Gbit/s` = 125 000 000 bytes/s), wherever it is written.

use crate::control::Command;
use crate::units::{RATE_FORMS, parse_rate};
use clap::Args;
use serde::{Deserialize, Deserializer, Serialize};

/// The options of one migration, as a user gives them.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationOptions {
    /// Target suspension in milliseconds (default 20).
    #[arg(long)]
    #[serde(default)]
    pub max_suspend_ms: Option<u64>,
    /// The migration path to use, by name (default: the first configured).
    #[arg(long)]
    #[serde(default)]
    pub path: Option<String>,
    #[arg(long, value_parser = parse_rate, help = crate::units::RATE_HELP)]
    #[serde(default, deserialize_with = "rate")]
    pub bandwidth: Option<u64>,
    /// Migration streams (default 4).
    #[arg(long)]
    #[serde(default)]
    pub streams: Option<usize>,
    /// Give up after this many seconds (default 900), LPAR left on the
    /// source; in a shutdown-mode policy, the wait for the guest to stop.
    #[arg(long = "timeout", value_name = "SECONDS")]
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Send the guest's memory in clear instead of TLS 1.3: for benchmarks
    /// on a trusted path; the destination must allow it.
    #[arg(long)]
    #[serde(default)]
    pub insecure_plaintext: bool,
}

/// How the LPAR moves, for [`MigrationOptions::command`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// Concurrent Maintenance: the LPAR keeps running.
    Live,
    /// Shut down (if running), move, optionally activate at the destination.
    Shutdown {
        /// Start the LPAR on the destination afterwards.
        activate_destination: bool,
        /// Seconds to wait for the guest to shut down (agent default if none).
        shutdown_timeout_s: Option<u64>,
    },
}

impl MigrationOptions {
    /// The management request that moves `lpar` to `to` with these options:
    /// the only place options become a request.
    pub fn command(&self, lpar: &str, to: &str, how: Move) -> Command {
        match how {
            Move::Live => Command::Migrate {
                lpar: lpar.to_string(),
                to: to.to_string(),
                max_suspend_ms: self.max_suspend_ms,
                bandwidth: self.bandwidth,
                streams: self.streams,
                timeout_s: self.timeout_s,
                path: self.path.clone(),
                insecure_plaintext: self.insecure_plaintext,
            },
            Move::Shutdown {
                activate_destination,
                shutdown_timeout_s,
            } => Command::MigrateShutdown {
                lpar: lpar.to_string(),
                to: to.to_string(),
                activate_destination,
                shutdown_timeout_s,
            },
        }
    }
}

/// A policy file's `bandwidth`: a string [`parse_rate`] accepts; a bare
/// TOML number is refused as on the command line.
fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(i64),
    }
    match Raw::deserialize(d)? {
        Raw::Text(t) => parse_rate(&t)
            .map(Some)
            .map_err(|m| serde::de::Error::custom(format!("bandwidth: {m}"))),
        Raw::Number(n) => Err(serde::de::Error::custom(format!(
            "bandwidth = {n} has no unit; give a rate as a string, {RATE_FORMS}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        options: MigrationOptions,
    }

    fn flags(args: &[&str]) -> Result<MigrationOptions, clap::Error> {
        Flags::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|f| f.options)
    }

    #[test]
    fn flags_and_policy_keys_give_the_same_options() {
        let from_flags = flags(&[
            "--max-suspend-ms",
            "15",
            "--path",
            "alt",
            "--bandwidth",
            "1G",
            "--streams",
            "2",
            "--timeout",
            "60",
        ])
        .unwrap();
        let from_keys: MigrationOptions = toml::from_str(
            "max_suspend_ms = 15\npath = \"alt\"\nbandwidth = \"1G\"\nstreams = 2\ntimeout_s = 60\n",
        )
        .unwrap();
        assert_eq!(from_flags, from_keys);
        assert_eq!(from_flags.bandwidth, Some(125_000_000));
    }

    #[test]
    fn a_bad_rate_is_refused_naming_the_accepted_forms() {
        let e = flags(&["--bandwidth", "fast"]).unwrap_err().to_string();
        assert!(e.contains("'fast'") && e.contains(RATE_FORMS), "{e}");
        let e = toml::from_str::<MigrationOptions>("bandwidth = 1000000")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no unit") && e.contains(RATE_FORMS), "{e}");
    }

    #[derive(Parser)]
    struct Ctl {
        #[command(subcommand)]
        command: crate::cli::ctl::CtlCommand,
    }

    /// The bytes/s `migrate`, `return` and a policy entry take from `rate`.
    fn three_ways(rate: &str) -> [Option<u64>; 3] {
        use crate::cli::ctl::CtlCommand::{Migrate, Return};
        let ctl = |args: &[&str]| Ctl::try_parse_from(args).unwrap().command;
        let migrate = match ctl(&["x", "migrate", "a", "--to", "h:1", "--bandwidth", rate]) {
            Migrate(m) => m.options.bandwidth,
            _ => unreachable!(),
        };
        let returned = match ctl(&["x", "return", "a", "--bandwidth", rate]) {
            Return(r) => r.options.bandwidth,
            _ => unreachable!(),
        };
        let policy = format!(
            "mode = \"live\"\n[[entry]]\nlpar = \"a\"\nto = \"h:1\"\nbandwidth = \"{rate}\"\n"
        );
        let policy = crate::cli::policy::parse(policy.as_bytes())
            .unwrap()
            .entries[0]
            .options
            .bandwidth;
        [migrate, returned, policy]
    }

    #[test]
    fn migrate_return_and_a_policy_entry_read_a_rate_alike() {
        // Issue 13: `1G` was 10^9 bytes/s for migrate, 2^30 for the others.
        assert_eq!(three_ways("1G"), [Some(125_000_000); 3]);
        assert_eq!(three_ways("10Gbit/s"), [Some(1_250_000_000); 3]);
        assert_eq!(three_ways("125MB/s"), [Some(125_000_000); 3]);
        assert_eq!(three_ways("128MiB"), [Some(128 << 20); 3]);
    }

    proptest::proptest! {
        #[test]
        fn every_rate_reads_the_same_three_ways(n in 1u64..100_000, unit in 0usize..6) {
            let unit = ["M", "Gbit/s", "Mbps", "KB/s", "MiB", "GB"][unit];
            let want = parse_rate(&format!("{n}{unit}")).ok();
            proptest::prop_assert_eq!(three_ways(&format!("{n}{unit}")), [want; 3]);
        }
    }

    #[test]
    fn options_become_the_request_in_one_place() {
        let o = MigrationOptions {
            bandwidth: Some(7),
            timeout_s: Some(9),
            ..Default::default()
        };
        assert!(matches!(
            o.command("a", "b", Move::Live),
            Command::Migrate {
                bandwidth: Some(7),
                timeout_s: Some(9),
                ..
            }
        ));
        let shutdown = Move::Shutdown {
            activate_destination: true,
            shutdown_timeout_s: Some(5),
        };
        assert!(matches!(
            o.command("a", "b", shutdown),
            Command::MigrateShutdown {
                activate_destination: true,
                shutdown_timeout_s: Some(5),
                ..
            }
        ));
    }
}
