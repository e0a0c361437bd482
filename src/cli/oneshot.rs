//! One-shot agent modes: `moverd receive` and `moverd send` each carry out
//! one live migration and exit. They are what `moverctl demo` starts as two
//! separate processes until the long-running agent and its management
//! protocol exist; the handoff (listening address and one-time key) goes
//! over the receiver's standard output as one line:
//!
//! ```text
//! LISTENING <ip:port> KEY <64 hex digits>
//! ```

use crate::emg::{Emg, Module, phase};
use crate::engine::destination::receive_live;
use crate::engine::source::{LiveOptions, MigrationControl, Progress, migrate_live};
use crate::engine::switchover::{DestinationHost, parse_vfc_ids};
use crate::partition::{Backend, LparConfig, Partition};
use crate::state::{HbaIdentity, Identities, MacAddress, NicIdentity, Wwpn};
use crate::transport::{
    Encryption, MigrationPath, OneTimeKey, PathListener, StreamOptions, connect_streams_with,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the receiver waits for the sender's streams.
const ACCEPT_DEADLINE: Duration = Duration::from_secs(30);

/// Defines `config` on `backend`, listens on `path`, prints the handoff
/// line, receives the LPAR, lets it run for `run_after` and reports what
/// its guest did there; then removes it (a one-shot host keeps nothing).
/// Returns the destination report as JSON. `encryption`: TLS 1.3 only, or
/// plaintext streams accepted too (`--insecure-plaintext`).
#[allow(clippy::too_many_arguments)]
pub fn receive(
    backend: &dyn Backend,
    config: &LparConfig,
    path: Ipv4Addr,
    streams: usize,
    run_after: Duration,
    host: &DestinationHost,
    encryption: Encryption,
) -> Result<serde_json::Value, Emg> {
    crate::agent::console::check_image(config, backend.kind(), "this host")?;
    let opts = StreamOptions {
        encryption,
        ..StreamOptions::default()
    };
    let path = MigrationPath::new("migration", path);
    let listener = PathListener::bind_with(&path, 0, opts, Default::default())?;
    let key = listener.issue_key()?;
    let lpar = backend.create(&config.name, config)?;
    println!("LISTENING {} KEY {}", listener.local_addr(), key.to_hex());
    let _ = std::io::stdout().flush();
    let result = listener
        .accept_streams(streams, &key, 1, Instant::now() + ACCEPT_DEADLINE)
        .map_err(Emg::from)
        .and_then(|inn| {
            receive_live(lpar.clone(), inn, host).map_err(|e| e.emg(Module::MoverDestination))
        })
        .and_then(|report| after_arrival(&*lpar, report, run_after));
    drop(lpar);
    discard(backend, &config.name);
    result
}

/// What the guest did in its first `run_after` on the destination.
fn after_arrival(
    lpar: &dyn Partition,
    report: crate::engine::destination::DestinationReport,
    run_after: Duration,
) -> Result<serde_json::Value, Emg> {
    let writes = lpar.guest_writes().unwrap_or(0);
    std::thread::sleep(run_after);
    let guest_writes_after = lpar.guest_writes().unwrap_or(0) - writes;
    let running = lpar.is_running();
    lpar.pause()?;
    let ms = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e6);
    Ok(serde_json::json!({
        "destination": report,
        "guest_running": running || guest_writes_after > 0,
        "guest_writes_after_switchover": guest_writes_after,
        // The stall across the switchover, as the guest's clock saw it; the
        // longest gap of its whole life also counts throttling and warm-up.
        "guest_max_stall_ms": ms(lpar.resume_stall_ns()),
        "guest_longest_gap_ms": ms(lpar.max_stall_ns()),
        "console_log": lpar.console_log(),
    }))
}

/// Removes a one-shot LPAR (its vCPUs, its process, its files).
fn discard(backend: &dyn Backend, name: &str) {
    if let Err(e) = backend.remove(name) {
        log::warn!("could not remove the LPAR '{name}': {e}");
    }
}

/// How long the guest runs before its migration starts.
#[derive(Clone, Copy, Debug)]
pub struct WarmUp {
    /// At least this long.
    pub at_least: Duration,
    /// Then on until the guest's populated memory stops growing (its
    /// working set is in place), for at most [`MAX_POPULATING`].
    pub until_populated: bool,
}

/// The longest a warm-up waits for the working set to be populated.
pub const MAX_POPULATING: Duration = Duration::from_secs(60);

impl WarmUp {
    /// Lets `lpar`'s guest run as this warm-up says.
    fn run(&self, lpar: &dyn Partition) -> Result<(), Emg> {
        std::thread::sleep(self.at_least);
        if !self.until_populated {
            return Ok(());
        }
        let give_up = Instant::now() + MAX_POPULATING;
        let mut populated = lpar.populated()?.len();
        while Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(250));
            let now = lpar.populated()?.len();
            // Less than 0.5% more in a quarter second: in place.
            if now.saturating_sub(populated) * 200 <= populated.max(1) {
                break;
            }
            populated = now;
        }
        Ok(())
    }
}

/// Defines and starts `config` on `backend`, lets its guest run for
/// `warm_up`, then migrates it live to `to` with `key`; the source copy is
/// removed once the migration committed, and kept (the LPAR itself) when it
/// failed. `encryption`: TLS 1.3, or the memory in clear.
#[allow(clippy::too_many_arguments)]
pub fn send(
    backend: &dyn Backend,
    config: &LparConfig,
    path: Ipv4Addr,
    to: SocketAddr,
    key: &OneTimeKey,
    streams: usize,
    warm_up: WarmUp,
    options: &LiveOptions,
    encryption: Encryption,
) -> Result<serde_json::Value, Emg> {
    crate::agent::console::check_image(config, backend.kind(), "this host")?;
    let lpar = backend.create(&config.name, config)?;
    let result = send_lpar(lpar, path, to, key, streams, warm_up, options, encryption);
    // Committed: the destination owns the LPAR and this copy goes. Failed:
    // this copy is the LPAR, and it stays (its files re-attach running).
    if result.is_ok() {
        discard(backend, &config.name);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn send_lpar(
    lpar: Arc<dyn Partition>,
    path: Ipv4Addr,
    to: SocketAddr,
    key: &OneTimeKey,
    streams: usize,
    warm_up: WarmUp,
    options: &LiveOptions,
    encryption: Encryption,
) -> Result<serde_json::Value, Emg> {
    lpar.resume()?;
    warm_up.run(&*lpar)?;
    let opts = StreamOptions {
        encryption,
        ..StreamOptions::default()
    };
    let out = connect_streams_with(
        &MigrationPath::new("migration", path),
        to,
        streams,
        key,
        1,
        Duration::from_secs(10),
        &opts,
    )?;
    let control = std::sync::Arc::new(MigrationControl::new(options.timeout));
    let mut progress = |p: &Progress| match p {
        Progress::Round(r) => log::info!(
            "stage 0x4050 (SRC) Transferring Memory Data: round {} sent {} pages in {:.1} ms",
            r.round,
            r.pages,
            r.duration_ms
        ),
        Progress::Throttled(t) => log::info!("rounds stopped shrinking: vCPUs throttled to {t}%"),
        Progress::Suspending { pages } => log::info!("suspending: {pages} pages left"),
        Progress::Committing => log::info!("committing: ownership passes"),
    };
    let report = migrate_live(lpar, out, options, &control, &mut progress)
        .map_err(|e| e.emg(Module::MoverSource))?;
    Ok(serde_json::to_value(report).expect("report serialises"))
}

/// `--mac`, `--wwpn` and `--migration-wwpn` given on the command line: the
/// LPAR's identities (`send`) or the destination slot's (`receive`), in
/// port order. Empty lists keep the defaults.
#[derive(Clone, Debug, Default)]
pub struct IdentityFlags {
    pub macs: Vec<MacAddress>,
    pub wwpns: Vec<Wwpn>,
    pub migration_wwpns: Vec<Wwpn>,
}

fn usage(message: String) -> Emg {
    Emg::new(
        Module::Management,
        phase::INFORMATION,
        0x20,
        message,
        "Give one --mac per NIC and one --wwpn and --migration-wwpn per FC port, in port order.",
    )
}

impl IdentityFlags {
    fn check(&self, nics: usize, fc_ports: usize) -> Result<(), Emg> {
        if !self.macs.is_empty() && self.macs.len() != nics {
            return Err(usage(format!(
                "{} --mac given for {nics} NICs",
                self.macs.len()
            )));
        }
        if self.wwpns.len() != self.migration_wwpns.len()
            || (!self.wwpns.is_empty() && self.wwpns.len() != fc_ports)
        {
            return Err(usage(format!(
                "{} --wwpn and {} --migration-wwpn given for {fc_ports} FC ports",
                self.wwpns.len(),
                self.migration_wwpns.len()
            )));
        }
        Ok(())
    }

    /// Sets the LPAR's MACs and WWPNs from the flags.
    pub fn apply_to(&self, config: &mut LparConfig) -> Result<(), Emg> {
        self.check(config.nics.len(), config.fc_ports.len())?;
        for (nic, mac) in config.nics.iter_mut().zip(&self.macs) {
            nic.mac = *mac;
        }
        for ((port, w), m) in config
            .fc_ports
            .iter_mut()
            .zip(&self.wwpns)
            .zip(&self.migration_wwpns)
        {
            port.wwpn = *w;
            port.migration_wwpn = *m;
        }
        config.check().map_err(Emg::from)
    }

    /// The destination slot's identities: the flags where given, else
    /// `default`'s.
    pub fn slot(&self, default: &Identities) -> Result<Identities, Emg> {
        self.check(default.nics.len(), default.hbas.len())?;
        let mut slot = default.clone();
        if !self.macs.is_empty() {
            slot.nics = self
                .macs
                .iter()
                .map(|&mac| NicIdentity {
                    mac,
                    set_manually: false,
                })
                .collect();
        }
        if !self.wwpns.is_empty() {
            slot.hbas = self
                .wwpns
                .iter()
                .zip(&self.migration_wwpns)
                .map(|(&wwpn, &migration_wwpn)| HbaIdentity {
                    wwpn,
                    migration_wwpn,
                })
                .collect();
        }
        Ok(slot)
    }
}

/// The destination host for `config`: every vfcID free and a derived slot
/// unless `free_vfc_ids` / `slot` say otherwise.
pub fn destination_host(
    config: &LparConfig,
    slot: &IdentityFlags,
    free_vfc_ids: &[(u16, BTreeSet<u16>)],
    segments: &[(String, String)],
    compensate_clock: bool,
) -> Result<DestinationHost, Emg> {
    let mut host = DestinationHost::open_for(config);
    host.slot = slot.slot(&host.slot)?;
    if !free_vfc_ids.is_empty() {
        let mut free: BTreeMap<u16, BTreeSet<u16>> = BTreeMap::new();
        for (port, ids) in free_vfc_ids {
            free.entry(*port).or_default().extend(ids);
        }
        host.free_vfc_ids = free;
    }
    host.segments = segments.iter().cloned().collect();
    host.compensate_clock = compensate_clock;
    Ok(host)
}

/// Parses `SEG=IF` (`--segment`).
pub fn parse_segment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((s, i)) if !s.is_empty() && !i.is_empty() => Ok((s.to_string(), i.to_string())),
        _ => Err(format!("'{text}' is not SEGMENT=INTERFACE")),
    }
}

/// Parses `PORT=1-8,12` (`--free-vfc-ids`).
pub fn parse_free_vfc_ids(text: &str) -> Result<(u16, BTreeSet<u16>), String> {
    let (port, ids) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not PORT=IDS (e.g. 0=1-8,12)"))?;
    let port = port
        .trim()
        .parse()
        .map_err(|_| format!("'{port}' is not a physical FC port number"))?;
    Ok((port, parse_vfc_ids(ids)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_and_vfc_flags_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_segment("seg-a=veth0"),
            Ok(("seg-a".into(), "veth0".into()))
        );
        assert!(parse_segment("seg-a").is_err() && parse_segment("=x").is_err());
        let (port, ids) = parse_free_vfc_ids("2=1-3,12").unwrap();
        assert_eq!(port, 2);
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec![1, 2, 3, 12]);
        assert!(parse_free_vfc_ids("1-3").is_err());
        assert!(parse_free_vfc_ids("x=1").is_err());
    }

    #[test]
    fn identity_flags_set_the_lpar_or_the_slot_and_must_match_the_ports() {
        let mut config = LparConfig::default_lpar();
        let mac: MacAddress = "02:00:00:00:aa:01".parse().unwrap();
        let wwpn = Wwpn::from_u64(0xaa01);
        let flags = IdentityFlags {
            macs: vec![mac],
            wwpns: vec![wwpn],
            migration_wwpns: vec![Wwpn::from_u64(0xaa81)],
        };
        flags.apply_to(&mut config).unwrap();
        assert_eq!(config.nics[0].mac, mac);
        assert_eq!(config.fc_ports[0].wwpn, wwpn);

        let host = destination_host(&config, &flags, &[], &[], true).unwrap();
        assert_eq!(host.slot.nics[0].mac, mac);
        assert_eq!(host.slot.hbas[0].migration_wwpn, Wwpn::from_u64(0xaa81));
        assert!(host.compensate_clock);
        assert_eq!(host.free_vfc_ids[&0].len(), 255);
        let host = destination_host(
            &config,
            &IdentityFlags::default(),
            &[(0, BTreeSet::from([4]))],
            &[("seg-a".into(), "eth1".into())],
            false,
        )
        .unwrap();
        assert_ne!(host.slot.nics[0].mac, mac, "a derived slot identity");
        assert_eq!(host.free_vfc_ids[&0], BTreeSet::from([4]));
        assert_eq!(host.segments["seg-a"], "eth1");

        let unpaired = IdentityFlags {
            wwpns: vec![wwpn],
            ..IdentityFlags::default()
        };
        let e = unpaired.apply_to(&mut config).unwrap_err();
        assert!(e.message.contains("--migration-wwpn"), "{e}");
        let duplicate = IdentityFlags {
            wwpns: vec![wwpn],
            migration_wwpns: vec![wwpn],
            ..IdentityFlags::default()
        };
        assert!(duplicate.apply_to(&mut config).is_err());
    }
}
