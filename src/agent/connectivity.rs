//! The connectivity test (the manual's "Connectivity Test"): the source
//! opens the real migration path to the destination agent, with the same
//! listener, one-time key and authenticated streams as a migration, and
//! measures round trip and bandwidth over it.
//!
//! ```text
//! source agent                                     destination agent
//! connectivity-incoming {path, streams} ─────────▶ PathListener on its path, one-time key
//!        ◀── {address, key, transfer_id, path} ─── thread: accept_streams, then per stream:
//! connect_streams (from the source path)
//! per stream, after the handshake:
//!   u8 P                         ─────────────────▶ (P ≤ MAX_PINGS)
//!   P × { 8 bytes ─▶ ◀─ the same 8 bytes }           echo
//!   payload … until PROBE_BYTES or PROBE_TIME ─────▶ count (≤ MAX_PROBE_BYTES, else close)
//!   shutdown(write)                                  EOF: u64 LE bytes received, close
//!        ◀──────────────────────────────────────────
//! ```
//!
//! The probe's streams are authenticated like a migration's but carry their
//! fixed pattern in clear (see `probe_options`): the item measures the path.
//!
//! Round trip: the pings of stream 0. Bandwidth: bytes the destination
//! confirmed, divided by the time from the first payload byte to the last
//! confirmation, so buffered bytes are not counted as carried.

use super::Agent;
use crate::control::reply::{Connectivity as Measurement, Invitation, ProbeListening};
use crate::control::request;
use crate::control::{Address, Client};
use crate::emg::{Emg, Module, phase};
use crate::transport::{
    DEFAULT_STREAMS, Encryption, MAX_STREAMS, MigrationStream, PathListener, StreamOptions,
    connect_streams_with,
};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Payload the test sends at most ("a few hundred MB")...
pub const PROBE_BYTES: u64 = 256 << 20;
/// ...or for this long at most, whichever ends first (a slow path).
pub const PROBE_TIME: Duration = Duration::from_secs(2);
/// Pings on stream 0.
pub const PINGS: u8 = 10;
/// Most pings the destination echoes (the count is one byte anyway).
pub const MAX_PINGS: u8 = 100;
/// Most payload the destination accepts on one stream: a peer that sends
/// more is not running this test, and is cut off.
pub const MAX_PROBE_BYTES: u64 = 1 << 30;
/// How long the destination waits for the streams, and for any read.
pub const PROBE_IDLE: Duration = Duration::from_secs(10);
/// A passing measurement is reused by validation for this long.
pub const REUSE_FOR: Duration = Duration::from_secs(600);

const CHUNK: usize = 256 << 10;

fn path_error(message: String, action: &str) -> Emg {
    Emg::new(
        Module::Management,
        phase::SOURCE_PATH,
        0x10,
        message,
        action,
    )
}

/// Measurements by (destination agent, source path), for validation.
static RECENT: Mutex<BTreeMap<(String, String), (Instant, Measurement)>> =
    Mutex::new(BTreeMap::new());

/// A measurement to `destination` over `path` younger than [`REUSE_FOR`].
pub fn recent(destination: &str, path: &str) -> Option<Measurement> {
    let map = RECENT.lock().unwrap();
    map.get(&(destination.to_string(), path.to_string()))
        .filter(|(at, _)| at.elapsed() < REUSE_FOR)
        .map(|(_, m)| m.clone())
}

/// Source side: runs the test to the agent at `to` over the path named
/// `path` (or the first); `client` is an authenticated connection to it.
pub fn run(
    agent: &Arc<Agent>,
    client: &mut Client,
    path: Option<&str>,
) -> Result<Measurement, Emg> {
    let here = agent.config.facts();
    let local = here.path(path).cloned().ok_or_else(|| {
        path_error(
            format!(
                "Specified NIC was not found (Src-Blade): host {} has no migration path {}.",
                here.agent,
                path.map_or("at all".into(), |p| format!("'{p}'"))
            ),
            "Set a migration path on the source host (moverd --path) and retry.",
        )
    })?;
    let streams = DEFAULT_STREAMS;
    let bad = |what: String| {
        path_error(
            format!("the destination's connectivity-incoming reply is not valid: {what}"),
            "Install the same lpar-mover release on both hosts.",
        )
    };
    let reply = client.request_or(
        request::ConnectivityIncoming {
            path: path.map(str::to_string),
            streams,
        },
        bad,
    )?;
    let Invitation {
        address,
        key,
        transfer_id,
    } = reply.invitation().map_err(bad)?;
    let mut out = connect_streams_with(
        &local,
        address,
        streams,
        &key,
        transfer_id,
        PROBE_IDLE,
        &probe_options(),
    )
    .map_err(Emg::from)?;
    let io = |e: std::io::Error| {
        path_error(
            format!(
                "connectivity test to {address} over path {} ({}) failed: {e}",
                local.name, local.addr
            ),
            "Check the migration path network between the two hosts (cabling, addresses, \
             firewall) and retry.",
        )
    };
    for s in &out {
        s.tcp().set_read_timeout(Some(PROBE_IDLE)).map_err(io)?;
        s.tcp().set_write_timeout(Some(PROBE_IDLE)).map_err(io)?;
    }
    // Round trip on stream 0.
    let mut rtts = Vec::with_capacity(usize::from(PINGS));
    out[0].write_all(&[PINGS]).map_err(io)?;
    for s in out.iter_mut().skip(1) {
        s.write_all(&[0]).map_err(io)?;
    }
    for i in 0..u64::from(PINGS) {
        let t = Instant::now();
        out[0].write_all(&i.to_le_bytes()).map_err(io)?;
        let mut back = [0u8; 8];
        out[0].read_exact(&mut back).map_err(io)?;
        rtts.push(t.elapsed().as_secs_f64() * 1e3);
        if u64::from_le_bytes(back) != i {
            return Err(io(std::io::Error::other("ping echo does not match")));
        }
    }
    // Bandwidth over all streams.
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = out
        .into_iter()
        .map(|mut s| {
            let sent = sent.clone();
            std::thread::spawn(move || -> std::io::Result<(u64, u64)> {
                let buf = vec![0x5au8; CHUNK];
                let mut mine = 0u64;
                while started.elapsed() < PROBE_TIME
                    && sent.fetch_add(CHUNK as u64, Ordering::Relaxed) < PROBE_BYTES
                {
                    s.write_all(&buf)?;
                    mine += CHUNK as u64;
                }
                s.shutdown(Shutdown::Write)?;
                let mut ack = [0u8; 8];
                s.read_exact(&mut ack)?;
                Ok((mine, u64::from_le_bytes(ack)))
            })
        })
        .collect();
    let mut bytes = 0;
    for w in workers {
        let (mine, confirmed) = w
            .join()
            .map_err(|_| io(std::io::Error::other("sender thread panicked")))?
            .map_err(io)?;
        if mine != confirmed {
            return Err(io(std::io::Error::other(format!(
                "sent {mine} bytes on a stream, the destination confirmed {confirmed}"
            ))));
        }
        bytes += confirmed;
    }
    let seconds = started.elapsed().as_secs_f64();
    let m = Measurement {
        source_path: local.name.clone(),
        source_addr: local.addr.to_string(),
        destination_agent: client.greeting().agent.clone(),
        destination_path: reply.path,
        destination_addr: address.ip().to_string(),
        streams,
        rtt_min_ms: rtts.iter().copied().fold(f64::INFINITY, f64::min),
        rtt_avg_ms: rtts.iter().sum::<f64>() / rtts.len() as f64,
        bytes,
        seconds,
        bits_per_s: bytes as f64 * 8.0 / seconds,
    };
    log::info!(
        "connectivity test to {} over {}: rtt {:.3} ms, {:.2} Gbit/s ({} MiB in {:.2} s)",
        m.destination_agent,
        m.source_path,
        m.rtt_avg_ms,
        m.bits_per_s / 1e9,
        bytes >> 20,
        seconds
    );
    RECENT.lock().unwrap().insert(
        (m.destination_agent.clone(), m.source_path.clone()),
        (Instant::now(), m.clone()),
    );
    Ok(m)
}

/// `connectivity-test`: the operator's command on the source agent.
pub fn connectivity_test(
    agent: &Arc<Agent>,
    to: &str,
    path: Option<&str>,
) -> Result<Measurement, Emg> {
    let mut client = open_peer(agent, to)?;
    run(agent, &mut client, path)
}

/// An authenticated connection to the agent at `to`.
pub fn open_peer(agent: &Agent, to: &str) -> Result<Client, Emg> {
    let address = Address::parse(to).map_err(|m| {
        crate::control::protocol_error(
            crate::control::cause::BAD_ARGUMENTS,
            m,
            "Give the destination agent as host:port or a socket path.",
        )
    })?;
    agent.open_peer(&address, Module::Management)
}

/// Destination side (`connectivity-incoming`): listens on the path named
/// `path` if this host has one (else its first), and serves one test.
pub fn incoming(
    agent: &Arc<Agent>,
    path: Option<&str>,
    streams: usize,
) -> Result<ProbeListening, Emg> {
    if streams == 0 || streams > MAX_STREAMS {
        return Err(crate::control::protocol_error(
            crate::control::cause::BAD_ARGUMENTS,
            format!("{streams} streams: the migration path takes 1 to {MAX_STREAMS}"),
            "Choose a stream count from 1 to 64.",
        ));
    }
    let here = agent.config.facts();
    let local = here
        .path(path)
        .or_else(|| here.path(None))
        .cloned()
        .ok_or_else(|| {
            Emg::new(
                Module::Management,
                phase::DESTINATION_PATH,
                0x03,
                format!(
                    "Specified NIC was not found (Dst-Blade): host {} has no migration path.",
                    here.agent
                ),
                "Check the setting of a migration path on the destination host and retry.",
            )
        })?;
    let listener = PathListener::bind_with(&local, 0, probe_options(), Default::default())
        .map_err(Emg::from)?;
    let key = listener.issue_key().map_err(Emg::from)?;
    let mut id = [0u8; 8];
    crate::transport::os_random(&mut id)?;
    let transfer_id = u64::from_le_bytes(id);
    let reply = ProbeListening {
        address: listener.local_addr().to_string(),
        key: key.to_hex(),
        transfer_id,
        path: local.name.clone(),
    };
    std::thread::Builder::new()
        .name("probe-accept".into())
        .spawn(move || {
            let streams = match listener.accept_streams(
                streams,
                &key,
                transfer_id,
                Instant::now() + PROBE_IDLE,
            ) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("connectivity test: {e}");
                    return;
                }
            };
            let workers: Vec<_> = streams
                .into_iter()
                .map(|s| std::thread::spawn(move || serve_stream(s)))
                .collect();
            for w in workers {
                match w.join() {
                    Ok(Ok(n)) => log::debug!("connectivity test: {n} bytes on a stream"),
                    Ok(Err(e)) => log::warn!("connectivity test stream: {e}"),
                    Err(_) => log::warn!("connectivity test stream thread panicked"),
                }
            }
        })
        .map_err(|e| {
            Emg::new(
                Module::Management,
                phase::DESTINATION_PATH,
                0x11,
                format!("cannot start the connectivity test thread: {e}"),
                "The host is short of threads or memory; retry later.",
            )
        })?;
    Ok(reply)
}

/// The probe's streams: authenticated by their one-time key like a
/// migration's, but in clear. Their payload is a fixed pattern, never guest
/// memory, and the item measures the path (the manual's 1 Gbit/s), not how
/// fast this host's CPUs run AES: on a loaded host the encrypted rate would
/// refuse a path that is fine.
fn probe_options() -> StreamOptions {
    StreamOptions {
        encryption: Encryption::InsecurePlaintext,
        ..StreamOptions::default()
    }
}

/// One stream of the test, destination side.
fn serve_stream(mut s: MigrationStream) -> std::io::Result<u64> {
    s.tcp().set_read_timeout(Some(PROBE_IDLE))?;
    s.tcp().set_write_timeout(Some(PROBE_IDLE))?;
    serve_probe(&mut s)
}

/// The destination's half of one test stream over any byte stream (the
/// source's bytes are outside input): echo the pings, count the payload to
/// EOF, confirm the count. Errors, never panics, on anything else.
pub fn serve_probe<S: Read + Write>(s: &mut S) -> std::io::Result<u64> {
    let mut count = [0u8; 1];
    s.read_exact(&mut count)?;
    if count[0] > MAX_PINGS {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("{} pings asked, at most {MAX_PINGS}", count[0]),
        ));
    }
    for _ in 0..count[0] {
        let mut ping = [0u8; 8];
        s.read_exact(&mut ping)?;
        s.write_all(&ping)?;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                if total > MAX_PROBE_BYTES {
                    return Err(std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!("more than {MAX_PROBE_BYTES} bytes on one stream"),
                    ));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    s.write_all(&total.to_le_bytes())?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input`, collects what is written.
    struct Pipe<'a> {
        input: &'a [u8],
        output: Vec<u8>,
    }

    impl Read for Pipe<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Pipe<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_destination_echoes_pings_and_confirms_the_payload() {
        let mut input = vec![2u8];
        input.extend(7u64.to_le_bytes());
        input.extend(9u64.to_le_bytes());
        input.extend([0x5a; 1000]);
        let mut p = Pipe {
            input: &input,
            output: Vec::new(),
        };
        assert_eq!(serve_probe(&mut p).unwrap(), 1000);
        let mut want = 7u64.to_le_bytes().to_vec();
        want.extend(9u64.to_le_bytes());
        want.extend(1000u64.to_le_bytes());
        assert_eq!(p.output, want);
    }

    #[test]
    fn too_many_pings_or_a_short_ping_are_errors() {
        let mut p = Pipe {
            input: &[MAX_PINGS + 1],
            output: Vec::new(),
        };
        assert_eq!(
            serve_probe(&mut p).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
        let mut p = Pipe {
            input: &[1, 0, 0],
            output: Vec::new(),
        };
        assert!(serve_probe(&mut p).is_err());
        let mut p = Pipe {
            input: &[],
            output: Vec::new(),
        };
        assert!(serve_probe(&mut p).is_err());
    }
}
