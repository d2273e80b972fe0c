//! The embedded SQLite backend: one database file under the data directory, WAL mode so
//! readers never wait for the writer, and `BEGIN IMMEDIATE` for every write so concurrent
//! writers queue on the busy timeout instead of failing mid-transaction. Blocking SQLite
//! calls run on tokio's blocking pool. Migrations are the numbered files in
//! `migrations/sqlite/`, applied in order and recorded in `schema_migrations`. The boot
//! path's lookups are kept in memory while a trigger-kept counter stands still
//! (`identity`), so a known machine's boot costs one read of that counter.

use crate::*;
use chrono::{DateTime, SecondsFormat, Utc};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

mod identity;
use identity::{Found, IdentityCache};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_leases.sql")),
    (3, include_str!("../../migrations/sqlite/0003_bundle_revisions.sql")),
    (4, include_str!("../../migrations/sqlite/0004_identity_generation.sql")),
];

const MACHINE_COLS: &str =
    "name, spec, state, install_attempts, credential_generation, observed, last_seen, created, updated";
/// The boot path's two lookups, spelled out once so each request does no formatting.
/// Each reads migration 4's identity generation in the same statement (one snapshot),
/// and answers one row, its machine columns NULL when nobody owns the UUID or MAC.
const BY_UUID: &str = "SELECT g.n, m.name, m.spec, m.state, m.install_attempts, m.credential_generation, m.observed, \
     m.last_seen, m.created, m.updated FROM identity_generation g LEFT JOIN machines m ON m.uuid = ?1";
const BY_MAC: &str = "SELECT g.n, m.name, m.spec, m.state, m.install_attempts, m.credential_generation, m.observed, \
     m.last_seen, m.created, m.updated FROM identity_generation g \
     LEFT JOIN machine_macs k ON k.mac = ?1 LEFT JOIN machines m ON m.name = k.machine";

pub struct SqliteStore {
    pool: r2d2::Pool<SqliteConnectionManager>,
    /// This process's writers take turns here before `BEGIN IMMEDIATE`: a waiting writer
    /// is woken the moment the lock is free, where SQLite's busy handler would sleep in
    /// 1-100 ms steps (under DHCP load, lease commits queued behind event batches that way).
    /// Other processes sharing the file still meet the busy timeout.
    writer: std::sync::Arc<std::sync::Mutex<()>>,
    /// The boot path's lookups, valid while migration 4's counter stands still.
    identity: Arc<Mutex<IdentityCache>>,
}

fn lock_identity(m: &Mutex<IdentityCache>) -> std::sync::MutexGuard<'_, IdentityCache> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn identity_generation(c: &Connection) -> Result<i64> {
    c.prepare_cached("SELECT n FROM identity_generation").and_then(|mut st| st.query_row([], |r| r.get(0))).map_err(be)
}

/// How often the DHCP lease writer has the WAL checkpointed on a helper thread.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

fn be<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::database(e)
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn json_col<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn machine_from_row(r: &Row<'_>) -> rusqlite::Result<MachineRecord> {
    machine_at(r, 0)
}

/// A machine from the row's columns `at`.. (MACHINE_COLS' order).
fn machine_at(r: &Row<'_>, at: usize) -> rusqlite::Result<MachineRecord> {
    let state: String = r.get(at + 2)?;
    Ok(MachineRecord {
        spec: json_col(&r.get::<_, String>(at + 1)?)?,
        state: state
            .parse()
            .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(at + 2, rusqlite::types::Type::Text, e.into()))?,
        install_attempts: r.get(at + 3)?,
        credential_generation: r.get(at + 4)?,
        observed: json_col(&r.get::<_, String>(at + 5)?)?,
        last_seen: r.get::<_, Option<String>>(at + 6)?.map(|s| parse_time(&s)).transpose()?,
        created: parse_time(&r.get::<_, String>(at + 7)?)?,
        updated: parse_time(&r.get::<_, String>(at + 8)?)?,
    })
}

/// A boot-path lookup's row: the identity generation, then the owning machine if any.
fn generation_and_machine(r: &Row<'_>) -> rusqlite::Result<(i64, Option<MachineRecord>)> {
    let owned = r.get::<_, Option<String>>(1)?.is_some();
    Ok((r.get(0)?, if owned { Some(machine_at(r, 1)?) } else { None }))
}

fn get_machine(c: &Connection, name: &str) -> Result<Option<MachineRecord>> {
    c.query_row(&format!("SELECT {MACHINE_COLS} FROM machines WHERE name = ?1"), [name], machine_from_row)
        .optional()
        .map_err(be)
}

fn insert_event(c: &Connection, e: &NewEvent) -> Result<()> {
    c.prepare_cached("INSERT INTO events (time, machine, kind, source, detail) VALUES (?1, ?2, ?3, ?4, ?5)")
        .and_then(|mut st| st.execute(params![now(), e.machine, e.kind, e.source, e.detail.to_string()]))
        .map(|_| ())
        .map_err(be)
}

/// Inserts events with multi-row `INSERT`s: under a boot storm the event log is the
/// busiest table, and one statement per 64 rows is several times cheaper than one per row.
fn insert_events(c: &Connection, events: &[&NewEvent], ts: &str) -> Result<()> {
    const CHUNK: usize = 64;
    for chunk in events.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO events (time, machine, kind, source, detail) VALUES {}",
            vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut st = c.prepare_cached(&sql).map_err(be)?;
        let details: Vec<String> = chunk.iter().map(|e| e.detail.to_string()).collect();
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 5);
        for (e, d) in chunk.iter().zip(&details) {
            params.push(&ts);
            params.push(&e.machine);
            params.push(&e.kind);
            params.push(&e.source);
            params.push(d);
        }
        st.execute(params.as_slice()).map_err(be)?;
    }
    Ok(())
}

/// The transition itself, inside the caller's transaction.
fn transition_in(
    c: &Connection,
    rec: MachineRecord,
    to: MachineState,
    trigger: Trigger,
    source: Option<String>,
    detail: serde_json::Value,
) -> Result<Transitioned> {
    let Some(effects) = rules::transition_effects(&rec, to, trigger)? else {
        return Ok(Transitioned::Unchanged(rec));
    };
    let from = rec.state;
    c.execute(
        "UPDATE machines SET state = ?1, install_attempts = ?2, credential_generation = ?3, updated = ?4 WHERE name = ?5",
        params![to.as_str(), effects.install_attempts, effects.credential_generation, now(), rec.name()],
    )
    .map_err(be)?;
    insert_event(c, &rules::state_changed(rec.name(), from, to, trigger, source, detail))?;
    let record = get_machine(c, rec.name())?.ok_or_else(|| StoreError::NotFound(rec.name().into()))?;
    Ok(Transitioned::Changed { from, record })
}

impl SqliteStore {
    /// Opens (creating if needed) `bootplane.db` in `data_dir` and migrates it.
    /// The directory is made private (0700): it holds the store, the sealing key and the
    /// admin token.
    pub fn open(data_dir: &Path) -> Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let fail = |e: std::io::Error| StoreError::Backend(format!("cannot create data directory {}: {e}", data_dir.display()));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir).map_err(fail)?;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        Self::open_file(&data_dir.join("bootplane.db"))
    }

    /// The database and its `-wal`/`-shm` files are 0600: SQLite gives the side files the
    /// main file's mode, so creating that one private is enough for new stores, and
    /// existing files are tightened.
    pub fn open_file(path: &Path) -> Result<Self> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let fail = |e: std::io::Error| StoreError::Backend(format!("cannot create {}: {e}", path.display()));
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(fail)?;
        for suffix in ["", "-wal", "-shm"] {
            let f = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if f.exists() {
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
            }
        }
        // WAL is a property of the database file: set it once, on one connection, before
        // the pool opens several at once (switching modes concurrently can fail with
        // "database is locked" without waiting).
        {
            let c = Connection::open(path).map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
            c.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")
                .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        }
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            c.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        });
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .build(manager)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        let store = SqliteStore { pool, writer: Default::default(), identity: Default::default() };
        let mut c = store.pool.get().map_err(be)?;
        migrate(&mut c)?;
        Ok(store)
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = pool.get().map_err(be)?;
            f(&mut c)
        })
        .await
        .map_err(be)?
    }

    /// Runs a short indexed read on the calling thread. The boot path makes one or two
    /// such reads per request; measured under wrk, handing each to the blocking pool cost
    /// more in thread switches (a third of all CPU) than the reads themselves. WAL readers
    /// never wait for the writer, so this does not stall the async worker.
    fn read_inline<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let c = self.pool.get().map_err(be)?;
        f(&c)
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let (writer, pool) = (self.writer.clone(), self.pool.clone());
        tokio::task::spawn_blocking(move || {
            // The turn first, then a connection: waiting writers never hold connections
            // that readers need.
            let _turn = writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut c = pool.get().map_err(be)?;
            immediate(&mut c, f)
        })
        .await
        .map_err(be)?
    }
}

/// Runs `f` in one `BEGIN IMMEDIATE` transaction on `c`; callers hold the writer turn.
fn immediate<T>(c: &mut Connection, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(be)?;
    let out = f(&tx)?;
    tx.commit().map_err(be)?;
    Ok(out)
}

fn migrate(c: &mut Connection) -> Result<()> {
    c.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)")
        .map_err(be)?;
    for (version, sql) in MIGRATIONS {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(be)?;
        let done: bool = tx
            .query_row("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)", [version], |r| r.get(0))
            .map_err(be)?;
        if !done {
            tx.execute_batch(sql).map_err(|e| StoreError::Backend(format!("migration {version}: {e}")))?;
            tx.execute("INSERT INTO schema_migrations (version, applied) VALUES (?1, ?2)", params![version, now()])
                .map_err(be)?;
        }
        tx.commit().map_err(be)?;
    }
    Ok(())
}

fn apply_machine(tx: &Connection, spec: &MachineSpec, report: &mut ApplyReport) -> Result<()> {
    // Discovered records of this machine give way to it, and hand it their history.
    let mut adopted = false;
    let mut discovered: Vec<String> = Vec::new();
    for mac in &spec.macs {
        let owner: Option<String> = tx
            .query_row(
                "SELECT m.name FROM machine_macs k JOIN machines m ON m.name = k.machine WHERE k.mac = ?1 AND m.state = 'discovered'",
                [mac.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(be)?;
        discovered.extend(owner);
    }
    if let Some(u) = &spec.uuid {
        let mut st = tx
            .prepare("SELECT name FROM machines WHERE state = 'discovered' AND json_extract(spec, '$.uuid') = ?1")
            .map_err(be)?;
        let names = st.query_map([u.as_str()], |r| r.get::<_, String>(0)).map_err(be)?;
        for n in names {
            discovered.push(n.map_err(be)?);
        }
    }
    discovered.sort();
    discovered.dedup();
    for d in discovered.iter().filter(|d| **d != spec.name) {
        tx.execute("DELETE FROM machines WHERE name = ?1", [d]).map_err(be)?;
        tx.execute("UPDATE events SET machine = ?1 WHERE machine = ?2", params![spec.name, d]).map_err(be)?;
        adopted = true;
        report.machines_adopted += 1;
    }

    for mac in &spec.macs {
        let owner: Option<(String, String)> = tx
            .query_row(
                "SELECT m.name, m.state FROM machine_macs k JOIN machines m ON m.name = k.machine WHERE k.mac = ?1",
                [mac.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(be)?;
        if let rules::Claim::TakeFromRetired(_) = rules::claim(spec, &format!("MAC {mac}"), parse_owner(owner))? {
            tx.execute("DELETE FROM machine_macs WHERE mac = ?1", [mac.to_string()]).map_err(be)?;
        }
    }
    if let Some(u) = &spec.uuid {
        let owner: Option<(String, String)> = tx
            .query_row("SELECT name, state FROM machines WHERE uuid = ?1 AND name != ?2", params![u.as_str(), spec.name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(be)?;
        if let rules::Claim::TakeFromRetired(o) = rules::claim(spec, &format!("UUID {u}"), parse_owner(owner))? {
            tx.execute("UPDATE machines SET uuid = NULL WHERE name = ?1", [o]).map_err(be)?;
        }
    }

    let spec_json = serde_json::to_string(spec).map_err(be)?;
    let ts = now();
    let existing = get_machine(tx, &spec.name)?;
    match existing {
        Some(rec) => {
            tx.execute(
                "UPDATE machines SET spec = ?1, uuid = ?2, updated = ?3 WHERE name = ?4",
                params![spec_json, spec.uuid.as_ref().map(|u| u.as_str()), ts, spec.name],
            )
            .map_err(be)?;
            tx.execute("DELETE FROM machine_macs WHERE machine = ?1", [&spec.name]).map_err(be)?;
            insert_macs(tx, spec)?;
            report.machines_updated += 1;
            let rec = MachineRecord { spec: spec.clone(), ..rec };
            if rules::provisions_on_apply(spec, rec.state) {
                transition_in(tx, rec, MachineState::Provision, Trigger::Apply, None, json!(rules::PROVISION_ON_APPLY))?;
                report.machines_provisioned += 1;
            }
        }
        None => {
            let state = rules::initial_state(spec);
            tx.execute(
                "INSERT INTO machines (name, spec, state, uuid, install_attempts, credential_generation, observed, created, updated) \
                 VALUES (?1, ?2, ?3, ?4, 0, 0, '{}', ?5, ?5)",
                params![spec.name, spec_json, state.as_str(), spec.uuid.as_ref().map(|u| u.as_str()), ts],
            )
            .map_err(be)?;
            insert_macs(tx, spec)?;
            report.machines_created += 1;
            if spec.provision {
                report.machines_provisioned += 1;
            }
            insert_event(tx, &rules::created(spec, adopted))?;
        }
    }
    Ok(())
}

/// Every row of a one-column `spec` query, decoded.
fn all_specs<T: serde::de::DeserializeOwned>(c: &Connection, sql: &str) -> Result<Vec<T>> {
    let mut st = c.prepare(sql).map_err(be)?;
    let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(be)?;
    rows.map(|r| r.map_err(be).and_then(|s| serde_json::from_str(&s).map_err(be))).collect()
}

/// A `(name, state)` row; an unreadable state never matches `retired`.
fn parse_owner(row: Option<(String, String)>) -> Option<(String, MachineState)> {
    row.map(|(name, state)| {
        let state = state.parse().unwrap_or(MachineState::Failed);
        (name, state)
    })
}

fn insert_macs(tx: &Connection, spec: &MachineSpec) -> Result<()> {
    for mac in &spec.macs {
        tx.execute("INSERT INTO machine_macs (mac, machine) VALUES (?1, ?2)", params![mac.to_string(), spec.name])
            .map_err(|e| StoreError::Conflict(format!("MAC {mac} of machine {}: {e}", spec.name)))?;
    }
    Ok(())
}

/// Claims each lease (see [`rules::lease_claim_condition`]); returns the refused ones as
/// the rows holding their addresses.
fn write_leases(tx: &Connection, leases: &[Lease]) -> Result<Vec<Lease>> {
    let now = Utc::now().timestamp();
    let mut refused = Vec::new();
    for l in leases {
        let state = serde_json::to_value(l.state).map_err(be)?;
        let (ip, mac) = (l.ip.to_string(), l.mac.to_string());
        let claimed = tx
            .prepare_cached(&format!(
                "INSERT INTO leases (ip, mac, state, expires, hostname) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(ip) DO UPDATE SET {} WHERE {} RETURNING ip",
                rules::lease_claim_set("?6"),
                rules::lease_claim_condition("?6")
            ))
            .and_then(|mut st| st.query_row(params![ip, mac, state.as_str(), l.expires, l.hostname, now], |_| Ok(())).optional())
            .map_err(be)?
            .is_some();
        if !claimed {
            let holder = tx
                .query_row("SELECT ip, mac, state, expires, hostname FROM leases WHERE ip = ?1", [&ip], lease_row)
                .map_err(be)?;
            refused.extend(holder);
            continue;
        }
        // The MAC moves: drop its other rows that are not declines.
        if rules::lease_moves_mac(l) {
            tx.prepare_cached("DELETE FROM leases WHERE mac = ?1 AND ip != ?2 AND state != 'declined'")
                .and_then(|mut st| st.execute(params![mac, ip]))
                .map_err(be)?;
        }
    }
    Ok(refused)
}

/// `SELECT id, time, machine, kind, source, detail`.
fn event_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        time: parse_time(&r.get::<_, String>(1)?)?,
        machine: r.get(2)?,
        kind: r.get(3)?,
        source: r.get(4)?,
        detail: json_col(&r.get::<_, String>(5)?)?,
    })
}

/// A lease row, or `None` when it no longer parses (skipped, never fatal: DHCP must start).
fn lease_row(r: &Row<'_>) -> rusqlite::Result<Option<Lease>> {
    let (ip, mac, state, expires, hostname) =
        (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?, r.get::<_, Option<String>>(4)?);
    let (Ok(ip), Ok(mac), Ok(state)) = (ip.parse(), mac.parse(), serde_json::from_value(json!(state))) else {
        return Ok(None);
    };
    Ok(Some(Lease { ip, mac, state, expires, hostname }))
}

fn write_item(tx: &Connection, item: &BatchItem, ts: &str) -> Result<()> {
    match item {
        BatchItem::Event(e) => insert_event(tx, e),
        BatchItem::Seen { machine, observed } => {
            let obs = serde_json::to_string(observed).map_err(be)?;
            tx.prepare_cached("UPDATE machines SET observed = ?1, last_seen = ?2 WHERE name = ?3")
                .and_then(|mut st| st.execute(params![obs, ts, machine]))
                .map(|_| ())
                .map_err(be)
        }
        BatchItem::Discovered { observed, source: _ } => {
            let Some(spec) = rules::discovered_spec(observed) else {
                return Ok(());
            };
            let name = spec.name.clone();
            let spec = serde_json::to_string(&spec).map_err(be)?;
            let obs = serde_json::to_string(observed).map_err(be)?;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO machines (name, spec, state, uuid, observed, last_seen, created, updated) \
                     VALUES (?1, ?2, 'discovered', NULL, ?3, ?4, ?4, ?4) \
                     ON CONFLICT(name) DO UPDATE SET observed = excluded.observed, last_seen = excluded.last_seen \
                     WHERE machines.state = 'discovered'",
                )
                .and_then(|mut st| st.execute(params![name, spec, obs, ts]))
                .map_err(be)?;
            if inserted > 0 {
                if let Some(mac) = observed.mac {
                    tx.prepare_cached("INSERT OR IGNORE INTO machine_macs (mac, machine) VALUES (?1, ?2)")
                        .and_then(|mut st| st.execute(params![mac.to_string(), name]))
                        .map_err(be)?;
                }
            }
            Ok(())
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply(&self, set: ApplySet) -> Result<ApplyReport> {
        self.write(move |tx| {
            let mut report = ApplyReport::default();
            for (k, v) in &set.settings {
                tx.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)", params![k, v]).map_err(be)?;
            }
            for b in &set.bundles {
                let json = serde_json::to_string(b).map_err(be)?;
                let existing: Option<(String, u32, String)> = tx
                    .query_row("SELECT spec, revision, created FROM bundles WHERE name = ?1", [&b.name], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                    .map_err(be)?;
                let stored = existing.as_ref().map(|(old, rev, _)| (serde_json::from_str::<Bundle>(old).ok(), *rev));
                match rules::bundle_change(stored.as_ref().map(|(b, r)| (b.as_ref(), *r)), b) {
                    rules::BundleChange::Same => {}
                    // A new revision; the old one stays readable for machines that use it.
                    rules::BundleChange::Revise(revision) => {
                        let (old, _, created) = existing.unwrap_or_default();
                        tx.execute(
                            "INSERT OR REPLACE INTO bundle_revisions (name, revision, spec, created) VALUES (?1, ?2, ?3, ?4)",
                            params![b.name, revision - 1, old, created],
                        )
                        .map_err(be)?;
                        tx.execute(
                            "UPDATE bundles SET spec = ?2, revision = ?3, created = ?4 WHERE name = ?1",
                            params![b.name, json, revision, now()],
                        )
                        .map_err(be)?;
                        insert_event(tx, &rules::bundle_revised(&b.name, revision))?;
                        report.bundles_revised += 1;
                    }
                    rules::BundleChange::Create => {
                        tx.execute("INSERT INTO bundles (name, spec, created) VALUES (?1, ?2, ?3)", params![b.name, json, now()])
                            .map_err(be)?;
                        report.bundles_created += 1;
                    }
                }
            }
            for c in &set.clusters {
                let json = serde_json::to_string(c).map_err(be)?;
                tx.execute(
                    "INSERT INTO clusters (name, spec, updated) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated = excluded.updated",
                    params![c.name, json, now()],
                )
                .map_err(be)?;
                report.clusters += 1;
            }
            for (name, butane) in &set.templates {
                tx.execute("INSERT OR REPLACE INTO templates (name, butane) VALUES (?1, ?2)", params![name, butane]).map_err(be)?;
                report.templates += 1;
            }
            for m in &set.machines {
                apply_machine(tx, m, &mut report)?;
            }
            insert_event(tx, &NewEvent::new(None, "config.applied", None, serde_json::to_value(&report).map_err(be)?))?;
            Ok(report)
        })
        .await
    }

    async fn identity_candidates(&self, obs: &Observed) -> Result<(Option<MachineRecord>, Option<MachineRecord>)> {
        let uuid = obs.uuid.as_ref().map(|u| u.as_str());
        let mac = obs.mac.map(|m| m.to_string());
        let mac = mac.as_deref();
        self.read_inline(|c| {
            // Kept keys cost one read of the counter; others go straight to the lookups,
            // so a flood of new MACs pays no more than without the cache.
            if lock_identity(&self.identity).holds(uuid, mac) {
                if let Some(kept) = lock_identity(&self.identity).get(identity_generation(c)?, uuid, mac) {
                    return Ok(kept);
                }
            }
            let lookup = |sql: &str, key: Option<&str>| match key {
                Some(k) => c.prepare_cached(sql).and_then(|mut st| st.query_row([k], generation_and_machine)).map(Some).map_err(be),
                None => Ok(None),
            };
            let (u, m) = (lookup(BY_UUID, uuid)?, lookup(BY_MAC, mac)?);
            // Both read at one count (the counter only grows): kept as the database held them.
            let generation = match (&u, &m) {
                (Some((a, _)), Some((b, _))) if a != b => None,
                (Some((g, _)), _) | (None, Some((g, _))) => Some(*g),
                (None, None) => None,
            };
            let found: Found = (u.and_then(|(_, r)| r), m.and_then(|(_, r)| r));
            if let Some(g) = generation {
                lock_identity(&self.identity).put(g, uuid, mac, &found);
            }
            Ok(found)
        })
    }

    async fn machine(&self, name: &str) -> Result<Option<MachineRecord>> {
        let name = name.to_string();
        self.run(move |c| get_machine(c, &name)).await
    }

    async fn machines(&self) -> Result<Vec<MachineRecord>> {
        self.run(|c| {
            let mut st = c.prepare(&format!("SELECT {MACHINE_COLS} FROM machines ORDER BY name")).map_err(be)?;
            let rows = st.query_map([], machine_from_row).map_err(be)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)
        })
        .await
    }

    async fn machine_counts(&self) -> Result<Vec<(MachineState, u64)>> {
        self.run(|c| {
            let mut st = c.prepare_cached("SELECT state, COUNT(*) FROM machines GROUP BY state").map_err(be)?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))).map_err(be)?;
            let mut out = Vec::new();
            for r in rows {
                let (s, n) = r.map_err(be)?;
                if let Ok(s) = s.parse() {
                    out.push((s, n));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn bundle(&self, name: &str) -> Result<Option<Bundle>> {
        self.read_inline(|c| {
            let s: Option<(String, u32)> = c
                .prepare_cached("SELECT spec, revision FROM bundles WHERE name = ?1")
                .and_then(|mut st| st.query_row([name], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(be)?;
            s.map(|(s, revision)| serde_json::from_str(&s).map(|b| Bundle { revision, ..b }).map_err(be)).transpose()
        })
    }

    async fn bundle_revision(&self, name: &str, revision: u32) -> Result<Option<Bundle>> {
        let name = name.to_string();
        self.run(move |c| {
            let s: Option<String> = c
                .query_row(
                    "SELECT spec FROM bundles WHERE name = ?1 AND revision = ?2 \
                     UNION ALL SELECT spec FROM bundle_revisions WHERE name = ?1 AND revision = ?2",
                    params![name, revision],
                    |r| r.get(0),
                )
                .optional()
                .map_err(be)?;
            s.map(|s| serde_json::from_str(&s).map(|b| Bundle { revision, ..b }).map_err(be)).transpose()
        })
        .await
    }

    async fn bundle_history(&self) -> Result<Vec<Bundle>> {
        self.run(|c| revisions(c, "SELECT spec, revision FROM bundle_revisions ORDER BY name, revision")).await
    }

    async fn bundles(&self) -> Result<Vec<Bundle>> {
        self.run(|c| revisions(c, "SELECT spec, revision FROM bundles ORDER BY name")).await
    }

    async fn cluster(&self, name: &str) -> Result<Option<Cluster>> {
        let name = name.to_string();
        self.run(move |c| {
            let s: Option<String> =
                c.query_row("SELECT spec FROM clusters WHERE name = ?1", [name], |r| r.get(0)).optional().map_err(be)?;
            s.map(|s| serde_json::from_str(&s).map_err(be)).transpose()
        })
        .await
    }

    async fn clusters(&self) -> Result<Vec<Cluster>> {
        self.run(|c| all_specs(c, "SELECT spec FROM clusters ORDER BY name")).await
    }

    async fn template(&self, name: &str) -> Result<Option<String>> {
        let name = name.to_string();
        self.run(move |c| c.query_row("SELECT butane FROM templates WHERE name = ?1", [name], |r| r.get(0)).optional().map_err(be))
            .await
    }

    async fn delete_bundle(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write(move |tx| {
            let users: Vec<String> = {
                let mut st = tx
                    .prepare("SELECT name FROM machines WHERE json_extract(spec, '$.bundle') = ?1 ORDER BY name")
                    .map_err(be)?;
                let rows = st.query_map([&name], |r| r.get::<_, String>(0)).map_err(be)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)?
            };
            rules::bundle_in_use(&name, &users)?;
            tx.execute("DELETE FROM bundles WHERE name = ?1", [&name]).map_err(be)?;
            tx.execute("DELETE FROM bundle_revisions WHERE name = ?1", [&name]).map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn transition(
        &self,
        machine: &str,
        to: MachineState,
        trigger: Trigger,
        source: Option<String>,
        detail: serde_json::Value,
    ) -> Result<Transitioned> {
        let machine = machine.to_string();
        self.write(move |tx| {
            let rec = get_machine(tx, &machine)?.ok_or_else(|| StoreError::NotFound(machine.clone()))?;
            transition_in(tx, rec, to, trigger, source, detail)
        })
        .await
    }

    async fn transition_with_settings(
        &self,
        machine: &str,
        to: MachineState,
        trigger: Trigger,
        source: Option<String>,
        detail: serde_json::Value,
        settings: Vec<crate::SettingWrite>,
    ) -> Result<Transitioned> {
        let machine = machine.to_string();
        self.write(move |tx| {
            let rec = get_machine(tx, &machine)?.ok_or_else(|| StoreError::NotFound(machine.clone()))?;
            rules::refuse_replay(&rec, to, trigger)?;
            for w in &settings {
                if w.first_writer_wins {
                    tx.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?1, ?2)", params![w.key, w.value]).map_err(be)?;
                    let held: String = tx.query_row("SELECT value FROM settings WHERE key = ?1", [&w.key], |r| r.get(0)).map_err(be)?;
                    if held != w.value {
                        return Err(rules::setting_taken(&w.key));
                    }
                } else {
                    tx.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)", params![w.key, w.value]).map_err(be)?;
                }
            }
            transition_in(tx, rec, to, trigger, source, detail)
        })
        .await
    }

    async fn note_install_attempt(&self, machine: &str) -> Result<MachineRecord> {
        let machine = machine.to_string();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE machines SET install_attempts = install_attempts + 1, updated = ?1 \
                     WHERE name = ?2 AND state IN ('provision', 'installing')",
                    params![now(), machine],
                )
                .map_err(be)?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("machine {machine} is not provisioning")));
            }
            get_machine(tx, &machine)?.ok_or(StoreError::NotFound(machine))
        })
        .await
    }

    async fn write_batch(&self, items: Vec<BatchItem>) -> Result<()> {
        // One time for the whole batch, as stored (to the ms): the kept records get it too.
        let ts = now();
        let at = parse_time(&ts).map_err(be)?;
        let seen = self
            .write(move |tx| {
                let mut first_err = None;
                let mut events: Vec<&NewEvent> = Vec::new();
                let mut seen = Vec::new();
                for item in &items {
                    match item {
                        BatchItem::Event(e) => events.push(e),
                        // One bad item must not lose the rest of the batch.
                        other => match write_item(tx, other, &ts) {
                            Ok(()) => {
                                if let BatchItem::Seen { machine, observed } = other {
                                    seen.push((machine.clone(), observed.clone()));
                                }
                            }
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        },
                    }
                }
                if let Err(e) = insert_events(tx, &events, &ts) {
                    first_err.get_or_insert(e);
                }
                match first_err {
                    Some(e) if items.len() == 1 => Err(e),
                    Some(e) => {
                        eprintln!("bootplane: part of an event batch was not written: {e}");
                        Ok(seen)
                    }
                    None => Ok(seen),
                }
            })
            .await?;
        // Committed: the boot path's kept records say so too.
        let mut kept = lock_identity(&self.identity);
        for (machine, observed) in &seen {
            kept.seen(machine, observed, at);
        }
        Ok(())
    }

    async fn events(&self, q: EventQuery) -> Result<Vec<Event>> {
        self.run(move |c| {
            let limit = if q.limit == 0 { 100 } else { q.limit.min(10_000) };
            let (order, after) = match q.after {
                Some(a) => ("ASC", a),
                None => ("DESC", -1),
            };
            let sql = format!(
                "SELECT id, time, machine, kind, source, detail FROM events \
                 WHERE (?1 IS NULL OR machine = ?1) AND id > ?2 ORDER BY id {order} LIMIT ?3"
            );
            let mut st = c.prepare_cached(&sql).map_err(be)?;
            let rows = st
                .query_map(params![q.machine, after, limit], event_row)
                .map_err(be)?;
            let mut v = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)?;
            if q.after.is_none() {
                v.reverse();
            }
            Ok(v)
        })
        .await
    }

    async fn latest_events(&self, per_machine: u32) -> Result<Vec<Event>> {
        let n = per_machine.clamp(1, 1000);
        self.run(move |c| {
            // Per machine: the n-th newest id through the (machine, id) index, then a range.
            let mut st = c
                .prepare_cached(
                    "SELECT e.id, e.time, e.machine, e.kind, e.source, e.detail FROM machines m \
                     JOIN events e ON e.machine = m.name AND e.id >= COALESCE( \
                       (SELECT id FROM events WHERE machine = m.name ORDER BY id DESC LIMIT 1 OFFSET ?1), 0) \
                     ORDER BY e.machine, e.id",
                )
                .map_err(be)?;
            let rows = st.query_map(params![n - 1], event_row).map_err(be)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)
        })
        .await
    }

    async fn event_count(&self) -> Result<u64> {
        self.run(|c| c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).map_err(be)).await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.run(move |c| c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(be))
            .await
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_string(), value.to_string());
        self.write(move |tx| {
            tx.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?1, ?2)", params![key, value]).map_err(be)?;
            tx.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).map_err(be)
        })
        .await
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.write(move |tx| tx.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)", params![key, value]).map(|_| ()).map_err(be))
            .await
    }

    async fn delete_setting(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        self.write(move |tx| tx.execute("DELETE FROM settings WHERE key = ?1", [key]).map(|_| ()).map_err(be)).await
    }

    async fn replace_setting(&self, key: &str, old: &str, new: &str) -> Result<bool> {
        let (key, old, new) = (key.to_string(), old.to_string(), new.to_string());
        self.write(move |tx| {
            tx.execute("UPDATE settings SET value = ?1 WHERE key = ?2 AND value = ?3", params![new, key, old])
                .map(|n| n == 1)
                .map_err(be)
        })
        .await
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        self.run(|c| {
            let mut st = c.prepare("SELECT ip, mac, state, expires, hostname FROM leases ORDER BY ip").map_err(be)?;
            let rows = st.query_map([], lease_row).map_err(be)?;
            let rows = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)?;
            Ok(rows.into_iter().flatten().collect())
        })
        .await
    }

    async fn put_leases(&self, leases: &[Lease]) -> Result<Vec<Lease>> {
        let leases = leases.to_vec();
        self.write(move |tx| write_leases(tx, &leases)).await
    }

    fn lease_writer(&self) -> Option<LeaseWriter> {
        let (pool, writer) = (self.pool.clone(), self.writer.clone());
        // The DHCP thread keeps this connection for good (one of the pool's eight).
        let mut conn: Option<r2d2::PooledConnection<SqliteConnectionManager>> = None;
        let checkpointing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut last_checkpoint = std::time::Instant::now();
        Some(Box::new(move |leases: &[Lease], events: &[NewEvent]| {
            let refused;
            {
                let _turn = writer.lock().unwrap_or_else(|p| p.into_inner());
                let c = match &mut conn {
                    Some(c) => c,
                    None => {
                        let c = pool.get().map_err(be)?;
                        // A checkpoint copies the WAL into the database and fsyncs it, for
                        // milliseconds: not on the thread that answers DHCP (see below).
                        c.execute_batch("PRAGMA wal_autocheckpoint = 0").map_err(be)?;
                        conn.insert(c)
                    }
                };
                refused = immediate(c, |tx| {
                    let refused = write_leases(tx, leases)?;
                    insert_events(tx, &events.iter().collect::<Vec<_>>(), &now())?;
                    Ok(refused)
                })?;
            }
            if last_checkpoint.elapsed() >= CHECKPOINT_EVERY && !checkpointing.swap(true, Ordering::AcqRel) {
                last_checkpoint = std::time::Instant::now();
                let (pool, checkpointing) = (pool.clone(), checkpointing.clone());
                std::thread::spawn(move || {
                    // PASSIVE never blocks writers; whatever it leaves, the next one takes.
                    if let Err(e) = pool.get().map_err(be).and_then(|c| c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").map_err(be)) {
                        eprintln!("bootplane: SQLite WAL checkpoint failed (retried in {CHECKPOINT_EVERY:?}): {e}");
                    }
                    checkpointing.store(false, Ordering::Release);
                });
            }
            Ok(refused)
        }))
    }

    async fn export(&self) -> Result<Snapshot> {
        self.run(|c| {
            // One read transaction: a consistent picture even while a server writes.
            let tx = c.transaction().map_err(be)?;
            let machines = {
                let mut st = tx.prepare(&format!("SELECT {MACHINE_COLS} FROM machines ORDER BY name")).map_err(be)?;
                let rows = st.query_map([], machine_from_row).map_err(be)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)?
            };
            let pairs = |sql: &str| -> Result<Vec<(String, String)>> {
                let mut st = tx.prepare(sql).map_err(be)?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(be)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)
            };
            let templates = pairs("SELECT name, butane FROM templates ORDER BY name")?;
            let settings = pairs("SELECT key, value FROM settings ORDER BY key")?;
            let events = {
                let mut st = tx.prepare("SELECT id, time, machine, kind, source, detail FROM events ORDER BY id").map_err(be)?;
                let rows = st.query_map([], event_row).map_err(be)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)?
            };
            let leases = {
                let mut st = tx.prepare("SELECT ip, mac, state, expires, hostname FROM leases ORDER BY ip").map_err(be)?;
                let rows = st.query_map([], lease_row).map_err(be)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(be)?.into_iter().flatten().collect()
            };
            Ok(Snapshot {
                machines,
                bundles: revisions(&tx, "SELECT spec, revision FROM bundles ORDER BY name")?,
                bundle_history: revisions(&tx, "SELECT spec, revision FROM bundle_revisions ORDER BY name, revision")?,
                clusters: all_specs(&tx, "SELECT spec FROM clusters ORDER BY name")?,
                templates,
                settings,
                events,
                leases,
            })
        })
        .await
    }

    async fn import(&self, snap: Snapshot) -> Result<()> {
        self.write(move |tx| {
            let counts: (i64, i64, i64, i64) =
                tx.query_row(rules::COUNT_CONTENTS, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).map_err(be)?;
            if let Some(what) = rules::not_empty(counts.0, counts.1, counts.2, counts.3) {
                return Err(StoreError::NotEmpty(what));
            }
            let ts = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
            for m in &snap.machines {
                tx.execute(
                    "INSERT INTO machines (name, spec, state, uuid, install_attempts, credential_generation, observed, last_seen, created, updated) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        m.name(),
                        serde_json::to_string(&m.spec).map_err(be)?,
                        m.state.as_str(),
                        m.spec.uuid.as_ref().map(|u| u.as_str()),
                        m.install_attempts,
                        m.credential_generation,
                        serde_json::to_string(&m.observed).map_err(be)?,
                        m.last_seen.as_ref().map(ts),
                        ts(&m.created),
                        ts(&m.updated)
                    ],
                )
                .map_err(be)?;
                insert_macs(tx, &m.spec)?;
            }
            for (table, list) in [("bundles", &snap.bundles), ("bundle_revisions", &snap.bundle_history)] {
                for b in list {
                    tx.execute(
                        &format!("INSERT INTO {table} (name, spec, revision, created) VALUES (?1, ?2, ?3, ?4)"),
                        params![b.name, serde_json::to_string(&rules::unpinned(b)).map_err(be)?, b.revision, now()],
                    )
                    .map_err(be)?;
                }
            }
            for c in &snap.clusters {
                tx.execute("INSERT INTO clusters (name, spec, updated) VALUES (?1, ?2, ?3)", params![c.name, serde_json::to_string(c).map_err(be)?, now()])
                    .map_err(be)?;
            }
            for (name, butane) in &snap.templates {
                tx.execute("INSERT INTO templates (name, butane) VALUES (?1, ?2)", params![name, butane]).map_err(be)?;
            }
            for (k, v) in &snap.settings {
                tx.execute("INSERT INTO settings (key, value) VALUES (?1, ?2)", params![k, v]).map_err(be)?;
            }
            let mut st = tx
                .prepare("INSERT INTO events (id, time, machine, kind, source, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .map_err(be)?;
            for e in &snap.events {
                st.execute(params![e.id, ts(&e.time), e.machine, e.kind, e.source, e.detail.to_string()]).map_err(be)?;
            }
            drop(st);
            write_leases(tx, &snap.leases)?;
            Ok(())
        })
        .await
    }

    async fn prune(&self, events_retained: u64, audit_days: u32, max_discovered: u64) -> Result<PruneReport> {
        let audit = rules::audit_kinds_sql();
        let cutoff = (Utc::now() - chrono::Duration::days(audit_days.into())).to_rfc3339_opts(SecondsFormat::Millis, true);
        self.write(move |tx| {
            let noise = tx
                .execute(
                    &format!(
                        "DELETE FROM events WHERE kind NOT IN ({audit}) AND id <= \
                         (SELECT id FROM events WHERE kind NOT IN ({audit}) ORDER BY id DESC LIMIT 1 OFFSET ?1)"
                    ),
                    [events_retained as i64],
                )
                .map_err(be)? as u64;
            let old_audit =
                tx.execute(&format!("DELETE FROM events WHERE kind IN ({audit}) AND time < ?1"), [&cutoff]).map_err(be)? as u64;
            let events_deleted = noise + old_audit;
            let discovered_deleted = tx
                .execute(
                    "DELETE FROM machines WHERE name IN (SELECT name FROM machines WHERE state = 'discovered' \
                     ORDER BY last_seen DESC LIMIT -1 OFFSET ?1)",
                    [max_discovered as i64],
                )
                .map_err(be)? as u64;
            Ok(PruneReport { events_deleted, discovered_deleted })
        })
        .await
    }
}

#[cfg(test)]
mod tests;

/// Bundles with their revision from `sql` (`SELECT spec, revision ...`).
fn revisions(c: &Connection, sql: &str) -> Result<Vec<Bundle>> {
    let mut st = c.prepare(sql).map_err(be)?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))).map_err(be)?;
    rows.map(|r| {
        let (s, revision) = r.map_err(be)?;
        serde_json::from_str(&s).map(|b| Bundle { revision, ..b }).map_err(be)
    })
    .collect()
}
