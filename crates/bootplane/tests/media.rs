//! `bootplane media`: the image it writes (read back with xorriso and the EFI partition's
//! FAT), what its scripts say, and every refusal (unknown machine, no bundle, an existing
//! output, bad addresses). Booting the media is `tests/e2e/run` (E2E_ONLY=media).

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const CFG: &str = r#"
server:
  listen: 127.0.0.1:0
  advertise: http://198.18.0.1:8080
tftp:
  enabled: true
  listen: 198.18.0.1:69
dhcp:
  netmask: 255.255.255.0
  router: 198.18.0.254
bundles:
  - name: b
    os: generic
    kernel: { sha256: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" }
    initrd: { sha256: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" }
machines:
  - name: m1
    hostname: m1
    macs: ["52:54:00:e2:00:61"]
    uuid: 4c4c4544-0000-1000-8000-000000000061
    ip: 198.18.0.61
    bundle: b
  - name: nobundle
    hostname: nobundle
    macs: ["52:54:00:e2:00:62"]
"#;

fn media(dir: &Path, args: &[&str]) -> std::process::Output {
    bootplane(dir).arg("media").args(args).output().unwrap()
}

fn tools_present() -> bool {
    let ok = ["/usr/bin/xorriso", "/usr/bin/grub-mkimage", "/usr/lib/shim/shimx64.efi.signed", "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", "/usr/lib/ipxe/ipxe.lkrn"]
        .iter()
        .all(|p| Path::new(p).exists());
    if !ok {
        assert!(std::env::var_os("BOOTPLANE_REQUIRE_NETNS").is_none(), "xorriso, grub-pc-bin, shim-signed, grub-efi-amd64-signed or ipxe missing");
        eprintln!("NOT RUN: needs xorriso, grub-pc-bin, shim-signed, grub-efi-amd64-signed, ipxe");
    }
    ok
}

/// A file of the image's ISO 9660 tree.
fn extract(img: &Path, path: &str, out: &Path) -> String {
    let o = Command::new("xorriso").args(["-osirrox", "on", "-indev"]).arg(img).args(["-extract", path]).arg(out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(out).unwrap_or_default()
}

#[test]
fn a_named_machine_gets_a_hybrid_image_that_identifies_as_it() {
    if !tools_present() {
        return;
    }
    let d = workdir(CFG);
    let img = d.path().join("m1.iso");
    let o = media(d.path(), &["m1", "--format", "iso", "-o", img.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("BIOS and UEFI") && said.contains("DHCP") && said.contains("identifies as m1"), "{said}");
    let script = extract(&img, "/boot/bootplane.ipxe", &d.path().join("s.ipxe"));
    assert!(script.starts_with("#!ipxe\n") && script.contains("\ndhcp || goto failed\n"), "{script}");
    assert!(script.contains("/v1/boot/ipxe?mac=52-54-00-e2-00-61&uuid=4c4c4544-0000-1000-8000-000000000061&"), "{script}");
    let cfg = extract(&img, "/boot/grub/grub.cfg", &d.path().join("grub.cfg"));
    assert!(cfg.contains("linux16 /boot/ipxe.lkrn") && cfg.contains("configfile \"(tftp,198.18.0.1)/bootplane/grub/52:54:00:e2:00:61/${bootplane_uuid}\""), "{cfg}");
    assert_eq!(std::fs::read(d.path().join("lkrn")).ok(), None);
    extract(&img, "/boot/ipxe.lkrn", &d.path().join("lkrn"));
    assert_eq!(std::fs::read(d.path().join("lkrn")).unwrap(), std::fs::read("/usr/lib/ipxe/ipxe.lkrn").unwrap());
    // El Torito entries for BIOS and EFI, and partitions for USB.
    let o = Command::new("xorriso").args(["-indev"]).arg(&img).args(["-report_el_torito", "plain", "-report_system_area", "plain"]).output().unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(report.contains("BIOS") && report.contains("UEFI"), "{report}");
    assert!(report.contains("GPT") || report.contains("MBR"), "{report}");
    // The EFI partition: shim in the removable path, Debian's GRUB beside it.
    let esp = d.path().join("efi.img");
    extract(&img, "/efi.img", &esp);
    let mut f = std::fs::File::open(&esp).unwrap();
    let fs = fatfs::FileSystem::new(&mut f, fatfs::FsOptions::new()).unwrap();
    let read = |p: &str| {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut fs.root_dir().open_file(p).unwrap(), &mut v).unwrap();
        v
    };
    assert_eq!(read("EFI/BOOT/BOOTX64.EFI"), std::fs::read("/usr/lib/shim/shimx64.efi.signed").unwrap());
    assert_eq!(read("EFI/BOOT/grubx64.efi"), std::fs::read("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed").unwrap());
    assert_eq!(String::from_utf8(read("grub/grub.cfg")).unwrap(), cfg);
    assert_eq!(fs.volume_label().trim(), "BPMEDIA");

    // Again without --force: refused, the image untouched; with it: replaced.
    let before = std::fs::metadata(&img).unwrap().modified().unwrap();
    let o = media(d.path(), &["m1", "--format", "iso", "-o", img.to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("exists; pass --force"), "{o:?}");
    assert_eq!(std::fs::metadata(&img).unwrap().modified().unwrap(), before);
    let o = media(d.path(), &["m1", "--format", "usb", "-o", img.to_str().unwrap(), "--force", "--static"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // --static: the machine's ip with dhcp.netmask and dhcp.router.
    let script = extract(&img, "/boot/bootplane.ipxe", &d.path().join("s2.ipxe"));
    assert!(script.contains("set net0/ip 198.18.0.61\nset net0/netmask 255.255.255.0\nset net0/gateway 198.18.0.254\n") && !script.contains("\ndhcp"), "{script}");
}

#[test]
fn any_machine_media_pass_what_the_firmware_reports() {
    if !tools_present() {
        return;
    }
    let d = workdir(CFG);
    let img = d.path().join("any.img");
    let o = media(d.path(), &["--format", "usb", "-o", img.to_str().unwrap(), "--ip", "198.18.0.99/24", "--gateway", "198.18.0.254"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let script = extract(&img, "/boot/bootplane.ipxe", &d.path().join("s.ipxe"));
    assert!(script.contains("?mac=${mac:hexhyp}&uuid=${uuid}&") && script.contains("set net0/ip 198.18.0.99\n"), "{script}");
}

#[test]
fn bad_requests_are_refused_with_what_to_do() {
    let d = workdir(CFG);
    let out = d.path().join("x.img");
    let out = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["nope", "--format", "usb", "-o", out], "no machine named `nope`"),
        (&["nobundle", "--format", "usb", "-o", out], "machine nobundle has no bundle"),
        (&["--format", "usb", "-o", out, "--static"], "name the machine"),
        (&["m1", "--format", "usb", "-o", out, "--ip", "198.18.0.99"], "expected ADDRESS/PREFIX"),
        (&["m1", "--format", "usb", "-o", out, "--ip", "198.18.0.999/24"], "not an IPv4 address"),
        (&["m1", "--format", "usb", "-o", out, "--ip", "198.18.0.9/33"], "prefix must be 1 to 32"),
        (&["m1", "--format", "floppy", "-o", out], "invalid value 'floppy'"),
    ];
    for (args, want) in cases {
        let o = media(d.path(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(!Path::new(out).exists(), "{args:?} wrote an image");
    }
    // A host name in server.advertise: GRUB's TFTP needs an address.
    std::fs::write(d.path().join("bootplane.yaml"), CFG.replace("advertise: http://198.18.0.1:8080", "advertise: http://boot.lab:8080")).unwrap();
    let o = media(d.path(), &["m1", "--format", "usb", "-o", out]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs an IPv4 address, not `boot.lab`"), "{o:?}");
    // An existing output is refused before anything else.
    std::fs::write(out, "keep me").unwrap();
    let o = media(d.path(), &["m1", "--format", "usb", "-o", out]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists; pass --force"), "{o:?}");
    assert_eq!(std::fs::read_to_string(out).unwrap(), "keep me");
}

const LIVE_CFG: &str = r#"
server:
  listen: 127.0.0.1:0
bundles:
  - name: fcos
    os: fcos
    kernel: { sha256: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" }
    initramfs: { sha256: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" }
    rootfs: { sha256: "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc" }
  - name: gen
    os: generic
    kernel: { sha256: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" }
    initrd: { sha256: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" }
machines:
  - name: live1
    hostname: live1
    macs: ["52:54:00:e2:00:71"]
    uuid: 4c4c4544-0000-1000-8000-000000000071
    bundle: fcos
    install_disk: /dev/disk/by-id/virtio-live1
    provision: true
  - name: gen1
    hostname: gen1
    macs: ["52:54:00:e2:00:72"]
    bundle: gen
    install_disk: /dev/disk/by-id/virtio-gen1
    provision: true
"#;

/// `key=value` lines of a `/v1/boot/live` answer.
fn live_answer(text: &str) -> std::collections::HashMap<String, String> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The path of one of bootplane's own absolute URLs.
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest[rest.find('/').unwrap_or(rest.len())..].to_string()
}

/// The live ISO's gate asks the boot decision like any other first stage: install gives
/// the attempt's one-time URLs (its `machine.env` once, the Ignition once), a written disk
/// gives local, an unknown machine quarantine, a bundle coreos-installer cannot install
/// a refusal.
#[test]
fn the_live_iso_gate_takes_the_same_decision_and_one_time_urls() {
    let d = workdir(LIVE_CFG);
    let s = Server::start(d.path());
    assert_eq!(s.get("/v1/boot/live").0, 400, "an answer needs an identity");
    let ask = "/v1/boot/live?mac=52:54:00:e2:00:71&uuid=4c4c4544-0000-1000-8000-000000000071&arch=x86_64&platform=pcbios";
    let (code, body) = s.get(ask);
    assert_eq!(code, 200, "{body}");
    let a = live_answer(&body);
    assert_eq!((a["decision"].as_str(), a["machine"].as_str(), a["dest_device"].as_str()), ("install", "live1", "/dev/disk/by-id/virtio-live1"), "{body}");
    // The stick's answer is plain HTTP: a host that sniffed it gets nothing from elsewhere.
    let o = Command::new("curl").args(["-s", "--interface", "127.0.0.2", "-w", "\n%{http_code}"]).arg(format!("{}{}", s.url, path_of(&a["env_url"]))).output().unwrap();
    let sniffed = String::from_utf8_lossy(&o.stdout);
    assert!(sniffed.ends_with("\n403") && !sniffed.contains("BOOTPLANE_CREDENTIAL"), "{sniffed}");
    let (code, env) = s.get(&path_of(&a["env_url"]));
    assert_eq!(code, 200, "{env}");
    assert!(env.contains("BOOTPLANE_MACHINE=live1\n"), "{env}");
    let cred = env.lines().find_map(|l| l.strip_prefix("BOOTPLANE_CREDENTIAL=")).expect("credential").to_string();
    // The requester's retry after a lost answer gets the same (the claim's rules, one
    // fetch per kind from the answered address, are the installer's: tests/attacks.rs).
    assert_eq!(s.get(&path_of(&a["env_url"])), (200, env.clone()));
    assert_eq!(s.get(&path_of(&a["env_url"]).replace("nonce=", "nonce=0")).0, 403, "a wrong nonce is refused");
    let (code, ign) = s.get(&path_of(&a["ignition_url"]));
    assert_eq!(code, 200, "{ign}");
    assert_eq!(credential_from_ignition(&ign), cred, "the gate and the installed system carry the same credential");
    assert_eq!(s.machine("live1")["state"], "installing");
    let (code, body) = s.post("/v1/machines/live1/report", Some(&cred), r#"{"state":"written"}"#);
    assert_eq!(code, 200, "{body}");
    // The stick is still in the drive: the next boot asks again and is told no.
    let a = live_answer(&s.get(ask).1);
    assert_eq!(a["decision"], "local");
    assert!(a["note"].starts_with("live1 is written"), "{a:?}");
    assert!(!a.contains_key("ignition_url") && !a.contains_key("env_url"), "{a:?}");
    assert_eq!(s.machine("live1")["install_attempts"], 1);

    let a = live_answer(&s.get("/v1/boot/live?mac=52:54:00:e2:00:99&arch=x86_64").1);
    assert_eq!(a["decision"], "quarantine", "{a:?}");
    let a = live_answer(&s.get("/v1/boot/live?mac=52:54:00:e2:00:72&arch=x86_64").1);
    assert_eq!(a["decision"], "misconfigured", "{a:?}");
    assert!(a["note"].contains("fcos bundle is needed"), "{a:?}");
}

/// A minimal CoreOS-shaped live ISO: the Ignition embed area coreos-installer looks for
/// (`coreos/igninfo.json` naming a 256 KiB file of zeros), made with xorriso.
fn coreos_shaped_iso(dir: &Path, with_embed_area: bool) -> std::path::PathBuf {
    let tree = dir.join(if with_embed_area { "iso-tree" } else { "plain-tree" });
    std::fs::create_dir_all(tree.join("images")).unwrap();
    std::fs::create_dir_all(tree.join("coreos")).unwrap();
    std::fs::write(tree.join("images/readme.txt"), "live\n").unwrap();
    if with_embed_area {
        std::fs::write(tree.join("images/ignition.img"), vec![0u8; 256 * 1024]).unwrap();
        std::fs::write(tree.join("coreos/igninfo.json"), r#"{"file": "images/ignition.img"}"#).unwrap();
    }
    let iso = dir.join(if with_embed_area { "base.iso" } else { "plain.iso" });
    let o = Command::new("xorriso").args(["-as", "mkisofs", "-V", "FCOS", "-o"]).arg(&iso).arg(&tree).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    iso
}

/// The config coreos-installer embedded: `images/ignition.img` is an xz cpio holding
/// `config.ign`, read with xorriso, xz and cpio.
fn embedded_config(iso: &Path, work: &Path) -> serde_json::Value {
    let img = work.join("ignition.img");
    let _ = std::fs::remove_file(&img);
    extract(iso, "/images/ignition.img", &img);
    let sh = format!("xz -dc < '{}' 2>/dev/null | cpio -i --quiet --to-stdout config.ign", img.display());
    let o = Command::new("sh").args(["-c", &sh]).output().unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no config.ign in the embed area ({e}): {}", String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn a_live_iso_carries_the_machines_live_ignition_and_no_secret() {
    if !tools_present() {
        return;
    }
    let d = workdir(LIVE_CFG);
    let base = coreos_shaped_iso(d.path(), true);
    let before = std::fs::read(&base).unwrap();
    let out = d.path().join("live1.iso");
    let o = media(d.path(), &["live1", "--format", "live-iso", "--iso", base.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("built without live ISO support") {
        assert!(std::env::var_os("BOOTPLANE_REQUIRE_NETNS").is_none(), "tests/run builds with --features bootplane/live-iso");
        eprintln!("NOT RUN: bootplane built without the live-iso feature");
        return;
    }
    assert!(o.status.success(), "{err}");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("live1's live Ignition") && said.contains("installs only when bootplane says so"), "{said}");
    assert_eq!(std::fs::read(&base).unwrap(), before, "the distribution's ISO is not modified");
    let cfg = embedded_config(&out, d.path());
    let text = cfg.to_string();
    let report = bootplane_butane::ignition::validate(&text);
    assert!(report.iter().all(|e| e.level != bootplane_butane::Level::Error), "{report:?}");
    let files: Vec<&str> = cfg["storage"]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(files.contains(&"/etc/bootplane/gate") && files.contains(&"/etc/coreos/installer.d/40-bootplane-media.yaml"), "{files:?}");
    assert!(!files.contains(&"/etc/bootplane/machine.env"), "no credential on the stick: {files:?}");
    let env = cfg["storage"]["files"].as_array().unwrap().iter().find(|f| f["path"] == "/etc/bootplane/media.env").unwrap();
    let env = data_url_text(env["contents"]["source"].as_str().unwrap());
    assert!(env.contains("BOOTPLANE_MACHINE=live1\nBOOTPLANE_MAC=52:54:00:e2:00:71\nBOOTPLANE_UUID=4c4c4544-0000-1000-8000-000000000071\n"), "{env}");
    // The gate and every script bootplane put on the stick pass shellcheck.
    for f in cfg["storage"]["files"].as_array().unwrap().iter().filter(|f| f["path"].as_str().unwrap().starts_with("/etc/bootplane/") && f["mode"] == 0o700) {
        let script = d.path().join("script.sh");
        std::fs::write(&script, data_url_text(f["contents"]["source"].as_str().unwrap())).unwrap();
        let o = Command::new("shellcheck").arg(&script).output().expect("shellcheck (apt-get install shellcheck)");
        assert!(o.status.success(), "{}: {}", f["path"], String::from_utf8_lossy(&o.stdout));
    }

    // The bundle's own ISO from the content store (as `bundle import` or `serve` put it).
    let files_dir = d.path().join("isofiles");
    std::fs::create_dir_all(&files_dir).unwrap();
    std::fs::copy(&base, files_dir.join("live_iso")).unwrap();
    let o = bootplane(d.path()).args(["bundle", "import"]).arg(&files_dir).args(["--name", "isofiles", "--os", "fcos"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sha = sha256_hex(&before);
    std::fs::write(d.path().join("bootplane.yaml"), LIVE_CFG.replace("    rootfs: { sha256: \"cccc", &format!("    live_iso: {{ sha256: \"{sha}\" }}\n    rootfs: {{ sha256: \"cccc"))).unwrap();
    let o = media(d.path(), &["live1", "--format", "live-iso", "-o", out.to_str().unwrap(), "--force", "--ip", "198.18.7.20/24", "--gateway", "198.18.7.1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = embedded_config(&out, d.path());
    assert!(cfg.to_string().contains("bootplane.nmconnection"), "the static address goes with it");

    // Refusals, each saying what to do; the output never half written.
    let plain = coreos_shaped_iso(d.path(), false);
    let out2 = d.path().join("x.iso");
    let o2 = out2.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--format", "live-iso", "-o", o2], "name the machine"),
        (vec!["gen1", "--format", "live-iso", "-o", o2], "bundle gen is generic"),
        (vec!["live1", "--format", "live-iso", "-o", o2, "--iso", "/nonexistent.iso"], "no such ISO"),
        (vec!["live1", "--format", "live-iso", "-o", o2, "--iso", plain.to_str().unwrap()], "Unrecognized CoreOS ISO image"),
        (vec!["live1", "--format", "live-iso", "-o", out.to_str().unwrap()], "exists; pass --force"),
    ];
    for (args, want) in cases {
        let o = media(d.path(), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(!out2.exists(), "{args:?} wrote an image");
    }
    // A bundle without a live ISO, and no --iso.
    std::fs::write(d.path().join("bootplane.yaml"), LIVE_CFG).unwrap();
    let o = media(d.path(), &["live1", "--format", "live-iso", "-o", o2]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no `live_iso`"), "{o:?}");
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}
