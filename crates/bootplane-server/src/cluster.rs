//! Cluster secrets and join material. Each cluster's server and agent tokens are
//! generated here on first need and kept in the store sealed under the server's secret
//! key (see `bootplane_core::sealed`); the bootstrap server's CA hash and kubeconfig
//! arrive with its `installed` report. A node gets its tokens only from `/join`, with
//! its own credential, while it is installing; nothing token-shaped is ever logged.

use crate::respond::{error, store_error};
use crate::auth::{bearer, require_admin, unauthorized};
use crate::machine_config::load;
use crate::record::event;
use crate::Shared;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bootplane_core::k3s::{self, Join, NodeRole, Tokens};
use bootplane_core::{credential, sealed};
use bootplane_store::SettingWrite;
use serde_json::json;
use std::net::SocketAddr;

fn tokens_key(cluster: &str) -> String {
    format!("cluster/{cluster}/tokens")
}
pub(crate) fn ca_key(cluster: &str) -> String {
    format!("cluster/{cluster}/ca_hash")
}
fn kubeconfig_key(cluster: &str) -> String {
    format!("cluster/{cluster}/kubeconfig")
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

const KEY_CHECK: &str = "seal_key/check";

/// Refuses a sealing key that is not the one this store's secrets were sealed with:
/// the first instance leaves a sealed marker; every later start (of any instance sharing
/// the database) must open it, and also any cluster tokens sealed before the marker
/// existed. Nothing is overwritten either way.
pub async fn check_seal_key(store: &dyn bootplane_store::Store, key: &[u8; 32]) -> anyhow::Result<()> {
    let refuse = |what: &str| {
        anyhow::anyhow!(
            "the store's secrets were sealed with another secret key ({what} does not open with this one); \
             give this instance the key file of the instance that created the store (server.secret_key_file, \
             default secret.key in the data directory). Nothing was changed"
        )
    };
    for c in store.clusters().await? {
        let k = tokens_key(&c.name);
        if let Some(v) = store.setting(&k).await? {
            sealed::open(key, &k, &v).map_err(|_| refuse(&k))?;
        }
    }
    let marker = sealed::seal(key, KEY_CHECK, rand::random(), b"bootplane");
    let held = store.setting_or_insert(KEY_CHECK, &marker).await?;
    sealed::open(key, KEY_CHECK, &held).map_err(|_| refuse("the store's key check"))?;
    Ok(())
}

fn seal(s: &Shared, purpose: &str, plaintext: &[u8]) -> String {
    sealed::seal(&s.seal_key, purpose, rand::random(), plaintext)
}

/// The cluster's tokens, created (once, even with several instances racing) on first use.
pub async fn tokens(s: &Shared, cluster: &str) -> anyhow::Result<Tokens> {
    let key = tokens_key(cluster);
    let fresh = Tokens { server: random_token(), agent: random_token() };
    let sealed_value = s.store.setting_or_insert(&key, &seal(s, &key, &serde_json::to_vec(&fresh)?)).await?;
    let plain = sealed::open(&s.seal_key, &key, &sealed_value)?;
    Ok(serde_json::from_slice(&plain)?)
}

/// `GET /v1/machines/{name}/join`: this node's tokens as `KEY=value` lines.
pub async fn join(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Extension(secure): axum::Extension<crate::Secure>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = s.refuse_insecure(secure) {
        return r;
    }
    let source = Some(peer.ip().to_string());
    let rec = match s.store.machine(&name).await {
        Ok(Some(r)) => r,
        Ok(None) => return unauthorized("credential refused"),
        Err(e) => return store_error(e),
    };
    let ok = bearer(&headers).is_some_and(|p| credential::verify(&s.credential_secret, &name, rec.credential_generation, p));
    if !ok {
        crate::record::refusal_event(&s, Some(&name), "join.refused", source, json!({ "reason": "wrong, missing or retired credential" })).await;
        return unauthorized("join material needs `Authorization: Bearer $BOOTPLANE_CREDENTIAL` from /etc/bootplane/machine.env (used credentials are retired)");
    }
    // The installed system joins after the installer reported the disk written.
    if !(rec.state.serves_installer() || rec.state == bootplane_core::MachineState::Written) {
        event(&s, &name, "join.refused", source, json!({ "reason": "not installing", "state": rec.state })).await;
        return error(StatusCode::NOT_FOUND, "join material is only served while the machine is being installed");
    }
    let generation = rec.credential_generation;
    let loaded = match load(&s, rec, &headers).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let node = match loaded.node() {
        Ok(Some(n)) => n,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("machine {name} is in no cluster")),
        Err(e) => return error(StatusCode::CONFLICT, e),
    };
    let cluster = node.cluster.name.clone();
    let t = match tokens(&s, &cluster).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cluster {cluster}: cannot read its tokens: {e}");
            return error(StatusCode::SERVICE_UNAVAILABLE, format!("cluster {cluster}: tokens unavailable; see the server log"));
        }
    };
    let ca = s.store.setting(&ca_key(&cluster)).await.ok().flatten();
    if node.role == NodeRole::Bootstrap && ca.is_some() {
        // cluster-init on a reinstalled bootstrap server would found a second cluster
        // beside the one the other nodes are in.
        event(&s, &name, "join.refused", source, json!({ "reason": "cluster already bootstrapped", "cluster": cluster })).await;
        return error(
            StatusCode::CONFLICT,
            format!(
                "cluster {cluster} was already bootstrapped; reinstalling its bootstrap server would create a second cluster. \
                 Set clusters[].k3s.bootstrap to a running server so {name} joins, or run `bootplane cluster reset {cluster}` to build a new cluster"
            ),
        );
    }
    match k3s::join_material(node.role, &t, ca.as_deref()) {
        Join::Ready(text) => {
            if let Err(r) = claim_join(&s, &name, generation, source.clone()).await {
                return r;
            }
            let form = if node.role == NodeRole::Bootstrap { "short (bootstrap)" } else { "secure K10" };
            event(&s, &name, "join.served", source, json!({ "cluster": cluster, "role": format!("{:?}", node.role).to_lowercase(), "token_form": form })).await;
            ([(header::CONTENT_TYPE, "text/plain"), (header::CACHE_CONTROL, "no-store")], text).into_response()
        }
        Join::WaitForBootstrap => {
            event(&s, &name, "join.waiting", source, json!({ "cluster": cluster, "reason": "bootstrap server has not reported its CA yet" })).await;
            (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "15")], "the cluster's bootstrap server has not reported yet; retry\n").into_response()
        }
    }
}

/// Join material goes out once per credential generation: the first answer is
/// recorded, and only its requester's retry (a lost answer) within the window gets it
/// again; anyone else holding the credential is refused and raises `join.alarm`.
async fn claim_join(s: &Shared, name: &str, generation: u32, source: Option<String>) -> Result<(), Response> {
    use bootplane_core::attempt::{Fetch, JoinServed};
    let from: Option<std::net::IpAddr> = source.as_deref().and_then(|s| s.parse().ok());
    let now = chrono::Utc::now().timestamp();
    let key = format!("join/{name}");
    let ours = serde_json::to_string(&JoinServed { generation, first: Fetch { ip: from, at: now } }).expect("serializes");
    for _ in 0..5 {
        let stored = s.store.setting_or_insert(&key, &ours).await.map_err(store_error)?;
        if stored == ours {
            return Ok(());
        }
        match serde_json::from_str::<JoinServed>(&stored) {
            // An earlier install's record: this generation has not been served yet.
            Ok(j) if j.generation != generation => {
                if s.store.replace_setting(&key, &stored, &ours).await.map_err(store_error)? {
                    return Ok(());
                }
            }
            Ok(j) if j.first.is_retry(from, now) => {
                event(s, name, "join.refetched", source, json!({ "generation": generation })).await;
                return Ok(());
            }
            Ok(j) => {
                let first = j.first.ip.map(|i| i.to_string()).unwrap_or_else(|| "an unknown address".into());
                let reason = format!("join material of this credential already went to {first}");
                crate::record::alarm_event(s, name, "join.alarm", source, json!({ "reason": reason })).await;
                return Err(error(StatusCode::CONFLICT, format!("join material for {name} was already served (to {first}); reinstall the machine for a new credential")));
            }
            Err(_) => {
                if s.store.replace_setting(&key, &stored, &ours).await.map_err(store_error)? {
                    return Ok(());
                }
            }
        }
    }
    Err(error(StatusCode::SERVICE_UNAVAILABLE, "join contended; retry"))
}

/// What an `installed` report from a bootstrap server hands over.
pub struct Handover {
    pub ca_hash: String,
    pub kubeconfig: Vec<u8>,
}

/// What the bootstrap server's report hands over, as settings to write in the same
/// transaction as its `installed` state change: the CA hash (first writer wins until
/// `cluster reset`: joiners pin it) and the kubeconfig, reduced and sealed. Empty when
/// `machine` is not its cluster's bootstrap server; `(cluster, writes)` otherwise.
pub async fn handover_settings(s: &Shared, machine: &bootplane_core::MachineSpec, h: Handover) -> Result<Option<(String, Vec<SettingWrite>)>, String> {
    let Some(c) = &machine.cluster else { return Ok(None) };
    let cluster = match s.store.cluster(c).await {
        Ok(Some(c)) => c,
        _ => return Ok(None),
    };
    if cluster.k3s.bootstrap.as_deref() != Some(&machine.name) {
        return Ok(None);
    }
    if !k3s::is_ca_hash(&h.ca_hash) {
        return Err("ca_hash is not a lowercase hex SHA-256".into());
    }
    // The admin's kubeconfig points where bootplane knows the API is, never where the
    // reporter says it is.
    let api = k3s::api_url(&cluster, Some(machine)).ok_or_else(|| format!("cluster {c} has no API endpoint"))?;
    let kubeconfig = k3s::reduce_kubeconfig(&String::from_utf8_lossy(&h.kubeconfig), Some(&api))?;
    let key = kubeconfig_key(c);
    let sealed_kc = seal(s, &key, kubeconfig.as_bytes());
    Ok(Some((
        c.clone(),
        vec![
            SettingWrite { key: ca_key(c), value: h.ca_hash, first_writer_wins: true },
            SettingWrite { key, value: sealed_kc, first_writer_wins: false },
        ],
    )))
}

/// Whether `machine` is its cluster's bootstrap server.
pub async fn is_bootstrap(s: &Shared, machine: &bootplane_core::MachineSpec) -> bool {
    let Some(c) = &machine.cluster else {
        return false;
    };
    matches!(s.store.cluster(c).await, Ok(Some(c)) if c.k3s.bootstrap.as_deref() == Some(&machine.name))
}

/// Cluster `name`'s admin kubeconfig as the bootstrap server handed it over, pointed at
/// the cluster's API endpoint instead of 127.0.0.1; `Ok(None)` until it was handed over.
pub(crate) async fn admin_kubeconfig(s: &Shared, name: &str) -> Result<Option<String>, (StatusCode, String)> {
    let cluster = match s.store.cluster(name).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err((StatusCode::NOT_FOUND, format!("no cluster named `{name}`"))),
        Err(e) => return Err((StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"))),
    };
    let key = kubeconfig_key(name);
    let Some(sealed_kc) = s.store.setting(&key).await.ok().flatten() else {
        return Ok(None);
    };
    let plain = sealed::open(&s.seal_key, &key, &sealed_kc).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let bootstrap = match &cluster.k3s.bootstrap {
        Some(b) => s.store.machine(b).await.ok().flatten().map(|r| r.spec),
        None => None,
    };
    let Some(api) = k3s::api_url(&cluster, bootstrap.as_ref()) else {
        return Err((StatusCode::CONFLICT, format!("cluster {name} has no API endpoint and no bootstrap server")));
    };
    k3s::reduce_kubeconfig(&String::from_utf8_lossy(&plain), Some(&api))
        .map(Some)
        .map_err(|e| (StatusCode::CONFLICT, format!("cluster {name}: the recorded kubeconfig is refused ({e}); run `bootplane cluster reset {name}`")))
}

/// `GET /v1/clusters/{name}/kubeconfig` (admin): the bootstrap server's kubeconfig,
/// pointed at the cluster's API endpoint instead of 127.0.0.1.
pub async fn kubeconfig(State(s): State<Shared>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    match admin_kubeconfig(&s, &name).await {
        Ok(Some(text)) => ([(header::CONTENT_TYPE, "application/yaml"), (header::CACHE_CONTROL, "no-store")], text).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("cluster {name}: its bootstrap server has not reported a kubeconfig yet")),
        Err((code, e)) => error(code, e),
    }
}

/// Forgets `keys` of cluster `name` (admin) and records `what` as an event.
async fn forget(s: &Shared, peer: SocketAddr, headers: &HeaderMap, name: &str, keys: &[String], what: &str) -> Result<(), Response> {
    require_admin(s, headers)?;
    match s.store.cluster(name).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(error(StatusCode::NOT_FOUND, format!("no cluster named `{name}`"))),
        Err(e) => return Err(store_error(e)),
    }
    for key in keys {
        s.store.delete_setting(key).await.map_err(store_error)?;
    }
    s.sink
        .push(bootplane_store::BatchItem::Event(bootplane_store::NewEvent::new(None, what, Some(peer.ip().to_string()), json!({ "cluster": name }))))
        .await;
    Ok(())
}

/// `POST /v1/clusters/{name}/reset` (admin): forgets the recorded CA and kubeconfig, so
/// the bootstrap server may found the cluster anew, and its tokens, so the new cluster
/// shares nothing with the old one.
pub async fn reset(State(s): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    match forget(&s, peer, &headers, &name, &[ca_key(&name), kubeconfig_key(&name), tokens_key(&name)], "cluster.reset").await {
        Ok(()) => axum::Json(json!({ "cluster": name, "reset": true })).into_response(),
        Err(r) => r,
    }
}

/// `POST /v1/clusters/{name}/rotate-tokens` (admin): new server and agent tokens for
/// every later join. The running cluster still expects the old ones until an operator
/// rotates them there, so the new values go to the admin (and nowhere else) with the
/// commands to run.
pub async fn rotate_tokens(State(s): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(r) = forget(&s, peer, &headers, &name, &[tokens_key(&name)], "cluster.tokens_rotated").await {
        return r;
    }
    match tokens(&s, &name).await {
        Ok(t) => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({ "cluster": name, "server_token": t.server, "agent_token": t.agent })),
        )
            .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("cluster {name}: new tokens not stored: {e}")),
    }
}
