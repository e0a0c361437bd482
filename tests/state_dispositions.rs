//! What happens to each device-state item in a move, as an operator would
//! check it: vfcIDs, WWPN/MAC exchange, what Shutdown mode leaves behind,
//! clocks, and the refusals the manual makes.

use lpar_mover::state::{
    DeviceState, Disposition, HbaIdentity, ITEMS, Identities, Item, LogicalFcHba, MacAddress,
    MigrationMode, NicIdentity, PciAddress, StateError, UsbAssignment, Wwpn, exchange_identities,
};
use std::collections::BTreeSet;

fn hba(vfc_id: u16, wwpn: u64) -> LogicalFcHba {
    LogicalFcHba {
        vfc_id,
        wwpn: Wwpn::from_u64(wwpn),
        migration_wwpn: Wwpn::from_u64(wwpn | 0x80),
        pci_address: PciAddress {
            bus: 0,
            device: 5,
            function: 0,
        },
        nvram: vec![1, 2, 3],
        mmio: None,
    }
}

fn lpar_with_hbas(vfc_ids: &[u16]) -> DeviceState {
    let mut s = DeviceState::sample(2);
    s.fc_hbas = vfc_ids
        .iter()
        .enumerate()
        .map(|(i, &v)| hba(v, 0x5006_0e80_0000_0001 + i as u64))
        .collect();
    s
}

fn vfc_ids(s: &DeviceState) -> Vec<u16> {
    s.fc_hbas.iter().map(|h| h.vfc_id).collect()
}

#[test]
fn each_hba_gets_the_smallest_free_vfc_id_on_the_destination() {
    let mut s = lpar_with_hbas(&[1, 2, 3]);
    let free: BTreeSet<u16> = [9, 4, 17, 6].into();
    s.assign_vfc_ids(&free, false).unwrap();
    assert_eq!(vfc_ids(&s), [4, 6, 9]);
}

#[test]
fn hba_core_dedicated_mode_keeps_the_source_vfc_ids() {
    let mut s = lpar_with_hbas(&[7, 3]);
    let free: BTreeSet<u16> = [1, 2, 3, 7].into();
    s.assign_vfc_ids(&free, true).unwrap();
    assert_eq!(vfc_ids(&s), [7, 3]);
}

#[test]
fn a_pinned_vfc_id_that_is_taken_on_the_destination_is_refused_naming_the_hba() {
    let mut s = lpar_with_hbas(&[7, 3]);
    let free: BTreeSet<u16> = [1, 2, 7].into();
    let e = s.assign_vfc_ids(&free, true).unwrap_err();
    assert_eq!(
        e,
        StateError::PinnedVfcIdTaken {
            hba: 1,
            wwpn: Wwpn::from_u64(0x5006_0e80_0000_0002),
            vfc_id: 3
        }
    );
    assert!(e.to_string().contains("50:06:0e:80:00:00:00:02"), "{e}");
    assert_eq!(vfc_ids(&s), [7, 3], "nothing changed");
}

#[test]
fn running_out_of_free_vfc_ids_names_the_hba_and_changes_nothing() {
    let mut s = lpar_with_hbas(&[1, 2, 3]);
    let free: BTreeSet<u16> = [10, 11].into();
    let e = s.assign_vfc_ids(&free, false).unwrap_err();
    assert_eq!(
        e,
        StateError::NoFreeVfcId {
            hba: 2,
            wwpn: Wwpn::from_u64(0x5006_0e80_0000_0003),
            needed: 3,
            free: 2
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("logical FC HBA #2") && msg.contains("50:06:0e:80:00:00:00:03"),
        "{msg}"
    );
    assert_eq!(vfc_ids(&s), [1, 2, 3]);
    assert!(
        lpar_with_hbas(&[5])
            .assign_vfc_ids(&BTreeSet::new(), false)
            .is_err()
    );
}

fn identities(wwpn: u64, mac: u8) -> Identities {
    Identities {
        hbas: vec![HbaIdentity {
            wwpn: Wwpn::from_u64(wwpn),
            migration_wwpn: Wwpn::from_u64(wwpn + 1),
        }],
        nics: vec![NicIdentity {
            mac: MacAddress([2, 0, 0, 0, 0, mac]),
            set_manually: false,
        }],
    }
}

#[test]
fn wwpns_migration_wwpns_and_macs_are_exchanged_between_source_and_destination() {
    let src = identities(0x5006_0e80_0000_0010, 0x10);
    let dst = identities(0x5006_0e80_0000_0020, 0x20);
    let x = exchange_identities(&src, &dst).unwrap();
    // The moved LPAR keeps its identity; the source slot takes the one the
    // destination slot had.
    assert_eq!(x.destination, src);
    assert_eq!(x.source, dst);
    assert_eq!(
        x.destination.hbas[0].migration_wwpn,
        Wwpn::from_u64(0x5006_0e80_0000_0011)
    );
}

#[test]
fn the_identities_of_a_state_are_its_ports_in_order() {
    let s = lpar_with_hbas(&[1, 2]);
    let id = s.identities();
    assert_eq!(id.hbas.len(), 2);
    assert_eq!(id.hbas[1].wwpn, s.fc_hbas[1].wwpn);
    assert_eq!(id.hbas[1].migration_wwpn, s.fc_hbas[1].migration_wwpn);
    assert_eq!(id.nics[0].mac, s.nics[0].mac);
}

#[test]
fn exchange_is_refused_when_port_counts_differ() {
    let src = identities(0x10, 1);
    let mut dst = identities(0x20, 2);
    dst.hbas.push(dst.hbas[0]);
    let e = exchange_identities(&src, &dst).unwrap_err();
    assert!(matches!(
        e,
        StateError::IdentityCountMismatch {
            source: 1,
            destination: 2,
            ..
        }
    ));
    let mut dst = identities(0x20, 2);
    dst.nics.clear();
    assert!(exchange_identities(&src, &dst).is_err());
}

#[test]
fn a_manually_set_mac_is_not_transferred_so_the_exchange_is_refused() {
    let mut src = identities(0x10, 1);
    src.nics[0].set_manually = true;
    let e = exchange_identities(&src, &identities(0x20, 2)).unwrap_err();
    assert_eq!(
        e,
        StateError::ManualMac {
            nic: 0,
            mac: MacAddress([2, 0, 0, 0, 0, 1])
        }
    );
}

#[test]
fn shutdown_mode_drops_every_live_only_item_and_keeps_the_rest() {
    let full = DeviceState::sample(4);
    for r in ITEMS {
        if r.disposition != Disposition::NotMigrated && r.item != Item::NicManualMacAddress {
            assert!(full.carries(r.item), "the sample carries {:?}", r.item);
        }
    }
    let shut = full.clone().for_mode(MigrationMode::Shutdown);
    for r in ITEMS {
        let expected = match r.disposition {
            Disposition::MigratedLiveOnly | Disposition::NotMigrated => false,
            _ => full.carries(r.item),
        };
        assert_eq!(
            shut.carries(r.item),
            expected,
            "{:?} in Shutdown mode",
            r.item
        );
    }
    assert!(shut.vcpus.is_empty() && shut.rtc.is_none() && shut.vga.snapshot.is_none());
    assert!(shut.nics.iter().all(|n| n.mmio.is_none()));
    assert_eq!(shut.fc_hbas[0].nvram, full.fc_hbas[0].nvram);
    assert_eq!(shut.firmware, full.firmware);
    assert_eq!(shut.nics[0].mac, full.nics[0].mac);
}

#[test]
fn live_mode_carries_everything_but_the_usb_used_state() {
    let mut full = DeviceState::sample(2);
    full.usb = UsbAssignment::HashRunning;
    let live = full.clone().for_mode(MigrationMode::Live);
    assert_eq!(live.usb, UsbAssignment::HashAssigned);
    assert_eq!(
        DeviceState {
            usb: full.usb,
            ..live
        },
        full
    );
}

#[test]
fn live_migration_is_refused_while_a_usb_device_is_running() {
    let mut s = DeviceState::sample(1);
    for ok in [
        UsbAssignment::Assigned,
        UsbAssignment::HashAssigned,
        UsbAssignment::Unassigned,
    ] {
        s.usb = ok;
        s.check_live_migratable().unwrap();
    }
    s.usb = UsbAssignment::Running;
    let e = lpar_mover::Emg::from(s.check_live_migratable().unwrap_err());
    assert_eq!(e.reason, lpar_mover::emg::reason::USB_ATTACHED);
    assert!(e.message.contains("USB is attached"), "{e}");
    assert!(e.action.contains("Detach USB"), "{e}");
}

#[test]
fn the_guest_wall_clock_survives_a_move_between_hosts_with_different_clocks() {
    let mut s = DeviceState::sample(1);
    s.rtc.as_mut().unwrap().offset_ns = -5_000_000_000;
    let src_now: i64 = 1_800_000_000_000_000_000;
    let dst_now: i64 = src_now + 750_000_000; // destination 0.75 s ahead
    let guest_before = s.rtc.unwrap().guest_time_ns(src_now);

    let mut moved =
        DeviceState::decode(&s.for_mode(MigrationMode::Live).encode().unwrap()).unwrap();
    moved
        .rtc
        .as_mut()
        .unwrap()
        .adjust_for_host_offset(src_now - dst_now);
    assert_eq!(moved.rtc.unwrap().guest_time_ns(dst_now), guest_before);
}

#[test]
fn suspension_compensation_advances_the_guest_counters_by_the_suspension() {
    let mut s = DeviceState::sample(2);
    s.vcpus[1].tsc = 1_000;
    let hpet = s.hpet.as_mut().unwrap();
    hpet.config |= 1; // counter enabled
    s.compensate_suspension(500_000_000); // the manual's 0.5 s

    // 2.4 GHz TSC: 1.2e9 ticks.
    assert_eq!(s.vcpus[0].tsc, 1_200_000_000);
    assert_eq!(s.vcpus[1].tsc, 1_200_001_000);
    // 14.31818 MHz HPET: 0.5 s = 7_159_090 ticks (period 69_841_279 fs).
    assert_eq!(s.hpet.unwrap().counter, 500_000_000_000_000 / 69_841_279);
    // 3.579545 MHz PM timer.
    assert_eq!(s.pm_timer.unwrap().counter, 1_789_772);

    // A disabled HPET does not count.
    let mut s = DeviceState::sample(1);
    s.compensate_suspension(1_000_000);
    assert_eq!(s.hpet.unwrap().counter, 0);
}

#[test]
fn usb_assigned_state_on_the_destination_is_a_unless_it_was_unassigned() {
    assert_eq!(
        UsbAssignment::HashAssigned.on_destination(),
        UsbAssignment::Assigned
    );
    assert_eq!(
        UsbAssignment::Unassigned.on_destination(),
        UsbAssignment::Unassigned
    );
}
