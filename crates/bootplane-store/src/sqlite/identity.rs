//! The boot path's lookups (`identity_candidates`: the machine owning a UUID, the one
//! owning a MAC) kept in memory while the database's identity generation stands still.
//! Migration 4's triggers move that counter with every change to a machine's row that
//! decides a boot (name, spec, state, UUID, attempts, credential generation) and to its
//! MACs, written by any process sharing the file, so a hit is what the database holds at
//! the counter's value. "Last seen" and the observation change on every boot and do not
//! move it: this process's own sightings are applied here after they commit
//! (`write_batch`); another process's are not, and the boot path then records a sighting
//! it could have skipped, never a different decision.
//! Written by hand: caching crates expire entries by time or size, not by a counter the
//! database moves.

use bootplane_core::model::MachineRecord;
use bootplane_core::Observed;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Keys kept at most: a flood of made-up identities clears the cache, never grows it.
const MAX_KEYS: usize = 100_000;

/// What one lookup found: the machine owning the UUID, the one owning the MAC.
pub(super) type Found = (Option<MachineRecord>, Option<MachineRecord>);

#[derive(Default)]
pub(super) struct IdentityCache {
    generation: i64,
    /// UUID or MAC -> the owning machine's name, or none (an unknown identity).
    by_uuid: HashMap<String, Option<String>>,
    by_mac: HashMap<String, Option<String>>,
    records: HashMap<String, MachineRecord>,
}

impl IdentityCache {
    /// Both answers for (uuid, mac) as the database held them at `generation`, if kept.
    /// An absent key (the request did not say) is an answer: none.
    pub(super) fn get(&self, generation: i64, uuid: Option<&str>, mac: Option<&str>) -> Option<Found> {
        if generation != self.generation {
            return None;
        }
        let one = |map: &HashMap<String, Option<String>>, key: Option<&str>| -> Option<Option<MachineRecord>> {
            match key {
                None => Some(None),
                Some(k) => match map.get(k)? {
                    None => Some(None),
                    Some(name) => Some(Some(self.records.get(name)?.clone())),
                },
            }
        };
        Some((one(&self.by_uuid, uuid)?, one(&self.by_mac, mac)?))
    }

    /// Whether every key asked (an absent one needs nothing) is kept, at whatever generation.
    pub(super) fn holds(&self, uuid: Option<&str>, mac: Option<&str>) -> bool {
        uuid.is_none_or(|k| self.by_uuid.contains_key(k)) && mac.is_none_or(|k| self.by_mac.contains_key(k))
    }

    /// Keeps what a lookup read at `generation`; a new generation drops everything kept.
    /// A machine nobody knows is not kept: a flood of made-up MACs would only churn it,
    /// and its discovery moves the counter anyway.
    pub(super) fn put(&mut self, generation: i64, uuid: Option<&str>, mac: Option<&str>, found: &Found) {
        if found.0.is_none() && found.1.is_none() {
            return;
        }
        if generation != self.generation || self.by_uuid.len() + self.by_mac.len() >= MAX_KEYS {
            *self = IdentityCache { generation, ..Default::default() };
        }
        for (key, record, by_uuid) in [(uuid, &found.0, true), (mac, &found.1, false)] {
            let Some(key) = key else { continue };
            let name = record.as_ref().map(|r| r.name().to_string());
            if let Some(r) = record {
                self.records.insert(r.name().to_string(), r.clone());
            }
            if by_uuid { &mut self.by_uuid } else { &mut self.by_mac }.insert(key.to_string(), name);
        }
    }

    /// A sighting this process committed: the kept record says so too.
    pub(super) fn seen(&mut self, machine: &str, observed: &Observed, at: DateTime<Utc>) {
        if let Some(r) = self.records.get_mut(machine) {
            r.observed = observed.clone();
            r.last_seen = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootplane_core::model::MachineSpec;
    use bootplane_core::MachineState;

    fn record(name: &str) -> MachineRecord {
        let t = Utc::now();
        MachineRecord {
            spec: MachineSpec { name: name.into(), ..Default::default() },
            state: MachineState::Ready,
            install_attempts: 0,
            credential_generation: 0,
            observed: Observed::default(),
            last_seen: None,
            created: t,
            updated: t,
        }
    }

    #[test]
    fn answers_only_at_the_generation_it_was_filled_at() {
        let mut c = IdentityCache::default();
        let found = (None, Some(record("a")));
        assert!(c.get(0, None, Some("m1")).is_none(), "nothing kept yet");
        c.put(0, Some("u9"), Some("m9"), &(None, None));
        assert!(!c.holds(None, Some("m9")), "an unknown machine is not kept");
        assert!(!c.holds(None, Some("m1")));
        c.put(3, Some("u1"), Some("m1"), &found);
        assert!(c.holds(Some("u1"), Some("m1")) && c.holds(None, Some("m1")) && !c.holds(Some("u2"), Some("m1")));
        let (u, m) = c.get(3, Some("u1"), Some("m1")).unwrap();
        assert!(u.is_none(), "an unknown UUID is kept as unknown");
        assert_eq!(m.unwrap().name(), "a");
        assert!(c.get(4, Some("u1"), Some("m1")).is_none(), "the database moved on");
        assert!(c.get(3, Some("u2"), Some("m1")).is_none(), "a UUID never looked up");
        assert!(c.get(3, None, Some("m1")).is_some(), "no UUID asked: answered by the MAC alone");
        c.put(4, None, Some("m2"), &(None, Some(record("b"))));
        assert!(c.get(4, None, Some("m1")).is_none(), "a new generation drops what the old one kept");
        assert_eq!(c.get(4, None, Some("m2")).unwrap().1.unwrap().name(), "b");
    }

    #[test]
    fn own_sightings_update_the_kept_record() {
        let mut c = IdentityCache::default();
        c.put(1, None, Some("m1"), &(None, Some(record("a"))));
        let at = Utc::now();
        let obs = Observed { arch: Some("x86_64".into()), ..Default::default() };
        c.seen("a", &obs, at);
        c.seen("elsewhere", &obs, at);
        let m = c.get(1, None, Some("m1")).unwrap().1.unwrap();
        assert_eq!((m.last_seen, m.observed.arch.as_deref()), (Some(at), Some("x86_64")));
    }

    #[test]
    fn a_flood_of_identities_clears_it_instead_of_growing_it() {
        let mut c = IdentityCache::default();
        for i in 0..MAX_KEYS + 10 {
            c.put(1, Some(&format!("u{i}")), Some(&format!("m{i}")), &(None, Some(record("a"))));
        }
        assert!(c.by_mac.len() + c.by_uuid.len() <= MAX_KEYS);
        assert!(c.get(1, None, Some(&format!("m{}", MAX_KEYS + 9))).is_some(), "the newest is kept");
    }
}
