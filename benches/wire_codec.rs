//! Page encode/decode throughput per kind of memory content (MB/s of guest
//! memory), and a whole page batch through the frame decoder.
//!
//! `cargo bench --bench wire_codec`; criterion reports the median in the
//! middle of each `[low median high]` triple.
//!
//! Every timed iteration is verified outside its timing: encoded pages
//! decode back to the originals, decoded pages equal them, a built batch
//! goes through the frame decoder to the same pages.
//!
//! Target, against a baseline of the same run (a plain in-cache copy of the
//! same 1 MiB of pages): a batch of any content is built and received each
//! at no less than a hundredth of the copy's rate. LZ4-compressing text is
//! the slowest (about 1/45 of the copy on the development host, 0.7 GB/s
//! per worker); a codec gone quadratic or byte-by-byte falls far below.
//!
//! `LPAR_MOVER_BENCH_QUICK=1`: a few short samples each.

#[path = "support/mod.rs"]
mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lpar_mover::wire::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

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
            let mut encodings = Vec::with_capacity(PAGES);
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    out.clear();
                    encodings.clear();
                    let t = Instant::now();
                    for (i, page) in pages.iter().enumerate() {
                        let start = out.len();
                        let enc = encode_page(black_box(page), prev(i), &mut out);
                        encodings.push((enc, start));
                    }
                    timed += t.elapsed();
                    verify_encoded(&out, &encodings, &pages, previous.as_deref());
                }
                timed
            })
        });
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            let mut guest = previous
                .clone()
                .unwrap_or_else(|| vec![[0u8; PAGE_SIZE]; PAGES]);
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    // Start from what the destination held before: the
                    // previous copy for deltas, else a page of garbage.
                    for (i, g) in guest.iter_mut().enumerate() {
                        *g = previous.as_ref().map_or([0xA5; PAGE_SIZE], |p| p[i]);
                    }
                    let t = Instant::now();
                    for (i, (enc, span)) in spans.iter().enumerate() {
                        decode_page(*enc, black_box(&encoded[span.clone()]), &mut guest[i])
                            .unwrap();
                    }
                    timed += t.elapsed();
                    assert!(guest == pages, "{name}: decoded pages differ");
                }
                timed
            })
        });
        group.finish();

        // A full batch: builder → frame bytes → decoder → guest memory.
        let mut group = c.benchmark_group("batch");
        group.throughput(Throughput::Bytes((PAGES * PAGE_SIZE) as u64));
        let mut builder = PageBatchBuilder::new();
        group.bench_function(BenchmarkId::new("build", name), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    builder.begin(1);
                    for (i, page) in pages.iter().enumerate() {
                        builder.push_page(i as u64, page, prev(i)).unwrap();
                    }
                    // A fresh stream per batch, so the receiving decoder
                    // (fresh too) expects its sequence number.
                    let frame = black_box(builder.seal(&mut FrameEncoder::new())).to_vec();
                    timed += t.elapsed();
                    let got = receive(&frame, previous.as_deref());
                    assert!(
                        got == pages,
                        "{name}: the built batch decodes to other pages"
                    );
                }
                timed
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
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    guest.iter_mut().for_each(|g| *g = [0xA5; PAGE_SIZE]);
                    let t = Instant::now();
                    receive_into(&frame, previous.as_deref(), &mut guest);
                    timed += t.elapsed();
                    assert!(guest == pages, "{name}: received pages differ");
                }
                timed
            })
        });
        group.finish();

        // The target: build and receive against a plain copy, same run.
        let runs = support::size(50, 5);
        let copy = std::cell::RefCell::new(vec![[0u8; PAGE_SIZE]; PAGES]);
        let plain = support::timed(
            runs,
            || copy.borrow_mut().copy_from_slice(black_box(&pages)),
            |()| assert!(*copy.borrow() == pages),
        );
        let build = support::timed(
            runs,
            || {
                builder.begin(1);
                for (i, page) in pages.iter().enumerate() {
                    builder.push_page(i as u64, page, prev(i)).unwrap();
                }
                builder.seal(&mut FrameEncoder::new()).to_vec()
            },
            |f| assert!(receive(&f, previous.as_deref()) == pages),
        );
        let guest = std::cell::RefCell::new(vec![[0u8; PAGE_SIZE]; PAGES]);
        let recv = support::timed(
            runs,
            || receive_into(&frame, previous.as_deref(), &mut guest.borrow_mut()),
            |()| assert!(*guest.borrow() == pages),
        );
        let rate = |d: Duration| (PAGES * PAGE_SIZE) as f64 / d.as_secs_f64() / 1e9;
        support::target(
            rate(build) >= rate(plain) / 100.0 && rate(recv) >= rate(plain) / 100.0,
            &format!(
                "{name}: build {:.2} GB/s, receive {:.2} GB/s, plain copy {:.2} GB/s \
                 (each at least 1/100 of the copy)",
                rate(build),
                rate(recv),
                rate(plain)
            ),
        );
    }
}

/// Decodes every page of `out` (at `encodings`' offsets) and checks each
/// against `pages`.
fn verify_encoded(
    out: &[u8],
    encodings: &[(Encoding, usize)],
    pages: &[Page],
    previous: Option<&[Page]>,
) {
    for (i, &(enc, start)) in encodings.iter().enumerate() {
        let end = encodings.get(i + 1).map_or(out.len(), |e| e.1);
        let mut page = previous.map_or([0xA5; PAGE_SIZE], |p| p[i]);
        decode_page(enc, &out[start..end], &mut page).unwrap();
        assert!(page == pages[i], "page {i} ({enc}) does not decode back");
    }
}

/// The pages of one page-batch frame, decoded onto fresh memory.
fn receive(frame: &[u8], previous: Option<&[Page]>) -> Vec<Page> {
    let mut guest = vec![[0xA5; PAGE_SIZE]; PAGES];
    receive_into(frame, previous, &mut guest);
    guest
}

/// Feeds `frame` to a frame decoder and decodes its pages into `guest`.
fn receive_into(frame: &[u8], previous: Option<&[Page]>, guest: &mut [Page]) {
    let mut dec = FrameDecoder::new();
    let mut fed = 0;
    loop {
        fed += dec.feed(&frame[fed..]);
        if let Some(Frame::PageBatch(batch)) = dec.next_frame().unwrap() {
            for page in batch.pages() {
                let dest = &mut guest[page.page as usize];
                if page.encoding == Encoding::Delta {
                    *dest = previous.unwrap()[page.page as usize];
                }
                page.decode_into(dest).unwrap();
            }
            return;
        }
        assert!(fed < frame.len(), "the frame ended without a page batch");
    }
}

criterion_group! {
    name = benches;
    config = support::criterion(
        Criterion::default()
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2)),
    );
    targets = codec
}
criterion_main!(benches);
