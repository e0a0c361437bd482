//! The destination's barrier between rounds: every stream's reader ends
//! round k before any applies a page of round k+1, so an older copy of a
//! page never overwrites a newer one.

use super::EngineError;
use std::sync::{Condvar, Mutex};

/// A barrier per round across the readers that a failure can break, so a
/// dead stream never leaves the others waiting forever.
pub(super) struct RoundBarrier {
    streams: usize,
    state: Mutex<BarrierState>,
    cv: Condvar,
}

struct BarrierState {
    round: u32,
    arrived: usize,
    pages: u64,
    broken: bool,
}

impl RoundBarrier {
    pub(super) fn new(streams: usize) -> Self {
        RoundBarrier {
            streams,
            state: Mutex::new(BarrierState {
                round: 0,
                arrived: 0,
                pages: 0,
                broken: false,
            }),
            cv: Condvar::new(),
        }
    }

    /// Waits until every stream has ended `round`. The last to arrive calls
    /// `complete` with the round's page count before it releases the others,
    /// so the round's completion is reported before anything that follows
    /// it on any stream.
    pub(super) fn arrive(
        &self,
        round: u32,
        pages: u64,
        complete: impl FnOnce(u64),
    ) -> Result<(), EngineError> {
        let broken = || EngineError::Protocol {
            stream: 0,
            what: "end of migration".into(),
        };
        let mut s = self.state.lock().unwrap();
        s.arrived += 1;
        s.pages += pages;
        if s.arrived == self.streams {
            let total = s.pages;
            s.round = round + 1;
            s.arrived = 0;
            s.pages = 0;
            complete(total);
            self.cv.notify_all();
            return Ok(());
        }
        while s.round == round && !s.broken {
            s = self.cv.wait(s).unwrap();
        }
        if s.broken { Err(broken()) } else { Ok(()) }
    }

    pub(super) fn fail(&self) {
        self.state.lock().unwrap().broken = true;
        self.cv.notify_all();
    }
}
