//! The checklist items about the LPAR's name and state, the migration paths
//! and the two hosts' identity: pure functions of what each agent reports
//! (its devices are [`super::devices`]).

use super::*;
use crate::control::{LparState, MigrationMode as Mode};
use crate::emg::{Emg, Module, phase};
use crate::partition::LparConfig;
use crate::partition::config::NO_NAME;
use crate::transport::MigrationPath;
use std::collections::BTreeSet;
use std::net::IpAddr;

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
                mode.label(),
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

/// The IPv4 address of a TCP management address (`None` for a socket path
/// or a name that does not resolve to a literal address).
fn management_ip(management: &str) -> Option<IpAddr> {
    match crate::control::Address::parse(management).ok()? {
        crate::control::Address::Tcp(hp) => hp.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()),
        crate::control::Address::Unix(_) => None,
    }
}

/// Why migration path `p` collides with the management path, if it does:
/// it has no VLAN ID and sits on the management path's NIC segment (both
/// configured: `segment` and `management_segment`), or on its very address.
fn management_collision(facts: &HostFacts, p: &MigrationPath) -> Option<String> {
    if p.vlan.is_some() {
        return None;
    }
    if let (Some(a), Some(b)) = (&p.segment, &facts.management_segment)
        && a == b
    {
        return Some(format!("both on NIC segment {a}"));
    }
    (management_ip(&facts.management) == Some(IpAddr::V4(p.addr)))
        .then(|| format!("both on address {}", p.addr))
}

/// The manual's MMS Thread `0x00 00000004 F00d 03`, op3 0x01.
fn path_collides(agent: &str, shown: &str, why: &str) -> Emg {
    Emg::new(
        Module::Executor,
        phase::PATH_COLLISION,
        0x04,
        format!(
            "The specified Migration Path collides with the Management Path Settings. \
             (host {agent}: migration path {shown} and the management path are {why}, and \
             the migration path has no VLAN ID)"
        ),
        "Take one of the following actions. 1. Set a shared NIC segment that isn't set as a \
         management path, as the migration path to be used. 2. Set a VLANID for a migration \
         path when you set a shared NIC segment that is set as a management path, as the \
         migration path to be used.",
    )
    .reason(0x01)
}

/// A migration path on `side`: present, and not on the management path's
/// segment (or address) unless it has a VLAN ID.
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
    if let Some(why) = management_collision(facts, p) {
        return Check::fail(item, side, path_collides(&facts.agent, &shown, &why));
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

/// One migration per host: a destination already moving an LPAR in or out
/// is busy (the manual's "blade is busy").
pub fn check_host_not_busy(here: &HostFacts, migrating: Option<&str>) -> Check {
    let d = Side::Destination;
    match crate::agent::busy::check_host(&here.agent, migrating) {
        Ok(()) => Check::pass(
            "host-not-busy",
            d,
            format!("{} is in no migration", here.agent),
        ),
        Err(e) => Check::fail("host-not-busy", d, e),
    }
}

pub fn check_different_hosts(src: &HostFacts, dst: &HostFacts) -> Check {
    let d = Side::Destination;
    if src.agent == dst.agent {
        return Check::fail("different-hosts", d, same_host(&src.agent));
    }
    Check::pass(
        "different-hosts",
        d,
        format!("{} → {}", src.agent, dst.agent),
    )
}

/// The manual's HVM model classes that may run a live migration (Table
/// 2-9: Advanced or Enterprise; Essential only in Shutdown mode).
fn live_capable(model: &str) -> bool {
    !model.eq_ignore_ascii_case("essential")
}

/// The model rule of Table 2-9, on each host alone: "The HVM models on the
/// source and destination server blades aren't necessary to be the same."
pub fn check_hvm_model(src: &HostFacts, dst: &HostFacts, mode: Mode) -> Check {
    let d = Side::Destination;
    let (a, b) = (&src.identity.hvm_model, &dst.identity.hvm_model);
    let unable: Vec<String> = [(&src.agent, a), (&dst.agent, b)]
        .into_iter()
        .filter(|(_, model)| mode == Mode::Live && !live_capable(model))
        .map(|(agent, model)| format!("{model} on {agent}"))
        .collect();
    if !unable.is_empty() {
        return Check::fail(
            "hvm-model",
            d,
            compat(
                0x1015,
                format!(
                    "HVM model {} does not support live migration.",
                    unable.join(", ")
                ),
                "Use hosts with the Advanced or Enterprise HVM model, or migrate in shutdown mode.",
            ),
        );
    }
    Check::pass(
        "hvm-model",
        d,
        format!("{a} on {}, {b} on {}", src.agent, dst.agent),
    )
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

/// The same backend on both: a `sim` LPAR's device state (program
/// registers) means nothing to a `kvm` host, a KVM guest's nothing to `sim`.
pub fn check_backend(src: &HostFacts, dst: &HostFacts) -> Check {
    let d = Side::Destination;
    let (a, b) = (&src.backend, &dst.backend);
    if a != b {
        return Check::fail(
            "backend",
            d,
            compat(
                0x1019,
                format!(
                    "The partition backends differ: {} hosts LPARs on '{}', {} on '{}'; an \
                     LPAR cannot move between backends.",
                    src.agent,
                    a.escape_debug(),
                    dst.agent,
                    b.escape_debug()
                ),
                "Choose a destination agent that runs the same backend (moverd serve --backend, \
                 or backend in its configuration).",
            ),
        );
    }
    Check::pass("backend", d, format!("{a} on both"))
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

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
        let e = c.error.unwrap();
        assert_eq!(
            (e.module, e.phase, e.cause, e.reason),
            (Module::Executor, 0xF00D, 4, 1)
        );
        // By segment: another address on the management path's segment.
        f.management = "10.9.0.1:7400".into();
        f.management_segment = Some("1a".into());
        f.paths[0].segment = Some("1b".into());
        assert_eq!(
            outcome(&check_own_path(&f, None, Side::Source)),
            Outcome::Pass
        );
        f.paths[0].segment = Some("1a".into());
        let e = check_own_path(&f, None, Side::Source).error.unwrap();
        assert!(
            e.message.starts_with(
                "The specified Migration Path collides with the Management Path Settings."
            ),
            "{e}"
        );
        assert!(e.message.contains("NIC segment 1a"), "{e}");
        f.management = "10.2.0.1:7400".into();
        f.paths[0].vlan = Some(100);
        assert_eq!(
            outcome(&check_own_path(&f, None, Side::Source)),
            Outcome::Pass
        );
        f.management = "/run/moverd.sock".into();
        f.management_segment = None;
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
        // Models need not be equal; Essential, on either side, refuses
        // live mode only.
        b.identity.hvm_model = "Enterprise".into();
        assert_eq!(outcome(&check_hvm_model(&a, &b, Mode::Live)), Outcome::Pass);
        let mut e = a.clone();
        e.identity.hvm_model = "Essential".into();
        for (s, d) in [(&e, &b), (&b, &e), (&e, &e)] {
            let c = check_hvm_model(s, d, Mode::Live);
            assert_eq!(c.error.unwrap().cause, 0x1015);
            assert_eq!(
                outcome(&check_hvm_model(s, d, Mode::Shutdown)),
                Outcome::Pass
            );
        }
        b.build.wire_protocol += 1;
        assert_eq!(outcome(&check_build(&a, &b)), Outcome::Fail);
        assert_eq!(outcome(&check_backend(&a, &b)), Outcome::Pass);
        b.backend = "kvm".into();
        let e = check_backend(&a, &b).error.unwrap();
        assert_eq!((e.phase, e.cause), (phase::COMPATIBILITY, 0x1019));
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
}
