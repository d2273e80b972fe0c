//! Bundles end to end: fetch from a local HTTP mirror the test runs (stream metadata in
//! the published format), resume after a cut connection, refuse a wrong checksum, gc
//! safety, and Range/HEAD/ETag against the served artifacts with real curl.

mod common;
use common::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A minimal HTTP/1.1 file server with Range support. `cut` maps a path to a byte count:
/// the first GET of that path is cut after that many body bytes.
struct Mirror {
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

fn mirror(files: HashMap<String, Vec<u8>>, cut: HashMap<String, usize>) -> Mirror {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let files = Arc::new(files);
    let cut = Arc::new(Mutex::new(cut));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let (files, cut, log) = (files.clone(), cut.clone(), log2.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let mut range = None;
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        if h == "\r\n" || h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                            range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                        }
                    }
                    log.lock().unwrap().push(format!("{path} range={range:?}"));
                    let Some(body) = files.get(&path) else {
                        let _ = w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                        continue;
                    };
                    let start = range.unwrap_or(0).min(body.len());
                    let part = &body[start..];
                    let status = if range.is_some() { "206 Partial Content" } else { "200 OK" };
                    let _ = write!(w, "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n", part.len());
                    if let Some(n) = cut.lock().unwrap().remove(&path) {
                        let _ = w.write_all(&part[..n.min(part.len())]);
                        return; // connection cut mid-body
                    }
                    let _ = w.write_all(part);
                }
            });
        }
    });
    Mirror { url, log }
}

fn blob(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

const RELEASE: &str = "40.20240416.3.1";

/// Files of a fake FCOS release and its stream metadata, in the published shape, with
/// locations on the real host (the mirror is reached through --base-url rewriting).
fn fcos_release(kernel_sha_override: Option<&str>) -> HashMap<String, Vec<u8>> {
    let base = format!("/prod/streams/stable/builds/{RELEASE}/x86_64");
    let files = [
        ("kernel", blob(300_000, 1)),
        ("initramfs.img", blob(500_000, 2)),
        ("rootfs.img", blob(2_000_000, 3)),
        ("metal.x86_64.raw.xz", blob(1_000_000, 4)),
    ];
    let mut out: HashMap<String, Vec<u8>> = HashMap::new();
    let art = |name: &str, data: &[u8], override_sha: Option<&str>| {
        serde_json::json!({
            "location": format!("https://builds.coreos.fedoraproject.org{base}/fedora-coreos-{RELEASE}-live-{name}"),
            "signature": format!("https://builds.coreos.fedoraproject.org{base}/fedora-coreos-{RELEASE}-live-{name}.sig"),
            "sha256": override_sha.map(str::to_string).unwrap_or_else(|| sha(data)),
        })
    };
    let stream = serde_json::json!({
        "stream": "stable",
        "metadata": { "last-modified": "2024-05-01T12:00:00Z", "generator": "fedora-coreos-stream-generator v0.4.0" },
        "architectures": { "x86_64": { "artifacts": { "metal": {
            "release": RELEASE,
            "formats": {
                "pxe": {
                    "kernel": art("kernel", &files[0].1, kernel_sha_override),
                    "initramfs": art("initramfs.img", &files[1].1, None),
                    "rootfs": art("rootfs.img", &files[2].1, None)
                },
                "raw.xz": { "disk": art("metal.x86_64.raw.xz", &files[3].1, None) }
            }
        } } } }
    });
    out.insert("/streams/stable.json".into(), serde_json::to_vec(&stream).unwrap());
    for (name, data) in files {
        let path = format!("{base}/fedora-coreos-{RELEASE}-live-{name}");
        out.insert(format!("{path}.sig"), format!("detached signature of {name}").into_bytes());
        out.insert(path, data);
    }
    out
}

fn bp(dir: &Path, args: &[&str]) -> std::process::Output {
    bootplane(dir).env("BOOTPLANE_DATA_DIR", dir.join("data")).args(args).output().unwrap()
}

#[test]
fn fetch_fcos_from_a_mirror_resuming_a_cut_download() {
    let d = tempfile::tempdir().unwrap();
    let files = fcos_release(None);
    let rootfs_path = files.keys().find(|k| k.ends_with("rootfs.img")).unwrap().clone();
    let rootfs = files[&rootfs_path].clone();
    let sig = files.iter().find(|(k, _)| k.ends_with("metal.x86_64.raw.xz.sig")).map(|(_, v)| v.clone()).unwrap();
    let m = mirror(files, HashMap::from([(rootfs_path.clone(), 700_000)]));
    let o = bp(d.path(), &["bundle", "fetch", "fcos", "--stream", "stable", "--arch", "x86_64", "--base-url", &m.url]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("fcos-{RELEASE} recorded")));
    let log = m.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.starts_with(&rootfs_path) && l.ends_with("range=Some(700000)")), "resumed with Range: {log:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("connection lost"), "{}", String::from_utf8_lossy(&o.stderr));

    let o = bp(d.path(), &["bundle", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let b = &list[0];
    assert_eq!(b["name"], format!("fcos-{RELEASE}"));
    assert_eq!(b["os"], "fcos");
    assert_eq!(b["local"], true);
    assert_eq!(b["rootfs"]["sha256"], sha(&rootfs));
    assert_eq!(b["rootfs"]["size"], rootfs.len());
    // The image's signature is kept beside it, where coreos-installer asks for it; no
    // other signature is downloaded without a keyring to check it with.
    assert_eq!(b["image_sig"]["sha256"], sha(&sig));
    let sigs: Vec<_> = log.iter().filter(|l| l.contains(".sig ")).collect();
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    std::fs::write(d.path().join("bootplane.yaml"), "server: { listen: 127.0.0.1:0 }\n").unwrap();
    let s = Server::start_with(d.path(), &["--config", "bootplane.yaml", "--data-dir", "data"]);
    assert_eq!(s.get_bytes(&format!("/artifacts/fcos-{RELEASE}/image.sig")), (200, sig));
    s.stop();
    // Fetching again downloads nothing.
    let before = m.log.lock().unwrap().len();
    let o = bp(d.path(), &["bundle", "fetch", "fcos", "--base-url", &m.url]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("already in the store"));
    assert_eq!(m.log.lock().unwrap().len(), before + 1, "only the stream metadata was read");
}

#[test]
fn a_wrong_checksum_never_becomes_a_bundle() {
    let d = tempfile::tempdir().unwrap();
    let m = mirror(fcos_release(Some(&"ab".repeat(32))), HashMap::new());
    let o = bp(d.path(), &["bundle", "fetch", "fcos", "--base-url", &m.url]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sha256 is") && err.contains("expected abab") && err.contains("nothing was recorded"), "{err}");
    let o = bp(d.path(), &["bundle", "list", "--json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(), serde_json::json!([]));
    // Nothing of the bad file is kept, not even a partial download.
    let tmp: Vec<_> = std::fs::read_dir(d.path().join("data/artifacts/tmp")).map(|r| r.flatten().collect()).unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn gc_never_removes_a_bundle_in_use() {
    let d = tempfile::tempdir().unwrap();
    for (name, seed) in [("used", 7u8), ("unused", 8u8)] {
        let dir = d.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("kernel"), blob(10_000, seed)).unwrap();
        std::fs::write(dir.join("initrd"), blob(20_000, seed + 100)).unwrap();
        let o = bp(d.path(), &["bundle", "import", dir.to_str().unwrap(), "--name", name, "--os", "generic"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // The machine refers to a bundle only the store knows (imported): apply resolves it.
    std::fs::write(d.path().join("m.yaml"), "machines:\n  - {name: m1, hostname: m1, macs: [\"52:54:00:00:00:01\"], bundle: used}\n").unwrap();
    let o = bp(d.path(), &["apply", "-f", "m.yaml", "--data-dir", d.path().join("data").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files_before = count_files(&d.path().join("data/artifacts/sha256"));
    assert_eq!(files_before, 4);
    let o = bp(d.path(), &["bundle", "gc", "--prune-bundles"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("removed bundle unused") && !out.contains("removed bundle used"), "{out}");
    assert_eq!(count_files(&d.path().join("data/artifacts/sha256")), 2);
    let list: serde_json::Value = serde_json::from_slice(&bp(d.path(), &["bundle", "list", "--json"]).stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["local"], true);
    assert_eq!(list[0]["machines"], 1);
}

fn count_files(p: &Path) -> usize {
    walk(p).len()
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let o = std::process::Command::new("curl").args(["-s", "-S", "-D", "-"]).args(args).output().expect("curl");
    let all = o.stdout;
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(all.len());
    (String::from_utf8_lossy(&all[..split]).to_string(), all[split..].to_vec())
}

#[test]
fn served_artifacts_honour_range_head_and_etag() {
    let d = workdir("server: { listen: 127.0.0.1:0 }\n");
    let kernel = blob(3_000_000, 9);
    let src = d.path().join("rel");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("kernel"), &kernel).unwrap();
    std::fs::write(src.join("initramfs"), blob(1000, 1)).unwrap();
    let o = bootplane(d.path()).args(["bundle", "import", "rel", "--name", "r1", "--os", "generic"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = Server::start(d.path());
    let url = format!("{}/artifacts/r1/kernel", s.url);
    let etag = format!("\"{}\"", sha(&kernel));

    let (h, body) = curl(&[&url]);
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert!(h.contains(&format!("Content-Length: {}", kernel.len())) && h.contains(&format!("ETag: {etag}")), "{h:?} want {etag}");
    assert_eq!(sha(&body), sha(&kernel));

    let (h, body) = curl(&["-r", "100-199", &url]);
    assert!(h.starts_with("HTTP/1.1 206") && h.contains("Content-Range: bytes 100-199/3000000"), "{h}");
    assert_eq!(body, kernel[100..200]);
    let (_, body) = curl(&["-r", "-10", &url]);
    assert_eq!(body, kernel[kernel.len() - 10..]);
    // HEAD: headers only (curl -I prints them itself, so no -D here).
    let o = std::process::Command::new("curl").args(["-s", "-I", &url]).output().unwrap();
    let h = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(h.starts_with("HTTP/1.1 200") && h.contains("Accept-Ranges: bytes") && h.ends_with("\r\n\r\n"), "{h}");
    let (h, _) = curl(&["-H", &format!("If-None-Match: {etag}"), &url]);
    assert!(h.starts_with("HTTP/1.1 304"), "{h}");
    let (h, _) = curl(&["-r", "5000000-", &url]);
    assert!(h.starts_with("HTTP/1.1 416") && h.contains("bytes */3000000"), "{h}");
    // Resume a download with curl -C.
    let part = d.path().join("partial");
    std::fs::write(&part, &kernel[..1_234_567]).unwrap();
    let o = std::process::Command::new("curl").args(["-s", "-C", "-", "-o"]).arg(&part).arg(&url).output().unwrap();
    assert!(o.status.success());
    assert_eq!(sha(&std::fs::read(&part).unwrap()), sha(&kernel));
    // The same answers through the ordinary handler: a keep-alive connection whose first
    // request is not an artifact goes to hyper for good.
    let (h, _) = curl(&[&format!("{}/healthz", s.url), "-r", "0-9", &url]);
    assert!(h.contains("HTTP/1.1 200"), "{h}");
    let o = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{size_download}\n", &format!("{}/healthz", s.url), "-r", "0-9", &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200 3\n206 10\n");
    // Unknown bundle or role, hostile paths.
    assert_eq!(s.get("/artifacts/nope/kernel").0, 404);
    assert_eq!(s.get("/artifacts/r1/passwd").0, 404);
    assert_eq!(s.get("/artifacts/..%2F..%2Fetc/passwd").0, 404);
}

fn gpg(home: &Path, args: &[&str]) -> std::process::Output {
    let o = std::process::Command::new("gpg").env("GNUPGHOME", home).args(["--batch", "--quiet", "--yes"]).args(args).output().expect("gpg");
    assert!(o.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

#[test]
fn published_signatures_are_checked_with_a_keyring() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    gpg(&home, &["--passphrase", "", "--quick-gen-key", "bootplane test <test@bootplane.invalid>", "ed25519", "sign", "never"]);
    let keyring = d.path().join("keyring.gpg");
    std::fs::write(&keyring, gpg(&home, &["--export"]).stdout).unwrap();
    let mut files = fcos_release(None);
    let names: Vec<String> = files.keys().filter(|k| !k.ends_with(".json")).cloned().collect();
    let sign = |data: &[u8]| {
        let f = d.path().join("to-sign");
        std::fs::write(&f, data).unwrap();
        gpg(&home, &["--detach-sign", "--output", d.path().join("sig").to_str().unwrap(), f.to_str().unwrap()]);
        std::fs::read(d.path().join("sig")).unwrap()
    };
    for n in &names {
        let sig = sign(&files[n]);
        files.insert(format!("{n}.sig"), sig);
    }
    let m = mirror(files.clone(), HashMap::new());
    let o = bp(d.path(), &["bundle", "fetch", "fcos", "--base-url", &m.url, "--keyring", keyring.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stderr).matches("signature verified").count(), 4);

    // A signature over other bytes is refused, and no bundle is recorded.
    let d2 = tempfile::tempdir().unwrap();
    let kernel = names.iter().find(|n| n.ends_with("-kernel")).unwrap();
    files.insert(format!("{kernel}.sig"), sign(b"something else"));
    let m = mirror(files, HashMap::new());
    let o = bp(d2.path(), &["bundle", "fetch", "fcos", "--base-url", &m.url, "--keyring", keyring.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("signature does not verify"), "{}", String::from_utf8_lossy(&o.stderr));
    let list: serde_json::Value = serde_json::from_slice(&bp(d2.path(), &["bundle", "list", "--json"]).stdout).unwrap();
    assert_eq!(list, serde_json::json!([]));
}

#[test]
fn fetch_flatcar_and_plain_urls() {
    use sha2::Sha512;
    let d = tempfile::tempdir().unwrap();
    let dir = "/stable/amd64-usr/current";
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    files.insert(format!("{dir}/version.txt"), b"FLATCAR_BUILD=3815\nFLATCAR_VERSION=3815.2.0\nFLATCAR_VERSION_ID=3815.2.0\n".to_vec());
    for (i, f) in ["flatcar_production_pxe.vmlinuz", "flatcar_production_pxe_image.cpio.gz", "flatcar_production_image.bin.bz2"].iter().enumerate() {
        let data = blob(100_000 + i * 1000, 20 + i as u8);
        let digests = format!("# MD5 HASH\n00  {f}\n# SHA512 HASH\n{}  {f}\n", hex::encode(Sha512::digest(&data)));
        files.insert(format!("{dir}/{f}.DIGESTS"), digests.into_bytes());
        files.insert(format!("{dir}/{f}"), data);
    }
    let kernel = blob(5000, 99);
    files.insert("/plain/vmlinuz".into(), kernel.clone());
    files.insert("/plain/initrd.img".into(), blob(7000, 98));
    let m = mirror(files, HashMap::new());
    let o = bp(d.path(), &["bundle", "fetch", "flatcar", "--channel", "stable", "--arch", "amd64", "--base-url", &format!("{}{dir}", m.url)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = bp(
        d.path(),
        &[
            "bundle", "fetch", "urls", "--name", "rescue-1", "--os", "generic",
            "--file", &format!("kernel={}/plain/vmlinuz#{}", m.url, sha(&kernel)),
            "--file", &format!("initrd={}/plain/initrd.img", m.url),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list: serde_json::Value = serde_json::from_slice(&bp(d.path(), &["bundle", "list", "--json"]).stdout).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["flatcar-3815.2.0", "rescue-1"]);
    assert_eq!(list[0]["os"], "flatcar");
    assert_eq!(list[0]["arch"], "x86_64");
    assert!(list[0]["image"]["sha256"].is_string());
    // A wrong digest in the URL list is refused.
    let o = bp(d.path(), &["bundle", "fetch", "urls", "--name", "bad", "--os", "generic", "--file", &format!("kernel={}/plain/vmlinuz#{}", m.url, "0".repeat(64))]);
    assert!(!o.status.success());
}

#[test]
fn a_redefined_bundle_keeps_serving_the_revision_an_install_started_with() {
    let d = workdir("server: { listen: 127.0.0.1:0 }\n");
    let import = |seed: u8| {
        let src = d.path().join(format!("rel{seed}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("kernel"), blob(50_000, seed)).unwrap();
        std::fs::write(src.join("initrd"), blob(1000, 1)).unwrap();
        let args = "console=ttyS0 ignition.config.url={{ ignition_url }}";
        bp(d.path(), &["bundle", "import", src.to_str().unwrap(), "--name", "os1", "--os", "generic", "--args", args])
    };
    assert!(import(1).status.success());
    let s = Server::start(d.path());
    std::fs::write(d.path().join("m.yaml"), "machines:\n  - {name: m1, hostname: m1, macs: [\"52:54:00:00:00:01\"], bundle: os1, provision: true}\n").unwrap();
    let o = bp(d.path(), &["apply", "-f", "m.yaml"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (script, code, _) = s.boot_and_fetch("m1", "52-54-00-00-00-01");
    assert_eq!(code, 200);
    assert!(script.contains("/artifacts/os1@1/kernel"), "{script}");
    assert_eq!(s.machine("m1")["state"], "installing");

    // Redefined mid-install (a new kernel): a new revision, the old files stay served.
    let o = import(2);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("new revision"), "{o:?}");
    let (_, old) = curl(&[&format!("{}/artifacts/os1@1/kernel", s.url)]);
    let (_, new) = curl(&[&format!("{}/artifacts/os1@2/kernel", s.url)]);
    let (_, current) = curl(&[&format!("{}/artifacts/os1/kernel", s.url)]);
    assert_eq!((sha(&old), sha(&new), sha(&current)), (sha(&blob(50_000, 1)), sha(&blob(50_000, 2)), sha(&blob(50_000, 2))));
    // gc keeps the files of the earlier revision.
    assert!(bp(d.path(), &["bundle", "gc"]).status.success());
    assert_eq!(sha(&curl(&[&format!("{}/artifacts/os1@1/kernel", s.url)]).1), sha(&blob(50_000, 1)));
    // The next install takes the new revision.
    let (script, _, _) = s.boot_and_fetch("m1", "52-54-00-00-00-01");
    assert!(script.contains("/artifacts/os1@2/kernel"), "{script}");
    let list: serde_json::Value = serde_json::from_slice(&bp(d.path(), &["bundle", "list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["revision"], 2);

    // rm refuses a bundle in use, then removes it with its history.
    let o = bp(d.path(), &["bundle", "rm", "os1"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("used by machine(s) m1"), "{o:?}");
    std::fs::write(d.path().join("m.yaml"), "machines:\n  - {name: m1, hostname: m1, macs: [\"52:54:00:00:00:01\"]}\n").unwrap();
    assert!(bp(d.path(), &["apply", "-f", "m.yaml"]).status.success());
    assert!(bp(d.path(), &["bundle", "rm", "os1"]).status.success());
    assert_eq!(curl(&[&format!("{}/artifacts/os1@1/kernel", s.url)]).0.lines().next().unwrap_or(""), "HTTP/1.1 404 Not Found");
}

#[test]
fn url_files_with_a_digest_are_copied_checked_and_served_by_bootplane() {
    let kernel = blob(200_000, 3);
    let files = HashMap::from([("/k".to_string(), kernel.clone()), ("/bad".to_string(), blob(1000, 4)), ("/i".to_string(), blob(500, 5))]);
    let m = mirror(files, HashMap::new());
    let config = format!(
        "server: {{ listen: 127.0.0.1:0 }}\nbundles:\n  - name: net\n    os: generic\n    kernel: {{ url: {u}/k, sha256: {k} }}\n    initrd: {{ url: {u}/i, sha256: {i}, proxy: false }}\n    args: console=ttyS0\n\
         \x20 - name: wrong\n    os: generic\n    kernel: {{ url: {c}/bad, sha256: {w} }}\n\
         machines:\n  - {{name: m1, hostname: m1, macs: [\"52:54:00:00:00:01\"], bundle: net, provision: true}}\n",
        u = m.url,
        k = sha(&kernel),
        i = sha(&blob(500, 5)),
        w = sha(b"not what /bad holds"),
        // A mirror behind basic auth: its password must never be shown (finding of issue 15).
        c = m.url.replace("http://", "http://fetcher:s3cr3t-mirror-pass@"),
    );
    let d = workdir(&config);
    let s = Server::start(d.path());
    let (code, script) = s.get("/v1/boot/ipxe?mac=52:54:00:00:00:01&arch=x86_64");
    assert_eq!(code, 200);
    // The digest-checked kernel from bootplane; the `proxy: false` initrd from its URL.
    assert!(script.contains(&format!("kernel {}/artifacts/net@1/kernel", s.url)), "{script}");
    assert!(script.contains(&format!("{}/i", m.url)), "{script}");
    let url = format!("{}/artifacts/net@1/kernel", s.url);
    let mut served = Vec::new();
    for _ in 0..100 {
        let (h, body) = curl(&[&url]);
        if h.starts_with("HTTP/1.1 200") {
            served = body;
            break;
        }
        assert!(h.starts_with("HTTP/1.1 503"), "before the copy is done: {h}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(sha(&served), sha(&kernel), "the copy was never served");
    // A file that does not match its digest is never served, and an event says why.
    let (h, body) = curl(&[&format!("{}/artifacts/wrong@1/kernel", s.url)]);
    assert!(h.starts_with("HTTP/1.1 503"), "{h}");
    assert!(!String::from_utf8_lossy(&body).contains("s3cr3t") && String::from_utf8_lossy(&body).contains("***@"), "{body:?}");
    let mut failed = String::new();
    for _ in 0..50 {
        let (_, ev) = s.admin("GET", "/v1/events?limit=100");
        if ev.contains("artifact.failed") {
            failed = ev;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(failed.contains("sha256") && failed.contains("wrong@1"), "{failed}");
    assert!(!failed.contains("s3cr3t"), "the mirror's password is in an event: {failed}");
    let log = s.stop();
    assert!(!log.iter().any(|l| l.contains("s3cr3t")), "the mirror's password is in the server log: {log:?}");
}
