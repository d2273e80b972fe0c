//! The PostgreSQL backend, for sites that run several bootplane instances on one
//! database: tokio-postgres through a deadpool pool, migrations in
//! `migrations/postgres/`, applied under an advisory lock so instances starting together
//! migrate once. Only storage lives here; what a transition or an apply does is asked of
//! [`crate::rules`], as the SQLite backend does.
//!
//! Concurrency between instances rests on PostgreSQL, not on this process: a transition
//! locks its machine row (`SELECT ... FOR UPDATE`) so two instances never both move a
//! machine from the same state; counters and single-use claims are one conditional
//! `UPDATE`; applies serialise on an advisory lock. Timestamps are the database's
//! (`now()`), so instances with skewed clocks still agree on order and age.

use crate::*;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::json;
use std::str::FromStr;
use tokio_postgres::{NoTls, Row};

const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];

/// Advisory lock keys (arbitrary, fixed): migrations, applies.
const MIGRATE_LOCK: i64 = 0x626f_6f74_0001;
const APPLY_LOCK: i64 = 0x626f_6f74_0002;

const MACHINE_COLS: &str =
    "name, spec, state, install_attempts, credential_generation, observed, last_seen, created, updated";
/// The boot path's two lookups, spelled out once so each request does no formatting.
const BY_UUID: &str = "SELECT name, spec, state, install_attempts, credential_generation, observed, last_seen, created, updated \
     FROM machines WHERE uuid = $1";
const BY_MAC: &str = "SELECT m.name, m.spec, m.state, m.install_attempts, m.credential_generation, m.observed, m.last_seen, \
     m.created, m.updated FROM machine_macs k JOIN machines m ON m.name = k.machine WHERE k.mac = $1";

pub struct PostgresStore {
    pool: Pool,
    /// Woken by every instance's event commits (LISTEN on a connection of its own).
    events_written: std::sync::Arc<tokio::sync::Notify>,
    /// The runtime the pool's connections live on; the DHCP thread's blocking lease
    /// writer drives its queries there.
    runtime: tokio::runtime::Handle,
}

fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::database(e)
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::database(e)
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::database(e)
}

fn machine_from_row(r: &Row) -> Result<MachineRecord> {
    let state: String = r.try_get("state").map_err(db)?;
    Ok(MachineRecord {
        spec: serde_json::from_str(r.try_get("spec").map_err(db)?).map_err(json_err)?,
        state: state.parse().map_err(|e: String| StoreError::Backend(format!("machine row: {e}")))?,
        install_attempts: r.try_get::<_, i32>("install_attempts").map_err(db)? as u32,
        credential_generation: r.try_get::<_, i32>("credential_generation").map_err(db)? as u32,
        observed: serde_json::from_str(r.try_get("observed").map_err(db)?).map_err(json_err)?,
        last_seen: r.try_get("last_seen").map_err(db)?,
        created: r.try_get("created").map_err(db)?,
        updated: r.try_get("updated").map_err(db)?,
    })
}

async fn get_machine(c: &impl GenericClient, name: &str, lock: bool) -> Result<Option<MachineRecord>> {
    let sql = format!("SELECT {MACHINE_COLS} FROM machines WHERE name = $1{}", if lock { " FOR UPDATE" } else { "" });
    c.query_opt(sql.as_str(), &[&name]).await.map_err(db)?.as_ref().map(machine_from_row).transpose()
}

async fn insert_events(c: &impl GenericClient, events: &[&NewEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    // One statement for the whole batch: arrays unnested server-side.
    let machines: Vec<Option<&str>> = events.iter().map(|e| e.machine.as_deref()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let sources: Vec<Option<&str>> = events.iter().map(|e| e.source.as_deref()).collect();
    let details: Vec<String> = events.iter().map(|e| e.detail.to_string()).collect();
    // Every instance's live streams are woken at commit (one notification per
    // transaction: PostgreSQL folds repeats), in the same statement as the insert.
    c.execute(
        "WITH ins AS (INSERT INTO events (time, machine, kind, source, detail) \
         SELECT clock_timestamp(), m, k, s, d FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS t(m, k, s, d, n) \
         ORDER BY n RETURNING 1) SELECT pg_notify('bootplane_events', '') FROM (SELECT 1 FROM ins LIMIT 1) one",
        &[&machines, &kinds, &sources, &details],
    )
    .await
    .map_err(db)?;
    Ok(())
}

async fn insert_event(c: &impl GenericClient, e: &NewEvent) -> Result<()> {
    insert_events(c, &[e]).await
}

async fn transition_in(
    c: &impl GenericClient,
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
    let row = c
        .query_one(
            &format!(
                "UPDATE machines SET state = $1, install_attempts = $2, credential_generation = $3, updated = now() \
                 WHERE name = $4 RETURNING {MACHINE_COLS}"
            ),
            &[&to.as_str(), &(effects.install_attempts as i32), &(effects.credential_generation as i32), &rec.name()],
        )
        .await
        .map_err(db)?;
    insert_event(c, &rules::state_changed(rec.name(), from, to, trigger, source, detail)).await?;
    Ok(Transitioned::Changed { from, record: machine_from_row(&row)? })
}

fn parse_owner(row: Option<Row>) -> Result<Option<(String, MachineState)>> {
    row.map(|r| {
        let state: String = r.try_get(1).map_err(db)?;
        Ok((r.try_get(0).map_err(db)?, state.parse().unwrap_or(MachineState::Failed)))
    })
    .transpose()
}

async fn apply_machine(tx: &impl GenericClient, spec: &MachineSpec, report: &mut ApplyReport) -> Result<()> {
    let macs: Vec<String> = spec.macs.iter().map(|m| m.to_string()).collect();
    let uuid = spec.uuid.as_ref().map(|u| u.as_str());
    // Discovered records of this machine give way to it, and hand it their history.
    let discovered = tx
        .query(
            "SELECT DISTINCT m.name FROM machines m LEFT JOIN machine_macs k ON k.machine = m.name \
             WHERE m.state = 'discovered' AND m.name != $3 \
               AND (k.mac = ANY($1) OR ($2::text IS NOT NULL AND (m.spec::jsonb) ->> 'uuid' = $2)) ORDER BY m.name",
            &[&macs, &uuid, &spec.name],
        )
        .await
        .map_err(db)?;
    let mut adopted = false;
    for d in discovered {
        let d: String = d.get(0);
        tx.execute("DELETE FROM machines WHERE name = $1", &[&d]).await.map_err(db)?;
        tx.execute("UPDATE events SET machine = $1 WHERE machine = $2", &[&spec.name, &d]).await.map_err(db)?;
        adopted = true;
        report.machines_adopted += 1;
    }
    for mac in &macs {
        let owner = tx
            .query_opt("SELECT m.name, m.state FROM machine_macs k JOIN machines m ON m.name = k.machine WHERE k.mac = $1", &[mac])
            .await
            .map_err(db)?;
        if let rules::Claim::TakeFromRetired(_) = rules::claim(spec, &format!("MAC {mac}"), parse_owner(owner)?)? {
            tx.execute("DELETE FROM machine_macs WHERE mac = $1", &[mac]).await.map_err(db)?;
        }
    }
    if let Some(u) = uuid {
        let owner =
            tx.query_opt("SELECT name, state FROM machines WHERE uuid = $1 AND name != $2", &[&u, &spec.name]).await.map_err(db)?;
        if let rules::Claim::TakeFromRetired(o) = rules::claim(spec, &format!("UUID {u}"), parse_owner(owner)?)? {
            tx.execute("UPDATE machines SET uuid = NULL WHERE name = $1", &[&o]).await.map_err(db)?;
        }
    }

    let spec_json = serde_json::to_string(spec).map_err(json_err)?;
    match get_machine(tx, &spec.name, true).await? {
        Some(rec) => {
            tx.execute("UPDATE machines SET spec = $1, uuid = $2, updated = now() WHERE name = $3", &[&spec_json, &uuid, &spec.name])
                .await
                .map_err(db)?;
            tx.execute("DELETE FROM machine_macs WHERE machine = $1", &[&spec.name]).await.map_err(db)?;
            insert_macs(tx, spec, &macs).await?;
            report.machines_updated += 1;
            let rec = MachineRecord { spec: spec.clone(), ..rec };
            if rules::provisions_on_apply(spec, rec.state) {
                transition_in(tx, rec, MachineState::Provision, Trigger::Apply, None, json!(rules::PROVISION_ON_APPLY)).await?;
                report.machines_provisioned += 1;
            }
        }
        None => {
            let state = rules::initial_state(spec);
            tx.execute(
                "INSERT INTO machines (name, spec, state, uuid, created, updated) VALUES ($1, $2, $3, $4, now(), now())",
                &[&spec.name, &spec_json, &state.as_str(), &uuid],
            )
            .await
            .map_err(db)?;
            insert_macs(tx, spec, &macs).await?;
            report.machines_created += 1;
            if spec.provision {
                report.machines_provisioned += 1;
            }
            insert_event(tx, &rules::created(spec, adopted)).await?;
        }
    }
    Ok(())
}

async fn insert_macs(tx: &impl GenericClient, spec: &MachineSpec, macs: &[String]) -> Result<()> {
    for mac in macs {
        tx.execute("INSERT INTO machine_macs (mac, machine) VALUES ($1, $2)", &[mac, &spec.name])
            .await
            .map_err(|e| StoreError::Conflict(format!("MAC {mac} of machine {}: {e}", spec.name)))?;
    }
    Ok(())
}

/// Claims each lease (see [`rules::lease_claim_condition`]); returns the refused ones as
/// the rows holding their addresses. Two instances claiming one free address for two
/// MACs: the second INSERT waits on the first's unique-index entry, then finds the
/// conflict and a holder with another MAC, so its claim is refused.
async fn write_leases(tx: &impl GenericClient, leases: &[Lease]) -> Result<Vec<Lease>> {
    let now = chrono::Utc::now().timestamp();
    let claim = format!(
        "INSERT INTO leases (ip, mac, state, expires, hostname) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (ip) DO UPDATE SET {} WHERE {} RETURNING ip",
        rules::lease_claim_set("$6"),
        rules::lease_claim_condition("$6")
    );
    let claim = tx.prepare_cached(&claim).await.map_err(db)?;
    let mut refused = Vec::new();
    // Address order, the same in every instance: concurrent bursts queue, never deadlock.
    let mut leases: Vec<&Lease> = leases.iter().collect();
    leases.sort_by_key(|l| u32::from(l.ip));
    for l in leases {
        let state = serde_json::to_value(l.state).map_err(json_err)?;
        let (ip, mac) = (l.ip.to_string(), l.mac.to_string());
        let claimed = tx.query_opt(&claim, &[&ip, &mac, &state.as_str(), &l.expires, &l.hostname, &now]).await.map_err(db)?.is_some();
        if !claimed {
            let holder = tx.query_opt("SELECT ip, mac, state, expires, hostname FROM leases WHERE ip = $1", &[&ip]).await.map_err(db)?;
            refused.extend(holder.as_ref().and_then(lease_from_row));
            continue;
        }
        // The MAC moves: drop its other rows that are not declines.
        if rules::lease_moves_mac(l) {
            tx.execute("DELETE FROM leases WHERE mac = $1 AND ip != $2 AND state != 'declined'", &[&mac, &ip]).await.map_err(db)?;
        }
    }
    Ok(refused)
}

/// A lease row, or `None` when it no longer parses (skipped, never fatal: DHCP must start).
fn lease_from_row(r: &Row) -> Option<Lease> {
    Some(Lease {
        ip: r.get::<_, String>(0).parse().ok()?,
        mac: r.get::<_, String>(1).parse().ok()?,
        state: serde_json::from_value(json!(r.get::<_, String>(2))).ok()?,
        expires: r.get(3),
        hostname: r.get(4),
    })
}

async fn write_item(tx: &impl GenericClient, item: &BatchItem) -> Result<()> {
    match item {
        BatchItem::Event(e) => insert_event(tx, e).await,
        BatchItem::Seen { machine, observed } => {
            let obs = serde_json::to_string(observed).map_err(json_err)?;
            tx.execute("UPDATE machines SET observed = $1, last_seen = now() WHERE name = $2", &[&obs, machine]).await.map_err(db)?;
            Ok(())
        }
        BatchItem::Discovered { observed, source: _ } => {
            let Some(spec) = rules::discovered_spec(observed) else {
                return Ok(());
            };
            let spec_json = serde_json::to_string(&spec).map_err(json_err)?;
            let obs = serde_json::to_string(observed).map_err(json_err)?;
            let inserted = tx
                .execute(
                    "INSERT INTO machines (name, spec, state, uuid, observed, last_seen, created, updated) \
                     VALUES ($1, $2, 'discovered', NULL, $3, now(), now(), now()) \
                     ON CONFLICT (name) DO UPDATE SET observed = excluded.observed, last_seen = excluded.last_seen \
                     WHERE machines.state = 'discovered'",
                    &[&spec.name, &spec_json, &obs],
                )
                .await
                .map_err(db)?;
            if inserted > 0 {
                if let Some(mac) = observed.mac {
                    tx.execute("INSERT INTO machine_macs (mac, machine) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&mac.to_string(), &spec.name])
                        .await
                        .map_err(db)?;
                }
            }
            Ok(())
        }
    }
}

async fn migrate(pool: &Pool) -> Result<()> {
    let mut c = pool.get().await.map_err(pool_err)?;
    let tx = c.transaction().await.map_err(db)?;
    // Instances starting together: the first migrates, the others wait and find it done.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK]).await.map_err(db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL)")
        .await
        .map_err(db)?;
    for (version, sql) in MIGRATIONS {
        let done = tx.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[version]).await.map_err(db)?.is_some();
        if !done {
            tx.batch_execute(sql).await.map_err(|e| StoreError::Backend(format!("PostgreSQL migration {version}: {e}")))?;
            tx.execute("INSERT INTO schema_migrations (version, applied) VALUES ($1, now())", &[version]).await.map_err(db)?;
        }
    }
    tx.commit().await.map_err(db)
}

impl PostgresStore {
    /// Connects to `url` (a libpq-style URL or key=value string), checks the server answers,
    /// and migrates. Must be called inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Self> {
        let config = config_of(url)?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(|e| StoreError::Backend(format!("PostgreSQL pool: {e}")))?;
        migrate(&pool).await?;
        let events_written = std::sync::Arc::new(tokio::sync::Notify::new());
        tokio::spawn(listen(config_of(url)?, std::sync::Arc::downgrade(&events_written)));
        Ok(PostgresStore { pool, events_written, runtime: tokio::runtime::Handle::current() })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_err)
    }
}

fn config_of(url: &str) -> Result<tokio_postgres::Config> {
    tokio_postgres::Config::from_str(url)
        .map_err(|e| StoreError::Backend(format!("not a PostgreSQL connection string ({e}); expected postgres://USER@HOST/DB")))
}

/// Listens for `bootplane_events` notifications until the store is dropped, reconnecting
/// after a lost connection (streams poll meanwhile, so nothing is missed, only later).
async fn listen(config: tokio_postgres::Config, wake: std::sync::Weak<tokio::sync::Notify>) {
    use futures_util::StreamExt;
    while wake.strong_count() > 0 {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let wake = wake.clone();
                let driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(m)) = messages.next().await {
                        let Some(w) = wake.upgrade() else { break };
                        if let tokio_postgres::AsyncMessage::Notification(_) = m {
                            w.notify_waiters();
                        }
                    }
                });
                if let Err(e) = client.batch_execute("LISTEN bootplane_events").await {
                    eprintln!("bootplane: PostgreSQL LISTEN failed (event streams fall back to polling): {e}");
                }
                // Holds `client` (and so the connection) until the connection ends.
                let _ = driver.await;
                drop(client);
            }
            Err(e) => eprintln!("bootplane: PostgreSQL LISTEN connection failed, retrying in 5 s: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

/// Runs `$body` with `$tx` a transaction on a pooled connection, committing when it
/// returns `Ok`. (A macro, not a closure-taking function: the body borrows the
/// transaction across awaits.)
/// A transaction PostgreSQL aborted to resolve a deadlock or a serialization conflict
/// between instances is run again (a few times): the other side has committed by then.
macro_rules! in_tx {
    ($self:expr, |$tx:ident| $body:expr) => {{
        let mut tries = 0;
        loop {
            let result: Result<_> = async {
                let mut client = $self.client().await?;
                let $tx = client.transaction().await.map_err(db)?;
                let out = $body;
                $tx.commit().await.map_err(db)?;
                Ok(out)
            }
            .await;
            match result {
                Err(e) if tries < RETRIES && retryable(&e) => tries += 1,
                other => break other,
            }
        }
    }};
}

const RETRIES: u32 = 4;

/// Deadlock or serialization failure: nothing was written, running again is safe.
fn retryable(e: &StoreError) -> bool {
    use tokio_postgres::error::SqlState;
    let StoreError::Database(inner) = e else { return false };
    let code = inner.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.code());
    code == Some(&SqlState::T_R_DEADLOCK_DETECTED) || code == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
}

#[async_trait]
impl Store for PostgresStore {
    async fn apply(&self, set: ApplySet) -> Result<ApplyReport> {
        in_tx!(self, |tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLY_LOCK]).await.map_err(db)?;
            let mut report = ApplyReport::default();
            for (k, v) in &set.settings {
                tx.execute("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", &[k, v])
                    .await
                    .map_err(db)?;
            }
            for b in &set.bundles {
                let json = serde_json::to_string(b).map_err(json_err)?;
                let existing =
                    tx.query_opt("SELECT spec, revision FROM bundles WHERE name = $1 FOR UPDATE", &[&b.name]).await.map_err(db)?;
                let stored = existing.as_ref().map(|r| (serde_json::from_str::<Bundle>(r.get(0)).ok(), r.get::<_, i32>(1) as u32));
                match rules::bundle_change(stored.as_ref().map(|(b, r)| (b.as_ref(), *r)), b) {
                    rules::BundleChange::Same => {}
                    rules::BundleChange::Revise(revision) => {
                        tx.execute(
                            "INSERT INTO bundle_revisions (name, revision, spec, created) \
                             SELECT name, revision, spec, created FROM bundles WHERE name = $1 \
                             ON CONFLICT (name, revision) DO UPDATE SET spec = excluded.spec, created = excluded.created",
                            &[&b.name],
                        )
                        .await
                        .map_err(db)?;
                        tx.execute(
                            "UPDATE bundles SET spec = $2, revision = $3, created = now() WHERE name = $1",
                            &[&b.name, &json, &(revision as i32)],
                        )
                        .await
                        .map_err(db)?;
                        insert_event(&tx, &rules::bundle_revised(&b.name, revision)).await?;
                        report.bundles_revised += 1;
                    }
                    rules::BundleChange::Create => {
                        tx.execute("INSERT INTO bundles (name, spec, created) VALUES ($1, $2, now())", &[&b.name, &json])
                            .await
                            .map_err(db)?;
                        report.bundles_created += 1;
                    }
                }
            }
            for c in &set.clusters {
                let json = serde_json::to_string(c).map_err(json_err)?;
                tx.execute(
                    "INSERT INTO clusters (name, spec, updated) VALUES ($1, $2, now()) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated = excluded.updated",
                    &[&c.name, &json],
                )
                .await
                .map_err(db)?;
                report.clusters += 1;
            }
            for (name, butane) in &set.templates {
                tx.execute(
                    "INSERT INTO templates (name, butane) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET butane = excluded.butane",
                    &[name, butane],
                )
                .await
                .map_err(db)?;
                report.templates += 1;
            }
            for m in &set.machines {
                apply_machine(&tx, m, &mut report).await?;
            }
            let detail = serde_json::to_value(&report).map_err(json_err)?;
            insert_event(&tx, &NewEvent::new(None, "config.applied", None, detail)).await?;
            report
        })
    }

    async fn identity_candidates(&self, obs: &Observed) -> Result<(Option<MachineRecord>, Option<MachineRecord>)> {
        let c = self.client().await?;
        let by_uuid = match &obs.uuid {
            Some(u) => {
                let st = c.prepare_cached(BY_UUID).await.map_err(db)?;
                c.query_opt(&st, &[&u.as_str()]).await.map_err(db)?.as_ref().map(machine_from_row).transpose()?
            }
            None => None,
        };
        let by_mac = match obs.mac {
            Some(m) => {
                let st = c.prepare_cached(BY_MAC).await.map_err(db)?;
                c.query_opt(&st, &[&m.to_string()]).await.map_err(db)?.as_ref().map(machine_from_row).transpose()?
            }
            None => None,
        };
        Ok((by_uuid, by_mac))
    }

    async fn machine(&self, name: &str) -> Result<Option<MachineRecord>> {
        get_machine(&self.client().await?, name, false).await
    }

    async fn machines(&self) -> Result<Vec<MachineRecord>> {
        let c = self.client().await?;
        let rows = c.query(&format!("SELECT {MACHINE_COLS} FROM machines ORDER BY name"), &[]).await.map_err(db)?;
        rows.iter().map(machine_from_row).collect()
    }

    async fn machine_counts(&self) -> Result<Vec<(MachineState, u64)>> {
        let c = self.client().await?;
        let rows = c.query("SELECT state, COUNT(*) FROM machines GROUP BY state", &[]).await.map_err(db)?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get::<_, String>(0).parse().ok()?, r.get::<_, i64>(1) as u64)))
            .collect())
    }

    async fn bundle(&self, name: &str) -> Result<Option<Bundle>> {
        let c = self.client().await?;
        let row = c.query_opt("SELECT spec, revision FROM bundles WHERE name = $1", &[&name]).await.map_err(db)?;
        row.map(|r| bundle_from_row(&r)).transpose()
    }

    async fn bundles(&self) -> Result<Vec<Bundle>> {
        let c = self.client().await?;
        c.query("SELECT spec, revision FROM bundles ORDER BY name", &[]).await.map_err(db)?.iter().map(bundle_from_row).collect()
    }

    async fn bundle_revision(&self, name: &str, revision: u32) -> Result<Option<Bundle>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT spec, revision FROM bundles WHERE name = $1 AND revision = $2 \
                 UNION ALL SELECT spec, revision FROM bundle_revisions WHERE name = $1 AND revision = $2 LIMIT 1",
                &[&name, &(revision as i32)],
            )
            .await
            .map_err(db)?;
        row.map(|r| bundle_from_row(&r)).transpose()
    }

    async fn bundle_history(&self) -> Result<Vec<Bundle>> {
        let c = self.client().await?;
        c.query("SELECT spec, revision FROM bundle_revisions ORDER BY name, revision", &[])
            .await
            .map_err(db)?
            .iter()
            .map(bundle_from_row)
            .collect()
    }

    async fn cluster(&self, name: &str) -> Result<Option<Cluster>> {
        let c = self.client().await?;
        let row = c.query_opt("SELECT spec FROM clusters WHERE name = $1", &[&name]).await.map_err(db)?;
        row.map(|r| serde_json::from_str(r.get(0)).map_err(json_err)).transpose()
    }

    async fn clusters(&self) -> Result<Vec<Cluster>> {
        let c = self.client().await?;
        let rows = c.query("SELECT spec FROM clusters ORDER BY name", &[]).await.map_err(db)?;
        rows.iter().map(|r| serde_json::from_str(r.get(0)).map_err(json_err)).collect()
    }

    async fn template(&self, name: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        Ok(c.query_opt("SELECT butane FROM templates WHERE name = $1", &[&name]).await.map_err(db)?.map(|r| r.get(0)))
    }

    async fn delete_bundle(&self, name: &str) -> Result<()> {
        in_tx!(self, |tx| {
            let users: Vec<String> = tx
                .query("SELECT name FROM machines WHERE (spec::jsonb) ->> 'bundle' = $1 ORDER BY name FOR UPDATE", &[&name])
                .await
                .map_err(db)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            rules::bundle_in_use(name, &users)?;
            tx.execute("DELETE FROM bundles WHERE name = $1", &[&name]).await.map_err(db)?;
            tx.execute("DELETE FROM bundle_revisions WHERE name = $1", &[&name]).await.map_err(db)?;
        })
    }

    async fn transition(
        &self,
        machine: &str,
        to: MachineState,
        trigger: Trigger,
        source: Option<String>,
        detail: serde_json::Value,
    ) -> Result<Transitioned> {
        in_tx!(self, |tx| {
            let rec = get_machine(&tx, machine, true).await?.ok_or_else(|| StoreError::NotFound(machine.to_string()))?;
            transition_in(&tx, rec, to, trigger, source.clone(), detail.clone()).await?
        })
    }

    async fn transition_with_settings(
        &self,
        machine: &str,
        to: MachineState,
        trigger: Trigger,
        source: Option<String>,
        detail: serde_json::Value,
        settings: Vec<SettingWrite>,
    ) -> Result<Transitioned> {
        in_tx!(self, |tx| {
            let rec = get_machine(&tx, machine, true).await?.ok_or_else(|| StoreError::NotFound(machine.to_string()))?;
            rules::refuse_replay(&rec, to, trigger)?;
            for w in &settings {
                if w.first_writer_wins {
                    tx.execute("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&w.key, &w.value])
                        .await
                        .map_err(db)?;
                    let held: String =
                        tx.query_one("SELECT value FROM settings WHERE key = $1", &[&w.key]).await.map_err(db)?.get(0);
                    if held != w.value {
                        return Err(rules::setting_taken(&w.key));
                    }
                } else {
                    tx.execute(
                        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        &[&w.key, &w.value],
                    )
                    .await
                    .map_err(db)?;
                }
            }
            transition_in(&tx, rec, to, trigger, source.clone(), detail.clone()).await?
        })
    }

    async fn note_install_attempt(&self, machine: &str) -> Result<MachineRecord> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!(
                    "UPDATE machines SET install_attempts = install_attempts + 1, updated = now() \
                     WHERE name = $1 AND state IN ('provision', 'installing') RETURNING {MACHINE_COLS}"
                ),
                &[&machine],
            )
            .await
            .map_err(db)?;
        match row {
            Some(r) => machine_from_row(&r),
            None if get_machine(&c, machine, false).await?.is_none() => Err(StoreError::NotFound(machine.to_string())),
            None => Err(StoreError::Conflict(format!("machine {machine} is not provisioning"))),
        }
    }

    async fn write_batch(&self, items: Vec<BatchItem>) -> Result<()> {
        let mut client = self.client().await?;
        let mut tx = client.transaction().await.map_err(db)?;
        let mut first_err = None;
        let events: Vec<&NewEvent> = items.iter().filter_map(|i| if let BatchItem::Event(e) = i { Some(e) } else { None }).collect();
        // Rows are locked in name order, the same in every instance's batches, so two
        // batches touching the same machines queue instead of deadlocking.
        let mut rows: Vec<(String, &BatchItem)> = items
            .iter()
            .filter_map(|i| match i {
                BatchItem::Event(_) => None,
                BatchItem::Seen { machine, .. } => Some((machine.clone(), i)),
                BatchItem::Discovered { observed, .. } => Some((bootplane_core::model::discovered_name(observed).unwrap_or_default(), i)),
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, item) in rows {
            // One bad item must not lose the rest of the batch: each runs in a savepoint,
            // since PostgreSQL aborts a transaction at its first error. A deadlock with
            // another kind of transaction (an apply) is tried once more.
            for tries in 0..2 {
                let sp = tx.savepoint("item").await.map_err(db)?;
                match write_item(&sp, item).await {
                    Ok(()) => {
                        sp.commit().await.map_err(db)?;
                        break;
                    }
                    Err(e) => {
                        sp.rollback().await.map_err(db)?;
                        if tries == 1 || !retryable(&e) {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        insert_events(&tx, &events).await?;
        tx.commit().await.map_err(db)?;
        match first_err {
            Some(e) if items.len() == 1 => Err(e),
            Some(e) => {
                eprintln!("bootplane: part of an event batch was not written: {e}");
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn events(&self, q: EventQuery) -> Result<Vec<Event>> {
        let c = self.client().await?;
        let limit = if q.limit == 0 { 100 } else { q.limit.min(10_000) } as i64;
        let (order, after) = match q.after {
            Some(a) => ("ASC", a),
            None => ("DESC", -1),
        };
        let rows = c
            .query(
                &format!(
                    "SELECT id, time, machine, kind, source, detail FROM events \
                     WHERE ($1::text IS NULL OR machine = $1) AND id > $2 ORDER BY id {order} LIMIT $3"
                ),
                &[&q.machine, &after, &limit],
            )
            .await
            .map_err(db)?;
        let mut v = rows.iter().map(event_from_row).collect::<Result<Vec<_>>>()?;
        if q.after.is_none() {
            v.reverse();
        }
        Ok(v)
    }

    async fn latest_events(&self, per_machine: u32) -> Result<Vec<Event>> {
        let c = self.client().await?;
        let n = per_machine.clamp(1, 1000) as i64;
        let rows = c
            .query(
                "SELECT e.id, e.time, e.machine, e.kind, e.source, e.detail FROM machines m \
                 CROSS JOIN LATERAL (SELECT * FROM events WHERE machine = m.name ORDER BY id DESC LIMIT $1) e \
                 ORDER BY e.machine, e.id",
                &[&n],
            )
            .await
            .map_err(db)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn event_count(&self) -> Result<u64> {
        let c = self.client().await?;
        Ok(c.query_one("SELECT COUNT(*) FROM events", &[]).await.map_err(db)?.get::<_, i64>(0) as u64)
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        Ok(c.query_opt("SELECT value FROM settings WHERE key = $1", &[&key]).await.map_err(db)?.map(|r| r.get(0)))
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        let c = self.client().await?;
        // A statement sees the rows committed before it started: when another instance
        // inserted first, ON CONFLICT DO NOTHING returns nothing and the second query reads theirs.
        let row = c
            .query_opt("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING value", &[&key, &value])
            .await
            .map_err(db)?;
        match row {
            Some(r) => Ok(r.get(0)),
            None => Ok(c.query_one("SELECT value FROM settings WHERE key = $1", &[&key]).await.map_err(db)?.get(0)),
        }
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", &[&key, &value])
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn delete_setting(&self, key: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute("DELETE FROM settings WHERE key = $1", &[&key]).await.map_err(db)?;
        Ok(())
    }

    async fn replace_setting(&self, key: &str, old: &str, new: &str) -> Result<bool> {
        let c = self.client().await?;
        // Under READ COMMITTED a concurrent UPDATE of the row waits, then re-checks the
        // WHERE against the new value: exactly one of two racing claims wins.
        let n = c.execute("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3", &[&new, &key, &old]).await.map_err(db)?;
        Ok(n == 1)
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        let c = self.client().await?;
        let rows = c.query("SELECT ip, mac, state, expires, hostname FROM leases ORDER BY ip", &[]).await.map_err(db)?;
        Ok(rows.iter().filter_map(lease_from_row).collect())
    }

    async fn put_leases(&self, leases: &[Lease]) -> Result<Vec<Lease>> {
        in_tx!(self, |tx| write_leases(&tx, leases).await?)
    }

    fn shares_leases(&self) -> bool {
        true
    }

    fn events_written(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        Some(self.events_written.clone())
    }

    fn lease_writer(&self) -> Option<LeaseWriter> {
        let (pool, runtime) = (self.pool.clone(), self.runtime.clone());
        // Called on the DHCP thread (not a runtime thread): block on the pool's runtime.
        // The reply leaves only after COMMIT returned, and PostgreSQL's synchronous_commit
        // makes that durable.
        Some(Box::new(move |leases: &[Lease], events: &[NewEvent]| {
            let events: Vec<&NewEvent> = events.iter().collect();
            runtime.block_on(async {
                let mut tries = 0;
                loop {
                    let result: Result<Vec<Lease>> = async {
                        let mut client = pool.get().await.map_err(pool_err)?;
                        let tx = client.transaction().await.map_err(db)?;
                        let refused = write_leases(&tx, leases).await?;
                        insert_events(&tx, &events).await?;
                        tx.commit().await.map_err(db)?;
                        Ok(refused)
                    }
                    .await;
                    match result {
                        Err(e) if tries < RETRIES && retryable(&e) => tries += 1,
                        other => break other,
                    }
                }
            })
        }))
    }

    async fn export(&self) -> Result<Snapshot> {
        let mut client = self.client().await?;
        // One snapshot of the database for every read.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        let rows = |sql: &'static str| {
            let tx = &tx;
            async move { tx.query(sql, &[]).await.map_err(db) }
        };
        let machines = rows("SELECT name, spec, state, install_attempts, credential_generation, observed, last_seen, created, updated FROM machines ORDER BY name")
            .await?
            .iter()
            .map(machine_from_row)
            .collect::<Result<Vec<_>>>()?;
        let pairs = |v: Vec<Row>| v.iter().map(|r| (r.get(0), r.get(1))).collect::<Vec<(String, String)>>();
        let snap = Snapshot {
            machines,
            bundles: rows("SELECT spec, revision FROM bundles ORDER BY name").await?.iter().map(bundle_from_row).collect::<Result<_>>()?,
            bundle_history: rows("SELECT spec, revision FROM bundle_revisions ORDER BY name, revision")
                .await?
                .iter()
                .map(bundle_from_row)
                .collect::<Result<_>>()?,
            clusters: rows("SELECT spec FROM clusters ORDER BY name")
                .await?
                .iter()
                .map(|r| serde_json::from_str(r.get(0)).map_err(json_err))
                .collect::<Result<_>>()?,
            templates: pairs(rows("SELECT name, butane FROM templates ORDER BY name").await?),
            settings: pairs(rows("SELECT key, value FROM settings ORDER BY key").await?),
            events: rows("SELECT id, time, machine, kind, source, detail FROM events ORDER BY id")
                .await?
                .iter()
                .map(event_from_row)
                .collect::<Result<_>>()?,
            leases: rows("SELECT ip, mac, state, expires, hostname FROM leases ORDER BY ip").await?.iter().filter_map(lease_from_row).collect(),
        };
        tx.commit().await.map_err(db)?;
        Ok(snap)
    }

    async fn import(&self, snap: Snapshot) -> Result<()> {
        in_tx!(self, |tx| {
            // Two migrations into one database at once: the second waits, then finds it full.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLY_LOCK]).await.map_err(db)?;
            let n = tx.query_one(rules::COUNT_CONTENTS, &[]).await.map_err(db)?;
            if let Some(what) = rules::not_empty(n.get(0), n.get(1), n.get(2), n.get(3)) {
                return Err(StoreError::NotEmpty(what));
            }
            for m in &snap.machines {
                tx.execute(
                    "INSERT INTO machines (name, spec, state, uuid, install_attempts, credential_generation, observed, last_seen, created, updated) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &[
                        &m.name(),
                        &serde_json::to_string(&m.spec).map_err(json_err)?,
                        &m.state.as_str(),
                        &m.spec.uuid.as_ref().map(|u| u.as_str()),
                        &(m.install_attempts as i32),
                        &(m.credential_generation as i32),
                        &serde_json::to_string(&m.observed).map_err(json_err)?,
                        &m.last_seen,
                        &m.created,
                        &m.updated,
                    ],
                )
                .await
                .map_err(db)?;
                let macs: Vec<String> = m.spec.macs.iter().map(|x| x.to_string()).collect();
                insert_macs(&tx, &m.spec, &macs).await?;
            }
            for (table, list) in [("bundles", &snap.bundles), ("bundle_revisions", &snap.bundle_history)] {
                for b in list {
                    let spec = serde_json::to_string(&rules::unpinned(b)).map_err(json_err)?;
                    tx.execute(
                        &format!("INSERT INTO {table} (name, spec, revision, created) VALUES ($1, $2, $3, now())"),
                        &[&b.name, &spec, &(b.revision as i32)],
                    )
                    .await
                    .map_err(db)?;
                }
            }
            for c in &snap.clusters {
                let spec = serde_json::to_string(c).map_err(json_err)?;
                tx.execute("INSERT INTO clusters (name, spec, updated) VALUES ($1, $2, now())", &[&c.name, &spec]).await.map_err(db)?;
            }
            for (name, butane) in &snap.templates {
                tx.execute("INSERT INTO templates (name, butane) VALUES ($1, $2)", &[name, butane]).await.map_err(db)?;
            }
            for (k, v) in &snap.settings {
                tx.execute("INSERT INTO settings (key, value) VALUES ($1, $2)", &[k, v]).await.map_err(db)?;
            }
            for chunk in snap.events.chunks(5000) {
                let ids: Vec<i64> = chunk.iter().map(|e| e.id).collect();
                let times: Vec<chrono::DateTime<chrono::Utc>> = chunk.iter().map(|e| e.time).collect();
                let machines: Vec<Option<&str>> = chunk.iter().map(|e| e.machine.as_deref()).collect();
                let kinds: Vec<&str> = chunk.iter().map(|e| e.kind.as_str()).collect();
                let sources: Vec<Option<&str>> = chunk.iter().map(|e| e.source.as_deref()).collect();
                let details: Vec<String> = chunk.iter().map(|e| e.detail.to_string()).collect();
                tx.execute(
                    "INSERT INTO events (id, time, machine, kind, source, detail) \
                     SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[])",
                    &[&ids, &times, &machines, &kinds, &sources, &details],
                )
                .await
                .map_err(db)?;
            }
            // New events continue after the copied ones.
            tx.execute("SELECT setval('events_id_seq', GREATEST((SELECT MAX(id) FROM events), 1))", &[]).await.map_err(db)?;
            write_leases(&tx, &snap.leases).await?;
        })
    }

    async fn prune(&self, events_retained: u64, audit_days: u32, max_discovered: u64) -> Result<PruneReport> {
        let audit = rules::audit_kinds_sql();
        in_tx!(self, |tx| {
            let noise = tx
                .execute(
                    &format!(
                        "DELETE FROM events WHERE kind NOT IN ({audit}) AND id <= \
                         (SELECT id FROM events WHERE kind NOT IN ({audit}) ORDER BY id DESC LIMIT 1 OFFSET $1)"
                    ),
                    &[&(events_retained as i64)],
                )
                .await
                .map_err(db)?;
            let old_audit = tx
                .execute(
                    &format!("DELETE FROM events WHERE kind IN ({audit}) AND time < clock_timestamp() - make_interval(days => $1)"),
                    &[&(audit_days as i32)],
                )
                .await
                .map_err(db)?;
            let discovered_deleted = tx
                .execute(
                    "DELETE FROM machines WHERE name IN (SELECT name FROM machines WHERE state = 'discovered' \
                     ORDER BY last_seen DESC NULLS LAST OFFSET $1)",
                    &[&(max_discovered as i64)],
                )
                .await
                .map_err(db)?;
            PruneReport { events_deleted: noise + old_audit, discovered_deleted }
        })
    }
}

/// `SELECT id, time, machine, kind, source, detail`.
fn event_from_row(r: &Row) -> Result<Event> {
    Ok(Event {
        id: r.get(0),
        time: r.get(1),
        machine: r.get(2),
        kind: r.get(3),
        source: r.get(4),
        detail: serde_json::from_str(r.get(5)).map_err(json_err)?,
    })
}

fn bundle_from_row(r: &Row) -> Result<Bundle> {
    let b: Bundle = serde_json::from_str(r.get(0)).map_err(json_err)?;
    Ok(Bundle { revision: r.get::<_, i32>(1) as u32, ..b })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_path_queries_select_the_machine_columns() {
        crate::battery::assert_boot_path_queries(MACHINE_COLS, BY_UUID, BY_MAC);
    }
}
