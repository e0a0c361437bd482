//! The reader: each field of the body in the writer's order, every count
//! and value checked against its bound before anything is allocated.

use super::{MAX_VLAN_ID, bad_pci, too_large};
use crate::state::DeviceState;
use crate::state::chipset::{
    HPET_TIMERS, Hpet, HpetTimer, IOAPIC_PINS, IoApic, PIT_CHANNELS, Pic, PicChip, Pit, PitChannel,
    PmTimer,
};
use crate::state::cpu::{
    DescriptorTable, Lapic, LapicTimer, Msr, Registers, Segment, SpecialRegisters, VcpuState,
    VectorSet,
};
use crate::state::devices::{
    AcpiRegisters, Firmware, LogicalFcHba, LogicalNic, SerialPort, Vga, VgaSnapshot,
};
use crate::state::error::StateError;
use crate::state::format::{
    MAX_BLOB_BYTES, MAX_FC_HBAS, MAX_MSRS, MAX_NICS, MAX_VCPUS, MAX_XSAVE_BYTES,
};
use crate::state::ids::{
    MacAddress, PciAddress, UsbAssignment, VgaAssignment, VlanMode, VnicDeviceType, Wwpn,
};
use crate::state::rtc::{CMOS_BYTES, LogicalRtc};

pub(in crate::state) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(in crate::state) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(in crate::state) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], StateError> {
        if n > self.remaining() {
            return Err(StateError::Truncated {
                what,
                needed: n as u64,
                available: self.remaining() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(what, N)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, StateError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, StateError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, StateError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// Booleans are exactly 0 or 1, so every state has one encoding.
    fn bool(&mut self, what: &'static str) -> Result<bool, StateError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(StateError::InvalidValue {
                what,
                value: u64::from(v),
            }),
        }
    }

    /// A count, checked against its bound before anything is allocated.
    fn count(&mut self, what: &'static str, max: usize) -> Result<usize, StateError> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(too_large(what, n, max));
        }
        Ok(n)
    }

    /// A blob: checked against its bound and against the bytes that remain
    /// before it is copied, so it never allocates more than the input.
    fn blob(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, StateError> {
        let n = self.count(what, max)?;
        Ok(self.take(what, n)?.to_vec())
    }

    fn opt_blob(&mut self, what: &'static str) -> Result<Option<Vec<u8>>, StateError> {
        self.opt(what, |r| r.blob(what, MAX_BLOB_BYTES))
    }

    fn opt<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Self) -> Result<T, StateError>,
    ) -> Result<Option<T>, StateError> {
        if self.bool(what)? {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A sequence of `n` items. Capacity is reserved only up to what the
    /// remaining input could hold at `min_item_len` bytes per item.
    fn seq<T>(
        &mut self,
        n: usize,
        min_item_len: usize,
        mut f: impl FnMut(&mut Self) -> Result<T, StateError>,
    ) -> Result<Vec<T>, StateError> {
        let mut v = Vec::with_capacity(n.min(self.remaining() / min_item_len.max(1)));
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(v)
    }

    pub(in crate::state) fn state(&mut self) -> Result<DeviceState, StateError> {
        let tsc_khz = self.u32("TSC frequency")?;
        let n = self.count("vCPUs", MAX_VCPUS)?;
        let vcpus = self.seq(n, 400, Self::vcpu)?;
        let ioapic = self.opt("I/O APIC", Self::ioapic)?;
        let pic = self.opt("PIC", Self::pic)?;
        let pci_config = self.opt_blob("PCI configuration bytes")?;
        let pit = self.opt("PIT", Self::pit)?;
        let hpet = self.opt("HPET", Self::hpet)?;
        let pm_timer = self.opt("PM timer", |r| {
            Ok(PmTimer {
                counter: r.u32("PM timer")?,
            })
        })?;
        let rtc = self.opt("logical RTC", Self::rtc)?;
        let n = self.count("logical NICs", MAX_NICS)?;
        let nics = self.seq(n, 15, Self::nic)?;
        let n = self.count("logical FC HBAs", MAX_FC_HBAS)?;
        let fc_hbas = self.seq(n, 26, Self::hba)?;
        let usb = self.code("USB assigned state", UsbAssignment::from_code)?;
        let assigned = self.code("VGA assigned state", VgaAssignment::from_code)?;
        let snapshot = self.opt("VGA snapshot", |r| {
            Ok(VgaSnapshot {
                vram: r.blob("VRAM bytes", MAX_BLOB_BYTES)?,
                registers: r.blob("VGA register bytes", MAX_BLOB_BYTES)?,
            })
        })?;
        let serial = self.opt("serial port", Self::serial)?;
        let uuid = self.array("UUID")?;
        let nvram = self.blob("firmware NVRAM bytes", MAX_BLOB_BYTES)?;
        let acpi = self.opt("ACPI registers", Self::acpi)?;
        Ok(DeviceState {
            tsc_khz,
            vcpus,
            ioapic,
            pic,
            pci_config,
            pit,
            hpet,
            pm_timer,
            rtc,
            nics,
            fc_hbas,
            usb,
            vga: Vga { assigned, snapshot },
            serial,
            firmware: Firmware { uuid, nvram },
            acpi,
            platform_exact: Vec::new(),
        })
    }

    fn code<T>(&mut self, what: &'static str, f: fn(u8) -> Option<T>) -> Result<T, StateError> {
        let c = self.u8(what)?;
        f(c).ok_or(StateError::InvalidValue {
            what,
            value: u64::from(c),
        })
    }

    fn vcpu(&mut self) -> Result<VcpuState, StateError> {
        let mut regs = Registers::default();
        for g in &mut regs.gpr {
            *g = self.u64("vCPU registers")?;
        }
        regs.rip = self.u64("vCPU registers")?;
        regs.rflags = self.u64("vCPU registers")?;
        let mut sregs = SpecialRegisters::default();
        {
            let s = &mut sregs;
            for seg in [
                &mut s.cs, &mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss, &mut s.tr,
                &mut s.ldt,
            ] {
                *seg = self.segment()?;
            }
        }
        for dt in [&mut sregs.gdt, &mut sregs.idt] {
            *dt = DescriptorTable {
                base: self.u64("descriptor table")?,
                limit: self.u16("descriptor table")?,
            };
        }
        let s = &mut sregs;
        for r in [
            &mut s.cr0,
            &mut s.cr2,
            &mut s.cr3,
            &mut s.cr4,
            &mut s.cr8,
            &mut s.efer,
            &mut s.apic_base,
        ] {
            *r = self.u64("control registers")?;
        }
        let n = self.count("MSRs in one vCPU", MAX_MSRS)?;
        let msrs = self.seq(n, 12, |r| {
            Ok(Msr {
                index: r.u32("MSR")?,
                value: r.u64("MSR")?,
            })
        })?;
        let tsc = self.u64("TSC")?;
        let xsave = self.blob("XSAVE bytes in one vCPU", MAX_XSAVE_BYTES)?;
        let lapic = self.lapic()?;
        Ok(VcpuState {
            regs,
            sregs,
            msrs,
            tsc,
            xsave,
            lapic,
            exact: Vec::new(),
        })
    }

    fn segment(&mut self) -> Result<Segment, StateError> {
        Ok(Segment {
            base: self.u64("segment register")?,
            limit: self.u32("segment register")?,
            selector: self.u16("segment register")?,
            attributes: self.u32("segment register")?,
        })
    }

    fn lapic(&mut self) -> Result<Lapic, StateError> {
        let w = "LAPIC";
        let id = self.u32(w)?;
        let tpr = self.u8(w)?;
        let svr = self.u32(w)?;
        let ldr = self.u32(w)?;
        let lvt_lint0 = self.u32(w)?;
        let lvt_lint1 = self.u32(w)?;
        let lvt_error = self.u32(w)?;
        let timer = LapicTimer {
            initial_count: self.u32(w)?,
            current_count: self.u32(w)?,
            divide_config: self.u32(w)?,
            lvt_timer: self.u32(w)?,
        };
        let mut sets = [VectorSet::default(); 3];
        for set in &mut sets {
            for word in &mut set.0 {
                *word = self.u64(w)?;
            }
        }
        let [irr, isr, tmr] = sets;
        Ok(Lapic {
            id,
            tpr,
            svr,
            ldr,
            lvt_lint0,
            lvt_lint1,
            lvt_error,
            timer,
            irr,
            isr,
            tmr,
        })
    }

    fn ioapic(&mut self) -> Result<IoApic, StateError> {
        let id = self.u8("I/O APIC")?;
        let ioregsel = self.u8("I/O APIC")?;
        let mut redirection = [0u64; IOAPIC_PINS];
        for e in &mut redirection {
            *e = self.u64("I/O APIC redirection table")?;
        }
        Ok(IoApic {
            id,
            ioregsel,
            redirection,
        })
    }

    fn pic(&mut self) -> Result<Pic, StateError> {
        let mut chips = [PicChip::default(); 2];
        for c in &mut chips {
            *c = PicChip {
                irr: self.u8("PIC")?,
                isr: self.u8("PIC")?,
                imr: self.u8("PIC")?,
                icw: self.array("PIC")?,
                init_step: self.u8("PIC")?,
                elcr: self.u8("PIC")?,
                read_isr: self.bool("PIC read-ISR flag")?,
            };
        }
        let [master, slave] = chips;
        Ok(Pic { master, slave })
    }

    fn pit(&mut self) -> Result<Pit, StateError> {
        let mut channels = [PitChannel::default(); PIT_CHANNELS];
        for c in &mut channels {
            *c = PitChannel {
                reload: self.u16("PIT channel")?,
                count: self.u16("PIT channel")?,
                mode: self.u8("PIT channel")?,
                access: self.u8("PIT channel")?,
                bcd: self.bool("PIT BCD flag")?,
                gate: self.bool("PIT gate flag")?,
                output: self.bool("PIT output flag")?,
            };
        }
        Ok(Pit { channels })
    }

    fn hpet(&mut self) -> Result<Hpet, StateError> {
        let capabilities = self.u64("HPET")?;
        let config = self.u64("HPET")?;
        let interrupt_status = self.u64("HPET")?;
        let counter = self.u64("HPET")?;
        let mut timers = [HpetTimer::default(); HPET_TIMERS];
        for t in &mut timers {
            *t = HpetTimer {
                config: self.u64("HPET timer")?,
                comparator: self.u64("HPET timer")?,
                fsb_route: self.u64("HPET timer")?,
            };
        }
        Ok(Hpet {
            capabilities,
            config,
            interrupt_status,
            counter,
            timers,
        })
    }

    fn rtc(&mut self) -> Result<LogicalRtc, StateError> {
        Ok(LogicalRtc {
            cmos: self.array::<CMOS_BYTES>("CMOS")?,
            offset_ns: self.i64("RTC offset")?,
        })
    }

    fn nic(&mut self) -> Result<LogicalNic, StateError> {
        let vnic_number = self.u8("logical NIC")?;
        let mac = MacAddress(self.array("MAC address")?);
        let mac_set_manually = self.bool("manual-MAC flag")?;
        let vlan_mode = self.code("VLAN mode", VlanMode::from_code)?;
        let vlan_id = self.u16("VLAN ID")?;
        if vlan_id > MAX_VLAN_ID {
            return Err(StateError::InvalidValue {
                what: "VLAN ID",
                value: u64::from(vlan_id),
            });
        }
        let device_type = self.code("VNIC device type", VnicDeviceType::from_code)?;
        let promiscuous = self.bool("promiscuous-mode flag")?;
        let inter_lpar_filtering = self.bool("inter-LPAR packet filtering flag")?;
        let mmio = self.opt_blob("NIC MMIO bytes")?;
        Ok(LogicalNic {
            vnic_number,
            mac,
            mac_set_manually,
            vlan_mode,
            vlan_id,
            device_type,
            promiscuous,
            inter_lpar_filtering,
            mmio,
        })
    }

    fn hba(&mut self) -> Result<LogicalFcHba, StateError> {
        let vfc_id = self.u16("vfcID")?;
        let wwpn = Wwpn(self.array("WWPN")?);
        let migration_wwpn = Wwpn(self.array("migration WWPN")?);
        let pci_address = PciAddress {
            bus: self.u8("logical PCI address")?,
            device: self.u8("logical PCI address")?,
            function: self.u8("logical PCI address")?,
        };
        if !pci_address.is_valid() {
            return Err(bad_pci(pci_address));
        }
        let nvram = self.blob("FC HBA NVRAM bytes", MAX_BLOB_BYTES)?;
        let mmio = self.opt_blob("FC HBA MMIO bytes")?;
        Ok(LogicalFcHba {
            vfc_id,
            wwpn,
            migration_wwpn,
            pci_address,
            nvram,
            mmio,
        })
    }

    fn serial(&mut self) -> Result<SerialPort, StateError> {
        let io_base = self.u16("serial port")?;
        let [ier, iir, fcr, lcr, mcr, lsr, msr, scr, dll, dlm] = self.array("serial port")?;
        Ok(SerialPort {
            io_base,
            ier,
            iir,
            fcr,
            lcr,
            mcr,
            lsr,
            msr,
            scr,
            dll,
            dlm,
        })
    }

    fn acpi(&mut self) -> Result<AcpiRegisters, StateError> {
        Ok(AcpiRegisters {
            pm1_status: self.u16("ACPI registers")?,
            pm1_enable: self.u16("ACPI registers")?,
            pm1_control: self.u16("ACPI registers")?,
            gpe0_status: self.u64("ACPI registers")?,
            gpe0_enable: self.u64("ACPI registers")?,
        })
    }
}
