//! Test hosts: two or more "HVM hosts" as network namespaces on this
//! machine, for tests and `moverctl bench --netns`.
//!
//! ```text
//!   host 0 (netns)                hub (netns)                 host 1 (netns)
//!   mgmt0 10.77.0.1/24 ── veth ── br-mgmt ── veth ── mgmt0 10.77.0.2/24
//!   path0 10.78.0.1/24 ── veth ── br-path ── veth ── path0 10.78.0.2/24
//! ```
//!
//! Each host has a management-path and a migration-path interface with its
//! own IPv4 address; the hub joins each path's interfaces on a bridge. The
//! migration path can be shaped with `tc tbf` (egress of every host, so
//! both directions), and cut and restored by taking a host's hub-side veth
//! down and up. Everything lives in namespaces named after this process,
//! so dropping the [`Testbed`] (also on a panic) removes all of it:
//! deleting a namespace deletes its veth ends and with them their peers.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Interface names inside every host namespace.
pub const MGMT_IF: &str = "mgmt0";
pub const PATH_IF: &str = "path0";

#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("test hosts need root (creating network namespaces); run as root")]
    NotRoot,
    #[error("`{command}` failed: {stderr}; is iproute2 installed (apt-get install iproute2)?")]
    Command { command: String, stderr: String },
}

/// One host of the testbed.
#[derive(Clone, Debug)]
pub struct TestHost {
    /// The network namespace (`ip netns exec <netns> …`).
    pub netns: String,
    pub mgmt_ip: Ipv4Addr,
    pub path_ip: Ipv4Addr,
    /// This host's migration-path veth end in the hub (cut/restore).
    hub_path_if: String,
}

pub struct Testbed {
    hub: String,
    hosts: Vec<TestHost>,
}

/// Why a test that needs test hosts cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (creating network namespaces needs it)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2) is not installed".into()),
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), TestbedError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| TestbedError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(TestbedError::Command {
        command: format!("{program} {}", args.join(" ")),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn ip(args: &[&str]) -> Result<(), TestbedError> {
    run("ip", args)
}

impl Testbed {
    /// Creates `hosts` hosts (at most 250) joined by a management and a
    /// migration path.
    pub fn new(hosts: usize) -> Result<Testbed, TestbedError> {
        assert!((1..=250).contains(&hosts), "{hosts} test hosts");
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(TestbedError::NotRoot);
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let run_id = format!(
            "{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut bed = Testbed {
            hub: format!("lpm-{run_id}-hub"),
            hosts: Vec::new(),
        };
        // From here on, a failure drops `bed`, which removes what exists.
        ip(&["netns", "add", &bed.hub])?;
        for bridge in ["br-mgmt", "br-path"] {
            ip(&["-n", &bed.hub, "link", "add", bridge, "type", "bridge"])?;
            ip(&["-n", &bed.hub, "link", "set", bridge, "up"])?;
        }
        for i in 0..hosts {
            let host = TestHost {
                netns: format!("lpm-{run_id}-h{i}"),
                mgmt_ip: Ipv4Addr::new(10, 77, 0, i as u8 + 1),
                path_ip: Ipv4Addr::new(10, 78, 0, i as u8 + 1),
                hub_path_if: format!("h{i}p"),
            };
            ip(&["netns", "add", &host.netns])?;
            bed.hosts.push(host.clone());
            ip(&["-n", &host.netns, "link", "set", "lo", "up"])?;
            for (inner, hub_side, bridge, addr) in [
                (MGMT_IF, format!("h{i}m"), "br-mgmt", host.mgmt_ip),
                (PATH_IF, host.hub_path_if.clone(), "br-path", host.path_ip),
            ] {
                ip(&[
                    "link",
                    "add",
                    "name",
                    inner,
                    "netns",
                    &host.netns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &hub_side,
                    "netns",
                    &bed.hub,
                ])?;
                ip(&["-n", &bed.hub, "link", "set", &hub_side, "master", bridge])?;
                ip(&["-n", &bed.hub, "link", "set", &hub_side, "up"])?;
                let cidr = format!("{addr}/24");
                ip(&["-n", &host.netns, "addr", "add", &cidr, "dev", inner])?;
                ip(&["-n", &host.netns, "link", "set", inner, "up"])?;
            }
        }
        Ok(bed)
    }

    pub fn hosts(&self) -> &[TestHost] {
        &self.hosts
    }

    /// Every namespace this testbed created (hosts and hub).
    pub fn namespaces(&self) -> Vec<String> {
        let hosts = self.hosts.iter().map(|h| h.netns.clone());
        hosts.chain([self.hub.clone()]).collect()
    }

    /// Shapes the migration path to `bits_per_second` in both directions
    /// (token bucket on every host's egress).
    pub fn shape_path(&self, bits_per_second: u64) -> Result<(), TestbedError> {
        let rate = format!("{bits_per_second}bit");
        // A burst of ~1 ms at the rate (at least 64 KiB, so TSO frames fit).
        let burst = (bits_per_second / 8 / 1000).max(64 << 10).to_string();
        for host in &self.hosts {
            run(
                "tc",
                &[
                    "-n",
                    &host.netns,
                    "qdisc",
                    "replace",
                    "dev",
                    PATH_IF,
                    "root",
                    "tbf",
                    "rate",
                    &rate,
                    "burst",
                    &burst,
                    "latency",
                    "50ms",
                ],
            )?;
        }
        Ok(())
    }

    /// Cuts host `i`'s migration path (its link to the hub goes down).
    pub fn cut_path(&self, i: usize) -> Result<(), TestbedError> {
        ip(&[
            "-n",
            &self.hub,
            "link",
            "set",
            &self.hosts[i].hub_path_if,
            "down",
        ])
    }

    /// Restores host `i`'s migration path, returning once both ends
    /// forward again (the kernel activates a link up to a second after it
    /// is set up).
    pub fn restore_path(&self, i: usize) -> Result<(), TestbedError> {
        let host = &self.hosts[i];
        ip(&["-n", &self.hub, "link", "set", &host.hub_path_if, "up"])?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for (ns, dev) in [
            (&self.hub, host.hub_path_if.as_str()),
            (&host.netns, PATH_IF),
        ] {
            while !link_is_up(ns, dev)? {
                if std::time::Instant::now() > deadline {
                    return Err(TestbedError::Command {
                        command: format!("ip -n {ns} link show {dev}"),
                        stderr: "the link did not come up within 5 s".into(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Runs `f` on a new thread that has entered host `i`'s namespace (only
    /// that thread moves).
    pub fn spawn_in<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.hosts[i].netns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
    }

    /// A command that runs `program` inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i].netns]).arg(program);
        c
    }
}

/// Whether `dev` in `ns` is operationally up (carrier and qdisc active).
fn link_is_up(ns: &str, dev: &str) -> Result<bool, TestbedError> {
    let args = ["-n", ns, "-o", "link", "show", "dev", dev];
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| TestbedError::Command {
            command: format!("ip {}", args.join(" ")),
            stderr: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.contains("state UP") && !text.contains("qdisc noop"))
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in self.hosts.iter().map(|h| &h.netns).chain([&self.hub]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
