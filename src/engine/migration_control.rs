//! What an operator can do to a running migration (cancel it, extend its
//! deadline), shared between the engine's waits and the agent.

use super::EngineError;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What an operator can do to a running migration: cancel, extend.
pub struct MigrationControl {
    cancelled: AtomicBool,
    deadline: Mutex<Instant>,
}

impl MigrationControl {
    pub fn new(timeout: Duration) -> Self {
        MigrationControl {
            cancelled: AtomicBool::new(false),
            deadline: Mutex::new(super::later(Instant::now(), timeout)),
        }
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Moves the deadline `by` later.
    pub fn extend(&self, by: Duration) {
        let mut d = self.deadline();
        *d = super::later(*d, by);
    }

    fn deadline(&self) -> std::sync::MutexGuard<'_, Instant> {
        // An Instant cannot be left half-written: a poisoned lock is fine.
        self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The time left until the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline().saturating_duration_since(Instant::now())
    }

    /// Cancelled or past the deadline: the migration must stop.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(EngineError::Cancelled);
        }
        if Instant::now() > *self.deadline() {
            return Err(EngineError::TimedOut);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_moves_the_deadline_that_check_enforces() {
        // A deadline already past: check says timed out.
        let control = MigrationControl::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert!(matches!(control.check(), Err(EngineError::TimedOut)));
        assert_eq!(control.remaining(), Duration::ZERO);
        // Extended past now: the same control passes again, with about the
        // extension left (lower bound only: this machine may be slow).
        control.extend(Duration::from_secs(60));
        assert!(control.check().is_ok());
        let left = control.remaining();
        assert!(
            left > Duration::from_secs(59) && left <= Duration::from_secs(60),
            "{left:?}"
        );
        // Extensions add up.
        control.extend(Duration::from_secs(60));
        assert!(control.remaining() > Duration::from_secs(119));
        // Cancel wins over any deadline.
        control.cancel();
        assert!(matches!(control.check(), Err(EngineError::Cancelled)));
    }

    #[test]
    fn a_huge_extension_saturates_instead_of_overflowing() {
        let control = MigrationControl::new(Duration::from_secs(1));
        control.extend(Duration::MAX);
        assert!(control.check().is_ok());
        assert!(control.remaining() > Duration::from_secs(86_400 * 365));
    }
}
