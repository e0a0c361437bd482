//! Identity types other layers reuse (inventory, validation, the CLI): MAC
//! addresses, WWPNs, VLAN mode, VNIC device type, USB and VGA assigned state.
//!
//! Each has one textual form, the one the manual and the HVM screens print,
//! used by `Display`, `FromStr` and `serde` alike, so a value reads the same
//! in a log line, a JSON reply and a command argument.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a textual identity did not parse. Carries the rejected text so the
/// message can show it to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseIdError {
    /// What was being parsed (e.g. "MAC address").
    pub kind: &'static str,
    /// The text that did not parse.
    pub text: String,
    /// The form that was expected.
    pub expected: &'static str,
}

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a valid {}; expected {}",
            self.text, self.kind, self.expected
        )
    }
}

impl std::error::Error for ParseIdError {}

/// Parses `N` hex octets separated by `:` (or `-`), or `2N` hex digits with no
/// separator.
fn parse_octets<const N: usize>(
    s: &str,
    kind: &'static str,
    expected: &'static str,
) -> Result<[u8; N], ParseIdError> {
    let err = || ParseIdError {
        kind,
        text: s.to_owned(),
        expected,
    };
    let mut out = [0u8; N];
    let parts: Vec<&str> = if s.contains(':') {
        s.split(':').collect()
    } else if s.contains('-') {
        s.split('-').collect()
    } else if s.len() == 2 * N && s.is_ascii() {
        (0..N).map(|i| &s[2 * i..2 * i + 2]).collect()
    } else {
        return Err(err());
    };
    if parts.len() != N {
        return Err(err());
    }
    for (slot, part) in out.iter_mut().zip(parts) {
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        *slot = u8::from_str_radix(part, 16).map_err(|_| err())?;
    }
    Ok(out)
}

fn write_octets(f: &mut fmt::Formatter<'_>, octets: &[u8]) -> fmt::Result {
    for (i, b) in octets.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// A logical NIC's MAC address, printed `02:00:00:00:00:01`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// A locally administered unicast address (bit 1 of the first octet
    /// set, bit 0 clear), as HVM derives from its MAC seed.
    pub fn is_locally_administered_unicast(&self) -> bool {
        self.0[0] & 0x03 == 0x02
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_octets(f, &self.0)
    }
}

impl fmt::Debug for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddress({self})")
    }
}

impl FromStr for MacAddress {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_octets::<6>(s, "MAC address", "six hex octets such as 02:00:00:00:00:01")
            .map(MacAddress)
    }
}

impl From<MacAddress> for String {
    fn from(m: MacAddress) -> String {
        m.to_string()
    }
}

impl TryFrom<String> for MacAddress {
    type Error = ParseIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A Fibre Channel World Wide Port Name, printed `50:06:0e:80:00:00:00:01`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Wwpn(pub [u8; 8]);

impl Wwpn {
    /// The WWPN whose 8 bytes are `v`, most significant first.
    pub fn from_u64(v: u64) -> Self {
        Wwpn(v.to_be_bytes())
    }

    /// The WWPN as one number, most significant byte first.
    pub fn as_u64(&self) -> u64 {
        u64::from_be_bytes(self.0)
    }
}

impl fmt::Display for Wwpn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_octets(f, &self.0)
    }
}

impl fmt::Debug for Wwpn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wwpn({self})")
    }
}

impl FromStr for Wwpn {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_octets::<8>(
            s,
            "WWPN",
            "eight hex octets such as 50:06:0e:80:00:00:00:01",
        )
        .map(Wwpn)
    }
}

impl From<Wwpn> for String {
    fn from(w: Wwpn) -> String {
        w.to_string()
    }
}

impl TryFrom<String> for Wwpn {
    type Error = ParseIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Defines a fieldless enum whose textual form is a fixed token per variant
/// (used by `Display`, `FromStr` and `serde`), plus its one-byte wire code.
macro_rules! token_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal {
            $( $(#[$vmeta:meta])* $variant:ident = ($code:literal, $text:literal), )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(into = "String", try_from = "String")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in wire-code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The one-byte code used by the binary encoding.
            pub fn code(self) -> u8 {
                match self { $($name::$variant => $code,)+ }
            }

            /// The variant a one-byte code names, if any.
            pub fn from_code(code: u8) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// The variant's text as the manual and the HVM screen print it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| ParseIdError {
                        kind: $kind,
                        text: s.to_owned(),
                        expected: concat!("one of:", $(" ", $text),+),
                    })
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_owned()
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseIdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
    };
}

token_enum! {
    /// VLAN mode of a logical NIC (Table 1-2: "VLAN mode (Tag, Untag or Undef)").
    VlanMode, "VLAN mode" {
        /// Frames carry an 802.1Q tag.
        Tag = (0, "Tag"),
        /// Untagged port member of one VLAN.
        Untag = (1, "Untag"),
        /// No VLAN set.
        Undef = (2, "Undef"),
    }
}

token_enum! {
    /// VNIC device type (Table 1-2 "VNIC Device Type"; chapter 5: "VNIC Device
    /// Type NIC2 cannot go to a destination in Standard mode or one without NIC2").
    VnicDeviceType, "VNIC device type" {
        /// The manual's NIC1 emulation.
        Nic1 = (1, "NIC1"),
        /// The manual's NIC2 emulation.
        Nic2 = (2, "NIC2"),
    }
}

token_enum! {
    /// USB assigned state as the HVM screen prints it. The manual uses the
    /// `#` mark beside A and R without explaining it; it is kept verbatim.
    UsbAssignment, "USB assigned state" {
        /// `A`: assigned.
        Assigned = (0, "A"),
        /// `#A`: assigned, with the `#` mark.
        HashAssigned = (1, "#A"),
        /// `*`: not assigned.
        Unassigned = (2, "*"),
        /// `R`: running (in use by the LPAR).
        Running = (3, "R"),
        /// `#R`: running, with the `#` mark.
        HashRunning = (4, "#R"),
    }
}

token_enum! {
    /// VGA assigned state (Table 1-2: "Assigned state (A or *)").
    VgaAssignment, "VGA assigned state" {
        /// `A`: assigned.
        Assigned = (0, "A"),
        /// `*`: not assigned.
        Unassigned = (1, "*"),
    }
}

impl UsbAssignment {
    /// `R` or `#R`: the device is in use. The *used* state is not migrated
    /// (Table 1-2: "Used state (R or #R)  No") and Concurrent Maintenance is
    /// refused while it holds (manual: "When the state of a USB device is
    /// “#R (running)” or “R (running)” for the LPAR to migrate, you cannot
    /// have the LPAR migrate in Concurrent Maintenance mode").
    pub fn is_running(self) -> bool {
        matches!(self, UsbAssignment::Running | UsbAssignment::HashRunning)
    }

    /// The assigned state the LPAR has on the destination. Manual, USB table
    /// in chapter 5: a source in `*` stays `*`; every other source state
    /// becomes `A (assigned)` ("When USB Auto Allocated to LPAR in HVM
    /// Options is set to "Disable", the assigned state becomes "A
    /// (assigned)""). With auto allocation enabled the destination HVM may
    /// then promote it to `R`; that is the destination's decision, not ours.
    pub fn on_destination(self) -> UsbAssignment {
        match self {
            UsbAssignment::Unassigned => UsbAssignment::Unassigned,
            _ => UsbAssignment::Assigned,
        }
    }
}

/// A logical PCI address (bus:device.function), printed `00:05.0`.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug, Serialize, Deserialize,
)]
pub struct PciAddress {
    /// PCI bus number.
    pub bus: u8,
    /// 0..=31
    pub device: u8,
    /// 0..=7
    pub function: u8,
}

impl PciAddress {
    /// Whether device ≤ 31 and function ≤ 7.
    pub fn is_valid(&self) -> bool {
        self.device < 32 && self.function < 8
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_and_wwpn_print_and_parse_in_the_usual_form() {
        let mac: MacAddress = "02:00:00:00:00:01".parse().unwrap();
        assert_eq!(mac.0, [2, 0, 0, 0, 0, 1]);
        assert_eq!(mac.to_string(), "02:00:00:00:00:01");
        assert!(mac.is_locally_administered_unicast());
        assert_eq!("02-00-00-00-00-01".parse::<MacAddress>().unwrap(), mac);
        assert_eq!("020000000001".parse::<MacAddress>().unwrap(), mac);

        let w: Wwpn = "50:06:0E:80:00:00:00:01".parse().unwrap();
        assert_eq!(w.to_string(), "50:06:0e:80:00:00:00:01");
        assert_eq!(w.as_u64(), 0x5006_0e80_0000_0001);
        assert_eq!(Wwpn::from_u64(w.as_u64()), w);
        assert_eq!("50060e8000000001".parse::<Wwpn>().unwrap(), w);
    }

    #[test]
    fn malformed_identities_are_rejected_with_the_text() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02:00:00:00:00:0g",
            "2:00:00:00:00:001",
            "+2:00:00:00:00:01",
            "0200000000",
            "ää:00:00:00:00:01",
        ] {
            let e = bad.parse::<MacAddress>().unwrap_err();
            assert!(e.to_string().contains("MAC address"), "{e}");
        }
        assert!("50:06:0e:80:00:00:00".parse::<Wwpn>().is_err());
    }

    #[test]
    fn token_enums_round_trip_through_text_and_json() {
        for v in UsbAssignment::ALL {
            assert_eq!(v.to_string().parse::<UsbAssignment>().unwrap(), *v);
            assert_eq!(UsbAssignment::from_code(v.code()), Some(*v));
        }
        assert_eq!("tag".parse::<VlanMode>().unwrap(), VlanMode::Tag);
        assert_eq!(
            "NIC2".parse::<VnicDeviceType>().unwrap(),
            VnicDeviceType::Nic2
        );
        assert!("NIC3".parse::<VnicDeviceType>().is_err());
        assert_eq!(
            serde_json::to_string(&UsbAssignment::HashRunning).unwrap(),
            "\"#R\""
        );
        let mac: MacAddress = serde_json::from_str("\"02:00:00:00:00:2a\"").unwrap();
        assert_eq!(mac.0[5], 0x2a);
        assert_eq!(
            serde_json::to_string(&Wwpn::from_u64(1)).unwrap(),
            "\"00:00:00:00:00:00:00:01\""
        );
        assert!(serde_json::from_str::<Wwpn>("\"nope\"").is_err());
    }

    #[test]
    fn usb_state_on_destination_follows_the_manual() {
        use UsbAssignment::*;
        assert_eq!(Unassigned.on_destination(), Unassigned);
        for s in [Assigned, HashAssigned, Running, HashRunning] {
            assert_eq!(s.on_destination(), Assigned);
        }
        assert!(Running.is_running() && HashRunning.is_running());
        assert!(!HashAssigned.is_running());
    }
}
