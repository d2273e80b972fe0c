//! The wait after "disk written": a machine in `written` boots its own disk and must
//! report from the installed system within `server.report_timeout`; one that does not
//! is marked `failed` with a reason saying what to check. Runs on every instance; the
//! store's transition table makes a second instance's identical move a no-op.

use bootplane_core::model::MachineRecord;
use bootplane_core::state::Trigger;
use bootplane_core::MachineState;
use bootplane_store::Store;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Whether `rec` has waited in `written` longer than `timeout` at `now`.
pub fn overdue(rec: &MachineRecord, now: DateTime<Utc>, timeout: Duration) -> bool {
    rec.state == MachineState::Written && (now - rec.updated).to_std().is_ok_and(|waited| waited > timeout)
}

/// Checks every `every` until the process ends.
pub fn start(store: Arc<dyn Store>, timeout: Duration, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let machines = match store.machines().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("report timeout check: {e}");
                    continue;
                }
            };
            let now = Utc::now();
            for rec in machines.iter().filter(|r| overdue(r, now, timeout)) {
                let reason = format!(
                    "the installer reported the disk written at {}, but the installed system did not report within {}s: \
                     check that the machine boots its disk (boot order, the local-boot answer in its events) and that \
                     its report unit reaches bootplane (journalctl -u bootplane-report on the machine)",
                    rec.updated.to_rfc3339(),
                    timeout.as_secs()
                );
                match store.transition(rec.name(), MachineState::Failed, Trigger::ReportTimeout, None, json!({ "reason": reason })).await {
                    Ok(_) => tracing::warn!(machine = rec.name(), "no report after the disk was written; marked failed"),
                    // It reported (or was reprovisioned) in the meantime.
                    Err(e) => tracing::debug!(machine = rec.name(), "report timeout not applied: {e}"),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootplane_core::model::MachineSpec;

    #[test]
    fn only_a_written_machine_past_its_timeout_is_overdue() {
        let t0 = Utc::now();
        let rec = |state, mins: i64| MachineRecord {
            spec: MachineSpec { name: "m".into(), ..Default::default() },
            state,
            install_attempts: 1,
            credential_generation: 1,
            observed: Default::default(),
            last_seen: None,
            created: t0,
            updated: t0 - chrono::Duration::minutes(mins),
        };
        let hour = Duration::from_secs(3600);
        assert!(overdue(&rec(MachineState::Written, 61), t0, hour));
        assert!(!overdue(&rec(MachineState::Written, 59), t0, hour));
        assert!(!overdue(&rec(MachineState::Installing, 600), t0, hour));
        assert!(!overdue(&rec(MachineState::Installed, 600), t0, hour));
    }
}
