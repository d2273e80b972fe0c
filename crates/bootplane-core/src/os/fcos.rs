//! Fedora CoreOS: the live PXE kernel, initramfs and rootfs, with coreos-installer driven
//! from the kernel command line (`coreos.inst.*`). See the FCOS "Installing on bare metal
//! / PXE" documentation for the argument names.

use super::{require, InstallContext, InstallerPlan, OsInstaller, PlanError};

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
        ];
        if let Some(image) = &b.image {
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
