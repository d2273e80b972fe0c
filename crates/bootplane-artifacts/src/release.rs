//! What to download for an OS release. Fedora CoreOS publishes stream metadata
//! (`streams/<stream>.json`: architectures → artifacts → metal → release + formats
//! pxe{kernel,initramfs,rootfs} and raw.xz{disk}, each with location, sha256 and a
//! detached signature). Parsed with local serde types rather than the
//! `coreos-stream-metadata` crate, whose `Platform` omits the `release` field this needs
//! to name the bundle. Flatcar publishes a release directory (`version.txt`, the PXE
//! kernel and cpio, the disk image) with a `.DIGESTS` file per artifact (MD5, SHA1,
//! SHA512 sections); the SHA512 is checked.

use crate::download::Expected;
use bootplane_core::OsKind;
use serde::Deserialize;
use std::collections::HashMap;

pub const FCOS_BASE: &str = "https://builds.coreos.fedoraproject.org";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Bundle role: kernel, initramfs, rootfs, image.
    pub role: &'static str,
    pub url: String,
    pub expected: Expected,
    pub signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePlan {
    pub name: String,
    pub os: OsKind,
    pub arch: String,
    pub files: Vec<PlannedFile>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("stream metadata is not valid JSON in the published format: {0}")]
    Json(String),
    #[error("stream metadata has no architecture {0}; it has: {1}")]
    NoArch(String, String),
    #[error("stream metadata lacks {0}")]
    Missing(String),
    #[error("{0}")]
    Flatcar(String),
}

#[derive(Deserialize)]
struct Stream {
    architectures: HashMap<String, Arch>,
}
#[derive(Deserialize)]
struct Arch {
    artifacts: HashMap<String, Platform>,
}
#[derive(Deserialize)]
struct Platform {
    release: String,
    formats: HashMap<String, HashMap<String, Artifact>>,
}
#[derive(Deserialize)]
struct Artifact {
    location: String,
    sha256: String,
    signature: Option<String>,
}

/// Points a published URL at a mirror: the scheme and host are replaced by `base`.
pub fn rebase(url: &str, base: Option<&str>) -> String {
    let Some(base) = base else { return url.to_string() };
    let path = url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..])).unwrap_or("");
    format!("{}{}", base.trim_end_matches('/'), path)
}

pub fn fcos_stream_url(stream: &str, base: Option<&str>) -> String {
    format!("{}/streams/{stream}.json", base.unwrap_or(FCOS_BASE).trim_end_matches('/'))
}

/// The PXE kernel, initramfs, rootfs and metal image of `arch` in `stream_json`.
pub fn fcos(stream_json: &str, arch: &str, mirror: Option<&str>) -> Result<ReleasePlan, PlanError> {
    let s: Stream = serde_json::from_str(stream_json).map_err(|e| PlanError::Json(e.to_string()))?;
    let a = s.architectures.get(arch).ok_or_else(|| {
        let mut have: Vec<&str> = s.architectures.keys().map(String::as_str).collect();
        have.sort();
        PlanError::NoArch(arch.into(), have.join(", "))
    })?;
    let metal = a.artifacts.get("metal").ok_or_else(|| PlanError::Missing(format!("architectures.{arch}.artifacts.metal")))?;
    let get = |format: &str, file: &str| {
        metal
            .formats
            .get(format)
            .and_then(|f| f.get(file))
            .ok_or_else(|| PlanError::Missing(format!("architectures.{arch}.artifacts.metal.formats.{format}.{file}")))
    };
    let mut files = Vec::new();
    for (role, format, file) in
        [("kernel", "pxe", "kernel"), ("initramfs", "pxe", "initramfs"), ("rootfs", "pxe", "rootfs"), ("image", "raw.xz", "disk")]
    {
        let art = get(format, file)?;
        files.push(PlannedFile {
            role,
            url: rebase(&art.location, mirror),
            expected: Expected::Sha256(art.sha256.to_ascii_lowercase()),
            signature: art.signature.as_deref().map(|s| rebase(s, mirror)),
        });
    }
    Ok(ReleasePlan { name: format!("fcos-{}", metal.release), os: OsKind::Fcos, arch: arch.into(), files })
}

/// Flatcar's release directory URL for a channel and architecture (`amd64`, `arm64`).
pub fn flatcar_base(channel: &str, arch: &str, mirror: Option<&str>) -> String {
    match mirror {
        Some(m) => m.trim_end_matches('/').to_string(),
        None => format!("https://{channel}.release.flatcar-linux.net/{arch}-usr/current"),
    }
}

/// The SHA512 of `file` in a Flatcar `.DIGESTS` text.
pub fn flatcar_sha512(digests: &str, file: &str) -> Option<String> {
    let mut in_sha512 = false;
    for line in digests.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            in_sha512 = t.to_ascii_uppercase().contains("SHA512");
            continue;
        }
        if in_sha512 {
            let mut it = t.split_whitespace();
            if let (Some(h), Some(name)) = (it.next(), it.next()) {
                if name.trim_start_matches('*') == file && h.len() == 128 {
                    return Some(h.to_ascii_lowercase());
                }
            }
        }
    }
    None
}

/// Plans a Flatcar release; `get` fetches small text files (version.txt, .DIGESTS).
pub fn flatcar(base: &str, arch: &str, get: impl Fn(&str) -> Result<String, String>) -> Result<ReleasePlan, PlanError> {
    let version_txt = get(&format!("{base}/version.txt")).map_err(PlanError::Flatcar)?;
    let version = version_txt
        .lines()
        .find_map(|l| l.strip_prefix("FLATCAR_VERSION="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or_else(|| PlanError::Flatcar(format!("{base}/version.txt has no FLATCAR_VERSION=")))?;
    let mut files = Vec::new();
    for (role, file) in [
        ("kernel", "flatcar_production_pxe.vmlinuz"),
        ("initramfs", "flatcar_production_pxe_image.cpio.gz"),
        ("image", "flatcar_production_image.bin.bz2"),
    ] {
        let url = format!("{base}/{file}");
        let digests = get(&format!("{url}.DIGESTS")).map_err(PlanError::Flatcar)?;
        let sha = flatcar_sha512(&digests, file)
            .ok_or_else(|| PlanError::Flatcar(format!("{url}.DIGESTS has no SHA512 for {file}")))?;
        files.push(PlannedFile { role, url, expected: Expected::Sha512(sha), signature: None });
    }
    let arch = match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => other,
    };
    Ok(ReleasePlan { name: format!("flatcar-{version}"), os: OsKind::Flatcar, arch: arch.into(), files })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = r#"{"stream":"stable","metadata":{"last-modified":"2024-05-01T00:00:00Z"},
      "architectures":{"x86_64":{"artifacts":{"metal":{"release":"40.20240416.3.1","formats":{
        "pxe":{"kernel":{"location":"https://builds.coreos.fedoraproject.org/prod/streams/stable/builds/40.20240416.3.1/x86_64/k","signature":"https://builds.coreos.fedoraproject.org/prod/k.sig","sha256":"AA11"},
               "initramfs":{"location":"https://builds.coreos.fedoraproject.org/prod/i","sha256":"bb"},
               "rootfs":{"location":"https://builds.coreos.fedoraproject.org/prod/r","sha256":"cc"}},
        "raw.xz":{"disk":{"location":"https://builds.coreos.fedoraproject.org/prod/d.raw.xz","sha256":"dd","uncompressed-sha256":"ee"}}}}}}}}"#;

    #[test]
    fn fcos_plan_from_stream_metadata() {
        let p = fcos(STREAM, "x86_64", Some("http://mirror.lab:8000/")).unwrap();
        assert_eq!(p.name, "fcos-40.20240416.3.1");
        assert_eq!(p.files.len(), 4);
        assert_eq!(p.files[0].url, "http://mirror.lab:8000/prod/streams/stable/builds/40.20240416.3.1/x86_64/k");
        assert_eq!(p.files[0].expected, Expected::Sha256("aa11".into()));
        assert_eq!(p.files[0].signature.as_deref(), Some("http://mirror.lab:8000/prod/k.sig"));
        assert_eq!(p.files[3].role, "image");
        assert!(matches!(fcos(STREAM, "s390x", None), Err(PlanError::NoArch(_, have)) if have == "x86_64"));
        assert!(matches!(fcos("{", "x86_64", None), Err(PlanError::Json(_))));
        assert!(matches!(fcos(r#"{"architectures":{"x86_64":{"artifacts":{}}}}"#, "x86_64", None), Err(PlanError::Missing(_))));
    }

    #[test]
    fn flatcar_digests() {
        let h = "a".repeat(128);
        let text = format!("# MD5 HASH\nabc  f\n# SHA1 HASH\ndef  f\n# SHA512 HASH\n{h}  flatcar_production_pxe.vmlinuz\n");
        assert_eq!(flatcar_sha512(&text, "flatcar_production_pxe.vmlinuz"), Some(h));
        assert_eq!(flatcar_sha512(&text, "f"), None);
    }
}
