//! `rollback-wwn`: the manual's WWN rollback after a failed Concurrent
//! Maintenance migration.
//!
//! A live migration that fails after the suspension began (stage 0x4060
//! on) leaves an LPAR with FC ports `wwn-rollback-pending`: the destination
//! may have taken its identities and logged in with its migration WWPNs.
//! The guest runs on here, but until the rollback the LPAR refuses
//! everything except deactivation (the manual: no migration on a host with
//! WWNs to roll back). The rollback gives every logical FC port back its
//! configured WWPN pair (the assignment before the migration), in port
//! order, and returns the LPAR to `Act` (or `Dea` if it was deactivated
//! meanwhile). While any LPAR of the host waits for its rollback, the host
//! refuses migrations out of it with the manual's "Migration WWNs are
//! already used" (`busy::check_wwn_rollbacks`); [`status_list`] is the
//! manual's WWN Status List, which an LPAR leaves once rolled back.

use super::Agent;
use crate::control::{LparState, reply};
use crate::emg::{Emg, Module};
use std::sync::Arc;

/// `phase` of the rollback refusals (the Recovery module's LPAR checks).
pub const PHASE_ROLLBACK: u16 = 0x0011;

fn pairs(config: &crate::partition::LparConfig) -> Vec<reply::WwpnPair> {
    config
        .fc_ports
        .iter()
        .map(|p| reply::WwpnPair {
            port: p.port.into(),
            wwpn: p.wwpn.to_string(),
            migration_wwpn: p.migration_wwpn.to_string(),
        })
        .collect()
}

/// `wwn-status`: every LPAR of this host with WWNs to roll back.
pub fn status_list(agent: &Arc<Agent>) -> Result<reply::WwnStatusList, Emg> {
    let inv = agent.inventory.lock().unwrap();
    let lpars = inv
        .wwn_rollbacks_pending()
        .into_iter()
        .map(|name| {
            let e = inv.get(&name)?;
            Ok(reply::WwnStatus {
                running: e.lpar.as_ref().is_some_and(|l| l.is_running()),
                fc_ports: pairs(&e.config),
                lpar: name,
            })
        })
        .collect::<Result<_, Emg>>()?;
    Ok(reply::WwnStatusList {
        host: agent.config.name.clone(),
        lpars,
    })
}

/// `rollback-wwn`: see the module doc.
pub fn rollback(agent: &Arc<Agent>, name: &str) -> Result<reply::WwnRolledBack, Emg> {
    let mut inv = agent.inventory.lock().unwrap();
    let entry = inv.get(name)?;
    if entry.state != LparState::WwnRollbackPending {
        return Err(Emg::new(
            Module::Recovery,
            PHASE_ROLLBACK,
            0x30,
            format!(
                "LPAR '{name}' has no WWNs to roll back: it is {}.",
                entry.state.label()
            ),
            "Nothing to do; the WWN Status List shows only LPARs flagged after a failed \
             Concurrent Maintenance migration.",
        ));
    }
    let running = entry.lpar.as_ref().is_some_and(|l| l.is_running());
    let pairs = pairs(&entry.config);
    let state = if running {
        LparState::Act
    } else {
        LparState::Dea
    };
    inv.set_state(name, state)?;
    log::info!(
        "WWN rollback of '{name}': {} FC port(s) back to their WWPNs; now {}",
        pairs.len(),
        state.label()
    );
    Ok(reply::WwnRolledBack {
        lpar: name.to_string(),
        state,
        fc_ports: pairs,
    })
}
