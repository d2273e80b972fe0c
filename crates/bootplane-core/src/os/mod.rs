//! One module per OS kind, behind the [`OsInstaller`] trait: each turns a machine and its
//! bundle into an [`InstallerPlan`] (kernel, initrds, command line). Adding an OS means
//! adding a module and a line in [`installer_for`], not editing matches elsewhere.

pub mod fcos;
pub mod flatcar;
mod generic;
pub mod ubuntu;

use crate::model::{Artifact, Bundle, MachineSpec, OsKind};

/// Everything an installer may refer to. None of it is secret: plans end up in iPXE
/// scripts and kernel command lines.
pub struct InstallContext<'a> {
    pub machine: &'a MachineSpec,
    pub bundle: &'a Bundle,
    /// The advertise URL, without trailing slash.
    pub server: &'a str,
    /// This attempt's config nonce (see [`crate::attempt`]); single-use, bound to the
    /// requester, so it may appear in the plan.
    pub nonce: &'a str,
}

impl InstallContext<'_> {
    /// The machine's own config (Ignition) for this attempt.
    pub fn ignition_url(&self) -> String {
        format!("{}/v1/machines/{}/ignition?nonce={}", self.server, self.machine.name, self.nonce)
    }
    /// The live installer system's config (fcos, flatcar) for this attempt.
    pub fn installer_url(&self) -> String {
        format!("{}/v1/machines/{}/installer?nonce={}", self.server, self.machine.name, self.nonce)
    }
    /// The NoCloud seed directory (cloud-init appends `user-data`, `meta-data`).
    pub fn seed_url(&self) -> String {
        format!("{}/v1/machines/{}/seed/{}/", self.server, self.machine.name, self.nonce)
    }
    /// Where a machine downloads one of the bundle's files: the artifact's own URL, or
    /// bootplane's artifact endpoint.
    pub fn artifact_url(&self, role: &str, a: &Artifact) -> String {
        crate::node::artifact_url(self.server, &self.bundle.pinned_name(), role, a)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallerPlan {
    pub kernel_url: String,
    /// (name, url): the name is what `initrd=` on the kernel line must match under UEFI.
    pub initrds: Vec<(String, String)>,
    pub args: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("bundle {bundle} has no {role}; add `{role}: {{ url: ... }}` to it")]
    MissingArtifact { bundle: String, role: &'static str },
    #[error("machine {machine} has no install_disk; set a stable path such as /dev/disk/by-id/...")]
    NoInstallDisk { machine: String },
    #[error("bundle {bundle}: args template is invalid: {detail}")]
    BadTemplate { bundle: String, detail: String },
    #[error("bundle {bundle}: {kind} installers are not implemented in this version of bootplane")]
    Unsupported { bundle: String, kind: &'static str },
    #[error(
        "bundle {bundle}: its image is served by bootplane without its signature (image.sig), so coreos-installer would stop \
         (\"signature not found\"); fetch the bundle with `bootplane bundle fetch fcos`, which keeps the signature, add \
         `image.sig` to an imported bundle, drop `image` to install the live image's own copy, or set `insecure_image: true` \
         for an image you built yourself"
    )]
    UnsignedImage { bundle: String },
    #[error("bundle {bundle}: kernel arguments would contain `{bad}`, which cannot go on a kernel command line")]
    UnsafeArgs { bundle: String, bad: String },
}

pub trait OsInstaller {
    fn plan(&self, ctx: &InstallContext<'_>) -> Result<InstallerPlan, PlanError>;
}

pub fn installer_for(kind: OsKind) -> Option<&'static dyn OsInstaller> {
    match kind {
        OsKind::Generic => Some(&generic::Generic),
        OsKind::Fcos => Some(&fcos::Fcos),
        OsKind::Flatcar => Some(&flatcar::Flatcar),
        OsKind::Ubuntu => Some(&ubuntu::Ubuntu),
    }
}

/// Plans the install of `ctx.machine`, refusing plans whose text could break out of the
/// iPXE line it is written on.
pub fn plan(ctx: &InstallContext<'_>) -> Result<InstallerPlan, PlanError> {
    let installer = installer_for(ctx.bundle.os).ok_or(PlanError::Unsupported {
        bundle: ctx.bundle.name.clone(),
        kind: ctx.bundle.os.as_str(),
    })?;
    let p = installer.plan(ctx)?;
    for text in [&p.kernel_url, &p.args].into_iter().chain(p.initrds.iter().map(|(_, u)| u)) {
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(PlanError::UnsafeArgs { bundle: ctx.bundle.name.clone(), bad: c.escape_default().to_string() });
        }
    }
    Ok(p)
}

fn require<'b>(bundle: &'b Bundle, a: Option<&'b Artifact>, role: &'static str) -> Result<&'b Artifact, PlanError> {
    a.ok_or(PlanError::MissingArtifact { bundle: bundle.name.clone(), role })
}
