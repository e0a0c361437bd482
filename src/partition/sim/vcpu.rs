//! vCPU threads of a `sim` LPAR: one thread per vCPU running its guest
//! program, with pause, resume and throttle.
//!
//! A vCPU checks the run flag before every write. `pause` sets it and waits
//! until every vCPU has parked under the control mutex; a vCPU parks only
//! between writes, so when `pause` returns no vCPU can write until `resume`.
//! Sleeps (rate pacing, throttling) are condvar waits, so a pause never waits
//! for a sleep to end.

use super::program::{self, Regs};
use super::shm::{LparFiles, RunState};
use crate::partition::PAGE_SIZE;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Throttling works in periods of this length: a vCPU throttled to p% runs
/// (100-p)% of each period and sleeps the rest. Short, so the guest sees
/// many small gaps rather than few long ones.
const THROTTLE_PERIOD: Duration = Duration::from_millis(1);

/// Shortest sleep when a rate-limited program is ahead of schedule: below
/// this, timer slack makes the sleep cost more than it saves.
const MIN_PACING_SLEEP: Duration = Duration::from_micros(200);

const RUN: u8 = 0;
const PAUSE: u8 = 1;
const EXIT: u8 = 2;

struct Control {
    /// RUN, PAUSE or EXIT; read without the lock on the fast path.
    command: AtomicU8,
    lock: Mutex<Parked>,
    /// Signalled when `command` changes.
    changed: Condvar,
    /// Signalled when a vCPU parks.
    parked_cv: Condvar,
    /// A shutdown request (the guest's ACPI power button): a vCPU whose
    /// program honours it stops writing and counts itself in `down`.
    shutdown: AtomicBool,
    down: AtomicUsize,
}

struct Parked {
    count: usize,
}

/// The running vCPU threads of one LPAR.
pub struct VcpuSet {
    control: Arc<Control>,
    /// Per vCPU: the gap its guest program saw across the last pause.
    resume_gaps: Arc<[AtomicU64]>,
    files: Arc<LparFiles>,
    threads: Vec<JoinHandle<()>>,
}

impl VcpuSet {
    /// Starts one thread per vCPU, paused or running as the files say.
    pub fn start(files: Arc<LparFiles>, vcpus: usize) -> Self {
        let command = if files.run_state() == RunState::Running {
            RUN
        } else {
            PAUSE
        };
        let control = Arc::new(Control {
            command: AtomicU8::new(command),
            lock: Mutex::new(Parked { count: 0 }),
            changed: Condvar::new(),
            parked_cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
            down: AtomicUsize::new(0),
        });
        let resume_gaps: Arc<[AtomicU64]> = (0..vcpus).map(|_| AtomicU64::new(0)).collect();
        let threads = (0..vcpus)
            .map(|i| {
                let control = control.clone();
                let files = files.clone();
                let gaps = resume_gaps.clone();
                std::thread::Builder::new()
                    .name(format!("vcpu{i}"))
                    .spawn(move || run_vcpu(i, &control, &files, &gaps[i]))
                    .expect("spawn vCPU thread")
            })
            .collect();
        let set = VcpuSet {
            control,
            resume_gaps,
            files,
            threads,
        };
        if command == PAUSE {
            set.wait_parked();
        }
        set
    }

    pub fn count(&self) -> usize {
        self.threads.len()
    }

    pub fn pause(&self) {
        self.control.command.store(PAUSE, Ordering::SeqCst);
        self.control.changed.notify_all();
        self.wait_parked();
        self.files.set_run_state(RunState::Paused);
    }

    fn wait_parked(&self) {
        let mut parked = self.control.lock.lock().unwrap();
        while parked.count < self.threads.len() {
            parked = self.control.parked_cv.wait(parked).unwrap();
        }
    }

    /// Asks the guest to shut down; [`VcpuSet::is_shut_down`] tells when
    /// every vCPU has (a guest that ignores the request never does).
    pub fn request_shutdown(&self) {
        let _guard = self.control.lock.lock().unwrap();
        self.control.shutdown.store(true, Ordering::SeqCst);
        self.control.changed.notify_all();
    }

    /// Every vCPU stopped after a shutdown request.
    pub fn is_shut_down(&self) -> bool {
        self.control.shutdown.load(Ordering::SeqCst)
            && self.control.down.load(Ordering::SeqCst) >= self.threads.len()
    }

    pub fn resume(&self) {
        self.files.set_run_state(RunState::Running);
        let _guard = self.control.lock.lock().unwrap();
        // Activation powers the guest on again: a past request is void.
        self.control.shutdown.store(false, Ordering::SeqCst);
        self.control.down.store(0, Ordering::SeqCst);
        self.control.command.store(RUN, Ordering::SeqCst);
        self.control.changed.notify_all();
    }

    pub fn throttle(&self, percent: u8) {
        self.files.set_throttle(percent.min(99));
    }

    /// The longest gap any vCPU's guest program saw between its last write
    /// before the most recent pause and its first write after it, read
    /// from the guest's own clock (its last-write register carries over a
    /// migration). 0 until a vCPU has written after a resume.
    pub fn resume_stall_ns(&self) -> u64 {
        self.resume_gaps
            .iter()
            .map(|g| g.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    pub fn is_running(&self) -> bool {
        self.control.command.load(Ordering::SeqCst) == RUN
    }
}

impl Drop for VcpuSet {
    fn drop(&mut self) {
        {
            let _guard = self.control.lock.lock().unwrap();
            self.control.command.store(EXIT, Ordering::SeqCst);
            self.control.changed.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Per-run pacing and throttling bookkeeping. Hypervisor-side, not guest
/// state: it restarts on every resume so a guest never "catches up" in a
/// burst after a pause.
struct Pace {
    epoch: Instant,
    writes: u64,
    period_start: Instant,
}

impl Pace {
    fn new() -> Self {
        let now = Instant::now();
        Pace {
            epoch: now,
            writes: 0,
            period_start: now,
        }
    }

    /// How long to sleep before the next write, if at all.
    fn delay(&mut self, rate: u64, throttle: u8) -> Option<Duration> {
        let now = Instant::now();
        if throttle > 0 {
            let run = THROTTLE_PERIOD * u32::from(100 - throttle) / 100;
            if now - self.period_start >= run {
                self.period_start = now + THROTTLE_PERIOD - run;
                return Some(THROTTLE_PERIOD - run);
            }
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(self.writes as f64 / rate as f64);
            let elapsed = now - self.epoch;
            if due > elapsed {
                return Some((due - elapsed).max(MIN_PACING_SLEEP));
            }
        }
        None
    }
}

/// Waits on the control condvar until `command` is no longer RUN or the
/// timeout passes (None: wait for a command change). With `watch_shutdown`
/// a pending shutdown request also ends the wait (checked under the lock,
/// so a request cannot slip in unseen).
fn sleep(control: &Control, timeout: Option<Duration>, watch_shutdown: bool) {
    let guard = control.lock.lock().unwrap();
    if control.command.load(Ordering::SeqCst) != RUN
        || (watch_shutdown && control.shutdown.load(Ordering::SeqCst))
    {
        return;
    }
    let _unused = match timeout {
        Some(t) => control.changed.wait_timeout(guard, t).unwrap().0,
        None => control.changed.wait(guard).unwrap(),
    };
}

fn run_vcpu(index: usize, control: &Control, files: &LparFiles, resume_gap: &AtomicU64) {
    let base = files.memory.as_mut_ptr();
    let pages = files.memory_pages();
    let mut page_buf = [0u8; PAGE_SIZE];
    let mut regs: Regs = files.load_regs(index);
    let mut pace = Pace::new();
    let mut resumed = false;
    let mut shut_down = false;
    loop {
        match control.command.load(Ordering::SeqCst) {
            RUN => {}
            EXIT => return,
            _ => {
                // Park: count ourselves, then wait for RUN or EXIT.
                let mut parked = control.lock.lock().unwrap();
                parked.count += 1;
                control.parked_cv.notify_all();
                while control.command.load(Ordering::SeqCst) == PAUSE {
                    parked = control.changed.wait(parked).unwrap();
                }
                parked.count -= 1;
                drop(parked);
                shut_down = false;
                // Another process may have changed the registers (restore).
                regs = files.load_regs(index);
                pace = Pace::new();
                resumed = true;
                continue;
            }
        }
        let honours = program::honours_shutdown(&regs);
        if honours && control.shutdown.load(Ordering::SeqCst) {
            // The guest shuts down: no more writes until powered on again.
            if !std::mem::replace(&mut shut_down, true) {
                control.down.fetch_add(1, Ordering::SeqCst);
            }
            sleep(control, None, false);
            continue;
        }
        if program::halted(&regs) {
            sleep(control, None, honours);
            continue;
        }
        let loading = program::loading(&regs);
        let rate = if loading {
            0
        } else {
            regs.gpr[program::GPR_RATE]
        };
        if let Some(wait) = pace.delay(rate, files.throttle()) {
            sleep(control, Some(wait), honours);
            continue;
        }
        let mut next = regs;
        let (page, seed) = program::next_write(&mut next);
        if page >= pages {
            // A corrupt register file pointing outside memory: halt, do not write.
            log::error!("vcpu{index}: program addressed page {page} beyond memory; halting");
            next.rip = program::Opcode::Idle as u64;
            files.store_regs(index, &next);
            regs = next;
            continue;
        }
        program::fill_page(next.gpr[program::GPR_CONTENT], seed, &mut page_buf);
        // SAFETY: page < pages, so the 4 KiB at this offset lie inside the
        // live shared mapping, which the engine may be copying meanwhile
        // (both sides access it volatilely).
        unsafe {
            crate::partition::volatile::copy_to_guest(
                base.add(page as usize * PAGE_SIZE),
                &page_buf,
            )
        };
        let now = monotonic_ns();
        if std::mem::take(&mut resumed) {
            let last = regs.gpr[program::GPR_LAST_WRITE_NS];
            if last > 0 {
                resume_gap.store(now.saturating_sub(last), Ordering::Relaxed);
            }
        }
        program::record_write_time(&mut next, now);
        // Commit after the write: a kill in between redoes the same write.
        files.store_regs(index, &next);
        regs = next;
        match loading {
            // The program's pace starts when the loading ends.
            true if !program::loading(&regs) => pace = Pace::new(),
            true => {}
            false => pace.writes += 1,
        }
    }
}

/// The longest write gap any vCPU has seen (the guest-observed stall).
pub fn max_stall_ns(files: &LparFiles, vcpus: usize) -> u64 {
    (0..vcpus)
        .map(|i| files.load_regs(i).gpr[program::GPR_MAX_GAP_NS])
        .max()
        .unwrap_or(0)
}
