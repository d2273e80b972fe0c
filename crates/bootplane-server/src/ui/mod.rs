//! The web dashboard at `/`: the fleet and where each machine is in its boot chain,
//! live; a page per machine (its boots, what it would receive now, provision and retire);
//! discovered machines and their adoption; clusters. Server-rendered HTML (minijinja,
//! auto-escaped: discovered serials and event details come from the LAN) with one small
//! script for filtering and live updates. Templates and assets are compiled into the
//! binary; every response forbids loading anything from another origin (CSP), so the
//! dashboard works on an air-gapped provisioning LAN.
//!
//! Every page reads through [`crate::service`], as the JSON API does; no rule lives here.
//! Access: a login with the admin token gives a session cookie ([`session`]); read-only
//! pages are open without one only when `ui.anonymous_read` is set; every change needs
//! the session and its CSRF token, and a destructive one the machine's name typed back.

pub mod session;

use crate::service::{self, Actor, ServiceError};
use crate::{Secure, Shared};
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use bootplane_core::chain::{Progress, Step};
use bootplane_core::MachineState;
use futures_util::StreamExt;
use minijinja::{context, Environment};
use serde::{Deserialize, Serialize};
use session::{Session, SessionKey};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::LazyLock;

/// Everything the dashboard serves, mounted on the admin listener(s).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(fleet_page))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/machines/{name}", get(machine_page))
        .route("/ui/machines/{name}/{action}", post(machine_action))
        .route("/ui/discovered", get(discovered_page))
        .route("/ui/discovered/{name}/adopt", post(adopt))
        .route("/ui/clusters", get(clusters_page))
        .route("/ui/stream", get(stream))
        .route("/ui/assets/{file}", get(asset))
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("fleet.html", include_str!("templates/fleet.html")),
        ("machine.html", include_str!("templates/machine.html")),
        ("discovered.html", include_str!("templates/discovered.html")),
        ("clusters.html", include_str!("templates/clusters.html")),
        ("message.html", include_str!("templates/message.html")),
    ] {
        env.add_template(name, text).expect("dashboard templates parse (checked by a test)");
    }
    env
});

/// The policy every dashboard response carries: nothing from another origin, no inline
/// script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: with it Chromium sends `Origin: null` on the dashboard's own forms.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

fn page(status: StatusCode, template: &str, ctx: minijinja::Value) -> Response {
    match TEMPLATES.get_template(template).and_then(|t| t.render(ctx)) {
        Ok(html) => harden((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()),
        Err(e) => {
            tracing::error!("dashboard template {template}: {e:#}");
            harden((StatusCode::INTERNAL_SERVER_ERROR, "dashboard page failed to render; see the server log\n").into_response())
        }
    }
}

fn message(status: StatusCode, viewer: &Viewer, title: &str, text: &str) -> Response {
    page(status, "message.html", context! { title, text, ..viewer.ctx("") })
}

fn key(s: &Shared) -> SessionKey {
    SessionKey::new(&s.seal_key, s.admin_token.secret())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Who is looking: a logged-in operator (with the session's CSRF token) or, with
/// `ui.anonymous_read`, an anonymous reader.
struct Viewer {
    session: Option<Session>,
    csrf: String,
}

impl Viewer {
    fn ctx(&self, nav: &str) -> minijinja::Value {
        context! { logged_in => self.session.is_some(), csrf => self.csrf.clone(), nav, version => env!("CARGO_PKG_VERSION") }
    }
}

fn session_of(s: &Shared, headers: &HeaderMap) -> Option<Session> {
    let raw = headers.get(header::COOKIE)?.to_str().ok()?;
    key(s).verify(session::cookie(raw, session::COOKIE)?, now())
}

/// The viewer of a read-only page, or the answer sending them to log in.
#[allow(clippy::result_large_err)]
fn reader(s: &Shared, headers: &HeaderMap, secure: Secure, here: &str) -> Result<Viewer, Response> {
    if let Some(r) = s.refuse_insecure(secure) {
        return Err(harden(r));
    }
    match session_of(s, headers) {
        Some(sess) => Ok(Viewer { csrf: key(s).csrf(&sess), session: Some(sess) }),
        None if s.ui_settings().anonymous_read => Ok(Viewer { session: None, csrf: String::new() }),
        None => Err(harden(Redirect::to(&format!("/ui/login?next={}", percent(here))).into_response())),
    }
}

/// The viewer of a change: a session, its CSRF token in the form, and (when the browser
/// says) a request from this very origin.
#[allow(clippy::result_large_err)]
fn writer(s: &Shared, headers: &HeaderMap, secure: Secure, csrf: &str) -> Result<Viewer, Response> {
    if let Some(r) = s.refuse_insecure(secure) {
        return Err(harden(r));
    }
    let anonymous = Viewer { session: None, csrf: String::new() };
    let Some(sess) = session_of(s, headers) else {
        return Err(message(StatusCode::UNAUTHORIZED, &anonymous, "Log in first", "Changes need a login with the admin token."));
    };
    if !key(s).csrf_ok(&sess, csrf) || !same_origin(headers) {
        return Err(message(
            StatusCode::FORBIDDEN,
            &anonymous,
            "Refused",
            "This form did not come from this dashboard (its CSRF token or origin does not match). Reload the page and try again.",
        ));
    }
    Ok(Viewer { csrf: key(s).csrf(&sess), session: Some(sess) })
}

/// A browser's `Origin` (or, failing that, `Referer`) names this host, when it sends one.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let host_of = |v: &HeaderValue| {
        let v = v.to_str().ok()?;
        let rest = v.strip_prefix("http://").or(v.strip_prefix("https://"))?;
        rest.split('/').next().map(str::to_string)
    };
    match (headers.get(header::ORIGIN), headers.get(header::REFERER)) {
        (Some(o), _) => host_of(o).as_deref() == Some(host),
        (None, Some(r)) => host_of(r).as_deref() == Some(host),
        // Not a browser's cross-site form (those carry Origin); the CSRF token still holds.
        (None, None) => true,
    }
}

/// URL-encodes a path segment or query value (RFC 3986 unreserved characters stay).
fn percent(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// Only a path on this server is a place to go back to after login. Printable ASCII
/// only: browsers drop tabs and newlines from a `Location` (`/\t/evil.example` becomes
/// `//evil.example`, another host), and a non-ASCII one is no header value at all.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && n.bytes().all(|b| b.is_ascii_graphic()) => n.to_string(),
        _ => "/".to_string(),
    }
}

fn service_failure(viewer: &Viewer, e: ServiceError) -> Response {
    let status = match &e {
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Conflict(_) => StatusCode::CONFLICT,
        ServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Upstream(_) => StatusCode::BAD_GATEWAY,
    };
    message(status, viewer, "Not done", &e.to_string())
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(State(s): State<Shared>, axum::Extension(secure): axum::Extension<Secure>, Query(q): Query<LoginQuery>) -> Response {
    if let Some(r) = s.refuse_insecure(secure) {
        return harden(r);
    }
    let anonymous = Viewer { session: None, csrf: String::new() };
    page(StatusCode::OK, "login.html", context! { next => local_path(q.next.as_deref()), error => "", ..anonymous.ctx("login") })
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(
    State(s): State<Shared>,
    axum::Extension(secure): axum::Extension<Secure>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    if let Some(r) = s.refuse_insecure(secure) {
        return harden(r);
    }
    let next = local_path(f.next.as_deref());
    if !s.admin_token.matches(f.token.trim()) {
        tracing::warn!("dashboard login refused from {}", peer.ip());
        let anonymous = Viewer { session: None, csrf: String::new() };
        return page(
            StatusCode::UNAUTHORIZED,
            "login.html",
            context! { next, error => "That is not the admin token. It is in the data directory's admin-token, or printed at first start.", ..anonymous.ctx("login") },
        );
    }
    let cookie = session::set_cookie(&key(&s).issue(now()), secure.0);
    let mut r = Redirect::to(&next).into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie is ASCII"));
    harden(r)
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(s): State<Shared>, axum::Extension(secure): axum::Extension<Secure>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if let Err(r) = writer(&s, &headers, secure, &f.csrf) {
        return r;
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&session::clear_cookie()).expect("cookie is ASCII"));
    harden(r)
}

/// A fleet row as the template draws it.
#[derive(Serialize)]
struct Row {
    #[serde(flatten)]
    entry: service::FleetEntry,
    /// Index of the furthest step in [`Step::ALL`], -1 for none.
    step_index: i32,
    /// Per step of [`Step::ALL`]: whether the latest boot reached it.
    chain: Vec<bool>,
    step_label: &'static str,
    last_summary: String,
    /// What the filter box matches: name, MACs, identity, labels, lowercased.
    search: String,
}

fn step_index(p: &Progress) -> i32 {
    p.step.and_then(|s| Step::ALL.iter().position(|x| *x == s)).map_or(-1, |i| i as i32)
}

fn chain_of(p: &Progress) -> Vec<bool> {
    Step::ALL.iter().map(|s| p.reached(*s)).collect()
}

fn row(entry: service::FleetEntry) -> Row {
    let m = &entry.machine.spec;
    let mut search = vec![m.name.clone()];
    search.extend(m.macs.iter().map(|x| x.to_string()));
    search.extend(m.uuid.iter().map(|u| u.to_string()));
    search.extend(m.serial.clone());
    search.extend(m.hostname.clone());
    search.extend(m.bundle.clone());
    search.extend(m.cluster.clone());
    search.extend(m.labels.iter().map(|(k, v)| format!("{k}={v}")));
    search.extend(entry.address.map(|a| a.to_string()));
    Row {
        step_index: step_index(&entry.progress),
        chain: chain_of(&entry.progress),
        step_label: entry.progress.step.map_or("no boot yet", Step::label),
        last_summary: entry.last_event.as_ref().map(service::summary).unwrap_or_default(),
        search: search.join(" ").to_lowercase(),
        entry,
    }
}

#[derive(Serialize)]
struct Group {
    key: String,
    title: String,
    rows: Vec<Row>,
}

#[derive(Deserialize)]
struct FleetQuery {
    group: Option<String>,
}

fn steps() -> Vec<(&'static str, &'static str)> {
    Step::ALL.iter().map(|s| (s.as_str(), s.label())).collect()
}

async fn fleet_page(
    State(s): State<Shared>,
    axum::Extension(secure): axum::Extension<Secure>,
    headers: HeaderMap,
    Query(q): Query<FleetQuery>,
) -> Response {
    let viewer = match reader(&s, &headers, secure, "/") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let fleet = match service::fleet(&s).await {
        Ok(f) => f,
        Err(e) => return service_failure(&viewer, e),
    };
    let by_cluster = q.group.as_deref() == Some("cluster");
    let mut groups: Vec<Group> = if by_cluster {
        Vec::new()
    } else {
        service::STATE_ORDER.iter().map(|st| Group { key: st.to_string(), title: st.to_string(), rows: Vec::new() }).collect()
    };
    for entry in fleet.machines {
        let key = if by_cluster {
            entry.machine.spec.cluster.clone().unwrap_or_else(|| "-".into())
        } else {
            entry.machine.state.to_string()
        };
        let at = match groups.iter().position(|g| g.key == key) {
            Some(i) => i,
            None => {
                let title = if key == "-" { "no cluster".to_string() } else { format!("cluster {key}") };
                groups.push(Group { key, title, rows: Vec::new() });
                groups.len() - 1
            }
        };
        groups[at].rows.push(row(entry));
    }
    if by_cluster {
        groups.sort_by(|a, b| (a.key == "-", &a.key).cmp(&(b.key == "-", &b.key)));
    }
    let counts: Vec<(String, usize)> = fleet.counts.iter().map(|(st, n)| (st.to_string(), *n)).collect();
    let total: usize = counts.iter().map(|c| c.1).sum();
    page(
        StatusCode::OK,
        "fleet.html",
        context! {
            groups, counts, total, steps => steps(),
            group => if by_cluster { "cluster" } else { "state" },
            last_event_id => fleet.last_event_id,
            ..viewer.ctx("fleet")
        },
    )
}

#[derive(Deserialize)]
struct MachineQuery {
    done: Option<String>,
}

async fn machine_page(
    State(s): State<Shared>,
    axum::Extension(secure): axum::Extension<Secure>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<MachineQuery>,
) -> Response {
    let viewer = match reader(&s, &headers, secure, &format!("/ui/machines/{name}")) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let detail = match service::machine(&s, &name).await {
        Ok(d) => d,
        Err(e) => return service_failure(&viewer, e),
    };
    // The compiled config and the spec (inline Butane, file contents) are what the boot
    // path guards with a nonce: an anonymous reader sees states and events, not these.
    let preview = match viewer.session {
        Some(_) => Some(service::preview(&s, &name, &headers).await.map_err(|e| e.to_string())),
        None => None,
    };
    let boots: Vec<minijinja::Value> = detail
        .boots
        .iter()
        .enumerate()
        .rev()
        .map(|(i, events)| {
            let progress = bootplane_core::chain::progress(events);
            let rows: Vec<minijinja::Value> = events
                .iter()
                .rev()
                .map(|e| {
                    context! {
                        id => e.id, time => e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), kind => e.kind.clone(),
                        summary => service::summary(e), source => e.source.clone(),
                        detail => serde_json::to_string_pretty(&e.detail).unwrap_or_default(),
                    }
                })
                .collect();
            context! {
                number => i + 1,
                started => events.first().map(|e| e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                reached => progress.step.map_or("no step", Step::label),
                failed => progress.failed,
                events => rows,
            }
        })
        .collect();
    let done = match q.done.as_deref() {
        Some("provision") => "Provisioned: it installs at its next network boot, with a new credential.",
        Some("retire") => "Retired: it gets no install and its credential is dead.",
        _ => "",
    };
    page(
        StatusCode::OK,
        "machine.html",
        context! {
            m => detail.machine.clone(),
            spec_yaml => if viewer.session.is_some() { yaml_serde::to_string(&detail.machine.spec).unwrap_or_default() } else { String::new() },
            step_index => step_index(&detail.progress),
            chain => chain_of(&detail.progress),
            step_label => detail.progress.step.map_or("no boot yet", Step::label),
            failed => detail.progress.failed,
            steps => steps(),
            boots,
            preview => preview.as_ref().and_then(|p| p.as_ref().ok()),
            preview_error => preview.as_ref().and_then(|p| p.as_ref().err()),
            done,
            can_provision => detail.machine.state.check(MachineState::Provision, bootplane_core::state::Trigger::AdminProvision).is_ok(),
            can_retire => detail.machine.state.check(MachineState::Retired, bootplane_core::state::Trigger::AdminRetire).is_ok(),
            ..viewer.ctx("fleet")
        },
    )
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// The machine's name, typed back: destructive actions name what they destroy.
    #[serde(default)]
    confirm: String,
}

async fn machine_action(
    State(s): State<Shared>,
    axum::Extension(secure): axum::Extension<Secure>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    let viewer = match writer(&s, &headers, secure, &f.csrf) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let to = match action.as_str() {
        "provision" => MachineState::Provision,
        "retire" => MachineState::Retired,
        _ => return message(StatusCode::NOT_FOUND, &viewer, "No such action", "Machines can be provisioned or retired here."),
    };
    if f.confirm.trim() != name {
        return message(
            StatusCode::BAD_REQUEST,
            &viewer,
            "Not done",
            &format!("To {action} {name}, type its name `{name}` in the confirmation box."),
        );
    }
    let actor = Actor::from(peer, "dashboard");
    match service::transition(&s, &name, to, &actor).await {
        Ok(_) => harden(Redirect::to(&format!("/ui/machines/{}?done={action}", percent(&name))).into_response()),
        Err(e) => service_failure(&viewer, e),
    }
}

async fn discovered_page(State(s): State<Shared>, axum::Extension(secure): axum::Extension<Secure>, headers: HeaderMap) -> Response {
    let viewer = match reader(&s, &headers, secure, "/ui/discovered") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (list, bundles) = match (service::discovered(&s).await, s.store.bundles().await) {
        (Ok(l), Ok(b)) => (l, b.into_iter().map(|b| b.name).collect::<Vec<_>>()),
        (Err(e), _) => return service_failure(&viewer, e),
        (_, Err(e)) => return service_failure(&viewer, e.into()),
    };
    page(StatusCode::OK, "discovered.html", context! { list, bundles, ..viewer.ctx("discovered") })
}

#[derive(Deserialize)]
struct AdoptForm {
    #[serde(default)]
    csrf: String,
    name: String,
    bundle: String,
    #[serde(default)]
    provision: Option<String>,
}

async fn adopt(
    State(s): State<Shared>,
    axum::Extension(secure): axum::Extension<Secure>,
    headers: HeaderMap,
    Path(discovered): Path<String>,
    Form(f): Form<AdoptForm>,
) -> Response {
    let viewer = match writer(&s, &headers, secure, &f.csrf) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = f.name.trim();
    match service::adopt(&s, &discovered, name, f.bundle.trim(), f.provision.is_some()).await {
        Ok(_) => harden(Redirect::to(&format!("/ui/machines/{}", percent(name))).into_response()),
        Err(e) => service_failure(&viewer, e),
    }
}

async fn clusters_page(State(s): State<Shared>, axum::Extension(secure): axum::Extension<Secure>, headers: HeaderMap) -> Response {
    let viewer = match reader(&s, &headers, secure, "/ui/clusters") {
        Ok(v) => v,
        Err(r) => return r,
    };
    match service::clusters(&s).await {
        Ok(clusters) => page(StatusCode::OK, "clusters.html", context! { clusters, ..viewer.ctx("clusters") }),
        Err(e) => service_failure(&viewer, e),
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    after: Option<i64>,
}

/// A fleet update with the machine's progress after it, as the live views apply it.
#[derive(Serialize)]
struct LiveUpdate {
    #[serde(flatten)]
    update: service::FleetUpdate,
    progress: Progress,
    step_index: i32,
    step_label: &'static str,
}

/// `GET /ui/stream?after=ID`: the fleet's changes after event `ID`, live (Server-Sent
/// Events; a reconnecting browser resumes from `Last-Event-ID`).
async fn stream(
    State(s): State<Shared>,
    axum::Extension(secure): axum::Extension<Secure>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Response {
    if let Err(r) = reader(&s, &headers, secure, "/") {
        return r;
    }
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok());
    let after = match resume.or(q.after) {
        Some(a) => a,
        None => service::newest_event_id(&s).await.unwrap_or(0),
    };
    // Each machine's progress up to `after`, so the stream's events continue it.
    let mut progress: HashMap<String, Progress> = HashMap::new();
    if let Ok(events) = s.store.latest_events(20).await {
        for e in events.iter().filter(|e| e.id <= after) {
            if let Some(m) = &e.machine {
                let p = progress.entry(m.clone()).or_default();
                *p = p.advance(&e.kind, &e.detail);
            }
        }
    }
    let events = crate::api::live_events(s, None, after);
    let updates = events.filter_map(move |e| {
        let out = service::FleetUpdate::of(&e).map(|update| {
            let p = progress.entry(update.machine.clone()).or_default();
            *p = p.advance(&e.kind, &e.detail);
            let live = LiveUpdate { progress: *p, step_index: step_index(p), step_label: p.step.map_or("no boot yet", Step::label), update };
            Ok::<_, std::convert::Infallible>(
                SseEvent::default().id(e.id.to_string()).event("update").json_data(&live).unwrap_or_else(|_| SseEvent::default().comment("unencodable")),
            )
        });
        std::future::ready(out)
    });
    harden(Sse::new(updates).keep_alive(KeepAlive::default()).into_response())
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static str, &str) = match file.as_str() {
        "app.js" => (include_str!("assets/app.js"), "text/javascript; charset=utf-8"),
        "app.css" => (include_str!("assets/app.css"), "text/css; charset=utf-8"),
        _ => return harden((StatusCode::NOT_FOUND, "no such dashboard asset\n").into_response()),
    };
    let mut r = ([(header::CONTENT_TYPE, kind)], body).into_response();
    // Versioned by the binary: a new release is a new page load anyway.
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
    harden(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for t in ["base.html", "login.html", "fleet.html", "machine.html", "discovered.html", "clusters.html", "message.html"] {
            TEMPLATES.get_template(t).unwrap();
        }
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path(Some("/ui/machines/a")), "/ui/machines/a");
        // Issue 28, finding 10: a tab a browser drops, a newline, a non-ASCII path.
        for hostile in ["//evil.example/", "https://evil.example/", "/\\evil.example", "evil", "/\t/evil.example/", "/\n/evil.example", "/ü"] {
            assert_eq!(local_path(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn cross_origin_posts_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "10.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h), "no Origin: not a browser's cross-site form");
        h.insert(header::ORIGIN, "http://10.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h), "an opaque origin (sandboxed frame) is not ours");
    }

    #[test]
    fn hostile_strings_are_escaped_in_pages() {
        let html = TEMPLATES
            .get_template("message.html")
            .unwrap()
            .render(context! { title => "<script>alert(1)</script>", text => "\"><img src=x onerror=alert(1)>", logged_in => false, csrf => "", nav => "", version => "0" })
            .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
    }
}
