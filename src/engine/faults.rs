//! The engine's fault hooks, for the tests of the memory audit and of the
//! suspension's prediction. Compiled only with the `fault-injection`
//! feature (test builds), like `agent::faults`.

use crate::partition::PageSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

static SLOW_STATE_LOAD_US: AtomicU64 = AtomicU64::new(0);

/// Makes every device-state load on a destination (the rehearsal and the
/// final one) take `by` longer, as a backend with a costly load would.
pub fn slow_down_state_loads(by: Duration) {
    SLOW_STATE_LOAD_US.store(by.as_micros() as u64, Ordering::SeqCst);
}

/// Sleeps as long as [`slow_down_state_loads`] asked.
pub(crate) fn slow_state_load() {
    let us = SLOW_STATE_LOAD_US.load(Ordering::SeqCst);
    if us > 0 {
        std::thread::sleep(Duration::from_micros(us));
    }
}

static FORGET_A_DIRTY_PAGE: AtomicBool = AtomicBool::new(false);
static FORGOTTEN: AtomicU64 = AtomicU64::new(u64::MAX);

/// Makes the next migration's source drop one page from the harvest it
/// takes at the pause, as a dirty log that missed a write would: the page
/// is never sent, and only the memory audit can tell.
pub fn forget_a_dirty_page() {
    FORGOTTEN.store(u64::MAX, Ordering::SeqCst);
    FORGET_A_DIRTY_PAGE.store(true, Ordering::SeqCst);
}

/// The page the hook dropped, once it has.
pub fn forgotten_page() -> Option<u64> {
    Some(FORGOTTEN.load(Ordering::SeqCst)).filter(|&p| p != u64::MAX)
}

/// Drops the lowest page of `pages` if the hook is armed and there is one
/// (disarming it).
pub(crate) fn forget_one_of(pages: &mut PageSet) {
    let Some(first) = pages.iter().next() else {
        return;
    };
    if !FORGET_A_DIRTY_PAGE.swap(false, Ordering::SeqCst) {
        return;
    }
    log::warn!("fault injection: page {first} dropped from the final harvest");
    FORGOTTEN.store(first, Ordering::SeqCst);
    let mut kept = PageSet::new();
    for page in pages.iter().filter(|&p| p != first) {
        kept.insert(page);
    }
    *pages = kept;
}
