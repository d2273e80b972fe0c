//! The boot path: `/boot.ipxe` and `/v1/boot/ipxe`. No authentication (firmware has none)
//! and nothing secret in any answer. Malformed input gets a 400 with a plain-text reason,
//! which iPXE prints before its entry script falls back to the local disk.

use crate::respond::server_url;
use crate::record::{alarm_event, current_attempt};
use crate::Shared;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bootplane_core::identity::KnownIdentity;
use bootplane_core::model::{discovered_name, MachineRecord};
use bootplane_core::state::Trigger;
use bootplane_core::{decide, ipxe, BootDecision, DecisionContext, IdentityMatch, MachineState, Observed};
use bootplane_store::{BatchItem, NewEvent};
use serde_json::json;
use std::net::SocketAddr;

fn script(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

pub async fn entry(State(s): State<Shared>, headers: HeaderMap) -> Response {
    script(ipxe::entry_script(&server_url(&s, &headers)))
}

fn known(r: &MachineRecord) -> KnownIdentity<'_> {
    KnownIdentity { name: r.name(), uuid: r.spec.uuid.as_ref(), serial: r.spec.serial.as_deref(), macs: &r.spec.macs }
}

pub async fn decision(State(s): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    answer(&s, peer, &headers, raw.as_deref(), false, ipxe::render).await
}

/// `/v1/boot/live`: the same decision for a live ISO's gate (`bootplane_core::media`),
/// as `key=value` lines.
pub async fn live(State(s): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    answer(&s, peer, &headers, raw.as_deref(), true, |d, _| bootplane_core::media::live_answer(d)).await
}

/// Whether `ip` has asked for more boot decisions than `server.boot_requests_per_minute`
/// (counted). One budget for every first-stage path: HTTP, TFTP `pxelinux.cfg`, GRUB.
pub(crate) fn boot_limited(s: &Shared, ip: std::net::IpAddr) -> bool {
    let limited = s.boot_requests.admit(Some(ip), std::time::Instant::now()).is_none();
    if limited {
        s.metrics.boot_requests_limited.inc();
    }
    limited
}

async fn answer(
    s: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    raw: Option<&str>,
    live: bool,
    render: impl Fn(&BootDecision, &Observed) -> String,
) -> Response {
    // A machine asks a few times per boot; one address asking far more is answered
    // "later" before any store work (firmware retries the chain).
    if boot_limited(s, peer.ip()) {
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "5")], "too many boot requests from this address; retry\n").into_response();
    }
    let q = match bootplane_core::boot_query::parse(raw.unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let g = |k: &str| q.get(k).map(String::as_str);
    let observed = match Observed::from_raw(g("mac"), g("uuid"), g("serial"), g("arch"), g("platform")) {
        Ok(o) if o.mac.is_none() && o.uuid.is_none() => {
            return bad_request("a `mac` or `uuid` query parameter is required to identify the machine".into())
        }
        Ok(o) => o,
        Err(e) => return bad_request(e.to_string()),
    };
    let server = server_url(s, headers);
    match boot_decision(s, &observed, Some(peer.ip().to_string()), &server, live).await {
        Ok(decision) => script(render(&decision, &observed)),
        Err(e) => {
            tracing::error!("boot decision failed: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable; retry\n").into_response()
        }
    }
}

/// The boot decision for `observed`, with its effects: the installer attempt opened
/// (bound to its requester), a failed machine marked, the sighting and the event
/// recorded. Every first-stage path comes here: `/v1/boot/ipxe`, `/v1/boot/live`
/// (`live`), TFTP's `pxelinux.cfg` and GRUB configs.
pub async fn boot_decision(
    s: &Shared,
    observed: &Observed,
    source: Option<String>,
    server: &str,
    live: bool,
) -> Result<BootDecision, bootplane_store::StoreError> {
    let started = std::time::Instant::now();
    let (by_uuid, by_mac) = s.store.identity_candidates(observed).await?;
    let identity = bootplane_core::resolve_identity(observed, by_uuid.as_ref().map(known), by_mac.as_ref().map(known));
    let machine = match &identity {
        IdentityMatch::Known(n) => by_uuid.iter().chain(by_mac.iter()).find(|r| r.name() == n),
        _ => None,
    };
    let bundle = match machine {
        Some(m) if m.state.serves_installer() => match &m.spec.bundle {
            Some(b) => s.store.bundle(b).await.ok().flatten(),
            None => None,
        },
        _ => None,
    };
    // A fresh nonce per answer: the attempt it opens replaces any earlier one.
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let mut decision = decide(&DecisionContext {
        observed,
        identity: &identity,
        machine,
        bundle: bundle.as_ref(),
        server,
        max_install_attempts: s.settings.max_install_attempts,
        nonce: &nonce,
    });

    // One install answer per attempt: only a requester bootplane can vouch for (its own
    // DHCP's binding or proxy answer, else the attempt's first requester) opens one.
    // Anyone else gets a quarantine answer, and the operator an alarm naming both.
    let from: Option<std::net::IpAddr> = source.as_deref().and_then(|s| s.parse().ok());
    let mut contended = None;
    if let (BootDecision::Install { .. } | BootDecision::AttemptsExhausted { .. }, Some(m)) = (&decision, machine) {
        let current = current_attempt(s, m).await?;
        let witness = crate::handshake::witness(s, &m.spec.macs, from, live).await;
        if let Err(c) = bootplane_core::attempt::admit(current.as_ref(), from, witness, chrono::Utc::now().timestamp()) {
            alarm(s, m.name(), source.clone(), &c).await;
            decision = BootDecision::Quarantine {
                reason: "install answer withheld: another host is asking for this machine (the operator has been alerted)".into(),
            };
            contended = Some(c);
        }
    }

    // Effects. The attempt is recorded before the script leaves, so a config fetch can
    // never find its nonce unknown; it is counted at its first config fetch
    // (`crate::machine_config`), so unauthenticated boot requests cannot use up a
    // machine's attempts.
    match &decision {
        BootDecision::Install { machine: name, .. } => {
            let mut attempt = bootplane_core::attempt::Attempt::new(&nonce, from, chrono::Utc::now().timestamp());
            attempt.bundle_revision = bundle.as_ref().map(|b| b.revision).filter(|r| *r > 0);
            attempt.generation = machine.map(|m| m.credential_generation);
            attempt.live = live;
            let stored = serde_json::to_string(&attempt).map_err(|e| bootplane_store::StoreError::Backend(e.to_string()))?;
            if let Err(e) = s.store.set_setting(&crate::record::attempt_key(name), &stored).await {
                tracing::warn!("{name}: not serving installer: {e}");
                let state = s.store.machine(name).await.ok().flatten().map(|r| r.state).unwrap_or(MachineState::Ready);
                decision = BootDecision::LocalBoot { machine: name.clone(), state };
            }
        }
        BootDecision::AttemptsExhausted { machine: name, attempts } => {
            let _ = s
                .store
                .transition(
                    name,
                    MachineState::Failed,
                    Trigger::AttemptsExhausted,
                    source.clone(),
                    json!(format!("{attempts} installer boots without a report")),
                )
                .await;
        }
        _ => {}
    }
    // A contender's request says nothing true about the machine: it neither names the
    // address nor changes what was observed of it (reinstall picks UEFI or BIOS by it).
    let machine_seen = machine.filter(|_| contended.is_none());
    if let (Some(m), Some(ip)) = (machine_seen, from) {
        s.remember_ip(ip, m.name());
    }
    let event_machine = match (&identity, machine) {
        (_, Some(m)) => Some(m.name().to_string()),
        (IdentityMatch::Unknown, _) => discovered_name(observed),
        _ => None,
    };
    // Within the source's budget only: a flood of made-up identities writes nothing.
    let admitted = s.admit_noise(source.as_deref());
    match &identity {
        IdentityMatch::Unknown if admitted.is_none() => {}
        IdentityMatch::Unknown => s.sink.push(BatchItem::Discovered { observed: observed.clone(), source: source.clone() }).await,
        // "Last seen" is refreshed at most once a minute unless the observation changed:
        // a machine in a boot loop must not turn every request into a row rewrite.
        IdentityMatch::Known(_) if contended.is_some() => {}
        IdentityMatch::Known(n) => {
            let fresh = machine.is_some_and(|m| {
                m.observed == *observed
                    && m.last_seen.is_some_and(|t| chrono::Utc::now().signed_duration_since(t) < chrono::Duration::seconds(60))
            });
            // A changed observation (platform, arch: what reinstall goes by) counts only
            // from a requester bootplane's DHCP vouches for, where it took part.
            let changed = machine.is_some_and(|m| m.observed != *observed);
            let believed = match machine {
                Some(m) if changed => {
                    let now = chrono::Utc::now().timestamp();
                    crate::handshake::witness(s, &m.spec.macs, from, live).await.vouches(now) != Some(false)
                }
                _ => true,
            };
            if !fresh && believed {
                s.sink.push(BatchItem::Seen { machine: n.clone(), observed: observed.clone() }).await;
            }
        }
        IdentityMatch::Conflict(_) => {}
    }
    let mut detail = json!({ "decision": decision.kind(), "observed": observed });
    match &decision {
        BootDecision::Quarantine { reason } | BootDecision::Misconfigured { reason, .. } => detail["reason"] = json!(reason),
        BootDecision::Install { bundle, .. } => detail["bundle"] = json!(bundle),
        _ => {}
    }
    if let IdentityMatch::Conflict(c) = &identity {
        detail["conflict"] = json!(c);
    }
    let kind = if matches!(identity, IdentityMatch::Conflict(_)) { "identity.conflict" } else { "boot.script" };
    // The line operators tail: one per answer (unknown machines within their noise budget).
    if machine.is_some() || admitted.is_some() {
        let why = detail.get("reason").or(detail.get("bundle")).and_then(|v| v.as_str()).unwrap_or("");
        tracing::info!(
            "boot {} mac={} machine={} decision={} {why} ({} ms)",
            source.as_deref().unwrap_or("-"),
            observed.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            event_machine.as_deref().unwrap_or("-"),
            decision.kind(),
            started.elapsed().as_millis()
        );
    }
    if let Some(suppressed) = admitted {
        if suppressed > 0 {
            detail["suppressed_before"] = json!(suppressed);
        }
        s.sink.push(BatchItem::Event(NewEvent::new(event_machine.as_deref(), kind, source, detail))).await;
    }
    s.metrics
        .decisions
        .get_or_create(&crate::metrics::DecisionLabels { decision: decision.kind().into() })
        .inc();
    Ok(decision)
}

/// A `boot.alarm`: someone other than the machine asked for its installer. Written
/// straight to the store, never through the sink that may drop under a flood (the
/// per-source boot budget bounds how many one host can cause).
async fn alarm(s: &Shared, machine: &str, source: Option<String>, c: &bootplane_core::attempt::Contention) {
    s.metrics.boot_alarms.inc();
    let detail = json!({ "reason": c.to_string(), "requester": source, "holder": c.holder() });
    alarm_event(s, machine, "boot.alarm", source, detail).await;
}

/// A first-stage loader over HTTP (`/boot/ipxe.efi`, `/boot/shimx64.efi`), for UEFI HTTP
/// boot clients that DHCP pointed here. Same files and same path rules as TFTP. The rest
/// of the path is taken whole: shim asks for its second stage as `/boot//grubx64.efi`
/// (its directory, a `/`, then its `\grubx64.efi` with the backslash made a slash).
pub async fn first_stage_file(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    let Some(fs) = s.first_stage.get() else {
        return (StatusCode::NOT_FOUND, "no first-stage root configured (tftp.root)\n").into_response();
    };
    let refused = |why: String| {
        let s = s.clone();
        let file = file.chars().take(256).collect::<String>();
        async move {
            crate::record::refusal_event(&s, None, "http.refused", Some(peer.ip().to_string()), json!({ "file": file, "reason": why })).await;
        }
    };
    let rel = match bootplane_tftp::path::normalise(&file) {
        Ok(r) => r,
        Err(e) => {
            refused(e.to_string()).await;
            return (StatusCode::FORBIDDEN, format!("{e}\n")).into_response();
        }
    };
    let root = match fs.root.canonicalize() {
        Ok(r) => r,
        Err(e) => return (StatusCode::NOT_FOUND, format!("first-stage root: {e}\n")).into_response(),
    };
    // The signed loaders of the Secure Boot chain (shim fetches GRUB from beside itself).
    let found = match rel.to_str().and_then(|n| fs.signed(n)) {
        Some(p) => Ok(Some(p.to_path_buf())),
        None => bootplane_tftp::path::resolve(&root, &rel, &fs.allowed),
    };
    match found {
        // Streamed from the file: slow readers of a big file never each hold a copy.
        Ok(Some(path)) => match tokio::fs::File::open(&path).await {
            Ok(f) => {
                let len = match f.metadata().await {
                    Ok(m) if m.is_file() && m.len() <= bootplane_tftp::server::MAX_FILE => m.len(),
                    Ok(m) if m.is_file() => {
                        refused(format!("{} bytes is over the first-stage limit", m.len())).await;
                        return (StatusCode::PAYLOAD_TOO_LARGE, "first-stage file too large\n").into_response();
                    }
                    _ => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
                };
                // Anyone may download loaders: its event is written within the source's
                // budget like every event a stranger can cause.
                if let Some(suppressed) = s.admit_noise(Some(&peer.ip().to_string())) {
                    let machine = s.machine_at(peer.ip());
                    let mut detail = json!({ "file": file, "bytes": len });
                    if suppressed > 0 {
                        detail["suppressed_before"] = json!(suppressed);
                    }
                    s.sink.push(BatchItem::Event(NewEvent::new(machine.as_deref(), "http.boot_file", Some(peer.ip().to_string()), detail))).await;
                }
                let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024));
                ([(header::CONTENT_TYPE, "application/efi".to_string()), (header::CONTENT_LENGTH, len.to_string())], body).into_response()
            }
            Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        },
        Ok(None) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        Err(e) => {
            refused(e.to_string()).await;
            (StatusCode::FORBIDDEN, format!("{e}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod decision_tests;
