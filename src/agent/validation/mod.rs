//! Pre-migration validation: the manual's checklist (chapter 5) as far as
//! it has a meaning for this agent, run by both agents and reported item by
//! item.
//!
//! ```text
//! moverctl validate ─▶ source agent                       destination agent
//!                      source checks (LPAR, own path)
//!                      validate-incoming {config, mode,
//!                        source facts} ─────────────────▶ destination checks
//!                                                          (room, identity, paths)
//!                             ◀── {host facts, checks} ───
//!                      live: bandwidth from a connectivity test (connectivity.rs)
//!                ◀──── {passed, checks: [{item, side, outcome, detail, error?}]}
//! ```
//!
//! | item | side | rule |
//! |---|---|---|
//! | `lpar-name` | source | name is not `NO_NAME` |
//! | `lpar-state` | source | live: Act; shutdown: Dea, or Act (the guest is shut down first); never Fai |
//! | `nic-mode` | source | only shared-mode NICs |
//! | `nic-mac` | source | no manually changed MAC |
//! | `fc-mode` | source | only shared-mode FC ports |
//! | `fc-count` | source | live: fewer than 8 FC ports |
//! | `migration-path` | both | a path (the named one, or the first) exists, and without a VLAN ID is neither on the management path's NIC segment nor its address (MMS Thread `F00d`) |
//! | `lpar-name-unique` | destination | no LPAR of that name there |
//! | `different-hosts` | destination | the agents' names differ |
//! | `hvm-model` | destination | same HVM model; live needs Advanced or Enterprise class (any other name, e.g. `sim`, is its own class) |
//! | `build-identity` | destination | same wire protocol version |
//! | `backend` | destination | same partition backend (`sim`, `kvm`): device state and guests differ between backends |
//! | `cpus` | destination | the LPAR's vCPUs fit the host's CPUs |
//! | `memory` | destination | the LPAR fits the host memory not yet in use |
//! | `memory-contiguous` | destination | the file system holding LPAR memory has room for one mapping of that size (backed on demand: for the memory the LPAR holds now) |
//! | `nic-segments` | destination | every NIC's segment exists there |
//! | `vfc-ids` | destination | a free vfcID per FC port (pinned ones free) on the same physical port |
//! | `identities-unique` | destination | no MAC or WWPN of the LPAR is held by an LPAR of this host |
//! | `console` | destination | virtual consoles in use (`resources.consoles`); all taken: the LPAR migrates without one |
//! | `active-lpars` | destination | live: fewer activated LPARs than `resources.max_active_lpars` (MMS `80000004 0030`) |
//! | `time-zone` | destination | same HVM time zone |
//! | `ntp-servers` | destination | same NTP servers |
//! | `path-addresses` | destination | the two paths have distinct IPv4 addresses |
//! | `bandwidth` | source | live: measured goodput at least [`MIN_GOODPUT_BITS`] |
//! | `path-segment` | both | live: warns when the path's `segment` is an activated LPAR's NIC segment ([`preflight`]) |
//! | `device-status` | destination | the LPAR's NIC ports and the path's interface are up (live: else fail; shutdown: warn) |
//! | `host-load` | both | live: warns over 80% CPU or a path interface over 50% of its speed |
//!
//! FC ports: an LPAR FC port's `port` is the index of the host's
//! `resources.fc_ports` entry it sits on; that entry's `vfc_ids` is its pool.
//! NIC segments: `resources.nic_segments` entries are `<segment>` or
//! `<segment>@<interface>` (the interface the destination announces on).

//!
//! The checks live in [`checks`] (the LPAR, the paths, the hosts' identity)
//! and [`resources`] (the destination's room, which real migrations also use
//! to plan vfcIDs and segments); [`orchestration`] runs them on both agents.

mod checks;
mod devices;
#[cfg(test)]
mod fixtures;
mod orchestration;
mod preflight;
mod resources;

pub use checks::*;
pub use devices::*;
pub use orchestration::*;
pub use preflight::*;
pub use resources::*;

use crate::control::reply::{Check, Outcome};
use crate::control::{HostFacts, MIN_GOODPUT_BITS, MigrationMode, Side};
use crate::emg::{Emg, Module, phase};

/// The manual's refusal of a destination that is the source itself (MMS
/// `0x00 00000003 0020 02`), whether the checklist or the migration finds it.
pub fn same_host(agent: &str) -> Emg {
    Emg::new(
        Module::Management,
        phase::CONNECT,
        0x03,
        format!("Source and destination are the same host ({agent})."),
        "Choose a different destination host.",
    )
}

/// Live mode refuses this many FC ports or more (the manual: "Under 8 ports").
pub const MAX_LIVE_FC_PORTS: usize = 8;

impl Check {
    fn pass(item: &str, side: Side, detail: impl Into<String>) -> Check {
        Check {
            item: item.into(),
            side,
            outcome: Outcome::Pass,
            detail: detail.into(),
            error: None,
        }
    }

    fn skip(item: &str, side: Side, detail: impl Into<String>) -> Check {
        Check {
            outcome: Outcome::Skip,
            ..Check::pass(item, side, detail)
        }
    }

    /// A migration-path item as `mode` needs it: Shutdown mode has no
    /// migration-path requirement (the manual's Table 2-9), so it is skipped
    /// there, with what was found.
    fn for_path(self, mode: MigrationMode) -> Check {
        if mode == MigrationMode::Live {
            return self;
        }
        let found = self.error.as_ref().map_or(&self.detail, |e| &e.message);
        let detail = format!("Shutdown mode needs no migration path ({found})");
        Check::skip(&self.item, self.side, detail)
    }

    /// A failure; the detail is the EMG's message.
    fn fail(item: &str, side: Side, error: Emg) -> Check {
        Check {
            item: item.into(),
            side,
            outcome: Outcome::Fail,
            detail: error.message.clone(),
            error: Some(error),
        }
    }
}

/// An MMS compatibility error (phase 0x0080).
fn compat(cause: u32, message: String, action: &str) -> Emg {
    Emg::new(
        Module::Management,
        phase::COMPATIBILITY,
        cause,
        message,
        action,
    )
}

/// An MMS "could not define an LPAR" error (phase 0x0030); `detail` is the
/// manual's op2.
fn define(cause: u32, detail: u64, message: String, action: &str) -> Emg {
    Emg::new(Module::Management, phase::DEFINE, cause, message, action).detail(detail)
}

// ---- source side --------------------------------------------------------

/// The summary EMG of a refused validation: names every failing item.
pub fn refusal(lpar: &str, checks: &[Check]) -> Option<Emg> {
    let failed: Vec<&Check> = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .collect();
    let first = failed.first()?;
    let list = failed
        .iter()
        .map(|c| format!("{} ({}): {}", c.item, c.side.label(), c.detail))
        .collect::<Vec<_>>()
        .join("; ");
    let e = first.error.clone();
    let mut emg = Emg::new(
        Module::Management,
        phase::COMPATIBILITY,
        0x2000,
        format!(
            "Validation refused the migration of '{lpar}': {} item(s) failed: {list}",
            failed.len()
        ),
        e.map_or("Fix the failing items and retry.".to_string(), |e| {
            if failed.len() == 1 {
                e.action
            } else {
                format!("First: {} Then fix the other items and retry.", e.action)
            }
        }),
    );
    emg.detail = failed.len() as u64;
    Some(emg)
}

/// The warnings among `checks`, as `<item> (<side>): <detail>` lines.
pub fn warnings(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.outcome == Outcome::Warn)
        .map(|c| format!("{} ({}): {}", c.item, c.side.label(), c.detail))
        .collect()
}

// ---- the agents ---------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::control::LparState;
    use crate::partition::config::NO_NAME;

    #[test]
    fn the_refusal_names_every_failing_item() {
        let mut l = lpar();
        l.name = NO_NAME.into();
        let checks = vec![
            check_name(&l),
            check_fc_count(&lpar(), MigrationMode::Live),
            check_state(NO_NAME, LparState::Dea, MigrationMode::Live),
        ];
        let e = refusal(NO_NAME, &checks).unwrap();
        assert_eq!(e.detail, 2);
        assert!(e.message.contains("lpar-name (source)"), "{e}");
        assert!(e.message.contains("lpar-state (source)"), "{e}");
        assert!(!e.message.contains("fc-count"), "{e}");
        assert!(refusal("x", &checks[1..2]).is_none());
    }
}
