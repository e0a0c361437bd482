//! The one stage-code table. Every progress report, event and error names
//! its stage by these codes, in the manual's style:
//! `Stage = 0x4050: (SRC) Transferring Memory Data`.
//!
//! ```text
//! 0x40xx  source side                      0x50xx  destination side
//! 0x4010  Validating                       0x5010  Validating
//! 0x4020  Defining LPAR at Destination     0x5020  Defining LPAR
//! 0x4030  Connecting Migration Path        0x5030  Waiting for Migration Path
//! 0x4050  Transferring Memory Data         0x5050  Receiving Memory Data
//! 0x4060  Suspended: Final Copy            0x5060  Receiving Final Copy
//! 0x4070  Transferring Device State        0x5070  Loading Device State
//! 0x4080  Switching Over                   0x5080  Resuming LPAR
//! 0x4090  Releasing Source LPAR            0x5090  Announcing MAC Addresses
//! 0x40a0  Migration Completed              0x50a0  Migration Completed
//! 0x40e0  Migration Failed                 0x50e0  Migration Failed
//! 0x40f0  Recovering                       0x50f0  Recovering
//! ```
//!
//! The manual offers timeout extension, cancel and the memory monitor only
//! during `0x4050`; [`Stage::accepts_operator_control`] is the one place
//! that says so.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One stage of a migration, on one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    SrcValidating,
    SrcDefiningDestination,
    SrcConnectingPath,
    SrcTransferringMemory,
    SrcFinalCopy,
    SrcDeviceState,
    SrcSwitchingOver,
    SrcReleasing,
    SrcCompleted,
    SrcFailed,
    SrcRecovering,
    DstValidating,
    DstDefining,
    DstWaitingForPath,
    DstReceivingMemory,
    DstFinalCopy,
    DstLoadingState,
    DstResuming,
    DstAnnouncing,
    DstCompleted,
    DstFailed,
    DstRecovering,
}

/// Every stage, in order, source side first.
pub const ALL: [Stage; 22] = [
    Stage::SrcValidating,
    Stage::SrcDefiningDestination,
    Stage::SrcConnectingPath,
    Stage::SrcTransferringMemory,
    Stage::SrcFinalCopy,
    Stage::SrcDeviceState,
    Stage::SrcSwitchingOver,
    Stage::SrcReleasing,
    Stage::SrcCompleted,
    Stage::SrcFailed,
    Stage::SrcRecovering,
    Stage::DstValidating,
    Stage::DstDefining,
    Stage::DstWaitingForPath,
    Stage::DstReceivingMemory,
    Stage::DstFinalCopy,
    Stage::DstLoadingState,
    Stage::DstResuming,
    Stage::DstAnnouncing,
    Stage::DstCompleted,
    Stage::DstFailed,
    Stage::DstRecovering,
];

impl Stage {
    /// The stage code: `0x40xx` on the source, `0x50xx` on the destination.
    pub fn code(self) -> u16 {
        match self {
            Stage::SrcValidating => 0x4010,
            Stage::SrcDefiningDestination => 0x4020,
            Stage::SrcConnectingPath => 0x4030,
            Stage::SrcTransferringMemory => 0x4050,
            Stage::SrcFinalCopy => 0x4060,
            Stage::SrcDeviceState => 0x4070,
            Stage::SrcSwitchingOver => 0x4080,
            Stage::SrcReleasing => 0x4090,
            Stage::SrcCompleted => 0x40a0,
            Stage::SrcFailed => 0x40e0,
            Stage::SrcRecovering => 0x40f0,
            Stage::DstValidating => 0x5010,
            Stage::DstDefining => 0x5020,
            Stage::DstWaitingForPath => 0x5030,
            Stage::DstReceivingMemory => 0x5050,
            Stage::DstFinalCopy => 0x5060,
            Stage::DstLoadingState => 0x5070,
            Stage::DstResuming => 0x5080,
            Stage::DstAnnouncing => 0x5090,
            Stage::DstCompleted => 0x50a0,
            Stage::DstFailed => 0x50e0,
            Stage::DstRecovering => 0x50f0,
        }
    }

    /// The stage's text, as the manual prints it after the code.
    pub fn text(self) -> &'static str {
        match self {
            Stage::SrcValidating => "(SRC) Validating",
            Stage::SrcDefiningDestination => "(SRC) Defining LPAR at Destination",
            Stage::SrcConnectingPath => "(SRC) Connecting Migration Path",
            Stage::SrcTransferringMemory => "(SRC) Transferring Memory Data",
            Stage::SrcFinalCopy => "(SRC) Suspended: Final Copy",
            Stage::SrcDeviceState => "(SRC) Transferring Device State",
            Stage::SrcSwitchingOver => "(SRC) Switching Over",
            Stage::SrcReleasing => "(SRC) Releasing Source LPAR",
            Stage::SrcCompleted => "(SRC) Migration Completed",
            Stage::SrcFailed => "(SRC) Migration Failed",
            Stage::SrcRecovering => "(SRC) Recovering",
            Stage::DstValidating => "(DST) Validating",
            Stage::DstDefining => "(DST) Defining LPAR",
            Stage::DstWaitingForPath => "(DST) Waiting for Migration Path",
            Stage::DstReceivingMemory => "(DST) Receiving Memory Data",
            Stage::DstFinalCopy => "(DST) Receiving Final Copy",
            Stage::DstLoadingState => "(DST) Loading Device State",
            Stage::DstResuming => "(DST) Resuming LPAR",
            Stage::DstAnnouncing => "(DST) Announcing MAC Addresses",
            Stage::DstCompleted => "(DST) Migration Completed",
            Stage::DstFailed => "(DST) Migration Failed",
            Stage::DstRecovering => "(DST) Recovering",
        }
    }

    pub fn from_code(code: u16) -> Option<Stage> {
        ALL.into_iter().find(|s| s.code() == code)
    }

    /// Extend, cancel and the memory monitor: only while memory is
    /// transferred (the manual's rule for stage 0x4050).
    pub fn accepts_operator_control(self) -> bool {
        self == Stage::SrcTransferringMemory
    }

    /// The migration has ended, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Stage::SrcCompleted | Stage::SrcFailed | Stage::DstCompleted | Stage::DstFailed
        )
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stage = 0x{:04x}: {}", self.code(), self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_transfer_is_0x4050_as_in_the_manual() {
        assert_eq!(
            Stage::SrcTransferringMemory.to_string(),
            "Stage = 0x4050: (SRC) Transferring Memory Data"
        );
    }

    #[test]
    fn codes_are_unique_sided_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for s in ALL {
            assert!(seen.insert(s.code()), "{s} repeats a code");
            assert_eq!(Stage::from_code(s.code()), Some(s));
            let side = s.code() >> 8;
            assert!(side == 0x40 || side == 0x50, "{s}");
            assert_eq!(side == 0x40, s.text().starts_with("(SRC)"), "{s}");
        }
    }

    #[test]
    fn only_memory_transfer_accepts_extend_and_cancel() {
        let accepting: Vec<_> = ALL
            .into_iter()
            .filter(|s| s.accepts_operator_control())
            .collect();
        assert_eq!(accepting, vec![Stage::SrcTransferringMemory]);
    }
}
