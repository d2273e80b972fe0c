//! A live ISO with a machine's Ignition embedded: the distribution's own live ISO (Fedora
//! CoreOS `*-live.x86_64.iso`), copied with the config put into its Ignition embed area by
//! coreos-installer's library (`iso ignition embed`), never by a re-implementation of the
//! format. The copy is written beside the output and renamed into place, so a failed
//! write leaves no half image.

use crate::MediaError;
use std::path::Path;

/// Whether this build can write live ISOs (the `live-iso` feature).
pub const AVAILABLE: bool = cfg!(feature = "live-iso");

/// Writes `base` with `ignition` embedded to `out` (which must not exist).
#[cfg(feature = "live-iso")]
pub fn embed_ignition(base: &Path, ignition: &[u8], out: &Path) -> Result<(), MediaError> {
    let dir = tempfile::tempdir().map_err(crate::io("a temporary directory"))?;
    let cfg = dir.path().join("live.ign");
    std::fs::write(&cfg, ignition).map_err(crate::io(cfg.display().to_string()))?;
    let path = |p: &Path| p.to_str().map(str::to_string).ok_or_else(|| MediaError::Live(format!("{}: not a UTF-8 path", p.display())));
    libcoreinst::live::iso_ignition_embed(libcoreinst::cmdline::IsoIgnitionEmbedConfig {
        force: false,
        ignition_file: Some(path(&cfg)?),
        output: Some(path(out)?),
        input: path(base)?,
    })
    .map_err(|e| MediaError::Live(format!("{}: {e:#}", base.display())))
}

/// Without the `live-iso` feature: says how to get it.
#[cfg(not(feature = "live-iso"))]
pub fn embed_ignition(_base: &Path, _ignition: &[u8], _out: &Path) -> Result<(), MediaError> {
    Err(MediaError::Live(
        "this bootplane was built without live ISO support: rebuild with `cargo build --release -p bootplane --features live-iso` \
         (needs libssl-dev libzstd-dev liblzma-dev pkg-config)"
            .into(),
    ))
}
