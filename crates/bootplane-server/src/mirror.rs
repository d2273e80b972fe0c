//! Local copies of URL artifacts. A bundle file given by `url` and `sha256` is fetched
//! into the content store by bootplane-artifacts' resumable downloader, which keeps
//! nothing that does not match the digest, and machines are sent to bootplane's copy
//! (`/artifacts/NAME@REV/ROLE`), so they only ever receive the file the bundle names.
//! `proxy: false` opts a file out (machines then use its URL, unverified). Runs on a
//! thread of its own: the downloader is blocking, and a slow mirror must not hold the
//! async workers. Each failure is an `artifact.failed` event, once per file and cause.

use crate::Shared;
use bootplane_artifacts::download::{self, Expected};
use bootplane_core::model::{Artifact, Bundle};
use bootplane_store::{BatchItem, NewEvent};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

/// The files of `bundles` bootplane must hold copies of and does not yet.
pub fn missing(bundles: &[Bundle], has: impl Fn(&str) -> bool) -> Vec<(String, &'static str, Artifact)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for b in bundles {
        for (role, a) in b.artifacts() {
            let Some(sha) = a.sha256.as_deref() else { continue };
            if a.url.is_some() && a.served_locally() && !has(sha) && seen.insert(sha.to_string()) {
                out.push((b.pinned_name(), role, a.clone()));
            }
        }
    }
    out
}

/// Starts the copier: a pass now, then one every `interval` (bundles applied while the
/// server runs are picked up by the next pass).
pub fn start(s: Shared, interval: Duration) {
    let handle = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new().name("artifact-mirror".into()).spawn(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .build();
        let mut reported = HashSet::new();
        loop {
            pass(&s, &handle, &agent, &mut reported);
            std::thread::sleep(interval);
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the artifact copier: {e}");
    }
}

fn pass(s: &Shared, handle: &tokio::runtime::Handle, agent: &ureq::Agent, reported: &mut HashSet<String>) {
    let Some(content) = s.content.get() else { return };
    let mut bundles = match handle.block_on(s.store.bundles()) {
        Ok(b) => b,
        Err(e) => return tracing::warn!("artifact copier: {e}"),
    };
    bundles.extend(handle.block_on(s.store.bundle_history()).unwrap_or_default());
    for (bundle, role, a) in missing(&bundles, |h| content.has(h)) {
        let (url, sha) = (a.url.clone().unwrap_or_default(), a.sha256.clone().unwrap_or_default());
        let label = format!("{bundle}/{role}");
        // A mirror's credentials stay out of logs and events.
        let shown = download::redact_url(&url);
        let event = match download::fetch(agent, content, &url, &Expected::Sha256(sha.clone()), &label, 3) {
            Ok(stored) if a.size.is_some_and(|n| n != stored.size) => {
                let why = format!("{shown} matches its sha256 but has {} bytes, the bundle says {}; fix the bundle's size", stored.size, a.size.unwrap_or(0));
                reported.insert(format!("{sha} size")).then(|| ("artifact.failed", json!({ "bundle": bundle, "role": role, "reason": why })))
            }
            Ok(stored) => {
                tracing::info!("fetched {label} from {shown} ({} bytes, sha256 verified)", stored.size);
                Some(("artifact.fetched", json!({ "bundle": bundle, "role": role, "size": stored.size })))
            }
            Err(e) => {
                let why = e.to_string().replace(&url, &shown);
                tracing::warn!("cannot copy {label}: {why}");
                reported.insert(format!("{sha} {why}")).then(|| ("artifact.failed", json!({ "bundle": bundle, "role": role, "reason": why })))
            }
        };
        if let Some((kind, detail)) = event {
            handle.block_on(s.sink.push(BatchItem::Event(NewEvent::new(None, kind, None, detail))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootplane_core::model::OsKind;

    #[test]
    fn only_verifiable_url_files_not_yet_held_are_copied() {
        let h = |c: char| c.to_string().repeat(64);
        let art = |url: Option<&str>, sha: Option<String>, proxy: Option<bool>| Some(Artifact { url: url.map(Into::into), sha256: sha, proxy, ..Default::default() });
        let b = Bundle {
            kernel: art(Some("http://m/k"), Some(h('a')), None),
            initrd: art(Some("http://m/i"), Some(h('b')), Some(false)),
            rootfs: art(Some("http://m/r"), None, None),
            image: art(None, Some(h('c')), None),
            k3s: art(Some("http://m/k3s"), Some(h('d')), None),
            revision: 3,
            ..Bundle::new("os", OsKind::Generic, "x86_64")
        };
        let got = missing(std::slice::from_ref(&b), |sha| sha == h('d'));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].0.as_str(), got[0].1), ("os@3", "kernel"));
        assert!(missing(&[b], |_| true).is_empty());
    }
}
