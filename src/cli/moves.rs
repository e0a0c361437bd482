//! `moverctl history` and `moverctl return`: where an LPAR has been, and
//! sending it back (`--auto-destination`, choosing where it goes, is in
//! `migrate`).
//!
//! - `history <lpar>` asks the agent for the LPAR's migrations (its own
//!   records and those that travelled with the LPAR; see `agent::history`).
//! - `return <lpar>` reads that history on the agent that hosts the LPAR,
//!   takes the newest completed migration *into* this agent, and migrates
//!   the LPAR live back to that migration's source agent (the management
//!   address the source advertised).

use super::migrate::{MigrateArgs, migrate};
use super::options::MigrationOptions;
use super::session::{Failure, Global, cause, print_reply};
use crate::control::{Client, HistoryOutcome, MigrationMode, reply, request};
use crate::emg::{Emg, Module, phase};
use clap::Args;

#[derive(Args, Debug)]
pub struct ReturnArgs {
    pub lpar: String,
    #[command(flatten)]
    pub options: MigrationOptions,
    /// Print the migration id and return at once.
    #[arg(long)]
    pub no_wait: bool,
}

/// `moverctl history [<lpar>]`: one LPAR's migrations, or all this agent
/// knows.
pub fn history(g: &Global, client: &mut Client, lpar: Option<String>) -> Result<(), Failure> {
    let reply = client
        .request(request::History { lpar })
        .map_err(Failure::Refused)?;
    if g.json {
        return print_reply(g, &reply);
    }
    println!(
        "{:<22} {:<12} {:<10} {:<12} {:<12} {:>10} {:>12}  {:<10}",
        "migration", "lpar", "mode", "from#lpar", "to#lpar", "duration", "suspension", "outcome"
    );
    for m in &reply.migrations {
        println!(
            "{:<22} {:<12} {:<10} {:<12} {:<12} {:>10} {:>12}  {:<10} {}",
            m.key,
            m.lpar,
            m.mode.label(),
            numbered(&m.source_agent, m.source_number),
            numbered(&m.destination_agent, m.destination_number),
            format!(
                "{:.1} s",
                m.ended_ns.saturating_sub(m.started_ns) as f64 / 1e9
            ),
            m.suspension_ms
                .map_or(String::from("-"), |s| format!("{s:.3} ms")),
            serde_json::to_value(m.outcome)
                .ok()
                .and_then(|o| o.as_str().map(str::to_string))
                .unwrap_or_default(),
            m.error.as_ref().map_or(String::new(), Emg::to_string)
        );
    }
    Ok(())
}

/// A host with the LPAR's number there: `hostA#3` (the manual's history
/// shows the LPAR number with each HVM).
fn numbered(host: &str, number: Option<u32>) -> String {
    number.map_or(host.to_string(), |n| format!("{host}#{n}"))
}

/// Where the newest completed migration into `host` came from: the source
/// agent's address, from a `history` reply.
pub fn origin(history: &reply::History) -> Option<String> {
    history
        .migrations
        .iter()
        .rev()
        .find(|m| m.outcome == HistoryOutcome::Completed && m.destination_agent == history.host)
        .and_then(|m| m.source_address.clone())
}

/// `moverctl return <lpar>`.
pub fn return_lpar(g: &Global, client: &mut Client, a: ReturnArgs) -> Result<(), Failure> {
    let reply = client
        .request(request::History {
            lpar: Some(a.lpar.clone()),
        })
        .map_err(Failure::Refused)?;
    let to = origin(&reply).ok_or_else(|| {
        Failure::Refused(Emg::new(
            Module::Client,
            phase::INFORMATION,
            cause::NO_ORIGIN,
            format!(
                "LPAR '{}' has no completed migration into host {} to return from",
                a.lpar, reply.host
            ),
            "Ask the agent that hosts the LPAR now (moverctl --agent), or migrate it with \
             moverctl migrate --to.",
        ))
    })?;
    migrate(
        g,
        client,
        MigrateArgs {
            lpar: a.lpar,
            to: Some(to),
            options: a.options,
            no_wait: a.no_wait,
            auto_destination: false,
            candidates: Vec::new(),
            // A return migration is live.
            mode: Some(MigrationMode::Live),
            activate_destination: false,
            shutdown_timeout: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_origin_is_the_newest_completed_migration_into_this_host() {
        let record = |outcome: &str, to: &str, from: &str| {
            json!({"key": "k", "lpar": "l", "mode": "live", "side": "destination",
                "recorded_by": to, "source_agent": "s", "source_address": from,
                "destination_agent": to, "destination_address": null, "started_ns": 0,
                "ended_ns": 1, "outcome": outcome, "error": null, "suspension_ms": null})
        };
        let migrations = json!([
            record("completed", "B", "a1"),
            record("completed", "A", "b1"),
            record("completed", "B", "c1"),
            record("failed", "B", "d1"),
        ]);
        let history = |host: &str| {
            serde_json::from_value(json!({"host": host, "lpar": "l", "migrations": migrations}))
                .unwrap()
        };
        assert_eq!(origin(&history("B")).as_deref(), Some("c1"));
        assert_eq!(origin(&history("Z")), None);
    }
}
