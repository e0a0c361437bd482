//! Pre-migration validation: the manual's checklist (chapter 5) as far as
//! it has a meaning for this agent, run by both agents and reported item by
//! item.
//!
//! ```text
//! moverctl validate ─▶ source agent                       destination agent
//!                      source checks (LPAR, own path)
//!                      validate-incoming {config, mode,
//!                        source facts} ─────────────────▶ destination checks
//!                                                          (room, identity, paths)
//!                             ◀── {host facts, checks} ───
//!                      live: bandwidth from a connectivity test (connectivity.rs)
//!                ◀──── {passed, checks: [{item, side, outcome, detail, error?}]}
//! ```
//!
//! | item | side | rule |
//! |---|---|---|
//! | `lpar-name` | source | name is not `NO_NAME` |
//! | `lpar-state` | source | live: Act; shutdown: Dea, or Act (the guest is shut down first); never Fai |
//! | `nic-mode` | source | only shared-mode NICs |
//! | `nic-mac` | source | no manually changed MAC |
//! | `fc-mode` | source | only shared-mode FC ports |
//! | `fc-count` | source | live: fewer than 8 FC ports |
//! | `migration-path` | both | a path (the named one, or the first) exists, is not the management address unless it has a VLAN ID |
//! | `lpar-name-unique` | destination | no LPAR of that name there |
//! | `different-hosts` | destination | the agents' names differ |
//! | `hvm-model` | destination | same HVM model; live needs Advanced or Enterprise class (any other name, e.g. `sim`, is its own class) |
//! | `build-identity` | destination | same wire protocol version |
//! | `cpus` | destination | the LPAR's vCPUs fit the host's CPUs |
//! | `memory` | destination | the LPAR fits the host memory not yet in use |
//! | `memory-contiguous` | destination | the file system holding LPAR memory has room for one mapping of that size |
//! | `nic-segments` | destination | every NIC's segment exists there |
//! | `vfc-ids` | destination | a free vfcID per FC port (pinned ones free) on the same physical port |
//! | `console` | destination | a free virtual console (one per LPAR, `resources.consoles`) |
//! | `time-zone` | destination | same HVM time zone |
//! | `ntp-servers` | destination | same NTP servers |
//! | `path-addresses` | destination | the two paths have distinct IPv4 addresses |
//! | `bandwidth` | source | live: measured goodput at least [`MIN_GOODPUT_BITS`] |
//!
//! FC ports: an LPAR FC port's `port` is the index of the host's
//! `resources.fc_ports` entry it sits on; that entry's `vfc_ids` is its pool.
//! NIC segments: `resources.nic_segments` entries are `<segment>` or
//! `<segment>@<interface>` (the interface the destination announces on).

use crate::build_identity::BuildIdentity;
use crate::emg::{Emg, Module, phase};
use crate::engine::switchover::{DestinationHost, assign_vfc_ids};
use crate::partition::config::{MAX_VFC_ID, NO_NAME};
use crate::partition::{DeviceMode, LparConfig};
use crate::transport::MigrationPath;
use crate::units::format_size;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::config::{AgentConfig, Identity, Resources};
use super::inventory::{Inventory, LparState};

/// The manual's 1 Gbit/s path requirement, as TCP payload: the line rate
/// less Ethernet/IP/TCP framing (about 5 %) and some room for a loaded
/// host, so a path shaped to exactly 1 Gbit/s passes and a slower one fails.
pub const MIN_GOODPUT_BITS: f64 = 0.9e9;

/// Live mode refuses this many FC ports or more (the manual: "Under 8 ports").
pub const MAX_LIVE_FC_PORTS: usize = 8;

/// The migration mode validated for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Concurrent Maintenance: the LPAR moves while it runs.
    #[default]
    Live,
    /// The LPAR is moved deactivated (its guest shut down first).
    Shutdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Source,
    Destination,
}

/// One item of the checklist as found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub item: String,
    pub side: Side,
    pub outcome: Outcome,
    /// The values found (and, for a failure, what to change: see `error`).
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Emg>,
}

impl Check {
    fn pass(item: &str, side: Side, detail: impl Into<String>) -> Check {
        Check {
            item: item.into(),
            side,
            outcome: Outcome::Pass,
            detail: detail.into(),
            error: None,
        }
    }

    fn skip(item: &str, side: Side, detail: impl Into<String>) -> Check {
        Check {
            outcome: Outcome::Skip,
            ..Check::pass(item, side, detail)
        }
    }

    /// A failure; the detail is the EMG's message.
    fn fail(item: &str, side: Side, error: Emg) -> Check {
        Check {
            item: item.into(),
            side,
            outcome: Outcome::Fail,
            detail: error.message.clone(),
            error: Some(error),
        }
    }
}

/// An MMS compatibility error (phase 0x0080).
fn compat(cause: u32, message: String, action: &str) -> Emg {
    Emg::new(
        Module::Management,
        phase::COMPATIBILITY,
        cause,
        message,
        action,
    )
}

/// An MMS "could not define an LPAR" error (phase 0x0030); `detail` is the
/// manual's op2.
fn define(cause: u32, detail: u64, message: String, action: &str) -> Emg {
    Emg::new(Module::Management, phase::DEFINE, cause, message, action).detail(detail)
}

/// What one agent tells the other about itself for validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub agent: String,
    pub build: BuildIdentity,
    pub identity: Identity,
    pub paths: Vec<MigrationPath>,
    /// The management listen address.
    pub management: String,
}

impl HostFacts {
    pub fn of(config: &AgentConfig) -> HostFacts {
        HostFacts {
            agent: config.name.clone(),
            build: BuildIdentity::current(),
            identity: config.identity.clone(),
            paths: config.paths.clone(),
            management: config.listen.clone(),
        }
    }

    /// The path called `name`, or the first configured.
    pub fn path(&self, name: Option<&str>) -> Option<&MigrationPath> {
        match name {
            Some(n) => self.paths.iter().find(|p| p.name == n),
            None => self.paths.first(),
        }
    }
}

// ---- source side --------------------------------------------------------

pub fn check_name(config: &LparConfig) -> Check {
    let s = Side::Source;
    if config.name == NO_NAME || config.name.is_empty() {
        return Check::fail(
            "lpar-name",
            s,
            define(
                0x1000_0000,
                0x000A_FFFF,
                format!(
                    "The MMS could not define an LPAR because the name of the specified LPAR \
                     is '{NO_NAME}' (found '{}').",
                    config.name
                ),
                "Rename the specified LPAR to a unique name in the system and then retry \
                 migration.",
            ),
        );
    }
    Check::pass("lpar-name", s, format!("'{}'", config.name))
}

pub fn check_state(name: &str, state: LparState, mode: Mode) -> Check {
    let s = Side::Source;
    let item = "lpar-state";
    let allowed = match mode {
        Mode::Live => state == LparState::Act,
        Mode::Shutdown => matches!(state, LparState::Act | LparState::Dea),
    };
    if allowed {
        let note = if mode == Mode::Shutdown && state == LparState::Act {
            " (the guest is shut down before it moves)"
        } else {
            ""
        };
        return Check::pass(item, s, format!("'{name}' is {}{note}", state.label()));
    }
    if state == LparState::Fai {
        return Check::fail(
            item,
            s,
            compat(
                0x2002,
                format!(
                    "The MMS could not accept a migration with a corrupted LPAR ('{name}' is Fai)."
                ),
                "Inspect the status of the LPAR and take recovery actions on this host \
                 (moverctl lpar show; recreate or recover it).",
            ),
        );
    }
    let want = match mode {
        Mode::Live => "Act",
        Mode::Shutdown => "Dea or Act",
    };
    Check::fail(
        item,
        s,
        compat(
            0x2005,
            format!(
                "The state of the specified LPAR does not allow a {} migration: '{name}' is {}, \
                 the mode needs {want}.",
                mode_name(mode),
                state.label()
            ),
            match mode {
                Mode::Live => {
                    "Activate the LPAR (moverctl lpar activate) or migrate it in shutdown mode."
                }
                Mode::Shutdown => {
                    "Wait for the running operation to end, or recover the LPAR \
                     (moverctl recover), then retry."
                }
            },
        ),
    )
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Live => "live",
        Mode::Shutdown => "shutdown",
    }
}

fn dedicated_error(what: &str, list: &[usize]) -> Emg {
    compat(
        0x1004,
        format!(
            "The source LPAR has some dedicated devices: {what} {} in dedicated mode.",
            list.iter()
                .map(|i| format!("#{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "Change the device scheduling mode to shared mode and retry migration. If necessary, \
         restore the device scheduling mode to dedicated mode after migration.",
    )
}

pub fn check_nic_modes(config: &LparConfig) -> Check {
    let dedicated: Vec<usize> = config
        .nics
        .iter()
        .enumerate()
        .filter(|(_, n)| n.mode == DeviceMode::Dedicated)
        .map(|(i, _)| i)
        .collect();
    if dedicated.is_empty() {
        return Check::pass(
            "nic-mode",
            Side::Source,
            format!("{} NICs, all shared", config.nics.len()),
        );
    }
    Check::fail("nic-mode", Side::Source, dedicated_error("NIC", &dedicated))
}

pub fn check_manual_macs(config: &LparConfig) -> Check {
    let manual: Vec<String> = config
        .nics
        .iter()
        .enumerate()
        .filter(|(_, n)| n.mac_set_manually)
        .map(|(i, n)| format!("#{i} ({})", n.mac))
        .collect();
    if manual.is_empty() {
        return Check::pass("nic-mac", Side::Source, "no MAC address changed by hand");
    }
    Check::fail(
        "nic-mac",
        Side::Source,
        compat(
            0x1012,
            format!(
                "The MAC address of NIC {} was changed manually; it is not transferred.",
                manual.join(", ")
            ),
            "Restore the NIC's MAC address to the one derived from the MAC seed, then retry.",
        ),
    )
}

pub fn check_fc_modes(config: &LparConfig) -> Check {
    let dedicated: Vec<usize> = config
        .fc_ports
        .iter()
        .enumerate()
        .filter(|(_, p)| p.mode == DeviceMode::Dedicated)
        .map(|(i, _)| i)
        .collect();
    if dedicated.is_empty() {
        return Check::pass(
            "fc-mode",
            Side::Source,
            format!("{} FC ports, all shared", config.fc_ports.len()),
        );
    }
    Check::fail(
        "fc-mode",
        Side::Source,
        dedicated_error("FC port", &dedicated),
    )
}

pub fn check_fc_count(config: &LparConfig, mode: Mode) -> Check {
    let n = config.fc_ports.len();
    if mode == Mode::Shutdown {
        return Check::skip(
            "fc-count",
            Side::Source,
            format!("{n} FC ports; the limit applies to live mode only"),
        );
    }
    if n < MAX_LIVE_FC_PORTS {
        return Check::pass(
            "fc-count",
            Side::Source,
            format!("{n} FC ports, under {MAX_LIVE_FC_PORTS}"),
        );
    }
    Check::fail(
        "fc-count",
        Side::Source,
        compat(
            0x1013,
            format!(
                "The LPAR has {n} FC ports; live migration needs under {MAX_LIVE_FC_PORTS} ports."
            ),
            "Remove FC ports from the LPAR until it has 7 or fewer, or migrate in shutdown mode.",
        ),
    )
}

/// The IPv4 address of a TCP management address (`None` for a socket path
/// or a name that does not resolve to a literal address).
fn management_ip(management: &str) -> Option<IpAddr> {
    match crate::control::Address::parse(management).ok()? {
        crate::control::Address::Tcp(hp) => hp.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()),
        crate::control::Address::Unix(_) => None,
    }
}

/// A migration path on `side`: present, and not the management path
/// unless it has a VLAN ID.
pub fn check_own_path(facts: &HostFacts, name: Option<&str>, side: Side) -> Check {
    let item = "migration-path";
    let (ph, blade) = match side {
        Side::Source => (phase::SOURCE_PATH, "Src-Blade"),
        Side::Destination => (phase::DESTINATION_PATH, "Dst-Blade"),
    };
    let Some(p) = facts.path(name) else {
        let wanted = name.map_or(String::new(), |n| format!(" '{n}'"));
        let have: Vec<&str> = facts.paths.iter().map(|p| p.name.as_str()).collect();
        return Check::fail(
            item,
            side,
            Emg::new(
                Module::Management,
                ph,
                0x03,
                format!(
                    "Specified NIC was not found ({blade}): host {} has no migration path{wanted} \
                     (configured: [{}]).",
                    facts.agent,
                    have.join(", ")
                ),
                "Set a migration path ([[paths]] in the moverd configuration, or moverd --path) \
                 on that host and retry.",
            ),
        );
    };
    let shown = format!(
        "{} {}{}",
        p.name,
        p.addr,
        p.vlan.map_or(String::new(), |v| format!(" vlan {v}"))
    );
    if p.vlan.is_none() && management_ip(&facts.management) == Some(IpAddr::V4(p.addr)) {
        return Check::fail(
            item,
            side,
            Emg::new(
                Module::Management,
                phase::PATH_ADDRESS,
                0x06,
                format!(
                    "The migration path {shown} of host {} uses the management path's address \
                     ({}) without a VLAN ID.",
                    facts.agent, facts.management
                ),
                "Give the migration path its own IPv4 address (a separate network), or a VLAN ID.",
            ),
        );
    }
    Check::pass(item, side, format!("host {}: {shown}", facts.agent))
}

/// The live-mode bandwidth rule; `measured` is the connectivity test's
/// goodput in bits per second.
pub fn check_bandwidth(mode: Mode, measured: Result<f64, &Emg>) -> Check {
    let item = "bandwidth";
    if mode == Mode::Shutdown {
        return Check::skip(item, Side::Source, "shutdown mode has no bandwidth minimum");
    }
    match measured {
        Err(e) => Check::fail(item, Side::Source, e.clone()),
        Ok(bits) if bits >= MIN_GOODPUT_BITS => Check::pass(
            item,
            Side::Source,
            format!("{:.2} Gbit/s measured", bits / 1e9),
        ),
        Ok(bits) => Check::fail(
            item,
            Side::Source,
            compat(
                0x1014,
                format!(
                    "The migration path carries {:.3} Gbit/s; live migration needs a 1 Gbit/s \
                     path (at least {:.1} Gbit/s of payload measured).",
                    bits / 1e9,
                    MIN_GOODPUT_BITS / 1e9
                ),
                "Use a 1 Gbit/s or faster migration path (check link speed, shaping and load), \
                 or migrate in shutdown mode.",
            ),
        ),
    }
}

// ---- destination side ---------------------------------------------------

pub fn check_name_unique(here: &HostFacts, names: &[String], name: &str) -> Check {
    let d = Side::Destination;
    if names.iter().any(|n| n == name) {
        return Check::fail(
            "lpar-name-unique",
            d,
            define(
                0x1000_0000,
                0x0001_FFFF,
                format!(
                    "The MMS could not define an LPAR because the specified LPAR is the same \
                     LPAR name in the destination blade ('{name}' exists on {}).",
                    here.agent
                ),
                "Rename the source LPAR to a unique name in the system and then retry migration.",
            ),
        );
    }
    Check::pass(
        "lpar-name-unique",
        d,
        format!("no '{name}' on {}", here.agent),
    )
}

pub fn check_different_hosts(src: &HostFacts, dst: &HostFacts) -> Check {
    let d = Side::Destination;
    if src.agent == dst.agent {
        return Check::fail(
            "different-hosts",
            d,
            Emg::new(
                Module::Management,
                phase::CONNECT,
                0x03,
                format!("Source and destination are the same host ({}).", src.agent),
                "Choose a different destination host.",
            ),
        );
    }
    Check::pass(
        "different-hosts",
        d,
        format!("{} → {}", src.agent, dst.agent),
    )
}

/// The manual's HVM model classes that may run a live migration.
fn live_capable(model: &str) -> bool {
    !model.eq_ignore_ascii_case("essential")
}

pub fn check_hvm_model(src: &HostFacts, dst: &HostFacts, mode: Mode) -> Check {
    let d = Side::Destination;
    let (a, b) = (&src.identity.hvm_model, &dst.identity.hvm_model);
    if !a.eq_ignore_ascii_case(b) {
        return Check::fail(
            "hvm-model",
            d,
            compat(
                0x1003,
                format!(
                    "The type of blade mismatch between the source and the destination \
                     (HVM model {a} on {}, {b} on {}).",
                    src.agent, dst.agent
                ),
                "Make the HVM model ([identity] hvm_model) the same on both hosts.",
            ),
        );
    }
    if mode == Mode::Live && !live_capable(a) {
        return Check::fail(
            "hvm-model",
            d,
            compat(
                0x1015,
                format!("HVM model {a} does not support live migration."),
                "Use hosts with the Advanced or Enterprise HVM model, or migrate in shutdown mode.",
            ),
        );
    }
    Check::pass("hvm-model", d, format!("{a} on both"))
}

pub fn check_build(src: &HostFacts, dst: &HostFacts) -> Check {
    let d = Side::Destination;
    if src.build.wire_protocol != dst.build.wire_protocol {
        return Check::fail(
            "build-identity",
            d,
            compat(
                0x1016,
                format!(
                    "Incompatible builds: {} runs {}, {} runs {} (wire protocol {} vs {}).",
                    src.agent,
                    src.build,
                    dst.agent,
                    dst.build,
                    src.build.wire_protocol,
                    dst.build.wire_protocol
                ),
                "Install the same lpar-mover release on both hosts.",
            ),
        );
    }
    Check::pass(
        "build-identity",
        d,
        format!("wire protocol {} on both", src.build.wire_protocol),
    )
}

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
pub fn check_contiguous(config: &LparConfig, root: &str, fs_free: Result<u64, String>) -> Check {
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
    let shown = format!(
        "one mapping of {} in {root}, {} free there",
        format_size(config.memory_bytes),
        format_size(fs_free)
    );
    if config.memory_bytes > fs_free {
        return Check::fail(
            item,
            d,
            Emg::new(
                Module::Management,
                phase::ACTIVATE,
                0x8000_0002,
                format!(
                    "The MMS could not activate the LPAR because there is not enough memory in \
                     the destination blade: {shown}."
                ),
                "Reserve enough amount of free memory where the destination keeps LPAR memory \
                 (a larger tmpfs, or another --state-dir) and then retry migration.",
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
/// LPARs already there (other than `except`) pin.
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
        if let Ok(e) = inv.get(&name) {
            for p in &e.config.fc_ports {
                if let (Some(v), Some(ids)) = (p.vfc_id, free.get_mut(&p.port)) {
                    ids.remove(&v);
                }
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

pub fn check_console(here: &HostFacts, r: &Resources, lpars: usize) -> Check {
    let d = Side::Destination;
    if lpars >= r.consoles as usize {
        return Check::fail(
            "console",
            d,
            define(
                0x6000_0004,
                1,
                format!(
                    "The MMS could not define an LPAR because the VirtualConsole on the \
                     specified blade not empty: {} holds {lpars} LPARs and has {} consoles.",
                    here.agent, r.consoles
                ),
                "Check the setting of VC number on the destination HVM ([resources] consoles) \
                 or delete an LPAR there, and retry.",
            ),
        );
    }
    Check::pass(
        "console",
        d,
        format!("{} of {} consoles in use", lpars, r.consoles),
    )
}

pub fn check_time_zone(src: &HostFacts, dst: &HostFacts) -> Check {
    let d = Side::Destination;
    let (a, b) = (&src.identity.time_zone, &dst.identity.time_zone);
    if a != b {
        return Check::fail(
            "time-zone",
            d,
            compat(
                0x1017,
                format!(
                    "The HVM time zones differ: {a} on {}, {b} on {}.",
                    src.agent, dst.agent
                ),
                "Set the same time zone ([identity] time_zone) on both hosts and retry.",
            ),
        );
    }
    Check::pass("time-zone", d, format!("{a} on both"))
}

pub fn check_ntp(src: &HostFacts, dst: &HostFacts) -> Check {
    let d = Side::Destination;
    let set =
        |f: &HostFacts| -> BTreeSet<String> { f.identity.ntp_servers.iter().cloned().collect() };
    let (a, b) = (set(src), set(dst));
    if a != b {
        return Check::fail(
            "ntp-servers",
            d,
            compat(
                0x1018,
                format!(
                    "The NTP servers differ: {:?} on {}, {:?} on {}.",
                    a, src.agent, b, dst.agent
                ),
                "Set the same NTP servers ([identity] ntp_servers; the management server is \
                 recommended) on both hosts and retry.",
            ),
        );
    }
    Check::pass("ntp-servers", d, format!("{a:?} on both"))
}

pub fn check_path_addresses(src: Option<&MigrationPath>, dst: Option<&MigrationPath>) -> Check {
    let d = Side::Destination;
    let (Some(s), Some(t)) = (src, dst) else {
        return Check::skip(
            "path-addresses",
            d,
            "a side has no migration path (see migration-path)",
        );
    };
    if s.addr == t.addr {
        return Check::fail(
            "path-addresses",
            d,
            Emg::new(
                Module::Management,
                phase::PATH_ADDRESS,
                0x05,
                format!(
                    "Can not assign the same IP for the source and the Destination ({} on both \
                     paths {} and {}).",
                    s.addr, s.name, t.name
                ),
                "Check the setting of a migration path for source and destination hosts and set \
                 a different IP address for each of them.",
            ),
        );
    }
    Check::pass("path-addresses", d, format!("{} → {}", s.addr, t.addr))
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
    src: &HostFacts,
    mode: Mode,
    path: Option<&str>,
) -> Vec<Check> {
    let here = HostFacts::of(config);
    let r = &config.resources;
    let names = inv.names();
    let root = config.lpar_root();
    // The destination uses the same-named path when it has one.
    let own_path = path.filter(|n| here.path(Some(n)).is_some());
    vec![
        check_name_unique(&here, &names, &lpar.name),
        check_different_hosts(src, &here),
        check_hvm_model(src, &here, mode),
        check_build(src, &here),
        check_cpus(&here, r, lpar),
        check_memory(&here, r, inv.memory_in_use(), lpar),
        check_contiguous(lpar, &root.display().to_string(), fs_free_bytes(&root)),
        check_segments(&here, r, lpar),
        check_vfc_ids(&here, &free_vfc_ids(r, inv, &lpar.name), lpar),
        check_console(&here, r, names.len()),
        check_time_zone(src, &here),
        check_ntp(src, &here),
        check_own_path(&here, own_path, Side::Destination),
        check_path_addresses(src.path(path), here.path(own_path)),
    ]
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

/// The summary EMG of a refused validation: names every failing item.
pub fn refusal(lpar: &str, checks: &[Check]) -> Option<Emg> {
    let failed: Vec<&Check> = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .collect();
    let first = failed.first()?;
    let list = failed
        .iter()
        .map(|c| {
            format!(
                "{} ({}): {}",
                c.item,
                match c.side {
                    Side::Source => "source",
                    Side::Destination => "destination",
                },
                c.detail
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let e = first.error.clone();
    let mut emg = Emg::new(
        Module::Management,
        phase::COMPATIBILITY,
        0x2000,
        format!(
            "Validation refused the migration of '{lpar}': {} item(s) failed: {list}",
            failed.len()
        ),
        e.map_or("Fix the failing items and retry.".to_string(), |e| {
            if failed.len() == 1 {
                e.action
            } else {
                format!("First: {} Then fix the other items and retry.", e.action)
            }
        }),
    );
    emg.detail = failed.len() as u64;
    Some(emg)
}

// ---- the agents ---------------------------------------------------------

use super::Agent;
use super::connectivity;
use crate::control::Command;
use serde_json::{Value, json};
use std::sync::Arc;

/// Every source-side check of `lpar` (bandwidth aside).
pub fn source_checks(
    config: &AgentConfig,
    lpar: &LparConfig,
    state: LparState,
    mode: Mode,
    path: Option<&str>,
) -> Vec<Check> {
    vec![
        check_name(lpar),
        check_state(&lpar.name, state, mode),
        check_nic_modes(lpar),
        check_manual_macs(lpar),
        check_fc_modes(lpar),
        check_fc_count(lpar, mode),
        check_own_path(&HostFacts::of(config), path, Side::Source),
    ]
}

/// What `validate` found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub lpar: String,
    pub mode: Mode,
    pub source: String,
    pub destination: String,
    pub passed: bool,
    pub checks: Vec<Check>,
    /// The connectivity test the bandwidth item used (live mode).
    #[serde(default)]
    pub connectivity: Option<connectivity::Measurement>,
}

/// `validate` on the source agent: its own checks, the destination's over
/// the protocol, and (live mode) the bandwidth of the migration path, from
/// a connectivity test younger than [`connectivity::REUSE_FOR`] unless
/// `fresh`.
pub fn validate(
    agent: &Arc<Agent>,
    lpar: &str,
    to: &str,
    mode: Mode,
    path: Option<&str>,
    fresh: bool,
) -> Result<Report, Emg> {
    let (config, state) = {
        let inv = agent.inventory.lock().unwrap();
        let e = inv.get(lpar)?;
        (e.config.clone(), e.state)
    };
    let mut checks = source_checks(&agent.config, &config, state, mode, path);
    let mut client = connectivity::open_peer(agent, to)?;
    let reply = client.call(Command::ValidateIncoming {
        config: config.clone(),
        mode,
        source: HostFacts::of(&agent.config),
        path: path.map(str::to_string),
    })?;
    let theirs: Vec<Check> = serde_json::from_value(reply["checks"].clone()).map_err(|e| {
        compat(
            0x2001,
            format!("the destination's validate-incoming reply does not parse: {e}"),
            "Install the same lpar-mover release on both hosts.",
        )
    })?;
    checks.extend(theirs);
    let destination = client.greeting().agent.clone();
    let mut connectivity = None;
    if mode == Mode::Live {
        let path_name = HostFacts::of(&agent.config)
            .path(path)
            .map(|p| p.name.clone());
        let no_path = checks
            .iter()
            .any(|c| c.item == "migration-path" && c.outcome == Outcome::Fail);
        let check = match path_name {
            _ if no_path => Check::skip(
                "bandwidth",
                Side::Source,
                "no usable migration path on both sides (see migration-path)",
            ),
            None => Check::skip(
                "bandwidth",
                Side::Source,
                "no source migration path (see migration-path)",
            ),
            Some(p) => {
                // Only a passing figure is reused: a fixed path is re-measured.
                let cached = (!fresh)
                    .then(|| connectivity::recent(&destination, &p))
                    .flatten()
                    .filter(|m| m.bits_per_s >= MIN_GOODPUT_BITS);
                let measured = match cached {
                    Some(m) => Ok(m),
                    None => connectivity::run(agent, &mut client, path),
                };
                let c = check_bandwidth(mode, measured.as_ref().map(|m| m.bits_per_s));
                connectivity = measured.ok();
                c
            }
        };
        checks.push(check);
    } else {
        checks.push(check_bandwidth(mode, Ok(0.0)));
    }
    let passed = checks.iter().all(|c| c.outcome != Outcome::Fail);
    Ok(Report {
        lpar: lpar.to_string(),
        mode,
        source: agent.config.name.clone(),
        destination,
        passed,
        checks,
        connectivity,
    })
}

/// `validate-incoming` on the destination agent.
pub fn validate_incoming(
    agent: &Arc<Agent>,
    lpar: &LparConfig,
    mode: Mode,
    source: &HostFacts,
    path: Option<&str>,
) -> Result<Value, Emg> {
    let inv = agent.inventory.lock().unwrap();
    let checks = destination_checks(&agent.config, &inv, lpar, source, mode, path);
    Ok(json!({ "host": HostFacts::of(&agent.config), "checks": checks }))
}

/// `rehearse`: validation with a fresh connectivity test, then the
/// destination defines the LPAR as a placeholder and deletes it again.
/// Nothing moves; the LPAR keeps running here.
pub fn rehearse(
    agent: &Arc<Agent>,
    lpar: &str,
    to: &str,
    mode: Mode,
    path: Option<&str>,
) -> Result<Value, Emg> {
    let report = validate(agent, lpar, to, mode, path, true)?;
    if !report.passed {
        return Ok(json!({ "passed": false, "validation": report }));
    }
    let config = agent.inventory.lock().unwrap().get(lpar)?.config.clone();
    let mut client = connectivity::open_peer(agent, to)?;
    let placeholder = client.call(Command::RehearseIncoming { config })?;
    Ok(json!({ "passed": true, "validation": report, "placeholder": placeholder }))
}

/// `rehearse-incoming` on the destination: reserve (define, state
/// `migrating` so nothing else touches it) and release.
pub fn rehearse_incoming(agent: &Arc<Agent>, mut config: LparConfig) -> Result<Value, Emg> {
    let mut inv = agent.inventory.lock().unwrap();
    if inv.contains(&config.name) {
        let here = HostFacts::of(&agent.config);
        let c = check_name_unique(&here, &inv.names(), &config.name);
        return Err(c.error.expect("a duplicate name fails"));
    }
    agent.check_resources(&inv, &config, Module::Management)?;
    config.number = inv.names().len() as u32 + 1;
    let t = std::time::Instant::now();
    let lpar = inv.define(&config, LparState::Migrating)?;
    let define_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(lpar);
    let t = std::time::Instant::now();
    inv.remove(&config.name)?;
    let release_ms = t.elapsed().as_secs_f64() * 1e3;
    log::info!(
        "rehearsal: placeholder '{}' ({}) defined in {define_ms:.1} ms and released",
        config.name,
        format_size(config.memory_bytes)
    );
    Ok(json!({
        "host": agent.config.name,
        "lpar": config.name,
        "memory_bytes": config.memory_bytes,
        "define_ms": define_ms,
        "release_ms": release_ms,
        "released": !inv.contains(&config.name),
    }))
}

/// The validation commands of the management protocol.
pub fn handle(agent: &Arc<Agent>, command: Command) -> Result<Value, Emg> {
    match command {
        Command::Validate {
            lpar,
            to,
            mode,
            path,
        } => {
            let r = validate(agent, &lpar, &to, mode, path.as_deref(), false)?;
            Ok(serde_json::to_value(r).expect("reports serialise"))
        }
        Command::ConnectivityTest { to, path } => {
            connectivity::connectivity_test(agent, &to, path.as_deref())
        }
        Command::Rehearse {
            lpar,
            to,
            mode,
            path,
        } => rehearse(agent, &lpar, &to, mode, path.as_deref()),
        Command::ValidateIncoming {
            config,
            mode,
            source,
            path,
        } => validate_incoming(agent, &config, mode, &source, path.as_deref()),
        Command::ConnectivityIncoming { path, streams } => {
            connectivity::incoming(agent, path.as_deref(), streams)
        }
        Command::RehearseIncoming { config } => rehearse_incoming(agent, config),
        other => Err(crate::control::protocol_error(
            crate::control::cause::UNKNOWN_COMMAND,
            format!("'{}' is not a validation command", other.name()),
            "Send it to the agent's main dispatch.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{FcPortConfig, NicConfig};
    use crate::state::{MacAddress, VlanMode, Wwpn};
    use std::net::Ipv4Addr;

    fn lpar() -> LparConfig {
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
        }
    }

    fn fc(port: u16, n: u64) -> FcPortConfig {
        FcPortConfig {
            port,
            mode: DeviceMode::Shared,
            vfc_id: None,
            wwpn: Wwpn::from_u64(0x5006_0e80_0000_0000 | n),
            migration_wwpn: Wwpn::from_u64(0x5006_0e80_0001_0000 | n),
        }
    }

    fn facts(agent: &str, addr: [u8; 4]) -> HostFacts {
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
        }
    }

    fn resources() -> Resources {
        Resources {
            cpus: 4,
            memory: 1 << 30,
            fc_ports: vec![super::super::config::FcPort {
                name: "fc0".into(),
                vfc_ids: vec![1, 2, 3],
            }],
            nic_segments: vec!["seg-a@eth1".into(), "seg-b".into()],
            consoles: 2,
        }
    }

    fn outcome(c: &Check) -> Outcome {
        c.outcome
    }

    #[test]
    fn the_lpar_name_must_not_be_no_name() {
        assert_eq!(outcome(&check_name(&lpar())), Outcome::Pass);
        let mut l = lpar();
        l.name = NO_NAME.into();
        let c = check_name(&l);
        assert_eq!(c.outcome, Outcome::Fail);
        let e = c.error.unwrap();
        assert_eq!((e.phase, e.detail), (phase::DEFINE, 0x000A_FFFF));
        assert!(e.message.contains("'NO_NAME'"), "{e}");
    }

    #[test]
    fn states_allowed_per_mode() {
        use LparState::*;
        for (state, mode, ok) in [
            (Act, Mode::Live, true),
            (Dea, Mode::Live, false),
            (Fai, Mode::Live, false),
            (Migrating, Mode::Live, false),
            (Act, Mode::Shutdown, true),
            (Dea, Mode::Shutdown, true),
            (Fai, Mode::Shutdown, false),
            (NeedsRecovery, Mode::Shutdown, false),
        ] {
            let c = check_state("l", state, mode);
            assert_eq!(c.outcome == Outcome::Pass, ok, "{state:?} {mode:?}: {c:?}");
        }
        let fai = check_state("l", Fai, Mode::Shutdown).error.unwrap();
        assert!(fai.message.contains("corrupted LPAR"), "{fai}");
    }

    #[test]
    fn only_shared_devices_and_no_manual_mac() {
        let l = lpar();
        assert_eq!(outcome(&check_nic_modes(&l)), Outcome::Pass);
        assert_eq!(outcome(&check_fc_modes(&l)), Outcome::Pass);
        assert_eq!(outcome(&check_manual_macs(&l)), Outcome::Pass);
        let mut d = lpar();
        d.nics[0].mode = DeviceMode::Dedicated;
        d.fc_ports[0].mode = DeviceMode::Dedicated;
        d.nics[0].mac_set_manually = true;
        for c in [
            check_nic_modes(&d),
            check_fc_modes(&d),
            check_manual_macs(&d),
        ] {
            assert_eq!(c.outcome, Outcome::Fail, "{c:?}");
        }
        assert_eq!(check_nic_modes(&d).error.unwrap().cause, 0x1004);
    }

    #[test]
    fn live_mode_needs_under_eight_fc_ports() {
        let mut l = lpar();
        l.fc_ports = (0..7).map(|i| fc(0, i)).collect();
        assert_eq!(outcome(&check_fc_count(&l, Mode::Live)), Outcome::Pass);
        l.fc_ports.push(fc(0, 7));
        assert_eq!(outcome(&check_fc_count(&l, Mode::Live)), Outcome::Fail);
        assert_eq!(outcome(&check_fc_count(&l, Mode::Shutdown)), Outcome::Skip);
    }

    #[test]
    fn a_path_must_exist_and_avoid_the_management_address_unless_on_a_vlan() {
        let mut f = facts("a", [10, 2, 0, 1]);
        assert_eq!(
            outcome(&check_own_path(&f, None, Side::Source)),
            Outcome::Pass
        );
        let c = check_own_path(&f, Some("other"), Side::Destination);
        assert_eq!(c.error.unwrap().phase, phase::DESTINATION_PATH);
        f.management = "10.2.0.1:7400".into();
        let c = check_own_path(&f, None, Side::Source);
        assert_eq!(c.error.unwrap().phase, phase::PATH_ADDRESS);
        f.paths[0].vlan = Some(100);
        assert_eq!(
            outcome(&check_own_path(&f, None, Side::Source)),
            Outcome::Pass
        );
        f.management = "/run/moverd.sock".into();
        f.paths[0].vlan = None;
        assert_eq!(
            outcome(&check_own_path(&f, None, Side::Source)),
            Outcome::Pass
        );
        f.paths.clear();
        assert_eq!(
            outcome(&check_own_path(&f, None, Side::Source)),
            Outcome::Fail
        );
    }

    #[test]
    fn bandwidth_needs_a_gigabit_in_live_mode() {
        assert_eq!(
            outcome(&check_bandwidth(Mode::Live, Ok(5e9))),
            Outcome::Pass
        );
        assert_eq!(
            outcome(&check_bandwidth(Mode::Live, Ok(0.95e9))),
            Outcome::Pass
        );
        let c = check_bandwidth(Mode::Live, Ok(0.5e9));
        assert!(c.detail.contains("0.500 Gbit/s"), "{c:?}");
        let e = Emg::new(Module::Management, phase::SOURCE_PATH, 1, "x", "y");
        assert_eq!(
            outcome(&check_bandwidth(Mode::Live, Err(&e))),
            Outcome::Fail
        );
        assert_eq!(
            outcome(&check_bandwidth(Mode::Shutdown, Ok(0.0))),
            Outcome::Skip
        );
    }

    #[test]
    fn host_identity_checks() {
        let a = facts("a", [10, 2, 0, 1]);
        let mut b = facts("b", [10, 2, 0, 2]);
        for c in [
            check_different_hosts(&a, &b),
            check_hvm_model(&a, &b, Mode::Live),
            check_build(&a, &b),
            check_time_zone(&a, &b),
            check_ntp(&a, &b),
            check_path_addresses(a.path(None), b.path(None)),
        ] {
            assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
        }
        assert_eq!(outcome(&check_different_hosts(&a, &a)), Outcome::Fail);
        assert_eq!(
            outcome(&check_path_addresses(a.path(None), a.path(None))),
            Outcome::Fail
        );
        b.identity.hvm_model = "Enterprise".into();
        assert_eq!(
            check_hvm_model(&a, &b, Mode::Live).error.unwrap().cause,
            0x1003
        );
        let mut e = a.clone();
        e.identity.hvm_model = "Essential".into();
        assert_eq!(outcome(&check_hvm_model(&e, &e, Mode::Live)), Outcome::Fail);
        assert_eq!(
            outcome(&check_hvm_model(&e, &e, Mode::Shutdown)),
            Outcome::Pass
        );
        b.build.wire_protocol += 1;
        assert_eq!(outcome(&check_build(&a, &b)), Outcome::Fail);
        b.identity.time_zone = "Asia/Tokyo".into();
        assert_eq!(outcome(&check_time_zone(&a, &b)), Outcome::Fail);
        b.identity.ntp_servers = vec!["10.0.0.2".into()];
        assert_eq!(outcome(&check_ntp(&a, &b)), Outcome::Fail);
        b.identity.ntp_servers = vec!["10.0.0.1".into()];
        assert_eq!(outcome(&check_ntp(&a, &b)), Outcome::Pass);
        assert_eq!(
            outcome(&check_path_addresses(None, b.path(None))),
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
            outcome(&check_contiguous(&l, "/x", Ok(1 << 30))),
            Outcome::Pass
        );
        assert_eq!(
            outcome(&check_contiguous(&l, "/x", Ok(1 << 20))),
            Outcome::Fail
        );
        assert_eq!(
            outcome(&check_contiguous(&l, "/x", Err("gone".into()))),
            Outcome::Fail
        );
        assert_eq!(outcome(&check_console(&h, &r, 1)), Outcome::Pass);
        assert_eq!(check_console(&h, &r, 2).error.unwrap().cause, 0x6000_0004);
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

    #[test]
    fn the_refusal_names_every_failing_item() {
        let mut l = lpar();
        l.name = NO_NAME.into();
        let checks = vec![
            check_name(&l),
            check_fc_count(&lpar(), Mode::Live),
            check_state(NO_NAME, LparState::Dea, Mode::Live),
        ];
        let e = refusal(NO_NAME, &checks).unwrap();
        assert_eq!(e.detail, 2);
        assert!(e.message.contains("lpar-name (source)"), "{e}");
        assert!(e.message.contains("lpar-state (source)"), "{e}");
        assert!(!e.message.contains("fc-count"), "{e}");
        assert!(refusal("x", &checks[1..2]).is_none());
    }
}
