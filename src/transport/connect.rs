//! Source side: connect the N streams from the local path address and prove
//! each one holds the migration's key.

use super::MAX_STREAMS;
use super::error::{Side, TransportError, os};
use super::key::OneTimeKey;
use super::path::MigrationPath;
use super::secure;
use super::socket::{self, StreamOptions};
use super::stream::MigrationStream;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// First pause before connecting again to a listener that closed the
/// connection unanswered (all its handshake slots taken); doubles up to
/// [`RETRY_MAX`] until the set-up timeout.
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(500);

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
) -> Result<Vec<MigrationStream>, TransportError> {
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
) -> Result<Vec<MigrationStream>, TransportError> {
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
    let mut index = 0u16;
    let mut retry = RETRY_FIRST;
    while streams.len() < n {
        let stream = connect_one(
            local_path,
            remote,
            key,
            migration_id,
            index,
            deadline,
            timeout,
            opts,
        )?;
        match stream {
            Some(s) => {
                streams.push(s);
                index += 1;
                retry = RETRY_FIRST;
            }
            None => {
                // The destination is busy with other handshakes (a scanner,
                // or a flood): its slots free up within its handshake timeout.
                log::info!(
                    "migration {migration_id:#x}: {remote} closed stream {index} unanswered, retrying in {retry:?}"
                );
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(retry.min(left));
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
    log::info!(
        "migration {migration_id:#x}: {n} streams connected from {} to {remote}",
        local_path.addr
    );
    Ok(streams)
}

/// One stream: bind to the path, connect, tune, prove. `None` when the
/// listener closed the connection before challenging it.
#[allow(clippy::too_many_arguments)]
fn connect_one(
    local_path: &MigrationPath,
    remote: SocketAddr,
    key: &OneTimeKey,
    migration_id: u64,
    index: u16,
    deadline: Instant,
    timeout: Duration,
    opts: &StreamOptions,
) -> Result<Option<MigrationStream>, TransportError> {
    let side = Side::Source;
    let connect_timeout = || TransportError::ConnectTimeout {
        local: local_path.addr,
        remote,
        timeout,
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(connect_timeout());
    }
    let sock = socket::new_socket(side, opts)?;
    // Bound to the path before connecting: the kernel then routes the
    // stream out of the path, never the management interface.
    socket::bind_path(&sock, side, local_path, 0)?;
    sock.connect_timeout(&remote.into(), left)
        .map_err(|e| match (e.kind(), e.raw_os_error()) {
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
        })?;
    let stream: TcpStream = sock.into();
    socket::tune(&stream, opts).map_err(|e| TransportError::Io {
        side,
        context: "setting keepalive and timeouts",
        source: os(e),
    })?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    secure::prove_stream(
        stream,
        remote,
        key,
        migration_id,
        index,
        left.min(opts.handshake_timeout),
        opts.encryption,
    )
    .inspect_err(|e| log::warn!("migration {migration_id:#x}: {e}"))
}
