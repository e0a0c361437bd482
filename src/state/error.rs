//! `StateError`: what can go wrong reading, writing or applying device
//! state, written for the operator; and its one conversion into an [`Emg`].

use super::ids::{MacAddress, UsbAssignment, Wwpn};
use crate::emg::{self, Emg, Module};
use std::fmt;

/// What can go wrong reading, writing or applying device state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateError {
    /// The bytes do not start with the device-state magic.
    BadMagic {
        /// The eight bytes found where the magic belongs.
        found: [u8; 8],
    },
    /// Written by a newer, incompatible format.
    NewerMajorVersion {
        /// The (major, minor) version of the input.
        found: (u16, u16),
        /// The (major, minor) version this build writes.
        supported: (u16, u16),
    },
    /// Written by an older major version this reader no longer reads.
    OlderMajorVersion {
        /// The (major, minor) version of the input.
        found: (u16, u16),
        /// The (major, minor) version this build writes.
        supported: (u16, u16),
    },
    /// The input ends before the item being read.
    Truncated {
        /// The item being read.
        what: &'static str,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left.
        available: u64,
    },
    /// Bytes left over after a complete state.
    TrailingBytes {
        /// How many bytes are left over.
        extra: u64,
    },
    /// The CRC32 over header and body does not match.
    ChecksumMismatch {
        /// The CRC32 the trailer carries.
        stored: u32,
        /// The CRC32 of what was read.
        computed: u32,
    },
    /// A count or length is beyond its named bound.
    TooLarge {
        /// The count or length that is too large.
        what: &'static str,
        /// Its value.
        count: u64,
        /// Its bound.
        max: u64,
    },
    /// A field holds a value outside its domain (an unknown enum code, a
    /// boolean other than 0/1, a VLAN ID above 4095…).
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// No free vfcID is left on the destination for this HBA.
    NoFreeVfcId {
        /// The HBA port, in port order.
        hba: usize,
        /// Its WWPN.
        wwpn: Wwpn,
        /// vfcIDs needed.
        needed: usize,
        /// vfcIDs free.
        free: usize,
    },
    /// HBA Core Dedicated mode keeps the vfcID, but it is taken on the
    /// destination.
    PinnedVfcIdTaken {
        /// The HBA port, in port order.
        hba: usize,
        /// Its WWPN.
        wwpn: Wwpn,
        /// The vfcID it keeps, taken on the destination.
        vfc_id: u16,
    },
    /// Source and destination LPARs differ in their number of FC ports or
    /// NICs, so identities cannot be exchanged one for one.
    IdentityCountMismatch {
        /// "FC ports" or "NICs".
        what: &'static str,
        /// How many the source LPAR has.
        source: usize,
        /// How many the destination LPAR has.
        destination: usize,
    },
    /// A NIC's MAC was set by hand; the manual says it is not transferred.
    ManualMac {
        /// The NIC, in port order.
        nic: usize,
        /// Its hand-set MAC.
        mac: MacAddress,
    },
    /// A USB device is in use (R/#R); Concurrent Maintenance is refused.
    UsbInUse {
        /// The USB assigned state found.
        state: UsbAssignment,
    },
}

impl StateError {
    /// The cause code (the `CCCCCCCC` of op1), distinct per variant.
    pub fn cause(&self) -> u32 {
        match self {
            StateError::BadMagic { .. } => 0x01,
            StateError::NewerMajorVersion { .. } => 0x02,
            StateError::OlderMajorVersion { .. } => 0x03,
            StateError::Truncated { .. } => 0x04,
            StateError::TrailingBytes { .. } => 0x05,
            StateError::ChecksumMismatch { .. } => 0x06,
            StateError::TooLarge { .. } => 0x07,
            StateError::InvalidValue { .. } => 0x08,
            StateError::NoFreeVfcId { .. } => 0x09,
            StateError::PinnedVfcIdTaken { .. } => 0x0a,
            StateError::IdentityCountMismatch { .. } => 0x0b,
            StateError::ManualMac { .. } => 0x0c,
            StateError::UsbInUse { .. } => 0x0d,
        }
    }

    /// What the operator should do about it.
    pub fn action(&self) -> &'static str {
        match self {
            StateError::BadMagic { .. }
            | StateError::Truncated { .. }
            | StateError::TrailingBytes { .. }
            | StateError::ChecksumMismatch { .. }
            | StateError::InvalidValue { .. } => {
                "The device state was damaged in transit or by the sender. The LPAR keeps \
                 running on the source; check the migration path and retry the migration."
            }
            StateError::NewerMajorVersion { .. } | StateError::OlderMajorVersion { .. } => {
                "Update lpar-mover on both hosts to the same release, then retry the migration."
            }
            StateError::TooLarge { .. } => {
                "The LPAR exceeds what lpar-mover can move (or the input is hostile). Reduce \
                 the LPAR's devices or vCPUs, or report the sizes to support."
            }
            StateError::NoFreeVfcId { .. } => {
                "Free a vfcID on the destination (remove an unused FC port assignment from \
                 another LPAR) or choose another destination, then retry."
            }
            StateError::PinnedVfcIdTaken { .. } => {
                "HBA Core Dedicated mode keeps vfcIDs: free this vfcID on the destination or \
                 disable HBA Core Dedicated mode, then retry."
            }
            StateError::IdentityCountMismatch { .. } => {
                "Define the destination LPAR with the same number of FC ports and NICs as the \
                 source, then retry."
            }
            StateError::ManualMac { .. } => {
                "Restore the NIC's MAC to the one derived from the MAC seed, or do not migrate \
                 this LPAR."
            }
            StateError::UsbInUse { .. } => {
                "Detach USB: set the USB device to #A, A or * before migrating in Concurrent \
                 Maintenance mode."
            }
        }
    }

    /// The detail operand (op2): the failing item where there is one.
    fn detail(&self) -> u64 {
        match self {
            StateError::BadMagic { found } => u64::from_be_bytes(*found),
            StateError::NewerMajorVersion { found, .. }
            | StateError::OlderMajorVersion { found, .. } => {
                (u64::from(found.0) << 16) | u64::from(found.1)
            }
            StateError::Truncated { needed, .. } => *needed,
            StateError::TrailingBytes { extra } => *extra,
            StateError::ChecksumMismatch { stored, .. } => u64::from(*stored),
            StateError::TooLarge { count, .. } => *count,
            StateError::InvalidValue { value, .. } => *value,
            StateError::NoFreeVfcId { hba, .. } | StateError::PinnedVfcIdTaken { hba, .. } => {
                *hba as u64
            }
            StateError::IdentityCountMismatch { source, .. } => *source as u64,
            StateError::ManualMac { nic, .. } => *nic as u64,
            StateError::UsbInUse { state } => u64::from(state.code()),
        }
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::BadMagic { found } => write!(
                f,
                "The data is not an lpar-mover device state (magic {:02x?}).",
                found
            ),
            StateError::NewerMajorVersion { found, supported } => write!(
                f,
                "The device state is format version {}.{}, newer than this agent reads \
                 (format version {}.{}).",
                found.0, found.1, supported.0, supported.1
            ),
            StateError::OlderMajorVersion { found, supported } => write!(
                f,
                "The device state is format version {}.{}, older than this agent reads \
                 (format version {}.{}).",
                found.0, found.1, supported.0, supported.1
            ),
            StateError::Truncated {
                what,
                needed,
                available,
            } => write!(
                f,
                "The device state is truncated: {what} needs {needed} bytes, only \
                 {available} remain."
            ),
            StateError::TrailingBytes { extra } => write!(
                f,
                "The device state is followed by {extra} unexpected bytes."
            ),
            StateError::ChecksumMismatch { stored, computed } => write!(
                f,
                "The device state is corrupt: CRC32 {stored:08x} stored, {computed:08x} computed."
            ),
            StateError::TooLarge { what, count, max } => write!(
                f,
                "The device state has {count} {what}, more than the limit of {max}."
            ),
            StateError::InvalidValue { what, value } => {
                write!(f, "The device state has an invalid {what} ({value:#x}).")
            }
            StateError::NoFreeVfcId {
                hba,
                wwpn,
                needed,
                free,
            } => write!(
                f,
                "No free vfcID on the destination for logical FC HBA #{hba} (WWPN {wwpn}): \
                 {needed} needed, {free} free."
            ),
            StateError::PinnedVfcIdTaken { hba, wwpn, vfc_id } => write!(
                f,
                "vfcID {vfc_id} of logical FC HBA #{hba} (WWPN {wwpn}) is kept in HBA Core \
                 Dedicated mode but is not free on the destination."
            ),
            StateError::IdentityCountMismatch {
                what,
                source,
                destination,
            } => write!(
                f,
                "Cannot exchange {what}: the source LPAR has {source}, the destination LPAR \
                 has {destination}."
            ),
            StateError::ManualMac { nic, mac } => write!(
                f,
                "The MAC address {mac} of logical NIC #{nic} was set manually and is not \
                 transferred by migration."
            ),
            StateError::UsbInUse { state } => write!(
                f,
                "LPAR Migration was canceled. USB is attached to the specified LPAR \
                 (assigned state {state})."
            ),
        }
    }
}

impl std::error::Error for StateError {}

impl From<StateError> for Emg {
    fn from(e: StateError) -> Emg {
        let reason = match e {
            StateError::UsbInUse { .. } => emg::reason::USB_ATTACHED,
            _ => emg::reason::GENERIC,
        };
        match e {
            // The manual's source LPAR Mover `0x00 00000000 0030 04`, op3 0x33.
            StateError::UsbInUse { .. } => Emg::new(
                Module::MoverSource,
                emg::phase::LPAR_MOVER,
                0,
                e.to_string(),
                e.action(),
            ),
            _ => Emg::new(
                Module::MoverDestination,
                emg::phase::DEVICE_STATE,
                e.cause(),
                e.to_string(),
                e.action(),
            ),
        }
        .detail(e.detail())
        .reason(reason)
    }
}
