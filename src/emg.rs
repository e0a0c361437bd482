//! The one error type of the crate, in the `EMG` format of the HVM Navigator
//! migration manual (chapter 6).
//!
//! ```text
//! EMG <op1>:<op2>:<reason>:(<n>):<module>:<message> Action: <action>
//!      │     │     │        │
//!      │     │     │        └ 1 when the LPAR needs `moverctl recover`, else 0
//!      │     │     └ reason operand (the manual's "op3"), e.g. 0x20 = terminated by user
//!      │     └ detail operand: what the failing item was (a VNIC id, a page number, …)
//!      └ 0x00 CCCCCCCC PPPP MM: cause, phase, module (all hex)
//! ```
//!
//! Each layer keeps its own typed error enum (written for an operator, one
//! variant per situation) and converts it into an [`Emg`] in one place, so no
//! call site invents codes or wording. An `Emg` crosses the wire and the
//! management protocol intact (it is `serde`), so the destination's error
//! reaches the source and the client unchanged.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The module that detected the error (the `MM` byte of op1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Module {
    /// `moverctl`, the management client (the manual's MMC).
    Client,
    /// `moverd`'s management service (MMS).
    Management,
    /// The migration executor that drives one migration (MMS Thread).
    Executor,
    /// LPAR Mover, source side.
    MoverSource,
    /// LPAR Mover, destination side.
    MoverDestination,
    /// The source hypervisor (partition backend) itself.
    SourceHvm,
    /// The destination hypervisor (partition backend) itself.
    DestinationHvm,
    /// The recovery module.
    Recovery,
}

impl Module {
    pub fn code(self) -> u8 {
        match self {
            Module::Client => 0x01,
            Module::Management => 0x02,
            Module::Executor => 0x03,
            Module::MoverSource => 0x04,
            Module::MoverDestination => 0x05,
            Module::SourceHvm => 0x06,
            Module::DestinationHvm => 0x07,
            Module::Recovery => 0x10,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Module::Client => "MMC",
            Module::Management => "MMS",
            Module::Executor => "MMS Thread",
            Module::MoverSource => "LPARMover(SRC)",
            Module::MoverDestination => "LPARMover(DST)",
            Module::SourceHvm => "HVM(SRC)",
            Module::DestinationHvm => "HVM(DST)",
            Module::Recovery => "Recovery",
        }
    }
}

/// The phase in which the error happened (the `PPPP` half-word of op1).
/// Values follow the manual where it has one; the rest extend its scheme.
pub mod phase {
    /// The manual's MMC "The version isn't matched between MMC and MMS."
    /// (`0x00 00000000 0006 01`): moverctl and the agent speak different
    /// management protocol versions.
    pub const VERSION_MISMATCH: u16 = 0x0006;
    /// Connecting, or the target is busy.
    pub const CONNECT: u16 = 0x0020;
    /// Defining the LPAR at the destination.
    pub const DEFINE: u16 = 0x0030;
    /// The manual's LPAR Mover errors that name no narrower phase
    /// ("Terminated by user.", "USB is attached…": `0x00 00000000 0030 0M`).
    pub const LPAR_MOVER: u16 = 0x0030;
    /// Activating the LPAR.
    pub const ACTIVATE: u16 = 0x0031;
    /// Connection lost.
    pub const CONNECTION_LOST: u16 = 0x0040;
    /// Transferring memory (stage 0x4050).
    pub const MEMORY_TRANSFER: u16 = 0x0050;
    /// Reading or applying device state.
    pub const DEVICE_STATE: u16 = 0x0055;
    /// Getting information (inventory, configuration).
    pub const INFORMATION: u16 = 0x0060;
    /// Compatibility checks (validation).
    pub const COMPATIBILITY: u16 = 0x0080;
    /// Source migration path.
    pub const SOURCE_PATH: u16 = 0x00A0;
    /// Destination migration path.
    pub const DESTINATION_PATH: u16 = 0x00A5;
    /// Path address clash.
    pub const PATH_ADDRESS: u16 = 0x00B0;
    /// The manual's MMS Thread "The specified Migration Path collides with
    /// the Management Path Settings." (`0x00 00000004 F00d 03`).
    pub const PATH_COLLISION: u16 = 0xF00D;
    /// Partition backend (guest memory, vCPUs, dirty log).
    pub const PARTITION: u16 = 0x0100;
}

/// The manual's reason operands ("op3") that have a fixed meaning.
pub mod reason {
    pub const GENERIC: u64 = 0x01;
    pub const CONNECTION_REFUSED: u64 = 0x02;
    pub const TERMINATED_BY_USER: u64 = 0x20;
    pub const INIT_CONNECTION_FAILED: u64 = 0x31;
    pub const USB_ATTACHED: u64 = 0x33;
}

/// One error, as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emg {
    pub module: Module,
    pub phase: u16,
    pub cause: u32,
    pub detail: u64,
    pub reason: u64,
    /// The LPAR is left in a state that `moverctl recover` must resolve.
    pub needs_recovery: bool,
    pub message: String,
    pub action: String,
}

impl Emg {
    pub fn new(
        module: Module,
        phase: u16,
        cause: u32,
        message: impl Into<String>,
        action: impl Into<String>,
    ) -> Self {
        Emg {
            module,
            phase,
            cause,
            detail: 0,
            reason: reason::GENERIC,
            needs_recovery: false,
            message: message.into(),
            action: action.into(),
        }
    }

    pub fn detail(mut self, detail: u64) -> Self {
        self.detail = detail;
        self
    }

    pub fn reason(mut self, reason: u64) -> Self {
        self.reason = reason;
        self
    }

    pub fn needing_recovery(mut self) -> Self {
        self.needs_recovery = true;
        self
    }

    /// op1 as the manual prints it: `0x00 CCCCCCCC PPPP MM`.
    pub fn op1(&self) -> u64 {
        (u64::from(self.cause) << 24) | (u64::from(self.phase) << 8) | u64::from(self.module.code())
    }
}

impl fmt::Display for Emg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EMG{:016x}:{:016x}:{:016x}:({}):{}:{} Action: {}",
            self.op1(),
            self.detail,
            self.reason,
            u8::from(self.needs_recovery),
            self.module.label(),
            self.message,
            self.action
        )
    }
}

impl std::error::Error for Emg {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op1_packs_cause_phase_and_module_like_the_manual() {
        let e = Emg::new(
            Module::MoverDestination,
            0x0030,
            0,
            "Unknown error",
            "Retry",
        );
        assert_eq!(e.op1(), 0x3005);
        let e = Emg::new(Module::Management, phase::PATH_ADDRESS, 5, "m", "a");
        assert_eq!(format!("{:x}", e.op1()), "500b002");
    }

    #[test]
    fn display_carries_every_operand_message_and_action() {
        let e = Emg::new(
            Module::MoverSource,
            phase::CONNECTION_LOST,
            0,
            "Connection refused (LPAR Mover-LPAR Mover).",
            "Check the migration path between the two hosts.",
        )
        .reason(reason::CONNECTION_REFUSED)
        .detail(7);
        assert_eq!(
            e.to_string(),
            "EMG0000000000004004:0000000000000007:0000000000000002:(0):LPARMover(SRC):\
             Connection refused (LPAR Mover-LPAR Mover). \
             Action: Check the migration path between the two hosts."
        );
    }
}
