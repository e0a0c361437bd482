//! The writer: each field of the body in order, held to the reader's bounds.

use super::{MAX_VLAN_ID, bad_pci, too_large};
use crate::state::DeviceState;
use crate::state::chipset::{Hpet, IoApic, Pic, Pit};
use crate::state::cpu::{Lapic, Segment, VcpuState};
use crate::state::devices::{AcpiRegisters, LogicalFcHba, LogicalNic, SerialPort};
use crate::state::error::StateError;
use crate::state::format::{
    MAX_BLOB_BYTES, MAX_FC_HBAS, MAX_MSRS, MAX_NICS, MAX_VCPUS, MAX_XSAVE_BYTES,
};
use crate::state::rtc::LogicalRtc;

pub(in crate::state) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer into `buf`, emptied first (its capacity, and the pages
    /// behind it, are reused), whose first `header` bytes are zero, to be
    /// filled in later.
    pub(in crate::state) fn reusing(mut buf: Vec<u8>, header: usize) -> Self {
        buf.clear();
        buf.resize(header, 0);
        Writer { buf }
    }

    pub(in crate::state) fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    fn count(&mut self, what: &'static str, n: usize, max: usize) -> Result<(), StateError> {
        if n > max {
            return Err(too_large(what, n, max));
        }
        self.u32(n as u32);
        Ok(())
    }

    fn blob(&mut self, what: &'static str, b: &[u8], max: usize) -> Result<(), StateError> {
        self.count(what, b.len(), max)?;
        self.raw(b);
        Ok(())
    }

    fn opt_blob(&mut self, what: &'static str, b: &Option<Vec<u8>>) -> Result<(), StateError> {
        match b {
            None => self.u8(0),
            Some(b) => {
                self.u8(1);
                self.blob(what, b, MAX_BLOB_BYTES)?;
            }
        }
        Ok(())
    }

    fn opt<T>(&mut self, v: &Option<T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }

    pub(in crate::state) fn state(&mut self, s: &DeviceState) -> Result<(), StateError> {
        self.u32(s.tsc_khz);
        self.count("vCPUs", s.vcpus.len(), MAX_VCPUS)?;
        for v in &s.vcpus {
            self.vcpu(v)?;
        }
        self.opt(&s.ioapic, Self::ioapic);
        self.opt(&s.pic, Self::pic);
        self.opt_blob("PCI configuration bytes", &s.pci_config)?;
        self.opt(&s.pit, Self::pit);
        self.opt(&s.hpet, Self::hpet);
        self.opt(&s.pm_timer, |w, p| w.u32(p.counter));
        self.opt(&s.rtc, Self::rtc);
        self.count("logical NICs", s.nics.len(), MAX_NICS)?;
        for n in &s.nics {
            self.nic(n)?;
        }
        self.count("logical FC HBAs", s.fc_hbas.len(), MAX_FC_HBAS)?;
        for h in &s.fc_hbas {
            self.hba(h)?;
        }
        self.u8(s.usb.code());
        self.u8(s.vga.assigned.code());
        match &s.vga.snapshot {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.blob("VRAM bytes", &v.vram, MAX_BLOB_BYTES)?;
                self.blob("VGA register bytes", &v.registers, MAX_BLOB_BYTES)?;
            }
        }
        self.opt(&s.serial, Self::serial);
        self.raw(&s.firmware.uuid);
        self.blob("firmware NVRAM bytes", &s.firmware.nvram, MAX_BLOB_BYTES)?;
        self.opt(&s.acpi, Self::acpi);
        Ok(())
    }

    fn vcpu(&mut self, v: &VcpuState) -> Result<(), StateError> {
        for g in v.regs.gpr {
            self.u64(g);
        }
        self.u64(v.regs.rip);
        self.u64(v.regs.rflags);
        let s = &v.sregs;
        for seg in [&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss, &s.tr, &s.ldt] {
            self.segment(seg);
        }
        for dt in [&s.gdt, &s.idt] {
            self.u64(dt.base);
            self.u16(dt.limit);
        }
        for r in [s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base] {
            self.u64(r);
        }
        self.count("MSRs in one vCPU", v.msrs.len(), MAX_MSRS)?;
        for m in &v.msrs {
            self.u32(m.index);
            self.u64(m.value);
        }
        self.u64(v.tsc);
        self.blob("XSAVE bytes in one vCPU", &v.xsave, MAX_XSAVE_BYTES)?;
        self.lapic(&v.lapic);
        Ok(())
    }

    fn segment(&mut self, s: &Segment) {
        self.u64(s.base);
        self.u32(s.limit);
        self.u16(s.selector);
        self.u32(s.attributes);
    }

    fn lapic(&mut self, l: &Lapic) {
        self.u32(l.id);
        self.u8(l.tpr);
        for r in [l.svr, l.ldr, l.lvt_lint0, l.lvt_lint1, l.lvt_error] {
            self.u32(r);
        }
        let t = &l.timer;
        for r in [
            t.initial_count,
            t.current_count,
            t.divide_config,
            t.lvt_timer,
        ] {
            self.u32(r);
        }
        for set in [&l.irr, &l.isr, &l.tmr] {
            for w in set.0 {
                self.u64(w);
            }
        }
    }

    fn ioapic(&mut self, a: &IoApic) {
        self.u8(a.id);
        self.u8(a.ioregsel);
        for e in a.redirection {
            self.u64(e);
        }
    }

    fn pic(&mut self, p: &Pic) {
        for c in [&p.master, &p.slave] {
            self.u8(c.irr);
            self.u8(c.isr);
            self.u8(c.imr);
            self.raw(&c.icw);
            self.u8(c.init_step);
            self.u8(c.elcr);
            self.bool(c.read_isr);
        }
    }

    fn pit(&mut self, p: &Pit) {
        for c in &p.channels {
            self.u16(c.reload);
            self.u16(c.count);
            self.u8(c.mode);
            self.u8(c.access);
            self.bool(c.bcd);
            self.bool(c.gate);
            self.bool(c.output);
        }
    }

    fn hpet(&mut self, h: &Hpet) {
        self.u64(h.capabilities);
        self.u64(h.config);
        self.u64(h.interrupt_status);
        self.u64(h.counter);
        for t in &h.timers {
            self.u64(t.config);
            self.u64(t.comparator);
            self.u64(t.fsb_route);
        }
    }

    fn rtc(&mut self, r: &LogicalRtc) {
        self.raw(&r.cmos);
        self.i64(r.offset_ns);
    }

    fn nic(&mut self, n: &LogicalNic) -> Result<(), StateError> {
        if n.vlan_id > MAX_VLAN_ID {
            return Err(StateError::InvalidValue {
                what: "VLAN ID",
                value: u64::from(n.vlan_id),
            });
        }
        self.u8(n.vnic_number);
        self.raw(&n.mac.0);
        self.bool(n.mac_set_manually);
        self.u8(n.vlan_mode.code());
        self.u16(n.vlan_id);
        self.u8(n.device_type.code());
        self.bool(n.promiscuous);
        self.bool(n.inter_lpar_filtering);
        self.opt_blob("NIC MMIO bytes", &n.mmio)
    }

    fn hba(&mut self, h: &LogicalFcHba) -> Result<(), StateError> {
        if !h.pci_address.is_valid() {
            return Err(bad_pci(h.pci_address));
        }
        self.u16(h.vfc_id);
        self.raw(&h.wwpn.0);
        self.raw(&h.migration_wwpn.0);
        self.u8(h.pci_address.bus);
        self.u8(h.pci_address.device);
        self.u8(h.pci_address.function);
        self.blob("FC HBA NVRAM bytes", &h.nvram, MAX_BLOB_BYTES)?;
        self.opt_blob("FC HBA MMIO bytes", &h.mmio)
    }

    fn serial(&mut self, s: &SerialPort) {
        self.u16(s.io_base);
        self.raw(&[
            s.ier, s.iir, s.fcr, s.lcr, s.mcr, s.lsr, s.msr, s.scr, s.dll, s.dlm,
        ]);
    }

    fn acpi(&mut self, a: &AcpiRegisters) {
        self.u16(a.pm1_status);
        self.u16(a.pm1_enable);
        self.u16(a.pm1_control);
        self.u64(a.gpe0_status);
        self.u64(a.gpe0_enable);
    }
}
