//! Secrets at rest (cluster tokens, the bootstrap kubeconfig): ChaCha20-Poly1305 under a
//! key kept outside the store (a file in the data directory), so a copy of the database
//! alone reveals nothing. Each value is bound to its purpose (e.g. `cluster/lab/tokens`)
//! as associated data: a sealed value moved under another name does not open.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const PREFIX: &str = "sealed-v1:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed value for {0} is not in bootplane's format")]
    Format(String),
    #[error("sealed value for {0} does not open with this key; was the secret key file replaced?")]
    Key(String),
}

/// Seals `plaintext` for `purpose`; `nonce` must never repeat under one key (callers
/// pass 12 random bytes).
pub fn seal(key: &[u8; 32], purpose: &str, nonce: [u8; 12], plaintext: &[u8]) -> String {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: purpose.as_bytes() })
        .expect("ChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(out))
}

pub fn open(key: &[u8; 32], purpose: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
    let raw = sealed
        .strip_prefix(PREFIX)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|r| r.len() >= 12 + 16)
        .ok_or_else(|| SealError::Format(purpose.to_string()))?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .decrypt(Nonce::from_slice(&raw[..12]), Payload { msg: &raw[12..], aad: purpose.as_bytes() })
        .map_err(|_| SealError::Key(purpose.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let k = [7u8; 32];
        let s = seal(&k, "cluster/lab/tokens", [1; 12], b"hunter2");
        assert!(!s.contains("hunter2"));
        assert_eq!(open(&k, "cluster/lab/tokens", &s).unwrap(), b"hunter2");
        assert!(matches!(open(&k, "cluster/other/tokens", &s), Err(SealError::Key(_))));
        assert!(matches!(open(&[8u8; 32], "cluster/lab/tokens", &s), Err(SealError::Key(_))));
        assert!(matches!(open(&k, "x", "plain"), Err(SealError::Format(_))));
        assert!(matches!(open(&k, "x", "sealed-v1:AAAA"), Err(SealError::Format(_))));
    }
}
