//! How a machine's power is controlled (its `power:` field): through its BMC over IPMI
//! or Redfish, or by commands (a PDU, a smart plug, anything scriptable). Only the
//! declaration lives here; the drivers are in `bootplane-power`. Passwords are never in
//! the declaration: it names a file that holds one, and a `password` written inline is
//! kept only so validation can refuse it with a clear message (it is never stored).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `power: { ipmi: {...} }`, `{ redfish: {...} }` or `{ command: {...} }`: exactly one.
/// (A struct rather than an enum so the YAML needs no `!tag`.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSpec {
    /// IPMI over LAN (RMCP+, `lanplus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipmi: Option<IpmiSpec>,
    /// A Redfish service (DMTF DSP0266).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redfish: Option<RedfishSpec>,
    /// Commands run without a shell, argv templates with `{{ name }}`, `{{ mac }}`, `{{ ip }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandSpec>,
}

/// The one driver a [`PowerSpec`] declares.
#[derive(Clone, Copy, Debug)]
pub enum Driver<'a> {
    Ipmi(&'a IpmiSpec),
    Redfish(&'a RedfishSpec),
    Command(&'a CommandSpec),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpmiSpec {
    /// The BMC's address (host name or IP).
    pub address: String,
    /// UDP port; 623 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub username: String,
    /// A file (absolute path, mode 0600) holding the password on its first line.
    pub password_file: PathBuf,
    /// Refused by validation: a clear-text password does not belong in the YAML.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// The RMCP+ cipher suite (`ipmitool -C`); ipmitool asks the BMC when absent. Set it
    /// for BMCs that do not answer "Get Channel Cipher Suites" (3 is the common one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedfishSpec {
    /// The service root's base, e.g. `https://10.0.0.5` (`/redfish/v1` is appended).
    pub url: String,
    /// The system's id under `/redfish/v1/Systems/`; the only member when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub username: String,
    pub password_file: PathBuf,
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// A PEM file of the CA that signed the BMC's certificate (BMCs usually have
    /// self-signed ones); without it the system's roots are used. Always verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub on: Vec<String>,
    pub off: Vec<String>,
    /// Without it, a cycle is `off` then `on`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<Vec<String>>,
    /// Prints `on` or `off`; without it the status is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<String>>,
    /// Seconds each command may run; 30 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

impl PowerSpec {
    /// The declared driver, when exactly one is declared.
    pub fn driver(&self) -> Option<Driver<'_>> {
        match (&self.ipmi, &self.redfish, &self.command) {
            (Some(i), None, None) => Some(Driver::Ipmi(i)),
            (None, Some(r), None) => Some(Driver::Redfish(r)),
            (None, None, Some(c)) => Some(Driver::Command(c)),
            _ => None,
        }
    }

    /// What is wrong with the declaration, in words for the operator (`field: problem`).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(driver) = self.driver() else {
            return vec!["power: declare exactly one of ipmi, redfish or command".into()];
        };
        let file = |p: &PathBuf, field: &str, out: &mut Vec<String>| {
            if !p.is_absolute() {
                out.push(format!("{field}: `{}` must be an absolute path (the server reads it, from its own working directory)", p.display()));
            }
        };
        match driver {
            Driver::Ipmi(i) => {
                if i.password.is_some() {
                    out.push(inline_password("ipmi"));
                }
                file(&i.password_file, "power.ipmi.password_file", &mut out);
                if i.address.trim().is_empty() {
                    out.push("power.ipmi.address: empty".into());
                }
            }
            Driver::Redfish(r) => {
                if r.password.is_some() {
                    out.push(inline_password("redfish"));
                }
                file(&r.password_file, "power.redfish.password_file", &mut out);
                if let Some(ca) = &r.ca_file {
                    file(ca, "power.redfish.ca_file", &mut out);
                }
                if r.url.starts_with("http://") {
                    out.push("power.redfish.url: plain http would send the BMC password in clear; use https (with ca_file for a self-signed BMC)".into());
                } else if !r.url.starts_with("https://") {
                    out.push(format!("power.redfish.url: `{}` is not an https URL", r.url));
                }
            }
            Driver::Command(c) => {
                for (field, argv) in [("on", Some(&c.on)), ("off", Some(&c.off)), ("cycle", c.cycle.as_ref()), ("status", c.status.as_ref())] {
                    if argv.is_some_and(|a| a.is_empty() || a[0].trim().is_empty()) {
                        out.push(format!("power.command.{field}: needs a program and its arguments, e.g. [\"/usr/local/bin/pdu\", \"on\", \"{{{{ name }}}}\"]"));
                    }
                }
                if c.timeout == Some(0) {
                    out.push("power.command.timeout: 0 seconds would fail every command".into());
                }
            }
        }
        out
    }
}

fn inline_password(driver: &str) -> String {
    format!(
        "power.{driver}.password: clear-text passwords are refused in bootplane.yaml (it is shared, applied and stored); \
         write it to a file only the server can read (chmod 0600) and name it with power.{driver}.password_file"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_passwords_are_refused_and_never_serialized() {
        let spec: PowerSpec = yaml_serde::from_str("ipmi: { address: 10.0.0.5, username: admin, password: hunter2, password_file: /etc/bmc }").unwrap();
        assert!(spec.problems().iter().any(|p| p.contains("clear-text passwords are refused")), "{:?}", spec.problems());
        let stored = serde_json::to_string(&spec).unwrap();
        assert!(!stored.contains("hunter2"), "{stored}");
    }

    #[test]
    fn each_driver_parses_and_bad_declarations_say_why() {
        let r: PowerSpec = yaml_serde::from_str("redfish: { url: http://bmc, username: u, password_file: rel/pw }").unwrap();
        let p = r.problems();
        assert!(p.iter().any(|m| m.contains("absolute path")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("plain http")), "http is refused, not warned about: {p:?}");
        let c: PowerSpec = yaml_serde::from_str("command: { on: [], off: [/bin/pdu, off], timeout: 0 }").unwrap();
        assert_eq!(c.problems().len(), 2, "{:?}", c.problems());
        assert!(yaml_serde::from_str::<PowerSpec>("wol: { mac: x }").is_err(), "unknown drivers are errors");
        let ok: PowerSpec = yaml_serde::from_str("ipmi: { address: 10.0.0.5, username: admin, password_file: /etc/bmc/n1 }").unwrap();
        assert!(ok.problems().is_empty() && matches!(ok.driver(), Some(Driver::Ipmi(_))));
        let two: PowerSpec = yaml_serde::from_str("ipmi: { address: a, username: u, password_file: /p }\ncommand: { on: [a], off: [b] }").unwrap();
        assert!(two.problems()[0].contains("exactly one"));
        assert!(PowerSpec::default().problems()[0].contains("exactly one"));
    }
}
