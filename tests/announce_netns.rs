//! MAC announcement on a real link: two fresh network namespaces joined by a
//! veth pair; the announcement is sent from one end (`a`) and captured raw on
//! the other (`b`) with an `AF_PACKET` socket, then compared byte for byte
//! with the frames the RFC layouts give.
//!
//! ```text
//!   netns <run>-a                      netns <run>-b
//!   ┌─────────────────────┐            ┌─────────────────────┐
//!   │ announce() ── veth a ════════════ veth b ── capture    │
//!   └─────────────────────┘            └─────────────────────┘
//! ```
//!
//! This kernel has no 802.1Q VLAN devices, so tagged frames are checked as
//! they cross the untagged veth: the receive path moves the tag into the
//! packet's metadata, and the capture puts it back from `PACKET_AUXDATA`
//! (as libpcap does).
//!
//! Needs root and `ip` (iproute2). Skips with the reason otherwise; CI runs
//! as root with iproute2 installed and must not skip.

use lpar_mover::emg::{Emg, Module};
use lpar_mover::engine::announce::{
    AnnounceError, Schedule, TAGGED_FRAME_LEN, Target, UNTAGGED_FRAME_LEN, announce,
    announce_in_background, announce_targets, garp_frame, rarp_frame,
};
use lpar_mover::state::MacAddress;
use std::ffi::CString;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

macro_rules! require_root_and_ip {
    ($test:literal) => {
        if let Some(reason) = lpar_mover::testbed::skip_reason() {
            lpar_mover::skip::skip(concat!("announce_netns::", $test), &reason);
            return;
        }
    };
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and the veth between them; removed on drop, even when the
/// test fails (deleting a namespace deletes its veth end, and with it both).
struct Lab {
    ns_a: String,
    ns_b: String,
    veth_a: String,
    veth_b: String,
}

impl Lab {
    fn new() -> Lab {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let run = format!("{}x{n}", std::process::id());
        // Interface names must stay under 16 bytes: "an" + pid + "x" + n + side.
        let lab = Lab {
            ns_a: format!("lpm-announce-{run}-a"),
            ns_b: format!("lpm-announce-{run}-b"),
            veth_a: format!("an{run}a"),
            veth_b: format!("an{run}b"),
        };
        ip(&["netns", "add", &lab.ns_a]);
        ip(&["netns", "add", &lab.ns_b]);
        ip(&[
            "link",
            "add",
            "name",
            &lab.veth_a,
            "netns",
            &lab.ns_a,
            "type",
            "veth",
            "peer",
            "name",
            &lab.veth_b,
            "netns",
            &lab.ns_b,
        ]);
        ip(&["-n", &lab.ns_a, "link", "set", &lab.veth_a, "up"]);
        ip(&["-n", &lab.ns_b, "link", "set", &lab.veth_b, "up"]);
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`; only that
/// thread moves, the test's other threads stay where they are.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: `file` is an open namespace file; setns only reads the fd
        // and switches this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// A raw capture on one interface that keeps only frames from `sources`,
/// with any VLAN tag the receive path stripped put back in place.
struct Capture {
    fd: OwnedFd,
    sources: Vec<MacAddress>,
}

impl Capture {
    fn open(interface: &str, sources: Vec<MacAddress>) -> Capture {
        let eth_p_all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscall; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(eth_p_all)) };
        assert!(
            raw >= 0,
            "capture socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = CString::new(interface).unwrap();
        // SAFETY: `name` is NUL-terminated and outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "no interface {interface}");
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = eth_p_all;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is initialised and its size is passed with it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind capture: {}", std::io::Error::last_os_error());
        let one: libc::c_int = 1;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: option values are live locals of the size passed.
        unsafe {
            assert_eq!(
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_AUXDATA,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                ),
                0
            );
            assert_eq!(
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                ),
                0
            );
        }
        Capture { fd, sources }
    }

    /// One frame as it was on the wire (tag restored), or `None` on timeout.
    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        // u64 elements keep the control buffer aligned for cmsghdr.
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr; the pointers set below are to
        // live locals with their lengths.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `msg` describes live buffers of the lengths it states.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ),
                "recvmsg: {e}"
            );
            return None;
        }
        let mut frame = buf[..n as usize].to_vec();
        // SAFETY: the CMSG_* macros walk the control buffer the kernel just
        // filled, within msg_controllen; the auxdata is read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    let aux: libc::tpacket_auxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                            aux.tp_vlan_tpid
                        } else {
                            0x8100
                        };
                        let mut tag = tpid.to_be_bytes().to_vec();
                        tag.extend_from_slice(&aux.tp_vlan_tci.to_be_bytes());
                        frame.splice(12..12, tag);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Some(frame)
    }

    /// Frames from the watched sources until `want` have arrived (then a
    /// message on `full`, if given), then a further `quiet` to catch any
    /// extra one; gives up at `deadline`.
    fn collect(
        &self,
        want: usize,
        quiet: Duration,
        deadline: Duration,
        full: Option<mpsc::Sender<()>>,
    ) -> Vec<Vec<u8>> {
        let start = Instant::now();
        let mut got = Vec::new();
        let mut full_at: Option<Instant> = None;
        while start.elapsed() < deadline && full_at.is_none_or(|t| t.elapsed() < quiet) {
            if let Some(f) = self.recv() {
                let from_watched =
                    f.len() >= 12 && self.sources.iter().any(|m| m.0[..] == f[6..12]);
                if from_watched {
                    got.push(f);
                    if got.len() >= want && full_at.is_none() {
                        full_at = Some(Instant::now());
                        if let Some(full) = &full {
                            let _ = full.send(());
                        }
                    }
                }
            }
        }
        got
    }
}

fn mac(last: u8) -> MacAddress {
    MacAddress([0x02, 0x4c, 0x50, 0x41, 0x52, last])
}

/// Opens the capture in namespace `b`, says when it is ready, and returns
/// what it saw.
fn capture_in_b(
    lab: &Lab,
    sources: Vec<MacAddress>,
    want: usize,
    quiet: Duration,
) -> thread::JoinHandle<Vec<Vec<u8>>> {
    capture_in_b_telling(lab, sources, want, quiet, None)
}

/// [`capture_in_b`], sending on `full` once `want` frames have arrived.
fn capture_in_b_telling(
    lab: &Lab,
    sources: Vec<MacAddress>,
    want: usize,
    quiet: Duration,
    full: Option<mpsc::Sender<()>>,
) -> thread::JoinHandle<Vec<Vec<u8>>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let veth_b = lab.veth_b.clone();
    let handle = in_netns(&lab.ns_b, move || {
        let capture = Capture::open(&veth_b, sources);
        ready_tx.send(()).unwrap();
        capture.collect(want, quiet, Duration::from_secs(10), full)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("capture ready");
    handle
}

#[test]
fn announced_macs_reach_the_peer_as_exact_rarp_frames_every_round() {
    require_root_and_ip!("announced_macs_reach_the_peer_as_exact_rarp_frames_every_round");
    let lab = Lab::new();
    let macs = vec![(mac(1), None), (mac(2), Some(100)), (mac(3), Some(4094))];
    let rounds = 3;
    let want = macs.len() * rounds as usize;
    let capture = capture_in_b(
        &lab,
        macs.iter().map(|m| m.0).collect(),
        want,
        Duration::from_millis(300),
    );

    let sender_macs = macs.clone();
    let veth_a = lab.veth_a.clone();
    let report = in_netns(&lab.ns_a, move || {
        announce(
            &veth_a,
            &sender_macs,
            rounds,
            Duration::from_millis(5),
            Duration::from_millis(5),
        )
    })
    .join()
    .unwrap()
    .expect("announce");

    assert_eq!(report.interface, lab.veth_a);
    assert_eq!(report.rounds, rounds);
    assert_eq!(report.frames_sent, want as u64);
    assert_eq!(
        report.bytes_sent,
        u64::from(rounds) * (UNTAGGED_FRAME_LEN + 2 * TAGGED_FRAME_LEN) as u64
    );
    assert!(!report.cancelled);

    let frames = capture.join().unwrap();
    let expected: Vec<Vec<u8>> = (0..rounds)
        .flat_map(|_| macs.iter().map(|&(m, vlan)| rarp_frame(m, vlan)))
        .collect();
    assert_eq!(
        frames.len(),
        expected.len(),
        "every MAC once per round, nothing more"
    );
    for (i, (got, want)) in frames.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "frame {i}");
    }
    // The tagged frames carried their tag across the link.
    assert_eq!(&frames[1][12..16], &[0x81, 0x00, 0x00, 100]);
    assert_eq!(&frames[2][12..16], &[0x81, 0x00, 0x0f, 0xfe]);
}

#[test]
fn background_announce_returns_at_once_and_delivers_qemus_five_rounds() {
    require_root_and_ip!("background_announce_returns_at_once_and_delivers_qemus_five_rounds");
    let lab = Lab::new();
    let m = mac(0x10);
    let s = Schedule::default();
    let capture = capture_in_b(&lab, vec![m], s.rounds as usize, Duration::from_millis(300));

    let veth_a = lab.veth_a.clone();
    let report = in_netns(&lab.ns_a, move || {
        let handle = announce_in_background(&veth_a, &[(m, None)], s.rounds, s.initial_gap, s.step)
            .expect("open");
        // The schedule spans 800 ms: the call returned long before its end.
        assert!(
            !handle.is_finished(),
            "announce_in_background waited for the rounds"
        );
        handle.join()
    })
    .join()
    .unwrap()
    .expect("announce");

    assert_eq!(report.rounds, s.rounds);
    assert_eq!(report.frames_sent, u64::from(s.rounds));
    assert!(
        report.elapsed >= s.span(),
        "{:?} < {:?}",
        report.elapsed,
        s.span()
    );
    let frames = capture.join().unwrap();
    assert_eq!(frames, vec![rarp_frame(m, None); s.rounds as usize]);
}

#[test]
fn cancelling_a_background_announce_stops_the_remaining_rounds() {
    require_root_and_ip!("cancelling_a_background_announce_stops_the_remaining_rounds");
    let lab = Lab::new();
    let m = mac(0x20);
    let (first_tx, first_rx) = mpsc::channel();
    let capture =
        capture_in_b_telling(&lab, vec![m], 1, Duration::from_millis(300), Some(first_tx));

    let veth_a = lab.veth_a.clone();
    let report = in_netns(&lab.ns_a, move || {
        let handle = announce_in_background(
            &veth_a,
            &[(m, Some(7))],
            5,
            Duration::from_secs(30),
            Duration::ZERO,
        )
        .expect("open");
        // Cancelled once the first round's frame has reached host B (the
        // next round is 30 s away).
        first_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the first round's frame at B");
        handle.cancel()
    })
    .join()
    .unwrap()
    .expect("announce");

    assert!(report.cancelled);
    assert_eq!(report.rounds, 1);
    assert_eq!(report.frames_sent, 1);
    let frames = capture.join().unwrap();
    assert_eq!(frames, vec![rarp_frame(m, Some(7))]);
}

#[test]
fn announcing_on_a_link_that_is_down_says_so_in_the_emg() {
    require_root_and_ip!("announcing_on_a_link_that_is_down_says_so_in_the_emg");
    let lab = Lab::new();
    ip(&["-n", &lab.ns_a, "link", "set", &lab.veth_a, "down"]);

    let veth_a = lab.veth_a.clone();
    let err = in_netns(&lab.ns_a, move || {
        announce(
            &veth_a,
            &[(mac(0x30), None)],
            2,
            Duration::from_millis(1),
            Duration::ZERO,
        )
    })
    .join()
    .unwrap()
    .expect_err("a down link cannot carry the announcement");

    assert!(
        matches!(&err, AnnounceError::InterfaceDown { interface } if *interface == lab.veth_a),
        "{err}"
    );
    let emg: Emg = err.into();
    assert_eq!(emg.module, Module::MoverDestination);
    assert!(emg.message.contains("is down"), "{emg}");
    assert!(emg.action.contains("ip link set"), "{emg}");
}

#[test]
fn an_interface_of_another_namespace_is_not_found() {
    require_root_and_ip!("an_interface_of_another_namespace_is_not_found");
    let lab = Lab::new();
    // veth b exists, but only in namespace b.
    let veth_b = lab.veth_b.clone();
    let err = in_netns(&lab.ns_a, move || {
        announce(
            &veth_b,
            &[(mac(0x40), None)],
            1,
            Duration::ZERO,
            Duration::ZERO,
        )
    })
    .join()
    .unwrap()
    .expect_err("not in this namespace");
    assert!(
        matches!(err, AnnounceError::InterfaceNotFound { .. }),
        "{err}"
    );
}

#[test]
fn a_known_ipv4_address_adds_a_gratuitous_arp_after_each_rarp() {
    require_root_and_ip!("a_known_ipv4_address_adds_a_gratuitous_arp_after_each_rarp");
    let lab = Lab::new();
    let ip = Ipv4Addr::new(192, 0, 2, 44);
    let target = Target {
        mac: mac(0x50),
        vlan: Some(12),
        ipv4: Some(ip),
    };
    let capture = capture_in_b(&lab, vec![target.mac], 4, Duration::from_millis(300));

    let veth_a = lab.veth_a.clone();
    let report = in_netns(&lab.ns_a, move || {
        announce_targets(
            &veth_a,
            &[target],
            Schedule {
                rounds: 2,
                initial_gap: Duration::from_millis(5),
                step: Duration::ZERO,
            },
        )
    })
    .join()
    .unwrap()
    .expect("announce");
    assert_eq!(report.frames_sent, 4);

    let rarp = rarp_frame(target.mac, Some(12));
    let garp = garp_frame(target.mac, Some(12), ip);
    assert_eq!(
        capture.join().unwrap(),
        vec![rarp.clone(), garp.clone(), rarp, garp]
    );
}

/// Capability header and data of capget/capset, version 3 (two 32-bit words
/// per set).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_NET_RAW: u32 = 13;

/// Runs on the calling thread only: removes CAP_NET_RAW from its effective set.
fn drop_net_raw_on_this_thread() {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as version 3 expects.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !(1 << CAP_NET_RAW);
    // SAFETY: as above; pid 0 changes only this thread's capabilities.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

#[test]
fn without_cap_net_raw_the_operator_is_told_which_capability_is_missing() {
    // Needs neither root nor a namespace: the capability is dropped on a
    // thread of its own (a non-root user has none to drop), and `lo` exists
    // everywhere.
    let err = thread::spawn(|| {
        drop_net_raw_on_this_thread();
        announce(
            "lo",
            &[(mac(0x60), None)],
            1,
            Duration::ZERO,
            Duration::ZERO,
        )
    })
    .join()
    .unwrap()
    .expect_err("no raw socket without CAP_NET_RAW");
    assert!(
        matches!(&err, AnnounceError::NoPermission { interface } if interface == "lo"),
        "{err}"
    );
    let emg: Emg = err.into();
    assert!(emg.message.contains("CAP_NET_RAW"), "{emg}");
    assert!(emg.action.contains("CAP_NET_RAW"), "{emg}");
}

#[test]
fn an_lpar_without_nics_announces_nothing_and_does_not_wait() {
    require_root_and_ip!("an_lpar_without_nics_announces_nothing_and_does_not_wait");
    let lab = Lab::new();
    let veth_a = lab.veth_a.clone();
    let report = in_netns(&lab.ns_a, move || {
        announce(&veth_a, &[], 5, Duration::from_secs(60), Duration::ZERO)
    })
    .join()
    .unwrap()
    .expect("nothing to announce is not an error");
    assert_eq!((report.rounds, report.frames_sent), (0, 0));
}
