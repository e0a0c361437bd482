//! Why MACs could not be announced, for the operator, and the EMG each
//! reason becomes.

use super::{MAX_ROUNDS, MAX_VLAN_ID};
use crate::emg::{Emg, Module, phase};
use crate::state::MacAddress;
use std::fmt;
use std::io;

/// Why MACs could not be announced, in words for the operator.
#[derive(Debug)]
pub enum AnnounceError {
    /// No interface of that name in this network namespace.
    InterfaceNotFound { interface: String },
    /// A VLAN ID outside 0..=4094.
    InvalidVlan { mac: MacAddress, vlan: u16 },
    /// Rounds outside 1..=[`MAX_ROUNDS`].
    InvalidRounds { rounds: u32 },
    /// Opening the raw socket was refused: the agent lacks `CAP_NET_RAW`.
    NoPermission { interface: String },
    /// The interface exists but is down.
    InterfaceDown { interface: String },
    /// Opening or binding the raw socket failed for another reason.
    Socket {
        interface: String,
        source: io::Error,
    },
    /// Sending one frame failed.
    SendFailed {
        interface: String,
        mac: MacAddress,
        round: u32,
        source: io::Error,
    },
    /// The thread that sends the rounds could not be started.
    Spawn {
        interface: String,
        source: io::Error,
    },
    /// The sending thread died without a result.
    ThreadLost { interface: String },
}

impl fmt::Display for AnnounceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InterfaceNotFound { interface } => write!(
                f,
                "cannot announce the LPAR's MAC addresses: network interface {interface:?} \
                 does not exist on this host"
            ),
            Self::InvalidVlan { mac, vlan } => write!(
                f,
                "cannot announce MAC {mac}: VLAN ID {vlan} is outside 0..={MAX_VLAN_ID}"
            ),
            Self::InvalidRounds { rounds } => write!(
                f,
                "cannot announce the LPAR's MAC addresses: {rounds} rounds asked, \
                 1..={MAX_ROUNDS} allowed"
            ),
            Self::NoPermission { interface } => write!(
                f,
                "cannot announce the LPAR's MAC addresses on {interface:?}: opening a raw \
                 packet socket was refused (the agent needs CAP_NET_RAW)"
            ),
            Self::InterfaceDown { interface } => write!(
                f,
                "cannot announce the LPAR's MAC addresses: network interface {interface:?} \
                 is down"
            ),
            Self::Socket { interface, source } => write!(
                f,
                "cannot announce the LPAR's MAC addresses: opening a raw packet socket on \
                 {interface:?} failed: {source}"
            ),
            Self::SendFailed {
                interface,
                mac,
                round,
                source,
            } => write!(
                f,
                "announcing MAC {mac} on {interface:?} failed in round {round}: {source}"
            ),
            Self::Spawn { interface, source } => write!(
                f,
                "cannot start the thread that announces the LPAR's MAC addresses on \
                 {interface:?}: {source}"
            ),
            Self::ThreadLost { interface } => write!(
                f,
                "the thread announcing the LPAR's MAC addresses on {interface:?} ended \
                 without a result"
            ),
        }
    }
}

impl std::error::Error for AnnounceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Socket { source, .. }
            | Self::SendFailed { source, .. }
            | Self::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What every announce EMG says about where the LPAR stands.
const STILL_RUNNING: &str = "The LPAR is running on the destination; until its MACs are \
     announced, switches may keep sending its traffic to the source host's port until \
     their MAC tables age out or the LPAR transmits.";

impl From<AnnounceError> for Emg {
    fn from(e: AnnounceError) -> Emg {
        let message = e.to_string();
        let (cause, detail, action) = match &e {
            AnnounceError::InterfaceNotFound { .. } => (
                0x01,
                0,
                "Check the network segment's interface name in the destination host's \
                 configuration (ip link show)."
                    .to_owned(),
            ),
            AnnounceError::InvalidVlan { vlan, .. } => (
                0x02,
                u64::from(*vlan),
                "Correct the logical NIC's VLAN ID (0 to 4094).".to_owned(),
            ),
            AnnounceError::InvalidRounds { rounds } => (
                0x03,
                u64::from(*rounds),
                format!("Set the announce rounds between 1 and {MAX_ROUNDS}."),
            ),
            AnnounceError::NoPermission { .. } => (
                0x04,
                0,
                "Run moverd as root or grant it CAP_NET_RAW (setcap cap_net_raw+ep, or \
                 AmbientCapabilities=CAP_NET_RAW in its unit)."
                    .to_owned(),
            ),
            AnnounceError::InterfaceDown { .. } => (
                0x05,
                0,
                "Bring the network segment's interface up (ip link set <name> up) and check \
                 its cabling."
                    .to_owned(),
            ),
            AnnounceError::Socket { source, .. } => (
                0x06,
                source.raw_os_error().unwrap_or(0) as u64,
                "Check the destination host's network configuration.".to_owned(),
            ),
            AnnounceError::SendFailed { round, .. } => (
                0x07,
                u64::from(*round),
                "Check the network segment's interface and link on the destination host."
                    .to_owned(),
            ),
            AnnounceError::Spawn { .. } => (
                0x09,
                0,
                "Check the destination host's process and memory limits for moverd.".to_owned(),
            ),
            AnnounceError::ThreadLost { .. } => (
                0x08,
                0,
                "Report this as a bug with the agent's log.".to_owned(),
            ),
        };
        Emg::new(
            Module::MoverDestination,
            phase::ACTIVATE,
            cause,
            message,
            format!("{action} {STILL_RUNNING}"),
        )
        .detail(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddress = MacAddress([0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);

    #[test]
    fn errors_become_destination_activate_emgs_with_an_action() {
        let cases = [
            AnnounceError::InterfaceNotFound {
                interface: "eth9".into(),
            },
            AnnounceError::NoPermission {
                interface: "eth0".into(),
            },
            AnnounceError::SendFailed {
                interface: "eth0".into(),
                mac: MAC,
                round: 3,
                source: io::Error::from_raw_os_error(libc::ENOBUFS),
            },
        ];
        let mut causes = Vec::new();
        for e in cases {
            let text = e.to_string();
            let emg: Emg = e.into();
            assert_eq!(emg.module, Module::MoverDestination);
            assert_eq!(emg.phase, phase::ACTIVATE);
            assert_eq!(emg.message, text);
            assert!(emg.action.contains("running on the destination"), "{emg}");
            assert!(!emg.needs_recovery);
            causes.push(emg.cause);
        }
        causes.dedup();
        assert_eq!(causes.len(), 3, "each situation has its own cause code");
        let emg: Emg = AnnounceError::NoPermission {
            interface: "eth0".into(),
        }
        .into();
        assert!(emg.message.contains("CAP_NET_RAW"), "{emg}");
        assert!(emg.action.contains("CAP_NET_RAW"), "{emg}");
    }
}
