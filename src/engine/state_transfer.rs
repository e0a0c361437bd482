//! How the device state crosses (wire version 4). Its bulky parts (VRAM,
//! NVRAM, MMIO snapshots: hundreds of KB) do not change in the pause and
//! seldom while the guest runs, so the source sends the partition's
//! preview ([`DeviceModel::preview_state`](crate::partition::DeviceModel::preview_state))
//! as a base before the pause, and in the pause only the bytes that differ
//! ([`state_delta`]). Both ends keep the buffers they encode and rebuild
//! in from before the pause: memory touched for the first time inside the
//! suspension costs a page fault per page.

use super::EngineError;
use super::frames::OwnedFrame;
use crate::partition::{Partition, PartitionError};
use crate::state::{DeviceState, MigrationMode};
use crate::wire::state_delta;

/// The first version whose destinations take a base and its delta.
const BASE_SINCE: u16 = 4;
/// Room beyond the base's length in the buffer a delta rebuilds the final
/// state in: a state may grow in the pause (a longer register record).
const DELTA_ROOM: usize = 64 * 1024;
/// Delta bytes the prediction allows per vCPU: the blocks its registers
/// touch.
const DELTA_PER_VCPU: u64 = 256;

/// The source's side: the base it sent, and the buffer the final state is
/// encoded into.
#[derive(Default)]
pub(super) struct OutgoingState {
    base: Option<Vec<u8>>,
    buf: Vec<u8>,
}

impl OutgoingState {
    /// Reads `lpar`'s preview for a destination of version `theirs`; no
    /// base for an older destination or a partition without a preview.
    pub(super) fn preview(lpar: &dyn Partition, theirs: u16) -> Result<Self, EngineError> {
        let mut out = OutgoingState::default();
        if theirs >= BASE_SINCE && out.encode_preview(lpar)? {
            out.base = Some(out.buf.clone());
        }
        Ok(out)
    }

    fn encode_preview(&mut self, lpar: &dyn Partition) -> Result<bool, EngineError> {
        let Some(preview) = lpar.preview_state()? else {
            return Ok(false);
        };
        self.encode(&preview.for_mode(MigrationMode::Live))?;
        Ok(true)
    }

    fn encode(&mut self, state: &DeviceState) -> Result<(), EngineError> {
        state
            .encode_into(&mut self.buf)
            .map_err(|e| PartitionError::from(e).into())
    }

    /// The base's frame, to send before the pause.
    pub(super) fn base_frame(&self) -> Option<OwnedFrame> {
        self.base.clone().map(OwnedFrame::DeviceStateBase)
    }

    /// Bytes of the base (0: none).
    pub(super) fn base_bytes(&self) -> u64 {
        self.base.as_ref().map_or(0, |b| b.len() as u64)
    }

    /// Device-state bytes the pause will carry for `lpar`, for the
    /// prediction: with a base, what a fresh preview's delta comes to plus
    /// the registers' blocks; without, a whole state of this size. Does
    /// what the pause will do (encode into the buffer, then the delta), so
    /// the caller can time it.
    pub(super) fn estimate(&mut self, lpar: &dyn Partition) -> Result<u64, EngineError> {
        match self.base.is_some() && self.encode_preview(lpar)? {
            true => {
                let frame = self.final_frame_from_buf();
                Ok(payload_len(&frame) + DELTA_PER_VCPU * lpar.count() as u64)
            }
            false => Ok(DeviceState::sample(lpar.count())
                .for_mode(MigrationMode::Live)
                .encode()
                .map_or(0, |e| e.len() as u64)),
        }
    }

    /// The final state's frame: its difference from the base when there is
    /// one and that is smaller, else the whole encoding.
    pub(super) fn final_frame(&mut self, state: &DeviceState) -> Result<OwnedFrame, EngineError> {
        self.encode(state)?;
        Ok(self.final_frame_from_buf())
    }

    fn final_frame_from_buf(&mut self) -> OwnedFrame {
        if let Some(base) = &self.base {
            let mut delta = Vec::with_capacity(4096);
            if state_delta::diff(base, &self.buf, &mut delta) {
                return OwnedFrame::DeviceStateDelta(delta);
            }
        }
        OwnedFrame::DeviceState(std::mem::take(&mut self.buf))
    }
}

/// The payload length of a device-state frame.
pub(super) fn payload_len(frame: &OwnedFrame) -> u64 {
    match frame {
        OwnedFrame::DeviceState(b)
        | OwnedFrame::DeviceStateDelta(b)
        | OwnedFrame::DeviceStateBase(b) => b.len() as u64,
        _ => 0,
    }
}

/// The destination's side: the base, and the (already written) buffer the
/// final state is rebuilt in.
#[derive(Default)]
pub(super) struct IncomingState {
    base: Option<Vec<u8>>,
    rebuilt: Vec<u8>,
}

fn protocol(what: &str) -> EngineError {
    EngineError::Protocol {
        stream: 0,
        what: what.to_string(),
    }
}

impl IncomingState {
    /// Keeps `bytes` as the base. It is decoded once now: a base that does
    /// not decode fails the migration before the pause, and the decode in
    /// the pause finds memory the heap already holds (see
    /// `partition::host::keep_freed_memory`).
    pub(super) fn take_base(&mut self, bytes: Vec<u8>) -> Result<DeviceState, EngineError> {
        if self.base.is_some() {
            return Err(protocol("a second device state base"));
        }
        let state = DeviceState::decode(&bytes).map_err(PartitionError::from)?;
        // Written now, so its pages are there before the pause (zeros would
        // come from calloc, mapped lazily).
        self.rebuilt = vec![0xff; bytes.len() + DELTA_ROOM];
        self.base = Some(bytes);
        Ok(state)
    }

    /// The base, decoded again (the rehearsal times a load as the final
    /// one does it, decoding included).
    pub(super) fn decode_base(&self) -> Result<DeviceState, EngineError> {
        let base = self
            .base
            .as_ref()
            .ok_or_else(|| protocol("no device state base"))?;
        Ok(DeviceState::decode(base).map_err(PartitionError::from)?)
    }

    /// The encoded final state a device-state frame carries: as sent, or
    /// rebuilt from the base and the delta (the state's own CRC then proves
    /// the rebuild).
    pub(super) fn state_bytes(&mut self, frame: OwnedFrame) -> Result<Vec<u8>, EngineError> {
        match frame {
            OwnedFrame::DeviceState(bytes) => Ok(bytes),
            OwnedFrame::DeviceStateDelta(delta) => {
                let Some(base) = &self.base else {
                    return Err(protocol("a device state delta without its base"));
                };
                state_delta::apply(base, &delta, &mut self.rebuilt).map_err(protocol)?;
                Ok(std::mem::take(&mut self.rebuilt))
            }
            other => Err(protocol(&format!("{other:?} where a device state belongs"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(vcpus: usize) -> DeviceState {
        DeviceState::sample(vcpus).for_mode(MigrationMode::Live)
    }

    #[test]
    fn the_final_state_crosses_as_its_difference_and_is_rebuilt_whole() {
        let before = live(2);
        let base = before.encode().unwrap();
        let mut out = OutgoingState {
            base: Some(base.clone()),
            buf: Vec::new(),
        };
        let mut after = before.clone();
        after.vcpus[1].regs.rip += 4096;
        let frame = out.final_frame(&after).unwrap();
        let OwnedFrame::DeviceStateDelta(delta) = &frame else {
            panic!("the whole state was sent: {} bytes", payload_len(&frame));
        };
        assert!(delta.len() < 1024, "{} bytes", delta.len());
        let mut inn = IncomingState::default();
        inn.take_base(base).unwrap();
        let rebuilt = inn.state_bytes(frame).unwrap();
        assert_eq!(DeviceState::decode(&rebuilt).unwrap(), after);
        // Without a base, the whole state.
        let mut none = OutgoingState::default();
        assert!(matches!(
            none.final_frame(&after).unwrap(),
            OwnedFrame::DeviceState(_)
        ));
    }

    #[test]
    fn a_bad_base_fails_before_the_pause_and_a_delta_needs_one() {
        let mut inn = IncomingState::default();
        assert!(matches!(
            inn.state_bytes(OwnedFrame::DeviceStateDelta(vec![0; 8])),
            Err(EngineError::Protocol { .. })
        ));
        assert!(inn.take_base(b"not a device state".to_vec()).is_err());
        inn.take_base(live(1).encode().unwrap()).unwrap();
        assert!(matches!(
            inn.take_base(live(1).encode().unwrap()),
            Err(EngineError::Protocol { .. })
        ));
        // A delta that does not rebuild this base's state fails the
        // state's own CRC when decoded.
        // (100 bytes long, "junk" at 0.)
        let other = OwnedFrame::DeviceStateDelta({
            let mut v = 100u32.to_le_bytes().to_vec();
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&4u32.to_le_bytes());
            v.extend_from_slice(b"junk");
            v
        });
        let rebuilt = inn.state_bytes(other).unwrap();
        assert!(DeviceState::decode(&rebuilt).is_err());
    }
}
