//! Source side: connect the N streams from the local path address and prove
//! each one holds the migration's key.

use super::MAX_STREAMS;
use super::error::{Side, TransportError, os};
use super::handshake;
use super::key::OneTimeKey;
use super::path::MigrationPath;
use super::socket::{self, StreamOptions};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Connects `n` authenticated streams from `local_path` to the destination
/// listener at `remote`, with the default [`StreamOptions`]. `timeout` bounds
/// the whole set-up (all connects and handshakes).
pub fn connect_streams(
    local_path: &MigrationPath,
    remote: SocketAddr,
    n: usize,
    key: &OneTimeKey,
    migration_id: u64,
    timeout: Duration,
) -> Result<Vec<TcpStream>, TransportError> {
    connect_streams_with(
        local_path,
        remote,
        n,
        key,
        migration_id,
        timeout,
        &StreamOptions::default(),
    )
}

/// [`connect_streams`] with explicit options.
pub fn connect_streams_with(
    local_path: &MigrationPath,
    remote: SocketAddr,
    n: usize,
    key: &OneTimeKey,
    migration_id: u64,
    timeout: Duration,
    opts: &StreamOptions,
) -> Result<Vec<TcpStream>, TransportError> {
    let side = Side::Source;
    if n == 0 || n > MAX_STREAMS {
        return Err(TransportError::StreamIndex {
            side,
            peer: remote,
            stream: n.min(usize::from(u16::MAX)) as u16,
            wanted: MAX_STREAMS,
        });
    }
    let deadline = Instant::now() + timeout;
    let mut streams = Vec::with_capacity(n);
    for index in 0..n as u16 {
        let left = deadline.saturating_duration_since(Instant::now());
        let connect_timeout = || TransportError::ConnectTimeout {
            local: local_path.addr,
            remote,
            timeout,
        };
        if left.is_zero() {
            return Err(connect_timeout());
        }
        let sock = socket::new_socket(side, opts)?;
        // Bound to the path before connecting: the kernel then routes the
        // stream out of the path, never the management interface.
        socket::bind_path(&sock, side, local_path, 0)?;
        sock.connect_timeout(&remote.into(), left).map_err(|e| {
            match (e.kind(), e.raw_os_error()) {
                (_, Some(libc::ECONNREFUSED)) => TransportError::ConnectionRefused {
                    local: local_path.addr,
                    remote,
                },
                (io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock, _) => connect_timeout(),
                _ => TransportError::ConnectFailed {
                    local: local_path.addr,
                    remote,
                    source: os(e),
                },
            }
        })?;
        let mut stream: TcpStream = sock.into();
        socket::tune(&stream, opts).map_err(|e| TransportError::Io {
            side,
            context: "setting keepalive and timeouts",
            source: os(e),
        })?;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        handshake::prove(
            &mut stream,
            remote,
            key,
            migration_id,
            index,
            left.min(opts.handshake_timeout),
        )
        .inspect_err(|e| log::warn!("migration {migration_id:#x}: {e}"))?;
        streams.push(stream);
    }
    log::info!(
        "migration {migration_id:#x}: {n} streams connected from {} to {remote}",
        local_path.addr
    );
    Ok(streams)
}
