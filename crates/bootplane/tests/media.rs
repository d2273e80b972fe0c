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
