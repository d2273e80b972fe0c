//! Per-machine credentials. A credential is an HMAC of the machine name and its credential
//! generation under a key derived from the server's secret key file ([`key_from`]), so
//! neither the credentials nor their key are in the store, and every instance with the
//! same key file derives the same value. Retiring a credential is bumping the
//! generation: the old value then verifies for nothing.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac_for(secret: &[u8], machine: &str, generation: u32) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(b"bootplane-machine-credential\0");
    m.update(machine.as_bytes());
    m.update(b"\0");
    m.update(&generation.to_be_bytes());
    m
}

/// The credential HMAC key, derived from the sealing key (`secret.key`) so that reading
/// the database alone never lets anyone compute a machine's credential.
pub fn key_from(secret_key: &[u8; 32]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(secret_key).expect("HMAC accepts any key length");
    m.update(b"bootplane-credential-key-v1");
    m.finalize().into_bytes().to_vec()
}

/// The live credential of `machine` at `generation`, as 64 lowercase hex digits.
pub fn derive(secret: &[u8], machine: &str, generation: u32) -> String {
    hex::encode(mac_for(secret, machine, generation).finalize().into_bytes())
}

/// The k3s node password of `machine` (`/etc/rancher/node/password`, 32 hex digits).
/// k3s keeps a hash of it from the node's first join and refuses the node name with any
/// other password afterwards ("Node password rejected"), so a reinstalled machine must
/// present the same one: it is derived from the key and the name alone, never the
/// generation. Another name (a renamed machine) is another node with another password.
pub fn node_password(secret: &[u8], machine: &str) -> String {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(b"bootplane-k3s-node-password\0");
    m.update(machine.as_bytes());
    hex::encode(&m.finalize().into_bytes()[..16])
}

/// Constant-time check of a presented credential.
pub fn verify(secret: &[u8], machine: &str, generation: u32, presented: &str) -> bool {
    match hex::decode(presented.trim()) {
        Ok(bytes) => mac_for(secret, machine, generation).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_bump_retires() {
        let c = derive(b"k", "m1", 0);
        assert!(verify(b"k", "m1", 0, &c));
        assert!(!verify(b"k", "m1", 1, &c));
        assert!(!verify(b"k", "m2", 0, &c));
        assert!(!verify(b"other", "m1", 0, &c));
        assert!(!verify(b"k", "m1", 0, "zz"));
        assert_eq!(c.len(), 64);
    }

    #[test]
    fn node_passwords_survive_reinstalls_and_differ_per_machine() {
        let p = node_password(b"k", "m1");
        assert_eq!(p, node_password(b"k", "m1"), "the same on every reinstall (no generation in it)");
        assert_eq!(p.len(), 32);
        assert_ne!(p, node_password(b"k", "m2"));
        assert_ne!(p, node_password(b"other", "m1"));
        assert!(!derive(b"k", "m1", 0).contains(&p), "not a piece of the credential");
    }
}
