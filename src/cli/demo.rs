//! `moverctl demo`: a live migration between two agents on this machine.
//!
//! Starts `moverd receive` and `moverd send` as separate processes, each
//! with its own state directory (its own "host") and migration path
//! address on loopback, migrates the default LPAR from one to the other,
//! and prints the source's report and what the guest did on arrival.

use super::agents::{self, RunSpec};
use crate::emg::Emg;
use crate::units::{format_size, parse_size};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Guest memory; default 1GiB on sim, 64MiB on kvm.
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// The guest program; default hot:64MiB on sim, hot:1MiB,content=zero
    /// on kvm (whose guests run emulated on hosts without VMX/SVM).
    #[arg(long)]
    pub program: Option<String>,
    /// Where the LPAR runs on both agents: sim or kvm.
    #[arg(long, default_value = "sim")]
    pub backend: String,
    #[arg(long, default_value_t = 20)]
    pub max_suspend_ms: u64,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Send the guest's memory in clear instead of TLS 1.3 (to compare).
    #[arg(long)]
    pub insecure_plaintext: bool,
}

/// The default guest memory and program on `backend`: KVM guests stay
/// small, since without VMX/SVM they run by instruction emulation.
pub fn defaults(backend: &str) -> (u64, &'static str) {
    match backend {
        "kvm" => (64 << 20, "hot:1MiB,content=zero"),
        _ => (1 << 30, "hot:64MiB"),
    }
}

pub fn run(args: &DemoArgs) -> Result<(), Emg> {
    let moverd = agents::moverd_path()?;
    let (memory, program) = defaults(&args.backend);
    let memory = args.memory.unwrap_or(memory);
    let program = args.program.clone().unwrap_or_else(|| program.to_string());
    let hosts = PathBuf::from(format!(
        "{}/demo-{}",
        crate::partition::host::DEFAULT_ROOT,
        std::process::id()
    ));
    let spec = RunSpec {
        memory,
        program,
        max_suspend_ms: args.max_suspend_ms,
        hosts: agents::Hosts::Loopback,
        bandwidth: None,
        quiet: false,
        backend: args.backend.clone(),
        kernel: None,
        // As moverd's own default: a demo need not wait for the working set.
        warm_up: Some(std::time::Duration::from_millis(500)),
        insecure_plaintext: args.insecure_plaintext,
        memory_backing: crate::partition::MemoryBacking::Reserved,
    };
    let run = agents::run_once(&moverd, hosts, &spec)?;
    print_report(args, &spec, &run.source, &run.destination);
    Ok(())
}

fn print_report(
    args: &DemoArgs,
    spec: &RunSpec,
    source: &serde_json::Value,
    destination: &serde_json::Value,
) {
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
            "backend": spec.backend,
            "encryption": source["encryption"],
            "report": source,
        });
        println!("{summary}");
        return;
    }
    println!(
        "live migration of a {} {} LPAR running {} from agent host-a to agent host-b",
        format_size(spec.memory),
        spec.backend,
        spec.program
    );
    println!(
        "migration path: {}",
        source["encryption"].as_str().unwrap_or("unknown")
    );
    print_rounds(source);
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
        format_size(spec.memory),
        source["verified"]
    );
    println!(
        "on the destination the guest made {} writes in its first 300 ms",
        destination["guest_writes_after_switchover"],
    );
    let stall = f(&destination["guest_max_stall_ms"]);
    if stall.is_nan() {
        println!("this guest publishes no stall across the switchover");
        return;
    }
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

/// Prints a source report's rounds as a table.
pub fn print_rounds(source: &serde_json::Value) {
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
}
