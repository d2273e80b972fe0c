//! The real binary over HTTP: the boot lifecycle, identity, reports, restarts and crashes.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn init_then_serve_answers_boot_ipxe_at_once() {
    let d = tempfile::tempdir().unwrap();
    let st = bootplane(d.path()).args(["init", "demo"]).status().unwrap();
    assert!(st.success());
    let demo = d.path().join("demo");
    assert!(bootplane(&demo).arg("check").status().unwrap().success(), "the starter config lints clean");
    let t0 = Instant::now();
    // No --config: serve must find ./bootplane.yaml by itself.
    let s = Server::start_with(&demo, &[]);
    let (code, body) = s.get("/boot.ipxe");
    eprintln!("init -> first /boot.ipxe answer: {:?}", t0.elapsed());
    assert_eq!(code, 200);
    assert_ipxe(&body);
    assert!(body.contains("/v1/boot/ipxe?mac=${mac:hexhyp}&uuid=${uuid}"), "{body}");
    assert!(demo.join("data/bootplane.db").exists());
}

#[test]
fn install_lifecycle_survives_restart_and_kill_9() {
    let d = workdir(CONFIG);
    let s = Server::start(d.path());
    let boot = "/v1/boot/ipxe?mac=52-54-00-12-34-56&uuid=11111111-2222-3333-4444-555555555555&arch=x86_64&platform=pcbios";

    let (code, script) = s.get(boot);
    assert_eq!(code, 200);
    assert_ipxe(&script);
    assert!(script.contains("kernel http://mirror.test/vmlinuz initrd=initrd.img console=ttyS0"), "{script}");
    let nonce = nonce_in(&script);
    assert!(script.contains(&format!("bootplane.config={}/v1/machines/node1/ignition?nonce={nonce} host=node1", s.url)), "{script}");
    assert_eq!(s.machine("node1")["state"], "provision");

    let (code, ign) = s.get(&format!("/v1/machines/node1/ignition?nonce={nonce}"));
    assert_eq!(code, 200, "{ign}");
    assert_eq!(s.machine("node1")["state"], "installing");
    let cred = credential_from_ignition(&ign);
    assert!(!script.contains(&cred), "the credential never appears in a boot script");

    // Wrong credential, no credential, wrong body.
    assert_eq!(s.post("/v1/machines/node1/report", Some(&"0".repeat(64)), r#"{"state":"installed"}"#).0, 401);
    assert_eq!(s.post("/v1/machines/node1/report", None, r#"{"state":"installed"}"#).0, 401);
    assert_eq!(s.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"done"}"#).0, 400);
    // Another machine's credential is refused too.
    assert_eq!(s.post("/v1/machines/node2/report", Some(&cred), r#"{"state":"installed"}"#).0, 401);
    assert_eq!(s.machine("node1")["state"], "installing");

    let (code, body) = s.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"installed","detail":"k3s up"}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.machine("node1")["state"], "installed");
    // A used credential is retired.
    assert_eq!(s.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"failed"}"#).0, 401);
    // No config for an installed machine.
    assert_eq!(s.get(&format!("/v1/machines/node1/ignition?nonce={nonce}")).0, 404);

    let local = |s: &Server| {
        let (code, body) = s.get(boot);
        assert_eq!(code, 200);
        assert_ipxe(&body);
        assert!(body.contains("node1 is installed: booting local disk") && !body.contains("kernel"), "{body}");
    };
    local(&s);
    // `/` is the dashboard: without a session, its login page (tests/dashboard.rs has the rest).
    let (code, index) = s.get("/");
    assert!(code == 200 && index.contains("<title>Log in · bootplane</title>"), "{code} {index}");
    let log = s.stop();
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:?}");
    // One line per boot answer, for operators tailing `serve`.
    let boots: Vec<&String> = log.iter().filter(|l| l.contains(" boot 127.0.0.1 mac=52:54:00:12:34:56 machine=node1 ")).collect();
    assert!(boots.iter().any(|l| l.contains("decision=install")) && boots.iter().any(|l| l.contains("decision=local")), "{log:?}");
    assert!(boots.iter().all(|l| l.contains(" INFO ") && l.ends_with(" ms)")), "{boots:?}");

    // Restart: re-applies the same config (provision: true) and must not reinstall.
    let s = Server::start(d.path());
    local(&s);
    s.kill9();
    let s = Server::start(d.path());
    local(&s);
    local(&s);

    let m = s.machine("node1");
    let kinds: Vec<String> = m["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect();
    assert!(kinds.contains(&"report.refused".to_string()), "{kinds:?}");
    let to: Vec<&str> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "state.changed")
        .map(|e| e["detail"]["to"].as_str().unwrap())
        .collect();
    assert_eq!(to, ["provision", "installing", "installed"]);

    // Only an explicit provision reinstalls.
    let (code, body) = s.admin("POST", "/v1/machines/node1/provision");
    assert_eq!(code, 200, "{body}");
    assert!(s.get(boot).1.contains("kernel "));
}

/// A real installer writes the disk and reboots before the installed system reports.
/// On a site whose machines network-boot first, the reboot must get local boot, however
/// often it comes, and the installed system reports with the credential it carries.
#[test]
fn a_written_disk_boots_locally_until_the_installed_system_reports() {
    let d = workdir(CONFIG);
    let s = Server::start(d.path());
    let boot = "/v1/boot/ipxe?mac=52:54:00:12:34:56&arch=x86_64";
    let (script, _, ign) = s.boot_and_fetch("node1", "52:54:00:12:34:56");
    let cred = credential_from_ignition(&ign);
    // `written` before the config was fetched is out of order.
    let (code, body) = s.post("/v1/machines/node2/report", None, r#"{"state":"written"}"#);
    assert_eq!(code, 401, "{body}");
    let (code, body) = s.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"written","detail":"installer"}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.machine("node1")["state"], "written");
    // The installer's retry after a lost answer changes nothing.
    assert_eq!(s.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"written"}"#).0, 200);
    // More reboots than the attempt limit: every one boots the disk, none counts.
    for _ in 0..5 {
        let (_, script) = s.get(boot);
        assert!(!script.contains("kernel ") && script.contains("booting local disk"), "{script}");
    }
    assert_eq!(s.machine("node1")["install_attempts"], 1);
    assert_eq!(s.get(&format!("/v1/machines/node1/ignition?nonce={}", nonce_in(&script))).0, 404, "no config once the disk is written");
    let (code, body) = s.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"installed","detail":"from the disk"}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.machine("node1")["state"], "installed");
    assert_eq!(s.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"installed"}"#).0, 401, "credential retired");
}

#[test]
fn a_written_machine_that_never_reports_is_marked_failed_with_the_reason() {
    let d = workdir(&CONFIG.replace("  max_install_attempts: 3\n", "  max_install_attempts: 3\n  report_timeout: 2s\n"));
    let s = Server::start(d.path());
    let cred = credential_from_ignition(&s.boot_and_fetch("node1", "52:54:00:12:34:56").2);
    assert_eq!(s.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"written"}"#).0, 200);
    let mut state = String::new();
    for _ in 0..50 {
        state = s.machine("node1")["state"].as_str().unwrap().to_string();
        if state == "failed" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(state, "failed");
    let m = s.machine("node1");
    let last = m["events"].as_array().unwrap().iter().rev().find(|e| e["kind"] == "state.changed").unwrap().clone();
    assert_eq!(last["detail"]["trigger"], "report_timeout", "{last}");
    assert!(last["detail"]["detail"]["reason"].as_str().unwrap().contains("did not report within 2s"), "{last}");
    // Its credential died with it: a late report cannot bring it back.
    assert_eq!(s.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"installed"}"#).0, 401);
}

#[test]
fn unknown_machine_is_quarantined_and_discovered() {
    let d = workdir(CONFIG);
    let s = Server::start(d.path());
    let (code, body) = s.get("/v1/boot/ipxe?mac=AA:BB:CC:00:11:22&uuid=99999999-0000-0000-0000-000000000001&serial=XYZ&arch=x86_64");
    assert_eq!(code, 200);
    assert_ipxe(&body);
    assert!(body.contains("QUARANTINE") && body.contains("mac=aa:bb:cc:00:11:22") && !body.contains("kernel"), "{body}");
    std::thread::sleep(Duration::from_millis(300));
    let out = bootplane(d.path()).args(["machines", "list", "--json", "--server", &s.url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = list.as_array().unwrap().iter().find(|m| m["state"] == "discovered").expect("a discovered machine");
    assert_eq!(m["macs"][0], "aa:bb:cc:00:11:22");
    assert_eq!(m["uuid"], "99999999-0000-0000-0000-000000000001");
    assert_eq!(m["observed"]["arch"], "x86_64");
    // The table form lists it too.
    let out = bootplane(d.path()).args(["machines", "list", "--server", &s.url]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("discovered-aabbcc001122"));
}

#[test]
fn disagreeing_identity_is_quarantined_and_leaves_states_alone() {
    let d = workdir(CONFIG);
    let s = Server::start(d.path());
    // UUID of node1, MAC of node2; both are in provision.
    let (code, body) = s.get("/v1/boot/ipxe?mac=52:54:00:12:34:57&uuid=11111111-2222-3333-4444-555555555555&arch=x86_64");
    assert_eq!(code, 200);
    assert!(body.contains("QUARANTINE: identity conflict") && !body.contains("kernel"), "{body}");
    // Serial contradicting the registered one.
    let (_, body) = s.get("/v1/boot/ipxe?mac=52:54:00:12:34:58&serial=OTHER&arch=x86_64");
    assert!(body.contains("QUARANTINE"), "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.machine("node1")["state"], "provision");
    assert_eq!(s.machine("node2")["state"], "provision");
    assert_eq!(s.machine("node1")["install_attempts"], 0);
    let (_, ev) = s.admin("GET", "/v1/events?limit=1000");
    assert!(ev.contains("identity.conflict"), "{ev}");
}

#[test]
fn installer_attempts_run_out_into_failed() {
    let d = workdir(CONFIG);
    let s = Server::start(d.path());
    let boot = "/v1/boot/ipxe?mac=52:54:00:12:34:57&arch=x86_64";
    // An attempt counts when its config is fetched, not when a boot is answered.
    for _ in 0..3 {
        let (script, code, _) = s.boot_and_fetch("node2", "52:54:00:12:34:57");
        assert!(script.contains("kernel ") && code == 200, "{script}");
    }
    let (_, body) = s.get(boot);
    assert!(body.contains("marked failed") && !body.contains("kernel "), "{body}");
    assert_eq!(s.machine("node2")["state"], "failed");
    assert!(!s.get(boot).1.contains("kernel "));
}

#[test]
fn admin_api_needs_the_token() {
    let d = workdir(CONFIG);
    let s = Server::start(d.path());
    assert_eq!(s.get("/v1/machines").0, 401);
    assert_eq!(req("GET", &format!("{}/v1/machines", s.url), Some("wrong"), None).0, 401);
    assert_eq!(req("POST", &format!("{}/v1/machines/node1/retire", s.url), None, Some("")).0, 401);
    assert_eq!(s.get("/v1/events").0, 401);
    assert_eq!(s.admin("GET", "/v1/machines").0, 200);
    assert_eq!(s.admin("GET", "/v1/machines/nope").0, 404);
    assert_eq!(s.admin("POST", "/v1/machines/nope/provision").0, 404);
    assert_eq!(s.get("/healthz"), (200, "ok\n".into()));
    let (code, metrics) = s.get("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("bootplane_machines{state=\"provision\"} 2"), "{metrics}");
    // Retire, then the machine never installs.
    assert_eq!(s.admin("POST", "/v1/machines/node2/retire").0, 200);
    let (_, body) = s.get("/v1/boot/ipxe?mac=52:54:00:12:34:57");
    assert!(body.contains("retired") && !body.contains("kernel "), "{body}");
}

#[test]
fn events_stream_live() {
    let d = workdir(CONFIG);
    let s = Server::start(d.path());
    let url = format!("{}/v1/events?follow=true", s.url);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = ureq::get(&url).set("Authorization", &format!("Bearer {TOKEN}")).call().unwrap();
        assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(r.into_reader()));
        while let Some(Ok(l)) = lines.next() {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    s.get("/v1/boot/ipxe?mac=52:54:00:12:34:58&arch=x86_64");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if l.starts_with("data:") && l.contains("node3") {
                return;
            }
            seen.push(l);
        }
    }
    panic!("no live event for node3 within 10s; got {seen:?}");
}

#[test]
fn a_machines_butane_is_compiled_into_its_ignition() {
    let cfg = CONFIG.replace(
        "    serial: SN-3\n",
        "    serial: SN-3\n    provision: true\n    butane: |\n      variant: fcos\n      version: 1.4.0\n      storage:\n        files:\n          - path: /etc/motd\n            contents: { inline: \"{{ machine.name }}\\n\" }\n",
    );
    let d = workdir(&cfg);
    let s = Server::start(d.path());
    let (_, code, ign) = s.boot_and_fetch("node3", "52:54:00:12:34:58");
    assert_eq!(code, 200, "{ign}");
    let v: serde_json::Value = serde_json::from_str(&ign).unwrap();
    assert_eq!(v["ignition"]["version"], "3.3.0");
    let motd = v["storage"]["files"].as_array().unwrap().iter().find(|f| f["path"] == "/etc/motd").expect("the snippet's file");
    assert_eq!(motd["contents"]["source"], "data:,node3%0A");
    // The real ignition-validate accepts what the machine gets.
    let f = d.path().join("node3.ign");
    std::fs::write(&f, &ign).unwrap();
    let o = std::process::Command::new("ignition-validate").arg(&f).output().expect("ignition-validate");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // render shows the same config offline (with a placeholder credential).
    let out = bootplane(d.path()).args(["render", "node3", "--ignition"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("data:,node3%0A"));
}

/// The requester's retry of a config fetch gets the same config without compiling its
/// Butane again; a new credential generation compiles anew (issue 13, finding 11).
#[test]
fn a_retried_config_fetch_is_served_from_the_cache() {
    let d = workdir(CONFIG);
    let s = Server::start(d.path());
    let compiled = |s: &Server| -> u64 {
        s.get("/metrics").1.lines().find_map(|l| l.strip_prefix("bootplane_configs_compiled_total ")).and_then(|v| v.trim().parse().ok()).unwrap()
    };
    let (script, code, first) = s.boot_and_fetch("node1", "52:54:00:12:34:56");
    assert_eq!(code, 200);
    assert_eq!(compiled(&s), 1);
    let (code, again) = s.get(&format!("/v1/machines/node1/ignition?nonce={}", nonce_in(&script)));
    assert_eq!((code, &again), (200, &first));
    assert_eq!(compiled(&s), 1, "the retry was not compiled again");
    assert_eq!(s.admin("POST", "/v1/machines/node1/provision").0, 200);
    let (_, code, third) = s.boot_and_fetch("node1", "52:54:00:12:34:56");
    assert_eq!(code, 200);
    assert_ne!(credential_from_ignition(&third), credential_from_ignition(&first));
    assert_eq!(compiled(&s), 2);
}
