//! Property tests of the binary encoding: round trip, corruption,
//! truncation, hostile bodies, version handling.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn blob(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn exact_records() -> impl Strategy<Value = Vec<ExactRecord>> {
    vec((1u8..=11, blob(80)), 0..4).prop_map(|v| {
        v.into_iter()
            .map(|(c, bytes)| ExactRecord {
                item: ExactItem::from_code(c).unwrap(),
                bytes,
            })
            .collect()
    })
}

fn segment() -> impl Strategy<Value = Segment> {
    (any::<u64>(), any::<u32>(), any::<u16>(), any::<u32>()).prop_map(
        |(base, limit, selector, attributes)| Segment {
            base,
            limit,
            selector,
            attributes,
        },
    )
}

fn sregs() -> impl Strategy<Value = SpecialRegisters> {
    (
        vec(segment(), 8),
        any::<[(u64, u16); 2]>(),
        any::<[u64; 7]>(),
    )
        .prop_map(|(segs, dts, cr)| SpecialRegisters {
            cs: segs[0],
            ds: segs[1],
            es: segs[2],
            fs: segs[3],
            gs: segs[4],
            ss: segs[5],
            tr: segs[6],
            ldt: segs[7],
            gdt: DescriptorTable {
                base: dts[0].0,
                limit: dts[0].1,
            },
            idt: DescriptorTable {
                base: dts[1].0,
                limit: dts[1].1,
            },
            cr0: cr[0],
            cr2: cr[1],
            cr3: cr[2],
            cr4: cr[3],
            cr8: cr[4],
            efer: cr[5],
            apic_base: cr[6],
        })
}

fn lapic() -> impl Strategy<Value = Lapic> {
    (
        any::<u32>(),
        any::<u8>(),
        any::<[u32; 5]>(),
        any::<[u32; 4]>(),
        any::<[[u64; 4]; 3]>(),
    )
        .prop_map(|(id, tpr, r, t, sets)| Lapic {
            id,
            tpr,
            svr: r[0],
            ldr: r[1],
            lvt_lint0: r[2],
            lvt_lint1: r[3],
            lvt_error: r[4],
            timer: LapicTimer {
                initial_count: t[0],
                current_count: t[1],
                divide_config: t[2],
                lvt_timer: t[3],
            },
            irr: VectorSet(sets[0]),
            isr: VectorSet(sets[1]),
            tmr: VectorSet(sets[2]),
        })
}

fn vcpu() -> impl Strategy<Value = VcpuState> {
    (
        any::<([u64; 16], u64, u64)>(),
        sregs(),
        vec(any::<(u32, u64)>(), 0..6),
        any::<u64>(),
        blob(700),
        lapic(),
        exact_records(),
    )
        .prop_map(
            |((gpr, rip, rflags), sregs, msrs, tsc, xsave, lapic, exact)| VcpuState {
                regs: Registers { gpr, rip, rflags },
                sregs,
                msrs: msrs
                    .into_iter()
                    .map(|(index, value)| Msr { index, value })
                    .collect(),
                tsc,
                xsave,
                lapic,
                exact,
            },
        )
}

fn pic_chip() -> impl Strategy<Value = PicChip> {
    any::<(u8, u8, u8, [u8; 4], u8, u8, bool)>().prop_map(
        |(irr, isr, imr, icw, init_step, elcr, read_isr)| PicChip {
            irr,
            isr,
            imr,
            icw,
            init_step,
            elcr,
            read_isr,
        },
    )
}

fn pit() -> impl Strategy<Value = Pit> {
    any::<[(u16, u16, u8, u8, bool, bool, bool); 3]>().prop_map(|c| Pit {
        channels: c.map(
            |(reload, count, mode, access, bcd, gate, output)| PitChannel {
                reload,
                count,
                mode,
                access,
                bcd,
                gate,
                output,
            },
        ),
    })
}

fn hpet() -> impl Strategy<Value = Hpet> {
    any::<([u64; 4], [[u64; 3]; 3])>().prop_map(|(g, t)| Hpet {
        capabilities: g[0],
        config: g[1],
        interrupt_status: g[2],
        counter: g[3],
        timers: t.map(|t| HpetTimer {
            config: t[0],
            comparator: t[1],
            fsb_route: t[2],
        }),
    })
}

fn nic() -> impl Strategy<Value = LogicalNic> {
    (
        any::<(u8, [u8; 6], bool)>(),
        prop::sample::select(VlanMode::ALL),
        0u16..=4095,
        prop::sample::select(VnicDeviceType::ALL),
        any::<(bool, bool)>(),
        prop::option::of(blob(64)),
    )
        .prop_map(
            |((vnic_number, mac, manual), vlan_mode, vlan_id, device_type, (p, f), mmio)| {
                LogicalNic {
                    vnic_number,
                    mac: MacAddress(mac),
                    mac_set_manually: manual,
                    vlan_mode,
                    vlan_id,
                    device_type,
                    promiscuous: p,
                    inter_lpar_filtering: f,
                    mmio,
                }
            },
        )
}

fn hba() -> impl Strategy<Value = LogicalFcHba> {
    (
        any::<(u16, u64, u64, u8)>(),
        0u8..32,
        0u8..8,
        blob(64),
        prop::option::of(blob(64)),
    )
        .prop_map(
            |((vfc_id, w, mw, bus), device, function, nvram, mmio)| LogicalFcHba {
                vfc_id,
                wwpn: Wwpn::from_u64(w),
                migration_wwpn: Wwpn::from_u64(mw),
                pci_address: PciAddress {
                    bus,
                    device,
                    function,
                },
                nvram,
                mmio,
            },
        )
}

fn serial() -> impl Strategy<Value = SerialPort> {
    any::<(u16, [u8; 10])>().prop_map(|(io_base, r)| SerialPort {
        io_base,
        ier: r[0],
        iir: r[1],
        fcr: r[2],
        lcr: r[3],
        mcr: r[4],
        lsr: r[5],
        msr: r[6],
        scr: r[7],
        dll: r[8],
        dlm: r[9],
    })
}

prop_compose! {
    fn device_state()(
        tsc_khz in any::<u32>(),
        vcpus in vec(vcpu(), 0..4),
        ioapic in prop::option::of((any::<(u8, u8)>(), vec(any::<u64>(), IOAPIC_PINS))),
        pic in prop::option::of((pic_chip(), pic_chip())),
        pci_config in prop::option::of(blob(300)),
        timers in (
            prop::option::of(pit()),
            prop::option::of(hpet()),
            prop::option::of(any::<u32>()),
            prop::option::of((vec(any::<u8>(), CMOS_BYTES), any::<i64>())),
        ),
        nics in vec(nic(), 0..4),
        fc_hbas in vec(hba(), 0..4),
        platform_exact in exact_records(),
        usb in prop::sample::select(UsbAssignment::ALL),
        vga in (
            prop::sample::select(VgaAssignment::ALL),
            prop::option::of((blob(300), blob(64))),
        ),
        rest in (
            prop::option::of(serial()),
            any::<[u8; 16]>(),
            blob(200),
            prop::option::of(any::<(u16, u16, u16, u64, u64)>()),
        ),
    ) -> DeviceState {
        let (pit, hpet, pm, rtc) = timers;
        let (serial, uuid, nvram, acpi) = rest;
        DeviceState {
            tsc_khz,
            vcpus,
            ioapic: ioapic.map(|((id, ioregsel), r)| IoApic {
                id,
                ioregsel,
                redirection: r.try_into().unwrap(),
            }),
            pic: pic.map(|(master, slave)| Pic { master, slave }),
            pci_config,
            pit,
            hpet,
            pm_timer: pm.map(|counter| PmTimer { counter }),
            rtc: rtc.map(|(c, offset_ns)| LogicalRtc {
                cmos: c.try_into().unwrap(),
                offset_ns,
            }),
            nics,
            fc_hbas,
            usb,
            vga: Vga {
                assigned: vga.0,
                snapshot: vga.1.map(|(vram, registers)| VgaSnapshot { vram, registers }),
            },
            serial,
            firmware: Firmware { uuid, nvram },
            acpi: acpi.map(|(a, b, c, d, e)| AcpiRegisters {
                pm1_status: a,
                pm1_enable: b,
                pm1_control: c,
                gpe0_status: d,
                gpe0_enable: e,
            }),
            platform_exact,
        }
    }
}

/// Rewrites the header's version and fixes up the CRC, as a newer writer
/// would have produced it.
fn with_version(mut bytes: Vec<u8>, major: u16, minor: u16) -> Vec<u8> {
    bytes[8..10].copy_from_slice(&major.to_le_bytes());
    bytes[10..12].copy_from_slice(&minor.to_le_bytes());
    refresh_crc(bytes)
}

fn refresh_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len() - TRAILER_LEN;
    let crc = crc32fast::hash(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// A frame with a valid header and CRC around an arbitrary body: reaches
/// the body decoder, which the CRC would otherwise shield.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&[0; TRAILER_LEN]);
    refresh_crc(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_state_round_trips(s in device_state()) {
        let bytes = s.encode().unwrap();
        prop_assert_eq!(format::frame_len(&bytes).unwrap(), bytes.len());
        prop_assert_eq!(DeviceState::decode(&bytes).unwrap(), s);
    }

    #[test]
    fn any_single_byte_corruption_is_an_error(
        s in device_state(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut bytes = s.encode().unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(DeviceState::decode(&bytes).is_err(), "byte {} ^ {:#x} went unnoticed", i, flip);
    }

    #[test]
    fn any_truncation_or_extension_is_an_error(
        s in device_state(),
        at in any::<prop::sample::Index>(),
        extra in vec(any::<u8>(), 1..16),
    ) {
        let bytes = s.encode().unwrap();
        let cut = at.index(bytes.len());
        prop_assert!(DeviceState::decode(&bytes[..cut]).is_err());
        let mut longer = bytes.clone();
        longer.extend_from_slice(&extra);
        prop_assert_eq!(
            DeviceState::decode(&longer).unwrap_err(),
            StateError::TrailingBytes { extra: extra.len() as u64 }
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
        let _ = DeviceState::decode(&bytes);
        let _ = format::frame_len(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_frame_never_panic(body in vec(any::<u8>(), 0..4096)) {
        let _ = DeviceState::decode(&framed(&body));
    }

    #[test]
    fn a_newer_major_version_is_refused_naming_both(
        major in (FORMAT_MAJOR + 1)..=u16::MAX,
        minor in any::<u16>(),
    ) {
        let bytes = with_version(DeviceState::sample(1).encode().unwrap(), major, minor);
        let e = DeviceState::decode(&bytes).unwrap_err();
        prop_assert_eq!(
            &e,
            &StateError::NewerMajorVersion {
                found: (major, minor),
                supported: (FORMAT_MAJOR, FORMAT_MINOR),
            }
        );
        let msg = e.to_string();
        let found = format!("{major}.{minor}");
        let ours = format!("{FORMAT_MAJOR}.{FORMAT_MINOR}");
        prop_assert!(msg.contains(&found) && msg.contains(&ours), "{}", msg);
    }
}

#[test]
fn a_newer_minor_version_is_read_and_its_appended_fields_skipped() {
    let s = DeviceState::sample(2);
    let mut bytes = s.encode().unwrap();
    // A minor+1 writer appended 8 bytes to the body.
    bytes.truncate(bytes.len() - TRAILER_LEN);
    bytes.extend_from_slice(&[0xab; 8]);
    let body_len = (bytes.len() - HEADER_LEN) as u64;
    bytes[16..24].copy_from_slice(&body_len.to_le_bytes());
    bytes.extend_from_slice(&[0; TRAILER_LEN]);
    let same_minor = refresh_crc(bytes.clone());
    assert_eq!(
        DeviceState::decode(&same_minor).unwrap_err(),
        StateError::TrailingBytes { extra: 8 }
    );
    let newer_minor = with_version(bytes, FORMAT_MAJOR, FORMAT_MINOR + 1);
    assert_eq!(DeviceState::decode(&newer_minor).unwrap(), s);
}

#[test]
fn an_older_major_version_is_refused() {
    let bytes = with_version(DeviceState::sample(1).encode().unwrap(), 0, 7);
    let e = DeviceState::decode(&bytes).unwrap_err();
    assert!(matches!(
        e,
        StateError::OlderMajorVersion { found: (0, 7), .. }
    ));
    assert!(e.to_string().contains("0.7"), "{e}");
}

#[test]
fn counts_beyond_their_bound_are_refused_before_allocating() {
    // tsc_khz, then a vCPU count of u32::MAX.
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        DeviceState::decode(&framed(&body)).unwrap_err(),
        StateError::TooLarge {
            what: "vCPUs",
            count: u64::from(u32::MAX),
            max: MAX_VCPUS as u64,
        }
    );
    // A count within bound but larger than the input: truncated, not OOM.
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend_from_slice(&(MAX_VCPUS as u32).to_le_bytes());
    assert!(matches!(
        DeviceState::decode(&framed(&body)).unwrap_err(),
        StateError::Truncated { .. }
    ));
}

#[test]
fn a_declared_body_beyond_the_bound_is_refused_from_the_header_alone() {
    let mut bytes = DeviceState::sample(1).encode().unwrap();
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        format::frame_len(&bytes[..HEADER_LEN]).unwrap_err(),
        StateError::TooLarge {
            what: "body bytes",
            ..
        }
    ));
    assert!(matches!(
        DeviceState::decode(&bytes).unwrap_err(),
        StateError::TooLarge { .. }
    ));
}

#[test]
fn the_encoder_refuses_what_the_decoder_would() {
    let mut s = DeviceState::sample(1);
    s.vcpus[0].msrs = vec![Msr::default(); MAX_MSRS + 1];
    assert!(matches!(
        s.encode().unwrap_err(),
        StateError::TooLarge {
            what: "MSRs in one vCPU",
            ..
        }
    ));
    let mut s = DeviceState::sample(1);
    s.nics[0].vlan_id = 4096;
    assert!(matches!(
        s.encode().unwrap_err(),
        StateError::InvalidValue {
            what: "VLAN ID",
            ..
        }
    ));
    assert!(DeviceState::sample(MAX_VCPUS + 1).encode().is_err());
}

#[test]
fn bad_magic_and_bad_crc_are_named() {
    let mut bytes = DeviceState::sample(1).encode().unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    assert!(matches!(
        DeviceState::decode(&bytes).unwrap_err(),
        StateError::ChecksumMismatch { .. }
    ));
    bytes[0] = b'X';
    assert!(matches!(
        DeviceState::decode(&bytes).unwrap_err(),
        StateError::BadMagic { .. }
    ));
}

#[test]
fn the_sample_state_round_trips_for_every_mode() {
    for vcpus in [0, 1, 64] {
        let s = DeviceState::sample(vcpus);
        for mode in [MigrationMode::Live, MigrationMode::Shutdown] {
            let m = s.clone().for_mode(mode);
            assert_eq!(DeviceState::decode(&m.encode().unwrap()).unwrap(), m);
        }
    }
}
