//! The content store: `artifacts/sha256/<aa>/<hash>` under the data directory, written
//! by hashing into a temporary file and renaming it into place, so a file under its
//! hash name is always complete and correct.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{what}: sha256 is {got}, expected {want}; the file is corrupt or not the one published")]
    Mismatch { what: String, want: String, got: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContentError + '_ {
    move |source| ContentError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

/// A file in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
}

pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl ContentStore {
    /// `data_dir/artifacts`.
    pub fn new(data_dir: &Path) -> Self {
        ContentStore { root: data_dir.join("artifacts") }
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where content with this hash lives (whether or not it is there).
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        is_sha256(sha256).then(|| self.root.join("sha256").join(&sha256[..2]).join(sha256))
    }

    pub fn has(&self, sha256: &str) -> bool {
        self.path(sha256).is_some_and(|p| p.is_file())
    }

    /// Moves an already hashed file into place.
    pub fn adopt(&self, tmp: &Path, sha256: &str) -> Result<PathBuf, ContentError> {
        let dest = self.path(sha256).expect("callers pass computed hashes");
        let dir = dest.parent().expect("hash path has a parent");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::rename(tmp, &dest).map_err(io(&dest))?;
        Ok(dest)
    }

    /// Copies `src` into the store, hashing on the way; checks `expected` if given.
    pub fn import(&self, src: &Path, expected: Option<&str>) -> Result<Stored, ContentError> {
        let tmp_dir = self.tmp_dir();
        std::fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
        let mut input = std::fs::File::open(src).map_err(io(src))?;
        let tmp = tmp_dir.join(format!("import-{}-{}", std::process::id(), unique()));
        let mut out = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = input.read(&mut buf).map_err(io(src))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io(&tmp))?;
            size += n as u64;
        }
        out.sync_all().map_err(io(&tmp))?;
        let sha256 = hex::encode(h.finalize());
        if let Some(want) = expected {
            if want != sha256 {
                let _ = std::fs::remove_file(&tmp);
                return Err(ContentError::Mismatch { what: src.display().to_string(), want: want.into(), got: sha256 });
            }
        }
        if self.has(&sha256) {
            let _ = std::fs::remove_file(&tmp);
        } else {
            self.adopt(&tmp, &sha256)?;
        }
        Ok(Stored { sha256, size })
    }

    /// Every hash stored.
    pub fn list(&self) -> Vec<String> {
        let mut out = Vec::new();
        let base = self.root.join("sha256");
        for d in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
                if let Some(name) = f.file_name().to_str().filter(|n| is_sha256(n)) {
                    out.push(name.to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// Removes content not in `keep`, and stale temporary files; returns what went.
    pub fn gc(&self, keep: &HashSet<String>) -> Result<Vec<String>, ContentError> {
        let mut removed = Vec::new();
        for h in self.list() {
            if !keep.contains(&h) {
                let p = self.path(&h).expect("listed hashes are valid");
                std::fs::remove_file(&p).map_err(io(&p))?;
                removed.push(h);
            }
        }
        // Partial downloads are kept for resuming; only imports are throwaway.
        for f in std::fs::read_dir(self.tmp_dir()).into_iter().flatten().flatten() {
            if f.file_name().to_string_lossy().starts_with("import-") {
                let _ = std::fs::remove_file(f.path());
            }
        }
        Ok(removed)
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_verifies_and_dedups() {
        let d = tempfile::tempdir().unwrap();
        let cs = ContentStore::new(d.path());
        let f = d.path().join("kernel");
        std::fs::write(&f, b"hello").unwrap();
        let s = cs.import(&f, None).unwrap();
        assert_eq!(s.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(s.size, 5);
        assert!(cs.has(&s.sha256));
        assert_eq!(cs.import(&f, Some(&s.sha256)).unwrap(), s);
        let e = cs.import(&f, Some(&"0".repeat(64))).unwrap_err();
        assert!(e.to_string().contains("expected 0000"), "{e}");
        assert_eq!(cs.list(), vec![s.sha256.clone()]);
        assert!(cs.gc(&[s.sha256.clone()].into()).unwrap().is_empty());
        assert_eq!(cs.gc(&HashSet::new()).unwrap(), vec![s.sha256.clone()]);
        assert!(!cs.has(&s.sha256));
        assert!(cs.path("../../etc/passwd").is_none());
    }
}
