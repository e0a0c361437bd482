//! Running the checklist on both agents: the source's side, the
//! `validate-incoming` request to the destination, the bandwidth from a
//! connectivity test, and the rehearsal.

use super::*;
use crate::agent::config::AgentConfig;
use crate::agent::connectivity;
use crate::agent::{Agent, answer};
use crate::control::reply::{IncomingChecks, Placeholder, Rehearsal, ValidationReport};
use crate::control::{Command, LparState, request};
use crate::emg::{Emg, Module};
use crate::partition::LparConfig;
use crate::units::format_size;
use serde_json::Value;
use std::sync::Arc;

pub fn source_checks(
    config: &AgentConfig,
    lpar: &LparConfig,
    state: LparState,
    mode: MigrationMode,
    path: Option<&str>,
) -> Vec<Check> {
    vec![
        check_name(lpar),
        check_state(&lpar.name, state, mode),
        check_nic_modes(lpar),
        check_manual_macs(lpar),
        check_fc_modes(lpar),
        check_fc_count(lpar, mode),
        check_usb(lpar, mode),
        check_own_path(&config.facts(), path, Side::Source).for_path(mode),
    ]
}

/// `validate` on the source agent: its own checks, the destination's over
/// the protocol, and (live mode) the bandwidth of the migration path, from
/// a connectivity test younger than [`connectivity::REUSE_FOR`] unless
/// `fresh`.
pub fn validate(
    agent: &Arc<Agent>,
    lpar: &str,
    to: &str,
    mode: MigrationMode,
    path: Option<&str>,
    fresh: bool,
) -> Result<ValidationReport, Emg> {
    let (config, state, active, populated_bytes) = {
        let inv = agent.inventory.lock().unwrap();
        let e = inv.get(lpar)?;
        (
            e.config.clone(),
            e.state,
            active_segments(&inv),
            on_demand_populated(e),
        )
    };
    let mut checks = source_checks(&agent.config, &config, state, mode, path);
    let facts = agent.config.facts();
    checks.push(check_path_segment(
        &facts,
        path,
        &active,
        Side::Source,
        mode,
    ));
    // This host's load is sampled while the destination runs its items
    // (and samples its own).
    let (load, asked) = std::thread::scope(|s| {
        let load = s.spawn(|| host_load(&facts, path, Side::Source, mode));
        let asked = connectivity::open_peer(agent, to).and_then(|mut client| {
            let reply = client.call(Command::ValidateIncoming {
                config: config.clone(),
                mode,
                source: agent.config.facts(),
                path: path.map(str::to_string),
                populated_bytes,
            })?;
            Ok((client, reply))
        });
        (load.join(), asked)
    });
    checks.push(
        load.unwrap_or_else(|_| {
            Check::skip("host-load", Side::Source, "the load could not be read")
        }),
    );
    let (mut client, reply) = asked?;
    let theirs = serde_json::from_value::<IncomingChecks>(reply).map_err(|e| {
        compat(
            0x2001,
            format!("the destination's validate-incoming reply does not parse: {e}"),
            "Install the same lpar-mover release on both hosts.",
        )
    })?;
    checks.extend(theirs.checks);
    if let Some(key) = client.peer_key() {
        let by = match agent.tls.as_ref().map(|t| &t.trust) {
            Some(crate::transport::identity::Trust::Ca { .. }) => "signed by the site CA",
            _ => "a pinned key",
        };
        checks.push(Check::pass(
            "peer-identity",
            Side::Destination,
            format!("{} key {key} ({by}; mutual TLS)", client.greeting().agent),
        ));
    }
    let destination = client.greeting().agent.clone();
    let mut connectivity = None;
    if mode == MigrationMode::Live {
        let path_name = agent.config.facts().path(path).map(|p| p.name.clone());
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
    Ok(ValidationReport {
        lpar: lpar.to_string(),
        mode,
        source: agent.config.name.clone(),
        destination,
        passed,
        checks,
        connectivity,
    })
}

/// The NIC segments of the activated LPARs in `inv`.
fn active_segments(inv: &crate::agent::inventory::Inventory) -> std::collections::BTreeSet<String> {
    inv.names()
        .iter()
        .filter_map(|n| inv.get(n).ok())
        .filter(|e| e.state == LparState::Act)
        .flat_map(|e| e.config.nics.iter().map(|n| n.segment.clone()))
        .collect()
}

/// `host-load` of this host (live mode samples for [`LOAD_WINDOW`]).
fn host_load(facts: &HostFacts, path: Option<&str>, side: Side, mode: MigrationMode) -> Check {
    let interface = facts.path(path).and_then(|p| p.interface.as_deref());
    let load = if mode == MigrationMode::Live {
        sample_load(interface)
    } else {
        Load::default()
    };
    check_host_load(&facts.agent, interface, load, side, mode)
}

/// What an LPAR backed on demand holds now (`None` for reserved memory,
/// which needs its whole size wherever it goes, or when its files are not
/// attached).
fn on_demand_populated(entry: &crate::agent::inventory::Entry) -> Option<u64> {
    if entry.config.memory_backing != crate::partition::MemoryBacking::OnDemand {
        return None;
    }
    let pages = entry.lpar.as_ref()?.populated().ok()?.len();
    Some(pages * crate::partition::PAGE_SIZE as u64)
}

/// `validate-incoming` on the destination agent.
pub fn validate_incoming(
    agent: &Arc<Agent>,
    lpar: &LparConfig,
    mode: MigrationMode,
    source: &HostFacts,
    path: Option<&str>,
    populated_bytes: Option<u64>,
) -> Result<IncomingChecks, Emg> {
    let here = agent.config.facts();
    // The destination uses the same-named path when it has one.
    let own_path = path.filter(|n| here.path(Some(n)).is_some());
    // Sampled before the inventory is locked: it takes a while.
    let load = host_load(&here, own_path, Side::Destination, mode);
    let inv = agent.inventory.lock().unwrap();
    let mut checks = destination_checks(
        &agent.config,
        &inv,
        lpar,
        populated_bytes,
        source,
        mode,
        path,
    );
    checks.push(check_path_segment(
        &here,
        own_path,
        &active_segments(&inv),
        Side::Destination,
        mode,
    ));
    checks.push(check_device_status(
        &here,
        &agent.config.resources,
        lpar,
        own_path,
        mode,
        link_state,
    ));
    checks.push(load);
    Ok(IncomingChecks {
        host: agent.config.facts(),
        checks,
    })
}

/// `rehearse`: validation with a fresh connectivity test, then the
/// destination defines the LPAR as a placeholder and deletes it again.
/// Nothing moves; the LPAR keeps running here.
pub fn rehearse(
    agent: &Arc<Agent>,
    lpar: &str,
    to: &str,
    mode: MigrationMode,
    path: Option<&str>,
) -> Result<Rehearsal, Emg> {
    let report = validate(agent, lpar, to, mode, path, true)?;
    if !report.passed {
        return Ok(Rehearsal {
            passed: false,
            validation: report,
            placeholder: None,
        });
    }
    let config = agent.inventory.lock().unwrap().get(lpar)?.config.clone();
    let mut client = connectivity::open_peer(agent, to)?;
    let placeholder = client.request(request::RehearseIncoming { config })?;
    Ok(Rehearsal {
        passed: true,
        validation: report,
        placeholder: Some(placeholder),
    })
}

/// `rehearse-incoming` on the destination: reserve (define, state
/// `migrating` so nothing else touches it) and release.
pub fn rehearse_incoming(agent: &Arc<Agent>, mut config: LparConfig) -> Result<Placeholder, Emg> {
    let mut inv = agent.inventory.lock().unwrap();
    if inv.contains(&config.name) {
        let here = agent.config.facts();
        let c = check_name_unique(&here, &inv.names(), &config.name);
        return Err(c.error.expect("a duplicate name fails"));
    }
    agent.check_resources(&inv, &config, Module::Management)?;
    config.number = inv.free_number();
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
    Ok(Placeholder {
        host: agent.config.name.clone(),
        released: !inv.contains(&config.name),
        lpar: config.name,
        memory_bytes: config.memory_bytes,
        define_ms,
        release_ms,
    })
}

/// The validation commands of the management protocol.
pub fn handle(agent: &Arc<Agent>, command: Command) -> Result<Value, Emg> {
    match command {
        Command::Validate {
            lpar,
            to,
            mode,
            path,
        } => answer::<request::Validate>(validate(agent, &lpar, &to, mode, path.as_deref(), false)),
        Command::ConnectivityTest { to, path } => answer::<request::ConnectivityTest>(
            connectivity::connectivity_test(agent, &to, path.as_deref()),
        ),
        Command::Rehearse {
            lpar,
            to,
            mode,
            path,
        } => answer::<request::Rehearse>(rehearse(agent, &lpar, &to, mode, path.as_deref())),
        Command::ValidateIncoming {
            config,
            mode,
            source,
            path,
            populated_bytes,
        } => answer::<request::ValidateIncoming>(validate_incoming(
            agent,
            &config,
            mode,
            &source,
            path.as_deref(),
            populated_bytes,
        )),
        Command::ConnectivityIncoming { path, streams } => answer::<request::ConnectivityIncoming>(
            connectivity::incoming(agent, path.as_deref(), streams),
        ),
        Command::RehearseIncoming { config } => {
            answer::<request::RehearseIncoming>(rehearse_incoming(agent, config))
        }
        other => Err(crate::control::protocol_error(
            crate::control::cause::UNKNOWN_COMMAND,
            format!("'{}' is not a validation command", other.name()),
            "Send it to the agent's main dispatch.",
        )),
    }
}
