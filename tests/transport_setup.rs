//! Setting up a migration's streams over loopback: two path addresses in
//! 127/8 stand for the source and destination migration NICs.

use lpar_mover::emg::{self, Emg, Module};
use lpar_mover::transport::handshake::{
    self, Bound, Challenge, Decision, Hello, NO_BINDING, Prover, Response, Verdict,
};
use lpar_mover::transport::{
    Encryption, MigrationPath, MigrationStream, OneTimeKey, PathListener, StreamOptions,
    TransportError, applied_options, connect_streams, connect_streams_with,
};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn dst_path() -> MigrationPath {
    MigrationPath::new("mig-dst", Ipv4Addr::new(127, 0, 0, 1))
}

fn src_path() -> MigrationPath {
    MigrationPath::new("mig-src", Ipv4Addr::new(127, 0, 0, 2))
}

const SECOND: Duration = Duration::from_secs(1);

/// Runs `accept_streams` on a thread; returns its join handle.
fn accept_in_background(
    listener: &Arc<PathListener>,
    n: usize,
    key: &OneTimeKey,
    id: u64,
    within: Duration,
) -> std::thread::JoinHandle<Result<Vec<MigrationStream>, TransportError>> {
    let (l, k) = (listener.clone(), key.clone());
    std::thread::spawn(move || l.accept_streams(n, &k, id, Instant::now() + within))
}

#[test]
fn four_streams_connect_from_the_source_path_address_to_the_destination_path_only() {
    let listener = Arc::new(PathListener::bind(&dst_path(), 0).unwrap());
    assert_eq!(listener.local_addr().ip(), Ipv4Addr::new(127, 0, 0, 1));
    let key = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 4, &key, 0x51, 5 * SECOND);
    let src = connect_streams(
        &src_path(),
        listener.local_addr(),
        4,
        &key,
        0x51,
        5 * SECOND,
    )
    .unwrap();
    let mut src = src;
    let mut dst = dst.join().unwrap().unwrap();
    assert_eq!((src.len(), dst.len()), (4, 4));
    for s in &src {
        assert_eq!(s.local_addr().unwrap().ip(), Ipv4Addr::new(127, 0, 0, 2));
    }
    for d in &dst {
        assert_eq!(d.peer_addr().unwrap().ip(), Ipv4Addr::new(127, 0, 0, 2));
    }
    // Streams come back in index order on both ends: stream i talks to stream i.
    for (i, (s, d)) in src.iter_mut().zip(dst.iter_mut()).enumerate() {
        assert!(s.cipher_suite().is_some() && d.cipher_suite().is_some());
        s.write_all(&[i as u8]).unwrap();
        let mut b = [0u8; 1];
        d.read_exact(&mut b).unwrap();
        assert_eq!(b[0], i as u8);
    }
    // Dead-peer detection is armed on both ends.
    for s in src.iter().chain(&dst) {
        let o = applied_options(s.tcp()).unwrap();
        assert_eq!(o.user_timeout, Some(Duration::from_secs(5)));
        assert!(o.keepalive && o.nodelay);
        assert_eq!(
            (o.keepalive_idle, o.keepalive_interval, o.keepalive_count),
            (2 * SECOND, SECOND, 3)
        );
    }
}

#[test]
fn a_source_with_the_wrong_key_is_refused_on_both_ends() {
    let listener = Arc::new(PathListener::bind(&dst_path(), 0).unwrap());
    let key = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 2, &key, 7, SECOND);
    let wrong = OneTimeKey::generate().unwrap();
    let err =
        connect_streams(&src_path(), listener.local_addr(), 2, &wrong, 7, 5 * SECOND).unwrap_err();
    assert!(
        matches!(err, TransportError::AuthenticationFailed { stream: 0, .. }),
        "{err}"
    );
    let emg: Emg = err.into();
    assert_eq!(
        (emg.module, emg.phase, emg.reason),
        (
            Module::MoverSource,
            emg::phase::CONNECT,
            emg::reason::CONNECTION_REFUSED
        )
    );

    let err = dst.join().unwrap().unwrap_err();
    assert!(
        matches!(err, TransportError::AuthenticationFailed { .. }),
        "{err}"
    );
    let emg: Emg = err.into();
    assert_eq!(emg.module, Module::MoverDestination);
    assert!(emg.message.contains("127.0.0.2"), "{emg}");
}

#[test]
fn a_key_consumed_by_a_finished_migration_is_refused_as_replayed() {
    let listener = Arc::new(PathListener::bind(&dst_path(), 0).unwrap());
    let old = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 1, &old, 1, 5 * SECOND);
    connect_streams(&src_path(), listener.local_addr(), 1, &old, 1, 5 * SECOND).unwrap();
    dst.join().unwrap().unwrap();

    // The destination will not accept streams with that key again ...
    let err = listener
        .accept_streams(1, &old, 2, Instant::now() + SECOND)
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::KeyReplayed {
                migration_id: 1,
                ..
            }
        ),
        "{err}"
    );

    // ... and a source replaying it against the next migration is named as such.
    let new = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 1, &new, 2, SECOND);
    let err =
        connect_streams(&src_path(), listener.local_addr(), 1, &old, 1, 5 * SECOND).unwrap_err();
    assert!(matches!(err, TransportError::KeyReplayed { .. }), "{err}");
    let err = dst.join().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::KeyReplayed {
                migration_id: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        Emg::from(err).cause,
        lpar_mover::transport::cause::KEY_REPLAYED
    );
}

/// A listener that also accepts plaintext streams, so a test can speak the
/// handshake by hand.
fn plaintext_listener(opts: StreamOptions) -> Arc<PathListener> {
    let opts = StreamOptions {
        encryption: Encryption::InsecurePlaintext,
        ..opts
    };
    Arc::new(PathListener::bind_with(&dst_path(), 0, opts, Default::default()).unwrap())
}

/// Speaks the handshake by hand, in clear: returns the challenge's nonce
/// and a stream.
fn raw_challenge(addr: SocketAddr) -> (TcpStream, [u8; 32]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&Hello.encode()).unwrap();
    let mut buf = [0u8; handshake::CHALLENGE_MSG_LEN];
    s.read_exact(&mut buf).unwrap();
    (s, Challenge::decode(&buf).unwrap().nonce)
}

fn raw_verdict(s: &mut TcpStream) -> Decision {
    let mut buf = [0u8; handshake::VERDICT_MSG_LEN];
    s.read_exact(&mut buf).unwrap();
    Decision::decode(&buf).unwrap()
}

#[test]
fn an_answer_replayed_on_a_second_connection_is_refused() {
    let listener = plaintext_listener(StreamOptions::default());
    let key = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 2, &key, 9, SECOND);

    let (mut first, nonce) = raw_challenge(listener.local_addr());
    let bound = Bound {
        nonce: &nonce,
        migration_id: 9,
        stream: 0,
        binding: &NO_BINDING,
    };
    let genuine = Response {
        stream: 0,
        migration_id: 9,
        tag: handshake::answer(&key, Prover::Source, &bound),
    };
    first.write_all(&genuine.encode()).unwrap();
    let d = raw_verdict(&mut first);
    assert_eq!(d.verdict, Verdict::Accepted);
    // The destination proved the key in turn.
    assert!(handshake::verify(
        &key,
        Prover::Destination,
        &bound,
        &d.proof
    ));

    // An eavesdropper replays the same bytes: the new nonce makes them stale.
    let (mut second, nonce2) = raw_challenge(listener.local_addr());
    assert_ne!(nonce, nonce2, "every stream gets a fresh challenge");
    second.write_all(&genuine.encode()).unwrap();
    assert_eq!(raw_verdict(&mut second).verdict, Verdict::AnswerReplayed);
    let err = dst.join().unwrap().unwrap_err();
    assert!(
        matches!(err, TransportError::AnswerReplayed { .. }),
        "{err}"
    );
}

#[test]
fn a_silent_peer_times_out_without_blocking_the_real_streams() {
    // The destination's handshake timeout is what the silent peer meets;
    // the real source keeps the default, so a loaded machine cannot make
    // its own handshake time out.
    let opts = StreamOptions {
        handshake_timeout: Duration::from_millis(1000),
        ..Default::default()
    };
    let listener = Arc::new(
        PathListener::bind_with(&dst_path(), 0, opts.clone(), Default::default()).unwrap(),
    );
    let key = listener.issue_key().unwrap();

    // Only a silent peer: the destination reports the handshake timeout.
    let started = Instant::now();
    let dst = accept_in_background(&listener, 1, &key, 3, 3 * SECOND);
    let _silent = TcpStream::connect(listener.local_addr()).unwrap();
    let err = dst.join().unwrap().unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeTimeout { .. }),
        "{err}"
    );
    // Not before the peer's handshake time ran out.
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );

    // A silent peer and the real source: the real streams get through.
    let key = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 2, &key, 4, 5 * SECOND);
    let _silent = TcpStream::connect(listener.local_addr()).unwrap();
    connect_streams_with(
        &src_path(),
        listener.local_addr(),
        2,
        &key,
        4,
        5 * SECOND,
        &StreamOptions::default(),
    )
    .unwrap();
    assert_eq!(dst.join().unwrap().unwrap().len(), 2);
}

#[test]
fn a_destination_that_never_challenges_times_out_the_source() {
    // A plain listener that accepts and says nothing.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let opts = StreamOptions {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let key = OneTimeKey::generate().unwrap();
    let started = Instant::now();
    let err = connect_streams_with(
        &src_path(),
        mute.local_addr().unwrap(),
        1,
        &key,
        5,
        5 * SECOND,
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeTimeout { .. }),
        "{err}"
    );
    // Not before its handshake timeout.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn garbage_instead_of_a_response_is_refused_as_malformed() {
    let listener = plaintext_listener(StreamOptions::default());
    let key = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 1, &key, 6, SECOND);
    let (mut s, _) = raw_challenge(listener.local_addr());
    s.write_all(&[b'G'; handshake::RESPONSE_MSG_LEN]).unwrap();
    let err = dst.join().unwrap().unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeMalformed { .. }),
        "{err}"
    );
}

#[test]
fn binding_to_an_address_not_on_this_host_fails_naming_the_address() {
    let absent = MigrationPath::new("mig-x", Ipv4Addr::new(192, 0, 2, 1));
    let err = PathListener::bind(&absent, 0).err().unwrap();
    assert!(
        matches!(err, TransportError::PathAddressNotLocal { .. }),
        "{err}"
    );
    let emg: Emg = err.into();
    assert_eq!(
        (emg.module, emg.phase),
        (Module::MoverDestination, emg::phase::DESTINATION_PATH)
    );
    assert!(emg.message.contains("192.0.2.1"), "{emg}");

    let key = OneTimeKey::generate().unwrap();
    let err =
        connect_streams(&absent, "127.0.0.1:9".parse().unwrap(), 1, &key, 1, SECOND).unwrap_err();
    let emg: Emg = err.into();
    assert_eq!(
        (emg.module, emg.phase),
        (Module::MoverSource, emg::phase::SOURCE_PATH)
    );
    assert!(
        emg.message
            .contains("192.0.2.1 is not present on this host"),
        "{emg}"
    );
}

#[test]
fn connecting_where_nobody_listens_is_a_refused_connection() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let remote = SocketAddr::from(([127, 0, 0, 1], port));
    let key = OneTimeKey::generate().unwrap();
    let err = connect_streams(&src_path(), remote, 2, &key, 1, SECOND).unwrap_err();
    assert!(
        matches!(err, TransportError::ConnectionRefused { .. }),
        "{err}"
    );
    let emg: Emg = err.into();
    assert_eq!(emg.reason, emg::reason::CONNECTION_REFUSED);
    assert!(
        emg.message.contains(&remote.to_string()) && emg.message.contains("127.0.0.2"),
        "{emg}"
    );
}

#[test]
fn streams_bind_to_the_loopback_device_when_running_as_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        lpar_mover::skip!("SO_BINDTODEVICE needs CAP_NET_RAW; run the tests as root to cover it");
    }
    let dst = dst_path().with_interface("lo");
    let src = src_path().with_interface("lo");
    let listener = Arc::new(PathListener::bind(&dst, 0).unwrap());
    let key = listener.issue_key().unwrap();
    let accepted = accept_in_background(&listener, 2, &key, 8, 5 * SECOND);
    let streams = connect_streams(&src, listener.local_addr(), 2, &key, 8, 5 * SECOND).unwrap();
    accepted.join().unwrap().unwrap();
    for s in &streams {
        assert_eq!(
            applied_options(s.tcp()).unwrap().bound_device.as_deref(),
            Some("lo")
        );
    }

    let missing = src_path().with_interface("nosuchnic0");
    let err = connect_streams(&missing, listener.local_addr(), 1, &key, 8, SECOND).unwrap_err();
    assert!(matches!(err, TransportError::BindToDevice { .. }), "{err}");
    assert!(Emg::from(err).action.contains("nosuchnic0"));
}

#[test]
fn a_listener_whose_handshake_slots_are_taken_makes_the_source_wait_not_fail() {
    let opts = StreamOptions {
        handshake_timeout: Duration::from_millis(300),
        max_pending_handshakes: 2,
        ..Default::default()
    };
    let listener = plaintext_listener(opts.clone());
    let key = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 2, &key, 12, 5 * SECOND);
    // Two silent peers take both slots until their handshakes time out:
    // each has its challenge, so the listener counts it as pending.
    let _squatters: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(listener.local_addr()).unwrap();
            s.write_all(&Hello.encode()).unwrap();
            let mut challenge = [0u8; handshake::CHALLENGE_MSG_LEN];
            s.read_exact(&mut challenge).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let streams = connect_streams_with(
        &src_path(),
        listener.local_addr(),
        2,
        &key,
        12,
        5 * SECOND,
        &opts,
    )
    .unwrap();
    assert_eq!(streams.len(), 2);
    assert_eq!(dst.join().unwrap().unwrap().len(), 2);
    let waited = started.elapsed();
    // It did wait for a slot (the squatters hold theirs for 300 ms, and
    // they held them when it started).
    assert!(
        waited >= Duration::from_millis(150),
        "source waited {waited:?}"
    );
}

#[test]
fn plaintext_offered_to_an_encrypting_listener_is_refused_on_both_ends() {
    let listener = Arc::new(PathListener::bind(&dst_path(), 0).unwrap());
    let key = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 1, &key, 21, SECOND);
    let plain = StreamOptions {
        encryption: Encryption::InsecurePlaintext,
        ..Default::default()
    };
    let err = connect_streams_with(
        &src_path(),
        listener.local_addr(),
        1,
        &key,
        21,
        5 * SECOND,
        &plain,
    )
    .unwrap_err();
    assert!(
        matches!(err, TransportError::PlaintextRefused { .. }),
        "{err}"
    );
    let emg: Emg = err.into();
    assert_eq!(emg.module, Module::MoverSource);
    assert!(emg.action.contains("without --insecure-plaintext"), "{emg}");
    let err = dst.join().unwrap().unwrap_err();
    assert!(
        matches!(err, TransportError::PlaintextRefused { .. }),
        "{err}"
    );

    // A listener that allows plaintext takes it, and says so.
    let listener = plaintext_listener(StreamOptions::default());
    let key = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 1, &key, 22, 5 * SECOND);
    let src = connect_streams_with(
        &src_path(),
        listener.local_addr(),
        1,
        &key,
        22,
        5 * SECOND,
        &plain,
    )
    .unwrap();
    let dst = dst.join().unwrap().unwrap();
    assert_eq!(src[0].cipher_suite(), None);
    assert_eq!(dst[0].cipher_suite(), None);
}

#[test]
fn a_listener_that_accepts_without_proving_the_key_gets_no_guest_byte() {
    // An impostor on the migration port: TLS, a challenge, then "accepted"
    // without the destination's proof (it does not hold the key).
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = impostor.local_addr().unwrap();
    let got = std::thread::spawn(move || {
        let (tcp, _) = impostor.accept().unwrap();
        let conn =
            rustls::ServerConnection::new(lpar_mover::transport::tls::server_config().unwrap())
                .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let challenge = Challenge {
            nonce: [3; handshake::CHALLENGE_LEN],
        };
        tls.write_all(&challenge.encode()).unwrap();
        let mut response = [0u8; handshake::RESPONSE_MSG_LEN];
        tls.read_exact(&mut response).unwrap();
        tls.write_all(&Decision::refusal(Verdict::Accepted).encode())
            .unwrap();
        tls.flush().unwrap();
        // Whatever the source sends now would be guest memory.
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest);
        rest
    });
    let key = OneTimeKey::generate().unwrap();
    let err = connect_streams(&src_path(), addr, 1, &key, 30, 5 * SECOND).unwrap_err();
    assert!(
        matches!(err, TransportError::DestinationUnproven { stream: 0, .. }),
        "{err}"
    );
    assert!(Emg::from(err).action.contains("No guest memory was sent"));
    assert!(got.join().unwrap().is_empty());
}

#[test]
fn a_recorded_stream_replayed_into_the_next_migration_is_refused() {
    // Record what a genuine source sends on its one stream, through a relay.
    let listener = Arc::new(PathListener::bind(&dst_path(), 0).unwrap());
    let key = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 1, &key, 40, 5 * SECOND);
    let relay = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let target = listener.local_addr();
    let recorder = std::thread::spawn(move || {
        let (mut from, _) = relay.accept().unwrap();
        let mut to = TcpStream::connect(target).unwrap();
        let (mut back_from, mut back_to) = (to.try_clone().unwrap(), from.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut back_from, &mut back_to);
        });
        let mut recorded = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    recorded.extend_from_slice(&buf[..n]);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
        recorded
    });
    let mut src = connect_streams(&src_path(), relay_addr, 1, &key, 40, 5 * SECOND).unwrap();
    let mut dst = dst.join().unwrap().unwrap();
    src[0].write_all(b"guest page").unwrap();
    let mut page = [0u8; 10];
    dst[0].read_exact(&mut page).unwrap();
    assert_eq!(&page, b"guest page");
    drop(src);
    let recorded = recorder.join().unwrap();
    assert!(!recorded.windows(10).any(|w| w == b"guest page"));

    // The next migration: the recording, replayed byte for byte, fails
    // (new session, new exporter), and so does its key.
    let next = listener.issue_key().unwrap();
    let dst = accept_in_background(&listener, 1, &next, 41, SECOND);
    let mut replay = TcpStream::connect(listener.local_addr()).unwrap();
    let _ = replay.write_all(&recorded);
    let err = dst.join().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Tls { .. } | TransportError::HandshakeTimeout { .. }
        ),
        "{err}"
    );
}
