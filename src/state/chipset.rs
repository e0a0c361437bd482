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
    /// The I/O APIC ID.
    pub id: u8,
    /// The register-select latch (IOREGSEL).
    pub ioregsel: u8,
    /// Redirection table, one 64-bit entry per pin.
    pub redirection: [u64; IOAPIC_PINS],
}

/// One 8259A.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PicChip {
    /// Interrupt request register.
    pub irr: u8,
    /// In-service register.
    pub isr: u8,
    /// Interrupt mask register.
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
    /// The master chip (IRQ 0–7).
    pub master: PicChip,
    /// The slave chip (IRQ 8–15, cascaded on master IRQ 2).
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
    /// Counting in BCD rather than binary.
    pub bcd: bool,
    /// The GATE input level.
    pub gate: bool,
    /// The OUT pin level.
    pub output: bool,
}

/// The 8254 PIT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pit {
    /// Channels 0 (system timer), 1 (refresh) and 2 (speaker).
    pub channels: [PitChannel; PIT_CHANNELS],
}

/// One HPET comparator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HpetTimer {
    /// Timer N configuration and capability register.
    pub config: u64,
    /// Comparator value register.
    pub comparator: u64,
    /// FSB interrupt route register.
    pub fsb_route: u64,
}

/// The HPET block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hpet {
    /// General capabilities and ID; bits 63:32 are the counter period in
    /// femtoseconds.
    pub capabilities: u64,
    /// General configuration register (enable, legacy replacement).
    pub config: u64,
    /// General interrupt status register.
    pub interrupt_status: u64,
    /// Main counter value.
    pub counter: u64,
    /// The comparators.
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
    /// The 24/32-bit counter value.
    pub counter: u32,
}

impl PmTimer {
    /// The PM timer frequency, in Hz.
    pub const HZ: u64 = 3_579_545;
}
