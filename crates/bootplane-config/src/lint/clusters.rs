//! Cluster findings: the mistakes that make k3s nodes fail to form one cluster (no
//! server, two servers each running `cluster-init`, a bootstrap that is not a server,
//! pod/service networks overlapping the machines' own network, a token pasted into a
//! config that is served without authentication, a config-file key the node's k3s
//! command does not define).

use super::Findings;
use crate::Config;
use bootplane_core::k3s_flags::{self, Command, KeyProblem};
use bootplane_core::model::{Cluster, Role};
use std::net::Ipv4Addr;

/// An IPv4 network as (first address, prefix length).
fn net(cidr: &str) -> Option<(u32, u8)> {
    let (a, p) = bootplane_core::network::parse_cidr(cidr)?;
    Some((u32::from(a) & mask(p), p))
}

fn mask(p: u8) -> u32 {
    if p == 0 {
        0
    } else {
        u32::MAX << (32 - p)
    }
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let p = a.1.min(b.1);
    a.0 & mask(p) == b.0 & mask(p)
}

fn show((a, p): (u32, u8)) -> String {
    format!("{}/{p}", Ipv4Addr::from(a))
}

/// A machine's static address as written (`network.address`, CIDR form).
fn static_address(m: &bootplane_core::model::MachineSpec) -> Option<&str> {
    m.network.as_ref().and_then(|n| n.address.as_deref())
}

/// The networks the machines themselves live on, each with where it comes from.
fn machine_networks(cfg: &Config) -> Vec<((u32, u8), String)> {
    let mut v = Vec::new();
    let prefix = cfg.dhcp.netmask.and_then(bootplane_core::network::prefix_of);
    if let (Some(r), Some(p)) = (cfg.dhcp.range, prefix) {
        v.push(((u32::from(r.first) & mask(p), p), "the DHCP range".to_string()));
    }
    for m in &cfg.machines {
        if let Some(n) = static_address(m).and_then(net) {
            v.push((n, format!("machine {}'s address", m.name)));
        } else if let Some(ip) = m.ip {
            v.push(((u32::from(ip), 32), format!("machine {}'s ip", m.name)));
        }
    }
    v
}

pub(super) fn lint(cfg: &Config, c: &Cluster, out: &mut Findings) {
    let w = format!("cluster {}", c.name);
    let members: Vec<_> = cfg.machines.iter().filter(|m| m.cluster.as_deref() == Some(&c.name)).collect();
    if members.is_empty() {
        out.warn(format!("{w}: no machine belongs to it"));
        return;
    }
    let servers: Vec<_> = members.iter().filter(|m| m.role == Some(Role::Server)).collect();
    if servers.is_empty() {
        out.error(format!("{w}: no machine has `role: server`; agents would have nothing to join"));
    }
    if c.k3s.version.is_none() {
        out.error(format!("{w}: k3s.version is not set; pin a release such as v1.28.5+k3s1 so every node runs the same k3s"));
    }
    if let Some(b) = &c.k3s.bootstrap {
        if !servers.iter().any(|m| &m.name == b) {
            out.error(format!("{w}: bootstrap `{b}` is not a server of this cluster"));
        }
    }
    if c.k3s.extra_config.contains_key("cluster-init") && servers.len() > 1 {
        out.error(format!(
            "{w}: extra_config sets cluster-init for every server, so {} servers would each bootstrap a separate cluster; \
             remove it (bootplane gives cluster-init to the bootstrap server only)",
            servers.len()
        ));
    }
    for key in ["token", "agent-token", "token-file", "agent-token-file", "server"] {
        if c.k3s.extra_config.contains_key(key) || c.k3s.agent_extra_config.contains_key(key) {
            out.error(format!(
                "{w}: extra_config sets `{key}`; bootplane generates and delivers join tokens and the server address itself \
                 (a token in config.yaml would be served with the machine's config)"
            ));
        }
    }
    let version = c.k3s.version.as_deref().unwrap_or("unpinned");
    for (cmd, what, extra) in [(Command::Server, "extra_config", &c.k3s.extra_config), (Command::Agent, "agent_extra_config", &c.k3s.agent_extra_config)] {
        let name = if cmd == Command::Server { "server" } else { "agent" };
        for key in extra.keys() {
            match k3s_flags::check(cmd, key) {
                None => {}
                Some(KeyProblem::ServerOnly) => out.error(format!(
                    "{w}: {what} sets `{key}`, which only `k3s server` defines; `k3s agent` would stop with \
                     \"flag provided but not defined\". Move it to extra_config"
                )),
                Some(KeyProblem::Unknown) => out.error(format!(
                    "{w}: {what} sets `{key}`, which `k3s {name}` {version} does not define (bootplane knows the flags of \
                     k3s v1.28-v1.30); check the spelling against `k3s {name} --help`"
                )),
            }
        }
    }
    if let Some(b) = &c.k3s.airgap_bundle {
        match cfg.bundle(b) {
            None => out.error(format!("{w}: airgap_bundle `{b}` is not defined in `bundles`")),
            Some(bundle) if bundle.k3s.is_none() => out.error(format!("{w}: airgap_bundle {b} has no `k3s` binary")),
            Some(_) => {}
        }
    }
    let mut own = Vec::new();
    for (what, v) in [("cluster_cidr", &c.k3s.cluster_cidr), ("service_cidr", &c.k3s.service_cidr)] {
        let Some(v) = v else { continue };
        match net(v) {
            Some(n) => own.push((what, n)),
            None => out.error(format!("{w}: {what} `{v}` is not a network such as 10.42.0.0/16")),
        }
    }
    if let [(a, an), (b, bn)] = own[..] {
        if overlaps(an, bn) {
            out.error(format!("{w}: {a} {} overlaps {b} {}", show(an), show(bn)));
        }
    }
    if let Some(vip) = &c.vip {
        lint_vip(cfg, c, vip, &w, out);
    }
    for (what, n) in &own {
        for (m, from) in machine_networks(cfg) {
            if overlaps(*n, m) {
                out.error(format!(
                    "{w}: {what} {} overlaps {from} ({}); pods or services would shadow real hosts. Pick another range",
                    show(*n),
                    show(m)
                ));
                break;
            }
        }
    }
}

/// The VIP must be an otherwise unused address of the servers' own subnet: kube-vip
/// answers ARP for it on their LAN, so outside that subnet nobody would reach it, and an
/// address a machine or the DHCP pool already has would be claimed twice.
fn lint_vip(cfg: &Config, c: &Cluster, vip: &bootplane_core::model::Vip, w: &str, out: &mut Findings) {
    let a = vip.address;
    let i = &vip.interface;
    if i.is_empty() || i.len() > 15 || i.contains(['/', ' ']) || i == "." || i == ".." {
        out.error(format!("{w}: vip.interface `{i}` is not a network interface name (1-15 characters, no `/` or space)"));
    }
    // An address literal must be the VIP; a name may resolve to it (not checkable here).
    if let Some(api) = &c.k3s.api {
        if bootplane_core::k3s::api_host(api).and_then(|h| h.parse::<Ipv4Addr>().ok()).is_some_and(|h| h != a) {
            out.error(format!("{w}: k3s.api `{api}` is not the VIP {a}; joiners would not use the VIP. Drop k3s.api (the VIP is the API then)"));
        }
    }
    let own = |m: &&bootplane_core::model::MachineSpec| m.ip == Some(a) || static_address(m).and_then(bootplane_core::network::parse_cidr).map(|(ip, _)| ip) == Some(a);
    if let Some(m) = cfg.machines.iter().find(own) {
        out.error(format!("{w}: vip.address {a} is machine {}'s own address; pick an unused address of the same subnet", m.name));
    }
    if let Some(r) = cfg.dhcp.range {
        if (u32::from(r.first)..=u32::from(r.last)).contains(&u32::from(a)) {
            out.error(format!("{w}: vip.address {a} is inside the DHCP range {}-{}; the pool would lease it to another machine", r.first, r.last));
        }
    }
    // The servers' subnets: their static networks, else the DHCP range's.
    let prefix = cfg.dhcp.netmask.and_then(bootplane_core::network::prefix_of);
    let mut subnets: Vec<((u32, u8), String)> = Vec::new();
    for m in cfg.machines.iter().filter(|m| m.cluster.as_deref() == Some(&c.name) && m.role == Some(Role::Server)) {
        let n = static_address(m).and_then(net).or_else(|| Some((u32::from(m.ip?) & mask(prefix?), prefix?)));
        if let Some(n) = n {
            subnets.push((n, format!("server {}", m.name)));
        }
    }
    if subnets.is_empty() {
        if let (Some(r), Some(p)) = (cfg.dhcp.range, prefix) {
            subnets.push(((u32::from(r.first) & mask(p), p), "the DHCP range".into()));
        }
    }
    if let Some((n, from)) = subnets.iter().find(|(n, _)| !overlaps(*n, (u32::from(a), 32))) {
        out.error(format!("{w}: vip.address {a} is outside {from}'s subnet {}; kube-vip announces it by ARP, so it must be on the servers' LAN", show(*n)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_arithmetic() {
        let a = net("10.42.0.0/16").unwrap();
        assert!(overlaps(a, net("10.42.7.0/24").unwrap()));
        assert!(!overlaps(a, net("10.43.0.0/16").unwrap()));
        assert!(overlaps(net("10.0.0.0/8").unwrap(), a));
        assert_eq!(show(net("10.42.9.9/16").unwrap()), "10.42.0.0/16");
    }
}
