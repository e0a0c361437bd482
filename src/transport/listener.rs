//! Destination side: listen on the path address, issue the one-time key,
//! accept and authenticate the N streams of one migration.

use super::MAX_STREAMS;
use super::error::{Side, TransportError, os};
use super::handshake::{Expectation, Granted};
use super::key::{KeyRegistry, OneTimeKey};
use super::path::MigrationPath;
use super::secure;
use super::socket::{self, StreamOptions};
use super::stream::MigrationStream;
use crossbeam::channel;
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest the accept loop sleeps between looking for new connections and
/// collecting finished handshakes; bounds the added set-up latency.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// Backlog of the listening socket: room for every stream of a migration and
/// a few strays, not for a flood.
const LISTEN_BACKLOG: i32 = 2 * MAX_STREAMS as i32;

/// A listening socket on the destination's migration path address.
pub struct PathListener {
    listener: TcpListener,
    local: SocketAddr,
    path: MigrationPath,
    opts: StreamOptions,
    registry: Arc<KeyRegistry>,
}

impl PathListener {
    /// Listens on `path.addr:port` only (port 0 picks a free port), with the
    /// default options and a registry of its own.
    pub fn bind(path: &MigrationPath, port: u16) -> Result<Self, TransportError> {
        Self::bind_with(
            path,
            port,
            StreamOptions::default(),
            Arc::new(KeyRegistry::new()),
        )
    }

    /// Like [`bind`](Self::bind) with explicit options and the agent-wide
    /// record of consumed keys.
    pub fn bind_with(
        path: &MigrationPath,
        port: u16,
        opts: StreamOptions,
        registry: Arc<KeyRegistry>,
    ) -> Result<Self, TransportError> {
        let side = Side::Destination;
        let sock = socket::new_socket(side, &opts)?;
        sock.set_reuse_address(true)
            .map_err(|e| TransportError::Io {
                side,
                context: "setting SO_REUSEADDR",
                source: os(e),
            })?;
        socket::bind_path(&sock, side, path, port)?;
        sock.listen(LISTEN_BACKLOG)
            .map_err(|e| TransportError::Io {
                side,
                context: "listening",
                source: os(e),
            })?;
        let listener: TcpListener = sock.into();
        let local = listener.local_addr().map_err(|e| TransportError::Io {
            side,
            context: "reading the listening address",
            source: os(e),
        })?;
        log::info!("migration path {:?} listening on {local}", path.name);
        Ok(PathListener {
            listener,
            local,
            path: path.clone(),
            opts,
            registry,
        })
    }

    /// The address the source must connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn path(&self) -> &MigrationPath {
        &self.path
    }

    pub fn registry(&self) -> &Arc<KeyRegistry> {
        &self.registry
    }

    /// A fresh one-time key for the next migration (32 bytes from the OS RNG).
    /// It is handed to the source over the management protocol.
    pub fn issue_key(&self) -> Result<OneTimeKey, TransportError> {
        OneTimeKey::generate()
    }

    /// Accepts connections until `n` streams of migration `migration_id` have
    /// proved they hold `key`, or `deadline` passes. Returns the streams in
    /// index order, tuned and ready for payload.
    ///
    /// The key is consumed on entry: calling this twice with one key fails
    /// with [`TransportError::KeyReplayed`]. Connections that fail the
    /// handshake are refused, logged and do not end the wait (a scanner must
    /// not abort a migration); if the deadline passes, the last refusal is
    /// returned, so an operator sees "authentication failed" rather than a
    /// bare timeout when the source holds the wrong key.
    pub fn accept_streams(
        &self,
        n: usize,
        key: &OneTimeKey,
        migration_id: u64,
        deadline: Instant,
    ) -> Result<Vec<MigrationStream>, TransportError> {
        self.accept_streams_unless(n, key, migration_id, deadline, &AtomicBool::new(false))
    }

    /// [`PathListener::accept_streams`], ending early with
    /// [`TransportError::SourceAbandoned`] once `abandoned` is set (the
    /// source agent said, over its authenticated management connection,
    /// that its streams will not come; a connection to this port cannot).
    pub fn accept_streams_unless(
        &self,
        n: usize,
        key: &OneTimeKey,
        migration_id: u64,
        deadline: Instant,
        abandoned: &AtomicBool,
    ) -> Result<Vec<MigrationStream>, TransportError> {
        let side = Side::Destination;
        let started = Instant::now();
        if n == 0 || n > MAX_STREAMS {
            return Err(TransportError::StreamIndex {
                side,
                peer: self.local,
                stream: n.min(usize::from(u16::MAX)) as u16,
                wanted: MAX_STREAMS,
            });
        }
        if let Err(consumed_by) = self.registry.consume(key, migration_id) {
            let e = TransportError::KeyReplayed {
                side,
                peer: self.local,
                stream: 0,
                migration_id: consumed_by,
            };
            log::warn!("{e}");
            return Err(e);
        }
        let io_err = |context| {
            move |e| TransportError::Io {
                side,
                context,
                source: os(e),
            }
        };
        self.listener
            .set_nonblocking(true)
            .map_err(io_err("making the listener non-blocking"))?;

        let expect = Expectation {
            key,
            migration_id,
            streams: n,
            registry: &self.registry,
            granted: Mutex::new(Granted::new(n)),
        };
        let mut slots: Vec<Option<MigrationStream>> = (0..n).map(|_| None).collect();
        let mut accepted = 0;
        let mut last_refusal = None;
        // Clones of the sockets still in their handshake, so that leaving
        // early can cut them short instead of waiting out their timeouts.
        let pending: Mutex<HashMap<u64, TcpStream>> = Mutex::new(HashMap::new());
        let (tx, rx) =
            channel::unbounded::<(u64, Result<(u16, MigrationStream), TransportError>)>();

        let outcome = std::thread::scope(|scope| {
            let mut next_token = 0u64;
            let mut carried = None;
            let result = loop {
                for (token, r) in Option::take(&mut carried).into_iter().chain(rx.try_iter()) {
                    pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&token);
                    match r {
                        Ok((idx, stream)) => {
                            log::debug!("migration {migration_id:#x}: stream {idx} authenticated");
                            slots[usize::from(idx)] = Some(stream);
                            accepted += 1;
                        }
                        Err(e) if e.is_refusal() => {
                            log::warn!("migration {migration_id:#x}: refused a stream: {e}");
                            last_refusal = Some(e);
                        }
                        Err(e) => log::info!(
                            "migration {migration_id:#x}: a connection ended in its handshake: {e}"
                        ),
                    }
                }
                if accepted == n {
                    break Ok(());
                }
                let now = Instant::now();
                if abandoned.load(Ordering::SeqCst) {
                    break Err(TransportError::SourceAbandoned {
                        local: self.local,
                        waited: now - started,
                    });
                }
                if now >= deadline {
                    break Err(last_refusal
                        .take()
                        .unwrap_or(TransportError::AcceptTimeout {
                            local: self.local,
                            accepted,
                            wanted: n,
                            waited: now - started,
                        }));
                }
                match self.listener.accept() {
                    Ok((stream, peer)) => {
                        let in_flight = pending.lock().unwrap_or_else(|p| p.into_inner()).len();
                        if in_flight >= self.opts.max_pending_handshakes {
                            log::warn!(
                                "migration {migration_id:#x}: closed the connection from {peer}: \
                                 {in_flight} handshakes already pending"
                            );
                            continue;
                        }
                        let prepared = stream
                            .set_nonblocking(false)
                            .and_then(|()| socket::tune(&stream, &self.opts))
                            .and_then(|()| stream.try_clone());
                        let clone = match prepared {
                            Ok(c) => c,
                            Err(e) => {
                                log::warn!("migration {migration_id:#x}: dropped {peer}: {e}");
                                continue;
                            }
                        };
                        let token = next_token;
                        next_token += 1;
                        pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(token, clone);
                        let timeout = self.opts.handshake_timeout.min(deadline - now);
                        let (tx, expect) = (tx.clone(), &expect);
                        let encryption = self.opts.encryption;
                        scope.spawn(move || {
                            let r = secure::serve_stream(stream, peer, expect, timeout, encryption);
                            let _ = tx.send((token, r));
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let wait = ACCEPT_POLL.min(deadline.saturating_duration_since(now));
                        carried = rx.recv_timeout(wait).ok();
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // EMFILE and friends: report, do not spin.
                        break Err(io_err("accepting a connection")(e));
                    }
                }
            };
            for (_, s) in pending.lock().unwrap_or_else(|p| p.into_inner()).drain() {
                let _ = s.shutdown(Shutdown::Both);
            }
            result
        });
        // Restore blocking mode for the next migration on this listener.
        let _ = self.listener.set_nonblocking(false);
        match outcome {
            Ok(()) => {
                log::info!(
                    "migration {migration_id:#x}: {n} streams authenticated on {} in {:?}",
                    self.local,
                    started.elapsed()
                );
                Ok(slots
                    .into_iter()
                    .map(|s| s.expect("every slot granted once"))
                    .collect())
            }
            Err(e) => {
                if !e.is_refusal() {
                    log::warn!("migration {migration_id:#x}: {e}");
                }
                Err(e)
            }
        }
    }
}
