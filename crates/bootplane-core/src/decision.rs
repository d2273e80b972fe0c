//! The boot decision: given what a machine said and what the store knows, what does it
//! get? This is the one function behind `/v1/boot/ipxe`, TFTP's `pxelinux.cfg` and
//! `bootplane render`. It never answers with an installer unless the machine's state
//! asks for one.

use crate::identity::{IdentityMatch, Observed};
use crate::model::{Bundle, MachineRecord};
use crate::os::{self, InstallContext, InstallerPlan, PlanError};
use crate::state::MachineState;

pub struct DecisionContext<'a> {
    pub observed: &'a Observed,
    pub identity: &'a IdentityMatch,
    /// The matched machine, when `identity` is `Known`.
    pub machine: Option<&'a MachineRecord>,
    /// The machine's bundle, when it has one and the store knows it.
    pub bundle: Option<&'a Bundle>,
    /// The advertise URL, without trailing slash.
    pub server: &'a str,
    /// Install attempts (config fetches) a machine may make before it is declared `failed`.
    pub max_install_attempts: u32,
    /// The nonce an installer answer carries (see [`crate::attempt`]).
    pub nonce: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootDecision {
    /// Destructive: boot the OS installer.
    Install { machine: String, bundle: String, plan: InstallerPlan },
    /// Boot the local disk.
    LocalBoot { machine: String, state: MachineState },
    /// Identity unknown or contradictory: print what was seen, boot the local disk.
    Quarantine { reason: String },
    /// The machine wants an installer but its configuration cannot produce one.
    Misconfigured { machine: String, reason: String },
    /// The machine used up its installer attempts; the caller marks it `failed`.
    AttemptsExhausted { machine: String, attempts: u32 },
}

impl BootDecision {
    /// The short label used in events and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            BootDecision::Install { .. } => "install",
            BootDecision::LocalBoot { .. } => "local",
            BootDecision::Quarantine { .. } => "quarantine",
            BootDecision::Misconfigured { .. } => "misconfigured",
            BootDecision::AttemptsExhausted { .. } => "attempts_exhausted",
        }
    }
}

/// What a local-boot answer adds after the state, for the operator at the console (iPXE
/// and GRUB print the same words).
pub fn local_boot_note(state: MachineState) -> &'static str {
    match state {
        MachineState::Failed => " (its install failed; provision it again to retry)",
        MachineState::Retired => " (retired)",
        _ => "",
    }
}

pub fn decide(ctx: &DecisionContext<'_>) -> BootDecision {
    let rec = match (ctx.identity, ctx.machine) {
        // The details (whose UUID, which serial) go to the operator's event log, not to
        // whoever sent the request: a MAC must not reveal its machine's UUID or serial.
        (IdentityMatch::Conflict(_), _) => {
            return BootDecision::Quarantine {
                reason: "identity conflict: what this machine reports does not match the inventory (details in the event log)".into(),
            }
        }
        (IdentityMatch::Unknown, _) => return BootDecision::Quarantine { reason: "machine is not in the inventory".into() },
        (IdentityMatch::Known(_), None) => return BootDecision::Quarantine { reason: "machine record vanished during lookup".into() },
        (IdentityMatch::Known(_), Some(rec)) => rec,
    };
    let name = rec.name().to_string();
    match rec.state {
        MachineState::Discovered => BootDecision::Quarantine {
            reason: format!("machine {name} was discovered but is not in the inventory"),
        },
        MachineState::Provision | MachineState::Installing => {
            if rec.install_attempts >= ctx.max_install_attempts {
                return BootDecision::AttemptsExhausted { machine: name, attempts: rec.install_attempts };
            }
            let Some(bundle) = ctx.bundle else {
                let reason = match &rec.spec.bundle {
                    Some(b) => format!("bundle {b} is not known to this server; apply it or fix the machine's `bundle`"),
                    None => "machine has no `bundle`; say which OS it installs".into(),
                };
                return BootDecision::Misconfigured { machine: name, reason };
            };
            if let Some(arch) = &ctx.observed.arch {
                if *arch != bundle.arch && !(arch == "i386" && bundle.arch == "x86_64") {
                    return BootDecision::Misconfigured {
                        machine: name,
                        reason: format!("machine booted as {arch} but bundle {} is for {}", bundle.name, bundle.arch),
                    };
                }
            }
            let ictx = InstallContext { machine: &rec.spec, bundle, server: ctx.server, nonce: ctx.nonce };
            match os::plan(&ictx) {
                Ok(plan) => BootDecision::Install { machine: name, bundle: bundle.name.clone(), plan },
                Err(e @ (PlanError::MissingArtifact { .. }
                | PlanError::NoInstallDisk { .. }
                | PlanError::BadTemplate { .. }
                | PlanError::Unsupported { .. }
                | PlanError::UnsafeArgs { .. }
                | PlanError::UnsignedImage { .. })) => BootDecision::Misconfigured { machine: name, reason: e.to_string() },
            }
        }
        // Written: the disk holds the new system; another install would destroy it.
        s @ (MachineState::Ready | MachineState::Written | MachineState::Installed | MachineState::Failed | MachineState::Retired) => {
            BootDecision::LocalBoot { machine: name, state: s }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Artifact, MachineSpec, OsKind};

    fn rec(state: MachineState, attempts: u32) -> MachineRecord {
        let now = chrono::Utc::now();
        MachineRecord {
            spec: MachineSpec { name: "m1".into(), bundle: Some("b".into()), ..Default::default() },
            state,
            install_attempts: attempts,
            credential_generation: 0,
            observed: Observed::default(),
            last_seen: None,
            created: now,
            updated: now,
        }
    }

    fn bundle() -> Bundle {
        Bundle { kernel: Some(Artifact::default()), initrd: Some(Artifact::default()), ..Bundle::new("b", OsKind::Generic, "x86_64") }
    }

    fn run(state: MachineState, attempts: u32, id: IdentityMatch) -> BootDecision {
        let r = rec(state, attempts);
        let b = bundle();
        let obs = Observed { arch: Some("x86_64".into()), ..Default::default() };
        decide(&DecisionContext {
            observed: &obs,
            identity: &id,
            machine: Some(&r),
            bundle: Some(&b),
            server: "http://s",
            max_install_attempts: 3,
            nonce: "abc0",
        })
    }

    #[test]
    fn installer_only_in_provision_and_installing() {
        let known = || IdentityMatch::Known("m1".into());
        for s in MachineState::ALL {
            let d = run(s, 0, known());
            assert_eq!(matches!(d, BootDecision::Install { .. }), s.serves_installer(), "{s}: {d:?}");
        }
    }

    #[test]
    fn conflicts_and_unknowns_quarantine_even_in_provision() {
        assert!(matches!(run(MachineState::Provision, 0, IdentityMatch::Unknown), BootDecision::Quarantine { .. }));
        assert!(matches!(run(MachineState::Provision, 0, IdentityMatch::Conflict("x".into())), BootDecision::Quarantine { .. }));
    }

    #[test]
    fn attempts_run_out() {
        assert!(matches!(run(MachineState::Installing, 3, IdentityMatch::Known("m1".into())), BootDecision::AttemptsExhausted { .. }));
    }

    #[test]
    fn wrong_arch_is_misconfigured_not_installed() {
        let r = rec(MachineState::Provision, 0);
        let b = bundle();
        let obs = Observed { arch: Some("aarch64".into()), ..Default::default() };
        let id = IdentityMatch::Known("m1".into());
        let d = decide(&DecisionContext { observed: &obs, identity: &id, machine: Some(&r), bundle: Some(&b), server: "http://s", max_install_attempts: 3, nonce: "abc0" });
        assert!(matches!(d, BootDecision::Misconfigured { .. }), "{d:?}");
    }
}
