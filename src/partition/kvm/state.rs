//! KVM device state in and out of the `state` model.
//!
//! Every KVM record is mapped onto its Table 1-2 item twice: into the
//! model's fields (registers, special registers, MSRs with the TSC, the
//! XSAVE area, LAPIC, PIT, PICs, I/O APIC) for every reader, and as an
//! exact record ([`crate::state::exact`]) for the destination's KVM, so a
//! restore loads bit for bit what the source saved.
//!
//! Order (the kernel's constraints, as Firecracker and QEMU apply them):
//! save per vCPU: MP state, regs, sregs, XSAVE, XCRs, debug registers,
//! LAPIC, MSRs (TSC, kvmclock…), vCPU events last; then PIT, clock, PICs,
//! I/O APIC. Restore: PIT, clock, PICs, I/O APIC; then per vCPU MP state,
//! regs, sregs, XSAVE, XCRs, debug registers, LAPIC, MSRs, vCPU events
//! last (events depend on the LAPIC and the MSRs).
//!
//! TSC and kvmclock: both are saved at the pause and restored to the saved
//! values, so the guest sees time stand still across the suspension: no
//! jump forwards or backwards.

use crate::partition::PartitionError;
use crate::state::exact::{ExactItem, ExactRecord, find};
use crate::state::{
    DescriptorTable, DeviceState, IoApic, Lapic, LapicTimer, Msr, PicChip, Pit, PitChannel,
    Registers, Segment, SpecialRegisters, VcpuState, VectorSet,
};
use kvm_bindings::{
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, Msrs, kvm_clock_data,
    kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_pit_state2,
    kvm_regs, kvm_segment, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use kvm_ioctls::{VcpuFd, VmFd};

/// MSR index of the TSC.
pub const MSR_TSC: u32 = 0x10;

fn fail(call: &'static str, e: impl std::fmt::Display) -> PartitionError {
    PartitionError::BadConfig {
        why: format!("KVM {call} failed: {e}"),
    }
}

fn missing(item: ExactItem) -> PartitionError {
    PartitionError::BadConfig {
        why: format!("the device state has no {item:?} record: it was not saved by a KVM backend"),
    }
}

/// The bytes of a plain-old-data KVM record.
fn pod_bytes<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is a KVM uapi struct: integers (and unions of integers)
    // only, so every byte is initialised plain data... except padding,
    // which the kernel zeroes and the default values have zeroed.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// A KVM record from its bytes; `None` when the length is not its size.
fn pod_from<T: Copy + Default>(b: &[u8]) -> Option<T> {
    if b.len() != size_of::<T>() {
        return None;
    }
    let mut v = T::default();
    // SAFETY: T is integers only, so any bit pattern is a valid T; the
    // lengths are equal.
    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), (&mut v as *mut T).cast::<u8>(), b.len()) };
    Some(v)
}

fn record<T: Copy>(item: ExactItem, v: &T) -> ExactRecord {
    ExactRecord {
        item,
        bytes: pod_bytes(v),
    }
}

fn exact<T: Copy + Default>(records: &[ExactRecord], item: ExactItem) -> Result<T, PartitionError> {
    let b = find(records, item).ok_or_else(|| missing(item))?;
    pod_from(b).ok_or_else(|| PartitionError::BadConfig {
        why: format!(
            "the {item:?} record is {} bytes, this KVM's is {}",
            b.len(),
            size_of::<T>()
        ),
    })
}

fn segment(s: &kvm_segment) -> Segment {
    Segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        attributes: u32::from(s.type_ & 0xf)
            | u32::from(s.s & 1) << 4
            | u32::from(s.dpl & 3) << 5
            | u32::from(s.present & 1) << 7
            | u32::from(s.avl & 1) << 12
            | u32::from(s.l & 1) << 13
            | u32::from(s.db & 1) << 14
            | u32::from(s.g & 1) << 15
            | u32::from(s.unusable & 1) << 16,
    }
}

fn kvm_segment_of(s: &Segment) -> kvm_segment {
    let a = s.attributes;
    let bit = |n: u32| ((a >> n) & 1) as u8;
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (a & 0xf) as u8,
        s: bit(4),
        dpl: ((a >> 5) & 3) as u8,
        present: bit(7),
        avl: bit(12),
        l: bit(13),
        db: bit(14),
        g: bit(15),
        unusable: bit(16),
        padding: 0,
    }
}

pub fn registers(r: &kvm_regs) -> Registers {
    Registers {
        gpr: [
            r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ],
        rip: r.rip,
        rflags: r.rflags,
    }
}

fn kvm_regs_of(r: &Registers) -> kvm_regs {
    let g = r.gpr;
    kvm_regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: r.rip,
        rflags: r.rflags,
    }
}

fn special(s: &kvm_sregs) -> SpecialRegisters {
    SpecialRegisters {
        cs: segment(&s.cs),
        ds: segment(&s.ds),
        es: segment(&s.es),
        fs: segment(&s.fs),
        gs: segment(&s.gs),
        ss: segment(&s.ss),
        tr: segment(&s.tr),
        ldt: segment(&s.ldt),
        gdt: DescriptorTable {
            base: s.gdt.base,
            limit: s.gdt.limit,
        },
        idt: DescriptorTable {
            base: s.idt.base,
            limit: s.idt.limit,
        },
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
    }
}

fn kvm_sregs_of(s: &SpecialRegisters, interrupt_bitmap: [u64; 4]) -> kvm_sregs {
    let mut k = kvm_sregs {
        cs: kvm_segment_of(&s.cs),
        ds: kvm_segment_of(&s.ds),
        es: kvm_segment_of(&s.es),
        fs: kvm_segment_of(&s.fs),
        gs: kvm_segment_of(&s.gs),
        ss: kvm_segment_of(&s.ss),
        tr: kvm_segment_of(&s.tr),
        ldt: kvm_segment_of(&s.ldt),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
        interrupt_bitmap,
        ..Default::default()
    };
    k.gdt.base = s.gdt.base;
    k.gdt.limit = s.gdt.limit;
    k.idt.base = s.idt.base;
    k.idt.limit = s.idt.limit;
    k
}

fn lapic_word(l: &kvm_lapic_state, off: usize) -> u32 {
    let b = |i: usize| l.regs[off + i] as u8;
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

fn vectors(l: &kvm_lapic_state, base: usize) -> VectorSet {
    let mut v = [0u64; 4];
    for (i, w) in v.iter_mut().enumerate() {
        let lo = u64::from(lapic_word(l, base + 0x20 * i));
        let hi = u64::from(lapic_word(l, base + 0x10 + 0x20 * i));
        *w = lo | hi << 32;
    }
    VectorSet(v)
}

fn lapic(l: &kvm_lapic_state) -> Lapic {
    Lapic {
        id: lapic_word(l, 0x20) >> 24,
        tpr: lapic_word(l, 0x80) as u8,
        svr: lapic_word(l, 0xf0),
        ldr: lapic_word(l, 0xd0),
        lvt_lint0: lapic_word(l, 0x350),
        lvt_lint1: lapic_word(l, 0x360),
        lvt_error: lapic_word(l, 0x370),
        timer: LapicTimer {
            initial_count: lapic_word(l, 0x380),
            current_count: lapic_word(l, 0x390),
            divide_config: lapic_word(l, 0x3e0),
            lvt_timer: lapic_word(l, 0x320),
        },
        isr: vectors(l, 0x100),
        tmr: vectors(l, 0x180),
        irr: vectors(l, 0x200),
    }
}

fn pit(p: &kvm_pit_state2) -> Pit {
    let ch = |c: &kvm_bindings::kvm_pit_channel_state| PitChannel {
        reload: c.count as u16,
        count: c.latched_count,
        mode: c.mode,
        access: c.rw_mode,
        bcd: c.bcd != 0,
        gate: c.gate != 0,
        output: false,
    };
    Pit {
        channels: [ch(&p.channels[0]), ch(&p.channels[1]), ch(&p.channels[2])],
    }
}

fn pic(c: &kvm_irqchip) -> PicChip {
    // SAFETY: chips 0 and 1 hold the `pic` member of the union.
    let p = unsafe { c.chip.pic };
    PicChip {
        irr: p.irr,
        isr: p.isr,
        imr: p.imr,
        icw: [0, p.irq_base, 0, p.init4],
        init_step: p.init_state,
        elcr: p.elcr,
        read_isr: p.read_reg_select != 0,
    }
}

fn ioapic(c: &kvm_irqchip) -> IoApic {
    // SAFETY: chip 2 holds the `ioapic` member of the union.
    let a = unsafe { c.chip.ioapic };
    let mut redirection = [0u64; crate::state::IOAPIC_PINS];
    for (r, e) in redirection.iter_mut().zip(a.redirtbl.iter()) {
        // SAFETY: `bits` covers the whole 64-bit entry.
        *r = unsafe { e.bits };
    }
    IoApic {
        id: a.id as u8,
        ioregsel: a.ioregsel as u8,
        redirection,
    }
}

fn irqchip(vm: &VmFd, chip_id: u32) -> Result<kvm_irqchip, PartitionError> {
    let mut c = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    vm.get_irqchip(&mut c).map_err(|e| fail("GET_IRQCHIP", e))?;
    Ok(c)
}

/// Reads the MSRs in `indices` (the ones this KVM saves).
fn read_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<Msr>, PartitionError> {
    let entries: Vec<kvm_msr_entry> = indices
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    let mut msrs = Msrs::from_entries(&entries).map_err(|e| fail("MSR list", format!("{e:?}")))?;
    let n = fd.get_msrs(&mut msrs).map_err(|e| fail("GET_MSRS", e))?;
    if n != indices.len() {
        return Err(fail(
            "GET_MSRS",
            format!("read {n} of {} MSRs", indices.len()),
        ));
    }
    Ok(msrs
        .as_slice()
        .iter()
        .map(|e| Msr {
            index: e.index,
            value: e.data,
        })
        .collect())
}

/// The MSRs of `indices` this vCPU can read one by one (probed once).
pub fn readable_msrs(fd: &VcpuFd, indices: &[u32]) -> Vec<u32> {
    indices
        .iter()
        .copied()
        .filter(|&i| read_msrs(fd, &[i]).is_ok())
        .collect()
}

/// Saves one vCPU (paused) into the model.
pub fn save_vcpu(fd: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, PartitionError> {
    let mp = fd.get_mp_state().map_err(|e| fail("GET_MP_STATE", e))?;
    let regs = fd.get_regs().map_err(|e| fail("GET_REGS", e))?;
    let sregs = fd.get_sregs().map_err(|e| fail("GET_SREGS", e))?;
    let xsave = fd.get_xsave().map_err(|e| fail("GET_XSAVE", e))?;
    let xcrs = fd.get_xcrs().map_err(|e| fail("GET_XCRS", e))?;
    let debug = fd.get_debug_regs().map_err(|e| fail("GET_DEBUGREGS", e))?;
    let lapic_state = fd.get_lapic().map_err(|e| fail("GET_LAPIC", e))?;
    let msrs = read_msrs(fd, msr_indices)?;
    let events = fd
        .get_vcpu_events()
        .map_err(|e| fail("GET_VCPU_EVENTS", e))?;
    let tsc = msrs
        .iter()
        .find(|m| m.index == MSR_TSC)
        .map_or(0, |m| m.value);
    Ok(VcpuState {
        regs: registers(&regs),
        sregs: special(&sregs),
        msrs,
        tsc,
        xsave: xsave.region.iter().flat_map(|w| w.to_le_bytes()).collect(),
        lapic: lapic(&lapic_state),
        exact: vec![
            record(ExactItem::MpState, &mp),
            record(ExactItem::InterruptBitmap, &sregs.interrupt_bitmap),
            record(ExactItem::Xcrs, &xcrs),
            record(ExactItem::DebugRegs, &debug),
            record(ExactItem::LapicPage, &lapic_state),
            record(ExactItem::VcpuEvents, &events),
        ],
    })
}

/// Saves the VM-wide devices into `state` (PIT, clock, PICs, I/O APIC).
pub fn save_platform(vm: &VmFd, state: &mut DeviceState) -> Result<(), PartitionError> {
    let pit2 = vm.get_pit2().map_err(|e| fail("GET_PIT2", e))?;
    let clock = vm.get_clock().map_err(|e| fail("GET_CLOCK", e))?;
    let master = irqchip(vm, KVM_IRQCHIP_PIC_MASTER)?;
    let slave = irqchip(vm, KVM_IRQCHIP_PIC_SLAVE)?;
    let io = irqchip(vm, KVM_IRQCHIP_IOAPIC)?;
    state.pit = Some(pit(&pit2));
    state.pic = Some(crate::state::Pic {
        master: pic(&master),
        slave: pic(&slave),
    });
    state.ioapic = Some(ioapic(&io));
    state.platform_exact = vec![
        record(ExactItem::Pit, &pit2),
        record(ExactItem::Clock, &clock),
        record(ExactItem::PicMaster, &master),
        record(ExactItem::PicSlave, &slave),
        record(ExactItem::IoApic, &io),
    ];
    Ok(())
}

/// Loads the VM-wide devices (before the vCPUs).
pub fn restore_platform(vm: &VmFd, state: &DeviceState) -> Result<(), PartitionError> {
    let r = &state.platform_exact;
    let pit2: kvm_pit_state2 = exact(r, ExactItem::Pit)?;
    vm.set_pit2(&pit2).map_err(|e| fail("SET_PIT2", e))?;
    let saved: kvm_clock_data = exact(r, ExactItem::Clock)?;
    let clock = kvm_clock_data {
        clock: saved.clock,
        ..Default::default()
    };
    vm.set_clock(&clock).map_err(|e| fail("SET_CLOCK", e))?;
    for item in [ExactItem::PicMaster, ExactItem::PicSlave, ExactItem::IoApic] {
        let chip: kvm_irqchip = exact(r, item)?;
        vm.set_irqchip(&chip).map_err(|e| fail("SET_IRQCHIP", e))?;
    }
    Ok(())
}

/// Loads one vCPU (not running) from the model and its exact records.
pub fn restore_vcpu(fd: &VcpuFd, v: &VcpuState) -> Result<(), PartitionError> {
    let r = &v.exact;
    let mp: kvm_mp_state = exact(r, ExactItem::MpState)?;
    fd.set_mp_state(mp).map_err(|e| fail("SET_MP_STATE", e))?;
    fd.set_regs(&kvm_regs_of(&v.regs))
        .map_err(|e| fail("SET_REGS", e))?;
    let bitmap: [u64; 4] = exact(r, ExactItem::InterruptBitmap)?;
    fd.set_sregs(&kvm_sregs_of(&v.sregs, bitmap))
        .map_err(|e| fail("SET_SREGS", e))?;
    let mut xsave = kvm_xsave::default();
    if v.xsave.len() != 4096 {
        return Err(fail(
            "SET_XSAVE",
            format!("{} bytes, not 4096", v.xsave.len()),
        ));
    }
    for (w, b) in xsave.region.iter_mut().zip(v.xsave.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    // SAFETY: a whole kvm_xsave of the legacy 4 KiB size, which is what
    // get_xsave produced on the source.
    unsafe { fd.set_xsave(&xsave) }.map_err(|e| fail("SET_XSAVE", e))?;
    let xcrs: kvm_xcrs = exact(r, ExactItem::Xcrs)?;
    fd.set_xcrs(&xcrs).map_err(|e| fail("SET_XCRS", e))?;
    let debug: kvm_debugregs = exact(r, ExactItem::DebugRegs)?;
    fd.set_debug_regs(&debug)
        .map_err(|e| fail("SET_DEBUGREGS", e))?;
    let lapic_state: kvm_lapic_state = exact(r, ExactItem::LapicPage)?;
    fd.set_lapic(&lapic_state)
        .map_err(|e| fail("SET_LAPIC", e))?;
    let entries: Vec<kvm_msr_entry> = v
        .msrs
        .iter()
        .map(|m| kvm_msr_entry {
            index: m.index,
            data: m.value,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|e| fail("MSR list", format!("{e:?}")))?;
    let n = fd.set_msrs(&msrs).map_err(|e| fail("SET_MSRS", e))?;
    if n != entries.len() {
        return Err(fail(
            "SET_MSRS",
            format!("MSR {:#x} was refused", entries[n].index),
        ));
    }
    let events: kvm_vcpu_events = exact(r, ExactItem::VcpuEvents)?;
    fd.set_vcpu_events(&events)
        .map_err(|e| fail("SET_VCPU_EVENTS", e))?;
    Ok(())
}
