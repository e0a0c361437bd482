//! The LPAR configuration: what an LPAR is, independent of where it runs.

use super::{PAGE_SIZE, PartitionError};
use crate::emg::{Emg, Module, phase};
use crate::state::{MacAddress, UsbAssignment, VlanMode, Wwpn};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// The name the manual forbids for a migrating LPAR.
pub const NO_NAME: &str = "NO_NAME";

/// Most vCPUs one LPAR may have (bounds the vCPU state file).
pub const MAX_VCPUS: u32 = 64;

/// Highest vfcID a shared FC port hands out (vfcIDs are 1..=MAX_VFC_ID;
/// 0 means "none").
pub const MAX_VFC_ID: u16 = 255;

/// Highest 802.1Q VLAN ID (4095 is reserved).
pub const MAX_VLAN_ID: u16 = 4094;

/// How a NIC or FC port is given to the LPAR. Only shared devices move in
/// Concurrent Maintenance (live) mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceMode {
    #[default]
    /// Shared with other LPARs.
    Shared,
    /// Dedicated to this LPAR.
    Dedicated,
}

/// One logical NIC of the LPAR (Table 1-2, "Shared NIC").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicConfig {
    /// The network segment the NIC is attached to; the destination maps it
    /// to one of its interfaces to announce the MAC there.
    pub segment: String,
    #[serde(default)]
    /// Shared or dedicated.
    pub mode: DeviceMode,
    /// Logical MAC address (derived from the MAC seed unless set by hand).
    pub mac: MacAddress,
    /// The MAC was changed by hand: such an LPAR must not migrate (the
    /// manual: "the MAC address is not transferred").
    #[serde(default)]
    pub mac_set_manually: bool,
    #[serde(default = "undef_vlan")]
    /// How the NIC handles VLAN tags.
    pub vlan_mode: VlanMode,
    #[serde(default)]
    /// VLAN ID, 0..=`MAX_VLAN_ID`.
    pub vlan_id: u16,
}

fn undef_vlan() -> VlanMode {
    VlanMode::Undef
}

/// One logical FC port of the LPAR (Table 1-2, "FC HBA").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcPortConfig {
    /// The physical (shared FC) port the logical port sits on; the
    /// destination assigns a vfcID from that port's free ones.
    pub port: u16,
    #[serde(default)]
    /// Shared or dedicated.
    pub mode: DeviceMode,
    /// Pins the vfcID (HBA Core Dedicated mode: the vfcID is kept). `None`:
    /// the destination assigns the smallest free one.
    #[serde(default)]
    pub vfc_id: Option<u16>,
    /// The port's WWPN.
    pub wwpn: Wwpn,
    /// The WWPN paired with `wwpn` under the same vfcID.
    pub migration_wwpn: Wwpn,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// An LPAR's configuration: what is defined on a host, and what migrates with it.
pub struct LparConfig {
    /// Unique per host; migrates with the LPAR.
    pub name: String,
    /// LPAR number on its host; not migrated (the destination picks one).
    pub number: u32,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest memory in bytes; a multiple of the page size.
    pub memory_bytes: u64,
    /// The guest program the `sim` backend runs (see `sim::program`).
    pub program: String,
    /// Logical NICs, in port order.
    #[serde(default)]
    pub nics: Vec<NicConfig>,
    /// Logical FC ports, in port order.
    #[serde(default)]
    pub fc_ports: Vec<FcPortConfig>,
    /// `kvm` only: a multiboot v1 image to boot instead of the built-in
    /// guest, as a path on the creating host (read when the LPAR is
    /// created). `None`: the built-in guest, running `program`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// `kvm` only: the multiboot command line; `None`: `program`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// The USB device's assigned state for this LPAR (`*`: none). In use
    /// (`R`, `#R`), Concurrent Maintenance is refused.
    #[serde(default = "no_usb", skip_serializing_if = "is_no_usb")]
    pub usb: UsbAssignment,
    /// The share of the host's shared CPUs this LPAR asks for, relative
    /// to the other activated LPARs' ratios on the same host
    /// ([`SERVICE_RATIOS`]; HVM's default 100). It migrates as it is, so on
    /// the destination it means a share among *that* host's LPARs.
    #[serde(default = "default_service_ratio")]
    pub service_ratio: u16,
    /// Whether the host allocates all of guest memory when the LPAR is
    /// created or attached, or page by page as the guest (or an incoming
    /// migration) writes it. It migrates with the LPAR.
    #[serde(default, skip_serializing_if = "MemoryBacking::is_reserved")]
    pub memory_backing: MemoryBacking,
}

/// How a host backs an LPAR's guest memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryBacking {
    /// All of it allocated before a vCPU runs or a page arrives, so a
    /// full host is an error then, never a fault in the guest later (the
    /// HVM's dedicated memory; the default).
    #[default]
    Reserved,
    /// Allocated as it is first written, so a host holds only what the
    /// guest populated (memory overcommit). An incoming migration that
    /// finds no room fails with [`PartitionError::NoRoom`](super::PartitionError)
    /// (its pages are allocated before they are written), but a host that
    /// runs out of memory while the guest runs stops the guest (the sim
    /// backend's agent gets SIGBUS), so the operator must keep the sum of
    /// the populated LPARs within it.
    OnDemand,
}

impl MemoryBacking {
    fn is_reserved(&self) -> bool {
        *self == MemoryBacking::Reserved
    }
}

impl std::fmt::Display for MemoryBacking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemoryBacking::Reserved => "reserved",
            MemoryBacking::OnDemand => "on-demand",
        })
    }
}

impl std::str::FromStr for MemoryBacking {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reserved" => Ok(MemoryBacking::Reserved),
            "on-demand" => Ok(MemoryBacking::OnDemand),
            other => Err(format!(
                "memory backing '{}': use reserved or on-demand",
                other.escape_debug()
            )),
        }
    }
}

/// The service ratios an LPAR may have.
pub const SERVICE_RATIOS: std::ops::RangeInclusive<u16> = 1..=999;

/// HVM's default service ratio.
pub const DEFAULT_SERVICE_RATIO: u16 = 100;

fn default_service_ratio() -> u16 {
    DEFAULT_SERVICE_RATIO
}

fn no_usb() -> UsbAssignment {
    UsbAssignment::Unassigned
}

fn is_no_usb(usb: &UsbAssignment) -> bool {
    *usb == UsbAssignment::Unassigned
}

/// A device configuration that makes no sense, whatever the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Two NICs of the LPAR carry the same MAC.
    DuplicateMac {
        /// The MAC.
        mac: MacAddress,
        /// The two NICs, in port order.
        nics: (usize, usize),
    },
    /// A WWPN (or migration WWPN) appears twice among the LPAR's FC ports.
    DuplicateWwpn {
        /// The WWPN.
        wwpn: Wwpn,
    },
    /// A pinned vfcID outside 1..=`MAX_VFC_ID`.
    VfcIdOutOfRange {
        /// The FC port, in port order.
        port: usize,
        /// The vfcID pinned.
        vfc_id: u16,
    },
    /// Two FC ports on the same physical port pin the same vfcID.
    DuplicateVfcId {
        /// The vfcID.
        vfc_id: u16,
        /// The physical port both sit on.
        physical_port: u16,
    },
    /// A VLAN ID outside 0..=`MAX_VLAN_ID`.
    VlanIdOutOfRange {
        /// The NIC, in port order.
        nic: usize,
        /// The VLAN ID given.
        vlan_id: u16,
    },
    /// A NIC with no segment name.
    NoSegment {
        /// The NIC, in port order.
        nic: usize,
    },
    /// A multicast (group) MAC cannot be a NIC's address.
    MulticastMac {
        /// The NIC, in port order.
        nic: usize,
        /// The MAC given.
        mac: MacAddress,
    },
    /// More devices than the device state can carry.
    TooMany {
        /// "NICs" or "FC ports".
        what: &'static str,
        /// How many the LPAR has.
        count: usize,
        /// How many the device state carries.
        max: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateMac { mac, nics } => write!(
                f,
                "NICs #{} and #{} both have MAC address {mac}",
                nics.0, nics.1
            ),
            Self::DuplicateWwpn { wwpn } => {
                write!(f, "WWPN {wwpn} is used by more than one FC port entry")
            }
            Self::VfcIdOutOfRange { port, vfc_id } => write!(
                f,
                "FC port #{port} pins vfcID {vfc_id}; a vfcID must be 1 to {MAX_VFC_ID}"
            ),
            Self::DuplicateVfcId {
                vfc_id,
                physical_port,
            } => write!(
                f,
                "two FC ports on physical port {physical_port} pin the same vfcID {vfc_id}"
            ),
            Self::VlanIdOutOfRange { nic, vlan_id } => write!(
                f,
                "NIC #{nic} has VLAN ID {vlan_id}; it must be 0 to {MAX_VLAN_ID}"
            ),
            Self::NoSegment { nic } => write!(f, "NIC #{nic} names no network segment"),
            Self::MulticastMac { nic, mac } => {
                write!(f, "NIC #{nic} has the multicast MAC address {mac}")
            }
            Self::TooMany { what, count, max } => {
                write!(f, "{count} {what}; at most {max} are supported")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn cause(&self) -> u32 {
        match self {
            Self::DuplicateMac { .. } => 0x11,
            Self::DuplicateWwpn { .. } => 0x12,
            Self::VfcIdOutOfRange { .. } => 0x13,
            Self::DuplicateVfcId { .. } => 0x14,
            Self::VlanIdOutOfRange { .. } => 0x15,
            Self::NoSegment { .. } => 0x16,
            Self::MulticastMac { .. } => 0x17,
            Self::TooMany { .. } => 0x18,
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Self::DuplicateMac { .. } | Self::MulticastMac { .. } => {
                "Give every NIC of the LPAR its own unicast MAC address (from the MAC seed)."
            }
            Self::DuplicateWwpn { .. } => {
                "Give every FC port its own WWPN and migration WWPN, then retry."
            }
            Self::VfcIdOutOfRange { .. } | Self::DuplicateVfcId { .. } => {
                "Pin each FC port to a distinct vfcID from 1 to 255, or remove the pin so the \
                 destination assigns the smallest free one."
            }
            Self::VlanIdOutOfRange { .. } => "Set a VLAN ID from 0 to 4094.",
            Self::NoSegment { .. } => "Name the network segment the NIC is attached to.",
            Self::TooMany { .. } => "Remove devices from the LPAR configuration.",
        }
    }
}

impl From<ConfigError> for Emg {
    fn from(e: ConfigError) -> Emg {
        Emg::new(
            Module::Management,
            phase::INFORMATION,
            e.cause(),
            format!("LPAR configuration: {e}"),
            e.action(),
        )
    }
}

impl From<ConfigError> for PartitionError {
    fn from(e: ConfigError) -> PartitionError {
        PartitionError::BadConfig { why: e.to_string() }
    }
}

/// Checks an LPAR name: 1-64 letters, digits, '-', '_' or '.', not
/// starting with '.'. Every name that becomes a path (an LPAR's files, its
/// journals) passes here first, so none can leave its directory.
pub fn check_name(name: &str) -> Result<(), PartitionError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || name.starts_with('.')
    {
        return Err(PartitionError::BadConfig {
            why: format!(
                "name '{}' must be 1-64 characters of letters, digits, '-', '_' or '.', not \
                 starting with '.'",
                name.escape_debug()
            ),
        });
    }
    Ok(())
}

impl LparConfig {
    /// The built-in default LPAR: 1 GiB, 2 vCPUs, a 64 MiB hot working set.
    pub fn default_lpar() -> Self {
        LparConfig {
            name: "lpar1".to_string(),
            number: 1,
            vcpus: 2,
            memory_bytes: 1 << 30,
            program: "hot:64MiB".to_string(),
            nics: vec![NicConfig {
                segment: "seg-a".to_string(),
                mode: DeviceMode::Shared,
                mac: MacAddress([0x02, 0, 0, 0, 0, 0x01]),
                mac_set_manually: false,
                vlan_mode: VlanMode::Undef,
                vlan_id: 0,
            }],
            fc_ports: vec![FcPortConfig {
                port: 0,
                mode: DeviceMode::Shared,
                vfc_id: None,
                wwpn: Wwpn::from_u64(0x5006_0e80_0000_0001),
                migration_wwpn: Wwpn::from_u64(0x5006_0e80_0000_0081),
            }],
            kernel: None,
            cmdline: None,
            usb: UsbAssignment::Unassigned,
            service_ratio: DEFAULT_SERVICE_RATIO,
            memory_backing: MemoryBacking::Reserved,
        }
    }

    /// Checks the device configuration for nonsense no host could accept:
    /// duplicate MACs or WWPNs, vfcID pins out of range or doubled, VLAN
    /// IDs out of range, unnamed segments.
    pub fn check(&self) -> Result<(), ConfigError> {
        use crate::state::{MAX_FC_HBAS, MAX_NICS};
        if self.nics.len() > MAX_NICS {
            return Err(ConfigError::TooMany {
                what: "NICs",
                count: self.nics.len(),
                max: MAX_NICS,
            });
        }
        if self.fc_ports.len() > MAX_FC_HBAS {
            return Err(ConfigError::TooMany {
                what: "FC ports",
                count: self.fc_ports.len(),
                max: MAX_FC_HBAS,
            });
        }
        for (i, nic) in self.nics.iter().enumerate() {
            if nic.segment.trim().is_empty() {
                return Err(ConfigError::NoSegment { nic: i });
            }
            if nic.mac.0[0] & 1 != 0 {
                return Err(ConfigError::MulticastMac {
                    nic: i,
                    mac: nic.mac,
                });
            }
            if nic.vlan_id > MAX_VLAN_ID {
                return Err(ConfigError::VlanIdOutOfRange {
                    nic: i,
                    vlan_id: nic.vlan_id,
                });
            }
            if let Some(j) = self.nics[..i].iter().position(|n| n.mac == nic.mac) {
                return Err(ConfigError::DuplicateMac {
                    mac: nic.mac,
                    nics: (j, i),
                });
            }
        }
        let mut wwpns = BTreeSet::new();
        let mut pins = BTreeSet::new();
        for (i, fc) in self.fc_ports.iter().enumerate() {
            for wwpn in [fc.wwpn, fc.migration_wwpn] {
                if !wwpns.insert(wwpn) {
                    return Err(ConfigError::DuplicateWwpn { wwpn });
                }
            }
            if let Some(vfc_id) = fc.vfc_id {
                if vfc_id == 0 || vfc_id > MAX_VFC_ID {
                    return Err(ConfigError::VfcIdOutOfRange { port: i, vfc_id });
                }
                if !pins.insert((fc.port, vfc_id)) {
                    return Err(ConfigError::DuplicateVfcId {
                        vfc_id,
                        physical_port: fc.port,
                    });
                }
            }
        }
        Ok(())
    }

    /// Guest memory in pages.
    pub fn pages(&self) -> u64 {
        self.memory_bytes / PAGE_SIZE as u64
    }

    /// Checks what every backend needs; names the field and the fix.
    pub fn validate(&self) -> Result<(), PartitionError> {
        let bad = |why: String| Err(PartitionError::BadConfig { why });
        check_name(&self.name)?;
        if !SERVICE_RATIOS.contains(&self.service_ratio) {
            return bad(format!(
                "service ratio {} is outside {}..={}",
                self.service_ratio,
                SERVICE_RATIOS.start(),
                SERVICE_RATIOS.end()
            ));
        }
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return bad(format!(
                "vcpus is {}; it must be 1 to {MAX_VCPUS}",
                self.vcpus
            ));
        }
        if self.memory_bytes == 0 || !self.memory_bytes.is_multiple_of(PAGE_SIZE as u64) {
            return bad(format!(
                "memory is {} bytes; it must be a non-zero multiple of {PAGE_SIZE}",
                self.memory_bytes
            ));
        }
        self.check()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lpar_is_valid() {
        LparConfig::default_lpar().validate().unwrap();
    }

    #[test]
    fn invalid_fields_are_named() {
        let mut c = LparConfig::default_lpar();
        c.name = "../etc".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("name '../etc'")
        );
        let mut c = LparConfig::default_lpar();
        c.memory_bytes = 4097;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("multiple of 4096")
        );
        let mut c = LparConfig::default_lpar();
        c.vcpus = 0;
        assert!(c.validate().unwrap_err().to_string().contains("vcpus is 0"));
    }

    #[test]
    fn configs_without_devices_still_load() {
        let old = r#"{"name":"a","number":1,"vcpus":1,"memory_bytes":4096,"program":"idle"}"#;
        let c: LparConfig = serde_json::from_str(old).unwrap();
        assert!(c.nics.is_empty() && c.fc_ports.is_empty());
        c.validate().unwrap();
    }

    #[test]
    fn default_lpar_has_one_shared_nic_and_fc_port_and_round_trips() {
        let c = LparConfig::default_lpar();
        assert_eq!(c.nics.len(), 1);
        assert_eq!(c.nics[0].segment, "seg-a");
        assert_eq!(c.nics[0].mode, DeviceMode::Shared);
        assert_eq!(c.fc_ports.len(), 1);
        assert_eq!(c.fc_ports[0].mode, DeviceMode::Shared);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<LparConfig>(&json).unwrap(), c);
    }

    #[test]
    fn nonsense_device_configs_are_refused_with_an_emg() {
        let mut c = LparConfig::default_lpar();
        c.nics.push(c.nics[0].clone());
        let e = c.check().unwrap_err();
        assert!(
            matches!(e, ConfigError::DuplicateMac { nics: (0, 1), .. }),
            "{e}"
        );
        assert!(Emg::from(e).to_string().starts_with("EMG"));

        let mut c = LparConfig::default_lpar();
        c.fc_ports[0].vfc_id = Some(0);
        assert!(matches!(
            c.check(),
            Err(ConfigError::VfcIdOutOfRange { vfc_id: 0, .. })
        ));
        c.fc_ports[0].vfc_id = Some(MAX_VFC_ID + 1);
        assert!(matches!(
            c.check(),
            Err(ConfigError::VfcIdOutOfRange { .. })
        ));
        c.fc_ports[0].vfc_id = Some(MAX_VFC_ID);
        c.check().unwrap();

        let mut c = LparConfig::default_lpar();
        let mut second = c.fc_ports[0].clone();
        second.wwpn = Wwpn::from_u64(2);
        second.migration_wwpn = Wwpn::from_u64(3);
        c.fc_ports.push(second.clone());
        c.check().unwrap();
        c.fc_ports[0].vfc_id = Some(4);
        c.fc_ports[1].vfc_id = Some(4);
        assert!(matches!(c.check(), Err(ConfigError::DuplicateVfcId { .. })));
        c.fc_ports[1].port = 1;
        c.check().unwrap();
        c.fc_ports[1].migration_wwpn = c.fc_ports[0].wwpn;
        assert!(matches!(c.check(), Err(ConfigError::DuplicateWwpn { .. })));

        let mut c = LparConfig::default_lpar();
        c.nics[0].vlan_id = 4095;
        assert!(matches!(
            c.check(),
            Err(ConfigError::VlanIdOutOfRange { .. })
        ));
        let mut c = LparConfig::default_lpar();
        c.nics[0].segment = " ".into();
        assert!(matches!(c.check(), Err(ConfigError::NoSegment { nic: 0 })));
        let mut c = LparConfig::default_lpar();
        c.nics[0].mac = MacAddress([0x01, 0, 0x5e, 0, 0, 1]);
        assert!(matches!(c.check(), Err(ConfigError::MulticastMac { .. })));
        assert!(c.validate().unwrap_err().to_string().contains("multicast"));
    }
}
