//! `bootplane check`: every finding about a configuration, each naming where it is.
//! Findings of severity [`Severity::Error`] also stop `apply` and `serve` (through
//! [`crate::Config::validate`]); warnings only inform.

use crate::{Config, DhcpMode};
use bootplane_core::model::{is_dns_label, is_hostname, OsKind};
use serde::Serialize;
use std::collections::HashMap;
use std::hash::Hash;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
}

mod clusters;

struct Findings(Vec<Finding>);
impl Findings {
    fn error(&mut self, m: String) {
        self.0.push(Finding { severity: Severity::Error, message: m });
    }
    fn warn(&mut self, m: String) {
        self.0.push(Finding { severity: Severity::Warning, message: m });
    }
}

/// Reports each value shared by two entries, naming both.
fn duplicates<K: Eq + Hash + std::fmt::Display>(
    out: &mut Findings,
    what: &str,
    items: impl IntoIterator<Item = (K, String)>,
) {
    let mut first: HashMap<K, String> = HashMap::new();
    for (k, who) in items {
        if let Some(prev) = first.get(&k) {
            out.error(format!("duplicate {what} {k}: {prev} and {who}"));
        } else {
            first.insert(k, who);
        }
    }
}

/// Host names that name one host: equal, or one is the other's first label
/// (`lenovo1` and `lenovo1.lab.internal`: the domain is added by DHCP or search lists).
fn same_hosts<'a>(out: &mut Findings, hosts: impl IntoIterator<Item = (&'a str, String)>) {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (h, who) in hosts {
        let h = h.to_ascii_lowercase();
        let (short, domain) = h.split_once('.').unwrap_or((&h, ""));
        let clash = seen.iter().find(|(other, _)| {
            let (o_short, o_domain) = other.split_once('.').unwrap_or((other, ""));
            o_short == short && (o_domain == domain || o_domain.is_empty() || domain.is_empty())
        });
        match clash {
            Some((other, prev)) if *other == h => out.error(format!("duplicate hostname {h}: {prev} and {who}")),
            Some((other, prev)) => out.error(format!(
                "duplicate hostname {short}: {prev} ({other}) and {who} ({h}) name the same host; give one of them another name"
            )),
            None => seen.push((h.clone(), who)),
        }
    }
}

/// Kernel names that can point at a different disk after a reboot or a hardware change.
fn is_unstable_disk(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    ["/dev/sd", "/dev/hd", "/dev/vd", "/dev/xvd", "/dev/nvme", "/dev/mmcblk"]
        .iter()
        .any(|pre| p.starts_with(pre))
}

/// A kernel argument that would publish a secret: a key naming one (`k3s.token=`,
/// `rootpw=`, `api_key=`), or a value shaped like one (a k3s `K10<hash>::` token, a PEM
/// block). Matches whole key parts, so `modprobe.blacklist=k10temp` is not a secret.
fn looks_secret(args: &str) -> Option<String> {
    const WORDS: &[&str] = &["token", "password", "passwd", "pw", "secret", "credential", "apikey"];
    const GLUED: &[&str] = &["token", "password", "passwd", "pw", "secret"];
    const KEY_OF: &[&str] = &["api", "access", "secret", "private", "auth"];
    for word in args.split_whitespace() {
        let lower = word.to_ascii_lowercase();
        let (key, value) = lower.split_once('=').unwrap_or((&lower, ""));
        let parts: Vec<&str> = key.split(['.', '_', '-']).filter(|p| !p.is_empty()).collect();
        let named = parts.iter().any(|p| WORDS.contains(p))
            // rootpw, jointoken: a secret word glued to another
            || parts.iter().any(|p| GLUED.iter().any(|g| p.len() > g.len() && p.ends_with(g)))
            // api_key, private-key, accesskey: "key" only after a word that makes it a secret
            || parts.windows(2).any(|w| w[1] == "key" && KEY_OF.contains(&w[0]))
            || parts.iter().any(|p| KEY_OF.iter().any(|k| p.strip_prefix(k) == Some("key")));
        if named {
            return Some(format!("{key}="));
        }
        let v = value.trim_matches(['"', '\'']);
        let k3s_token = v.strip_prefix("k10").is_some_and(|r| r.len() > 16 && r.contains("::"));
        if k3s_token || lower.contains("-----begin") {
            return Some(format!("{key}=<secret value>"));
        }
    }
    None
}

/// `server.database`: a known scheme, and no password in the file (the config is stored
/// and shown by `bootplane config`-style tools; libpq's password file is the place).
fn database_url(out: &mut Findings, url: &str) {
    let pg = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://"));
    if let Some(rest) = pg {
        let userinfo = rest.split(['/', '?']).next().unwrap_or("").rsplit_once('@').map(|(u, _)| u);
        if userinfo.is_some_and(|u| u.contains(':')) || url.contains("password=") {
            out.error(
                "server.database carries a password in clear; put it in ~/.pgpass (or PGPASSFILE) or pass the URL in \
                 BOOTPLANE_DATABASE instead"
                    .to_string(),
            );
        }
    } else if !url.starts_with("sqlite:") {
        out.error(format!("server.database `{url}`: unknown scheme; expected sqlite:PATH or postgres://USER@HOST/DB"));
    }
}

/// A bundle installed through the shim chain: GRUB boots only x86-64 here and loads the
/// kernel and initrd over TFTP, from bootplane's own store (files with a sha256).
fn shim_bundle(out: &mut Findings, who: &str, b: &bootplane_core::Bundle) {
    if b.arch != "x86_64" {
        out.warn(format!("{who}: loader shim is for UEFI x86-64 (Debian ships no other signed shim); bundle {} is {}, so it keeps iPXE", b.name, b.arch));
    }
    for role in ["kernel", "initramfs", "initrd", "shim", "grub"] {
        if b.artifact(role).is_some_and(|a| a.sha256.is_none() || a.proxy == Some(false)) {
            out.error(format!(
                "{who}: loader shim loads {role} of bundle {} over TFTP from bootplane's store, but it is only served from its URL; \
                 give it a sha256 (bootplane then copies and verifies it) or use loader: ipxe",
                b.name
            ));
        }
    }
}

pub fn lint(cfg: &Config) -> Vec<Finding> {
    let mut out = Findings(Vec::new());
    let who = |i: usize| cfg.describe_machine(i);
    // Shim loads `grubx64.efi` from beside itself: a bundle's own shim needs its own GRUB.
    for b in cfg.bundles.iter().filter(|b| b.shim.is_some() != b.grub.is_some()) {
        out.error(format!(
            "bundle {}: `shim` and `grub` go together (shim loads the GRUB beside it); give both, signed by the OS's vendor, or neither to use tftp.shim and tftp.grub",
            b.name
        ));
    }

    if !cfg.server.listen.ip().is_loopback() && cfg.server.admin_listen.is_none() {
        out.warn(format!(
            "server.listen {} serves the admin API to the whole network; set server.admin_listen (e.g. 127.0.0.1:8081) to keep it apart",
            cfg.server.listen
        ));
    }
    if let Some(db) = &cfg.server.database {
        database_url(&mut out, db);
    }
    duplicates(&mut out, "machine name", cfg.machines.iter().enumerate().map(|(i, m)| (m.name.clone(), who(i))));
    duplicates(
        &mut out,
        "MAC",
        cfg.machines.iter().enumerate().flat_map(|(i, m)| m.macs.iter().map(move |mac| (*mac, who(i)))),
    );
    duplicates(
        &mut out,
        "UUID",
        cfg.machines.iter().enumerate().filter_map(|(i, m)| m.uuid.clone().map(|u| (u, who(i)))),
    );
    duplicates(&mut out, "IP", cfg.machines.iter().enumerate().filter_map(|(i, m)| m.ip.map(|ip| (ip, who(i)))));
    same_hosts(&mut out, cfg.machines.iter().enumerate().map(|(i, m)| (m.hostname.as_deref().unwrap_or(&m.name), who(i))));
    duplicates(&mut out, "bundle name", cfg.bundles.iter().map(|b| (b.name.clone(), format!("bundle {}", b.name))));
    duplicates(&mut out, "cluster name", cfg.clusters.iter().map(|c| (c.name.clone(), format!("cluster {}", c.name))));
    duplicates(&mut out, "template name", cfg.templates.iter().map(|t| (t.name.clone(), format!("template {}", t.name))));

    for (i, m) in cfg.machines.iter().enumerate() {
        let w = who(i);
        if !is_dns_label(&m.name) {
            out.error(format!("{w}: name must be a DNS label (lowercase letters, digits, '-', at most 63)"));
        }
        match &m.hostname {
            None => out.warn(format!("{w}: no hostname; the machine will be called {}", m.name)),
            Some(h) if !is_hostname(h) => out.error(format!("{w}: hostname `{h}` is not a valid host name")),
            _ => {}
        }
        if m.macs.is_empty() && m.uuid.is_none() {
            out.error(format!("{w}: no `macs` and no `uuid`; bootplane could never recognise this machine"));
        }
        if let Some(disk) = &m.install_disk {
            if !disk.starts_with("/dev/") {
                out.error(format!("{w}: install_disk `{disk}` is not a device path"));
            } else if is_unstable_disk(disk) && !m.allow_unstable_install_disk {
                out.error(format!(
                    "{w}: install_disk `{disk}` can name another disk after a reboot; use /dev/disk/by-id/... \
                     (or set allow_unstable_install_disk: true)"
                ));
            }
        }
        if let Some(p) = &m.power {
            for problem in p.problems() {
                out.error(format!("{w}: {problem}"));
            }
        }
        let bundle = m.bundle.as_deref().map(|b| (b, cfg.bundle(b)));
        match bundle {
            Some((b, None)) => out.error(format!("{w}: bundle `{b}` is not defined in `bundles`")),
            Some((_, Some(b))) => {
                if matches!(b.os, OsKind::Fcos | OsKind::Flatcar | OsKind::Ubuntu) && m.install_disk.is_none() {
                    out.error(format!("{w}: bundle {} installs to disk but the machine has no install_disk", b.name));
                }
                if let Some(arch) = &m.arch {
                    if bootplane_core::identity::normalize_arch(arch) != b.arch {
                        out.error(format!("{w}: arch {arch} but bundle {} is for {}", b.name, b.arch));
                    }
                }
            }
            None if m.provision => out.error(format!("{w}: provision: true but no bundle to install")),
            None => {}
        }
        let shim = bootplane_core::grub::effective(Some(m), bundle.and_then(|(_, b)| b), cfg.dhcp.loader) == bootplane_core::grub::Loader::Shim;
        if let (true, Some(b)) = (shim, bundle.and_then(|(_, b)| b)) {
            shim_bundle(&mut out, &w, b);
        }
        if let Some(c) = &m.cluster {
            if cfg.cluster(c).is_none() {
                out.error(format!("{w}: cluster `{c}` is not defined in `clusters`"));
            }
            if m.role.is_none() {
                out.error(format!("{w}: in cluster {c} but has no role (server or agent)"));
            }
        } else if m.role.is_some() {
            out.error(format!("{w}: has a role but no cluster"));
        }
        if let Err(e) = bootplane_core::network::of(m) {
            out.error(format!("{w}: {e}"));
        }
        if bundle.and_then(|(_, b)| b).is_some_and(|b| b.os == OsKind::Ubuntu) && (m.butane.is_some() || !m.templates.is_empty()) {
            out.error(format!("{w}: Butane snippets and templates compile to Ignition, which an ubuntu bundle does not read"));
        }
        for t in &m.templates {
            if !cfg.templates.iter().any(|x| &x.name == t) {
                out.error(format!("{w}: template `{t}` is not defined in `templates`"));
            }
        }
        // Compile the machine's own Butane now (with a stand-in credential, without its
        // k3s files), so a broken or hostile snippet stops `check`/`apply` instead of
        // failing at the machine's first config fetch.
        let ubuntu = bundle.and_then(|(_, b)| b).is_some_and(|b| b.os == OsKind::Ubuntu);
        if !ubuntu && (m.butane.is_some() || !m.templates.is_empty()) {
            let templates: Vec<(String, String)> =
                cfg.templates.iter().filter(|t| m.templates.contains(&t.name)).map(|t| (t.name.clone(), t.butane.clone())).collect();
            let server = cfg.server.advertise_url().unwrap_or_else(|| format!("http://{}", cfg.server.listen));
            let inputs = bootplane_core::config::Inputs {
                spec: m,
                templates: &templates,
                bundle: bundle.and_then(|(_, b)| b),
                server: &server,
                credential: "check",
                ssh_keys: &[],
                k3s: None,
                ca_pem: None,
            };
            if let Err(e) = bootplane_core::config::assemble(&inputs) {
                out.error(format!("{w}: {e}"));
            }
        }
        if let (Some(ip), Some(range)) = (m.ip, cfg.dhcp.range) {
            if range.contains(ip) {
                out.warn(format!("{w}: ip {ip} lies inside the DHCP range {}-{}; it is reserved for this machine", range.first, range.last));
            }
        }
        if let Some(serial) = &m.serial {
            if bootplane_core::identity::is_placeholder_serial(serial) {
                out.warn(format!("{w}: serial `{serial}` is a vendor placeholder and is ignored"));
            }
        }
    }

    for (i, b) in cfg.bundles.iter().enumerate() {
        let w = match cfg.bundle_origins.get(i) {
            Some(o) => format!("{}: bundles[{}] ({})", o.location(), o.index, b.name),
            None => format!("bundle {}", b.name),
        };
        if !is_dns_label(&b.name.replace('.', "-")) {
            out.error(format!("{w}: name may only hold lowercase letters, digits, '-' and '.'"));
        }
        if let Some(args) = &b.args {
            if let Some(word) = looks_secret(args) {
                out.error(format!(
                    "{w}: args contain `{word}`; kernel command lines are readable by anyone on the network. \
                     Deliver secrets through the machine's config instead"
                ));
            }
        }
        for (role, a) in b.artifacts() {
            if a.url.is_some() && a.sha256.is_some() && a.proxy == Some(false) {
                out.warn(format!(
                    "{w}: {role} has a sha256 but `proxy: false`: machines fetch it from its URL and nothing checks it; \
                     drop `proxy: false` so bootplane copies, verifies and serves it"
                ));
            }
            if let Some(sum) = &a.sha256 {
                if sum.len() != 64 || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
                    out.warn(format!("{w}: {role}.sha256 `{sum}` is not a sha256 digest; the file cannot be verified"));
                }
            }
        }
        if b.os == OsKind::Fcos && b.lacks_image_signature() {
            out.error(format!("{w}: {}", bootplane_core::os::PlanError::UnsignedImage { bundle: b.name.clone() }));
        } else if b.insecure_image {
            out.warn(format!("{w}: insecure_image: true; coreos-installer writes the image without checking its signature"));
        }
        if let Some(v) = &b.butane_version {
            match bootplane_core::ignition::spec_for_butane(v) {
                None => out.error(format!(
                    "{w}: butane_version `{v}` is not a Butane variant and version bootplane knows \
                     (fcos 1.0.0 to 1.6.0, flatcar 1.0.0 to 1.1.0)"
                )),
                Some(_) => {
                    let variant = v.split_whitespace().next().unwrap_or_default();
                    let expected = match b.os {
                        OsKind::Fcos => Some("fcos"),
                        OsKind::Flatcar => Some("flatcar"),
                        _ => None,
                    };
                    if expected.is_some_and(|e| e != variant) {
                        out.warn(format!("{w}: butane_version `{v}` is for {variant}, but the bundle installs {}", b.os.as_str()));
                    }
                }
            }
        }
        if b.kernel.is_none() && b.k3s.is_none() {
            out.warn(format!("{w}: no kernel; machines using it cannot be installed"));
        }
    }

    for c in &cfg.clusters {
        if !is_dns_label(&c.name) {
            out.error(format!("cluster {}: name must be a DNS label", c.name));
        }
        clusters::lint(cfg, c, &mut out);
    }

    if cfg.dhcp.mode == DhcpMode::Full {
        if cfg.dhcp.range.is_none() {
            out.error("dhcp: mode full needs a `range` to allocate from".into());
        }
        if cfg.dhcp.netmask.is_none() {
            out.error("dhcp: mode full needs a `netmask`".into());
        }
    }
    let net = |ip: std::net::Ipv4Addr, mask: std::net::Ipv4Addr| u32::from(ip) & u32::from(mask);
    let mut networks: Vec<(u32, String)> = Vec::new();
    if let (Some(r), Some(m)) = (cfg.dhcp.range, cfg.dhcp.netmask) {
        networks.push((net(r.first, m), "dhcp.range".into()));
    }
    for (i, sn) in cfg.dhcp.subnets.iter().enumerate() {
        let w = format!("dhcp.subnets[{i}] ({}-{})", sn.range.first, sn.range.last);
        if cfg.dhcp.mode != DhcpMode::Full {
            out.error(format!("{w}: relayed subnets get addresses from bootplane, so they need dhcp.mode full"));
        }
        if sn.relays.is_empty() {
            out.error(format!("{w}: no `relays`; list the relay agents that speak for this subnet (their giaddr, and the address they send from if another)"));
        }
        let n = net(sn.range.first, sn.netmask);
        if net(sn.range.last, sn.netmask) != n {
            out.error(format!("{w}: the range does not fit in one subnet of netmask {}", sn.netmask));
        }
        if let Some((_, other)) = networks.iter().find(|(x, _)| *x == n) {
            out.error(format!("{w}: the same subnet as {other}; one subnet, one entry"));
        }
        networks.push((n, w));
    }
    if cfg.dhcp.mode != DhcpMode::Off && cfg.dhcp.interface.is_none() {
        out.error("dhcp: a DHCP server needs `interface`; it is never bound to every interface".into());
    }
    match cfg.server.advertise_url() {
        None if cfg.dhcp.mode != DhcpMode::Off => {
            out.error("server: `advertise` is required when DHCP is on; machines must be told where to find us".into())
        }
        Some(url) if cfg.dhcp.mode != DhcpMode::Off && is_loopback_url(&url) => out.error(format!(
            "server.advertise {url} is a loopback address, but DHCP hands it to machines as where to fetch \
             /boot.ipxe; set it to this host's address on the provisioning LAN"
        )),
        _ => {}
    }
    out.0
}

/// `http://127.0.0.1:8080`, `http://[::1]/`, `http://localhost:8080`: an address only this
/// host can reach.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
