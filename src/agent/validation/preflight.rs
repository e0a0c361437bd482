//! The manual's pre-flight conditions for Concurrent Maintenance mode
//! (chapter 5, "Usage notes"), as this host can see them:
//!
//! | item | side | rule | outcome |
//! |---|---|---|---|
//! | `path-segment` | both | the migration path's `segment` is no activated LPAR's NIC segment ("We recommend that you set network segments which are not assigned to any LPARs as migration paths") | warn |
//! | `device-status` | destination | the interfaces of the LPAR's NIC segments (`<segment>@<interface>`) and of the migration path are up ("When any of NIC or FC HBA ports are down, you cannot execute LPAR migration in Concurrent Maintenance mode") | live: fail; shutdown: warn |
//! | `host-load` | both | CPU use of the host at most 80%, the migration path's interface used at most 50% of its speed ("a timeout … may occur") | warn |
//!
//! A warning never refuses a migration: `validate` shows it and the
//! migration's report carries it. Not checked, because this host has no
//! such thing: FC HBA link states (no FC hardware), the "SYS2" CPU use (an
//! HVM-internal process), and whether the destination's NIC accepts the
//! LPAR's VLAN IDs or promiscuous mode (a Linux interface accepts both).

use super::*;
use crate::agent::config::Resources;
use crate::partition::LparConfig;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// CPU use above which the manual expects timeouts.
pub const CPU_BUSY_LIMIT: f64 = 0.80;
/// NIC use (of its speed) above which the manual expects timeouts.
pub const NIC_BUSY_LIMIT: f64 = 0.50;
/// How long the load is sampled.
pub const LOAD_WINDOW: Duration = Duration::from_millis(200);

impl Check {
    fn warn(item: &str, side: Side, detail: impl Into<String>) -> Check {
        Check {
            outcome: Outcome::Warn,
            ..Check::pass(item, side, detail)
        }
    }
}

/// `path-segment`: `active` holds the NIC segments of the host's
/// activated LPARs.
pub fn check_path_segment(
    facts: &HostFacts,
    path: Option<&str>,
    active: &BTreeSet<String>,
    side: Side,
    mode: MigrationMode,
) -> Check {
    let item = "path-segment";
    if mode == MigrationMode::Shutdown {
        return Check::skip(item, side, "Shutdown mode uses no migration path");
    }
    let Some(p) = facts.path(path) else {
        return Check::skip(item, side, "no migration path (see migration-path)");
    };
    let Some(segment) = &p.segment else {
        return Check::skip(
            item,
            side,
            format!("path {} names no segment (segment=…)", p.name),
        );
    };
    if active.contains(segment) {
        return Check::warn(
            item,
            side,
            format!(
                "host {}: migration path {} is on NIC segment {segment}, which an activated \
                 LPAR uses: the migration's traffic will slow that LPAR's network. Use a segment \
                 no LPAR uses.",
                facts.agent, p.name
            ),
        );
    }
    Check::pass(
        item,
        side,
        format!("no activated LPAR on segment {segment}"),
    )
}

/// What the kernel says of a network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    Up,
    /// `operstate` says so (`down`, `lowerlayerdown`, `notpresent`).
    Down(String),
    /// No such interface.
    Missing,
}

/// The link state of `interface` (`/sys/class/net/<if>/operstate`; an
/// `unknown` state, as loopback and some drivers report, counts as up).
pub fn link_state(interface: &str) -> Link {
    let dir = Path::new("/sys/class/net").join(interface);
    if interface.contains('/') || !dir.exists() {
        return Link::Missing;
    }
    match std::fs::read_to_string(dir.join("operstate")) {
        Ok(s) => match s.trim() {
            "down" | "lowerlayerdown" | "notpresent" => Link::Down(s.trim().to_string()),
            _ => Link::Up,
        },
        Err(_) => Link::Missing,
    }
}

/// `device-status` on the destination: every interface the LPAR will use
/// here, looked up with `link`.
pub fn check_device_status(
    here: &HostFacts,
    r: &Resources,
    lpar: &LparConfig,
    own_path: Option<&str>,
    mode: MigrationMode,
    link: impl Fn(&str) -> Link,
) -> Check {
    let item = "device-status";
    let d = Side::Destination;
    let map = segment_map(r);
    let mut ports: Vec<(String, String)> = lpar
        .nics
        .iter()
        .filter_map(|n| {
            map.get(&n.segment)
                .filter(|i| !i.is_empty())
                .map(|i| (format!("NIC segment {}", n.segment), i.clone()))
        })
        .collect();
    if mode == MigrationMode::Live
        && let Some(p) = here.path(own_path)
        && let Some(i) = &p.interface
    {
        ports.push((format!("migration path {}", p.name), i.clone()));
    }
    ports.sort();
    ports.dedup();
    let down: Vec<String> = ports
        .iter()
        .filter_map(|(what, iface)| match link(iface) {
            Link::Up => None,
            Link::Down(s) => Some(format!("{what} on {iface} is {s}")),
            Link::Missing => Some(format!("{what}: interface {iface} does not exist")),
        })
        .collect();
    if down.is_empty() {
        let names: Vec<&str> = ports.iter().map(|(_, i)| i.as_str()).collect();
        return Check::pass(
            item,
            d,
            if names.is_empty() {
                "no NIC port named ([resources] nic_segments <segment>@<interface>)".to_string()
            } else {
                format!("up: {}", names.join(", "))
            },
        );
    }
    let message = format!(
        "Device Status: a NIC port of host {} is down: {}.",
        here.agent,
        down.join("; ")
    );
    if mode == MigrationMode::Shutdown {
        return Check::warn(
            item,
            d,
            format!("{message} The LPAR will start without that network."),
        );
    }
    Check::fail(
        item,
        d,
        compat(
            0x101A,
            format!("{message} Concurrent Maintenance mode needs every port up."),
            "Confirm the network environment on the destination host, link its NIC ports \
             (ip link set <interface> up), and execute the migration again.",
        ),
    )
}

/// A host's load over a window: CPU use (0..1) and the path interface's
/// use of its speed (0..1, when both the counters and the speed are known).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    pub cpu: Option<f64>,
    pub nic: Option<f64>,
}

/// `host-load` from a sampled [`Load`].
pub fn check_host_load(
    agent: &str,
    interface: Option<&str>,
    load: Load,
    side: Side,
    mode: MigrationMode,
) -> Check {
    let item = "host-load";
    if mode == MigrationMode::Shutdown {
        return Check::skip(item, side, "no timeout in Shutdown mode");
    }
    let mut over = Vec::new();
    let mut seen = Vec::new();
    if let Some(cpu) = load.cpu {
        seen.push(format!("CPU {:.0}%", cpu * 100.0));
        if cpu > CPU_BUSY_LIMIT {
            over.push(format!(
                "CPU use {:.0}% (over {:.0}%)",
                cpu * 100.0,
                CPU_BUSY_LIMIT * 100.0
            ));
        }
    }
    if let (Some(nic), Some(i)) = (load.nic, interface) {
        seen.push(format!("{i} {:.0}%", nic * 100.0));
        if nic > NIC_BUSY_LIMIT {
            over.push(format!(
                "NIC {i} used {:.0}% of its speed (over {:.0}%)",
                nic * 100.0,
                NIC_BUSY_LIMIT * 100.0
            ));
        }
    }
    if !over.is_empty() {
        return Check::warn(
            item,
            side,
            format!(
                "host {agent}: {}: a timeout for the live migration may occur. Lower the load \
                 or extend the timeout.",
                over.join(", ")
            ),
        );
    }
    if seen.is_empty() {
        return Check::skip(item, side, "the load could not be read");
    }
    Check::pass(item, side, format!("host {agent}: {}", seen.join(", ")))
}

/// The CPU counters of `/proc/stat`: (busy, total) jiffies.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Bytes through `interface` both ways, and its speed in bytes/s.
fn nic_counters(interface: &str) -> Option<(u64, f64)> {
    let dir = Path::new("/sys/class/net").join(interface);
    let read = |f: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(f))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let bytes = read("statistics/rx_bytes")? + read("statistics/tx_bytes")?;
    let mbit = read("speed").filter(|&s| s > 0 && s < 10_000_000)?;
    Some((bytes, mbit as f64 * 1e6 / 8.0))
}

/// Samples this host's load over [`LOAD_WINDOW`].
pub fn sample_load(interface: Option<&str>) -> Load {
    let (c0, n0) = (cpu_jiffies(), interface.and_then(nic_counters));
    std::thread::sleep(LOAD_WINDOW);
    let (c1, n1) = (cpu_jiffies(), interface.and_then(nic_counters));
    let cpu = match (c0, c1) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some((b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64)
        }
        _ => None,
    };
    let nic = match (n0, n1) {
        (Some((b0, speed)), Some((b1, _))) => {
            Some(b1.saturating_sub(b0) as f64 / LOAD_WINDOW.as_secs_f64() / speed / 2.0)
        }
        _ => None,
    };
    Load { cpu, nic }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use MigrationMode::*;

    #[test]
    fn a_path_on_a_segment_an_activated_lpar_uses_is_a_warning() {
        let mut f = facts("a", [10, 2, 0, 1]);
        let active: BTreeSet<String> = ["1a".to_string()].into();
        let c = check_path_segment(&f, None, &active, Side::Source, Live);
        assert_eq!(c.outcome, Outcome::Skip, "{c:?}");
        f.paths[0].segment = Some("1b".into());
        let c = check_path_segment(&f, None, &active, Side::Source, Live);
        assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
        f.paths[0].segment = Some("1a".into());
        let c = check_path_segment(&f, None, &active, Side::Source, Live);
        assert_eq!((c.outcome, c.error.is_none()), (Outcome::Warn, true));
        assert!(c.detail.contains("segment 1a"), "{c:?}");
        let c = check_path_segment(&f, None, &active, Side::Source, Shutdown);
        assert_eq!(c.outcome, Outcome::Skip);
    }

    #[test]
    fn a_port_down_fails_live_mode_and_warns_in_shutdown_mode() {
        let mut f = facts("b", [10, 2, 0, 2]);
        f.paths[0].interface = Some("mig0".into());
        let r = resources(); // seg-a@eth1
        let l = lpar(); // one NIC on seg-a
        let up = |_: &str| Link::Up;
        let c = check_device_status(&f, &r, &l, None, Live, up);
        assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
        assert!(
            c.detail.contains("eth1") && c.detail.contains("mig0"),
            "{c:?}"
        );
        let eth1_down = |i: &str| {
            if i == "eth1" {
                Link::Down("down".into())
            } else {
                Link::Up
            }
        };
        let c = check_device_status(&f, &r, &l, None, Live, eth1_down);
        let e = c.error.unwrap();
        assert_eq!((e.phase, e.cause), (phase::COMPATIBILITY, 0x101A));
        assert!(
            e.message.contains("NIC segment seg-a on eth1 is down"),
            "{e}"
        );
        let c = check_device_status(&f, &r, &l, None, Shutdown, eth1_down);
        assert_eq!(c.outcome, Outcome::Warn, "{c:?}");
        let c = check_device_status(&f, &r, &l, None, Live, |i: &str| {
            if i == "mig0" { Link::Missing } else { Link::Up }
        });
        assert!(c.error.unwrap().message.contains("mig0 does not exist"));
        // Shutdown mode does not use the path.
        let c = check_device_status(&f, &r, &l, None, Shutdown, |i: &str| {
            if i == "mig0" { Link::Missing } else { Link::Up }
        });
        assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
    }

    #[test]
    fn load_over_the_manuals_thresholds_is_a_warning() {
        let load = |cpu, nic| Load {
            cpu: Some(cpu),
            nic: Some(nic),
        };
        let c = check_host_load("a", Some("eth1"), load(0.5, 0.1), Side::Source, Live);
        assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
        let c = check_host_load("a", Some("eth1"), load(0.85, 0.1), Side::Source, Live);
        assert_eq!(c.outcome, Outcome::Warn, "{c:?}");
        assert!(c.detail.contains("CPU use 85%"), "{c:?}");
        let c = check_host_load("a", Some("eth1"), load(0.1, 0.6), Side::Source, Live);
        assert!(c.detail.contains("NIC eth1 used 60%"), "{c:?}");
        let c = check_host_load("a", None, Load::default(), Side::Source, Live);
        assert_eq!(c.outcome, Outcome::Skip);
        let c = check_host_load("a", None, load(0.99, 0.99), Side::Source, Shutdown);
        assert_eq!(c.outcome, Outcome::Skip);
    }

    #[test]
    fn loopback_is_up_and_a_made_up_interface_is_missing() {
        assert_eq!(link_state("lo"), Link::Up);
        assert_eq!(link_state("no-such-if0"), Link::Missing);
        assert_eq!(link_state("../lo"), Link::Missing);
        let l = sample_load(Some("lo"));
        assert!(l.cpu.is_some_and(|c| (0.0..=1.0).contains(&c)), "{l:?}");
    }
}
