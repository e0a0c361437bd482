//! The device-state model: everything that moves with an LPAR besides its
//! memory, following Table 1-2 of the HVM Navigator migration manual
//! ("List of configuration data to migrate"), and its versioned binary
//! encoding.
//!
//! | file | job |
//! |---|---|
//! | `ids` | identity types other layers reuse: [`MacAddress`], [`Wwpn`], [`VlanMode`], [`VnicDeviceType`], [`UsbAssignment`], [`VgaAssignment`], [`PciAddress`] |
//! | `cpu` | per-vCPU registers, MSRs, TSC, XSAVE area, LAPIC |
//! | `chipset` | I/O APIC, PIC, PIT, HPET, PM timer |
//! | `rtc` | logical RTC and the host-time-difference rule |
//! | `devices` | logical NICs, FC HBAs, VGA, serial, firmware, ACPI |
//! | [`rules`] | the disposition table ([`ITEMS`]) and the functions that apply it |
//! | `mode` | [`MigrationMode`], the one migration-mode type of the crate |
//! | [`format`](mod@format) | the binary layout: header, CRC, bounds (drawn there) |
//! | `body` | field-by-field encoding of the body |
//! | `sample` | a plausible state for a new LPAR |
//! | `exact` | exact hypervisor records carried beside the model (format minor 1) |
//! | `error` | [`StateError`] and its conversion into an [`Emg`](crate::emg::Emg) |
//!
//! A Concurrent Maintenance (live) move sends `state.for_mode(Live)`; a
//! Shutdown move sends `state.for_mode(Shutdown)`, which has none of the
//! runtime items (`vcpus` empty, the live-only `Option`s `None`). The
//! destination then applies the vfcID rule (per physical port, in
//! `engine::switchover`; [`DeviceState::assign_vfc_ids`] is the single-pool
//! form), the [`exchange_identities`] result,
//! [`LogicalRtc::adjust_for_host_offset`] and optionally
//! [`DeviceState::compensate_suspension`].

mod body;
pub(crate) mod chipset;
mod cpu;
mod devices;
mod error;
pub(crate) mod exact;
pub mod format;
mod ids;
mod mode;
mod rtc;
pub mod rules;
mod sample;

#[cfg(test)]
mod proptests;

pub use chipset::{
    HPET_TIMERS, Hpet, HpetTimer, IOAPIC_PINS, IoApic, PIT_CHANNELS, Pic, PicChip, Pit, PitChannel,
    PmTimer,
};
pub use cpu::{
    DescriptorTable, Lapic, LapicTimer, Msr, Registers, Segment, SpecialRegisters, VcpuState,
    VectorSet,
};
pub use devices::{
    AcpiRegisters, Firmware, LogicalFcHba, LogicalNic, SerialPort, Vga, VgaSnapshot,
};
pub use error::StateError;
pub use exact::{ExactItem, ExactRecord};
pub use format::{
    FORMAT_MAJOR, FORMAT_MINOR, HEADER_LEN, MAGIC, MAX_BLOB_BYTES, MAX_ENCODED_BYTES, MAX_FC_HBAS,
    MAX_MSRS, MAX_NICS, MAX_VCPUS, MAX_XSAVE_BYTES, TRAILER_LEN,
};
pub use ids::{
    MacAddress, ParseIdError, PciAddress, UsbAssignment, VgaAssignment, VlanMode, VnicDeviceType,
    Wwpn,
};
pub use rtc::{CMOS_BYTES, LogicalRtc};
pub use rules::{
    Disposition, Exchange, HbaIdentity, ITEMS, Identities, Item, ItemRule, MigrationMode,
    NicIdentity, exchange_identities,
};

/// Everything that moves with an LPAR besides its memory.
///
/// `Option` fields and `vcpus` are the live-only items (Concurrent
/// Maintenance only, see [`rules::ITEMS`]); `None` / empty means "not
/// carried".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceState {
    /// TSC frequency of the vCPUs, in kHz (for suspension compensation).
    pub tsc_khz: u32,
    /// One entry per vCPU, in vCPU order. At most [`MAX_VCPUS`].
    pub vcpus: Vec<VcpuState>,
    /// The I/O APIC, if the platform has one.
    pub ioapic: Option<IoApic>,
    /// The 8259A pair, if the platform has one.
    pub pic: Option<Pic>,
    /// Configuration space of the emulated PCI functions, concatenated.
    pub pci_config: Option<Vec<u8>>,
    /// The 8254 PIT, if the platform has one.
    pub pit: Option<Pit>,
    /// The HPET, if the platform has one.
    pub hpet: Option<Hpet>,
    /// The ACPI PM timer, if the platform has one.
    pub pm_timer: Option<PmTimer>,
    /// The logical RTC (see [`LogicalRtc`]), if the platform has one.
    pub rtc: Option<LogicalRtc>,
    /// Logical shared NICs, in port order. At most [`MAX_NICS`].
    pub nics: Vec<LogicalNic>,
    /// Logical FC HBA ports, in port order. At most [`MAX_FC_HBAS`].
    pub fc_hbas: Vec<LogicalFcHba>,
    /// The USB assigned state; a running USB device refuses Concurrent Maintenance.
    pub usb: UsbAssignment,
    /// The logical VGA.
    pub vga: Vga,
    /// The Super I/O serial port, if present.
    pub serial: Option<SerialPort>,
    /// Firmware items that move in both modes.
    pub firmware: Firmware,
    /// ACPI fixed-hardware registers (Concurrent Maintenance only).
    pub acpi: Option<AcpiRegisters>,
    /// Exact records of platform devices (PIT, PICs, I/O APIC, clock) a
    /// hypervisor backend carries beside the fields above (see `exact`).
    pub platform_exact: Vec<ExactRecord>,
}
