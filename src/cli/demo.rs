//! `moverctl demo`: a live migration between two agents on this machine.
//!
//! Starts `moverd receive` and `moverd send` as separate processes, each
//! with its own state directory (its own "host") and migration path
//! address on loopback, migrates the default LPAR from one to the other,
//! and prints the source's report and what the guest did on arrival.

use crate::emg::{Emg, Module, phase};
use crate::units::{format_size, parse_size};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub memory: u64,
    #[arg(long, default_value = "hot:64MiB")]
    pub program: String,
    #[arg(long, default_value_t = 20)]
    pub max_suspend_ms: u64,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

fn demo_error(message: String, action: &str) -> Emg {
    Emg::new(Module::Client, phase::CONNECT, 0x01, message, action)
}

/// Removes the demo's two host directories, whatever happens.
struct Hosts(PathBuf);

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(args: &DemoArgs) -> Result<(), Emg> {
    let moverd = std::env::current_exe()
        .map(|p| p.with_file_name("moverd"))
        .ok()
        .filter(|p| p.exists())
        .ok_or_else(|| {
            demo_error(
                "moverd was not found beside moverctl".into(),
                "Build both binaries: cargo build --release, then run target/release/moverctl demo.",
            )
        })?;
    let hosts = Hosts(PathBuf::from(format!(
        "{}/demo-{}",
        crate::partition::sim::shm::DEFAULT_ROOT,
        std::process::id()
    )));
    let memory = args.memory.to_string();
    let spawn = |host: &str, path: &str, sub: &[&str]| -> Result<Child, Emg> {
        let mut c = Command::new(&moverd);
        c.args(sub)
            .args([
                "--memory",
                &memory,
                "--program",
                &args.program,
                "--path",
                path,
            ])
            .arg("--state-dir")
            .arg(hosts.0.join(host))
            .stdout(Stdio::piped());
        c.spawn()
            .map_err(|e| demo_error(format!("cannot start moverd: {e}"), "Check the build."))
    };
    let mut receiver = spawn("host-b", "127.0.0.1", &["receive"])?;
    let mut lines = BufReader::new(receiver.stdout.take().expect("piped"));
    let mut handoff = String::new();
    lines
        .read_line(&mut handoff)
        .map_err(|e| demo_error(format!("reading the receiver: {e}"), "Retry."))?;
    let mut words = handoff.split_whitespace();
    let (Some("LISTENING"), Some(addr), Some("KEY"), Some(key)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        let _ = receiver.kill();
        return Err(demo_error(
            format!("the receiving agent did not start listening (said {handoff:?})"),
            "Read its error above; the migration path address must be free.",
        ));
    };
    let suspend = args.max_suspend_ms.to_string();
    let sender = spawn(
        "host-a",
        "127.0.0.2",
        &[
            "send",
            "--to",
            addr,
            "--key",
            key,
            "--max-suspend-ms",
            &suspend,
        ],
    )?;
    let source = match finish(sender, None, "sending") {
        Ok(report) => report,
        Err(e) => {
            // The receiver would otherwise wait out its timeouts.
            let _ = receiver.kill();
            let _ = receiver.wait();
            return Err(e);
        }
    };
    let destination = finish(receiver, Some(lines), "receiving")?;
    print_report(args, &source, &destination);
    drop(hosts);
    Ok(())
}

/// Waits for an agent and parses its last stdout line as JSON.
fn finish(
    mut child: Child,
    stdout: Option<BufReader<std::process::ChildStdout>>,
    role: &str,
) -> Result<serde_json::Value, Emg> {
    let mut out = String::new();
    match stdout {
        Some(mut r) => r.read_to_string(&mut out),
        None => child.stdout.take().expect("piped").read_to_string(&mut out),
    }
    .map_err(|e| demo_error(format!("reading the {role} agent: {e}"), "Retry."))?;
    let status = child
        .wait()
        .map_err(|e| demo_error(e.to_string(), "Retry."))?;
    let last = out.lines().last().unwrap_or_default();
    if !status.success() {
        return Err(demo_error(
            format!("the {role} agent failed ({status}); its EMG is printed above"),
            "Act on the agent's EMG and retry.",
        ));
    }
    serde_json::from_str(last).map_err(|e| {
        demo_error(
            format!("the {role} agent's report does not parse: {e}"),
            "Retry.",
        )
    })
}

fn print_report(args: &DemoArgs, source: &serde_json::Value, destination: &serde_json::Value) {
    let s = &source["suspension"];
    if args.json {
        let rounds = source["rounds"].as_array().map_or(0, |r| r.len());
        let summary = serde_json::json!({
            "suspension_ms": s["total_ms"],
            "total_ms": source["total_ms"],
            "bytes_sent": source["bytes_sent"],
            "rounds": rounds,
            "verified": source["verified"],
            "guest_max_stall_ms": destination["guest_max_stall_ms"],
            "guest_writes_after_switchover": destination["guest_writes_after_switchover"],
            "report": source,
        });
        println!("{summary}");
        return;
    }
    println!(
        "live migration of a {} LPAR running {} from agent host-a to agent host-b",
        format_size(args.memory),
        args.program
    );
    println!(
        "{:>5} {:>9} {:>12} {:>10} {:>13} {:>8}",
        "round", "pages", "wire bytes", "ms", "dirty pg/s", "throttle"
    );
    for r in source["rounds"].as_array().into_iter().flatten() {
        let n = |key: &str| r[key].as_u64().unwrap_or(0);
        let x = |key: &str| r[key].as_f64().unwrap_or(0.0);
        println!(
            "{:>5} {:>9} {:>12} {:>10.2} {:>13.0} {:>7}%",
            n("round"),
            n("pages"),
            n("wire_bytes"),
            x("duration_ms"),
            x("dirty_rate"),
            n("throttle")
        );
    }
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "suspension {:.3} ms (predicted {:.3}): final copy {:.3} ms ({} pages), device state {:.3} ms, \
         load and verify {:.3} ms, resume {:.3} ms",
        f(&s["total_ms"]),
        f(&s["predicted_ms"]),
        f(&s["final_copy_ms"]),
        s["final_pages"],
        f(&s["device_state_ms"]),
        f(&s["load_verify_ms"]),
        f(&s["resume_ms"])
    );
    println!(
        "total {:.1} ms, {} bytes sent for {} of memory; image verified: {}",
        f(&source["total_ms"]),
        source["bytes_sent"],
        format_size(args.memory),
        source["verified"]
    );
    println!(
        "on the destination the guest made {} writes in its first 300 ms",
        destination["guest_writes_after_switchover"],
    );
    let stall = f(&destination["guest_max_stall_ms"]);
    println!(
        "the guest saw a {stall:.3} ms stall across the switchover (suspension {:.3} ms; {})",
        f(&s["total_ms"]),
        if (stall - f(&s["total_ms"])).abs() <= 1.0 {
            "they agree within 1 ms"
        } else {
            "they differ by more than 1 ms"
        }
    );
}
