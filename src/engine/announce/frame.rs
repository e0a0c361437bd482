//! The announce frames: RARP request-reverse and gratuitous ARP, untagged or
//! 802.1Q-tagged (layouts drawn in the module doc of [`super`]).

use crate::state::{LogicalNic, MacAddress, VlanMode};
use std::net::Ipv4Addr;

/// EtherType of ARP (RFC 826).
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of RARP (RFC 903).
pub const ETHERTYPE_RARP: u16 = 0x8035;
/// EtherType of IPv4, the protocol address space the frames name.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Tag protocol identifier of an 802.1Q customer VLAN tag.
pub const TPID_8021Q: u16 = 0x8100;
/// `ar$hrd` for Ethernet (RFC 826).
pub const ARP_HRD_ETHERNET: u16 = 1;
/// `ar$op` of an ARP request (RFC 826).
pub const ARP_OP_REQUEST: u16 = 1;
/// `ar$op` of a RARP request reverse (RFC 903).
pub const RARP_OP_REQUEST_REVERSE: u16 = 3;
/// The shortest Ethernet frame without its FCS; shorter frames are runts.
pub const MIN_FRAME_LEN: usize = 60;
/// Length of the untagged frames this module builds.
pub const UNTAGGED_FRAME_LEN: usize = MIN_FRAME_LEN;
/// Length of the 802.1Q-tagged frames this module builds.
pub const TAGGED_FRAME_LEN: usize = MIN_FRAME_LEN + 4;
/// Highest VLAN ID a tag may carry: 4095 (0xfff) is reserved by 802.1Q.
pub const MAX_VLAN_ID: u16 = 4094;

const BROADCAST: [u8; 6] = [0xff; 6];
const ARP_LEN: usize = 28;

/// The VLAN tag a NIC's frames carry: `Some(id)` only in mode `Tag`.
pub fn vlan_tag_for(mode: VlanMode, vlan_id: u16) -> Option<u16> {
    match mode {
        VlanMode::Tag => Some(vlan_id),
        VlanMode::Untag | VlanMode::Undef => None,
    }
}

/// Ethernet header (with the tag when `vlan` is set) + the 28-byte ARP body,
/// padded so the untagged equivalent is [`MIN_FRAME_LEN`] bytes.
fn frame(
    ethertype: u16,
    op: u16,
    mac: MacAddress,
    vlan: Option<u16>,
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let len = if vlan.is_some() {
        TAGGED_FRAME_LEN
    } else {
        UNTAGGED_FRAME_LEN
    };
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&mac.0);
    if let Some(id) = vlan {
        f.extend_from_slice(&TPID_8021Q.to_be_bytes());
        // PCP 0, DEI 0; the ID is masked so an out-of-range value cannot
        // spill into PCP/DEI (callers validate it first).
        f.extend_from_slice(&(id & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    let arp_start = f.len();
    f.extend_from_slice(&ARP_HRD_ETHERNET.to_be_bytes());
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f.push(6);
    f.push(4);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    debug_assert_eq!(f.len() - arp_start, ARP_LEN);
    f.resize(len, 0);
    f
}

/// The RARP request-reverse frame announcing `mac` (layout in the module
/// doc), tagged with `vlan` when set. Use [`super::announce`] to validate the VLAN
/// ID; here an ID above 4095 is masked to 12 bits.
pub fn rarp_frame(mac: MacAddress, vlan: Option<u16>) -> Vec<u8> {
    frame(
        ETHERTYPE_RARP,
        RARP_OP_REQUEST_REVERSE,
        mac,
        vlan,
        Ipv4Addr::UNSPECIFIED,
        mac.0,
        Ipv4Addr::UNSPECIFIED,
    )
}

/// The gratuitous ARP (RFC 5227 announcement) for `mac` owning `ip`
/// (layout in the module doc), tagged with `vlan` when set.
pub fn garp_frame(mac: MacAddress, vlan: Option<u16>, ip: Ipv4Addr) -> Vec<u8> {
    frame(ETHERTYPE_ARP, ARP_OP_REQUEST, mac, vlan, ip, [0; 6], ip)
}

/// One logical MAC to announce: its VLAN tag (mode `Tag` only) and, when
/// the agent knows it, the LPAR's IPv4 address on that NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub mac: MacAddress,
    pub vlan: Option<u16>,
    /// When set, each round also carries a gratuitous ARP for this address,
    /// right after the RARP frame.
    pub ipv4: Option<Ipv4Addr>,
}

impl From<(MacAddress, Option<u16>)> for Target {
    fn from((mac, vlan): (MacAddress, Option<u16>)) -> Self {
        Target {
            mac,
            vlan,
            ipv4: None,
        }
    }
}

impl From<&LogicalNic> for Target {
    /// The NIC's MAC, tagged per its VLAN mode ([`vlan_tag_for`]).
    fn from(nic: &LogicalNic) -> Self {
        Target {
            mac: nic.mac,
            vlan: vlan_tag_for(nic.vlan_mode, nic.vlan_id),
            ipv4: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddress = MacAddress([0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);

    /// The untagged RARP frame written out field by field from RFC 903 /
    /// RFC 826, independently of the builder.
    #[rustfmt::skip]
    const RARP_UNTAGGED: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff,     // destination: broadcast
        0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,     // source: the MAC
        0x80, 0x35,                             // EtherType RARP
        0x00, 0x01,                             // ar$hrd Ethernet
        0x08, 0x00,                             // ar$pro IPv4
        0x06,                                   // ar$hln
        0x04,                                   // ar$pln
        0x00, 0x03,                             // ar$op request reverse
        0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,     // ar$sha
        0x00, 0x00, 0x00, 0x00,                 // ar$spa
        0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,     // ar$tha
        0x00, 0x00, 0x00, 0x00,                 // ar$tpa
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn rarp_frame_matches_the_rfc_layout_byte_for_byte() {
        assert_eq!(rarp_frame(MAC, None), RARP_UNTAGGED);
    }

    #[test]
    fn tagged_rarp_frame_inserts_the_8021q_tag_after_the_source() {
        #[rustfmt::skip]
        let expected: [u8; 64] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
            0x81, 0x00,                         // TPID 802.1Q
            0x0f, 0xa5,                         // TCI: PCP 0, DEI 0, VID 4005
            0x80, 0x35,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x03,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
            0x00, 0x00, 0x00, 0x00,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
            0x00, 0x00, 0x00, 0x00,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(rarp_frame(MAC, Some(4005)), expected);
        // Stripping the tag gives back the untagged frame exactly.
        let mut stripped = expected.to_vec();
        stripped.drain(12..16);
        assert_eq!(stripped, RARP_UNTAGGED);
    }

    #[test]
    fn vlan_id_cannot_spill_into_priority_bits() {
        let f = rarp_frame(MAC, Some(0xffff));
        assert_eq!(&f[14..16], &[0x0f, 0xff]);
    }

    #[test]
    fn garp_frame_matches_the_rfc_layout_byte_for_byte() {
        #[rustfmt::skip]
        let expected: [u8; 60] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
            0x08, 0x06,                         // EtherType ARP
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04,
            0x00, 0x01,                         // ar$op request
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, // ar$sha
            192, 0, 2, 7,                       // ar$spa
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ar$tha zero (RFC 5227)
            192, 0, 2, 7,                       // ar$tpa = ar$spa
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let ip = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(garp_frame(MAC, None, ip), expected);
        let tagged = garp_frame(MAC, Some(1), ip);
        assert_eq!(tagged.len(), TAGGED_FRAME_LEN);
        assert_eq!(&tagged[12..18], &[0x81, 0x00, 0x00, 0x01, 0x08, 0x06]);
        assert_eq!(&tagged[18..], &expected[14..]);
    }

    #[test]
    fn only_tag_mode_tags() {
        assert_eq!(vlan_tag_for(VlanMode::Tag, 12), Some(12));
        assert_eq!(vlan_tag_for(VlanMode::Untag, 12), None);
        assert_eq!(vlan_tag_for(VlanMode::Undef, 0), None);
    }

    #[test]
    fn a_nic_is_tagged_per_its_vlan_mode() {
        let mut nic = crate::state::LogicalNic {
            vnic_number: 1,
            mac: MAC,
            mac_set_manually: false,
            vlan_mode: VlanMode::Tag,
            vlan_id: 300,
            device_type: crate::state::VnicDeviceType::Nic1,
            promiscuous: false,
            inter_lpar_filtering: false,
            mmio: None,
        };
        assert_eq!(Target::from(&nic).vlan, Some(300));
        nic.vlan_mode = VlanMode::Untag;
        assert_eq!(
            Target::from(&nic),
            Target {
                mac: MAC,
                vlan: None,
                ipv4: None
            }
        );
    }
}
