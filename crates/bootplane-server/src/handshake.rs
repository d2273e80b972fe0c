//! What bootplane's own DHCP did in a machine's boot, for the boot path to bind install
//! answers to: the addresses it bound to each MAC (full mode) and when it last
//! proxy-answered each MAC (proxy mode). A boot request can claim any MAC; it cannot
//! claim to have been in a DHCP exchange bootplane itself had. The DHCP thread records
//! (`crate::dhcp`); `crate::boot` asks. Bindings are also in the store (another
//! instance's, or from before a restart); proxy answers only here, so in proxy mode a
//! machine's boot request must reach the instance that answered it.

use bootplane_core::attempt::Witness;
use bootplane_core::Mac;
use bootplane_dhcp::Mode;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, OnceLock};

/// MACs remembered at once; cleared when full (the store still has the bindings).
const MAX_MACS: usize = 65_536;

#[derive(Default)]
pub struct Handshakes {
    mode: OnceLock<Mode>,
    seen: Mutex<HashMap<Mac, Seen>>,
}

#[derive(Clone, Copy, Default)]
struct Seen {
    /// The last binding (full mode) and when it expires (Unix seconds).
    bound: Option<(Ipv4Addr, i64)>,
    /// The last proxy answer (Unix seconds).
    proxied: Option<i64>,
}

impl Handshakes {
    /// The DHCP mode `serve` runs; unset means DHCP is off.
    pub fn set_mode(&self, mode: Mode) {
        let _ = self.mode.set(mode);
    }

    pub fn mode(&self) -> Option<Mode> {
        self.mode.get().copied()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Mac, Seen>) -> R) -> R {
        let mut m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_MACS {
            m.clear();
        }
        f(&mut m)
    }

    pub fn bound(&self, mac: Mac, ip: Ipv4Addr, expires: i64) {
        self.with(|m| m.entry(mac).or_default().bound = Some((ip, expires)));
    }

    pub fn proxied(&self, mac: Mac, at: i64) {
        self.with(|m| m.entry(mac).or_default().proxied = Some(at));
    }

    /// Whether a binding this instance made gives `ip` to one of `macs` at `now`.
    fn bound_here(&self, macs: &[Mac], ip: IpAddr, now: i64) -> bool {
        let IpAddr::V4(ip) = ip else { return false };
        self.with(|m| macs.iter().any(|mac| m.get(mac).and_then(|s| s.bound).is_some_and(|(b, exp)| b == ip && exp > now)))
    }

    /// The latest proxy answer to any of `macs`.
    fn last_proxied(&self, macs: &[Mac]) -> Option<i64> {
        self.with(|m| macs.iter().filter_map(|mac| m.get(mac).and_then(|s| s.proxied)).max())
    }
}

/// What bootplane saw of the DHCP exchange of a boot request from `from` for a machine
/// with `macs`. A live ISO (`live`) does no PXE, so in proxy mode nothing was seen.
pub async fn witness(s: &crate::Shared, macs: &[Mac], from: Option<IpAddr>, live: bool) -> Witness {
    let now = chrono::Utc::now().timestamp();
    match s.handshakes.mode() {
        Some(Mode::Full) => {
            let Some(from) = from else {
                return Witness::Leased(false);
            };
            if s.handshakes.bound_here(macs, from, now) {
                return Witness::Leased(true);
            }
            Witness::Leased(leased_in_store(s, macs, from, now).await)
        }
        Some(Mode::Proxy) if !live => Witness::ProxyAnswered(s.handshakes.last_proxied(macs)),
        _ => Witness::Unwitnessed,
    }
}

/// Whether bootplane's DHCP (full mode) leased `ip` to one of `macs`: what vouches for a
/// machine's other addresses (its live system's, its installed system's).
pub async fn leased_to(s: &crate::Shared, macs: &[Mac], ip: IpAddr) -> bool {
    witness(s, macs, Some(ip), false).await == Witness::Leased(true)
}

/// Whether the store holds an unexpired binding of `ip` to one of `macs` (made by
/// another instance, or before a restart).
pub async fn leased_in_store(s: &crate::Shared, macs: &[Mac], ip: IpAddr, now: i64) -> bool {
    let IpAddr::V4(v4) = ip else { return false };
    s.store.leases().await.is_ok_and(|ls| {
        ls.iter()
            .any(|l| l.ip == v4 && l.state == bootplane_core::model::LeaseState::Bound && l.expires > now && macs.contains(&l.mac))
    })
}
