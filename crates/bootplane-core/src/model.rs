//! The objects of the spec as data: what the configuration declares (machines, bundles,
//! clusters) and what the store keeps about a machine at runtime. These types are the
//! single definition shared by the YAML file, the store and the HTTP API; unknown keys are
//! refused everywhere so a typo never silently disables a setting.

use crate::identity::{Mac, Observed, SmbiosUuid};
use crate::state::MachineState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The first network stage a UEFI x86-64 machine gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loader {
    /// iPXE (`dhcp.boot_files`): every iPXE feature, no Secure Boot.
    #[default]
    Ipxe,
    /// shim → GRUB → kernel: boots with Secure Boot on.
    Shim,
}

/// The TFTP (and `/boot/`) name of shim. Shim loads [`GRUB_FILE`] from the same place.
pub const SHIM_FILE: &str = "shimx64.efi";
/// The second stage's name: shim's default (its `DEFAULT_LOADER`).
pub const GRUB_FILE: &str = "grubx64.efi";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Agent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsKind {
    Fcos,
    Flatcar,
    Ubuntu,
    Generic,
}

impl OsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OsKind::Fcos => "fcos",
            OsKind::Flatcar => "flatcar",
            OsKind::Ubuntu => "ubuntu",
            OsKind::Generic => "generic",
        }
    }
}

/// A machine as the operator declares it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<Mac>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<SmbiosUuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_disk: Option<String>,
    /// Allows a kernel-assigned name such as `/dev/sda` as install disk. Off by default:
    /// those names move between boots and can wipe the wrong disk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unstable_install_disk: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Install when first applied; never reinstalls an installed machine.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provision: bool,
    /// How its power is controlled (BMC or commands), for `machines power` and `reinstall`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<crate::power::PowerSpec>,
    /// Its first network stage on UEFI x86-64: `ipxe`, or `shim` (Secure Boot). Default:
    /// the bundle's, else `dhcp.loader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loader: Option<Loader>,
    /// Butane merged into the generated config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub butane: Option<String>,
    /// Names of top-level `templates` applied to this machine, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
    /// A static address for the installed OS; without it the OS uses DHCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<StaticNetwork>,
}

/// A machine's static network. Missing values come from the machine's `ip` and the
/// `dhcp` section (netmask, router, dns, domain), so a reserved address needs only
/// `network: {}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNetwork {
    /// `ADDRESS/PREFIX`, e.g. `10.20.0.5/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The NIC by kernel name; by default the machine's first MAC picks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

impl MachineSpec {
    /// The short host name: the first label of `hostname`, or the machine name.
    pub fn short_hostname(&self) -> &str {
        let h = self.hostname.as_deref().unwrap_or(&self.name);
        h.split('.').next().unwrap_or(h)
    }
    /// Whether `other` names this machine's host: short name and FQDN both match.
    pub fn hostname_matches(&self, other: &str) -> bool {
        let other = other.trim_end_matches('.');
        let full = self.hostname.as_deref().unwrap_or(&self.name);
        other.eq_ignore_ascii_case(full) || other.eq_ignore_ascii_case(self.short_hostname())
    }
}

/// One file of a bundle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// With `url` and `sha256`: `false` sends machines to `url` itself (unverified);
    /// by default bootplane fetches the file, checks it, and serves its own copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<bool>,
}

impl Artifact {
    /// Whether machines get this file from bootplane (`/artifacts/...`) rather than from
    /// its own URL: a file without a URL, or one whose sha256 bootplane can verify.
    pub fn served_locally(&self) -> bool {
        let verifiable = self.sha256.as_deref().is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        self.url.is_none() || (verifiable && self.proxy != Some(false))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub name: String,
    pub os: OsKind,
    #[serde(default = "default_arch")]
    pub arch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Artifact>,
    /// The image's detached OpenPGP signature, served as `image.sig` beside the image:
    /// coreos-installer fetches `<image_url>.sig` and stops when it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_sig: Option<Artifact>,
    /// Install an unsigned image (`coreos.inst.insecure`): an explicit choice for an image
    /// you built yourself, never a fallback.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_image: bool,
    /// Kernel arguments; a template for `generic` bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Default Butane `variant version` for machines without their own, e.g. `fcos 1.5.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub butane_version: Option<String>,
    /// Air-gapped k3s: the `k3s` binary for this architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s: Option<Artifact>,
    /// Air-gapped k3s: the `k3s-airgap-images-*.tar[.zst]` archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s_images: Option<Artifact>,
    /// Air-gapped k3s on fcos: the `k3s-selinux` RPM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s_selinux: Option<Artifact>,
    /// fcos: the live ISO (`*-live.x86_64.iso`), which `bootplane media NAME --format
    /// live-iso` copies with the machine's live Ignition embedded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_iso: Option<Artifact>,
    /// The OS's own Microsoft-signed shim, for its machines on the Secure Boot chain
    /// (instead of `tftp.shim`); also served as `shimx64.efi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shim: Option<Artifact>,
    /// The OS's own signed network GRUB, beside its shim (also served as `grubx64.efi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grub: Option<Artifact>,
    /// The first network stage of the machines installing it on UEFI x86-64 (`ipxe` or
    /// `shim`), unless a machine says otherwise. Default: `dhcp.loader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loader: Option<Loader>,
    /// The store's revision of this definition (1, then +1 per changed definition); 0 for
    /// a bundle read from a file. Set by the store, never written in YAML.
    #[serde(skip)]
    pub revision: u32,
}

fn default_arch() -> String {
    "x86_64".into()
}

impl Bundle {
    /// A bundle with no files yet.
    pub fn new(name: &str, os: OsKind, arch: &str) -> Self {
        Bundle {
            name: name.into(),
            os,
            arch: arch.into(),
            kernel: None,
            initramfs: None,
            initrd: None,
            rootfs: None,
            image: None,
            image_sig: None,
            insecure_image: false,
            args: None,
            butane_version: None,
            k3s: None,
            k3s_images: None,
            k3s_selinux: None,
            live_iso: None,
            shim: None,
            grub: None,
            loader: None,
            revision: 0,
        }
    }

    /// `name@revision` for a stored bundle (so its URLs keep naming the files a machine
    /// started with after the bundle is redefined), else the name.
    pub fn pinned_name(&self) -> String {
        match self.revision {
            0 => self.name.clone(),
            r => format!("{}@{r}", self.name),
        }
    }

    /// Every role a bundle file can have; also its name under `/artifacts/{bundle}/`.
    pub const ROLES: [&'static str; 12] =
        ["kernel", "initramfs", "initrd", "rootfs", "image", "image.sig", "k3s", "k3s_images", "k3s_selinux", "live_iso", "shim", "grub"];

    /// The slot of `role`, or `None` for a name that is not a role.
    pub fn slot_mut(&mut self, role: &str) -> Option<&mut Option<Artifact>> {
        Some(match role {
            "kernel" => &mut self.kernel,
            "initramfs" => &mut self.initramfs,
            "initrd" => &mut self.initrd,
            "rootfs" => &mut self.rootfs,
            "image" => &mut self.image,
            "image.sig" => &mut self.image_sig,
            "k3s" => &mut self.k3s,
            "k3s_images" => &mut self.k3s_images,
            "k3s_selinux" => &mut self.k3s_selinux,
            "live_iso" => &mut self.live_iso,
            "shim" => &mut self.shim,
            "grub" => &mut self.grub,
            _ => return None,
        })
    }

    /// The artifact served under `role`; `initrd` and `initramfs` stand for each other, and
    /// the loaders answer to the names shim and firmware ask for.
    pub fn artifact(&self, role: &str) -> Option<&Artifact> {
        match role {
            "initramfs" => self.initrd_artifact(),
            "initrd" => self.initrd.as_ref().or(self.initramfs.as_ref()),
            SHIM_FILE => self.shim.as_ref(),
            GRUB_FILE => self.grub.as_ref(),
            _ => self.artifacts().into_iter().find(|(r, _)| *r == role).map(|(_, a)| a),
        }
    }

    /// The bundle's files with their roles, in [`Bundle::ROLES`] order.
    pub fn artifacts(&self) -> Vec<(&'static str, &Artifact)> {
        let slots = [
            &self.kernel,
            &self.initramfs,
            &self.initrd,
            &self.rootfs,
            &self.image,
            &self.image_sig,
            &self.k3s,
            &self.k3s_images,
            &self.k3s_selinux,
            &self.live_iso,
            &self.shim,
            &self.grub,
        ];
        Self::ROLES.iter().zip(slots).filter_map(|(r, a)| a.as_ref().map(|a| (*r, a))).collect()
    }

    /// True when bootplane serves the image itself but has no signature to serve beside
    /// it, and the bundle did not opt out of signature checks (`insecure_image`).
    pub fn lacks_image_signature(&self) -> bool {
        let in_store = self.image_sig.as_ref().is_some_and(|s| s.url.is_none() && s.sha256.is_some());
        !self.insecure_image && self.image.as_ref().is_some_and(|i| i.url.is_none()) && !in_store
    }

    /// The initial ramdisk, whichever of the two spellings the bundle uses.
    pub fn initrd_artifact(&self) -> Option<&Artifact> {
        self.initramfs.as_ref().or(self.initrd.as_ref())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3sSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The API endpoint joiners use (a VIP or the bootstrap server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_san: Vec<String>,
    /// Left unset, k3s's built-in flannel (vxlan) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flannel_backend: Option<String>,
    /// The server that runs `cluster-init`. Default: the first `server` in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// A bundle holding `k3s` (and `k3s_images`, `k3s_selinux`) for air-gapped installs;
    /// without it nodes download the pinned release from GitHub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub airgap_bundle: Option<String>,
    /// Install k3s-selinux and run k3s with `selinux: true` on fcos (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<bool>,
    /// Extra keys for every server's `/etc/rancher/k3s/config.yaml`, e.g.
    /// `kubelet-arg: [cgroup-driver=systemd]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_config: BTreeMap<String, serde_json::Value>,
    /// Extra keys for every agent's config.yaml.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agent_extra_config: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    #[serde(default)]
    pub k3s: K3sSettings,
    /// A control-plane virtual IP, held by kube-vip on the servers (seed 002).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<Vip>,
}

/// The control-plane VIP: kube-vip on every server announces it by ARP on `interface`,
/// one server at a time (leader election); joiners and the admin reach the API there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    pub address: std::net::Ipv4Addr,
    /// The servers' LAN interface as the installed OS names it (e.g. `eth0`, `enp1s0`).
    pub interface: String,
    /// kube-vip's image; air-gapped sites name their registry's copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// A machine as the store knows it: the declared spec plus runtime facts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub spec: MachineSpec,
    pub state: MachineState,
    /// Installer scripts served since the machine last entered `provision`.
    pub install_attempts: u32,
    /// Bumped whenever a credential is retired; the live credential derives from it.
    pub credential_generation: u32,
    /// The last identity signals seen from this machine.
    #[serde(default)]
    pub observed: Observed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
}

impl MachineRecord {
    /// A record that has never booted: no attempts, first credential, nothing observed.
    pub fn fresh(spec: MachineSpec, state: crate::MachineState, now: chrono::DateTime<chrono::Utc>) -> Self {
        MachineRecord {
            spec,
            state,
            install_attempts: 0,
            credential_generation: 0,
            observed: Default::default(),
            last_seen: None,
            created: now,
            updated: now,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

/// The name under which an unknown machine is recorded.
pub fn discovered_name(obs: &Observed) -> Option<String> {
    if let Some(mac) = obs.mac {
        Some(format!("discovered-{}", hex::encode(mac.0)))
    } else {
        obs.uuid
            .as_ref()
            .map(|u| format!("discovered-{}", u.as_str().replace('-', "")))
    }
}

/// A DNS label: what machine and cluster names must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A hostname: one or more DNS labels (any case) separated by dots.
pub fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_short_and_fqdn_both_match() {
        let m = MachineSpec { name: "lenovo1".into(), hostname: Some("lenovo1.lab.internal".into()), ..Default::default() };
        assert_eq!(m.short_hostname(), "lenovo1");
        assert!(m.hostname_matches("lenovo1"));
        assert!(m.hostname_matches("LENOVO1.lab.internal."));
        assert!(!m.hostname_matches("lenovo2"));
    }

    #[test]
    fn labels() {
        assert!(is_dns_label("lenovo-1"));
        assert!(!is_dns_label("Lenovo1") && !is_dns_label("-a") && !is_dns_label("a_b") && !is_dns_label(""));
        assert!(is_hostname("lenovo1.lab.internal") && !is_hostname("a..b") && !is_hostname("a b"));
    }
}

/// A DHCP lease as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub ip: std::net::Ipv4Addr,
    pub mac: Mac,
    pub state: LeaseState,
    /// Unix seconds.
    pub expires: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Offered, not yet requested; held briefly.
    Offered,
    Bound,
    /// Given back by the client; the address stays associated with it for next time.
    Released,
    /// The client found the address in use; not offered to anyone until it expires.
    Declined,
}
