//! A machine's Ignition config: the user's Butane (the machine's own snippet and its
//! named templates, each rendered with minijinja first) compiled by bootplane's Butane
//! compiler, with bootplane's own files merged in (hostname, `machine.env`), all in the
//! spec version the machine's Butane asks for, else the bundle's `butane_version`, else
//! [`crate::ignition::DEFAULT_SPEC`]. The server, `bootplane render` and the tests all
//! build configs here.

use crate::ignition;
use crate::model::{Bundle, MachineSpec, OsKind};
use crate::node::{self, K3sInputs};
use serde_json::{json, Value as J};

/// Everything a machine's config is built from.
pub struct Inputs<'a> {
    pub spec: &'a MachineSpec,
    /// The named templates it uses, in order.
    pub templates: &'a [(String, String)],
    pub bundle: Option<&'a Bundle>,
    /// The advertise URL.
    pub server: &'a str,
    pub credential: &'a str,
    /// The config's top-level `ssh_authorized_keys`, for the `core` user.
    pub ssh_keys: &'a [String],
    /// Set for cluster members.
    pub k3s: Option<K3sInputs<'a>>,
    /// The CA of bootplane's HTTPS listener, when `server` is that listener: written to
    /// [`crate::ignition::CA_PATH`] and trusted by Ignition and bootplane's scripts.
    pub ca_pem: Option<&'a str>,
}

impl Inputs<'_> {
    pub fn os(&self) -> OsKind {
        self.bundle.map(|b| b.os).unwrap_or(OsKind::Generic)
    }
}

/// bootplane's files and units as Ignition JSON (valid in every 3.x spec).
pub fn ignition_parts(s: &node::Setup) -> J {
    let files: Vec<J> = s
        .files
        .iter()
        .map(|f| json!({ "path": f.path, "overwrite": true, "contents": { "compression": "", "source": ignition::data_url(f.contents.as_bytes()) }, "mode": f.mode }))
        .collect();
    let units: Vec<J> = s.units.iter().map(|u| json!({ "name": u.name, "enabled": u.enabled, "contents": u.contents })).collect();
    let mut c = json!({});
    if !files.is_empty() {
        c["storage"] = json!({ "files": files });
    }
    if !units.is_empty() {
        c["systemd"] = json!({ "units": units });
    }
    c
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("machine {machine}: {what}: template error: {detail}")]
    Template { machine: String, what: String, detail: String },
    #[error("machine {machine}: {what}: Butane does not compile:\n{detail}")]
    Butane { machine: String, what: String, detail: String },
    #[error("machine {machine}: {what} asks for Ignition spec {got} but another part asks for {want}; use one Butane variant/version")]
    SpecMismatch { machine: String, what: String, got: String, want: String },
    #[error("machine {machine}: the assembled Ignition config is invalid:\n{detail}")]
    Invalid { machine: String, detail: String },
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
}

fn render(template: &str, spec: &MachineSpec, server: &str) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(template, minijinja::context! { machine => minijinja::Value::from_serialize(spec), server => server })
}

/// Merges `child` into `parent` Ignition configs: storage entries by path/device/name,
/// units by name (field by field, the child's fields win), other lists appended.
fn merge(parent: &mut J, child: J) {
    let (Some(p), J::Object(c)) = (parent.as_object_mut(), child) else { return };
    for (k, v) in c {
        match (k.as_str(), p.get_mut(&k)) {
            ("ignition", _) => {}
            ("storage", Some(J::Object(ps))) => {
                let merged = bootplane_butane::fcos::merge_storage(std::mem::take(ps), v.as_object().cloned().unwrap_or_default());
                *ps = merged;
            }
            ("systemd" | "passwd", Some(J::Object(ps))) => {
                for (lk, lv) in v.as_object().cloned().unwrap_or_default() {
                    let existing = ps.entry(lk).or_insert_with(|| json!([]));
                    if let (Some(a), Some(b)) = (existing.as_array_mut(), lv.as_array()) {
                        for item in b {
                            let name = item.get("name").and_then(J::as_str);
                            match a.iter_mut().find(|x| name.is_some() && x.get("name").and_then(J::as_str) == name) {
                                Some(x) => {
                                    if let (Some(xm), Some(im)) = (x.as_object_mut(), item.as_object()) {
                                        for (ik, iv) in im {
                                            xm.insert(ik.clone(), iv.clone());
                                        }
                                    }
                                }
                                None => a.push(item.clone()),
                            }
                        }
                    }
                }
            }
            _ => {
                p.insert(k, v);
            }
        }
    }
}

/// The Ignition config the machine gets, and its spec version.
pub fn assemble(inp: &Inputs<'_>) -> Result<(J, String), ConfigError> {
    let Inputs { spec, templates, bundle, server, credential, ssh_keys, .. } = *inp;
    let machine = spec.name.clone();
    let mut parts: Vec<(String, String)> = templates.iter().map(|(n, t)| (format!("template {n}"), t.clone())).collect();
    if let Some(b) = &spec.butane {
        parts.push(("butane".into(), b.clone()));
    }
    let mut compiled = Vec::new();
    let mut spec_version: Option<String> = None;
    for (what, text) in parts {
        let text = render(&text, spec, server).map_err(|e| ConfigError::Template { machine: machine.clone(), what: what.clone(), detail: e.to_string() })?;
        let t = bootplane_butane::translate(&text, &Default::default())
            .map_err(|f| ConfigError::Butane { machine: machine.clone(), what: what.clone(), detail: f.to_string() })?;
        if t.machine_config.is_some() {
            return Err(ConfigError::Butane {
                machine,
                what,
                detail: "variant openshift makes a MachineConfig for OpenShift's Machine Config Operator; a machine bootplane installs takes fcos or flatcar Butane".into(),
            });
        }
        match &spec_version {
            Some(v) if *v != t.spec => {
                return Err(ConfigError::SpecMismatch { machine, what, got: t.spec, want: v.clone() });
            }
            _ => spec_version = Some(t.spec.clone()),
        }
        compiled.push(t.config);
    }
    let version = spec_version.unwrap_or_else(|| {
        bundle.and_then(|b| b.butane_version.as_deref()).and_then(ignition::spec_for_butane).unwrap_or(ignition::DEFAULT_SPEC).to_string()
    });
    let hostname = spec.hostname.clone().unwrap_or_else(|| spec.name.clone());
    let env = ignition::machine_env(server, &spec.name, credential);
    let mut cfg = ignition::base_config(&version, &hostname, &env);
    if let Some(ca) = inp.ca_pem {
        // `merge` leaves the `ignition` section alone (it is bootplane's), so set it here.
        let mut trust = ignition::trust_ca(ca);
        cfg["ignition"]["security"] = trust["ignition"]["security"].take();
        merge(&mut cfg, json!({ "storage": trust["storage"].take() }));
    }
    if !ssh_keys.is_empty() {
        cfg["passwd"] = json!({ "users": [{ "name": "core", "sshAuthorizedKeys": ssh_keys }] });
    }
    let setup = node::setup(spec, inp.os(), server, inp.k3s.as_ref())?;
    merge(&mut cfg, ignition_parts(&setup));
    for c in compiled {
        merge(&mut cfg, c);
    }
    // machine.env is bootplane's: a user file at that path never replaces it.
    let ours = ignition::base_config(&version, &hostname, &env);
    if let (Some(files), Some(our_files)) = (cfg.pointer_mut("/storage/files").and_then(J::as_array_mut), ours.pointer("/storage/files").and_then(J::as_array)) {
        if let Some(i) = files.iter().position(|f| f.get("path").and_then(J::as_str) == Some("/etc/bootplane/machine.env")) {
            files[i] = our_files[1].clone();
        }
    }
    let mut cfg = cfg;
    bootplane_butane::schema::order("Config", &mut cfg);
    let text = cfg.to_string();
    let errors: Vec<String> = bootplane_butane::ignition::validate(&text)
        .into_iter()
        .filter(|e| e.level == bootplane_butane::Level::Error)
        .map(|e| e.to_string())
        .collect();
    if !errors.is_empty() {
        return Err(ConfigError::Invalid { machine, detail: errors.join("\n") });
    }
    Ok((cfg, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(spec: &'a MachineSpec, templates: &'a [(String, String)], credential: &'a str, ssh_keys: &'a [String]) -> Inputs<'a> {
        Inputs { spec, templates, bundle: None, server: "http://s", credential, ssh_keys, k3s: None, ca_pem: None }
    }

    fn spec(butane: Option<&str>) -> MachineSpec {
        MachineSpec { name: "lenovo1".into(), hostname: Some("lenovo1.lab.internal".into()), butane: butane.map(str::to_string), ..Default::default() }
    }

    #[test]
    fn spec_example_snippet_is_merged_in_its_own_version() {
        let b = "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/motd\n      contents: { inline: \"{{ machine.name }}\\n\" }\n";
        let keys = vec!["ssh-ed25519 AAAA admin@lab".to_string()];
        let (cfg, v) = assemble(&inputs(&spec(Some(b)), &[], "c0ffee", &keys)).unwrap();
        assert_eq!(v, "3.4.0");
        assert_eq!(cfg["passwd"]["users"][0]["sshAuthorizedKeys"][0], "ssh-ed25519 AAAA admin@lab");
        let order: Vec<&String> = cfg.as_object().unwrap().keys().collect();
        assert_eq!(order, ["ignition", "passwd", "storage"]);
        assert_eq!(cfg["ignition"]["version"], "3.4.0");
        let files = cfg["storage"]["files"].as_array().unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["/etc/hostname", "/etc/bootplane/machine.env", "/etc/motd"]);
        assert_eq!(files[2]["contents"]["source"], "data:,lenovo1%0A");
    }

    #[test]
    fn machine_env_cannot_be_replaced_and_errors_are_clear() {
        let b = "variant: fcos\nversion: 1.4.0\nstorage:\n  files:\n    - path: /etc/bootplane/machine.env\n      contents: { inline: evil }\n";
        let (cfg, v) = assemble(&inputs(&spec(Some(b)), &[], "c0ffee", &[])).unwrap();
        assert_eq!(v, "3.3.0");
        assert!(cfg.to_string().contains("BOOTPLANE_CREDENTIAL%3Dc0ffee"), "{cfg}");
        let e = assemble(&inputs(&spec(Some("variant: fcos\nversion: 1.5.0\nstorage: {files: [{path: rel}]}\n")), &[], "x", &[])).unwrap_err();
        assert!(e.to_string().contains("path not absolute"), "{e}");
        let e = assemble(&inputs(&spec(Some("x: {{ machine.nope }}")), &[], "x", &[])).unwrap_err();
        assert!(e.to_string().contains("template error"), "{e}");
        let tpl = vec![("base".to_string(), "variant: fcos\nversion: 1.4.0\n".to_string())];
        let e = assemble(&inputs(&spec(Some("variant: fcos\nversion: 1.5.0\n")), &tpl, "x", &[])).unwrap_err();
        assert!(matches!(e, ConfigError::SpecMismatch { .. }), "{e}");
        // A MachineConfig is for OpenShift's operator, not for a machine bootplane installs.
        let oc = "variant: openshift\nversion: 4.14.0\nmetadata:\n  name: x\n  labels:\n    machineconfiguration.openshift.io/role: worker\n";
        let e = assemble(&inputs(&spec(Some(oc)), &[], "x", &[])).unwrap_err();
        assert!(e.to_string().contains("takes fcos or flatcar Butane"), "{e}");
    }
}
