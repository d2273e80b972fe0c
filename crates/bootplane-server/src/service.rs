//! The operations an operator performs, and the types they return: the JSON admin API
//! (`api.rs`), the dashboard (`ui/`) and through the API the CLI all call these, so a
//! rule (who may move a machine, what a preview redacts, where a machine is in its boot
//! chain) lives once. Nothing here knows HTTP: callers turn [`ServiceError`] into their
//! own answer (JSON error, HTML page).

use crate::Shared;
use bootplane_core::chain::{self, Progress, Step};
use bootplane_core::model::MachineRecord;
use bootplane_core::state::Trigger;
use bootplane_core::{decide, ipxe, DecisionContext, IdentityMatch, MachineSpec, MachineState, Observed};
use bootplane_store::{ApplyReport, ApplySet, Event, EventQuery, StoreError, Transitioned};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Why an operation did not happen, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// The store failed; the detail is logged, not shown.
    #[error("store unavailable; retry")]
    Unavailable(StoreError),
    /// Something bootplane drives (a BMC, a PDU command) failed; the message names the
    /// machine and the step.
    #[error("{0}")]
    Upstream(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => ServiceError::NotFound(e.to_string()),
            StoreError::Transition(_) | StoreError::Conflict(_) | StoreError::NotEmpty(_) => ServiceError::Conflict(e.to_string()),
            StoreError::Backend(_) | StoreError::Database(_) => {
                tracing::error!("{e:#}");
                ServiceError::Unavailable(e)
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

/// Who asked, for the event a change writes.
pub struct Actor {
    pub source: Option<String>,
    /// "admin API", "dashboard".
    pub via: &'static str,
}

impl Actor {
    /// A request from `peer` through `via`.
    pub fn from(peer: std::net::SocketAddr, via: &'static str) -> Actor {
        Actor { source: Some(peer.ip().to_string()), via }
    }
}

/// A machine as the API and the dashboard show it: its spec, flattened, plus runtime fields.
#[derive(Clone, Serialize)]
pub struct MachineView {
    #[serde(flatten)]
    pub spec: MachineSpec,
    pub state: MachineState,
    pub install_attempts: u32,
    pub credential_generation: u32,
    pub observed: Observed,
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
}

impl From<&MachineRecord> for MachineView {
    fn from(r: &MachineRecord) -> Self {
        MachineView {
            spec: r.spec.clone(),
            state: r.state,
            install_attempts: r.install_attempts,
            credential_generation: r.credential_generation,
            observed: r.observed.clone(),
            last_seen: r.last_seen,
            created: r.created,
            updated: r.updated,
        }
    }
}

/// One row of the fleet: the machine, the furthest step of its latest boot, its last event.
#[derive(Clone, Serialize)]
pub struct FleetEntry {
    pub machine: MachineView,
    pub progress: Progress,
    pub last_event: Option<Event>,
    /// Its fixed address, else the address bootplane's DHCP leased to one of its MACs.
    pub address: Option<std::net::Ipv4Addr>,
}

#[derive(Serialize)]
pub struct Fleet {
    pub machines: Vec<FleetEntry>,
    /// Every state with its count, failures first (what needs a look comes first).
    pub counts: Vec<(MachineState, usize)>,
    /// The newest event id when the fleet was read: a live stream resumes after it.
    pub last_event_id: i64,
}

/// The order states are shown in: what needs attention first.
pub const STATE_ORDER: [MachineState; 8] = [
    MachineState::Failed,
    MachineState::Installing,
    MachineState::Written,
    MachineState::Provision,
    MachineState::Discovered,
    MachineState::Ready,
    MachineState::Installed,
    MachineState::Retired,
];

fn state_rank(s: MachineState) -> usize {
    STATE_ORDER.iter().position(|x| *x == s).unwrap_or(STATE_ORDER.len())
}

/// How many of each machine's latest events the fleet reads to place it in the chain.
const FLEET_EVENTS: u32 = 20;

pub async fn fleet(s: &Shared) -> Result<Fleet> {
    // The id first: an event landing between the reads is streamed again, not missed.
    let last_event_id = newest_event_id(s).await?;
    let records = s.store.machines().await?;
    let now = chrono::Utc::now().timestamp();
    let leased: std::collections::HashMap<bootplane_core::Mac, std::net::Ipv4Addr> = s
        .store
        .leases()
        .await?
        .into_iter()
        .filter(|l| l.state == bootplane_core::model::LeaseState::Bound && l.expires > now)
        .map(|l| (l.mac, l.ip))
        .collect();
    let mut by_machine: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for e in s.store.latest_events(FLEET_EVENTS).await? {
        if let Some(m) = e.machine.clone() {
            by_machine.entry(m).or_default().push(e);
        }
    }
    let mut machines: Vec<FleetEntry> = records
        .iter()
        .map(|r| {
            let events = by_machine.remove(r.name()).unwrap_or_default();
            FleetEntry {
                machine: MachineView::from(r),
                progress: chain::progress(&events),
                last_event: events.last().cloned(),
                address: r.spec.ip.or_else(|| r.spec.macs.iter().find_map(|m| leased.get(m).copied())),
            }
        })
        .collect();
    machines.sort_by(|a, b| {
        (state_rank(a.machine.state), &a.machine.spec.name).cmp(&(state_rank(b.machine.state), &b.machine.spec.name))
    });
    let counts = STATE_ORDER
        .iter()
        .map(|st| (*st, machines.iter().filter(|m| m.machine.state == *st).count()))
        .collect();
    Ok(Fleet { machines, counts, last_event_id })
}

/// The newest event id (0 for none): where a live stream that wants only new events starts.
pub async fn newest_event_id(s: &Shared) -> Result<i64> {
    Ok(s.store.events(EventQuery { machine: None, after: None, limit: 1 }).await?.last().map(|e| e.id).unwrap_or(0))
}

/// A change to one fleet row, from one event: what the live views apply.
#[derive(Serialize)]
pub struct FleetUpdate {
    pub id: i64,
    pub machine: String,
    pub kind: String,
    pub time: chrono::DateTime<chrono::Utc>,
    pub summary: String,
    /// The step this event shows the machine reached, if any.
    pub step: Option<Step>,
    /// Whether the event starts a new boot is decided by the page's last known step;
    /// this is the machine's state after the event, when the event moved it.
    pub state: Option<MachineState>,
    /// The machine reported a failure.
    pub failed: bool,
}

impl FleetUpdate {
    pub fn of(e: &Event) -> Option<FleetUpdate> {
        let machine = e.machine.clone()?;
        let state = (e.kind == "state.changed")
            .then(|| e.detail.get("to").cloned().and_then(|v| serde_json::from_value::<MachineState>(v).ok()))
            .flatten();
        Some(FleetUpdate {
            id: e.id,
            machine,
            kind: e.kind.clone(),
            time: e.time,
            summary: summary(e),
            step: chain::step_of(&e.kind, &e.detail),
            failed: state == Some(MachineState::Failed),
            state,
        })
    }
}

/// One line about an event, for lists: its kind and the detail an operator looks for.
pub fn summary(e: &Event) -> String {
    let d = &e.detail;
    let s = |k: &str| d.get(k).and_then(|v| v.as_str());
    match e.kind.as_str() {
        "state.changed" => format!(
            "{} → {}",
            s("from").unwrap_or("(new)"),
            s("to").unwrap_or("?")
        ),
        "boot.script" => match (s("decision"), s("reason").or(s("bundle"))) {
            (Some(dec), Some(why)) => format!("decision {dec} ({why})"),
            (Some(dec), None) => format!("decision {dec}"),
            _ => "boot script".into(),
        },
        "boot.alarm" | "report.alarm" | "join.alarm" => s("reason").unwrap_or("").to_string(),
        "config.served" | "config.refetched" | "config.refused" | "config.alarm" => {
            match (s("kind"), s("reason")) {
                (Some(k), Some(r)) => format!("{k}: {r}"),
                (Some(k), None) => k.to_string(),
                _ => String::new(),
            }
        }
        "tftp.read" | "http.boot_file" => s("file").or(s("path")).unwrap_or("").to_string(),
        "dhcp.offer" | "dhcp.ack" => s("ip").or(s("address")).unwrap_or("").to_string(),
        _ => s("reason").or(s("error")).unwrap_or("").to_string(),
    }
}

/// A machine page: the machine, its boots (newest last), and where the last one got.
#[derive(Serialize)]
pub struct MachineDetail {
    pub machine: MachineView,
    pub progress: Progress,
    /// Its recent events grouped by boot, oldest boot first.
    pub boots: Vec<Vec<Event>>,
}

/// How many events a machine page reads.
const MACHINE_EVENTS: u32 = 200;

pub async fn machine(s: &Shared, name: &str) -> Result<MachineDetail> {
    let record = s.store.machine(name).await?.ok_or_else(|| no_machine(name))?;
    let events = s.store.events(EventQuery { machine: Some(name.to_string()), after: None, limit: MACHINE_EVENTS }).await?;
    let boots = chain::boots(&events).into_iter().map(|b| b.into_iter().cloned().collect()).collect();
    Ok(MachineDetail { machine: MachineView::from(&record), progress: chain::progress(&events), boots })
}

/// The machine and its latest events, as `GET /v1/machines/{name}` has always answered.
pub async fn machine_with_events(s: &Shared, name: &str, limit: u32) -> Result<(MachineRecord, Vec<Event>)> {
    let record = s.store.machine(name).await?.ok_or_else(|| no_machine(name))?;
    let events = s.store.events(EventQuery { machine: Some(name.to_string()), after: None, limit }).await.unwrap_or_default();
    Ok((record, events))
}

fn no_machine(name: &str) -> ServiceError {
    ServiceError::NotFound(format!("no machine named `{name}`"))
}

pub async fn machines(s: &Shared) -> Result<Vec<MachineView>> {
    Ok(s.store.machines().await?.iter().map(MachineView::from).collect())
}

/// Moves a machine as an operator asked; `Ok((view, changed))`.
pub async fn transition(s: &Shared, name: &str, to: MachineState, actor: &Actor) -> Result<(MachineView, bool)> {
    // A k3s node leaves its cluster first, either way.
    let done = match to {
        MachineState::Provision => provision(s, name, false, false, actor).await?,
        MachineState::Retired => retire(s, name, false, false, actor).await?,
        other => return Err(ServiceError::Invalid(format!("an operator cannot move a machine to `{other}`"))),
    };
    Ok((done.view, done.changed))
}

/// Stands in for the per-machine credential (and k3s node password) in previews: the
/// real ones are never shown.
pub const REDACTED: &str = "<redacted>";

/// What a machine would receive if it network-booted now, secrets redacted.
#[derive(Serialize)]
pub struct Preview {
    /// The boot decision for it now, and the iPXE script that carries it.
    pub decision: String,
    pub ipxe: String,
    /// Its Butane: each template, then its own snippet.
    pub butane: Vec<(String, String)>,
    /// Its Ignition (JSON) or, for an Ubuntu bundle, its cloud-init user-data.
    pub config: std::result::Result<String, String>,
    pub config_kind: &'static str,
    /// Its k3s config.yaml, when it is in a cluster.
    pub k3s_config: Option<std::result::Result<String, String>>,
}

pub async fn preview(s: &Shared, name: &str, headers: &axum::http::HeaderMap) -> Result<Preview> {
    let record = s.store.machine(name).await?.ok_or_else(|| no_machine(name))?;
    let loaded = crate::machine_config::load(s, record.clone(), headers)
        .await
        .map_err(|_| ServiceError::Conflict(format!("the config of {name} cannot be loaded (its bundle, templates or cluster are missing from the store)")))?;
    let real_credential = loaded.credential.clone();
    let mut loaded = loaded;
    loaded.credential = REDACTED.to_string();
    loaded.node_password = REDACTED.to_string();
    let observed = Observed { mac: record.spec.macs.first().copied(), ..Default::default() };
    let decision = decide(&DecisionContext {
        nonce: "issued-per-boot",
        observed: &observed,
        identity: &IdentityMatch::Known(name.to_string()),
        machine: Some(&record),
        bundle: loaded.bundle.as_ref(),
        server: &loaded.server,
        max_install_attempts: s.settings.max_install_attempts,
    });
    let mut butane: Vec<(String, String)> = loaded.templates.iter().map(|(n, t)| (format!("template {n}"), t.clone())).collect();
    if let Some(b) = &record.spec.butane {
        butane.push((format!("{name}'s own"), b.clone()));
    }
    let os = loaded.os();
    let (config, config_kind) = match loaded.inputs() {
        Err(e) => (Err(e.to_string()), "ignition"),
        Ok(inputs) if os == bootplane_core::OsKind::Ubuntu => {
            (bootplane_core::os::ubuntu::user_data(&inputs).map_err(|e| e.to_string()), "user-data")
        }
        Ok(inputs) => (
            bootplane_core::config::assemble(&inputs)
                .map_err(|e| e.to_string())
                .and_then(|(c, _)| serde_json::to_string_pretty(&c).map_err(|e| e.to_string())),
            "ignition",
        ),
    };
    let k3s_config = match loaded.node() {
        Ok(Some(node)) => Some(
            bootplane_core::network::of(&record.spec)
                .map(|n| bootplane_core::k3s::config_yaml(&node, n.map(|n| n.address)))
                .map_err(|e| e.to_string()),
        ),
        Ok(None) => None,
        Err(e) => Some(Err(e.to_string())),
    };
    // Belt and braces: whatever a template quotes, the live credential is never shown.
    let scrub = |t: String| t.replace(&real_credential, REDACTED);
    Ok(Preview {
        decision: decision.kind().to_string(),
        ipxe: scrub(ipxe::render(&decision, &observed)),
        butane: butane.into_iter().map(|(n, t)| (n, scrub(t))).collect(),
        config: config.map(scrub),
        config_kind,
        k3s_config: k3s_config.map(|r| r.map(scrub)),
    })
}

/// A machine bootplane saw but does not know, as the discovered list shows it.
#[derive(Serialize)]
pub struct DiscoveredView {
    pub name: String,
    pub observed: Observed,
    pub first_seen: chrono::DateTime<chrono::Utc>,
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    /// Where its last request came from.
    pub source: Option<String>,
    /// The DHCP relay its latest relayed request came through, if any.
    pub relay: Option<String>,
    /// The inventory entry to paste into bootplane.yaml to adopt it.
    pub yaml: String,
}

pub async fn discovered(s: &Shared) -> Result<Vec<DiscoveredView>> {
    let mut last_source: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut relay: BTreeMap<String, String> = BTreeMap::new();
    for e in s.store.latest_events(FLEET_EVENTS).await? {
        if let Some(m) = e.machine {
            if let Some(r) = e.detail.get("relay").and_then(|r| r.as_str()) {
                relay.insert(m.clone(), r.to_string());
            }
            if e.source.is_some() {
                last_source.insert(m, e.source);
            }
        }
    }
    let mut out: Vec<DiscoveredView> = s
        .store
        .machines()
        .await?
        .into_iter()
        .filter(|r| r.state == MachineState::Discovered)
        .map(|r| DiscoveredView {
            yaml: adoption_yaml(&r, r.name(), None),
            source: last_source.remove(r.name()).flatten(),
            relay: relay.remove(r.name()),
            name: r.spec.name,
            observed: r.observed,
            first_seen: r.created,
            last_seen: r.last_seen,
        })
        .collect();
    out.sort_by_key(|d| std::cmp::Reverse(d.last_seen));
    Ok(out)
}

/// The spec adopting discovered machine `d` as `name` with `bundle`: its identity as seen.
fn adoption_spec(d: &MachineRecord, name: &str, bundle: Option<&str>) -> MachineSpec {
    let mut macs = d.spec.macs.clone();
    macs.extend(d.observed.mac.filter(|m| !d.spec.macs.contains(m)));
    MachineSpec {
        name: name.to_string(),
        hostname: Some(name.to_string()),
        macs,
        uuid: d.spec.uuid.clone().or(d.observed.uuid.clone()),
        serial: d.spec.serial.clone().or(d.observed.serial.clone()),
        arch: d.spec.arch.clone().or(d.observed.arch.clone()),
        bundle: bundle.map(str::to_string),
        ..Default::default()
    }
}

/// The `machines:` entry an operator pastes to adopt a discovered machine.
pub fn adoption_yaml(d: &MachineRecord, name: &str, bundle: Option<&str>) -> String {
    let spec = adoption_spec(d, name, bundle);
    let mut entry = serde_json::Map::new();
    entry.insert("name".into(), json!(spec.name));
    entry.insert("macs".into(), json!(spec.macs));
    if let Some(u) = &spec.uuid {
        entry.insert("uuid".into(), json!(u));
    }
    if let Some(sn) = &spec.serial {
        entry.insert("serial".into(), json!(sn));
    }
    if let Some(a) = &spec.arch {
        entry.insert("arch".into(), json!(a));
    }
    entry.insert("bundle".into(), json!(bundle.unwrap_or("CHOOSE-A-BUNDLE")));
    let doc = json!({ "machines": [entry] });
    yaml_serde::to_string(&doc).unwrap_or_default()
}

/// Adopts discovered machine `discovered` as `name` with `bundle`, provisioning it when
/// asked: the same apply `bootplane apply` makes, naming only this machine.
pub async fn adopt(s: &Shared, discovered: &str, name: &str, bundle: &str, provision: bool) -> Result<ApplyReport> {
    if !bootplane_core::model::is_dns_label(name) {
        return Err(ServiceError::Invalid(format!(
            "`{name}` is not a valid machine name: use lowercase letters, digits and '-', at most 63 characters"
        )));
    }
    let d = s.store.machine(discovered).await?.ok_or_else(|| no_machine(discovered))?;
    if d.state != MachineState::Discovered {
        return Err(ServiceError::Conflict(format!("{discovered} is `{}`, not a discovered machine", d.state)));
    }
    if s.store.bundle(bundle).await?.is_none() {
        return Err(ServiceError::Invalid(format!("no bundle named `{bundle}`; `bootplane bundle list` shows them")));
    }
    if name != discovered && s.store.machine(name).await?.is_some() {
        return Err(ServiceError::Conflict(format!("a machine named `{name}` already exists; choose another name")));
    }
    let mut spec = adoption_spec(&d, name, Some(bundle));
    spec.provision = provision;
    Ok(s.store.apply(ApplySet { machines: vec![spec], ..Default::default() }).await?)
}

/// A cluster as the dashboard shows it: members by role, the bootstrap server's handover.
#[derive(Serialize)]
pub struct ClusterView {
    pub name: String,
    pub version: Option<String>,
    pub bootstrap: Option<String>,
    /// The bootstrap server reported the cluster CA (joiners can pin it).
    pub ca_reported: bool,
    pub servers: Vec<(String, MachineState)>,
    pub agents: Vec<(String, MachineState)>,
    /// Members whose latest join request was told to wait for the CA.
    pub waiting: Vec<String>,
}

pub async fn clusters(s: &Shared) -> Result<Vec<ClusterView>> {
    let machines = s.store.machines().await?;
    let mut last_join: BTreeMap<String, String> = BTreeMap::new();
    for e in s.store.latest_events(FLEET_EVENTS).await? {
        if let (Some(m), true) = (&e.machine, e.kind.starts_with("join.")) {
            last_join.insert(m.clone(), e.kind.clone());
        }
    }
    let mut out = Vec::new();
    for c in s.store.clusters().await? {
        let ca_reported = s.store.setting(&crate::cluster::ca_key(&c.name)).await?.is_some();
        let members: Vec<&MachineRecord> =
            machines.iter().filter(|m| m.spec.cluster.as_deref() == Some(&c.name) && m.state != MachineState::Retired).collect();
        let of_role = |server: bool| {
            members
                .iter()
                .filter(|m| (m.spec.role != Some(bootplane_core::Role::Agent)) == server)
                .map(|m| (m.spec.name.clone(), m.state))
                .collect::<Vec<_>>()
        };
        out.push(ClusterView {
            waiting: members
                .iter()
                .filter(|m| last_join.get(m.name()).map(String::as_str) == Some("join.waiting"))
                .map(|m| m.spec.name.clone())
                .collect(),
            servers: of_role(true),
            agents: of_role(false),
            version: c.k3s.version.clone(),
            bootstrap: c.k3s.bootstrap.clone(),
            ca_reported,
            name: c.name,
        });
    }
    Ok(out)
}

/// The answer to a power request.
#[derive(Serialize)]
pub struct PowerView {
    pub machine: String,
    pub driver: &'static str,
    /// The action done, for a power change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// The power state read after it (`unknown (...)` when the driver cannot tell).
    pub state: String,
}

/// How long a power request waits for the machine's state to follow.
const POWER_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

fn power_driver(record: &MachineRecord) -> Result<Box<dyn bootplane_power::PowerDriver>> {
    let name = record.name();
    let spec = record.spec.power.as_ref().ok_or_else(|| {
        ServiceError::Invalid(format!(
            "machine {name} has no `power:`; declare ipmi, redfish or command for it in bootplane.yaml and apply it"
        ))
    })?;
    let target = bootplane_power::Target {
        name: name.to_string(),
        mac: record.spec.macs.first().map(|m| m.to_string()),
        ip: record.spec.ip.map(|ip| ip.to_string()),
    };
    bootplane_power::driver_for(spec, &target).map_err(|e| ServiceError::Invalid(format!("machine {name}: {e}")))
}

/// Runs a (blocking) driver call off the async threads.
/// An operator action's event, written straight to the store before the action goes on
/// (not through the batching sink): whoever reads the events after the answer finds
/// every step, and a step is never dropped.
async fn audit(s: &Shared, event: bootplane_store::BatchItem) {
    if let Err(e) = s.store.write_batch(vec![event]).await {
        tracing::error!("an operator action's event could not be written: {e}");
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ServiceError::Upstream(format!("a worker task crashed: {e}")))
}

pub async fn power_status(s: &Shared, name: &str) -> Result<PowerView> {
    let record = s.store.machine(name).await?.ok_or_else(|| no_machine(name))?;
    let driver = power_driver(&record)?;
    let kind = driver.kind();
    let state = blocking(move || driver.status()).await?.map_err(|e| ServiceError::Upstream(format!("machine {name}: {e}")))?;
    Ok(PowerView { machine: name.to_string(), driver: kind, action: None, state: state.to_string() })
}

/// Switches a machine's power and records it (`power.action`, with the failing step when
/// it fails; never a credential).
pub async fn power(s: &Shared, name: &str, action: bootplane_power::PowerAction, actor: &Actor) -> Result<PowerView> {
    let record = s.store.machine(name).await?.ok_or_else(|| no_machine(name))?;
    let driver = power_driver(&record)?;
    let kind = driver.kind();
    let result = blocking(move || bootplane_power::power_and_settle(driver.as_ref(), action, POWER_SETTLE)).await?;
    let mut detail = json!({ "action": action.as_str(), "driver": kind, "via": actor.via });
    match &result {
        Ok(state) => detail["state"] = json!(state.to_string()),
        Err(e) => {
            detail["error"] = json!(e.to_string());
            detail["step"] = json!(e.step().to_string());
        }
    }
    audit(s, bootplane_store::BatchItem::Event(bootplane_store::NewEvent::new(Some(name), "power.action", actor.source.clone(), detail))).await;
    let state = result.map_err(|e| ServiceError::Upstream(format!("machine {name}: {e}")))?;
    Ok(PowerView { machine: name.to_string(), driver: kind, action: Some(action.as_str()), state: state.to_string() })
}

/// What `reinstall` did before handing over to the machine: each step, in order.
#[derive(Serialize)]
pub struct ReinstallStarted {
    pub machine: String,
    /// The state it was in before.
    pub previous: MachineState,
    pub steps: Vec<String>,
    /// Events after this id are the reinstall's (for a caller following it).
    pub after: i64,
}

/// The cluster members `name` leaves without a server if it is reinstalled now.
fn only_server(record: &MachineRecord, all: &[MachineRecord]) -> Option<String> {
    let cluster = record.spec.cluster.as_ref()?;
    if record.spec.role == Some(bootplane_core::Role::Agent) {
        return None;
    }
    let others = all.iter().any(|m| {
        m.name() != record.name()
            && m.spec.cluster.as_ref() == Some(cluster)
            && m.spec.role != Some(bootplane_core::Role::Agent)
            && m.state == MachineState::Installed
    });
    (!others).then(|| cluster.clone())
}

/// How long a drain may take (evictions wait for pods' termination grace periods and
/// PodDisruptionBudgets) before the reinstall stops, the disk untouched.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Reinstalls a machine through its power driver: (1) reads its power state; for a k3s
/// node of a cluster whose kubeconfig bootplane holds, (2) cordons and drains it (not
/// with `no_drain`, for a dead node) and deletes its node through the cluster's API;
/// (3) sets a one-time network boot (when the driver can), (4) provisions it (new
/// credential), (5) power-cycles it (or powers it on). Each step is a `reinstall.step`
/// event. A failure before (4) leaves the disk and the machine's state alone; a failure
/// at (5) rolls the provision back. The machine then boots, installs and reports.
pub async fn reinstall(s: &Shared, name: &str, force: bool, no_drain: bool, actor: &Actor) -> Result<ReinstallStarted> {
    use bootplane_power::{PowerAction, PowerState};
    let record = s.store.machine(name).await?.ok_or_else(|| no_machine(name))?;
    let all = s.store.machines().await?;
    if let (Some(cluster), false) = (only_server(&record, &all), force) {
        return Err(ServiceError::Conflict(format!(
            "{name} is the only installed server of cluster {cluster}: reinstalling it loses the cluster's datastore. \
             Add a server first, or pass --force if the cluster is to be rebuilt"
        )));
    }
    let driver: std::sync::Arc<dyn bootplane_power::PowerDriver> = power_driver(&record)?.into();
    let after = newest_event_id(s).await?;
    let mut steps = Vec::new();
    let step_event = |step: &str, detail: serde_json::Value| op_step(name, "reinstall", actor, step, detail);
    let fail = |step: &str, e: &bootplane_power::PowerError, consequence: &str| {
        ServiceError::Upstream(format!("machine {name}: reinstall stopped at step `{step}`: {e}. {consequence}"))
    };
    // 1. The BMC answers at all: nothing is changed before that is known.
    let d = driver.clone();
    let state = match blocking(move || d.status()).await? {
        Ok(st) => st,
        Err(e) => {
            audit(s, step_event("power status", json!({ "error": e.to_string() }))).await;
            return Err(fail("power status", &e, "Nothing was changed"));
        }
    };
    audit(s, step_event("power status", json!({ "state": state.to_string() }))).await;
    steps.push(format!("power status: {state}"));
    // 2. Out of the cluster first: what a drain and `kubectl delete node` do.
    let leave = |step: &ClusterStep| step_event(&step.step, step.detail());
    match remove_node(s, &record, no_drain, &leave).await {
        Ok(done) => steps.extend(done),
        Err(e) => return Err(e.stopped(name, "reinstall", no_drain, false)),
    }
    // 3. The next boot goes to the network.
    if driver.sets_boot_device() {
        let uefi = record.observed.platform.as_deref() == Some("efi");
        let d = driver.clone();
        if let Err(e) = blocking(move || d.boot_once_from_network(uefi)).await? {
            audit(s, step_event("boot override", json!({ "error": e.to_string() }))).await;
            return Err(fail("one-time network boot", &e, "Nothing was changed"));
        }
        let what = format!("one-time network boot set ({})", if uefi { "UEFI" } else { "BIOS" });
        audit(s, step_event("boot override", json!({ "uefi": uefi }))).await;
        steps.push(what);
    } else {
        steps.push(format!("no boot override ({} cannot set one): the machine must boot from the network first", driver.kind()));
    }
    // 4. Provision: a new credential, the install decision at its next boot.
    let previous = record.state;
    s.store.transition(name, MachineState::Provision, Trigger::AdminProvision, actor.source.clone(), json!(format!("reinstall via {}", actor.via))).await?;
    steps.push(format!("provisioned (was {previous})"));
    // 5. Power: cycle a running machine, switch on one that is off.
    let action = if state == PowerState::Off { PowerAction::On } else { PowerAction::Cycle };
    let d = driver.clone();
    if let Err(e) = blocking(move || d.power(action)).await? {
        audit(s, step_event(&format!("power {}", action.as_str()), json!({ "error": e.to_string() }))).await;
        let undone = match s
            .store
            .transition(name, previous, Trigger::ReinstallAborted, actor.source.clone(), json!({ "failed_step": format!("power {}", action.as_str()) }))
            .await
        {
            Ok(_) => format!("The provision was rolled back: {name} is `{previous}` again"),
            Err(_) => format!("{name} stays in `provision` (it was `{previous}`, which cannot be restored): it installs at its next network boot"),
        };
        return Err(fail(&format!("power {}", action.as_str()), &e, &undone));
    }
    audit(s, step_event(&format!("power {}", action.as_str()), json!({}))).await;
    steps.push(format!("power {} done", action.as_str()));
    Ok(ReinstallStarted { machine: name.to_string(), previous, steps, after })
}

/// One step of taking a node out of its cluster, as a `reinstall.step` or `retire.step`
/// event records it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterStep {
    pub step: String,
    pub node: String,
    /// What the step found or did (`evicted`, `found`, `absent`, `why`).
    pub outcome: serde_json::Value,
    /// Why the step failed; the steps after it were not run.
    pub error: Option<String>,
}

impl ClusterStep {
    fn new(step: String, node: &str, outcome: serde_json::Value) -> Self {
        ClusterStep { step, node: node.to_string(), outcome, error: None }
    }
    fn failed(step: String, node: &str, error: impl ToString) -> Self {
        ClusterStep { step, node: node.to_string(), outcome: json!({}), error: Some(error.to_string()) }
    }
    /// The event's detail: the node, the outcome's fields and `error` when it failed.
    fn detail(&self) -> serde_json::Value {
        let mut d = json!({ "node": self.node });
        if let Some(o) = self.outcome.as_object() {
            d.as_object_mut().expect("an object").extend(o.clone());
        }
        if let Some(e) = &self.error {
            d["error"] = json!(e);
        }
        d
    }
}

/// Why a node could not be taken out of its cluster; nothing on the machine was changed.
#[derive(Debug)]
pub enum NodeRemoval {
    /// A step against the cluster's API failed.
    Step { step: String, error: String },
    /// The cluster's recorded kubeconfig cannot be used.
    Kubeconfig { node: String, error: String },
}

impl NodeRemoval {
    /// The operator's error for `op` (reinstall, retire, provision) stopped by this;
    /// `offer_force`: `op` can go on past it with `--force`, and the error says so.
    fn stopped(self, name: &str, op: &str, no_drain: bool, offer_force: bool) -> ServiceError {
        let force = if offer_force { "; --force goes on and leaves the node in the cluster" } else { "" };
        match self {
            NodeRemoval::Step { step, error } => {
                let hint = if no_drain { "" } else { " (--no-drain skips the drain of a node that is dead)" };
                ServiceError::Upstream(format!("machine {name}: {op} stopped at step `{step}`: {error}. Nothing on the machine was changed{hint}{force}"))
            }
            NodeRemoval::Kubeconfig { node, error } => ServiceError::Conflict(format!(
                "machine {name}: {op} stopped before anything was changed: {error}; remove the node by hand \
                 (`kubectl drain {node} --ignore-daemonsets --delete-emptydir-data`, `kubectl delete node {node}`) and run it again{force}"
            )),
        }
    }
}

/// Takes `record`'s k3s node out of its cluster through the API with the kubeconfig
/// bootplane holds: cordon, drain (unless `no_drain`), delete the node (k3s then drops
/// its node password, so the name can join again with another). `event` makes each
/// step's event; the steps done, as lines. Nothing to do for a machine outside a
/// cluster or a cluster that never reported its kubeconfig.
async fn remove_node(
    s: &Shared,
    record: &MachineRecord,
    no_drain: bool,
    event: &(dyn Fn(&ClusterStep) -> bootplane_store::BatchItem + Sync),
) -> std::result::Result<Vec<String>, NodeRemoval> {
    let Some(cluster) = &record.spec.cluster else { return Ok(Vec::new()) };
    let node = bootplane_core::k3s::node_name(&record.spec);
    let kc = match crate::cluster::admin_kubeconfig(s, cluster).await {
        Ok(Some(kc)) => kc,
        // Not bootstrapped yet (or never reported): nothing of the node to remove.
        Ok(None) => return Ok(vec![format!("cluster {cluster}: no kubeconfig recorded yet, so no node to remove")]),
        Err((_, error)) => return Err(NodeRemoval::Kubeconfig { node, error }),
    };
    let mut done = Vec::new();
    for step in leave_cluster(&kc, &node, no_drain).await? {
        audit(s, event(&step)).await;
        if let Some(error) = step.error {
            return Err(NodeRemoval::Step { step: step.step, error });
        }
        done.push(step.step);
    }
    Ok(done)
}

/// Cordons, drains (unless `no_drain`) and deletes `node` through the cluster's API:
/// each step and its outcome, ending at the first that failed.
async fn leave_cluster(kubeconfig: &str, node: &str, no_drain: bool) -> std::result::Result<Vec<ClusterStep>, NodeRemoval> {
    let (kc, node) = (kubeconfig.to_string(), node.to_string());
    let steps = blocking(move || {
        let mut done = Vec::new();
        let kube = match crate::kube::Kube::from_kubeconfig(&kc) {
            Ok(k) => k,
            Err(e) => {
                done.push(ClusterStep::failed("cluster API".to_string(), &node, e));
                return done;
            }
        };
        let exists = if no_drain {
            done.push(ClusterStep::new("drain skipped".to_string(), &node, json!({ "why": "--no-drain" })));
            true
        } else {
            match kube.cordon(&node) {
                Ok(true) => {
                    done.push(ClusterStep::new(format!("cordon {node}"), &node, json!({})));
                    match kube.drain(&node, DRAIN_TIMEOUT) {
                        Ok(n) => done.push(ClusterStep::new(format!("drain {node}"), &node, json!({ "evicted": n }))),
                        Err(e) => {
                            done.push(ClusterStep::failed(format!("drain {node}"), &node, e));
                            return done;
                        }
                    }
                    true
                }
                Ok(false) => {
                    done.push(ClusterStep::new(format!("cordon {node}"), &node, json!({ "absent": true })));
                    false
                }
                Err(e) => {
                    done.push(ClusterStep::failed(format!("cordon {node}"), &node, e));
                    return done;
                }
            }
        };
        if exists {
            match kube.delete_node(&node) {
                Ok(found) => done.push(ClusterStep::new(format!("delete node {node}"), &node, json!({ "found": found }))),
                Err(e) => done.push(ClusterStep::failed(format!("delete node {node}"), &node, e)),
            }
        }
        done
    })
    .await;
    steps.map_err(|e| NodeRemoval::Step { step: "cluster API".into(), error: e.to_string() })
}

/// What `provision` or `retire` did: the machine after it, whether it changed, and the
/// cluster steps.
#[derive(Serialize)]
pub struct OperatorChange {
    #[serde(flatten)]
    pub view: MachineView,
    pub changed: bool,
    pub steps: Vec<String>,
}

/// Retires a machine (it boots its local disk and never installs again). A k3s node
/// leaves its cluster first (cordon, drain unless `no_drain`, delete the node through
/// the API, each a `retire.step` event), so its name and node password are free for
/// the next machine that joins under it; a refused step stops before the machine
/// changes. The only installed server of a cluster is retired only with `force`, and
/// `force` also retires a machine whose cluster cannot be reached (its node stays: the
/// answer says so).
pub async fn retire(s: &Shared, name: &str, force: bool, no_drain: bool, actor: &Actor) -> Result<OperatorChange> {
    let record = s.store.machine(name).await?.ok_or_else(|| no_machine(name))?;
    if record.state == MachineState::Retired {
        return Ok(OperatorChange { view: MachineView::from(&record), changed: false, steps: Vec::new() });
    }
    let all = s.store.machines().await?;
    let installed = record.state == MachineState::Installed;
    if let (Some(cluster), true, false) = (only_server(&record, &all), installed, force) {
        return Err(ServiceError::Conflict(format!(
            "{name} is the only installed server of cluster {cluster}: retiring it ends the cluster. \
             Add a server first, or pass --force if the cluster is to go"
        )));
    }
    let steps = leave_for(s, &record, "retire", force, no_drain, actor).await?;
    let t = s.store.transition(name, MachineState::Retired, Trigger::AdminRetire, actor.source.clone(), json!(actor.via)).await?;
    Ok(OperatorChange { view: MachineView::from(t.record()), changed: matches!(t, Transitioned::Changed { .. }), steps })
}

/// Provisions a machine: it installs at its next network boot, with a new credential.
/// A k3s node that may be in its cluster (installed, written or failed) leaves it first
/// as for `retire` (`provision.step` events): a reinstalled server comes back with a new
/// etcd member name, and k3s refuses it while the old member is there ("duplicate node
/// name found"). `force` provisions past a cluster that cannot be reached.
pub async fn provision(s: &Shared, name: &str, force: bool, no_drain: bool, actor: &Actor) -> Result<OperatorChange> {
    let record = s.store.machine(name).await?.ok_or_else(|| no_machine(name))?;
    let steps = match record.state {
        MachineState::Installed | MachineState::Written | MachineState::Failed => leave_for(s, &record, "provision", force, no_drain, actor).await?,
        _ => Vec::new(),
    };
    let t = s.store.transition(name, MachineState::Provision, Trigger::AdminProvision, actor.source.clone(), json!(actor.via)).await?;
    Ok(OperatorChange { view: MachineView::from(t.record()), changed: matches!(t, Transitioned::Changed { .. }), steps })
}

/// [`remove_node`] for operation `op` (`OP.step` events); with `force`, a refusal is a
/// step saying the node stayed instead of an error.
async fn leave_for(s: &Shared, record: &MachineRecord, op: &str, force: bool, no_drain: bool, actor: &Actor) -> Result<Vec<String>> {
    let name = record.name();
    let event = |step: &ClusterStep| op_step(name, op, actor, &step.step, step.detail());
    match remove_node(s, record, no_drain, &event).await {
        Ok(steps) => Ok(steps),
        Err(e) if force => Ok(vec![format!("its node was left in the cluster (--force): {}", e.stopped(name, op, no_drain, false))]),
        Err(e) => Err(e.stopped(name, op, no_drain, true)),
    }
}

/// The `OP.step` event of one step of operator action `op` on machine `name`.
fn op_step(name: &str, op: &str, actor: &Actor, step: &str, detail: serde_json::Value) -> bootplane_store::BatchItem {
    bootplane_store::BatchItem::Event(bootplane_store::NewEvent::new(
        Some(name),
        &format!("{op}.step"),
        actor.source.clone(),
        json!({ "step": step, "via": actor.via, "detail": detail }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, role: Option<bootplane_core::Role>, state: MachineState) -> MachineRecord {
        MachineRecord::fresh(MachineSpec { name: name.into(), cluster: Some("lab".into()), role, ..Default::default() }, state, chrono::Utc::now())
    }

    #[test]
    fn the_only_installed_server_is_not_reinstalled_without_force() {
        use bootplane_core::Role::{Agent, Server};
        let s1 = rec("s1", Some(Server), MachineState::Installed);
        let a1 = rec("a1", Some(Agent), MachineState::Installed);
        let s2_installing = rec("s2", Some(Server), MachineState::Installing);
        assert_eq!(only_server(&s1, &[s1.clone(), a1.clone(), s2_installing.clone()]).as_deref(), Some("lab"), "s2 is not up yet");
        let s2 = rec("s2", Some(Server), MachineState::Installed);
        assert_eq!(only_server(&s1, &[s1.clone(), s2]), None);
        assert_eq!(only_server(&a1, &[s1.clone(), a1.clone()]), None, "agents hold no datastore");
        let mut loner = s1.clone();
        loner.spec.cluster = None;
        assert_eq!(only_server(&loner, &[loner.clone()]), None, "not a cluster member");
    }
}
