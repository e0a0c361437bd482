//! `lpar-modify`: changes a deactivated LPAR's definition (CPUs, memory,
//! guest program, NICs, FC ports with their pinned vfcIDs, USB).
//!
//! The manual: the destination does not change CPU, memory or service
//! ratio by itself; to change them there, migrate in Shutdown mode without
//! activating the LPAR, change it, then activate it (H:l.9642-9671). The
//! busy rules ([`super::busy`], "modify") allow it on a deactivated LPAR
//! only. The host must have room for the changed LPAR beside its others
//! (the manual's "not enough memory" and "not enough CPU", as for
//! `lpar-create`); the device configuration passes the same checks as at
//! creation. The LPAR's number and name stay; its files are defined afresh,
//! so its guest boots anew when next activated (service ratio, capping and
//! the other HVM scheduling settings are not modelled).

use super::Agent;
use super::busy::{self, Operation};
use crate::control::reply;
use crate::emg::{Emg, Module, phase};
use crate::partition::{FcPortConfig, NicConfig};
use crate::state::UsbAssignment;

/// What `lpar-modify` changes; `None` keeps what the LPAR has.
#[derive(Default)]
pub struct Changes {
    pub vcpus: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub program: Option<String>,
    pub nics: Option<Vec<NicConfig>>,
    pub fc_ports: Option<Vec<FcPortConfig>>,
    pub usb: Option<UsbAssignment>,
    pub service_ratio: Option<u16>,
}

/// `lpar-modify`: see the module doc.
pub fn modify(agent: &Agent, name: &str, c: Changes) -> Result<reply::Lpar, Emg> {
    let mut inv = agent.inventory.lock().unwrap();
    let entry = inv.get(name)?;
    busy::check(name, entry.state, Operation::Modify)?;
    let old = entry.config.clone();
    let mut config = old.clone();
    config.vcpus = c.vcpus.unwrap_or(config.vcpus);
    config.memory_bytes = c.memory_bytes.unwrap_or(config.memory_bytes);
    config.program = c.program.unwrap_or(config.program);
    config.nics = c.nics.unwrap_or(config.nics);
    config.fc_ports = c.fc_ports.unwrap_or(config.fc_ports);
    config.usb = c.usb.unwrap_or(config.usb);
    config.service_ratio = c.service_ratio.unwrap_or(config.service_ratio);
    if config == old {
        return inv.describe(name);
    }
    let host = &agent.config.name;
    let r = &agent.config.resources;
    let others = inv.memory_in_use().saturating_sub(old.memory_bytes);
    let free = r.memory.saturating_sub(others);
    if config.memory_bytes > free {
        // As `lpar-create`: the manual's MMS Thread `0x00 ******** F00b 03`.
        return Err(Emg::new(
            Module::Executor,
            0xF00B,
            0x01,
            format!(
                "There is not enough memory to activate the specified LPAR. '{name}' would \
                 need {}, host {host} has {} free of {} beside its other LPARs.",
                crate::units::format_size(config.memory_bytes),
                crate::units::format_size(free),
                crate::units::format_size(r.memory),
            ),
            "Give the LPAR less memory, or free memory on this host (delete LPARs).",
        )
        .reason(0x01));
    }
    if config.vcpus == 0 || config.vcpus > r.cpus {
        return Err(Emg::new(
            Module::Management,
            phase::ACTIVATE,
            0x8000_0001,
            format!(
                "Could not activate: not enough CPU. '{name}' would have {} vCPUs, host {host} \
                 has {} CPUs.",
                config.vcpus, r.cpus
            ),
            "Give the LPAR from 1 vCPU to as many as the host has CPUs.",
        ));
    }
    inv.redefine(&config)?;
    log::info!(
        "changed LPAR '{name}': {} vCPUs, {}, {} NIC(s), {} FC port(s)",
        config.vcpus,
        crate::units::format_size(config.memory_bytes),
        config.nics.len(),
        config.fc_ports.len()
    );
    inv.describe(name)
}
