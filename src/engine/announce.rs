//! Announcing the LPAR's logical MACs after it resumes on the destination.
//!
//! A switch learns which port a MAC lives behind from the source address of
//! the frames it sees. Right after switchover the LPAR is behind the
//! destination host's port, but every switch on the segment still forwards
//! its traffic to the source host until the LPAR happens to transmit. So the
//! destination agent transmits on the LPAR's behalf: a few broadcast frames
//! per logical MAC, sourced from that MAC, in rounds spaced further and
//! further apart (a switch that misses one round, or is still reconverging,
//! catches a later one). This is what QEMU's self-announce does after an
//! incoming migration.
//!
//! # Frames
//!
//! The default frame is a RARP *request reverse* (RFC 903), as QEMU sends:
//! it asks nothing of any host (there are no RARP servers left to answer),
//! carries no IPv4 address (the agent does not know the guest's), and is
//! broadcast, so every switch on the segment sees it. All multi-byte fields
//! are big-endian.
//!
//! ```text
//!  offset  len  field                        value
//!  ──────  ───  ───────────────────────────  ────────────────────────────
//!       0    6  Ethernet destination         ff:ff:ff:ff:ff:ff (broadcast)
//!       6    6  Ethernet source              the LPAR's MAC
//!      12    2  EtherType                    0x8035 (RARP)
//!      ─── RARP (RFC 903, the RFC 826 packet with new opcodes) ───
//!      14    2  ar$hrd  hardware type        0x0001 (Ethernet)
//!      16    2  ar$pro  protocol type        0x0800 (IPv4)
//!      18    1  ar$hln  hardware addr length 6
//!      19    1  ar$pln  protocol addr length 4
//!      20    2  ar$op   opcode               0x0003 (request reverse)
//!      22    6  ar$sha  sender hardware addr the LPAR's MAC
//!      28    4  ar$spa  sender protocol addr 0.0.0.0 (unknown)
//!      32    6  ar$tha  target hardware addr the LPAR's MAC (RFC 903:
//!                                            the address being asked about)
//!      38    4  ar$tpa  target protocol addr 0.0.0.0 (unknown)
//!      42   18  padding                      zeros, up to the 60-byte
//!                                            minimum (64 with the FCS the
//!                                            NIC appends)
//!      60       end
//! ```
//!
//! When the LPAR's IPv4 address is known, a gratuitous ARP (an RFC 5227
//! "ARP announcement", an RFC 826 request for one's own address) also
//! refreshes the neighbours' ARP caches. It differs from the RARP frame only
//! in these fields:
//!
//! ```text
//!      12    2  EtherType                    0x0806 (ARP)
//!      20    2  ar$op                        0x0001 (request)
//!      28    4  ar$spa                       the LPAR's IPv4 address
//!      32    6  ar$tha                       00:00:00:00:00:00 (RFC 5227:
//!                                            ignored, should be zero)
//!      38    4  ar$tpa                       the LPAR's IPv4 address
//! ```
//!
//! A NIC in VLAN mode `Tag` puts an 802.1Q tag between the source address
//! and the EtherType; everything after it moves 4 bytes down:
//!
//! ```text
//!      12    2  TPID                         0x8100 (802.1Q)
//!      14    2  TCI                          PCP 0 (3 bits) │ DEI 0 (1 bit)
//!                                            │ VLAN ID (12 bits)
//!      16    2  EtherType                    0x8035 or 0x0806
//!      18   28  the RARP/ARP packet as above
//!      46   18  padding
//!      64       end
//! ```
//!
//! The tagged frame keeps the same 18 bytes of padding, so a switch that
//! strips the tag on an access port still forwards a frame of the 60-byte
//! minimum without re-padding it. VLAN modes `Untag` and `Undef` send
//! untagged frames (the switch port owns the VLAN); see [`vlan_tag_for`].
//!
//! # Rounds
//!
//! ```text
//!  round:   0        1              2                    3         …
//!  send:    █────────█──────────────█────────────────────█─── …
//!  gap:       initial   initial+step   initial+2·step
//! ```
//!
//! Every round sends, for every [`Target`] in order, its RARP frame and then,
//! when its IPv4 address is known, its gratuitous ARP. QEMU's defaults
//! ([`Schedule::default`]): 5 rounds, 50 ms first gap, 100 ms more each
//! round, so 50 + 150 + 250 + 350 = 800 ms from the first round to the last.
//! The engine must not wait that long after resume:
//! [`announce_in_background`] (and [`announce_targets_in_background`]) opens
//! the socket (so a missing interface or a missing capability is reported at
//! once) and sends the rounds from a thread of its own, which the returned
//! [`AnnounceHandle`] can join or cancel between rounds.
//!
//! # Socket
//!
//! One `AF_PACKET`/`SOCK_RAW` socket per announcement, protocol 0 (it never
//! receives), bound to the interface's index; frames go out exactly as
//! built, without the FCS. Opening it needs `CAP_NET_RAW`.

use crate::emg::{Emg, Module, phase};
use crate::state::{LogicalNic, MacAddress, VlanMode};
use std::ffi::CString;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// EtherType of ARP (RFC 826).
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of RARP (RFC 903).
pub const ETHERTYPE_RARP: u16 = 0x8035;
/// EtherType of IPv4, the protocol address space the frames name.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Tag protocol identifier of an 802.1Q customer VLAN tag.
pub const TPID_8021Q: u16 = 0x8100;
/// `ar$hrd` for Ethernet (RFC 826).
pub const ARP_HRD_ETHERNET: u16 = 1;
/// `ar$op` of an ARP request (RFC 826).
pub const ARP_OP_REQUEST: u16 = 1;
/// `ar$op` of a RARP request reverse (RFC 903).
pub const RARP_OP_REQUEST_REVERSE: u16 = 3;
/// The shortest Ethernet frame without its FCS; shorter frames are runts.
pub const MIN_FRAME_LEN: usize = 60;
/// Length of the untagged frames this module builds.
pub const UNTAGGED_FRAME_LEN: usize = MIN_FRAME_LEN;
/// Length of the 802.1Q-tagged frames this module builds.
pub const TAGGED_FRAME_LEN: usize = MIN_FRAME_LEN + 4;
/// Highest VLAN ID a tag may carry: 4095 (0xfff) is reserved by 802.1Q.
pub const MAX_VLAN_ID: u16 = 4094;
/// Upper bound on rounds: announcing is a burst after resume, not a
/// background beacon; more than this is a configuration mistake.
pub const MAX_ROUNDS: u32 = 100;

const BROADCAST: [u8; 6] = [0xff; 6];
const ARP_LEN: usize = 28;

/// The VLAN tag a NIC's frames carry: `Some(id)` only in mode `Tag`.
pub fn vlan_tag_for(mode: VlanMode, vlan_id: u16) -> Option<u16> {
    match mode {
        VlanMode::Tag => Some(vlan_id),
        VlanMode::Untag | VlanMode::Undef => None,
    }
}

/// Ethernet header (with the tag when `vlan` is set) + the 28-byte ARP body,
/// padded so the untagged equivalent is [`MIN_FRAME_LEN`] bytes.
fn frame(
    ethertype: u16,
    op: u16,
    mac: MacAddress,
    vlan: Option<u16>,
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let len = if vlan.is_some() {
        TAGGED_FRAME_LEN
    } else {
        UNTAGGED_FRAME_LEN
    };
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&mac.0);
    if let Some(id) = vlan {
        f.extend_from_slice(&TPID_8021Q.to_be_bytes());
        // PCP 0, DEI 0; the ID is masked so an out-of-range value cannot
        // spill into PCP/DEI (callers validate it first).
        f.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    let arp_start = f.len();
    f.extend_from_slice(&ARP_HRD_ETHERNET.to_be_bytes());
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f.push(6);
    f.push(4);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    debug_assert_eq!(f.len() - arp_start, ARP_LEN);
    f.resize(len, 0);
    f
}

/// The RARP request-reverse frame announcing `mac` (layout in the module
/// doc), tagged with `vlan` when set. Use [`announce`] to validate the VLAN
/// ID; here an ID above 4095 is masked to 12 bits.
pub fn rarp_frame(mac: MacAddress, vlan: Option<u16>) -> Vec<u8> {
    frame(
        ETHERTYPE_RARP,
        RARP_OP_REQUEST_REVERSE,
        mac,
        vlan,
        Ipv4Addr::UNSPECIFIED,
        mac.0,
        Ipv4Addr::UNSPECIFIED,
    )
}

/// The gratuitous ARP (RFC 5227 announcement) for `mac` owning `ip`
/// (layout in the module doc), tagged with `vlan` when set.
pub fn garp_frame(mac: MacAddress, vlan: Option<u16>, ip: Ipv4Addr) -> Vec<u8> {
    frame(ETHERTYPE_ARP, ARP_OP_REQUEST, mac, vlan, ip, [0; 6], ip)
}

/// One logical MAC to announce: its VLAN tag (mode `Tag` only) and, when
/// the agent knows it, the LPAR's IPv4 address on that NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub mac: MacAddress,
    pub vlan: Option<u16>,
    /// When set, each round also carries a gratuitous ARP for this address,
    /// right after the RARP frame.
    pub ipv4: Option<Ipv4Addr>,
}

impl From<(MacAddress, Option<u16>)> for Target {
    fn from((mac, vlan): (MacAddress, Option<u16>)) -> Self {
        Target {
            mac,
            vlan,
            ipv4: None,
        }
    }
}

impl From<&LogicalNic> for Target {
    /// The NIC's MAC, tagged per its VLAN mode ([`vlan_tag_for`]).
    fn from(nic: &LogicalNic) -> Self {
        Target {
            mac: nic.mac,
            vlan: vlan_tag_for(nic.vlan_mode, nic.vlan_id),
            ipv4: None,
        }
    }
}

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

/// Why MACs could not be announced, in words for the operator.
#[derive(Debug)]
pub enum AnnounceError {
    /// No interface of that name in this network namespace.
    InterfaceNotFound { interface: String },
    /// A VLAN ID outside 0..=4094.
    InvalidVlan { mac: MacAddress, vlan: u16 },
    /// Rounds outside 1..=[`MAX_ROUNDS`].
    InvalidRounds { rounds: u32 },
    /// Opening the raw socket was refused: the agent lacks `CAP_NET_RAW`.
    NoPermission { interface: String },
    /// The interface exists but is down.
    InterfaceDown { interface: String },
    /// Opening or binding the raw socket failed for another reason.
    Socket {
        interface: String,
        source: io::Error,
    },
    /// Sending one frame failed.
    SendFailed {
        interface: String,
        mac: MacAddress,
        round: u32,
        source: io::Error,
    },
    /// The thread that sends the rounds could not be started.
    Spawn {
        interface: String,
        source: io::Error,
    },
    /// The sending thread died without a result.
    ThreadLost { interface: String },
}

impl fmt::Display for AnnounceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InterfaceNotFound { interface } => write!(
                f,
                "cannot announce the LPAR's MAC addresses: network interface {interface:?} \
                 does not exist on this host"
            ),
            Self::InvalidVlan { mac, vlan } => write!(
                f,
                "cannot announce MAC {mac}: VLAN ID {vlan} is outside 0..={MAX_VLAN_ID}"
            ),
            Self::InvalidRounds { rounds } => write!(
                f,
                "cannot announce the LPAR's MAC addresses: {rounds} rounds asked, \
                 1..={MAX_ROUNDS} allowed"
            ),
            Self::NoPermission { interface } => write!(
                f,
                "cannot announce the LPAR's MAC addresses on {interface:?}: opening a raw \
                 packet socket was refused (the agent needs CAP_NET_RAW)"
            ),
            Self::InterfaceDown { interface } => write!(
                f,
                "cannot announce the LPAR's MAC addresses: network interface {interface:?} \
                 is down"
            ),
            Self::Socket { interface, source } => write!(
                f,
                "cannot announce the LPAR's MAC addresses: opening a raw packet socket on \
                 {interface:?} failed: {source}"
            ),
            Self::SendFailed {
                interface,
                mac,
                round,
                source,
            } => write!(
                f,
                "announcing MAC {mac} on {interface:?} failed in round {round}: {source}"
            ),
            Self::Spawn { interface, source } => write!(
                f,
                "cannot start the thread that announces the LPAR's MAC addresses on \
                 {interface:?}: {source}"
            ),
            Self::ThreadLost { interface } => write!(
                f,
                "the thread announcing the LPAR's MAC addresses on {interface:?} ended \
                 without a result"
            ),
        }
    }
}

impl std::error::Error for AnnounceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Socket { source, .. }
            | Self::SendFailed { source, .. }
            | Self::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What every announce EMG says about where the LPAR stands.
const STILL_RUNNING: &str = "The LPAR is running on the destination; until its MACs are \
     announced, switches may keep sending its traffic to the source host's port until \
     their MAC tables age out or the LPAR transmits.";

impl From<AnnounceError> for Emg {
    fn from(e: AnnounceError) -> Emg {
        let message = e.to_string();
        let (cause, detail, action) = match &e {
            AnnounceError::InterfaceNotFound { .. } => (
                0x01,
                0,
                "Check the network segment's interface name in the destination host's \
                 configuration (ip link show)."
                    .to_owned(),
            ),
            AnnounceError::InvalidVlan { vlan, .. } => (
                0x02,
                u64::from(*vlan),
                "Correct the logical NIC's VLAN ID (0 to 4094).".to_owned(),
            ),
            AnnounceError::InvalidRounds { rounds } => (
                0x03,
                u64::from(*rounds),
                format!("Set the announce rounds between 1 and {MAX_ROUNDS}."),
            ),
            AnnounceError::NoPermission { .. } => (
                0x04,
                0,
                "Run moverd as root or grant it CAP_NET_RAW (setcap cap_net_raw+ep, or \
                 AmbientCapabilities=CAP_NET_RAW in its unit)."
                    .to_owned(),
            ),
            AnnounceError::InterfaceDown { .. } => (
                0x05,
                0,
                "Bring the network segment's interface up (ip link set <name> up) and check \
                 its cabling."
                    .to_owned(),
            ),
            AnnounceError::Socket { source, .. } => (
                0x06,
                source.raw_os_error().unwrap_or(0) as u64,
                "Check the destination host's network configuration.".to_owned(),
            ),
            AnnounceError::SendFailed { round, .. } => (
                0x07,
                u64::from(*round),
                "Check the network segment's interface and link on the destination host."
                    .to_owned(),
            ),
            AnnounceError::Spawn { .. } => (
                0x09,
                0,
                "Check the destination host's process and memory limits for moverd.".to_owned(),
            ),
            AnnounceError::ThreadLost { .. } => (
                0x08,
                0,
                "Report this as a bug with the agent's log.".to_owned(),
            ),
        };
        Emg::new(
            Module::MoverDestination,
            phase::ACTIVATE,
            cause,
            message,
            format!("{action} {STILL_RUNNING}"),
        )
        .detail(detail)
    }
}

/// An `AF_PACKET` raw socket bound to one interface, for sending only.
struct PacketSocket {
    fd: OwnedFd,
    interface: String,
    ifindex: u32,
}

impl PacketSocket {
    fn open(interface: &str) -> Result<Self, AnnounceError> {
        let not_found = || AnnounceError::InterfaceNotFound {
            interface: interface.to_owned(),
        };
        // IFNAMSIZ is 16 with the NUL: a longer name cannot exist.
        if interface.is_empty() || interface.len() >= libc::IFNAMSIZ {
            return Err(not_found());
        }
        let name = CString::new(interface).map_err(|_| not_found())?;
        // SAFETY: `name` is a valid NUL-terminated string that outlives the
        // call; if_nametoindex only reads it.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(not_found());
        }
        // SAFETY: plain syscall with constant arguments; the result is
        // checked before use. Protocol 0: this socket receives nothing.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => AnnounceError::NoPermission {
                    interface: interface.to_owned(),
                },
                _ => AnnounceError::Socket {
                    interface: interface.to_owned(),
                    source: err,
                },
            });
        }
        // SAFETY: `raw` is a freshly opened descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a properly initialised sockaddr_ll and the length
        // passed is its size; bind only reads it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                // The interface vanished between the lookup and the bind.
                Some(libc::ENODEV) => not_found(),
                _ => AnnounceError::Socket {
                    interface: interface.to_owned(),
                    source: err,
                },
            });
        }
        Ok(PacketSocket {
            fd,
            interface: interface.to_owned(),
            ifindex,
        })
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is a live slice and its length is passed with it;
        // send only reads it.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {n} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }
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

    const MAC: MacAddress = MacAddress([0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);

    /// The untagged RARP frame written out field by field from RFC 903 /
    /// RFC 826, independently of the builder.
    #[rustfmt::skip]
    const RARP_UNTAGGED: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff,     // destination: broadcast
        0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,     // source: the MAC
        0x80, 0x35,                             // EtherType RARP
        0x00, 0x01,                             // ar$hrd Ethernet
        0x08, 0x00,                             // ar$pro IPv4
        0x06,                                   // ar$hln
        0x04,                                   // ar$pln
        0x00, 0x03,                             // ar$op request reverse
        0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,     // ar$sha
        0x00, 0x00, 0x00, 0x00,                 // ar$spa
        0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,     // ar$tha
        0x00, 0x00, 0x00, 0x00,                 // ar$tpa
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn rarp_frame_matches_the_rfc_layout_byte_for_byte() {
        assert_eq!(rarp_frame(MAC, None), RARP_UNTAGGED);
    }

    #[test]
    fn tagged_rarp_frame_inserts_the_8021q_tag_after_the_source() {
        #[rustfmt::skip]
        let expected: [u8; 64] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
            0x81, 0x00,                         // TPID 802.1Q
            0x0f, 0xa5,                         // TCI: PCP 0, DEI 0, VID 4005
            0x80, 0x35,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x03,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
            0x00, 0x00, 0x00, 0x00,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
            0x00, 0x00, 0x00, 0x00,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(rarp_frame(MAC, Some(4005)), expected);
        // Stripping the tag gives back the untagged frame exactly.
        let mut stripped = expected.to_vec();
        stripped.drain(12..16);
        assert_eq!(stripped, RARP_UNTAGGED);
    }

    #[test]
    fn vlan_id_cannot_spill_into_priority_bits() {
        let f = rarp_frame(MAC, Some(0xffff));
        assert_eq!(&f[14..16], &[0x0f, 0xff]);
    }

    #[test]
    fn garp_frame_matches_the_rfc_layout_byte_for_byte() {
        #[rustfmt::skip]
        let expected: [u8; 60] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
            0x08, 0x06,                         // EtherType ARP
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04,
            0x00, 0x01,                         // ar$op request
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, // ar$sha
            192, 0, 2, 7,                       // ar$spa
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ar$tha zero (RFC 5227)
            192, 0, 2, 7,                       // ar$tpa = ar$spa
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let ip = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(garp_frame(MAC, None, ip), expected);
        let tagged = garp_frame(MAC, Some(1), ip);
        assert_eq!(tagged.len(), TAGGED_FRAME_LEN);
        assert_eq!(&tagged[12..18], &[0x81, 0x00, 0x00, 0x01, 0x08, 0x06]);
        assert_eq!(&tagged[18..], &expected[14..]);
    }

    #[test]
    fn only_tag_mode_tags() {
        assert_eq!(vlan_tag_for(VlanMode::Tag, 12), Some(12));
        assert_eq!(vlan_tag_for(VlanMode::Untag, 12), None);
        assert_eq!(vlan_tag_for(VlanMode::Undef, 0), None);
    }

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
    fn a_nic_is_tagged_per_its_vlan_mode() {
        let mut nic = crate::state::LogicalNic {
            vnic_number: 1,
            mac: MAC,
            mac_set_manually: false,
            vlan_mode: VlanMode::Tag,
            vlan_id: 300,
            device_type: crate::state::VnicDeviceType::Nic1,
            promiscuous: false,
            inter_lpar_filtering: false,
            mmio: None,
        };
        assert_eq!(Target::from(&nic).vlan, Some(300));
        nic.vlan_mode = VlanMode::Untag;
        assert_eq!(
            Target::from(&nic),
            Target {
                mac: MAC,
                vlan: None,
                ipv4: None
            }
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

    #[test]
    fn errors_become_destination_activate_emgs_with_an_action() {
        let cases = [
            AnnounceError::InterfaceNotFound {
                interface: "eth9".into(),
            },
            AnnounceError::NoPermission {
                interface: "eth0".into(),
            },
            AnnounceError::SendFailed {
                interface: "eth0".into(),
                mac: MAC,
                round: 3,
                source: io::Error::from_raw_os_error(libc::ENOBUFS),
            },
        ];
        let mut causes = Vec::new();
        for e in cases {
            let text = e.to_string();
            let emg: Emg = e.into();
            assert_eq!(emg.module, Module::MoverDestination);
            assert_eq!(emg.phase, phase::ACTIVATE);
            assert_eq!(emg.message, text);
            assert!(emg.action.contains("running on the destination"), "{emg}");
            assert!(!emg.needs_recovery);
            causes.push(emg.cause);
        }
        causes.dedup();
        assert_eq!(causes.len(), 3, "each situation has its own cause code");
        let emg: Emg = AnnounceError::NoPermission {
            interface: "eth0".into(),
        }
        .into();
        assert!(emg.message.contains("CAP_NET_RAW"), "{emg}");
        assert!(emg.action.contains("CAP_NET_RAW"), "{emg}");
    }
}
