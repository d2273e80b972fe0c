//! What boot media (`bootplane media`) carry: the scripts that bring a machine that cannot
//! network-boot (no PXE ROM, or a LAN whose DHCP cannot be touched) onto the normal chain.
//! Two paths, one per firmware, each ending in the boot decision:
//!
//! - BIOS: iPXE (`ipxe.lkrn`, all of iPXE's own NIC drivers) runs [`ipxe_script`], given
//!   to it as an initrd by the image's GRUB; it configures the network (DHCP, or a static
//!   address) and chains `/v1/boot/ipxe` with the machine's identity.
//! - UEFI: Debian's iPXE (2019) cannot take a script on EFI (no embedded script in the
//!   packaged binary, no `autoexec.ipxe`, no command-line script: those came in 2021), so
//!   the media boot shim → Debian-signed GRUB (Secure Boot works too) and GRUB runs
//!   [`grub_config`]: firmware network through `efinet`, DHCP or a static address, then
//!   the same per-machine config as the shim chain (`crate::grub`) over TFTP.
//!
//! With a machine named, the scripts identify as it (its first MAC, its UUID) whatever
//! NIC the firmware boots from; without, they send what the firmware reports.

use crate::identity::{Mac, SmbiosUuid};
use std::net::Ipv4Addr;

/// How the media's loader gets onto the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaNet {
    Dhcp,
    Static { ip: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr>, dns: Option<Ipv4Addr> },
}

/// The machine the media are made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaIdentity {
    pub mac: Option<Mac>,
    pub uuid: Option<SmbiosUuid>,
}

fn netmask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0))
}

/// The iPXE script of the BIOS path. `server` is the advertise URL.
pub fn ipxe_script(server: &str, net: &MediaNet, who: Option<&MediaIdentity>) -> String {
    let mut s = String::from("#!ipxe\n# bootplane boot media: reach the server, then take the normal chain.\n");
    match net {
        MediaNet::Dhcp => s += "echo bootplane media: DHCP\ndhcp || goto failed\n",
        MediaNet::Static { ip, prefix, gateway, dns } => {
            s += &format!("echo bootplane media: static address {ip}/{prefix}\nifopen net0 || goto failed\n");
            s += &format!("set net0/ip {ip}\nset net0/netmask {}\n", netmask(*prefix));
            if let Some(g) = gateway {
                s += &format!("set net0/gateway {g}\n");
            }
            if let Some(d) = dns {
                s += &format!("set dns {d}\n");
            }
        }
    }
    let mac = who.and_then(|w| w.mac).map(|m| m.to_string().replace(':', "-")).unwrap_or_else(|| "${mac:hexhyp}".into());
    let uuid = who.and_then(|w| w.uuid.clone()).map(|u| u.to_string()).unwrap_or_else(|| "${uuid}".into());
    s += &format!(
        "chain --autofree {server}/v1/boot/ipxe?mac={mac}&uuid={uuid}&serial=${{serial:uristring}}&arch=${{buildarch}}&platform=${{platform}} || goto failed\n\
         exit 1\n\
         :failed\n\
         echo bootplane media: could not reach {server}; booting local disk\n\
         sleep 10\n\
         exit 1\n"
    );
    s
}

/// The GRUB config of the UEFI path. `tftp_server` is bootplane's address (GRUB's TFTP
/// uses port 69).
pub fn grub_config(tftp_server: Ipv4Addr, net: &MediaNet, who: Option<&MediaIdentity>) -> String {
    let mut s = String::from("# bootplane boot media: reach the server, then take the shim chain's config.\nset timeout=0\n");
    match net {
        MediaNet::Dhcp => s += "echo 'bootplane media: DHCP'\nnet_bootp\n",
        MediaNet::Static { ip, prefix, gateway, dns } => {
            s += &format!("echo 'bootplane media: static address {ip}/{prefix}'\n");
            s += &format!("net_add_addr bootplane efinet0 {ip}\n");
            let network = Ipv4Addr::from(u32::from(*ip) & u32::from(netmask(*prefix)));
            s += &format!("net_add_route bootplane_lan {network}/{prefix} bootplane\n");
            if let Some(g) = gateway {
                s += &format!("net_add_route bootplane_default 0.0.0.0/0 gw {g}\n");
            }
            if let Some(d) = dns {
                s += &format!("net_add_dns {d}\n");
            }
        }
    }
    // GRUB names an interface's variables after it, `:` made `_` (`net_bootp` adds
    // `efinet0:dhcp`); `net_default_mac` exists only after a network boot.
    let iface_mac = match net {
        MediaNet::Dhcp => "${net_efinet0_dhcp_mac}",
        MediaNet::Static { .. } => "${net_bootplane_mac}",
    };
    let mac = who.and_then(|w| w.mac).map(|m| m.to_string()).unwrap_or_else(|| iface_mac.into());
    match who.and_then(|w| w.uuid.clone()) {
        Some(u) => s += &format!("set bootplane_uuid={u}\n"),
        None => s += "set bootplane_uuid=\nsmbios --type 1 --get-uuid 8 --set bootplane_uuid\n",
    }
    s += &format!(
        "set root=tftp,{tftp_server}\n\
         configfile \"(tftp,{tftp_server})/{}/{mac}/${{bootplane_uuid}}\"\n\
         echo 'bootplane media: could not reach {tftp_server} over TFTP'\n\
         sleep 10\n\
         exit\n",
        crate::grub::CONFIG_DIR
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> MediaIdentity {
        MediaIdentity { mac: Some("52:54:00:aa:bb:01".parse().unwrap()), uuid: Some("4c4c4544-0000-1000-8000-000000000001".parse().unwrap()) }
    }

    #[test]
    fn ipxe_dhcp_for_any_machine_passes_what_the_firmware_reports() {
        let s = ipxe_script("http://198.18.0.1:8080", &MediaNet::Dhcp, None);
        assert!(s.starts_with("#!ipxe\n") && s.contains("\ndhcp || goto failed\n"), "{s}");
        assert!(s.contains("chain --autofree http://198.18.0.1:8080/v1/boot/ipxe?mac=${mac:hexhyp}&uuid=${uuid}&"), "{s}");
        crate::ipxe::lint(&s).unwrap();
    }

    #[test]
    fn ipxe_static_for_a_named_machine_identifies_as_it() {
        let net = MediaNet::Static { ip: "198.18.5.20".parse().unwrap(), prefix: 24, gateway: Some("198.18.5.1".parse().unwrap()), dns: None };
        let s = ipxe_script("http://198.18.5.2:8080", &net, Some(&machine()));
        assert!(!s.contains("\ndhcp"), "{s}");
        assert!(s.contains("set net0/ip 198.18.5.20\nset net0/netmask 255.255.255.0\nset net0/gateway 198.18.5.1\n"), "{s}");
        assert!(s.contains("?mac=52-54-00-aa-bb-01&uuid=4c4c4544-0000-1000-8000-000000000001&"), "{s}");
        crate::ipxe::lint(&s).unwrap();
    }

    #[test]
    fn grub_static_and_dhcp() {
        let net = MediaNet::Static { ip: "198.18.5.20".parse().unwrap(), prefix: 22, gateway: None, dns: None };
        let s = grub_config("198.18.5.2".parse().unwrap(), &net, Some(&machine()));
        assert!(s.contains("net_add_addr bootplane efinet0 198.18.5.20\nnet_add_route bootplane_lan 198.18.4.0/22 bootplane\n"), "{s}");
        assert!(s.contains("configfile \"(tftp,198.18.5.2)/bootplane/grub/52:54:00:aa:bb:01/${bootplane_uuid}\""), "{s}");
        assert!(s.contains("set bootplane_uuid=4c4c4544-0000-1000-8000-000000000001\n") && !s.contains("net_bootp"), "{s}");
        let s = grub_config("198.18.5.2".parse().unwrap(), &MediaNet::Dhcp, None);
        assert!(s.contains("net_bootp\n") && s.contains("/${net_efinet0_dhcp_mac}/${bootplane_uuid}") && s.contains("smbios"), "{s}");
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
    }
}
