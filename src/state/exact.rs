//! Exact hypervisor records: the device state a hypervisor keeps in a form
//! the Table 1-2 model cannot hold bit for bit (the whole 1 KiB LAPIC
//! register page, the PIT's latches, a vCPU's pending events…). A backend
//! fills the model's fields for every reader *and* carries the exact
//! record, so its destination restores exactly what the source saved.
//!
//! Each record names its Table 1-2 item ([`ExactItem::table_item`]) and is
//! dropped with it ([`DeviceState::for_mode`](super::DeviceState::for_mode)).
//! Records are opaque to every other layer; only the backend that wrote
//! them reads them (`kind` says which).
//!
//! Encoding (format minor 1, appended after the minor-0 body):
//!
//! ```text
//! section   = owner(platform) owner(vCPU 0) … owner(vCPU n-1)
//! owner     = count:u16 record*count        count <= MAX_EXACT_RECORDS
//! record    = item:u8 len:u32 bytes[len]     len   <= MAX_EXACT_BYTES
//! ```

use super::error::StateError;
use super::rules::Item;

/// Records per owner (the platform or one vCPU).
pub const MAX_EXACT_RECORDS: usize = 32;
/// Bytes per record: the largest KVM record is the 4 KiB XSAVE area.
pub const MAX_EXACT_BYTES: usize = 16 * 1024;

/// What an exact record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExactItem {
    /// The LAPIC register page (KVM `kvm_lapic_state`).
    LapicPage = 1,
    /// Extended control registers (`kvm_xcrs`).
    Xcrs = 2,
    /// Debug registers (`kvm_debugregs`).
    DebugRegs = 3,
    /// Pending exceptions, interrupts, NMI, SIPI (`kvm_vcpu_events`).
    VcpuEvents = 4,
    /// Multiprocessing state (`kvm_mp_state`).
    MpState = 5,
    /// Pending-interrupt bitmap of the special registers (`kvm_sregs`).
    InterruptBitmap = 6,
    /// The 8254 with its latches (`kvm_pit_state2`).
    Pit = 7,
    /// Master 8259 (`kvm_irqchip`, chip 0).
    PicMaster = 8,
    /// Slave 8259 (`kvm_irqchip`, chip 1).
    PicSlave = 9,
    /// I/O APIC (`kvm_irqchip`, chip 2).
    IoApic = 10,
    /// The VM's clock (kvmclock base, `kvm_clock_data`).
    Clock = 11,
}

impl ExactItem {
    /// The one-byte code of this item in the encoding.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The item a code names, if any.
    pub fn from_code(c: u8) -> Option<Self> {
        use ExactItem::*;
        Some(match c {
            1 => LapicPage,
            2 => Xcrs,
            3 => DebugRegs,
            4 => VcpuEvents,
            5 => MpState,
            6 => InterruptBitmap,
            7 => Pit,
            8 => PicMaster,
            9 => PicSlave,
            10 => IoApic,
            11 => Clock,
            _ => return None,
        })
    }

    /// The Table 1-2 item this record belongs to (and moves or stays with).
    pub fn table_item(self) -> Item {
        use ExactItem::*;
        match self {
            LapicPage => Item::Lapic,
            Xcrs | DebugRegs | VcpuEvents | MpState | InterruptBitmap | Clock => {
                Item::VcpuRegisters
            }
            Pit => Item::Pit,
            PicMaster | PicSlave => Item::Pic,
            IoApic => Item::IoApic,
        }
    }
}

/// One exact record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExactRecord {
    /// Which device the record is of.
    pub item: ExactItem,
    /// The backend's bytes for it, carried as they are.
    pub bytes: Vec<u8>,
}

/// Finds the record for `item`.
pub fn find(records: &[ExactRecord], item: ExactItem) -> Option<&[u8]> {
    records
        .iter()
        .find(|r| r.item == item)
        .map(|r| r.bytes.as_slice())
}

/// Appends one owner's records.
pub fn encode_owner(out: &mut Vec<u8>, records: &[ExactRecord]) -> Result<(), StateError> {
    if records.len() > MAX_EXACT_RECORDS {
        return Err(StateError::TooLarge {
            what: "exact hypervisor records",
            count: records.len() as u64,
            max: MAX_EXACT_RECORDS as u64,
        });
    }
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    for r in records {
        if r.bytes.len() > MAX_EXACT_BYTES {
            return Err(StateError::TooLarge {
                what: "exact hypervisor record bytes",
                count: r.bytes.len() as u64,
                max: MAX_EXACT_BYTES as u64,
            });
        }
        out.push(r.item.code());
        out.extend_from_slice(&(r.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.bytes);
    }
    Ok(())
}

fn take<'a>(buf: &mut &'a [u8], what: &'static str, n: usize) -> Result<&'a [u8], StateError> {
    if buf.len() < n {
        return Err(StateError::Truncated {
            what,
            needed: n as u64,
            available: buf.len() as u64,
        });
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

/// Reads one owner's records from the front of `buf`.
pub fn decode_owner(buf: &mut &[u8]) -> Result<Vec<ExactRecord>, StateError> {
    let n = take(buf, "exact record count", 2)?;
    let n = u16::from_le_bytes([n[0], n[1]]) as usize;
    if n > MAX_EXACT_RECORDS {
        return Err(StateError::TooLarge {
            what: "exact hypervisor records",
            count: n as u64,
            max: MAX_EXACT_RECORDS as u64,
        });
    }
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let code = take(buf, "exact record item", 1)?[0];
        let item = ExactItem::from_code(code).ok_or(StateError::InvalidValue {
            what: "exact record item",
            value: u64::from(code),
        })?;
        let len = take(buf, "exact record length", 4)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_EXACT_BYTES {
            return Err(StateError::TooLarge {
                what: "exact hypervisor record bytes",
                count: len as u64,
                max: MAX_EXACT_BYTES as u64,
            });
        }
        let bytes = take(buf, "exact record bytes", len)?.to_vec();
        records.push(ExactRecord { item, bytes });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bounds_hold() {
        let recs = vec![
            ExactRecord {
                item: ExactItem::LapicPage,
                bytes: vec![7; 1024],
            },
            ExactRecord {
                item: ExactItem::Clock,
                bytes: vec![],
            },
        ];
        let mut out = Vec::new();
        encode_owner(&mut out, &recs).unwrap();
        let mut buf = out.as_slice();
        assert_eq!(decode_owner(&mut buf).unwrap(), recs);
        assert!(buf.is_empty());
        for cut in 0..out.len() {
            let mut short = &out[..cut];
            assert!(decode_owner(&mut short).is_err(), "cut at {cut}");
        }
        let mut huge = vec![1, 0, 1];
        huge.extend_from_slice(&(MAX_EXACT_BYTES as u32 + 1).to_le_bytes());
        assert!(matches!(
            decode_owner(&mut huge.as_slice()),
            Err(StateError::TooLarge { .. })
        ));
        let bad = [1, 0, 99, 0, 0, 0, 0];
        assert!(decode_owner(&mut bad.as_slice()).is_err());
    }
}
