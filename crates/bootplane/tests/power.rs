//! Power control through the real binary's API and CLI, against real BMC simulators:
//! OpenIPMI's `ipmi_sim` (IPMI 2.0 over LAN, driven by the real `ipmitool`) and
//! sushy-tools' Redfish emulator (PyPI; its fake driver: no libvirt here) over HTTPS with
//! a self-signed CA and HTTP basic auth, plus a scripted PDU for the `command` driver.
//! Without the simulators the tests say they were not run (and fail when
//! `BOOTPLANE_REQUIRE_POWER=1`, as `.ci/run` sets).

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn required(what: &str) -> bool {
    if std::env::var("BOOTPLANE_REQUIRE_POWER").as_deref() == Ok("1") {
        panic!("{what} is required (BOOTPLANE_REQUIRE_POWER=1); .ci/run installs it");
    }
    eprintln!("NOT RUN: needs {what}");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn config(machines: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:8080\n  advertise: http://198.18.0.10:8080\ndhcp: {{ mode: off }}\n\
         bundles:\n  - name: rescue\n    os: generic\n    kernel: {{ url: \"http://198.18.0.10:8081/vmlinuz\" }}\n    \
         initrd: {{ url: \"http://198.18.0.10:8081/initrd.img\" }}\n    args: \"console=ttyS0 rescue.ignition={{{{ ignition_url }}}}\"\nmachines:\n{machines}"
    )
}

fn power(srv: &Server, name: &str, action: &str) -> (u16, serde_json::Value) {
    let (code, body) = req("POST", &format!("{}/v1/machines/{name}/power", srv.url), Some(TOKEN), Some(&format!("{{\"action\":\"{action}\"}}")));
    (code, serde_json::from_str(&body).unwrap_or(serde_json::json!({ "raw": body })))
}

fn status(srv: &Server, name: &str) -> (u16, serde_json::Value) {
    let (code, body) = srv.admin("GET", &format!("/v1/machines/{name}/power"));
    (code, serde_json::from_str(&body).unwrap_or(serde_json::json!({ "raw": body })))
}

/// Every event and API answer of the run, to check no password shows anywhere.
fn assert_never_shown(srv: &Server, secrets: &[&str], also: &[String]) {
    std::thread::sleep(Duration::from_millis(1200));
    let (_, events) = srv.admin("GET", "/v1/events?limit=1000");
    let (_, machines) = srv.admin("GET", "/v1/machines");
    for s in secrets {
        assert!(!events.contains(s), "a password is in the event log");
        assert!(!machines.contains(s), "a password is in the machine API");
        for a in also {
            assert!(!a.contains(s), "a password is in an answer: {a}");
        }
    }
}

/// OpenIPMI's BMC simulator on a loopback UDP port, user `admin`, with a chassis-control
/// program standing in for the machine: it keeps the power state and the boot device in
/// files, as ipmi_sim's chassis_control protocol asks (`<mc> get|set power|boot ...`),
/// and refuses power changes while a `refuse-power` file exists (a BMC that takes the
/// boot override but not the power cycle: ipmi_sim answers "Unspecified error").
/// Reproduced: a real BMC's IPMI 2.0 sessions, authentication, chassis control and
/// boot-options commands. Not here: a machine that boots (the e2e VM suite attaches
/// ipmi_sim to QEMU for that).
fn ipmi_sim(dir: &Path) -> Option<(KillOnDrop, u16)> {
    if !Path::new("/usr/bin/ipmi_sim").exists() || !Path::new("/usr/bin/ipmitool").exists() {
        required("ipmi_sim and ipmitool (apt-get install openipmi ipmitool)");
        return None;
    }
    let port = free_udp_port();
    let cc = dir.join("chassis");
    std::fs::write(
        &cc,
        format!(
            "#!/bin/sh\nd={d}\nshift; op=$1; shift\ncase $op in\nget) for p in \"$@\"; do case $p in\n  power) echo \"power:$(cat $d/power 2>/dev/null || echo 0)\";;\n  \
             boot) echo \"boot:$(cat $d/boot 2>/dev/null || echo default)\";;\n  esac; done;;\nset) while [ $# -gt 0 ]; do case $1 in\n  \
             power) [ -e $d/refuse-power ] && exit 1; echo \"$2\" > $d/power; echo \"$2\" >> $d/power.log;;\n  boot) echo \"$2\" > $d/boot;;\n  esac; shift 2; done;;\nesac\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = dir.join("lan.conf");
    std::fs::write(
        &conf,
        format!(
            "name \"bp\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n    priv_limit admin\n    \
             allowed_auths_callback md5\n    allowed_auths_user md5\n    allowed_auths_operator md5\n    allowed_auths_admin md5\n    \
             guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{} 0x20\"\n  \
             user 2 true \"admin\" \"bmc-pass-4421\" admin 10 md5\n",
            cc.display()
        ),
    )
    .unwrap();
    let emu = dir.join("bmc.emu");
    std::fs::write(&emu, "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n").unwrap();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let child = Command::new("ipmi_sim")
        .arg("-c")
        .arg(&conf)
        .arg("-f")
        .arg(&emu)
        .arg("-s")
        .arg(&state)
        .arg("-n")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    Some((KillOnDrop(child), port))
}

#[test]
fn ipmi_power_and_boot_override_through_a_simulated_bmc() {
    let d = tempfile::tempdir().unwrap();
    let Some((_sim, port)) = ipmi_sim(d.path()) else { return };
    let pw = secret_file(d.path(), "bmc-n1", "bmc-pass-4421");
    let wrong = secret_file(d.path(), "bmc-n2", "not-the-password");
    let dead = free_udp_port();
    let m = |name: &str, mac: &str, port: u16, pw: &Path| {
        format!(
            "  - {{ name: {name}, macs: [\"{mac}\"], bundle: rescue, power: {{ ipmi: {{ address: 127.0.0.1, port: {port}, username: admin, password_file: {}, cipher_suite: 3 }} }} }}\n",
            pw.display()
        )
    };
    let cfg = config(&format!(
        "{}{}{}  - {{ name: n4, macs: [\"52:54:00:00:07:04\"], bundle: rescue }}\n",
        m("n1", "52:54:00:00:07:01", port, &pw),
        m("n2", "52:54:00:00:07:02", port, &wrong),
        m("n3", "52:54:00:00:07:03", dead, &pw)
    ));
    let w = workdir(&cfg);
    let srv = Server::start(w.path());
    let mut answers = Vec::new();

    let (code, v) = status(&srv, "n1");
    assert_eq!((code, v["state"].as_str(), v["driver"].as_str()), (200, Some("off"), Some("ipmi")), "{v}");
    let (code, v) = power(&srv, "n1", "on");
    assert_eq!((code, v["state"].as_str()), (200, Some("on")), "{v}");
    assert_eq!(std::fs::read_to_string(d.path().join("power")).unwrap().trim(), "1", "the BMC switched the machine on");
    // The CLI, as an operator runs it.
    let o = bootplane(w.path()).args(["machines", "power", "n1", "cycle", "--server", &srv.url]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success() && out.contains("n1: power cycle done; power is on (ipmi)"), "{out} {}", String::from_utf8_lossy(&o.stderr));
    answers.push(out);
    let log = std::fs::read_to_string(d.path().join("power.log")).unwrap();
    assert!(log.ends_with("1\n0\n1\n"), "on, then off and on for the cycle: {log:?}");

    // Wrong password, unreachable BMC, no power declared: each a clear error naming the
    // machine and the step.
    let (code, v) = power(&srv, "n2", "on");
    let e = v["error"].as_str().unwrap_or_default().to_string();
    assert!(code == 502 && e.contains("machine n2: power on:") && e.contains("refused the credentials"), "{code} {e}");
    answers.push(e);
    let started = Instant::now();
    let (code, v) = status(&srv, "n3");
    let e = v["error"].as_str().unwrap_or_default().to_string();
    assert!(code == 502 && e.contains("machine n3: power status: cannot reach BMC 127.0.0.1"), "{code} {e}");
    assert!(started.elapsed() < Duration::from_secs(25), "an unreachable BMC fails within its retries");
    let (code, v) = power(&srv, "n4", "on");
    assert!(code == 400 && v["error"].as_str().unwrap_or_default().contains("n4 has no `power:`"), "{code} {v}");
    let (code, _) = req("POST", &format!("{}/v1/machines/n1/power", srv.url), Some(TOKEN), Some("{\"action\":\"explode\"}"));
    assert_eq!(code, 400);
    let (code, _) = req("POST", &format!("{}/v1/machines/n1/power", srv.url), None, Some("{\"action\":\"off\"}"));
    assert_eq!(code, 401, "power needs the admin token");

    std::thread::sleep(Duration::from_millis(1200));
    let (_, events) = srv.admin("GET", "/v1/events?limit=200");
    let ev: serde_json::Value = serde_json::from_str(&events).unwrap();
    let power_events: Vec<&serde_json::Value> = ev.as_array().unwrap().iter().filter(|e| e["kind"] == "power.action").collect();
    assert!(power_events.iter().any(|e| e["machine"] == "n2" && e["detail"]["step"] == "power on"), "{events}");
    assert_never_shown(&srv, &["bmc-pass-4421", "not-the-password"], &answers);
    let log = srv.stop().join("\n");
    assert!(!log.contains("bmc-pass-4421") && !log.contains("not-the-password"), "a password is in the server's log");
}

#[test]
fn the_ipmi_driver_sets_a_one_time_network_boot() {
    // The driver alone (the reinstall command will use it): the BMC records PXE.
    let d = tempfile::tempdir().unwrap();
    let Some((_sim, port)) = ipmi_sim(d.path()) else { return };
    let pw = secret_file(d.path(), "pw", "bmc-pass-4421");
    let spec: bootplane_core::power::PowerSpec =
        yaml_serde::from_str(&format!("ipmi: {{ address: 127.0.0.1, port: {port}, username: admin, password_file: {}, cipher_suite: 3 }}", pw.display())).unwrap();
    let drv = bootplane_power::driver_for(&spec, &bootplane_power::Target::default()).unwrap();
    assert!(drv.sets_boot_device());
    drv.boot_once_from_network(true).unwrap();
    assert_eq!(std::fs::read_to_string(d.path().join("boot")).unwrap().trim(), "pxe");
}

/// sushy-tools' Redfish emulator, fake driver (libvirt does not run here): HTTPS with a
/// certificate from a CA made for the test, basic auth from an htpasswd file. Reproduced:
/// Redfish's resource tree, Reset actions with the allowed types, power changes applied
/// 1-11 s later (as real BMCs do), Boot PATCH, 401 on bad credentials, TLS. Not here: a
/// machine behind it, and `BootSourceOverrideEnabled` (always reported `Continuous`).
/// Waits until `child` listens on `port`. A Python emulator's start takes seconds alone
/// and much longer on a loaded machine (CI runs VMs beside the tests): it is waited for
/// until it listens or exits, with only a generous bound against a hang.
fn wait_listening(child: &mut KillOnDrop, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen within 180 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sushy(dir: &Path) -> Option<(KillOnDrop, u16, PathBuf)> {
    let bin = std::env::var("BOOTPLANE_SUSHY_EMULATOR").unwrap_or_else(|_| "/opt/sushy-tools/bin/sushy-emulator".into());
    if !Path::new(&bin).exists() {
        required("sushy-tools (python3 -m venv /opt/sushy-tools && /opt/sushy-tools/bin/pip install sushy-tools)");
        return None;
    }
    let python = Path::new(&bin).with_file_name("python");
    let hash = Command::new(&python)
        .args(["-c", "import bcrypt,sys; print(bcrypt.hashpw(b'rf-pass-9931', bcrypt.gensalt()).decode())"])
        .output()
        .unwrap();
    std::fs::write(dir.join("htpasswd"), format!("admin:{}", String::from_utf8_lossy(&hash.stdout))).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "test BMC CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("bmc.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("bmc.key"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.join("sushy.conf"),
        format!("SUSHY_EMULATOR_AUTH_FILE = '{}'\nSUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = '{}'\n", dir.join("htpasswd").display(), dir.display()),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(&bin)
        .arg("--config")
        .arg(dir.join("sushy.conf"))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "--ssl-certificate"])
        .arg(dir.join("bmc.crt"))
        .arg("--ssl-key")
        .arg(dir.join("bmc.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    wait_listening(&mut child, port, "sushy-emulator");
    Some((child, port, dir.join("ca.pem")))
}

#[test]
fn redfish_power_and_boot_override_over_verified_tls() {
    let d = tempfile::tempdir().unwrap();
    let Some((_sushy, port, ca)) = sushy(d.path()) else { return };
    let pw = secret_file(d.path(), "rf-n1", "rf-pass-9931");
    let wrong = secret_file(d.path(), "rf-n2", "guess");
    let m = |name: &str, mac: &str, pw: &Path, ca: Option<&Path>| {
        let ca = ca.map(|c| format!(", ca_file: {}", c.display())).unwrap_or_default();
        format!(
            "  - {{ name: {name}, macs: [\"{mac}\"], bundle: rescue, power: {{ redfish: {{ url: \"https://127.0.0.1:{port}\", username: admin, password_file: {}{ca} }} }} }}\n",
            pw.display()
        )
    };
    let cfg = config(&format!(
        "{}{}{}",
        m("r1", "52:54:00:00:08:01", &pw, Some(&ca)),
        m("r2", "52:54:00:00:08:02", &wrong, Some(&ca)),
        m("r3", "52:54:00:00:08:03", &pw, None)
    ));
    let w = workdir(&cfg);
    let srv = Server::start(w.path());
    let mut answers = Vec::new();
    let (code, v) = status(&srv, "r1");
    assert_eq!((code, v["state"].as_str(), v["driver"].as_str()), (200, Some("off"), Some("redfish")), "{v}");
    let (code, v) = power(&srv, "r1", "on");
    assert_eq!((code, v["state"].as_str()), (200, Some("on")), "{v}");
    let (code, v) = power(&srv, "r1", "cycle");
    assert_eq!((code, v["state"].as_str()), (200, Some("on")), "{v}");
    let (code, v) = power(&srv, "r1", "off");
    assert_eq!((code, v["state"].as_str()), (200, Some("off")), "{v}");

    // One-time network boot, read back from the emulator.
    let spec: bootplane_core::power::PowerSpec = yaml_serde::from_str(&format!(
        "redfish: {{ url: \"https://127.0.0.1:{port}\", username: admin, password_file: {}, ca_file: {} }}",
        pw.display(),
        ca.display()
    ))
    .unwrap();
    bootplane_power::driver_for(&spec, &bootplane_power::Target::default()).unwrap().boot_once_from_network(true).unwrap();
    let agent = {
        let mut roots = rustls_roots(&ca);
        let _ = &mut roots;
        ureq::AgentBuilder::new().tls_config(std::sync::Arc::new(roots)).build()
    };
    use base64::Engine as _;
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("admin:rf-pass-9931"));
    let systems: serde_json::Value = agent.get(&format!("https://127.0.0.1:{port}/redfish/v1/Systems")).set("Authorization", &auth).call().unwrap().into_json().unwrap();
    let sys = systems["Members"][0]["@odata.id"].as_str().unwrap().to_string();
    let s: serde_json::Value = agent.get(&format!("https://127.0.0.1:{port}{sys}")).set("Authorization", &auth).call().unwrap().into_json().unwrap();
    // sushy-tools keeps the target and mode but always reports `Continuous` (its
    // main.py ignores BootSourceOverrideEnabled); `Once` is checked in the driver's tests.
    assert_eq!((s["Boot"]["BootSourceOverrideTarget"].as_str(), s["Boot"]["BootSourceOverrideMode"].as_str()), (Some("Pxe"), Some("UEFI")), "{}", s["Boot"]);

    // Wrong password: refused cleanly. No CA given: the self-signed BMC is not trusted.
    let (code, v) = power(&srv, "r2", "on");
    let e = v["error"].as_str().unwrap_or_default().to_string();
    assert!(code == 502 && e.contains("machine r2: power on:") && e.contains("refused the credentials"), "{code} {e}");
    answers.push(e);
    let (code, v) = status(&srv, "r3");
    let e = v["error"].as_str().unwrap_or_default().to_string();
    assert!(code == 502 && e.contains("machine r3: power status: cannot reach") && e.contains("ca_file"), "{code} {e}");
    answers.push(e);
    assert_never_shown(&srv, &["rf-pass-9931", "guess"], &answers);
    let log = srv.stop().join("\n");
    assert!(!log.contains("rf-pass-9931"), "a password is in the server's log");
}

fn rustls_roots(ca: &Path) -> rustls::ClientConfig {
    let pem = std::fs::read(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[test]
fn a_scripted_pdu_through_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let pdu = d.path().join("pdu");
    // Seed 004's web power strip, scripted: outlet state in a file; `fail` like a strip
    // that refuses its login.
    std::fs::write(
        &pdu,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  on|off) echo \"$1\" > {d}/outlet-$2 ;;\n  status) cat {d}/outlet-$2 2>/dev/null || echo off ;;\n  \
             fail) echo 'power strip: login refused' >&2; exit 2 ;;\nesac\n",
            d = d.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&pdu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = pdu.display();
    let cfg = config(&format!(
        "  - {{ name: pi1, macs: [\"52:54:00:00:09:01\"], bundle: rescue, power: {{ command: {{ on: [{p}, on, \"{{{{ name }}}}\"], off: [{p}, off, \"{{{{ name }}}}\"], status: [{p}, status, \"{{{{ name }}}}\"], timeout: 5 }} }} }}\n  \
           - {{ name: pi2, macs: [\"52:54:00:00:09:02\"], bundle: rescue, power: {{ command: {{ on: [{p}, fail], off: [{p}, fail], timeout: 5 }} }} }}\n"
    ));
    let w = workdir(&cfg);
    let srv = Server::start(w.path());
    let cli = |args: &[&str]| {
        let o = bootplane(w.path()).args(args).args(["--server", &srv.url]).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
    };
    assert_eq!(cli(&["machines", "power", "pi1", "status"]), (true, "pi1: power is off (command)\n".into()));
    assert_eq!(cli(&["machines", "power", "pi1", "on"]), (true, "pi1: power on done; power is on (command)\n".into()));
    assert_eq!(std::fs::read_to_string(d.path().join("outlet-pi1")).unwrap(), "on\n");
    let (ok, out) = cli(&["machines", "power", "pi2", "on"]);
    assert!(!ok && out.contains("HTTP 502") && out.contains("machine pi2: power on:") && out.contains("login refused"), "{out}");
    let (ok, out) = cli(&["machines", "power", "pi1", "reboot"]);
    assert!(!ok && out.contains("invalid value 'reboot'"), "{out}");
}

/// Installs `name` as a machine does: its boot, its config fetch, its `installed` report.
fn play_install(srv: &Server, name: &str, mac: &str) {
    let (_, code, ign) = srv.boot_and_fetch(name, mac);
    assert_eq!(code, 200, "{ign}");
    let cred = credential_from_ignition(&ign);
    let (code, body) = srv.post(&format!("/v1/machines/{name}/report"), Some(&cred), r#"{"state":"installed"}"#);
    assert_eq!(code, 200, "{body}");
}

fn wait_state(srv: &Server, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while srv.machine(name)["state"] != want {
        assert!(Instant::now() < deadline, "{name} never reached {want}: {}", srv.machine(name));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn reinstall_through_a_bmc_follows_the_machine_until_it_reports() {
    let d = tempfile::tempdir().unwrap();
    let Some((_sim, port)) = ipmi_sim(d.path()) else { return };
    let pw = secret_file(d.path(), "bmc", "bmc-pass-4421");
    let cfg = config(&format!(
        "  - {{ name: n1, hostname: n1.lab.test, ip: 198.18.0.31, macs: [\"52:54:00:00:0a:01\"], bundle: rescue, provision: true, \
         power: {{ ipmi: {{ address: 127.0.0.1, port: {port}, username: admin, password_file: {}, cipher_suite: 3 }} }} }}\n",
        pw.display()
    ));
    let w = workdir(&cfg);
    let srv = Server::start(w.path());
    play_install(&srv, "n1", "52:54:00:00:0a:01");
    assert_eq!(srv.machine("n1")["state"], "installed");
    let generation = srv.machine("n1")["credential_generation"].as_u64().unwrap();

    let cli = bootplane(w.path())
        .args(["machines", "reinstall", "n1", "--timeout", "60", "--server", &srv.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The BMC got the one-time network boot and the power change before the machine
    // could boot; then the machine (played here) installs and reports.
    wait_state(&srv, "n1", "provision");
    assert!(srv.machine("n1")["credential_generation"].as_u64().unwrap() > generation, "a new credential");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.path().join("power").exists() {
        assert!(Instant::now() < deadline, "the BMC was never told to power the machine");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(d.path().join("boot")).unwrap().trim(), "pxe");
    play_install(&srv, "n1", "52:54:00:00:0a:01");
    let out = cli.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for want in ["n1: power status: off", "one-time network boot set (BIOS)", "provisioned (was installed)", "power on done", "provision -> installing", "reinstalled"] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let o = bootplane(w.path()).args(["ssh-known-hosts", "n1", "--server", &srv.url]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ssh-keygen -R 198.18.0.31\nssh-keygen -R n1\nssh-keygen -R n1.lab.test\n");
}

#[test]
fn a_bmc_refusing_the_power_cycle_leaves_nothing_half_done() {
    let d = tempfile::tempdir().unwrap();
    let Some((_sim, port)) = ipmi_sim(d.path()) else { return };
    let pw = secret_file(d.path(), "bmc", "bmc-pass-4421");
    let dead = free_udp_port();
    let m = |name: &str, mac: &str, port: u16| {
        format!(
            "  - {{ name: {name}, macs: [\"{mac}\"], bundle: rescue, provision: true, power: {{ ipmi: {{ address: 127.0.0.1, port: {port}, username: admin, password_file: {}, cipher_suite: 3 }} }} }}\n",
            pw.display()
        )
    };
    let w = workdir(&config(&format!("{}{}", m("n1", "52:54:00:00:0b:01", port), m("n2", "52:54:00:00:0b:02", dead))));
    let srv = Server::start(w.path());
    play_install(&srv, "n1", "52:54:00:00:0b:01");
    play_install(&srv, "n2", "52:54:00:00:0b:02");
    std::fs::write(d.path().join("refuse-power"), "").unwrap();
    let o = bootplane(w.path()).args(["machines", "reinstall", "n1", "--timeout", "5", "--server", &srv.url]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("machine n1: reinstall stopped at step `power on`") && err.contains("rolled back: n1 is `installed` again"), "{err}");
    assert_eq!(srv.machine("n1")["state"], "installed", "the provision was undone");
    // An unreachable BMC: stopped before anything changed.
    let o = bootplane(w.path()).args(["machines", "reinstall", "n2", "--timeout", "5", "--server", &srv.url]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success() && err.contains("stopped at step `power status`") && err.contains("Nothing was changed"), "{err}");
    assert_eq!(srv.machine("n2")["state"], "installed");
    std::thread::sleep(Duration::from_millis(1200));
    let events = srv.machine("n1")["events"].to_string();
    assert!(events.contains("reinstall_aborted") && events.contains("reinstall.step"), "{events}");
}

#[test]
fn a_rack_powers_on_in_waves() {
    let d = tempfile::tempdir().unwrap();
    let pdu = d.path().join("pdu");
    // Each outlet switched on is logged with the time, so the waves can be seen.
    std::fs::write(&pdu, format!("#!/bin/sh\n[ \"$1\" = on ] && echo \"$2 $(date +%s%N)\" >> {}/log\necho on\n", d.path().display())).unwrap();
    std::fs::set_permissions(&pdu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = pdu.display();
    let machines: String = (1..=7)
        .map(|i| {
            let rack = if i == 7 { "r2" } else { "r1" };
            format!(
                "  - {{ name: w{i}, macs: [\"52:54:00:00:0c:0{i}\"], bundle: rescue, labels: {{ rack: {rack} }}, power: {{ command: {{ on: [{p}, on, \"{{{{ name }}}}\"], off: [{p}, off], status: [{p}, status], timeout: 5 }} }} }}\n"
            )
        })
        .collect();
    let w = workdir(&config(&machines));
    let srv = Server::start(w.path());
    let o = bootplane(w.path())
        .args(["machines", "power-on", "--wave", "2", "--interval", "2s", "rack=r1", "--server", &srv.url])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("wave 1/3: w1: power is on") && out.contains("wave 3/3: w6: power is on") && !out.contains("w7"), "{out}");
    let log = std::fs::read_to_string(d.path().join("log")).unwrap();
    let mut at: Vec<(String, u128)> = log.lines().map(|l| l.split_once(' ').map(|(n, t)| (n.to_string(), t.parse().unwrap())).unwrap()).collect();
    at.sort_by_key(|(n, _)| n.clone());
    assert_eq!(at.len(), 6, "{log}");
    let wave_start = |k: usize| at[2 * k].1.min(at[2 * k + 1].1);
    for k in 1..3 {
        let gap_ms = (wave_start(k) - wave_start(k - 1)) / 1_000_000;
        assert!(gap_ms >= 1500, "wave {} started {gap_ms} ms after wave {k}", k + 1);
    }
}

/// A libvirt domain (QEMU, TCG) for sushy's libvirt driver, removed when dropped.
struct Domain(String);
impl Drop for Domain {
    fn drop(&mut self) {
        let _ = Command::new("virsh").args(["-c", "qemu:///system", "destroy", &self.0]).output();
        let _ = Command::new("virsh").args(["-c", "qemu:///system", "undefine", &self.0]).output();
    }
}

fn virsh(args: &[&str]) -> String {
    let o = Command::new("virsh").args(["-c", "qemu:///system"]).args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// Redfish on a real VM: sushy-tools' emulator with its libvirt driver in front of a
/// libvirt-managed QEMU domain (Debian's libvirtd; `.ci/run` starts it). Power changes
/// reach the VM (virsh sees them) and the network boot override rewrites the domain's
/// boot order, as on a real server's BMC.
#[test]
fn redfish_drives_a_libvirt_vm() {
    let sushy_bin = std::env::var("BOOTPLANE_SUSHY_EMULATOR").unwrap_or_else(|_| "/opt/sushy-tools/bin/sushy-emulator".into());
    let python = Path::new(&sushy_bin).with_file_name("python");
    let libvirt_ok = Command::new("virsh").args(["-c", "qemu:///system", "version"]).output().is_ok_and(|o| o.status.success())
        && Command::new(&python).args(["-c", "import libvirt"]).output().is_ok_and(|o| o.status.success());
    if !libvirt_ok {
        required("a running libvirtd (libvirt-daemon-system; libvirtd -d, virtlogd -d) and sushy-tools in a venv that sees python3-libvirt");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let Some((sushy_fake, _, _)) = sushy(d.path()) else { return };
    drop(sushy_fake);
    let name = format!("bp-rf-{}", std::process::id());
    let uuid = format!("6a8d6b3e-0000-4e4e-9c9c-{:012x}", std::process::id());
    let xml = d.path().join("domain.xml");
    std::fs::write(
        &xml,
        format!(
            "<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>\
             <devices><interface type='user'><mac address='52:54:00:0f:0f:01'/><model type='e1000'/></interface></devices></domain>"
        ),
    )
    .unwrap();
    let out = virsh(&["define", xml.to_str().unwrap()]);
    assert!(out.contains("defined"), "{out}");
    let _domain = Domain(name.clone());
    // The same emulator as `sushy()` (TLS, htpasswd), now with the libvirt driver.
    std::fs::write(
        d.path().join("sushy.conf"),
        format!("SUSHY_EMULATOR_AUTH_FILE = '{}'\nSUSHY_EMULATOR_LIBVIRT_URI = 'qemu:///system'\n", d.path().join("htpasswd").display()),
    )
    .unwrap();
    let port = free_port();
    let mut sushy = KillOnDrop(
        Command::new(&sushy_bin)
            .arg("--config")
            .arg(d.path().join("sushy.conf"))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "--ssl-certificate"])
            .arg(d.path().join("bmc.crt"))
            .arg("--ssl-key")
            .arg(d.path().join("bmc.key"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(&mut sushy, port, "sushy-emulator (libvirt)");
    let pw = secret_file(d.path(), "rf", "rf-pass-9931");
    let ca = d.path().join("ca.pem");
    let cfg = config(&format!(
        "  - {{ name: lv1, macs: [\"52:54:00:0f:0f:01\"], bundle: rescue, power: {{ redfish: {{ url: \"https://127.0.0.1:{port}\", system: {uuid}, username: admin, password_file: {}, ca_file: {} }} }} }}\n",
        pw.display(),
        ca.display()
    ));
    let w = workdir(&cfg);
    let srv = Server::start(w.path());
    let domstate = || virsh(&["domstate", &name]);
    assert_eq!(status(&srv, "lv1").1["state"], "off");
    let (code, v) = power(&srv, "lv1", "on");
    assert_eq!((code, v["state"].as_str()), (200, Some("on")), "{v}");
    assert!(domstate().contains("running"), "{}", domstate());
    // One-time network boot: sushy puts the NIC first in the domain's boot order.
    let spec: bootplane_core::power::PowerSpec = yaml_serde::from_str(&format!(
        "redfish: {{ url: \"https://127.0.0.1:{port}\", system: {uuid}, username: admin, password_file: {}, ca_file: {} }}",
        pw.display(),
        ca.display()
    ))
    .unwrap();
    bootplane_power::driver_for(&spec, &bootplane_power::Target::default()).unwrap().boot_once_from_network(false).unwrap();
    // The change is made to the persistent definition, read at the next start.
    let xml_now = virsh(&["dumpxml", "--inactive", &name]);
    let nic = xml_now.split("<interface").nth(1).unwrap_or_default();
    assert!(nic.split("</interface>").next().unwrap_or_default().contains("<boot order='1'/>"), "{xml_now}");
    let (code, v) = power(&srv, "lv1", "cycle");
    assert_eq!((code, v["state"].as_str()), (200, Some("on")), "{v}");
    let (code, v) = power(&srv, "lv1", "off");
    assert_eq!((code, v["state"].as_str()), (200, Some("off")), "{v}");
    assert!(domstate().contains("shut off"), "{}", domstate());
}
