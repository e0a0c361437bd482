//! When to stop copying and suspend: the pre-copy convergence policy.
//!
//! After each round the source harvests the pages dirtied meanwhile and
//! asks [`Convergence::decide`] what to do. The prediction is honest: the
//! suspension it predicts for pausing now is
//!
//! ```text
//!   (dirty pages × wire bytes per page + device-state bytes)
//!     / path bandwidth                                    (final copy, state)
//! + device-state encoding + switchover round trips        (both measured)
//! ```
//!
//! with bandwidth and bytes per page measured on the rounds sent so far.
//! It suspends as soon as that fits the budget *and* another round would
//! not shrink the final copy much further (so a fast path ends with a few
//! hundred pages, not with whatever first fitted). How hard to throttle
//! the vCPUs so that the rounds do shrink is [`super::throttle`]'s job; this
//! policy only ends the rounds, also when throttling at the maximum no
//! longer helps.

use super::throttle::THROTTLE_MAX;
use std::time::Duration;

/// A round that is at least this much smaller than the one before counts as
/// shrinking; at full throttle, two rounds in a row that do not shrink end
/// the rounds.
const SHRINK_FACTOR: f64 = 0.9;

/// Keep iterating, even when the prediction fits, while the next round is
/// expected to be at most this fraction of the current one. Above the
/// throttle's target ratio ([`super::throttle::TARGET_SHRINK`]), so that a
/// throttled guest is not suspended with a large final copy because one
/// round's estimate came out a little high.
const WORTH_ANOTHER_ROUND: f64 = 0.7;

/// Rounds after which the policy suspends as soon as the prediction fits.
const MAX_ROUNDS: u32 = 30;

/// Rounds after which the policy suspends even though the prediction does
/// not fit: more rounds cannot help (the budget is below the fixed cost, or
/// the dirty set oscillates at full throttle). The report then shows a
/// prediction over budget, and the operator sees why.
const GIVE_UP_ROUNDS: u32 = 100;

/// Weight of a new round's measurement in the running estimates.
const ALPHA: f64 = 0.5;

/// What the source does next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Send the dirty pages as another round.
    Continue,
    /// Pause now: the final copy is predicted to take this long.
    Suspend { predicted: Duration },
}

/// Measurements of one round, as the sender saw them.
#[derive(Clone, Copy, Debug)]
pub struct RoundMeasure {
    pub pages: u64,
    pub wire_bytes: u64,
    pub duration: Duration,
    /// Pages dirtied while this round was sent (the next round's size).
    pub dirtied: u64,
    /// The throttle in force at the round's end, percent.
    pub throttle: u8,
}

#[derive(Debug)]
pub struct Convergence {
    budget: Duration,
    /// Device state plus switchover round trips, measured by the caller.
    fixed_cost: Duration,
    bandwidth: Option<f64>, // wire bytes per second
    bytes_per_page: f64,
    /// Device-state bytes sent inside the suspension (ahead of the final
    /// pages on stream 0; they share the path either way).
    state_bytes: u64,
    dirty_rate: f64, // pages per second
    previous_dirtied: Option<u64>,
    not_shrinking: u32,
    rounds: u32,
}

impl Convergence {
    pub fn new(budget: Duration, fixed_cost: Duration) -> Self {
        Convergence {
            budget,
            fixed_cost,
            bandwidth: None,
            bytes_per_page: 4096.0,
            state_bytes: 0,
            dirty_rate: 0.0,
            previous_dirtied: None,
            not_shrinking: 0,
            rounds: 0,
        }
    }

    /// Updates the cost that does not depend on memory (device state,
    /// switchover round trips) with a new measurement.
    pub fn set_fixed_cost(&mut self, cost: Duration) {
        self.fixed_cost = cost;
    }

    /// Sets the size of the device state the suspension sends with the
    /// final pages (on a slow path it takes its own time on the wire).
    pub fn set_state_bytes(&mut self, bytes: u64) {
        self.state_bytes = bytes;
    }

    /// The budget the policy aims for: the operator's, unless the measured
    /// fixed cost alone exceeds it. Then no number of rounds can meet it, and
    /// throttling the guest to the floor would only hurt it; aim instead for
    /// a final copy no longer than the fixed cost (the report shows the
    /// prediction over budget, and the source logs why).
    pub fn effective_budget(&self) -> Duration {
        self.budget.max(2 * self.fixed_cost)
    }

    /// Path bandwidth measured so far, bytes per second.
    pub fn bandwidth(&self) -> Option<f64> {
        self.bandwidth
    }

    /// Wire bytes one page costs, as measured so far (4096 before any).
    pub fn bytes_per_page(&self) -> f64 {
        self.bytes_per_page
    }

    /// The suspension predicted for pausing with `pages` dirty.
    pub fn predict(&self, pages: u64) -> Option<Duration> {
        let bandwidth = self.bandwidth?;
        let copy = (pages as f64 * self.bytes_per_page + self.state_bytes as f64) / bandwidth;
        Some(Duration::from_secs_f64(copy) + self.fixed_cost)
    }

    /// Records round `m` and decides what to do with the `m.dirtied` pages
    /// now waiting.
    pub fn decide(&mut self, m: RoundMeasure) -> Decision {
        self.rounds += 1;
        let secs = m.duration.as_secs_f64().max(1e-6);
        // Rounds too small to time well still count for the byte ratio.
        if m.pages > 0 {
            let bpp = m.wire_bytes as f64 / m.pages as f64;
            self.bytes_per_page += ALPHA * (bpp - self.bytes_per_page);
        }
        if m.wire_bytes >= 1 << 20 || self.bandwidth.is_none() {
            let bw = m.wire_bytes.max(1) as f64 / secs;
            self.bandwidth = Some(match self.bandwidth {
                Some(b) => b + ALPHA * (bw - b),
                None => bw,
            });
        }
        self.dirty_rate += ALPHA * (m.dirtied as f64 / secs - self.dirty_rate);

        let shrinking = self
            .previous_dirtied
            .is_none_or(|prev| (m.dirtied as f64) < prev as f64 * SHRINK_FACTOR);
        self.previous_dirtied = Some(m.dirtied);
        self.not_shrinking = if shrinking { 0 } else { self.not_shrinking + 1 };

        let predicted = self.predict(m.dirtied).unwrap_or(Duration::MAX);
        if predicted <= self.effective_budget() {
            // The next round would take as long as sending these pages, and
            // the guest would dirty dirty_rate × that meanwhile; or, as
            // this round went, it would be dirtied/pages of this one (what
            // a throttled guest's short last rounds show best: their few
            // milliseconds make a rate noisy, not the ratio).
            let bandwidth = self.bandwidth.unwrap_or(f64::INFINITY);
            let next_round_secs = m.dirtied as f64 * self.bytes_per_page / bandwidth;
            let next = self.dirty_rate * next_round_secs;
            let ratio = m.dirtied as f64 / m.pages.max(1) as f64;
            let worth_it = (next < m.dirtied as f64 * WORTH_ANOTHER_ROUND
                || ratio < WORTH_ANOTHER_ROUND)
                && m.dirtied > 0;
            if !worth_it || !shrinking || self.rounds >= MAX_ROUNDS {
                return Decision::Suspend { predicted };
            }
            return Decision::Continue;
        }
        // Nothing left to gain: no page is dirty (the rest is fixed cost),
        // or the guest is throttled as far as it goes and still not
        // converging. Suspend with the smallest final copy reachable.
        let exhausted = m.throttle >= THROTTLE_MAX && self.not_shrinking >= 2;
        if m.dirtied == 0 || exhausted || self.rounds >= GIVE_UP_ROUNDS {
            return Decision::Suspend { predicted };
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::super::throttle::model::Guest;
    use super::super::throttle::{SAMPLE_EVERY, TARGET_SHRINK, Throttle};
    use super::*;
    use proptest::prelude::*;

    /// How a simulated migration ended.
    #[derive(Debug)]
    struct Outcome {
        rounds: u32,
        /// Pages sent by every round, the final copy included.
        pages_sent: u64,
        final_pages: u64,
        max_throttle: u8,
        /// Seconds until the suspension.
        secs: f64,
    }

    /// One migration of model `guest` over a path carrying `path` pages/s
    /// (4096 wire bytes each): round 0 sends `populated` pages, each round
    /// lasts its pages' time on the path plus 1 ms of round trips, and the
    /// throttle policy sees a harvest every `SAMPLE_EVERY` within a round
    /// and one at its end, as the source does.
    fn simulate(guest: Guest, path: f64, populated: u64, budget_ms: u64) -> Option<Outcome> {
        let mut c = Convergence::new(Duration::from_millis(budget_ms), Duration::from_micros(300));
        let mut throttle = Throttle::default();
        let (mut pages, mut sent, mut secs, mut max_throttle) = (populated, 0, 0.0, 0);
        for round in 0..200 {
            let duration = pages as f64 / path + 1e-3;
            let (mut left, mut writes) = (duration, 0.0);
            while left > 0.0 {
                let window = left.min(SAMPLE_EVERY.as_secs_f64());
                let percent = throttle.percent();
                writes += guest.rate(percent) * window;
                let harvested = guest.dirtied(percent, window);
                throttle.observe(harvested, Duration::from_secs_f64(window), path);
                max_throttle = max_throttle.max(throttle.percent());
                left -= window;
            }
            let dirtied = (writes as u64).min(guest.hot);
            (sent, secs) = (sent + pages, secs + duration);
            let m = RoundMeasure {
                pages,
                wire_bytes: pages * 4096,
                duration: Duration::from_secs_f64(duration),
                dirtied,
                throttle: throttle.percent(),
            };
            match c.decide(m) {
                Decision::Suspend { predicted } => {
                    // Over budget only when throttling to the maximum did
                    // not let the rounds shrink enough (or after the cap).
                    let exhausted =
                        throttle.percent() == THROTTLE_MAX || round + 1 >= GIVE_UP_ROUNDS;
                    assert!(
                        predicted <= c.effective_budget() || exhausted,
                        "{predicted:?}"
                    );
                    return Some(Outcome {
                        rounds: round + 1,
                        pages_sent: sent + dirtied,
                        final_pages: dirtied,
                        max_throttle,
                        secs,
                    });
                }
                Decision::Continue => pages = dirtied,
            }
        }
        None
    }

    /// A guest that dirties as fast as its CPU time lets it.
    fn linear(rate: f64, hot: u64) -> Guest {
        Guest {
            demand: rate,
            capacity: rate,
            hot,
        }
    }

    #[test]
    fn a_slow_dirtier_on_a_fast_path_ends_with_few_pages() {
        // 60 000 pages/s against 1 GB/s: the last rounds shrink ~4× each.
        let o = simulate(linear(60_000.0, 65_536), 244_140.0, 262_144, 20).unwrap();
        assert!(o.final_pages < 500, "{o:?}");
        assert_eq!(o.max_throttle, 0);
    }

    #[test]
    fn the_issue_14_guest_on_a_1_gbit_path_converges_within_the_targets() {
        // 256 MiB rewritten at 60 000 pages/s by a guest that catches up
        // after each throttled slice (5× headroom), 1 Gbit/s, warmed up.
        let hot = 65_536;
        let guest = Guest {
            demand: 60_000.0,
            capacity: 300_000.0,
            hot,
        };
        let o = simulate(guest, 125e6 / 4096.0, hot, 5).unwrap();
        assert!(o.pages_sent <= 3 * hot, "{o:?}");
        assert!(o.secs <= 10.0, "{o:?}");
        assert!(o.final_pages * 4096 <= 125_000 * 5, "{o:?}");
    }

    #[test]
    fn a_dirtier_the_maximum_throttle_cannot_hold_still_ends() {
        // At 99% it still dirties 10 000 pages/s of a 1 GiB working set,
        // against a path of 24 000: rounds never fit 20 ms.
        let guest = Guest {
            demand: 1e6,
            capacity: 1e6,
            hot: 262_144,
        };
        let o = simulate(guest, 24_000.0, 262_144, 20).unwrap();
        assert_eq!(o.max_throttle, THROTTLE_MAX);
    }

    #[test]
    fn an_idle_guest_suspends_right_after_round_zero() {
        let o = simulate(linear(0.0, 0), 244_140.0, 262_144, 20).unwrap();
        assert_eq!((o.rounds, o.final_pages), (1, 0));
    }

    fn idle_round(c: &mut Convergence, dirtied: u64) -> Decision {
        c.decide(RoundMeasure {
            pages: 1000,
            wire_bytes: 4_096_000,
            duration: Duration::from_millis(4),
            dirtied,
            throttle: 0,
        })
    }

    #[test]
    fn a_budget_below_the_fixed_cost_still_ends_without_throttling() {
        // 2 ms asked, 5 ms of device state and round trips measured: the
        // old policy iterated on zero-page rounds until the timeout.
        let mut c = Convergence::new(Duration::from_millis(2), Duration::from_millis(5));
        assert_eq!(c.effective_budget(), Duration::from_millis(10));
        match idle_round(&mut c, 0) {
            Decision::Suspend { predicted } => assert_eq!(predicted, Duration::from_millis(5)),
            other => panic!("expected Suspend, got {other:?}"),
        }
    }

    #[test]
    fn no_dirty_pages_means_suspend_now() {
        let mut c = Convergence::new(Duration::from_millis(20), Duration::from_micros(300));
        assert!(matches!(idle_round(&mut c, 0), Decision::Suspend { .. }));
    }

    #[test]
    fn an_oscillating_dirty_set_ends_by_the_round_cap() {
        // Alternates between shrinking and growing, unthrottled; the cap
        // must end it.
        let mut c = Convergence::new(Duration::from_millis(1), Duration::from_micros(100));
        let mut ended = None;
        for round in 0..GIVE_UP_ROUNDS + 1 {
            let dirtied = if round % 2 == 0 { 200_000 } else { 100_000 };
            if let Decision::Suspend { .. } = idle_round(&mut c, dirtied) {
                ended = Some(round);
                break;
            }
        }
        assert!(ended.is_some_and(|r| r <= GIVE_UP_ROUNDS), "{ended:?}");
    }

    /// A guest the maximum throttle can hold converges in bounded rounds,
    /// sending at most the working set, what the path carries while the
    /// throttle settles (a few samples), and a geometric tail of rounds.
    fn holdable_dirtier_within_bounds(
        path: f64,
        demand: f64,
        capacity: f64,
        hot_secs: f64,
        budget: u64,
    ) -> Result<(), TestCaseError> {
        let hot = (hot_secs * path) as u64;
        let guest = Guest {
            demand,
            capacity,
            hot,
        };
        let o = simulate(guest, path, hot, budget).unwrap();
        let tail = hot as f64 / (1.0 - TARGET_SHRINK - 0.1);
        let settling = path * 5.0 * SAMPLE_EVERY.as_secs_f64();
        let bound = hot as f64 + settling + tail;
        prop_assert!((o.pages_sent as f64) <= bound, "{:?} > {bound}", o);
        prop_assert!(o.rounds <= 40, "{:?}", o);
        Ok(())
    }

    #[test]
    fn a_throttle_one_point_short_of_the_target_is_rounded_up() {
        // Found by the property below: held at 98% instead of 98.5%, this
        // guest ran a third over the target rate and the tail outgrew its
        // bound.
        let (path, over) = (20_000.0, 19.534_333_062_803_416);
        let demand = over * path;
        holdable_dirtier_within_bounds(
            path,
            demand,
            demand * 1.360_874_661_348_664_9,
            2.396_369_811_638_708_7,
            5,
        )
        .unwrap();
    }

    proptest! {
        #[test]
        fn it_always_ends_and_never_predicts_over_budget(
            path in 2e4f64..3e6,
            rate in 0f64..2e6,
            capacity_factor in 1f64..10.0,
            hot in 0u64..1_000_000,
            budget in 5u64..100,
        ) {
            let guest = Guest { demand: rate, capacity: rate * capacity_factor, hot };
            // Suspend's own assertion checks the budget; None would be a hang.
            prop_assert!(simulate(guest, path, 262_144, budget).is_some());
        }

        #[test]
        fn never_throttles_a_guest_below_half_the_path(
            path in 2e4f64..3e6,
            share in 0f64..0.5,
            capacity_factor in 1f64..10.0,
            hot in 0u64..1_000_000,
        ) {
            let demand = share * path;
            let guest = Guest { demand, capacity: demand * capacity_factor, hot };
            let o = simulate(guest, path, 262_144, 20).unwrap();
            prop_assert_eq!(o.max_throttle, 0, "{:?}", o);
        }

        #[test]
        fn a_holdable_dirtier_converges_in_bounded_rounds_and_bytes(
            path in 2e4f64..3e6,
            over in 0.5f64..20.0,
            capacity_share in 0f64..1.0,
            hot_secs in 0.05f64..5.0,
            budget in 5u64..50,
        ) {
            // Faster than half the path, but slow enough at the maximum
            // throttle to let the rounds shrink by the target ratio: a
            // capacity of 1 to 10 times its demand, at most what 1% of run
            // time turns into the target rate (drawn, not assumed, so that
            // many cases do not run out of rejects).
            let demand = over * path;
            let most = (TARGET_SHRINK * path / (0.01 * demand)).min(10.0);
            let capacity = demand * (1.0 + capacity_share * (most - 1.0));
            holdable_dirtier_within_bounds(path, demand, capacity, hot_secs, budget)?;
        }
    }
}
