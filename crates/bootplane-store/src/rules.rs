//! The store's domain rules, one copy for every backend: what a transition does to the
//! install attempts and the credential generation, which event records it, how an applied
//! machine takes MACs and a UUID from other records, when a bundle gets a new revision,
//! what a discovered machine's record holds. A backend reads rows, asks these functions
//! what to write, and writes it in one transaction; it decides nothing itself.

use crate::{NewEvent, StoreError};
use bootplane_core::model::{discovered_name, Bundle, MachineRecord, MachineSpec};
use bootplane_core::state::{MachineState, TransitionError, Trigger};
use bootplane_core::Observed;
use serde_json::json;

/// The counters a transition leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effects {
    pub install_attempts: u32,
    pub credential_generation: u32,
}

/// `None` when the machine already is in `to` (nothing to write); an error when the
/// transition table has no such move.
pub fn transition_effects(rec: &MachineRecord, to: MachineState, trigger: Trigger) -> Result<Option<Effects>, TransitionError> {
    if rec.state == to {
        return Ok(None);
    }
    rec.state.check(to, trigger)?;
    let mut e = Effects { install_attempts: rec.install_attempts, credential_generation: rec.credential_generation };
    if to == MachineState::Provision {
        e.install_attempts = 0;
        e.credential_generation += 1;
    }
    // A report retires the credential it used, except `written`: the installed system
    // reports with the same one. Failing or retiring a machine retires it too, so a
    // credential taken from a dead install cannot be used later.
    if (trigger == Trigger::Report && to != MachineState::Written) || matches!(to, MachineState::Failed | MachineState::Retired) {
        e.credential_generation += 1;
    }
    Ok(Some(e))
}

/// The `state.changed` event written in the same transaction as the move.
pub fn state_changed(
    machine: &str,
    from: MachineState,
    to: MachineState,
    trigger: Trigger,
    source: Option<String>,
    detail: serde_json::Value,
) -> NewEvent {
    NewEvent::new(Some(machine), "state.changed", source, json!({ "from": from, "to": to, "trigger": trigger, "detail": detail }))
}

/// The event recording a machine's first applied state (`from` is `discovered` when it
/// adopted a discovered record).
pub fn created(spec: &MachineSpec, adopted: bool) -> NewEvent {
    NewEvent::new(
        Some(&spec.name),
        "state.changed",
        None,
        json!({ "from": if adopted { Some("discovered") } else { None }, "to": initial_state(spec), "trigger": Trigger::Apply }),
    )
}

pub fn initial_state(spec: &MachineSpec) -> MachineState {
    if spec.provision {
        MachineState::Provision
    } else {
        MachineState::Ready
    }
}

/// Whether re-applying `spec` over a stored machine moves it to `provision`: only from
/// `ready` or `discovered`, so re-applying a file never reinstalls an installed machine.
pub fn provisions_on_apply(spec: &MachineSpec, stored: MachineState) -> bool {
    spec.provision && matches!(stored, MachineState::Ready | MachineState::Discovered)
}

pub const PROVISION_ON_APPLY: &str = "provision: true in the applied config";

/// What an applied machine does with an identifier (MAC or UUID) another record holds.
#[derive(Debug)]
pub enum Claim {
    /// Nobody else holds it, or the machine itself does.
    Free,
    /// A retired machine holds it: take it from that record.
    TakeFromRetired(String),
}

/// `owner` is the record holding `what` (a MAC or UUID) and its state. Discovered
/// owners have already been adopted (removed) before this is asked.
pub fn claim(spec: &MachineSpec, what: &str, owner: Option<(String, MachineState)>) -> Result<Claim, StoreError> {
    match owner {
        None => Ok(Claim::Free),
        Some((o, _)) if o == spec.name => Ok(Claim::Free),
        Some((o, MachineState::Retired)) => Ok(Claim::TakeFromRetired(o)),
        Some((o, _)) => Err(StoreError::Conflict(format!(
            "{what} of machine {} already belongs to machine {o} in the store; retire {o} first \
             (bootplane machines retire {o}) or fix the {}",
            spec.name,
            what.split_whitespace().next().unwrap_or("identifier")
        ))),
    }
}

/// How an applied bundle relates to the stored one.
#[derive(Debug, PartialEq, Eq)]
pub enum BundleChange {
    Create,
    Same,
    /// The stored definition moves to the history; the new one gets this revision.
    Revise(u32),
}

/// `stored` is the stored definition (`None` inside when it no longer parses: replaced)
/// and its revision.
pub fn bundle_change(stored: Option<(Option<&Bundle>, u32)>, applied: &Bundle) -> BundleChange {
    match stored {
        None => BundleChange::Create,
        Some((Some(old), _)) if unpinned(old) == unpinned(applied) => BundleChange::Same,
        Some((_, revision)) => BundleChange::Revise(revision + 1),
    }
}

pub fn bundle_revised(name: &str, revision: u32) -> NewEvent {
    NewEvent::new(None, "bundle.revised", None, json!({ "bundle": name, "revision": revision }))
}

/// The definition without its stored revision, for comparing with a stored spec.
pub fn unpinned(b: &Bundle) -> Bundle {
    Bundle { revision: 0, ..b.clone() }
}

/// The record kept for an unknown machine seen on the wire; `None` when it gave no
/// identity to file it under.
pub fn discovered_spec(observed: &Observed) -> Option<MachineSpec> {
    Some(MachineSpec {
        name: discovered_name(observed)?,
        macs: observed.mac.into_iter().collect(),
        uuid: observed.uuid.clone(),
        serial: observed.serial.clone(),
        arch: observed.arch.clone(),
        ..Default::default()
    })
}

/// A bundle still in use cannot be removed.
pub fn bundle_in_use(name: &str, users: &[String]) -> Result<(), StoreError> {
    if users.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!("bundle {name} is used by machine(s) {}", users.join(", "))))
    }
}

/// A replayed report (a move to the state the machine is in) is refused, not ignored.
pub fn refuse_replay(rec: &MachineRecord, to: MachineState, trigger: Trigger) -> Result<(), TransitionError> {
    if rec.state == to {
        return Err(TransitionError { from: rec.state, to, trigger });
    }
    rec.state.check(to, trigger)
}

/// A first-writer-wins setting found holding another value.
pub fn setting_taken(key: &str) -> StoreError {
    StoreError::Conflict(format!("{key} is already set to another value"))
}

/// When a lease write may replace the row holding its address (the upsert's `WHERE`,
/// the same in both dialects; `{now}` is the writer's clock in unix seconds): the same
/// MAC renewing, or the holder's time is up. The pool in memory follows the same rule
/// (`LeasePool::available_for`), so one instance never meets a refusal it caused itself.
pub fn lease_claim_condition(now: &str) -> String {
    format!("leases.mac = excluded.mac OR leases.expires <= {now}")
}

/// The upsert's `SET`: an offer never shortens the same MAC's live binding (another
/// instance may have bound it since this one's pool last loaded the leases; shortening
/// it would free the address while the client still uses it).
pub fn lease_claim_set(now: &str) -> String {
    let keep = format!("excluded.state = 'offered' AND leases.state = 'bound' AND leases.mac = excluded.mac AND leases.expires > {now}");
    format!(
        "mac = excluded.mac, hostname = excluded.hostname, \
         state = CASE WHEN {keep} THEN leases.state ELSE excluded.state END, \
         expires = CASE WHEN {keep} THEN leases.expires ELSE excluded.expires END"
    )
}

/// What makes a migration target not empty (`None`: empty), from its row counts of
/// machines, bundles, settings and events.
pub fn not_empty(machines: i64, bundles: i64, settings: i64, events: i64) -> Option<String> {
    let parts: Vec<String> = [(machines, "machines"), (bundles, "bundles"), (settings, "settings"), (events, "events")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

pub const COUNT_CONTENTS: &str = "SELECT (SELECT COUNT(*) FROM machines), (SELECT COUNT(*) FROM bundles), \
     (SELECT COUNT(*) FROM settings), (SELECT COUNT(*) FROM events)";

/// Whether writing `lease` moves its MAC off its other addresses (their rows go). Only a
/// commitment by the client does (a binding, a release, a decline): an offer does not,
/// since another instance may have bound the same client elsewhere meanwhile, and
/// dropping that binding would free an address still in use.
pub fn lease_moves_mac(lease: &bootplane_core::model::Lease) -> bool {
    lease.state != bootplane_core::model::LeaseState::Offered
}

/// [`crate::AUDIT_KINDS`] as an SQL list of string literals (both dialects agree).
pub fn audit_kinds_sql() -> String {
    crate::AUDIT_KINDS.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: MachineState) -> MachineRecord {
        MachineRecord {
            spec: MachineSpec { name: "m".into(), ..Default::default() },
            state,
            install_attempts: 3,
            credential_generation: 7,
            observed: Default::default(),
            last_seen: None,
            created: chrono::Utc::now(),
            updated: chrono::Utc::now(),
        }
    }

    #[test]
    fn provisioning_resets_attempts_and_issues_a_credential() {
        let e = transition_effects(&rec(MachineState::Ready), MachineState::Provision, Trigger::AdminProvision).unwrap().unwrap();
        assert_eq!(e, Effects { install_attempts: 0, credential_generation: 8 });
    }

    #[test]
    fn reports_retire_the_credential_except_written() {
        let e = transition_effects(&rec(MachineState::Installing), MachineState::Written, Trigger::Report).unwrap().unwrap();
        assert_eq!(e.credential_generation, 7, "the installed system reports with the same credential");
        let e = transition_effects(&rec(MachineState::Written), MachineState::Installed, Trigger::Report).unwrap().unwrap();
        assert_eq!((e.install_attempts, e.credential_generation), (3, 8));
    }

    #[test]
    fn same_state_is_nothing_to_write_but_a_replayed_report_is_refused() {
        assert_eq!(transition_effects(&rec(MachineState::Installed), MachineState::Installed, Trigger::Report).unwrap(), None);
        assert!(refuse_replay(&rec(MachineState::Installed), MachineState::Installed, Trigger::Report).is_err());
        assert!(transition_effects(&rec(MachineState::Ready), MachineState::Installed, Trigger::Report).is_err());
    }

    #[test]
    fn identifiers_are_taken_only_from_retired_machines() {
        let spec = MachineSpec { name: "new".into(), ..Default::default() };
        assert!(matches!(claim(&spec, "MAC x", None), Ok(Claim::Free)));
        assert!(matches!(claim(&spec, "MAC x", Some(("new".into(), MachineState::Installed))), Ok(Claim::Free)));
        assert!(matches!(claim(&spec, "MAC x", Some(("old".into(), MachineState::Retired))), Ok(Claim::TakeFromRetired(o)) if o == "old"));
        let e = claim(&spec, "MAC x", Some(("old".into(), MachineState::Installed))).unwrap_err().to_string();
        assert!(e.contains("retire old first") && e.contains("fix the MAC"), "{e}");
    }
}
