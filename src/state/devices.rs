//! Logical I/O devices: shared NICs, FC HBAs, VGA, the Super I/O serial
//! port, firmware (UUID, NVRAM) and the ACPI register block.
//!
//! Fields that move in Concurrent Maintenance only are `Option`s: `None`
//! means "not carried" (see [`super::rules`]).

use super::ids::{MacAddress, PciAddress, VgaAssignment, VlanMode, VnicDeviceType, Wwpn};

/// One logical (shared) NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalNic {
    /// Virtual NIC assignment number (the VNIC `#n` on the HVM screen).
    pub vnic_number: u8,
    /// Logical MAC address derived from the MAC seed.
    pub mac: MacAddress,
    /// The MAC was changed by hand on the HVM screen. Such a MAC is not
    /// transferred; see [`super::rules::exchange_identities`].
    pub mac_set_manually: bool,
    /// How the NIC handles VLAN tags.
    pub vlan_mode: VlanMode,
    /// 0..=4095; meaningful for `Tag` and `Untag`.
    pub vlan_id: u16,
    /// The emulated VNIC type.
    pub device_type: VnicDeviceType,
    /// Promiscuous mode enabled.
    pub promiscuous: bool,
    /// Inter-LPAR packet filtering enabled.
    pub inter_lpar_filtering: bool,
    /// Emulated controller MMIO registers (CM only).
    pub mmio: Option<Vec<u8>>,
}

/// One logical FC HBA port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalFcHba {
    /// Virtual FC ID on the host that holds this state; the destination
    /// reassigns it (see [`super::DeviceState::assign_vfc_ids`]).
    pub vfc_id: u16,
    /// The World Wide Port Name the port logs in with.
    pub wwpn: Wwpn,
    /// The WWPN paired with `wwpn` under the same vfcID, used to log in to
    /// the fabric during a Concurrent Maintenance move.
    pub migration_wwpn: Wwpn,
    /// The port's PCI address in the guest.
    pub pci_address: PciAddress,
    /// HBA settings NVRAM.
    pub nvram: Vec<u8>,
    /// Emulated HBA MMIO registers (CM only).
    pub mmio: Option<Vec<u8>>,
}

/// VRAM and VGA register file (CM only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VgaSnapshot {
    /// Video memory, at most [`MAX_BLOB_BYTES`](super::MAX_BLOB_BYTES).
    pub vram: Vec<u8>,
    /// Sequencer, CRTC, graphics, attribute and DAC registers, concatenated.
    pub registers: Vec<u8>,
}

/// The logical VGA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vga {
    /// The VGA assigned state.
    pub assigned: VgaAssignment,
    /// VRAM and registers (Concurrent Maintenance only).
    pub snapshot: Option<VgaSnapshot>,
}

/// The 16550 registers of the Super I/O serial port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SerialPort {
    /// The I/O port base (0x3F8 for COM1).
    pub io_base: u16,
    /// Interrupt enable register.
    pub ier: u8,
    /// Interrupt identification register.
    pub iir: u8,
    /// FIFO control register.
    pub fcr: u8,
    /// Line control register.
    pub lcr: u8,
    /// Modem control register.
    pub mcr: u8,
    /// Line status register.
    pub lsr: u8,
    /// Modem status register.
    pub msr: u8,
    /// Scratch register.
    pub scr: u8,
    /// Divisor latch, low byte.
    pub dll: u8,
    /// Divisor latch, high byte.
    pub dlm: u8,
}

/// Firmware items that move in both modes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Firmware {
    /// The LPAR's SMBIOS UUID.
    pub uuid: [u8; 16],
    /// Logical EFI NVRAM (boot order, variables).
    pub nvram: Vec<u8>,
}

/// ACPI fixed-hardware registers (CM only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcpiRegisters {
    /// PM1 event status register.
    pub pm1_status: u16,
    /// PM1 event enable register.
    pub pm1_enable: u16,
    /// PM1 control register.
    pub pm1_control: u16,
    /// GPE0 status register block.
    pub gpe0_status: u64,
    /// GPE0 enable register block.
    pub gpe0_enable: u64,
}
