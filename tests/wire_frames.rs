//! Every frame kind survives the stream intact, however the bytes are split
//! on arrival; a whole migration's exchange reproduces guest memory exactly.

use lpar_mover::build_identity::BuildIdentity;
use lpar_mover::emg::{Emg, Module};
use lpar_mover::state::{HbaIdentity, Identities, MacAddress, NicIdentity, Wwpn};
use lpar_mover::wire::*;
use proptest::prelude::*;

/// Frames that own their bytes, for generating borrowed `Frame`s.
#[derive(Clone, Debug)]
enum Owned {
    Hello(Hello),
    LparConfig(Vec<u8>),
    Batch(u32, Vec<(u64, Vec<u8>)>),
    EndOfRound(EndOfRound),
    DeviceState(Vec<u8>),
    Switchover(Switchover),
    Abort(Emg),
    Keepalive(Keepalive),
    Identities(Identities),
    Rehearsal(Rehearsal),
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max)
        .prop_map(|cs| cs.into_iter().collect::<String>())
        .prop_filter("fits", move |s| s.len() <= max)
}

fn module() -> impl Strategy<Value = Module> {
    prop_oneof![
        Just(Module::Client),
        Just(Module::Management),
        Just(Module::Executor),
        Just(Module::MoverSource),
        Just(Module::MoverDestination),
        Just(Module::SourceHvm),
        Just(Module::DestinationHvm),
        Just(Module::Recovery),
    ]
}

fn page_content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0u8; PAGE_SIZE]),
        proptest::collection::vec(any::<u8>(), PAGE_SIZE),
        proptest::collection::vec(b'a'..=b'z', 1..40).prop_map(|w| w
            .iter()
            .copied()
            .cycle()
            .take(PAGE_SIZE)
            .collect()),
    ]
}

fn owned_frame() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (
            any::<u128>(),
            text(MAX_IDENTITY_STRING),
            text(MAX_IDENTITY_STRING),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..=MAX_AUTH_PROOF),
            any::<bool>()
        )
            .prop_map(|(id, v, c, w, proof, prev)| Owned::Hello(Hello {
                protocol_version: if prev {
                    PREVIOUS_PROTOCOL_VERSION
                } else {
                    PROTOCOL_VERSION
                },
                migration_id: MigrationId(id),
                build: BuildIdentity {
                    crate_version: v,
                    git_commit: c,
                    wire_protocol: w
                },
                auth_proof: proof,
            })),
        proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Owned::LparConfig),
        (
            any::<u32>(),
            proptest::collection::vec((any::<u64>(), page_content()), 0..6)
        )
            .prop_map(|(r, pages)| Owned::Batch(r, pages)),
        (any::<u32>(), any::<u64>())
            .prop_map(|(round, pages)| Owned::EndOfRound(EndOfRound { round, pages })),
        proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Owned::DeviceState),
        (0usize..4, any::<u64>(), any::<u64>()).prop_map(|(s, t, d)| Owned::Switchover(
            Switchover {
                step: SwitchoverStep::ALL[s],
                timestamp_ns: t,
                digest: d,
            }
        )),
        (
            module(),
            any::<u16>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            text(200),
            text(200)
        )
            .prop_map(|(m, p, c, d, r, rec, msg, act)| {
                let mut e = Emg::new(m, p, c, msg, act).detail(d).reason(r);
                e.needs_recovery = rec;
                Owned::Abort(e)
            }),
        any::<u64>().prop_map(|t| Owned::Keepalive(Keepalive { timestamp_ns: t })),
        any::<u64>().prop_map(|n| Owned::Rehearsal(Rehearsal { load_ns: n })),
        (
            proptest::collection::vec((any::<u64>(), any::<u64>()), 0..=MAX_IDENTITY_PORTS),
            proptest::collection::vec((any::<[u8; 6]>(), any::<bool>()), 0..=MAX_IDENTITY_PORTS)
        )
            .prop_map(|(hbas, nics)| Owned::Identities(Identities {
                hbas: hbas
                    .into_iter()
                    .map(|(w, m)| HbaIdentity {
                        wwpn: Wwpn::from_u64(w),
                        migration_wwpn: Wwpn::from_u64(m),
                    })
                    .collect(),
                nics: nics
                    .into_iter()
                    .map(|(mac, set_manually)| NicIdentity {
                        mac: MacAddress(mac),
                        set_manually,
                    })
                    .collect(),
            })),
    ]
}

/// Encodes `frames` on one stream; page batches go through the builder.
fn encode_stream(frames: &[Owned]) -> Vec<u8> {
    let mut enc = FrameEncoder::new();
    let mut builder = PageBatchBuilder::new();
    let mut out = Vec::new();
    for f in frames {
        match f {
            Owned::Batch(round, pages) => {
                builder.begin(*round);
                for (n, content) in pages {
                    builder
                        .push_page(*n, content.as_slice().try_into().unwrap(), None)
                        .unwrap();
                }
                out.extend_from_slice(builder.seal(&mut enc));
            }
            other => {
                let frame = match other {
                    Owned::Hello(h) => Frame::Hello(h.clone()),
                    Owned::LparConfig(b) => Frame::LparConfig(b),
                    Owned::EndOfRound(e) => Frame::EndOfRound(*e),
                    Owned::DeviceState(b) => Frame::DeviceState(b),
                    Owned::Switchover(s) => Frame::Switchover(*s),
                    Owned::Abort(e) => Frame::Abort(e.clone()),
                    Owned::Keepalive(k) => Frame::Keepalive(*k),
                    Owned::Identities(i) => Frame::Identities(i.clone()),
                    Owned::Rehearsal(r) => Frame::Rehearsal(*r),
                    Owned::Batch(..) => unreachable!(),
                };
                enc.encode(&frame, &mut out).unwrap();
            }
        }
    }
    out
}

fn check_matches(got: &Frame<'_>, want: &Owned) {
    match (got, want) {
        (Frame::Hello(a), Owned::Hello(b)) => assert_eq!(a, b),
        (Frame::LparConfig(a), Owned::LparConfig(b))
        | (Frame::DeviceState(a), Owned::DeviceState(b)) => {
            assert_eq!(a, &b.as_slice())
        }
        (Frame::PageBatch(batch), Owned::Batch(round, pages)) => {
            assert_eq!(batch.round, *round);
            assert_eq!(batch.len(), pages.len());
            for (page, (n, content)) in batch.pages().zip(pages) {
                assert_eq!(page.page, *n);
                let mut dest = [0x77u8; PAGE_SIZE];
                page.decode_into(&mut dest).unwrap();
                assert_eq!(&dest[..], &content[..]);
            }
        }
        (Frame::EndOfRound(a), Owned::EndOfRound(b)) => assert_eq!(a, b),
        (Frame::Switchover(a), Owned::Switchover(b)) => assert_eq!(a, b),
        (Frame::Abort(a), Owned::Abort(b)) => assert_eq!(a, b),
        (Frame::Keepalive(a), Owned::Keepalive(b)) => assert_eq!(a, b),
        (Frame::Identities(a), Owned::Identities(b)) => assert_eq!(a, b),
        (Frame::Rehearsal(a), Owned::Rehearsal(b)) => assert_eq!(a, b),
        (got, want) => panic!("got {:?}, sent {want:?}", got.kind()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_frame_kind_round_trips_in_any_chunking(
        frames in proptest::collection::vec(owned_frame(), 1..8),
        chunk in 1usize..5000,
    ) {
        let bytes = encode_stream(&frames);
        let mut dec = FrameDecoder::new();
        let mut next = 0;
        for piece in bytes.chunks(chunk) {
            let mut piece = piece;
            while !piece.is_empty() {
                let n = dec.feed(piece);
                piece = &piece[n..];
                while let Some(frame) = dec.next_frame().unwrap() {
                    check_matches(&frame, &frames[next]);
                    next += 1;
                }
            }
        }
        prop_assert_eq!(next, frames.len());
        prop_assert_eq!(dec.finish(), Ok(()));
        prop_assert_eq!(dec.expected_sequence(), frames.len() as u64);
    }
}

/// Guest memory as the tests see it: a few pages.
struct Guest(Vec<Page>);

#[test]
fn a_migration_exchange_reproduces_guest_memory_exactly() {
    const PAGES: usize = 600;
    // Source memory: zero, text-like and random pages.
    let mut source = Guest(vec![[0u8; PAGE_SIZE]; PAGES]);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for (n, page) in source.0.iter_mut().enumerate() {
        match n % 3 {
            0 => {}
            1 => {
                for (i, b) in page.iter_mut().enumerate() {
                    *b = b"round trip of a text page "[(i + n) % 26];
                }
            }
            _ => {
                for b in page.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
            }
        }
    }
    let mut enc = FrameEncoder::new();
    let mut stream = Vec::new();
    let builder = PageBatchBuilder::new();
    let id = MigrationId(42);
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        migration_id: id,
        build: BuildIdentity::current(),
        auth_proof: vec![1, 2, 3],
    };
    enc.encode(&Frame::Hello(hello.clone()), &mut stream)
        .unwrap();
    enc.encode(&Frame::LparConfig(b"{\"name\":\"LPAR1\"}"), &mut stream)
        .unwrap();

    let mut sender = Sender {
        enc,
        builder,
        sent: vec![None; PAGES],
    };
    let all: Vec<usize> = (0..PAGES).collect();
    sender.round(0, &all, &source, &mut stream);
    // Round 1: the guest rewrote a few words in some pages.
    let hot: Vec<usize> = (0..PAGES).step_by(7).collect();
    for &n in &hot {
        source.0[n][n % 4000..n % 4000 + 8].copy_from_slice(&(n as u64).to_le_bytes());
    }
    sender.round(1, &hot, &source, &mut stream);
    // Suspended: the final dirty pages (one of them zeroed), device state, commit.
    let suspended = Switchover {
        step: SwitchoverStep::Suspended,
        timestamp_ns: 1,
        digest: 0,
    };
    sender
        .enc
        .encode(&Frame::Switchover(suspended), &mut stream)
        .unwrap();
    source.0[8] = [0; PAGE_SIZE];
    source.0[9][100] ^= 0xff;
    sender.round(2, &[8, 9], &source, &mut stream);
    sender
        .enc
        .encode(&Frame::DeviceState(b"device state"), &mut stream)
        .unwrap();
    let commit = Switchover {
        step: SwitchoverStep::Commit,
        timestamp_ns: 2,
        digest: 0,
    };
    sender
        .enc
        .encode(&Frame::Switchover(commit), &mut stream)
        .unwrap();

    // Destination.
    let mut dest = Guest(vec![[0xEEu8; PAGE_SIZE]; PAGES]);
    let mut dec = FrameDecoder::new();
    let mut rest = stream.as_slice();
    let mut rounds = Vec::new();
    let mut in_round = 0u64;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        let n = dec.feed(&rest[..rest.len().min(65_536)]);
        rest = &rest[n..];
        while let Some(frame) = dec.next_frame().unwrap() {
            match frame {
                Frame::Hello(h) => assert_eq!(h, hello),
                Frame::LparConfig(c) => assert_eq!(c, b"{\"name\":\"LPAR1\"}"),
                Frame::PageBatch(batch) => {
                    for page in batch.pages() {
                        page.decode_into(&mut dest.0[page.page as usize]).unwrap();
                        in_round += 1;
                    }
                }
                Frame::EndOfRound(end) => {
                    assert_eq!(end.pages, in_round, "round {} incomplete", end.round);
                    rounds.push(end.round);
                    in_round = 0;
                }
                Frame::Switchover(s) => steps.push(s.step),
                Frame::DeviceState(state) => assert_eq!(state, b"device state"),
                other => panic!("unexpected {:?}", other.kind()),
            }
        }
    }
    dec.finish().unwrap();
    assert_eq!(rounds, vec![0, 1, 2]);
    assert_eq!(
        steps,
        vec![SwitchoverStep::Suspended, SwitchoverStep::Commit]
    );
    assert!(
        dest.0 == source.0,
        "destination memory differs from the source"
    );
}

/// The source side of one stream: what it sent of each page, for deltas.
struct Sender {
    enc: FrameEncoder,
    builder: PageBatchBuilder,
    sent: Vec<Option<Page>>,
}

impl Sender {
    fn round(&mut self, round: u32, dirty: &[usize], source: &Guest, stream: &mut Vec<u8>) {
        self.builder.begin(round);
        for &n in dirty {
            if self.builder.is_full() {
                stream.extend_from_slice(self.builder.seal(&mut self.enc));
                self.builder.begin(round);
            }
            // The bounce copy: what is encoded is what the receiver will hold.
            let page = source.0[n];
            self.builder
                .push_page(n as u64, &page, self.sent[n].as_ref())
                .unwrap();
            self.sent[n] = Some(page);
        }
        stream.extend_from_slice(self.builder.seal(&mut self.enc));
        let end = EndOfRound {
            round,
            pages: dirty.len() as u64,
        };
        self.enc.encode(&Frame::EndOfRound(end), stream).unwrap();
    }
}
