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
    /// General-purpose registers RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8–R15.
    pub gpr: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// Flags register.
    pub rflags: u64,
}

/// A segment register, in the unpacked form hypervisors exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Segment base address.
    pub base: u64,
    /// Segment limit.
    pub limit: u32,
    /// Segment selector.
    pub selector: u16,
    /// Access rights as in the VMCS: type (bits 0–3), S (4), DPL (5–6),
    /// P (7), AVL (12), L (13), D/B (14), G (15), unusable (16).
    pub attributes: u32,
}

/// GDTR or IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DescriptorTable {
    /// Table base address.
    pub base: u64,
    /// Table limit (size − 1).
    pub limit: u16,
}

/// Segment, control and descriptor-table registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialRegisters {
    /// Code segment.
    pub cs: Segment,
    /// Data segment.
    pub ds: Segment,
    /// Extra segment.
    pub es: Segment,
    /// FS segment.
    pub fs: Segment,
    /// GS segment.
    pub gs: Segment,
    /// Stack segment.
    pub ss: Segment,
    /// Task register.
    pub tr: Segment,
    /// Local descriptor table register.
    pub ldt: Segment,
    /// Global descriptor table register.
    pub gdt: DescriptorTable,
    /// Interrupt descriptor table register.
    pub idt: DescriptorTable,
    /// Control register 0.
    pub cr0: u64,
    /// Control register 2 (page-fault address).
    pub cr2: u64,
    /// Control register 3 (page-table base).
    pub cr3: u64,
    /// Control register 4.
    pub cr4: u64,
    /// Control register 8 (task priority).
    pub cr8: u64,
    /// Extended feature enable register.
    pub efer: u64,
    /// IA32_APIC_BASE MSR.
    pub apic_base: u64,
}

/// One model-specific register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msr {
    /// MSR number.
    pub index: u32,
    /// MSR value.
    pub value: u64,
}

/// A 256-bit vector set (LAPIC IRR, ISR, TMR): bit `v` is vector `v`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorSet(pub [u64; 4]);

impl VectorSet {
    /// Whether `vector` is in the set.
    pub fn contains(&self, vector: u8) -> bool {
        self.0[usize::from(vector / 64)] & (1 << (vector % 64)) != 0
    }

    /// Adds `vector`.
    pub fn insert(&mut self, vector: u8) {
        self.0[usize::from(vector / 64)] |= 1 << (vector % 64);
    }

    /// Removes `vector`.
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
    /// Initial count register (offset 0x380).
    pub initial_count: u32,
    /// Current count register (offset 0x390).
    pub current_count: u32,
    /// Divide configuration register (offset 0x3E0).
    pub divide_config: u32,
    /// LVT timer register (offset 0x320): vector, mask, mode.
    pub lvt_timer: u32,
}

/// The local APIC of one vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lapic {
    /// Local APIC ID.
    pub id: u32,
    /// Task priority register.
    pub tpr: u8,
    /// Spurious-interrupt vector register (bit 8 = APIC software enable).
    pub svr: u32,
    /// Logical destination register.
    pub ldr: u32,
    /// LVT LINT0 register.
    pub lvt_lint0: u32,
    /// LVT LINT1 register.
    pub lvt_lint1: u32,
    /// LVT error register.
    pub lvt_error: u32,
    /// The APIC timer.
    pub timer: LapicTimer,
    /// Interrupt request register.
    pub irr: VectorSet,
    /// In-service register.
    pub isr: VectorSet,
    /// Trigger mode register.
    pub tmr: VectorSet,
}

/// Everything that belongs to one vCPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuState {
    /// General-purpose registers.
    pub regs: Registers,
    /// Segment, control and descriptor-table registers.
    pub sregs: SpecialRegisters,
    /// At most [`MAX_MSRS`](super::MAX_MSRS).
    pub msrs: Vec<Msr>,
    /// Time-stamp counter at the instant of save.
    pub tsc: u64,
    /// XSAVE area (FPU, SSE, AVX…), as the hypervisor hands it over; at most
    /// [`MAX_XSAVE_BYTES`](super::MAX_XSAVE_BYTES).
    pub xsave: Vec<u8>,
    /// The local APIC.
    pub lapic: Lapic,
    /// Exact records of this vCPU a hypervisor backend carries beside the
    /// fields above (see `super::exact`).
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
