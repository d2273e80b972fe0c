//! The boot decision with its effects, against a real store (SQLite in a temp dir): who
//! gets a machine's install answer, what contention records, what a stranger can change.
//! The HTTP and VM tests in `crates/bootplane/tests` cover the same through the binary;
//! these pin the rules without a listener.

use super::boot_decision;
use crate::Shared;
use bootplane_core::model::{Bundle, MachineSpec};
use bootplane_core::state::Trigger;
use bootplane_core::{BootDecision, MachineState, Observed};
use bootplane_store::{ApplySet, EventQuery, SqliteStore, Store};
use std::sync::Arc;

const MAC: &str = "02:00:00:00:30:01";
const SERVER: &str = "http://198.18.0.1:8080";

/// A store holding machine m1 (bundle g) in `provision`, and the state over it.
async fn lab(dir: &std::path::Path) -> Shared {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir).unwrap());
    let machine: MachineSpec = serde_json::from_value(serde_json::json!({ "name": "m1", "macs": [MAC], "bundle": "g" })).unwrap();
    let bundle: Bundle = serde_json::from_value(serde_json::json!({
        "name": "g", "os": "generic", "kernel": { "url": "http://m/k" }, "initrd": { "url": "http://m/i" }, "args": "cfg={{ ignition_url }}"
    }))
    .unwrap();
    store.apply(ApplySet { machines: vec![machine], bundles: vec![bundle], ..Default::default() }).await.unwrap();
    store.transition("m1", MachineState::Provision, Trigger::AdminProvision, None, serde_json::json!("test")).await.unwrap();
    crate::state(store, Default::default(), crate::AdminToken::new("test-admin-token-0123456789"), [7; 32]).await.unwrap()
}

fn seen(platform: &str) -> Observed {
    Observed::from_raw(Some(MAC), None, None, Some("x86_64"), Some(platform)).unwrap()
}

async fn ask(s: &Shared, from: &str, platform: &str) -> BootDecision {
    boot_decision(s, &seen(platform), Some(from.to_string()), SERVER, false).await.unwrap()
}

async fn alarms(s: &Shared) -> Vec<serde_json::Value> {
    let events = s.store.events(EventQuery { machine: Some("m1".into()), ..Default::default() }).await.unwrap();
    events.into_iter().filter(|e| e.kind == "boot.alarm").map(|e| e.detail).collect()
}

#[tokio::test]
async fn without_dhcp_the_first_requester_holds_the_attempt() {
    let d = tempfile::tempdir().unwrap();
    let s = lab(d.path()).await;
    assert!(matches!(ask(&s, "198.18.0.50", "efi").await, BootDecision::Install { .. }));
    // Its own retry is answered again; another address is refused and raises an alarm
    // naming both.
    assert!(matches!(ask(&s, "198.18.0.50", "efi").await, BootDecision::Install { .. }));
    assert!(matches!(ask(&s, "198.18.0.66", "efi").await, BootDecision::Quarantine { .. }));
    let a = alarms(&s).await;
    assert_eq!(a.len(), 1, "{a:?}");
    let text = a[0].to_string();
    assert!(text.contains("198.18.0.66") && text.contains("198.18.0.50"), "{text}");
}

#[tokio::test]
async fn with_full_dhcp_only_the_leased_address_gets_the_answer() {
    let d = tempfile::tempdir().unwrap();
    let s = lab(d.path()).await;
    s.handshakes.set_mode(bootplane_dhcp::Mode::Full);
    // Before the machine's DHCP exchange: nobody, not even the first asker.
    assert!(matches!(ask(&s, "198.18.0.66", "efi").await, BootDecision::Quarantine { .. }));
    s.handshakes.bound(MAC.parse().unwrap(), "198.18.0.50".parse().unwrap(), chrono::Utc::now().timestamp() + 600);
    assert!(matches!(ask(&s, "198.18.0.50", "efi").await, BootDecision::Install { .. }));
    assert!(matches!(ask(&s, "198.18.0.66", "efi").await, BootDecision::Quarantine { .. }));
    assert_eq!(alarms(&s).await.len(), 2);
    // An expired binding vouches for nothing.
    s.handshakes.bound(MAC.parse().unwrap(), "198.18.0.51".parse().unwrap(), chrono::Utc::now().timestamp() - 1);
    assert!(matches!(ask(&s, "198.18.0.51", "efi").await, BootDecision::Quarantine { .. }));
}

#[tokio::test]
async fn a_stranger_cannot_change_what_the_machine_was_seen_to_be() {
    let d = tempfile::tempdir().unwrap();
    let s = lab(d.path()).await;
    s.handshakes.set_mode(bootplane_dhcp::Mode::Full);
    s.store.transition("m1", MachineState::Retired, Trigger::AdminRetire, None, serde_json::json!("test")).await.unwrap();
    s.handshakes.bound(MAC.parse().unwrap(), "198.18.0.50".parse().unwrap(), chrono::Utc::now().timestamp() + 600);
    ask(&s, "198.18.0.50", "efi").await;
    s.sink.flush().await;
    assert_eq!(s.store.machine("m1").await.unwrap().unwrap().observed.platform.as_deref(), Some("efi"));
    ask(&s, "198.18.0.66", "pcbios").await;
    s.sink.flush().await;
    assert_eq!(s.store.machine("m1").await.unwrap().unwrap().observed.platform.as_deref(), Some("efi"), "a stranger rewrote it");
    // The machine itself, from its lease, may.
    ask(&s, "198.18.0.50", "pcbios").await;
    s.sink.flush().await;
    assert_eq!(s.store.machine("m1").await.unwrap().unwrap().observed.platform.as_deref(), Some("pcbios"));
}
