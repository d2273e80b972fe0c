//! Starts the real `bootplane` binary on a free loopback port with a config and data
//! directory of the test's own, and talks to it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_bootplane");
pub const TOKEN: &str = "test-admin-token-0123456789";

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The TFTP address, when the config enables it.
    pub tftp: Option<std::net::SocketAddr>,
    pub dir: PathBuf,
    pub log: mpsc::Receiver<String>,
    /// What it printed before it was serving.
    pub startup: Vec<String>,
}

pub fn bootplane(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir).env("BOOTPLANE_TOKEN", TOKEN).env_remove("BOOTPLANE_SERVER").env_remove("BOOTPLANE_DATA_DIR");
    c
}

impl Server {
    /// Runs `bootplane serve --config bootplane.yaml --listen 127.0.0.1:0` in `dir`.
    pub fn start(dir: &Path) -> Server {
        Self::start_with(dir, &["--config", "bootplane.yaml"])
    }

    /// Like [`Server::start`] without `BOOTPLANE_TOKEN`: the server makes its own.
    pub fn start_without_token(dir: &Path) -> Server {
        Self::spawn(bootplane(dir).env_remove("BOOTPLANE_TOKEN").args(["serve", "--config", "bootplane.yaml", "--listen", "127.0.0.1:0"]), None)
    }

    pub fn start_with(dir: &Path, args: &[&str]) -> Server {
        Self::spawn(bootplane(dir).arg("serve").args(args).args(["--listen", "127.0.0.1:0"]), None)
    }

    /// Runs `bootplane serve` inside network namespace `ns`, listening on all of its
    /// addresses; `reach` is the namespace address the test uses to talk to it.
    pub fn start_in_netns(ns: &str, reach: &str, dir: &Path) -> Server {
        Self::start_in_netns_with(ns, reach, dir, &[])
    }

    /// [`Server::start_in_netns`] with more `serve` arguments.
    pub fn start_in_netns_with(ns: &str, reach: &str, dir: &Path, args: &[&str]) -> Server {
        let mut c = Command::new("ip");
        c.current_dir(dir)
            .env("BOOTPLANE_TOKEN", TOKEN)
            .args(["netns", "exec", ns, BIN, "serve", "--config", "bootplane.yaml", "--listen", "0.0.0.0:0"])
            .args(args);
        Self::spawn(&mut c, Some(reach))
    }

    fn spawn(cmd: &mut Command, reach: Option<&str>) -> Server {
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn bootplane");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut tftp = None;
        let mut startup = Vec::new();
        // Failing to start still reaps the child (no stray servers between tests).
        let fail = |mut child: std::process::Child, why: String| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{why}");
        };
        loop {
            let line = match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(l) => l,
                Err(e) => fail(child, format!("bootplane did not report its address: {e}")),
            };
            startup.push(line.clone());
            if let Some(rest) = line.strip_prefix("bootplane: TFTP on ") {
                tftp = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.strip_prefix("bootplane: serving on ") {
                let mut url = rest.split_whitespace().next().unwrap().to_string();
                if let Some(host) = reach {
                    url = url.replace("0.0.0.0", host);
                }
                let dir = cmd.get_current_dir().map(Path::to_path_buf).unwrap_or_default();
                return Server { child, url, tftp, dir, log: rx, startup };
            }
            if line.starts_with("error:") {
                fail(child, format!("bootplane failed to start: {line}"));
            }
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        req("GET", &format!("{}{}", self.url, path), None, None)
    }

    pub fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        match ureq::get(&format!("{}{}", self.url, path)).call() {
            Ok(r) => {
                let code = r.status();
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut r.into_reader(), &mut v).unwrap();
                (code, v)
            }
            Err(ureq::Error::Status(code, _)) => (code, Vec::new()),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    pub fn admin(&self, method: &str, path: &str) -> (u16, String) {
        req(method, &format!("{}{}", self.url, path), Some(TOKEN), None)
    }

    pub fn post(&self, path: &str, bearer: Option<&str>, body: &str) -> (u16, String) {
        req("POST", &format!("{}{}", self.url, path), bearer, Some(body))
    }

    /// The machine as the API shows it.
    pub fn machine(&self, name: &str) -> serde_json::Value {
        let (code, body) = self.admin("GET", &format!("/v1/machines/{name}"));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Stops it (SIGTERM) and returns everything it printed.
    pub fn stop(mut self) -> Vec<String> {
        unsafe_sigterm(self.child.id());
        let _ = self.child.wait();
        let mut all = std::mem::take(&mut self.startup);
        all.extend(self.log.try_iter());
        all
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

pub fn req(method: &str, url: &str, bearer: Option<&str>, body: Option<&str>) -> (u16, String) {
    try_req(method, url, bearer, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// [`req`] that returns a transport failure (a refused or dropped connection, as from a
/// killed server) instead of panicking.
pub fn try_req(method: &str, url: &str, bearer: Option<&str>, body: Option<&str>) -> Result<(u16, String), String> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let mut r = agent.request(method, url);
    if let Some(t) = bearer {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => r.set("Content-Type", "application/json").send_string(b),
        None => r.call(),
    };
    match res {
        Ok(r) => Ok((r.status(), r.into_string().unwrap_or_default())),
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks what every boot script must be: `#!ipxe` and only commands iPXE knows.
pub fn assert_ipxe(script: &str) {
    bootplane_core::ipxe::lint(script).unwrap_or_else(|e| panic!("{e} in:\n{script}"));
}

/// Decodes a `data:,` URL (percent-encoded).
pub fn data_url_text(url: &str) -> String {
    let s = url.strip_prefix("data:,").expect("data:, URL");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The credential a machine receives in its Ignition `machine.env`.
pub fn credential_from_ignition(ign: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(ign).unwrap();
    let file = v["storage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/bootplane/machine.env")
        .expect("machine.env in the config");
    assert_eq!(file["mode"], 0o600);
    let env = data_url_text(file["contents"]["source"].as_str().unwrap());
    env.lines()
        .find_map(|l| l.strip_prefix("BOOTPLANE_CREDENTIAL="))
        .expect("credential line")
        .to_string()
}

pub const CONFIG: &str = r#"
server:
  listen: 127.0.0.1:0
  max_install_attempts: 3
bundles:
  - name: rescue
    os: generic
    arch: x86_64
    kernel: { url: http://mirror.test/vmlinuz }
    initrd: { url: http://mirror.test/initrd.img }
    args: "console=ttyS0 bootplane.config={{ ignition_url }} host={{ machine.name }}"
machines:
  - name: node1
    hostname: node1.lab.internal
    macs: ["52:54:00:12:34:56"]
    uuid: 11111111-2222-3333-4444-555555555555
    bundle: rescue
    provision: true
  - name: node2
    hostname: node2.lab.internal
    macs: ["52:54:00:12:34:57"]
    bundle: rescue
    provision: true
  - name: node3
    hostname: node3
    macs: ["52:54:00:12:34:58"]
    serial: SN-3
    bundle: rescue
"#;

pub fn workdir(config: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bootplane.yaml"), config).unwrap();
    d
}

/// Runs one of bootplane's machine scripts for real (`bash`, at most 60 s), with each of
/// its absolute path `prefixes` moved under `root` and `stubs` (if any) first on PATH.
pub fn run_under_root(root: &Path, script: &str, prefixes: &[&str], stubs: Option<&Path>) -> std::process::Output {
    let moved = prefixes.iter().fold(script.to_string(), |t, p| t.replace(p, &format!("{}{p}", root.display())));
    std::fs::create_dir_all(root).unwrap();
    let file = root.join("script.sh");
    std::fs::write(&file, moved).unwrap();
    let mut path = std::env::var("PATH").unwrap_or_default();
    if let Some(s) = stubs {
        path = format!("{}:{path}", s.display());
    }
    Command::new("timeout").args(["60", "bash"]).arg(&file).env("PATH", path).output().unwrap()
}

/// A kubeconfig in the shape k3s writes to /etc/rancher/k3s/k3s.yaml.
pub const K3S_YAML: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {}\nusers:\n- name: default\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";

/// The config nonce in a boot answer (`...?nonce=HEX` or `.../seed/HEX/`).
pub fn nonce_in(script: &str) -> String {
    let at = script
        .find("nonce=")
        .map(|i| i + "nonce=".len())
        .or_else(|| script.find("/seed/").map(|i| i + "/seed/".len()))
        .unwrap_or_else(|| panic!("no nonce in:\n{script}"));
    script[at..].chars().take_while(|c| c.is_ascii_hexdigit()).collect()
}

impl Server {
    /// Plays a machine's network boot (`mac`) and the fetch of its Ignition with the
    /// answer's nonce: (boot script, HTTP status, Ignition).
    pub fn boot_and_fetch(&self, name: &str, mac: &str) -> (String, u16, String) {
        let (code, script) = self.get(&format!("/v1/boot/ipxe?mac={mac}&arch=x86_64"));
        assert_eq!(code, 200, "{script}");
        let (code, ign) = self.get(&format!("/v1/machines/{name}/ignition?nonce={}", nonce_in(&script)));
        (script, code, ign)
    }
}

/// A helper process (an emulator, a stand-in) killed and reaped when the test ends,
/// passed or panicked.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
