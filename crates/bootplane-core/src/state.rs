//! The machine state machine. [`TRANSITIONS`] is the single table of allowed moves; the
//! store refuses anything not in it, and every accepted move becomes a `state.changed`
//! event in the same transaction.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum MachineState {
    /// Seen on the wire but not in the inventory. Never installs.
    Discovered,
    /// Known; boots its local disk.
    Ready,
    /// Installs on its next network boot.
    Provision,
    /// The installer has fetched its config.
    Installing,
    /// The installer environment reported the disk written and reboots: from now on the
    /// machine boots its disk while bootplane waits for the installed system's report.
    Written,
    /// Reported success; boots its local disk from now on.
    Installed,
    Failed,
    Retired,
}

use MachineState::*;

/// Why a transition happens; recorded in the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `bootplane apply` with `provision: true`, or adoption of a discovered machine.
    Apply,
    /// `machines provision` / `POST .../provision`.
    AdminProvision,
    /// `machines retire` / `POST .../retire`.
    AdminRetire,
    /// The installer fetched the machine's config.
    ConfigFetched,
    /// The machine reported through its credential.
    Report,
    /// Too many installer attempts without a report.
    AttemptsExhausted,
    /// The disk was written but the installed system did not report in time.
    ReportTimeout,
    /// `machines reinstall` provisioned the machine but could not power-cycle it: the
    /// provision is undone, back to where it was.
    ReinstallAborted,
}

/// (from, to, trigger): every move the system may make.
pub const TRANSITIONS: &[(MachineState, MachineState, Trigger)] = &[
    (Discovered, Ready, Trigger::Apply),
    (Discovered, Provision, Trigger::Apply),
    (Ready, Provision, Trigger::Apply),
    (Ready, Provision, Trigger::AdminProvision),
    (Installing, Provision, Trigger::AdminProvision),
    (Installed, Provision, Trigger::AdminProvision),
    (Failed, Provision, Trigger::AdminProvision),
    (Retired, Provision, Trigger::AdminProvision),
    (Provision, Installing, Trigger::ConfigFetched),
    (Installing, Written, Trigger::Report),
    (Installing, Installed, Trigger::Report),
    (Installing, Failed, Trigger::Report),
    (Written, Installed, Trigger::Report),
    (Written, Failed, Trigger::Report),
    (Written, Failed, Trigger::ReportTimeout),
    (Written, Provision, Trigger::AdminProvision),
    (Written, Retired, Trigger::AdminRetire),
    (Provision, Failed, Trigger::AttemptsExhausted),
    (Installing, Failed, Trigger::AttemptsExhausted),
    (Discovered, Retired, Trigger::AdminRetire),
    (Ready, Retired, Trigger::AdminRetire),
    (Provision, Retired, Trigger::AdminRetire),
    (Installing, Retired, Trigger::AdminRetire),
    (Installed, Retired, Trigger::AdminRetire),
    (Failed, Retired, Trigger::AdminRetire),
    (Provision, Installed, Trigger::ReinstallAborted),
    (Provision, Ready, Trigger::ReinstallAborted),
    (Provision, Failed, Trigger::ReinstallAborted),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("machine cannot go from {from} to {to} by {trigger:?}")]
pub struct TransitionError {
    pub from: MachineState,
    pub to: MachineState,
    pub trigger: Trigger,
}

impl MachineState {
    pub const ALL: [MachineState; 8] = [Discovered, Ready, Provision, Installing, Written, Installed, Failed, Retired];

    pub fn as_str(self) -> &'static str {
        match self {
            Discovered => "discovered",
            Ready => "ready",
            Provision => "provision",
            Installing => "installing",
            Written => "written",
            Installed => "installed",
            Failed => "failed",
            Retired => "retired",
        }
    }

    /// The only states in which a destructive answer (an installer) may be given.
    pub fn serves_installer(self) -> bool {
        matches!(self, Provision | Installing)
    }

    pub fn check(self, to: MachineState, trigger: Trigger) -> Result<(), TransitionError> {
        if TRANSITIONS.iter().any(|&(f, t, tr)| f == self && t == to && tr == trigger) {
            Ok(())
        } else {
            Err(TransitionError { from: self, to, trigger })
        }
    }
}

impl fmt::Display for MachineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MachineState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MachineState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown machine state `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_provision_and_installing_serve_installers() {
        let serving: Vec<_> = MachineState::ALL.into_iter().filter(|s| s.serves_installer()).collect();
        assert_eq!(serving, vec![Provision, Installing]);
    }

    #[test]
    fn installed_is_left_only_by_explicit_admin_action() {
        for &(from, to, trig) in TRANSITIONS {
            if from == Installed {
                assert!(matches!(trig, Trigger::AdminProvision | Trigger::AdminRetire), "{to:?} {trig:?}");
            }
        }
        assert!(Installed.check(Provision, Trigger::Apply).is_err());
        assert!(Discovered.check(Installing, Trigger::ConfigFetched).is_err());
    }

    #[test]
    fn a_written_disk_is_never_reinstalled_by_a_boot() {
        // Nothing a network boot triggers (config fetch, attempts) leads out of written;
        // only the installed system's report, its timeout, or an operator does.
        for &(from, to, trig) in TRANSITIONS {
            if from == Written {
                assert!(matches!(trig, Trigger::Report | Trigger::ReportTimeout | Trigger::AdminProvision | Trigger::AdminRetire), "{to:?} {trig:?}");
            }
        }
        assert!(!Written.serves_installer());
        assert!(Written.check(Installing, Trigger::ConfigFetched).is_err());
        assert!(Written.check(Failed, Trigger::AttemptsExhausted).is_err());
        assert!(Installing.check(Written, Trigger::Report).is_ok() && Written.check(Installed, Trigger::Report).is_ok());
    }

    #[test]
    fn names_round_trip() {
        for s in MachineState::ALL {
            assert_eq!(s.as_str().parse::<MachineState>().unwrap(), s);
        }
    }
}
