//! bootplane's own additions to every machine's Ignition config: the hostname and
//! `/etc/bootplane/machine.env`. They are built as Ignition JSON directly so they can be
//! expressed in whatever spec version the machine's Butane asks for (3.0.0 onwards all
//! share this shape for `storage.files`).

use serde_json::{json, Value};

/// Butane's `data:,` encoding: bytes outside `[A-Za-z0-9-_.!~*'()]` become `%XX`.
pub fn data_url(contents: &[u8]) -> String {
    bootplane_butane::dataurl::escaped(contents)
}

/// What goes in `machine.env`. Values are restricted to characters that need no quoting
/// in either a POSIX shell or a systemd `EnvironmentFile`.
pub fn machine_env(server_url: &str, machine: &str, credential: &str) -> String {
    format!("BOOTPLANE_URL={server_url}\nBOOTPLANE_MACHINE={machine}\nBOOTPLANE_CREDENTIAL={credential}\n")
}

/// Where a machine keeps the CA of bootplane's HTTPS listener; bootplane's scripts pin
/// it for every call to bootplane.
pub const CA_PATH: &str = "/etc/bootplane/ca.crt";

/// The Ignition fragment that trusts `ca_pem`: for Ignition's own fetches
/// (`ignition.security.tls.certificateAuthorities`) and, as [`CA_PATH`], for the scripts.
pub fn trust_ca(ca_pem: &str) -> Value {
    json!({
        "ignition": { "security": { "tls": { "certificateAuthorities": [{ "source": data_url(ca_pem.as_bytes()) }] } } },
        "storage": { "files": [{ "path": CA_PATH, "mode": 0o644, "overwrite": true, "contents": { "source": data_url(ca_pem.as_bytes()) } }] }
    })
}

/// True when `v` can stand unquoted in `machine.env`.
pub fn env_safe(v: &str) -> bool {
    v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@%+=,?".contains(&b))
}

/// A minimal Ignition config carrying the hostname and `machine.env`.
pub fn base_config(spec_version: &str, hostname: &str, machine_env: &str) -> Value {
    json!({
        "ignition": { "version": spec_version },
        "storage": {
            "files": [
                {
                    "path": "/etc/hostname",
                    "overwrite": true,
                    "contents": { "compression": "", "source": data_url(format!("{hostname}\n").as_bytes()) },
                    "mode": 0o644
                },
                {
                    "path": "/etc/bootplane/machine.env",
                    "overwrite": true,
                    "contents": { "compression": "", "source": data_url(machine_env.as_bytes()) },
                    "mode": 0o600
                }
            ]
        }
    })
}

/// Spec used when neither the machine nor its bundle names a Butane version: 3.3.0 is
/// understood by every Ignition since 2021 (and by Debian's `ignition-validate`).
pub const DEFAULT_SPEC: &str = "3.3.0";

/// The Ignition spec version the real Butane emits for `variant version`, e.g.
/// `fcos 1.5.0` -> `3.4.0` (Butane's docs: "Specification versions" table).
pub fn spec_for_butane(variant_version: &str) -> Option<&'static str> {
    let mut it = variant_version.split_whitespace();
    let (variant, version) = (it.next()?, it.next()?);
    Some(match (variant, version) {
        ("fcos", "1.0.0") => "3.0.0",
        ("fcos", "1.1.0") => "3.1.0",
        ("fcos", "1.2.0") | ("fcos", "1.3.0") => "3.2.0",
        ("fcos", "1.4.0") => "3.3.0",
        ("fcos", "1.5.0") => "3.4.0",
        ("fcos", "1.6.0") => "3.5.0",
        ("flatcar", "1.0.0") => "3.3.0",
        ("flatcar", "1.1.0") => "3.4.0",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_url_matches_butane_escaping() {
        assert_eq!(data_url(b"xyzzy"), "data:,xyzzy");
        assert_eq!(data_url(b"a b\n"), "data:,a%20b%0A");
        assert_eq!(data_url(b""), "data:,");
    }

    #[test]
    fn env_values_need_no_quoting() {
        assert!(env_safe("http://10.20.0.10:8080"));
        assert!(!env_safe("a b") && !env_safe("$(x)") && !env_safe("a'b"));
    }
}
