//! The `server`, `dhcp`, `tftp` and `ui` sections. DHCP and TFTP settings are parsed and stored
//! here even where the services that use them live elsewhere, so a typo is caught at
//! `apply`, not at 3 a.m. when the first machine boots.

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// HTTP API, boot scripts, artifacts and dashboard.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How machines reach this server, e.g. `http://10.20.0.10:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The store: `sqlite:PATH`, or `postgres://USER@HOST/DB` for several instances on one
    /// database. Default: `bootplane.db` in the data directory. `--database` overrides it.
    /// Keep a password out of this file: PostgreSQL's `PGPASSFILE` (~/.pgpass) or the
    /// `BOOTPLANE_DATABASE` environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The key sealing cluster tokens and kubeconfigs in the store. Default:
    /// `secret.key` in the data directory, created on first start. Instances sharing one
    /// PostgreSQL store must all use the same key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<PathBuf>,
    /// Installer scripts served without a report before a machine is marked `failed`.
    #[serde(default = "default_attempts")]
    pub max_install_attempts: u32,
    /// Events kept in the store; older ones are dropped.
    #[serde(default = "default_events")]
    pub events_retained: u64,
    /// Days audit events (state changes, configs and joins served or refused, alarms) are
    /// kept; they do not count against `events_retained`.
    #[serde(default = "default_audit_days")]
    pub audit_events_days: u32,
    /// Events (boot scripts, discoveries, refusals) one source address may cause per
    /// minute without authenticating; the rest are counted, not written.
    #[serde(default = "default_noise")]
    pub unauthenticated_events_per_minute: u32,
    /// Boot decisions (`/v1/boot/ipxe`) one source address gets per minute; more get 429.
    #[serde(default = "default_boots")]
    pub boot_requests_per_minute: u32,
    /// Unknown machines remembered as `discovered`; the least recently seen go first.
    #[serde(default = "default_discovered")]
    pub max_discovered: u64,
    /// How long a machine whose disk was written may take to boot it and report
    /// (`installed`/`failed`) before it is marked `failed`. Long enough for a first boot
    /// that installs k3s and pulls images on a slow link.
    #[serde(default = "default_report_timeout")]
    pub report_timeout: HumanDuration,
    /// Open HTTP connections in all; more are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open HTTP connections per source address (a machine needs a few).
    #[serde(default = "default_max_per_source")]
    pub max_connections_per_source: usize,
    /// Time a client has to send a request's headers (also between keep-alive requests).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: HumanDuration,
    /// How long an answer being sent may make no progress (the client reads nothing)
    /// before its connection is dropped: never-read downloads cannot hold slots.
    #[serde(default = "default_send_stall_timeout")]
    pub send_stall_timeout: HumanDuration,
    /// A listener for the admin API alone (e.g. `127.0.0.1:8081`); with it, the
    /// machines' listeners do not serve the admin API at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
    /// An HTTPS listener for everything that carries a secret (see [`TlsSettings`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
}

/// HTTPS: machines fetch their join material, post their reports and (once installed)
/// everything else over it, pinning the CA they were given in their config. Without
/// `cert_file`/`key_file` bootplane creates a site CA in `<data>/tls/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    /// How machines reach it, e.g. `https://10.20.0.10:8443`; default from `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// The operator's certificate chain (PEM), instead of the site CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("valid literal")
}
fn default_attempts() -> u32 {
    3
}
fn default_events() -> u64 {
    100_000
}
fn default_discovered() -> u64 {
    4096
}
fn default_boots() -> u32 {
    600
}
fn default_noise() -> u32 {
    120
}
fn default_audit_days() -> u32 {
    90
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_per_source() -> usize {
    32
}
fn default_header_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(15))
}
fn default_send_stall_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_report_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60 * 60))
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: default_listen(),
            advertise: None,
            admin_token_file: None,
            data_dir: None,
            database: None,
            secret_key_file: None,
            max_install_attempts: default_attempts(),
            events_retained: default_events(),
            audit_events_days: default_audit_days(),
            unauthenticated_events_per_minute: default_noise(),
            boot_requests_per_minute: default_boots(),
            max_discovered: default_discovered(),
            report_timeout: default_report_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_source: default_max_per_source(),
            header_timeout: default_header_timeout(),
            send_stall_timeout: default_send_stall_timeout(),
            admin_listen: None,
            tls: None,
        }
    }
}

impl ServerSettings {
    /// The advertise URL without trailing slash, or one derived from `listen` when that
    /// is a concrete address.
    pub fn advertise_url(&self) -> Option<String> {
        match &self.advertise {
            Some(a) => Some(a.trim_end_matches('/').to_string()),
            None if !self.listen.ip().is_unspecified() => Some(format!("http://{}", self.listen)),
            None => None,
        }
    }

    /// The HTTPS URL machines use for their secrets, when HTTPS is on and its address is
    /// known (its `advertise`, or a concrete `listen`).
    pub fn secure_url(&self) -> Option<String> {
        let t = self.tls.as_ref()?;
        match &t.advertise {
            Some(a) => Some(a.trim_end_matches('/').to_string()),
            None if !t.listen.ip().is_unspecified() => Some(format!("https://{}", t.listen)),
            None => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DhcpMode {
    Full,
    Proxy,
    #[default]
    Off,
}

/// `first-last`, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl IpRange {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }
}

impl FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("`{s}` is not a range: expected FIRST-LAST such as 10.20.0.50-10.20.0.200"))?;
        let first: Ipv4Addr = a.trim().parse().map_err(|_| format!("`{a}` is not an IPv4 address"))?;
        let last: Ipv4Addr = b.trim().parse().map_err(|_| format!("`{b}` is not an IPv4 address"))?;
        if first > last {
            return Err(format!("range `{s}` ends before it starts"));
        }
        Ok(IpRange { first, last })
    }
}
impl Serialize for IpRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}-{}", self.first, self.last))
    }
}
impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration written as `30m`, `12h`, ... (see [`crate::parse_duration`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);
impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}s", self.0.as_secs()))
    }
}
impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(HumanDuration(Duration::from_secs(n))),
            Raw::S(s) => crate::parse_duration(&s).map(HumanDuration).map_err(serde::de::Error::custom),
        }
    }
}

/// First-stage boot files per client architecture (DHCP option 93).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootFiles {
    #[serde(default = "default_bios")]
    pub bios: String,
    #[serde(default = "default_efi_x64")]
    pub efi_x64: String,
    #[serde(default = "default_efi_arm64")]
    pub efi_arm64: String,
}
fn default_bios() -> String {
    "undionly.kpxe".into()
}
fn default_efi_x64() -> String {
    "ipxe.efi".into()
}
fn default_efi_arm64() -> String {
    "ipxe-arm64.efi".into()
}
impl Default for BootFiles {
    fn default() -> Self {
        BootFiles { bios: default_bios(), efi_x64: default_efi_x64(), efi_arm64: default_efi_arm64() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpSettings {
    #[serde(default)]
    pub mode: DhcpMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The address DHCP answers as (server identifier, next-server); default: the
    /// interface's first IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ip: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<IpRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_time: Option<HumanDuration>,
    #[serde(default)]
    pub boot_files: BootFiles,
    /// The first stage UEFI x86-64 machines get unless their machine or bundle says
    /// otherwise: `ipxe` (`boot_files.efi_x64`) or `shim` (shim → GRUB, for Secure Boot;
    /// docs/secure-boot.md).
    #[serde(default, skip_serializing_if = "is_ipxe")]
    pub loader: bootplane_core::grub::Loader,
    /// DHCP relay agents whose relayed requests are answered: the giaddr they write, and
    /// the address they send from when it is another (a relay with one leg per VLAN sends
    /// from its upstream address). A relayed request is trusted by its sender, not by
    /// its giaddr, which anyone can write; the rest are ignored with an event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<Ipv4Addr>,
    /// Further subnets (full mode), reached through DHCP relay agents: the rack layout,
    /// one provisioning VLAN per rack. A relayed request is matched to its subnet by its
    /// link-selection option (118) or its giaddr.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<DhcpSubnet>,
}

/// One relayed subnet: its own range, mask, router, DNS and domain, and the relay agents
/// allowed to speak for it (their giaddr, and the address they send from if another).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpSubnet {
    pub range: IpRange,
    pub netmask: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub relays: Vec<Ipv4Addr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TftpSettings {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_tftp_root")]
    pub root: PathBuf,
    /// Where TFTP listens; default port 69 on all addresses.
    #[serde(default = "default_tftp_listen")]
    pub listen: SocketAddr,
    /// Files outside `root` that symlinks in it may point to. Debian's `ipxe` package
    /// links `/usr/lib/ipxe/ipxe.efi` to `/boot/ipxe.efi`; any other escape is refused.
    #[serde(default = "default_symlink_targets")]
    pub allow_symlinks_to: Vec<PathBuf>,
    /// The Microsoft-signed shim served as `shimx64.efi` (Debian's `shim-signed`).
    #[serde(default = "default_shim")]
    pub shim: PathBuf,
    /// The signed network GRUB served as `grubx64.efi` (Debian's `grub-efi-amd64-signed`).
    #[serde(default = "default_grub")]
    pub grub: PathBuf,
}
fn is_ipxe(l: &bootplane_core::grub::Loader) -> bool {
    *l == bootplane_core::grub::Loader::Ipxe
}
fn default_shim() -> PathBuf {
    "/usr/lib/shim/shimx64.efi.signed".into()
}
fn default_grub() -> PathBuf {
    "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed".into()
}
fn default_tftp_root() -> PathBuf {
    "/usr/lib/ipxe".into()
}
fn default_tftp_listen() -> SocketAddr {
    "0.0.0.0:69".parse().expect("valid literal")
}
fn default_symlink_targets() -> Vec<PathBuf> {
    vec!["/boot/ipxe.efi".into(), "/boot/ipxe.lkrn".into()]
}
impl Default for TftpSettings {
    fn default() -> Self {
        TftpSettings {
            enabled: false,
            root: default_tftp_root(),
            listen: default_tftp_listen(),
            allow_symlinks_to: default_symlink_targets(),
            shim: default_shim(),
            grub: default_grub(),
        }
    }
}

/// The `ui` section: the web dashboard at `/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiSettings {
    /// Let anyone who reaches the admin listener read the dashboard without logging in
    /// (changes still need the admin token). Off by default: the fleet view names every
    /// machine, address and serial.
    #[serde(default)]
    pub anonymous_read: bool,
}
