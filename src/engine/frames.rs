//! The frames the engine handles itself (everything but pages and round
//! ends), owned: detached from the receive buffer on one side, queued for a
//! sender worker on the other; and what a round cost on the wire ([`RoundStats`]).

use crate::emg::Emg;
use crate::wire::Frame;

/// The frames the engine handles itself, detached from the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedFrame {
    Hello(crate::wire::Hello),
    LparConfig(Vec<u8>),
    DeviceState(Vec<u8>),
    Switchover(crate::wire::Switchover),
    Abort(Emg),
    Keepalive(crate::wire::Keepalive),
    Identities(crate::state::Identities),
    DeviceStateBase(Vec<u8>),
    DeviceStateDelta(Vec<u8>),
    Rehearsal(crate::wire::Rehearsal),
}

impl OwnedFrame {
    pub fn as_frame(&self) -> Frame<'_> {
        match self {
            OwnedFrame::Hello(h) => Frame::Hello(h.clone()),
            OwnedFrame::LparConfig(b) => Frame::LparConfig(b),
            OwnedFrame::DeviceState(b) => Frame::DeviceState(b),
            OwnedFrame::Switchover(s) => Frame::Switchover(*s),
            OwnedFrame::Abort(e) => Frame::Abort(e.clone()),
            OwnedFrame::Keepalive(k) => Frame::Keepalive(*k),
            OwnedFrame::Identities(i) => Frame::Identities(i.clone()),
            OwnedFrame::DeviceStateBase(b) => Frame::DeviceStateBase(b),
            OwnedFrame::DeviceStateDelta(b) => Frame::DeviceStateDelta(b),
            OwnedFrame::Rehearsal(r) => Frame::Rehearsal(*r),
        }
    }

    /// Detaches a non-page frame from the receive buffer.
    pub fn from_frame(frame: Frame<'_>) -> Option<OwnedFrame> {
        Some(match frame {
            Frame::Hello(h) => OwnedFrame::Hello(h),
            Frame::LparConfig(b) => OwnedFrame::LparConfig(b.to_vec()),
            Frame::DeviceState(b) => OwnedFrame::DeviceState(b.to_vec()),
            Frame::Switchover(s) => OwnedFrame::Switchover(s),
            Frame::Abort(e) => OwnedFrame::Abort(e),
            Frame::Keepalive(k) => OwnedFrame::Keepalive(k),
            Frame::Identities(i) => OwnedFrame::Identities(i),
            Frame::DeviceStateBase(b) => OwnedFrame::DeviceStateBase(b.to_vec()),
            Frame::DeviceStateDelta(b) => OwnedFrame::DeviceStateDelta(b.to_vec()),
            Frame::Rehearsal(r) => OwnedFrame::Rehearsal(r),
            Frame::PageBatch(_) | Frame::EndOfRound(_) => return None,
        })
    }
}

/// Bytes on the wire per page encoding, and pages per encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundStats {
    pub pages: u64,
    pub bytes: u64,
    /// Pages by encoding: zero, raw, lz4, delta.
    pub by_encoding: [u64; 4],
}

impl RoundStats {
    pub(super) fn add(&mut self, other: &RoundStats) {
        self.pages += other.pages;
        self.bytes += other.bytes;
        for (a, b) in self.by_encoding.iter_mut().zip(other.by_encoding) {
            *a += b;
        }
    }
}
