//! `moverctl lpar create` and `lpar modify`: the NIC and FC port arguments,
//! so every item of the validation checklist can be set from the command
//! line.
//!
//! ```text
//! --nic SEGMENT[,vlan=ID][,vlan-mode=Tag|Untag|Undef][,mac=auto|XX:XX:XX:XX:XX:XX][,mode=shared|dedicated]
//! --fc-port WWPN/MIGRATION-WWPN[,port=N][,vfc-id=N][,mode=shared|dedicated]
//! ```
//!
//! MAC mode: `mac=auto` (the default) derives the MAC from the MAC seed
//! (the agent's name, the LPAR's name and the NIC's place: a locally
//! administered unicast address, the same every time); a MAC given by hand
//! is marked set manually, and such an LPAR does not migrate live (the
//! manual: the MAC address is not transferred). `vlan=ID` alone means VLAN
//! mode Tag. An FC port's `vfc-id` pins its vfcID (HBA Core Dedicated
//! mode); without it the destination assigns the smallest free one.

use crate::partition::{DeviceMode, FcPortConfig, NicConfig};
use crate::state::{MacAddress, VlanMode};

/// A `--nic` as given, before its MAC is derived.
#[derive(Clone, Debug, PartialEq)]
pub struct NicSpec {
    pub segment: String,
    pub mode: DeviceMode,
    /// `None`: derived from the MAC seed (`mac=auto`).
    pub mac: Option<MacAddress>,
    pub vlan_mode: VlanMode,
    pub vlan_id: u16,
}

fn device_mode(v: &str) -> Result<DeviceMode, String> {
    match v.to_ascii_lowercase().as_str() {
        "shared" => Ok(DeviceMode::Shared),
        "dedicated" => Ok(DeviceMode::Dedicated),
        _ => Err(format!("mode '{v}': give shared or dedicated")),
    }
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{key}={v}: give a whole number"))
}

/// `SEGMENT[,key=value…]` → a NIC.
pub fn parse_nic(text: &str) -> Result<NicSpec, String> {
    let mut parts = text.split(',');
    let segment = parts.next().unwrap_or_default().trim();
    if segment.is_empty() || segment.contains('=') {
        return Err(format!("'{text}': start with the NIC's network segment"));
    }
    let mut nic = NicSpec {
        segment: segment.to_string(),
        mode: DeviceMode::Shared,
        mac: None,
        vlan_mode: VlanMode::Undef,
        vlan_id: 0,
    };
    let mut vlan_mode = None;
    for part in parts {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}': give key=value"))?;
        match k.trim() {
            "vlan" => nic.vlan_id = number("vlan", v)?,
            "vlan-mode" => vlan_mode = Some(v.parse::<VlanMode>().map_err(|e| e.to_string())?),
            "mac" if v.eq_ignore_ascii_case("auto") => nic.mac = None,
            "mac" => {
                nic.mac = Some(
                    v.parse()
                        .map_err(|e: crate::state::ParseIdError| e.to_string())?,
                )
            }
            "mode" => nic.mode = device_mode(v)?,
            other => {
                return Err(format!(
                    "'{other}': a NIC takes vlan, vlan-mode, mac and mode"
                ));
            }
        }
    }
    nic.vlan_mode = vlan_mode.unwrap_or(if nic.vlan_id != 0 {
        VlanMode::Tag
    } else {
        VlanMode::Undef
    });
    Ok(nic)
}

/// The MAC the MAC seed gives NIC `index` of `lpar` defined on `agent`:
/// FNV-1a of the three, as a locally administered unicast address.
pub fn seeded_mac(agent: &str, lpar: &str, index: usize) -> MacAddress {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in agent
        .bytes()
        .chain([0])
        .chain(lpar.bytes())
        .chain([0])
        .chain((index as u64).to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    MacAddress([0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// The NICs of `lpar` on `agent`, their MACs derived where `mac=auto`.
pub fn nics(agent: &str, lpar: &str, specs: &[NicSpec]) -> Vec<NicConfig> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| NicConfig {
            segment: s.segment.clone(),
            mode: s.mode,
            mac: s.mac.unwrap_or_else(|| seeded_mac(agent, lpar, i)),
            mac_set_manually: s.mac.is_some(),
            vlan_mode: s.vlan_mode,
            vlan_id: s.vlan_id,
        })
        .collect()
}

/// `WWPN/MIGRATION-WWPN[,key=value…]` → an FC port (physical port 0 and
/// shared unless said otherwise).
pub fn parse_fc_port(text: &str) -> Result<FcPortConfig, String> {
    let mut parts = text.split(',');
    let pair = parts.next().unwrap_or_default();
    let (w, m) = pair
        .split_once('/')
        .ok_or_else(|| format!("'{text}': give WWPN/MIGRATION-WWPN"))?;
    let mut port = FcPortConfig {
        port: 0,
        mode: DeviceMode::Shared,
        vfc_id: None,
        wwpn: w.parse().map_err(|e| format!("'{w}': {e}"))?,
        migration_wwpn: m.parse().map_err(|e| format!("'{m}': {e}"))?,
    };
    for part in parts {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}': give key=value"))?;
        match k.trim() {
            "port" => port.port = number("port", v)?,
            "vfc-id" => port.vfc_id = Some(number("vfc-id", v)?),
            "mode" => port.mode = device_mode(v)?,
            other => {
                return Err(format!("'{other}': an FC port takes port, vfc-id and mode"));
            }
        }
    }
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nic_reads_segment_vlan_mac_mode_and_device_mode() {
        let n = parse_nic("seg-a").unwrap();
        assert_eq!(
            (n.segment.as_str(), n.mac, n.vlan_mode),
            ("seg-a", None, VlanMode::Undef)
        );
        let n = parse_nic("seg-b,vlan=100,mode=dedicated,mac=02:00:00:00:00:09").unwrap();
        assert_eq!((n.vlan_id, n.vlan_mode), (100, VlanMode::Tag));
        assert_eq!(n.mode, DeviceMode::Dedicated);
        assert_eq!(n.mac, Some("02:00:00:00:00:09".parse().unwrap()));
        let n = parse_nic("seg-c,vlan=7,vlan-mode=untag,mac=auto").unwrap();
        assert_eq!((n.vlan_id, n.vlan_mode, n.mac), (7, VlanMode::Untag, None));
        for bad in [
            "",
            "vlan=3",
            "seg,vlan=x",
            "seg,colour=red",
            "seg,mac=zz",
            "seg,mode=odd",
        ] {
            assert!(parse_nic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auto_macs_are_stable_distinct_and_locally_administered() {
        let specs = vec![
            parse_nic("a").unwrap(),
            parse_nic("b,mac=02:00:00:00:00:09").unwrap(),
        ];
        let n = nics("hostA", "web1", &specs);
        assert_eq!(n, nics("hostA", "web1", &specs));
        assert!(n[0].mac.is_locally_administered_unicast());
        assert!(!n[0].mac_set_manually && n[1].mac_set_manually);
        assert_ne!(
            seeded_mac("hostA", "web1", 0),
            seeded_mac("hostA", "web1", 1)
        );
        assert_ne!(
            seeded_mac("hostA", "web1", 0),
            seeded_mac("hostA", "web2", 0)
        );
    }

    #[test]
    fn an_fc_port_reads_its_pair_port_pinned_vfc_id_and_mode() {
        let w = "50:06:0e:80:12:34:56:01/50:06:0e:80:12:34:56:81";
        let p = parse_fc_port(w).unwrap();
        assert_eq!((p.port, p.vfc_id, p.mode), (0, None, DeviceMode::Shared));
        let p = parse_fc_port(&format!("{w},port=1,vfc-id=7,mode=dedicated")).unwrap();
        assert_eq!(
            (p.port, p.vfc_id, p.mode),
            (1, Some(7), DeviceMode::Dedicated)
        );
        for bad in [
            "x",
            "50:06:0e:80:12:34:56:01",
            &format!("{w},vfc-id=x"),
            &format!("{w},y=1"),
        ] {
            assert!(parse_fc_port(bad).is_err(), "{bad}");
        }
    }
}
