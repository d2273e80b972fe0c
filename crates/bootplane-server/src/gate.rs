//! A per-source budget for what unauthenticated requests may write: boot events,
//! discovered machines, refusals. Anyone on the LAN can send boot requests; without a
//! budget a flood of made-up MACs would rewrite the event log and evict real discovered
//! machines within seconds. Over budget, nothing is written and the count is kept; the
//! source's next admitted event carries how many were suppressed before it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Sources tracked at once; the table is cleared when full (a new budget for everyone
/// is better than unbounded memory).
const MAX_SOURCES: usize = 16_384;

pub struct Gate {
    per_minute: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl Gate {
    pub fn new(per_minute: u32) -> Self {
        Gate { per_minute: per_minute.max(1) as f64, buckets: Mutex::new(HashMap::new()) }
    }

    /// `Some(suppressed since the last admitted write)` when `ip` may write now, `None`
    /// when it is over its budget. Requests without a known source are not limited.
    pub fn admit(&self, ip: Option<IpAddr>, now: Instant) -> Option<u64> {
        let Some(ip) = ip else { return Some(0) };
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_SOURCES && !b.contains_key(&ip) {
            b.clear();
        }
        let e = b.entry(ip).or_insert(Bucket { tokens: self.per_minute, last: now, suppressed: 0 });
        e.tokens = e.available(self.per_minute, now);
        e.last = now;
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            Some(std::mem::take(&mut e.suppressed))
        } else {
            e.suppressed += 1;
            None
        }
    }

    /// Whether `ip` has no budget left now, without spending any: for checks made before
    /// the request is served (failed logins), where only a failure spends.
    pub fn exhausted(&self, ip: IpAddr, now: Instant) -> bool {
        let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        b.get(&ip).is_some_and(|e| e.available(self.per_minute, now) < 1.0)
    }
}

impl Bucket {
    /// The tokens at `now`: what was left, refilled at `per_minute`, up to one minute's.
    fn available(&self, per_minute: f64, now: Instant) -> f64 {
        (self.tokens + now.duration_since(self.last).as_secs_f64() * per_minute / 60.0).min(per_minute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_gets_its_budget_then_counts_what_it_lost() {
        let g = Gate::new(60);
        let t0 = Instant::now();
        let a = Some("198.18.0.66".parse().unwrap());
        for _ in 0..60 {
            assert_eq!(g.admit(a, t0), Some(0));
        }
        assert_eq!(g.admit(a, t0), None);
        assert_eq!(g.admit(a, t0), None);
        // Another source is not affected.
        assert_eq!(g.admit(Some("198.18.0.67".parse().unwrap()), t0), Some(0));
        // One per second comes back, with the count of what was dropped.
        assert_eq!(g.admit(a, t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(g.admit(None, t0), Some(0));
    }

    #[test]
    fn exhausted_looks_without_spending() {
        let g = Gate::new(2);
        let (t0, a) = (Instant::now(), "198.18.0.66".parse().unwrap());
        assert!(!g.exhausted(a, t0));
        g.admit(Some(a), t0);
        assert!(!g.exhausted(a, t0) && !g.exhausted(a, t0), "looking spends nothing");
        g.admit(Some(a), t0);
        assert!(g.exhausted(a, t0));
        assert!(!g.exhausted(a, t0 + Duration::from_secs(30)), "refilled at 2 per minute");
    }
}
