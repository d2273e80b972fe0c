//! Ubuntu: the live-server kernel and initrd with `autoinstall` and a per-machine NoCloud
//! seed (`/v1/machines/{name}/user-data` and `meta-data`). The seed carries the same
//! files and units as an Ignition machine (machine.env, static network as netplan,
//! report unit, k3s), written into the installed system through cloud-init. Autoinstall's
//! `late-commands` report the disk written from the installer before it reboots.

use super::{require, InstallContext, InstallerPlan, OsInstaller, PlanError};
use crate::config::{ConfigError, Inputs};
use crate::ignition::machine_env;
use crate::{network, node};
use serde_json::{json, Value};

pub struct Ubuntu;

impl OsInstaller for Ubuntu {
    fn plan(&self, ctx: &InstallContext<'_>) -> Result<InstallerPlan, PlanError> {
        let b = ctx.bundle;
        let kernel = require(b, b.kernel.as_ref(), "kernel")?;
        let initrd = require(b, b.initrd_artifact(), "initrd")?;
        let iso = require(b, b.image.as_ref(), "image")?;
        if ctx.machine.install_disk.is_none() {
            return Err(PlanError::NoInstallDisk { machine: ctx.machine.name.clone() });
        }
        let role = if b.initramfs.is_some() { "initramfs" } else { "initrd" };
        // `cloud-config-url=/dev/null` stops casper from fetching the ISO a second time.
        // `ds=nocloud-net` rather than `ds=nocloud`: cloud-init before 24.1 (the 20.04 and
        // 22.04 installers) reads an http seed only under the `-net` name; 24.1 and later
        // accept it with a deprecation warning.
        let mut args = vec![
            "ip=dhcp".to_string(),
            format!("url={}", ctx.artifact_url("image", iso)),
            "autoinstall".to_string(),
            format!("ds=nocloud-net;s={}", ctx.seed_url()),
            "cloud-config-url=/dev/null".to_string(),
        ];
        if let Some(extra) = &b.args {
            args.push(extra.clone());
        }
        Ok(InstallerPlan {
            kernel_url: ctx.artifact_url("kernel", kernel),
            initrds: vec![("initrd".into(), ctx.artifact_url(role, initrd))],
            args: args.join(" "),
        })
    }
}

const DISK_PLACEHOLDER: &str = "@BOOTPLANE_INSTALL_DISK@";

/// The NoCloud `meta-data`; a new instance id per install generation makes cloud-init
/// treat a reinstall as a new instance.
pub fn meta_data(name: &str, generation: u32, short_hostname: &str) -> String {
    let s = crate::yaml11::scalar;
    format!("instance-id: {}\nlocal-hostname: {}\n", s(&format!("bootplane-{name}-{generation}")), s(short_hostname))
}

/// The NoCloud `user-data`: an autoinstall document.
pub fn user_data(inp: &Inputs<'_>) -> Result<String, ConfigError> {
    let m = inp.spec;
    if m.butane.is_some() || !m.templates.is_empty() {
        return Err(ConfigError::Template {
            machine: m.name.clone(),
            what: "butane".into(),
            detail: "Butane snippets and templates compile to Ignition, which Ubuntu does not read; remove them from this ubuntu machine".into(),
        });
    }
    let disk = m.install_disk.clone().unwrap_or_default();
    let setup = node::setup(m, crate::model::OsKind::Ubuntu, inp.server, inp.k3s.as_ref())?;
    let file = |path: &str, mode: u32, content: &str| json!({ "path": path, "permissions": format!("{mode:04o}"), "content": content });
    let mut files = vec![file("/etc/bootplane/machine.env", 0o600, &machine_env(inp.server, &m.name, inp.credential))];
    if let Some(ca) = inp.ca_pem {
        files.push(file(crate::ignition::CA_PATH, 0o644, ca));
    }
    for f in &setup.files {
        files.push(file(&f.path, f.mode, &f.contents));
    }
    for u in &setup.units {
        files.push(file(&format!("/etc/systemd/system/{}", u.name), 0o644, &u.contents));
    }
    let mut enable = vec![json!("systemctl"), json!("enable"), json!("--now"), json!("--no-block")];
    enable.extend(setup.units.iter().filter(|u| u.enabled).map(|u| json!(u.name)));
    let hostname = m.hostname.clone().unwrap_or_else(|| m.name.clone());
    let mut target = json!({
        "hostname": m.short_hostname(),
        "users": ["default"],
        "write_files": files,
        "runcmd": [["systemctl", "daemon-reload"], enable],
    });
    if hostname.contains('.') {
        target["fqdn"] = json!(hostname);
    }
    if !inp.ssh_keys.is_empty() {
        target["ssh_authorized_keys"] = json!(inp.ssh_keys);
    }
    // Autoinstall matches disks by kernel path; resolve the stable by-id name at install
    // time, in the installer, and rewrite the config before it is read again.
    let resolve = format!("sh -c 'd=$(readlink -f {disk}) && sed -i \"s|{DISK_PLACEHOLDER}|$d|\" /autoinstall.yaml'");
    // The installer environment reports the disk written before its reboot, so the next
    // network boot gets local boot; if bootplane cannot be told, curl fails the install
    // and the machine does not reboot into a second install (as fcos's and flatcar's do).
    let report = format!("{}/v1/machines/{}/report", inp.server.trim_end_matches('/'), m.name);
    let mut late = Vec::new();
    let mut curl = vec![json!("curl"), json!("-fsS"), json!("--retry"), json!("30"), json!("--retry-delay"), json!("5"), json!("--retry-connrefused")];
    if let Some(ca) = inp.ca_pem {
        late.push(json!(["sh", "-c", "umask 077; printf '%s' \"$0\" > /run/bootplane-ca.crt", ca]));
        curl.extend([json!("--cacert"), json!("/run/bootplane-ca.crt")]);
    }
    curl.extend([
        json!("-X"),
        json!("POST"),
        json!("-H"),
        json!(format!("Authorization: Bearer {}", inp.credential)),
        json!("-H"),
        json!("Content-Type: application/json"),
        json!("--data"),
        json!(r#"{"state":"written"}"#),
        json!(report),
    ]);
    late.push(Value::Array(curl));
    let mut ai = json!({
        "version": 1,
        "early-commands": [resolve],
        "late-commands": late,
        "storage": { "layout": { "name": "direct", "match": { "path": DISK_PLACEHOLDER } } },
        "ssh": { "install-server": true, "allow-pw": false, "authorized-keys": inp.ssh_keys },
        "user-data": target,
        "shutdown": "reboot",
    });
    if let Some(n) = network::of(m)? {
        ai["network"] = network::netplan(&n);
    }
    let doc: Value = json!({ "autoinstall": ai });
    Ok(format!("#cloud-config\n# Written by bootplane for {}.\n{}", m.name, crate::yaml11::to_string(&doc)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn meta_data_keeps_hostnames_strings_for_yaml_1_1() {
        assert_eq!(super::meta_data("u3", 2, "on"), "instance-id: bootplane-u3-2\nlocal-hostname: \"on\"\n");
        assert_eq!(super::meta_data("u1", 1, "u1"), "instance-id: bootplane-u1-1\nlocal-hostname: u1\n");
    }
}
