//! Per-vCPU state: general and special registers, MSRs, TSC, extended
//! (FPU/SSE/AVX) state and the local APIC.

/// General-purpose registers, instruction pointer and flags.
///
/// The userspace `sim` backend keeps its guest program's whole state here
/// (`gpr`, `rip`, `rflags`), so these names are part of the contract.
/// `gpr` is in the x86 encoding order: rax, rcx, rdx, rbx, rsp, rbp, rsi,
/// rdi, r8 … r15.
///
/// `repr(C)` with no padding and the `zerocopy` traits, so a backend can
/// keep it in shared memory (as `sim` does) and read or write it without
/// `unsafe`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
pub struct Registers {
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
}

/// A segment register, in the unpacked form hypervisors exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    /// Access rights as in the VMCS: type (bits 0–3), S (4), DPL (5–6),
    /// P (7), AVL (12), L (13), D/B (14), G (15), unusable (16).
    pub attributes: u32,
}

/// GDTR or IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DescriptorTable {
    pub base: u64,
    pub limit: u16,
}

/// Segment, control and descriptor-table registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialRegisters {
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldt: Segment,
    pub gdt: DescriptorTable,
    pub idt: DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub apic_base: u64,
}

/// One model-specific register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msr {
    pub index: u32,
    pub value: u64,
}

/// A 256-bit vector set (LAPIC IRR, ISR, TMR): bit `v` is vector `v`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorSet(pub [u64; 4]);

impl VectorSet {
    pub fn contains(&self, vector: u8) -> bool {
        self.0[usize::from(vector / 64)] & (1 << (vector % 64)) != 0
    }

    pub fn insert(&mut self, vector: u8) {
        self.0[usize::from(vector / 64)] |= 1 << (vector % 64);
    }

    pub fn remove(&mut self, vector: u8) {
        self.0[usize::from(vector / 64)] &= !(1 << (vector % 64));
    }

    /// The highest vector in the set (the one the LAPIC would deliver next).
    pub fn highest(&self) -> Option<u8> {
        (0..4).rev().find_map(|i| {
            let w = self.0[i];
            (w != 0).then(|| (i as u8) * 64 + (63 - w.leading_zeros() as u8))
        })
    }
}

/// The LAPIC timer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LapicTimer {
    pub initial_count: u32,
    pub current_count: u32,
    /// Divide configuration register (offset 0x3E0).
    pub divide_config: u32,
    /// LVT timer register (offset 0x320): vector, mask, mode.
    pub lvt_timer: u32,
}

/// The local APIC of one vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lapic {
    pub id: u32,
    pub tpr: u8,
    /// Spurious-interrupt vector register (bit 8 = APIC software enable).
    pub svr: u32,
    /// Logical destination register.
    pub ldr: u32,
    pub lvt_lint0: u32,
    pub lvt_lint1: u32,
    pub lvt_error: u32,
    pub timer: LapicTimer,
    pub irr: VectorSet,
    pub isr: VectorSet,
    pub tmr: VectorSet,
}

/// Everything that belongs to one vCPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuState {
    pub regs: Registers,
    pub sregs: SpecialRegisters,
    /// At most [`MAX_MSRS`](super::MAX_MSRS).
    pub msrs: Vec<Msr>,
    /// Time-stamp counter at the instant of save.
    pub tsc: u64,
    /// XSAVE area (FPU, SSE, AVX…), as the hypervisor hands it over; at most
    /// [`MAX_XSAVE_BYTES`](super::MAX_XSAVE_BYTES).
    pub xsave: Vec<u8>,
    pub lapic: Lapic,
    /// Exact records of this vCPU a hypervisor backend carries beside the
    /// fields above (see [`super::exact`]).
    pub exact: Vec<super::ExactRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::{FromBytes, IntoBytes};

    #[test]
    fn registers_map_to_and_from_plain_bytes() {
        let mut r = Registers::default();
        r.gpr[15] = 0x1122_3344_5566_7788;
        r.rip = 0xfff0;
        r.rflags = 2;
        let bytes = r.as_bytes();
        assert_eq!(bytes.len(), 18 * 8);
        assert_eq!(Registers::read_from_bytes(bytes).unwrap(), r);
    }

    #[test]
    fn vector_set_tracks_vectors_and_reports_the_highest() {
        let mut s = VectorSet::default();
        assert_eq!(s.highest(), None);
        s.insert(0x20);
        s.insert(0xec);
        s.insert(255);
        assert!(s.contains(0xec) && s.contains(255) && !s.contains(0x21));
        assert_eq!(s.highest(), Some(255));
        s.remove(255);
        assert_eq!(s.highest(), Some(0xec));
        s.remove(0xec);
        assert_eq!(s.highest(), Some(0x20));
    }
}
