//! The machine API (admin token), the per-machine endpoints a booting machine uses (its
//! config, gated by state; its report, gated by its credential), and the event log.

use crate::auth::{bearer, require_admin, unauthorized};
use crate::boot::server_url;
use crate::Shared;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bootplane_core::model::MachineRecord;
use bootplane_core::state::Trigger;
use bootplane_core::{credential, MachineState};
use bootplane_store::{Event, EventQuery, NewEvent, StoreError, Transitioned};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::NotFound(_) => error(StatusCode::NOT_FOUND, e),
        StoreError::Transition(_) | StoreError::Conflict(_) => error(StatusCode::CONFLICT, e),
        StoreError::Backend(_) => {
            tracing::error!("{e}");
            error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable; retry")
        }
    }
}

/// A machine as the API shows it: its spec, flattened, plus runtime fields.
#[derive(Serialize)]
pub struct MachineView<'a> {
    #[serde(flatten)]
    spec: &'a bootplane_core::MachineSpec,
    state: MachineState,
    install_attempts: u32,
    observed: &'a bootplane_core::Observed,
    last_seen: Option<chrono::DateTime<chrono::Utc>>,
    created: chrono::DateTime<chrono::Utc>,
    updated: chrono::DateTime<chrono::Utc>,
}

impl<'a> From<&'a MachineRecord> for MachineView<'a> {
    fn from(r: &'a MachineRecord) -> Self {
        MachineView {
            spec: &r.spec,
            state: r.state,
            install_attempts: r.install_attempts,
            observed: &r.observed,
            last_seen: r.last_seen,
            created: r.created,
            updated: r.updated,
        }
    }
}

pub async fn healthz(State(s): State<Shared>) -> Response {
    match s.store.machine_counts().await {
        Ok(_) => "ok\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
    }
}

pub async fn list_machines(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    match s.store.machines().await {
        Ok(ms) => Json(ms.iter().map(MachineView::from).collect::<Vec<_>>()).into_response(),
        Err(e) => store_error(e),
    }
}

pub async fn show_machine(State(s): State<Shared>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    match s.store.machine(&name).await {
        Ok(Some(m)) => {
            let events = s.store.events(EventQuery { machine: Some(name), after: None, limit: 50 }).await.unwrap_or_default();
            let mut v = serde_json::to_value(MachineView::from(&m)).unwrap_or_default();
            v["events"] = json!(events);
            Json(v).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no machine named `{name}`")),
        Err(e) => store_error(e),
    }
}

async fn admin_transition(
    s: Shared,
    headers: HeaderMap,
    peer: SocketAddr,
    name: String,
    to: MachineState,
    trigger: Trigger,
) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    match s.store.transition(&name, to, trigger, Some(peer.ip().to_string()), json!("admin API")).await {
        Ok(t) => {
            let changed = matches!(t, Transitioned::Changed { .. });
            let mut v = serde_json::to_value(MachineView::from(t.record())).unwrap_or_default();
            v["changed"] = json!(changed);
            Json(v).into_response()
        }
        Err(e) => store_error(e),
    }
}

pub async fn provision(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    admin_transition(s, headers, peer, name, MachineState::Provision, Trigger::AdminProvision).await
}

pub async fn retire(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    admin_transition(s, headers, peer, name, MachineState::Retired, Trigger::AdminRetire).await
}

async fn refused(s: &Shared, name: &str, source: Option<String>, why: &str) {
    s.metrics.reports.get_or_create(&crate::metrics::ResultLabels { result: "refused".into() }).inc();
    // A hostile name is not worth recording verbatim.
    let machine = Some(name).filter(|n| bootplane_core::model::is_dns_label(n));
    s.sink
        .push(bootplane_store::BatchItem::Event(NewEvent::new(machine, "report.refused", source, json!({ "reason": why }))))
        .await;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    state: ReportState,
    #[serde(default)]
    detail: serde_json::Value,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ReportState {
    Installed,
    Failed,
}

pub async fn report(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let source = Some(peer.ip().to_string());
    let refuse = |why: &'static str| refused(&s, &name, source.clone(), why);
    let rec = match s.store.machine(&name).await {
        Ok(Some(r)) => r,
        // Unknown machines get the same answer as a wrong credential: names are not probed.
        Ok(None) => {
            refuse("unknown machine").await;
            return unauthorized("credential refused");
        }
        Err(e) => return store_error(e),
    };
    let Some(presented) = bearer(&headers) else {
        refuse("no credential").await;
        return unauthorized("report needs `Authorization: Bearer $BOOTPLANE_CREDENTIAL` from /etc/bootplane/machine.env");
    };
    if !credential::verify(&s.credential_secret, &name, rec.credential_generation, presented) {
        refuse("wrong or retired credential").await;
        return unauthorized("credential refused (wrong, or already used)");
    }
    let body: ReportBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("report body: {e}; expected {{\"state\":\"installed\"|\"failed\",\"detail\":...}}"))
        }
    };
    let to = match body.state {
        ReportState::Installed => MachineState::Installed,
        ReportState::Failed => MachineState::Failed,
    };
    let detail = json!({ "reported": body.detail });
    match s.store.transition(&name, to, Trigger::Report, source, detail).await {
        Ok(t) => {
            s.metrics.reports.get_or_create(&crate::metrics::ResultLabels { result: to.as_str().into() }).inc();
            Json(json!({ "machine": name, "state": t.record().state })).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// The machine's Ignition config, served only while it is provisioning. The first fetch
/// moves it to `installing`.
pub async fn ignition(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let source = Some(peer.ip().to_string());
    let rec = match s.store.machine(&name).await {
        Ok(Some(r)) if r.state.serves_installer() => r,
        Ok(other) => {
            if let Some(r) = other {
                s.sink.push(bootplane_store::BatchItem::Event(NewEvent::new(
                    Some(&name),
                    "config.refused",
                    source,
                    json!({ "state": r.state }),
                ))).await;
            }
            return error(StatusCode::NOT_FOUND, "no config is being served for this machine");
        }
        Err(e) => return store_error(e),
    };
    let rec = if rec.state == MachineState::Provision {
        match s
            .store
            .transition(&name, MachineState::Installing, Trigger::ConfigFetched, source.clone(), json!("ignition"))
            .await
        {
            Ok(t) => t.record().clone(),
            Err(e) => return store_error(e),
        }
    } else {
        rec
    };
    let bundle = match &rec.spec.bundle {
        Some(b) => s.store.bundle(b).await.ok().flatten(),
        None => None,
    };
    let mut templates = Vec::new();
    for t in &rec.spec.templates {
        match s.store.template(t).await {
            Ok(Some(text)) => templates.push((t.clone(), text)),
            _ => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("template {t} of machine {name} is not in the store")),
        }
    }
    let cred = credential::derive(&s.credential_secret, &name, rec.credential_generation);
    let ssh_keys: Vec<String> = s
        .store
        .setting("config.ssh_authorized_keys")
        .await
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    let (cfg, spec_version) = match bootplane_core::config::assemble(&rec.spec, &templates, bundle.as_ref(), &server_url(&s, &headers), &cred, &ssh_keys) {
        Ok(x) => x,
        Err(e) => {
            // The message names the machine and the Butane problem; it carries no secret.
            let msg = e.to_string();
            s.sink
                .push(bootplane_store::BatchItem::Event(NewEvent::new(Some(&name), "config.error", source, json!(msg))))
                .await;
            return error(StatusCode::INTERNAL_SERVER_ERROR, msg);
        }
    };
    s.sink.push(bootplane_store::BatchItem::Event(NewEvent::new(
        Some(&name),
        "config.served",
        source,
        json!({ "kind": "ignition", "spec": spec_version }),
    ))).await;
    ([(header::CONTENT_TYPE, "application/vnd.coreos.ignition+json"), (header::CACHE_CONTROL, "no-store")], bootplane_butane::to_json(&cfg, false))
        .into_response()
}

#[derive(Deserialize)]
pub struct EventsQuery {
    machine: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
    #[serde(default)]
    follow: bool,
}

fn sse(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.id.to_string())
        .event(e.kind.clone())
        .json_data(e)
        .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"))
}

pub async fn events(State(s): State<Shared>, headers: HeaderMap, Query(q): Query<EventsQuery>) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    let wants_stream = q.follow
        || headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"));
    if !wants_stream {
        return match s.store.events(EventQuery { machine: q.machine, after: q.after, limit: q.limit.unwrap_or(100) }).await {
            Ok(ev) => Json(ev).into_response(),
            Err(e) => store_error(e),
        };
    }
    // Live stream: poll the store (so events from every instance appear), woken early
    // when this instance's sink lands a batch.
    let start = match q.after {
        Some(a) => a,
        None => s
            .store
            .events(EventQuery { machine: None, after: None, limit: 1 })
            .await
            .ok()
            .and_then(|v| v.last().map(|e| e.id))
            .unwrap_or(0),
    };
    let machine = q.machine;
    let stream = futures_util::stream::unfold((s, start), move |(s, after)| {
        let machine = machine.clone();
        async move {
            loop {
                let written = s.sink.written.clone();
                let notified = written.notified();
                match s.store.events(EventQuery { machine: machine.clone(), after: Some(after), limit: 500 }).await {
                    Ok(ev) if !ev.is_empty() => {
                        let last = ev.last().map(|e| e.id).unwrap_or(after);
                        let items: Vec<Result<SseEvent, std::convert::Infallible>> = ev.iter().map(|e| Ok(sse(e))).collect();
                        return Some((futures_util::stream::iter(items), (s, last)));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("event stream: {e}"),
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    })
    .flatten();
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
