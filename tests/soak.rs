//! Soak (issue 6; not part of `cargo test`): back-and-forth live migrations
//! of one LPAR with a running guest between two `moverd serve` agents in
//! two test hosts (network namespaces) over a 10 Gbit/s-shaped migration
//! path, each verified. Reports failures (must be 0), suspension
//! percentiles and each agent's file descriptors and private memory at the
//! start and the end (no growth). Run:
//!
//! ```text
//! cargo test --release --test soak -- --ignored --nocapture
//! SOAK_MIGRATIONS=50 cargo test --release --test soak -- --ignored --nocapture
//! ```

use lpar_mover::testbed::{self, Testbed};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "soak-token-0123456789";
const MGMT_PORT: u16 = 7000;

struct Host<'a> {
    bed: &'a Testbed,
    index: usize,
    agent: Child,
    /// `<mgmt ip>:7000`
    addr: String,
}

impl Drop for Host<'_> {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

impl<'a> Host<'a> {
    fn start(bed: &'a Testbed, index: usize, scratch: &Path) -> Host<'a> {
        let host = &bed.hosts()[index];
        let name = format!("host{index}");
        let addr = format!("{}:{MGMT_PORT}", host.mgmt_ip);
        let state = scratch.join(&name);
        std::fs::create_dir_all(&state).unwrap();
        // The other agents of the bed: the ones this one authenticates to.
        let peers: Vec<String> = (0..bed.hosts().len()).map(|i| format!("host{i}")).collect();
        let log = std::fs::File::create(scratch.join(format!("{name}.log"))).unwrap();
        let mut agent = bed
            .command(index, env!("CARGO_BIN_EXE_moverd"))
            .args(["serve", "--insecure-plaintext-management"])
            .args(["--name", &name, "--listen", &addr])
            .args(["--path", &format!("mig={}", host.path_ip)])
            .args(["--memory", "4GiB", "--state-dir"])
            .arg(&state)
            .args(peers.iter().flat_map(|p| ["--peer", p.as_str()]))
            .arg("--token-file")
            .arg(scratch.join("token"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(agent.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("LISTENING"), "{name} said {line:?}");
        Host {
            bed,
            index,
            agent,
            addr,
        }
    }

    /// `moverctl --json` run inside this host (the management path is only
    /// reachable from the hosts).
    fn ctl(&self, scratch: &Path, args: &[&str]) -> Result<Value, String> {
        let out = self
            .bed
            .command(self.index, env!("CARGO_BIN_EXE_moverctl"))
            .args(["--json", "--agent", &self.addr, "--token-file"])
            .arg(scratch.join("token"))
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!(
                "moverctl {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// What each open file descriptor points at (to name a leak).
    fn open_files(&self) -> Vec<String> {
        let dir = format!("/proc/{}/fd", self.agent.id());
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|p| p.display().to_string())
            .collect();
        files.sort();
        files
    }

    /// Open file descriptors and private (non-guest) resident memory.
    fn footprint(&self) -> (usize, u64) {
        let pid = self.agent.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (fds, (kib("RssAnon:") + kib("RssFile:")) * 1024)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "soak: minutes long; run with --ignored"]
fn back_and_forth_live_migrations_leak_nothing_and_never_fail() {
    if let Some(reason) = testbed::skip_reason() {
        lpar_mover::skip!(reason);
    }
    let migrations: usize = std::env::var("SOAK_MIGRATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let scratch = PathBuf::from(format!("/dev/shm/lpar-mover-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join("token"), TOKEN).unwrap();
    std::fs::set_permissions(
        scratch.join("token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let bed = Testbed::new(2).unwrap();
    bed.shape_path(10_000_000_000).unwrap();
    let hosts = [
        Host::start(&bed, 0, &scratch),
        Host::start(&bed, 1, &scratch),
    ];
    hosts[0]
        .ctl(
            &scratch,
            &[
                "lpar",
                "create",
                "soak1",
                "--memory",
                "256MiB",
                "--program",
                "hot:32MiB,rate=20000",
            ],
        )
        .unwrap();
    hosts[0]
        .ctl(&scratch, &["lpar", "activate", "soak1"])
        .unwrap();

    let mut at = 0;
    let mut suspensions = Vec::new();
    let mut failures = Vec::new();
    let mut start_footprint = None;
    let started = Instant::now();
    for i in 0..migrations {
        let to = 1 - at;
        match hosts[at].ctl(&scratch, &["migrate", "soak1", "--to", &hosts[to].addr]) {
            Ok(out) if out["report"]["source"]["verified"] == true => {
                suspensions.push(
                    out["report"]["source"]["suspension"]["total_ms"]
                        .as_f64()
                        .unwrap(),
                );
                at = to;
            }
            Ok(out) => failures.push(format!("#{i}: not verified: {out}")),
            Err(e) => failures.push(format!("#{i}: {e}")),
        }
        if i == migrations / 10 {
            // Warmed up: thread stacks, allocator arenas and caches exist;
            // from here on a leak shows as growth.
            start_footprint = Some([hosts[0].footprint(), hosts[1].footprint()]);
        }
        if std::env::var_os("SOAK_TRACE").is_some() && i % 50 == 0 {
            eprintln!(
                "#{i}: {:?} {:?}",
                hosts[0].footprint(),
                hosts[1].footprint()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let end_footprint = [hosts[0].footprint(), hosts[1].footprint()];
    let start_footprint = start_footprint.unwrap_or(end_footprint);
    suspensions.sort_by(f64::total_cmp);
    println!(
        "soak: {migrations} live migrations in {:.0} s over a 10 Gbit/s path; {} failed",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    if !suspensions.is_empty() {
        println!(
            "suspension ms: p50 {:.3}, p99 {:.3}, max {:.3}",
            percentile(&suspensions, 0.5),
            percentile(&suspensions, 0.99),
            suspensions.last().unwrap()
        );
    }
    for (h, (start, end)) in start_footprint.iter().zip(&end_footprint).enumerate() {
        println!(
            "host{h} agent: fds {} -> {}, private memory {:.1} -> {:.1} MiB",
            start.0,
            end.0,
            start.1 as f64 / 1048576.0,
            end.1 as f64 / 1048576.0
        );
    }
    for h in &hosts {
        if std::env::var_os("SOAK_TRACE").is_some() {
            eprintln!("host{} fds: {:#?}", h.index, h.open_files());
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(failures.is_empty(), "failures: {failures:#?}");
    for (start, end) in start_footprint.iter().zip(&end_footprint) {
        assert!(
            end.0 <= start.0 + 2,
            "file descriptors grew: {start:?} -> {end:?}"
        );
        assert!(
            end.1 <= start.1 + (8 << 20),
            "memory grew: {start:?} -> {end:?}"
        );
    }
}
