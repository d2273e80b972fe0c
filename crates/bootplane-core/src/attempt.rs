//! Install attempts and their config nonces. Every installer answer carries a fresh
//! random nonce in the config URLs it names; a per-machine config (Ignition, live
//! installer config, NoCloud seed) is served only against the current attempt's nonce,
//! from the address that received the answer (or one bootplane's own DHCP leased to the
//! machine), and once per kind. The requester's retry after a lost answer is allowed for
//! [`REFETCH_WINDOW_SECS`]; any other second fetch is refused and raised as an alarm, so
//! a bystander who saw the nonce and won the race is at least seen. Pure: the caller
//! keeps the [`Attempt`] in the store and supplies the clock.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The config kind a live ISO's gate fetches: the machine's credential in plain text,
/// served only to attempts a live ISO's gate opened.
pub const LIVE_ENV: &str = "live-env";

/// How long the first requester may fetch the same config again (Ignition and
/// coreos-installer retry a fetch whose answer was lost).
pub const REFETCH_WINDOW_SECS: i64 = 120;

/// The current install attempt of one machine, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// SHA-256 (hex) of the nonce: the store never holds a usable nonce.
    pub nonce_sha256: String,
    /// Who received the installer answer.
    pub ip: Option<IpAddr>,
    /// Unix seconds.
    pub issued: i64,
    /// Whether this attempt was counted against `max_install_attempts` (at its first fetch).
    #[serde(default)]
    pub counted: bool,
    /// First fetch of each config kind.
    #[serde(default)]
    pub fetched: BTreeMap<String, Fetch>,
    /// The bundle revision the installer answer named: the machine's configs are built
    /// from it even if the bundle is redefined during the install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_revision: Option<u32>,
    /// The machine's credential generation when the attempt opened: provisioning again
    /// (or a failure) bumps it, which closes the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// Opened by a live ISO's gate (`/v1/boot/live`): only such an attempt may fetch
    /// `machine.env` in plain text (the network path never needs it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub live: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    pub ip: Option<IpAddr>,
    pub at: i64,
}

impl Fetch {
    /// Whether a fetch from `from` at `now` is the first requester's retry.
    pub fn is_retry(&self, from: Option<IpAddr>, now: i64) -> bool {
        self.ip == from && now - self.at <= REFETCH_WINDOW_SECS
    }
}

/// A machine's `/join` of one credential generation: single-use like a config fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinServed {
    pub generation: u32,
    pub first: Fetch,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The first fetch of this kind: serve it.
    First,
    /// The first requester again, within the window: serve it, it is a retry.
    Retry,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no install attempt is open: the machine must network-boot and be answered with its installer first")]
    NoAttempt,
    #[error("the nonce is not the current attempt's (an old attempt, or a guess)")]
    WrongNonce,
    #[error("fetched from {got}, but the installer answer went to {expected}")]
    OtherAddress { expected: String, got: String },
    #[error("{kind} was already fetched by {first} at {at}; a second fetch is refused")]
    SecondFetch { kind: String, first: String, at: i64 },
    #[error("machine.env is only for a live ISO's gate, and this attempt was opened by a network boot")]
    NotLive,
}

impl Refusal {
    /// Whether this looks like someone else using the machine's nonce (an alarm), as
    /// opposed to a stale or missing one.
    pub fn is_alarm(&self) -> bool {
        matches!(self, Refusal::OtherAddress { .. } | Refusal::SecondFetch { .. } | Refusal::NotLive)
    }
}

fn digest(nonce: &str) -> String {
    hex::encode(Sha256::digest(nonce.as_bytes()))
}

/// True for what [`Attempt::new`] accepts as a nonce (what goes into URLs unescaped).
pub fn is_nonce(s: &str) -> bool {
    (16..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Attempt {
    pub fn new(nonce: &str, ip: Option<IpAddr>, now: i64) -> Self {
        Attempt {
            nonce_sha256: digest(nonce),
            ip,
            issued: now,
            counted: false,
            fetched: BTreeMap::new(),
            bundle_revision: None,
            generation: None,
            live: false,
        }
    }

    /// Whether `presented` may fetch `kind` from `from` at `now`. `leased_to_machine`
    /// says whether bootplane's own DHCP leased `from` to this machine (its live system
    /// may have renewed to another address than its firmware had).
    pub fn check(&self, presented: &str, kind: &str, from: Option<IpAddr>, leased_to_machine: bool, now: i64) -> Result<Claim, Refusal> {
        if !subtle_eq(&digest(presented), &self.nonce_sha256) {
            return Err(Refusal::WrongNonce);
        }
        let show = |ip: Option<IpAddr>| ip.map(|i| i.to_string()).unwrap_or_else(|| "an unknown address".into());
        if kind == LIVE_ENV && !self.live {
            return Err(Refusal::NotLive);
        }
        if let (Some(expected), Some(got)) = (self.ip, from) {
            if expected != got && !leased_to_machine {
                return Err(Refusal::OtherAddress { expected: expected.to_string(), got: got.to_string() });
            }
        }
        match self.fetched.get(kind) {
            None => Ok(Claim::First),
            Some(f) if f.is_retry(from, now) => Ok(Claim::Retry),
            Some(f) => Err(Refusal::SecondFetch { kind: kind.to_string(), first: show(f.ip), at: f.at }),
        }
    }

    /// This attempt after a first fetch of `kind`.
    pub fn with_fetch(&self, kind: &str, from: Option<IpAddr>, now: i64) -> Attempt {
        let mut a = self.clone();
        a.counted = true;
        a.fetched.entry(kind.to_string()).or_insert(Fetch { ip: from, at: now });
        a
    }
}

/// How long an attempt nobody has fetched from holds its requester when bootplane saw
/// no DHCP exchange of this boot (DHCP off, boot media): after that, another address may
/// open a new one (a machine that rebooted onto another address).
pub const CLAIM_HOLD_SECS: i64 = 600;

/// How long a proxy DHCP answer to a machine lets its first boot request bind.
pub const HANDSHAKE_SECS: i64 = 300;

/// What bootplane itself saw of a boot's DHCP exchange: the only evidence of who the
/// requester is that a request cannot simply claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Witness {
    /// Full DHCP: whether bootplane leased the requester's address to one of the
    /// machine's MACs.
    Leased(bool),
    /// Proxy DHCP: when (Unix seconds) bootplane last answered one of the machine's MACs.
    ProxyAnswered(Option<i64>),
    /// bootplane took no part in this boot's DHCP (DHCP off, or a live ISO in proxy mode).
    Unwitnessed,
}

impl Witness {
    /// Whether what bootplane saw speaks for the requester at `now`: its DHCP bound the
    /// address, or answered the MAC within [`HANDSHAKE_SECS`]. `None`: bootplane saw
    /// nothing it could check against (DHCP off), so nothing speaks either way.
    pub fn vouches(self, now: i64) -> Option<bool> {
        match self {
            Witness::Leased(b) => Some(b),
            Witness::ProxyAnswered(at) => Some(at.is_some_and(|t| now - t <= HANDSHAKE_SECS && t <= now)),
            Witness::Unwitnessed => None,
        }
    }
}

/// Why a boot request for a machine gets no install answer: someone other than the
/// machine bootplane can vouch for asked. Always an alarm.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Contention {
    #[error("{from} asked for this machine's installer, but bootplane's DHCP leased that address to none of its MACs")]
    NotLeased { from: String },
    #[error("{from} asked for this machine's installer, but bootplane's proxy DHCP has not answered its MAC in the last {HANDSHAKE_SECS} s")]
    NoProxyAnswer { from: String },
    #[error("{from} asked for this machine's installer while its open install attempt belongs to {holder}")]
    Held { holder: String, from: String },
}

impl Contention {
    /// The other requester, when there is one (the alarm names both).
    pub fn holder(&self) -> Option<&str> {
        match self {
            Contention::Held { holder, .. } => Some(holder),
            _ => None,
        }
    }
}

/// Whether a boot request from `from` may be given an install answer (a fresh attempt)
/// for a machine whose open attempt is `current` (`None`: none open in this install
/// cycle). One install answer per attempt: while an attempt is open, only its own
/// requester, or an address bootplane's DHCP vouches for, gets another.
pub fn admit(current: Option<&Attempt>, from: Option<IpAddr>, witness: Witness, now: i64) -> Result<(), Contention> {
    let show = |ip: Option<IpAddr>| ip.map(|i| i.to_string()).unwrap_or_else(|| "an unknown address".into());
    match (witness, witness.vouches(now)) {
        (Witness::Leased(_), Some(true)) => return Ok(()),
        (Witness::Leased(_), _) => return Err(Contention::NotLeased { from: show(from) }),
        (_, Some(false)) => return Err(Contention::NoProxyAnswer { from: show(from) }),
        _ => {}
    }
    let Some(cur) = current else { return Ok(()) };
    if cur.ip.is_none() || cur.ip == from {
        return Ok(());
    }
    let fetched = cur.counted || !cur.fetched.is_empty();
    // A boot the proxy answered after the attempt opened is a new boot of the machine.
    let newer_boot = matches!(witness, Witness::ProxyAnswered(Some(t)) if t > cur.issued);
    let stale = now - cur.issued > CLAIM_HOLD_SECS;
    if !fetched && (newer_boot || stale) {
        return Ok(());
    }
    Err(Contention::Held { holder: show(cur.ip), from: show(from) })
}

/// Constant-time comparison of two hex digests.
fn subtle_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &str = "0123456789abcdef0123456789abcdef";

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn one_fetch_per_kind_from_the_answered_address() {
        let a = Attempt::new(N, ip("198.18.0.50"), 1000);
        assert!(!a.nonce_sha256.contains(N));
        assert_eq!(a.check(N, "ignition", ip("198.18.0.50"), false, 1001), Ok(Claim::First));
        assert_eq!(a.check("f".repeat(32).as_str(), "ignition", ip("198.18.0.50"), false, 1001), Err(Refusal::WrongNonce));
        let stolen = a.check(N, "ignition", ip("198.18.0.66"), false, 1001).unwrap_err();
        assert!(stolen.is_alarm() && stolen.to_string().contains("198.18.0.66"), "{stolen}");
        // The machine's live system on another address bootplane leased to it.
        assert_eq!(a.check(N, "ignition", ip("198.18.0.51"), true, 1001), Ok(Claim::First));

        let a = a.with_fetch("ignition", ip("198.18.0.50"), 1001);
        assert!(a.counted);
        // The requester's retry after a lost answer, within the window.
        assert_eq!(a.check(N, "ignition", ip("198.18.0.50"), false, 1050), Ok(Claim::Retry));
        let late = a.check(N, "ignition", ip("198.18.0.50"), false, 1001 + REFETCH_WINDOW_SECS + 1).unwrap_err();
        assert!(matches!(late, Refusal::SecondFetch { .. }) && late.is_alarm());
        // A network boot's attempt never hands out machine.env; a live ISO's does.
        assert_eq!(a.check(N, LIVE_ENV, ip("198.18.0.50"), false, 1002), Err(Refusal::NotLive));
        assert!(Refusal::NotLive.is_alarm());
        let live = Attempt { live: true, ..a.clone() };
        assert_eq!(live.check(N, LIVE_ENV, ip("198.18.0.50"), false, 1002), Ok(Claim::First));
        // Another kind of the same attempt is its own first fetch.
        assert_eq!(a.check(N, "installer", ip("198.18.0.50"), false, 1002), Ok(Claim::First));
        // A second first-fetch record never replaces the first.
        let b = a.with_fetch("ignition", ip("198.18.0.99"), 1003);
        assert_eq!(b.fetched["ignition"].ip, ip("198.18.0.50"));
        assert!(!Refusal::WrongNonce.is_alarm() && !Refusal::NoAttempt.is_alarm());
    }

    #[test]
    fn one_install_answer_per_attempt() {
        let a = Attempt::new(N, ip("198.18.0.50"), 1000);
        let me = ip("198.18.0.50");
        let other = ip("198.18.0.66");
        // bootplane's DHCP vouches or refuses; nothing else counts then.
        assert_eq!(admit(Some(&a), other, Witness::Leased(true), 1001), Ok(()));
        assert!(matches!(admit(None, other, Witness::Leased(false), 1001), Err(Contention::NotLeased { .. })));
        // Proxy: nobody before bootplane's own answer to the MAC, or long after it.
        assert!(matches!(admit(None, me, Witness::ProxyAnswered(None), 1001), Err(Contention::NoProxyAnswer { .. })));
        assert!(admit(None, me, Witness::ProxyAnswered(Some(1001 - HANDSHAKE_SECS - 1)), 1001).is_err());
        assert_eq!(admit(None, me, Witness::ProxyAnswered(Some(999)), 1001), Ok(()));
        // The first requester holds the attempt: another address is contention naming both.
        let held = admit(Some(&a), other, Witness::ProxyAnswered(Some(999)), 1001).unwrap_err();
        assert_eq!(held.holder(), Some("198.18.0.50"));
        assert!(held.to_string().contains("198.18.0.66"), "{held}");
        assert_eq!(admit(Some(&a), me, Witness::Unwitnessed, 1001), Ok(()));
        assert!(admit(Some(&a), other, Witness::Unwitnessed, 1001).is_err());
        // A new boot the proxy answered after the attempt, or a stale attempt, may be
        // taken over while nobody fetched from it; once fetched, never.
        assert_eq!(admit(Some(&a), other, Witness::ProxyAnswered(Some(1005)), 1006), Ok(()));
        assert_eq!(admit(Some(&a), other, Witness::Unwitnessed, 1000 + CLAIM_HOLD_SECS + 1), Ok(()));
        let fetched = a.with_fetch("ignition", me, 1002);
        assert!(admit(Some(&fetched), other, Witness::ProxyAnswered(Some(1005)), 1006).is_err());
        assert!(admit(Some(&fetched), other, Witness::Unwitnessed, 1000 + CLAIM_HOLD_SECS + 1).is_err());
    }

    #[test]
    fn nonces_are_url_safe_hex() {
        assert!(is_nonce(N) && !is_nonce("0123") && !is_nonce(&"G".repeat(32)) && !is_nonce("../../../../etc/passwd/xx"));
    }
}
