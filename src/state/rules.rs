//! What happens to each item of the device state in a move: the manual's
//! Table 1-2, as one table ([`ITEMS`]) and the functions that apply it.
//!
//! Nothing else in the crate decides whether an item moves. The functions
//! here read [`ITEMS`] (or implement the one rule an item's disposition
//! names):
//!
//! | disposition | applied by |
//! |---|---|
//! | `Migrated` | carried as is |
//! | `MigratedLiveOnly` | [`DeviceState::for_mode`] drops it in Shutdown mode |
//! | `ReassignedByDestination` | [`DeviceState::assign_vfc_ids`] |
//! | `Exchanged` | [`exchange_identities`] |
//! | `NotMigrated` | [`DeviceState::for_mode`] strips it; some are refusals ([`DeviceState::check_live_migratable`], [`exchange_identities`]) |
//!
//! Clock rules ride along: [`super::LogicalRtc::adjust_for_host_offset`]
//! and [`DeviceState::compensate_suspension`].
//!
//! Items that Table 1-2 lists but that are LPAR *configuration* rather than
//! device state (name, CPU count, memory size, service ratio…) belong to the
//! partition configuration and are not in this table.

use super::DeviceState;
use super::chipset::PmTimer;
use super::error::StateError;
use super::ids::{MacAddress, UsbAssignment, Wwpn};
use std::collections::BTreeSet;

pub use super::mode::MigrationMode;

/// What a move does to one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Carried to the destination in both modes.
    Migrated,
    /// Carried in Concurrent Maintenance mode only.
    MigratedLiveOnly,
    /// Not carried: the destination assigns a fresh value.
    ReassignedByDestination,
    /// Swapped: the destination LPAR takes the source's value and the source
    /// slot takes the destination's.
    Exchanged,
    /// Not carried at all.
    NotMigrated,
}

impl Disposition {
    /// Whether the item's value crosses the wire in `mode`.
    pub fn carried_in(self, mode: MigrationMode) -> bool {
        match self {
            Disposition::Migrated | Disposition::Exchanged => true,
            Disposition::MigratedLiveOnly => mode == MigrationMode::Live,
            // The vfcID rides along (the destination needs to know which
            // HBA is which, and keeps it under HBA Core Dedicated mode), but
            // is overwritten by `assign_vfc_ids`.
            Disposition::ReassignedByDestination => true,
            Disposition::NotMigrated => false,
        }
    }
}

/// One item of the device state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Item {
    /// vCPU registers.
    VcpuRegisters,
    /// Local APICs.
    Lapic,
    /// The I/O APIC.
    IoApic,
    /// The 8259A PICs.
    Pic,
    /// PCI configuration space.
    PciConfiguration,
    /// The 8254 PIT.
    Pit,
    /// The HPET.
    Hpet,
    /// The ACPI PM timer.
    PmTimer,
    /// The logical RTC.
    LogicalRtc,
    /// NIC: MAC address.
    NicMacAddress,
    /// NIC: manually set MAC address.
    NicManualMacAddress,
    /// NIC: VNIC number.
    NicVnicNumber,
    /// NIC: VLAN mode.
    NicVlanMode,
    /// NIC: VLAN ID.
    NicVlanId,
    /// NIC: device type.
    NicDeviceType,
    /// NIC: promiscuous mode.
    NicPromiscuousMode,
    /// NIC: inter-LPAR packet filtering.
    NicInterLparFiltering,
    /// NIC: controller MMIO.
    NicMmio,
    /// FC: vfcID.
    FcVfcId,
    /// FC: WWPN.
    FcWwpn,
    /// FC: migration WWPN.
    FcMigrationWwpn,
    /// FC: PCI address.
    FcPciAddress,
    /// FC: HBA NVRAM.
    FcNvram,
    /// FC: HBA MMIO.
    FcMmio,
    /// USB: assigned state.
    UsbAssignedState,
    /// USB: used state.
    UsbUsedState,
    /// VGA: assigned state.
    VgaAssignedState,
    /// VGA: VRAM.
    VgaVram,
    /// VGA: registers.
    VgaRegisters,
    /// Serial port I/O registers.
    SerialIoPorts,
    /// The LPAR UUID.
    Uuid,
    /// Firmware NVRAM.
    FirmwareNvram,
    /// ACPI registers.
    AcpiRegisters,
}

impl Item {
    /// Every item, in declaration order.
    pub const ALL: &'static [Item] = &[
        Item::VcpuRegisters,
        Item::Lapic,
        Item::IoApic,
        Item::Pic,
        Item::PciConfiguration,
        Item::Pit,
        Item::Hpet,
        Item::PmTimer,
        Item::LogicalRtc,
        Item::NicMacAddress,
        Item::NicManualMacAddress,
        Item::NicVnicNumber,
        Item::NicVlanMode,
        Item::NicVlanId,
        Item::NicDeviceType,
        Item::NicPromiscuousMode,
        Item::NicInterLparFiltering,
        Item::NicMmio,
        Item::FcVfcId,
        Item::FcWwpn,
        Item::FcMigrationWwpn,
        Item::FcPciAddress,
        Item::FcNvram,
        Item::FcMmio,
        Item::UsbAssignedState,
        Item::UsbUsedState,
        Item::VgaAssignedState,
        Item::VgaVram,
        Item::VgaRegisters,
        Item::SerialIoPorts,
        Item::Uuid,
        Item::FirmwareNvram,
        Item::AcpiRegisters,
    ];
}

/// One row of the disposition table.
#[derive(Clone, Copy, Debug)]
pub struct ItemRule {
    /// The device-state item.
    pub item: Item,
    /// What happens to it in this mode.
    pub disposition: Disposition,
    /// The manual's words for this row (Table 1-2 unless said otherwise;
    /// columns are Setting / Shutdown / Concurrent Maintenance).
    pub manual: &'static str,
}

use Disposition::*;

/// The disposition of every item, per the manual.
pub const ITEMS: &[ItemRule] = &[
    ItemRule {
        item: Item::VcpuRegisters,
        disposition: MigratedLiveOnly,
        manual: "Not a row of Table 1-2: a running guest's CPU state exists only in \
                 Concurrent Maintenance; Shutdown mode shuts the guest down first \
                 (\"Shutdown Guest OS (Source)\"). \"OS System Time: Recorded on memory on OS\".",
    },
    ItemRule {
        item: Item::Lapic,
        disposition: MigratedLiveOnly,
        manual: "Time / \"Local timer device\", \"The other local devices\" (row values \
                 garbled in the extraction; live-only like every other interrupt device).",
    },
    ItemRule {
        item: Item::IoApic,
        disposition: MigratedLiveOnly,
        manual: "Interrupt / I/O APIC: No, No, Yes",
    },
    ItemRule {
        item: Item::Pic,
        disposition: MigratedLiveOnly,
        manual: "Interrupt / PIC: No, No, Yes",
    },
    ItemRule {
        item: Item::PciConfiguration,
        disposition: MigratedLiveOnly,
        manual: "Interrupt / PCI Configuration: No, No, Yes",
    },
    ItemRule {
        item: Item::Pit,
        disposition: MigratedLiveOnly,
        manual: "Time / PIT: No, No, Yes",
    },
    ItemRule {
        item: Item::Hpet,
        disposition: MigratedLiveOnly,
        manual: "Time / HPET: No, No, Yes",
    },
    ItemRule {
        item: Item::PmTimer,
        disposition: MigratedLiveOnly,
        manual: "Time / PM Timer: No, No, Yes",
    },
    ItemRule {
        item: Item::LogicalRtc,
        disposition: MigratedLiveOnly,
        manual: "Time / Logical RTC information (CMOS timer): Shutdown No, Concurrent \
                 Maintenance Yes. HVM internal information (Physical RTC information): \"No \
                 (The time difference between the source and destination server blades is \
                 migrated.)\" -> LogicalRtc::adjust_for_host_offset",
    },
    ItemRule {
        item: Item::NicMacAddress,
        disposition: Exchanged,
        manual: "Shared NIC / Logical MAC address (MAC seed): \"Exchanged between the source \
                 and destination\"",
    },
    ItemRule {
        item: Item::NicManualMacAddress,
        disposition: NotMigrated,
        manual: "Shared NIC / Logical MAC address set manually; chapter 5: \"When an LPAR \
                 whose MAC address is changed in the Virtual NIC Assignment on HVM Screen is \
                 transferred, the MAC address is not transferred. So, do not have an LPAR \
                 migrate whose MAC address is changed.\" -> refused by exchange_identities",
    },
    ItemRule {
        item: Item::NicVnicNumber,
        disposition: Migrated,
        manual: "Shared NIC / Virtual NIC assignment #: Yes, Yes",
    },
    ItemRule {
        item: Item::NicVlanMode,
        disposition: Migrated,
        manual: "Shared NIC / VLAN mode (Tag, Untag or Undef): Yes, Yes",
    },
    ItemRule {
        item: Item::NicVlanId,
        disposition: Migrated,
        manual: "Shared NIC / VLANID: Yes, Yes",
    },
    ItemRule {
        item: Item::NicDeviceType,
        disposition: Migrated,
        manual: "Shared NIC / VNIC Device Type: Yes (migrated column reconstructed)",
    },
    ItemRule {
        item: Item::NicPromiscuousMode,
        disposition: Migrated,
        manual: "Shared NIC / Promiscuous mode: Yes (migrated column reconstructed)",
    },
    ItemRule {
        item: Item::NicInterLparFiltering,
        disposition: Migrated,
        manual: "Shared NIC / Inter-LPAR Packet Filtering: Yes (migrated column \
                 reconstructed); chapter 5: \"Enable\" blocks traffic to LPARs on the \
                 destination",
    },
    ItemRule {
        item: Item::NicMmio,
        disposition: MigratedLiveOnly,
        manual: "Shared NIC / MMIO Register: No, (No), Yes",
    },
    ItemRule {
        item: Item::FcVfcId,
        disposition: ReassignedByDestination,
        manual: "Logical FC HBA / vfcID: \"No (The smallest available number is assigned.) \
                 Whereas, when the HBA Core Dedicated Mode is enabled, “Yes”.\" -> \
                 DeviceState::assign_vfc_ids",
    },
    ItemRule {
        item: Item::FcWwpn,
        disposition: Exchanged,
        manual: "Logical FC HBA / Virtual WWN: \"Exchanged between the source and \
                 destination\"; chapter 5: \"Execution of Migration functions of HVM Navigator \
                 exchanges WWPNs between the source HVM and the destination HVM.\"",
    },
    ItemRule {
        item: Item::FcMigrationWwpn,
        disposition: Exchanged,
        manual: "Migration WWPN, \"created with the same vfcID as a WWPN\": it belongs to the \
                 WWPN's pair and follows it (inference; the manual does not describe its \
                 handover)",
    },
    ItemRule {
        item: Item::FcPciAddress,
        disposition: Migrated,
        manual: "Logical FC HBA / Logical PCI address: No, Yes",
    },
    ItemRule {
        item: Item::FcNvram,
        disposition: Migrated,
        manual: "Logical FC HBA / NVRAM(setting of FC HBA): Yes (reconstructed)",
    },
    ItemRule {
        item: Item::FcMmio,
        disposition: MigratedLiveOnly,
        manual: "Logical FC HBA / MMIO Register: No, (No), Yes (reconstructed)",
    },
    ItemRule {
        item: Item::UsbAssignedState,
        disposition: Migrated,
        manual: "USB / Assigned state (A, #A or *): Yes, Yes; on the destination it becomes \
                 A, or * if it was * -> UsbAssignment::on_destination",
    },
    ItemRule {
        item: Item::UsbUsedState,
        disposition: NotMigrated,
        manual: "USB / Used state (R or #R): No, -, No; chapter 5: \"When the state of a USB \
                 device is “#R (running)” or “R (running)” ... you cannot have the LPAR \
                 migrate in Concurrent Maintenance mode\" -> \
                 DeviceState::check_live_migratable",
    },
    ItemRule {
        item: Item::VgaAssignedState,
        disposition: Migrated,
        manual: "VGA / Assigned state (A or *): Yes, Yes",
    },
    ItemRule {
        item: Item::VgaVram,
        disposition: MigratedLiveOnly,
        manual: "VGA / VRAM data: No, No, Yes",
    },
    ItemRule {
        item: Item::VgaRegisters,
        disposition: MigratedLiveOnly,
        manual: "VGA / VGA Register: No, No, Yes",
    },
    ItemRule {
        item: Item::SerialIoPorts,
        disposition: MigratedLiveOnly,
        manual: "Super I/O Serial / IO Port Register: No, No, Yes (reconstructed); \"Output \
                 data of Serial Terminal\" is not migrated and not modelled",
    },
    ItemRule {
        item: Item::Uuid,
        disposition: Migrated,
        manual: "Firmware / UUID: No, Yes",
    },
    ItemRule {
        item: Item::FirmwareNvram,
        disposition: Migrated,
        manual: "Firmware / Logical EFI (UEFI) NVRAM: No, Yes (EFI program and VGA BIOS \
                 program: not migrated, not modelled)",
    },
    ItemRule {
        item: Item::AcpiRegisters,
        disposition: MigratedLiveOnly,
        manual: "ACPI / Register: No, No, Yes (Table and AML are firmware, rebuilt by the \
                 destination)",
    },
];

/// The rule for one item.
pub fn rule(item: Item) -> &'static ItemRule {
    ITEMS
        .iter()
        .find(|r| r.item == item)
        .expect("every Item has a row in ITEMS (checked by a unit test)")
}

/// The exchanged identity of one FC HBA port: its WWPN pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HbaIdentity {
    /// The port's WWPN.
    pub wwpn: Wwpn,
    /// The WWPN paired with it for Concurrent Maintenance.
    pub migration_wwpn: Wwpn,
}

/// The exchanged identity of one NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicIdentity {
    /// The NIC's logical MAC.
    pub mac: MacAddress,
    /// The MAC was set by hand (not transferred).
    pub set_manually: bool,
}

/// The exchanged identities of one LPAR (or LPAR slot), in port order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identities {
    /// One per FC port, in port order.
    pub hbas: Vec<HbaIdentity>,
    /// One per NIC, in port order.
    pub nics: Vec<NicIdentity>,
}

/// What each side ends up with after the exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// Now held by the source LPAR slot.
    pub source: Identities,
    /// Now held by the moved LPAR on the destination.
    pub destination: Identities,
}

/// Applies the `Exchanged` rule to WWPNs, migration WWPNs and MACs: the moved
/// LPAR keeps its identity on the destination (so the fabric and the network
/// still see the same ports), and the source slot takes over the identity
/// the destination slot had ("WWPNs on the destination server are randomly
/// determined among unassigned WWPNs on the destination HVM"; choosing them is
/// the destination host's job, not this function's).
///
/// Refused when port counts differ (the exchange is one for one) or when a
/// source MAC was set manually (manual, chapter 5: "the MAC address is not
/// transferred. So, do not have an LPAR migrate whose MAC address is
/// changed.").
pub fn exchange_identities(
    source: &Identities,
    destination: &Identities,
) -> Result<Exchange, StateError> {
    if source.hbas.len() != destination.hbas.len() {
        return Err(StateError::IdentityCountMismatch {
            what: "FC HBA ports (WWPNs)",
            source: source.hbas.len(),
            destination: destination.hbas.len(),
        });
    }
    if source.nics.len() != destination.nics.len() {
        return Err(StateError::IdentityCountMismatch {
            what: "NICs (MAC addresses)",
            source: source.nics.len(),
            destination: destination.nics.len(),
        });
    }
    if let Some((nic, n)) = source.nics.iter().enumerate().find(|(_, n)| n.set_manually) {
        return Err(StateError::ManualMac { nic, mac: n.mac });
    }
    Ok(Exchange {
        source: destination.clone(),
        destination: source.clone(),
    })
}

impl DeviceState {
    /// Whether this state currently carries `item` (a live-only item that
    /// [`DeviceState::for_mode`] dropped is not carried).
    pub fn carries(&self, item: Item) -> bool {
        match item {
            Item::VcpuRegisters | Item::Lapic => !self.vcpus.is_empty(),
            Item::IoApic => self.ioapic.is_some(),
            Item::Pic => self.pic.is_some(),
            Item::PciConfiguration => self.pci_config.is_some(),
            Item::Pit => self.pit.is_some(),
            Item::Hpet => self.hpet.is_some(),
            Item::PmTimer => self.pm_timer.is_some(),
            Item::LogicalRtc => self.rtc.is_some(),
            Item::NicMmio => self.nics.iter().any(|n| n.mmio.is_some()),
            Item::FcMmio => self.fc_hbas.iter().any(|h| h.mmio.is_some()),
            Item::UsbUsedState => self.usb.is_running(),
            Item::VgaVram | Item::VgaRegisters => self.vga.snapshot.is_some(),
            Item::SerialIoPorts => self.serial.is_some(),
            Item::AcpiRegisters => self.acpi.is_some(),
            Item::NicManualMacAddress => self.nics.iter().any(|n| n.mac_set_manually),
            Item::NicMacAddress
            | Item::NicVnicNumber
            | Item::NicVlanMode
            | Item::NicVlanId
            | Item::NicDeviceType
            | Item::NicPromiscuousMode
            | Item::NicInterLparFiltering => !self.nics.is_empty(),
            Item::FcVfcId
            | Item::FcWwpn
            | Item::FcMigrationWwpn
            | Item::FcPciAddress
            | Item::FcNvram => !self.fc_hbas.is_empty(),
            Item::UsbAssignedState | Item::VgaAssignedState | Item::Uuid | Item::FirmwareNvram => {
                true
            }
        }
    }

    /// Drops one item's value (a no-op for items that are refusals rather
    /// than data, or that are always present).
    fn drop_item(&mut self, item: Item) {
        // Exact hypervisor records go with their item.
        self.platform_exact.retain(|r| r.item.table_item() != item);
        match item {
            Item::VcpuRegisters | Item::Lapic => self.vcpus.clear(),
            Item::IoApic => self.ioapic = None,
            Item::Pic => self.pic = None,
            Item::PciConfiguration => self.pci_config = None,
            Item::Pit => self.pit = None,
            Item::Hpet => self.hpet = None,
            Item::PmTimer => self.pm_timer = None,
            Item::LogicalRtc => self.rtc = None,
            Item::NicMmio => self.nics.iter_mut().for_each(|n| n.mmio = None),
            Item::FcMmio => self.fc_hbas.iter_mut().for_each(|h| h.mmio = None),
            Item::VgaVram | Item::VgaRegisters => self.vga.snapshot = None,
            Item::SerialIoPorts => self.serial = None,
            Item::AcpiRegisters => self.acpi = None,
            // The used state is not migrated: R/#R fall back to the assigned
            // state they imply (the destination then applies
            // `UsbAssignment::on_destination`).
            Item::UsbUsedState => {
                self.usb = match self.usb {
                    UsbAssignment::Running => UsbAssignment::Assigned,
                    UsbAssignment::HashRunning => UsbAssignment::HashAssigned,
                    other => other,
                }
            }
            // Refused by `exchange_identities`, not silently dropped.
            Item::NicManualMacAddress => {}
            Item::NicMacAddress
            | Item::NicVnicNumber
            | Item::NicVlanMode
            | Item::NicVlanId
            | Item::NicDeviceType
            | Item::NicPromiscuousMode
            | Item::NicInterLparFiltering
            | Item::FcVfcId
            | Item::FcWwpn
            | Item::FcMigrationWwpn
            | Item::FcPciAddress
            | Item::FcNvram
            | Item::UsbAssignedState
            | Item::VgaAssignedState
            | Item::Uuid
            | Item::FirmwareNvram => {}
        }
    }

    /// The state as it is sent in `mode`: every item whose disposition is not
    /// carried in that mode is dropped (Shutdown mode drops every
    /// `MigratedLiveOnly` item; both modes drop `NotMigrated` ones).
    pub fn for_mode(mut self, mode: MigrationMode) -> DeviceState {
        for r in ITEMS {
            if !r.disposition.carried_in(mode) {
                self.drop_item(r.item);
            }
        }
        self
    }

    /// Refusals the manual makes before a Concurrent Maintenance move that
    /// depend on device state: a USB device in use (R/#R).
    pub fn check_live_migratable(&self) -> Result<(), StateError> {
        if self.usb.is_running() {
            return Err(StateError::UsbInUse { state: self.usb });
        }
        Ok(())
    }

    /// Applies the vfcID rule on the destination: each HBA, in port order,
    /// gets the smallest vfcID in `free` not yet given to an earlier HBA
    /// ("The smallest available number is assigned."). With `pinned` (HBA
    /// Core Dedicated mode: "Whereas, when the HBA Core Dedicated Mode is
    /// enabled, “Yes”") each HBA keeps its vfcID, which must be free.
    ///
    /// All or nothing: on error no HBA is changed.
    pub fn assign_vfc_ids(&mut self, free: &BTreeSet<u16>, pinned: bool) -> Result<(), StateError> {
        let mut chosen = Vec::with_capacity(self.fc_hbas.len());
        if pinned {
            let mut used = BTreeSet::new();
            for (i, h) in self.fc_hbas.iter().enumerate() {
                if !free.contains(&h.vfc_id) || !used.insert(h.vfc_id) {
                    return Err(StateError::PinnedVfcIdTaken {
                        hba: i,
                        wwpn: h.wwpn,
                        vfc_id: h.vfc_id,
                    });
                }
                chosen.push(h.vfc_id);
            }
        } else {
            let mut ids = free.iter().copied();
            for (i, h) in self.fc_hbas.iter().enumerate() {
                let Some(id) = ids.next() else {
                    return Err(StateError::NoFreeVfcId {
                        hba: i,
                        wwpn: h.wwpn,
                        needed: self.fc_hbas.len(),
                        free: free.len(),
                    });
                };
                chosen.push(id);
            }
        }
        for (h, id) in self.fc_hbas.iter_mut().zip(chosen) {
            h.vfc_id = id;
        }
        Ok(())
    }

    /// The identities this LPAR carries, for [`exchange_identities`].
    pub fn identities(&self) -> Identities {
        Identities {
            hbas: self
                .fc_hbas
                .iter()
                .map(|h| HbaIdentity {
                    wwpn: h.wwpn,
                    migration_wwpn: h.migration_wwpn,
                })
                .collect(),
            nics: self
                .nics
                .iter()
                .map(|n| NicIdentity {
                    mac: n.mac,
                    set_manually: n.mac_set_manually,
                })
                .collect(),
        }
    }

    /// Optional guest-clock compensation for a suspension. The guest's
    /// counters (TSC, HPET main counter when enabled, PM timer) stood still
    /// while the LPAR was suspended; advancing them by `suspended_ns` makes
    /// the guest see the time pass instead of ending up behind (manual,
    /// Table 2-7 note 5: "the clock of the guest OS becomes 500ms slower").
    /// The logical RTC needs no compensation: it is an offset from host
    /// time, which kept running.
    pub fn compensate_suspension(&mut self, suspended_ns: u64) {
        let ns = u128::from(suspended_ns);
        let ticks = u64::try_from(ns * u128::from(self.tsc_khz) / 1_000_000).unwrap_or(u64::MAX);
        for v in &mut self.vcpus {
            v.tsc = v.tsc.wrapping_add(ticks);
        }
        if let Some(hpet) = &mut self.hpet {
            let period = u128::from(hpet.period_fs());
            if hpet.config & 1 != 0 && period != 0 {
                let t = u64::try_from(ns * 1_000_000 / period).unwrap_or(u64::MAX);
                hpet.counter = hpet.counter.wrapping_add(t);
            }
        }
        if let Some(pm) = &mut self.pm_timer {
            let t = ns * u128::from(PmTimer::HZ) / 1_000_000_000;
            pm.counter = pm.counter.wrapping_add(t as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_has_exactly_one_rule_in_declaration_order() {
        let items: Vec<Item> = ITEMS.iter().map(|r| r.item).collect();
        assert_eq!(items, Item::ALL);
        for item in Item::ALL {
            assert_eq!(rule(*item).item, *item);
            assert!(!rule(*item).manual.is_empty());
        }
    }

    #[test]
    fn dispositions_say_what_crosses_the_wire_in_each_mode() {
        use MigrationMode::*;
        assert!(Migrated.carried_in(Shutdown) && Migrated.carried_in(Live));
        assert!(!MigratedLiveOnly.carried_in(Shutdown) && MigratedLiveOnly.carried_in(Live));
        assert!(Exchanged.carried_in(Shutdown) && Exchanged.carried_in(Live));
        assert!(ReassignedByDestination.carried_in(Shutdown));
        assert!(!NotMigrated.carried_in(Live));
    }
}
