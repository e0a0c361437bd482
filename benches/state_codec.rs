//! Encode + decode of a 64-vCPU device state (the sample LPAR: 256 KiB VRAM,
//! 64 KiB firmware NVRAM, NIC/HBA MMIO snapshots), live mode and shutdown
//! mode (which carries no vCPUs). This is on the suspension-time path of every live migration.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lpar_mover::state::{DeviceState, MigrationMode};
use std::hint::black_box;

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
            b.iter(|| {
                let bytes = black_box(&state).encode().unwrap();
                DeviceState::decode(black_box(&bytes)).unwrap()
            })
        });
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| DeviceState::decode(black_box(&bytes)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
