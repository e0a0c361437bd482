//! The checklist items about the LPAR's devices: NICs and FC ports in
//! shared mode, MACs as derived, the live FC-port limit, and no USB device
//! in use (the manual's "USB is attached" refusal of Concurrent
//! Maintenance).

use super::*;
use crate::control::MigrationMode as Mode;
use crate::emg::Emg;
use crate::partition::{DeviceMode, LparConfig};
use crate::state::StateError;

fn dedicated_error(what: &str, list: &[usize]) -> Emg {
    compat(
        0x1004,
        format!(
            "The source LPAR has some dedicated devices: {what} {} in dedicated mode.",
            list.iter()
                .map(|i| format!("#{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "Change the device scheduling mode to shared mode and retry migration. If necessary, \
         restore the device scheduling mode to dedicated mode after migration.",
    )
}

pub fn check_nic_modes(config: &LparConfig) -> Check {
    let dedicated: Vec<usize> = config
        .nics
        .iter()
        .enumerate()
        .filter(|(_, n)| n.mode == DeviceMode::Dedicated)
        .map(|(i, _)| i)
        .collect();
    if dedicated.is_empty() {
        return Check::pass(
            "nic-mode",
            Side::Source,
            format!("{} NICs, all shared", config.nics.len()),
        );
    }
    Check::fail("nic-mode", Side::Source, dedicated_error("NIC", &dedicated))
}

pub fn check_manual_macs(config: &LparConfig) -> Check {
    let manual: Vec<String> = config
        .nics
        .iter()
        .enumerate()
        .filter(|(_, n)| n.mac_set_manually)
        .map(|(i, n)| format!("#{i} ({})", n.mac))
        .collect();
    if manual.is_empty() {
        return Check::pass("nic-mac", Side::Source, "no MAC address changed by hand");
    }
    Check::fail(
        "nic-mac",
        Side::Source,
        compat(
            0x1012,
            format!(
                "The MAC address of NIC {} was changed manually; it is not transferred.",
                manual.join(", ")
            ),
            "Restore the NIC's MAC address to the one derived from the MAC seed, then retry.",
        ),
    )
}

pub fn check_fc_modes(config: &LparConfig) -> Check {
    let dedicated: Vec<usize> = config
        .fc_ports
        .iter()
        .enumerate()
        .filter(|(_, p)| p.mode == DeviceMode::Dedicated)
        .map(|(i, _)| i)
        .collect();
    if dedicated.is_empty() {
        return Check::pass(
            "fc-mode",
            Side::Source,
            format!("{} FC ports, all shared", config.fc_ports.len()),
        );
    }
    Check::fail(
        "fc-mode",
        Side::Source,
        dedicated_error("FC port", &dedicated),
    )
}

pub fn check_fc_count(config: &LparConfig, mode: Mode) -> Check {
    let n = config.fc_ports.len();
    if mode == Mode::Shutdown {
        return Check::skip(
            "fc-count",
            Side::Source,
            format!("{n} FC ports; the limit applies to live mode only"),
        );
    }
    if n < MAX_LIVE_FC_PORTS {
        return Check::pass(
            "fc-count",
            Side::Source,
            format!("{n} FC ports, under {MAX_LIVE_FC_PORTS}"),
        );
    }
    Check::fail(
        "fc-count",
        Side::Source,
        compat(
            0x1013,
            format!(
                "The LPAR has {n} FC ports; live migration needs under {MAX_LIVE_FC_PORTS} ports."
            ),
            "Remove FC ports from the LPAR until it has 7 or fewer, or migrate in shutdown mode.",
        ),
    )
}

/// A USB device in use (`R`, `#R`) refuses Concurrent Maintenance with the
/// manual's source LPAR Mover `0x00 00000000 0030 04`, op3 0x33; Shutdown
/// mode carries no used state, so it passes.
pub fn check_usb(config: &LparConfig, mode: Mode) -> Check {
    let item = "usb";
    let shown = format!("USB assigned state {}", config.usb);
    if mode == Mode::Shutdown {
        return Check::pass(item, Side::Source, format!("{shown}; shutdown mode"));
    }
    if config.usb.is_running() {
        let refusal = StateError::UsbInUse { state: config.usb };
        return Check::fail(item, Side::Source, refusal.into());
    }
    Check::pass(item, Side::Source, shown)
}

/// No MAC or WWPN of the incoming LPAR is one an LPAR of this host already
/// holds. The manual warns that a reused VNIC System No. or a restore of
/// only one side duplicates them; two LPARs answering to one MAC or
/// logging in with one WWPN would share traffic and LUs, so the
/// destination refuses rather than finding out on the network.
pub fn check_identities_unique(
    here: &HostFacts,
    lpar: &LparConfig,
    others: &[LparConfig],
) -> Check {
    let item = "identities-unique";
    let d = Side::Destination;
    let wwpns = |c: &LparConfig| {
        c.fc_ports
            .iter()
            .flat_map(|p| [p.wwpn, p.migration_wwpn])
            .collect::<Vec<_>>()
    };
    let mut clashes = Vec::new();
    for other in others.iter().filter(|o| o.name != lpar.name) {
        for nic in &lpar.nics {
            if other.nics.iter().any(|n| n.mac == nic.mac) {
                clashes.push(format!("MAC {} (held by '{}')", nic.mac, other.name));
            }
        }
        let held = wwpns(other);
        for w in wwpns(lpar) {
            if held.contains(&w) {
                clashes.push(format!("WWPN {w} (held by '{}')", other.name));
            }
        }
    }
    if clashes.is_empty() {
        return Check::pass(
            item,
            d,
            format!(
                "no MAC or WWPN of '{}' is in use on {}",
                lpar.name, here.agent
            ),
        );
    }
    Check::fail(
        item,
        d,
        compat(
            0x101B,
            format!(
                "MAC addresses or WWNs are duplicated: {} of '{}' already in use on {}.",
                clashes.join(", "),
                lpar.name,
                here.agent
            ),
            "Give the LPARs distinct MAC addresses and WWPNs (check the VNIC System No. and \
             that both hosts' configurations were restored together), then retry migration.",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::state::UsbAssignment;

    #[test]
    fn only_shared_devices_and_no_manual_mac() {
        let l = lpar();
        assert_eq!(outcome(&check_nic_modes(&l)), Outcome::Pass);
        assert_eq!(outcome(&check_fc_modes(&l)), Outcome::Pass);
        assert_eq!(outcome(&check_manual_macs(&l)), Outcome::Pass);
        let mut d = lpar();
        d.nics[0].mode = DeviceMode::Dedicated;
        d.fc_ports[0].mode = DeviceMode::Dedicated;
        d.nics[0].mac_set_manually = true;
        for c in [
            check_nic_modes(&d),
            check_fc_modes(&d),
            check_manual_macs(&d),
        ] {
            assert_eq!(c.outcome, Outcome::Fail, "{c:?}");
        }
        assert_eq!(check_nic_modes(&d).error.unwrap().cause, 0x1004);
    }

    #[test]
    fn live_mode_needs_under_eight_fc_ports() {
        let mut l = lpar();
        l.fc_ports = (0..7).map(|i| fc(0, i)).collect();
        assert_eq!(outcome(&check_fc_count(&l, Mode::Live)), Outcome::Pass);
        l.fc_ports.push(fc(0, 7));
        assert_eq!(outcome(&check_fc_count(&l, Mode::Live)), Outcome::Fail);
        assert_eq!(outcome(&check_fc_count(&l, Mode::Shutdown)), Outcome::Skip);
    }

    #[test]
    fn a_usb_device_in_use_refuses_live_mode_only_with_the_manuals_code() {
        let mut l = lpar();
        for usb in UsbAssignment::ALL {
            l.usb = *usb;
            let live = check_usb(&l, Mode::Live);
            assert_eq!(live.error.is_some(), usb.is_running(), "{usb}");
            if let Some(e) = live.error {
                assert_eq!((e.op1(), e.reason), (0x0000_0000_0000_3004, 0x33), "{e}");
                assert!(
                    e.message.starts_with(
                        "LPAR Migration was canceled. USB is attached to the specified LPAR"
                    ),
                    "{e}"
                );
            }
            assert!(check_usb(&l, Mode::Shutdown).error.is_none(), "{usb}");
        }
    }
}
