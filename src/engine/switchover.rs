//! The device semantics of the manual (Table 1-2) applied on the
//! destination at switchover, between loading the device state and
//! reporting Ready:
//!
//! | item | rule | here |
//! |---|---|---|
//! | live-only items | carried in Concurrent Maintenance only | [`DeviceState::for_mode`]`(Live)` |
//! | NIC / FC port mode | only shared devices move live | dedicated ones refused |
//! | WWPN, migration WWPN, MAC | "Exchanged between the source and destination" | the LPAR keeps its identities; the destination slot's go back to the source ([`exchange_identities`]); a manually set MAC is refused |
//! | vfcID | "The smallest available number is assigned", kept with HBA Core Dedicated mode | per physical port: pinned ports first, each must be free; then the smallest free one per port |
//! | logical RTC | moves; "the time difference … is migrated" | offset re-based by the host-clock difference (`HostClock`) |
//! | guest clock | the guest ends up behind by the suspension | optional: counters advanced by the suspension so far |
//!
//! Every refusal happens before Ready, so the source keeps running the
//! LPAR. The outcome is recorded in the destination's report; the slot
//! identities travel back to the source in an `Identities` frame.

use crate::emg::{Emg, Module, phase};
use crate::partition::{DeviceMode, FcPortConfig, LparConfig};
use crate::state::{
    DeviceState, HbaIdentity, Identities, MacAddress, MigrationMode, NicIdentity, StateError, Wwpn,
    exchange_identities,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What the destination host offers the incoming LPAR.
#[derive(Clone, Debug, Default)]
pub struct DestinationHost {
    /// Free vfcIDs per physical FC port.
    pub free_vfc_ids: BTreeMap<u16, BTreeSet<u16>>,
    /// The identities the destination LPAR slot holds; after the exchange
    /// the source's slot holds them.
    pub slot: Identities,
    /// Advance the guest's counters by the suspension on resume.
    pub compensate_clock: bool,
    /// Network segment → this host's interface on it (for the announce).
    pub segments: BTreeMap<String, String>,
}

impl DestinationHost {
    /// A host with every vfcID free on the ports `config` uses and a slot
    /// whose identities are derived from the LPAR's (the fifth octet of
    /// each MAC and the third-lowest byte of each WWPN replaced by `0xd5`),
    /// so the exchange is visible. For the one-shot agent and tests.
    pub fn open_for(config: &LparConfig) -> Self {
        let all: BTreeSet<u16> = (1..=crate::partition::config::MAX_VFC_ID).collect();
        let free_vfc_ids = config
            .fc_ports
            .iter()
            .map(|p| (p.port, all.clone()))
            .collect();
        let mark = |w: Wwpn| Wwpn::from_u64((w.as_u64() & !0xff_0000) | 0xd5_0000);
        let slot = Identities {
            hbas: config
                .fc_ports
                .iter()
                .map(|p| HbaIdentity {
                    wwpn: mark(p.wwpn),
                    migration_wwpn: mark(p.migration_wwpn),
                })
                .collect(),
            nics: config
                .nics
                .iter()
                .map(|n| {
                    let mut mac = n.mac.0;
                    mac[4] = 0xd5;
                    NicIdentity {
                        mac: MacAddress(mac),
                        set_manually: false,
                    }
                })
                .collect(),
        };
        DestinationHost {
            free_vfc_ids,
            slot,
            compensate_clock: false,
            segments: BTreeMap::new(),
        }
    }
}

/// Why the destination refuses the switchover.
#[derive(Debug)]
pub enum SwitchoverError {
    /// A state rule refused (identity counts differ, manual MAC).
    State(StateError),
    /// The LPAR's configuration lists a different number of devices than
    /// its device state carries.
    DeviceCount {
        what: &'static str,
        config: usize,
        state: usize,
    },
    /// A dedicated NIC or FC port cannot move live.
    Dedicated { what: &'static str, index: usize },
    /// No free vfcID left on the physical port for this logical FC port.
    NoFreeVfcId {
        index: usize,
        physical_port: u16,
        wwpn: Wwpn,
    },
    /// The pinned vfcID is not free on the physical port.
    PinnedVfcIdTaken {
        index: usize,
        physical_port: u16,
        wwpn: Wwpn,
        vfc_id: u16,
    },
}

impl fmt::Display for SwitchoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::State(e) => write!(f, "{e}"),
            Self::DeviceCount {
                what,
                config,
                state,
            } => write!(
                f,
                "the LPAR configuration lists {config} {what}, its device state {state}"
            ),
            Self::Dedicated { what, index } => write!(
                f,
                "{what} #{index} is dedicated; only shared devices move in Concurrent \
                 Maintenance mode"
            ),
            Self::NoFreeVfcId {
                index,
                physical_port,
                wwpn,
            } => write!(
                f,
                "Not enough vfcID on the shared FC device (DST-Port {physical_port}) for \
                 logical FC port #{index} (WWPN {wwpn})"
            ),
            Self::PinnedVfcIdTaken {
                index,
                physical_port,
                wwpn,
                vfc_id,
            } => write!(
                f,
                "vfcID {vfc_id} pinned by logical FC port #{index} (WWPN {wwpn}) is not free \
                 on the shared FC device (DST-Port {physical_port})"
            ),
        }
    }
}

impl std::error::Error for SwitchoverError {}

impl SwitchoverError {
    /// The manual's EMG: vfcID shortages are `0x00 4******* 0030 02`-style
    /// definition errors whose detail names the port.
    pub fn emg(&self) -> Emg {
        let message = self.to_string();
        let define = |cause, action: &str| {
            Emg::new(
                Module::MoverDestination,
                phase::DEFINE,
                cause,
                message.clone(),
                action,
            )
        };
        match self {
            // The source detects a USB device in use; the rest, here.
            Self::State(e @ StateError::UsbInUse { .. }) => Emg::from(e.clone()),
            Self::State(e) => {
                let mut emg = Emg::from(e.clone());
                emg.module = Module::MoverDestination;
                emg
            }
            Self::DeviceCount { .. } => define(
                0x3000_0001,
                "Define the LPAR's NICs and FC ports to match its device state, then retry.",
            ),
            Self::Dedicated { index, .. } => define(
                0x3000_0002,
                "Change the device to shared mode, or migrate in Shutdown mode.",
            )
            .detail(*index as u64),
            Self::NoFreeVfcId {
                index,
                physical_port,
                ..
            } => define(
                0x4000_0002,
                "Free a vfcID on the destination's shared FC device (remove an unused FC port \
                 assignment from another LPAR) or choose another destination, then retry.",
            )
            .detail((u64::from(*physical_port) << 16) | *index as u64),
            Self::PinnedVfcIdTaken {
                index,
                physical_port,
                vfc_id,
                ..
            } => define(
                0x4000_0003,
                "Free the pinned vfcID on the destination's shared FC device, or remove the \
                 pin so the smallest free vfcID is assigned, then retry.",
            )
            .detail((u64::from(*vfc_id) << 32) | (u64::from(*physical_port) << 16) | *index as u64),
        }
    }
}

impl From<StateError> for SwitchoverError {
    fn from(e: StateError) -> Self {
        SwitchoverError::State(e)
    }
}

/// What the switchover did, for the destination's report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SwitchoverOutcome {
    /// vfcID given to each logical FC port, in port order.
    pub vfc_ids: Vec<u16>,
    /// The LPAR's WWPNs / migration WWPNs / MACs here (its own, kept).
    pub wwpns: Vec<String>,
    pub migration_wwpns: Vec<String>,
    pub macs: Vec<String>,
    /// Source clock − destination clock, as estimated.
    pub host_clock_offset_ns: i64,
    /// The logical RTC offset before and after re-basing.
    pub rtc_offset_before_ns: Option<i64>,
    pub rtc_offset_after_ns: Option<i64>,
    /// How far the guest's counters were advanced (0 unless asked).
    pub clock_compensated_ns: u64,
}

/// Applies the switchover rules to the incoming `state` of the LPAR
/// configured as `config`. `host_offset_ns` is source − destination clock;
/// `suspended_at_ns` is when the source paused (source clock) and `now_ns`
/// this host's clock. Returns the state to load, the slot identities the
/// source takes, and what was done. All or nothing.
pub fn apply(
    state: DeviceState,
    config: &LparConfig,
    host: &DestinationHost,
    host_offset_ns: i64,
    suspended_at_ns: u64,
    now_ns: u64,
) -> Result<(DeviceState, Identities, SwitchoverOutcome), SwitchoverError> {
    let mut state = state.for_mode(MigrationMode::Live);
    if config.nics.len() != state.nics.len() {
        return Err(SwitchoverError::DeviceCount {
            what: "NICs",
            config: config.nics.len(),
            state: state.nics.len(),
        });
    }
    if config.fc_ports.len() != state.fc_hbas.len() {
        return Err(SwitchoverError::DeviceCount {
            what: "FC ports",
            config: config.fc_ports.len(),
            state: state.fc_hbas.len(),
        });
    }
    if let Some(index) = config
        .nics
        .iter()
        .position(|n| n.mode == DeviceMode::Dedicated)
    {
        return Err(SwitchoverError::Dedicated { what: "NIC", index });
    }
    if let Some(index) = config
        .fc_ports
        .iter()
        .position(|p| p.mode == DeviceMode::Dedicated)
    {
        return Err(SwitchoverError::Dedicated {
            what: "FC port",
            index,
        });
    }
    let exchange = exchange_identities(&state.identities(), &host.slot)?;
    let wwpns: Vec<Wwpn> = state.fc_hbas.iter().map(|h| h.wwpn).collect();
    let vfc_ids = assign_vfc_ids(&config.fc_ports, &wwpns, &host.free_vfc_ids)?;
    for (hba, id) in state.fc_hbas.iter_mut().zip(&vfc_ids) {
        hba.vfc_id = *id;
    }

    let mut outcome = SwitchoverOutcome {
        vfc_ids,
        wwpns: state.fc_hbas.iter().map(|h| h.wwpn.to_string()).collect(),
        migration_wwpns: state
            .fc_hbas
            .iter()
            .map(|h| h.migration_wwpn.to_string())
            .collect(),
        macs: state.nics.iter().map(|n| n.mac.to_string()).collect(),
        host_clock_offset_ns: host_offset_ns,
        ..Default::default()
    };
    if let Some(rtc) = &mut state.rtc {
        outcome.rtc_offset_before_ns = Some(rtc.offset_ns);
        rtc.adjust_for_host_offset(host_offset_ns);
        outcome.rtc_offset_after_ns = Some(rtc.offset_ns);
    }
    if host.compensate_clock {
        // When the source paused, in this host's clock.
        let paused_here = i128::from(suspended_at_ns) - i128::from(host_offset_ns);
        let elapsed = (i128::from(now_ns) - paused_here).clamp(0, i128::from(u64::MAX)) as u64;
        state.compensate_suspension(elapsed);
        outcome.clock_compensated_ns = elapsed;
    }
    Ok((state, exchange.source, outcome))
}

/// The vfcID rule per physical port: pinned ports take their vfcID (which
/// must be free and not pinned twice), then each unpinned port, in port
/// order, takes the smallest vfcID still free on its physical port.
pub fn assign_vfc_ids(
    ports: &[FcPortConfig],
    wwpns: &[Wwpn],
    free: &BTreeMap<u16, BTreeSet<u16>>,
) -> Result<Vec<u16>, SwitchoverError> {
    let mut left = free.clone();
    let mut chosen = vec![0u16; ports.len()];
    let wwpn = |i: usize| wwpns.get(i).copied().unwrap_or_default();
    for (i, p) in ports.iter().enumerate() {
        let Some(pin) = p.vfc_id else { continue };
        let taken = left.get_mut(&p.port).is_none_or(|ids| !ids.remove(&pin));
        if taken {
            return Err(SwitchoverError::PinnedVfcIdTaken {
                index: i,
                physical_port: p.port,
                wwpn: wwpn(i),
                vfc_id: pin,
            });
        }
        chosen[i] = pin;
    }
    for (i, p) in ports.iter().enumerate() {
        if p.vfc_id.is_some() {
            continue;
        }
        let id = left.get_mut(&p.port).and_then(|ids| ids.pop_first());
        let Some(id) = id else {
            return Err(SwitchoverError::NoFreeVfcId {
                index: i,
                physical_port: p.port,
                wwpn: wwpn(i),
            });
        };
        chosen[i] = id;
    }
    Ok(chosen)
}

/// Parses a vfcID list such as `1-8,12` (inclusive ranges and single IDs).
pub fn parse_vfc_ids(text: &str) -> Result<BTreeSet<u16>, String> {
    let mut ids = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|v| (1..=crate::partition::config::MAX_VFC_ID).contains(v))
                .ok_or_else(|| {
                    format!(
                        "'{s}' is not a vfcID (1 to {})",
                        crate::partition::config::MAX_VFC_ID
                    )
                })
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range '{part}' runs backwards"));
                }
                ids.extend(a..=b);
            }
            None => {
                ids.insert(num(part)?);
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LogicalRtc;

    fn lpar_with_ports(ports: &[(u16, Option<u16>)]) -> (LparConfig, DeviceState) {
        let mut config = LparConfig::default_lpar();
        let template = config.fc_ports[0].clone();
        config.fc_ports = ports
            .iter()
            .enumerate()
            .map(|(i, (port, pin))| FcPortConfig {
                port: *port,
                vfc_id: *pin,
                wwpn: Wwpn::from_u64(0x1000 + i as u64),
                migration_wwpn: Wwpn::from_u64(0x2000 + i as u64),
                ..template.clone()
            })
            .collect();
        let mut state = DeviceState::sample(1);
        let hba = state.fc_hbas[0].clone();
        state.fc_hbas = config
            .fc_ports
            .iter()
            .map(|p| crate::state::LogicalFcHba {
                wwpn: p.wwpn,
                migration_wwpn: p.migration_wwpn,
                vfc_id: 99,
                ..hba.clone()
            })
            .collect();
        (config, state)
    }

    fn free(pairs: &[(u16, &str)]) -> BTreeMap<u16, BTreeSet<u16>> {
        pairs
            .iter()
            .map(|(p, ids)| (*p, parse_vfc_ids(ids).unwrap()))
            .collect()
    }

    #[test]
    fn smallest_free_vfc_id_per_physical_port() {
        let (config, _) = lpar_with_ports(&[(0, None), (1, None), (0, None)]);
        let ids = assign_vfc_ids(&config.fc_ports, &[], &free(&[(0, "3,5-7"), (1, "2")]));
        assert_eq!(ids.unwrap(), vec![3, 2, 5]);
    }

    #[test]
    fn pinned_vfc_ids_are_honoured_and_not_given_to_others() {
        let (config, _) = lpar_with_ports(&[(0, None), (0, Some(3))]);
        let ids = assign_vfc_ids(&config.fc_ports, &[], &free(&[(0, "3-4")]));
        assert_eq!(ids.unwrap(), vec![4, 3]);
    }

    #[test]
    fn no_free_or_taken_pin_is_refused_with_the_port_named() {
        let (config, _) = lpar_with_ports(&[(0, None), (1, None)]);
        let e = assign_vfc_ids(&config.fc_ports, &[], &free(&[(0, "1")])).unwrap_err();
        assert!(matches!(
            e,
            SwitchoverError::NoFreeVfcId {
                index: 1,
                physical_port: 1,
                ..
            }
        ));
        let emg = e.emg();
        assert_eq!((emg.phase, emg.cause), (phase::DEFINE, 0x4000_0002));
        assert!(emg.message.contains("Not enough vfcID"), "{emg}");
        let (config, _) = lpar_with_ports(&[(0, Some(2))]);
        let e = assign_vfc_ids(&config.fc_ports, &[], &free(&[(0, "1,3")])).unwrap_err();
        assert!(matches!(
            e,
            SwitchoverError::PinnedVfcIdTaken { vfc_id: 2, .. }
        ));
    }

    #[test]
    fn apply_keeps_the_lpar_identities_and_returns_the_slot_ones() {
        let (config, state) = lpar_with_ports(&[(0, None)]);
        let mut config = config;
        config.nics[0].mac = state.nics[0].mac;
        let host = DestinationHost::open_for(&config);
        let (after, slot, outcome) = apply(state.clone(), &config, &host, 0, 0, 0).unwrap();
        assert_eq!(
            after.identities(),
            state.identities(),
            "the LPAR keeps its own"
        );
        assert_eq!(slot, host.slot, "the source slot takes the destination's");
        assert_ne!(slot, state.identities());
        assert_eq!(outcome.vfc_ids, vec![1]);
        assert_eq!(after.fc_hbas[0].vfc_id, 1);
    }

    #[test]
    fn apply_refuses_manual_macs_dedicated_devices_and_count_mismatches() {
        let (config, mut state) = lpar_with_ports(&[(0, None)]);
        let host = DestinationHost::open_for(&config);
        state.nics[0].mac_set_manually = true;
        let e = apply(state.clone(), &config, &host, 0, 0, 0).unwrap_err();
        assert!(matches!(
            e,
            SwitchoverError::State(StateError::ManualMac { .. })
        ));
        assert_eq!(e.emg().module, Module::MoverDestination);
        state.nics[0].mac_set_manually = false;

        let mut dedicated = config.clone();
        dedicated.fc_ports[0].mode = DeviceMode::Dedicated;
        assert!(matches!(
            apply(state.clone(), &dedicated, &host, 0, 0, 0),
            Err(SwitchoverError::Dedicated { .. })
        ));
        let mut fewer = config.clone();
        fewer.nics.clear();
        assert!(matches!(
            apply(state.clone(), &fewer, &host, 0, 0, 0),
            Err(SwitchoverError::DeviceCount { .. })
        ));
        let mut small_slot = host.clone();
        small_slot.slot.hbas.clear();
        assert!(matches!(
            apply(state, &config, &small_slot, 0, 0, 0),
            Err(SwitchoverError::State(
                StateError::IdentityCountMismatch { .. }
            ))
        ));
    }

    #[test]
    fn apply_rebases_the_rtc_and_compensates_only_when_asked() {
        let (config, mut state) = lpar_with_ports(&[(0, None)]);
        state.rtc = Some(LogicalRtc {
            offset_ns: 3_600_000_000_000,
            ..LogicalRtc::default()
        });
        let tsc_before = state.vcpus[0].tsc;
        let mut host = DestinationHost::open_for(&config);
        // Source clock 2 s ahead; paused at source 100 s, now 98.5 s here:
        // 0.5 s of suspension so far.
        let (after, _, outcome) = apply(
            state.clone(),
            &config,
            &host,
            2_000_000_000,
            100_000_000_000,
            98_500_000_000,
        )
        .unwrap();
        assert_eq!(after.rtc.unwrap().offset_ns, 3_602_000_000_000);
        assert_eq!(outcome.clock_compensated_ns, 0);
        assert_eq!(after.vcpus[0].tsc, tsc_before);
        host.compensate_clock = true;
        let (after, _, outcome) = apply(
            state,
            &config,
            &host,
            2_000_000_000,
            100_000_000_000,
            98_500_000_000,
        )
        .unwrap();
        assert_eq!(outcome.clock_compensated_ns, 500_000_000);
        let ticks = 500_000_000u128 * u128::from(after.tsc_khz) / 1_000_000;
        assert_eq!(after.vcpus[0].tsc, tsc_before.wrapping_add(ticks as u64));
    }

    #[test]
    fn vfc_id_lists_parse_ranges_and_refuse_nonsense() {
        let ids = parse_vfc_ids("1-3, 7,12").unwrap();
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec![1, 2, 3, 7, 12]);
        assert!(parse_vfc_ids("0").is_err());
        assert!(parse_vfc_ids("5-2").is_err());
        assert!(parse_vfc_ids("x").is_err());
        assert!(parse_vfc_ids("256").is_err());
    }
}
