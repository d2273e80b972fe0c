//! Persistent state behind one [`Store`] trait: machines and their states, bundles,
//! clusters, templates, settings and the event log. The trait speaks in domain types and
//! whole operations (apply an inventory, move a machine, write a batch of events), never
//! in SQL, so a PostgreSQL backend can implement it without the callers changing. Every
//! state change happens in one transaction together with its `state.changed` event.
//! [`sqlite::SqliteStore`] is the embedded default; [`postgres::PostgresStore`] lets
//! several instances share one database. What an operation does (transition effects,
//! adoption, bundle revisions) is decided once, in [`rules`]; the backends only store.

pub mod postgres;
pub mod rules;
pub mod sqlite;

#[cfg(test)]
mod battery;

use async_trait::async_trait;
use bootplane_core::model::{Bundle, Cluster, Lease, MachineRecord, MachineSpec};
use bootplane_core::state::{MachineState, TransitionError, Trigger};
use bootplane_core::Observed;
use serde::{Deserialize, Serialize};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no machine named `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("{0}")]
    Conflict(String),
    /// A problem the store itself describes (a path it cannot create, a migration).
    #[error("store: {0}")]
    Backend(String),
    /// `bootplane migrate` into a store that is not empty.
    #[error("the target store is not empty ({0}); migrate only into a new, empty database")]
    NotEmpty(String),
    /// The database driver's own error, kept whole; shown with its causes (a driver's
    /// top message alone, e.g. tokio-postgres' "db error", says nothing).
    #[error("{}", cause_chain(.0.as_ref()))]
    Database(Box<dyn std::error::Error + Send + Sync>),
}

fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

impl StoreError {
    pub fn database<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        StoreError::Database(Box::new(e))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// See [`Store::lease_writer`]. Returns the leases it refused, each as the row that holds
/// the address instead.
pub type LeaseWriter = Box<dyn FnMut(&[Lease], &[NewEvent]) -> Result<Vec<Lease>> + Send>;

/// An event about to be written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The machine, or `None` when only an observed identity is known.
    pub machine: Option<String>,
    pub kind: String,
    pub source: Option<String>,
    pub detail: serde_json::Value,
}

impl NewEvent {
    pub fn new(machine: Option<&str>, kind: &str, source: Option<String>, detail: serde_json::Value) -> Self {
        NewEvent { machine: machine.map(str::to_string), kind: kind.to_string(), source, detail }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    pub time: chrono::DateTime<chrono::Utc>,
    pub machine: Option<String>,
    pub kind: String,
    pub source: Option<String>,
    pub detail: serde_json::Value,
}

impl bootplane_core::chain::ChainEvent for Event {
    fn kind(&self) -> &str {
        &self.kind
    }
    fn detail(&self) -> &serde_json::Value {
        &self.detail
    }
}

#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub machine: Option<String>,
    /// Only events with a larger id.
    pub after: Option<i64>,
    pub limit: u32,
}

/// Writes that may be delayed and grouped: one transaction per batch.
#[derive(Clone, Debug)]
pub enum BatchItem {
    Event(NewEvent),
    /// An unknown machine was seen: remember it as `discovered` (or refresh it).
    Discovered { observed: Observed, source: Option<String> },
    /// A known machine was seen.
    Seen { machine: String, observed: Observed },
}

/// Everything `bootplane apply` upserts, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct ApplySet {
    pub machines: Vec<MachineSpec>,
    pub bundles: Vec<Bundle>,
    pub clusters: Vec<Cluster>,
    pub templates: Vec<(String, String)>,
    pub settings: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub machines_created: u32,
    pub machines_updated: u32,
    pub machines_adopted: u32,
    pub machines_provisioned: u32,
    pub bundles_created: u32,
    /// Bundles whose definition changed: each got a new revision.
    pub bundles_revised: u32,
    pub clusters: u32,
    pub templates: u32,
}

/// Everything a store holds, for `bootplane migrate`: machines with their counters and
/// times, bundles with their history, clusters, templates, settings (sealed secrets stay
/// sealed), the event log with its ids and times, and the leases.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub machines: Vec<MachineRecord>,
    pub bundles: Vec<Bundle>,
    pub bundle_history: Vec<Bundle>,
    pub clusters: Vec<Cluster>,
    pub templates: Vec<(String, String)>,
    pub settings: Vec<(String, String)>,
    pub events: Vec<Event>,
    pub leases: Vec<Lease>,
}

impl Snapshot {
    /// One line per kind, for the operator.
    pub fn summary(&self) -> String {
        format!(
            "{} machines, {} bundles ({} earlier revisions), {} clusters, {} templates, {} settings, {} events, {} leases",
            self.machines.len(),
            self.bundles.len(),
            self.bundle_history.len(),
            self.clusters.len(),
            self.templates.len(),
            self.settings.len(),
            self.events.len(),
            self.leases.len()
        )
    }
}

/// The result of asking for a transition.
#[derive(Clone, Debug)]
pub enum Transitioned {
    Changed { from: MachineState, record: MachineRecord },
    /// The machine already was in the target state; nothing was written.
    Unchanged(MachineRecord),
}

impl Transitioned {
    pub fn record(&self) -> &MachineRecord {
        match self {
            Transitioned::Changed { record, .. } | Transitioned::Unchanged(record) => record,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub events_deleted: u64,
    pub discovered_deleted: u64,
}

/// A setting written together with a state change.
#[derive(Clone, Debug)]
pub struct SettingWrite {
    pub key: String,
    pub value: String,
    /// Keep an existing different value and fail instead of replacing it.
    pub first_writer_wins: bool,
}

/// Events kept by age rather than by count: what happened to machines, their configs,
/// credentials and clusters. A flood of boot requests (which only produces boot and
/// discovery events) can never push these out of the log.
pub const AUDIT_KINDS: &[&str] = &[
    "state.changed",
    "config.served",
    "config.refetched",
    "config.refused",
    "config.alarm",
    "config.error",
    "join.served",
    "join.refetched",
    "join.refused",
    "join.alarm",
    "boot.alarm",
    "report.alarm",
    "report.refused",
    "identity.conflict",
    "cluster.reset",
    "cluster.tokens_rotated",
];

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn apply(&self, set: ApplySet) -> Result<ApplyReport>;

    /// The machines owning the observed UUID and MAC, in that order, for
    /// [`bootplane_core::resolve_identity`].
    async fn identity_candidates(&self, obs: &Observed) -> Result<(Option<MachineRecord>, Option<MachineRecord>)>;

    async fn machine(&self, name: &str) -> Result<Option<MachineRecord>>;
    async fn machines(&self) -> Result<Vec<MachineRecord>>;
    async fn machine_counts(&self) -> Result<Vec<(MachineState, u64)>>;
    async fn bundle(&self, name: &str) -> Result<Option<Bundle>>;
    async fn bundles(&self) -> Result<Vec<Bundle>>;
    /// One revision of a bundle: the current one or an earlier one a machine still uses.
    async fn bundle_revision(&self, name: &str, revision: u32) -> Result<Option<Bundle>>;
    /// Every earlier revision of every bundle (their files must outlive a gc).
    async fn bundle_history(&self) -> Result<Vec<Bundle>>;
    async fn cluster(&self, name: &str) -> Result<Option<Cluster>>;
    async fn clusters(&self) -> Result<Vec<Cluster>>;
    async fn template(&self, name: &str) -> Result<Option<String>>;
    /// Removes a bundle no machine refers to; refuses (Conflict) one in use.
    async fn delete_bundle(&self, name: &str) -> Result<()>;

    /// Moves `machine` to `to`, if the transition table allows it from its current state,
    /// writing a `state.changed` event in the same transaction. Entering `provision` resets
    /// the install attempts and issues a fresh credential; a report retires the credential.
    async fn transition(
        &self,
        machine: &str,
        to: MachineState,
        trigger: Trigger,
        source: Option<String>,
        detail: serde_json::Value,
    ) -> Result<Transitioned>;

    /// [`Store::transition`] that also writes `settings` in the same transaction, and
    /// refuses a move to the state the machine is already in (a replayed report). A
    /// setting with `first_writer_wins` that already holds another value fails the whole
    /// transaction with `Conflict`.
    async fn transition_with_settings(
        &self,
        machine: &str,
        to: MachineState,
        trigger: Trigger,
        source: Option<String>,
        detail: serde_json::Value,
        settings: Vec<SettingWrite>,
    ) -> Result<Transitioned>;

    /// Counts one more installer served; only valid in `provision`/`installing`.
    async fn note_install_attempt(&self, machine: &str) -> Result<MachineRecord>;

    async fn write_batch(&self, items: Vec<BatchItem>) -> Result<()>;
    async fn events(&self, q: EventQuery) -> Result<Vec<Event>>;
    /// The latest `per_machine` events of every machine, by machine then id (oldest
    /// first): the dashboard's fleet view in one query instead of one per machine.
    async fn latest_events(&self, per_machine: u32) -> Result<Vec<Event>>;
    /// Woken whenever any instance commits events, when the backend can tell (PostgreSQL
    /// LISTEN/NOTIFY); `None` otherwise (readers poll).
    fn events_written(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    async fn event_count(&self) -> Result<u64>;

    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` under `key` unless a value is already there; returns the stored one.
    /// Several instances racing to create a secret all end up with the same one.
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String>;
    /// Stores `value` under `key`, replacing what was there.
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;
    async fn delete_setting(&self, key: &str) -> Result<()>;
    /// Replaces `key`'s value with `new` only if it is still `old`; false when another
    /// writer got there first (single-use claims across instances).
    async fn replace_setting(&self, key: &str, old: &str, new: &str) -> Result<bool>;

    async fn leases(&self) -> Result<Vec<Lease>>;
    /// Writes leases (by address) in one transaction; each MAC's other leases go. A lease
    /// is a claim: it is refused while another MAC holds the address unexpired (another
    /// instance got there first). Returns the refused ones as the rows holding them.
    async fn put_leases(&self, leases: &[Lease]) -> Result<Vec<Lease>>;
    /// Whether several instances may allocate from this store's leases at once, so the
    /// DHCP server must claim even its offers here before sending them, and reload what
    /// the others claimed. False for SQLite (one instance per file).
    fn shares_leases(&self) -> bool {
        false
    }
    /// [`Store::put_leases`] as a blocking call with a connection of its own, for the DHCP
    /// thread, writing the leases and the events about them in one transaction (one
    /// commit per DHCP burst instead of two, and no hand-off to another thread); `None`
    /// when the backend has no such path (callers use `put_leases` and the event sink).
    fn lease_writer(&self) -> Option<LeaseWriter> {
        None
    }

    /// Reads the whole store in one consistent snapshot.
    async fn export(&self) -> Result<Snapshot>;
    /// Writes `snapshot` into this store in one transaction; refuses (Conflict) a store
    /// that already holds machines, bundles, settings or events.
    async fn import(&self, snapshot: Snapshot) -> Result<()>;

    /// Keeps the newest `events_retained` events that are not [`AUDIT_KINDS`], the
    /// audit events of the last `audit_days` days, and `max_discovered` discovered
    /// machines.
    async fn prune(&self, events_retained: u64, audit_days: u32, max_discovered: u64) -> Result<PruneReport>;
}
