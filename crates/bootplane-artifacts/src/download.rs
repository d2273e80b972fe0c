//! Resumable, verified downloads into the content store. A download goes to
//! `artifacts/tmp/<hash of url>.part`; when interrupted, the next attempt (in this run,
//! or the next `bundle fetch`) asks for the rest with `Range: bytes=N-` and appends if
//! the server answers 206. Nothing enters the store until the whole file matches its
//! published digest; a mismatch deletes the partial file.

use crate::content::{ContentError, ContentStore, Stored};
use sha2::{Digest, Sha256, Sha512};
use std::io::{Read, Write};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Sha256(String),
    Sha512(String),
    /// Nothing published to check against (a generic URL without a digest).
    Unverified,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{url}: {detail}")]
    Http { url: String, detail: String },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("{url}: {what} is {got}, expected {want}; the download was deleted")]
    Mismatch { url: String, what: &'static str, want: String, got: String },
}

/// `url` without the user and password of its authority (`https://***@host/path`), for
/// messages, events and answers; an `@` later in the path stays.
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_string(),
    }
}

/// Reports progress: a bar on a terminal, a line per file otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: String,
}

impl Progress {
    pub fn new(label: &str, total: Option<u64>) -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg:24} {bar:40} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(label.to_string());
            Progress { bar: Some(bar), label: label.into() }
        } else {
            eprintln!("fetching {label} ({} bytes)", total.map(|t| t.to_string()).unwrap_or_else(|| "size unknown".into()));
            Progress { bar: None, label: label.into() }
        }
    }
    fn set(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }
    fn done(&self, size: u64) {
        match &self.bar {
            Some(b) => b.finish(),
            None => eprintln!("fetched {} ({size} bytes, verified)", self.label),
        }
    }
}

fn part_path(store: &ContentStore, url: &str) -> std::path::PathBuf {
    store.tmp_dir().join(format!("{}.part", &hex::encode(Sha256::digest(url.as_bytes()))[..32]))
}

struct Hashers {
    s256: Sha256,
    s512: Option<Sha512>,
}

impl Hashers {
    fn update(&mut self, b: &[u8]) {
        self.s256.update(b);
        if let Some(h) = &mut self.s512 {
            h.update(b);
        }
    }
}

fn rehash(path: &Path, h: &mut Hashers) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

/// One attempt: resumes the partial file if there is one.
fn attempt(agent: &ureq::Agent, store: &ContentStore, url: &str, expected: &Expected, label: &str) -> Result<Stored, DownloadError> {
    let http = |detail: String| DownloadError::Http { url: url.to_string(), detail };
    let tmp = store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(|e| http(format!("cannot create {}: {e}", tmp.display())))?;
    let part = part_path(store, url);
    let mut h = Hashers { s256: Sha256::new(), s512: matches!(expected, Expected::Sha512(_)).then(Sha512::new) };
    let have = if part.exists() { rehash(&part, &mut h).map_err(|e| http(e.to_string()))? } else { 0 };
    let mut req = agent.get(url);
    if have > 0 {
        req = req.set("Range", &format!("bytes={have}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        // The partial file is already complete.
        Err(ureq::Error::Status(416, _)) if have > 0 => return finish(store, url, &part, h, have, expected),
        Err(ureq::Error::Status(code, r)) => return Err(http(format!("HTTP {code} {}", r.status_text()))),
        Err(e) => return Err(http(e.to_string())),
    };
    let resumed = have > 0 && resp.status() == 206;
    let (mut out, mut written) = if resumed {
        (std::fs::OpenOptions::new().append(true).open(&part).map_err(|e| http(e.to_string()))?, have)
    } else {
        // The server ignored the Range (or this is a fresh start): begin again.
        h = Hashers { s256: Sha256::new(), s512: matches!(expected, Expected::Sha512(_)).then(Sha512::new) };
        (std::fs::File::create(&part).map_err(|e| http(e.to_string()))?, 0)
    };
    let total = resp.header("Content-Length").and_then(|l| l.parse::<u64>().ok()).map(|l| l + written);
    let progress = Progress::new(label, total);
    progress.set(written);
    let mut body = resp.into_reader();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = body.read(&mut buf).map_err(|e| http(format!("connection lost after {written} bytes: {e} (run again to resume)")))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| http(e.to_string()))?;
        h.update(&buf[..n]);
        written += n as u64;
        progress.set(written);
    }
    out.sync_all().map_err(|e| http(e.to_string()))?;
    if let Some(t) = total {
        if written != t {
            return Err(http(format!("got {written} of {t} bytes (run again to resume)")));
        }
    }
    let stored = finish(store, url, &part, h, written, expected)?;
    progress.done(stored.size);
    Ok(stored)
}

fn finish(store: &ContentStore, url: &str, part: &Path, h: Hashers, size: u64, expected: &Expected) -> Result<Stored, DownloadError> {
    let sha256 = hex::encode(h.s256.finalize());
    let check = |what: &'static str, want: &str, got: String| {
        if want.eq_ignore_ascii_case(&got) {
            Ok(())
        } else {
            let _ = std::fs::remove_file(part);
            Err(DownloadError::Mismatch { url: url.to_string(), what, want: want.to_string(), got })
        }
    };
    match expected {
        Expected::Sha256(want) => check("sha256", want, sha256.clone())?,
        Expected::Sha512(want) => check("sha512", want, hex::encode(h.s512.expect("created for sha512").finalize()))?,
        Expected::Unverified => {}
    }
    if store.has(&sha256) {
        let _ = std::fs::remove_file(part);
    } else {
        store.adopt(part, &sha256)?;
    }
    Ok(Stored { sha256, size })
}

/// Downloads `url` into the store, resuming and retrying up to `attempts` times.
pub fn fetch(agent: &ureq::Agent, store: &ContentStore, url: &str, expected: &Expected, label: &str, attempts: u32) -> Result<Stored, DownloadError> {
    let mut last = None;
    for _ in 0..attempts.max(1) {
        match attempt(agent, store, url, expected, label) {
            Ok(s) => return Ok(s),
            // A wrong digest will not get better by retrying.
            Err(e @ DownloadError::Mismatch { .. }) => return Err(e),
            Err(e) => {
                eprintln!("{label}: {}", e.to_string().replace(url, &redact_url(url)));
                last = Some(e);
            }
        }
    }
    Err(last.expect("at least one attempt"))
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn redaction_removes_only_the_userinfo() {
        assert_eq!(redact_url("https://user:tok@mirror.lab/fcos/k"), "https://***@mirror.lab/fcos/k");
        assert_eq!(redact_url("http://mirror.lab/a@2/kernel"), "http://mirror.lab/a@2/kernel");
        assert_eq!(redact_url("postgres://u:p@db:5432/x"), "postgres://***@db:5432/x");
        assert_eq!(redact_url("no scheme"), "no scheme");
    }
}
