//! The compact encoding of an [`Emg`] inside an abort frame.
//!
//! ```text
//! module:u8 needs_recovery:u8 phase:u16 cause:u32 detail:u64 reason:u64
//! message_len:u16 message[message_len]  action_len:u16 action[action_len]
//! ```
//!
//! Operands travel as integers, so the peer's error reaches the source and
//! the client intact; message and action are UTF-8, at most
//! [`MAX_EMG_TEXT`] bytes each (longer text is cut at a character boundary
//! when sent, so an abort can always be sent).

use super::cursor::{Reader, put_string};
use super::error::WireError;
use super::header::FrameKind;
use super::limits::MAX_EMG_TEXT;
use crate::emg::{Emg, Module};

const MODULES: [Module; 8] = [
    Module::Client,
    Module::Management,
    Module::Executor,
    Module::MoverSource,
    Module::MoverDestination,
    Module::SourceHvm,
    Module::DestinationHvm,
    Module::Recovery,
];

fn module_from_code(code: u8) -> Option<Module> {
    MODULES.into_iter().find(|m| m.code() == code)
}

pub(crate) fn write_emg(emg: &Emg, out: &mut Vec<u8>) {
    out.push(emg.module.code());
    out.push(u8::from(emg.needs_recovery));
    out.extend_from_slice(&emg.phase.to_le_bytes());
    out.extend_from_slice(&emg.cause.to_le_bytes());
    out.extend_from_slice(&emg.detail.to_le_bytes());
    out.extend_from_slice(&emg.reason.to_le_bytes());
    put_string(out, &emg.message, 2, MAX_EMG_TEXT);
    put_string(out, &emg.action, 2, MAX_EMG_TEXT);
}

/// Parses an abort payload back into the [`Emg`] the peer sent.
pub fn parse_emg(payload: &[u8]) -> Result<Emg, WireError> {
    let mut r = Reader::new(payload, FrameKind::Abort);
    let module = module_from_code(r.u8()?).ok_or_else(|| r.malformed("unknown EMG module code"))?;
    let needs_recovery = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(r.malformed("the recovery flag is neither 0 nor 1")),
    };
    let phase = r.u16()?;
    let cause = r.u32()?;
    let detail = r.u64()?;
    let reason = r.u64()?;
    let message = r.string(2, MAX_EMG_TEXT)?;
    let action = r.string(2, MAX_EMG_TEXT)?;
    r.finish()?;
    Ok(Emg {
        module,
        phase,
        cause,
        detail,
        reason,
        needs_recovery,
        message,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emg::phase;

    #[test]
    fn every_module_code_maps_back() {
        for m in MODULES {
            assert_eq!(module_from_code(m.code()), Some(m));
        }
        assert_eq!(module_from_code(0), None);
    }

    #[test]
    fn emg_round_trips_with_all_operands() {
        let emg = Emg::new(
            Module::DestinationHvm,
            phase::DEVICE_STATE,
            0x1234_5678,
            "Käse ✓",
            "Retry.",
        )
        .detail(u64::MAX)
        .reason(0x20)
        .needing_recovery();
        let mut out = Vec::new();
        write_emg(&emg, &mut out);
        assert_eq!(parse_emg(&out), Ok(emg));
    }

    #[test]
    fn overlong_text_is_cut_not_refused() {
        let long = "é".repeat(MAX_EMG_TEXT); // 2 bytes each
        let emg = Emg::new(Module::Recovery, 0, 0, long.clone(), "a");
        let mut out = Vec::new();
        write_emg(&emg, &mut out);
        let back = parse_emg(&out).unwrap();
        assert_eq!(back.message.len(), MAX_EMG_TEXT);
        assert!(long.starts_with(&back.message));
    }

    #[test]
    fn bad_module_and_flag_are_malformed() {
        let mut out = Vec::new();
        write_emg(&Emg::new(Module::Client, 0, 0, "m", "a"), &mut out);
        let mut bad = out.clone();
        bad[0] = 0x99;
        assert!(matches!(parse_emg(&bad), Err(WireError::Malformed { .. })));
        let mut bad = out;
        bad[1] = 2;
        assert!(matches!(parse_emg(&bad), Err(WireError::Malformed { .. })));
    }
}
