//! One test battery for every backend: each case below runs against SQLite and against a
//! throwaway PostgreSQL (`battery::sqlite::*`, `battery::postgres::*`), so a backend
//! that stores differently but means the same passes the same cases. Cases that open a
//! second store on the same database play a second bootplane instance.

use crate::*;
use bootplane_core::model::{Cluster, Lease, LeaseState, OsKind};
use bootplane_testkit::postgres::TempPostgres;
use serde_json::json;
use std::sync::Arc;

enum Backend {
    Sqlite(tempfile::TempDir),
    /// The server lives as long as the fixture.
    Postgres { _server: TempPostgres, url: String },
}

#[derive(Clone)]
pub(super) struct Fixture(Arc<Backend>);

impl Fixture {
    /// A store on the fixture's database; each call is another instance.
    async fn open(&self) -> Arc<dyn Store> {
        match &*self.0 {
            Backend::Sqlite(d) => Arc::new(SqliteStore::open(d.path()).unwrap()),
            Backend::Postgres { url, .. } => Arc::new(PostgresStore::connect(url).await.unwrap()),
        }
    }
}

impl Fixture {
    /// Another, empty store on the same backend (a migration target).
    async fn fresh(&self) -> (Arc<dyn Store>, Option<tempfile::TempDir>) {
        match &*self.0 {
            Backend::Postgres { _server, .. } => (Arc::new(PostgresStore::connect(&_server.new_database()).await.unwrap()), None),
            _ => {
                let d = tempfile::tempdir().unwrap();
                (Arc::new(SqliteStore::open(d.path()).unwrap()), Some(d))
            }
        }
    }
}

fn sqlite() -> Option<Fixture> {
    Some(Fixture(Arc::new(Backend::Sqlite(tempfile::tempdir().unwrap()))))
}

fn postgres() -> Option<Fixture> {
    let pg = TempPostgres::start_or_skip()?;
    let url = pg.new_database();
    Some(Fixture(Arc::new(Backend::Postgres { _server: pg, url })))
}

macro_rules! battery {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(f) = super::sqlite() { super::$case(f).await }
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(f) = super::postgres() { super::$case(f).await }
            })*
        }
    };
}

battery!(
    apply_sets_initial_states_and_never_reprovisions_installed,
    transitions_follow_the_table_and_are_recorded,
    discovered_machines_are_recorded_then_adopted,
    mac_owned_by_another_machine_is_refused_atomically,
    a_changed_bundle_is_a_new_revision_and_the_old_one_stays_readable,
    prune_caps_events_and_discovered,
    settings_first_writer_wins,
    leases_round_trip_and_follow_the_mac,
    settings_written_with_a_transition_commit_or_roll_back_with_it,
    reopening_keeps_state,
    lease_writer_commits_leases_with_their_events,
    racing_instances_move_a_machine_once_and_count_every_attempt,
    racing_instances_claim_a_setting_once,
    a_bad_batch_item_loses_nothing_else,
    a_lease_is_a_claim_another_mac_cannot_take_until_it_expires,
    racing_instances_never_give_one_address_to_two_macs,
    another_instances_events_wake_this_ones_streams,
    a_whole_site_exports_and_imports_unchanged,
    unknown_machines_are_errors_not_panics,
    latest_events_keeps_each_machines_newest_in_order,
    boot_lookups_follow_every_instances_writes,
);

/// A backend's two boot-path lookups (spelled out for speed) select exactly its machine
/// columns, in order (`m.`-prefixed in the MAC join).
pub(crate) fn assert_boot_path_queries(cols: &str, by_uuid: &str, by_mac: &str) {
    let norm = |q: &str| q.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(norm(by_uuid).starts_with(&format!("SELECT {cols} FROM")), "{by_uuid}");
    let prefixed: Vec<String> = cols.split(", ").map(|c| format!("m.{c}")).collect();
    assert!(norm(by_mac).starts_with(&format!("SELECT {} FROM", prefixed.join(", "))), "{by_mac}");
}

fn spec(name: &str, mac: &str, provision: bool) -> MachineSpec {
    MachineSpec {
        name: name.into(),
        hostname: Some(format!("{name}.lab")),
        macs: vec![mac.parse().unwrap()],
        provision,
        bundle: Some("g".into()),
        ..Default::default()
    }
}

fn bundle() -> Bundle {
    Bundle::new("g", OsKind::Generic, "x86_64")
}

fn obs(mac: &str) -> Observed {
    Observed::from_raw(Some(mac), None, None, Some("x86_64"), None).unwrap()
}

pub(super) async fn apply_sets_initial_states_and_never_reprovisions_installed(f: Fixture) {
    let s = f.open().await;
    let set = ApplySet {
        machines: vec![spec("a", "52:54:00:00:00:01", false), spec("b", "52:54:00:00:00:02", true)],
        bundles: vec![bundle()],
        ..Default::default()
    };
    let r = s.apply(set.clone()).await.unwrap();
    assert_eq!((r.machines_created, r.machines_provisioned), (2, 1));
    assert_eq!(s.machine("a").await.unwrap().unwrap().state, MachineState::Ready);
    assert_eq!(s.machine("b").await.unwrap().unwrap().state, MachineState::Provision);

    s.transition("b", MachineState::Installing, Trigger::ConfigFetched, None, json!(null)).await.unwrap();
    s.transition("b", MachineState::Installed, Trigger::Report, None, json!(null)).await.unwrap();
    s.apply(set).await.unwrap();
    assert_eq!(s.machine("b").await.unwrap().unwrap().state, MachineState::Installed, "re-apply must not reinstall");
}

pub(super) async fn transitions_follow_the_table_and_are_recorded(f: Fixture) {
    let s = f.open().await;
    s.apply(ApplySet { machines: vec![spec("a", "52:54:00:00:00:01", false)], ..Default::default() }).await.unwrap();
    let e = s.transition("a", MachineState::Installed, Trigger::Report, None, json!(null)).await.unwrap_err();
    assert!(matches!(e, StoreError::Transition(_)), "{e}");
    let t = s.transition("a", MachineState::Provision, Trigger::AdminProvision, Some("127.0.0.1".into()), json!(null)).await.unwrap();
    let gen = t.record().credential_generation;
    assert!(matches!(t, Transitioned::Changed { from: MachineState::Ready, .. }));
    assert!(matches!(
        s.transition("a", MachineState::Provision, Trigger::AdminProvision, None, json!(null)).await.unwrap(),
        Transitioned::Unchanged(_)
    ));
    s.note_install_attempt("a").await.unwrap();
    assert_eq!(s.machine("a").await.unwrap().unwrap().install_attempts, 1);
    s.transition("a", MachineState::Installing, Trigger::ConfigFetched, None, json!(null)).await.unwrap();
    let t = s.transition("a", MachineState::Installed, Trigger::Report, None, json!(null)).await.unwrap();
    assert_eq!(t.record().credential_generation, gen + 1, "a report retires the credential");
    assert!(s.note_install_attempt("a").await.is_err());
    let ev = s.events(EventQuery { machine: Some("a".into()), ..Default::default() }).await.unwrap();
    let changes: Vec<_> = ev.iter().filter(|e| e.kind == "state.changed").map(|e| e.detail["to"].as_str().unwrap().to_string()).collect();
    assert_eq!(changes, ["ready", "provision", "installing", "installed"]);
}

pub(super) async fn discovered_machines_are_recorded_then_adopted(f: Fixture) {
    let s = f.open().await;
    let o = obs("52:54:00:00:00:09");
    s.write_batch(vec![
        BatchItem::Discovered { observed: o.clone(), source: None },
        BatchItem::Event(NewEvent::new(Some("discovered-525400000009"), "boot.script", None, json!({}))),
    ])
    .await
    .unwrap();
    let (u, m) = s.identity_candidates(&o).await.unwrap();
    assert!(u.is_none());
    let m = m.unwrap();
    assert_eq!((m.name(), m.state), ("discovered-525400000009", MachineState::Discovered));
    assert_eq!(m.observed.arch.as_deref(), Some("x86_64"));

    let r = s.apply(ApplySet { machines: vec![spec("new", "52-54-00-00-00-09", false)], ..Default::default() }).await.unwrap();
    assert_eq!(r.machines_adopted, 1);
    assert!(s.machine("discovered-525400000009").await.unwrap().is_none());
    let ev = s.events(EventQuery { machine: Some("new".into()), ..Default::default() }).await.unwrap();
    assert!(ev.iter().any(|e| e.kind == "boot.script"), "history follows the machine: {ev:?}");
}

pub(super) async fn mac_owned_by_another_machine_is_refused_atomically(f: Fixture) {
    let s = f.open().await;
    s.apply(ApplySet { machines: vec![spec("a", "52:54:00:00:00:01", false)], ..Default::default() }).await.unwrap();
    let e = s
        .apply(ApplySet { machines: vec![spec("c", "52:54:00:00:00:03", false), spec("b", "52:54:00:00:00:01", false)], ..Default::default() })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already belongs to machine a"), "{e}");
    assert!(s.machine("c").await.unwrap().is_none(), "a refused apply writes nothing");
}

pub(super) async fn a_changed_bundle_is_a_new_revision_and_the_old_one_stays_readable(f: Fixture) {
    let s = f.open().await;
    s.apply(ApplySet { bundles: vec![bundle()], ..Default::default() }).await.unwrap();
    let again = s.apply(ApplySet { bundles: vec![bundle()], ..Default::default() }).await.unwrap();
    assert_eq!((again.bundles_created, again.bundles_revised), (0, 0), "the same definition is no new revision");
    let name = bundle().name;
    assert_eq!(s.bundle(&name).await.unwrap().unwrap().revision, 1);
    let mut b = bundle();
    b.args = Some("changed".into());
    let r = s.apply(ApplySet { bundles: vec![b], ..Default::default() }).await.unwrap();
    assert_eq!(r.bundles_revised, 1);
    let now = s.bundle(&name).await.unwrap().unwrap();
    assert_eq!((now.revision, now.args.as_deref()), (2, Some("changed")));
    let first = s.bundle_revision(&name, 1).await.unwrap().unwrap();
    assert_eq!((first.revision, first.args), (1, bundle().args));
    assert_eq!(s.bundle_revision(&name, 2).await.unwrap().unwrap().args.as_deref(), Some("changed"));
    assert!(s.bundle_revision(&name, 3).await.unwrap().is_none());
    assert_eq!(s.bundle_history().await.unwrap().len(), 1);
    assert!(s.events(EventQuery { limit: 100, ..Default::default() }).await.unwrap().iter().any(|e| e.kind == "bundle.revised"));
    s.delete_bundle(&name).await.unwrap();
    assert!(s.bundle_revision(&name, 1).await.unwrap().is_none() && s.bundle_history().await.unwrap().is_empty());
}

pub(super) async fn prune_caps_events_and_discovered(f: Fixture) {
    let s = f.open().await;
    let mut items = Vec::new();
    for i in 0..50u32 {
        let mac = format!("52:54:01:00:{:02x}:{:02x}", i / 256, i % 256);
        items.push(BatchItem::Discovered { observed: obs(&mac), source: None });
        items.push(BatchItem::Event(NewEvent::new(None, "boot.script", None, json!(i))));
    }
    // Audit events among the noise survive any amount of it.
    items.insert(3, BatchItem::Event(NewEvent::new(Some("m1"), "state.changed", None, json!("audit"))));
    items.insert(7, BatchItem::Event(NewEvent::new(Some("m1"), "config.alarm", None, json!("audit"))));
    s.write_batch(items).await.unwrap();
    let r = s.prune(10, 90, 20).await.unwrap();
    assert_eq!(r.discovered_deleted, 30);
    assert_eq!(s.event_count().await.unwrap(), 12);
    let kept = s.events(EventQuery { machine: Some("m1".into()), after: None, limit: 10 }).await.unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(s.machines().await.unwrap().len(), 20);
    // Audit events go by age: none is older than 0 days... once it is, it goes too.
    std::thread::sleep(std::time::Duration::from_millis(5));
    s.prune(10, 0, 20).await.unwrap();
    assert_eq!(s.event_count().await.unwrap(), 10);
}

pub(super) async fn settings_first_writer_wins(f: Fixture) {
    let s = f.open().await;
    assert_eq!(s.setting_or_insert("k", "one").await.unwrap(), "one");
    assert_eq!(s.setting_or_insert("k", "two").await.unwrap(), "one");
    // Compare-and-set: only the writer that saw the current value wins.
    assert!(s.replace_setting("k", "one", "two").await.unwrap());
    assert!(!s.replace_setting("k", "one", "three").await.unwrap());
    assert!(!s.replace_setting("missing", "", "x").await.unwrap());
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("two"));
}

pub(super) async fn leases_round_trip_and_follow_the_mac(f: Fixture) {
    let s = f.open().await;
    let mac = "52:54:00:00:00:01".parse().unwrap();
    let l = Lease { ip: "198.18.0.50".parse().unwrap(), mac, state: LeaseState::Bound, expires: 100, hostname: Some("a".into()) };
    s.put_leases(std::slice::from_ref(&l)).await.unwrap();
    s.put_leases(&[Lease { ip: "198.18.0.51".parse().unwrap(), ..l.clone() }]).await.unwrap();
    let all = s.leases().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].ip.to_string(), "198.18.0.51");
    assert_eq!(all[0].state, LeaseState::Bound);
}

pub(super) async fn settings_written_with_a_transition_commit_or_roll_back_with_it(f: Fixture) {
    let s = f.open().await;
    s.apply(ApplySet { machines: vec![spec("a", "52:54:00:00:00:01", true)], ..Default::default() }).await.unwrap();
    s.transition("a", MachineState::Installing, Trigger::ConfigFetched, None, json!(null)).await.unwrap();
    s.set_setting("ca", "theirs").await.unwrap();
    let w = |k: &str, v: &str, fww: bool| SettingWrite { key: k.into(), value: v.into(), first_writer_wins: fww };
    // A first-writer-wins setting held by another value fails the whole transaction.
    let e = s.transition_with_settings("a", MachineState::Installed, Trigger::Report, None, json!(null), vec![w("kc", "mine", false), w("ca", "mine", true)]).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert_eq!(s.machine("a").await.unwrap().unwrap().state, MachineState::Installing);
    assert_eq!(s.setting("kc").await.unwrap(), None, "rolled back with the state change");
    s.delete_setting("ca").await.unwrap();
    s.transition_with_settings("a", MachineState::Installed, Trigger::Report, None, json!(null), vec![w("kc", "mine", false), w("ca", "mine", true)]).await.unwrap();
    assert_eq!(s.setting("ca").await.unwrap().as_deref(), Some("mine"));
    // A replay to the same state is refused, not "unchanged".
    let e = s.transition_with_settings("a", MachineState::Installed, Trigger::Report, None, json!(null), vec![]).await.unwrap_err();
    assert!(matches!(e, StoreError::Transition(_)), "{e}");
}

pub(super) async fn reopening_keeps_state(f: Fixture) {
    {
        let s = f.open().await;
        s.apply(ApplySet { machines: vec![spec("a", "52:54:00:00:00:01", true)], ..Default::default() }).await.unwrap();
    }
    let s = f.open().await;
    assert_eq!(s.machine("a").await.unwrap().unwrap().state, MachineState::Provision);
}

pub(super) async fn lease_writer_commits_leases_with_their_events(f: Fixture) {
    let s = f.open().await;
    let mut w = s.lease_writer().expect("every backend has a blocking lease writer");
    let mac = "52:54:00:00:00:01".parse().unwrap();
    let l = Lease { ip: "198.18.0.50".parse().unwrap(), mac, state: LeaseState::Bound, expires: 100, hostname: None };
    let events: Vec<NewEvent> = (0..500).map(|i| NewEvent::new(Some("a"), "dhcp.ack", None, json!({ "i": i }))).collect();
    // The DHCP thread is a plain thread, not a runtime worker.
    let l2 = l.clone();
    let mut w = tokio::task::spawn_blocking(move || {
        w(std::slice::from_ref(&l2), &events).unwrap();
        // Events alone (offers) are fine too.
        w(&[], &events[..1]).unwrap();
        w
    })
    .await
    .unwrap();
    // Committed when the call returned: another instance sees it at once.
    let other = f.open().await;
    assert_eq!(other.leases().await.unwrap(), vec![l.clone()]);
    assert_eq!(other.event_count().await.unwrap(), 501);
    let ev = other.events(EventQuery { machine: Some("a".into()), after: Some(0), limit: 1000 }).await.unwrap();
    let order: Vec<i64> = ev.iter().map(|e| e.detail["i"].as_i64().unwrap()).collect();
    assert_eq!(&order[..500], (0..500).collect::<Vec<_>>().as_slice(), "events keep their order");
    let moved = Lease { ip: "198.18.0.51".parse().unwrap(), ..l };
    let m2 = moved.clone();
    tokio::task::spawn_blocking(move || w(&[m2], &[]).unwrap()).await.unwrap();
    assert_eq!(other.leases().await.unwrap(), vec![moved], "a MAC holds one lease");
}

/// Two instances serve the same machine at once: a move happens once (one event), every
/// installer served is counted, and a replayed report is refused on either instance.
pub(super) async fn racing_instances_move_a_machine_once_and_count_every_attempt(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    a.apply(ApplySet { machines: vec![spec("m", "52:54:00:00:00:01", true)], bundles: vec![bundle()], ..Default::default() })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.note_install_attempt("m").await.unwrap();
            s.transition("m", MachineState::Installing, Trigger::ConfigFetched, None, json!(i)).await.unwrap()
        }));
    }
    let mut changed = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Transitioned::Changed { .. }) {
            changed += 1;
        }
    }
    assert_eq!(changed, 1, "one of 40 racing requests moves the machine");
    assert_eq!(b.machine("m").await.unwrap().unwrap().install_attempts, 40);
    let mut reports = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        reports.push(tokio::spawn(async move {
            s.transition_with_settings("m", MachineState::Installed, Trigger::Report, None, json!(i), vec![]).await
        }));
    }
    let mut ok = 0;
    for r in reports {
        match r.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Transition(_)) => {}
            Err(e) => panic!("a racing report failed otherwise: {e}"),
        }
    }
    assert_eq!(ok, 1, "a report is accepted once across instances");
    let ev = a.events(EventQuery { machine: Some("m".into()), after: Some(0), limit: 100 }).await.unwrap();
    let changes: Vec<_> = ev.iter().filter(|e| e.kind == "state.changed").map(|e| e.detail["to"].as_str().unwrap()).collect();
    assert_eq!(changes, ["provision", "installing", "installed"], "every change has exactly one event");
}

/// A single-use claim (compare-and-set) and a generated secret (insert-or-read) raced
/// from two instances: one claim wins; everyone ends up with the same secret.
pub(super) async fn racing_instances_claim_a_setting_once(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    a.set_setting("claim", "open").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let won = s.replace_setting("claim", "open", &format!("taken-{i}")).await.unwrap();
            let secret = s.setting_or_insert("secret", &format!("s{i}")).await.unwrap();
            (won, secret)
        }));
    }
    let mut wins = 0;
    let mut secrets = std::collections::BTreeSet::new();
    for t in tasks {
        let (won, secret) = t.await.unwrap();
        wins += won as u32;
        secrets.insert(secret);
    }
    assert_eq!(wins, 1);
    assert_eq!(secrets.len(), 1, "{secrets:?}");
}

pub(super) async fn a_bad_batch_item_loses_nothing_else(f: Fixture) {
    let s = f.open().await;
    s.apply(ApplySet { machines: vec![spec("a", "52:54:00:00:00:01", false)], ..Default::default() }).await.unwrap();
    // The MAC is a's: recording it as discovered under another name must not take it,
    // and must not lose the events around it.
    s.write_batch(vec![
        BatchItem::Event(NewEvent::new(Some("a"), "boot.script", None, json!(1))),
        BatchItem::Seen { machine: "a".into(), observed: obs("52:54:00:00:00:01") },
        BatchItem::Discovered { observed: obs("52:54:00:00:00:02"), source: None },
        BatchItem::Event(NewEvent::new(Some("a"), "boot.script", None, json!(2))),
    ])
    .await
    .unwrap();
    let ev = s.events(EventQuery { machine: Some("a".into()), ..Default::default() }).await.unwrap();
    assert_eq!(ev.iter().filter(|e| e.kind == "boot.script").count(), 2);
    assert!(s.machine("a").await.unwrap().unwrap().last_seen.is_some());
    assert!(s.machine("discovered-525400000002").await.unwrap().is_some());
}

pub(super) async fn unknown_machines_are_errors_not_panics(f: Fixture) {
    let s = f.open().await;
    let e = s.transition("ghost", MachineState::Provision, Trigger::AdminProvision, None, json!(null)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert!(s.note_install_attempt("ghost").await.is_err());
    assert!(s.machine("ghost").await.unwrap().is_none());
    assert!(s.bundle("ghost").await.unwrap().is_none());
    assert!(s.delete_bundle("ghost").await.is_ok(), "removing what is not there is not an error");
    assert!(s.identity_candidates(&obs("52:54:00:00:00:77")).await.unwrap() == (None, None));
}

pub(super) async fn a_lease_is_a_claim_another_mac_cannot_take_until_it_expires(f: Fixture) {
    let s = f.open().await;
    let now = chrono::Utc::now().timestamp();
    let ip = "198.18.0.60".parse().unwrap();
    let held = Lease { ip, mac: "52:54:00:00:00:01".parse().unwrap(), state: LeaseState::Bound, expires: now + 600, hostname: None };
    assert!(s.put_leases(std::slice::from_ref(&held)).await.unwrap().is_empty());
    let other = Lease { mac: "52:54:00:00:00:02".parse().unwrap(), state: LeaseState::Offered, expires: now + 60, ..held.clone() };
    assert_eq!(s.put_leases(std::slice::from_ref(&other)).await.unwrap(), vec![held.clone()], "refused, with the holder");
    assert_eq!(s.leases().await.unwrap(), vec![held.clone()], "nothing changed");
    // Another instance offering the holder another address (its pool did not know of
    // the binding) must not drop the binding: the client still uses that address.
    let elsewhere = Lease { ip: "198.18.0.61".parse().unwrap(), state: LeaseState::Offered, expires: now + 30, ..held.clone() };
    assert!(s.put_leases(std::slice::from_ref(&elsewhere)).await.unwrap().is_empty());
    assert_eq!(s.leases().await.unwrap(), vec![held.clone(), elsewhere.clone()], "an offer moves no MAC");
    let stranger = Lease { mac: "52:54:00:00:00:03".parse().unwrap(), ..held.clone() };
    assert_eq!(s.put_leases(&[stranger]).await.unwrap(), vec![held.clone()], "the binding still holds its address");
    // Binding it is the client's commitment: its other rows go.
    let rebound = Lease { state: LeaseState::Bound, expires: now + 600, ..elsewhere };
    assert!(s.put_leases(std::slice::from_ref(&rebound)).await.unwrap().is_empty());
    assert_eq!(s.leases().await.unwrap(), vec![rebound], "the MAC moved");
    assert!(s.put_leases(std::slice::from_ref(&held)).await.unwrap().is_empty());
    // Another instance offering the holder its own address does not shorten its binding.
    let offer = Lease { state: LeaseState::Offered, expires: now + 30, ..held.clone() };
    assert!(s.put_leases(&[offer]).await.unwrap().is_empty());
    assert_eq!(s.leases().await.unwrap(), vec![held.clone()], "still bound, still until its own expiry");
    // The holder renews; once its time is up, anyone may have the address.
    let renewed = Lease { expires: now + 1200, ..held.clone() };
    assert!(s.put_leases(std::slice::from_ref(&renewed)).await.unwrap().is_empty());
    let expired = Lease { expires: now - 1, ..held };
    assert!(s.put_leases(&[expired]).await.unwrap().is_empty());
    assert!(s.put_leases(std::slice::from_ref(&other)).await.unwrap().is_empty());
    assert_eq!(s.leases().await.unwrap(), vec![other]);
}

/// Two instances' DHCP threads claim the same free addresses for different MACs at
/// once, through their blocking lease writers: each address ends with exactly one MAC,
/// and each claim that lost says who won.
pub(super) async fn racing_instances_never_give_one_address_to_two_macs(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let now = chrono::Utc::now().timestamp();
    let ips: Vec<std::net::Ipv4Addr> = (10..40).map(|i| std::net::Ipv4Addr::new(198, 18, 0, i)).collect();
    let claims = |side: u8| -> Vec<Lease> {
        ips.iter()
            .enumerate()
            .map(|(i, ip)| Lease {
                ip: *ip,
                mac: bootplane_core::Mac([2, side, 0, 0, 0, i as u8]),
                state: LeaseState::Offered,
                expires: now + 60,
                hostname: None,
            })
            .collect()
    };
    let mut threads = Vec::new();
    for (store, side) in [(a.clone(), 1u8), (b.clone(), 2u8)] {
        let mut w = store.lease_writer().unwrap();
        let mine = claims(side);
        threads.push(tokio::task::spawn_blocking(move || {
            // One address per transaction, as bursts of single offers would.
            let mut lost = Vec::new();
            for l in &mine {
                lost.extend(w(std::slice::from_ref(l), &[]).unwrap().into_iter().map(|holder| (l.clone(), holder)));
            }
            lost
        }));
    }
    let mut lost = Vec::new();
    for t in threads {
        lost.extend(t.await.unwrap());
    }
    let stored = a.leases().await.unwrap();
    assert_eq!(stored.len(), ips.len(), "every address is held once: {stored:?}");
    for (wanted, holder) in &lost {
        assert_eq!(wanted.ip, holder.ip);
        assert_ne!(wanted.mac, holder.mac, "a refusal names the other MAC");
        assert!(stored.contains(holder), "the holder named is the one stored");
    }
    // Every address went to one side; the other side lost exactly those.
    assert_eq!(lost.len(), ips.len(), "each address was refused to exactly one of the two");
}

/// Live streams on one instance are woken by another instance's event commits, where the
/// backend can tell (PostgreSQL); SQLite's readers poll, which this case records.
pub(super) async fn another_instances_events_wake_this_ones_streams(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let Some(wake) = a.events_written() else {
        assert!(!a.shares_leases(), "a store shared by instances must wake their streams");
        return;
    };
    // The listener connects in the background: write until it hears one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let heard = wake.notified();
        b.write_batch(vec![BatchItem::Event(NewEvent::new(None, "boot.script", None, json!("from b")))]).await.unwrap();
        if tokio::time::timeout(std::time::Duration::from_millis(300), heard).await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no notification from the other instance's commit");
    }
}

/// A site with machines in several states, a revised bundle, a cluster, a template,
/// settings (a sealed secret among them), events and a lease.
async fn populate(s: &dyn Store) {
    let mut b2 = bundle();
    s.apply(ApplySet {
        machines: vec![spec("a", "52:54:00:00:00:01", false), spec("b", "52:54:00:00:00:02", true)],
        bundles: vec![bundle()],
        clusters: vec![Cluster { name: "lab".into(), k3s: Default::default(), vip: None }],
        templates: vec![("t".into(), "variant: fcos\nversion: 1.5.0\n".into())],
        settings: vec![("server".into(), "{}".into())],
    })
    .await
    .unwrap();
    b2.args = Some("v2".into());
    s.apply(ApplySet { bundles: vec![b2], ..Default::default() }).await.unwrap();
    s.note_install_attempt("b").await.unwrap();
    s.transition("b", MachineState::Installing, Trigger::ConfigFetched, Some("198.18.0.9".into()), json!({"n": 1})).await.unwrap();
    s.set_setting("cluster/lab/tokens", "sealed-v1:AAAA").await.unwrap();
    s.write_batch(vec![
        BatchItem::Discovered { observed: obs("52:54:00:00:00:09"), source: None },
        BatchItem::Seen { machine: "a".into(), observed: obs("52:54:00:00:00:01") },
        BatchItem::Event(NewEvent::new(Some("a"), "boot.script", Some("198.18.0.8".into()), json!({"decision": "local"}))),
    ])
    .await
    .unwrap();
    let l = Lease { ip: "198.18.0.50".parse().unwrap(), mac: "52:54:00:00:00:02".parse().unwrap(), state: LeaseState::Bound, expires: 4_000_000_000, hostname: Some("b".into()) };
    s.put_leases(&[l]).await.unwrap();
}

pub(super) async fn a_whole_site_exports_and_imports_unchanged(f: Fixture) {
    let s = f.open().await;
    populate(s.as_ref()).await;
    let snap = s.export().await.unwrap();
    assert_eq!((snap.machines.len(), snap.bundle_history.len(), snap.leases.len()), (3, 1, 1), "{}", snap.summary());
    let (target, _dir) = f.fresh().await;
    target.import(snap.clone()).await.unwrap();
    assert_eq!(target.export().await.unwrap(), snap, "what was written reads back the same");
    // The copy works as a store: the next event follows the copied ones, a transition works.
    let last = snap.events.iter().map(|e| e.id).max().unwrap();
    target.transition("b", MachineState::Written, Trigger::Report, None, json!(null)).await.unwrap();
    let ev = target.events(EventQuery { after: Some(last), ..Default::default() }).await.unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(target.bundle_revision("g", 1).await.unwrap().unwrap().args, bundle().args);
    // Never into a store that holds a site already.
    let e = target.import(snap.clone()).await.unwrap_err();
    assert!(matches!(e, StoreError::NotEmpty(_)), "{e}");
    assert!(e.to_string().contains("machines"), "{e}");
}

/// The migration: a populated SQLite site into PostgreSQL, read back equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_site_migrates_to_postgres_unchanged() {
    let Some(pg) = postgres() else { return };
    let lite = sqlite().unwrap();
    let s = lite.open().await;
    populate(s.as_ref()).await;
    let snap = s.export().await.unwrap();
    let target = pg.open().await;
    target.import(snap.clone()).await.unwrap();
    let back = target.export().await.unwrap();
    assert_eq!(back, snap);
    // And back again, into a new SQLite file: PostgreSQL is no one-way door.
    let (again, _d) = lite.fresh().await;
    again.import(back).await.unwrap();
    assert_eq!(again.export().await.unwrap(), snap);
}

pub(super) async fn latest_events_keeps_each_machines_newest_in_order(f: Fixture) {
    let s = f.open().await;
    let set = ApplySet {
        machines: vec![spec("a", "52:54:00:00:00:01", false), spec("b", "52:54:00:00:00:02", false), spec("c", "52:54:00:00:00:03", false)],
        bundles: vec![bundle()],
        ..Default::default()
    };
    s.apply(set).await.unwrap();
    // Interleaved, so a per-machine limit cannot be met by taking the newest rows overall.
    let mut items = Vec::new();
    for i in 0..30 {
        items.push(BatchItem::Event(NewEvent::new(Some("a"), "boot.script", None, json!(i))));
        if i < 2 {
            items.push(BatchItem::Event(NewEvent::new(Some("b"), "boot.script", None, json!(i))));
        }
        items.push(BatchItem::Event(NewEvent::new(None, "dhcp.ignored", None, json!(i))));
    }
    s.write_batch(items).await.unwrap();
    let ev = s.latest_events(5).await.unwrap();
    let of = |m: &str| ev.iter().filter(|e| e.machine.as_deref() == Some(m)).map(|e| e.detail.clone()).collect::<Vec<_>>();
    // `a`: its state.changed from apply is older than its 30 scripts, so only scripts.
    assert_eq!(of("a"), (25..30).map(|i| json!(i)).collect::<Vec<_>>());
    // `b`: fewer than 5, all of them (apply's event first), oldest first.
    assert_eq!(ev.iter().filter(|e| e.machine.as_deref() == Some("b")).count(), 3);
    assert_eq!(of("b")[1..], [json!(0), json!(1)]);
    assert_eq!(of("c").len(), 1, "c has only its apply event");
    assert!(ev.iter().all(|e| e.machine.is_some()), "events of no machine are not anyone's");
    let ids: Vec<(String, i64)> = ev.iter().map(|e| (e.machine.clone().unwrap(), e.id)).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "by machine, then oldest first");
}

/// The boot path's lookups (SQLite keeps them in memory, sqlite/identity.rs) answer what
/// the database holds after any instance's write: a state, a moved MAC, a new UUID, a
/// machine discovered where none was, a sighting.
pub(super) async fn boot_lookups_follow_every_instances_writes(f: Fixture) {
    let (a, b) = (f.open().await, f.open().await);
    let uuid = "4c4c4544-0042-3510-8053-b4c04f4e3132";
    let both = |mac: &str| Observed::from_raw(Some(mac), Some(uuid), None, Some("x86_64"), None).unwrap();
    let name = |r: &Option<MachineRecord>| r.as_ref().map(|r| (r.name().to_string(), r.state));
    a.apply(ApplySet { machines: vec![spec("m", "52:54:00:00:01:01", false)], bundles: vec![bundle()], ..Default::default() })
        .await
        .unwrap();
    let (u, m) = a.identity_candidates(&both("52:54:00:00:01:01")).await.unwrap();
    assert_eq!((name(&u), name(&m)), (None, Some(("m".into(), MachineState::Ready))));

    // Another instance moves it: this one sees the move at once.
    b.transition("m", MachineState::Provision, Trigger::AdminProvision, None, json!(null)).await.unwrap();
    let (_, m) = a.identity_candidates(&both("52:54:00:00:01:01")).await.unwrap();
    assert_eq!(name(&m), Some(("m".into(), MachineState::Provision)), "another instance's transition");

    // ...gives its MAC to another machine and the UUID to the first.
    let mut moved = spec("m", "52:54:00:00:01:02", false);
    moved.uuid = Some(uuid.parse().unwrap());
    b.apply(ApplySet { machines: vec![moved, spec("n", "52:54:00:00:01:01", false)], ..Default::default() }).await.unwrap();
    let (u, m) = a.identity_candidates(&both("52:54:00:00:01:01")).await.unwrap();
    assert_eq!(name(&u).map(|n| n.0), Some("m".into()), "another instance's new UUID");
    assert_eq!(name(&m).map(|n| n.0), Some("n".into()), "another instance's moved MAC");

    // An unknown MAC, then discovered by the other instance.
    let stranger = obs("52:54:00:00:01:09");
    assert_eq!(a.identity_candidates(&stranger).await.unwrap(), (None, None));
    b.write_batch(vec![BatchItem::Discovered { observed: stranger.clone(), source: None }]).await.unwrap();
    let (_, d) = a.identity_candidates(&stranger).await.unwrap();
    assert_eq!(name(&d).map(|n| n.1), Some(MachineState::Discovered), "discovered by another instance");

    // This instance's own writes: a transition and a sighting.
    a.transition("n", MachineState::Provision, Trigger::AdminProvision, None, json!(null)).await.unwrap();
    let seen = Observed::from_raw(Some("52:54:00:00:01:01"), None, None, Some("arm64"), Some("efi")).unwrap();
    a.write_batch(vec![BatchItem::Seen { machine: "n".into(), observed: seen.clone() }]).await.unwrap();
    let (_, n) = a.identity_candidates(&obs("52:54:00:00:01:01")).await.unwrap();
    let n = n.unwrap();
    assert_eq!(n.state, MachineState::Provision, "own transition");
    assert_eq!(n.observed, seen, "own sighting");
    assert_eq!(n.last_seen, b.machine("n").await.unwrap().unwrap().last_seen, "the stored time of the sighting");
}
