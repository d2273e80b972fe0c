//! What bootplane puts on every installed node besides the user's own config, as plain
//! files and systemd units so each OS format (Ignition for fcos/flatcar/generic,
//! cloud-init for Ubuntu) carries exactly the same thing: the static network, the
//! report unit, and for cluster members the k3s config, install step and unit.
//! The shell scripts live in `scripts/` as real files so `shellcheck` checks them as
//! shipped; everything per-machine they need comes from env files, never from editing
//! the script text.

use crate::k3s::{self, Node, NodeRole};
use crate::model::{Artifact, Bundle, MachineSpec, OsKind};
use crate::network;

pub const K3S_INSTALL_SCRIPT: &str = include_str!("scripts/k3s-install.sh");
pub const REPORT_SCRIPT: &str = include_str!("scripts/report.sh");
pub const FLATCAR_INSTALLER_SCRIPT: &str = include_str!("scripts/flatcar-installer.sh");
/// Posts `written` from an installer's live environment (see docs/states.md).
pub const WRITTEN_SCRIPT: &str = include_str!("scripts/written.sh");
/// The curl wrapper every machine script uses to pin bootplane's HTTPS CA.
const BP_CURL: &str = include_str!("scripts/bp-curl.sh");

/// A machine script as it is delivered: each goes to the machine on its own, so the
/// shared helpers are put in place of their include line.
pub fn script(text: &str) -> String {
    text.replace("# @include bp-curl.sh (shared by every machine script; inserted when it is served)\n", BP_CURL)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub mode: u32,
    pub contents: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    pub contents: String,
    pub enabled: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    pub files: Vec<File>,
    pub units: Vec<Unit>,
}

impl Setup {
    fn file(&mut self, path: impl Into<String>, mode: u32, contents: impl Into<String>) {
        self.files.push(File { path: path.into(), mode, contents: contents.into() });
    }
    fn unit(&mut self, name: &str, contents: String) {
        self.units.push(Unit { name: name.into(), contents, enabled: true });
    }
}

/// Where a machine downloads a bundle file: the artifact's own URL, or bootplane's
/// artifact endpoint.
pub fn artifact_url(server: &str, bundle: &str, role: &str, a: &Artifact) -> String {
    match &a.url {
        Some(url) if !a.served_locally() => url.clone(),
        _ => format!("{server}/artifacts/{bundle}/{role}"),
    }
}

/// A cluster member's inputs: its place in the cluster and the air-gap bundle, if any.
pub struct K3sInputs<'a> {
    pub node: Node<'a>,
    pub airgap: Option<&'a Bundle>,
    /// The node's k3s node password, the same across reinstalls.
    pub node_password: &'a str,
}

/// The non-secret settings the k3s install script reads.
pub fn k3s_env(k: &K3sInputs<'_>, server: &str) -> String {
    let n = &k.node;
    let mut env = vec![
        ("K3S_VERSION", n.cluster.k3s.version.clone().unwrap_or_default()),
        ("K3S_ROLE", if n.role.is_server() { "server" } else { "agent" }.to_string()),
        ("K3S_BOOTSTRAP", if n.role == NodeRole::Bootstrap { "1" } else { "0" }.to_string()),
        ("K3S_BIN_DIR", k3s::bin_dir(n.os).to_string()),
        // What the report asks the cluster about: k3s registers the node-name lowercased.
        ("K3S_NODE_NAME", k3s::node_name(n.machine)),
        ("K3S_SELINUX", if k3s::selinux(n) { "1" } else { "0" }.to_string()),
    ];
    if let Some(b) = k.airgap {
        for (role, url_key, sha_key) in [
            ("k3s", "K3S_BINARY_URL", "K3S_BINARY_SHA256"),
            ("k3s_images", "K3S_IMAGES_URL", "K3S_IMAGES_SHA256"),
            ("k3s_selinux", "K3S_SELINUX_RPM_URL", "K3S_SELINUX_RPM_SHA256"),
        ] {
            if let Some(a) = b.artifact(role) {
                env.push((url_key, artifact_url(server, &b.pinned_name(), role, a)));
                if let Some(h) = &a.sha256 {
                    env.push((sha_key, h.clone()));
                }
            }
        }
    }
    env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

fn service(description: &str, after: &str, condition: Option<&str>, body: &str) -> String {
    let mut s = format!("[Unit]\nDescription={description}\nWants=network-online.target\nAfter={}\n", format!("network-online.target {after}").trim_end());
    if let Some(c) = condition {
        s += &format!("ConditionPathExists=!{c}\n");
    }
    s + &format!("\n[Service]\n{body}\n[Install]\nWantedBy=multi-user.target\n")
}

fn k3s_unit(role: NodeRole, bin: &str) -> String {
    // k3s's own installer: servers signal readiness, agents are plain `exec`.
    let (cmd, typ) = if role.is_server() { ("server", "notify") } else { ("agent", "exec") };
    format!(
        "[Unit]\n\
         Description=k3s {cmd}, configured by {cfg} (bootplane)\n\
         Documentation=https://docs.k3s.io\n\
         Wants=network-online.target\n\
         After=network-online.target bootplane-k3s-install.service\n\
         Requires=bootplane-k3s-install.service\n\
         \n\
         [Service]\n\
         Type={typ}\n\
         KillMode=process\n\
         Delegate=yes\n\
         LimitNOFILE=1048576\n\
         LimitNPROC=infinity\n\
         LimitCORE=infinity\n\
         TasksMax=infinity\n\
         TimeoutStartSec=0\n\
         Restart=always\n\
         RestartSec=5s\n\
         ExecStartPre=-/sbin/modprobe br_netfilter\n\
         ExecStartPre=-/sbin/modprobe overlay\n\
         ExecStart={bin}/k3s {cmd}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        cfg = k3s::CONFIG_PATH
    )
}

/// Everything bootplane adds for `machine` on `os` (hostname and machine.env are
/// written by the caller in its own format).
pub fn setup(machine: &MachineSpec, os: OsKind, server: &str, k3s: Option<&K3sInputs<'_>>) -> Result<Setup, network::NetworkError> {
    let mut s = Setup::default();
    let net = network::of(machine)?;
    if let Some(n) = &net {
        match os {
            OsKind::Fcos => {
                let (p, t) = network::nm_keyfile(n);
                s.file(p, 0o600, t);
            }
            OsKind::Flatcar => {
                let (p, t) = network::networkd(n);
                s.file(p, 0o644, t);
            }
            // Ubuntu's goes into autoinstall's `network`; generic installers bring their own.
            OsKind::Ubuntu | OsKind::Generic => {}
        }
    }
    // A generic installer reports for itself (the OS may have no systemd or curl).
    if os == OsKind::Generic && k3s.is_none() {
        return Ok(s);
    }
    let bin = k3s::bin_dir(os);
    let mut report_after = String::new();
    if let Some(k) = k3s {
        s.file("/etc/bootplane/k3s.env", 0o644, k3s_env(k, server));
        s.file(k3s::CONFIG_PATH, 0o600, k3s::config_yaml(&k.node, net.as_ref().map(|n| n.address)));
        s.file(k3s::NODE_PASSWORD_FILE, 0o600, format!("{}\n", k.node_password));
        if let (true, Some(vip)) = (k.node.role.is_server(), &k.node.cluster.vip) {
            s.file(k3s::KUBE_VIP_MANIFEST, 0o600, k3s::kube_vip_manifest(vip));
        }
        s.file(format!("{bin}/bootplane-k3s-install"), 0o755, script(K3S_INSTALL_SCRIPT));
        if k3s::selinux(&k.node) && k.airgap.and_then(|b| b.k3s_selinux.as_ref()).is_none() {
            s.file("/etc/yum.repos.d/rancher-k3s-common.repo", 0o644, RANCHER_REPO);
        }
        s.unit(
            "bootplane-k3s-install.service",
            service(
                "Install k3s once (bootplane)",
                "",
                Some("/var/lib/bootplane/k3s-installed"),
                &format!("Type=oneshot\nRemainAfterExit=yes\nExecStart={bin}/bootplane-k3s-install\n"),
            ),
        );
        s.unit(k.node.role.unit(), k3s_unit(k.node.role, bin));
        report_after = k.node.role.unit().to_string();
    }
    s.file(format!("{bin}/bootplane-report"), 0o755, script(REPORT_SCRIPT));
    s.unit(
        "bootplane-report.service",
        service(
            "Report this install to bootplane",
            report_after.trim(),
            Some("/var/lib/bootplane/reported"),
            &format!("Type=oneshot\nRemainAfterExit=yes\nExecStart={bin}/bootplane-report\n"),
        ),
    );
    Ok(s)
}

/// The k3s-selinux package source k3s's own installer uses on CoreOS.
const RANCHER_REPO: &str = "[rancher-k3s-common-stable]\n\
name=Rancher K3s Common (stable)\n\
baseurl=https://rpm.rancher.io/k3s/stable/common/coreos/noarch\n\
enabled=1\n\
gpgcheck=1\n\
repo_gpgcheck=0\n\
gpgkey=https://rpm.rancher.io/public.key\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cluster, K3sSettings, Role};

    #[test]
    fn every_delivered_script_carries_its_helpers() {
        for text in [K3S_INSTALL_SCRIPT, REPORT_SCRIPT, FLATCAR_INSTALLER_SCRIPT, WRITTEN_SCRIPT] {
            assert!(text.contains("# @include bp-curl.sh"), "each script names its helper");
            let delivered = script(text);
            assert!(delivered.contains("bp_curl() {") && !delivered.contains("@include"), "{delivered}");
        }
    }

    #[test]
    fn scripts_never_embed_secrets_and_paths_follow_the_os() {
        let mut c = Cluster { name: "lab".into(), k3s: K3sSettings { version: Some("v1.28.5+k3s1".into()), ..Default::default() }, vip: None };
        let m = MachineSpec { name: "N1".into(), role: Some(Role::Agent), cluster: Some("lab".into()), ..Default::default() };
        let b = MachineSpec { name: "s1".into(), role: Some(Role::Server), ..Default::default() };
        let node = k3s::node(&c, &m, Some(&b), OsKind::Flatcar).unwrap();
        let s = setup(&m, OsKind::Flatcar, "http://bp", Some(&K3sInputs { node, airgap: None, node_password: "0123" })).unwrap();
        let paths: Vec<&str> = s.files.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"/opt/bin/bootplane-k3s-install") && paths.contains(&"/opt/bin/bootplane-report"), "{paths:?}");
        let units: Vec<&str> = s.units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(units, ["bootplane-k3s-install.service", "k3s-agent.service", "bootplane-report.service"]);
        assert!(s.units[1].contents.contains("ExecStart=/opt/bin/k3s agent\n"));
        let env = &s.files[0].contents;
        assert!(env.contains("K3S_ROLE=agent\n") && env.contains("K3S_SELINUX=0\n"), "{env}");
        // The name the report asks the cluster about is the one k3s registers: lowercased.
        assert!(env.contains("K3S_NODE_NAME=n1\n"), "{env}");
        // kube-vip's manifest goes to servers only, when the cluster has a VIP.
        assert!(!paths.contains(&k3s::KUBE_VIP_MANIFEST));
        c.vip = Some(crate::model::Vip { address: "10.0.0.100".parse().unwrap(), interface: "eth0".into(), image: None });
        for (who, want) in [(&m, false), (&b, true)] {
            let node = k3s::node(&c, who, Some(&b), OsKind::Flatcar).unwrap();
            let s = setup(who, OsKind::Flatcar, "http://bp", Some(&K3sInputs { node, airgap: None, node_password: "0123" })).unwrap();
            let f = s.files.iter().find(|f| f.path == k3s::KUBE_VIP_MANIFEST);
            assert_eq!(f.map(|f| f.mode), want.then_some(0o600), "{}", who.name);
        }
        // Generic without a cluster: nothing (its installer reports).
        assert_eq!(setup(&m, OsKind::Generic, "http://bp", None).unwrap(), Setup::default());
    }
}
