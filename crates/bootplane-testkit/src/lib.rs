//! Test support shared by the protocol crates' integration tests: network namespaces
//! joined to the host by veth pairs, addressed from the benchmarking range
//! 198.18.0.0/15, with optional netem impairment. Everything a [`Netns`] creates is
//! removed when it is dropped, also when the test panics. Nothing here touches the
//! host's own interfaces.

pub mod ignition;
pub mod postgres;

use std::process::{Command, Output};

/// Whether this process may create namespaces (root on Linux).
pub fn can_netns() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false)
        && Command::new("ip").arg("-V").output().is_ok()
}

/// Skips a test that needs root when it cannot run, unless `BOOTPLANE_REQUIRE_NETNS` is
/// set (CI sets it), in which case it fails: such a test must never pass by not running.
#[macro_export]
macro_rules! require_netns {
    () => {
        if !$crate::can_netns() {
            if std::env::var_os("BOOTPLANE_REQUIRE_NETNS").is_some() {
                panic!("this test needs root and iproute2 (BOOTPLANE_REQUIRE_NETNS is set)");
            }
            eprintln!("SKIPPED: needs root and iproute2 for network namespaces");
            return;
        }
    };
}

/// `../shared/<rel>` beside the repository (or `BOOTPLANE_BUTANE_CORPUS`-style override
/// `env`), when present.
pub fn shared_path(rel: &str, env: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(p.into());
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Some(repo.join("../shared").join(rel)).filter(|p| p.exists())
}

/// The path of `../shared/<rel>`, or: the test says it did not run and returns, unless
/// `BOOTPLANE_REQUIRE_SHARED` is set (`.ci/run` sets it), in which case it fails.
#[macro_export]
macro_rules! require_shared {
    ($rel:expr, $env:expr) => {
        match $crate::shared_path($rel, $env) {
            Some(p) => p,
            None => {
                if std::env::var_os("BOOTPLANE_REQUIRE_SHARED").is_some() {
                    panic!("../shared/{} not found beside the repository (BOOTPLANE_REQUIRE_SHARED is set; or set {})", $rel, $env);
                }
                eprintln!("NOT RUN: needs ../shared/{} beside the repository (or {}); this test checked nothing", $rel, $env);
                return;
            }
        }
    };
}

pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `args` run inside namespace `ns`.
pub fn ns_cmd(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

pub fn ns_exec_ok(ns: &str, args: &[&str]) -> Output {
    let out = ns_cmd(ns, args).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

/// A namespace with one veth link to the host: host side `host_ip/24` on `host_if`,
/// namespace side `ns_ip/24` on `ns_if`.
pub struct Netns {
    pub name: String,
    pub host_if: String,
    pub ns_if: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl Netns {
    /// Creates `bp<tag><random>` with a /24 from 198.18.0.0/24..198.18.254.0/24 picked
    /// at random among those not in use, so tests running in parallel do not collide.
    pub fn new(tag: &str) -> Netns {
        let b = free_subnet();
        let suffix: u32 = rand::random::<u32>() % 100_000;
        let name = format!("bp{tag}{suffix}");
        let a = 18;
        let ns = Netns {
            host_if: format!("bph{suffix}"),
            ns_if: format!("bpn{suffix}"),
            host_ip: format!("198.{a}.{b}.1"),
            ns_ip: format!("198.{a}.{b}.2"),
            name,
        };
        run(&["ip", "netns", "add", &ns.name]);
        run(&["ip", "link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns.ns_if]);
        run(&["ip", "link", "set", &ns.ns_if, "netns", &ns.name]);
        run(&["ip", "addr", "add", &format!("{}/24", ns.host_ip), "dev", &ns.host_if]);
        run(&["ip", "link", "set", &ns.host_if, "up"]);
        ns.exec_ok(&["ip", "addr", "add", &format!("{}/24", ns.ns_ip), "dev", &ns.ns_if]);
        ns.exec_ok(&["ip", "link", "set", &ns.ns_if, "up"]);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, args: &[&str]) -> Command {
        ns_cmd(&self.name, args)
    }

    pub fn exec_ok(&self, args: &[&str]) -> Output {
        ns_exec_ok(&self.name, args)
    }

    /// Loses `percent`% of packets in both directions, with `tc netem` where the kernel
    /// has it, else with an nftables `numgen random` rule inside the namespace (this
    /// machine's kernel is built without sch_netem). Either way only the namespace's
    /// traffic is touched.
    pub fn loss(&self, percent: u32) {
        let loss = format!("{percent}%");
        let netem = std::process::Command::new("tc")
            .args(["qdisc", "add", "dev", &self.host_if, "root", "netem", "loss", &loss])
            .output()
            .is_ok_and(|o| o.status.success());
        if netem {
            self.exec_ok(&["tc", "qdisc", "add", "dev", &self.ns_if, "root", "netem", "loss", &loss]);
            return;
        }
        let rules = format!(
            "table inet bootplane_loss {{\n\
               chain in {{ type filter hook input priority 0; numgen random mod 100 < {percent} drop; }}\n\
               chain out {{ type filter hook output priority 0; numgen random mod 100 < {percent} drop; }}\n\
             }}\n"
        );
        let mut child = self
            .cmd(&["nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft (apt-get install nftables)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "nft rules for packet loss");
    }
}

/// A third octet `b` such that neither 198.18.b.0/24 nor 198.19.b.0/24 is on this host.
pub fn free_subnet() -> u8 {
    let used = String::from_utf8_lossy(&Command::new("ip").args(["-o", "-4", "addr"]).output().map(|o| o.stdout).unwrap_or_default()).to_string();
    loop {
        let b = (rand::random::<u8>() % 254) + 1;
        if !used.contains(&format!("198.18.{b}.")) && !used.contains(&format!("198.19.{b}.")) {
            return b;
        }
    }
}

/// A LAN for DHCP tests: a server namespace (reachable from the host through its
/// [`Netns`] link) holding a bridge `br0` at `<prefix>.1/24`, and client namespaces
/// plugged into that bridge with no address, as a rack's machines would be.
pub struct Lan {
    pub srv: Netns,
    pub bridge: String,
    /// `198.19.b`
    pub prefix: String,
    pub server_ip: String,
}

impl Lan {
    pub fn new(tag: &str) -> Lan {
        let srv = Netns::new(tag);
        let b = srv.host_ip.split('.').nth(2).unwrap().to_string();
        let prefix = format!("198.19.{b}");
        let server_ip = format!("{prefix}.1");
        // A fixed address: a bridge otherwise takes its lowest port's, so plugging in a
        // host can change it and leave the others' ARP entries pointing at nothing for
        // seconds (their connections to the server time out).
        srv.exec_ok(&["ip", "link", "add", "br0", "address", "02:b0:00:00:00:01", "type", "bridge"]);
        srv.exec_ok(&["ip", "addr", "add", &format!("{server_ip}/24"), "dev", "br0"]);
        srv.exec_ok(&["ip", "link", "set", "br0", "up"]);
        Lan { srv, bridge: "br0".into(), prefix, server_ip }
    }

    /// A new namespace whose `eth0` (with `mac`) is plugged into the bridge.
    pub fn add_host(&self, tag: &str, mac: &str) -> Host {
        let suffix: u32 = rand::random::<u32>() % 100_000;
        let name = format!("bp{tag}{suffix}");
        let (outer, inner) = (format!("bpo{suffix}"), format!("bpi{suffix}"));
        run(&["ip", "netns", "add", &name]);
        let host = Host { name: name.clone(), ifname: "eth0".into(), mac: mac.to_string() };
        run(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner]);
        run(&["ip", "link", "set", &outer, "netns", &self.srv.name]);
        run(&["ip", "link", "set", &inner, "netns", &name]);
        self.srv.exec_ok(&["ip", "link", "set", &outer, "master", "br0"]);
        self.srv.exec_ok(&["ip", "link", "set", &outer, "up"]);
        host.exec_ok(&["ip", "link", "set", &inner, "name", "eth0"]);
        host.exec_ok(&["ip", "link", "set", "eth0", "address", mac]);
        host.exec_ok(&["ip", "link", "set", "eth0", "up"]);
        host.exec_ok(&["ip", "link", "set", "lo", "up"]);
        host
    }
}

/// A machine on a [`Lan`]: its own namespace with `eth0`.
pub struct Host {
    pub name: String,
    pub ifname: String,
    pub mac: String,
}

impl Host {
    pub fn cmd(&self, args: &[&str]) -> Command {
        ns_cmd(&self.name, args)
    }

    pub fn exec_ok(&self, args: &[&str]) -> Output {
        ns_exec_ok(&self.name, args)
    }
}

fn remove_netns(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            run_quiet(&["kill", "-9", pid]);
        }
    }
    run_quiet(&["ip", "netns", "del", name]);
}

impl Drop for Host {
    fn drop(&mut self) {
        remove_netns(&self.name);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what still runs inside, then remove the namespace (which takes its veth
        // end, and the peer with it).
        remove_netns(&self.name);
        run_quiet(&["ip", "link", "del", &self.host_if]);
    }
}
