//! Which file a requested name designates. Clients send DOS-style names (`\`), leading
//! slashes and, when hostile, `..`, NUL bytes or names that resolve through a symlink to
//! somewhere outside the root. Every one of those is refused here, before any open.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("empty file name")]
    Empty,
    #[error("file name contains a NUL or control character")]
    Control,
    #[error("file name climbs out of the TFTP root")]
    Traversal,
    #[error("file name is too long")]
    TooLong,
}

/// The name relative to the root, normalised: `\` becomes `/`, leading `/` dropped,
/// `.` components removed. `..` anywhere is refused rather than resolved.
pub fn normalise(name: &str) -> Result<PathBuf, PathError> {
    if name.len() > 1024 {
        return Err(PathError::TooLong);
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(PathError::Control);
    }
    let name = name.replace('\\', "/");
    let mut out = PathBuf::new();
    for c in Path::new(name.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return Err(PathError::Traversal),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(PathError::Empty);
    }
    Ok(out)
}

/// Resolves `rel` under `root` (already canonical), following symlinks, and refuses a
/// result outside `root` unless it is one of `allowed_outside` (or below one of them):
/// Debian's `ipxe` package, for one, links `/usr/lib/ipxe/ipxe.efi` to `/boot/ipxe.efi`.
/// `Ok(None)` means the file does not exist.
pub fn resolve(root: &Path, rel: &Path, allowed_outside: &[PathBuf]) -> Result<Option<PathBuf>, PathError> {
    let full = root.join(rel);
    match std::fs::canonicalize(&full) {
        Ok(real) if real.starts_with(root) || allowed_outside.iter().any(|a| real.starts_with(a)) => Ok(Some(real)),
        Ok(_) => Err(PathError::Traversal),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalise("/ipxe.efi").unwrap(), PathBuf::from("ipxe.efi"));
        assert_eq!(normalise("\\boot\\.\\x.efi").unwrap(), PathBuf::from("boot/x.efi"));
        assert_eq!(normalise("a//b").unwrap(), PathBuf::from("a/b"));
        for bad in ["../etc/passwd", "a/../../b", "..\\x", "a\0b", "", "/", "a\nb"] {
            assert!(normalise(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(d.path().join("secret"), "x").unwrap();
        std::fs::write(root.join("ok"), "x").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink("ok", root.join("inside")).unwrap();
        let root = root.canonicalize().unwrap();
        assert!(resolve(&root, Path::new("ok"), &[]).unwrap().is_some());
        assert!(resolve(&root, Path::new("inside"), &[]).unwrap().is_some());
        assert_eq!(resolve(&root, Path::new("escape"), &[]), Err(PathError::Traversal));
        assert_eq!(resolve(&root, Path::new("missing"), &[]), Ok(None));
        let allowed = [d.path().canonicalize().unwrap().join("secret")];
        assert!(resolve(&root, Path::new("escape"), &allowed).unwrap().is_some());
    }
}
