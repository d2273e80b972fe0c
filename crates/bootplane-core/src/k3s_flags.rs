//! The config-file keys each `k3s` subcommand accepts, so `check` refuses a key before a
//! node fails to start. k3s reads `/etc/rancher/k3s/config.yaml` as command-line flags:
//! `k3s server` (and `etcd-snapshot`) drop keys they do not define, but `k3s agent`
//! stops with "flag provided but not defined", so an agent given a server-only key never
//! joins. Names are the long flag names of k3s's `pkg/cli/cmds/server.go` and
//! `agent.go` (urfave/cli), read upstream for the v1.28–v1.30 releases; a key introduced
//! later is refused until it is added here (say so in the error, so users know why).

/// Flags both `k3s server` and `k3s agent` define (logging, node, runtime, networking).
const SHARED: &[&str] = &[
    "debug", "v", "vmodule", "log", "alsologtostderr",
    "token", "token-file", "server", "data-dir",
    "node-name", "with-node-id", "node-label", "node-taint",
    "image-credential-provider-bin-dir", "image-credential-provider-config",
    "selinux", "lb-server-port", "protect-kernel-defaults",
    "docker", "container-runtime-endpoint", "default-runtime", "image-service-endpoint",
    "disable-default-registry-endpoint", "pause-image", "snapshotter", "private-registry",
    "airgap-extra-registry", "node-ip", "node-external-ip", "resolv-conf",
    "flannel-iface", "flannel-conf", "flannel-cni-conf", "vpn-auth", "vpn-auth-file",
    "kubelet-arg", "kube-proxy-arg", "rootless", "prefer-bundled-bin",
];

/// Flags only `k3s agent` defines (deprecated, hidden ones that still parse).
const AGENT_ONLY: &[&str] = &["disable-selinux", "no-flannel", "cluster-secret"];

/// Flags only `k3s server` defines.
const SERVER_ONLY: &[&str] = &[
    "bind-address", "https-listen-port", "advertise-address", "advertise-port",
    "tls-san", "tls-san-security", "cluster-cidr", "service-cidr", "service-node-port-range",
    "cluster-dns", "cluster-domain", "flannel-backend", "flannel-ipv6-masq", "flannel-external-ip",
    "egress-selector-mode", "servicelb-namespace", "write-kubeconfig", "write-kubeconfig-mode",
    "write-kubeconfig-group", "helm-job-image", "agent-token", "agent-token-file",
    "cluster-init", "cluster-reset", "cluster-reset-restore-path",
    "kube-apiserver-arg", "etcd-arg", "kube-controller-manager-arg", "kube-scheduler-arg",
    "kube-cloud-controller-manager-arg", "kube-controller-arg", "kube-cloud-controller-arg",
    "datastore-endpoint", "datastore-cafile", "datastore-certfile", "datastore-keyfile",
    "etcd-expose-metrics", "etcd-disable-snapshots", "etcd-snapshot-name",
    "etcd-snapshot-schedule-cron", "etcd-snapshot-retention", "etcd-snapshot-dir",
    "etcd-snapshot-compress", "etcd-s3", "etcd-s3-endpoint", "etcd-s3-endpoint-ca",
    "etcd-s3-skip-ssl-verify", "etcd-s3-access-key", "etcd-s3-secret-key", "etcd-s3-bucket",
    "etcd-s3-region", "etcd-s3-folder", "etcd-s3-insecure", "etcd-s3-timeout",
    "default-local-storage-path", "disable", "disable-scheduler", "disable-cloud-controller",
    "disable-kube-proxy", "disable-network-policy", "disable-helm-controller",
    "disable-apiserver", "disable-controller-manager", "disable-etcd", "embedded-registry",
    "system-default-registry", "secrets-encryption", "enable-pprof", "disable-agent",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Server,
    Agent,
}

#[derive(Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// A `k3s server` key given to an agent: the agent would not start.
    ServerOnly,
    /// Neither command defines it (a typo, or a flag newer than this table).
    Unknown,
}

/// Why `key` cannot go into `cmd`'s config file, or `None` when it can. A trailing `+`
/// (k3s's "append to the value from an earlier file") is part of the syntax, not the name.
pub fn check(cmd: Command, key: &str) -> Option<KeyProblem> {
    let name = key.strip_suffix('+').unwrap_or(key);
    let known = |set: &[&str]| set.contains(&name);
    match cmd {
        _ if known(SHARED) => None,
        Command::Agent if known(AGENT_ONLY) => None,
        Command::Server if known(SERVER_ONLY) => None,
        Command::Agent if known(SERVER_ONLY) => Some(KeyProblem::ServerOnly),
        _ => Some(KeyProblem::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_refuse_server_keys_and_both_refuse_made_up_ones() {
        for k in ["disable", "write-kubeconfig-mode", "tls-san", "cluster-init", "agent-token-file"] {
            assert_eq!(check(Command::Agent, k), Some(KeyProblem::ServerOnly), "{k}");
            assert_eq!(check(Command::Server, k), None, "{k}");
        }
        for k in ["kubelet-arg", "node-label+", "selinux", "token-file", "node-ip", "server"] {
            assert_eq!(check(Command::Agent, k), None, "{k}");
            assert_eq!(check(Command::Server, k), None, "{k}");
        }
        assert_eq!(check(Command::Server, "kubelet-args"), Some(KeyProblem::Unknown));
        assert_eq!(check(Command::Agent, "made-up"), Some(KeyProblem::Unknown));
        assert_eq!(check(Command::Server, "no-flannel"), Some(KeyProblem::Unknown));
    }

    #[test]
    fn the_tables_do_not_overlap() {
        for k in SERVER_ONLY.iter().chain(AGENT_ONLY) {
            assert!(!SHARED.contains(k), "{k} is listed twice");
        }
    }
}
