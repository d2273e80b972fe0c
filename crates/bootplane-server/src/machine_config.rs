//! The per-machine configs a booting machine fetches under `/v1/machines/{name}/...`:
//! its Ignition, its NoCloud seed (Ubuntu), and its installer config (Flatcar's live
//! system). All are served only while the machine's state asks for an install; the
//! Ignition and `user-data` fetches move it from `provision` to `installing`. Nothing
//! here contains a cluster token: those come from `/join` with the machine's credential.

use crate::record::{attempt_key, event, refusal_event};
use crate::respond::{error, server_url, store_error};
use crate::Shared;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bootplane_core::config::{assemble, Inputs};
use bootplane_core::k3s;
use bootplane_core::model::{Bundle, Cluster, MachineRecord, MachineSpec, OsKind};
use bootplane_core::node::K3sInputs;
use bootplane_core::state::Trigger;
use bootplane_core::{credential, MachineState};
use serde_json::json;
use std::net::SocketAddr;

/// Everything a machine's config is built from, loaded from the store.
pub struct Loaded {
    pub record: MachineRecord,
    pub bundle: Option<Bundle>,
    pub templates: Vec<(String, String)>,
    pub ssh_keys: Vec<String>,
    pub cluster: Option<(Cluster, Option<MachineSpec>, Option<Bundle>)>,
    /// Where the machine reaches bootplane for its secrets: the HTTPS listener when
    /// there is one (see `ca_pem`), else the advertise URL.
    pub server: String,
    pub credential: String,
    /// The k3s node password (`credential::node_password`), when it is in a cluster.
    pub node_password: String,
    pub ca_pem: Option<String>,
}

impl Loaded {
    pub fn os(&self) -> OsKind {
        self.bundle.as_ref().map(|b| b.os).unwrap_or(OsKind::Generic)
    }

    /// The machine's place in its cluster, if it is in one.
    pub fn node(&self) -> Result<Option<k3s::Node<'_>>, k3s::K3sError> {
        match &self.cluster {
            Some((c, bootstrap, _)) => k3s::node(c, &self.record.spec, bootstrap.as_ref(), self.os()).map(Some),
            None => Ok(None),
        }
    }

    pub fn inputs(&self) -> Result<Inputs<'_>, k3s::K3sError> {
        let airgap = self.cluster.as_ref().and_then(|(_, _, a)| a.as_ref());
        let k3s = self.node()?.map(|node| K3sInputs { node, airgap, node_password: &self.node_password });
        Ok(Inputs {
            spec: &self.record.spec,
            templates: &self.templates,
            bundle: self.bundle.as_ref(),
            server: &self.server,
            credential: &self.credential,
            ssh_keys: &self.ssh_keys,
            k3s,
            ca_pem: self.ca_pem.as_deref(),
        })
    }
}

pub async fn load(s: &Shared, record: MachineRecord, headers: &HeaderMap) -> Result<Loaded, Response> {
    let spec = &record.spec;
    // The revision the machine's install started with, while its attempt is on record.
    let pinned = match s.store.setting(&attempt_key(&spec.name)).await {
        Ok(Some(a)) => serde_json::from_str::<bootplane_core::attempt::Attempt>(&a).ok().and_then(|a| a.bundle_revision),
        _ => None,
    };
    let bundle = match (&spec.bundle, pinned) {
        (Some(b), Some(rev)) => match s.store.bundle_revision(b, rev).await.map_err(store_error)? {
            Some(pinned) => Some(pinned),
            None => s.store.bundle(b).await.map_err(store_error)?,
        },
        (Some(b), None) => s.store.bundle(b).await.map_err(store_error)?,
        (None, _) => None,
    };
    let mut templates = Vec::new();
    for t in &spec.templates {
        match s.store.template(t).await {
            Ok(Some(text)) => templates.push((t.clone(), text)),
            _ => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("template {t} of machine {} is not in the store", spec.name))),
        }
    }
    let ssh_keys: Vec<String> = s
        .store
        .setting(bootplane_config::stored::SSH_AUTHORIZED_KEYS)
        .await
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    let cluster = match &spec.cluster {
        Some(c) => match s.store.cluster(c).await.map_err(store_error)? {
            Some(c) => {
                let bootstrap = match &c.k3s.bootstrap {
                    Some(b) => s.store.machine(b).await.map_err(store_error)?.map(|r| r.spec),
                    None => None,
                };
                let airgap = match &c.k3s.airgap_bundle {
                    Some(b) => s.store.bundle(b).await.map_err(store_error)?,
                    None => None,
                };
                Some((c, bootstrap, airgap))
            }
            None => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("cluster {c} of machine {} is not in the store", spec.name))),
        },
        None => None,
    };
    let credential = credential::derive(&s.credential_secret, &spec.name, record.credential_generation);
    let (server, ca_pem) = match (s.tls_ca.get(), s.settings.secure_url()) {
        (Some(ca), Some(url)) => (url, Some(ca.clone())),
        _ => (server_url(s, headers), None),
    };
    let node_password = credential::node_password(&s.credential_secret, &spec.name);
    Ok(Loaded { bundle, templates, ssh_keys, cluster, server, credential, node_password, record, ca_pem })
}

/// The machine, if its state allows serving `what` and `nonce` claims it (the current
/// attempt's, from its requester, once per kind); counts the attempt at its first fetch
/// and moves `provision` to `installing` when `starts_install`.
async fn gated(s: &Shared, name: &str, source: Option<String>, what: &str, nonce: Option<&str>, starts_install: bool) -> Result<MachineRecord, Response> {
    let rec = match s.store.machine(name).await {
        Ok(Some(r)) if r.state.serves_installer() => r,
        Ok(other) => {
            if let Some(r) = other {
                refusal_event(s, Some(name), "config.refused", source, json!({ "kind": what, "state": r.state })).await;
            }
            return Err(error(StatusCode::NOT_FOUND, "no config is being served for this machine"));
        }
        Err(e) => return Err(store_error(e)),
    };
    let counted = claim(s, &rec, source.clone(), what, nonce).await?;
    if counted {
        if let Err(e) = s.store.note_install_attempt(name).await {
            return Err(store_error(e));
        }
    }
    if starts_install && rec.state == MachineState::Provision {
        return match s.store.transition(name, MachineState::Installing, Trigger::ConfigFetched, source, json!(what)).await {
            Ok(t) => Ok(t.record().clone()),
            Err(e) => Err(store_error(e)),
        };
    }
    Ok(rec)
}

/// Claims `kind` of `rec`'s current attempt with `nonce`; true when this fetch opens the
/// attempt (it is counted then). Refusals are events, alarms when someone other than
/// the requester seems to hold the nonce.
async fn claim(s: &Shared, rec: &MachineRecord, source: Option<String>, kind: &str, nonce: Option<&str>) -> Result<bool, Response> {
    use bootplane_core::attempt::{Attempt, Claim, Refusal};
    let name = rec.name();
    let from: Option<std::net::IpAddr> = source.as_deref().and_then(|s| s.parse().ok());
    let refuse = |r: Refusal| refused_claim(s, name, source.clone(), kind, r);
    let Some(nonce) = nonce.filter(|n| bootplane_core::attempt::is_nonce(n)) else {
        return Err(refuse(Refusal::WrongNonce).await);
    };
    let key = attempt_key(name);
    // Compare-and-set, so two fetches racing for one first claim cannot both win.
    for _ in 0..5 {
        let stored = match s.store.setting(&key).await {
            Ok(Some(v)) => v,
            Ok(None) => return Err(refuse(Refusal::NoAttempt).await),
            Err(e) => return Err(store_error(e)),
        };
        let Ok(attempt) = serde_json::from_str::<Attempt>(&stored) else { return Err(refuse(Refusal::NoAttempt).await) };
        let leased = match (attempt.ip, from) {
            (Some(a), Some(f)) if a != f => crate::handshake::leased_to(s, &rec.spec.macs, f).await,
            _ => false,
        };
        let now = chrono::Utc::now().timestamp();
        match attempt.check(nonce, kind, from, leased, now) {
            Ok(Claim::Retry) => {
                // Served (Ignition and the installers retry a lost answer), but loudly:
                // from the outside, a host that spoofs the machine's MAC and address
                // looks exactly like this.
                let reason = format!(
                    "{kind} fetched again from the same address within {} s: a lost answer, or a host spoofing the machine's address",
                    bootplane_core::attempt::REFETCH_WINDOW_SECS
                );
                crate::record::alarm_event(s, name, "config.alarm", source.clone(), json!({ "kind": kind, "reason": reason, "refetch": true })).await;
                return Ok(false);
            }
            Ok(Claim::First) => {
                let next = serde_json::to_string(&attempt.with_fetch(kind, from, now)).expect("attempts serialize");
                match s.store.replace_setting(&key, &stored, &next).await {
                    Ok(true) => return Ok(!attempt.counted),
                    Ok(false) => continue,
                    Err(e) => return Err(store_error(e)),
                }
            }
            Err(r) => return Err(refuse(r).await),
        }
    }
    Err(error(StatusCode::SERVICE_UNAVAILABLE, "config fetch contended; retry"))
}

/// The answer to a refused claim, recorded as an event: an alarm when someone other
/// than the requester seems to hold the nonce.
async fn refused_claim(s: &Shared, name: &str, source: Option<String>, kind: &str, r: bootplane_core::attempt::Refusal) -> Response {
    use bootplane_core::attempt::Refusal;
    let status = match &r {
        Refusal::SecondFetch { .. } => StatusCode::CONFLICT,
        _ => StatusCode::FORBIDDEN,
    };
    let detail = json!({ "kind": kind, "reason": r.to_string() });
    // Alarms are never dropped (not even past the source's event budget).
    if r.is_alarm() {
        crate::record::alarm_event(s, name, "config.alarm", source, detail).await;
    } else {
        refusal_event(s, Some(name), "config.refused", source, detail).await;
    }
    error(status, format!("{kind} of {name} refused: {r}"))
}


/// [`gated`], then [`load`].
async fn gated_load(s: &Shared, name: &str, source: Option<String>, headers: &HeaderMap, what: &str, nonce: Option<&str>, starts_install: bool) -> Result<Loaded, Response> {
    let rec = gated(s, name, source, what, nonce, starts_install).await?;
    load(s, rec, headers).await
}

/// A config that cannot be built: the detail (which may quote the machine's templates)
/// goes to the event log for the operator; the unauthenticated requester only gets an
/// incident id to look it up by.
async fn config_error(s: &Shared, name: &str, source: Option<String>, msg: String) -> Response {
    let incident = hex::encode(rand::random::<[u8; 6]>());
    event(s, name, "config.error", source, json!({ "incident": incident, "error": msg })).await;
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the config of machine {name} could not be built (incident {incident}); see `bootplane machines show {name}`"),
    )
}

#[derive(Clone, Copy)]
enum Kind {
    Ignition,
    /// The live installer system's Ignition (fcos, flatcar).
    Installer,
    /// NoCloud `user-data` (Ubuntu autoinstall).
    UserData,
    /// `machine.env` for a live ISO's gate (fcos).
    LiveEnv,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ignition => "ignition",
            Kind::Installer => "installer",
            Kind::UserData => "user-data",
            Kind::LiveEnv => bootplane_core::attempt::LIVE_ENV,
        }
    }

    /// (content type, body, spec version if Ignition). `nonce` is the claimed one.
    fn build(self, l: &Loaded, nonce: &str) -> Result<(&'static str, String, Option<String>), String> {
        const IGN: &str = "application/vnd.coreos.ignition+json";
        match self {
            Kind::Ignition => {
                let (cfg, v) = assemble(&l.inputs().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
                Ok((IGN, bootplane_butane::to_json(&cfg, false), Some(v)))
            }
            Kind::Installer => {
                let cfg = match &l.bundle {
                    Some(b) if b.os == OsKind::Flatcar => {
                        bootplane_core::os::flatcar::installer_config(&l.record.spec, b, &l.server, &l.credential, nonce, l.ca_pem.as_deref(), &l.ssh_keys)
                            .map_err(|e| e.to_string())?
                    }
                    Some(b) if b.os == OsKind::Fcos => bootplane_core::os::fcos::live_config(&l.record.spec, &l.server, &l.credential, l.ca_pem.as_deref()),
                    _ => return Err("only fcos and flatcar bundles have an installer (live system) config".into()),
                };
                let spec = cfg["ignition"]["version"].as_str().map(str::to_string);
                Ok((IGN, cfg.to_string(), spec))
            }
            Kind::LiveEnv => match &l.bundle {
                Some(b) if b.os == OsKind::Fcos => Ok(("text/plain", bootplane_core::ignition::machine_env(&l.server, &l.record.spec.name, &l.credential), None)),
                _ => Err("only fcos bundles install from a live ISO".into()),
            },
            Kind::UserData => {
                let text = bootplane_core::os::ubuntu::user_data(&l.inputs().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
                Ok(("text/cloud-config", text, None))
            }
        }
    }

    /// Whether serving this means the install has begun (`provision` -> `installing`).
    fn starts_install(self) -> bool {
        !matches!(self, Kind::Installer | Kind::LiveEnv)
    }
}

/// Each machine's last compiled Ignition or seed, keyed by a digest of everything it was
/// built from (spec, templates, bundle, cluster, credential generation, server, CA), so a
/// retry or a second kind of the same attempt does not compile Butane again. One entry
/// per machine; emptied when it holds more machines than a large site has.
#[derive(Default)]
pub struct Cache(std::sync::Mutex<std::collections::HashMap<String, (String, Built)>>);

type Built = (&'static str, String, Option<String>);

impl Cache {
    fn get(&self, machine: &str, key: &str) -> Option<Built> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(machine).filter(|(k, _)| k == key).map(|(_, b)| b.clone())
    }
    fn put(&self, machine: &str, key: String, built: Built) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= 16_384 {
            m.clear();
        }
        m.insert(machine.to_string(), (key, built));
    }
}

/// The digest of what `kind` of `l` is built from; `None` for what is not cached (the
/// live installer config, which names the attempt's nonce).
fn cache_key(l: &Loaded, kind: Kind) -> Option<String> {
    use sha2::Digest as _;
    if matches!(kind, Kind::Installer | Kind::LiveEnv) {
        return None;
    }
    let inputs = json!([kind.name(), l.record.spec, l.record.credential_generation, l.templates, l.bundle, l.cluster, l.ssh_keys, l.server, l.ca_pem]);
    Some(hex::encode(sha2::Sha256::digest(inputs.to_string().as_bytes())))
}

async fn serve(s: Shared, peer: SocketAddr, headers: HeaderMap, name: String, nonce: Option<String>, kind: Kind) -> Response {
    let source = Some(peer.ip().to_string());
    let loaded = match gated_load(&s, &name, source.clone(), &headers, kind.name(), nonce.as_deref(), kind.starts_install()).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let key = cache_key(&loaded, kind);
    let built = match key.as_deref().and_then(|k| s.config_cache.get(&name, k)) {
        Some(hit) => Ok(hit),
        None => {
            s.metrics.configs_compiled.inc();
            let b = kind.build(&loaded, nonce.as_deref().unwrap_or_default());
            if let (Ok(b), Some(k)) = (&b, key) {
                s.config_cache.put(&name, k, b.clone());
            }
            b
        }
    };
    match built {
        Ok((ctype, body, spec)) => {
            event(&s, &name, "config.served", source, json!({ "kind": kind.name(), "spec": spec })).await;
            ([(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "no-store")], body).into_response()
        }
        Err(msg) => config_error(&s, &name, source, msg).await,
    }
}

/// `?nonce=`: the attempt's nonce, from the config URL in the machine's boot answer.
#[derive(serde::Deserialize)]
pub struct NonceQuery {
    nonce: Option<String>,
}

pub async fn ignition(State(s): State<Shared>, ConnectInfo(p): ConnectInfo<SocketAddr>, h: HeaderMap, Path(name): Path<String>, Query(q): Query<NonceQuery>) -> Response {
    serve(s, p, h, name, q.nonce, Kind::Ignition).await
}

pub async fn installer(State(s): State<Shared>, ConnectInfo(p): ConnectInfo<SocketAddr>, h: HeaderMap, Path(name): Path<String>, Query(q): Query<NonceQuery>) -> Response {
    serve(s, p, h, name, q.nonce, Kind::Installer).await
}

/// A live ISO gate's `machine.env` (its credential for the disk-written report), under
/// the attempt's nonce like every other config.
pub async fn live_env(State(s): State<Shared>, ConnectInfo(p): ConnectInfo<SocketAddr>, h: HeaderMap, Path(name): Path<String>, Query(q): Query<NonceQuery>) -> Response {
    serve(s, p, h, name, q.nonce, Kind::LiveEnv).await
}

/// NoCloud `user-data` under the seed URL the boot answer names (`.../seed/{nonce}/`).
pub async fn user_data(State(s): State<Shared>, ConnectInfo(p): ConnectInfo<SocketAddr>, h: HeaderMap, Path((name, nonce)): Path<(String, String)>) -> Response {
    serve(s, p, h, name, Some(nonce), Kind::UserData).await
}

/// NoCloud `meta-data`.
pub async fn meta_data(State(s): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Path((name, nonce)): Path<(String, String)>) -> Response {
    match gated(&s, &name, Some(peer.ip().to_string()), "meta-data", Some(&nonce), false).await {
        Ok(r) => {
            let text = bootplane_core::os::ubuntu::meta_data(&name, r.credential_generation, r.spec.short_hostname());
            ([(header::CONTENT_TYPE, "text/yaml"), (header::CACHE_CONTROL, "no-store")], text).into_response()
        }
        Err(r) => r,
    }
}

/// NoCloud `vendor-data`: cloud-init asks for it; bootplane has none to give.
pub async fn vendor_data(State(s): State<Shared>, Path((name, _nonce)): Path<(String, String)>) -> Response {
    match s.store.machine(&name).await {
        Ok(Some(r)) if r.state.serves_installer() => ([(header::CACHE_CONTROL, "no-store")], "").into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, "no config is being served for this machine"),
        Err(e) => store_error(e),
    }
}
