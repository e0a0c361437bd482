//! Guest memory never crosses the migration path in clear: two `moverd
//! serve` processes migrate an LPAR whose memory holds a marker text while
//! an `AF_PACKET` capture on the loopback interface records every frame
//! (the agents' migration paths are loopback addresses). Encrypted, the
//! marker is nowhere in the capture; with `--insecure-plaintext` (to an
//! agent that allows it) it is, so the capture would see a leak. A source
//! offering plaintext to an agent that does not allow it is refused with
//! its EMG, and the LPAR keeps running on the source.

mod agent_common;

use agent_common::{Agent, Scratch, define_running, stderr};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PAGE: usize = 4096;

/// One migration at a time in this file: each runs the validation's
/// bandwidth probe, and two at once on a small host halve each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}
/// Pages of the LPAR that carry the marker (16 MiB of 64).
const MARKED_PAGES: u64 = 4096;

/// A marker no other traffic on this machine can contain.
fn marker() -> Vec<u8> {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).unwrap();
    format!("LPAR-SECRET-{:016x}", u64::from_le_bytes(r)).into_bytes()
}

/// Writes `marker` into the first [`MARKED_PAGES`] pages of the LPAR's
/// memory file (shared with the agent's mapping), amid bytes that do not
/// compress, so the page goes on the wire as it is.
fn plant(agent: &Agent, lpar: &str, marker: &[u8]) {
    let path = agent.state_dir.join("lpars").join(lpar).join("memory");
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut page = vec![0u8; PAGE];
    for p in 0..MARKED_PAGES {
        getrandom::fill(&mut page).unwrap();
        page[1000..1000 + marker.len()].copy_from_slice(marker);
        f.write_all_at(&page, p * PAGE as u64).unwrap();
    }
}

/// Every frame on `lo` while it runs: how many bytes, and how many frames
/// held the marker.
struct Capture {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Capture {
    fn start(marker: Vec<u8>) -> Capture {
        let eth_p_all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscall; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(eth_p_all)) };
        assert!(raw >= 0, "capture: {}", std::io::Error::last_os_error());
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let lo = CString::new("lo").unwrap();
        // SAFETY: `lo` is NUL-terminated and outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(lo.as_ptr()) };
        assert_ne!(ifindex, 0);
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
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 256 << 20;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: option values are live locals of the size passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 17];
            let (mut bytes, mut hits) = (0u64, 0u64);
            loop {
                // SAFETY: `buf` is writable for its whole length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    // Timeout: stop once told to and nothing is queued.
                    if stopped.load(Ordering::SeqCst) {
                        return (bytes, hits);
                    }
                    continue;
                }
                let frame = &buf[..n as usize];
                bytes += frame.len() as u64;
                if frame.windows(marker.len()).any(|w| w == marker) {
                    hits += 1;
                }
            }
        });
        Capture { stop, thread }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn runs_on(agent: &Agent, lpar: &str) -> bool {
    let l = agent.lpar(lpar);
    l["state"] == "Act" && l["running"] == true
}

#[test]
fn the_marker_in_guest_memory_never_crosses_the_path_unless_plaintext_is_asked_for() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        lpar_mover::skip!("capturing the migration path (AF_PACKET on lo) needs root");
    }
    let _one = serial();
    let scratch = Scratch::new("tls-capture");
    // hostA accepts plaintext streams (the way back is a benchmark run);
    // hostB accepts TLS only, the default.
    let a = Agent::start(
        &scratch,
        "hostA",
        &["--memory", "1GiB", "--allow-insecure-plaintext"],
    );
    let b = Agent::start(&scratch, "hostB", &["--memory", "1GiB"]);
    define_running(&a, "sec1", "64MiB", "idle");
    let marker = marker();
    plant(&a, "sec1", &marker);

    // A → B, encrypted by default. A slow path (the lowest cap allowed)
    // keeps the capture abreast of the migration.
    let capture = Capture::start(marker.clone());
    let out = a.ctl_json(&["migrate", "sec1", "--to", &b.addr, "--bandwidth", "1G"]);
    let (bytes, hits) = capture.finish();
    let report = &out["report"]["source"];
    assert_eq!(report["verified"], true, "{out}");
    let encryption = report["encryption"].as_str().unwrap();
    assert!(encryption.starts_with("tls1.3 (TLS13_AES_"), "{encryption}");
    assert!(
        bytes > MARKED_PAGES * PAGE as u64,
        "the capture saw only {bytes} bytes: it did not see the migration"
    );
    assert_eq!(hits, 0, "the marker crossed the encrypted path in clear");
    assert!(runs_on(&b, "sec1"));

    // B → A with --insecure-plaintext: the marker is on the wire.
    let capture = Capture::start(marker.clone());
    let back = b.ctl_json(&[
        "migrate",
        "sec1",
        "--to",
        &a.addr,
        "--bandwidth",
        "1G",
        "--insecure-plaintext",
    ]);
    let (bytes, hits) = capture.finish();
    let report = &back["report"]["source"];
    assert_eq!(report["verified"], true, "{back}");
    assert_eq!(report["encryption"], "insecure-plaintext", "{back}");
    assert!(
        hits > 0,
        "the capture ({bytes} bytes) missed a plaintext migration"
    );
    assert!(runs_on(&a, "sec1"));
    eprintln!("capture: {bytes} bytes, {hits} frames with the marker in clear");
}

#[test]
fn plaintext_offered_to_an_encrypting_agent_is_refused_and_the_lpar_stays() {
    let _one = serial();
    let scratch = Scratch::new("tls-refuse");
    let a = Agent::start(&scratch, "hostA", &["--memory", "1GiB"]);
    let b = Agent::start(&scratch, "hostB", &["--memory", "1GiB"]);
    define_running(&a, "web1", "64MiB", "hot:4MiB");

    let out = a.ctl(&["migrate", "web1", "--to", &b.addr, "--insecure-plaintext"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("EMG"), "{err}");
    assert!(
        err.contains("offered guest memory in clear")
            && err.contains("accepts encrypted migration streams only"),
        "{err}"
    );
    assert!(
        err.contains("Migrate without --insecure-plaintext")
            && err.contains("--allow-insecure-plaintext"),
        "{err}"
    );
    // Nothing moved: the source runs it, and the guest keeps writing.
    assert!(runs_on(&a, "web1"));
    let before = a.lpar("web1")["guest_writes"].as_u64().unwrap();
    agent_common::wait_for("the guest to write on", Duration::from_secs(10), || {
        a.lpar("web1")["guest_writes"].as_u64().unwrap() > before
    });
    // The destination never ran it, and drops its definition as soon as the
    // source says its streams will not come (abandon-incoming), not when
    // its listener gives up (ACCEPT_DEADLINE, 30 s).
    if b.lpar_names().contains(&"web1".to_string()) {
        assert_ne!(b.lpar("web1")["running"], true);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.lpar_names().contains(&"web1".to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the destination kept the refused LPAR past 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = b.log();
    assert!(
        log.contains("abandons it before its streams connected")
            && log.contains("offered guest memory in clear"),
        "{log}"
    );
    assert!(runs_on(&a, "web1"));

    // And the same migration, encrypted, goes through.
    let out = a.ctl_json(&["migrate", "web1", "--to", &b.addr]);
    assert_eq!(out["report"]["source"]["verified"], true, "{out}");
    assert!(runs_on(&b, "web1"));

    // Only a migration's own source may abandon it, and only while it
    // waits for its streams.
    let status = b.ctl_json(&["status"]);
    let incoming = status["migrations"]
        .as_array()
        .and_then(|all| all.iter().rev().find(|m| m["lpar"] == "web1"))
        .unwrap_or_else(|| panic!("{status}"))["migration"]
        .as_u64()
        .unwrap();
    let mut c = b.connect();
    let abandon = |c: &mut agent_common::Conn, source: &str| {
        c.request(
            serde_json::json!({"id": 1, "execute": "abandon-incoming", "arguments":
            {"migration": incoming, "source_agent": source, "reason": "test"}}),
        )
    };
    let past = abandon(&mut c, "hostA");
    assert_eq!(past["error"]["cause"], 0x18, "{past}");
    let stranger = abandon(&mut c, "hostC");
    assert_eq!(stranger["error"]["cause"], 0x19, "{stranger}");
    assert!(runs_on(&b, "web1"));
}
