//! What requests leave behind: events (through the sink), refusals within their source's
//! budget, alarms (straight to the store, never dropped), and each machine's install
//! attempt where the boot path opens it and the config path claims it. A leaf of the
//! crate's modules, so the boot, config, join and report paths share it without
//! importing each other.

use crate::Shared;
use bootplane_core::model::MachineRecord;
use bootplane_store::{BatchItem, NewEvent};
use serde_json::json;

pub(crate) async fn event(s: &Shared, name: &str, kind: &str, source: Option<String>, detail: serde_json::Value) {
    s.sink.push(BatchItem::Event(NewEvent::new(Some(name), kind, source, detail))).await;
}

/// An event an unauthenticated request caused (a refusal): written within the source's
/// budget only (see `crate::gate`), so refusals cannot flood the audit log.
pub(crate) async fn refusal_event(s: &Shared, name: Option<&str>, kind: &str, source: Option<String>, mut detail: serde_json::Value) {
    let Some(suppressed) = s.admit_noise(source.as_deref()) else { return };
    if suppressed > 0 {
        detail = json!({ "detail": detail, "suppressed_before": suppressed });
    }
    s.sink.push(BatchItem::Event(NewEvent::new(name, kind, source, detail))).await;
}

/// Where a machine's current install attempt is kept (see `bootplane_core::attempt`).
pub(crate) fn attempt_key(machine: &str) -> String {
    format!("attempt/{machine}")
}

/// The machine's open install attempt of its current install cycle (an attempt from
/// before its credential generation changed, i.e. before it was provisioned again or
/// failed, is closed).
pub(crate) async fn current_attempt(s: &Shared, m: &MachineRecord) -> Result<Option<bootplane_core::attempt::Attempt>, bootplane_store::StoreError> {
    let stored = s.store.setting(&attempt_key(m.name())).await?;
    Ok(stored
        .and_then(|v| serde_json::from_str::<bootplane_core::attempt::Attempt>(&v).ok())
        .filter(|a| a.generation.is_none_or(|g| g == m.credential_generation)))
}

/// An alarm event (`*.alarm`), written straight to the store and logged.
pub(crate) async fn alarm_event(s: &Shared, machine: &str, kind: &str, source: Option<String>, detail: serde_json::Value) {
    tracing::warn!("{kind} for {machine} from {}: {detail}", source.as_deref().unwrap_or("-"));
    let event = BatchItem::Event(NewEvent::new(Some(machine), kind, source, detail));
    if let Err(e) = s.store.write_batch(vec![event]).await {
        tracing::error!("{kind} for {machine} could not be written: {e}");
    }
}
