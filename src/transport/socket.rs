//! Socket creation, path binding and the options that make a dead peer
//! visible within seconds. The only module that touches socket options.

use super::error::{Side, TransportError, os};
use super::path::MigrationPath;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use std::io;
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

/// Default `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged (or
/// a zero window stay closed) before the kernel declares the peer dead. A
/// migration path is a dedicated LAN with sub-millisecond RTTs, so 5 s is
/// thousands of round trips: long enough to ride out a switch failover, short
/// enough that the source resumes the guest instead of waiting for the
/// kernel's default of ~15 minutes of retransmissions.
pub const DEFAULT_USER_TIMEOUT: Duration = Duration::from_secs(5);
/// Keepalive: first probe after this much silence (covers an idle stream,
/// e.g. one that carried nothing during a short final round).
pub const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(2);
/// Keepalive: interval between unanswered probes.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Keepalive: unanswered probes before the connection is dropped. With the
/// defaults an idle dead peer is detected after 2 + 3 × 1 = 5 s.
pub const DEFAULT_KEEPALIVE_COUNT: u32 = 3;
/// Requested `SO_SNDBUF`/`SO_RCVBUF`. `None` leaves the kernel's autotuning
/// in charge, which grows to `tcp_wmem`/`tcp_rmem` maximum (4 MiB / 32 MiB on
/// the development hosts); an explicit size is capped by
/// `net.core.{w,r}mem_max` and switches autotuning off. The throughput bench
/// (`benches/transport_throughput.rs`, 4 streams) measured autotuning faster
/// than a fixed 4 MiB over loopback in every run (medians 1.38/1.58/1.40 GB/s
/// against 1.23/1.07/1.30), hence the default.
pub const DEFAULT_SOCKET_BUFFER: Option<usize> = None;
/// Time a peer has to complete the whole handshake on one stream (three
/// fixed-size messages, well under a millisecond on a healthy path). A port
/// scanner or a silent peer holds a handshake slot at most this long.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Handshakes a listener runs at once; connections beyond this are closed
/// unanswered, so a flood of half-open peers cannot exhaust threads.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 16;

/// How every migration stream is set up. Both ends use the same options.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    pub user_timeout: Duration,
    pub keepalive_idle: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_count: u32,
    /// `TCP_NODELAY`: on, because the stream mixes bulk page batches with
    /// small control frames (end of round, switchover) that must not wait
    /// behind Nagle's algorithm during the suspension.
    pub nodelay: bool,
    pub socket_buffer: Option<usize>,
    pub handshake_timeout: Duration,
    pub max_pending_handshakes: usize,
    /// TLS 1.3 (the default) or `--insecure-plaintext`: what a source
    /// offers, and what a listener accepts besides TLS.
    pub encryption: super::Encryption,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            user_timeout: DEFAULT_USER_TIMEOUT,
            keepalive_idle: DEFAULT_KEEPALIVE_IDLE,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_count: DEFAULT_KEEPALIVE_COUNT,
            nodelay: true,
            socket_buffer: DEFAULT_SOCKET_BUFFER,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            encryption: super::Encryption::Tls,
        }
    }
}

/// A TCP socket with the buffer sizes set (they must be set before
/// `connect`/`listen` to shape the advertised window).
pub(crate) fn new_socket(side: Side, opts: &StreamOptions) -> Result<Socket, TransportError> {
    let io_err = |context| {
        move |e| TransportError::Io {
            side,
            context,
            source: os(e),
        }
    };
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(io_err("creating a socket"))?;
    if let Some(size) = opts.socket_buffer {
        sock.set_send_buffer_size(size)
            .map_err(io_err("setting SO_SNDBUF"))?;
        sock.set_recv_buffer_size(size)
            .map_err(io_err("setting SO_RCVBUF"))?;
    }
    Ok(sock)
}

/// Binds `sock` to the path: to its interface when one is named, then to its
/// address (port 0 for an ephemeral port).
pub(crate) fn bind_path(
    sock: &Socket,
    side: Side,
    path: &MigrationPath,
    port: u16,
) -> Result<(), TransportError> {
    path.validate().map_err(TransportError::InvalidPath)?;
    if let Some(ifname) = &path.interface {
        sock.bind_device(Some(ifname.as_bytes()))
            .map_err(|e| TransportError::BindToDevice {
                side,
                interface: ifname.clone(),
                addr: path.addr,
                source: os(e),
            })?;
    }
    let addr = SocketAddrV4::new(path.addr, port);
    sock.bind(&addr.into()).map_err(|e| match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => TransportError::PathAddressNotLocal {
            side,
            addr: path.addr,
        },
        _ => TransportError::BindFailed {
            side,
            addr: SocketAddr::V4(addr),
            source: os(e),
        },
    })
}

/// Applies keepalive, user timeout and `TCP_NODELAY` to a connected stream.
pub(crate) fn tune(stream: &TcpStream, opts: &StreamOptions) -> io::Result<()> {
    let s = SockRef::from(stream);
    let keepalive = TcpKeepalive::new()
        .with_time(opts.keepalive_idle)
        .with_interval(opts.keepalive_interval)
        .with_retries(opts.keepalive_count);
    s.set_tcp_keepalive(&keepalive)?;
    s.set_tcp_user_timeout(Some(opts.user_timeout))?;
    s.set_tcp_nodelay(opts.nodelay)?;
    Ok(())
}

/// The options actually in force on a stream, for diagnostics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedOptions {
    pub user_timeout: Option<Duration>,
    pub keepalive: bool,
    pub keepalive_idle: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_count: u32,
    pub nodelay: bool,
    pub send_buffer: usize,
    pub recv_buffer: usize,
    pub bound_device: Option<String>,
}

/// Reads back the options of an established stream.
pub fn applied_options(stream: &TcpStream) -> io::Result<AppliedOptions> {
    let s = SockRef::from(stream);
    Ok(AppliedOptions {
        user_timeout: s.tcp_user_timeout()?,
        keepalive: s.keepalive()?,
        keepalive_idle: s.tcp_keepalive_time()?,
        keepalive_interval: s.tcp_keepalive_interval()?,
        keepalive_count: s.tcp_keepalive_retries()?,
        nodelay: s.tcp_nodelay()?,
        send_buffer: s.send_buffer_size()?,
        recv_buffer: s.recv_buffer_size()?,
        bound_device: s
            .device()?
            .map(|d| String::from_utf8_lossy(&d).into_owned()),
    })
}
