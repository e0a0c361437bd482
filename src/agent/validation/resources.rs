//! The destination's room for the LPAR: CPUs, memory, segments, vfcIDs and
//! consoles, planned from `[resources]` and the inventory (the same plan a
//! real migration uses to assign vfcIDs and pick the announce interface).

use super::*;
use crate::agent::config::{AgentConfig, Resources};
use crate::agent::inventory::Inventory;
use crate::emg::{Emg, Module, phase};
use crate::engine::switchover::{DestinationHost, assign_vfc_ids};
use crate::partition::config::MAX_VFC_ID;
use crate::partition::{LparConfig, MemoryBacking};
use crate::units::format_size;
use std::collections::{BTreeMap, BTreeSet};

pub fn check_cpus(here: &HostFacts, r: &Resources, config: &LparConfig) -> Check {
    let d = Side::Destination;
    if config.vcpus > r.cpus {
        return Check::fail(
            "cpus",
            d,
            define(
                0x1000_0000,
                0x0002_FFFF,
                format!(
                    "The MMS could not define an LPAR because there are not free processors in \
                     the destination blade ('{}' has {} vCPUs, {} has {} CPUs).",
                    config.name, config.vcpus, here.agent, r.cpus
                ),
                "Reserve enough amount of free processors in the destination HVM (moverd \
                 --cpus) and then retry migration.",
            ),
        );
    }
    Check::pass(
        "cpus",
        d,
        format!("{} vCPUs of {} CPUs", config.vcpus, r.cpus),
    )
}

pub fn check_memory(here: &HostFacts, r: &Resources, in_use: u64, config: &LparConfig) -> Check {
    let d = Side::Destination;
    let free = r.memory.saturating_sub(in_use);
    let shown = format!(
        "needs {}, {} free of {}",
        format_size(config.memory_bytes),
        format_size(free),
        format_size(r.memory)
    );
    if config.memory_bytes > free {
        return Check::fail(
            "memory",
            d,
            define(
                0x1000_0000,
                0x0004_FFFF,
                format!(
                    "The MMS could not define an LPAR because there is not enough memory in the \
                     destination blade ('{}' {shown} on {}).",
                    config.name, here.agent
                ),
                "Reserve enough amount of free memory in the destination HVM (delete LPARs \
                 there, or moverd --memory) and then retry migration.",
            ),
        );
    }
    Check::pass("memory", d, shown)
}

/// `fs_free`: free bytes of the file system that holds LPAR memory files.
/// An LPAR backed on demand needs room for what it holds now
/// (`populated_bytes`, from the source), not its whole size: the rest is
/// allocated as its guest writes it.
pub fn check_contiguous(
    config: &LparConfig,
    populated_bytes: Option<u64>,
    root: &str,
    fs_free: Result<u64, String>,
) -> Check {
    let d = Side::Destination;
    let item = "memory-contiguous";
    let fs_free = match fs_free {
        Ok(f) => f,
        Err(e) => {
            return Check::fail(
                item,
                d,
                define(
                    0x8000_0002,
                    0,
                    format!("Cannot read the free space of {root}: {e}"),
                    "Check that the state directory exists (moverd --state-dir).",
                ),
            );
        }
    };
    let size = format_size(config.memory_bytes);
    let (needs, mapping) = match populated_bytes {
        Some(held) if config.memory_backing == MemoryBacking::OnDemand => (
            held,
            format!(
                "{size} backed on demand, {} of it populated,",
                format_size(held)
            ),
        ),
        _ => (config.memory_bytes, size),
    };
    let shown = format!(
        "one mapping of {mapping} in {root}, {} free there",
        format_size(fs_free)
    );
    if needs > fs_free {
        return Check::fail(
            item,
            d,
            // The manual's MMS `0x00 80000003 0031 02`: guest memory is one
            // mapping of one file, so room in pieces is fragmentation.
            Emg::new(
                Module::Management,
                phase::ACTIVATE,
                0x8000_0003,
                format!(
                    "The MMS could not activate the LPAR because of memory fragmentation: \
                     {shown}."
                ),
                "Resolve the fragmentation in the destination HVM (free room where it keeps \
                 LPAR memory: a larger tmpfs, or another --state-dir) and then retry migration.",
            ),
        );
    }
    Check::pass(item, d, shown)
}

/// `resources.nic_segments` as segment → interface (empty when none given).
pub fn segment_map(r: &Resources) -> BTreeMap<String, String> {
    r.nic_segments
        .iter()
        .map(|s| match s.split_once('@') {
            Some((seg, iface)) => (seg.to_string(), iface.to_string()),
            None => (s.clone(), String::new()),
        })
        .collect()
}

pub fn check_segments(here: &HostFacts, r: &Resources, config: &LparConfig) -> Check {
    let d = Side::Destination;
    let have = segment_map(r);
    for (i, n) in config.nics.iter().enumerate() {
        if !have.contains_key(&n.segment) {
            return Check::fail(
                "nic-segments",
                d,
                define(
                    0x3000_0000,
                    ((i as u64) << 32) | 0x0001_0000 | i as u64,
                    format!(
                        "There is not enough VNIC device#{i} (Virtual NIC: {}) to define an \
                         LPAR: {} has segments [{}].",
                        n.segment,
                        here.agent,
                        have.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    "Inspect the NIC configuration of the destination ([resources] \
                     nic_segments), reconfigure it to meet that of the source, and then retry \
                     migration.",
                ),
            );
        }
    }
    let used: BTreeSet<&str> = config.nics.iter().map(|n| n.segment.as_str()).collect();
    Check::pass(
        "nic-segments",
        d,
        format!(
            "[{}] present",
            used.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// Free vfcIDs per physical port: each port's pool less the vfcIDs the
/// LPARs already there (other than `except`) hold, assigned or pinned.
pub fn free_vfc_ids(r: &Resources, inv: &Inventory, except: &str) -> BTreeMap<u16, BTreeSet<u16>> {
    let mut free: BTreeMap<u16, BTreeSet<u16>> = r
        .fc_ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ids = p
                .vfc_ids
                .iter()
                .filter(|&&v| v >= 1 && v <= u32::from(MAX_VFC_ID))
                .map(|&v| v as u16)
                .collect();
            (i as u16, ids)
        })
        .collect();
    for name in inv.names().into_iter().filter(|n| n != except) {
        for (port, v) in inv.vfc_ids_in_use(&name) {
            if let Some(ids) = free.get_mut(&port) {
                ids.remove(&v);
            }
        }
    }
    free
}

pub fn check_vfc_ids(
    here: &HostFacts,
    free: &BTreeMap<u16, BTreeSet<u16>>,
    config: &LparConfig,
) -> Check {
    let d = Side::Destination;
    let wwpns: Vec<_> = config.fc_ports.iter().map(|p| p.wwpn).collect();
    match assign_vfc_ids(&config.fc_ports, &wwpns, free) {
        Ok(ids) => Check::pass(
            "vfc-ids",
            d,
            if ids.is_empty() {
                "no FC ports".to_string()
            } else {
                format!("would assign vfcIDs {ids:?}")
            },
        ),
        Err(e) => {
            let port = config
                .fc_ports
                .iter()
                .find(|p| {
                    free.get(&p.port)
                        .is_none_or(|f| f.is_empty() || p.vfc_id.is_some_and(|v| !f.contains(&v)))
                })
                .map_or(0, |p| p.port);
            Check::fail(
                "vfc-ids",
                d,
                define(
                    0x4000_0000,
                    u64::from(port) << 16,
                    format!(
                        "There is not enough vfcID on the shared FC device (DST-Port = {port}) \
                         to define an LPAR on {}: {e}; free there: {:?}.",
                        here.agent,
                        free.get(&port).cloned().unwrap_or_default()
                    ),
                    "Check if the FC port at the destination has a free vfcID ([resources] \
                     fc_ports vfc_ids), or release one there, and retry.",
                ),
            )
        }
    }
}

/// Virtual consoles: one per LPAR while they last. With every one taken the
/// LPAR still migrates, without a console (the manual: "a VC console isn't
/// allocated to the LPAR … when you secure one or more available VCs, a VC
/// is allocated").
pub fn check_console(here: &HostFacts, r: &Resources, lpars: usize) -> Check {
    let d = Side::Destination;
    if lpars >= r.consoles as usize {
        return Check::pass(
            "console",
            d,
            format!(
                "all {} virtual consoles of {} in use: the LPAR migrates without a virtual \
                 console, and gets one when one is freed",
                r.consoles, here.agent
            ),
        );
    }
    Check::pass(
        "console",
        d,
        format!("{} of {} consoles in use", lpars, r.consoles),
    )
}

/// The manual's MMS `0x00 80000004 0030 02` (op2 `0x0000 0000 0020 000b`,
/// op3 0x01): `active` LPARs are activated on `host`, its maximum.
pub fn too_many_active(host: &str, active: usize, max: u32) -> Emg {
    define(
        0x8000_0004,
        0x0000_0000_0020_000b,
        format!(
            "The MMS could not activate LPAR. The number of activated LPAR reaches the maximum. \
             ({active} of {max} activated on {host})"
        ),
        "Deactivate one or more LPARs on the destination HVM and retry.",
    )
}

/// `active-lpars`: a live migration arrives activated, so the destination
/// must be under its `max_active_lpars`.
pub fn check_active_lpars(
    here: &HostFacts,
    r: &Resources,
    active: usize,
    mode: MigrationMode,
) -> Check {
    let d = Side::Destination;
    let item = "active-lpars";
    let Some(max) = r.max_active_lpars else {
        return Check::pass(item, d, format!("{active} activated, no maximum"));
    };
    if mode == MigrationMode::Shutdown {
        return Check::skip(
            item,
            d,
            format!("{active} of {max} activated; Shutdown mode arrives deactivated unless told"),
        );
    }
    if active >= max as usize {
        return Check::fail(item, d, too_many_active(&here.agent, active, max));
    }
    Check::pass(item, d, format!("{active} of {max} activated"))
}

/// Free bytes of the file system holding `dir`.
pub fn fs_free_bytes(dir: &std::path::Path) -> Result<u64, String> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| e.to_string())?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// Every destination-side check, as the destination agent runs them.
pub fn destination_checks(
    config: &AgentConfig,
    inv: &Inventory,
    lpar: &LparConfig,
    populated_bytes: Option<u64>,
    src: &HostFacts,
    mode: MigrationMode,
    path: Option<&str>,
) -> Vec<Check> {
    let here = config.facts();
    let r = &config.resources;
    let names = inv.names();
    let root = config.lpar_root();
    // The destination uses the same-named path when it has one.
    let own_path = path.filter(|n| here.path(Some(n)).is_some());
    vec![
        check_name_unique(&here, &names, &lpar.name),
        check_host_not_busy(&here, inv.migrating()),
        check_different_hosts(src, &here),
        check_hvm_model(src, &here, mode),
        check_build(src, &here),
        check_backend(src, &here),
        check_cpus(&here, r, lpar),
        check_memory(&here, r, inv.memory_in_use(), lpar),
        check_contiguous(
            lpar,
            populated_bytes,
            &root.display().to_string(),
            fs_free_bytes(&root),
        ),
        check_segments(&here, r, lpar),
        check_vfc_ids(&here, &free_vfc_ids(r, inv, &lpar.name), lpar),
        super::devices::check_identities_unique(&here, lpar, &inv.configs()),
        check_console(&here, r, names.len()),
        check_active_lpars(&here, r, inv.active_count(), mode),
        check_time_zone(src, &here),
        check_ntp(src, &here),
        check_own_path(&here, own_path, Side::Destination).for_path(mode),
        check_path_addresses(src.path(path), here.path(own_path)).for_path(mode),
    ]
}

/// The vfcIDs an LPAR defined on this host (`lpar create`) holds: from the
/// configured pools, as a switchover assigns them, less those the host's
/// LPARs hold. A host with no `[resources] fc_ports` models no pools: its
/// LPARs keep their pinned vfcIDs (or the port's position), unaccounted.
/// Refused with the `vfc-ids` item's EMG when a port has none free.
pub fn local_vfc_ids(
    config: &AgentConfig,
    inv: &Inventory,
    lpar: &LparConfig,
) -> Result<Vec<u16>, Emg> {
    if lpar.fc_ports.is_empty() || config.resources.fc_ports.is_empty() {
        return Ok(Vec::new());
    }
    let free = free_vfc_ids(&config.resources, inv, &lpar.name);
    let wwpns: Vec<_> = lpar.fc_ports.iter().map(|p| p.wwpn).collect();
    if let Ok(ids) = assign_vfc_ids(&lpar.fc_ports, &wwpns, &free) {
        return Ok(ids);
    }
    let check = check_vfc_ids(&config.facts(), &free, lpar);
    Err(check.error.expect("the same assignment failed"))
}

/// The destination's view for a switchover: the configured vfcID pools
/// (less those in use) and the segment map, with slot identities derived
/// from the LPAR's ([`DestinationHost::open_for`]).
pub fn destination_host(
    config: &AgentConfig,
    inv: &Inventory,
    lpar: &LparConfig,
) -> DestinationHost {
    let mut host = DestinationHost::open_for(lpar);
    host.free_vfc_ids = free_vfc_ids(&config.resources, inv, &lpar.name);
    host.segments = segment_map(&config.resources)
        .into_iter()
        .filter(|(_, iface)| !iface.is_empty())
        .collect();
    host
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn a_destination_at_its_maximum_of_activated_lpars_refuses_live_mode() {
        let h = facts("b", [10, 2, 0, 2]);
        let mut r = resources();
        assert_eq!(
            outcome(&check_active_lpars(&h, &r, 99, MigrationMode::Live)),
            Outcome::Pass
        );
        r.max_active_lpars = Some(2);
        assert_eq!(
            outcome(&check_active_lpars(&h, &r, 1, MigrationMode::Live)),
            Outcome::Pass
        );
        let e = check_active_lpars(&h, &r, 2, MigrationMode::Live)
            .error
            .unwrap();
        assert_eq!(
            (e.cause, e.phase, e.detail, e.reason),
            (0x8000_0004, phase::DEFINE, 0x20_000b, 1)
        );
        assert!(
            e.message.starts_with(
                "The MMS could not activate LPAR. The number of activated LPAR reaches the maximum."
            ),
            "{e}"
        );
        assert_eq!(
            outcome(&check_active_lpars(&h, &r, 2, MigrationMode::Shutdown)),
            Outcome::Skip
        );
    }

    #[test]
    fn destination_room() {
        let h = facts("b", [10, 2, 0, 2]);
        let r = resources();
        let l = lpar();
        assert_eq!(outcome(&check_cpus(&h, &r, &l)), Outcome::Pass);
        assert_eq!(outcome(&check_memory(&h, &r, 0, &l)), Outcome::Pass);
        assert_eq!(
            check_memory(&h, &r, (1 << 30) - (32 << 20), &l)
                .error
                .unwrap()
                .detail,
            0x0004_FFFF
        );
        let mut big = lpar();
        big.vcpus = 8;
        assert_eq!(check_cpus(&h, &r, &big).error.unwrap().detail, 0x0002_FFFF);
        assert_eq!(
            outcome(&check_contiguous(&l, None, "/x", Ok(1 << 30))),
            Outcome::Pass
        );
        let e = check_contiguous(&l, None, "/x", Ok(1 << 20)).error.unwrap();
        assert_eq!(e.op1(), 0x0080_0000_0300_3102, "{e}");
        assert!(
            e.message
                .starts_with("The MMS could not activate the LPAR because of memory fragmentation")
        );
        assert_eq!(
            outcome(&check_contiguous(&l, None, "/x", Err("gone".into()))),
            Outcome::Fail
        );
        // Backed on demand: room for what it holds now is enough, and the
        // detail says so; reserved memory needs its whole size whatever
        // the source reports.
        let mut sparse = lpar();
        sparse.memory_backing = MemoryBacking::OnDemand;
        let held = Some(512 << 10);
        let c = check_contiguous(&sparse, held, "/x", Ok(1 << 20));
        assert_eq!(outcome(&c), Outcome::Pass, "{c:?}");
        assert!(
            c.detail
                .contains("backed on demand, 512 KiB of it populated"),
            "{c:?}"
        );
        assert_eq!(
            outcome(&check_contiguous(&sparse, Some(2 << 20), "/x", Ok(1 << 20))),
            Outcome::Fail
        );
        assert_eq!(
            outcome(&check_contiguous(&sparse, None, "/x", Ok(1 << 20))),
            Outcome::Fail,
            "without the source's figure, the whole size"
        );
        assert_eq!(
            outcome(&check_contiguous(&l, held, "/x", Ok(1 << 20))),
            Outcome::Fail
        );
        assert_eq!(outcome(&check_console(&h, &r, 1)), Outcome::Pass);
        let full = check_console(&h, &r, 2);
        assert_eq!(outcome(&full), Outcome::Pass);
        assert!(
            full.detail.contains("without a virtual console"),
            "{full:?}"
        );
        assert_eq!(
            check_name_unique(&h, &["web1".into()], "web1")
                .error
                .unwrap()
                .detail,
            0x0001_FFFF
        );
        assert_eq!(
            outcome(&check_name_unique(&h, &["x".into()], "web1")),
            Outcome::Pass
        );
    }

    #[test]
    fn segments_and_vfc_ids_come_from_the_configuration() {
        let h = facts("b", [10, 2, 0, 2]);
        let mut r = resources();
        assert_eq!(segment_map(&r)["seg-a"], "eth1");
        assert_eq!(segment_map(&r)["seg-b"], "");
        let mut l = lpar();
        assert_eq!(outcome(&check_segments(&h, &r, &l)), Outcome::Pass);
        l.nics[0].segment = "seg-z".into();
        assert_eq!(check_segments(&h, &r, &l).error.unwrap().cause, 0x3000_0000);
        let l = lpar();
        let free: BTreeMap<u16, BTreeSet<u16>> = [(0, BTreeSet::from([1, 2, 3]))].into();
        assert_eq!(outcome(&check_vfc_ids(&h, &free, &l)), Outcome::Pass);
        let mut pinned = lpar();
        pinned.fc_ports[0].vfc_id = Some(9);
        let c = check_vfc_ids(&h, &free, &pinned);
        assert_eq!(c.error.unwrap().cause, 0x4000_0000);
        let mut other_port = lpar();
        other_port.fc_ports[0].port = 1;
        assert_eq!(
            outcome(&check_vfc_ids(&h, &free, &other_port)),
            Outcome::Fail
        );
        r.fc_ports[0].vfc_ids = vec![0, 5, 300];
        assert_eq!(
            r.fc_ports[0]
                .vfc_ids
                .iter()
                .filter(|&&v| v >= 1 && v <= u32::from(MAX_VFC_ID))
                .count(),
            1
        );
    }
}
