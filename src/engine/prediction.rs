//! What the predicted suspension is made of besides the copy: the parts
//! measured before the pause ([`FixedParts`], reported as
//! [`PredictedParts`]) and how the hand-off to the stream workers is
//! measured from the rounds ([`HandOff`]). `convergence` adds the copy.

use super::report::PredictedParts;
use std::time::Duration;

/// What handing a round to the stream workers and collecting its end costs
/// beyond sending its bytes (the final round pays it too): the least any
/// small round showed, its bytes counted at the fastest pace a large round
/// went. Not at the averaged bandwidth: a slow round 0 (into fresh
/// destination memory) would make every small round's bytes look slower
/// than they went, and leave nothing for the hand-off.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct HandOff {
    /// Bytes per second of the fastest large round.
    fastest: Option<f64>,
    least: Option<Duration>,
}

impl HandOff {
    /// A round of fewer bytes measures the hand-off; a larger one, the pace.
    const SMALL: u64 = 1 << 20;

    /// A round of `bytes` took `sent` from being queued to its end.
    pub(super) fn observe(&mut self, bytes: u64, sent: Duration) {
        if bytes >= Self::SMALL {
            let pace = bytes as f64 / sent.as_secs_f64().max(1e-9);
            self.fastest = Some(self.fastest.map_or(pace, |f| f.max(pace)));
        } else if let Some(pace) = self.fastest {
            let overhead = sent.saturating_sub(Duration::from_secs_f64(bytes as f64 / pace));
            self.least = Some(self.least.map_or(overhead, |l| l.min(overhead)));
        }
    }

    /// The hand-off's cost as measured so far (0 before a small round
    /// followed a large one).
    pub(super) fn cost(&self) -> Duration {
        self.least.unwrap_or_default()
    }
}

/// The parts of the suspension that do not depend on the pages left, as
/// last measured (see [`PredictedParts`]).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FixedParts {
    pub(super) round_trips: Duration,
    pub(super) state_capture: Duration,
    pub(super) harvest: Duration,
    pub(super) destination_load: Duration,
    pub(super) hand_off: Duration,
}

impl FixedParts {
    pub(super) fn total(&self) -> Duration {
        self.round_trips + self.state_capture + self.harvest + self.destination_load + self.hand_off
    }

    /// `predicted` in parts: these, and the copy (the rest).
    pub(super) fn parts_of(&self, predicted: Duration) -> PredictedParts {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        PredictedParts {
            copy_ms: ms(predicted.saturating_sub(self.total())),
            round_trips_ms: ms(self.round_trips),
            state_capture_ms: ms(self.state_capture),
            harvest_ms: ms(self.harvest),
            destination_load_ms: ms(self.destination_load),
            hand_off_ms: ms(self.hand_off),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_off_is_what_small_rounds_took_beyond_their_bytes_at_the_best_pace() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let mut h = HandOff::default();
        // A small round before any pace is known tells nothing.
        h.observe(100_000, ms(5));
        assert_eq!(h.cost(), Duration::ZERO);
        // A slow round 0 (256 MiB at 0.5 GB/s), then a fast one (100 MB
        // in 40 ms: 2.5 GB/s); a small round's 250 KB take 100 µs at the
        // fast pace, so of its 300 µs, 200 are hand-off (at the slow pace
        // its bytes alone would have taken longer than the round).
        h.observe(268_435_456, ms(537));
        h.observe(100_000_000, ms(40));
        h.observe(250_000, us(300));
        assert_eq!(h.cost(), us(200));
        // The least any small round showed; never below zero.
        h.observe(0, us(150));
        assert_eq!(h.cost(), us(150));
        h.observe(500_000, us(400));
        assert_eq!(h.cost(), us(150));
        h.observe(900_000, us(100));
        assert_eq!(h.cost(), Duration::ZERO);
    }

    #[test]
    fn the_predicted_parts_add_up_to_the_prediction() {
        let fixed = FixedParts {
            round_trips: Duration::from_micros(120),
            state_capture: Duration::from_micros(50),
            harvest: Duration::from_micros(200),
            destination_load: Duration::from_micros(140),
            hand_off: Duration::from_micros(90),
        };
        let p = fixed.parts_of(Duration::from_micros(700));
        assert!((p.copy_ms - 0.1).abs() < 1e-9, "{p:?}");
        assert!((p.total_ms() - 0.7).abs() < 1e-9, "{p:?}");
        // A prediction below the fixed parts leaves no copy, not a negative one.
        assert_eq!(fixed.parts_of(Duration::ZERO).copy_ms, 0.0);
    }
}
