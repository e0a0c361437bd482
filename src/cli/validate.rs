//! `moverctl validate`, `connectivity-test` and `rehearse`: the validation
//! commands (see `agent::validation`). Each prints the items one per line,
//! or with `--json` the agent's report as one object; a failed item makes
//! the command exit 1 (refused by validation).

use super::ctl::{Failure, Global};
use crate::agent::validation::{Check, Outcome, Report, refusal};
use crate::control::{Client, Command};
use crate::control::{MigrationMode, Side};
use crate::units::format_size;
use clap::Args;
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

#[derive(Args, Debug)]
pub struct ConnectivityArgs {
    /// The destination agent: host:port or a Unix socket path.
    #[arg(long)]
    pub to: String,
    /// The migration path (by name); default: the first.
    #[arg(long)]
    pub path: Option<String>,
}

fn print_checks(r: &Report) {
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
    };
    let side = match c.side {
        Side::Source => "source",
        Side::Destination => "destination",
    };
    match &c.error {
        Some(e) => println!("  {outcome}  {side:<11}  {:<17}  {e}", c.item),
        None => println!("  {outcome}  {side:<11}  {:<17}  {}", c.item, c.detail),
    }
}

fn print_measurement(m: &Value) {
    println!(
        "connectivity test {} ({}) → {} {} ({}): round trip {:.3} ms (min {:.3}), {:.2} Gbit/s \
         ({} in {:.2} s over {} streams)",
        m["source_path"].as_str().unwrap_or(""),
        m["source_addr"].as_str().unwrap_or(""),
        m["destination_agent"].as_str().unwrap_or(""),
        m["destination_path"].as_str().unwrap_or(""),
        m["destination_addr"].as_str().unwrap_or(""),
        m["rtt_avg_ms"].as_f64().unwrap_or(0.0),
        m["rtt_min_ms"].as_f64().unwrap_or(0.0),
        m["bits_per_s"].as_f64().unwrap_or(0.0) / 1e9,
        format_size(m["bytes"].as_u64().unwrap_or(0)),
        m["seconds"].as_f64().unwrap_or(0.0),
        m["streams"],
    );
}

fn parse_report(v: &Value) -> Result<Report, Failure> {
    serde_json::from_value(v.clone())
        .map_err(|e| Failure::Usage(format!("the agent's validation report does not parse: {e}")))
}

/// Prints `reply` (JSON or text) and fails with exit 1 when an item failed.
fn finish(g: &Global, reply: &Value, report: &Report, text: impl Fn()) -> Result<(), Failure> {
    let refused = refusal(&report.lpar, &report.checks);
    if g.json {
        let mut out = reply.clone();
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

pub fn validate(g: &Global, client: &mut Client, a: ValidateArgs) -> Result<(), Failure> {
    let reply = client
        .call(Command::Validate {
            lpar: a.lpar,
            to: a.to,
            mode: a.mode,
            path: a.path,
        })
        .map_err(Failure::Refused)?;
    let report = parse_report(&reply)?;
    finish(g, &reply, &report, || {
        print_checks(&report);
        if let Some(m) = &report.connectivity {
            print_measurement(&serde_json::to_value(m).unwrap_or_default());
        }
    })
}

pub fn connectivity_test(
    g: &Global,
    client: &mut Client,
    a: ConnectivityArgs,
) -> Result<(), Failure> {
    let reply = client
        .call(Command::ConnectivityTest {
            to: a.to,
            path: a.path,
        })
        .map_err(Failure::Failed)?;
    if g.json {
        println!("{reply}");
    } else {
        print_measurement(&reply);
    }
    Ok(())
}

pub fn rehearse(g: &Global, client: &mut Client, a: ValidateArgs) -> Result<(), Failure> {
    let reply = client
        .call(Command::Rehearse {
            lpar: a.lpar,
            to: a.to,
            mode: a.mode,
            path: a.path,
        })
        .map_err(Failure::Refused)?;
    let report = parse_report(&reply["validation"])?;
    finish(g, &reply, &report, || {
        print_checks(&report);
        if let Some(m) = &report.connectivity {
            print_measurement(&serde_json::to_value(m).unwrap_or_default());
        }
        let p = &reply["placeholder"];
        if !p.is_null() {
            println!(
                "placeholder '{}' ({}) defined on {} in {:.1} ms and released: {}",
                p["lpar"].as_str().unwrap_or(""),
                format_size(p["memory_bytes"].as_u64().unwrap_or(0)),
                p["host"].as_str().unwrap_or(""),
                p["define_ms"].as_f64().unwrap_or(0.0),
                p["released"]
            );
            println!("rehearsal passed: nothing moved");
        }
    })
}
