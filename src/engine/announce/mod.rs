//! Announcing the LPAR's logical MACs after it resumes on the destination.
//!
//! A switch learns which port a MAC lives behind from the source address of
//! the frames it sees. Right after switchover the LPAR is behind the
//! destination host's port, but every switch on the segment still forwards
//! its traffic to the source host until the LPAR happens to transmit. So the
//! destination agent transmits on the LPAR's behalf: a few broadcast frames
//! per logical MAC, sourced from that MAC, in rounds spaced further and
//! further apart (a switch that misses one round, or is still reconverging,
//! catches a later one). This is what QEMU's self-announce does after an
//! incoming migration.
//!
//! # Frames
//!
//! The default frame is a RARP *request reverse* (RFC 903), as QEMU sends:
//! it asks nothing of any host (there are no RARP servers left to answer),
//! carries no IPv4 address (the agent does not know the guest's), and is
//! broadcast, so every switch on the segment sees it. All multi-byte fields
//! are big-endian.
//!
//! ```text
//!  offset  len  field                        value
//!  ──────  ───  ───────────────────────────  ────────────────────────────
//!       0    6  Ethernet destination         ff:ff:ff:ff:ff:ff (broadcast)
//!       6    6  Ethernet source              the LPAR's MAC
//!      12    2  EtherType                    0x8035 (RARP)
//!      ─── RARP (RFC 903, the RFC 826 packet with new opcodes) ───
//!      14    2  ar$hrd  hardware type        0x0001 (Ethernet)
//!      16    2  ar$pro  protocol type        0x0800 (IPv4)
//!      18    1  ar$hln  hardware addr length 6
//!      19    1  ar$pln  protocol addr length 4
//!      20    2  ar$op   opcode               0x0003 (request reverse)
//!      22    6  ar$sha  sender hardware addr the LPAR's MAC
//!      28    4  ar$spa  sender protocol addr 0.0.0.0 (unknown)
//!      32    6  ar$tha  target hardware addr the LPAR's MAC (RFC 903:
//!                                            the address being asked about)
//!      38    4  ar$tpa  target protocol addr 0.0.0.0 (unknown)
//!      42   18  padding                      zeros, up to the 60-byte
//!                                            minimum (64 with the FCS the
//!                                            NIC appends)
//!      60       end
//! ```
//!
//! When the LPAR's IPv4 address is known, a gratuitous ARP (an RFC 5227
//! "ARP announcement", an RFC 826 request for one's own address) also
//! refreshes the neighbours' ARP caches. It differs from the RARP frame only
//! in these fields:
//!
//! ```text
//!      12    2  EtherType                    0x0806 (ARP)
//!      20    2  ar$op                        0x0001 (request)
//!      28    4  ar$spa                       the LPAR's IPv4 address
//!      32    6  ar$tha                       00:00:00:00:00:00 (RFC 5227:
//!                                            ignored, should be zero)
//!      38    4  ar$tpa                       the LPAR's IPv4 address
//! ```
//!
//! A NIC in VLAN mode `Tag` puts an 802.1Q tag between the source address
//! and the EtherType; everything after it moves 4 bytes down:
//!
//! ```text
//!      12    2  TPID                         0x8100 (802.1Q)
//!      14    2  TCI                          PCP 0 (3 bits) │ DEI 0 (1 bit)
//!                                            │ VLAN ID (12 bits)
//!      16    2  EtherType                    0x8035 or 0x0806
//!      18   28  the RARP/ARP packet as above
//!      46   18  padding
//!      64       end
//! ```
//!
//! The tagged frame keeps the same 18 bytes of padding, so a switch that
//! strips the tag on an access port still forwards a frame of the 60-byte
//! minimum without re-padding it. VLAN modes `Untag` and `Undef` send
//! untagged frames (the switch port owns the VLAN); see [`vlan_tag_for`].
//!
//! # Rounds
//!
//! ```text
//!  round:   0        1              2                    3         …
//!  send:    █────────█──────────────█────────────────────█─── …
//!  gap:       initial   initial+step   initial+2·step
//! ```
//!
//! Every round sends, for every [`Target`] in order, its RARP frame and then,
//! when its IPv4 address is known, its gratuitous ARP. QEMU's defaults
//! ([`Schedule::default`]): 5 rounds, 50 ms first gap, 100 ms more each
//! round, so 50 + 150 + 250 + 350 = 800 ms from the first round to the last.
//! The engine must not wait that long after resume:
//! [`announce_in_background`] (and [`announce_targets_in_background`]) opens
//! the socket (so a missing interface or a missing capability is reported at
//! once) and sends the rounds from a thread of its own, which the returned
//! [`AnnounceHandle`] can join or cancel between rounds.
//!
//! # Socket
//!
//! One `AF_PACKET`/`SOCK_RAW` socket per announcement, protocol 0 (it never
//! receives), bound to the interface's index; frames go out exactly as
//! built, without the FCS. Opening it needs `CAP_NET_RAW`.

mod error;
mod frame;
mod schedule;
mod socket;

pub use error::AnnounceError;
pub use frame::{
    ARP_HRD_ETHERNET, ARP_OP_REQUEST, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_RARP, MAX_VLAN_ID,
    MIN_FRAME_LEN, RARP_OP_REQUEST_REVERSE, TAGGED_FRAME_LEN, TPID_8021Q, Target,
    UNTAGGED_FRAME_LEN, garp_frame, rarp_frame, vlan_tag_for,
};
pub use schedule::{
    AnnounceHandle, AnnounceReport, MAX_ROUNDS, Schedule, announce, announce_in_background,
    announce_targets, announce_targets_in_background,
};
