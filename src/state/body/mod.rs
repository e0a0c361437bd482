//! Field-by-field encoding of the body (layout rules in [`super::format`]).
//!
//! `Writer` and `Reader` mirror each other method for method, so the order
//! of fields is written once per side and reviewed side by side. The writer
//! enforces the same bounds as the reader, so anything written reads back.
//!
//! [`write`](mod@write) holds the writer, [`read`] the reader.

mod read;
mod write;

pub(in crate::state) use read::Reader;
pub(in crate::state) use write::Writer;

use super::error::StateError;
use super::ids::PciAddress;

/// Highest valid 802.1Q VLAN ID field value.
pub(super) const MAX_VLAN_ID: u16 = 4095;

pub(super) fn too_large(what: &'static str, count: usize, max: usize) -> StateError {
    StateError::TooLarge {
        what,
        count: count as u64,
        max: max as u64,
    }
}

pub(super) fn bad_pci(a: PciAddress) -> StateError {
    StateError::InvalidValue {
        what: "logical PCI address (device/function)",
        value: (u64::from(a.device) << 8) | u64::from(a.function),
    }
}
