//! Spreading writes over the N streams (one writer thread each) and reading
//! them back (one reader thread each). The streams are independent: bytes
//! keep their order within a stream, never across streams.

use super::error::{Side, TransportError, os, stream_error};
use super::pacer::{PacedWriter, Pacer};
use crossbeam::channel::{self, Receiver, Select, Sender, TrySendError};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Default number of buffers queued per stream. Enough to keep a socket busy
/// while the producer fills the next buffer; small, so that memory held in
/// queues stays at `streams × depth × buffer size`.
pub const DEFAULT_QUEUE_DEPTH: usize = 4;

/// The first failure of any stream, kept for every later caller.
#[derive(Default)]
struct Failure {
    failed: AtomicBool,
    first: Mutex<Option<TransportError>>,
}

impl Failure {
    fn set(&self, e: TransportError) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            log::warn!("{e}");
            *first = Some(e);
        }
        self.failed.store(true, Ordering::Release);
    }

    fn get(&self) -> Option<TransportError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What a [`StreamSet`] moved, per stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendStats {
    pub bytes: Vec<u64>,
}

impl SendStats {
    pub fn total(&self) -> u64 {
        self.bytes.iter().sum()
    }
}

/// The send side: owned buffers go to whichever stream's queue has room, and
/// each stream's writer thread writes them (through the shared pacer) with no
/// per-buffer acknowledgement. A slow socket only fills its own queue; the
/// producer blocks only when every queue is full.
///
/// A buffer is written whole to one stream, so a buffer holding whole frames
/// keeps them whole. If any stream fails, every later call returns that
/// failure: the bytes queued on it are lost and the migration must abort.
pub struct StreamSet {
    queues: Vec<Sender<Vec<u8>>>,
    writers: Vec<JoinHandle<u64>>,
    sockets: Vec<TcpStream>,
    failure: Arc<Failure>,
    next: AtomicUsize,
    recycled: Receiver<Vec<u8>>,
}

impl StreamSet {
    /// Starts one writer thread per stream, with `queue_depth` buffers of
    /// room each and an optional bandwidth cap shared by all.
    pub fn new(
        streams: Vec<TcpStream>,
        pacer: Option<Arc<Pacer>>,
        queue_depth: usize,
    ) -> Result<Self, TransportError> {
        let failure = Arc::new(Failure::default());
        let depth = queue_depth.max(1);
        // Written buffers come back here for reuse (see `buffer`).
        let (recycle, recycled) = channel::bounded(streams.len() * (depth + 1));
        let mut queues = Vec::with_capacity(streams.len());
        let mut writers = Vec::with_capacity(streams.len());
        let mut sockets = Vec::with_capacity(streams.len());
        for (index, stream) in streams.into_iter().enumerate() {
            let io_err = |e| TransportError::Io {
                side: Side::Source,
                context: "starting a stream writer",
                source: os(e),
            };
            let peer = stream.peer_addr().map_err(io_err)?;
            sockets.push(stream.try_clone().map_err(io_err)?);
            let (tx, rx) = channel::bounded::<Vec<u8>>(depth);
            let (failure, recycle, pacer) = (failure.clone(), recycle.clone(), pacer.clone());
            let writer = std::thread::Builder::new()
                .name(format!("mig-tx{index}"))
                .spawn(move || write_loop(index, peer, stream, pacer, rx, recycle, &failure))
                .map_err(io_err)?;
            queues.push(tx);
            writers.push(writer);
        }
        Ok(StreamSet {
            queues,
            writers,
            sockets,
            failure,
            next: AtomicUsize::new(0),
            recycled,
        })
    }

    /// Number of streams.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// An empty buffer to fill and [`send`](Self::send), reusing one already
    /// written when there is one (keeps the bounce buffers warm).
    pub fn buffer(&self, capacity: usize) -> Vec<u8> {
        match self.recycled.try_recv() {
            Ok(mut b) => {
                b.clear();
                b.reserve(capacity);
                b
            }
            Err(_) => Vec::with_capacity(capacity),
        }
    }

    /// Queues `buf` on the first stream (round-robin) with room, blocking only
    /// while every queue is full. Returns the stream chosen.
    pub fn send(&self, buf: Vec<u8>) -> Result<usize, TransportError> {
        self.check()?;
        let n = self.queues.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut buf = buf;
        for i in (start..n).chain(0..start) {
            match self.queues[i].try_send(buf) {
                Ok(()) => return Ok(i),
                Err(TrySendError::Full(b)) => buf = b,
                Err(TrySendError::Disconnected(_)) => return Err(self.failed_stream(i)),
            }
        }
        let mut sel = Select::new();
        for q in &self.queues {
            sel.send(q);
        }
        let op = sel.select();
        let i = op.index();
        match op.send(&self.queues[i], buf) {
            Ok(()) => Ok(i),
            Err(_) => Err(self.failed_stream(i)),
        }
    }

    /// Queues `buf` on stream `stream`, waiting for room there.
    pub fn send_on(&self, stream: usize, buf: Vec<u8>) -> Result<(), TransportError> {
        self.check()?;
        self.queues[stream]
            .send(buf)
            .map_err(|_| self.failed_stream(stream))
    }

    /// Queues a copy of `buf` on every stream (e.g. an end-of-round barrier).
    pub fn broadcast(&self, buf: &[u8]) -> Result<(), TransportError> {
        for i in 0..self.queues.len() {
            self.send_on(i, buf.to_vec())?;
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TransportError> {
        match self.failure.get() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn failed_stream(&self, i: usize) -> TransportError {
        self.failure.get().unwrap_or_else(|| TransportError::Io {
            side: Side::Source,
            context: "queueing to a stream whose writer stopped",
            source: os(std::io::Error::other(format!("stream {i} writer stopped"))),
        })
    }

    /// Waits until every queued byte is written, then closes the write side
    /// of each stream (the receiver sees end of stream).
    pub fn finish(self) -> Result<SendStats, TransportError> {
        let StreamSet {
            queues,
            writers,
            failure,
            ..
        } = self;
        drop(queues);
        let bytes = writers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        match failure.get() {
            Some(e) => Err(e),
            None => Ok(SendStats { bytes }),
        }
    }

    /// Abandons the transfer now: shuts every stream down, drops what is
    /// queued and joins the writers.
    pub fn abort(self) {
        for s in &self.sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
        let StreamSet {
            queues, writers, ..
        } = self;
        drop(queues);
        for w in writers {
            let _ = w.join();
        }
    }
}

fn write_loop(
    index: usize,
    peer: SocketAddr,
    stream: TcpStream,
    pacer: Option<Arc<Pacer>>,
    rx: Receiver<Vec<u8>>,
    recycle: Sender<Vec<u8>>,
    failure: &Failure,
) -> u64 {
    let mut w = PacedWriter::new(stream, pacer);
    let mut sent = 0u64;
    for buf in rx.iter() {
        if let Err(e) = w.write_all(&buf) {
            failure.set(stream_error(Side::Source, peer, index, e));
            return sent;
        }
        sent += buf.len() as u64;
        let _ = recycle.try_send(buf);
    }
    if let Err(e) = w
        .flush()
        .and_then(|()| w.get_ref().shutdown(Shutdown::Write))
    {
        failure.set(stream_error(Side::Source, peer, index, e));
    }
    sent
}

/// The receive side: one thread per stream, each running `handler(index,
/// stream)` until it returns. The handler owns the stream, so the layer above
/// can decode frames straight off the socket into guest memory.
pub struct ReaderSet<E> {
    /// Each handler's bytes, or its error with the order it failed in.
    readers: Vec<JoinHandle<Result<u64, (usize, E)>>>,
    sockets: Vec<TcpStream>,
}

impl<E: Send + 'static> ReaderSet<E> {
    /// Starts `handler` on every stream. The handler returns the bytes it
    /// consumed (for statistics) or its error.
    pub fn spawn<F>(streams: Vec<TcpStream>, handler: F) -> Result<Self, TransportError>
    where
        F: Fn(usize, TcpStream) -> Result<u64, E> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut readers = Vec::with_capacity(streams.len());
        let mut sockets = Vec::with_capacity(streams.len());
        for (index, stream) in streams.into_iter().enumerate() {
            let io_err = |e| TransportError::Io {
                side: Side::Destination,
                context: "starting a stream reader",
                source: os(e),
            };
            sockets.push(stream.try_clone().map_err(io_err)?);
            let (h, failures) = (handler.clone(), failures.clone());
            let reader = std::thread::Builder::new()
                .name(format!("mig-rx{index}"))
                .spawn(move || {
                    h(index, stream).map_err(|e| {
                        (
                            failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                            e,
                        )
                    })
                })
                .map_err(io_err)?;
            readers.push(reader);
        }
        Ok(ReaderSet { readers, sockets })
    }

    /// Cuts every stream (both directions): handlers see an error or end of
    /// stream and return. Used when the migration is abandoned.
    pub fn abort(&self) {
        for s in &self.sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Waits for every handler; returns the bytes per stream or the error of
    /// the stream that failed first: the others' errors are usually its
    /// consequence (a broken round, a cut stream), and the first names the
    /// cause (e.g. a frame failing its checksum). A panicking handler is
    /// re-raised.
    pub fn join(self) -> Result<Vec<u64>, E> {
        let results: Vec<Result<u64, (usize, E)>> = self
            .readers
            .into_iter()
            .map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        let mut first: Option<(usize, E)> = None;
        let mut bytes = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(n) => bytes.push(n),
                Err((order, e)) => {
                    if first.as_ref().is_none_or(|(o, _)| order < *o) {
                        first = Some((order, e));
                    }
                }
            }
        }
        match first {
            Some((_, e)) => Err(e),
            None => Ok(bytes),
        }
    }
}

/// One piece of one stream, as [`receive_chunks`] delivers it.
#[derive(Debug)]
pub struct Chunk {
    pub stream: usize,
    pub data: Vec<u8>,
}

/// The simple receive side: every stream read in pieces of up to
/// `chunk_size` bytes, delivered on one bounded channel (`queue_depth` per
/// stream). The channel closes when every stream has ended; a stream error
/// ends that stream and is returned by [`ReaderSet::join`].
pub fn receive_chunks(
    streams: Vec<TcpStream>,
    chunk_size: usize,
    queue_depth: usize,
) -> Result<(ReaderSet<TransportError>, Receiver<Chunk>), TransportError> {
    let (tx, rx) = channel::bounded(streams.len().max(1) * queue_depth.max(1));
    let chunk_size = chunk_size.max(1);
    let set = ReaderSet::spawn(streams, move |index, mut stream: TcpStream| {
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut total = 0u64;
        loop {
            let mut data = vec![0u8; chunk_size];
            let n = match stream.read(&mut data) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(stream_error(Side::Destination, peer, index, e)),
            };
            data.truncate(n);
            total += n as u64;
            if tx
                .send(Chunk {
                    stream: index,
                    data,
                })
                .is_err()
            {
                // Nobody listens any more: stop reading.
                return Ok(total);
            }
        }
    })?;
    Ok((set, rx))
}
