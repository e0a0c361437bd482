//! The migration path as the agent configuration names it.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Longest interface name Linux accepts (`IFNAMSIZ` less the trailing NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

/// One migration path: the IPv4 address (and optionally the interface) that
/// migration traffic must use on this host, never the management path.
///
/// `vlan` is carried for validation and reporting only: the transport binds to
/// the address (and interface) that already sits on the VLAN; it does not tag
/// frames itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationPath {
    /// Operator-facing name, e.g. `"mig0"`.
    pub name: String,
    /// The path's local IPv4 address: sockets bind to it before connecting
    /// (source) or listen only on it (destination).
    pub addr: Ipv4Addr,
    /// When given, sockets are also bound to this device (`SO_BINDTODEVICE`,
    /// needs `CAP_NET_RAW`), so routing can never move them to another NIC.
    #[serde(default)]
    pub interface: Option<String>,
    /// 802.1Q VLAN id of the path network, 1..=4094.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The shared NIC segment the path runs on (the manual's "Segment",
    /// e.g. `1a`), for validation: a path on the management path's
    /// segment needs a VLAN ID, and one on a segment an activated LPAR
    /// uses draws a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
}

impl MigrationPath {
    /// A path on `addr` with no interface binding and no VLAN.
    pub fn new(name: impl Into<String>, addr: Ipv4Addr) -> Self {
        MigrationPath {
            name: name.into(),
            addr,
            interface: None,
            vlan: None,
            segment: None,
        }
    }

    /// The same path, bound to `interface` as well.
    pub fn with_interface(mut self, interface: impl Into<String>) -> Self {
        self.interface = Some(interface.into());
        self
    }

    /// Checks what can be checked without touching the network: an address
    /// that can be bound to, a plausible interface name, a VLAN id in range.
    /// Returns the operator-facing reason when the path is unusable.
    pub fn validate(&self) -> Result<(), String> {
        if self.addr.is_unspecified() || self.addr.is_broadcast() || self.addr.is_multicast() {
            return Err(format!(
                "migration path {:?}: {} is not a unicast host address",
                self.name, self.addr
            ));
        }
        if let Some(ifname) = &self.interface
            && (ifname.is_empty()
                || ifname.len() > MAX_INTERFACE_NAME
                || ifname
                    .bytes()
                    .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace()))
        {
            return Err(format!(
                "migration path {:?}: {:?} is not a valid interface name (1 to {} characters, no '/', no spaces)",
                self.name, ifname, MAX_INTERFACE_NAME
            ));
        }
        if let Some(vlan) = self.vlan
            && !(1..=4094).contains(&vlan)
        {
            return Err(format!(
                "migration path {:?}: VLAN id {} is outside 1..=4094",
                self.name, vlan
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_round_trips_through_the_agent_config_format() {
        let p = MigrationPath {
            name: "mig0".into(),
            addr: Ipv4Addr::new(192, 168, 50, 1),
            interface: Some("eth1".into()),
            vlan: Some(100),
            segment: Some("1a".into()),
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<MigrationPath>(&json).unwrap(), p);
        let minimal: MigrationPath =
            serde_json::from_str(r#"{"name":"m","addr":"10.0.0.1"}"#).unwrap();
        assert_eq!(minimal, MigrationPath::new("m", Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let ok = MigrationPath::new("m", Ipv4Addr::LOCALHOST);
        assert!(ok.validate().is_ok());
        let bad_vlan = MigrationPath {
            vlan: Some(4095),
            ..ok.clone()
        };
        assert!(bad_vlan.validate().unwrap_err().contains("VLAN id 4095"));
        let bad_if = ok.clone().with_interface("a-very-long-interface-name");
        assert!(bad_if.validate().unwrap_err().contains("interface name"));
        let unspecified = MigrationPath::new("m", Ipv4Addr::UNSPECIFIED);
        assert!(unspecified.validate().is_err());
    }
}
