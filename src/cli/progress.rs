//! The manual's success and progress texts, and the two commands that end
//! with them besides `migrate`: `cancel` and `recover`.
//!
//! | text | printed by | manual |
//! |---|---|---|
//! | `executing migration process… Stage = 0x…: …` | `migrate`, for each stage | H:l.9727 |
//! | `Migration completed!` | `migrate`, `monitor`, `rehearse` (text mode) | H:l.8179, 9695 |
//! | `Progress : Canceling … Migration` | `cancel`, when the agent accepts it | H:l.9747 |
//! | `Progress : Migration completed!` | `cancel`, once the cancelled migration has ended | H:l.9749 |
//! | `Recovery completed!` | `recover` | H:l.8236 |
//! | `LPARs requiring recovery: x LPARs` | `recover` and `lpar list`, when x > 0 | H:l.8221 |
//! | `Connectivity Test completed!` | `connectivity-test` | H:l.9712 |
//!
//! `--json` prints the agent's replies unchanged instead.

use super::session::{Failure, Global, print_reply};
use crate::control::{Client, LparState, reply, request};
use crate::emg::reason;

pub const EXECUTING: &str = "executing migration process…";
pub const MIGRATION_COMPLETED: &str = "Migration completed!";
pub const CANCELING: &str = "Progress : Canceling … Migration";
pub const CANCEL_COMPLETED: &str = "Progress : Migration completed!";
pub const RECOVERY_COMPLETED: &str = "Recovery completed!";
pub const CONNECTIVITY_COMPLETED: &str = "Connectivity Test completed!";

/// "LPARs requiring recovery: x LPARs".
pub fn requiring_recovery(count: usize) -> String {
    format!("LPARs requiring recovery: {count} LPARs")
}

/// The manual's count line for `lpars`, when one or more need recovery.
pub fn requiring_recovery_line(lpars: &[reply::Lpar]) -> Option<String> {
    let n = lpars
        .iter()
        .filter(|l| l.state == LparState::NeedsRecovery)
        .count();
    (n > 0).then(|| requiring_recovery(n))
}

/// `cancel ID`: in text mode, prints the manual's progress line and, unless
/// `no_wait`, waits for the migration to end and prints the closing line
/// (exit 2 when it ended otherwise than by the cancel).
pub fn cancel(g: &Global, client: &mut Client, id: u64, no_wait: bool) -> Result<(), Failure> {
    let r = client
        .request(request::Cancel { id })
        .map_err(Failure::Refused)?;
    if g.json {
        return print_reply(g, &r);
    }
    println!("{CANCELING}");
    if no_wait {
        return Ok(());
    }
    match client.wait_for_migration(id, &mut |_| {}) {
        Err(e) if e.reason == reason::TERMINATED_BY_USER => {
            println!("{CANCEL_COMPLETED}");
            Ok(())
        }
        Err(e) => Err(Failure::Failed(e)),
        // The last round had already begun: the LPAR moved after all.
        Ok(_) => {
            println!("{MIGRATION_COMPLETED} (it ended before the cancel took effect)");
            Ok(())
        }
    }
}

/// `recover LPAR`: the agent's answer, "Recovery completed!", and how many
/// LPARs on this agent still need recovery.
pub fn recover(
    g: &Global,
    client: &mut Client,
    lpar: String,
    peer: Option<String>,
) -> Result<(), Failure> {
    let r = client
        .request(request::Recover { lpar, peer })
        .map_err(Failure::Refused)?;
    if g.json {
        return print_reply(g, &r);
    }
    println!(
        "'{}' runs on {} (its copy on {} removed; ownership had {}passed)",
        r.lpar,
        r.runs_on,
        r.removed_from,
        if r.committed { "" } else { "not " }
    );
    println!("{RECOVERY_COMPLETED}");
    if let Ok(list) = client.request(request::LparList {})
        && let Some(line) = requiring_recovery_line(&list.lpars)
    {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_reads_as_in_the_manual() {
        assert_eq!(requiring_recovery(2), "LPARs requiring recovery: 2 LPARs");
    }
}
