//! HTTPS for what carries secrets (configs, `/join`, reports, the admin API): the site
//! CA bootplane creates in `<data>/tls/` on first start (or the operator's certificate
//! and key), a server certificate for the names machines use, and the acceptor the
//! HTTPS listener hands connections to. Machines get the CA in their config and pin it
//! for every later call. Firmware and iPXE keep plain HTTP for what they need (boot
//! scripts, kernels), which carry no reusable secret (see docs/security.md).

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::path::Path;
use std::sync::Arc;

/// What the HTTPS listener serves with, and the CA machines are given.
pub struct Identity {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// PEM of the CA machines must trust (the site CA, or the operator's chain).
    pub ca_pem: String,
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bootplane site CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    Ok(p)
}

/// The site CA in `dir` (created on first use) and a fresh server certificate for
/// `names` (DNS names or IP addresses) signed by it.
pub fn site_identity(dir: &Path, names: &[String]) -> anyhow::Result<Identity> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (key_path, crt_path) = (dir.join("ca.key"), dir.join("ca.crt"));
    let ca_key = match std::fs::read_to_string(&key_path) {
        Ok(pem) => KeyPair::from_pem(&pem).with_context(|| format!("{}: not a private key", key_path.display()))?,
        Err(_) => {
            let k = KeyPair::generate()?;
            write_private(&key_path, &k.serialize_pem())?;
            k
        }
    };
    // Re-issuing from the same parameters and key gives the same issuer name and key
    // identifier, so what it signs chains to the ca.crt written the first time.
    let ca = ca_params()?.self_signed(&ca_key)?;
    if !crt_path.exists() {
        std::fs::write(&crt_path, ca.pem())?;
    }
    let ca_pem = std::fs::read_to_string(&crt_path)?;
    let mut p = CertificateParams::new(names.to_vec())?;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "bootplane".into()));
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &ca, &ca_key)?;
    std::fs::write(dir.join("server.crt"), cert.pem())?;
    acceptor_from_pem(&format!("{}{}", cert.pem(), ca_pem), &key.serialize_pem(), ca_pem)
}

/// The operator's own certificate chain and key (PEM files); machines are given the
/// chain's last certificate (its root, or the CA that issued it) to trust.
pub fn operator_identity(cert_file: &Path, key_file: &Path) -> anyhow::Result<Identity> {
    let chain = std::fs::read_to_string(cert_file).with_context(|| format!("reading {}", cert_file.display()))?;
    let key = std::fs::read_to_string(key_file).with_context(|| format!("reading {}", key_file.display()))?;
    let last = chain.rfind("-----BEGIN CERTIFICATE-----").map(|i| chain[i..].to_string()).unwrap_or_default();
    acceptor_from_pem(&chain, &key, last)
}

fn acceptor_from_pem(chain: &str, key: &str, ca_pem: String) -> anyhow::Result<Identity> {
    let certs = rustls_pemfile::certs(&mut chain.as_bytes()).collect::<Result<Vec<_>, _>>().context("certificate PEM")?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in the PEM");
    let key = rustls_pemfile::private_key(&mut key.as_bytes()).context("key PEM")?.context("no private key in the PEM")?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Identity { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)), ca_pem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_ca_is_created_once_and_keeps_signing() {
        let d = tempfile::tempdir().unwrap();
        let first = site_identity(d.path(), &["127.0.0.1".into(), "bootplane.lab".into()]).unwrap();
        let again = site_identity(d.path(), &["127.0.0.1".into()]).unwrap();
        assert_eq!(first.ca_pem, again.ca_pem, "the CA machines pinned stays the same");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(d.path().join("ca.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
