//! `moverctl selftest`: a default LPAR on this machine, its guest program
//! running under the kernel dirty tracker, one line per harvest.

use crate::emg::Emg;
use crate::partition::host::{DEFAULT_ROOT, open_backend};
use crate::partition::{LparConfig, PAGE_SIZE, PageSet, Partition};
use crate::units::{format_size, parse_size};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct SelftestArgs {
    /// Guest memory size.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub memory: u64,
    /// Guest program (idle, hot:SIZE with rate=N and content=zero|text|random options, sweep, skewed).
    #[arg(long, default_value = "hot:64MiB")]
    pub program: String,
    #[arg(long, default_value_t = 2)]
    pub vcpus: u32,
    /// Where the LPAR runs: sim (kernel dirty tracking: uffd-wp, or
    /// mprotect on older kernels) or kvm (KVM's dirty log).
    #[arg(long, default_value = "sim")]
    pub backend: String,
    /// Number of harvests.
    #[arg(long, default_value_t = 10)]
    pub harvests: u32,
    /// Time between harvests, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
}

pub fn run(args: &SelftestArgs) -> Result<(), Emg> {
    let root = PathBuf::from(DEFAULT_ROOT).join(format!("selftest-{}", std::process::id()));
    let backend = open_backend(&args.backend, &root).map_err(|e| e.emg())?;
    let config = LparConfig {
        name: format!("selftest-{}", std::process::id()),
        memory_bytes: args.memory,
        vcpus: args.vcpus,
        program: args.program.clone(),
        ..LparConfig::default_lpar()
    };
    let lpar = backend.create(&config.name, &config)?;
    let result = exercise(&*lpar, args, &root);
    drop(lpar);
    backend.remove(&config.name)?;
    let _ = std::fs::remove_dir(&root);
    result
}

fn exercise(lpar: &dyn Partition, args: &SelftestArgs, root: &std::path::Path) -> Result<(), Emg> {
    let mut log = lpar.dirty_log()?;
    println!(
        "LPAR {} ({}) under {}: {} guest memory, {} vCPUs, program {}",
        lpar.config().name,
        args.backend,
        root.display(),
        format_size(args.memory),
        args.vcpus,
        args.program
    );
    println!("dirty tracker: {}", log.mechanism());
    log.start()?;
    lpar.resume()?;
    let started = Instant::now();
    let mut writes = lpar.guest_writes().unwrap_or(0);
    println!(
        "{:>7} {:>9} {:>12} {:>11} {:>12} {:>13}",
        "harvest", "at ms", "dirty pages", "dirty", "harvest µs", "guest writes"
    );
    let mut pages = PageSet::new();
    for n in 1..=args.harvests {
        std::thread::sleep(Duration::from_millis(args.interval_ms));
        pages.clear();
        let t = Instant::now();
        log.harvest(&mut pages)?;
        let cost = t.elapsed();
        let now_writes = lpar.guest_writes().unwrap_or(0);
        println!(
            "{:>7} {:>9} {:>12} {:>11} {:>12.1} {:>13}",
            n,
            started.elapsed().as_millis(),
            pages.len(),
            format_size(pages.len() * PAGE_SIZE as u64),
            cost.as_secs_f64() * 1e6,
            now_writes - writes
        );
        writes = now_writes;
    }
    lpar.pause()?;
    log.stop()?;
    if let Some(ns) = lpar.max_stall_ns() {
        println!("guest-observed longest stall: {:.3} ms", ns as f64 / 1e6);
    }
    Ok(())
}
