//! The page pump: rounds of guest pages over N streams, pipelined.
//!
//! ```text
//! source                                            destination
//! send_round(k, pages)
//!   ranges of ≤ MAX_BATCH_PAGES ──▶ shared queue
//!   worker i (one per stream):                      reader i (one per stream):
//!     take a range, read each page                    decode each batch straight
//!     (one bounce copy), encode, seal  ── stream i ─▶  into guest memory
//!     with stream i's sequence numbers
//!   EndOfRound(k, pages on stream i) ── stream i ─▶  EndOfRound(k): check count,
//!                                                     wait for every reader (barrier)
//!   returns when every worker wrote it                the last one in reports the round
//! ```
//!
//! Pages of a round go to whichever worker is free, so streams carry them in
//! any interleaving; no per-chunk acknowledgement. The destination's round
//! barrier is what keeps order: no reader applies a page of round k+1 before
//! every reader has applied all of round k, so an older copy never
//! overwrites a newer one (and a delta always finds its base).
//!
//! Frames other than pages and round ends (switchover, device state, abort,
//! keepalive) are handed to the caller, owned, on the event channel.

use super::EngineError;
use super::barrier::RoundBarrier;
use super::digest::{ImageDigest, page_hash};
pub use super::frames::{OwnedFrame, RoundStats};
use super::lz4_policy::Lz4Policy;
use crate::partition::{GuestMemory, PAGE_SIZE, PageSet};
pub use crate::wire::Integrity;
use crate::wire::{
    EndOfRound, Frame, FrameDecoder, FrameEncoder, MAX_BATCH_PAGES, PageBatchBuilder,
};
use crossbeam::channel::{self, Receiver, Sender};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a round in flight checks for cancel and timeout.
const CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// A stream the source writes and the destination reads.
pub type OutStream = Box<dyn Write + Send>;
pub type InStream = Box<dyn Read + Send>;

enum Work {
    Pages {
        round: u32,
        first: u64,
        count: u64,
    },
    EndRound(u32),
    /// A frame to send once the stream's page work is done.
    Control(OwnedFrame),
    /// A frame to send as soon as the batch in hand is written, ahead of
    /// the page work still queued (the device state in the final round).
    Lead(OwnedFrame),
}

/// What ends every wait of a [`PageSender`] early (cancel, a deadline).
pub type Interrupt = Box<dyn Fn() -> Result<(), EngineError> + Send + Sync>;

/// Work the caller does while a round is in flight; an error ends the wait.
pub type Tick<'a> = &'a mut dyn FnMut() -> Result<(), EngineError>;

/// The source half: one worker thread per stream.
pub struct PageSender {
    work: Sender<Work>,
    /// Set when the caller gives up mid-round: workers skip queued pages.
    dropping: Arc<AtomicBool>,
    /// Page bytes every worker has written so far (into its socket).
    written: Arc<AtomicU64>,
    controls: Vec<Sender<Work>>,
    done: Receiver<Result<RoundStats, EngineError>>,
    workers: Vec<JoinHandle<OutStream>>,
    interrupt: Option<Interrupt>,
}

impl PageSender {
    /// Starts one worker per stream, its frames protected as `integrity`
    /// says (what the streams themselves guarantee). Every page sent is
    /// recorded in `digest`.
    pub fn start(
        memory: Arc<dyn GuestMemory>,
        streams: Vec<OutStream>,
        integrity: Integrity,
        digest: Arc<ImageDigest>,
    ) -> Self {
        let (work, queue) = channel::unbounded();
        let (done_tx, done) = channel::unbounded();
        let mut controls = Vec::new();
        let dropping = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let workers = streams
            .into_iter()
            .enumerate()
            .map(|(index, stream)| {
                let (control_tx, control) = channel::unbounded();
                controls.push(control_tx);
                let (memory, queue, done) = (memory.clone(), queue.clone(), done_tx.clone());
                let (digest, dropping) = (digest.clone(), dropping.clone());
                let written = written.clone();
                std::thread::Builder::new()
                    .name(format!("send{index}"))
                    .spawn(move || {
                        let mut worker =
                            SendWorker::new(index, memory, stream, integrity, digest, dropping);
                        worker.written = written;
                        worker.run(&queue, &control, &done);
                        worker.stream
                    })
                    .expect("spawn sender thread")
            })
            .collect();
        PageSender {
            work,
            dropping,
            written,
            controls,
            done,
            workers,
            interrupt: None,
        }
    }

    /// Makes every wait for the workers run `interrupt` every few
    /// milliseconds; when it fails (cancel, timeout) the workers drop the
    /// pages still queued and the wait returns its error at once, so
    /// giving up never waits for a round (or a capped stream) to drain.
    pub fn set_interrupt(&mut self, interrupt: Interrupt) {
        self.interrupt = Some(interrupt);
    }

    /// Sends `pages` as round `round` and closes the round on every stream.
    /// Returns when every stream has written its end of round.
    pub fn send_round(&self, round: u32, pages: &PageSet) -> Result<RoundStats, EngineError> {
        self.queue_round(round, pages);
        self.wait_round()
    }

    /// Queues `pages` as round `round` and its end on every stream, without
    /// waiting: the caller can work meanwhile, then [`Self::wait_round`].
    pub fn queue_round(&self, round: u32, pages: &PageSet) {
        self.queue_page_work(round, pages);
        // Page work first, then the barrier on each worker's own channel: a
        // worker that sees its barrier finds every page of the round already
        // taken from the shared queue.
        for control in &self.controls {
            let _ = control.send(Work::EndRound(round));
        }
    }

    fn queue_page_work(&self, round: u32, pages: &PageSet) {
        for range in pages.ranges() {
            let mut first = range.start;
            while first < range.end {
                let count = (range.end - first).min(MAX_BATCH_PAGES as u64);
                // A closed queue means every worker died; the error is on `done`.
                let _ = self.work.send(Work::Pages {
                    round,
                    first,
                    count,
                });
                first += count;
            }
        }
    }

    /// Returns when every stream has written the end of the queued round
    /// (or the interrupt fired, see [`Self::set_interrupt`]).
    pub fn wait_round(&self) -> Result<RoundStats, EngineError> {
        self.collect(self.controls.len(), None)
    }

    /// Queues round `round`'s pages without its end: the workers start on
    /// them while the caller prepares `lead` for [`Self::end_round_led`].
    pub fn queue_pages(&self, round: u32, pages: &PageSet) {
        self.queue_page_work(round, pages);
    }

    /// Ends the round queued by [`Self::queue_pages`]: `lead` goes out on
    /// stream 0 as soon as its worker finishes the batch in hand (ahead of
    /// the pages still queued), then the round's end on every stream. The
    /// final round uses it: the device state, captured while the last
    /// pages go out, reaches the destination before they are all in, so it
    /// is loaded while they land.
    pub fn end_round_led(&self, round: u32, lead: OwnedFrame) {
        let _ = self.controls[0].send(Work::Lead(lead));
        for control in &self.controls {
            let _ = control.send(Work::EndRound(round));
        }
    }

    /// [`Self::wait_round`] for a round ended by [`Self::end_round_led`]:
    /// also waits for the lead frame.
    pub fn wait_round_led(&self) -> Result<RoundStats, EngineError> {
        self.collect(self.controls.len() + 1, None)
    }

    /// Like [`Self::wait_round`], calling `tick` about every `every` while
    /// the round is in flight (the source samples the dirty log there).
    pub fn wait_round_ticking(
        &self,
        every: Duration,
        tick: Tick<'_>,
    ) -> Result<RoundStats, EngineError> {
        self.collect(self.controls.len(), Some((every, tick)))
    }

    /// Page bytes written into the streams so far, all rounds: its slope
    /// over a busy stretch of a round is the path's bandwidth once the
    /// socket buffers are full.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Sends `frames` on stream 0 in order, after every page already
    /// queued, with one wait for all of them.
    pub fn send_controls(&self, frames: Vec<OwnedFrame>) -> Result<(), EngineError> {
        let n = frames.len();
        for frame in frames {
            let _ = self.controls[0].send(Work::Control(frame));
        }
        self.collect(n, None).map(|_| ())
    }

    /// Sends `frame` on stream 0, after every page already queued.
    pub fn send_control(&self, frame: OwnedFrame) -> Result<(), EngineError> {
        let _ = self.controls[0].send(Work::Control(frame));
        self.collect(1, None).map(|_| ())
    }

    /// Sends `frame` on every stream (e.g. Hello).
    pub fn send_control_all(&self, frame: OwnedFrame) -> Result<(), EngineError> {
        for control in &self.controls {
            let _ = control.send(Work::Control(frame.clone()));
        }
        self.collect(self.controls.len(), None).map(|_| ())
    }

    /// Waits for `n` workers' acknowledgements, summing their stats; the
    /// interrupt, if any, is checked every [`CHECK_INTERVAL`].
    fn collect(
        &self,
        n: usize,
        mut tick: Option<(Duration, Tick<'_>)>,
    ) -> Result<RoundStats, EngineError> {
        let mut total = RoundStats::default();
        let mut acks = 0;
        let mut ticked = Instant::now();
        while acks < n {
            if let Some((every, f)) = tick.as_mut()
                && ticked.elapsed() >= *every
            {
                ticked = Instant::now();
                f()?;
            }
            match self.done.recv_timeout(CHECK_INTERVAL) {
                Ok(Ok(stats)) => {
                    total.add(&stats);
                    acks += 1;
                }
                Ok(Err(e)) => return Err(e),
                Err(channel::RecvTimeoutError::Timeout) => {
                    if let Some(Err(e)) = self.interrupt.as_ref().map(|i| i()) {
                        self.dropping.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                }
                Err(channel::RecvTimeoutError::Disconnected) => {
                    return Err(EngineError::Protocol {
                        stream: 0,
                        what: "exit of every sender thread".into(),
                    });
                }
            }
        }
        Ok(total)
    }

    /// Queues `frame` on stream 0 without waiting for it to be written.
    pub fn queue_control(&self, frame: OwnedFrame) {
        let _ = self.controls[0].send(Work::Control(frame));
    }

    /// Stops the workers once they have written what is queued, and hands
    /// the streams back.
    pub fn finish(self) -> Vec<OutStream> {
        self.finish_or_cut(Duration::MAX, || {})
    }

    /// Like [`Self::finish`], but a worker still writing after `grace`
    /// (a peer that stopped reading) is unblocked by `cut`, which must
    /// shut the streams down.
    pub fn finish_or_cut(self, grace: Duration, cut: impl FnOnce()) -> Vec<OutStream> {
        drop(self.work);
        drop(self.controls);
        let deadline = Instant::now().checked_add(grace);
        let mut cut = Some(cut);
        while !self.workers.iter().all(|w| w.is_finished()) {
            if deadline.is_some_and(|d| Instant::now() >= d)
                && let Some(cut) = cut.take()
            {
                cut();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.workers
            .into_iter()
            .filter_map(|w| w.join().ok())
            .collect()
    }
}

struct SendWorker {
    index: usize,
    memory: Arc<dyn GuestMemory>,
    stream: OutStream,
    encoder: FrameEncoder,
    batch: PageBatchBuilder,
    frame: Vec<u8>,
    stats: RoundStats,
    lz4: Lz4Policy,
    digest: Arc<ImageDigest>,
    dropping: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
}

impl SendWorker {
    fn new(
        index: usize,
        memory: Arc<dyn GuestMemory>,
        stream: OutStream,
        integrity: Integrity,
        digest: Arc<ImageDigest>,
        dropping: Arc<AtomicBool>,
    ) -> Self {
        SendWorker {
            index,
            memory,
            stream,
            encoder: FrameEncoder::with_integrity(integrity),
            batch: PageBatchBuilder::new(),
            frame: Vec::with_capacity(64),
            stats: RoundStats::default(),
            lz4: Lz4Policy::new(),
            digest,
            dropping,
            written: Arc::default(),
        }
    }

    fn run(
        &mut self,
        queue: &Receiver<Work>,
        control: &Receiver<Work>,
        done: &Sender<Result<RoundStats, EngineError>>,
    ) {
        let mut pending = None;
        loop {
            // A lead frame before anything else; then page work; a round's
            // barrier (or another control) only once the queue is dry.
            if pending.is_none() {
                pending = control.try_recv().ok();
            }
            let work = if matches!(pending, Some(Work::Lead(_))) {
                pending.take().expect("matched above")
            } else if let Ok(w) = queue.try_recv() {
                w
            } else if let Some(work) = pending.take() {
                work
            } else {
                channel::select! {
                    recv(queue) -> w => match w {
                        Ok(w) => w,
                        // No more page work: still send what is queued on
                        // this stream's own channel (an Abort, say).
                        Err(_) => match control.recv() {
                            Ok(w) => w,
                            Err(_) => return,
                        },
                    },
                    recv(control) -> c => match c {
                        Ok(w) => {
                            pending = Some(w);
                            continue;
                        }
                        Err(_) => return,
                    },
                }
            };
            let result = match work {
                Work::Pages {
                    round,
                    first,
                    count,
                } if !self.dropping.load(Ordering::Relaxed) => self.send_pages(round, first, count),
                Work::Pages { .. } => Ok(()),
                Work::EndRound(round) => {
                    let end = self.end_round(round);
                    let stats = std::mem::take(&mut self.stats);
                    let _ = done.send(end.map(|()| stats));
                    Ok(())
                }
                Work::Control(frame) | Work::Lead(frame) => {
                    let sent = self.send_frame(&frame.as_frame());
                    let _ = done.send(sent.map(|()| RoundStats::default()));
                    Ok(())
                }
            };
            if let Err(e) = result {
                let _ = done.send(Err(e));
                return;
            }
        }
    }

    fn send_pages(&mut self, round: u32, first: u64, count: u64) -> Result<(), EngineError> {
        let mut page = [0u8; PAGE_SIZE];
        let lz4 = self.lz4.choose();
        let started = Instant::now();
        self.batch.begin(round);
        for p in first..first + count {
            // The one bounce copy: the guest may write while we encode, and
            // the frame's CRC must match what we send.
            self.memory.read_page(p, &mut page)?;
            self.digest.set(p, page_hash(&page));
            let encoding = self
                .batch
                .push_page_with(p, &page, None, lz4)
                .expect("range ≤ batch size");
            self.stats.by_encoding[encoding as usize] += 1;
        }
        self.stats.pages += count;
        let frame = self.batch.seal(&mut self.encoder);
        let encoded = started.elapsed();
        let bytes = frame.len() as u64;
        self.stats.bytes += bytes;
        let index = self.index;
        self.stream
            .write_all(frame)
            .map_err(|source| EngineError::Stream {
                stream: index,
                source,
            })?;
        self.written.fetch_add(bytes, Ordering::Relaxed);
        let written = started.elapsed() - encoded;
        self.lz4.record(
            lz4,
            count,
            encoded.as_nanos() as u64,
            bytes,
            written.as_nanos() as u64,
        );
        Ok(())
    }

    fn end_round(&mut self, round: u32) -> Result<(), EngineError> {
        let pages = self.stats.pages;
        self.send_frame(&Frame::EndOfRound(EndOfRound { round, pages }))
    }

    fn send_frame(&mut self, frame: &Frame<'_>) -> Result<(), EngineError> {
        self.frame.clear();
        self.encoder
            .encode(frame, &mut self.frame)
            .map_err(|error| EngineError::Wire {
                stream: self.index,
                error,
            })?;
        let index = self.index;
        self.stream
            .write_all(&self.frame)
            .and_then(|()| self.stream.flush())
            .map_err(|source| EngineError::Stream {
                stream: index,
                source,
            })
    }
}

/// What the destination's readers report.
#[derive(Debug)]
pub enum Event {
    /// Every stream delivered round `round` whole; `pages` in all.
    RoundComplete { round: u32, pages: u64 },
    /// A frame for the engine (switchover, device state, keepalive), owned.
    Control { stream: usize, frame: OwnedFrame },
    /// A reader failed; the migration is over.
    Failed(EngineError),
}

/// The destination half: one reader thread per stream.
pub struct PageReceiver {
    barrier: Arc<RoundBarrier>,
    readers: Vec<JoinHandle<()>>,
}

impl PageReceiver {
    /// Starts one reader per stream, expecting its frames protected as
    /// `integrity` says. Every page applied is recorded in `digest`.
    pub fn start(
        memory: Arc<dyn GuestMemory>,
        streams: Vec<InStream>,
        integrity: Integrity,
        digest: Arc<ImageDigest>,
    ) -> (Self, Receiver<Event>) {
        let (events, rx) = channel::unbounded();
        let barrier = Arc::new(RoundBarrier::new(streams.len()));
        let readers = streams
            .into_iter()
            .enumerate()
            .map(|(index, stream)| {
                let (memory, events, barrier) = (memory.clone(), events.clone(), barrier.clone());
                let digest = digest.clone();
                std::thread::Builder::new()
                    .name(format!("recv{index}"))
                    .spawn(move || {
                        let reader = Reader {
                            index,
                            integrity,
                            memory: &*memory,
                            digest: &digest,
                        };
                        if let Err(e) = reader.run(stream, &events, &barrier) {
                            // The cause first, then break the barrier: the
                            // readers it releases fail too ("end of
                            // migration"), and their events must not be the
                            // first the receiver sees.
                            let _ = events.send(Event::Failed(e));
                            barrier.fail();
                        }
                    })
                    .expect("spawn receiver thread")
            })
            .collect();
        (PageReceiver { barrier, readers }, rx)
    }

    /// Stops waiting readers (their streams must be closed by the caller to
    /// unblock a read) and joins them.
    pub fn finish(self) {
        self.barrier.fail();
        for r in self.readers {
            let _ = r.join();
        }
    }
}

struct Reader<'a> {
    index: usize,
    integrity: Integrity,
    memory: &'a dyn GuestMemory,
    digest: &'a ImageDigest,
}

impl Reader<'_> {
    fn run(
        &self,
        mut stream: InStream,
        events: &Sender<Event>,
        barrier: &RoundBarrier,
    ) -> Result<(), EngineError> {
        let index = self.index;
        let mut decoder = FrameDecoder::with_integrity(self.integrity);
        let mut round: u32 = 0;
        let mut received: u64 = 0;
        let wire = |error| EngineError::Wire {
            stream: index,
            error,
        };
        loop {
            while let Some(frame) = decoder.next_frame().map_err(wire)? {
                match frame {
                    Frame::PageBatch(batch) => {
                        if batch.round != round {
                            return Err(EngineError::Protocol {
                                stream: index,
                                what: format!("page of round {} during round {round}", batch.round),
                            });
                        }
                        // Allocated before any is written, so a destination
                        // without room fails the migration instead of dying
                        // of SIGBUS in the write.
                        self.memory
                            .populate_for_write(&mut batch.pages().map(|p| p.page))?;
                        for page in batch.pages() {
                            let mut result = Ok(());
                            self.memory.update_page(page.page, &mut |dest| {
                                result = page.decode_into(dest);
                                self.digest.set(page.page, page_hash(dest));
                            })?;
                            result.map_err(wire)?;
                            received += 1;
                        }
                    }
                    Frame::EndOfRound(end) => {
                        if end.round != round || end.pages != received {
                            return Err(EngineError::RoundIncomplete {
                                stream: index,
                                round: end.round,
                                expected: end.pages,
                                received,
                            });
                        }
                        barrier.arrive(round, received, |pages| {
                            let _ = events.send(Event::RoundComplete { round, pages });
                        })?;
                        round += 1;
                        received = 0;
                    }
                    other => {
                        let owned = OwnedFrame::from_frame(other).expect("pages handled above");
                        if events
                            .send(Event::Control {
                                stream: index,
                                frame: owned,
                            })
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                }
            }
            let n = decoder
                .read_from(&mut stream)
                .map_err(|source| EngineError::Stream {
                    stream: index,
                    source,
                })?;
            if n == 0 {
                decoder.finish().map_err(wire)?;
                return Ok(());
            }
        }
    }
}
