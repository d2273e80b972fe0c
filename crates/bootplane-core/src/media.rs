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
//!
//! A third kind, for fcos bundles with a live ISO: the distribution's own live ISO with
//! the machine's live Ignition embedded ([`live_ignition`], put in by coreos-installer's
//! library). Its gate asks `/v1/boot/live` ([`live_answer`], the same decision as every
//! other path) before coreos-installer may write the disk, and fetches the one-time
//! install URLs and the machine's credential from that answer: the stick carries no
//! secret and never reinstalls a machine bootplane says is installed.

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

/// The live ISO's gate (see the module doc); its `bp_curl` is inserted by
/// [`crate::node::script`].
pub const LIVE_GATE_SCRIPT: &str = include_str!("scripts/live-gate.sh");

/// The answer of `/v1/boot/live`: `key=value` lines the gate reads without evaluating
/// them. An install answer names the target disk and the attempt's one-time URLs (the
/// install Ignition, the machine's `machine.env`); any other answer only says why not.
pub fn live_answer(d: &crate::decision::BootDecision) -> String {
    use crate::decision::BootDecision as D;
    let one_line = |v: &str| v.replace(['\n', '\r'], " ");
    let refuse = |decision: &str, machine: Option<&str>, note: String| {
        let machine = machine.map(|m| format!("machine={}\n", one_line(m))).unwrap_or_default();
        format!("# bootplane live ISO answer\ndecision={decision}\n{machine}note={}\n", one_line(&note))
    };
    match d {
        D::Install { machine, plan, .. } => {
            let arg = |k: &str| plan.args.split_whitespace().find_map(|a| a.strip_prefix(k).map(str::to_string));
            let (Some(dev), Some(ign), Some(live)) = (arg("coreos.inst.install_dev="), arg("coreos.inst.ignition_url="), arg("ignition.config.url=")) else {
                return refuse("misconfigured", Some(machine), format!("{machine}'s bundle does not install with coreos-installer (an fcos bundle is needed for a live ISO)"));
            };
            let env = live.replacen("/installer?", "/live-env?", 1);
            let mut s = format!("# bootplane live ISO answer\ndecision=install\nmachine={machine}\ndest_device={dev}\nignition_url={ign}\nenv_url={env}\n");
            if let Some(image) = arg("coreos.inst.image_url=") {
                s += &format!("image_url={image}\n");
            }
            if plan.args.split_whitespace().any(|a| a == "coreos.inst.insecure") {
                s += "insecure=true\n";
            }
            s
        }
        D::LocalBoot { machine, state } => refuse("local", Some(machine), format!("{machine} is {state}{}", crate::decision::local_boot_note(*state))),
        D::Quarantine { reason } => refuse("quarantine", None, reason.clone()),
        D::Misconfigured { machine, reason } => refuse("misconfigured", Some(machine), format!("cannot install {machine}: {reason}")),
        D::AttemptsExhausted { machine, attempts } => refuse("attempts_exhausted", Some(machine), format!("{machine} failed after {attempts} install attempts")),
    }
}

/// The live Ignition embedded in a machine's live ISO (spec 3.3.0, what every fcos live
/// image reads): who it is and where bootplane is (no credential), the gate and the
/// disk-written report of the network path (`os::fcos::live_config`), a non-empty
/// `installer.d` so the live image's generator starts coreos-installer, and a
/// NetworkManager profile for a static address (copied to the installed system).
pub fn live_ignition(m: &crate::model::MachineSpec, server: &str, ca_pem: Option<&str>, net: &MediaNet, who: &MediaIdentity) -> serde_json::Value {
    use crate::ignition::data_url;
    use serde_json::json;
    let file = |path: &str, mode: u32, text: &str| json!({ "path": path, "overwrite": true, "contents": { "source": data_url(text.as_bytes()) }, "mode": mode });
    let mut cfg = crate::os::fcos::live_config(m, server, "", ca_pem);
    let files = cfg["storage"]["files"].as_array_mut().expect("live_config has files");
    // The credential comes from the gate's one-time fetch, never from the stick.
    files.retain(|f| f["path"] != "/etc/bootplane/machine.env");
    let mac = who.mac.map(|m| m.to_string()).unwrap_or_default();
    let uuid = who.uuid.as_ref().map(|u| u.to_string()).unwrap_or_default();
    files.push(file("/etc/bootplane/media.env", 0o644, &format!("BOOTPLANE_URL={server}\nBOOTPLANE_MACHINE={}\nBOOTPLANE_MAC={mac}\nBOOTPLANE_UUID={uuid}\n", m.name)));
    files.push(file("/etc/bootplane/gate", 0o700, &crate::node::script(LIVE_GATE_SCRIPT)));
    let mut installer = String::from("# bootplane: the gate adds the target disk and the install URLs once bootplane says install\nfetch-retries: 5\n");
    if let MediaNet::Static { ip, prefix, gateway, dns } = net {
        installer += "copy-network: true\n";
        let mut profile = format!(
            "[connection]\nid=bootplane\ntype=ethernet\nautoconnect-priority=100\n\n[ipv4]\nmethod=manual\naddress1={ip}/{prefix}{}\n",
            gateway.map(|g| format!(",{g}")).unwrap_or_default()
        );
        if let Some(d) = dns {
            profile += &format!("dns={d};\n");
        }
        profile += "\n[ipv6]\nmethod=disabled\n";
        files.push(file("/etc/NetworkManager/system-connections/bootplane.nmconnection", 0o600, &profile));
    }
    files.push(file("/etc/coreos/installer.d/40-bootplane-media.yaml", 0o644, &installer));
    let gate = "[Unit]\nDescription=Ask bootplane before installing\nWants=network-online.target\nAfter=network-online.target\n\
                Before=coreos-installer.service\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/bash /etc/bootplane/gate\n\
                StandardOutput=journal+console\nStandardError=journal+console\n\n[Install]\nRequiredBy=coreos-installer.service\n";
    cfg["systemd"]["units"].as_array_mut().expect("live_config has units").push(json!({ "name": "bootplane-gate.service", "enabled": true, "contents": gate }));
    cfg
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

    fn install(args: &str) -> crate::decision::BootDecision {
        let plan = crate::os::InstallerPlan { kernel_url: "http://k".into(), initrds: vec![], args: args.into() };
        crate::decision::BootDecision::Install { machine: "n1".into(), bundle: "fcos".into(), plan }
    }

    fn answer(text: &str) -> Vec<(String, String)> {
        text.lines().filter(|l| !l.starts_with('#')).map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).expect(l)).collect()
    }

    #[test]
    fn live_answers_carry_the_attempts_urls_or_say_why_not() {
        let a = live_answer(&install(
            "coreos.live.rootfs_url=http://bp/artifacts/fcos/rootfs coreos.inst.install_dev=/dev/vda \
             coreos.inst.ignition_url=http://bp/v1/machines/n1/ignition?nonce=ab ignition.firstboot \
             ignition.config.url=http://bp/v1/machines/n1/installer?nonce=ab coreos.inst.insecure coreos.inst.image_url=http://bp/artifacts/fcos/image",
        ));
        let want = [
            ("decision", "install"),
            ("machine", "n1"),
            ("dest_device", "/dev/vda"),
            ("ignition_url", "http://bp/v1/machines/n1/ignition?nonce=ab"),
            ("env_url", "http://bp/v1/machines/n1/live-env?nonce=ab"),
            ("image_url", "http://bp/artifacts/fcos/image"),
            ("insecure", "true"),
        ];
        assert_eq!(answer(&a), want.map(|(k, v)| (k.to_string(), v.to_string())));
        // A bundle coreos-installer does not install (flatcar's kernel line) cannot be one.
        let a = answer(&live_answer(&install("flatcar.first_boot=1 ignition.config.url=http://bp/x")));
        assert_eq!(a[0], ("decision".into(), "misconfigured".into()), "{a:?}");
        let local = crate::decision::BootDecision::LocalBoot { machine: "n1".into(), state: crate::MachineState::Failed };
        let a = answer(&live_answer(&local));
        assert_eq!(a[0].1, "local");
        assert!(a[2].1.starts_with("n1 is failed (its install failed"), "{a:?}");
        // What a requester sent never becomes a second line.
        let q = crate::decision::BootDecision::Quarantine { reason: "unknown\ndecision=install".into() };
        let a = answer(&live_answer(&q));
        assert_eq!(a.iter().filter(|(k, _)| k == "decision").count(), 1, "{a:?}");
        assert_eq!(a[0].1, "quarantine");
    }

    #[test]
    fn the_live_ignition_holds_no_credential_and_validates() {
        let m = crate::model::MachineSpec { name: "n1".into(), install_disk: Some("/dev/vda".into()), ..Default::default() };
        let net = MediaNet::Static { ip: "198.18.5.20".parse().unwrap(), prefix: 24, gateway: Some("198.18.5.1".parse().unwrap()), dns: Some("198.18.5.1".parse().unwrap()) };
        let cfg = live_ignition(&m, "http://198.18.5.2:8080", None, &net, &machine());
        let text = cfg.to_string();
        let report = bootplane_butane::ignition::validate(&text);
        assert!(report.iter().all(|e| e.level != bootplane_butane::Level::Error), "{report:?}");
        let files: Vec<&str> = cfg["storage"]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert!(!files.contains(&"/etc/bootplane/machine.env"), "{files:?}");
        for f in ["/etc/bootplane/gate", "/etc/bootplane/written", "/etc/bootplane/media.env", "/etc/coreos/installer.d/40-bootplane-media.yaml", "/etc/NetworkManager/system-connections/bootplane.nmconnection"] {
            assert!(files.contains(&f), "{f} in {files:?}");
        }
        let decoded = |path: &str| {
            let f = cfg["storage"]["files"].as_array().unwrap().iter().find(|f| f["path"] == path).unwrap();
            String::from_utf8(bootplane_butane::dataurl::decode(f["contents"]["source"].as_str().unwrap()).unwrap()).unwrap()
        };
        assert!(!decoded("/etc/bootplane/media.env").contains("CREDENTIAL"));
        assert!(decoded("/etc/bootplane/media.env").contains("BOOTPLANE_MAC=52:54:00:aa:bb:01\nBOOTPLANE_UUID=4c4c4544-0000-1000-8000-000000000001\n"));
        // Two `dest-device`s make coreos-installer refuse: the gate writes the only one.
        let installer = decoded("/etc/coreos/installer.d/40-bootplane-media.yaml");
        assert!(!installer.contains("dest-device") && installer.contains("copy-network: true"), "{installer}");
        assert!(decoded("/etc/NetworkManager/system-connections/bootplane.nmconnection").contains("address1=198.18.5.20/24,198.18.5.1\ndns=198.18.5.1;\n"));
        assert!(decoded("/etc/bootplane/gate").contains("bp_curl() {"));
        let units: Vec<&str> = cfg["systemd"]["units"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
        assert!(units.contains(&"bootplane-gate.service") && units.contains(&"bootplane-written.service"), "{units:?}");
        let dhcp = live_ignition(&m, "http://198.18.5.2:8080", None, &MediaNet::Dhcp, &machine()).to_string();
        assert!(!dhcp.contains("nmconnection") && !dhcp.contains("copy-network"), "{dhcp}");
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
    }
}
