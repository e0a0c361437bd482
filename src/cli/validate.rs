//! `moverctl validate`, `connectivity-test` and `rehearse`: the validation
//! commands (see `agent::validation`). Each prints the items one per line,
//! or with `--json` the agent's report as one object; a failed item makes
//! the command exit 1 (refused by validation).

use super::session::{Failure, Global};
use crate::agent::validation::refusal;
use crate::control::reply::{Check, Connectivity, Outcome, ValidationReport};
use crate::control::{Client, MigrationMode, request};
use crate::units::format_size;
use clap::Args;
use serde::Serialize;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    pub lpar: String,
    /// The destination agent: host:port or a Unix socket path.
    #[arg(long)]
    pub to: String,
    #[arg(long, default_value_t = MigrationMode::Live)]
    pub mode: MigrationMode,
    /// The migration path (by name) on both hosts; default: the first.
    #[arg(long)]
    pub path: Option<String>,
}

impl ValidateArgs {
    /// The `validate` request these arguments make (`rehearse` takes the
    /// same fields).
    fn into_request(self) -> request::Validate {
        request::Validate {
            lpar: self.lpar,
            to: self.to,
            mode: self.mode,
            path: self.path,
        }
    }
}

#[derive(Args, Debug)]
pub struct ConnectivityArgs {
    /// The destination agent: host:port or a Unix socket path.
    #[arg(long)]
    pub to: String,
    /// The migration path (by name); default: the first.
    #[arg(long)]
    pub path: Option<String>,
}

fn print_checks(r: &ValidationReport) {
    println!(
        "validation of '{}': {} → {} ({} mode)",
        r.lpar, r.source, r.destination, r.mode
    );
    for c in &r.checks {
        print_check(c);
    }
    let failed = r
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .count();
    if failed == 0 {
        println!("passed: {} items checked", r.checks.len());
    } else {
        println!("refused: {failed} of {} items failed", r.checks.len());
    }
}

fn print_check(c: &Check) {
    let outcome = match c.outcome {
        Outcome::Pass => "pass",
        Outcome::Fail => "FAIL",
        Outcome::Skip => "skip",
        Outcome::Warn => "WARN",
    };
    let side = c.side.label();
    match &c.error {
        Some(e) => println!("  {outcome}  {side:<11}  {:<17}  {e}", c.item),
        None => println!("  {outcome}  {side:<11}  {:<17}  {}", c.item, c.detail),
    }
}

fn print_measurement(m: &Connectivity) {
    println!(
        "connectivity test {} ({}) → {} {} ({}): round trip {:.3} ms (min {:.3}), {:.2} Gbit/s \
         ({} in {:.2} s over {} streams)",
        m.source_path,
        m.source_addr,
        m.destination_agent,
        m.destination_path,
        m.destination_addr,
        m.rtt_avg_ms,
        m.rtt_min_ms,
        m.bits_per_s / 1e9,
        format_size(m.bytes),
        m.seconds,
        m.streams,
    );
}

/// Prints `reply` (JSON: the typed reply as the agent sent it, with the
/// refusal's `error` and `emg` when an item failed; or text) and fails
/// with exit 1 when an item failed.
fn finish(
    g: &Global,
    reply: &impl Serialize,
    report: &ValidationReport,
    text: impl Fn(),
) -> Result<(), Failure> {
    let refused = refusal(&report.lpar, &report.checks);
    if g.json {
        let mut out = serde_json::to_value(reply).expect("replies serialise");
        if let Some(e) = &refused {
            out["error"] = serde_json::to_value(e).expect("EMGs serialise");
            out["emg"] = Value::String(e.to_string());
        }
        println!("{out}");
    } else {
        text();
        if let Some(e) = &refused {
            eprintln!("{e}");
        }
    }
    match refused {
        Some(_) => Err(Failure::Shown(1)),
        None => Ok(()),
    }
}

fn print_validation(report: &ValidationReport) {
    print_checks(report);
    if let Some(m) = &report.connectivity {
        print_measurement(m);
    }
}

pub fn validate(g: &Global, client: &mut Client, a: ValidateArgs) -> Result<(), Failure> {
    let report = client.request(a.into_request()).map_err(Failure::Refused)?;
    finish(g, &report, &report, || print_validation(&report))
}

pub fn connectivity_test(
    g: &Global,
    client: &mut Client,
    a: ConnectivityArgs,
) -> Result<(), Failure> {
    let reply = client
        .request(request::ConnectivityTest {
            to: a.to,
            path: a.path,
        })
        .map_err(Failure::Failed)?;
    if g.json {
        println!(
            "{}",
            serde_json::to_value(&reply).expect("replies serialise")
        );
    } else {
        print_measurement(&reply);
        println!("{}", super::progress::CONNECTIVITY_COMPLETED);
    }
    Ok(())
}

pub fn rehearse(g: &Global, client: &mut Client, a: ValidateArgs) -> Result<(), Failure> {
    let request::Validate {
        lpar,
        to,
        mode,
        path,
    } = a.into_request();
    let reply = client
        .request(request::Rehearse {
            lpar,
            to,
            mode,
            path,
        })
        .map_err(Failure::Refused)?;
    finish(g, &reply, &reply.validation, || {
        print_validation(&reply.validation);
        if let Some(p) = &reply.placeholder {
            println!(
                "placeholder '{}' ({}) defined on {} in {:.1} ms and released: {}",
                p.lpar,
                format_size(p.memory_bytes),
                p.host,
                p.define_ms,
                p.released
            );
            println!(
                "{} (rehearsal passed: nothing moved)",
                super::progress::MIGRATION_COMPLETED
            );
        }
    })
}
