//! The HTTP face of bootplane: `/boot.ipxe` and `/v1/boot/ipxe` (the boot decision),
//! the machine API, per-machine configs and reports, the event log and its live stream,
//! `/metrics` and `/healthz`. Handlers are thin: identity and decisions come from
//! `bootplane-core`, persistence from a `Store`. Writes that the boot path does not need
//! to wait for (events, "last seen", discovered machines) go through [`sink::EventSink`],
//! which batches them into one transaction and drops (and counts) rather than blocks when
//! the store falls behind.

mod api;
pub mod artifacts;
mod auth;
mod boot;
mod cluster;
pub mod kube;
pub mod cursor;
pub use cluster::check_seal_key;
pub mod gate;
pub mod conn;
pub mod dhcp;
pub mod handshake;
mod machine_config;
mod metrics;
mod record;
mod respond;
pub mod sink;
pub mod tftp;
pub mod tls;
mod watch;
pub mod ui;
pub mod service;
pub mod mirror;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use bootplane_config::ServerSettings;
use bootplane_store::Store;
use std::sync::Arc;
use std::time::Duration;

pub use auth::{AdminToken, MIN_TOKEN_LEN};

/// Everything handlers share.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: ServerSettings,
    /// Key for per-machine credentials; shared by all instances through the store.
    pub credential_secret: Vec<u8>,
    /// Key sealing cluster secrets in the store; kept outside it.
    pub seal_key: [u8; 32],
    pub admin_token: AdminToken,
    pub sink: sink::EventSink,
    pub metrics: metrics::Metrics,
    /// Which machine was last seen at an address (boot requests, DHCP), so TFTP and
    /// HTTP events carry a machine name. Bounded; cleared when full.
    recent_ips: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, String>>,
    /// Where `/boot/{file}` (first-stage loaders over HTTP, for UEFI HTTP boot) and TFTP
    /// read from.
    pub first_stage: std::sync::OnceLock<FirstStage>,
    /// The artifact content store behind `/artifacts/...`.
    pub content: std::sync::OnceLock<bootplane_artifacts::ContentStore>,
    /// Open HTTP connections, against the caps in `settings`.
    pub connections: Arc<conn::Tracker>,
    /// What unauthenticated requests may write, per source.
    pub noise: gate::Gate,
    /// Boot decisions answered per source.
    pub boot_requests: gate::Gate,
    /// Wrong admin tokens (bearer or dashboard login) per source: past the budget a
    /// source's admin requests are refused unread, so the token cannot be guessed at speed.
    pub auth_failures: gate::Gate,
    /// The CA of the HTTPS listener, when there is one: machines get it in their config
    /// and use `settings.secure_url()` for everything that carries a secret.
    pub tls_ca: std::sync::OnceLock<String>,
    /// Each machine's last compiled config, by a digest of everything it was built from.
    pub config_cache: machine_config::Cache,
    /// The dashboard's settings (`ui` section); defaults until `serve` sets them.
    pub ui: std::sync::OnceLock<bootplane_config::UiSettings>,
    /// What bootplane's own DHCP answered, per MAC: what install answers bind to.
    pub handshakes: handshake::Handshakes,
}

/// Where first-stage loaders come from: the TFTP root (iPXE), the symlink targets allowed
/// outside it, and the signed shim and GRUB of the Secure Boot chain.
#[derive(Clone, Debug)]
pub struct FirstStage {
    pub root: std::path::PathBuf,
    pub allowed: Vec<std::path::PathBuf>,
    pub shim: std::path::PathBuf,
    pub grub: std::path::PathBuf,
}

impl FirstStage {
    /// The file behind a signed loader's name (`shimx64.efi`, `grubx64.efi`).
    pub fn signed(&self, name: &str) -> Option<&std::path::Path> {
        match name {
            bootplane_core::grub::SHIM_FILE => Some(&self.shim),
            bootplane_core::grub::GRUB_FILE => Some(&self.grub),
            _ => None,
        }
    }
}

impl AppState {
    /// Whether an unauthenticated request from `source` may write one more event (see
    /// [`gate`]); `Some(n)`: yes, and `n` were suppressed before it.
    pub fn admit_noise(&self, source: Option<&str>) -> Option<u64> {
        let ip = source.and_then(|s| s.parse().ok());
        let admitted = self.noise.admit(ip, std::time::Instant::now());
        if admitted.is_none() {
            self.metrics.events_suppressed.inc();
        }
        admitted
    }

    pub fn ui_settings(&self) -> bootplane_config::UiSettings {
        self.ui.get().cloned().unwrap_or_default()
    }

    pub fn machine_at(&self, ip: std::net::IpAddr) -> Option<String> {
        self.recent_ips.lock().unwrap_or_else(|p| p.into_inner()).get(&ip).cloned()
    }

    pub fn remember_ip(&self, ip: std::net::IpAddr, machine: &str) {
        let mut m = self.recent_ips.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= 65_536 {
            m.clear();
        }
        if m.get(&ip).map(String::as_str) != Some(machine) {
            m.insert(ip, machine.to_string());
        }
    }
}

pub type Shared = Arc<AppState>;

/// Every route; the admin API (machines, events, clusters) only when `admin` is set, so
/// a listener of its own can keep it off the machines' listeners. `admin_needs_tls`:
/// this is the shared plain listener, where with HTTPS on the admin API and dashboard
/// are refused (the admin token would cross the LAN in clear).
pub fn router(state: Shared, admin: bool, admin_needs_tls: bool) -> Router {
    let mut r = Router::new();
    if admin {
        let mut a = Router::new()
            .route("/v1/machines", get(api::list_machines))
            .route("/v1/machines/{name}", get(api::show_machine))
            .route("/v1/machines/{name}/preview", get(api::preview))
            .route("/v1/fleet", get(api::fleet))
            .route("/v1/discovered", get(api::discovered))
            .route("/v1/machines/{name}/power", get(api::power_status).post(api::power))
            .route("/v1/machines/{name}/reinstall", post(api::reinstall))
            .route("/v1/machines/{name}/provision", post(api::provision))
            .route("/v1/machines/{name}/retire", post(api::retire))
            .route("/v1/clusters/{name}/kubeconfig", get(cluster::kubeconfig))
            .route("/v1/clusters/{name}/reset", post(cluster::reset))
            .route("/v1/clusters/{name}/rotate-tokens", post(cluster::rotate_tokens))
            .route("/v1/events", get(api::events))
            .merge(ui::routes());
        a = a.route_layer(axum::middleware::from_fn_with_state(state.clone(), admin_throttle));
        if admin_needs_tls {
            a = a.route_layer(axum::middleware::from_fn_with_state(state.clone(), admin_over_tls));
        }
        r = r.merge(a);
    } else {
        r = r.route("/", get(api::index));
    }
    r.route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::handler))
        .route("/boot.ipxe", get(boot::entry))
        .route("/v1/boot/ipxe", get(boot::decision))
        .route("/v1/boot/live", get(boot::live))
        .route("/boot/{*file}", get(boot::first_stage_file))
        .route("/artifacts/{bundle}/{role}", get(artifacts::handler))
        .route("/v1/machines/{name}/report", post(api::report))
        .route("/v1/machines/{name}/ignition", get(machine_config::ignition))
        .route("/v1/machines/{name}/installer", get(machine_config::installer))
        .route("/v1/machines/{name}/live-env", get(machine_config::live_env))
        .route("/v1/machines/{name}/seed/{nonce}/user-data", get(machine_config::user_data))
        .route("/v1/machines/{name}/seed/{nonce}/meta-data", get(machine_config::meta_data))
        .route("/v1/machines/{name}/seed/{nonce}/vendor-data", get(machine_config::vendor_data))
        .route("/v1/machines/{name}/join", get(cluster::join))
        .layer(DefaultBodyLimit::max(256 * 1024))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

/// Builds the shared state: derives the credential key from the sealing key, starts the sink.
pub async fn state(store: Arc<dyn Store>, settings: ServerSettings, admin_token: AdminToken, seal_key: [u8; 32]) -> anyhow::Result<Shared> {
    let credential_secret = bootplane_core::credential::key_from(&seal_key);
    let settings_noise = settings.unauthenticated_events_per_minute;
    let settings_boots = settings.boot_requests_per_minute;
    // Versions before 0.1 kept the credential key in the store in clear; it must not stay
    // readable beside the data it protects.
    store.delete_setting("credential_secret").await?;
    let metrics = metrics::Metrics::default();
    let sink = sink::EventSink::start(store.clone(), metrics.events_dropped.clone());
    sink::start_pruner(store.clone(), settings.events_retained, settings.audit_events_days, settings.max_discovered);
    watch::start(store.clone(), settings.report_timeout.0, Duration::from_secs(5).min(settings.report_timeout.0));
    Ok(Arc::new(AppState {
        store,
        settings,
        credential_secret,
        seal_key,
        admin_token,
        sink,
        metrics,
        recent_ips: Default::default(),
        first_stage: Default::default(),
        content: Default::default(),
        connections: Default::default(),
        noise: gate::Gate::new(settings_noise),
        boot_requests: gate::Gate::new(settings_boots),
        auth_failures: gate::Gate::new(AUTH_FAILURES_PER_MINUTE),
        tls_ca: Default::default(),
        config_cache: Default::default(),
        ui: Default::default(),
        handshakes: Default::default(),
    }))
}

/// Wrong admin tokens a source may present per minute (bearer or login form).
pub const AUTH_FAILURES_PER_MINUTE: u32 = 10;

/// Counts wrong tokens per source (a 401 to a request that presented one) and, past
/// [`AUTH_FAILURES_PER_MINUTE`], refuses that source's admin requests before reading them.
async fn admin_throttle(
    axum::extract::State(s): axum::extract::State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ip = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let now = std::time::Instant::now();
    if let Some(ip) = ip.filter(|ip| s.auth_failures.exhausted(*ip, now)) {
        s.metrics.auth_throttled.inc();
        return (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, "60")],
            format!("too many wrong admin tokens from {ip}: admin requests from it are refused for a minute\n"),
        )
            .into_response();
    }
    let presented = req.headers().contains_key(axum::http::header::AUTHORIZATION) || (req.method() == axum::http::Method::POST && req.uri().path() == "/ui/login");
    let r = next.run(req).await;
    if presented && r.status() == axum::http::StatusCode::UNAUTHORIZED {
        if let Some(ip) = ip {
            tracing::warn!("wrong admin token from {ip}");
            s.auth_failures.admit(Some(ip), now);
        }
    }
    r
}

/// With HTTPS on, the admin routes of the shared plain listener refuse: the token and
/// what it unlocks (tokens in `rotate-tokens`, kubeconfigs) never cross the LAN in clear.
async fn admin_over_tls(
    axum::extract::State(s): axum::extract::State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let secure = req.extensions().get::<Secure>().copied().unwrap_or(Secure(false));
    match (s.tls_ca.get(), s.settings.secure_url()) {
        (Some(_), Some(url)) if !secure.0 => (
            axum::http::StatusCode::FORBIDDEN,
            format!(
                "the admin API and dashboard are served over HTTPS only (server.tls is on): use --server {url}; \
                 on the server host the bootplane CLI trusts the site CA in the data directory (tls/ca.crt), elsewhere pass it with --ca-file\n"
            ),
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

/// A socket the server answers on. Plain HTTP serves firmware, iPXE and everything
/// else; HTTPS serves the same routes for the machines' secrets and the admin.
pub enum Listener {
    Plain(tokio::net::TcpListener),
    Tls(tokio::net::TcpListener, tokio_rustls::TlsAcceptor),
    /// The admin API alone (e.g. on loopback); with one, the others do not serve it.
    Admin(tokio::net::TcpListener),
}

/// Serves on every listener until `shutdown` resolves, then flushes pending events.
pub async fn run(
    state: Shared,
    listeners: Vec<Listener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let separate_admin = listeners.iter().any(|l| matches!(l, Listener::Admin(_)));
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let admin = !separate_admin || matches!(l, Listener::Admin(_));
            let shared_plain = matches!(l, Listener::Plain(_));
            // Each listener has caps of its own: a flood of the boot listener leaves the
            // admin and HTTPS listeners room.
            let tracker = if shared_plain { state.connections.clone() } else { Default::default() };
            tokio::spawn(accept_loop(state.clone(), router(state.clone(), admin, shared_plain), l, tracker))
        })
        .collect();
    shutdown.await;
    for l in loops {
        l.abort();
    }
    state.sink.flush().await;
    Ok(())
}

/// Accepts connections within the caps. On plain HTTP each connection first goes to the
/// sendfile fast path for artifact requests; anything else (and everything over TLS)
/// is handed, untouched, to hyper and the axum router.
async fn accept_loop(state: Shared, app: axum::Router, listener: Listener, tracker: Arc<conn::Tracker>) {
    let (tcp, tls) = match listener {
        Listener::Plain(l) | Listener::Admin(l) => (l, None),
        Listener::Tls(l, a) => (l, Some(a)),
    };
    loop {
        let (mut stream, peer) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let limits = conn::Limits::from(&state.settings);
        // Over a cap: closed at once, before anything is read or allocated for it.
        let Some(slot) = tracker.admit(peer.ip(), &limits) else {
            state.metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let state = state.clone();
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            match tls {
                None => {
                    match artifacts::fast::serve(&state, &mut stream, &limits).await {
                        Ok(true) => {}
                        Ok(false) | Err(_) => return,
                    }
                    serve_http(conn::stall_guard(stream, limits.send_stall), app, peer, limits, false).await
                }
                Some(acceptor) => {
                    // The handshake is held to the same deadline as request headers.
                    if let Ok(Ok(s)) = tokio::time::timeout(limits.header_timeout, acceptor.accept(conn::stall_guard(stream, limits.send_stall))).await {
                        serve_http(s, app, peer, limits, true).await
                    }
                }
            }
        });
    }
}

/// Whether a request arrived over TLS (the HTTPS listener).
#[derive(Clone, Copy, Debug)]
pub struct Secure(pub bool);

impl AppState {
    /// With HTTPS on, what carries a secret is refused over plain HTTP, so it never
    /// crosses the LAN in clear; the answer says where to go instead.
    /// `Some(refusal)` for a plain-HTTP request when HTTPS is on.
    pub fn refuse_insecure(&self, secure: Secure) -> Option<axum::response::Response> {
        use axum::response::IntoResponse;
        match (self.tls_ca.get(), self.settings.secure_url()) {
            (Some(_), Some(url)) if !secure.0 => Some(
                (
                    axum::http::StatusCode::FORBIDDEN,
                    format!("this carries secrets and is served over HTTPS only: use {url} with the CA in /etc/bootplane/ca.crt\n"),
                )
                    .into_response(),
            ),
            _ => None,
        }
    }
}

async fn serve_http<I>(io: I, app: axum::Router, peer: std::net::SocketAddr, limits: conn::Limits, secure: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        req.extensions_mut().insert(Secure(secure));
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .await;
}
