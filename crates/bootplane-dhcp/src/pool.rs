//! Address allocation. The pool holds every lease it knows (loaded from the store at
//! start, written back on every change by the caller) plus the reservations from the
//! machines' `ip`. Choice order for a client: its reservation; the address it held
//! before (even expired or released, so a machine keeps its address across reboots and
//! server restarts); the address it asks for, if free; the first never-used address;
//! the longest-expired one; and when every address is bound or offered, the oldest
//! offer that has gone unanswered for [`PREEMPT_AFTER`] seconds (its client took
//! another server's offer, or never existed: a DISCOVER flood with made-up MACs would
//! otherwise hold the whole range for the offer hold time). A reserved address is never
//! given to another MAC; a declined one is withheld until it expires.

use bootplane_core::model::{Lease, LeaseState};
use bootplane_core::Mac;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// Seconds an offer stays unanswered before its address may be offered to another
/// client when nothing else is free. Clients request within a second or two.
pub const PREEMPT_AFTER: i64 = 2;

#[derive(Debug, Clone)]
pub struct LeasePool {
    first: u32,
    last: u32,
    by_ip: HashMap<Ipv4Addr, Lease>,
    by_mac: HashMap<Mac, Ipv4Addr>,
    reservations: HashMap<Mac, Ipv4Addr>,
    reserved: HashSet<Ipv4Addr>,
    /// Every address below this one (from `first`) has been handed out at some point:
    /// the search for a never-used address starts here, so filling a large range is
    /// linear overall instead of quadratic.
    fresh_from: u32,
    /// Once the range has been handed out entirely: expired addresses found by the last
    /// full scan, oldest first, and the time before which a new scan cannot find more.
    /// A flood of DISCOVERs against a full pool then costs O(1) per packet, not a scan.
    reuse: std::collections::VecDeque<Ipv4Addr>,
    rescan_at: i64,
    /// Offers in the order they were made: (address, client, when). Entries whose
    /// offer has since been bound, re-offered or expired are skipped when met.
    offers: std::collections::VecDeque<(Ipv4Addr, Mac, i64)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("no free address in the range")]
    Exhausted,
    #[error("{0} is not this client's address")]
    NotYours(Ipv4Addr),
}

impl LeasePool {
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Self {
        LeasePool {
            first: u32::from(first),
            last: u32::from(last),
            by_ip: HashMap::new(),
            by_mac: HashMap::new(),
            reservations: HashMap::new(),
            reserved: HashSet::new(),
            fresh_from: u32::from(first),
            reuse: Default::default(),
            rescan_at: i64::MIN,
            offers: Default::default(),
        }
    }

    pub fn load(&mut self, leases: impl IntoIterator<Item = Lease>) {
        for l in leases {
            self.insert(l);
        }
    }

    pub fn set_reservations(&mut self, r: impl IntoIterator<Item = (Mac, Ipv4Addr)>) {
        self.reservations = r.into_iter().collect();
        self.reserved = self.reservations.values().copied().collect();
        self.rescan_at = i64::MIN;
        // A reservation can only make addresses unusable; the cursor stays valid as a
        // lower bound, and a removed one is found again by the full scan.
    }

    pub fn reservation(&self, mac: Mac) -> Option<Ipv4Addr> {
        self.reservations.get(&mac).copied()
    }

    pub fn lease_of(&self, mac: Mac) -> Option<&Lease> {
        self.by_mac.get(&mac).and_then(|ip| self.by_ip.get(ip))
    }

    pub fn lease_at(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip)
    }

    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    fn insert(&mut self, l: Lease) {
        let ip = l.ip;
        if let Some(old) = self.by_mac.insert(l.mac, l.ip) {
            if old != l.ip && self.by_ip.get(&old).is_some_and(|o| o.mac == l.mac) {
                self.by_ip.remove(&old);
                self.fresh_from = self.fresh_from.min(u32::from(old));
            }
        }
        if let Some(prev) = self.by_ip.insert(l.ip, l) {
            if prev.mac != self.by_ip[&ip].mac && self.by_mac.get(&prev.mac) == Some(&ip) {
                self.by_mac.remove(&prev.mac);
            }
        }
        self.rescan_at = self.rescan_at.min(self.by_ip[&ip].expires);
        self.skip_used();
    }

    fn skip_used(&mut self) {
        while self.fresh_from <= self.last {
            let next = Ipv4Addr::from(self.fresh_from);
            if !self.by_ip.contains_key(&next) && self.usable(next) {
                break;
            }
            self.fresh_from += 1;
        }
    }

    /// Starts the search for never-used addresses `offset` addresses into the range
    /// instead of at its first. Instances sharing one pool each start elsewhere, so they
    /// seldom pick the same fresh address (each such pick is a refused claim and a client
    /// left unanswered); the addresses below the start are found once the rest is used
    /// (the expired-address scan counts never-used ones).
    pub fn start_fresh_at(&mut self, offset: u32) {
        let size = self.last - self.first + 1;
        self.fresh_from = self.first + offset % size;
        self.skip_used();
    }

    /// Whether `ip` may be handed out dynamically at all.
    fn usable(&self, ip: Ipv4Addr) -> bool {
        // .0 and .255 inside a range are legal but confuse some clients.
        let last_octet = ip.octets()[3];
        last_octet != 0 && last_octet != 255 && !self.reserved.contains(&ip)
    }

    /// Whether `ip` may go to `mac` now.
    pub fn available_for(&self, ip: Ipv4Addr, mac: Mac, now: i64) -> bool {
        if self.reserved.contains(&ip) && self.reservations.get(&mac) != Some(&ip) {
            return false;
        }
        match self.by_ip.get(&ip) {
            None => true,
            Some(l) if l.mac == mac => l.state != LeaseState::Declined || l.expires <= now,
            Some(l) => l.expires <= now,
        }
    }

    /// The address to offer `mac`.
    pub fn choose(&self, mac: Mac, requested: Option<Ipv4Addr>, now: i64) -> Result<Ipv4Addr, PoolError> {
        if let Some(ip) = self.reservations.get(&mac) {
            return Ok(*ip);
        }
        if let Some(l) = self.lease_of(mac) {
            if l.state != LeaseState::Declined && self.available_for(l.ip, mac, now) {
                return Ok(l.ip);
            }
        }
        if let Some(r) = requested {
            if self.in_range(r) && self.available_for(r, mac, now) {
                return Ok(r);
            }
        }
        let usable = |ip: Ipv4Addr| self.usable(ip);
        for n in self.fresh_from..=self.last {
            let ip = Ipv4Addr::from(n);
            if usable(ip) && !self.by_ip.contains_key(&ip) {
                return Ok(ip);
            }
        }

        Err(PoolError::Exhausted)
    }

    /// [`LeasePool::choose`], falling back to the oldest expired address, then to the
    /// oldest unanswered offer.
    pub fn allocate(&mut self, mac: Mac, requested: Option<Ipv4Addr>, now: i64) -> Result<Ipv4Addr, PoolError> {
        self.choose(mac, requested, now).or_else(|_| self.choose_expired(mac, now)).or_else(|_| self.preempt_offer(mac, now))
    }

    /// The address of the oldest offer still outstanding after [`PREEMPT_AFTER`].
    fn preempt_offer(&mut self, mac: Mac, now: i64) -> Result<Ipv4Addr, PoolError> {
        while let Some(&(ip, owner, at)) = self.offers.front() {
            let current = self.by_ip.get(&ip).is_some_and(|l| l.mac == owner && l.state == LeaseState::Offered && l.expires > now);
            if !current || owner == mac {
                self.offers.pop_front();
                continue;
            }
            if now - at < PREEMPT_AFTER {
                break;
            }
            self.offers.pop_front();
            return Ok(ip);
        }
        Err(PoolError::Exhausted)
    }

    /// Takes the oldest expired address, rescanning the range when the list runs dry
    /// and something may have expired since.
    pub fn choose_expired(&mut self, mac: Mac, now: i64) -> Result<Ipv4Addr, PoolError> {
        loop {
            while let Some(ip) = self.reuse.pop_front() {
                if self.available_for(ip, mac, now) && self.usable(ip) {
                    return Ok(ip);
                }
            }
            if now < self.rescan_at {
                return Err(PoolError::Exhausted);
            }
            let mut expired: Vec<(i64, Ipv4Addr)> = Vec::new();
            let mut next = i64::MAX;
            for n in self.first..=self.last {
                let ip = Ipv4Addr::from(n);
                if !self.usable(ip) {
                    continue;
                }
                match self.by_ip.get(&ip) {
                    None => expired.push((i64::MIN, ip)),
                    // Expired leases (an expired decline included) are free again.
                    Some(l) if l.expires <= now => expired.push((l.expires, ip)),
                    Some(l) => next = next.min(l.expires),
                }
            }
            expired.sort();
            self.reuse = expired.into_iter().map(|(_, ip)| ip).collect();
            self.rescan_at = next;
            if self.reuse.is_empty() {
                return Err(PoolError::Exhausted);
            }
        }
    }

    /// Records an offer (held `hold` seconds) and returns the lease to persist.
    pub fn offer(&mut self, mac: Mac, ip: Ipv4Addr, now: i64, hold: i64, hostname: Option<String>) -> Lease {
        let expires = match self.by_ip.get(&ip) {
            // Never shorten a bound lease by re-offering it.
            Some(l) if l.mac == mac && l.state == LeaseState::Bound && l.expires > now => l.expires,
            _ => now + hold,
        };
        let state = match self.by_ip.get(&ip) {
            Some(l) if l.mac == mac && l.state == LeaseState::Bound && l.expires > now => LeaseState::Bound,
            _ => LeaseState::Offered,
        };
        let l = Lease { ip, mac, state, expires, hostname };
        self.insert(l.clone());
        if state == LeaseState::Offered {
            self.offers.push_back((ip, mac, now));
            // At most one entry per address can be current; older ones are stale.
            let cap = (self.last - self.first) as usize + 1;
            while self.offers.len() > cap {
                self.offers.pop_front();
            }
        }
        l
    }

    /// Binds `ip` to `mac` for `lease_time` seconds, if it may have it.
    pub fn bind(&mut self, mac: Mac, ip: Ipv4Addr, now: i64, lease_time: i64, hostname: Option<String>) -> Result<Lease, PoolError> {
        let reserved_here = self.reservations.get(&mac) == Some(&ip);
        if !(self.in_range(ip) || reserved_here) || !self.available_for(ip, mac, now) {
            return Err(PoolError::NotYours(ip));
        }
        let l = Lease { ip, mac, state: LeaseState::Bound, expires: now + lease_time, hostname };
        self.insert(l.clone());
        Ok(l)
    }

    /// The client gave the address back: it stays associated with it for next time.
    pub fn release(&mut self, mac: Mac, ip: Ipv4Addr, now: i64) -> Option<Lease> {
        let l = self.by_ip.get_mut(&ip).filter(|l| l.mac == mac)?;
        l.state = LeaseState::Released;
        l.expires = now;
        let l = l.clone();
        self.rescan_at = self.rescan_at.min(now);
        Some(l)
    }

    /// The client saw `ip` in use: withhold it for `hold` seconds. Only the client the
    /// address was offered or leased to may decline it, so a DECLINE cannot withhold
    /// free addresses nor grow the table with addresses outside the range.
    pub fn decline(&mut self, mac: Mac, ip: Ipv4Addr, now: i64, hold: i64) -> Option<Lease> {
        if !self.by_ip.get(&ip).is_some_and(|l| l.mac == mac && l.state != LeaseState::Declined) {
            return None;
        }
        let l = Lease { ip, mac, state: LeaseState::Declined, expires: now + hold, hostname: None };
        self.by_ip.insert(ip, l.clone());
        self.rescan_at = self.rescan_at.min(l.expires);
        if self.by_mac.get(&mac) == Some(&ip) {
            self.by_mac.remove(&mac);
        }
        Some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0, 0, n])
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn distinct_clients_get_distinct_addresses_until_exhausted() {
        let mut p = LeasePool::new(ip("198.18.0.10"), ip("198.18.0.12"));
        let mut got = HashSet::new();
        for n in 1..=3 {
            let a = p.choose(mac(n), None, 0).unwrap();
            p.bind(mac(n), a, 0, 600, None).unwrap();
            assert!(got.insert(a));
        }
        assert_eq!(p.allocate(mac(9), None, 0), Err(PoolError::Exhausted));
        assert_eq!(p.allocate(mac(9), None, 1), Err(PoolError::Exhausted), "no rescan before anything expires");
        // After expiry the oldest lease is reused, and its old owner is not confused.
        assert_eq!(p.allocate(mac(9), None, 601), Ok(ip("198.18.0.10")));
    }

    #[test]
    fn reservations_are_kept_for_their_mac() {
        let mut p = LeasePool::new(ip("198.18.0.10"), ip("198.18.0.20"));
        p.set_reservations([(mac(5), ip("198.18.0.10")), (mac(6), ip("198.18.0.99"))]);
        assert_eq!(p.choose(mac(5), None, 0), Ok(ip("198.18.0.10")));
        assert_eq!(p.choose(mac(6), None, 0), Ok(ip("198.18.0.99")), "outside the range is fine for a reservation");
        assert_eq!(p.choose(mac(1), Some(ip("198.18.0.10")), 0), Ok(ip("198.18.0.11")), "nobody else gets a reserved address");
        assert!(p.bind(mac(1), ip("198.18.0.10"), 0, 600, None).is_err());
        assert!(p.bind(mac(6), ip("198.18.0.99"), 0, 600, None).is_ok());
    }

    #[test]
    fn a_client_keeps_its_address() {
        let mut p = LeasePool::new(ip("198.18.0.10"), ip("198.18.0.20"));
        let a = p.choose(mac(1), Some(ip("198.18.0.15")), 0).unwrap();
        assert_eq!(a, ip("198.18.0.15"));
        p.bind(mac(1), a, 0, 600, None).unwrap();
        p.release(mac(1), a, 100).unwrap();
        assert_eq!(p.choose(mac(1), None, 5000), Ok(a));
        // Reload (a server restart) keeps it too.
        let leases: Vec<Lease> = p.by_ip.values().cloned().collect();
        let mut q = LeasePool::new(ip("198.18.0.10"), ip("198.18.0.20"));
        q.load(leases);
        assert_eq!(q.choose(mac(1), None, 5000), Ok(a));
    }

    #[test]
    fn declined_addresses_are_withheld() {
        let mut p = LeasePool::new(ip("198.18.0.10"), ip("198.18.0.11"));
        let a = p.choose(mac(1), None, 0).unwrap();
        p.offer(mac(1), a, 0, 60, None);
        p.decline(mac(1), a, 0, 600).unwrap();
        let b = p.allocate(mac(1), None, 1).unwrap();
        assert_ne!(a, b);
        assert!(!p.available_for(a, mac(2), 10));
        assert!(p.available_for(a, mac(2), 700));
        // Another client cannot decline someone else's lease.
        p.bind(mac(1), b, 1, 600, None).unwrap();
        assert!(p.decline(mac(3), b, 2, 600).is_none());
    }

    #[test]
    fn declines_of_addresses_nobody_was_given_change_nothing() {
        // Finding 8: one DECLINE per free address withheld the range, and out-of-range
        // DECLINEs grew the table without bound.
        let mut p = LeasePool::new(ip("198.18.0.10"), ip("198.18.0.11"));
        for n in 0..=255u8 {
            assert!(p.decline(mac(n), ip("198.18.0.10"), 0, 600).is_none());
            assert!(p.decline(mac(n), Ipv4Addr::new(10, 0, 0, n), 0, 600).is_none());
        }
        assert_eq!(p.by_ip.len(), 0);
        assert!(p.choose(mac(1), None, 0).is_ok());
        // A second DECLINE does not extend the hold.
        let a = p.choose(mac(1), None, 0).unwrap();
        p.offer(mac(1), a, 0, 60, None);
        let first = p.decline(mac(1), a, 0, 600).unwrap();
        assert!(p.decline(mac(1), a, 500, 600).is_none());
        assert_eq!(p.by_ip[&a].expires, first.expires);
    }

    #[test]
    fn choose_is_constant_time_while_fresh_addresses_remain() {
        let mut p = LeasePool::new(ip("198.19.1.1"), ip("198.19.254.254"));
        for n in 0..3000u32 {
            let m = Mac([2, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 1]);
            let a = p.choose(m, None, 0).unwrap();
            p.offer(m, a, 0, 60, None);
            assert!(u32::from(a) - u32::from(ip("198.19.1.1")) < 3100, "{a}");
            assert!(p.fresh_from - u32::from(a) <= 3, "cursor left behind at {} after {a}", Ipv4Addr::from(p.fresh_from));
        }
    }

    #[test]
    fn a_large_range_fills_in_order() {
        let mut p = LeasePool::new(ip("198.19.0.1"), ip("198.19.39.255"));
        let mut seen = HashSet::new();
        for n in 0..10_000u32 {
            let m = Mac([2, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 1]);
            let a = p.choose(m, None, 0).unwrap();
            p.bind(m, a, 0, 600, None).unwrap();
            assert!(seen.insert(a), "{a} given twice");
        }
    }

    #[test]
    fn a_pool_started_midway_still_hands_out_every_address() {
        let mut p = LeasePool::new("10.0.0.1".parse().unwrap(), "10.0.0.8".parse().unwrap());
        p.start_fresh_at(4);
        let mut got = Vec::new();
        for i in 0..8u8 {
            let ip = p.allocate(mac(i), None, 0).unwrap();
            p.bind(mac(i), ip, 0, 600, None).unwrap();
            got.push(ip.octets()[3]);
        }
        assert_eq!(&got[..4], &[5, 6, 7, 8], "fresh addresses from the start offset first");
        got.sort();
        assert_eq!(got, (1..=8).collect::<Vec<u8>>(), "then the ones below it");
        assert_eq!(p.allocate(mac(9), None, 0), Err(PoolError::Exhausted));
    }

    #[test]
    fn a_flood_of_offers_cannot_hold_a_full_pool() {
        let mut p = LeasePool::new(ip("198.18.0.10"), ip("198.18.0.11"));
        p.offer(mac(1), ip("198.18.0.10"), 0, 10, None);
        p.offer(mac(2), ip("198.18.0.11"), 0, 10, None);
        // Every address is offered: nothing for a newcomer while the offers are fresh.
        assert_eq!(p.allocate(mac(3), None, 1), Err(PoolError::Exhausted));
        // An offer answered with a REQUEST is bound and never preempted.
        p.bind(mac(1), ip("198.18.0.10"), 1, 600, None).unwrap();
        // The unanswered one goes to the newcomer once it is old enough.
        let a = p.allocate(mac(3), None, PREEMPT_AFTER).unwrap();
        assert_eq!(a, ip("198.18.0.11"));
        p.offer(mac(3), a, PREEMPT_AFTER, 10, None);
        // The first client lost it: its late REQUEST is refused (it will be NAKed).
        assert_eq!(p.bind(mac(2), a, PREEMPT_AFTER, 600, None), Err(PoolError::NotYours(a)));
        // Nothing left to take: the bound lease and the new offer stay.
        assert_eq!(p.allocate(mac(4), None, PREEMPT_AFTER), Err(PoolError::Exhausted));
        assert_eq!(p.lease_at(ip("198.18.0.10")).unwrap().mac, mac(1));
    }

    #[test]
    fn offers_expire_and_do_not_block_others() {
        let mut p = LeasePool::new(ip("198.18.0.10"), ip("198.18.0.10"));
        p.offer(mac(1), ip("198.18.0.10"), 0, 60, None);
        assert_eq!(p.allocate(mac(2), None, PREEMPT_AFTER - 1), Err(PoolError::Exhausted));
        assert_eq!(p.allocate(mac(2), None, 61), Ok(ip("198.18.0.10")));
        // A release frees the address at once, even between rescans.
        let mut p = LeasePool::new(ip("198.18.0.10"), ip("198.18.0.10"));
        p.bind(mac(1), ip("198.18.0.10"), 0, 600, None).unwrap();
        assert_eq!(p.allocate(mac(2), None, 5), Err(PoolError::Exhausted));
        p.release(mac(1), ip("198.18.0.10"), 6).unwrap();
        assert_eq!(p.allocate(mac(2), None, 7), Ok(ip("198.18.0.10")));
    }
}
#[cfg(test)]
mod timing {
    use super::*;
    #[test]
    #[ignore]
    fn time_50k() {
        let mut p = LeasePool::new("198.19.1.1".parse().unwrap(), "198.19.254.254".parse().unwrap());
        let t = std::time::Instant::now();
        for n in 0..50_000u32 {
            let m = Mac([2, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8, 1]);
            let a = p.choose(m, None, 0).unwrap();
            p.offer(m, a, 0, 60, None);
            p.bind(m, a, 0, 600, None).unwrap();
        }
        eprintln!("50k in {:?}, cursor {}", t.elapsed(), Ipv4Addr::from(p.fresh_from));
    }
}
