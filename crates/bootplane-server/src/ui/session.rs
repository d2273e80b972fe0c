//! Dashboard sessions: after a login with the admin token the browser holds a signed,
//! expiring cookie (HttpOnly, SameSite=Strict), never the token itself. Sessions are
//! stateless, signed with a key derived from the sealing key and the admin token, so
//! every instance sharing a store accepts them and changing the admin token ends them all.
//! Each session has a CSRF token (an HMAC of its nonce) that every form posts back.
//!
//! Written by hand rather than with a session crate: the whole of it is one HMAC and a
//! cookie line, and a store-backed session table would add writes to every login.

use hmac::{Hmac, Mac as _};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const COOKIE: &str = "bootplane_session";

/// How long a login lasts.
pub const LIFETIME_SECS: i64 = 12 * 3600;

#[derive(Clone)]
pub struct SessionKey([u8; 32]);

/// A valid session: what a page needs to write its forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub nonce: String,
    pub expires: i64,
}

impl SessionKey {
    pub fn new(seal_key: &[u8; 32], admin_token: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"bootplane dashboard session v1\0");
        h.update(seal_key);
        h.update(admin_token.as_bytes());
        SessionKey(h.finalize().into())
    }

    fn mac(&self, parts: &[&str]) -> String {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        for p in parts {
            m.update(p.as_bytes());
            m.update(b"\0");
        }
        hex::encode(m.finalize().into_bytes())
    }

    /// A new session's cookie value, valid until `now + LIFETIME_SECS`.
    pub fn issue(&self, now: i64) -> String {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let expires = (now + LIFETIME_SECS).to_string();
        let sig = self.mac(&["session", &expires, &nonce]);
        format!("v1.{expires}.{nonce}.{sig}")
    }

    /// The session a cookie value carries, if it is ours, intact and not expired.
    pub fn verify(&self, value: &str, now: i64) -> Option<Session> {
        let mut parts = value.split('.');
        let (v, expires, nonce, sig) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if v != "v1" || parts.next().is_some() || nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let expected = self.mac(&["session", expires, nonce]);
        if !constant_time_eq(expected.as_bytes(), sig.as_bytes()) {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        (expires > now).then(|| Session { nonce: nonce.to_string(), expires })
    }

    /// The CSRF token of a session: forms carry it, a cross-site page cannot read it.
    pub fn csrf(&self, session: &Session) -> String {
        self.mac(&["csrf", &session.nonce])
    }

    pub fn csrf_ok(&self, session: &Session, presented: &str) -> bool {
        constant_time_eq(self.csrf(session).as_bytes(), presented.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in a `Cookie:` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').map(str::trim).find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The `Set-Cookie` line for a session (`secure` when the page came over HTTPS).
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={LIFETIME_SECS}{}",
        if secure { "; Secure" } else { "" }
    )
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new(&[7; 32], "admin-token")
    }

    #[test]
    fn an_issued_session_verifies_until_it_expires() {
        let k = key();
        let c = k.issue(1000);
        let s = k.verify(&c, 1001).expect("fresh session");
        assert_eq!(s.expires, 1000 + LIFETIME_SECS);
        assert!(k.verify(&c, 1000 + LIFETIME_SECS).is_none(), "expired");
    }

    #[test]
    fn forged_or_foreign_sessions_are_refused() {
        let k = key();
        let c = k.issue(1000);
        // Another admin token (rotated) or another sealing key: every session ends.
        assert!(SessionKey::new(&[7; 32], "new-token").verify(&c, 1001).is_none());
        assert!(SessionKey::new(&[8; 32], "admin-token").verify(&c, 1001).is_none());
        // A longer expiry with the old signature.
        let parts: Vec<&str> = c.split('.').collect();
        let stretched = format!("v1.{}.{}.{}", 99_999_999_999i64, parts[2], parts[3]);
        assert!(k.verify(&stretched, 1001).is_none());
        for junk in ["", "v1", "v1.1.2.3", "v1...", "v2.1.00000000000000000000000000000000.ab", &format!("{c}.x")] {
            assert!(k.verify(junk, 1001).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let k = key();
        let a = k.verify(&k.issue(1000), 1001).unwrap();
        let b = k.verify(&k.issue(1000), 1001).unwrap();
        assert!(k.csrf_ok(&a, &k.csrf(&a)));
        assert!(!k.csrf_ok(&a, &k.csrf(&b)));
        assert!(!k.csrf_ok(&a, ""));
    }

    #[test]
    fn cookies_are_found_among_others_and_set_strict() {
        assert_eq!(cookie("a=1; bootplane_session=v1.x; b=2", COOKIE), Some("v1.x"));
        assert_eq!(cookie("bootplane_session_old=1", COOKIE), None);
        let line = set_cookie("v", true);
        for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(line.contains(attr), "{line}");
        }
        assert!(!set_cookie("v", false).contains("Secure"));
    }
}
