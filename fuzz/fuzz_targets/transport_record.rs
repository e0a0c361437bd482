//! The record layer of an encrypted migration stream opens whatever bytes
//! arrive after the handshake: a header that announces any length, a body
//! that fails authentication, a record sealed with the right key but bent
//! afterwards. Every input must yield plaintext or a typed error, never a
//! panic; a record sealed from the input's tail opens to exactly that tail,
//! in place and into another buffer (`seal_into`, `open_into`: what the
//! streams use), and the same record with any byte changed does not open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::transport::record::{
    Direction, HEADER_LEN, MAX_PLAINTEXT, body_len, sealed_len,
};

const KEY: [u8; 16] = [0x42; 16];
const IV: [u8; 12] = [0x24; 12];

fuzz_target!(|data: &[u8]| {
    // Raw bytes as a record stream: header checks bound every read.
    let mut rx = Direction::from_raw(&KEY, IV).unwrap();
    let mut buf = data.to_vec();
    let mut at = 0;
    while let Ok(len) = body_len(&buf[at..]) {
        let end = at + HEADER_LEN + len;
        if end > buf.len() {
            break;
        }
        // Every other record into a separate buffer, as the stream reader
        // opens them.
        if at % 2 == 0 {
            let mut out = vec![0u8; MAX_PLAINTEXT + 1];
            if let Ok(n) = rx.open_into(&buf[at..end], &mut out) {
                assert!(n <= MAX_PLAINTEXT);
            }
        } else if let Ok(r) = rx.open(&mut buf[at..end]) {
            assert!(r.end <= end - at);
        }
        at = end;
    }
    // A genuine record of the tail, then the same record with one byte
    // flipped where the first input byte says.
    let Some((&flip, tail)) = data.split_first() else {
        return;
    };
    let tail = &tail[..tail.len().min(MAX_PLAINTEXT)];
    let mut tx = Direction::from_raw(&KEY, IV).unwrap();
    let mut sealed = Vec::new();
    tx.seal(tail, &mut sealed).unwrap();
    let mut bent = sealed.clone();
    let mut into = vec![0u8; sealed_len(tail.len())];
    let n = Direction::from_raw(&KEY, IV)
        .unwrap()
        .seal_into(tail, &mut into)
        .unwrap();
    assert_eq!(into[..n], sealed[..], "seal_into and seal agree");
    let mut out = vec![0u8; MAX_PLAINTEXT + 1];
    let opened = Direction::from_raw(&KEY, IV)
        .unwrap()
        .open_into(&sealed, &mut out)
        .unwrap();
    assert_eq!(&out[..opened], tail);
    let mut rx = Direction::from_raw(&KEY, IV).unwrap();
    let r = rx.open(&mut sealed).unwrap();
    assert_eq!(&sealed[r], tail);
    let i = usize::from(flip) * bent.len() / 256;
    bent[i] ^= 0x01;
    let mut rx = Direction::from_raw(&KEY, IV).unwrap();
    assert!(rx.open_into(&bent, &mut out).is_err());
    let mut rx = Direction::from_raw(&KEY, IV).unwrap();
    assert!(rx.open(&mut bent).is_err());
});
