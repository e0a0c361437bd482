//! `moverctl migrate` and `moverctl monitor`: starting a migration (live
//! or shutdown, to an agent given or chosen by `--auto-destination`),
//! following it to its end, and printing its report.
//!
//! `migrate <lpar> --auto-destination --candidates a,b,c` asks each
//! candidate agent for its free resources (`host-resources`) and picks,
//! among those that are not the source and have room (free memory ≥ the
//! LPAR's memory, CPUs ≥ its vCPUs), the one with the most free memory;
//! ties go to the candidate listed first. Unreachable candidates are
//! skipped. No candidate with room: refused, with each one's reason.

use super::options::{MigrationOptions, Move};
use super::session::{Failure, Global, ask, cause, connect, print_reply, print_value};
use crate::control::{Client, Event, LparState, MigrationMode, reply, request};
use crate::emg::{Emg, Module, phase};
use crate::engine::stage::Stage;
use crate::units::format_size;
use clap::Args;
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct MigrateArgs {
    pub lpar: String,
    /// The destination agent: host:port or a Unix socket path.
    #[arg(long, required_unless_present = "auto_destination")]
    pub to: Option<String>,
    /// Choose the destination among --candidates: the one with room and the
    /// most free memory.
    #[arg(long, conflicts_with = "to", requires = "candidates")]
    pub auto_destination: bool,
    /// Candidate destination agents for --auto-destination.
    #[arg(long, value_delimiter = ',', env = "MOVER_CANDIDATES")]
    pub candidates: Vec<String>,
    #[command(flatten)]
    pub options: MigrationOptions,
    /// Print the migration id and return at once.
    #[arg(long)]
    pub no_wait: bool,
    /// `live` (Concurrent Maintenance) or `shutdown`. Default: live for an
    /// activated LPAR, shutdown for a deactivated one (and moverctl says
    /// which it chose).
    #[arg(long)]
    pub mode: Option<MigrationMode>,
    /// Shutdown mode: start the LPAR on the destination afterwards.
    #[arg(long)]
    pub activate_destination: bool,
    /// Shutdown mode: how long to wait for the guest to shut down, seconds
    /// (default 300).
    #[arg(long)]
    pub shutdown_timeout: Option<u64>,
}

/// Waits for migration `id` to end, handing every event of it to `on_event`.
/// Returns the report, or the migration's error.
pub(crate) fn wait(
    client: &mut Client,
    id: u64,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Value, Failure> {
    client
        .wait_for_migration(id, on_event)
        .map_err(Failure::Failed)
}

pub(crate) fn migrate(g: &Global, client: &mut Client, a: MigrateArgs) -> Result<(), Failure> {
    let to = match &a.to {
        Some(to) => to.clone(),
        None => auto_destination(g, client, &a.lpar, &a.candidates)?,
    };
    let mode = match a.mode {
        Some(mode) => mode,
        None => {
            // IBM's rule: a running partition moves active, a shut-down one
            // inactive.
            let lpar = ask(
                client,
                request::LparShow {
                    name: a.lpar.clone(),
                },
            )?;
            let mode = if lpar.state == LparState::Dea {
                MigrationMode::Shutdown
            } else {
                MigrationMode::Live
            };
            eprintln!(
                "mode: {mode} ('{}' is {}; give --mode to choose)",
                a.lpar,
                lpar.state.label()
            );
            mode
        }
    };
    let how = if mode == MigrationMode::Shutdown {
        Move::Shutdown {
            activate_destination: a.activate_destination,
            shutdown_timeout_s: a.shutdown_timeout,
        }
    } else {
        Move::Live
    };
    let command = a.options.command(&a.lpar, &to, how);
    let reply: reply::MigrationStarted =
        serde_json::from_value(client.call(command).map_err(Failure::Refused)?)
            .map_err(|e| Failure::Usage(format!("the agent's reply has no migration id: {e}")))?;
    let id = reply.migration;
    if a.no_wait {
        return print_reply(g, &reply);
    }
    if !g.json {
        println!("migration {id}: {} to {to}", a.lpar);
    }
    let json = g.json;
    let report = wait(client, id, &mut |e| {
        if json {
            return;
        }
        match e {
            Event::MigrationStage { stage, text, .. } => {
                println!(
                    "{} Stage = 0x{stage:04x}: {text}",
                    super::progress::EXECUTING
                )
            }
            Event::MigrationProgress {
                round,
                remaining_bytes,
                rate_bytes_per_s,
                throttle_percent,
                ..
            } => println!(
                "  round {round}: remaining {}, {}/s, throttle {throttle_percent}%",
                format_size(*remaining_bytes),
                format_size(*rate_bytes_per_s as u64)
            ),
            _ => {}
        }
    })?;
    if g.json {
        println!("{}", json!({ "migration": id, "report": report }));
    } else if report["mode"] == "shutdown" {
        println!(
            "Migration completed! now on {} (shutdown mode)",
            report["destination_agent"].as_str().unwrap_or("?")
        );
        print_value(g, &report);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Value) {
    let s = &r["source"];
    println!(
        "{} now on {} (migration path {}, {} streams, {})",
        super::progress::MIGRATION_COMPLETED,
        r["destination_agent"].as_str().unwrap_or("?"),
        r["path"]["name"].as_str().unwrap_or("?"),
        r["path"]["streams"].as_array().map_or(0, Vec::len),
        s["encryption"].as_str().unwrap_or("?")
    );
    println!(
        "  total {:.1} ms, {} rounds, {} sent for {} of memory, throttle {}%",
        s["total_ms"].as_f64().unwrap_or(0.0),
        s["rounds"].as_array().map_or(0, Vec::len),
        format_size(s["bytes_sent"].as_u64().unwrap_or(0)),
        format_size(s["memory_bytes"].as_u64().unwrap_or(0)),
        s["throttle"]
    );
    let p = &s["suspension"];
    println!(
        "  suspension {:.3} ms (final copy {:.3}, device state {:.3}, load+verify {:.3}, resume {:.3}); verified: {}",
        p["total_ms"].as_f64().unwrap_or(0.0),
        p["final_copy_ms"].as_f64().unwrap_or(0.0),
        p["device_state_ms"].as_f64().unwrap_or(0.0),
        p["load_verify_ms"].as_f64().unwrap_or(0.0),
        p["resume_ms"].as_f64().unwrap_or(0.0),
        s["verified"]
    );
    for w in r["warnings"].as_array().into_iter().flatten() {
        println!("  warning: {}", w.as_str().unwrap_or_default());
    }
}

pub(crate) fn monitor(g: &Global, client: &mut Client, id: u64) -> Result<(), Failure> {
    let reply::Status::One(s) = ask(client, request::Status { id: Some(id) })? else {
        return Err(Failure::Usage(format!(
            "the agent answered status {id} with a list"
        )));
    };
    let memory = s.memory_bytes;
    let bar = indicatif::ProgressBar::new(memory);
    if g.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg}\n[{bar:40}] {bytes}/{total_bytes} copied")
            .expect("template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(format!("Stage = 0x{:04x}: {}", s.stage, s.stage_text));
    let mut stage_text = s.stage_text.clone();
    let json = g.json;
    let result = if Stage::from_code(s.stage).is_some_and(Stage::is_final) {
        match s.error {
            Some(e) => Err(Failure::Failed(e)),
            None => Ok(s.report.flatten().unwrap_or(Value::Null)),
        }
    } else {
        wait(client, id, &mut |e| {
            if json {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
                return;
            }
            match e {
                Event::MigrationStage { stage, text, .. } => {
                    stage_text = text.clone();
                    bar.set_message(format!("Stage = 0x{stage:04x}: {text}"));
                }
                Event::MigrationProgress {
                    remaining_bytes,
                    rate_bytes_per_s,
                    ..
                } => {
                    bar.set_position(memory.saturating_sub(*remaining_bytes));
                    bar.set_message(format!(
                        "{stage_text}: remaining {}, {}/s",
                        format_size(*remaining_bytes),
                        format_size(*rate_bytes_per_s as u64)
                    ));
                }
                _ => {}
            }
        })
    };
    bar.finish_and_clear();
    let report = result?;
    if g.json {
        println!("{}", json!({ "migration": id, "report": report }));
    } else {
        print_report(&report);
    }
    Ok(())
}

/// `--auto-destination`: the candidate with the most free memory among
/// those with room for `lpar` (see the module doc).
pub fn auto_destination(
    g: &Global,
    client: &mut Client,
    lpar: &str,
    candidates: &[String],
) -> Result<String, Failure> {
    let shown = client
        .request(request::LparShow {
            name: lpar.to_string(),
        })
        .map_err(Failure::Refused)?;
    let (memory, vcpus) = (shown.memory_bytes, shown.vcpus);
    let here = client.greeting().agent.clone();
    let mut best: Option<(u64, &String)> = None;
    let mut reasons = Vec::new();
    for c in candidates {
        let at = Global {
            agent: c.clone(),
            ..g.clone()
        };
        let r = match connect(&at).and_then(|mut cl| {
            cl.request(request::HostResources {})
                .map_err(Failure::Refused)
        }) {
            Ok(r) => r,
            Err(Failure::Refused(e) | Failure::Failed(e)) => {
                reasons.push(format!("{c}: unreachable ({})", e.message));
                continue;
            }
            Err(f @ (Failure::Usage(_) | Failure::Shown(_))) => return Err(f),
        };
        let (host, free, cpus) = (r.host.as_str(), r.memory_free_bytes, r.cpus);
        if host == here {
            reasons.push(format!("{c}: is the source host {host}"));
        } else if free < memory {
            reasons.push(format!(
                "{c} ({host}): {} free, needs {}",
                format_size(free),
                format_size(memory)
            ));
        } else if cpus < vcpus {
            reasons.push(format!("{c} ({host}): {cpus} CPUs, needs {vcpus}"));
        } else if best.is_none_or(|(f, _)| free > f) {
            best = Some((free, c));
        }
    }
    match best {
        Some((free, c)) => {
            if !g.json {
                println!(
                    "auto-destination: {c} ({} free){}",
                    format_size(free),
                    if reasons.is_empty() {
                        String::new()
                    } else {
                        format!("; passed over: {}", reasons.join("; "))
                    }
                );
            }
            Ok(c.clone())
        }
        None => Err(Failure::Refused(Emg::new(
            Module::Client,
            phase::DEFINE,
            cause::NO_DESTINATION,
            format!(
                "no candidate host has room for LPAR '{lpar}' ({} vCPUs, {}): {}",
                vcpus,
                format_size(memory),
                if reasons.is_empty() {
                    "no candidates given".to_string()
                } else {
                    reasons.join("; ")
                }
            ),
            "Give more --candidates, or free memory on one of them.",
        ))),
    }
}
