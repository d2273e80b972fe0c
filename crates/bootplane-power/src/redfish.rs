//! The `redfish` driver: a BMC's Redfish service (DMTF DSP0266) over HTTPS with basic
//! auth, through `ureq`. Power is `ComputerSystem.Reset` (the target and the reset types
//! the system allows are read from the system itself); the one-time network boot is a
//! PATCH of `Boot` with `BootSourceOverrideEnabled: Once`. The certificate is always
//! verified, against `ca_file` when given (BMCs ship self-signed certificates).
//! Written against the spec rather than a Redfish crate: the four requests above are all
//! bootplane needs, and no maintained blocking client exists.

use crate::{read_password, PowerAction, PowerDriver, PowerError, PowerState, Result, Step};
use bootplane_core::power::RedfishSpec;
use serde_json::{json, Value};
use std::time::Duration;

pub struct Redfish {
    spec: RedfishSpec,
}

impl Redfish {
    pub fn new(spec: RedfishSpec) -> Self {
        Redfish { spec }
    }

    fn target(&self) -> String {
        format!("Redfish service {}", self.spec.url.trim_end_matches('/'))
    }

    fn agent(&self) -> Result<ureq::Agent> {
        let b = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5)).timeout(Duration::from_secs(30)).redirects(0);
        let Some(ca) = &self.spec.ca_file else { return Ok(b.build()) };
        // A CA file that cannot be used is a setup problem, whichever step found it.
        crate::trusting(b, ca).map_err(|detail| PowerError::Failed { step: Step::Setup, detail: format!("power.redfish.ca_file: {detail}") })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.spec.url.trim_end_matches('/'))
    }

    /// A path the BMC handed us (`@odata.id`, an action's `target`), as a path on this
    /// same service: the password goes with every request, so a link naming another host
    /// (`https://elsewhere/...`, `@elsewhere/...` which would become userinfo) is refused.
    fn service_path(&self, step: Step, link: &str) -> Result<String> {
        let base = self.spec.url.trim_end_matches('/');
        let path = link.strip_prefix(base).filter(|p| p.starts_with('/')).unwrap_or(link);
        if pinned_path(path) {
            return Ok(path.to_string());
        }
        Err(PowerError::Failed {
            step,
            detail: format!("{} sent a link off its own service ({link:?}); bootplane only follows /redfish/v1/... paths on {base}", self.target()),
        })
    }

    fn call(&self, step: Step, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let password = read_password(&self.spec.password_file)?;
        use base64::Engine as _;
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", self.spec.username)));
        let req = self.agent()?.request(method, &self.url(path)).set("Authorization", &auth).set("Accept", "application/json");
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match res {
            Ok(r) => {
                let text = r.into_string().unwrap_or_default();
                Ok(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) })
            }
            Err(ureq::Error::Status(401 | 403, _)) => {
                Err(PowerError::Refused { step, target: self.target(), detail: "HTTP 401/403".into() })
            }
            Err(ureq::Error::Status(code, r)) => {
                let body: Value = r.into_json().unwrap_or(Value::Null);
                let msg = body["error"]["@Message.ExtendedInfo"][0]["Message"]
                    .as_str()
                    .or(body["error"]["message"].as_str())
                    .unwrap_or("no message")
                    .to_string();
                Err(PowerError::Failed { step, detail: format!("{} answered {method} {path} with HTTP {code}: {msg}", self.target()) })
            }
            Err(ureq::Error::Transport(t)) => {
                let mut detail = t.to_string();
                if detail.contains("certificate") || detail.contains("UnknownIssuer") {
                    detail.push_str("; name the CA that signed the BMC's certificate in power.redfish.ca_file");
                }
                Err(PowerError::Unreachable { step, target: self.target(), detail })
            }
        }
    }

    /// The system's path: the declared id, or the service's only system.
    fn system(&self, step: Step) -> Result<String> {
        if let Some(id) = &self.spec.system {
            return Ok(format!("/redfish/v1/Systems/{id}"));
        }
        let systems = self.call(step, "GET", "/redfish/v1/Systems", None)?;
        let members: Vec<&str> = systems["Members"].as_array().into_iter().flatten().filter_map(|m| m["@odata.id"].as_str()).collect();
        match members.as_slice() {
            [one] => self.service_path(step, one),
            [] => Err(PowerError::Failed { step, detail: format!("{} lists no systems", self.target()) }),
            many => Err(PowerError::Failed {
                step,
                detail: format!("{} has {} systems ({}); name one with power.redfish.system", self.target(), many.len(), many.join(", ")),
            }),
        }
    }
}

/// A Redfish resource path that stays on the service it is appended to: `/redfish/v1/`
/// and then plain path characters (no `@`, `\\`, `//`, `..`, query or fragment).
fn pinned_path(p: &str) -> bool {
    p.starts_with("/redfish/v1/")
        && !p.contains("//")
        && !p.split('/').any(|seg| seg == "..")
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~%:,;=!$&'()*+".contains(&b))
}

/// The PATCH body for a one-time network boot: `Once`, so the BMC clears it after the
/// next boot and the installed system then boots its disk.
fn boot_override(uefi: bool) -> Value {
    let mut boot = json!({ "BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe" });
    if uefi {
        boot["BootSourceOverrideMode"] = json!("UEFI");
    }
    json!({ "Boot": boot })
}

/// The `ResetType` for an action, from what the system allows (the spec leaves the
/// allowed set to the implementation).
fn reset_type(action: PowerAction, allowed: &[&str]) -> &'static str {
    let pick = |prefs: &[&'static str]| prefs.iter().copied().find(|p| allowed.is_empty() || allowed.contains(p)).unwrap_or(prefs[0]);
    match action {
        PowerAction::On => pick(&["On", "ForceOn"]),
        PowerAction::Off => pick(&["ForceOff", "GracefulShutdown"]),
        PowerAction::Cycle => pick(&["PowerCycle", "ForceRestart"]),
    }
}

impl PowerDriver for Redfish {
    fn kind(&self) -> &'static str {
        "redfish"
    }

    fn status(&self) -> Result<PowerState> {
        let sys = self.system(Step::Status)?;
        let s = self.call(Step::Status, "GET", &sys, None)?;
        Ok(match s["PowerState"].as_str() {
            Some("On") | Some("PoweringOff") => PowerState::On,
            Some("Off") | Some("PoweringOn") => PowerState::Off,
            other => PowerState::Unknown(format!("PowerState {other:?}")),
        })
    }

    fn power(&self, action: PowerAction) -> Result<()> {
        let step = Step::Power(action);
        let sys = self.system(step)?;
        let s = self.call(step, "GET", &sys, None)?;
        let reset = &s["Actions"]["#ComputerSystem.Reset"];
        let target = match reset["target"].as_str() {
            Some(t) => self.service_path(step, t)?,
            None => format!("{sys}/Actions/ComputerSystem.Reset"),
        };
        let allowed: Vec<&str> = reset["ResetType@Redfish.AllowableValues"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let kind = reset_type(action, &allowed);
        // A restart of a machine that is off does nothing on many BMCs: turn it on instead.
        let kind = if kind == "ForceRestart" && s["PowerState"] == "Off" { reset_type(PowerAction::On, &allowed) } else { kind };
        self.call(step, "POST", &target, Some(json!({ "ResetType": kind }))).map(drop)
    }

    fn boot_once_from_network(&self, uefi: bool) -> Result<()> {
        let sys = self.system(Step::BootOverride)?;
        self.call(Step::BootOverride, "PATCH", &sys, Some(boot_override(uefi))).map(drop)
    }

    fn sets_boot_device(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_override_is_once_only() {
        assert_eq!(
            boot_override(true),
            json!({ "Boot": { "BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideMode": "UEFI" } })
        );
        assert!(boot_override(false)["Boot"].get("BootSourceOverrideMode").is_none());
    }

    #[test]
    fn links_from_the_bmc_stay_on_its_service() {
        let r = Redfish::new(RedfishSpec {
            url: "https://198.18.0.5/".into(),
            system: None,
            username: "root".into(),
            password_file: "/etc/bmc".into(),
            password: None,
            ca_file: None,
        });
        let ok = |l: &str| r.service_path(Step::Status, l).ok();
        assert_eq!(ok("/redfish/v1/Systems/1").as_deref(), Some("/redfish/v1/Systems/1"));
        assert_eq!(ok("https://198.18.0.5/redfish/v1/Systems/1/Actions/ComputerSystem.Reset").as_deref(), Some("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"));
        // Each of these, appended to the base URL, would send the password elsewhere (or
        // to another path than a Redfish resource).
        for hostile in [
            "@198.18.0.66/redfish/v1/Systems/1",
            "https://198.18.0.66/redfish/v1/Systems/1",
            "//198.18.0.66/redfish/v1/Systems/1",
            ".198.18.0.66/redfish/v1/Systems/1",
            "/redfish/v1/../../admin",
            "/redfish/v1//x",
            "/redfish/v1/Systems/1?redirect=https://x",
            "/redfish/v1/Systems/1\\@x",
            "https://198.18.0.5.evil/redfish/v1/Systems/1",
        ] {
            assert!(ok(hostile).is_none(), "{hostile} was followed: {:?}", r.url(&ok(hostile).unwrap_or_default()));
        }
    }

    #[test]
    fn reset_types_follow_what_the_system_allows() {
        assert_eq!(reset_type(PowerAction::Cycle, &["On", "ForceOff", "ForceRestart"]), "ForceRestart");
        assert_eq!(reset_type(PowerAction::Cycle, &["PowerCycle", "ForceRestart"]), "PowerCycle");
        assert_eq!(reset_type(PowerAction::Off, &["GracefulShutdown"]), "GracefulShutdown");
        assert_eq!(reset_type(PowerAction::On, &[]), "On", "nothing listed: the common name");
    }
}
