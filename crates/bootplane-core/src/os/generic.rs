//! `generic` bundles: a kernel, an initrd and an argument template. The template sees
//! `machine`, `server` and `ignition_url`; an unknown variable is an error, not an empty
//! string, so a typo cannot silently drop an argument.

use super::{require, InstallContext, InstallerPlan, OsInstaller, PlanError};

pub struct Generic;

impl OsInstaller for Generic {
    fn plan(&self, ctx: &InstallContext<'_>) -> Result<InstallerPlan, PlanError> {
        let b = ctx.bundle;
        let kernel = require(b, b.kernel.as_ref(), "kernel")?;
        let initrd = require(b, b.initrd_artifact(), "initrd")?;
        let role = if b.initramfs.is_some() { "initramfs" } else { "initrd" };
        let args = match &b.args {
            Some(t) => render_args(t, ctx).map_err(|e| PlanError::BadTemplate {
                bundle: b.name.clone(),
                detail: e.to_string(),
            })?,
            None => String::new(),
        };
        Ok(InstallerPlan {
            kernel_url: ctx.artifact_url("kernel", kernel),
            initrds: vec![("initrd.img".into(), ctx.artifact_url(role, initrd))],
            args,
        })
    }
}

fn render_args(template: &str, ctx: &InstallContext<'_>) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(
        template,
        minijinja::context! {
            machine => minijinja::Value::from_serialize(ctx.machine),
            server => ctx.server,
            ignition_url => ctx.ignition_url(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Artifact, Bundle, MachineSpec, OsKind};

    fn bundle(args: &str) -> Bundle {
        Bundle {
            kernel: Some(Artifact { url: Some("http://m/vmlinuz".into()), ..Default::default() }),
            initrd: Some(Artifact::default()),
            args: Some(args.into()),
            ..Bundle::new("rescue", OsKind::Generic, "x86_64")
        }
    }

    #[test]
    fn template_variables() {
        let m = MachineSpec { name: "n1".into(), ..Default::default() };
        let b = bundle("console=ttyS0 name={{ machine.name }} cfg={{ ignition_url }}");
        let p = Generic.plan(&InstallContext { machine: &m, bundle: &b, server: "http://s:8080", nonce: "abc0" }).unwrap();
        assert_eq!(p.kernel_url, "http://m/vmlinuz");
        assert_eq!(p.initrds[0].1, "http://s:8080/artifacts/rescue/initrd");
        assert_eq!(p.args, "console=ttyS0 name=n1 cfg=http://s:8080/v1/machines/n1/ignition?nonce=abc0");
    }

    #[test]
    fn unknown_variable_is_an_error() {
        let m = MachineSpec { name: "n1".into(), ..Default::default() };
        let b = bundle("x={{ machine.nmae }}");
        assert!(matches!(
            Generic.plan(&InstallContext { machine: &m, bundle: &b, server: "http://s", nonce: "abc0" }),
            Err(PlanError::BadTemplate { .. })
        ));
    }
}
