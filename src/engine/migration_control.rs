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
