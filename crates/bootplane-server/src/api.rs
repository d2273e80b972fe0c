//! The machine API (admin token), the per-machine endpoints a booting machine uses (its
//! config, gated by state; its report, gated by its credential), and the event log.

use crate::auth::{bearer, require_admin, unauthorized};
use crate::respond::{error, store_error};
use crate::Shared;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crate::service::{self, MachineView};
use bootplane_core::state::Trigger;
use bootplane_core::{credential, MachineState};
use bootplane_store::{Event, EventQuery, StoreError};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// A service answer as JSON, or its refusal.
fn answer<T: serde::Serialize>(r: service::Result<T>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => service_error(e),
    }
}

/// A service refusal as the JSON API answers it.
pub(crate) fn service_error(e: crate::service::ServiceError) -> Response {
    use crate::service::ServiceError::*;
    match e {
        NotFound(m) => error(StatusCode::NOT_FOUND, m),
        Conflict(m) => error(StatusCode::CONFLICT, m),
        Invalid(m) => error(StatusCode::BAD_REQUEST, m),
        Upstream(m) => error(StatusCode::BAD_GATEWAY, m),
        Unavailable(_) => error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable; retry"),
    }
}

/// `GET /` on a listener without the admin API (the dashboard is on `server.admin_listen`
/// then): says what this server is and where its entry points are.
pub async fn index() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "bootplane {}\n\n\
             machines:  GET /boot.ipxe (iPXE entry script), /v1/boot/ipxe?mac=...\n\
             operators: bootplane machines list | show NAME, or GET /v1/machines with the admin token\n\
             health:    GET /healthz, GET /metrics\n\n\
             The web dashboard and the admin API are on the admin listener (server.admin_listen).\n",
            env!("CARGO_PKG_VERSION")
        ),
    )
        .into_response()
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
    answer(service::machines(&s).await)
}

pub async fn show_machine(State(s): State<Shared>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    match service::machine_with_events(&s, &name, 50).await {
        Ok((m, events)) => {
            let mut v = serde_json::to_value(MachineView::from(&m)).unwrap_or_default();
            v["events"] = json!(events);
            Json(v).into_response()
        }
        Err(e) => service_error(e),
    }
}

/// `GET /v1/fleet`: every machine with the furthest step of its latest boot, and counts.
pub async fn fleet(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    answer(service::fleet(&s).await)
}

/// `GET /v1/discovered`: machines seen but not in the inventory, with their adoption YAML.
pub async fn discovered(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    answer(service::discovered(&s).await)
}

/// `GET /v1/machines/{name}/preview`: what the machine would receive now, redacted.
pub async fn preview(State(s): State<Shared>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    answer(service::preview(&s, &name, &headers).await)
}

/// `POST /v1/machines/{name}/provision` `{"force":false,"no_drain":false}` (admin; the
/// body is optional): an installed k3s node out of its cluster first (cordon, drain,
/// delete node), then `provision`; the answer is the machine with `changed` and the
/// cluster `steps`.
pub async fn provision(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    operator_change(&s, peer, &headers, &name, &body, MachineState::Provision).await
}

/// `POST /v1/machines/{name}/retire`, with the same body and answer: a k3s node out of
/// its cluster, then `retired`.
pub async fn retire(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    operator_change(&s, peer, &headers, &name, &body, MachineState::Retired).await
}

async fn operator_change(s: &Shared, peer: SocketAddr, headers: &HeaderMap, name: &str, body: &[u8], to: MachineState) -> Response {
    if let Err(r) = require_admin(s, headers) {
        return r;
    }
    let op = if to == MachineState::Retired { "retire" } else { "provision" };
    let o = match node_options(body, op) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let actor = service::Actor::from(peer, "admin API");
    match to {
        MachineState::Retired => answer(service::retire(s, name, o.force, o.no_drain, &actor).await),
        _ => answer(service::provision(s, name, o.force, o.no_drain, &actor).await),
    }
}

async fn refused(s: &Shared, name: &str, source: Option<String>, why: &str) {
    s.metrics.reports.get_or_create(&crate::metrics::ResultLabels { result: "refused".into() }).inc();
    // A hostile name is not worth recording verbatim.
    let machine = Some(name).filter(|n| bootplane_core::model::is_dns_label(n));
    crate::record::refusal_event(s, machine, "report.refused", source, json!({ "reason": why })).await;
}

/// Whether a report from `from` may speak for `rec`: before `written`, only the
/// install attempt's requester or an address bootplane's DHCP leased to the machine;
/// from `written` on (the installed system, possibly on its final address), in full
/// DHCP mode an address leased to the machine or its configured one; without
/// bootplane's DHCP there is nothing to check an installed system's address against.
async fn vouched_reporter(s: &Shared, rec: &bootplane_core::model::MachineRecord, from: std::net::IpAddr) -> Result<(), String> {
    let leased = || crate::handshake::leased_to(s, &rec.spec.macs, from);
    match rec.state {
        MachineState::Provision | MachineState::Installing => {
            let attempt = crate::record::current_attempt(s, rec).await.map_err(|e| e.to_string())?;
            match attempt.and_then(|a| a.ip) {
                Some(ip) if ip == from => Ok(()),
                _ if leased().await => Ok(()),
                Some(ip) => Err(format!("the install answer went to {ip}, not to {from}")),
                None => Err("no install attempt is open (the machine has not been answered with its installer)".into()),
            }
        }
        MachineState::Written if s.handshakes.mode() == Some(bootplane_dhcp::Mode::Full) => {
            let configured = rec.spec.ip.map(std::net::IpAddr::V4) == Some(from)
                || rec
                    .spec
                    .network
                    .as_ref()
                    .and_then(|n| n.address.as_deref())
                    .and_then(|a| a.split('/').next()?.parse().ok())
                    == Some(from);
            if configured || leased().await {
                Ok(())
            } else {
                Err(format!("{from} is neither an address bootplane's DHCP leased to the machine nor its configured one"))
            }
        }
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    state: ReportState,
    #[serde(default)]
    detail: serde_json::Value,
    /// Bootstrap server only: SHA-256 of its cluster CA (`server-ca.crt`).
    #[serde(default)]
    ca_hash: Option<String>,
    /// Bootstrap server only: its `/etc/rancher/k3s/k3s.yaml`, base64.
    #[serde(default)]
    kubeconfig: Option<String>,
    /// On failure: the unit that failed and its last log lines (base64).
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    log_tail: Option<String>,
}

fn unbase64(v: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(v.trim()).ok()
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ReportState {
    /// From the installer environment, before it reboots into the new system.
    Written,
    Installed,
    Failed,
}

pub async fn report(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Extension(secure): axum::Extension<crate::Secure>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = s.refuse_insecure(secure) {
        return r;
    }
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
    // The credential travels in a plain-HTTP config: holding it does not make the
    // reporter the machine. Until `written` the report must come from where the
    // installer answer went (or an address bootplane leased to the machine).
    if let Err(why) = vouched_reporter(&s, &rec, peer.ip()).await {
        crate::record::alarm_event(&s, &name, "report.alarm", source.clone(), json!({ "reason": why })).await;
        return error(StatusCode::FORBIDDEN, format!("report for {name} refused: {why}"));
    }
    let body: ReportBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("report body: {e}; expected {{\"state\":\"written\"|\"installed\"|\"failed\",\"detail\":...}}"),
            )
        }
    };
    let to = match body.state {
        ReportState::Written => MachineState::Written,
        ReportState::Installed => MachineState::Installed,
        ReportState::Failed => MachineState::Failed,
    };
    // The installer's retry after a lost answer: already recorded.
    if rec.state == MachineState::Written && to == MachineState::Written {
        return Json(json!({ "machine": name, "state": rec.state })).into_response();
    }
    // A report the state table refuses changes nothing, the cluster handover included.
    if let Err(e) = rec.state.check(to, Trigger::Report) {
        refuse("report not expected in this state").await;
        return error(StatusCode::CONFLICT, format!("machine {name} is {}: {e}", rec.state));
    }
    let mut detail = json!({ "reported": body.detail });
    if let Some(unit) = &body.unit {
        detail["unit"] = json!(unit);
    }
    if let Some(tail) = body.log_tail.as_deref().and_then(unbase64) {
        // Enough to see why; the full journal stays on the machine.
        let text = String::from_utf8_lossy(&tail);
        let start = text.len().saturating_sub(8192);
        let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        detail["log_tail"] = json!(&text[start..]);
    }
    let handover = match (to, &body.ca_hash, &body.kubeconfig) {
        (MachineState::Installed, Some(ca), Some(kc)) => match unbase64(kc) {
            Some(kubeconfig) => Some(crate::cluster::Handover { ca_hash: ca.trim().to_string(), kubeconfig }),
            None => return error(StatusCode::BAD_REQUEST, "report: kubeconfig is not base64"),
        },
        // A bootstrap server is `installed` only with what its joiners and the admin
        // need from it; without them its cluster could never form.
        (MachineState::Installed, _, _) if crate::cluster::is_bootstrap(&s, &rec.spec).await => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("report: {name} is its cluster's bootstrap server; its `installed` report must carry `ca_hash` and `kubeconfig`"),
            )
        }
        _ => None,
    };
    let (cluster, writes) = match handover {
        Some(h) => match crate::cluster::handover_settings(&s, &rec.spec, h).await {
            Ok(Some((c, w))) => {
                detail["cluster_ca"] = json!("recorded");
                (Some(c), w)
            }
            Ok(None) => (None, Vec::new()),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("report: {e}")),
        },
        None => (None, Vec::new()),
    };
    // The handover and the state change commit together or not at all.
    match s.store.transition_with_settings(&name, to, Trigger::Report, source, detail, writes).await {
        Ok(t) => {
            s.metrics.reports.get_or_create(&crate::metrics::ResultLabels { result: to.as_str().into() }).inc();
            Json(json!({ "machine": name, "state": t.record().state })).into_response()
        }
        Err(StoreError::Conflict(_)) if cluster.is_some() => {
            let c = cluster.unwrap_or_default();
            error(
                StatusCode::CONFLICT,
                format!("report: cluster {c} already has a CA hash from its bootstrap server; it is kept until `bootplane cluster reset {c}`"),
            )
        }
        Err(e) => store_error(e),
    }
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
    let start = match q.after {
        Some(a) => a,
        None => service::newest_event_id(&s).await.unwrap_or(0),
    };
    let stream = live_events(s, q.machine, start).map(|e| Ok::<_, std::convert::Infallible>(sse(&e)));
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// Every event after `start` (of `machine`, or all), live. Polls the store (so events
/// from every instance appear), woken early when this instance's sink lands a batch or
/// another instance commits events; the cursor catches ids committed out of order by
/// concurrent instances.
pub(crate) fn live_events(s: Shared, machine: Option<String>, start: i64) -> impl futures_util::Stream<Item = Event> {
    let cursor = crate::cursor::EventCursor::new(start);
    futures_util::stream::unfold((s, cursor), move |(s, mut cursor)| {
        let machine = machine.clone();
        async move {
            loop {
                let written = s.sink.written.clone();
                let notified = written.notified();
                let others = s.store.events_written();
                let others_notified = others.as_ref().map(|n| n.notified());
                let after = cursor.query_after(std::time::Instant::now());
                match s.store.events(EventQuery { machine: machine.clone(), after: Some(after), limit: 500 }).await {
                    Ok(ev) => {
                        let ids: Vec<i64> = ev.iter().map(|e| e.id).collect();
                        let fresh = cursor.accept(&ids, std::time::Instant::now());
                        if !fresh.is_empty() {
                            let mut ev: Vec<Option<Event>> = ev.into_iter().map(Some).collect();
                            let items: Vec<Event> = fresh.iter().filter_map(|&i| ev[i].take()).collect();
                            return Some((futures_util::stream::iter(items), (s, cursor)));
                        }
                    }
                    Err(e) => tracing::warn!("event stream: {e}"),
                }
                // Woken by this instance's writes, by another instance's (when the store
                // can tell), or after a second at the latest.
                tokio::select! {
                    _ = notified => {}
                    _ = async { match others_notified { Some(n) => n.await, None => std::future::pending().await } } => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    })
    .flatten()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerBody {
    action: String,
}

/// `POST /v1/machines/{name}/power` `{"action":"on|off|cycle"}` (admin).
pub async fn power(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    let action = match serde_json::from_slice::<PowerBody>(&body).map_err(|e| e.to_string()).and_then(|b| b.action.parse()) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("power: {e}; expected {{\"action\":\"on\"|\"off\"|\"cycle\"}}")),
    };
    let actor = service::Actor::from(peer, "admin API");
    answer(service::power(&s, &name, action, &actor).await)
}

/// `GET /v1/machines/{name}/power`: its power state, as its driver reads it (admin).
pub async fn power_status(State(s): State<Shared>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    answer(service::power_status(&s, &name).await)
}

/// The body of `reinstall` and `retire`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeOptions {
    /// Also the cluster's only server (and, for retire, past an unreachable cluster).
    #[serde(default)]
    force: bool,
    /// A dead node: its node is deleted from the cluster without cordon and drain.
    #[serde(default)]
    no_drain: bool,
}

/// `body` as [`NodeOptions`] (empty: the defaults), or the 400 naming `op`.
fn node_options(body: &[u8], op: &str) -> Result<NodeOptions, Box<Response>> {
    if body.is_empty() {
        return Ok(NodeOptions::default());
    }
    serde_json::from_slice(body).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("{op}: {e}; expected {{\"force\":false,\"no_drain\":false}}"))))
}

/// `POST /v1/machines/{name}/reinstall` `{"force":false,"no_drain":false}` (admin): a k3s
/// node out of its cluster (cordon, drain, delete node), one-time network boot,
/// provision, power cycle; the answer lists the steps done. The install itself is then
/// followed through the machine's events.
pub async fn reinstall(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = require_admin(&s, &headers) {
        return r;
    }
    let body = match node_options(&body, "reinstall") {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let actor = service::Actor::from(peer, "admin API");
    answer(service::reinstall(&s, &name, body.force, body.no_drain, &actor).await)
}
