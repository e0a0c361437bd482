//! Encode + decode of a 64-vCPU device state (the sample LPAR: 256 KiB VRAM,
//! 64 KiB firmware NVRAM, NIC/HBA MMIO snapshots), live mode and shutdown
//! mode (which carries no vCPUs). This is on the suspension-time path of every live migration.
//!
//! Every timed iteration is verified outside its timing: what was decoded
//! equals the state that was encoded.
//!
//! Target, against a baseline of the same run (a copy of the encoded
//! bytes): encode + decode of the live state costs at most 50 copies of its
//! bytes, and at most 2 ms (the suspension budget) in all: the codec must
//! stay a small part of the suspension.
//!
//! `LPAR_MOVER_BENCH_QUICK=1`: a few short samples each.

#[path = "support/mod.rs"]
mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lpar_mover::state::{DeviceState, MigrationMode};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("state_codec");
    for (name, mode) in [
        ("live_64_vcpus", MigrationMode::Live),
        ("shutdown", MigrationMode::Shutdown),
    ] {
        let state = DeviceState::sample(64).for_mode(mode);
        let bytes = state.encode().unwrap();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("encode_decode_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let bytes = black_box(&state).encode().unwrap();
                    let back = DeviceState::decode(black_box(&bytes)).unwrap();
                    timed += t.elapsed();
                    assert!(back == state, "{name}: the state changed in a round trip");
                }
                timed
            })
        });
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let back = DeviceState::decode(black_box(&bytes)).unwrap();
                    timed += t.elapsed();
                    assert!(back == state, "{name}: decoded another state");
                }
                timed
            })
        });
    }
    g.finish();

    // The target, measured here against a copy of the same bytes.
    let state = DeviceState::sample(64).for_mode(MigrationMode::Live);
    let bytes = state.encode().unwrap();
    let runs = support::size(200, 20);
    let copy = support::timed(runs, || black_box(&bytes).to_vec(), |c| assert!(c == bytes));
    let round_trip = support::timed(
        runs,
        || DeviceState::decode(&black_box(&state).encode().unwrap()).unwrap(),
        |back| assert!(back == state),
    );
    support::target(
        round_trip <= copy * 50 && round_trip <= Duration::from_millis(2),
        &format!(
            "live 64-vCPU state ({} KiB): encode + decode {:.3} ms, {:.1} copies of its bytes \
             (a copy {:.3} ms; at most 50 copies and 2 ms)",
            bytes.len() >> 10,
            round_trip.as_secs_f64() * 1e3,
            round_trip.as_secs_f64() / copy.as_secs_f64(),
            copy.as_secs_f64() * 1e3
        ),
    );
}

criterion_group! {
    name = benches;
    config = support::criterion(Criterion::default());
    targets = codec
}
criterion_main!(benches);
