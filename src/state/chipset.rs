//! Platform interrupt controllers and timers: I/O APIC, the two 8259 PICs,
//! the 8254 PIT, the HPET and the ACPI PM timer. All of them move in
//! Concurrent Maintenance mode only (Table 1-2: "PIC No No Yes", "I/O APIC
//! No No Yes", "HPET No No Yes", "PIT No No Yes", "PM Timer No No Yes").

/// Number of I/O APIC redirection-table entries (pins).
pub const IOAPIC_PINS: usize = 24;
/// Number of HPET comparators modelled.
pub const HPET_TIMERS: usize = 3;
/// Number of 8254 PIT channels.
pub const PIT_CHANNELS: usize = 3;

/// The I/O APIC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    /// The register-select latch (IOREGSEL).
    pub ioregsel: u8,
    /// Redirection table, one 64-bit entry per pin.
    pub redirection: [u64; IOAPIC_PINS],
}

/// One 8259A.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PicChip {
    pub irr: u8,
    pub isr: u8,
    pub imr: u8,
    /// ICW1..ICW4 as last written.
    pub icw: [u8; 4],
    /// Which ICW the chip expects next (0 = initialised, 2..=4 = mid-sequence).
    pub init_step: u8,
    /// Edge/level control register (ELCR).
    pub elcr: u8,
    /// OCW3 read-register select: true = reads return ISR, false = IRR.
    pub read_isr: bool,
}

/// The master/slave PIC pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pic {
    pub master: PicChip,
    pub slave: PicChip,
}

/// One 8254 channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PitChannel {
    /// Reload value written by the guest (0 means 65536).
    pub reload: u16,
    /// Current count.
    pub count: u16,
    /// Operating mode 0..=5.
    pub mode: u8,
    /// Access mode (1 = LSB, 2 = MSB, 3 = LSB then MSB).
    pub access: u8,
    pub bcd: bool,
    pub gate: bool,
    pub output: bool,
}

/// The 8254 PIT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pit {
    pub channels: [PitChannel; PIT_CHANNELS],
}

/// One HPET comparator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HpetTimer {
    pub config: u64,
    pub comparator: u64,
    pub fsb_route: u64,
}

/// The HPET block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hpet {
    /// General capabilities and ID; bits 63:32 are the counter period in
    /// femtoseconds.
    pub capabilities: u64,
    pub config: u64,
    pub interrupt_status: u64,
    pub counter: u64,
    pub timers: [HpetTimer; HPET_TIMERS],
}

impl Hpet {
    /// Counter period in femtoseconds (0 if the capabilities are unset).
    pub fn period_fs(&self) -> u64 {
        self.capabilities >> 32
    }
}

/// The ACPI PM timer (3.579545 MHz, 32-bit with TMR_VAL_EXT).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmTimer {
    pub counter: u32,
}

impl PmTimer {
    pub const HZ: u64 = 3_579_545;
}
