//! Machine power control: the [`PowerDriver`] trait, one module per driver (`ipmi`,
//! `redfish`, `command`), and [`driver_for`], the one place that picks a driver from a
//! machine's `power:` declaration. Drivers are blocking (a subprocess, an HTTP call with
//! deadlines); the server runs them off its async threads.
//!
//! Every error names the step that failed ([`Step`]) so a caller can say "the BMC
//! accepted the boot override but refused the power cycle". Nothing here logs, and no
//! error or output carries a password: drivers read it from its file at each use and
//! hand it to the BMC only (ipmitool through its environment, never its argv).
//! `docs/bmc-notes.md` records the BMC and simulator behaviour the drivers handle.

pub mod command;
pub mod ipmi;
pub mod redfish;

use bootplane_core::power::{Driver, PowerSpec};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerAction {
    On,
    Off,
    /// Off then on (a hard cycle: the OS is not asked to shut down).
    Cycle,
}

impl PowerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::On => "on",
            PowerAction::Off => "off",
            PowerAction::Cycle => "cycle",
        }
    }
}

impl std::str::FromStr for PowerAction {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "on" => Ok(PowerAction::On),
            "off" => Ok(PowerAction::Off),
            "cycle" => Ok(PowerAction::Cycle),
            other => Err(format!("`{other}` is not a power action: use on, off or cycle")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    /// The driver cannot tell (a command driver without a status command, an answer
    /// it does not know).
    Unknown(String),
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PowerState::On => f.write_str("on"),
            PowerState::Off => f.write_str("off"),
            PowerState::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// Which request to the BMC (or command) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Status,
    /// The one-time boot override to the network.
    BootOverride,
    Power(PowerAction),
    /// Reading the password file, or finding the system.
    Setup,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Status => f.write_str("power status"),
            Step::BootOverride => f.write_str("one-time network boot override"),
            Step::Power(a) => write!(f, "power {}", a.as_str()),
            Step::Setup => f.write_str("driver setup"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("{step}: cannot reach {target}: {detail}")]
    Unreachable { step: Step, target: String, detail: String },
    #[error("{step}: {target} refused the credentials ({detail}); check the username and the password file")]
    Refused { step: Step, target: String, detail: String },
    #[error("{step}: did not finish within {secs} s")]
    Timeout { step: Step, secs: u64 },
    #[error("{step}: {detail}")]
    Failed { step: Step, detail: String },
    #[error("{step}: this driver cannot do that ({detail})")]
    Unsupported { step: Step, detail: String },
}

impl PowerError {
    pub fn step(&self) -> Step {
        match self {
            PowerError::Unreachable { step, .. }
            | PowerError::Refused { step, .. }
            | PowerError::Timeout { step, .. }
            | PowerError::Failed { step, .. }
            | PowerError::Unsupported { step, .. } => *step,
        }
    }
}

pub type Result<T> = std::result::Result<T, PowerError>;

/// What a machine's power control can do. Drivers implement the three requests; the
/// default `cycle_into_network_boot` is the reinstall sequence built on them.
pub trait PowerDriver: Send + Sync {
    fn kind(&self) -> &'static str;
    fn status(&self) -> Result<PowerState>;
    fn power(&self, action: PowerAction) -> Result<()>;
    /// The next boot (only) goes to the network; `uefi` for UEFI machines.
    fn boot_once_from_network(&self, uefi: bool) -> Result<()> {
        let _ = uefi;
        Err(PowerError::Unsupported { step: Step::BootOverride, detail: format!("{} has no boot-device control", self.kind()) })
    }
    /// Whether [`PowerDriver::boot_once_from_network`] is real (else the machine must
    /// already boot from the network first).
    fn sets_boot_device(&self) -> bool {
        false
    }
}

/// Switches power, then waits (up to `within`) for the state to follow: BMCs apply
/// power changes after a delay (seconds, on real hardware and in Redfish emulators).
/// The state read last is returned even when it has not followed yet.
pub fn power_and_settle(driver: &dyn PowerDriver, action: PowerAction, within: std::time::Duration) -> Result<PowerState> {
    driver.power(action)?;
    let want = match action {
        PowerAction::Off => PowerState::Off,
        PowerAction::On | PowerAction::Cycle => PowerState::On,
    };
    let deadline = std::time::Instant::now() + within;
    loop {
        let state = driver.status()?;
        if state == want || matches!(state, PowerState::Unknown(_)) || std::time::Instant::now() >= deadline {
            return Ok(state);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// What a driver needs to know about its machine (for command templates).
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub name: String,
    pub mac: Option<String>,
    pub ip: Option<String>,
}

/// The driver for a machine's declaration; an error when it does not declare exactly one.
pub fn driver_for(spec: &PowerSpec, target: &Target) -> Result<Box<dyn PowerDriver>> {
    Ok(match spec.driver() {
        Some(Driver::Ipmi(i)) => Box::new(ipmi::Ipmi::new(i.clone())),
        Some(Driver::Redfish(r)) => Box::new(redfish::Redfish::new(r.clone())),
        Some(Driver::Command(c)) => Box::new(command::Command::new(c.clone(), target.clone())),
        None => return Err(PowerError::Failed { step: Step::Setup, detail: "power: declare exactly one of ipmi, redfish or command".into() }),
    })
}

/// The first line of a password file; an error names the file, never its contents.
pub(crate) fn read_password(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| PowerError::Failed {
        step: Step::Setup,
        detail: format!("cannot read the password file {}: {e}", path.display()),
    })?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
    if line.is_empty() {
        return Err(PowerError::Failed { step: Step::Setup, detail: format!("the password file {} is empty", path.display()) });
    }
    Ok(line)
}

/// `builder`'s agent trusting only the certificates in the PEM file `ca` (a BMC's
/// self-signed certificate, or bootplane's own site CA for the CLI).
pub fn trusting(builder: ureq::AgentBuilder, ca: &std::path::Path) -> std::result::Result<ureq::Agent, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: not PEM: {e}", ca.display()))?;
        roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no certificate", ca.display()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(builder.tls_config(std::sync::Arc::new(config)).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_errors_name_their_step() {
        assert_eq!("cycle".parse::<PowerAction>(), Ok(PowerAction::Cycle));
        assert!("reboot".parse::<PowerAction>().unwrap_err().contains("on, off or cycle"));
        let e = PowerError::Refused { step: Step::Power(PowerAction::Cycle), target: "bmc 10.0.0.5".into(), detail: "x".into() };
        assert!(e.to_string().starts_with("power cycle: bmc 10.0.0.5 refused"), "{e}");
    }

    #[test]
    fn password_files_give_their_first_line_and_errors_never_their_contents() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, "s3cret\nignored\n").unwrap();
        assert_eq!(read_password(&f).unwrap(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        let e = read_password(&f).unwrap_err().to_string();
        assert!(e.contains("is empty") && e.contains(&f.display().to_string()), "{e}");
        assert!(read_password(&d.path().join("missing")).unwrap_err().to_string().contains("cannot read"));
    }
}
