//! Portable dirty tracking for kernels without `PAGEMAP_SCAN`: write-protect
//! guest memory with `mprotect` and record each first write in a `SIGSEGV`
//! handler that marks the page and makes it writable again.
//!
//! Ordering that keeps every write (the invariant that could break here):
//! * the handler makes the page writable *before* it sets the page's bit;
//! * `harvest` takes (swaps to zero) a word of bits *before* it
//!   write-protects those pages again.
//!
//! So a bit is only ever cleared by a harvest that then re-protects the page,
//! and a page made writable by the handler always ends with its bit set
//! until the next harvest. A write that lands before the re-protect is in
//! memory before `harvest` returns (mprotect flushes the TLBs), so the copy
//! the engine reads afterwards includes it.
//!
//! Each writable page splits the mapping, and the kernel caps mappings per
//! process (`vm.max_map_count`); when `mprotect` of one page fails for that
//! reason the handler unprotects the surrounding 2 MiB block and marks all
//! of it dirty: more pages resent, none lost.

use super::TrackedRange;
use crate::partition::{DirtyLog, PAGE_SIZE, PageSet, PartitionError};
use std::io;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

const MECHANISM: &str = "mprotect";

/// Ranges tracked at once in this process (one per LPAR being migrated out).
const MAX_TRACKED: usize = 32;

/// Pages unprotected together when one page alone cannot be (2 MiB).
const FALLBACK_BLOCK_PAGES: usize = 512;

struct Slot {
    base: AtomicUsize,
    len: AtomicUsize,
    bitmap: AtomicPtr<AtomicU64>,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    bitmap: AtomicPtr::new(std::ptr::null_mut()),
};

static SLOTS: [Slot; MAX_TRACKED] = [EMPTY_SLOT; MAX_TRACKED];
/// Handlers currently running; a slot's bitmap is freed only when this is 0.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());

/// A dirty log that write-protects memory with `mprotect` and records the first write to each page from the SIGSEGV it raises.
pub struct MprotectLog {
    range: TrackedRange,
    bitmap: Box<[AtomicU64]>,
    slot: usize,
    started: bool,
}

fn err(call: &'static str, source: io::Error) -> PartitionError {
    PartitionError::DirtyLog {
        mechanism: MECHANISM,
        call,
        source,
    }
}

fn protect(addr: usize, len: usize, prot: libc::c_int) -> io::Result<()> {
    // SAFETY: callers pass page-aligned sub-ranges of a tracked mapping,
    // which stays mapped while its log exists; changing protection does not
    // invalidate any Rust reference (guest memory is accessed by raw copies).
    if unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl MprotectLog {
    /// A log over `range`, not yet started.
    pub fn new(range: TrackedRange) -> Result<Self, PartitionError> {
        install_handler()?;
        let pages = range.len / PAGE_SIZE;
        let bitmap: Box<[AtomicU64]> = (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        let slot = SLOTS
            .iter()
            .position(|s| {
                s.base
                    .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
            .ok_or_else(|| {
                err(
                    "register",
                    io::Error::other(format!("more than {MAX_TRACKED} ranges tracked at once")),
                )
            })?;
        // Publish length and bitmap before the base: the handler matches on
        // base, and a reserved slot (base = MAX) matches nothing.
        SLOTS[slot].len.store(range.len, Ordering::Relaxed);
        SLOTS[slot]
            .bitmap
            .store(bitmap.as_ptr() as *mut AtomicU64, Ordering::Relaxed);
        SLOTS[slot]
            .base
            .store(range.base as usize, Ordering::Release);
        Ok(MprotectLog {
            range,
            bitmap,
            slot,
            started: false,
        })
    }
}

impl DirtyLog for MprotectLog {
    fn mechanism(&self) -> &'static str {
        MECHANISM
    }

    fn start(&mut self) -> Result<(), PartitionError> {
        for word in self.bitmap.iter() {
            word.store(0, Ordering::Relaxed);
        }
        protect(self.range.base as usize, self.range.len, libc::PROT_READ)
            .map_err(|e| err("mprotect(PROT_READ)", e))?;
        self.started = true;
        Ok(())
    }

    fn harvest(&mut self, out: &mut PageSet) -> Result<(), PartitionError> {
        if !self.started {
            return Ok(());
        }
        let base = self.range.base as usize;
        let mut run: Option<(usize, usize)> = None; // [start, end) page indices
        let mut reprotect = |start: usize, end: usize| -> Result<(), PartitionError> {
            protect(
                base + start * PAGE_SIZE,
                (end - start) * PAGE_SIZE,
                libc::PROT_READ,
            )
            .map_err(|e| err("mprotect(PROT_READ)", e))?;
            out.insert_range(
                self.range.first_page + start as u64..self.range.first_page + end as u64,
            );
            Ok(())
        };
        for (w, word) in self.bitmap.iter().enumerate() {
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            // Take the bits before re-protecting (see the module doc).
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let page = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                match run {
                    Some((s, e)) if e == page => run = Some((s, e + 1)),
                    Some((s, e)) => {
                        reprotect(s, e)?;
                        run = Some((page, page + 1));
                    }
                    None => run = Some((page, page + 1)),
                }
            }
        }
        if let Some((s, e)) = run {
            reprotect(s, e)?;
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PartitionError> {
        if self.started {
            protect(
                self.range.base as usize,
                self.range.len,
                libc::PROT_READ | libc::PROT_WRITE,
            )
            .map_err(|e| err("mprotect(PROT_READ|PROT_WRITE)", e))?;
            self.started = false;
        }
        Ok(())
    }
}

impl Drop for MprotectLog {
    fn drop(&mut self) {
        let _ = self.stop();
        // SeqCst pairs this store and the load below with the handler's
        // increment and base load: either the handler sees the slot gone,
        // or we see the handler running and wait before freeing the bitmap.
        SLOTS[self.slot].base.store(usize::MAX, Ordering::SeqCst);
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
        SLOTS[self.slot]
            .bitmap
            .store(std::ptr::null_mut(), Ordering::Relaxed);
        SLOTS[self.slot].base.store(0, Ordering::Release);
    }
}

fn install_handler() -> Result<(), PartitionError> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting point; we fill in
        // the handler, flags and an empty mask before installing it.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigsegv as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: sa_mask is a valid sigset_t inside action.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        let previous = Box::into_raw(Box::new(
            // SAFETY: as above, zeroed is valid; the kernel overwrites it.
            unsafe { std::mem::zeroed::<libc::sigaction>() },
        ));
        // SAFETY: both pointers are valid for the call; the handler only
        // uses async-signal-safe operations (atomics and mprotect).
        if unsafe { libc::sigaction(libc::SIGSEGV, &action, previous) } != 0 {
            result = Err(err("sigaction(SIGSEGV)", io::Error::last_os_error()));
            return;
        }
        PREVIOUS.store(previous, Ordering::Release);
    });
    result
}

extern "C" fn on_sigsegv(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let handled = SLOTS.iter().any(|slot| mark_written(slot, addr));
    IN_HANDLER.fetch_sub(1, Ordering::AcqRel);
    if !handled {
        chain(sig, info, ctx);
    }
}

/// Unprotects and records the page at `addr` if it belongs to `slot`.
fn mark_written(slot: &Slot, addr: usize) -> bool {
    let base = slot.base.load(Ordering::SeqCst);
    let len = slot.len.load(Ordering::Relaxed);
    if base == 0 || base == usize::MAX || addr < base || addr >= base + len {
        return false;
    }
    let bitmap = slot.bitmap.load(Ordering::Relaxed);
    let page = (addr - base) / PAGE_SIZE;
    let pages = len / PAGE_SIZE;
    let (first, count) = if protect(
        base + page * PAGE_SIZE,
        PAGE_SIZE,
        libc::PROT_READ | libc::PROT_WRITE,
    )
    .is_ok()
    {
        (page, 1)
    } else {
        let first = page - page % FALLBACK_BLOCK_PAGES;
        let count = FALLBACK_BLOCK_PAGES.min(pages - first);
        if protect(
            base + first * PAGE_SIZE,
            count * PAGE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
        )
        .is_err()
        {
            // Last resort: the whole range writable and dirty.
            let _ = protect(base, len, libc::PROT_READ | libc::PROT_WRITE);
            (0, pages)
        } else {
            (first, count)
        }
    };
    // Writable first, then the bit (see the module doc).
    for p in first..first + count {
        // SAFETY: bitmap has pages.div_ceil(64) words and p < pages; the
        // owning log waits for IN_HANDLER to drain before freeing it.
        unsafe { (*bitmap.add(p / 64)).fetch_or(1 << (p % 64), Ordering::AcqRel) };
    }
    true
}

/// A fault that is not ours: hand it to whoever had the signal before.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let previous = PREVIOUS.load(Ordering::Acquire);
    // SAFETY: PREVIOUS is set before the handler can run and never freed.
    let prev = unsafe { &*previous };
    let handler = prev.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Restore the default action and return: the faulting instruction
        // runs again and the process dies with SIGSEGV, as it would have.
        // SAFETY: previous is a valid sigaction.
        unsafe { libc::sigaction(libc::SIGSEGV, previous, std::ptr::null_mut()) };
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous owner installed this as an SA_SIGINFO handler.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the previous owner installed this as a plain handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}
