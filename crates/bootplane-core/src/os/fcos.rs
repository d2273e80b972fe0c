//! Fedora CoreOS: the live PXE kernel, initramfs and rootfs, with coreos-installer driven
//! from the kernel command line (`coreos.inst.*`). See the FCOS "Installing on bare metal
//! / PXE" documentation for the argument names. The live system gets its own small
//! Ignition (`ignition.config.url` → `/v1/machines/{name}/installer`): one unit ordered
//! after `coreos-installer.service` and before `coreos-installer-reboot.service` that
//! reports the disk written, the way coreos-assembler's own install tests hook in, and an
//! `ExecStopPost=` drop-in on `coreos-installer.service` that reports the install failed
//! (with the unit's log tail) before the live system drops to its emergency shell.

use super::{require, InstallContext, InstallerPlan, OsInstaller, PlanError};
use crate::ignition::{data_url, machine_env};
use crate::model::MachineSpec;
use crate::node::{script, WRITTEN_SCRIPT};
use serde_json::{json, Value};

pub struct Fcos;

impl OsInstaller for Fcos {
    fn plan(&self, ctx: &InstallContext<'_>) -> Result<InstallerPlan, PlanError> {
        let b = ctx.bundle;
        let kernel = require(b, b.kernel.as_ref(), "kernel")?;
        let initramfs = require(b, b.initrd_artifact(), "initramfs")?;
        let rootfs = require(b, b.rootfs.as_ref(), "rootfs")?;
        let disk = ctx
            .machine
            .install_disk
            .as_deref()
            .ok_or_else(|| PlanError::NoInstallDisk { machine: ctx.machine.name.clone() })?;
        let mut args = vec![
            format!("coreos.live.rootfs_url={}", ctx.artifact_url("rootfs", rootfs)),
            format!("coreos.inst.install_dev={disk}"),
            format!("coreos.inst.ignition_url={}", ctx.ignition_url()),
            "ignition.firstboot".to_string(),
            "ignition.platform.id=metal".to_string(),
            format!("ignition.config.url={}", ctx.installer_url()),
        ];
        // coreos-installer fetches `<image_url>.sig`: bootplane serves it as `image.sig`
        // right beside `image`, and a mirror URL is expected to have it beside the image
        // as Fedora's do. Without an image the live system installs its own embedded copy.
        if let Some(image) = &b.image {
            if b.lacks_image_signature() {
                return Err(PlanError::UnsignedImage { bundle: b.name.clone() });
            }
            if b.insecure_image {
                args.push("coreos.inst.insecure".to_string());
            }
            args.push(format!("coreos.inst.image_url={}", ctx.artifact_url("image", image)));
        }
        if let Some(extra) = &b.args {
            args.push(extra.clone());
        }
        Ok(InstallerPlan {
            kernel_url: ctx.artifact_url("kernel", kernel),
            initrds: vec![("initramfs.img".into(), ctx.artifact_url("initramfs", initramfs))],
            args: args.join(" "),
        })
    }
}

/// The live system's Ignition (spec 3.3.0): `machine.env` and the unit that reports the
/// disk written between coreos-installer's install and its reboot.
pub fn live_config(m: &MachineSpec, server: &str, credential: &str, ca_pem: Option<&str>) -> Value {
    let file = |path: &str, mode: u32, text: &str| {
        json!({ "path": path, "overwrite": true, "contents": { "source": data_url(text.as_bytes()) }, "mode": mode })
    };
    // RequiredBy the installer target: if bootplane cannot be told, the machine stays in
    // the live system instead of rebooting into a second install.
    let unit = "[Unit]\nDescription=Report the disk written to bootplane\nAfter=coreos-installer.service\n\
                Requires=coreos-installer.service\nBefore=coreos-installer.target coreos-installer-reboot.service\n\n\
                [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/bash /etc/bootplane/written\n\
                StandardOutput=journal+console\n\n[Install]\nRequiredBy=coreos-installer.target\n";
    // coreos-installer.service fails into emergency mode, which stops the network: its
    // stop-post step (before OnFailure=) tells bootplane first, while it still can.
    let on_failure = "[Service]\nExecStopPost=/bin/sh -c 'test \"$$SERVICE_RESULT\" = success || \
                      exec /bin/bash /etc/bootplane/written failed coreos-installer.service'\n";
    let mut files = vec![
        file("/etc/bootplane/machine.env", 0o600, &machine_env(server, &m.name, credential)),
        file("/etc/bootplane/written", 0o700, &script(WRITTEN_SCRIPT)),
    ];
    if let Some(ca) = ca_pem {
        files.push(file(crate::ignition::CA_PATH, 0o644, ca));
    }
    json!({
        "ignition": { "version": "3.3.0" },
        "storage": { "files": files },
        "systemd": { "units": [
            { "name": "bootplane-written.service", "enabled": true, "contents": unit },
            { "name": "coreos-installer.service", "dropins": [{ "name": "bootplane.conf", "contents": on_failure }] }
        ] }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Artifact, Bundle, MachineSpec, OsKind};

    fn local(h: char) -> Option<Artifact> {
        Some(Artifact { sha256: Some(h.to_string().repeat(64)), size: Some(1), ..Default::default() })
    }

    fn plan_for(b: &Bundle) -> Result<InstallerPlan, PlanError> {
        let m = MachineSpec { name: "n1".into(), install_disk: Some("/dev/disk/by-id/x".into()), ..Default::default() };
        Fcos.plan(&InstallContext { machine: &m, bundle: b, server: "http://bp:8080", nonce: "0123456789abcdef0123456789abcdef" })
    }

    #[test]
    fn a_served_image_comes_with_its_signature_or_not_at_all() {
        let mut b = Bundle::new("fcos-40", OsKind::Fcos, "x86_64");
        (b.kernel, b.initramfs, b.rootfs, b.image) = (local('1'), local('2'), local('3'), local('4'));
        assert_eq!(plan_for(&b), Err(PlanError::UnsignedImage { bundle: "fcos-40".into() }));

        b.image_sig = local('5');
        let args = plan_for(&b).unwrap().args;
        let url = args.split(' ').find_map(|a| a.strip_prefix("coreos.inst.image_url=")).unwrap();
        // Where coreos-installer looks for the signature is where bootplane serves it.
        let sig = crate::node::artifact_url("http://bp:8080", "fcos-40", "image.sig", b.image_sig.as_ref().unwrap());
        assert_eq!(format!("{url}.sig"), sig);
        assert_eq!(b.artifact("image.sig"), b.image_sig.as_ref());
        assert!(!args.contains("coreos.inst.insecure"), "{args}");

        b.image_sig = None;
        b.insecure_image = true;
        assert!(plan_for(&b).unwrap().args.contains("coreos.inst.insecure coreos.inst.image_url="));

        // No image: the live image installs its own copy, nothing to sign.
        b.image = None;
        b.insecure_image = false;
        assert!(!plan_for(&b).unwrap().args.contains("image_url"));
    }
}
