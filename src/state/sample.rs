//! A plausible device state for a new LPAR: every vCPU at its x86 reset
//! state, interrupt controllers masked, timers idle, one shared NIC, one FC
//! HBA port, VGA assigned with a 256 KiB legacy VRAM.

use super::DeviceState;
use super::chipset::{
    HPET_TIMERS, Hpet, HpetTimer, IOAPIC_PINS, IoApic, Pic, PicChip, Pit, PmTimer,
};
use super::cpu::{
    DescriptorTable, Lapic, LapicTimer, Msr, Registers, Segment, SpecialRegisters, VcpuState,
};
use super::devices::{
    AcpiRegisters, Firmware, LogicalFcHba, LogicalNic, SerialPort, Vga, VgaSnapshot,
};
use super::ids::{
    MacAddress, PciAddress, UsbAssignment, VgaAssignment, VlanMode, VnicDeviceType, Wwpn,
};
use super::rtc::{CMOS_BYTES, LogicalRtc};

/// LVT entries come out of reset masked.
const LVT_MASKED: u32 = 1 << 16;
/// I/O APIC redirection entries come out of reset masked.
const REDIRECTION_MASKED: u64 = 1 << 16;
/// HPET period of a 14.31818 MHz counter, in femtoseconds.
const HPET_PERIOD_FS: u64 = 69_841_279;

fn data_segment() -> Segment {
    Segment {
        base: 0,
        limit: 0xffff,
        selector: 0,
        attributes: 0x93, // present, read/write, accessed
    }
}

fn reset_vcpu(index: usize) -> VcpuState {
    let bsp = index == 0;
    let apic_base = 0xfee0_0000 | (1 << 11) | if bsp { 1 << 8 } else { 0 };
    let mut xsave = vec![0u8; 576];
    xsave[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW
    xsave[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
    VcpuState {
        regs: Registers {
            gpr: [0; 16],
            rip: 0xfff0,
            rflags: 0x2,
        },
        sregs: SpecialRegisters {
            cs: Segment {
                base: 0xffff_0000,
                limit: 0xffff,
                selector: 0xf000,
                attributes: 0x9b,
            },
            ds: data_segment(),
            es: data_segment(),
            fs: data_segment(),
            gs: data_segment(),
            ss: data_segment(),
            tr: Segment {
                attributes: 0x8b,
                ..data_segment()
            },
            ldt: Segment {
                attributes: 0x82,
                ..data_segment()
            },
            gdt: DescriptorTable {
                base: 0,
                limit: 0xffff,
            },
            idt: DescriptorTable {
                base: 0,
                limit: 0xffff,
            },
            cr0: 0x6000_0010,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            apic_base,
        },
        msrs: vec![
            Msr {
                index: 0x1b, // IA32_APIC_BASE
                value: apic_base,
            },
            Msr {
                index: 0x1a0, // IA32_MISC_ENABLE: fast strings
                value: 1,
            },
            Msr {
                index: 0x277, // IA32_PAT
                value: 0x0007_0406_0007_0406,
            },
            Msr {
                index: 0xc000_0080, // EFER
                value: 0,
            },
        ],
        tsc: 0,
        xsave,
        lapic: Lapic {
            id: index as u32,
            tpr: 0,
            svr: 0xff,
            ldr: 0,
            lvt_lint0: LVT_MASKED,
            lvt_lint1: LVT_MASKED,
            lvt_error: LVT_MASKED,
            timer: LapicTimer {
                initial_count: 0,
                current_count: 0,
                divide_config: 0,
                lvt_timer: LVT_MASKED,
            },
            ..Lapic::default()
        },
        exact: Vec::new(),
    }
}

fn cmos() -> [u8; CMOS_BYTES] {
    let mut c = [0u8; CMOS_BYTES];
    c[0x0a] = 0x26; // status A: 32.768 kHz time base, 1024 Hz rate
    c[0x0b] = 0x02; // status B: 24-hour mode, BCD
    c[0x0d] = 0x80; // status D: valid RAM and time
    c[0x32] = 0x20; // century (BCD)
    c
}

impl DeviceState {
    /// A plausible state for a new LPAR with `vcpus` vCPUs (vCPU 0 is the
    /// bootstrap processor). Deterministic. More than
    /// [`MAX_VCPUS`](super::MAX_VCPUS) vCPUs makes a state that
    /// [`DeviceState::encode`] refuses.
    pub fn sample(vcpus: usize) -> DeviceState {
        let pci_config = (0u8..4)
            .flat_map(|f| {
                let mut cfg = [0u8; 256];
                cfg[0..2].copy_from_slice(&0x1054u16.to_le_bytes()); // Hitachi vendor ID
                cfg[2..4].copy_from_slice(&(0x3000u16 + u16::from(f)).to_le_bytes());
                cfg
            })
            .collect();
        DeviceState {
            tsc_khz: 2_400_000,
            vcpus: (0..vcpus).map(reset_vcpu).collect(),
            ioapic: Some(IoApic {
                id: vcpus.min(254) as u8,
                ioregsel: 0,
                redirection: [REDIRECTION_MASKED; IOAPIC_PINS],
            }),
            pic: Some(Pic {
                master: PicChip {
                    imr: 0xff,
                    ..PicChip::default()
                },
                slave: PicChip {
                    imr: 0xff,
                    ..PicChip::default()
                },
            }),
            pci_config: Some(pci_config),
            pit: Some(Pit::default()),
            hpet: Some(Hpet {
                capabilities: (HPET_PERIOD_FS << 32) | 0x8086_a201,
                config: 0,
                interrupt_status: 0,
                counter: 0,
                timers: [HpetTimer {
                    config: 0x30, // 64-bit capable, periodic capable
                    comparator: u64::MAX,
                    fsb_route: 0,
                }; HPET_TIMERS],
            }),
            pm_timer: Some(PmTimer::default()),
            rtc: Some(LogicalRtc {
                cmos: cmos(),
                offset_ns: 0,
            }),
            nics: vec![LogicalNic {
                vnic_number: 0,
                mac: MacAddress([0x02, 0, 0, 0, 0, 0x01]),
                mac_set_manually: false,
                vlan_mode: VlanMode::Undef,
                vlan_id: 0,
                device_type: VnicDeviceType::Nic1,
                promiscuous: false,
                inter_lpar_filtering: false,
                mmio: Some(vec![0; 4096]),
            }],
            fc_hbas: vec![LogicalFcHba {
                vfc_id: 2,
                wwpn: Wwpn::from_u64(0x5006_0e80_0000_0001),
                migration_wwpn: Wwpn::from_u64(0x5006_0e80_0000_0081),
                pci_address: PciAddress {
                    bus: 0,
                    device: 5,
                    function: 0,
                },
                nvram: vec![0; 256],
                mmio: Some(vec![0; 4096]),
            }],
            usb: UsbAssignment::Unassigned,
            vga: Vga {
                assigned: VgaAssignment::Assigned,
                snapshot: Some(VgaSnapshot {
                    vram: vec![0; 256 * 1024],
                    registers: vec![0; 64],
                }),
            },
            serial: Some(SerialPort {
                io_base: 0x3f8,
                iir: 0x01,
                lsr: 0x60,
                dll: 0x01,
                ..SerialPort::default()
            }),
            firmware: Firmware {
                uuid: *b"\x4c\x50\x4d\x56\x00\x00\x40\x00\x80\x00\x00\x00\x00\x00\x00\x01",
                nvram: vec![0xff; 64 * 1024],
            },
            acpi: Some(AcpiRegisters::default()),
            platform_exact: Vec::new(),
        }
    }
}
