//! Hostile and damaged migration streams: each is refused with the error an
//! operator needs, never a panic and never a frame built from bad bytes.

use lpar_mover::build_identity::BuildIdentity;
use lpar_mover::emg::{Emg, Module, phase};
use lpar_mover::wire::*;

fn keepalive(t: u64) -> Frame<'static> {
    Frame::Keepalive(Keepalive { timestamp_ns: t })
}

/// Each frame encoded on its own (so tests can drop, repeat or swap them).
fn encoded(frames: &[Frame<'_>]) -> Vec<Vec<u8>> {
    let mut enc = FrameEncoder::new();
    frames
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            enc.encode(f, &mut out).unwrap();
            out
        })
        .collect()
}

/// Recomputes the CRC after a test edits a frame, so only the edit is wrong.
fn reseal(frame: &mut [u8]) {
    frame[12..16].fill(0);
    let crc = crc32fast::hash(frame);
    frame[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// Feeds `bytes` and drains frames; returns the kinds seen and the first
/// error (or the end-of-stream verdict).
fn decode_all(bytes: &[u8]) -> (Vec<FrameKind>, Result<(), WireError>) {
    let mut dec = FrameDecoder::new();
    let mut kinds = Vec::new();
    let mut rest = bytes;
    loop {
        let n = dec.feed(rest);
        rest = &rest[n..];
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => kinds.push(frame.kind()),
                Ok(None) => break,
                Err(err) => return (kinds, Err(err)),
            }
        }
        if rest.is_empty() {
            return (kinds, dec.finish());
        }
    }
}

fn hello(version: u16) -> Frame<'static> {
    Frame::Hello(Hello {
        protocol_version: version,
        migration_id: MigrationId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
        build: BuildIdentity::current(),
        auth_proof: vec![0xA5; 32],
    })
}

#[test]
fn stream_cut_inside_a_frame_reports_how_much_arrived() {
    let frames = encoded(&[keepalive(1), keepalive(2)]);
    let mut bytes = frames.concat();
    bytes.truncate(frames[0].len() + 10);
    let (kinds, verdict) = decode_all(&bytes);
    assert_eq!(kinds, vec![FrameKind::Keepalive]);
    assert_eq!(
        verdict,
        Err(WireError::Truncated {
            buffered: 10,
            needed: HEADER_LEN
        })
    );

    let mut bytes = frames.concat();
    bytes.truncate(frames[0].len() + HEADER_LEN + 3);
    let (_, verdict) = decode_all(&bytes);
    assert_eq!(
        verdict,
        Err(WireError::Truncated {
            buffered: HEADER_LEN + 3,
            needed: HEADER_LEN + 8
        })
    );
    let emg = Emg::from(verdict.unwrap_err());
    assert_eq!(emg.phase, phase::CONNECTION_LOST);
}

#[test]
fn a_flipped_payload_bit_fails_the_checksum() {
    let mut frames = encoded(&[keepalive(1), keepalive(2)]);
    frames[1][HEADER_LEN + 3] ^= 0x10;
    let (kinds, verdict) = decode_all(&frames.concat());
    assert_eq!(kinds.len(), 1);
    assert!(matches!(
        verdict,
        Err(WireError::ChecksumMismatch {
            sequence: 1,
            kind: FrameKind::Keepalive,
            ..
        })
    ));
}

#[test]
fn a_flipped_header_bit_fails_the_checksum() {
    let mut frames = encoded(&[keepalive(1)]);
    frames[0][20] ^= 0x01; // a sequence-number bit
    let (_, verdict) = decode_all(&frames.concat());
    assert!(matches!(verdict, Err(WireError::ChecksumMismatch { .. })));
}

#[test]
fn a_duplicated_frame_is_refused() {
    let f = encoded(&[keepalive(1), keepalive(2), keepalive(3)]);
    let (kinds, verdict) = decode_all(&[&f[0][..], &f[1], &f[1], &f[2]].concat());
    assert_eq!(kinds.len(), 2);
    assert_eq!(
        verdict,
        Err(WireError::DuplicateFrame {
            expected: 2,
            got: 1
        })
    );
}

#[test]
fn frames_out_of_order_are_refused() {
    let f = encoded(&[keepalive(1), keepalive(2), keepalive(3), keepalive(4)]);
    // Frame 2 overtakes frame 1: frame 1 looks missing.
    let (_, verdict) = decode_all(&[&f[0][..], &f[2], &f[1]].concat());
    assert_eq!(
        verdict,
        Err(WireError::MissingFrames {
            expected: 1,
            got: 2
        })
    );
    // An old frame turns up after later ones.
    let (_, verdict) = decode_all(&[&f[0][..], &f[1], &f[2], &f[0]].concat());
    assert_eq!(
        verdict,
        Err(WireError::ReorderedFrame {
            expected: 3,
            got: 0
        })
    );
}

#[test]
fn a_lost_frame_is_refused() {
    let f = encoded(&[keepalive(1), keepalive(2), keepalive(3), keepalive(4)]);
    let (kinds, verdict) = decode_all(&[&f[0][..], &f[3]].concat());
    assert_eq!(kinds.len(), 1);
    let err = verdict.unwrap_err();
    assert_eq!(
        err,
        WireError::MissingFrames {
            expected: 1,
            got: 3
        }
    );
    assert!(err.to_string().contains("frames 1 to 2 are missing"));
}

#[test]
fn an_oversized_length_is_refused_from_the_header_alone() {
    let mut f = encoded(&[keepalive(1)]).remove(0);
    f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut dec = FrameDecoder::new();
    dec.feed(&f[..HEADER_LEN]); // no payload: the header is enough
    assert_eq!(
        dec.next_frame(),
        Err(WireError::Oversized {
            sequence: 0,
            kind: FrameKind::Keepalive,
            length: u64::from(u32::MAX),
            max: KEEPALIVE_PAYLOAD as u64
        })
    );

    // A page batch may be large, but not beyond its bound.
    f[6] = FrameKind::PageBatch as u8;
    f[8..12].copy_from_slice(&((MAX_BATCH_PAYLOAD + 1) as u32).to_le_bytes());
    let mut dec = FrameDecoder::new();
    dec.feed(&f[..HEADER_LEN]);
    assert!(matches!(
        dec.next_frame(),
        Err(WireError::Oversized {
            kind: FrameKind::PageBatch,
            ..
        })
    ));
}

#[test]
fn a_peer_two_versions_ahead_is_refused_naming_both_versions() {
    let mut f = encoded(&[keepalive(1)]).remove(0);
    let theirs = PROTOCOL_VERSION + 2;
    f[4..6].copy_from_slice(&theirs.to_le_bytes());
    reseal(&mut f);
    let (_, verdict) = decode_all(&f);
    let err = verdict.unwrap_err();
    assert_eq!(
        err,
        WireError::UnsupportedVersion {
            theirs,
            ours: PROTOCOL_VERSION
        }
    );
    let emg = Emg::from(err);
    assert!(emg.message.contains(&format!("version {theirs}")), "{emg}");
    assert!(
        emg.message.contains(&format!("version {PROTOCOL_VERSION}")),
        "{emg}"
    );
    assert!(emg.action.contains("Update"));
}

#[test]
fn a_peer_one_version_behind_is_accepted() {
    let mut f = encoded(&[hello(PREVIOUS_PROTOCOL_VERSION)]).remove(0);
    f[4..6].copy_from_slice(&PREVIOUS_PROTOCOL_VERSION.to_le_bytes());
    reseal(&mut f);
    let (kinds, verdict) = decode_all(&f);
    assert_eq!(kinds, vec![FrameKind::Hello]);
    assert_eq!(verdict, Ok(()));
}

#[test]
fn a_hello_announcing_an_unsupported_version_is_refused() {
    let f = encoded(&[hello(PROTOCOL_VERSION + 1)]).remove(0);
    let (_, verdict) = decode_all(&f);
    assert_eq!(
        verdict,
        Err(WireError::UnsupportedVersion {
            theirs: PROTOCOL_VERSION + 1,
            ours: PROTOCOL_VERSION
        })
    );
}

#[test]
fn a_stream_that_is_not_lpar_mover_is_refused() {
    let (_, verdict) = decode_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(verdict, Err(WireError::BadMagic { found: *b"GET " }));
}

#[test]
fn unknown_kinds_and_flags_are_refused() {
    let mut f = encoded(&[keepalive(1)]).remove(0);
    f[6] = 0x7f;
    reseal(&mut f);
    assert_eq!(
        decode_all(&f).1,
        Err(WireError::UnknownKind {
            sequence: 0,
            kind: 0x7f
        })
    );

    let mut f = encoded(&[keepalive(1)]).remove(0);
    f[7] = 0x80;
    reseal(&mut f);
    assert_eq!(
        decode_all(&f).1,
        Err(WireError::UnknownFlags {
            sequence: 0,
            kind: FrameKind::Keepalive,
            flags: 0x80
        })
    );
}

#[test]
fn a_batch_claiming_more_pages_than_it_holds_is_malformed() {
    let mut builder = PageBatchBuilder::new();
    builder.push_page(1, &[3; PAGE_SIZE], None).unwrap();
    let mut f = builder.seal(&mut FrameEncoder::new()).to_vec();
    f[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut f);
    assert!(matches!(
        decode_all(&f).1,
        Err(WireError::Malformed {
            kind: FrameKind::PageBatch,
            ..
        })
    ));
}

#[test]
fn a_corrupt_lz4_page_with_a_valid_checksum_fails_when_decoded() {
    let mut builder = PageBatchBuilder::new();
    builder
        .push_encoded(0x42, Encoding::Lz4, &[0xf0, 1, 2, 3])
        .unwrap();
    let f = builder.seal(&mut FrameEncoder::new()).to_vec();
    let mut dec = FrameDecoder::new();
    dec.feed(&f);
    let Some(Frame::PageBatch(batch)) = dec.next_frame().unwrap() else {
        panic!("a batch")
    };
    let page = batch.pages().next().unwrap();
    let mut guest = [0u8; PAGE_SIZE];
    let err = page.decode_into(&mut guest).unwrap_err();
    assert!(matches!(
        err,
        WireError::BadPage {
            page: 0x42,
            encoding: Encoding::Lz4,
            ..
        }
    ));
    let emg = Emg::from(err);
    assert_eq!(
        (emg.module, emg.phase, emg.detail),
        (Module::MoverDestination, phase::MEMORY_TRANSFER, 0x42)
    );
}

#[test]
fn a_delta_reaching_past_the_page_fails_and_leaves_the_page_alone() {
    let mut builder = PageBatchBuilder::new();
    // skip 4090 bytes, then 10 bytes of XOR: beyond the page end.
    let mut payload = vec![0xfa, 0x0f, 10, 0];
    payload.extend_from_slice(&[1; 10]);
    builder.push_encoded(7, Encoding::Delta, &payload).unwrap();
    let f = builder.seal(&mut FrameEncoder::new()).to_vec();
    let mut dec = FrameDecoder::new();
    dec.feed(&f);
    let Some(Frame::PageBatch(batch)) = dec.next_frame().unwrap() else {
        panic!("a batch")
    };
    let mut guest = [9u8; PAGE_SIZE];
    let err = batch
        .pages()
        .next()
        .unwrap()
        .decode_into(&mut guest)
        .unwrap_err();
    assert_eq!(
        err,
        WireError::BadPage {
            page: 7,
            encoding: Encoding::Delta,
            problem: PageError::DeltaOutOfPage
        }
    );
    assert_eq!(guest, [9u8; PAGE_SIZE]);
}

#[test]
fn after_an_error_the_stream_stays_dead() {
    let mut f = encoded(&[keepalive(1), keepalive(2)]);
    f[0][HEADER_LEN] ^= 1;
    let mut dec = FrameDecoder::new();
    dec.feed(&f.concat());
    let err = dec.next_frame().unwrap_err();
    assert_eq!(dec.next_frame(), Err(err));
    assert_eq!(dec.finish(), Err(err));
}

#[test]
fn every_single_byte_corruption_of_a_batch_is_caught() {
    let mut builder = PageBatchBuilder::with_max_pages(4);
    let text: Vec<u8> = b"lpar memory page "
        .iter()
        .copied()
        .cycle()
        .take(PAGE_SIZE)
        .collect();
    builder
        .push_page(1, text.as_slice().try_into().unwrap(), None)
        .unwrap();
    builder.push_page(2, &[0; PAGE_SIZE], None).unwrap();
    let good = builder.seal(&mut FrameEncoder::new()).to_vec();
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x04;
        let (kinds, verdict) = decode_all(&bad);
        assert!(
            kinds.is_empty() && verdict.is_err(),
            "corruption at byte {at} went unnoticed"
        );
    }
}

/// An Identities payload with `hbas` FC ports and `nics` NICs, all zero.
fn identities_payload(hbas: u8, nics: u8) -> Vec<u8> {
    let mut p = vec![hbas];
    p.extend(std::iter::repeat_n(0u8, 16 * usize::from(hbas)));
    p.push(nics);
    p.extend(std::iter::repeat_n(0u8, 7 * usize::from(nics)));
    p
}

#[test]
fn identities_with_counts_beyond_the_limit_are_malformed() {
    assert!(Frame::parse(FrameKind::Identities, &identities_payload(2, 3)).is_ok());
    let over = (MAX_IDENTITY_PORTS + 1) as u8;
    // A hostile count is refused before any entry is read.
    let mut p = identities_payload(0, 0);
    p[0] = over;
    assert!(matches!(
        Frame::parse(FrameKind::Identities, &p),
        Err(WireError::Malformed {
            kind: FrameKind::Identities,
            ..
        })
    ));
    let mut p = identities_payload(0, 0);
    p[1] = over;
    assert!(Frame::parse(FrameKind::Identities, &p).is_err());
}

#[test]
fn identities_truncated_or_padded_are_refused() {
    let p = identities_payload(2, 2);
    for cut in 0..p.len() {
        assert!(
            Frame::parse(FrameKind::Identities, &p[..cut]).is_err(),
            "a payload cut at {cut} of {} bytes parsed",
            p.len()
        );
    }
    let mut padded = p.clone();
    padded.push(0);
    assert!(Frame::parse(FrameKind::Identities, &padded).is_err());
}

#[test]
fn identities_with_a_manual_flag_other_than_0_or_1_are_malformed() {
    let mut p = identities_payload(0, 1);
    let flag = p.len() - 1;
    p[flag] = 1;
    assert!(Frame::parse(FrameKind::Identities, &p).is_ok());
    p[flag] = 2;
    assert!(matches!(
        Frame::parse(FrameKind::Identities, &p),
        Err(WireError::Malformed { .. })
    ));
}

#[test]
fn an_oversized_identities_frame_is_refused_from_its_header() {
    let mut f = encoded(&[keepalive(1)]).remove(0);
    f[6] = FrameKind::Identities as u8;
    f[8..12].copy_from_slice(&((MAX_IDENTITIES_PAYLOAD + 1) as u32).to_le_bytes());
    reseal(&mut f);
    assert!(decode_all(&f).1.is_err());
}
