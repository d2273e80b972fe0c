//! The Kubernetes API requests a k3s node's reinstall needs: cordon it, drain it (evict
//! its pods through the Eviction API, which honours PodDisruptionBudgets), delete its
//! node object. Made with the kubeconfig the bootstrap server handed over (its client
//! certificate, the cluster CA, the API endpoint bootplane knows), blocking (callers use
//! `spawn_blocking`).
//!
//! Written by hand over ureq and rustls rather than with kube-rs: kube-rs with
//! k8s-openapi is a large dependency tree (and minutes of every cold build) for five
//! requests whose shapes are stable core/v1 and policy/v1 API; this is what `kubectl
//! drain` does, in its order (k8s.io/kubectl/pkg/drain): cordon, list the node's pods,
//! skip DaemonSet-managed and mirror (static) pods, evict the rest, wait until they are
//! gone. Deleting a server's node is also what k3s needs to drop its embedded-etcd member
//! (k3s's etcd member controller removes the member of a deleted node) and its node
//! password secret (`pkg/node/controller.go`), so the name can join again.

use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::rustls;

/// A client of one cluster's API.
pub struct Kube {
    agent: ureq::Agent,
    server: String,
}

/// Why a request did not do what was asked; the text says which request and what the
/// API answered, `status` its HTTP status when it answered.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub struct KubeError {
    status: Option<u16>,
    text: String,
}

impl KubeError {
    fn new(text: String) -> KubeError {
        KubeError { status: None, text }
    }
}

type Result<T> = std::result::Result<T, KubeError>;

fn pem_certs(pem: &[u8], what: &str) -> std::result::Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut &pem[..]).collect::<std::result::Result<Vec<_>, _>>().map_err(|e| format!("{what}: not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no certificate"));
    }
    Ok(certs)
}

impl Kube {
    /// From a kubeconfig in the shape k3s writes (one cluster with inline CA data, one
    /// user with an inline client certificate and key).
    pub fn from_kubeconfig(text: &str) -> std::result::Result<Kube, String> {
        let v: Value = yaml_serde::from_str(text).map_err(|e| format!("kubeconfig is not YAML: {e}"))?;
        let data = |v: &Value, what: &str| -> std::result::Result<Vec<u8>, String> {
            let s = v.as_str().ok_or_else(|| format!("kubeconfig: no {what}"))?;
            base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|e| format!("kubeconfig: {what} is not base64: {e}"))
        };
        let cluster = &v["clusters"][0]["cluster"];
        let user = &v["users"][0]["user"];
        let url = cluster["server"].as_str().ok_or("kubeconfig: no cluster server")?.to_string();
        if !url.starts_with("https://") {
            return Err(format!("kubeconfig: the API at `{url}` is not https"));
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in pem_certs(&data(&cluster["certificate-authority-data"], "certificate-authority-data")?, "certificate-authority-data")? {
            roots.add(c).map_err(|e| format!("kubeconfig: the cluster CA is refused: {e}"))?;
        }
        let chain = pem_certs(&data(&user["client-certificate-data"], "client-certificate-data")?, "client-certificate-data")?;
        let key_pem = data(&user["client-key-data"], "client-key-data")?;
        let key = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| format!("client-key-data: not PEM: {e}"))?
            .ok_or("client-key-data holds no private key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("kubeconfig: the client certificate and key do not go together: {e}"))?;
        let agent = ureq::AgentBuilder::new().tls_config(Arc::new(tls)).timeout(Duration::from_secs(15)).build();
        Ok(Kube { agent, server: url.trim_end_matches('/').to_string() })
    }

    /// One request; `Ok(None)` for 404, an error naming the request otherwise.
    fn call(&self, method: &str, path: &str, content_type: &str, body: Option<Value>) -> Result<Option<Value>> {
        let url = format!("{}{path}", self.server);
        let req = self.agent.request(method, &url).set("Accept", "application/json");
        let res = match body {
            Some(b) => req.set("Content-Type", content_type).send_string(&b.to_string()),
            None => req.call(),
        };
        match res {
            Ok(r) => Ok(Some(r.into_json().unwrap_or(Value::Null))),
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["message"].as_str().map(str::to_string)).unwrap_or(text);
                Err(KubeError { status: Some(code), text: format!("{method} {path}: HTTP {code}: {}", msg.trim()) })
            }
            Err(e) => Err(KubeError::new(format!("{method} {path}: the cluster API at {} is unreachable: {e}", self.server))),
        }
    }

    /// Marks the node unschedulable. `Ok(false)`: no such node.
    pub fn cordon(&self, node: &str) -> Result<bool> {
        let patch = json!({ "spec": { "unschedulable": true } });
        Ok(self.call("PATCH", &format!("/api/v1/nodes/{node}"), "application/merge-patch+json", Some(patch))?.is_some())
    }

    /// The node's pods a drain evicts: not DaemonSet-managed (their controller would
    /// put them back) and not mirror pods (the kubelet's static pods), not finished.
    fn evictable(&self, node: &str) -> Result<Vec<(String, String)>> {
        let list = self.call("GET", &format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{node}"), "", None)?.unwrap_or(Value::Null);
        let mut out = Vec::new();
        for p in list["items"].as_array().into_iter().flatten() {
            let meta = &p["metadata"];
            let daemonset = meta["ownerReferences"].as_array().into_iter().flatten().any(|o| o["kind"] == "DaemonSet" && o["controller"] == true);
            let mirror = meta["annotations"]["kubernetes.io/config.mirror"].is_string();
            let done = matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
            if !daemonset && !mirror && !done {
                out.push((meta["namespace"].as_str().unwrap_or("default").to_string(), meta["name"].as_str().unwrap_or_default().to_string()));
            }
        }
        Ok(out)
    }

    /// Evicts the node's pods and waits (until `timeout`) for them to be gone; an
    /// eviction a PodDisruptionBudget refuses (429) is retried until then. Returns how
    /// many pods were evicted.
    pub fn drain(&self, node: &str, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let pods = self.evictable(node)?;
        let mut pending = pods.clone();
        while !pending.is_empty() {
            let mut refused = Vec::new();
            for (ns, name) in pending {
                let body = json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": name, "namespace": ns } });
                match self.call("POST", &format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"), "application/json", Some(body)) {
                    Ok(_) => {}
                    Err(e) if e.status == Some(429) => refused.push((ns, name)),
                    Err(e) => return Err(e),
                }
            }
            if !refused.is_empty() && Instant::now() >= deadline {
                let names: Vec<String> = refused.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
                return Err(KubeError::new(format!("drain {node}: a PodDisruptionBudget still refuses evicting {} after {} s", names.join(", "), timeout.as_secs())));
            }
            if !refused.is_empty() {
                std::thread::sleep(Duration::from_secs(5));
            }
            pending = refused;
        }
        loop {
            let left = self.evictable(node)?;
            if left.is_empty() {
                return Ok(pods.len());
            }
            if Instant::now() >= deadline {
                let names: Vec<String> = left.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
                return Err(KubeError::new(format!("drain {node}: pods still on the node after {} s: {}", timeout.as_secs(), names.join(", "))));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Deletes the node object. `Ok(false)`: it was not there.
    pub fn delete_node(&self, node: &str) -> Result<bool> {
        Ok(self.call("DELETE", &format!("/api/v1/nodes/{node}"), "", None)?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfigs_that_cannot_authenticate_are_refused_with_what_is_wrong() {
        let e = |text: &str| Kube::from_kubeconfig(text).err().unwrap();
        assert!(e(": :").contains("not YAML"));
        assert!(e("clusters: [{cluster: {server: 'http://x:6443'}}]").contains("not https"));
        let no_ca = "clusters: [{cluster: {server: 'https://x:6443'}}]\nusers: [{user: {}}]";
        assert!(e(no_ca).contains("no certificate-authority-data"), "{}", e(no_ca));
        let bad_ca = "clusters: [{cluster: {server: 'https://x:6443', certificate-authority-data: 'Q0E='}}]";
        assert!(e(bad_ca).contains("holds no certificate"), "{}", e(bad_ca));
    }
}
