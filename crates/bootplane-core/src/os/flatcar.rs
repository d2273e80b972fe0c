//! Flatcar: the PXE kernel and cpio boot a live system whose Ignition is bootplane's
//! *installer* config (`/v1/machines/{name}/installer`): one unit that fetches the
//! machine's own Ignition and runs `flatcar-install -d <disk> -i <file>` (with the
//! bundle's image when it has one, so no internet is needed), reports the disk written
//! with the machine's credential, then reboots.

use super::{require, InstallContext, InstallerPlan, OsInstaller, PlanError};
use crate::ignition::{data_url, env_safe, machine_env};
use crate::model::{Bundle, MachineSpec};
use crate::node::{artifact_url, script, FLATCAR_INSTALLER_SCRIPT, WRITTEN_SCRIPT};
use serde_json::{json, Value};

pub struct Flatcar;

impl OsInstaller for Flatcar {
    fn plan(&self, ctx: &InstallContext<'_>) -> Result<InstallerPlan, PlanError> {
        let b = ctx.bundle;
        let kernel = require(b, b.kernel.as_ref(), "kernel")?;
        let initrd = require(b, b.initrd_artifact(), "initramfs")?;
        install_disk(ctx.machine)?;
        let mut args = vec![
            "flatcar.first_boot=1".to_string(),
            format!("ignition.config.url={}", ctx.installer_url()),
        ];
        if let Some(extra) = &b.args {
            args.push(extra.clone());
        }
        Ok(InstallerPlan {
            kernel_url: ctx.artifact_url("kernel", kernel),
            initrds: vec![("flatcar_production_pxe_image.cpio.gz".into(), ctx.artifact_url("initramfs", initrd))],
            args: args.join(" "),
        })
    }
}

fn install_disk(m: &MachineSpec) -> Result<&str, PlanError> {
    m.install_disk.as_deref().ok_or_else(|| PlanError::NoInstallDisk { machine: m.name.clone() })
}

/// The live system's Ignition (spec 3.3.0, which every Flatcar since 3185 reads).
/// `nonce` is the attempt's, as presented by the live system's own fetch.
pub fn installer_config(
    m: &MachineSpec,
    b: &Bundle,
    server: &str,
    credential: &str,
    nonce: &str,
    ca_pem: Option<&str>,
    ssh_keys: &[String],
) -> Result<Value, PlanError> {
    let disk = install_disk(m)?;
    let mut env = vec![
        ("BOOTPLANE_IGNITION_URL", format!("{server}/v1/machines/{}/ignition?nonce={nonce}", m.name)),
        ("INSTALL_DISK", disk.to_string()),
    ];
    if let Some(img) = &b.image {
        env.push(("IMAGE_URL", artifact_url(server, &b.name, "image", img)));
        if let Some(h) = &img.sha256 {
            env.push(("IMAGE_SHA256", h.clone()));
        }
    }
    if let Some((_, v)) = env.iter().find(|(_, v)| !env_safe(v)) {
        return Err(PlanError::UnsafeArgs { bundle: b.name.clone(), bad: v.clone() });
    }
    let env: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let file = |path: &str, mode: u32, text: &str| {
        json!({ "path": path, "overwrite": true, "contents": { "compression": "", "source": data_url(text.as_bytes()) }, "mode": mode })
    };
    let mut files = vec![
        file("/etc/bootplane/installer.env", 0o644, &env),
        file("/etc/bootplane/machine.env", 0o600, &machine_env(server, &m.name, credential)),
        file("/opt/bootplane/install", 0o755, &script(FLATCAR_INSTALLER_SCRIPT)),
        file("/opt/bootplane/written", 0o755, &script(WRITTEN_SCRIPT)),
    ];
    if let Some(ca) = ca_pem {
        files.push(file(crate::ignition::CA_PATH, 0o644, ca));
    }
    let mut cfg = json!({
        "ignition": { "version": "3.3.0" },
        "storage": { "files": files },
        "systemd": { "units": [{
            "name": "bootplane-install.service",
            "enabled": true,
            "contents": "[Unit]\nDescription=Install Flatcar to disk with this machine's Ignition (bootplane)\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart=/opt/bootplane/install\nStandardOutput=journal+console\n\n[Install]\nWantedBy=multi-user.target\n"
        }]}
    });
    if !ssh_keys.is_empty() {
        cfg["passwd"] = json!({ "users": [{ "name": "core", "sshAuthorizedKeys": ssh_keys }] });
    }
    Ok(cfg)
}
