//! Page encode/decode throughput per kind of memory content (MB/s of guest
//! memory), and a whole page batch through the frame decoder.
//!
//! `cargo bench --bench wire_codec`; criterion reports the median in the
//! middle of each `[low median high]` triple.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lpar_mover::wire::*;
use std::hint::black_box;
use std::time::Duration;

const PAGES: usize = 256;

fn xorshift(seed: u64) -> impl FnMut() -> u8 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }
}

/// (name, new pages, previous pages): the previous copy is given only for
/// the delta case, as a sender keeps it only for hot pages.
type Workload = (&'static str, Vec<Page>, Option<Vec<Page>>);

fn workloads() -> Vec<Workload> {
    let mut rand = xorshift(0x9E37_79B9_7F4A_7C15);
    let zero = vec![[0u8; PAGE_SIZE]; PAGES];
    let words = [
        "lpar ", "memory ", "page ", "migrate ", "the ", "0x4050 ", "dirty\n", "host ",
    ];
    let text = (0..PAGES)
        .map(|_| {
            let mut page = [0u8; PAGE_SIZE];
            let mut line = Vec::with_capacity(PAGE_SIZE + 16);
            while line.len() < PAGE_SIZE {
                line.extend_from_slice(words[usize::from(rand()) % words.len()].as_bytes());
            }
            page.copy_from_slice(&line[..PAGE_SIZE]);
            page
        })
        .collect::<Vec<_>>();
    let random = (0..PAGES)
        .map(|_| {
            let mut page = [0u8; PAGE_SIZE];
            page.iter_mut().for_each(|b| *b = rand());
            page
        })
        .collect::<Vec<_>>();
    // Small deltas: random pages with 4 words rewritten.
    let old = random.clone();
    let mut hot = random.clone();
    for page in hot.iter_mut() {
        for _ in 0..4 {
            let at = (usize::from(rand()) * 16) % (PAGE_SIZE - 8);
            page[at..at + 8].iter_mut().for_each(|b| *b = rand());
        }
    }
    vec![
        ("zero", zero, None),
        ("text", text, None),
        ("random", random, None),
        ("small_delta", hot, Some(old)),
    ]
}

fn codec(c: &mut Criterion) {
    for (name, pages, previous) in workloads() {
        let prev = |i: usize| previous.as_ref().map(|p| &p[i]);
        let mut encoded = Vec::with_capacity(PAGES * (PAGE_SIZE + 64));
        let mut spans = Vec::new();
        for (i, page) in pages.iter().enumerate() {
            let start = encoded.len();
            let enc = encode_page(page, prev(i), &mut encoded);
            spans.push((enc, start..encoded.len()));
        }
        let ratio = encoded.len() as f64 / (PAGES * PAGE_SIZE) as f64;
        println!(
            "{name}: {} ({:.1}% of the raw size)",
            spans[0].0,
            ratio * 100.0
        );

        let mut group = c.benchmark_group("page");
        group.throughput(Throughput::Bytes((PAGES * PAGE_SIZE) as u64));
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            let mut out = Vec::with_capacity(PAGES * (PAGE_SIZE + 64) + 8192);
            b.iter(|| {
                out.clear();
                for (i, page) in pages.iter().enumerate() {
                    black_box(encode_page(black_box(page), prev(i), &mut out));
                }
            })
        });
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            let mut guest = previous
                .clone()
                .unwrap_or_else(|| vec![[0u8; PAGE_SIZE]; PAGES]);
            b.iter(|| {
                for (i, (enc, span)) in spans.iter().enumerate() {
                    if *enc == Encoding::Delta {
                        // Re-apply against the original copy each time.
                        guest[i] = previous.as_ref().unwrap()[i];
                    }
                    decode_page(*enc, black_box(&encoded[span.clone()]), &mut guest[i]).unwrap();
                }
                black_box(&guest);
            })
        });
        group.finish();

        // A full batch: builder → frame bytes → decoder → guest memory.
        let mut group = c.benchmark_group("batch");
        group.throughput(Throughput::Bytes((PAGES * PAGE_SIZE) as u64));
        let mut builder = PageBatchBuilder::new();
        let mut stream = FrameEncoder::new();
        group.bench_function(BenchmarkId::new("build", name), |b| {
            b.iter(|| {
                builder.begin(1);
                for (i, page) in pages.iter().enumerate() {
                    builder.push_page(i as u64, page, prev(i)).unwrap();
                }
                black_box(builder.seal(&mut stream).len());
            })
        });
        builder.begin(1);
        for (i, page) in pages.iter().enumerate() {
            builder.push_page(i as u64, page, prev(i)).unwrap();
        }
        let frame = builder.seal(&mut FrameEncoder::new()).to_vec();
        group.bench_function(BenchmarkId::new("receive", name), |b| {
            let mut guest = previous
                .clone()
                .unwrap_or_else(|| vec![[0u8; PAGE_SIZE]; PAGES]);
            b.iter(|| {
                let mut dec = FrameDecoder::new();
                let mut fed = 0;
                loop {
                    fed += dec.feed(&frame[fed..]);
                    if let Some(Frame::PageBatch(batch)) = dec.next_frame().unwrap() {
                        for page in batch.pages() {
                            let dest = &mut guest[page.page as usize];
                            if page.encoding == Encoding::Delta {
                                *dest = previous.as_ref().unwrap()[page.page as usize];
                            }
                            page.decode_into(dest).unwrap();
                        }
                        break;
                    }
                }
                black_box(&guest);
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = codec
}
criterion_main!(benches);
