//! vCPU threads of a KVM LPAR: one thread per vCPU in `KVM_RUN`, the COM1
//! port they emulate, and pause/resume/throttle.
//!
//! * Pause: the command turns to `Pause` and every thread is kicked with a
//!   signal ([`sys::kick`]) until all are parked; before it parks, a thread
//!   completes the I/O exit it may be in ([`settle`]), so the state saved
//!   is between two instructions. A parked thread is out of `KVM_RUN` (so
//!   every guest write is in the dirty bitmap) and holds no `VcpuFd`, so
//!   save and restore may use them. On return no vCPU runs.
//! * Throttle `p`%: a ticker kicks every vCPU each [`THROTTLE_PERIOD`]; a
//!   kicked vCPU sleeps `p / (100 - p)` times as long as it ran since it
//!   last slept before it enters `KVM_RUN` again.
//! * COM1 (0x3f8..0x3ff) is a polled 16550 stub: transmit always ready,
//!   bytes appended line by line to the console log.

use super::sys;
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::fs::File;
use std::io::Write;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const THROTTLE_PERIOD: Duration = Duration::from_millis(10);
const COM1: u16 = 0x3f8;

const RUN: u8 = 0;
const PAUSE: u8 = 1;
const EXIT: u8 = 2;

/// The emulated COM1 port.
pub struct Serial {
    lcr: u8,
    scratch: u8,
    line: Vec<u8>,
    log: File,
}

impl Serial {
    pub fn new(log: File) -> Self {
        Serial {
            lcr: 0,
            scratch: 0,
            line: Vec::new(),
            log,
        }
    }

    fn out(&mut self, offset: u16, byte: u8) {
        match offset {
            0 if self.lcr & 0x80 == 0 => {
                self.line.push(byte);
                if byte == b'\n' || self.line.len() >= 1024 {
                    let _ = self.log.write_all(&self.line);
                    self.line.clear();
                }
            }
            3 => self.lcr = byte,
            7 => self.scratch = byte,
            _ => {}
        }
    }

    fn input(&self, offset: u16) -> u8 {
        match offset {
            3 => self.lcr,
            5 => 0x60, // THR empty, transmitter idle
            6 => 0xb0, // CTS, DSR, DCD
            7 => self.scratch,
            _ => 0,
        }
    }
}

struct Control {
    command: AtomicU8,
    throttle: AtomicU8,
    parked: Mutex<usize>,
    cv: Condvar,
    /// A vCPU met an exit it cannot handle (triple fault, internal error).
    failed: AtomicBool,
}

pub struct VcpuSet {
    pub fds: Vec<Arc<Mutex<VcpuFd>>>,
    control: Arc<Control>,
    threads: Vec<JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl VcpuSet {
    /// Starts one parked thread per vCPU.
    pub fn start(fds: Vec<VcpuFd>, serial: Arc<Mutex<Serial>>) -> Self {
        sys::install_kick_handler();
        let control = Arc::new(Control {
            command: AtomicU8::new(PAUSE),
            throttle: AtomicU8::new(0),
            parked: Mutex::new(0),
            cv: Condvar::new(),
            failed: AtomicBool::new(false),
        });
        let fds: Vec<_> = fds.into_iter().map(|f| Arc::new(Mutex::new(f))).collect();
        let threads = fds
            .iter()
            .enumerate()
            .map(|(i, fd)| {
                let (fd, c, s) = (fd.clone(), control.clone(), serial.clone());
                std::thread::Builder::new()
                    .name(format!("kvm-vcpu{i}"))
                    .spawn(move || vcpu_loop(i, fd, c, s))
                    .expect("spawn a vCPU thread")
            })
            .collect();
        let mut set = VcpuSet {
            fds,
            control,
            threads,
            ticker: None,
        };
        set.wait_parked();
        let pthreads: Vec<libc::pthread_t> = set.threads.iter().map(|t| t.as_pthread_t()).collect();
        let c = set.control.clone();
        set.ticker = Some(
            std::thread::Builder::new()
                .name("kvm-throttle".into())
                .spawn(move || ticker(c, pthreads))
                .expect("spawn the throttle thread"),
        );
        set
    }

    pub fn count(&self) -> usize {
        self.threads.len()
    }

    fn kick_all(&self) {
        for t in &self.threads {
            sys::kick(t.as_pthread_t());
        }
    }

    fn wait_parked(&self) {
        let mut parked = self.control.parked.lock().unwrap();
        while *parked < self.threads.len() {
            drop(parked);
            self.kick_all();
            parked = self.control.parked.lock().unwrap();
            if *parked < self.threads.len() {
                parked = self
                    .control
                    .cv
                    .wait_timeout(parked, Duration::from_millis(1))
                    .unwrap()
                    .0;
            }
        }
    }

    pub fn pause(&self) {
        self.control.command.store(PAUSE, Ordering::SeqCst);
        self.wait_parked();
    }

    pub fn resume(&self) {
        let _g = self.control.parked.lock().unwrap();
        self.control.command.store(RUN, Ordering::SeqCst);
        self.control.cv.notify_all();
    }

    pub fn throttle(&self, percent: u8) {
        self.control
            .throttle
            .store(percent.min(99), Ordering::SeqCst);
    }

    pub fn is_running(&self) -> bool {
        self.control.command.load(Ordering::SeqCst) == RUN
    }

    pub fn failed(&self) -> bool {
        self.control.failed.load(Ordering::SeqCst)
    }
}

impl Drop for VcpuSet {
    fn drop(&mut self) {
        {
            let _g = self.control.parked.lock().unwrap();
            self.control.command.store(EXIT, Ordering::SeqCst);
            self.control.cv.notify_all();
        }
        for t in self.threads.drain(..) {
            for _ in 0..1000 {
                if t.is_finished() {
                    break;
                }
                sys::kick(t.as_pthread_t());
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = t.join();
        }
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

fn ticker(c: Arc<Control>, threads: Vec<libc::pthread_t>) {
    while c.command.load(Ordering::SeqCst) != EXIT {
        std::thread::sleep(THROTTLE_PERIOD);
        if c.throttle.load(Ordering::SeqCst) > 0 && c.command.load(Ordering::SeqCst) == RUN {
            for &t in &threads {
                sys::kick(t);
            }
        }
    }
}

fn vcpu_loop(index: usize, fd: Arc<Mutex<VcpuFd>>, c: Arc<Control>, serial: Arc<Mutex<Serial>>) {
    loop {
        {
            let mut parked = c.parked.lock().unwrap();
            if c.command.load(Ordering::SeqCst) != RUN {
                *parked += 1;
                c.cv.notify_all();
                while c.command.load(Ordering::SeqCst) == PAUSE {
                    parked = c.cv.wait(parked).unwrap();
                }
                *parked -= 1;
                if c.command.load(Ordering::SeqCst) == EXIT {
                    return;
                }
            }
        }
        let mut vcpu = fd.lock().unwrap();
        let mut ran_since = Instant::now();
        while c.command.load(Ordering::SeqCst) == RUN {
            match serve(vcpu.run(), &serial) {
                Next::Go => {}
                Next::Halted => std::thread::sleep(Duration::from_millis(1)),
                Next::Kicked => throttle_sleep(&c, &mut ran_since),
                Next::Failed(why) => {
                    log::error!("vCPU {index}: {why}; the vCPU stops");
                    c.failed.store(true, Ordering::SeqCst);
                    park_failed(&c);
                    return;
                }
            }
        }
        settle(&mut vcpu, &serial);
    }
}

/// What the vCPU loop does after one `KVM_RUN`.
enum Next {
    /// An exit served here (COM1, other ports, MMIO): run on.
    Go,
    Halted,
    /// A kick (`EINTR`) or `KVM_EXIT_INTR`.
    Kicked,
    Failed(String),
}

/// Serves one exit.
fn serve(exit: Result<VcpuExit<'_>, kvm_ioctls::Error>, serial: &Mutex<Serial>) -> Next {
    match exit {
        Ok(VcpuExit::IoOut(port, data)) => {
            if (COM1..COM1 + 8).contains(&port) {
                let mut s = serial.lock().unwrap();
                for &b in data {
                    s.out(port - COM1, b);
                }
            }
            Next::Go
        }
        Ok(VcpuExit::IoIn(port, data)) => {
            let v = if (COM1..COM1 + 8).contains(&port) {
                serial.lock().unwrap().input(port - COM1)
            } else {
                0xff
            };
            data.fill(v);
            Next::Go
        }
        Ok(VcpuExit::MmioRead(_, data)) => {
            data.fill(0xff);
            Next::Go
        }
        Ok(VcpuExit::MmioWrite(..)) => Next::Go,
        Ok(VcpuExit::Hlt) => Next::Halted,
        Ok(VcpuExit::Intr) => Next::Kicked,
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Next::Kicked,
        Ok(exit) => Next::Failed(format!("unhandled exit {exit:?}")),
        Err(e) => Next::Failed(format!("KVM_RUN failed: {e}")),
    }
}

/// Before the vCPU parks: completes the I/O or MMIO exit it may be in the
/// middle of. KVM finishes such an instruction (stores an `IN`'s data,
/// moves RIP past an `OUT`) only on the next `KVM_RUN`, so state saved
/// straight after the exit would have the guest run the instruction again
/// after a restore (a second `OUT` to COM1, a second MMIO write). With
/// `immediate_exit` set, `KVM_RUN` completes it and returns `EINTR`
/// without running the guest (the KVM API's advice before saving state).
fn settle(vcpu: &mut VcpuFd, serial: &Mutex<Serial>) {
    vcpu.set_kvm_immediate_exit(1);
    // The completion may itself exit again (a string I/O instruction's
    // next chunk): serve it and go on, a few times at most.
    for _ in 0..16 {
        if !matches!(serve(vcpu.run(), serial), Next::Go) {
            break;
        }
    }
    vcpu.set_kvm_immediate_exit(0);
}

/// Sleeps so that the vCPU ran `100 - p`% of the time since it last
/// slept: measured, not assumed, because a kick can take a while to get a
/// vCPU out of `KVM_RUN` (under instruction emulation, milliseconds).
fn throttle_sleep(c: &Control, ran_since: &mut Instant) {
    let p = u32::from(c.throttle.load(Ordering::SeqCst));
    if p > 0 && c.command.load(Ordering::SeqCst) == RUN {
        let ran = ran_since.elapsed().min(Duration::from_millis(100));
        std::thread::sleep(ran * p / (100 - p));
        *ran_since = Instant::now();
    }
}

/// A failed vCPU counts as parked for good, so pause never waits for it.
fn park_failed(c: &Control) {
    let mut parked = c.parked.lock().unwrap();
    *parked += 1;
    c.cv.notify_all();
}
