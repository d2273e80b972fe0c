//! k3s cluster formation as pure functions: which server bootstraps the cluster, each
//! node's one `/etc/rancher/k3s/config.yaml`, the join material a node fetches at first
//! boot (short tokens for the bootstrap server, the secure `K10<ca-hash>::` form for
//! everyone who joins), and the kubeconfig rewrite. No secret is ever part of a node's
//! config: config.yaml points at `token-file`s that the node's install step fills from
//! `/v1/machines/{name}/join` with its one-time credential.

use crate::model::{Cluster, MachineSpec, OsKind, Role};
use serde_json::{json, Map, Value};

pub const TOKEN_FILE: &str = "/etc/rancher/k3s/token";
pub const AGENT_TOKEN_FILE: &str = "/etc/rancher/k3s/agent-token";
pub const CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";
/// Where k3s reads the node password it presents at every join (it makes a random one
/// when the file is missing, which a reinstall would lose): see
/// [`crate::credential::node_password`].
pub const NODE_PASSWORD_FILE: &str = "/etc/rancher/node/password";
/// k3s applies every manifest in this directory on its servers (its deploy controller).
pub const KUBE_VIP_MANIFEST: &str = "/var/lib/rancher/k3s/server/manifests/bootplane-kube-vip.yaml";
/// kube-vip's image when `vip.image` is not set.
pub const KUBE_VIP_IMAGE: &str = "ghcr.io/kube-vip/kube-vip:v0.8.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// The server that runs `cluster-init` and creates the cluster.
    Bootstrap,
    Server,
    Agent,
}

impl NodeRole {
    pub fn is_server(self) -> bool {
        self != NodeRole::Agent
    }
    /// The systemd unit k3s runs as (the names k3s's own installer uses).
    pub fn unit(self) -> &'static str {
        if self.is_server() {
            "k3s.service"
        } else {
            "k3s-agent.service"
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum K3sError {
    #[error("machine {machine} is in cluster {cluster} but has no role; set `role: server` or `role: agent`")]
    NoRole { machine: String, cluster: String },
    #[error("cluster {cluster} has no bootstrap server; give one machine `role: server`")]
    NoBootstrap { cluster: String },
    #[error("cluster {cluster} has no k3s.version; pin one such as v1.28.5+k3s1")]
    NoVersion { cluster: String },
}

/// One machine's place in its cluster.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    pub cluster: &'a Cluster,
    pub machine: &'a MachineSpec,
    pub role: NodeRole,
    /// `https://host:6443`: the VIP/API endpoint, or the bootstrap server.
    pub api: String,
    pub os: OsKind,
}

/// The name of the bootstrap server: the cluster's `bootstrap`, else the first server
/// (in the order given) that belongs to it.
pub fn bootstrap_name<'m>(cluster: &Cluster, machines: impl IntoIterator<Item = &'m MachineSpec>) -> Option<String> {
    cluster.k3s.bootstrap.clone().or_else(|| {
        machines
            .into_iter()
            .find(|m| m.cluster.as_deref() == Some(&cluster.name) && m.role == Some(Role::Server))
            .map(|m| m.name.clone())
    })
}

/// How joiners reach the API: the configured endpoint, else the bootstrap server's
/// address (its reserved IP, else its hostname).
pub fn api_url(cluster: &Cluster, bootstrap: Option<&MachineSpec>) -> Option<String> {
    if let Some(api) = &cluster.k3s.api {
        return Some(api.trim_end_matches('/').to_string());
    }
    if let Some(vip) = &cluster.vip {
        return Some(format!("https://{}:6443", vip.address));
    }
    let b = bootstrap?;
    let host = b.ip.map(|ip| ip.to_string()).unwrap_or_else(|| b.hostname.clone().unwrap_or_else(|| b.name.clone()));
    Some(format!("https://{host}:6443"))
}

/// The name k3s registers `machine`'s node under: its `node-name`, which k3s lowercases.
pub fn node_name(machine: &MachineSpec) -> String {
    machine.short_hostname().to_ascii_lowercase()
}

/// Places `machine` in `cluster`, whose bootstrap server is `bootstrap`.
pub fn node<'a>(
    cluster: &'a Cluster,
    machine: &'a MachineSpec,
    bootstrap: Option<&MachineSpec>,
    os: OsKind,
) -> Result<Node<'a>, K3sError> {
    if cluster.k3s.version.is_none() {
        return Err(K3sError::NoVersion { cluster: cluster.name.clone() });
    }
    let b = bootstrap.ok_or_else(|| K3sError::NoBootstrap { cluster: cluster.name.clone() })?;
    let role = match machine.role {
        None => return Err(K3sError::NoRole { machine: machine.name.clone(), cluster: cluster.name.clone() }),
        Some(Role::Agent) => NodeRole::Agent,
        Some(Role::Server) if b.name == machine.name => NodeRole::Bootstrap,
        Some(Role::Server) => NodeRole::Server,
    };
    let api = api_url(cluster, Some(b)).ok_or_else(|| K3sError::NoBootstrap { cluster: cluster.name.clone() })?;
    Ok(Node { cluster, machine, role, api, os })
}

/// Where binaries go: `/usr` is read-only on Flatcar, so `/opt/bin` there; on fcos
/// `/usr/local` is writable and its `bin` carries the right SELinux label.
pub fn bin_dir(os: OsKind) -> &'static str {
    match os {
        OsKind::Flatcar => "/opt/bin",
        _ => "/usr/local/bin",
    }
}

/// Whether k3s runs with SELinux support (fcos only, on unless the cluster says no).
pub fn selinux(node: &Node<'_>) -> bool {
    node.os == OsKind::Fcos && node.cluster.k3s.selinux.unwrap_or(true)
}

pub fn api_host(api: &str) -> Option<&str> {
    let rest = api.split_once("://").map(|(_, r)| r).unwrap_or(api);
    let host = rest.split(['/', '?']).next()?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    Some(host).filter(|h| !h.is_empty())
}

/// Machine labels that are valid Kubernetes labels become node labels; others (a disk
/// path used by a template, say) stay bootplane-only.
pub fn is_node_label(key: &str, value: &str) -> bool {
    let part = |s: &str, max: usize| {
        s.len() <= max
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !s.starts_with(|c: char| !c.is_ascii_alphanumeric())
            && !s.ends_with(|c: char| !c.is_ascii_alphanumeric())
    };
    let name = match key.split_once('/') {
        Some((prefix, name)) => (crate::model::is_hostname(prefix) && prefix.len() <= 253).then_some(name),
        None => Some(key),
    };
    name.is_some_and(|n| !n.is_empty() && part(n, 63)) && part(value, 63)
}

/// The node's `/etc/rancher/k3s/config.yaml`: every k3s setting, once, and no secret.
pub fn config_yaml(node: &Node<'_>, node_ip: Option<std::net::Ipv4Addr>) -> String {
    let k = &node.cluster.k3s;
    let mut c = Map::new();
    if node.role == NodeRole::Bootstrap {
        c.insert("cluster-init".into(), json!(true));
    } else {
        c.insert("server".into(), json!(node.api));
    }
    c.insert("token-file".into(), json!(TOKEN_FILE));
    if node.role.is_server() {
        c.insert("agent-token-file".into(), json!(AGENT_TOKEN_FILE));
    }
    c.insert("node-name".into(), json!(node.machine.short_hostname()));
    if let Some(ip) = node_ip {
        c.insert("node-ip".into(), json!(ip.to_string()));
    }
    let labels: Vec<String> = node.machine.labels.iter().filter(|(k, v)| is_node_label(k, v)).map(|(k, v)| format!("{k}={v}")).collect();
    if !labels.is_empty() {
        c.insert("node-label".into(), json!(labels));
    }
    if selinux(node) {
        c.insert("selinux".into(), json!(true));
    }
    if node.role.is_server() {
        c.insert("write-kubeconfig-mode".into(), json!("0600"));
        let mut sans: Vec<String> = Vec::new();
        for s in api_host(&node.api).into_iter().map(str::to_string).chain(k.tls_san.iter().cloned()) {
            if !sans.contains(&s) {
                sans.push(s);
            }
        }
        c.insert("tls-san".into(), json!(sans));
        if !k.disable.is_empty() {
            c.insert("disable".into(), json!(k.disable));
        }
        if let Some(v) = &k.cluster_cidr {
            c.insert("cluster-cidr".into(), json!(v));
        }
        if let Some(v) = &k.service_cidr {
            c.insert("service-cidr".into(), json!(v));
        }
        if let Some(v) = &k.flannel_backend {
            c.insert("flannel-backend".into(), json!(v));
        }
    }
    let extra = if node.role.is_server() { &k.extra_config } else { &k.agent_extra_config };
    for (key, v) in extra {
        // The generated keys win: they are what makes joining work.
        c.entry(key.clone()).or_insert_with(|| v.clone());
    }
    let header = format!(
        "# Written by bootplane for {} ({} of cluster {}). Tokens are not here: see token-file.\n",
        node.machine.name,
        match node.role {
            NodeRole::Bootstrap => "bootstrap server",
            NodeRole::Server => "server",
            NodeRole::Agent => "agent",
        },
        node.cluster.name
    );
    header + &crate::yaml11::to_string(&Value::Object(c))
}

/// A cluster's generated join secrets (k3s "short" tokens).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    pub server: String,
    pub agent: String,
}

/// `K10<ca-hash>::<user>:<password>`, k3s's secure token form.
pub fn secure_token(ca_hash: &str, user: &str, password: &str) -> String {
    format!("K10{ca_hash}::{user}:{password}")
}

/// True for a SHA-256 as `sha256sum` prints it.
pub fn is_ca_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[derive(Debug, PartialEq, Eq)]
pub enum Join {
    /// `KEY=value` lines for the node's install step.
    Ready(String),
    /// The bootstrap server has not reported its CA yet; ask again later.
    WaitForBootstrap,
}

/// What `/v1/machines/{name}/join` answers for `role`.
pub fn join_material(role: NodeRole, tokens: &Tokens, ca_hash: Option<&str>) -> Join {
    match (role, ca_hash) {
        (NodeRole::Bootstrap, _) => Join::Ready(format!("K3S_TOKEN={}\nK3S_AGENT_TOKEN={}\n", tokens.server, tokens.agent)),
        (_, None) => Join::WaitForBootstrap,
        (NodeRole::Server, Some(h)) => Join::Ready(format!(
            "K3S_TOKEN={}\nK3S_AGENT_TOKEN={}\n",
            secure_token(h, "server", &tokens.server),
            tokens.agent
        )),
        (NodeRole::Agent, Some(h)) => Join::Ready(format!("K3S_TOKEN={}\n", secure_token(h, "node", &tokens.agent))),
    }
}

/// The bootstrap server's kubeconfig reduced to the shape k3s writes: per cluster its
/// `server` and `certificate-authority-data`, per user its client certificate and key,
/// the contexts joining them. Anything that would make `kubectl` run a program, read a
/// local file, skip TLS checks or use a proxy on the admin's workstation is refused, not
/// dropped, so a tampered report shows up as an error. With `api` (the cluster's API
/// endpoint: a VIP or the bootstrap server) every `server:` becomes it: the reporter
/// does not choose where the admin's kubectl sends its client certificate.
pub fn reduce_kubeconfig(text: &str, api: Option<&str>) -> Result<String, String> {
    let v: Value = yaml_serde::from_str(text).map_err(|e| format!("kubeconfig is not YAML: {e}"))?;
    let list = |key: &str| -> Result<Vec<Value>, String> {
        match &v[key] {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) => Ok(a.clone()),
            _ => Err(format!("kubeconfig: `{key}` is not a list")),
        }
    };
    let string = |v: &Value, what: &str| -> Result<String, String> {
        v.as_str().map(str::to_string).ok_or_else(|| format!("kubeconfig: {what} is missing or not a string"))
    };
    let only = |obj: &Value, allowed: &[&str], what: &str| -> Result<(), String> {
        let map = obj.as_object().ok_or_else(|| format!("kubeconfig: {what} is not a mapping"))?;
        match map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("kubeconfig: {what} has `{k}`, which k3s never writes; refused")),
            None => Ok(()),
        }
    };
    let mut clusters = Vec::new();
    for c in list("clusters")? {
        let name = string(&c["name"], "a cluster's name")?;
        let cl = &c["cluster"];
        only(cl, &["server", "certificate-authority-data"], &format!("cluster {name}"))?;
        let mut server = string(&cl["server"], &format!("cluster {name}'s server"))?;
        if !server.starts_with("https://") {
            return Err(format!("kubeconfig: cluster {name}'s server `{server}` is not https"));
        }
        if let Some(api) = api {
            server = api.trim_end_matches('/').to_string();
        }
        let ca = string(&cl["certificate-authority-data"], &format!("cluster {name}'s certificate-authority-data"))?;
        clusters.push(json!({ "cluster": { "certificate-authority-data": ca, "server": server }, "name": name }));
    }
    let mut users = Vec::new();
    for u in list("users")? {
        let name = string(&u["name"], "a user's name")?;
        only(&u["user"], &["client-certificate-data", "client-key-data"], &format!("user {name}"))?;
        let cert = string(&u["user"]["client-certificate-data"], &format!("user {name}'s client-certificate-data"))?;
        let key = string(&u["user"]["client-key-data"], &format!("user {name}'s client-key-data"))?;
        users.push(json!({ "name": name, "user": { "client-certificate-data": cert, "client-key-data": key } }));
    }
    let mut contexts = Vec::new();
    for c in list("contexts")? {
        let name = string(&c["name"], "a context's name")?;
        only(&c["context"], &["cluster", "user", "namespace"], &format!("context {name}"))?;
        let cluster = string(&c["context"]["cluster"], &format!("context {name}'s cluster"))?;
        let user = string(&c["context"]["user"], &format!("context {name}'s user"))?;
        contexts.push(json!({ "context": { "cluster": cluster, "user": user }, "name": name }));
    }
    if clusters.is_empty() || users.is_empty() {
        return Err("kubeconfig: no cluster or no user".into());
    }
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("clusters".into(), json!(clusters));
    out.insert("contexts".into(), json!(contexts));
    if let Some(cur) = v["current-context"].as_str() {
        out.insert("current-context".into(), json!(cur));
    }
    out.insert("kind".into(), json!("Config"));
    out.insert("preferences".into(), json!({}));
    out.insert("users".into(), json!(users));
    Ok(crate::yaml11::to_string(&Value::Object(out)))
}

/// What kube-vip needs on a cluster's servers to hold `vip` (k3s's auto-deploy manifest,
/// as kube-vip's own `manifest daemonset --controlplane --arp --leaderElection
/// --inCluster --taint` makes it): its service account and RBAC (leases for the leader
/// election, nodes and services to watch), and a DaemonSet on the control-plane nodes,
/// host network, NET_ADMIN/NET_RAW, configured by the environment variables kube-vip
/// reads (`pkg/kubevip/config_envvar.go`): ARP, the interface, `address`, a /32
/// `vip_subnet`, port 6443, control plane on, services off, Kubernetes leader election
/// on the `plndr-cp-lock` lease with kube-vip's documented 5/3/1 s timings.
pub fn kube_vip_manifest(vip: &crate::model::Vip) -> String {
    let env = [
        ("vip_arp", "true"),
        ("port", "6443"),
        ("vip_interface", vip.interface.as_str()),
        ("vip_subnet", "32"),
        ("cp_enable", "true"),
        ("cp_namespace", "kube-system"),
        ("svc_enable", "false"),
        ("vip_leaderelection", "true"),
        ("vip_leasename", "plndr-cp-lock"),
        ("vip_leaseduration", "5"),
        ("vip_renewdeadline", "3"),
        ("vip_retryperiod", "1"),
    ];
    let mut envs: Vec<Value> = env.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect();
    envs.push(json!({ "name": "address", "value": vip.address.to_string() }));
    envs.push(json!({ "name": "vip_nodename", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } }));
    let image = vip.image.as_deref().unwrap_or(KUBE_VIP_IMAGE);
    let docs = [
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "kube-vip", "namespace": "kube-system" } }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": "system:kube-vip-role" },
            "rules": [
                { "apiGroups": [""], "resources": ["services/status"], "verbs": ["update"] },
                { "apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["list", "get", "watch", "update"] },
                { "apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "get", "watch", "update", "patch"] },
                { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list", "get", "watch", "update", "create"] },
                { "apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "get", "watch", "update"] },
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": "system:kube-vip-binding" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kube-vip-role" },
            "subjects": [{ "kind": "ServiceAccount", "name": "kube-vip", "namespace": "kube-system" }],
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": { "name": "kube-vip-ds", "namespace": "kube-system", "labels": { "app.kubernetes.io/name": "kube-vip-ds" } },
            "spec": {
                "selector": { "matchLabels": { "app.kubernetes.io/name": "kube-vip-ds" } },
                "template": {
                    "metadata": { "labels": { "app.kubernetes.io/name": "kube-vip-ds" } },
                    "spec": {
                        "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                            { "matchExpressions": [{ "key": "node-role.kubernetes.io/control-plane", "operator": "Exists" }] },
                        ] } } },
                        "containers": [{
                            "name": "kube-vip", "image": image, "imagePullPolicy": "IfNotPresent", "args": ["manager"], "env": envs,
                            "securityContext": { "capabilities": { "add": ["NET_ADMIN", "NET_RAW"] } },
                        }],
                        "hostNetwork": true,
                        "serviceAccountName": "kube-vip",
                        "tolerations": [{ "effect": "NoSchedule", "operator": "Exists" }, { "effect": "NoExecute", "operator": "Exists" }],
                    },
                },
            },
        }),
    ];
    let mut out = String::from("# Written by bootplane: kube-vip holds the control-plane VIP (clusters[].vip).\n");
    for d in docs {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&d).expect("a JSON value is YAML"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::K3sSettings;

    fn cluster() -> Cluster {
        Cluster {
            name: "lab".into(),
            k3s: K3sSettings {
                version: Some("v1.28.5+k3s1".into()),
                disable: vec!["traefik".into()],
                cluster_cidr: Some("10.42.0.0/16".into()),
                tls_san: vec!["k8s.lab.internal".into()],
                ..Default::default()
            },
            vip: None,
        }
    }

    fn m(name: &str, role: Option<Role>, ip: &str) -> MachineSpec {
        MachineSpec { name: name.into(), role, cluster: Some("lab".into()), ip: ip.parse().ok(), ..Default::default() }
    }

    #[test]
    fn first_server_bootstraps_and_others_join_it() {
        let c = cluster();
        let ms = [m("a1", Some(Role::Agent), "10.0.0.9"), m("s1", Some(Role::Server), "10.0.0.5"), m("s2", Some(Role::Server), "10.0.0.6")];
        assert_eq!(bootstrap_name(&c, &ms).as_deref(), Some("s1"));
        let b = &ms[1];
        let n = node(&c, &ms[1], Some(b), OsKind::Fcos).unwrap();
        assert_eq!(n.role, NodeRole::Bootstrap);
        let y = config_yaml(&n, None);
        assert!(y.contains("cluster-init: true") && !y.contains("server:"), "{y}");
        assert!(y.contains("selinux: true") && y.contains("- \"10.0.0.5\"\n- k8s.lab.internal"), "{y}");
        let j = node(&c, &ms[2], Some(b), OsKind::Flatcar).unwrap();
        let y = config_yaml(&j, None);
        assert!(y.contains("server: https://10.0.0.5:6443") && !y.contains("cluster-init") && !y.contains("selinux"), "{y}");
        let a = node(&c, &ms[0], Some(b), OsKind::Fcos).unwrap();
        let y = config_yaml(&a, None);
        assert!(!y.contains("disable") && !y.contains("agent-token-file") && !y.contains("tls-san"), "{y}");
        assert_eq!(node(&c, &m("x", None, ""), Some(b), OsKind::Fcos).unwrap_err(), K3sError::NoRole { machine: "x".into(), cluster: "lab".into() });
    }

    #[test]
    fn every_generated_key_is_one_the_node_s_k3s_command_defines() {
        use crate::k3s_flags::{check, Command};
        let mut c = cluster();
        c.k3s.flannel_backend = Some("wireguard-native".into());
        c.k3s.service_cidr = Some("10.43.0.0/16".into());
        let mut a = m("a1", Some(Role::Agent), "10.0.0.9");
        a.labels.insert("zone".into(), "r1".into());
        let ms = [m("s1", Some(Role::Server), "10.0.0.5"), m("s2", Some(Role::Server), "10.0.0.6"), a];
        for (i, os) in [(0, OsKind::Fcos), (1, OsKind::Flatcar), (2, OsKind::Fcos)] {
            let n = node(&c, &ms[i], Some(&ms[0]), os).unwrap();
            let cmd = if n.role.is_server() { Command::Server } else { Command::Agent };
            let y = config_yaml(&n, "10.0.0.9".parse().ok());
            let keys: Vec<&str> = y.lines().filter(|l| !l.starts_with(['#', ' ', '-'])).filter_map(|l| l.split(':').next()).collect();
            assert!(keys.len() >= 4, "{y}");
            for k in keys {
                assert_eq!(check(cmd, k), None, "{:?} gets `{k}`", n.role);
            }
        }
    }

    #[test]
    fn join_material_waits_for_the_ca_then_uses_secure_tokens() {
        let t = Tokens { server: "s3cr3t".into(), agent: "ag3nt".into() };
        assert_eq!(join_material(NodeRole::Bootstrap, &t, None), Join::Ready("K3S_TOKEN=s3cr3t\nK3S_AGENT_TOKEN=ag3nt\n".into()));
        assert_eq!(join_material(NodeRole::Agent, &t, None), Join::WaitForBootstrap);
        let h = "a".repeat(64);
        let Join::Ready(s) = join_material(NodeRole::Agent, &t, Some(&h)) else { panic!() };
        assert_eq!(s, format!("K3S_TOKEN=K10{h}::node:ag3nt\n"));
        let Join::Ready(s) = join_material(NodeRole::Server, &t, Some(&h)) else { panic!() };
        assert!(s.starts_with(&format!("K3S_TOKEN=K10{h}::server:s3cr3t\n")));
        assert!(is_ca_hash(&h) && !is_ca_hash("A".repeat(64).as_str()) && !is_ca_hash("abc"));
    }

    #[test]
    fn only_kubernetes_shaped_labels_become_node_labels() {
        assert!(is_node_label("longhorn", "true") && is_node_label("topology.kubernetes.io/zone", "rack-1") && is_node_label("x", ""));
        assert!(!is_node_label("data-disk", "/dev/disk/by-id/ata-X") && !is_node_label("-a", "b") && !is_node_label("a", "b c"));
    }

    const K3S_YAML: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {}\nusers:\n- name: default\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";

    #[test]
    fn kubeconfig_points_at_the_api() {
        let r = reduce_kubeconfig(K3S_YAML, Some("https://10.20.0.5:6443/")).unwrap();
        assert!(r.contains("    server: https://10.20.0.5:6443\n") && !r.contains("127.0.0.1"), "{r}");
        let back: Value = yaml_serde::from_str(&r).unwrap();
        assert_eq!(back["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(back["current-context"], "default");
        assert_eq!(api_host("https://[fd00::1]:6443"), Some("fd00::1"));
        assert_eq!(api_host("https://vip.lab:6443/"), Some("vip.lab"));
    }

    #[test]
    fn kubeconfig_that_would_run_or_read_things_on_the_admins_machine_is_refused() {
        let cases = [
            ("    client-key-data: S0VZ\n", "    client-key-data: S0VZ\n    exec: {command: /bin/sh, apiVersion: client.authentication.k8s.io/v1}\n", "`exec`"),
            ("    client-key-data: S0VZ\n", "    client-key-data: S0VZ\n    auth-provider: {name: gcp}\n", "`auth-provider`"),
            ("    client-key-data: S0VZ\n", "    client-key-data: S0VZ\n    tokenFile: /etc/shadow\n", "`tokenFile`"),
            ("    server: https://127.0.0.1:6443\n", "    server: https://127.0.0.1:6443\n    proxy-url: http://evil:3128\n", "`proxy-url`"),
            ("    server: https://127.0.0.1:6443\n", "    server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true\n", "`insecure-skip-tls-verify`"),
            ("server: https://127.0.0.1:6443", "server: http://127.0.0.1:6443", "not https"),
        ];
        for (from, to, want) in cases {
            assert!(K3S_YAML.contains(from));
            let err = reduce_kubeconfig(&K3S_YAML.replace(from, to), None).unwrap_err();
            assert!(err.contains(want), "{to}: {err}");
        }
        assert!(reduce_kubeconfig("!!", None).is_err() && reduce_kubeconfig("{}", None).is_err());
    }

    #[test]
    fn a_vip_is_where_joiners_go_and_kube_vip_holds_it_on_the_servers() {
        let mut c = cluster();
        c.vip = Some(crate::model::Vip { address: "10.20.0.100".parse().unwrap(), interface: "enp1s0".into(), image: None });
        let b = m("s1", Some(Role::Server), "10.20.0.5");
        assert_eq!(api_url(&c, Some(&b)).as_deref(), Some("https://10.20.0.100:6443"));
        let agent = m("a1", Some(Role::Agent), "10.20.0.7");
        let n = node(&c, &agent, Some(&b), OsKind::Fcos).unwrap();
        let y: Value = yaml_serde::from_str(&config_yaml(&n, None)).unwrap();
        assert_eq!(y["server"], "https://10.20.0.100:6443");
        let s2 = m("s2", Some(Role::Server), "10.20.0.6");
        let n = node(&c, &s2, Some(&b), OsKind::Fcos).unwrap();
        let y: Value = yaml_serde::from_str(&config_yaml(&n, None)).unwrap();
        assert!(y["tls-san"].as_array().unwrap().contains(&json!("10.20.0.100")), "{y}");
        // The manifest: four documents; the DaemonSet carries what kube-vip reads.
        let text = kube_vip_manifest(c.vip.as_ref().unwrap());
        let docs: Vec<Value> = text.split("---\n").skip(1).map(|d| yaml_serde::from_str(d).unwrap()).collect();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]);
        let ctr = &docs[3]["spec"]["template"]["spec"]["containers"][0];
        let env = |k: &str| ctr["env"].as_array().unwrap().iter().find(|e| e["name"] == k).map(|e| e["value"].clone());
        assert_eq!(env("address"), Some(json!("10.20.0.100")));
        assert_eq!(env("vip_interface"), Some(json!("enp1s0")));
        assert_eq!((env("vip_arp"), env("cp_enable"), env("vip_leaderelection")), (Some(json!("true")), Some(json!("true")), Some(json!("true"))));
        assert_eq!(ctr["image"], KUBE_VIP_IMAGE);
        assert_eq!(docs[3]["spec"]["template"]["spec"]["hostNetwork"], true);
        let air = crate::model::Vip { image: Some("registry.lab:5000/kube-vip:v0.8.0".into()), ..c.vip.clone().unwrap() };
        assert!(kube_vip_manifest(&air).contains("image: registry.lab:5000/kube-vip:v0.8.0"));
    }
}
