//! The rounds: what is sent in each, how far apart, and the thread that
//! sends them after resume.

use super::socket::PacketSocket;
use super::{AnnounceError, MAX_VLAN_ID, Target, garp_frame, rarp_frame};
use crate::state::MacAddress;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound on rounds: announcing is a burst after resume, not a
/// background beacon; more than this is a configuration mistake.
pub const MAX_ROUNDS: u32 = 100;

/// How many rounds, and how far apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub rounds: u32,
    /// Gap between round 0 and round 1.
    pub initial_gap: Duration,
    /// How much longer each following gap is than the one before.
    pub step: Duration,
}

impl Default for Schedule {
    /// QEMU's: 5 rounds, 50 ms, +100 ms per round.
    fn default() -> Self {
        Schedule {
            rounds: 5,
            initial_gap: Duration::from_millis(50),
            step: Duration::from_millis(100),
        }
    }
}

impl Schedule {
    /// The gap after round `round` (0-based): `initial_gap + round·step`.
    pub fn gap_after(&self, round: u32) -> Duration {
        self.initial_gap
            .saturating_add(self.step.saturating_mul(round))
    }

    /// Time from the first round to the last.
    pub fn span(&self) -> Duration {
        (0..self.rounds.saturating_sub(1))
            .map(|r| self.gap_after(r))
            .fold(Duration::ZERO, Duration::saturating_add)
    }
}

/// What an announcement did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceReport {
    pub interface: String,
    pub ifindex: u32,
    /// Rounds completed: fewer than asked only when cancelled, 0 when there
    /// was nothing to announce.
    pub rounds: u32,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// From the first send to the last.
    pub elapsed: Duration,
    pub cancelled: bool,
}

/// One frame to send each round, and the MAC it announces (for errors).
type Planned = Vec<(MacAddress, Vec<u8>)>;

fn plan(targets: &[Target], rounds: u32) -> Result<Planned, AnnounceError> {
    if rounds == 0 || rounds > MAX_ROUNDS {
        return Err(AnnounceError::InvalidRounds { rounds });
    }
    let mut frames = Vec::with_capacity(targets.len() * 2);
    for t in targets {
        if let Some(vlan) = t.vlan.filter(|&v| v > MAX_VLAN_ID) {
            return Err(AnnounceError::InvalidVlan { mac: t.mac, vlan });
        }
        frames.push((t.mac, rarp_frame(t.mac, t.vlan)));
        if let Some(ip) = t.ipv4 {
            frames.push((t.mac, garp_frame(t.mac, t.vlan, ip)));
        }
    }
    Ok(frames)
}

/// Sends the rounds; `wait` sleeps for a gap and returns `true` to stop early.
fn run(
    socket: &PacketSocket,
    frames: &Planned,
    schedule: Schedule,
    mut wait: impl FnMut(Duration) -> bool,
) -> Result<AnnounceReport, AnnounceError> {
    let start = Instant::now();
    let mut report = AnnounceReport {
        interface: socket.interface.clone(),
        ifindex: socket.ifindex,
        rounds: 0,
        frames_sent: 0,
        bytes_sent: 0,
        elapsed: Duration::ZERO,
        cancelled: false,
    };
    // An LPAR without NICs has nothing to announce: no rounds to wait out.
    if frames.is_empty() {
        return Ok(report);
    }
    for round in 0..schedule.rounds {
        if round > 0 && wait(schedule.gap_after(round - 1)) {
            report.cancelled = true;
            break;
        }
        for (mac, frame) in frames {
            socket.send(frame).map_err(|source| {
                if source.raw_os_error() == Some(libc::ENETDOWN) {
                    AnnounceError::InterfaceDown {
                        interface: socket.interface.clone(),
                    }
                } else {
                    AnnounceError::SendFailed {
                        interface: socket.interface.clone(),
                        mac: *mac,
                        round,
                        source,
                    }
                }
            })?;
            report.frames_sent += 1;
            report.bytes_sent += frame.len() as u64;
        }
        report.rounds = round + 1;
        report.elapsed = start.elapsed();
    }
    Ok(report)
}

/// Announces every MAC on `interface`: one RARP frame per MAC (tagged with
/// its VLAN when set) each round, `rounds` rounds, the gap after round `k`
/// being `initial_gap + k·step`. Blocks for the whole schedule (about 800 ms
/// with QEMU's defaults); the engine uses [`announce_in_background`].
pub fn announce(
    interface: &str,
    macs: &[(MacAddress, Option<u16>)],
    rounds: u32,
    initial_gap: Duration,
    step: Duration,
) -> Result<AnnounceReport, AnnounceError> {
    let targets: Vec<Target> = macs.iter().copied().map(Target::from).collect();
    announce_targets(
        interface,
        &targets,
        Schedule {
            rounds,
            initial_gap,
            step,
        },
    )
}

/// The general form of [`announce`]: each round sends, per target, its RARP
/// frame and, when its IPv4 address is known, a gratuitous ARP.
pub fn announce_targets(
    interface: &str,
    targets: &[Target],
    schedule: Schedule,
) -> Result<AnnounceReport, AnnounceError> {
    let frames = plan(targets, schedule.rounds)?;
    let socket = PacketSocket::open(interface)?;
    run(&socket, &frames, schedule, |gap| {
        thread::sleep(gap);
        false
    })
}

/// An announcement running on its own thread.
#[derive(Debug)]
pub struct AnnounceHandle {
    stop: mpsc::Sender<()>,
    thread: thread::JoinHandle<Result<AnnounceReport, AnnounceError>>,
    interface: String,
}

impl AnnounceHandle {
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the last round and returns what was sent.
    pub fn join(self) -> Result<AnnounceReport, AnnounceError> {
        let interface = self.interface;
        self.thread
            .join()
            .unwrap_or(Err(AnnounceError::ThreadLost { interface }))
    }

    /// Skips the rounds not yet sent (the one in progress completes) and
    /// returns what was sent.
    pub fn cancel(self) -> Result<AnnounceReport, AnnounceError> {
        let _ = self.stop.send(());
        self.join()
    }
}

/// Like [`announce`], but returns as soon as the socket is open: the
/// interface lookup, the permission check and the argument checks are done
/// here, so their errors come back at once; the rounds run on a thread.
/// Dropping the handle lets the rounds finish unobserved.
pub fn announce_in_background(
    interface: &str,
    macs: &[(MacAddress, Option<u16>)],
    rounds: u32,
    initial_gap: Duration,
    step: Duration,
) -> Result<AnnounceHandle, AnnounceError> {
    let targets: Vec<Target> = macs.iter().copied().map(Target::from).collect();
    announce_targets_in_background(
        interface,
        &targets,
        Schedule {
            rounds,
            initial_gap,
            step,
        },
    )
}

/// The general form of [`announce_in_background`] (see [`announce_targets`]).
pub fn announce_targets_in_background(
    interface: &str,
    targets: &[Target],
    schedule: Schedule,
) -> Result<AnnounceHandle, AnnounceError> {
    let frames = plan(targets, schedule.rounds)?;
    let socket = PacketSocket::open(interface)?;
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = thread::Builder::new()
        .name("mac-announce".into())
        .spawn(move || {
            run(&socket, &frames, schedule, |gap| {
                let until = Instant::now() + gap;
                match stopped.recv_timeout(gap) {
                    Ok(()) => true,
                    Err(mpsc::RecvTimeoutError::Timeout) => false,
                    // The handle was dropped: nobody can cancel any more.
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        thread::sleep(until.saturating_duration_since(Instant::now()));
                        false
                    }
                }
            })
        })
        .map_err(|source| AnnounceError::Spawn {
            interface: interface.to_owned(),
            source,
        })?;
    Ok(AnnounceHandle {
        stop,
        thread,
        interface: interface.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const MAC: MacAddress = MacAddress([0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);

    #[test]
    fn each_round_sends_rarp_then_garp_when_the_address_is_known() {
        let ip = Ipv4Addr::new(198, 51, 100, 9);
        let other = MacAddress([0x02, 0, 0, 0, 0, 9]);
        let targets = [
            Target {
                mac: MAC,
                vlan: Some(5),
                ipv4: Some(ip),
            },
            Target::from((other, None)),
        ];
        let frames = plan(&targets, 1).unwrap();
        assert_eq!(
            frames,
            vec![
                (MAC, rarp_frame(MAC, Some(5))),
                (MAC, garp_frame(MAC, Some(5), ip)),
                (other, rarp_frame(other, None)),
            ]
        );
    }

    #[test]
    fn default_schedule_is_qemus() {
        let s = Schedule::default();
        let gaps: Vec<u64> = (0..s.rounds - 1)
            .map(|r| s.gap_after(r).as_millis() as u64)
            .collect();
        assert_eq!(gaps, [50, 150, 250, 350]);
        assert_eq!(s.span(), Duration::from_millis(800));
        let one = Schedule { rounds: 1, ..s };
        assert_eq!(one.span(), Duration::ZERO);
    }

    #[test]
    fn bad_arguments_are_refused_before_any_socket_is_opened() {
        let fast = Duration::from_millis(1);
        let e = announce("lo", &[(MAC, Some(4095))], 1, fast, fast).unwrap_err();
        assert!(
            matches!(e, AnnounceError::InvalidVlan { vlan: 4095, .. }),
            "{e}"
        );
        let e = announce("lo", &[(MAC, None)], 0, fast, fast).unwrap_err();
        assert!(
            matches!(e, AnnounceError::InvalidRounds { rounds: 0 }),
            "{e}"
        );
        let e = announce("lo", &[(MAC, None)], MAX_ROUNDS + 1, fast, fast).unwrap_err();
        assert!(matches!(e, AnnounceError::InvalidRounds { .. }), "{e}");
    }

    #[test]
    fn a_missing_interface_is_named_in_the_error() {
        let fast = Duration::from_millis(1);
        for name in [
            "lpm-no-such-if",
            "",
            "a-name-much-too-long-for-linux",
            "nul\0",
        ] {
            let e = announce(name, &[(MAC, None)], 1, fast, fast).unwrap_err();
            assert!(matches!(e, AnnounceError::InterfaceNotFound { .. }), "{e}");
        }
        let e = announce_in_background("lpm-no-such-if", &[(MAC, None)], 1, fast, fast)
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("\"lpm-no-such-if\" does not exist"),
            "{e}"
        );
    }
}
