//! Estimating the difference between the source's and the destination's
//! host clocks, so the logical RTC keeps the guest's wall clock continuous
//! (Table 1-2: "The time difference between the source and destination
//! server blades is migrated").
//!
//! ```text
//!  source clock   ── ts ───────────────────────────▶
//!                     \  one-way delay d
//!  destination clock   ─────▶ recv
//!
//!  lag = recv − ts = d − delta        (delta = source − destination)
//!  delta = d − lag ≈ rtt_min / 2 − lag_min
//! ```
//!
//! Every frame the source stamps with its clock (its pings, the Suspended
//! step) is a sample of `lag`; the least-delayed one (smallest lag) is the
//! one least inflated by queueing, so it is the one used. The one-way delay
//! is taken as half the smallest round trip the destination observed (its
//! Hello reply → the source's LparConfig, which the source sends as soon as
//! the reply arrives). The error is at most half the round trip's asymmetry
//! plus the source's turnaround, which on a migration path is tens of
//! microseconds.

use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct HostClock {
    /// Smallest `local receive − remote stamp` seen, nanoseconds.
    min_lag_ns: Option<i64>,
    min_round_trip: Option<Duration>,
}

impl HostClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// A frame stamped `remote_ns` by the source arrived at `local_ns`
    /// (both nanoseconds since the Unix epoch on their own host).
    pub fn record_stamp(&mut self, remote_ns: u64, local_ns: u64) {
        let lag =
            (local_ns as i128 - remote_ns as i128).clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        self.min_lag_ns = Some(self.min_lag_ns.map_or(lag, |m| m.min(lag)));
    }

    /// A round trip to the source and back took `rtt`.
    pub fn record_round_trip(&mut self, rtt: Duration) {
        self.min_round_trip = Some(self.min_round_trip.map_or(rtt, |m| m.min(rtt)));
    }

    /// `source clock − destination clock` in nanoseconds, or `None` before
    /// any stamped frame arrived. Without a round trip the one-way delay is
    /// taken as zero.
    pub fn offset_ns(&self) -> Option<i64> {
        let lag = self.min_lag_ns?;
        let half_rtt = self
            .min_round_trip
            .map_or(0, |r| i64::try_from(r.as_nanos() / 2).unwrap_or(i64::MAX));
        Some(half_rtt.saturating_sub(lag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_destination_behind_the_source_gets_a_positive_offset() {
        // The destination's clock is 2.5 s behind; one-way delay 100 µs,
        // the second sample queued for another 3 ms.
        let delta: i64 = 2_500_000_000;
        let mut clock = HostClock::new();
        let src = 1_000 * SEC;
        clock.record_stamp(src, (src as i64 - delta + 100_000) as u64);
        clock.record_stamp(
            src + SEC,
            (src as i64 + SEC as i64 - delta + 3_100_000) as u64,
        );
        clock.record_round_trip(Duration::from_micros(250));
        clock.record_round_trip(Duration::from_micros(200));
        let est = clock.offset_ns().unwrap();
        assert_eq!(
            est,
            delta - 100_000 + 100_000,
            "least-delayed + half min rtt"
        );
        assert_eq!(clock.min_round_trip, Some(Duration::from_micros(200)));
    }

    #[test]
    fn a_destination_ahead_gets_a_negative_offset_within_the_delay_error() {
        let delta: i64 = -7 * SEC as i64;
        let mut clock = HostClock::new();
        for (i, owd) in [300_000i64, 80_000, 1_000_000].into_iter().enumerate() {
            let src = 5_000 * SEC + i as u64 * SEC;
            clock.record_stamp(src, (src as i64 - delta + owd) as u64);
        }
        clock.record_round_trip(Duration::from_micros(180));
        let est = clock.offset_ns().unwrap();
        assert!(
            (est - delta).abs() <= 10_000,
            "estimate {est}, truth {delta}"
        );
    }

    #[test]
    fn no_stamp_no_estimate_and_absurd_stamps_saturate() {
        let mut clock = HostClock::new();
        assert_eq!(clock.offset_ns(), None);
        clock.record_round_trip(Duration::from_millis(1));
        assert_eq!(clock.offset_ns(), None);
        clock.record_stamp(u64::MAX, 0);
        assert!(clock.offset_ns().unwrap() > 0);
        let mut clock = HostClock::new();
        clock.record_stamp(0, u64::MAX);
        clock.record_round_trip(Duration::MAX);
        assert!(clock.offset_ns().is_some());
    }
}
