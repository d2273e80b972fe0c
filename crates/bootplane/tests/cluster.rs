//! Cluster formation as users see it, through the real binary: golden renders (iPXE,
//! Butane, config, k3s config.yaml) for every OS kind and role, every Ignition through
//! bootplane's validator, Debian's `ignition-validate` and the real Ignition files stage,
//! every generated shell script through `shellcheck`, the lints, the seed scenario, and
//! a full join run against a live server that must never show a token where it should
//! not be. Golden files live in `tests/golden/`; `BOOTPLANE_UPDATE_GOLDEN=1` rewrites them.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn fixture() -> PathBuf {
    here().join("tests/fixtures/clusters.yaml")
}

/// `bootplane render NAME --config CFG FLAG`: (exit ok, stdout, stderr).
fn render(cfg: &Path, name: &str, flag: &str) -> (bool, String, String) {
    let o = Command::new(BIN).args(["render", name, "--config"]).arg(cfg).arg(flag).output().unwrap();
    (o.status.success(), String::from_utf8(o.stdout).unwrap(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn rendered(cfg: &Path, name: &str, flag: &str) -> String {
    let (ok, out, err) = render(cfg, name, flag);
    assert!(ok, "render {name} {flag}: {err}");
    out
}

/// Per OS kind, 3 servers + 2 agents (fcos: s1-s3, a1-a2; others: x1, x2, x4 servers,
/// x3, x5 agents).
const MACHINES: [&str; 20] = [
    "s1", "s2", "s3", "a1", "a2", "f1", "f2", "f3", "f4", "f5", "u1", "u2", "u3", "u4", "u5", "g1", "g2", "g3", "g4", "g5",
];

/// Each fixture machine's golden file, named after what it shows: OS kind, role (the
/// first server bootstraps), what sets it apart, then the machine.
const GOLDEN: [(&str, &str); 20] = [
    ("s1", "fcos-bootstrap-static-ip-s1"),
    ("s2", "fcos-server-s2"),
    ("s3", "fcos-server-no-template-s3"),
    ("a1", "fcos-agent-a1"),
    ("a2", "fcos-agent-own-butane-a2"),
    ("f1", "flatcar-bootstrap-static-ip-f1"),
    ("f2", "flatcar-server-f2"),
    ("f3", "flatcar-agent-f3"),
    ("f4", "flatcar-server-f4"),
    ("f5", "flatcar-agent-f5"),
    ("u1", "ubuntu-bootstrap-static-ip-u1"),
    ("u2", "ubuntu-server-u2"),
    ("u3", "ubuntu-agent-u3"),
    ("u4", "ubuntu-server-u4"),
    ("u5", "ubuntu-agent-u5"),
    ("g1", "generic-bootstrap-g1"),
    ("g2", "generic-server-g2"),
    ("g3", "generic-agent-g3"),
    ("g4", "generic-server-g4"),
    ("g5", "generic-agent-g5"),
];

fn real_validate(json: &str) -> Result<(), String> {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("c.ign");
    std::fs::write(&f, json).unwrap();
    let o = Command::new("ignition-validate").arg(&f).output().expect("ignition-validate (apt-get install ignition)");
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    }
}

/// Every file of an Ignition config: (path, mode, text).
fn ignition_files(ign: &Value) -> Vec<(String, u64, String)> {
    ign["storage"]["files"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    let src = f["contents"]["source"].as_str().unwrap_or("data:,");
                    (f["path"].as_str().unwrap().to_string(), f["mode"].as_u64().unwrap_or(0o644), data_url_text(src))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every file of a cloud-init user-data document: (path, text).
fn user_data_files(text: &str) -> Vec<(String, String)> {
    let v: Value = yaml_serde::from_str(text).unwrap();
    v["autoinstall"]["user-data"]["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["content"].as_str().unwrap().to_string()))
        .collect()
}

fn shellcheck(path: &str, text: &str) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("script");
    std::fs::write(&f, text).unwrap();
    let o = Command::new("shellcheck").arg(&f).output().expect("shellcheck (apt-get install shellcheck)");
    assert!(o.status.success(), "shellcheck {path}:\n{}", String::from_utf8_lossy(&o.stdout));
}

/// One machine's renders as one golden document.
fn golden_doc(cfg: &Path, name: &str) -> (String, String) {
    let ipxe = rendered(cfg, name, "--ipxe");
    assert_ipxe(&ipxe);
    let butane = rendered(cfg, name, "--butane");
    let config = rendered(cfg, name, "--ignition");
    let k3s = rendered(cfg, name, "--k3s-config");
    let doc = format!("=== boot.ipxe ===\n{ipxe}\n=== butane ===\n{butane}=== config ===\n{config}=== k3s config.yaml ===\n{k3s}");
    (doc, config)
}

#[test]
fn golden_renders_for_every_os_kind_and_role() {
    let cfg = fixture();
    let dir = here().join("tests/golden");
    let update = std::env::var_os("BOOTPLANE_UPDATE_GOLDEN").is_some();
    let mut mismatched = Vec::new();
    for name in MACHINES {
        let (doc, _) = golden_doc(&cfg, name);
        let file = GOLDEN.iter().find(|(m, _)| m == &name).map(|(_, f)| *f).expect("every fixture machine has a golden file name");
        let path = dir.join(format!("{file}.txt"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &doc).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing; run with BOOTPLANE_UPDATE_GOLDEN=1", path.display()));
        if want != doc {
            let line = want.lines().zip(doc.lines()).position(|(a, b)| a != b).unwrap_or(0);
            mismatched.push(format!("{name}: first difference at line {} (want {:?}, got {:?})", line + 1, want.lines().nth(line), doc.lines().nth(line)));
        }
    }
    assert!(mismatched.is_empty(), "renders differ from tests/golden (BOOTPLANE_UPDATE_GOLDEN=1 rewrites):\n{}", mismatched.join("\n"));
}

#[test]
fn roles_get_the_right_k3s_settings() {
    let cfg = fixture();
    let k = |n: &str| rendered(&cfg, n, "--k3s-config");
    assert!(k("s1").contains("cluster-init: true") && !k("s1").contains("\nserver:"));
    for n in ["s2", "s3", "a1", "a2"] {
        assert!(k(n).contains("server: https://198.18.0.100:6443") && !k(n).contains("cluster-init"), "{n}: {}", k(n));
    }
    assert!(k("a1").contains("token-file:") && !k("a1").contains("agent-token-file") && !k("a1").contains("disable"));
    assert!(k("s2").contains("- \"198.18.0.100\"\n- k8s.lab.test") && k("s2").contains("kubelet-arg:\n- cgroup-driver=systemd"));
    assert!(k("s1").contains("node-ip: \"198.18.0.11\"") && k("s1").contains("node-label:\n- rack=r1"));
    // Joiners of clusters without an API endpoint go to the bootstrap server.
    assert!(k("f3").contains("server: https://198.18.0.21:6443"), "{}", k("f3"));
    assert!(k("f1").contains("flannel-backend: wireguard-native") && !k("f1").contains("selinux"));
    assert!(k("s1").contains("selinux: true"));
    let (ok, _, err) = render(&cfg, "s1", "--k3s-config");
    assert!(ok, "{err}");
    // Air-gapped fcos: the binary, images and SELinux RPM come from bootplane.
    let ign: Value = serde_json::from_str(&rendered(&cfg, "a1", "--ignition")).unwrap();
    let env = ignition_files(&ign).into_iter().find(|f| f.0 == "/etc/bootplane/k3s.env").unwrap().2;
    assert!(env.contains("K3S_BINARY_URL=http://198.18.0.10:8080/artifacts/k3s-v1.28.5/k3s\nK3S_BINARY_SHA256=5555"), "{env}");
    assert!(env.contains("K3S_IMAGES_URL=") && env.contains("K3S_SELINUX_RPM_URL="), "{env}");
    // Flatcar keeps binaries in /opt/bin and its network in systemd-networkd.
    let ign: Value = serde_json::from_str(&rendered(&cfg, "f1", "--ignition")).unwrap();
    let files = ignition_files(&ign);
    assert!(files.iter().any(|f| f.0 == "/opt/bin/bootplane-k3s-install" && f.1 == 0o755));
    let net = files.iter().find(|f| f.0 == "/etc/systemd/network/00-bootplane-static.network").unwrap();
    assert!(net.2.contains("Address=198.18.0.21/24\nGateway=198.18.0.1\nDNS=198.18.0.1\nDomains=lab.test"), "{}", net.2);
    let ign: Value = serde_json::from_str(&rendered(&cfg, "s1", "--ignition")).unwrap();
    let nm = ignition_files(&ign).into_iter().find(|f| f.0.ends_with(".nmconnection")).unwrap();
    assert_eq!(nm.1, 0o600);
    assert!(nm.2.contains("address1=198.18.0.11/24,198.18.0.1"), "{}", nm.2);
    let (ok, _, err) = render(&cfg, "nope", "--k3s-config");
    assert!(!ok && err.contains("no machine named `nope`"), "{err}");
}

#[test]
fn every_config_validates_and_every_script_passes_shellcheck() {
    let cfg = fixture();
    let mut scripts = 0;
    for name in MACHINES {
        let out = rendered(&cfg, name, "--ignition");
        let files: Vec<(String, String)> = if name.starts_with('u') {
            let v: Value = yaml_serde::from_str(&out).expect("user-data is YAML");
            assert_eq!(v["autoinstall"]["version"], 1);
            assert!(out.starts_with("#cloud-config\n"));
            user_data_files(&out)
        } else {
            let errs: Vec<String> = bootplane_butane::ignition::validate(&out)
                .into_iter()
                .filter(|e| e.level == bootplane_butane::Level::Error)
                .map(|e| e.to_string())
                .collect();
            assert!(errs.is_empty(), "{name}: bootplane's validator: {errs:?}");
            real_validate(&out).unwrap_or_else(|e| panic!("{name}: ignition-validate: {e}\n{out}"));
            ignition_files(&serde_json::from_str(&out).unwrap()).into_iter().map(|(p, _, t)| (p, t)).collect()
        };
        for (path, text) in files {
            if text.starts_with("#!") {
                shellcheck(&format!("{name}:{path}"), &text);
                scripts += 1;
            }
        }
    }
    // The scripts as shipped in the source tree, the Flatcar live installer included.
    for f in ["k3s-install.sh", "report.sh", "flatcar-installer.sh"] {
        let p = here().join("../bootplane-core/src/scripts").join(f);
        shellcheck(f, &std::fs::read_to_string(p).unwrap());
    }
    assert_eq!(scripts, MACHINES.len() * 2, "every k3s node carries install and report scripts");
}

#[test]
fn real_ignition_stages_a_k3s_node() {
    use std::os::unix::fs::PermissionsExt;
    let cfg = fixture();
    for (name, bin, unit) in [("s2", "usr/local/bin", "k3s.service"), ("f3", "opt/bin", "k3s-agent.service")] {
        let d = tempfile::tempdir().unwrap();
        let root = bootplane_testkit::ignition::apply(d.path(), &rendered(&cfg, name, "--ignition"));
        let mode = |p: &str| std::fs::metadata(root.join(p)).unwrap_or_else(|e| panic!("{name}: {p}: {e}")).permissions().mode() & 0o7777;
        assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).unwrap(), format!("{name}.lab.test\n"));
        assert_eq!(mode("etc/rancher/k3s/config.yaml"), 0o600);
        assert_eq!(mode("etc/bootplane/machine.env"), 0o600);
        assert_eq!(mode(&format!("{bin}/bootplane-k3s-install")), 0o755);
        assert_eq!(mode(&format!("{bin}/bootplane-report")), 0o755);
        let preset = std::fs::read_to_string(root.join("etc/systemd/system-preset/20-ignition.preset")).unwrap();
        for u in ["bootplane-k3s-install.service", unit, "bootplane-report.service"] {
            assert!(preset.contains(&format!("enable {u}")), "{name}: {preset}");
            assert!(root.join("etc/systemd/system").join(u).exists(), "{name}: {u}");
        }
        let k3s_unit = std::fs::read_to_string(root.join("etc/systemd/system").join(unit)).unwrap();
        assert!(k3s_unit.contains(&format!("ExecStart=/{bin}/k3s ")), "{k3s_unit}");
    }
    // And every other Ignition of the fixture applies as well.
    for name in MACHINES.into_iter().filter(|n| !n.starts_with('u')) {
        let d = tempfile::tempdir().unwrap();
        let root = bootplane_testkit::ignition::apply(d.path(), &rendered(&cfg, name, "--ignition"));
        assert!(root.join("etc/rancher/k3s/config.yaml").exists(), "{name}");
    }
}

fn check(cfg: &Path) -> (bool, String) {
    let o = Command::new(BIN).arg("check").arg(cfg).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn lints_catch_cluster_mistakes() {
    let base = std::fs::read_to_string(fixture()).unwrap();
    let d = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str); 10] = [
        ("role: server, cluster: gen", "role: agent, cluster: gen", "cluster gen: no machine has `role: server`"),
        ("extra_config:\n        kubelet-arg", "extra_config:\n        cluster-init: true\n        kubelet-arg", "each bootstrap a separate cluster"),
        ("cluster_cidr: 10.42.0.0/16", "cluster_cidr: 198.18.0.0/16", "cluster_cidr 198.18.0.0/16 overlaps"),
        ("service_cidr: 10.43.0.0/16", "service_cidr: 10.42.128.0/17", "service_cidr 10.42.128.0/17"),
        ("k3s: { version: v1.29.1+k3s2, flannel", "k3s: { bootstrap: f3, version: v1.29.1+k3s2, flannel", "bootstrap `f3` is not a server"),
        ("extra_config:\n        kubelet-arg", "extra_config:\n        token: hunter2\n        kubelet-arg", "sets `token`"),
        // k3s agents stop on keys they do not define (server keys, typos); servers ignore
        // unknown keys silently, which hides the typo.
        ("extra_config:\n        kubelet-arg", "agent_extra_config:\n        disable: [traefik]\n      extra_config:\n        kubelet-arg", "cluster lab: agent_extra_config sets `disable`, which only `k3s server` defines"),
        ("extra_config:\n        kubelet-arg", "agent_extra_config:\n        write-kubeconfig-mode: \"0644\"\n      extra_config:\n        kubelet-arg", "agent_extra_config sets `write-kubeconfig-mode`, which only"),
        ("extra_config:\n        kubelet-arg", "agent_extra_config:\n        made-up-key: 1\n      extra_config:\n        kubelet-arg", "cluster lab: agent_extra_config sets `made-up-key`, which `k3s agent` v1.28.5+k3s1 does not define"),
        ("extra_config:\n        kubelet-arg", "extra_config:\n        kubelet-args: [x]\n        kubelet-arg", "extra_config sets `kubelet-args`, which `k3s server`"),
    ];
    for (from, to, want) in cases {
        assert!(base.contains(from), "fixture lacks {from:?}");
        let p = d.path().join("c.yaml");
        std::fs::write(&p, base.replace(from, to)).unwrap();
        let (ok, out) = check(&p);
        assert!(!ok && out.contains(want), "{to:?}: want {want:?} in:\n{out}");
    }
    // The same lints stop `apply`.
    let p = d.path().join("c.yaml");
    std::fs::write(&p, base.replacen("cluster_cidr: 10.42.0.0/16", "cluster_cidr: 198.18.0.0/16", 1)).unwrap();
    let o = Command::new(BIN).args(["apply", "--data-dir"]).arg(d.path().join("data")).arg("-f").arg(&p).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("overlaps"));
}

#[test]
fn seed_scenario_renders_and_lints_clean() {
    let cfg = here().join("../../examples/lenovo-lab.yaml");
    let (ok, out) = check(&cfg);
    assert!(ok && out.contains("0 error(s), 0 warning(s)"), "{out}");
    for (i, name) in ["lenovo1", "lenovo2", "lenovo3"].into_iter().enumerate() {
        let k3s = rendered(&cfg, name, "--k3s-config");
        assert_eq!(k3s.contains("cluster-init: true"), i == 0, "{k3s}");
        if i > 0 {
            assert!(k3s.contains("server: https://10.20.0.5:6443"), "{k3s}");
        }
        assert!(k3s.contains(&format!("node-name: {name}\n")) && k3s.contains(&format!("node-ip: \"10.20.0.{}\"\n", 5 + i)));
        for d in ["traefik", "servicelb", "local-storage", "metrics-server"] {
            assert!(k3s.contains(&format!("- {d}\n")), "{k3s}");
        }
        // Disk paths are template inputs, not Kubernetes labels.
        assert!(k3s.contains("- longhorn=true") && !k3s.contains("data-disk"), "{k3s}");
        let ipxe = rendered(&cfg, name, "--ipxe");
        assert!(ipxe.contains("coreos.inst.install_dev=/dev/disk/by-id/nvme-Samsung"), "{ipxe}");
        let out = rendered(&cfg, name, "--ignition");
        let ign: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(ign["ignition"]["version"], "3.4.0");
        assert!(bootplane_butane::ignition::validate(&out).iter().all(|e| e.level != bootplane_butane::Level::Error));
        let files = ignition_files(&ign);
        assert!(files.iter().any(|f| f.0 == "/etc/hostname" && f.2 == format!("{name}.lab.internal\n")));
        assert!(files.iter().any(|f| f.0.ends_with(".nmconnection") && f.2.contains(&format!("address1=10.20.0.{}/24,10.20.0.1", 5 + i))));
        assert_eq!(ign["storage"]["disks"][0]["device"], format!("/dev/disk/by-id/ata-ST2000LM015-2E8174_ZDZ1000{}", i + 1));
        assert_eq!(ign["storage"]["filesystems"][0]["wipeFilesystem"], false);
        assert!(ign["systemd"]["units"].as_array().unwrap().iter().any(|u| u["name"] == "var-lib-longhorn.mount"));
    }
    // Debian's ignition-validate knows specs up to 3.3.0: the same config in fcos 1.4.0.
    let d = tempfile::tempdir().unwrap();
    let older = d.path().join("lab.yaml");
    std::fs::write(&older, std::fs::read_to_string(&cfg).unwrap().replace("fcos 1.5.0", "fcos 1.4.0").replace("version: 1.5.0", "version: 1.4.0")).unwrap();
    let out = rendered(&older, "lenovo2", "--ignition");
    assert!(out.contains("\"version\": \"3.3.0\""));
    real_validate(&out).unwrap();
}

/// The whole join flow against a live server: bootstrap, joiners waiting, CA handover,
/// secure tokens, kubeconfig; then every boot script, config, event and log line of the
/// run is searched for the tokens.
/// Issue 29: k3s refuses a node name that comes back with another node password, so a
/// reinstall must present the same one. bootplane derives it per machine (never per
/// install), serves it only in the nonce-guarded config (0600), and previews redact it.
#[test]
fn a_reinstalled_node_keeps_its_k3s_node_password() {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(), d.path().join("bootplane.yaml")).unwrap();
    let srv = Server::start(d.path());
    let node_password = |name: &str, mac: &str| {
        assert_eq!(srv.admin("POST", &format!("/v1/machines/{name}/provision")).0, 200);
        let (_, code, ign) = srv.boot_and_fetch(name, mac);
        assert_eq!(code, 200, "{ign}");
        let files = ignition_files(&serde_json::from_str(&ign).unwrap());
        let (_, mode, text) = files.into_iter().find(|(p, _, _)| p == "/etc/rancher/node/password").expect("a node password file");
        assert_eq!(mode, 0o600);
        text.trim().to_string()
    };
    let first = node_password("a1", "52:54:00:00:01:04");
    assert!(first.len() == 32 && first.chars().all(|c| c.is_ascii_hexdigit()), "{first}");
    // A reinstall: a new credential generation, the same node password.
    let again = node_password("a1", "52:54:00:00:01:04");
    assert_eq!(first, again);
    assert_ne!(first, node_password("a2", "52:54:00:00:01:05"), "each machine has its own");
    let (_, preview) = srv.admin("GET", "/v1/machines/a1/preview");
    assert!(!preview.contains(&first) && preview.contains("/etc/rancher/node/password"), "the preview shows the node password: {preview}");
}

#[test]
fn join_flow_is_secure_and_never_leaks_tokens() {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(), d.path().join("bootplane.yaml")).unwrap();
    let text = std::fs::read_to_string(d.path().join("bootplane.yaml")).unwrap().replace("install_disk: /dev/disk/by-id/nvme-disk-s1", "install_disk: /dev/disk/by-id/nvme-disk-s1, provision: true");
    std::fs::write(d.path().join("bootplane.yaml"), text).unwrap();
    let srv = Server::start(d.path());
    let mut public = String::new(); // everything a bystander could see
    for name in ["s2", "a1"] {
        let (code, _) = srv.admin("POST", &format!("/v1/machines/{name}/provision"));
        assert_eq!(code, 200);
    }
    let mut creds = std::collections::HashMap::new();
    for (name, mac) in [("s1", "52:54:00:00:01:01"), ("s2", "52:54:00:00:01:02"), ("a1", "52:54:00:00:01:04")] {
        let (code, script) = srv.get(&format!("/v1/boot/ipxe?mac={mac}&arch=x86_64"));
        assert_eq!(code, 200);
        assert!(script.contains("coreos.inst.ignition_url="), "{script}");
        public += &script;
        let (code, ign) = srv.get(&format!("/v1/machines/{name}/ignition?nonce={}", nonce_in(&script)));
        assert_eq!(code, 200, "{ign}");
        public += &ign;
        creds.insert(name, credential_from_ignition(&ign));
    }
    let join = |name: &str, cred: Option<&str>| req("GET", &format!("{}/v1/machines/{name}/join", srv.url), cred, None);
    // Wrong, missing and foreign credentials; unknown machines.
    assert_eq!(join("s2", None).0, 401);
    assert_eq!(join("s2", Some(&creds["a1"])).0, 401);
    assert_eq!(join("nope", Some(&creds["a1"])).0, 401);
    // Joiners wait for the bootstrap server's CA.
    let (code, body) = join("s2", Some(&creds["s2"]));
    assert_eq!(code, 503, "{body}");
    let (code, boot) = join("s1", Some(&creds["s1"]));
    assert_eq!(code, 200, "{boot}");
    let server_token = boot.lines().find_map(|l| l.strip_prefix("K3S_TOKEN=")).unwrap().to_string();
    let agent_token = boot.lines().find_map(|l| l.strip_prefix("K3S_AGENT_TOKEN=")).unwrap().to_string();
    assert!(server_token.len() >= 32 && agent_token.len() >= 32 && server_token != agent_token);
    // The bootstrap server reports with its CA hash and kubeconfig.
    let ca = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let kubeconfig = K3S_YAML.replace("client-key-data: S0VZ", "client-key-data: UFJJVkFURS1LRVktTUFURVJJQUw=");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(kubeconfig);
    let (code, body) = srv.post("/v1/machines/s1/report", Some(&creds["s1"]), &format!(r#"{{"state":"installed","detail":{{"hostname":"s1"}},"ca_hash":"{ca}","kubeconfig":"{b64}"}}"#));
    assert_eq!(code, 200, "{body}");
    // Its credential is retired with the report: no second helping of tokens.
    assert_eq!(join("s1", Some(&creds["s1"])).0, 401);
    // Reinstalling the bootstrap server must not found a second cluster. Its node cannot
    // be removed first (the recorded API is nowhere): refused, then forced.
    let (code, body) = srv.admin("POST", "/v1/machines/s1/provision");
    assert!(code == 502 && body.contains("provision stopped at step `") && body.contains("Nothing on the machine was changed"), "{code} {body}");
    assert_eq!(srv.machine("s1")["state"], "installed");
    let (code, body) = srv.post("/v1/machines/s1/provision", Some(TOKEN), r#"{"force":true}"#);
    assert!(code == 200 && body.contains("its node was left in the cluster (--force)"), "{code} {body}");
    let (_, _, ign) = srv.boot_and_fetch("s1", "52:54:00:00:01:01");
    let (code, body) = join("s1", Some(&credential_from_ignition(&ign)));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already bootstrapped"), "{body}");
    let s1_again = credential_from_ignition(&ign);
    // Bad handovers are refused, not recorded.
    let (code, body) = srv.post("/v1/machines/s2/report", Some(&creds["s2"]), r#"{"state":"installed","ca_hash":"x","kubeconfig":"!!"}"#);
    assert_eq!(code, 400, "{body}");
    let (code, s2) = join("s2", Some(&creds["s2"]));
    assert_eq!(code, 200);
    assert!(s2.contains(&format!("K3S_TOKEN=K10{ca}::server:{server_token}\n")) && s2.contains(&format!("K3S_AGENT_TOKEN={agent_token}\n")), "{s2}");
    let (code, a1) = join("a1", Some(&creds["a1"]));
    assert_eq!(code, 200);
    assert_eq!(a1, format!("K3S_TOKEN=K10{ca}::node:{agent_token}\n"));
    // A failed agent's report carries its log tail into the event log.
    let log = base64::engine::general_purpose::STANDARD.encode("k3s-agent: connection refused\n");
    let (code, _) = srv.post("/v1/machines/a1/report", Some(&creds["a1"]), &format!(r#"{{"state":"failed","unit":"k3s-agent.service","log_tail":"{log}"}}"#));
    assert_eq!(code, 200);
    let a1m = srv.machine("a1");
    assert_eq!(a1m["state"], "failed");
    assert!(a1m["events"].to_string().contains("k3s-agent: connection refused"), "{a1m}");
    // `machines show` says why in the unit's own words, not only inside the event JSON.
    let out = Command::new(BIN).args(["machines", "show", "a1", "--server", &srv.url]).env("BOOTPLANE_TOKEN", TOKEN).output().unwrap();
    let show = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && show.contains("why it failed: k3s-agent.service reported at") && show.contains("\n  k3s-agent: connection refused\n"), "{show}");
    // The admin gets a kubeconfig pointing at the VIP.
    let (code, kc) = srv.admin("GET", "/v1/clusters/lab/kubeconfig");
    assert_eq!(code, 200, "{kc}");
    assert!(kc.contains("server: https://198.18.0.100:6443") && !kc.contains("127.0.0.1"), "{kc}");
    assert_eq!(req("GET", &format!("{}/v1/clusters/lab/kubeconfig", srv.url), None, None).0, 401);
    let out = Command::new(BIN)
        .args(["cluster", "kubeconfig", "lab", "--server", &srv.url, "-o"])
        .arg(d.path().join("kc.yaml"))
        .env("BOOTPLANE_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(d.path().join("kc.yaml")).unwrap().permissions().mode() & 0o777, 0o600);
    let (code, no) = srv.admin("GET", "/v1/clusters/flat/kubeconfig");
    assert_eq!(code, 404, "{no}");
    // Rebuilding from scratch: after a reset the bootstrap server founds the cluster again.
    let out = Command::new(BIN).args(["cluster", "reset", "lab", "--server", &srv.url]).env("BOOTPLANE_TOKEN", TOKEN).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(srv.admin("GET", "/v1/clusters/lab/kubeconfig").0, 404);
    let (code, again) = join("s1", Some(&s1_again));
    assert_eq!(code, 200);
    assert!(again.starts_with("K3S_TOKEN=") && !again.contains(&server_token), "a reset issues new tokens: {again}");
    let (_, events) = srv.admin("GET", "/v1/events?limit=1000");
    assert!(events.contains("join.served") && events.contains("join.waiting") && events.contains("join.refused"));
    public += &events;
    // Fresh boot scripts for every machine, now that tokens exist.
    for mac in ["52:54:00:00:01:01", "52:54:00:00:01:03", "52:54:00:00:02:01", "52:54:00:00:03:01"] {
        public += &srv.get(&format!("/v1/boot/ipxe?mac={mac}")).1;
    }
    public += &srv.get("/boot.ipxe").1;
    let db = std::fs::read(d.path().join("data/bootplane.db")).unwrap_or_default();
    let wal = std::fs::read(d.path().join("data/bootplane.db-wal")).unwrap_or_default();
    let log = srv.stop().join("\n");
    for secret in [&server_token, &agent_token, &"UFJJVkFURS1LRVktTUFURVJJQUw=".to_string()] {
        assert!(!public.contains(secret.as_str()), "a token reached a boot script, config or event");
        assert!(!log.contains(secret.as_str()), "a token reached the server log");
        let stored = [&db[..], &wal[..]].concat();
        assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "a secret is stored in clear");
    }
    let secure = format!("K10{ca}");
    assert!(!public.contains(&secure) && !log.contains(&secure));
}

/// Flatcar's live installer config and Ubuntu's NoCloud seed, as the server serves them:
/// only while the machine is to be installed, and never with a token.
#[test]
fn flatcar_installer_and_ubuntu_seed_are_served_while_installing() {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(), d.path().join("bootplane.yaml")).unwrap();
    let srv = Server::start(d.path());
    // Not provisioning yet: nothing, whatever the nonce.
    let any = "0123456789abcdef0123456789abcdef";
    for path in ["/v1/machines/f2/installer?nonce=", "/v1/machines/u2/seed/N/user-data", "/v1/machines/u2/seed/N/meta-data", "/v1/machines/nope/installer?nonce="] {
        let path = path.replace("nonce=", &format!("nonce={any}")).replace("/N/", &format!("/{any}/"));
        assert_eq!(srv.get(&path).0, 404, "{path}");
    }
    for n in ["f2", "u2"] {
        assert_eq!(srv.admin("POST", &format!("/v1/machines/{n}/provision")).0, 200);
    }
    let (code, ipxe) = srv.get("/v1/boot/ipxe?mac=52:54:00:00:02:02");
    assert_eq!(code, 200);
    let nonce = nonce_in(&ipxe);
    assert!(ipxe.contains(&format!("flatcar.first_boot=1 ignition.config.url=http://198.18.0.10:8080/v1/machines/f2/installer?nonce={nonce}")), "{ipxe}");
    let (code, inst) = srv.get(&format!("/v1/machines/f2/installer?nonce={nonce}"));
    assert_eq!(code, 200, "{inst}");
    real_validate(&inst).unwrap();
    let v: Value = serde_json::from_str(&inst).unwrap();
    let files = ignition_files(&v);
    let env = &files.iter().find(|f| f.0 == "/etc/bootplane/installer.env").unwrap().2;
    assert!(env.contains(&format!("BOOTPLANE_IGNITION_URL=http://198.18.0.10:8080/v1/machines/f2/ignition?nonce={nonce}\n")), "{env}");
    assert!(env.contains("INSTALL_DISK=/dev/disk/by-id/ata-disk-f2\n"), "{env}");
    assert!(env.contains("IMAGE_URL=http://198.18.0.10:8080/artifacts/flatcar-3815/image\nIMAGE_SHA256=4444"), "{env}");
    assert!(files.iter().any(|f| f.0 == "/opt/bootplane/install" && f.2.contains("flatcar-install \"${args[@]}\"")));
    // The installer config does not start the install; the machine's own Ignition does.
    assert_eq!(srv.machine("f2")["state"], "provision");
    assert_eq!(srv.get(&format!("/v1/machines/f2/ignition?nonce={nonce}")).0, 200);
    assert_eq!(srv.machine("f2")["state"], "installing");
    assert_eq!(srv.machine("f2")["install_attempts"], 1, "one attempt, however many configs it fetched");

    let (code, ipxe) = srv.get("/v1/boot/ipxe?mac=52:54:00:00:03:02");
    assert_eq!(code, 200);
    let nonce = nonce_in(&ipxe);
    let seed = format!("/v1/machines/u2/seed/{nonce}/");
    assert!(ipxe.contains(&format!("autoinstall ds=nocloud-net;s=http://198.18.0.10:8080{seed} ")), "{ipxe}");
    let (code, meta) = srv.get(&format!("{seed}meta-data"));
    assert_eq!(code, 200);
    assert!(meta.contains("local-hostname: u2\n"), "{meta}");
    assert_eq!(srv.get(&format!("{seed}vendor-data")).0, 200);
    let (code, ud) = srv.get(&format!("{seed}user-data"));
    assert_eq!(code, 200, "{ud}");
    assert_eq!(srv.machine("u2")["state"], "installing");
    let files = user_data_files(&ud);
    let menv = &files.iter().find(|f| f.0 == "/etc/bootplane/machine.env").unwrap().1;
    let cred = menv.lines().find_map(|l| l.strip_prefix("BOOTPLANE_CREDENTIAL=")).unwrap();
    assert_eq!(req("GET", &format!("{}/v1/machines/u2/join", srv.url), Some(cred), None).0, 503, "u1 has not reported");
    // The installer's late-commands, run as subiquity runs a list: argv, no shell. They
    // report the disk written, so the reboot that follows boots the disk.
    let doc: Value = yaml_serde::from_str(&ud).unwrap();
    let late = doc["autoinstall"]["late-commands"].as_array().expect("late-commands");
    let argv: Vec<String> = late.last().unwrap().as_array().unwrap().iter().map(|a| a.as_str().unwrap().replace("http://198.18.0.10:8080", &srv.url)).collect();
    assert!(argv.iter().all(|a| !a.contains(cred) || a.starts_with("Authorization: Bearer ")), "{argv:?}");
    let o = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(srv.machine("u2")["state"], "written");
    let (_, again) = srv.get("/v1/boot/ipxe?mac=52:54:00:00:03:02");
    assert!(!again.contains("kernel ") && again.contains("booting local disk"), "{again}");
    let (code, _) = srv.post("/v1/machines/u2/report", Some(cred), r#"{"state":"installed"}"#);
    assert_eq!(code, 200);
    assert_eq!(srv.get(&format!("{seed}user-data")).0, 404, "installed machines get no seed");
    srv.stop();
}

/// `text` as a YAML 1.1 reader sees it: PyYAML's `safe_load`, which subiquity and
/// cloud-init use (dates as strings, since JSON has none).
fn pyyaml(text: &str) -> Value {
    let script = "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin), default=str))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (apt-get install python3-yaml)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "PyYAML cannot read:\n{text}\n{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The fixture with names and hostnames that YAML 1.1 reads as booleans: u3 is named
/// `no` with hostname `on`, f3 has hostname `off`, s2 hostname `y`.
fn ambiguous_fixture(dir: &Path) -> PathBuf {
    let base = std::fs::read_to_string(fixture()).unwrap();
    let text = base
        .replace("{ name: u3, hostname: u3.lab.test,", "{ name: \"no\", hostname: \"on\",")
        .replace("hostname: f3.lab.test,", "hostname: \"off\",")
        .replace("hostname: s2.lab.test,", "hostname: \"y\",");
    let p = dir.join("ambiguous.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Every YAML bootplane writes for a YAML 1.1 reader (Ubuntu's user-data for subiquity
/// and cloud-init, k3s's config.yaml for go-yaml v2) means the same under 1.1 as under
/// 1.2: MACs stay strings (not base-60 integers), hostnames `on`/`no` stay strings (not
/// booleans), modes stay strings (not octal integers).
#[test]
fn yaml_1_1_readers_see_what_bootplane_meant() {
    let d = tempfile::tempdir().unwrap();
    let cfg = ambiguous_fixture(d.path());
    let names = MACHINES.map(|m| if m == "u3" { "no" } else { m });
    let mut checked = 0;
    for name in names {
        let mut docs = vec![rendered(&cfg, name, "--k3s-config")];
        if name.starts_with('u') || name == "no" {
            docs.push(rendered(&cfg, name, "--ignition"));
        }
        for doc in docs {
            let meant: Value = yaml_serde::from_str(&doc).unwrap();
            let read = pyyaml(&doc);
            assert_eq!(read, meant, "{name}: a YAML 1.1 reader sees something else in:\n{doc}");
            checked += 1;
        }
    }
    assert_eq!(checked, 25);
    let no = pyyaml(&rendered(&cfg, "no", "--ignition"));
    assert_eq!(no["autoinstall"]["user-data"]["hostname"], "on");
    assert_eq!(no["autoinstall"]["network"], Value::Null, "u3 has no static network");
    let u1 = pyyaml(&rendered(&cfg, "u1", "--ignition"));
    assert_eq!(u1["autoinstall"]["network"]["ethernets"]["bootplane0"]["match"]["macaddress"], "52:54:00:00:03:01");
    assert_eq!(pyyaml(&rendered(&cfg, "f3", "--k3s-config"))["node-name"], "off");
    assert_eq!(pyyaml(&rendered(&cfg, "s2", "--k3s-config"))["node-name"], "y");
}

/// The autoinstall keys bootplane writes, against the rules of subiquity's autoinstall
/// schema (version 1, `autoinstall-schema.json` upstream), read the way subiquity reads
/// them (PyYAML). Written here rather than vendored: only the keys bootplane uses.
fn check_autoinstall(name: &str, ai: &Value) {
    let known = [
        "version", "early-commands", "reporting", "error-commands", "user-data", "packages", "debconf-selections",
        "locale", "refresh-installer", "kernel", "keyboard", "network", "proxy", "apt", "storage", "identity", "ssh",
        "snaps", "timezone", "updates", "late-commands", "shutdown", "interactive-sections",
    ];
    let obj = ai.as_object().unwrap_or_else(|| panic!("{name}: autoinstall is not a mapping"));
    for k in obj.keys() {
        assert!(known.contains(&k.as_str()), "{name}: autoinstall key `{k}` is not in subiquity's schema");
    }
    assert_eq!(ai["version"], 1, "{name}: version must be the integer 1");
    for c in ai["early-commands"].as_array().unwrap() {
        let ok = c.is_string() || c.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        assert!(ok, "{name}: early-commands item {c} is neither a string nor a list of strings");
    }
    assert!(ai["user-data"].is_object(), "{name}: user-data must be a mapping");
    assert!(ai["storage"]["layout"]["name"].as_str().is_some_and(|l| ["lvm", "direct", "zfs"].contains(&l)), "{name}: storage layout");
    assert!(ai["storage"]["layout"]["match"]["path"].is_string(), "{name}: storage match path");
    let ssh = &ai["ssh"];
    assert!(ssh["install-server"].is_boolean() && ssh["allow-pw"].is_boolean(), "{name}: ssh flags must be booleans");
    assert!(ssh["authorized-keys"].as_array().unwrap().iter().all(Value::is_string), "{name}: ssh keys must be strings");
    assert!(["reboot", "poweroff"].contains(&ai["shutdown"].as_str().unwrap_or_default()), "{name}: shutdown");
    // Identity may be left out only because user-data is given (subiquity's rule).
    assert!(ai.get("identity").is_none() && ai["user-data"]["users"].is_array(), "{name}: identity or user-data users");
    if let Some(net) = ai.get("network") {
        assert_eq!(net["version"], 2, "{name}: netplan version must be the integer 2");
        for (iface, eth) in net["ethernets"].as_object().unwrap() {
            for (k, v) in eth["match"].as_object().into_iter().flatten() {
                assert!(["name", "macaddress", "driver"].contains(&k.as_str()), "{name}: {iface} match.{k}");
                assert!(v.is_string(), "{name}: {iface} match.{k} = {v} is not a string");
            }
        }
    }
}

/// Python run with `args`, `stdin` fed in: (success, stdout + stderr).
fn run_with_input(cmd: &str, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
    drop(child.stdin.take());
    let o = child.wait_with_output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// Every Ubuntu user-data the fixture renders goes where subiquity sends it: the
/// autoinstall keys against subiquity's rules, the installed system's `user-data`
/// through the real `cloud-init schema`, and the `network` section through cloud-init's
/// own netplan renderer (`cloud-init devel net-convert`), each after a PyYAML round trip
/// as subiquity does it.
#[test]
fn ubuntu_user_data_passes_subiquity_rules_and_real_cloud_init() {
    let d = tempfile::tempdir().unwrap();
    let cfg = ambiguous_fixture(d.path());
    for name in ["u1", "u2", "no", "u4", "u5"] {
        let ai = pyyaml(&rendered(&cfg, name, "--ignition"))["autoinstall"].clone();
        check_autoinstall(name, &ai);

        let target = d.path().join(format!("{name}.cloud-config"));
        let dump = "import sys, json, yaml; print('#cloud-config'); print(yaml.safe_dump(json.load(sys.stdin)))";
        let (ok, text) = run_with_input("python3", &["-c", dump], &ai["user-data"].to_string());
        assert!(ok, "{text}");
        std::fs::write(&target, text).unwrap();
        let o = Command::new("cloud-init").args(["schema", "-c"]).arg(&target).output().expect("cloud-init (apt-get install cloud-init)");
        let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success() && out.contains("Valid cloud-config"), "{name}: cloud-init schema:\n{out}");

        let Some(net) = ai.get("network") else { continue };
        let net_file = d.path().join(format!("{name}.network.yaml"));
        let (ok, text) = run_with_input("python3", &["-c", "import sys, json, yaml; print(yaml.safe_dump({'network': json.load(sys.stdin)}))"], &net.to_string());
        assert!(ok, "{text}");
        std::fs::write(&net_file, text).unwrap();
        let out_dir = d.path().join(format!("{name}.netplan"));
        let o = Command::new("cloud-init")
            .args(["devel", "net-convert", "-k", "yaml", "-D", "ubuntu", "-O", "netplan", "-p"])
            .arg(&net_file)
            .arg("-d")
            .arg(&out_dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: net-convert: {}", String::from_utf8_lossy(&o.stderr));
        let written = std::fs::read_to_string(out_dir.join("etc/netplan/50-cloud-init.yaml")).unwrap();
        let np = pyyaml(&written);
        let mac = &np["network"]["ethernets"]["bootplane0"]["match"]["macaddress"];
        assert_eq!(mac, "52:54:00:00:03:01", "{name}: cloud-init wrote netplan:\n{written}");
    }
}

/// Where report.sh reads and writes; tests move them under a temporary root.
const REPORT_PATHS: &[&str] = &["/etc/bootplane/", "/var/lib/bootplane", "/run/bootplane", "/var/lib/rancher/", "/etc/rancher/"];

/// The bootstrap server's real report script, run against a live server with its paths
/// moved under a temporary root. Stand-ins: `systemctl` (no unit failed) and `k3s` (the
/// node is Ready when asked as report.sh asks), which is all the script asks of them. The CA file holds
/// a chain (custom CA with an intermediate), whose file hash is not the root hash k3s
/// puts in its token; joiners must get the token's hash or k3s refuses the join.
#[test]
fn report_script_hands_over_the_ca_hash_k3s_itself_uses() {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture()).unwrap().replace("install_disk: /dev/disk/by-id/nvme-disk-s1", "install_disk: /dev/disk/by-id/nvme-disk-s1, provision: true");
    std::fs::write(d.path().join("bootplane.yaml"), text).unwrap();
    let srv = Server::start(d.path());
    assert_eq!(srv.admin("POST", "/v1/machines/s2/provision").0, 200);
    let mut ign = std::collections::HashMap::new();
    for (name, mac) in [("s1", "52:54:00:00:01:01"), ("s2", "52:54:00:00:01:02")] {
        let (_, code, body) = srv.boot_and_fetch(name, mac);
        assert_eq!(code, 200, "{body}");
        ign.insert(name, body);
    }
    let files = ignition_files(&serde_json::from_str(&ign["s1"]).unwrap());
    let file = |p: &str| files.iter().find(|f| f.0 == p).unwrap_or_else(|| panic!("no {p}")).2.clone();

    let root = d.path().join("root");
    let under = |p: &str| root.join(p.trim_start_matches('/'));
    let write = |p: &str, text: &str| {
        std::fs::create_dir_all(under(p).parent().unwrap()).unwrap();
        std::fs::write(under(p), text).unwrap();
    };
    write("/etc/bootplane/machine.env", &file("/etc/bootplane/machine.env").replace("http://198.18.0.10:8080", &srv.url));
    let bin = under("/bin");
    let k3s_env = file("/etc/bootplane/k3s.env").replace("K3S_BIN_DIR=/usr/local/bin", &format!("K3S_BIN_DIR={}", bin.display()));
    write("/etc/bootplane/k3s.env", &k3s_env);
    // stand-in: the cluster sees s1 Ready when asked with the admin kubeconfig, as report.sh asks.
    let ready = format!("#!/bin/sh\n[ \"$*\" = 'kubectl --kubeconfig {} get node s1 -o jsonpath={{.status.conditions[?(@.type==\"Ready\")].status}}' ] && printf True\nexit 0\n", under("/etc/rancher/k3s/k3s.yaml").display());
    write("/bin/k3s", &ready);
    write("/stub/systemctl", "#!/bin/sh\n# stand-in: no unit failed, every unit active\n[ \"$1\" = is-failed ] && exit 1\nexit 0\n");
    let root_hash = "1f0c3b1e5d6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e";
    write("/var/lib/rancher/k3s/server/token", &format!("K10{root_hash}::server:s3cr3tpassword\n"));
    write("/var/lib/rancher/k3s/server/tls/server-ca.crt", "-----BEGIN CERTIFICATE-----\nintermediate\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n");
    write("/etc/rancher/k3s/k3s.yaml", K3S_YAML);
    for p in ["/bin/k3s", "/stub/systemctl"] {
        std::process::Command::new("chmod").arg("+x").arg(under(p)).status().unwrap();
    }
    let o = run_under_root(&root, &file("/usr/local/bin/bootplane-report"), REPORT_PATHS, Some(&under("/stub")));
    assert!(o.status.success(), "report.sh: {}", String::from_utf8_lossy(&o.stderr));
    assert!(under("/var/lib/bootplane/reported").exists());
    assert_eq!(srv.machine("s1")["state"], "installed");

    let cred = credential_from_ignition(&ign["s2"]);
    let (code, join) = req("GET", &format!("{}/v1/machines/s2/join", srv.url), Some(&cred), None);
    assert_eq!(code, 200, "{join}");
    assert!(join.starts_with(&format!("K3S_TOKEN=K10{root_hash}::server:")), "{join}");
}

/// The live installer systems of fcos and flatcar carry the machine's credential and a
/// script that reports the disk written before they reboot. Each live config passes the
/// real `ignition-validate`; fcos orders its unit between coreos-installer's install and
/// its reboot; and the real script, run against a live server (paths moved under a
/// temporary root), moves the machine to `written`, whose next boot is local.
#[test]
fn live_installers_report_the_disk_written_before_rebooting() {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(), d.path().join("bootplane.yaml")).unwrap();
    let srv = Server::start(d.path());
    for (name, mac) in [("s2", "52:54:00:00:01:02"), ("f2", "52:54:00:00:02:02")] {
        assert_eq!(srv.admin("POST", &format!("/v1/machines/{name}/provision")).0, 200);
        let (_, ipxe) = srv.get(&format!("/v1/boot/ipxe?mac={mac}&arch=x86_64"));
        let nonce = nonce_in(&ipxe);
        assert!(ipxe.contains(&format!("ignition.config.url=http://198.18.0.10:8080/v1/machines/{name}/installer?nonce={nonce}")), "{ipxe}");
        let (code, live) = srv.get(&format!("/v1/machines/{name}/installer?nonce={nonce}"));
        assert_eq!(code, 200, "{live}");
        real_validate(&live).unwrap();
        let live: Value = serde_json::from_str(&live).unwrap();
        let files = ignition_files(&live);
        let file = |p: &str| files.iter().find(|f| f.0 == p).unwrap_or_else(|| panic!("{name}: no {p}")).clone();
        let (_, mode, env) = file("/etc/bootplane/machine.env");
        assert_eq!(mode, 0o600);
        let script = if name == "s2" { file("/etc/bootplane/written").2 } else { file("/opt/bootplane/written").2 };
        shellcheck("written", &script);
        if name == "s2" {
            let unit = live["systemd"]["units"][0]["contents"].as_str().unwrap();
            assert!(unit.contains("After=coreos-installer.service") && unit.contains("Before=coreos-installer.target coreos-installer-reboot.service"), "{unit}");
            assert!(unit.contains("RequiredBy=coreos-installer.target"), "{unit}");
            // A failed install is reported before the live system's emergency shell stops
            // the network: from the installer unit's own stop-post step.
            let units = live["systemd"]["units"].as_array().unwrap();
            let installer = units.iter().find(|u| u["name"] == "coreos-installer.service").expect("a drop-in for coreos-installer.service");
            let dropin = installer["dropins"][0]["contents"].as_str().unwrap();
            assert!(dropin.contains("ExecStopPost=/bin/sh -c 'test \"$$SERVICE_RESULT\" = success || exec /bin/bash /etc/bootplane/written failed coreos-installer.service'"), "{dropin}");
        } else {
            assert!(file("/opt/bootplane/install").2.contains("bash /opt/bootplane/written\nsystemctl reboot"));
        }
        // The install itself starts when the machine's own Ignition is fetched.
        let (_, ign) = srv.get(&format!("/v1/machines/{name}/ignition?nonce={nonce}"));
        assert_eq!(credential_from_ignition(&ign), env.lines().find_map(|l| l.strip_prefix("BOOTPLANE_CREDENTIAL=")).unwrap());

        let root = d.path().join(name);
        std::fs::create_dir_all(root.join("etc/bootplane")).unwrap();
        std::fs::write(root.join("etc/bootplane/machine.env"), env.replace("http://198.18.0.10:8080", &srv.url)).unwrap();
        let o = run_under_root(&root, &script, &["/etc/bootplane/", "/run/bootplane"], None);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(srv.machine(name)["state"], "written");
        let (_, again) = srv.get(&format!("/v1/boot/ipxe?mac={mac}&arch=x86_64"));
        assert!(!again.contains("kernel ") && again.contains("booting local disk"), "{again}");
        // A second run, as after a lost answer, is accepted too.
        assert!(run_under_root(&root, &script, &["/etc/bootplane/", "/run/bootplane"], None).status.success());
        // The installed system fetches its join material after the disk was written.
        let cred = credential_from_ignition(&ign);
        let (code, body) = req("GET", &format!("{}/v1/machines/{name}/join", srv.url), Some(&cred), None);
        assert_eq!(code, 503, "{name} waits for lab's bootstrap server, not refused: {body}");
    }
}

/// curl with `args`: (status, body).
fn curl_status(args: &[&str]) -> (u16, String) {
    let o = Command::new("curl").args(["-s", "-w", "\n%{http_code}"]).args(args).output().expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// With `server.tls`, a full join runs over HTTPS with the site CA the machines got in
/// their Ignition: a packet capture of the whole exchange holds no token, the secret
/// endpoints refuse plain HTTP, and the CA is not one anyone else's client trusts.
#[test]
fn join_over_https_never_shows_a_token_on_the_wire() {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture()).unwrap().replacen("server:\n", "server:\n  tls: { listen: 127.0.0.1:0 }\n", 1);
    std::fs::write(d.path().join("bootplane.yaml"), text).unwrap();
    let srv = Server::start(d.path());
    let https = srv
        .startup
        .iter()
        .find_map(|l| l.strip_prefix("bootplane: serving HTTPS on "))
        .and_then(|r| r.split_whitespace().next())
        .expect("an HTTPS listener")
        .to_string();
    let port = |u: &str| u.rsplit(':').next().unwrap().to_string();
    let pcap = d.path().join("lan.pcap");
    let dump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "-s", "0", "-w"])
        .arg(&pcap)
        .arg(format!("tcp port {} or tcp port {}", port(&srv.url), port(&https)))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpdump (apt-get install tcpdump)");
    let mut dump = Capture(Some(dump));
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // Issue 28, finding 6: with HTTPS on, the admin API refuses the plain listener (the
    // token and the tokens `rotate-tokens` returns would cross the LAN in clear) ...
    for (method, path) in [("GET", "/v1/machines"), ("POST", "/v1/clusters/lab/rotate-tokens"), ("POST", "/v1/machines/s1/provision")] {
        let (code, body) = srv.admin(method, path);
        assert_eq!(code, 403, "{method} {path} over plain HTTP: {body}");
        assert!(body.contains("HTTPS only") && !body.contains("K3S_TOKEN"), "{body}");
    }
    // ... and the CLI on the server host trusts the site CA from the data directory.
    for n in ["s1", "s2"] {
        let o = bootplane(d.path()).args(["machines", "provision", n, "--server", &https]).output().unwrap();
        assert!(o.status.success(), "provision {n} over HTTPS: {}", String::from_utf8_lossy(&o.stderr));
    }
    let site_ca = d.path().join("data/tls/ca.crt");
    let (code, body) = curl_status(&["--cacert", site_ca.to_str().unwrap(), "-H", &format!("Authorization: Bearer {TOKEN}"), &format!("{https}/v1/machines")]);
    assert_eq!(code, 200, "{body}");
    let mut creds = std::collections::HashMap::new();
    let mut ca = String::new();
    for (name, mac) in [("s1", "52:54:00:00:01:01"), ("s2", "52:54:00:00:01:02")] {
        let (_, code, ign) = srv.boot_and_fetch(name, mac);
        assert_eq!(code, 200, "{ign}");
        let v: Value = serde_json::from_str(&ign).unwrap();
        assert!(v["ignition"]["security"]["tls"]["certificateAuthorities"][0]["source"].as_str().is_some(), "Ignition trusts the site CA");
        let files = ignition_files(&v);
        let env = &files.iter().find(|f| f.0 == "/etc/bootplane/machine.env").unwrap().2;
        assert!(env.contains(&format!("BOOTPLANE_URL={https}\n")), "{env}");
        ca = files.iter().find(|f| f.0 == "/etc/bootplane/ca.crt").expect("the CA on the disk").2.clone();
        creds.insert(name, credential_from_ignition(&ign));
    }
    let ca_file = d.path().join("ca.crt");
    std::fs::write(&ca_file, &ca).unwrap();
    let ca_arg = ca_file.to_str().unwrap();
    let auth = |n: &str| format!("Authorization: Bearer {}", creds[n]);

    // Plain HTTP is refused for join material, whoever asks.
    let (code, body) = curl_status(&["-H", &auth("s1"), &format!("{}/v1/machines/s1/join", srv.url)]);
    assert_eq!(code, 403, "{body}");
    // Nobody else's trust store accepts the site CA's certificate.
    assert_eq!(curl_status(&["-H", &auth("s1"), &format!("{https}/v1/machines/s1/join")]).0, 0);

    let (code, boot) = curl_status(&["--cacert", ca_arg, "-H", &auth("s1"), &format!("{https}/v1/machines/s1/join")]);
    assert_eq!(code, 200, "{boot}");
    let token = |text: &str, key: &str| text.lines().find_map(|l| l.strip_prefix(key)).unwrap().to_string();
    let (server_token, agent_token) = (token(&boot, "K3S_TOKEN="), token(&boot, "K3S_AGENT_TOKEN="));
    use base64::Engine as _;
    let report = format!(
        r#"{{"state":"installed","ca_hash":"{}","kubeconfig":"{}"}}"#,
        "c".repeat(64),
        base64::engine::general_purpose::STANDARD.encode(K3S_YAML)
    );
    let (code, body) = curl_status(&["--cacert", ca_arg, "-H", &auth("s1"), "-H", "Content-Type: application/json", "--data", &report, &format!("{https}/v1/machines/s1/report")]);
    assert_eq!(code, 200, "{body}");
    let (code, joined) = curl_status(&["--cacert", ca_arg, "-H", &auth("s2"), &format!("{https}/v1/machines/s2/join")]);
    assert_eq!(code, 200, "{joined}");
    let secure_token = token(&joined, "K3S_TOKEN=");
    assert!(secure_token.starts_with("K10"));

    std::thread::sleep(std::time::Duration::from_millis(500));
    dump.stop();
    let wire = std::fs::read(&pcap).unwrap();
    let seen = |needle: &str| wire.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(seen("GET /v1/boot/ipxe"), "the capture saw the plain-HTTP boot traffic");
    for (what, secret) in [("server token", &server_token), ("agent token", &agent_token), ("secure token", &secure_token)] {
        assert!(!seen(secret), "the {what} crossed the wire in clear");
    }
    // The kubeconfig's client key went over HTTPS too.
    assert!(!seen("client-key-data"));
}

/// A running tcpdump, stopped (SIGINT, so it flushes) when the test ends either way.
struct Capture(Option<std::process::Child>);

impl Capture {
    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A k3s stand-in node (tests/e2e/k3s-standin) on loopback, killed on drop.
fn standin(root: &Path, cmd: &str, port: u16, config: &str, files: &[(&str, &str)]) -> KillOnDrop {
    for (path, text) in files.iter().chain([("/etc/rancher/k3s/config.yaml", config)].iter()) {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let log = std::fs::File::create(root.with_extension("log")).unwrap();
    let child = Command::new(here().join("../../tests/e2e/k3s-standin/k3s"))
        .arg(cmd)
        .env("K3S_STANDIN_ROOT", root)
        .env("K3S_STANDIN_PORT", port.to_string())
        .env("K3S_STANDIN_BIND", "127.0.0.1")
        .env("K3S_STANDIN_GRACE", "8")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the k3s stand-in (python3 with PyYAML, openssl)");
    KillOnDrop(child)
}

/// `k3s kubectl` of the stand-in with the bootstrap server's admin kubeconfig.
fn kubectl(root: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(here().join("../../tests/e2e/k3s-standin/k3s"))
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(root.join("etc/rancher/k3s/k3s.yaml"))
        .args(args)
        .output()
        .unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)).trim().to_string())
}

fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// `machines reinstall` and `machines retire` of a k3s node take it out of the cluster
/// through the cluster's API before the machine is touched: cordon, drain, delete node
/// (which in k3s also drops its node password, so the name may join again). With
/// `--no-drain` (a dead node) only the delete; with the API unreachable it stops with the
/// machine untouched (retire `--force` goes on, leaving the node). The cluster
/// is the k3s stand-in (authenticated API, node objects), reached with the kubeconfig
/// the bootstrap server handed over.
#[test]
fn reinstall_and_retire_take_a_k3s_node_out_of_its_cluster_first() {
    use base64::Engine as _;
    let d = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let boot_root = d.path().join("s1");
    let server_cfg = r#"{"cluster-init": true, "token-file": "/etc/rancher/k3s/token", "agent-token-file": "/etc/rancher/k3s/agent-token", "node-name": "s1"}"#;
    let boot = standin(&boot_root, "server", port, server_cfg, &[("/etc/rancher/k3s/token", "srv-token-0123456789"), ("/etc/rancher/k3s/agent-token", "agt-token-0123456789")]);
    let ready = |node: &str| kubectl(&boot_root, &["get", "node", node, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#]) == (true, "True".into());
    until("the stand-in's bootstrap server Ready", 60, || ready("s1"));
    let agent_token = std::fs::read_to_string(boot_root.join("var/lib/rancher/k3s/server/agent-token")).unwrap();
    let agent_cfg = format!(r#"{{"server": "https://127.0.0.1:{port}", "token-file": "/etc/rancher/k3s/token", "node-name": "a1"}}"#);
    let _a1 = standin(&d.path().join("a1"), "agent", port, &agent_cfg, &[("/etc/rancher/k3s/token", agent_token.trim())]);
    until("agent a1 Ready", 60, || ready("a1"));
    let a4 = standin(&d.path().join("a4"), "agent", port, &agent_cfg.replace("\"a1\"", "\"a4\""), &[("/etc/rancher/k3s/token", agent_token.trim())]);
    until("agent a4 Ready", 60, || ready("a4"));

    let pdu = d.path().join("pdu");
    std::fs::write(&pdu, format!("#!/bin/sh\ncase \"$1\" in\n  on|off) echo \"$1\" > {d}/outlet-$2 ;;\n  status) cat {d}/outlet-$2 2>/dev/null || echo on ;;\nesac\n", d = d.path().display())).unwrap();
    Command::new("chmod").arg("+x").arg(&pdu).status().unwrap();
    let p = pdu.display();
    let machine = |name: &str, n: u8, role: &str| {
        format!(
            "  - {{ name: {name}, hostname: {name}.lab.test, macs: [\"52:54:00:00:0c:0{n}\"], role: {role}, cluster: lab, bundle: fcos-40, install_disk: /dev/disk/by-id/virtio-{name}, provision: true, \
             power: {{ command: {{ on: [{p}, on, \"{{{{ name }}}}\"], off: [{p}, off, \"{{{{ name }}}}\"], status: [{p}, status, \"{{{{ name }}}}\"], timeout: 5 }} }} }}\n"
        )
    };
    let cfg = format!(
        "server:\n  listen: 127.0.0.1:8080\n  advertise: http://198.18.0.10:8080\ndhcp: {{ mode: off }}\nbundles:\n  - name: fcos-40\n    os: fcos\n    \
         kernel: {{ sha256: \"{h1}\" }}\n    initramfs: {{ sha256: \"{h2}\" }}\n    rootfs: {{ sha256: \"{h3}\" }}\n\
         clusters:\n  - name: lab\n    k3s: {{ version: v1.30.2+k3s1, api: \"https://127.0.0.1:{port}\" }}\nmachines:\n{}{}{}{}{}",
        machine("s1", 1, "server"),
        machine("a1", 2, "agent"),
        machine("a2", 3, "agent"),
        machine("a3", 4, "agent"),
        machine("a4", 5, "agent"),
        h1 = "1".repeat(64),
        h2 = "2".repeat(64),
        h3 = "3".repeat(64),
    );
    let w = tempfile::tempdir().unwrap();
    std::fs::write(w.path().join("bootplane.yaml"), cfg).unwrap();
    let srv = Server::start(w.path());
    // s1 hands over its CA hash and kubeconfig with its report, as report.sh does.
    let (_, code, ign) = srv.boot_and_fetch("s1", "52:54:00:00:0c:01");
    assert_eq!(code, 200, "{ign}");
    let token = std::fs::read_to_string(boot_root.join("var/lib/rancher/k3s/server/token")).unwrap();
    let ca = &token[3..67];
    let kc = base64::engine::general_purpose::STANDARD.encode(std::fs::read(boot_root.join("etc/rancher/k3s/k3s.yaml")).unwrap());
    let (code, body) = srv.post("/v1/machines/s1/report", Some(&credential_from_ignition(&ign)), &format!(r#"{{"state":"installed","ca_hash":"{ca}","kubeconfig":"{kc}"}}"#));
    assert_eq!(code, 200, "{body}");
    for (name, mac) in [("a1", "52:54:00:00:0c:02"), ("a2", "52:54:00:00:0c:03"), ("a3", "52:54:00:00:0c:04"), ("a4", "52:54:00:00:0c:05")] {
        let (_, code, ign) = srv.boot_and_fetch(name, mac);
        assert_eq!(code, 200, "{ign}");
        assert_eq!(srv.post(&format!("/v1/machines/{name}/report"), Some(&credential_from_ignition(&ign)), r#"{"state":"installed"}"#).0, 200);
    }
    let reinstall = |args: &[&str]| {
        let o = bootplane(w.path()).args(["machines", "reinstall"]).args(args).args(["--timeout", "1", "--server", &srv.url]).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };

    // a1: cordoned, drained, deleted; then provisioned and powered.
    let out = reinstall(&["a1"]);
    for want in ["a1: cordon a1", "a1: drain a1", "a1: delete node a1", "provisioned (was installed)", "power cycle done"] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (ok, nodes) = kubectl(&boot_root, &["get", "nodes"]);
    assert!(ok && nodes.contains("s1 Ready") && !nodes.contains("a1"), "{nodes}");
    assert_eq!(std::fs::read_to_string(d.path().join("outlet-a1")).unwrap(), "on\n");
    let steps: Vec<String> = srv.machine("a1")["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "reinstall.step").map(|e| e["detail"]["step"].as_str().unwrap().to_string()).collect();
    assert_eq!(steps, ["power status", "cordon a1", "drain a1", "delete node a1", "power cycle"], "every step an event");

    // a2 (dead, never joined): --no-drain deletes without cordon and drain.
    let out = reinstall(&["a2", "--no-drain"]);
    assert!(out.contains("a2: drain skipped") && out.contains("a2: delete node a2") && !out.contains("cordon"), "{out}");
    assert_eq!(srv.machine("a2")["state"], "provision", "{out}");

    // Retire is a cluster operation too: a4 leaves the cluster, and its name is free for
    // a fresh disk (another node password), which k3s would refuse while the node exists.
    let retire = |args: &[&str]| {
        let o = bootplane(w.path()).args(["machines", "retire"]).args(args).args(["--server", &srv.url]).output().unwrap();
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let (code, body) = srv.post("/v1/machines/a4/retire", Some(TOKEN), r#"{"forse":true}"#);
    assert!(code == 400 && body.contains("retire: unknown field `forse`"), "{code} {body}");
    let (ok, out) = retire(&["a4"]);
    assert!(ok, "{out}");
    for want in ["a4: cordon a4", "a4: drain a4", "a4: delete node a4", "a4: retired"] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let steps: Vec<String> = srv.machine("a4")["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "retire.step").map(|e| e["detail"]["step"].as_str().unwrap().to_string()).collect();
    assert_eq!(steps, ["cordon a4", "drain a4", "delete node a4"], "every step an event");
    assert!(!kubectl(&boot_root, &["get", "nodes"]).1.contains("a4"));
    drop(a4);
    let _new_a4 = standin(&d.path().join("a4-new"), "agent", port, &agent_cfg.replace("\"a1\"", "\"a4\""), &[("/etc/rancher/k3s/token", agent_token.trim())]);
    until("a fresh a4 (new node password) Ready after the retire", 60, || ready("a4"));
    // The only installed server is not retired by accident.
    let (ok, out) = retire(&["s1"]);
    assert!(!ok && out.contains("only installed server of cluster lab"), "{out}");
    assert_eq!(srv.machine("s1")["state"], "installed");
    assert!(kubectl(&boot_root, &["get", "nodes"]).1.contains("s1"));

    // The cluster's API gone: stopped before anything was changed.
    drop(boot);
    let out = reinstall(&["a3"]);
    assert!(out.contains("reinstall stopped at step `cordon a3`") && out.contains("unreachable") && out.contains("Nothing on the machine was changed"), "{out}");
    assert_eq!(srv.machine("a3")["state"], "installed");
    assert!(!d.path().join("outlet-a3").exists(), "the machine was not powered");
    let (ok, out) = retire(&["a3"]);
    assert!(!ok && out.contains("retire stopped at step `cordon a3`"), "{out}");
    assert_eq!(srv.machine("a3")["state"], "installed");
    // --force retires it anyway, and says its node stays.
    let (ok, out) = retire(&["a3", "--force"]);
    assert!(ok && out.contains("its node was left in the cluster (--force)") && out.contains("a3: retired"), "{out}");
}
