use super::*;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(d.path()).unwrap();
    (d, s)
}

#[test]
fn boot_path_queries_select_the_generation_then_the_machine_columns() {
    let cols: Vec<String> = MACHINE_COLS.split(", ").map(|c| format!("m.{c}")).collect();
    let head = format!("SELECT g.n, {} FROM identity_generation g", cols.join(", "));
    for q in [BY_UUID, BY_MAC] {
        assert!(q.split_whitespace().collect::<Vec<_>>().join(" ").starts_with(&head), "{q}");
    }
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
