//! The Butane conformance corpus (`../shared/conformance/butane`, taken from the
//! reference Butane's docs and tests): every success case must produce the expected JSON
//! (values and key order; gzip data URLs compared decompressed), every warn case must
//! warn (so `--strict` fails), every error case must fail. The shared copy lost its
//! symlinks and execute bits; each case is copied to a temporary directory and they are
//! restored from the case's meta.txt, as documented there. Cases bootplane cannot
//! translate yet are listed in `known-gaps.txt` with the reason; a listed case that
//! starts passing fails this test until it is removed from the list.

use base64::Engine;
use serde_json::Value as J;
use std::io::Read;
use std::path::{Path, PathBuf};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        let ty = e.file_type().unwrap();
        // A case's symlink (possibly dangling on purpose) stays a symlink: following it
        // would panic on a dangling one or copy what it points at.
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else if ty.is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
            let mut p = std::fs::metadata(&dest).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o644);
            std::fs::set_permissions(&dest, p).unwrap();
        }
    }
}

/// Restores modes and symlinks that meta.txt's `files_needed:` line documents.
fn restore(meta: &str, files: &Path) {
    let Some(line) = meta.lines().find(|l| l.starts_with("files_needed:")) else { return };
    if line.contains("empty directory") {
        std::fs::create_dir_all(files).unwrap();
    }
    let mut rest = line;
    while let Some(i) = rest.find(" (mode 0o") {
        let before = &rest[..i];
        let name = before.rsplit([' ', ':', ',']).next().unwrap_or("");
        let mode = u32::from_str_radix(&rest[i + 9..i + 12], 8).unwrap();
        let p = files.join(name);
        if p.is_file() {
            let mut perm = std::fs::metadata(&p).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, mode);
            std::fs::set_permissions(&p, perm).unwrap();
        }
        rest = &rest[i + 12..];
    }
    if let Some(links) = line.split("symlinks: ").nth(1) {
        for pair in links.split(", ") {
            if let Some((l, t)) = pair.split_once(" -> ") {
                let p = files.join(l.trim());
                let _ = std::fs::remove_file(&p);
                std::os::unix::fs::symlink(t.trim(), &p).unwrap();
            }
        }
    }
}

/// Replaces gzip data URLs by their decompressed bytes, so flate2's bytes compare equal
/// to Go's.
fn normalise(v: &mut J) {
    match v {
        J::Object(m) => {
            let gz = m.get("compression").and_then(J::as_str) == Some("gzip");
            for (k, x) in m.iter_mut() {
                if gz && k == "source" {
                    if let Some(s) = x.as_str().and_then(|s| s.strip_prefix("data:;base64,")) {
                        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(s) {
                            let mut out = Vec::new();
                            if flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).is_ok() {
                                *x = J::String(format!("gunzipped:{}", base64::engine::general_purpose::STANDARD.encode(out)));
                                continue;
                            }
                        }
                    }
                }
                normalise(x);
            }
        }
        J::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

#[test]
fn conformance_corpus() {
    let root = bootplane_testkit::require_shared!("conformance/butane", "BOOTPLANE_BUTANE_CORPUS");
    let gaps_text = include_str!("known-gaps.txt");
    let gaps: Vec<&str> = gaps_text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).map(|l| l.split_whitespace().next().unwrap()).collect();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.path()).filter(|p| p.join("input.bu").exists()).collect();
    cases.sort();
    assert!(cases.len() >= 230, "corpus has {} cases", cases.len());
    let (mut passed, mut failures, mut gap_hits) = (0, Vec::new(), 0);
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(case, tmp.path());
        let meta = std::fs::read_to_string(case.join("meta.txt")).unwrap_or_default();
        restore(&meta, &tmp.path().join("files"));
        let args = meta.lines().find_map(|l| l.strip_prefix("butane_args:")).unwrap_or("");
        let files_dir = args.contains("--files-dir").then(|| tmp.path().join("files"));
        let input = std::fs::read_to_string(tmp.path().join("input.bu")).unwrap();
        let got = bootplane_butane::translate(&input, &bootplane_butane::Options { files_dir: files_dir.as_deref(), ..Default::default() });
        let problem = if case.join("expect-error.txt").exists() {
            match &got {
                Ok(_) => Some("expected an error, translation succeeded".to_string()),
                Err(_) => None,
            }
        } else {
            let mut want: J = serde_json::from_str(&std::fs::read_to_string(case.join("expected.ign")).unwrap()).unwrap();
            let warn = case.join("expect-warnings.txt").exists();
            match &got {
                Err(f) => Some(format!("failed: {f}")),
                Ok(t) => {
                    let mut have = t.config.clone();
                    normalise(&mut have);
                    normalise(&mut want);
                    if have != want {
                        Some(format!("output differs:\n  got  {have}\n  want {want}"))
                    } else if warn && t.warnings.is_empty() {
                        Some("expected warnings (--strict must fail), got none".into())
                    } else if !warn && !t.warnings.is_empty() {
                        Some(format!("unexpected warnings: {:?}", t.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>()))
                    } else {
                        None
                    }
                }
            }
        };
        let listed = gaps.contains(&name.as_str());
        match (problem, listed) {
            (None, false) => passed += 1,
            (Some(_), true) => gap_hits += 1,
            (None, true) => failures.push(format!("{name}: passes now; remove it from tests/known-gaps.txt")),
            (Some(p), false) => failures.push(format!("{name}: {p}")),
        }
    }
    eprintln!("butane conformance: {passed} passed, {gap_hits} known gaps, {} failed, of {}", failures.len(), cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
