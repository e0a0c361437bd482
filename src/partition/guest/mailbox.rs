//! The guest's mailbox page at guest-physical [`ADDR`]: its counters for
//! the VMM and tests, and the VMM's power button. All fields little-endian.
//!
//! | offset | size | written by | meaning |
//! |-------:|-----:|------------|---------|
//! | 0   | u64 | guest | [`MAGIC`] once the page is initialised |
//! | 8   | u64 | guest | total writes, all vCPUs |
//! | 16  | u64 | guest | the last TSC any vCPU's loop read |
//! | 24  | u64 | guest | heartbeat sequence number (lines printed) |
//! | 32  | u64 | guest | vCPUs online |
//! | 40  | u64 | guest | TSC frequency in Hz (kvmclock's when offered, else PIT channel 2) |
//! | 48  | u64 | guest | longest gap between two consecutive writes of a vCPU, TSC ticks |
//! | 56  | u32 | guest | flags: [`FLAG_PROGRAM_ERROR`], [`FLAG_RUNNING`], [`FLAG_HALTED`] |
//! | 60  | u32 | VMM   | power button: nonzero = shut down |
//! | 64  | u64 | guest | work area start (bytes) |
//! | 72  | u64 | guest | work area size (bytes) |
//! | 80  | u64 | guest | end of RAM from the multiboot info (bytes) |
//! | 88  | u64 | guest | TSC at entry |
//! | 96  | u64 | guest | `writes=` per vCPU (0 = none) |
//! | 104 | u64 | guest | `rate=` over all vCPUs (0 = unbounded) |
//! | 112 | u32 | guest | opcode: 0 idle, 1 hot, 2 sweep, 3 skewed |
//! | 116 | u32 | guest | content: 0 zero, 1 text, 2 random |
//! | 120 | u32 | guest | vCPUs that obeyed the power button |
//! | 124 | u32 | guest | 1 with `shutdown=ignore` |
//! | 128 | u64 | guest | TSC Hz measured with PIT channel 2 |
//! | 136 | u64 | guest | TSC Hz from kvmclock (0: no kvmclock); offset 40 uses it when nonzero |
//! | 256 + 64·i | 64 | guest | vCPU i's program state ([`CpuState`]) |
//!
//! The guest zeroes the page at boot, before it sets the magic: a power
//! button pressed before the magic appears is lost.

/// Guest-physical address of the mailbox page.
pub const ADDR: u64 = 0x1000;
/// "LPARGUES".
pub const MAGIC: u64 = 0x4c50_4152_4755_4553;

/// Byte offset of [`Mailbox::magic`].
pub const OFF_MAGIC: usize = 0;
/// Byte offset of [`Mailbox::total_writes`].
pub const OFF_TOTAL_WRITES: usize = 8;
/// Byte offset of [`Mailbox::last_tsc`].
pub const OFF_LAST_TSC: usize = 16;
/// Byte offset of [`Mailbox::heartbeat_seq`].
pub const OFF_HEARTBEAT_SEQ: usize = 24;
/// Byte offset of [`Mailbox::cpus_online`].
pub const OFF_CPUS_ONLINE: usize = 32;
/// Byte offset of [`Mailbox::tsc_hz`].
pub const OFF_TSC_HZ: usize = 40;
/// Byte offset of [`Mailbox::max_gap`].
pub const OFF_MAX_GAP: usize = 48;
/// Byte offset of [`Mailbox::flags`].
pub const OFF_FLAGS: usize = 56;
/// The power button (u32), the one field the VMM writes.
pub const OFF_POWER_BUTTON: usize = 60;
/// Byte offset of [`Mailbox::region_start`].
pub const OFF_REGION_START: usize = 64;
/// Byte offset of [`Mailbox::region_bytes`].
pub const OFF_REGION_BYTES: usize = 72;
/// Byte offset of [`Mailbox::memory_end`].
pub const OFF_MEMORY_END: usize = 80;
/// Byte offset of [`Mailbox::boot_tsc`].
pub const OFF_BOOT_TSC: usize = 88;
/// Byte offset of [`Mailbox::write_limit`].
pub const OFF_WRITE_LIMIT: usize = 96;
/// Byte offset of [`Mailbox::rate`].
pub const OFF_RATE: usize = 104;
/// Byte offset of [`Mailbox::opcode`].
pub const OFF_OPCODE: usize = 112;
/// Byte offset of [`Mailbox::content`].
pub const OFF_CONTENT: usize = 116;
/// Byte offset of [`Mailbox::halted_cpus`].
pub const OFF_HALTED_CPUS: usize = 120;
/// Byte offset of [`Mailbox::ignore_shutdown`].
pub const OFF_IGNORE_SHUTDOWN: usize = 124;
/// Byte offset of [`Mailbox::pit_tsc_hz`].
pub const OFF_PIT_TSC_HZ: usize = 128;
/// Byte offset of [`Mailbox::kvmclock_tsc_hz`].
pub const OFF_KVMCLOCK_TSC_HZ: usize = 136;
/// vCPU i's state is at `OFF_CPUS + CPU_STRIDE * i`.
pub const OFF_CPUS: usize = 256;
/// Bytes of one vCPU's [`CpuState`].
pub const CPU_STRIDE: usize = 64;

/// The program's text could not be run (an `lpar-guest error:` line says why).
pub const FLAG_PROGRAM_ERROR: u32 = 1;
/// The boot line is out and the vCPUs run the program.
pub const FLAG_RUNNING: u32 = 2;
/// Every vCPU obeyed the power button and halted.
pub const FLAG_HALTED: u32 = 4;

/// One vCPU's program state: everything its next write depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    /// First page frame (guest-physical address / 4096) of its slice.
    pub start_page: u64,
    /// Pages in its slice.
    pub pages: u64,
    /// Next page index (hot, sweep).
    pub cursor: u64,
    /// xorshift64* state.
    pub rng: u64,
    /// Writes done.
    pub writes: u64,
    /// TSC of its last write.
    pub last_write_tsc: u64,
    /// Longest gap between two of its writes, TSC ticks.
    pub max_gap: u64,
    /// 0 starting, 1 writing, 2 done (idle or `writes=` reached), 3 halted.
    pub run_state: u32,
    /// Its index.
    pub index: u32,
}

/// A decoded mailbox page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mailbox {
    /// [`MAGIC`] once the guest has booted (offset 0).
    pub magic: u64,
    /// Writes by every vCPU (offset 8).
    pub total_writes: u64,
    /// The last TSC any vCPU's loop read (offset 16).
    pub last_tsc: u64,
    /// Heartbeat lines printed (offset 24).
    pub heartbeat_seq: u64,
    /// vCPUs online (offset 32).
    pub cpus_online: u64,
    /// TSC frequency in Hz (offset 40).
    pub tsc_hz: u64,
    /// Longest gap between two consecutive writes of a vCPU, TSC ticks (offset 48).
    pub max_gap: u64,
    /// Flag bits (offset 56).
    pub flags: u32,
    /// Nonzero: shut down; the VMM writes it (offset 60).
    pub power_button: u32,
    /// Work area start, bytes (offset 64).
    pub region_start: u64,
    /// Work area size, bytes (offset 72).
    pub region_bytes: u64,
    /// End of RAM from the multiboot info, bytes (offset 80).
    pub memory_end: u64,
    /// TSC at entry (offset 88).
    pub boot_tsc: u64,
    /// `writes=` per vCPU, 0 = none (offset 96).
    pub write_limit: u64,
    /// `rate=` over all vCPUs, 0 = unbounded (offset 104).
    pub rate: u64,
    /// Opcode: 0 idle, 1 hot, 2 sweep, 3 skewed (offset 112).
    pub opcode: u32,
    /// Content: 0 zero, 1 text, 2 random (offset 116).
    pub content: u32,
    /// vCPUs that obeyed the power button (offset 120).
    pub halted_cpus: u32,
    /// 1 with `shutdown=ignore` (offset 124).
    pub ignore_shutdown: u32,
    /// TSC Hz measured with PIT channel 2 (offset 128).
    pub pit_tsc_hz: u64,
    /// TSC Hz from kvmclock, 0 without (offset 136).
    pub kvmclock_tsc_hz: u64,
    /// One per online vCPU (at most [`super::MAX_CPUS`]).
    pub cpus: Vec<CpuState>,
}

fn u64_at(page: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&page[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(page: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&page[at..at + 4]);
    u32::from_le_bytes(b)
}

impl Mailbox {
    /// Decodes the mailbox from its 4 KiB page; `None` when the page is
    /// shorter or the guest has not set the magic yet.
    pub fn decode(page: &[u8]) -> Option<Self> {
        if page.len() < 4096 || u64_at(page, OFF_MAGIC) != MAGIC {
            return None;
        }
        let cpus_online = u64_at(page, OFF_CPUS_ONLINE);
        let listed = cpus_online.min(super::MAX_CPUS as u64) as usize;
        let cpus = (0..listed)
            .map(|i| {
                let at = OFF_CPUS + CPU_STRIDE * i;
                CpuState {
                    start_page: u64_at(page, at),
                    pages: u64_at(page, at + 8),
                    cursor: u64_at(page, at + 16),
                    rng: u64_at(page, at + 24),
                    writes: u64_at(page, at + 32),
                    last_write_tsc: u64_at(page, at + 40),
                    max_gap: u64_at(page, at + 48),
                    run_state: u32_at(page, at + 56),
                    index: u32_at(page, at + 60),
                }
            })
            .collect();
        Some(Mailbox {
            magic: MAGIC,
            total_writes: u64_at(page, OFF_TOTAL_WRITES),
            last_tsc: u64_at(page, OFF_LAST_TSC),
            heartbeat_seq: u64_at(page, OFF_HEARTBEAT_SEQ),
            cpus_online,
            tsc_hz: u64_at(page, OFF_TSC_HZ),
            max_gap: u64_at(page, OFF_MAX_GAP),
            flags: u32_at(page, OFF_FLAGS),
            power_button: u32_at(page, OFF_POWER_BUTTON),
            region_start: u64_at(page, OFF_REGION_START),
            region_bytes: u64_at(page, OFF_REGION_BYTES),
            memory_end: u64_at(page, OFF_MEMORY_END),
            boot_tsc: u64_at(page, OFF_BOOT_TSC),
            write_limit: u64_at(page, OFF_WRITE_LIMIT),
            rate: u64_at(page, OFF_RATE),
            opcode: u32_at(page, OFF_OPCODE),
            content: u32_at(page, OFF_CONTENT),
            halted_cpus: u32_at(page, OFF_HALTED_CPUS),
            ignore_shutdown: u32_at(page, OFF_IGNORE_SHUTDOWN),
            pit_tsc_hz: u64_at(page, OFF_PIT_TSC_HZ),
            kvmclock_tsc_hz: u64_at(page, OFF_KVMCLOCK_TSC_HZ),
            cpus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_needs_the_magic_and_a_whole_page() {
        let mut page = vec![0u8; 4096];
        assert_eq!(Mailbox::decode(&page), None);
        page[..8].copy_from_slice(&MAGIC.to_le_bytes());
        assert!(Mailbox::decode(&page[..4095]).is_none());
        page[OFF_TOTAL_WRITES..OFF_TOTAL_WRITES + 8].copy_from_slice(&77u64.to_le_bytes());
        page[OFF_CPUS_ONLINE] = 2;
        page[OFF_POWER_BUTTON] = 1;
        let at = OFF_CPUS + CPU_STRIDE + 32;
        page[at..at + 8].copy_from_slice(&5u64.to_le_bytes());
        let mb = Mailbox::decode(&page).unwrap();
        assert_eq!(mb.total_writes, 77);
        assert_eq!(mb.power_button, 1);
        assert_eq!(mb.cpus.len(), 2);
        assert_eq!(mb.cpus[1].writes, 5);
    }

    #[test]
    fn a_hostile_cpu_count_lists_at_most_max_cpus() {
        let mut page = vec![0u8; 4096];
        page[..8].copy_from_slice(&MAGIC.to_le_bytes());
        page[OFF_CPUS_ONLINE..OFF_CPUS_ONLINE + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            Mailbox::decode(&page).unwrap().cpus.len(),
            super::super::MAX_CPUS
        );
    }

    // The vCPU array fits the page.
    const _: () = assert!(OFF_CPUS + CPU_STRIDE * super::super::MAX_CPUS <= 4096);
}
