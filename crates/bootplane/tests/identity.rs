//! Standing attack tests of issue 28 ("the MAC alone is enough"): each reproduces one of
//! its numbered findings against the real binary and fails if the fix is undone. A
//! machine's secrets go to one requester per install attempt, one bootplane can vouch
//! for: the address its own DHCP bound to the MAC, else the attempt's first requester.

mod common;

use base64::Engine as _;
use bootplane_testkit::{require_netns, Host, Lan};
use common::*;
use std::path::Path;

fn lab() -> (tempfile::TempDir, Server) {
    let d = workdir(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clusters.yaml")).unwrap());
    let srv = Server::start(d.path());
    (d, srv)
}

const S1: &str = "52:54:00:00:01:01";

/// GET `url` from source address `from` (a loopback alias), with an optional bearer.
fn get_from(from: &str, url: &str) -> (u16, String) {
    send_from(from, "GET", url, None, None)
}

fn send_from(from: &str, method: &str, url: &str, bearer: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut c = std::process::Command::new("curl");
    c.args(["-s", "--interface", from, "-X", method, "-w", "\n%{http_code}", url]);
    if let Some(b) = bearer {
        c.args(["-H", &format!("Authorization: Bearer {b}")]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let o = c.output().expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn events_of(srv: &Server, machine: &str, kind: &str) -> Vec<serde_json::Value> {
    std::thread::sleep(std::time::Duration::from_millis(400));
    let (_, body) = srv.admin("GET", &format!("/v1/events?machine={machine}&limit=500"));
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    all.as_array().unwrap().iter().filter(|e| e["kind"] == kind).cloned().collect()
}

fn boot_from(srv: &Server, from: &str, path: &str) -> String {
    let (code, body) = get_from(from, &format!("{}{path}", srv.url));
    assert_eq!(code, 200, "{path} from {from}: {body}");
    body
}

/// Finding 1: while a machine's attempt is open, another host asking with its MAC got a
/// fresh install answer (a nonce bound to itself) that replaced the machine's own. Now
/// it gets a quarantine answer, on every first-stage path, and the operator an alarm
/// naming both requesters; the machine's own nonce still works.
#[test]
fn a_host_that_knows_the_mac_cannot_take_the_machines_attempt() {
    let (_d, srv) = lab();
    assert_eq!(srv.admin("POST", "/v1/machines/s1/provision").0, 200);
    let script = boot_from(&srv, "127.0.0.1", &format!("/v1/boot/ipxe?mac={S1}&arch=x86_64&platform=efi"));
    let nonce = nonce_in(&script);
    for path in [format!("/v1/boot/ipxe?mac={S1}&arch=x86_64&platform=pcbios"), format!("/v1/boot/live?mac={S1}")] {
        let body = boot_from(&srv, "127.0.0.2", &path);
        assert!(!body.contains("nonce=") && !body.contains("kernel "), "{path}: {body}");
        assert!(body.contains("withheld") && (body.contains("QUARANTINE") || body.contains("decision=quarantine")), "{path}: {body}");
    }
    let alarms = events_of(&srv, "s1", "boot.alarm");
    assert_eq!(alarms.len(), 2, "{alarms:?}");
    assert!(alarms.iter().all(|a| a["detail"]["requester"] == "127.0.0.2" && a["detail"]["holder"] == "127.0.0.1"), "{alarms:?}");
    // The contender changed nothing the operator sees of the machine (the sighting is
    // written in the background: wait for it).
    let t0 = std::time::Instant::now();
    while srv.machine("s1")["observed"]["platform"].is_null() && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(srv.machine("s1")["observed"]["platform"], "efi");
    let (code, ign) = get_from("127.0.0.1", &format!("{}/v1/machines/s1/ignition?nonce={nonce}", srv.url));
    assert_eq!(code, 200, "the machine's own attempt survived: {ign}");
    assert!(ign.contains("BOOTPLANE_CREDENTIAL"));
    // The machine itself may ask again (iPXE retries the chain).
    assert!(boot_from(&srv, "127.0.0.1", &format!("/v1/boot/ipxe?mac={S1}&arch=x86_64")).contains("nonce="));
}

/// Finding 1 over TFTP: `pxelinux.cfg/01-<mac>` handed an install answer to anyone.
#[test]
fn pxelinux_answers_follow_the_same_binding() {
    let cfg = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clusters.yaml"))
        .unwrap()
        .replace("server:\n", "tftp:\n  enabled: true\n  listen: 127.0.0.1:0\nserver:\n");
    let d = workdir(&cfg);
    let srv = Server::start(d.path());
    let t = srv.tftp.expect("TFTP address in the log");
    assert_eq!(srv.admin("POST", "/v1/machines/g1/provision").0, 200);
    let get = |from: &str| -> Option<String> {
        let out = d.path().join(format!("pxe-{from}"));
        let _ = std::fs::remove_file(&out);
        // tftp-hpa binds its socket to the address it sends from only through the
        // routing table; curl's TFTP client can choose it.
        let o = std::process::Command::new("curl")
            .args(["-s", "--interface", from, "-o"])
            .arg(&out)
            .arg(format!("tftp://{}:{}/pxelinux.cfg/01-52-54-00-00-04-01", t.ip(), t.port()))
            .output()
            .expect("curl");
        o.status.success().then(|| std::fs::read_to_string(&out).unwrap_or_default())
    };
    let mine = get("127.0.0.1").expect("the machine's own pxelinux.cfg");
    assert!(mine.contains("KERNEL"), "{mine}");
    let theirs = get("127.0.0.2");
    assert!(theirs.as_deref().is_none_or(|t| !t.contains("KERNEL")), "a contender got an installer over TFTP: {theirs:?}");
    assert_eq!(events_of(&srv, "g1", "boot.alarm").len(), 1);
}

/// Finding 3: TFTP's pxelinux.cfg path issued install answers past the per-source boot
/// budget (it bypassed the limiter HTTP has).
#[test]
fn tftp_shares_the_boot_request_budget() {
    let cfg = CONFIG.replace("server:\n", "tftp:\n  enabled: true\n  listen: 127.0.0.1:0\nserver:\n  boot_requests_per_minute: 5\n");
    let d = workdir(&cfg);
    let srv = Server::start(d.path());
    let t = srv.tftp.expect("TFTP address in the log");
    let mut answered = 0;
    let t0 = std::time::Instant::now();
    for i in 0..10 {
        let out = d.path().join(format!("n{i}.cfg"));
        let o = std::process::Command::new("tftp")
            .args(["-m", "binary", &t.ip().to_string(), &t.port().to_string(), "-c", "get", "pxelinux.cfg/01-52-54-00-12-34-56"])
            .arg(&out)
            .output()
            .unwrap();
        if std::fs::read_to_string(&out).is_ok_and(|s| s.contains("KERNEL")) && o.status.success() {
            answered += 1;
        }
    }
    // 5 at once, and the budget's refill over however long a loaded machine took.
    let allowed = 5 + (t0.elapsed().as_secs_f64() * 5.0 / 60.0).ceil() as usize;
    assert!(answered <= allowed, "{answered} install answers over TFTP where 5 boot requests a minute are allowed ({allowed} by now)");
    assert!(answered >= 1, "the machine itself must still be answered");
}

/// Finding 3: boot requests and fetches from outside drove a machine to `failed`. An
/// outsider now gets no nonce, so it counts no attempt and fails nothing.
#[test]
fn an_outsider_cannot_burn_a_machines_attempts() {
    let (_d, srv) = lab();
    assert_eq!(srv.admin("POST", "/v1/machines/a1/provision").0, 200);
    let mine = boot_from(&srv, "127.0.0.1", "/v1/boot/ipxe?mac=52:54:00:00:01:04&arch=x86_64");
    assert!(mine.contains("nonce="));
    for _ in 0..4 {
        let theirs = boot_from(&srv, "127.0.0.2", "/v1/boot/ipxe?mac=52:54:00:00:01:04&arch=x86_64");
        assert!(!theirs.contains("nonce="), "{theirs}");
        let (code, _) = get_from("127.0.0.2", &format!("{}/v1/machines/a1/ignition?nonce={}", srv.url, nonce_in(&mine)));
        assert_eq!(code, 403);
    }
    let m = srv.machine("a1");
    assert_eq!((m["state"].as_str(), m["install_attempts"].as_u64()), (Some("provision"), Some(0)), "{m}");
}

/// Finding 2: with a credential from a plain-HTTP config, anyone could post the
/// machine's reports. Until `written` a report must come from the answered address.
#[test]
fn a_stolen_credential_cannot_report_for_the_machine() {
    let (_d, srv) = lab();
    assert_eq!(srv.admin("POST", "/v1/machines/a1/provision").0, 200);
    let script = boot_from(&srv, "127.0.0.1", "/v1/boot/ipxe?mac=52:54:00:00:01:04&arch=x86_64");
    let (code, ign) = get_from("127.0.0.1", &format!("{}/v1/machines/a1/ignition?nonce={}", srv.url, nonce_in(&script)));
    assert_eq!(code, 200);
    let cred = credential_from_ignition(&ign);
    let url = format!("{}/v1/machines/a1/report", srv.url);
    for state in ["written", "installed", "failed"] {
        let (code, body) = send_from("127.0.0.2", "POST", &url, Some(&cred), Some(&format!(r#"{{"state":"{state}"}}"#)));
        assert_eq!(code, 403, "{state}: {body}");
    }
    assert_eq!(srv.machine("a1")["state"], "installing");
    assert_eq!(events_of(&srv, "a1", "report.alarm").len(), 3);
    let (code, body) = send_from("127.0.0.1", "POST", &url, Some(&cred), Some(r#"{"state":"written"}"#));
    assert_eq!(code, 200, "{body}");
}

/// Finding 2: the bootstrap server's report set the admin's kubeconfig with the
/// `server:` the reporter chose (only loopback was rewritten), and an `installed`
/// report without the CA hash left a cluster no node could join.
#[test]
fn the_bootstraps_kubeconfig_points_at_the_cluster_api_not_at_the_reporter() {
    let (_d, srv) = lab();
    assert_eq!(srv.admin("POST", "/v1/machines/s1/provision").0, 200);
    let (_, _, ign) = srv.boot_and_fetch("s1", S1);
    let cred = credential_from_ignition(&ign);
    let url = format!("{}/v1/machines/s1/report", srv.url);
    let (code, body) = send_from("127.0.0.1", "POST", &url, Some(&cred), Some(r#"{"state":"installed"}"#));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("ca_hash"), "{body}");
    let kc = K3S_YAML.replace("https://127.0.0.1:6443", "https://203.0.113.9:6443");
    assert!(kc.contains("203.0.113.9"), "the fixture kubeconfig names its server");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&kc);
    let report = format!(r#"{{"state":"installed","ca_hash":"{}","kubeconfig":"{b64}"}}"#, "c".repeat(64));
    let (code, body) = send_from("127.0.0.1", "POST", &url, Some(&cred), Some(&report));
    assert_eq!(code, 200, "{body}");
    let (code, got) = srv.admin("GET", "/v1/clusters/lab/kubeconfig");
    assert_eq!(code, 200, "{got}");
    assert!(got.contains("server: https://198.18.0.100:6443") && !got.contains("203.0.113.9"), "{got}");
}

/// Finding 4: `live-env` served `machine.env` (the credential, in plain text) for any
/// fcos machine, though a network-booted FCOS never asks for it.
#[test]
fn machine_env_goes_only_to_a_live_isos_gate() {
    let (_d, srv) = lab();
    assert_eq!(srv.admin("POST", "/v1/machines/s2/provision").0, 200);
    let script = boot_from(&srv, "127.0.0.1", "/v1/boot/ipxe?mac=52:54:00:00:01:02&arch=x86_64");
    let (code, body) = get_from("127.0.0.1", &format!("{}/v1/machines/s2/live-env?nonce={}", srv.url, nonce_in(&script)));
    assert_eq!(code, 403, "{body}");
    assert!(!body.contains("BOOTPLANE_CREDENTIAL"), "{body}");
    assert_eq!(events_of(&srv, "s2", "config.alarm").len(), 1);
    let live = boot_from(&srv, "127.0.0.1", "/v1/boot/live?mac=52:54:00:00:01:02");
    let env_url = live.lines().find_map(|l| l.strip_prefix("env_url=")).expect("env_url in the live answer").replace("http://198.18.0.10:8080", &srv.url);
    let (code, body) = get_from("127.0.0.1", &env_url);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("BOOTPLANE_CREDENTIAL"));
}

/// Finding 5: a second fetch from the machine's own address within the retry window
/// was served silently (`config.refetched`), so a host spoofing MAC and address was
/// invisible. It is still served (Ignition retries lost answers), as an alarm.
#[test]
fn a_refetch_from_the_machines_address_is_an_alarm() {
    let (_d, srv) = lab();
    assert_eq!(srv.admin("POST", "/v1/machines/a2/provision").0, 200);
    let script = boot_from(&srv, "127.0.0.1", "/v1/boot/ipxe?mac=52:54:00:00:01:05&arch=x86_64");
    let url = format!("{}/v1/machines/a2/ignition?nonce={}", srv.url, nonce_in(&script));
    assert_eq!(get_from("127.0.0.1", &url).0, 200);
    assert_eq!(get_from("127.0.0.1", &url).0, 200);
    let alarms = events_of(&srv, "a2", "config.alarm");
    assert!(alarms.len() == 1 && alarms[0]["detail"]["refetch"] == true, "{alarms:?}");
}

/// Finding 10: `next=/%09/evil.example/` survived the login redirect (browsers drop the
/// tab: `//evil.example/`), and a non-ASCII `next` panicked the handler.
#[test]
fn the_login_redirect_never_leaves_the_server() {
    let d = workdir(CONFIG);
    let srv = Server::start(d.path());
    for next in ["%2F%09%2Fevil.example%2F", "%2F%0A%2Fevil.example", "%2F%C3%BC"] {
        let o = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "--data", &format!("token={TOKEN}&next={next}")])
            .arg(format!("{}/ui/login", srv.url))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert_eq!(out, format!("303 {}/", srv.url), "next={next}");
    }
    assert_eq!(srv.get("/healthz").0, 200, "still serving");
}

/// Finding 10: login and the bearer API had no throttling. Past ten wrong tokens a minute
/// a source's admin requests are refused unread (429), the right token included, while
/// another source is served.
#[test]
fn the_admin_token_cannot_be_guessed_at_speed() {
    let d = workdir(CONFIG);
    let srv = Server::start(d.path());
    let url = |p: &str| format!("{}{p}", srv.url);
    let login = |i: usize| {
        let o = std::process::Command::new("curl")
            .args(["-s", "--interface", "127.0.0.1", "-o", "/dev/null", "-w", "%{http_code}", "--data", &format!("token=guess-login-{i}&next=/")])
            .arg(url("/ui/login"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).parse::<u16>().unwrap_or(0)
    };
    // Guesses, by bearer and by the login form in turn, until the first 429: the budget
    // (10) plus what refilled meanwhile (10 a minute), never more.
    let t0 = std::time::Instant::now();
    let mut refused = 0;
    for i in 0..100 {
        let code = if i % 2 == 0 { send_from("127.0.0.1", "GET", &url("/v1/machines"), Some(&format!("guess-{i}")), None).0 } else { login(i) };
        if code == 429 {
            break;
        }
        assert_eq!(code, 401, "guess {i}");
        refused += 1;
    }
    let refilled = (t0.elapsed().as_secs_f64() * 10.0 / 60.0).ceil() as usize;
    assert!((10..=10 + refilled).contains(&refused), "{refused} wrong tokens checked before the first 429 (budget 10, {refilled} refilled)");
    // Right after, the right token from the same source is not even checked (unless a
    // loaded machine took longer than one refill, 6 s, to send it).
    let t1 = std::time::Instant::now();
    let (code, body) = send_from("127.0.0.1", "GET", &url("/v1/machines"), Some(TOKEN), None);
    if t1.elapsed() < std::time::Duration::from_secs(5) {
        assert_eq!(code, 429, "the right token after the guesses is not checked: {body}");
        assert!(body.contains("too many wrong admin tokens"), "{body}");
    }
    assert_eq!(send_from("127.0.0.2", "GET", &url("/v1/machines"), Some(TOKEN), None).0, 200, "another source is served");
    let (_, metrics) = srv.get("/metrics");
    assert!(metrics.lines().any(|l| l.starts_with("bootplane_auth_throttled_total") && !l.ends_with(" 0")), "{metrics}");
}

/// Finding 10: a short `BOOTPLANE_TOKEN` was accepted.
#[test]
fn a_short_admin_token_is_refused_at_start() {
    let d = workdir(CONFIG);
    let o = bootplane(d.path()).env("BOOTPLANE_TOKEN", "hunter2").args(["serve", "--config", "bootplane.yaml", "--listen", "127.0.0.1:0"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("BOOTPLANE_TOKEN") && err.contains("fewer than 16"), "{err}");
}

/// Finding 10: a quarantine answer named the registered serial (or UUID) of the machine
/// a MAC belongs to.
#[test]
fn a_quarantine_answer_names_nothing_registered() {
    let d = workdir(CONFIG);
    let srv = Server::start(d.path());
    let (_, body) = srv.get("/v1/boot/ipxe?mac=52:54:00:12:34:58&serial=OTHER&arch=x86_64");
    assert!(body.contains("QUARANTINE") && !body.contains("SN-3"), "{body}");
    let (_, body) = srv.get("/v1/boot/ipxe?mac=52:54:00:12:34:56&uuid=99999999-2222-3333-4444-555555555555&arch=x86_64");
    assert!(body.contains("QUARANTINE") && !body.contains("11111111-2222"), "{body}");
}

fn full_dhcp_config(lan: &Lan) -> String {
    let p = &lan.prefix;
    format!(
        r#"
server:
  listen: 0.0.0.0:0
  advertise: http://{p}.1:8080
dhcp:
  mode: full
  interface: br0
  range: {p}.50-{p}.60
  netmask: 255.255.255.0
  router: {p}.1
  lease_time: 10m
bundles:
  - {{ name: g, os: generic, kernel: {{ url: http://m/k }}, initrd: {{ url: http://m/i }}, args: "cfg={{{{ ignition_url }}}}" }}
machines:
  - {{ name: m1, macs: ["02:00:00:00:28:01"], bundle: g }}
  - {{ name: m2, macs: ["02:00:00:00:28:02"], bundle: g }}
"#
    )
}

fn lease(h: &Host, dir: &Path) -> Option<String> {
    let out = dir.join(format!("{}.ip", h.name));
    let script = dir.join(format!("{}.sh", h.name));
    std::fs::write(&script, format!("#!/bin/sh\ncase \"$1\" in bound|renew) echo \"$ip\" > {};; esac\n", out.display())).unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    let _ = h.cmd(&["udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-A", "1", "-s", &script.display().to_string()]).output();
    let ip = std::fs::read_to_string(&out).ok()?.trim().to_string();
    h.exec_ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    Some(ip)
}

fn curl_in(h: &Host, url: &str) -> (u16, String) {
    let o = h.cmd(&["curl", "-sS", "-m", "10", "-w", "\n%{http_code}", url]).output().expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    match code.trim().parse().unwrap_or(0) {
        0 => (0, format!("curl {url} from {}: {}", h.name, String::from_utf8_lossy(&o.stderr))),
        code => (code, body.to_string()),
    }
}

/// Finding 1 with bootplane's DHCP in full mode: a bystander on the LAN that asks for a
/// machine's boot answer *before the machine powers on* gets nothing (the MAC holds no
/// binding to its address), an alarm is raised, and the machine then boots normally
/// from the address bootplane's DHCP gave it.
#[test]
fn in_full_dhcp_mode_only_the_leased_address_is_answered() {
    require_netns!();
    let lan = Lan::new("ident");
    let d = workdir(&full_dhcp_config(&lan));
    let srv = Server::start_in_netns(&lan.srv.name, &lan.srv.ns_ip, d.path());
    let port = srv.url.rsplit(':').next().unwrap().to_string();
    let base = format!("http://{}.1:{port}", lan.prefix);
    assert_eq!(srv.admin("POST", "/v1/machines/m1/provision").0, 200);
    let bystander = lan.add_host("by", "02:00:00:00:28:66");
    bystander.exec_ok(&["ip", "addr", "add", &format!("{}.66/24", lan.prefix), "dev", "eth0"]);
    let (code, body) = curl_in(&bystander, &format!("{base}/v1/boot/ipxe?mac=02:00:00:00:28:01&arch=x86_64"));
    assert_eq!(code, 200);
    assert!(!body.contains("nonce=") && body.contains("QUARANTINE"), "{body}");
    let alarms = events_of(&srv, "m1", "boot.alarm");
    assert!(alarms.len() == 1 && alarms[0]["detail"]["requester"] == format!("{}.66", lan.prefix), "{alarms:?}");
    // The machine: its DHCP exchange with bootplane, then its boot request.
    let machine = lan.add_host("m1", "02:00:00:00:28:01");
    let ip = lease(&machine, d.path()).expect("the machine's lease");
    let (code, script) = curl_in(&machine, &format!("{base}/v1/boot/ipxe?mac=02:00:00:00:28:01&arch=x86_64"));
    assert_eq!(code, 200, "{script}");
    let nonce = nonce_in(&script);
    let (code, ign) = curl_in(&machine, &format!("{base}/v1/machines/m1/ignition?nonce={nonce}"));
    assert_eq!(code, 200, "from {ip}: {ign}");
    // The bystander, even with the nonce it may have sniffed: nothing.
    let (code, body) = curl_in(&bystander, &format!("{base}/v1/machines/m1/ignition?nonce={nonce}"));
    assert_eq!(code, 403, "{body}");

    // Finding 10: what a machine was observed to be (reinstall picks UEFI or BIOS by its
    // platform) changes only from the address bootplane leased it, not from a stranger's
    // request naming its MAC, even for a machine that gets no install answer.
    let m2 = lan.add_host("m2", "02:00:00:00:28:02");
    lease(&m2, d.path()).expect("m2's lease");
    let ask = |h: &Host, platform: &str| {
        let (code, body) = curl_in(h, &format!("{base}/v1/boot/ipxe?mac=02:00:00:00:28:02&arch=x86_64&platform={platform}"));
        assert_eq!(code, 200, "{body}");
    };
    ask(&m2, "efi");
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let t0 = std::time::Instant::now();
        while !done() {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{what}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait("m2's own sighting", &|| srv.machine("m2")["observed"]["platform"] == "efi");
    ask(&bystander, "pcbios");
    // Both answers' events are written after any sighting they caused.
    wait("the bystander's boot event", &|| events_of(&srv, "m2", "boot.script").len() >= 2);
    assert_eq!(srv.machine("m2")["observed"]["platform"], "efi", "a stranger rewrote m2's platform");
}

/// A config with a first-stage root holding `big.img` (sparse, 200 MB) and `small.bin`.
fn with_boot_files(d: &Path, server_extra: &str) -> String {
    let root = d.join("tftproot");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::File::create(root.join("big.img")).unwrap().set_len(200 * 1024 * 1024).unwrap();
    std::fs::write(root.join("small.bin"), vec![7u8; 4096]).unwrap();
    CONFIG.replace("server:\n", &format!("tftp:\n  enabled: true\n  listen: 127.0.0.1:0\n  root: {}\nserver:\n{server_extra}", root.display()))
}

/// Holds `n` connections to `srv`'s plain listener, each asking for `/boot/big.img` and
/// never reading, from a few source addresses.
fn never_read(srv: &Server, n: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let addr: std::net::SocketAddr = srv.url.trim_start_matches("http://").parse().unwrap();
    (0..n)
        .map(|i| {
            let local: std::net::SocketAddr = format!("127.0.0.{}:0", 2 + i % 3).parse().unwrap();
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(&local.into()).unwrap();
            sock.connect(&addr.into()).unwrap();
            let mut c: std::net::TcpStream = sock.into();
            c.write_all(b"GET /boot/big.img HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            c
        })
        .collect()
}

/// Finding 8: one connection cap covered every listener: a few hosts holding downloads
/// they never read shut out the HTTPS (and admin) listener too. Each listener now
/// counts its own connections.
#[test]
fn a_full_boot_listener_leaves_the_https_listener_room() {
    let d = tempfile::tempdir().unwrap();
    let cfg = with_boot_files(d.path(), "  max_connections: 6\n  send_stall_timeout: 1h\n  tls: { listen: 127.0.0.1:0 }\n");
    std::fs::write(d.path().join("bootplane.yaml"), cfg).unwrap();
    let srv = Server::start(d.path());
    let https = srv.startup.iter().find_map(|l| l.strip_prefix("bootplane: serving HTTPS on ")).and_then(|r| r.split_whitespace().next()).unwrap().to_string();
    let held = never_read(&srv, 6);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(get_from("127.0.0.9", &format!("{}/healthz", srv.url)).0, 0, "the plain listener is full (the premise)");
    let ca = d.path().join("data/tls/ca.crt");
    let o = std::process::Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca.to_str().unwrap(), &format!("{https}/healthz")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "the HTTPS listener kept its room");
    drop(held);
}

/// Finding 8: never-read downloads had no stall timeout and held their slots for as
/// long as the client liked. Now a stalled answer is dropped after
/// `server.send_stall_timeout`, and the slots come back.
#[test]
fn never_read_downloads_are_dropped() {
    let d = tempfile::tempdir().unwrap();
    let cfg = with_boot_files(d.path(), "  max_connections: 6\n  send_stall_timeout: 2s\n");
    std::fs::write(d.path().join("bootplane.yaml"), cfg).unwrap();
    let srv = Server::start(d.path());
    let held = never_read(&srv, 6);
    // Within the stall timeout (and a margin for a loaded machine) the slots come back.
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(500));
    while get_from("127.0.0.9", &format!("{}/healthz", srv.url)).0 != 200 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "never-read downloads still hold every slot");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    drop(held);
}

/// Finding 9: `/boot/{file}` and TFTP wrote an event per request whatever the source's
/// budget (300 `http.boot_file` events from one source under a budget of 20 a minute).
#[test]
fn boot_file_and_tftp_events_keep_to_the_source_budget() {
    let d = tempfile::tempdir().unwrap();
    let cfg = with_boot_files(d.path(), "  unauthenticated_events_per_minute: 20\n");
    std::fs::write(d.path().join("bootplane.yaml"), cfg).unwrap();
    let srv = Server::start(d.path());
    let t = srv.tftp.expect("TFTP address in the log");
    let t0 = std::time::Instant::now();
    for _ in 0..60 {
        assert_eq!(srv.get_bytes("/boot/small.bin").0, 200);
    }
    for _ in 0..30 {
        let _ = std::process::Command::new("tftp").args(["-m", "binary", &t.ip().to_string(), &t.port().to_string(), "-c", "get", "missing.bin", "/dev/null"]).output();
    }
    std::thread::sleep(std::time::Duration::from_millis(600));
    let (_, body) = srv.admin("GET", "/v1/events?limit=1000");
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    let count = |k: &str| all.as_array().unwrap().iter().filter(|e| e["kind"] == k).count();
    let (files, tftp) = (count("http.boot_file"), count("tftp.not_found"));
    // 20 at once, and the budget's refill over however long a loaded machine took.
    let allowed = 20 + (t0.elapsed().as_secs_f64() * 20.0 / 60.0).ceil() as usize;
    assert!(files >= 1 && files + tftp <= allowed, "{files} http.boot_file and {tftp} tftp.not_found events from one source under a budget of 20 a minute ({allowed} by now)");
}
