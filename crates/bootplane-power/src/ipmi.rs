//! The `ipmi` driver: IPMI 2.0 over LAN (RMCP+), through `ipmitool` (Debian package
//! `ipmitool`). Not a Rust crate: no maintained one speaks RMCP+ sessions (the session
//! setup, integrity and confidentiality algorithms BMCs require), and ipmitool is the
//! client every BMC vendor tests against. The password goes to ipmitool in its
//! environment (`-E`, `IPMI_PASSWORD`), never on its command line where `ps` shows it.
//! ipmitool's verbose output tells an unreachable BMC from refused credentials.

use crate::{read_password, PowerAction, PowerDriver, PowerError, PowerState, Result, Step};
use bootplane_core::power::IpmiSpec;
use std::process::Stdio;

pub struct Ipmi {
    spec: IpmiSpec,
    program: String,
}

impl Ipmi {
    pub fn new(spec: IpmiSpec) -> Self {
        // Tests may point at another build; operators get the packaged one.
        let program = std::env::var("BOOTPLANE_IPMITOOL").unwrap_or_else(|_| "ipmitool".into());
        Ipmi { spec, program }
    }

    fn target(&self) -> String {
        format!("BMC {}:{}", self.spec.address, self.spec.port.unwrap_or(623))
    }

    /// Runs `ipmitool ... <args>`; its stdout.
    fn run(&self, step: Step, args: &[&str]) -> Result<String> {
        let password = read_password(&self.spec.password_file)?;
        let port = self.spec.port.unwrap_or(623).to_string();
        let mut cmd = std::process::Command::new(&self.program);
        // -N/-R: 2 s per try, 3 tries: an unreachable BMC fails in about 6 s.
        cmd.args(["-v", "-I", "lanplus", "-H", &self.spec.address, "-p", &port, "-U", &self.spec.username, "-E", "-N", "2", "-R", "3"]);
        if let Some(c) = self.spec.cipher_suite {
            cmd.args(["-C", &c.to_string()]);
        }
        let out = cmd
            .args(args)
            .env("IPMI_PASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| PowerError::Failed { step, detail: format!("cannot run {} (apt-get install ipmitool): {e}", self.program) })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(classify(step, self.target(), &String::from_utf8_lossy(&out.stderr)))
    }
}

/// What ipmitool's (verbose) stderr says went wrong.
fn classify(step: Step, target: String, stderr: &str) -> PowerError {
    let has = |s: &str| stderr.lines().any(|l| l.contains(s));
    if has("RAKP 2 HMAC is invalid") || has("unauthorized name") || has("Invalid user name") || has("insufficient resources for session") && has("RAKP") {
        let detail = if has("unauthorized name") { "unknown user name" } else { "wrong password" };
        return PowerError::Refused { step, target, detail: detail.into() };
    }
    if has("Get Auth Capabilities error") || has("No response from remote controller") || has("Address lookup") {
        return PowerError::Unreachable { step, target, detail: "no answer to IPMI over LAN (UDP 623): address, port, or the BMC's LAN channel".into() };
    }
    // The last meaningful line: ipmitool's own reason (e.g. "Set Chassis Power Control to Cycle failed: ...").
    let reason = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Loading IANA") && !l.contains("Get Channel Cipher Suites") && !l.starts_with('>'))
        .unwrap_or("ipmitool failed without saying why");
    PowerError::Failed { step, detail: format!("{target}: {reason}") }
}

impl PowerDriver for Ipmi {
    fn kind(&self) -> &'static str {
        "ipmi"
    }

    fn status(&self) -> Result<PowerState> {
        let out = self.run(Step::Status, &["chassis", "power", "status"])?;
        Ok(if out.contains("Power is on") {
            PowerState::On
        } else if out.contains("Power is off") {
            PowerState::Off
        } else {
            PowerState::Unknown(out.trim().to_string())
        })
    }

    fn power(&self, action: PowerAction) -> Result<()> {
        self.run(Step::Power(action), &["chassis", "power", action.as_str()]).map(drop)
    }

    fn boot_once_from_network(&self, uefi: bool) -> Result<()> {
        // Without `persistent` the BMC clears the override after the next boot.
        let args: &[&str] = if uefi { &["chassis", "bootdev", "pxe", "options=efiboot"] } else { &["chassis", "bootdev", "pxe"] };
        self.run(Step::BootOverride, args).map(drop)
    }

    fn sets_boot_device(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ipmitool 1.8.19's verbose stderr, as captured against OpenIPMI's ipmi_sim.
    #[test]
    fn ipmitool_failures_are_told_apart() {
        let wrong_pw = "Loading IANA PEN Registry...\nUnable to Get Channel Cipher Suites\n> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n";
        assert!(matches!(classify(Step::Status, "b".into(), wrong_pw), PowerError::Refused { .. }));
        let unreachable = "Loading IANA PEN Registry...\nGet Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session\n";
        assert!(matches!(classify(Step::Status, "b".into(), unreachable), PowerError::Unreachable { .. }));
        let refused_cycle = "Unable to Get Channel Cipher Suites\nSet Chassis Power Control to Cycle failed: Invalid data field in request\n";
        let e = classify(Step::Power(PowerAction::Cycle), "BMC x:623".into(), refused_cycle);
        assert_eq!(e.to_string(), "power cycle: BMC x:623: Set Chassis Power Control to Cycle failed: Invalid data field in request");
    }
}
