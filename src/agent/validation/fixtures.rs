//! Shared test fixtures: an LPAR, host facts and resources that pass every item.

use super::*;
use crate::agent::config::Resources;
use crate::build_identity::BuildIdentity;
use crate::control::Identity;
use crate::partition::{DeviceMode, LparConfig};
use crate::partition::{FcPortConfig, NicConfig};
use crate::state::{MacAddress, VlanMode, Wwpn};
use crate::transport::MigrationPath;
use std::net::Ipv4Addr;

pub fn lpar() -> LparConfig {
    LparConfig {
        name: "web1".into(),
        number: 1,
        vcpus: 2,
        memory_bytes: 64 << 20,
        program: "idle".into(),
        nics: vec![NicConfig {
            segment: "seg-a".into(),
            mode: DeviceMode::Shared,
            mac: MacAddress([2, 0, 0, 0, 0, 1]),
            mac_set_manually: false,
            vlan_mode: VlanMode::Undef,
            vlan_id: 0,
        }],
        fc_ports: vec![fc(0, 1)],
        kernel: None,
        cmdline: None,
        usb: crate::state::UsbAssignment::Unassigned,
        service_ratio: crate::partition::DEFAULT_SERVICE_RATIO,
        memory_backing: crate::partition::MemoryBacking::Reserved,
    }
}

pub fn fc(port: u16, n: u64) -> FcPortConfig {
    FcPortConfig {
        port,
        mode: DeviceMode::Shared,
        vfc_id: None,
        wwpn: Wwpn::from_u64(0x5006_0e80_0000_0000 | n),
        migration_wwpn: Wwpn::from_u64(0x5006_0e80_0001_0000 | n),
    }
}

pub fn facts(agent: &str, addr: [u8; 4]) -> HostFacts {
    HostFacts {
        agent: agent.into(),
        build: BuildIdentity::current(),
        identity: Identity {
            hvm_model: "Advanced".into(),
            time_zone: "UTC".into(),
            ntp_servers: vec!["10.0.0.1".into()],
        },
        paths: vec![MigrationPath::new("mig", Ipv4Addr::from(addr))],
        management: "10.1.0.1:7400".into(),
        backend: "sim".into(),
        management_segment: None,
    }
}

pub fn resources() -> Resources {
    Resources {
        cpus: 4,
        memory: 1 << 30,
        fc_ports: vec![crate::agent::config::FcPort {
            name: "fc0".into(),
            vfc_ids: vec![1, 2, 3],
        }],
        nic_segments: vec!["seg-a@eth1".into(), "seg-b".into()],
        consoles: 2,
        max_active_lpars: None,
    }
}

pub fn outcome(c: &Check) -> Outcome {
    c.outcome
}
