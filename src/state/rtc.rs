//! The logical RTC and the clock rules of a move.
//!
//! The guest's wall clock is `host time + offset_ns`. Table 1-2: the logical
//! RTC information (CMOS timer) moves in Concurrent Maintenance only; the
//! physical RTC does not move, but "The time difference between the source
//! and destination server blades is migrated." So the destination keeps
//! the guest's wall clock continuous by folding the src–dst host-clock
//! difference into the offset ([`LogicalRtc::adjust_for_host_offset`]).

/// Number of CMOS bytes (the MC146818 register file plus NVRAM).
pub const CMOS_BYTES: usize = 128;

/// The logical RTC of one LPAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogicalRtc {
    /// The 128 CMOS bytes (time registers 0x00–0x09, status A–D at
    /// 0x0A–0x0D, then NVRAM).
    pub cmos: [u8; CMOS_BYTES],
    /// Guest wall clock minus host clock, in nanoseconds, on the host that
    /// holds this state.
    pub offset_ns: i64,
}

impl Default for LogicalRtc {
    fn default() -> Self {
        LogicalRtc {
            cmos: [0; CMOS_BYTES],
            offset_ns: 0,
        }
    }
}

impl LogicalRtc {
    /// Re-bases the offset from the source host's clock onto the
    /// destination's. `delta_ns` is `source host time − destination host
    /// time` measured at the same instant. Since guest time = host time +
    /// offset on both sides, the destination offset is `offset + delta`.
    ///
    /// Manual, Table 1-2 (Time, Physical RTC information): "No (The time
    /// difference between the source and destination server blades is
    /// migrated.)". Saturates rather than wrapping on absurd inputs.
    pub fn adjust_for_host_offset(&mut self, delta_ns: i64) {
        self.offset_ns = self.offset_ns.saturating_add(delta_ns);
    }

    /// Guest wall clock for a given host time, in nanoseconds.
    pub fn guest_time_ns(&self, host_ns: i64) -> i64 {
        host_ns.saturating_add(self.offset_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_offset_adjustment_keeps_the_guest_wall_clock_continuous() {
        // Source host clock reads 1_000 s; the destination's reads 997.5 s
        // at the same instant (it is 2.5 s behind).
        let src_host = 1_000_000_000_000i64;
        let dst_host = 997_500_000_000i64;
        let mut rtc = LogicalRtc {
            offset_ns: 3_600_000_000_000, // guest runs an hour ahead
            ..LogicalRtc::default()
        };
        let guest_before = rtc.guest_time_ns(src_host);
        rtc.adjust_for_host_offset(src_host - dst_host);
        assert_eq!(rtc.guest_time_ns(dst_host), guest_before);
        assert_eq!(rtc.offset_ns, 3_602_500_000_000);
    }

    #[test]
    fn absurd_offsets_saturate_instead_of_overflowing() {
        let mut rtc = LogicalRtc {
            offset_ns: i64::MAX - 1,
            ..LogicalRtc::default()
        };
        rtc.adjust_for_host_offset(10);
        assert_eq!(rtc.offset_ns, i64::MAX);
    }
}
