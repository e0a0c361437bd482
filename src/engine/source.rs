//! The source side of a live migration.
//!
//! ```text
//! Hello on every stream ─▶           ◀─ Hello (stream 0): round trip measured
//! LparConfig ─▶
//! start dirty log; round 0 = populated pages; then rounds of dirtied pages,
//!   the dirty log harvested every 50 ms within a round and at its end:
//!   Throttle sets the vCPU throttle from each harvest's rate and the path,
//!   Convergence decides after each round: continue or suspend
//! pause vCPUs ── suspension starts
//! final round, DeviceState on stream 0 ahead of its last pages ─▶ Switchover(Suspended, t, digest) ─▶
//!   (to a version-2 destination: final round ─▶ Suspended ─▶ DeviceState ─▶)
//!                                    ◀─ Identities (destination slot's)
//!                                    ◀─ Switchover(Ready, digest)
//! Switchover(Commit) ─▶  ── ownership passes
//!                                    ◀─ Switchover(Running, t) ── suspension ends
//! ```
//!
//! Before Commit any failure, cancel or timeout ends the migration with the
//! LPAR running here (vCPUs resumed, throttle lifted, Abort sent). After
//! Commit the destination owns the LPAR and this side leaves it paused for
//! the caller to release.

use super::convergence::{Convergence, Decision, RoundMeasure};
use super::digest::ImageDigest;
pub use super::migration_control::MigrationControl;
use super::prediction::{FixedParts, HandOff};
use super::pump::{OutStream, OwnedFrame, PageSender, RoundStats};
use super::replies::{RoundTrips, spawn_reply_reader};
use super::report::{MigrationReport, RoundReport, SlotIdentities, SuspensionReport};
use super::state_transfer::{OutgoingState, payload_len};
use super::switchover::SwitchoverError;
use super::throttle::{SAMPLE_EVERY, Throttle};
use super::{EngineError, wall_clock_ns};
use crate::build_identity::BuildIdentity;
use crate::emg::Emg;
use crate::partition::{DirtyLog, PageSet, Partition};
use crate::state::{Identities, MigrationMode};
use crate::transport::MigrationStream;
use crate::transport::{PacedWriter, Pacer};
use crate::wire::{Hello, Keepalive, MigrationId, PROTOCOL_VERSION, Switchover, SwitchoverStep};
use crossbeam::channel::Receiver;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The wire version from which the device state leads the final round.
const STATE_LEADS_SINCE: u16 = 3;

/// How long the source waits for each switchover reply.
pub const SWITCHOVER_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a failed migration waits for its Abort to be written before it
/// closes the streams anyway.
const ABORT_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub migration_id: u128,
    /// Suspension budget (default 20 ms).
    pub max_suspend: Duration,
    /// Give up (leaving the LPAR running here) after this long (default 900 s).
    pub timeout: Duration,
    /// Cap on the migration path, bytes per second.
    pub bandwidth: Option<u64>,
    /// The hard limit of the suspension (default 5 s; `max_suspend` is
    /// the target): a destination not ready by then fails the migration
    /// before Commit, with the manual's "Transferring device data cannot
    /// be completed within an LPAR suspension period.", and the LPAR
    /// resumes here.
    pub suspend_limit: Duration,
}

/// [`LiveOptions::suspend_limit`] unless configured.
pub const DEFAULT_SUSPEND_LIMIT: Duration = Duration::from_secs(5);

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            migration_id: 0,
            max_suspend: Duration::from_millis(20),
            timeout: Duration::from_secs(900),
            bandwidth: None,
            suspend_limit: DEFAULT_SUSPEND_LIMIT,
        }
    }
}

/// Progress as the memory transfer goes.
#[derive(Clone, Debug)]
pub enum Progress {
    Round(RoundReport),
    /// The vCPUs were throttled to this percentage: rounds stopped shrinking.
    Throttled(u8),
    /// The vCPUs are paused; `pages` remain for the final copy.
    Suspending {
        pages: u64,
    },
    /// The destination loaded and verified the image: Commit is sent right
    /// after this returns (a journal records it first, write-ahead).
    Committing,
}

/// Migrates `lpar` live over `streams` (connected and authenticated).
///
/// Every wait here ends within milliseconds of a cancel or the deadline
/// (before Commit): the page sender's waits run `control`'s check, and a
/// migration that gives up releases its bandwidth cap, so a writer waiting
/// for tokens wakes and the Abort goes out.
pub fn migrate_live(
    lpar: Arc<dyn Partition>,
    streams: Vec<MigrationStream>,
    options: &LiveOptions,
    control: &Arc<MigrationControl>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<MigrationReport, EngineError> {
    let started = Instant::now();
    let encryption = match streams[0].cipher_suite() {
        Some(suite) => format!("{} ({suite})", streams[0].protection().label()),
        None => streams[0].protection().label().to_string(),
    };
    let integrity = super::integrity_of(&streams);
    let replies = spawn_reply_reader(&streams[0], integrity)?;
    // The reply reader holds a clone of stream 0, so dropping the writers
    // alone would not close it: every stream is shut down when done, which
    // also ends the reader thread (and unblocks a worker whose peer stopped
    // reading).
    let closers = streams
        .iter()
        .enumerate()
        .map(|(stream, s)| {
            s.try_clone()
                .map_err(|source| EngineError::Stream { stream, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pacer = options.bandwidth.map(Pacer::new);
    let cut = || {
        if let Some(p) = &pacer {
            p.release();
        }
        for s in &closers {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    };
    let out: Vec<OutStream> = streams
        .into_iter()
        .map(|s| Box::new(PacedWriter::new(s, pacer.clone())) as OutStream)
        .collect();
    let digest = Arc::new(ImageDigest::blank_for(&*lpar));
    let mut sender = PageSender::start(lpar.clone(), out, integrity, digest.clone());
    // Before Commit only: after it, the destination owns the LPAR and the
    // last reply is awaited whatever happens here.
    let (c, committing) = (control.clone(), Arc::new(AtomicBool::new(false)));
    let committed = committing.clone();
    sender.set_interrupt(Box::new(move || match committed.load(Ordering::SeqCst) {
        true => Ok(()),
        false => c.check(),
    }));
    let mut run = SourceRun {
        lpar: &*lpar,
        sender: &sender,
        replies,
        paused: false,
        throttle: 0,
        destination_load: std::cell::Cell::new(Duration::ZERO),
    };
    let mut result = run.migrate(options, control, &digest, progress, started, &committing);
    if let Ok(r) = &mut result {
        r.encryption = encryption;
        audit_memory(&*lpar, &digest, r);
    }
    if let Err(e) = result {
        // Giving up: nothing may wait for tokens any more.
        if let Some(p) = &pacer {
            p.release();
        }
        // A broken stream is often the destination hanging up after it
        // found a fault: report its reason, not the symptom.
        let e = match e {
            EngineError::Stream { .. } | EngineError::NoReply { .. } => {
                run.peer_abort().map_or(e, EngineError::PeerAborted)
            }
            other => other,
        };
        run.abandon(&e);
        result = Err(e);
    }
    // After a failure the Abort gets a moment to go out; no longer.
    let grace = if result.is_ok() {
        Duration::MAX
    } else {
        ABORT_GRACE
    };
    drop(sender.finish_or_cut(grace, cut));
    cut();
    result
}

/// After Commit, while the source's vCPUs stay paused: compares its memory
/// with the image sent ([`ImageDigest::audit`]). A stale page means the
/// dirty log missed a write, so the destination runs with an old copy of
/// it: the report says not verified, and the log says what to do.
fn audit_memory(lpar: &dyn Partition, digest: &ImageDigest, report: &mut MigrationReport) {
    if lpar.is_running() {
        log::warn!("memory audit skipped: the source's vCPUs run again");
        return;
    }
    match digest.audit(lpar) {
        Ok(audit) => {
            if audit.stale_pages > 0 {
                report.verified = false;
                log::error!(
                    "memory audit: {} of {} populated source pages differ from the copy sent \
                     (first: {:?}); the dirty log missed writes and the LPAR runs on the \
                     destination with stale copies of them. Restart its workload from a known \
                     state, and report the dirty tracker's failure with this log.",
                    audit.stale_pages,
                    audit.pages,
                    audit.first_stale,
                );
            }
            report.memory_audit = Some(audit);
        }
        Err(e) => log::warn!("memory audit could not run: {e}"),
    }
}

struct SourceRun<'a> {
    lpar: &'a dyn Partition,
    sender: &'a PageSender,
    replies: Receiver<Result<OwnedFrame, EngineError>>,
    paused: bool,
    throttle: u8,
    /// How long the destination's rehearsal load of the device-state base
    /// took (its Rehearsal frame, version 5; zero until one came).
    destination_load: std::cell::Cell<Duration>,
}

impl SourceRun<'_> {
    fn migrate(
        &mut self,
        options: &LiveOptions,
        control: &MigrationControl,
        digest: &ImageDigest,
        progress: &mut dyn FnMut(&Progress),
        started: Instant,
        committing: &AtomicBool,
    ) -> Result<MigrationReport, EngineError> {
        let mut report = MigrationReport {
            memory_bytes: self.lpar.size_bytes(),
            ..Default::default()
        };
        // Hello both ways: checks versions and measures the round trip.
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            migration_id: MigrationId(options.migration_id),
            build: BuildIdentity::current(),
            auth_proof: Vec::new(),
        };
        self.sender.send_control_all(OwnedFrame::Hello(hello))?;
        let theirs = match self.expect(
            |f| matches!(f, OwnedFrame::Hello(_)),
            "Hello",
            SWITCHOVER_REPLY_TIMEOUT,
        )? {
            OwnedFrame::Hello(h) => h.protocol_version,
            _ => unreachable!("checked by the predicate"),
        };
        // A version-2 destination wants the device state after Suspended.
        let state_leads = theirs >= STATE_LEADS_SINCE;
        let config = serde_json::to_vec(self.lpar.config()).expect("LparConfig serialises");
        self.sender.send_control(OwnedFrame::LparConfig(config))?;
        // The device state as it reads while the guest runs crosses now;
        // the pause then carries only what changed (version 4).
        let mut outgoing = OutgoingState::preview(self.lpar, theirs)?;
        if let Some(base) = outgoing.base_frame() {
            self.sender.send_control(base)?;
        }
        report.suspension.device_state_base_bytes = outgoing.base_bytes();
        report.bytes_sent += outgoing.base_bytes();

        // Switchover cost not tied to memory: two round trips (suspended →
        // ready, commit → running) plus what the pause does with the device
        // state (encode it, and with a base its difference), timed here.
        let t = Instant::now();
        let state_bytes = outgoing.estimate(self.lpar)?;
        let encode_cost = t.elapsed();
        let mut rtt = RoundTrips::default();
        rtt.record(self.ping()?);
        let mut fixed = FixedParts {
            round_trips: 2 * rtt.typical(),
            state_capture: encode_cost,
            ..FixedParts::default()
        };
        let mut convergence = Convergence::new(options.max_suspend, fixed.total());
        convergence.set_state_bytes(state_bytes);

        let mut log = self.lpar.dirty_log()?;
        log.start()?;
        let mut pages = self.lpar.populated()?;
        report.populated_bytes = pages.len() * crate::partition::PAGE_SIZE as u64;
        let writes_before = (self.lpar.guest_writes(), Instant::now());
        let mut throttle = Throttle::default();
        let mut last_harvest = Instant::now();
        let mut round = 0u32;
        let mut warned_budget = false;
        let mut hand_off = HandOff::default();
        let predicted = loop {
            control.check()?;
            let t = Instant::now();
            self.sender.queue_round(round, &pages);
            let mut dirty = PageSet::new();
            let stats = self.round_sampling(
                &mut *log,
                &mut dirty,
                &mut last_harvest,
                &mut throttle,
                &convergence,
                progress,
            )?;
            hand_off.observe(stats.bytes, t.elapsed());
            // A round is over when the destination has it, not when the
            // socket buffers took it (megabytes on a slow path, which made
            // the bandwidth look twice the link's): the ping queued behind
            // the round comes back only after stream 0 drained.
            // That first ping waited for the drain; a second one measures
            // the round trip itself.
            self.ping()?;
            let duration = t.elapsed();
            rtt.record(self.ping()?);
            let t = Instant::now();
            let fresh = self.harvest_sample(&mut *log, &mut dirty, &mut last_harvest)?;
            // The pause-time harvest costs about what this one did: it
            // walks the same page tables, inside the suspension. The
            // destination's load costs what its rehearsal did, and the
            // final round's hand-off what the rounds' did.
            fixed = FixedParts {
                round_trips: 2 * rtt.typical(),
                state_capture: encode_cost,
                harvest: t.elapsed(),
                destination_load: self.destination_load.get(),
                hand_off: hand_off.cost(),
            };
            convergence.set_fixed_cost(fixed.total());
            let path = path_pages_per_sec(&convergence, None);
            self.observe(&mut throttle, fresh, path, progress)?;
            self.throttle = throttle.percent();
            report.throttle = throttle.peak();
            let decision = convergence.decide(RoundMeasure {
                pages: stats.pages,
                wire_bytes: stats.bytes,
                duration,
                dirtied: dirty.len(),
                throttle: throttle.percent(),
            });
            if convergence.effective_budget() > options.max_suspend && !warned_budget {
                warned_budget = true;
                log::warn!(
                    "suspension budget {:?} is below the measured fixed switchover cost; \
                     aiming for {:?} instead (raise max_suspend_ms to at least that)",
                    options.max_suspend,
                    convergence.effective_budget()
                );
            }
            let r = round_report(round, &stats, duration, &dirty, &convergence, self.throttle);
            report.bytes_sent += stats.bytes;
            progress(&Progress::Round(r.clone()));
            report.rounds.push(r);
            pages = dirty;
            round += 1;
            match decision {
                Decision::Continue => {}
                Decision::Suspend { predicted } => break predicted,
            }
        };
        // What the guest wrote, per second, while it was being moved
        // (throttled or not): what the migration cost it.
        if let (Some(before), Some(now)) = (writes_before.0, self.lpar.guest_writes()) {
            let secs = writes_before.1.elapsed().as_secs_f64().max(1e-9);
            report.guest_write_rate = Some(now.saturating_sub(before) as f64 / secs);
        }
        control.check()?;

        // Suspension: from here every millisecond counts.
        self.lpar.pause()?;
        let paused_wall = wall_clock_ns();
        let paused = Instant::now();
        self.paused = true;
        log.harvest(&mut pages)?;
        #[cfg(feature = "fault-injection")]
        super::faults::forget_one_of(&mut pages);
        let harvested = Instant::now();
        // The final pages go out while the device state is captured; then
        // stream 0 sends the state ahead of the pages still queued, so the
        // destination loads it while they land (version 3).
        match state_leads {
            true => self.sender.queue_pages(round, &pages),
            false => self.sender.queue_round(round, &pages),
        }
        let state = self.lpar.save_state()?;
        // The manual's refusal holds to the end: a USB device taken into use
        // since validation fails the migration here, and the source resumes.
        state
            .check_live_migratable()
            .map_err(|e| EngineError::Switchover(SwitchoverError::State(e)))?;
        let state_frame = outgoing.final_frame(&state.for_mode(MigrationMode::Live))?;
        let state_bytes = payload_len(&state_frame);
        let captured = Instant::now();
        let mut after_suspended = vec![];
        match state_leads {
            true => self.sender.end_round_led(round, state_frame),
            false => after_suspended.push(state_frame),
        }
        progress(&Progress::Suspending { pages: pages.len() });
        let stats = match state_leads {
            true => self.sender.wait_round_led()?,
            false => self.sender.wait_round()?,
        };
        report.bytes_sent += stats.bytes + state_bytes;
        let final_copied = Instant::now();
        let suspended = Switchover {
            step: SwitchoverStep::Suspended,
            timestamp_ns: paused_wall,
            digest: digest.value(),
        };
        after_suspended.insert(0, OwnedFrame::Switchover(suspended));
        self.sender.send_controls(after_suspended)?;
        let state_sent = Instant::now();
        let (slot, ready) = self.identities_then_ready()?;
        report.slot_identities = slot.as_ref().map(SlotIdentities::from);
        let ready_at = Instant::now();
        if ready.digest != digest.value() {
            return Err(EngineError::DigestMismatch {
                source: digest.value(),
                destination: ready.digest,
            });
        }
        report.verified = true;
        // The hard limit: past it the destination may not take over; the
        // source resumes (exactly one owner: Commit never leaves).
        let elapsed = paused.elapsed();
        if elapsed > options.suspend_limit {
            return Err(EngineError::SuspensionOverrun {
                limit_ms: options.suspend_limit.as_secs_f64() * 1e3,
                elapsed_ms: elapsed.as_secs_f64() * 1e3,
            });
        }

        // Commit: ownership passes. No abort after this point.
        // From here no cancel or deadline may interrupt: Commit goes out.
        committing.store(true, Ordering::SeqCst);
        progress(&Progress::Committing);
        self.sender
            .send_control(OwnedFrame::Switchover(Switchover {
                step: SwitchoverStep::Commit,
                timestamp_ns: wall_clock_ns(),
                digest: 0,
            }))?;
        self.paused = false; // the destination owns it now; never resume here
        let running = self
            .switchover_reply(SwitchoverStep::Running)
            .map_err(|e| EngineError::AfterCommit(Box::new(e)))?;
        log.stop()?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        log::debug!(
            "final copy {:.3} ms: harvest {:.3} ms, device state capture {:.3} ms",
            ms(final_copied - paused),
            ms(harvested - paused),
            ms(captured - harvested)
        );
        let total_ms = running.timestamp_ns.saturating_sub(paused_wall) as f64 / 1e6;
        report.suspension = SuspensionReport {
            total_ms,
            final_copy_ms: ms(final_copied - paused),
            final_pages: pages.len(),
            device_state_ms: ms(state_sent - final_copied),
            device_state_first: state_leads,
            device_state_bytes: state_bytes,
            device_state_base_bytes: report.suspension.device_state_base_bytes,
            load_verify_ms: ms(ready_at - state_sent),
            resume_ms: (total_ms - ms(ready_at - paused)).max(0.0),
            predicted_ms: ms(predicted),
            predicted_parts: fixed.parts_of(predicted),
        };
        report.total_ms = ms(started.elapsed());
        Ok(report)
    }

    /// Waits for the round in flight, harvesting the dirty log into `dirty`
    /// every [`SAMPLE_EVERY`] meanwhile so the throttle follows the guest
    /// within the round (a round on a slow path lasts seconds). The path's
    /// bandwidth before any round ended is the slope of the bytes written,
    /// from the round's second sample on (the socket buffers fill first).
    fn round_sampling(
        &mut self,
        log: &mut dyn DirtyLog,
        dirty: &mut PageSet,
        last_harvest: &mut Instant,
        throttle: &mut Throttle,
        convergence: &Convergence,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<RoundStats, EngineError> {
        let mut slope: Option<(u64, Instant)> = None;
        let sender = self.sender;
        let this = &*self;
        let stats = sender.wait_round_ticking(SAMPLE_EVERY, &mut || {
            let now = Instant::now();
            let written = sender.bytes_written();
            let bandwidth = slope.map(|(bytes, at)| {
                written.saturating_sub(bytes) as f64 / (now - at).as_secs_f64().max(1e-6)
            });
            slope = Some((written, now));
            let fresh = this.harvest_sample(log, dirty, last_harvest)?;
            let path = path_pages_per_sec(convergence, bandwidth);
            this.observe(throttle, fresh, path, progress)
        })?;
        self.throttle = throttle.percent();
        Ok(stats)
    }

    /// Harvests the dirty log into `dirty`; returns the pages this harvest
    /// found and the time since the one before.
    fn harvest_sample(
        &self,
        log: &mut dyn DirtyLog,
        dirty: &mut PageSet,
        last_harvest: &mut Instant,
    ) -> Result<(u64, Duration), EngineError> {
        let mut fresh = PageSet::new();
        log.harvest(&mut fresh)?;
        let now = Instant::now();
        let window = now - std::mem::replace(last_harvest, now);
        dirty.union(&fresh);
        Ok((fresh.len(), window))
    }

    /// Gives the throttle policy a harvest; applies the throttle it asks
    /// for.
    fn observe(
        &self,
        throttle: &mut Throttle,
        (pages, window): (u64, Duration),
        path: f64,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), EngineError> {
        if let Some(p) = throttle.observe(pages, window, path) {
            self.lpar.throttle(p)?;
            progress(&Progress::Throttled(p));
        }
        Ok(())
    }

    /// Measures one round trip on stream 0 (the destination echoes it).
    fn ping(&self) -> Result<Duration, EngineError> {
        let t = Instant::now();
        let stamp = Keepalive {
            timestamp_ns: wall_clock_ns(),
        };
        self.sender.send_control(OwnedFrame::Keepalive(stamp))?;
        self.expect(
            |f| *f == OwnedFrame::Keepalive(stamp),
            "the ping echo",
            SWITCHOVER_REPLY_TIMEOUT,
        )?;
        Ok(t.elapsed())
    }

    /// Waits for the next frame from the destination, which must satisfy
    /// `want`. A Rehearsal may come first (the destination sends it when
    /// the device-state base is loaded, whatever the source waits for):
    /// it is noted for the prediction.
    fn expect(
        &self,
        want: impl Fn(&OwnedFrame) -> bool,
        what: &str,
        timeout: Duration,
    ) -> Result<OwnedFrame, EngineError> {
        let deadline = Instant::now() + timeout;
        let frame = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(reply) => match reply? {
                    OwnedFrame::Rehearsal(r) => {
                        self.destination_load.set(Duration::from_nanos(r.load_ns));
                    }
                    frame => break frame,
                },
                Err(_) => {
                    return Err(EngineError::NoReply {
                        waiting_for: what.to_string(),
                    });
                }
            }
        };
        match frame {
            OwnedFrame::Abort(emg) => Err(EngineError::PeerAborted(emg)),
            f if want(&f) => Ok(f),
            other => Err(EngineError::Protocol {
                stream: 0,
                what: format!("{other:?} instead of {what}"),
            }),
        }
    }

    fn switchover_reply(&self, step: SwitchoverStep) -> Result<Switchover, EngineError> {
        let is_step = |f: &OwnedFrame| matches!(f, OwnedFrame::Switchover(s) if s.step == step);
        match self.expect(
            is_step,
            &format!("Switchover({step:?})"),
            SWITCHOVER_REPLY_TIMEOUT,
        )? {
            OwnedFrame::Switchover(s) => Ok(s),
            _ => unreachable!("checked by is_step"),
        }
    }

    /// The destination slot's identities (which this side's slot takes over
    /// in the exchange), then Ready. A version-1 destination sends Ready
    /// alone.
    fn identities_then_ready(&self) -> Result<(Option<Identities>, Switchover), EngineError> {
        let first = self.expect(
            |f| {
                matches!(f, OwnedFrame::Identities(_))
                    || matches!(f, OwnedFrame::Switchover(s) if s.step == SwitchoverStep::Ready)
            },
            "Identities or Switchover(Ready)",
            SWITCHOVER_REPLY_TIMEOUT,
        )?;
        match first {
            OwnedFrame::Identities(ids) => {
                Ok((Some(ids), self.switchover_reply(SwitchoverStep::Ready)?))
            }
            OwnedFrame::Switchover(s) => Ok((None, s)),
            _ => unreachable!("checked by the predicate"),
        }
    }

    /// The destination's Abort, if it sent one before hanging up.
    fn peer_abort(&self) -> Option<Emg> {
        let grace = Instant::now() + Duration::from_millis(500);
        while let Ok(reply) = self.replies.recv_deadline(grace) {
            if let Ok(OwnedFrame::Abort(emg)) = reply {
                return Some(emg);
            }
        }
        None
    }

    /// Leaves the LPAR running here after a failure before commit.
    fn abandon(&mut self, error: &EngineError) {
        if matches!(error, EngineError::AfterCommit(_)) {
            return;
        }
        // The guest first: a peer that stopped reading must not keep it
        // paused while the Abort waits to be written.
        let _ = self.lpar.throttle(0);
        if self.paused {
            let _ = self.lpar.resume();
            self.paused = false;
        }
        self.sender
            .queue_control(OwnedFrame::Abort(error.abort_emg()));
    }
}

/// Dirty pages per second the path carries: its bandwidth measured over
/// whole rounds, else `in_round` (a slope within the first round), over the
/// wire bytes a page costs. NaN while neither is known.
fn path_pages_per_sec(convergence: &Convergence, in_round: Option<f64>) -> f64 {
    convergence
        .bandwidth()
        .or(in_round)
        .map_or(f64::NAN, |b| b / convergence.bytes_per_page())
}

fn round_report(
    round: u32,
    stats: &RoundStats,
    duration: Duration,
    dirty: &PageSet,
    convergence: &Convergence,
    throttle: u8,
) -> RoundReport {
    let secs = duration.as_secs_f64().max(1e-9);
    RoundReport {
        round,
        pages: stats.pages,
        wire_bytes: stats.bytes,
        by_encoding: stats.by_encoding,
        duration_ms: secs * 1e3,
        dirty_rate: dirty.len() as f64 / secs,
        bandwidth: convergence.bandwidth().unwrap_or(0.0),
        throttle,
    }
}
