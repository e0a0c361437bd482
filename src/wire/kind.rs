//! What a frame carries: the header's `kind` byte, each kind's payload
//! bound and its name in an operator's words.

use super::limits;

/// What a frame carries (the `kind` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// [`Frame::Hello`](super::Frame::Hello).
    Hello = 1,
    /// [`Frame::LparConfig`](super::Frame::LparConfig).
    LparConfig = 2,
    /// [`Frame::PageBatch`](super::Frame::PageBatch).
    PageBatch = 3,
    /// [`Frame::EndOfRound`](super::Frame::EndOfRound).
    EndOfRound = 4,
    /// [`Frame::DeviceState`](super::Frame::DeviceState).
    DeviceState = 5,
    /// [`Frame::Switchover`](super::Frame::Switchover).
    Switchover = 6,
    /// [`Frame::Abort`](super::Frame::Abort).
    Abort = 7,
    /// [`Frame::Keepalive`](super::Frame::Keepalive).
    Keepalive = 8,
    /// [`Frame::Identities`](super::Frame::Identities).
    Identities = 9,
    /// [`Frame::DeviceStateBase`](super::Frame::DeviceStateBase).
    DeviceStateBase = 10,
    /// [`Frame::DeviceStateDelta`](super::Frame::DeviceStateDelta).
    DeviceStateDelta = 11,
    /// [`Frame::Rehearsal`](super::Frame::Rehearsal).
    Rehearsal = 12,
}

impl FrameKind {
    /// Every kind, in byte order.
    pub const ALL: [FrameKind; 12] = [
        FrameKind::Hello,
        FrameKind::LparConfig,
        FrameKind::PageBatch,
        FrameKind::EndOfRound,
        FrameKind::DeviceState,
        FrameKind::Switchover,
        FrameKind::Abort,
        FrameKind::Keepalive,
        FrameKind::Identities,
        FrameKind::DeviceStateBase,
        FrameKind::DeviceStateDelta,
        FrameKind::Rehearsal,
    ];

    /// The kind a byte on the wire names, if any.
    pub fn from_u8(byte: u8) -> Option<FrameKind> {
        FrameKind::ALL.into_iter().find(|k| *k as u8 == byte)
    }

    /// The largest payload a frame of this kind may declare. Checked as soon
    /// as the header arrives, before any payload byte is buffered.
    pub fn max_payload(self) -> usize {
        match self {
            FrameKind::Hello => limits::MAX_HELLO_PAYLOAD,
            FrameKind::LparConfig => limits::MAX_LPAR_CONFIG,
            FrameKind::PageBatch => limits::MAX_BATCH_PAYLOAD,
            FrameKind::EndOfRound => limits::END_OF_ROUND_PAYLOAD,
            FrameKind::DeviceState => limits::MAX_DEVICE_STATE,
            FrameKind::Switchover => limits::SWITCHOVER_PAYLOAD,
            FrameKind::Abort => limits::MAX_ABORT_PAYLOAD,
            FrameKind::Keepalive => limits::KEEPALIVE_PAYLOAD,
            FrameKind::Identities => limits::MAX_IDENTITIES_PAYLOAD,
            FrameKind::DeviceStateBase | FrameKind::DeviceStateDelta => limits::MAX_DEVICE_STATE,
            FrameKind::Rehearsal => limits::REHEARSAL_PAYLOAD,
        }
    }

    /// The kind's name in an operator's words (for errors).
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Hello => "hello",
            FrameKind::LparConfig => "LPAR configuration",
            FrameKind::PageBatch => "page batch",
            FrameKind::EndOfRound => "end of round",
            FrameKind::DeviceState => "device state",
            FrameKind::Switchover => "switchover",
            FrameKind::Abort => "abort",
            FrameKind::Keepalive => "keepalive",
            FrameKind::Identities => "identities",
            FrameKind::DeviceStateBase => "device state base",
            FrameKind::DeviceStateDelta => "device state delta",
            FrameKind::Rehearsal => "rehearsal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_byte() {
        for kind in FrameKind::ALL {
            assert_eq!(FrameKind::from_u8(kind as u8), Some(kind));
            assert!(kind.max_payload() <= limits::MAX_FRAME_PAYLOAD);
        }
        assert_eq!(FrameKind::from_u8(0), None);
        assert_eq!(FrameKind::from_u8(13), None);
    }
}
