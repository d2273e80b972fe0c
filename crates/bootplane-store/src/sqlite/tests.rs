use super::*;
use bootplane_core::model::OsKind;

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

fn store() -> (tempfile::TempDir, SqliteStore) {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(d.path()).unwrap();
    (d, s)
}

fn obs(mac: &str) -> Observed {
    Observed::from_raw(Some(mac), None, None, Some("x86_64"), None).unwrap()
}

#[tokio::test]
async fn apply_sets_initial_states_and_never_reprovisions_installed() {
    let (_d, s) = store();
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

#[tokio::test]
async fn transitions_follow_the_table_and_are_recorded() {
    let (_d, s) = store();
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

#[tokio::test]
async fn discovered_machines_are_recorded_then_adopted() {
    let (_d, s) = store();
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

#[tokio::test]
async fn mac_owned_by_another_machine_is_refused_atomically() {
    let (_d, s) = store();
    s.apply(ApplySet { machines: vec![spec("a", "52:54:00:00:00:01", false)], ..Default::default() }).await.unwrap();
    let e = s
        .apply(ApplySet { machines: vec![spec("c", "52:54:00:00:00:03", false), spec("b", "52:54:00:00:00:01", false)], ..Default::default() })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already belongs to machine a"), "{e}");
    assert!(s.machine("c").await.unwrap().is_none(), "a refused apply writes nothing");
}

#[tokio::test]
async fn a_changed_bundle_is_a_new_revision_and_the_old_one_stays_readable() {
    let (_d, s) = store();
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

#[tokio::test]
async fn prune_caps_events_and_discovered() {
    let (_d, s) = store();
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

#[tokio::test]
async fn settings_first_writer_wins() {
    let (_d, s) = store();
    assert_eq!(s.setting_or_insert("k", "one").await.unwrap(), "one");
    assert_eq!(s.setting_or_insert("k", "two").await.unwrap(), "one");
    // Compare-and-set: only the writer that saw the current value wins.
    assert!(s.replace_setting("k", "one", "two").await.unwrap());
    assert!(!s.replace_setting("k", "one", "three").await.unwrap());
    assert!(!s.replace_setting("missing", "", "x").await.unwrap());
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("two"));
}

#[tokio::test]
async fn reopening_keeps_state() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open(d.path()).unwrap();
        s.apply(ApplySet { machines: vec![spec("a", "52:54:00:00:00:01", true)], ..Default::default() }).await.unwrap();
    }
    let s = SqliteStore::open(d.path()).unwrap();
    assert_eq!(s.machine("a").await.unwrap().unwrap().state, MachineState::Provision);
}

#[tokio::test]
async fn leases_round_trip_and_follow_the_mac() {
    use bootplane_core::model::{Lease, LeaseState};
    let (_d, s) = store();
    let mac = "52:54:00:00:00:01".parse().unwrap();
    let l = Lease { ip: "198.18.0.50".parse().unwrap(), mac, state: LeaseState::Bound, expires: 100, hostname: Some("a".into()) };
    s.put_leases(std::slice::from_ref(&l)).await.unwrap();
    s.put_leases(&[Lease { ip: "198.18.0.51".parse().unwrap(), ..l.clone() }]).await.unwrap();
    let all = s.leases().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].ip.to_string(), "198.18.0.51");
    assert_eq!(all[0].state, LeaseState::Bound);
}

#[test]
fn boot_path_queries_select_the_machine_columns() {
    let norm = |q: &str| q.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(norm(BY_UUID).starts_with(&format!("SELECT {MACHINE_COLS} FROM")));
    let prefixed: Vec<String> = MACHINE_COLS.split(", ").map(|c| format!("m.{c}")).collect();
    assert!(norm(BY_MAC).starts_with(&format!("SELECT {} FROM", prefixed.join(", "))));
}

#[tokio::test]
async fn lease_writer_commits_leases_with_their_events_and_checkpoints_elsewhere() {
    use bootplane_core::model::{Lease, LeaseState};
    let (d, s) = store();
    let mut w = s.lease_writer().expect("SQLite has a lease writer");
    let mac = "52:54:00:00:00:01".parse().unwrap();
    let l = Lease { ip: "198.18.0.50".parse().unwrap(), mac, state: LeaseState::Bound, expires: 100, hostname: None };
    let big = json!({ "pad": "x".repeat(2000) });
    let events: Vec<NewEvent> = (0..500).map(|i| NewEvent::new(Some("a"), "dhcp.ack", None, json!({ "i": i, "d": big }))).collect();
    w(std::slice::from_ref(&l), &events).unwrap();
    assert_eq!(s.leases().await.unwrap(), vec![l.clone()]);
    assert_eq!(s.event_count().await.unwrap(), 500);
    // Events alone (offers) are fine too.
    w(&[], &events[..1]).unwrap();
    assert_eq!(s.event_count().await.unwrap(), 501);

    // The writer never checkpoints itself (that would stall DHCP); a helper thread copies
    // the WAL into the database file, which is all that makes the file grow here.
    let db = d.path().join("bootplane.db");
    let size = || std::fs::metadata(&db).unwrap().len();
    let before = size();
    std::thread::sleep(CHECKPOINT_EVERY);
    w(&[l], &[]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() <= before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(size() > before + 500 * 2000, "the WAL was not checkpointed: {} -> {} bytes", before, size());
}

#[tokio::test]
async fn settings_written_with_a_transition_commit_or_roll_back_with_it() {
    let (_d, s) = store();
    s.apply(ApplySet { machines: vec![spec("a", "52:54:00:00:00:01", true)], ..Default::default() }).await.unwrap();
    s.transition("a", MachineState::Installing, Trigger::ConfigFetched, None, json!(null)).await.unwrap();
    s.set_setting("ca", "theirs").await.unwrap();
    let w = |k: &str, v: &str, fww: bool| crate::SettingWrite { key: k.into(), value: v.into(), first_writer_wins: fww };
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
