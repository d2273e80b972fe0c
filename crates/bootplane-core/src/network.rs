//! A machine's static network in each OS's own format: NetworkManager keyfiles on fcos,
//! systemd-networkd `.network` files on Flatcar, netplan for Ubuntu. The NIC is picked
//! by the machine's first MAC unless an interface name is given, so renamed or
//! reordered NICs do not move the address.

use crate::model::MachineSpec;
use std::net::Ipv4Addr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Static {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub interface: Option<String>,
    pub mac: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("machine {machine}: network.address `{value}` is not ADDRESS/PREFIX such as 10.20.0.5/24")]
    BadAddress { machine: String, value: String },
    #[error("machine {machine}: static network needs an address: set network.address or the machine's ip (with dhcp.netmask)")]
    NoAddress { machine: String },
    #[error("machine {machine}: static network needs network.interface or a MAC to pick the NIC")]
    NoNic { machine: String },
}

/// Parses `a.b.c.d/len`.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    let p: u8 = p.parse().ok().filter(|p| *p <= 32)?;
    Some((a.parse().ok()?, p))
}

/// The prefix length of a contiguous netmask.
pub fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    (m.leading_ones() + m.trailing_zeros() == 32).then_some(m.leading_ones() as u8)
}

/// The machine's static network, or `None` when it uses DHCP.
pub fn of(m: &MachineSpec) -> Result<Option<Static>, NetworkError> {
    let Some(n) = &m.network else { return Ok(None) };
    let machine = m.name.clone();
    let (address, prefix) = match &n.address {
        Some(a) => parse_cidr(a).ok_or_else(|| NetworkError::BadAddress { machine: machine.clone(), value: a.clone() })?,
        None => return Err(NetworkError::NoAddress { machine }),
    };
    let mac = m.macs.first().map(|x| x.to_string());
    if n.interface.is_none() && mac.is_none() {
        return Err(NetworkError::NoNic { machine });
    }
    Ok(Some(Static { address, prefix, gateway: n.gateway, dns: n.dns.clone(), domain: n.domain.clone(), interface: n.interface.clone(), mac }))
}

fn join(v: &[Ipv4Addr], sep: &str) -> String {
    v.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(sep)
}

/// `(path, contents)` of a NetworkManager keyfile (mode 0600, or NM ignores it).
pub fn nm_keyfile(s: &Static) -> (String, String) {
    let mut t = String::from("# Written by bootplane.\n[connection]\nid=bootplane-static\ntype=ethernet\nautoconnect-priority=100\n");
    if let Some(i) = &s.interface {
        t += &format!("interface-name={i}\n");
    }
    t += "\n[ethernet]\n";
    if let (None, Some(mac)) = (&s.interface, &s.mac) {
        t += &format!("mac-address={}\n", mac.to_ascii_uppercase());
    }
    t += &format!("\n[ipv4]\nmethod=manual\naddress1={}/{}", s.address, s.prefix);
    if let Some(g) = s.gateway {
        t += &format!(",{g}");
    }
    t += "\n";
    if !s.dns.is_empty() {
        t += &format!("dns={};\n", join(&s.dns, ";"));
    }
    if let Some(d) = &s.domain {
        t += &format!("dns-search={d};\n");
    }
    t += "\n[ipv6]\nmethod=disabled\n";
    ("/etc/NetworkManager/system-connections/bootplane-static.nmconnection".into(), t)
}

/// `(path, contents)` of a systemd-networkd unit; `00-` sorts it before Flatcar's
/// catch-all DHCP file.
pub fn networkd(s: &Static) -> (String, String) {
    let mut t = String::from("# Written by bootplane.\n[Match]\n");
    match (&s.interface, &s.mac) {
        (Some(i), _) => t += &format!("Name={i}\n"),
        (None, Some(mac)) => t += &format!("MACAddress={mac}\n"),
        (None, None) => {}
    }
    t += &format!("\n[Network]\nAddress={}/{}\n", s.address, s.prefix);
    if let Some(g) = s.gateway {
        t += &format!("Gateway={g}\n");
    }
    for d in &s.dns {
        t += &format!("DNS={d}\n");
    }
    if let Some(d) = &s.domain {
        t += &format!("Domains={d}\n");
    }
    ("/etc/systemd/network/00-bootplane-static.network".into(), t)
}

/// The netplan `network:` value (version 2) for Ubuntu's autoinstall.
pub fn netplan(s: &Static) -> serde_json::Value {
    let mut eth = serde_json::json!({ "addresses": [format!("{}/{}", s.address, s.prefix)], "dhcp4": false });
    match (&s.interface, &s.mac) {
        (Some(i), _) => eth["match"] = serde_json::json!({ "name": i }),
        (None, Some(mac)) => eth["match"] = serde_json::json!({ "macaddress": mac }),
        (None, None) => {}
    }
    if let Some(g) = s.gateway {
        eth["routes"] = serde_json::json!([{ "to": "default", "via": g.to_string() }]);
    }
    if !s.dns.is_empty() || s.domain.is_some() {
        let mut ns = serde_json::json!({ "addresses": s.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>() });
        if let Some(d) = &s.domain {
            ns["search"] = serde_json::json!([d]);
        }
        eth["nameservers"] = ns;
    }
    serde_json::json!({ "version": 2, "ethernets": { "bootplane0": eth } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StaticNetwork;

    fn machine() -> MachineSpec {
        MachineSpec {
            name: "lenovo1".into(),
            macs: vec!["52:54:00:12:34:56".parse().unwrap()],
            network: Some(StaticNetwork {
                address: Some("10.20.0.5/24".into()),
                gateway: Some("10.20.0.1".parse().unwrap()),
                dns: vec!["10.20.0.10".parse().unwrap()],
                domain: Some("lab.internal".into()),
                interface: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_os_format_matches_by_mac() {
        let s = of(&machine()).unwrap().unwrap();
        let (p, nm) = nm_keyfile(&s);
        assert!(p.ends_with(".nmconnection"));
        assert!(nm.contains("mac-address=52:54:00:12:34:56\n") && nm.contains("address1=10.20.0.5/24,10.20.0.1\n") && nm.contains("dns=10.20.0.10;\n"), "{nm}");
        let (_, nd) = networkd(&s);
        assert!(nd.contains("MACAddress=52:54:00:12:34:56\n") && nd.contains("Gateway=10.20.0.1\n"), "{nd}");
        let np = netplan(&s);
        assert_eq!(np["ethernets"]["bootplane0"]["routes"][0]["via"], "10.20.0.1");
    }

    #[test]
    fn bad_values_are_named() {
        let mut m = machine();
        m.network.as_mut().unwrap().address = Some("10.20.0.5".into());
        assert!(matches!(of(&m), Err(NetworkError::BadAddress { .. })));
        m.network.as_mut().unwrap().address = None;
        assert!(matches!(of(&m), Err(NetworkError::NoAddress { .. })));
        assert_eq!(prefix_of("255.255.255.0".parse().unwrap()), Some(24));
        assert_eq!(prefix_of("255.0.255.0".parse().unwrap()), None);
    }
}
