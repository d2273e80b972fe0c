//! Test support shared by the protocol crates' integration tests: network namespaces
//! joined to the host by veth pairs, addressed from the benchmarking range
//! 198.18.0.0/15, with optional netem impairment. Everything a [`Netns`] creates is
//! removed when it is dropped, also when the test panics. Nothing here touches the
//! host's own interfaces.

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

pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
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
    /// Creates `bp<tag><random>` with a /24 from 198.18.0.0/15 picked at random, so
    /// tests running in parallel do not collide.
    pub fn new(tag: &str) -> Netns {
        let id: u16 = rand::random::<u16>() % 500 + 1;
        let suffix: u32 = rand::random::<u32>() % 100_000;
        let name = format!("bp{tag}{suffix}");
        let (a, b) = (18 + (id / 256) as u8, (id % 256) as u8);
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
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    pub fn exec_ok(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
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

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what still runs inside, then remove the namespace (which takes its veth
        // end, and the peer with it).
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                run_quiet(&["kill", "-9", pid]);
            }
        }
        run_quiet(&["ip", "link", "del", &self.host_if]);
        run_quiet(&["ip", "netns", "del", &self.name]);
    }
}
