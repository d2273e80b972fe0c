//! Prometheus metrics. Counters are updated by handlers; the per-state machine gauge is
//! read from the store at scrape time so it is right across instances.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub reports: Family<ResultLabels, Counter>,
    pub events_dropped: Counter,
    pub machines: Family<StateLabels, Gauge>,
    pub connections_refused: Counter,
    pub events_suppressed: Counter,
    pub configs_compiled: Counter,
    pub boot_requests_limited: Counter,
    pub boot_alarms: Counter,
    pub auth_throttled: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("bootplane");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let reports = Family::<ResultLabels, Counter>::default();
        let events_dropped = Counter::default();
        let machines = Family::<StateLabels, Gauge>::default();
        r.register("boot_decisions", "Boot decisions served, by decision", decisions.clone());
        r.register("reports", "Machine reports, by result", reports.clone());
        r.register("events_dropped", "Events dropped because the store fell behind", events_dropped.clone());
        r.register("machines", "Machines in the store, by state", machines.clone());
        let connections_refused = Counter::default();
        r.register("connections_refused", "HTTP connections closed at once: a connection cap was reached", connections_refused.clone());
        let events_suppressed = Counter::default();
        r.register("events_suppressed", "Events from unauthenticated requests not written: their source was over its budget", events_suppressed.clone());
        let configs_compiled = Counter::default();
        r.register("configs_compiled", "Machine configs built (Butane compiled); cache hits are not counted", configs_compiled.clone());
        let boot_requests_limited = Counter::default();
        r.register(
            "boot_requests_limited",
            "Boot decisions refused (429): their source asked more than server.boot_requests_per_minute",
            boot_requests_limited.clone(),
        );
        let boot_alarms = Counter::default();
        r.register("boot_alarms", "Install answers withheld: a host bootplane cannot vouch for asked for a machine's installer", boot_alarms.clone());
        let auth_throttled = Counter::default();
        r.register("auth_throttled", "Admin requests refused unread (429): their source presented too many wrong tokens", auth_throttled.clone());
        Metrics {
            registry: Arc::new(r),
            decisions,
            reports,
            events_dropped,
            machines,
            connections_refused,
            events_suppressed,
            configs_compiled,
            boot_requests_limited,
            boot_alarms,
            auth_throttled,
        }
    }
}

pub async fn handler(State(s): State<crate::Shared>) -> impl IntoResponse {
    if let Ok(counts) = s.store.machine_counts().await {
        for st in bootplane_core::MachineState::ALL {
            let n = counts.iter().find(|(x, _)| *x == st).map(|(_, n)| *n).unwrap_or(0);
            s.metrics.machines.get_or_create(&StateLabels { state: st.as_str().into() }).set(n as i64);
        }
    }
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &s.metrics.registry).is_err() {
        out = "# encoding failed\n".into();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out)
}
