//! How hard to throttle the vCPUs so that pre-copy converges on a path
//! slower than the guest dirties memory (predictive auto-converge).
//!
//! The source feeds every harvest of the dirty log to [`Throttle::observe`]
//! (mid-round ones every [`SAMPLE_EVERY`], and the one that ends a round)
//! together with the path it measured. Over a window of at least
//! [`SAMPLE_EVERY`] that gives the rate `r_t` at which the guest dirties
//! pages under the current throttle `t`, and the rate `p` (pages/s) at which
//! the path carries them. Then:
//!
//! ```text
//! t = 0 and r_t ≤ p/2      no throttle: every round already halves the next
//! otherwise                 aim for r = q·p, so each round is q× the last:
//!                           run' = run · q·p / r_t       (run = 1 - t)
//!                           with run' ∈ [run/8, min(1, 1.5·run)]
//! ```
//!
//! Raising is fast and lowering slow on purpose: a guest that works to a
//! schedule falls behind it while throttled and catches up in a burst when
//! the throttle drops, so a throttle that swings lets the rounds grow. A
//! throttle the guest no longer needs (it asks for less than `q·p`) still
//! goes: each sample then finds `r_t < q·p` and raises the run fraction, by
//! up to half, until it is 1.
//!
//! The first sample of a guest that dirties at `r0` throttles it at once to
//! `1 - q·p/r0` (a guest whose dirtying scales with its CPU time is right
//! there). A guest that works to a schedule (a fixed number of pages per
//! second, catching up after each throttled slice) is not slowed at all
//! until its run fraction is below what the schedule needs; the update then
//! keeps shrinking its run fraction (up to 8× per sample) until it binds,
//! and then holds it where `r_t ≈ q·p`. Rates are counted in distinct pages
//! per harvest, so a window shorter than one pass over the working set
//! measures the rate itself, not the working set (a whole round does not:
//! a round of 2 s over a working set rewritten every second reports the
//! working set).
//!
//! The rule's properties, checked by the property tests below against a
//! model guest and path: it never throttles a guest dirtying below half the
//! path; with it the rounds converge in a bounded number of rounds and bytes.

use std::time::Duration;

/// The ratio of one round to the one before that the throttle aims for (`q`).
pub const TARGET_SHRINK: f64 = 0.4;

/// The shortest window a rate is measured over: shorter harvests add up
/// until they span this much (a throttled vCPU runs in slices of 1 to 10
/// ms, so a shorter window sees a slice, not a rate).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// The highest throttle, percent (the partitions' own bound).
pub const THROTTLE_MAX: u8 = 99;

/// Below this many pages per second of target, a rate is noise.
const MIN_RATE: f64 = 1.0;

/// The throttle policy's state: the throttle in force and the sample
/// being gathered.
#[derive(Clone, Debug, Default)]
pub struct Throttle {
    percent: u8,
    peak: u8,
    pages: u64,
    window: Duration,
}

impl Throttle {
    /// The throttle in force, percent.
    pub fn percent(&self) -> u8 {
        self.percent
    }

    /// The highest throttle applied so far, percent.
    pub fn peak(&self) -> u8 {
        self.peak
    }

    /// Takes one harvest: `pages` distinct pages dirtied over `window`
    /// under the current throttle, while the path carried
    /// `path_pages_per_sec` dirty pages per second (its bandwidth over the
    /// wire bytes one page costs). Returns the throttle to apply when it
    /// changes.
    pub fn observe(&mut self, pages: u64, window: Duration, path_pages_per_sec: f64) -> Option<u8> {
        self.pages += pages;
        self.window += window;
        if self.window < SAMPLE_EVERY || !path_pages_per_sec.is_finite() {
            return None;
        }
        let rate = self.pages as f64 / self.window.as_secs_f64();
        (self.pages, self.window) = (0, Duration::ZERO);
        let next = next_percent(self.percent, rate, path_pages_per_sec);
        log::debug!(
            "throttle: {rate:.0} pages/s dirtied at {}%, path {path_pages_per_sec:.0} pages/s: {next}%",
            self.percent
        );
        (next != self.percent).then(|| {
            self.percent = next;
            self.peak = self.peak.max(next);
            next
        })
    }
}

/// The throttle after a sample of `rate` pages/s dirtied at `percent`, on a
/// path carrying `path` pages/s.
pub fn next_percent(percent: u8, rate: f64, path: f64) -> u8 {
    let target = (TARGET_SHRINK * path).max(MIN_RATE);
    if percent == 0 && rate <= path / 2.0 {
        return 0;
    }
    let run = 1.0 - f64::from(percent) / 100.0;
    let wanted = (run * target / rate.max(MIN_RATE)).clamp(run / 8.0, 1.5 * run);
    // Rounded up: a point less than needed leaves the guest above the
    // target, and near the maximum one point is a large share of its run
    // time (at 98% it runs a third more than at 98.5%).
    let throttle = ((1.0 - wanted.min(1.0)) * 100.0 - 1e-9).ceil();
    throttle.clamp(0.0, f64::from(THROTTLE_MAX)) as u8
}

#[cfg(test)]
pub(crate) mod model {
    //! A guest and a path to test policies against: the guest rewrites a
    //! working set of `hot` pages in turn, asking for `demand` pages/s; a
    //! throttle `t` leaves it `(1 - t)·capacity` pages/s at most, so a
    //! guest with `capacity == demand` slows with every point of throttle and
    //! one with more capacity catches up until its run fraction binds.

    /// The model guest.
    #[derive(Clone, Copy, Debug)]
    pub struct Guest {
        pub demand: f64,
        pub capacity: f64,
        pub hot: u64,
    }

    impl Guest {
        /// Pages/s it dirties at `percent` throttle.
        pub fn rate(&self, percent: u8) -> f64 {
            let run = 1.0 - f64::from(percent) / 100.0;
            self.demand.min(run * self.capacity)
        }

        /// Distinct pages it dirties in `secs` at `percent`.
        pub fn dirtied(&self, percent: u8, secs: f64) -> u64 {
            ((self.rate(percent) * secs) as u64).min(self.hot)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::model::Guest;
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_guest_below_half_the_path_is_never_throttled() {
        let mut t = Throttle::default();
        for _ in 0..100 {
            assert_eq!(t.observe(1_400, 100 * MS, 30_000.0), None);
        }
        assert_eq!(t.percent(), 0);
    }

    #[test]
    fn a_guest_that_scales_with_its_cpu_is_throttled_right_at_once() {
        // 60 000 pages/s against 30 000: aim for 12 000, i.e. run 20%.
        let mut t = Throttle::default();
        assert_eq!(t.observe(6_000, 100 * MS, 30_000.0), Some(80));
        // At 80% it dirties 12 000 pages/s: on target, nothing changes.
        assert_eq!(t.observe(1_200, 100 * MS, 30_000.0), None);
    }

    #[test]
    fn short_harvests_add_up_to_one_sample() {
        let mut t = Throttle::default();
        assert_eq!(t.observe(600, 10 * MS, 30_000.0), None);
        assert_eq!(t.observe(2_400, 40 * MS, 30_000.0), Some(80));
    }

    #[test]
    fn a_throttle_that_no_longer_binds_is_released() {
        let mut t = Throttle::default();
        t.observe(6_000, 100 * MS, 30_000.0);
        // The guest now asks for 1 000 pages/s: gone within a few samples.
        let mut samples = 0;
        while t.percent() > 0 {
            t.observe(100, 100 * MS, 30_000.0);
            samples += 1;
            assert!(samples <= 5, "still {}% after {samples}", t.percent());
        }
    }

    /// Samples `guest` every 50 ms until the throttle settles; returns it
    /// and the samples it took.
    fn settle(guest: Guest, path: f64) -> (u8, u32) {
        let mut t = Throttle::default();
        let mut last_change = 0;
        for sample in 1..200 {
            let pages = guest.dirtied(t.percent(), 0.05);
            if t.observe(pages, SAMPLE_EVERY, path).is_some() {
                last_change = sample;
            }
        }
        (t.percent(), last_change)
    }

    proptest! {
        #[test]
        fn never_throttles_below_half_the_path(
            path in 1_000f64..1e6,
            share in 0f64..0.5,
            capacity_factor in 1f64..50.0,
            hot in 1u64..10_000_000,
        ) {
            let demand = share * path;
            let guest = Guest { demand, capacity: demand * capacity_factor, hot };
            let (percent, _) = settle(guest, path);
            prop_assert_eq!(percent, 0);
        }

        #[test]
        fn holds_a_fast_dirtier_near_the_target(
            path in 5_000f64..1e6,
            over in 0.6f64..20.0,
            capacity_factor in 1f64..20.0,
        ) {
            // Dirtying faster than half the path, in a working set larger
            // than any sample window sees.
            let demand = over * path;
            let guest = Guest { demand, capacity: demand * capacity_factor, hot: u64::MAX };
            let (percent, _) = settle(guest, path);
            let rate = guest.rate(percent);
            let target = TARGET_SHRINK * path;
            // One percent of throttle is the resolution; below the lowest
            // reachable rate the throttle must be at its maximum.
            let floor = guest.rate(THROTTLE_MAX);
            prop_assert!(
                rate <= (target * 1.25).max(floor) + guest.capacity * 0.01,
                "rate {rate} at {percent}% vs target {target}"
            );
        }
    }
}
