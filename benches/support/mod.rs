//! What every bench shares: the quick mode and the target check; the stream
//! benches' LPARs and page pump are in [`lpars`].
//!
//! * Quick mode (`LPAR_MOVER_BENCH_QUICK=1`, as CI runs each bench once):
//!   small sizes and few repetitions, so a bench that no longer builds,
//!   panics or produces a wrong result fails CI within seconds. Results
//!   are still verified on every iteration.
//! * Targets: each bench states its target against a baseline measured in
//!   the same run (so a slow or loaded machine moves both alike) and checks
//!   it with [`target`]. A missed target fails the bench in a full run; in
//!   quick mode (sizes too small and a CI machine too busy for a fair
//!   comparison) it is printed as `TARGET MISSED` and does not fail.
#![allow(dead_code)] // each bench uses a part

pub mod lpars;

use std::time::Duration;

/// The environment variable that selects quick mode.
pub const QUICK_ENV: &str = "LPAR_MOVER_BENCH_QUICK";

/// Whether this is a quick (CI) run.
pub fn quick() -> bool {
    std::env::var(QUICK_ENV).is_ok_and(|v| v.trim() == "1")
}

/// `full` normally, `small` in quick mode.
pub fn size<T>(full: T, small: T) -> T {
    if quick() { small } else { full }
}

/// Checks a target: `holds` says whether it was met; `what` states it with
/// the numbers. Panics on a miss in a full run (see the module doc).
pub fn target(holds: bool, what: &str) {
    if holds {
        println!("target met: {what}");
    } else if quick() {
        println!("TARGET MISSED (quick mode, not failing): {what}");
    } else {
        panic!("TARGET MISSED: {what}");
    }
}

/// A criterion configuration: `full` normally, a few short samples in
/// quick mode.
pub fn criterion(full: criterion::Criterion) -> criterion::Criterion {
    if quick() {
        full.sample_size(10)
            .warm_up_time(Duration::from_millis(20))
            .measurement_time(Duration::from_millis(100))
    } else {
        full
    }
}

/// Median of `v` (the upper one of an even count).
pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// The median time of `op` over `runs` calls, each one checked by `check`
/// outside the timed part.
pub fn timed<T>(runs: usize, mut op: impl FnMut() -> T, mut check: impl FnMut(T)) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = std::time::Instant::now();
        let out = std::hint::black_box(op());
        times.push(t.elapsed());
        check(out);
    }
    median(&times)
}
