//! TFTP inside `bootplane serve`: real tftp-hpa client, first-stage files and generated
//! pxelinux.cfg answers from the same decision as /v1/boot/ipxe, events per request.

mod common;
use common::*;
use std::process::Command;

fn tftp_get(addr: std::net::SocketAddr, remote: &str, local: &std::path::Path) -> bool {
    let o = Command::new("tftp")
        .args(["-m", "binary", &addr.ip().to_string(), &addr.port().to_string(), "-c", "get", remote])
        .arg(local)
        .output()
        .expect("tftp-hpa client");
    // tftp-hpa prints server errors on stdout or stderr and may still exit 0.
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    o.status.success() && !said.contains("Error") && !said.contains("error")
}

#[test]
fn tftp_serves_ipxe_and_pxelinux_from_the_boot_decision() {
    let cfg = CONFIG.replace("server:\n", "tftp:\n  enabled: true\n  listen: 127.0.0.1:0\nserver:\n");
    let d = workdir(&cfg);
    let s = Server::start(d.path());
    let t = s.tftp.expect("TFTP address in the log");
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();

    // node1 is in provision: its MAC's pxelinux.cfg is an installer.
    let f = out.join("node1.cfg");
    assert!(tftp_get(t, "pxelinux.cfg/01-52-54-00-12-34-56", &f));
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains("KERNEL http://mirror.test/vmlinuz") && text.contains("APPEND console=ttyS0"), "{text}");
    // node3 is ready: local boot.
    let f = out.join("node3.cfg");
    assert!(tftp_get(t, "pxelinux.cfg/01-52-54-00-12-34-58", &f));
    assert!(std::fs::read_to_string(&f).unwrap().contains("LOCALBOOT 0"));
    // Unknown MAC and IP-prefix names: not found, so PXELINUX moves on; default: local.
    assert!(!tftp_get(t, "pxelinux.cfg/01-02-00-00-00-00-01", &out.join("unknown.cfg")));
    assert!(!tftp_get(t, "pxelinux.cfg/7F000001", &out.join("ip.cfg")));
    assert!(tftp_get(t, "pxelinux.cfg/default", &out.join("default.cfg")));
    assert!(std::fs::read_to_string(out.join("default.cfg")).unwrap().contains("LOCALBOOT 0"));

    // First-stage files, byte-identical.
    for f in ["ipxe.efi", "undionly.kpxe"] {
        let got = out.join(f);
        assert!(tftp_get(t, f, &got), "{f}");
        assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(format!("/usr/lib/ipxe/{f}")).unwrap(), "{f}");
    }
    assert!(!tftp_get(t, "../../etc/passwd", &out.join("passwd")));
    // The same loaders over HTTP, for UEFI HTTP boot.
    let (code, body) = s.get_bytes("/boot/ipxe.efi");
    assert_eq!(code, 200);
    assert_eq!(body, std::fs::read("/usr/lib/ipxe/ipxe.efi").unwrap());
    assert_eq!(s.get("/boot/..%2F..%2Fetc%2Fpasswd").0, 403);
    assert_eq!(s.get("/boot/nothing.efi").0, 404);

    std::thread::sleep(std::time::Duration::from_millis(400));
    let (_, ev) = s.admin("GET", "/v1/events?limit=1000");
    let ev: serde_json::Value = serde_json::from_str(&ev).unwrap();
    let ev = ev.as_array().unwrap();
    assert!(ev.iter().any(|e| e["kind"] == "tftp.refused" && e["detail"]["file"] == "../../etc/passwd"), "{ev:?}");
    assert!(ev.iter().any(|e| e["kind"] == "tftp.not_found"), "{ev:?}");
    // The address was last seen as node3 (its pxelinux lookup), so the file reads that
    // followed are tied to it and `machines show` tells where its boot got to.
    let shown = s.machine("node3");
    assert!(shown["events"].as_array().unwrap().iter().any(|e| e["kind"] == "tftp.read" && e["detail"]["file"] == "undionly.kpxe"), "{shown}");
}

/// The Secure Boot chain's files and configs, as GRUB and shim ask for them (real
/// tftp-hpa client): signed loaders byte-identical over TFTP and HTTP, GRUB's entry
/// config, the per-machine config from the boot decision (install over TFTP with the
/// machine's nonce, local, quarantine), bundle files under `artifacts/`, hostile names.
#[test]
fn the_shim_chain_serves_signed_loaders_and_grub_configs_from_the_decision() {
    let (shim, grub) = ("/usr/lib/shim/shimx64.efi.signed", "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed");
    if !std::path::Path::new(shim).exists() || !std::path::Path::new(grub).exists() {
        assert!(std::env::var_os("BOOTPLANE_REQUIRE_NETNS").is_none(), "shim-signed and grub-efi-amd64-signed are missing");
        eprintln!("NOT RUN: needs Debian's shim-signed and grub-efi-amd64-signed");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let files = d.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("kernel"), vec![7u8; 300_000]).unwrap();
    std::fs::write(files.join("initrd"), vec![9u8; 5_000]).unwrap();
    let o = bootplane(d.path()).args(["bundle", "import", files.to_str().unwrap(), "--name", "os1", "--os", "generic", "--data-dir", "data", "--args", "console=ttyS0 bootplane.config={{ ignition_url }}"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // os2 carries its own signed loaders (as an FCOS bundle carries Fedora's).
    std::fs::copy(shim, files.join("shim")).unwrap();
    std::fs::copy(grub, files.join("grub")).unwrap();
    let o = bootplane(d.path()).args(["bundle", "import", files.to_str().unwrap(), "--name", "os2", "--os", "generic", "--data-dir", "data"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = r#"
server:
  listen: 127.0.0.1:0
  advertise: http://198.18.0.1:8080
tftp:
  enabled: true
  listen: 127.0.0.1:0
"#;
    // The machines name a bundle only the store knows (imported): `apply` resolves it.
    let machines = r#"
machines:
  - name: sb1
    macs: ["52:54:00:00:5b:01"]
    bundle: os1
    loader: shim
    provision: true
  - name: sb2
    macs: ["52:54:00:00:5b:02"]
    bundle: os1
    loader: shim
"#;
    std::fs::write(d.path().join("bootplane.yaml"), cfg).unwrap();
    std::fs::write(d.path().join("machines.yaml"), machines).unwrap();
    let s = Server::start_with(d.path(), &["--config", "bootplane.yaml", "--data-dir", "data"]);
    let o = bootplane(d.path()).args(["apply", "-f", "machines.yaml", "--data-dir", "data"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = s.tftp.expect("TFTP address in the log");
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // atftp: tftp-hpa's `get` reads `a:b` in a remote name as host `a`, and GRUB's names
    // carry the MAC's colons.
    let fetch = |name: &str| -> Option<Vec<u8>> {
        let f = out.join(name.replace(['/', ':'], "_"));
        let o = Command::new("atftp")
            .args(["--option", "blksize 1024", "-g", "-r", name, "-l"])
            .arg(&f)
            .args([&t.ip().to_string(), &t.port().to_string()])
            .output()
            .expect("atftp client");
        o.status.success().then(|| std::fs::read(&f).unwrap_or_else(|e| panic!("{name}: {e}")))
    };

    for (name, file) in [("shimx64.efi", shim), ("grubx64.efi", grub)] {
        assert_eq!(fetch(name).as_deref(), Some(std::fs::read(file).unwrap().as_slice()), "{name} over TFTP");
        let (code, body) = s.get_bytes(&format!("/boot/{name}"));
        assert_eq!((code, body), (200, std::fs::read(file).unwrap()), "{name} over HTTP");
    }
    // Shim asks for its second stage beside itself as `<dir>/` + `\grubx64.efi`.
    assert_eq!(s.get_bytes("/boot//grubx64.efi"), (200, std::fs::read(grub).unwrap()));
    assert_eq!(s.get("/boot//..%2F..%2Fetc%2Fpasswd").0, 403);
    let entry = String::from_utf8(fetch("/grub/grub.cfg").unwrap()).unwrap();
    assert!(entry.contains("configfile \"($root)/bootplane/grub/${net_default_mac}/${bootplane_uuid}\""), "{entry}");

    // sb1 is to be installed: kernel and initrd from bootplane's TFTP, the nonce'd config URL.
    let c = String::from_utf8(fetch("/bootplane/grub/52:54:00:00:5b:01/00000000-0000-0000-0000-000000000000").unwrap()).unwrap();
    assert!(c.contains("linux ($root)/artifacts/os1@1/kernel "), "{c}");
    assert!(c.contains("initrd ($root)/artifacts/os1@1/initrd\n"), "{c}");
    assert!(c.contains("/v1/machines/sb1/ignition?nonce="), "{c}");
    // Those names are the bundle's files, byte for byte.
    assert_eq!(fetch("/artifacts/os1@1/kernel").unwrap(), vec![7u8; 300_000]);
    assert_eq!(fetch("artifacts/os1/initrd").unwrap(), vec![9u8; 5_000]);
    assert!(fetch("artifacts/os1/image").is_none());
    assert!(fetch("artifacts/nope/kernel").is_none());
    // sb2 is ready: local boot; an unknown MAC: quarantine, both leaving for the disk.
    let c = String::from_utf8(fetch("bootplane/grub/52:54:00:00:5b:02").unwrap()).unwrap();
    assert!(c.contains("sb2 is ready: booting local disk") && c.contains("chainloader") && !c.contains("linux "), "{c}");
    let c = String::from_utf8(fetch("bootplane/grub/52:54:00:00:5b:99").unwrap()).unwrap();
    assert!(c.contains("QUARANTINE") && c.contains("observed mac=52:54:00:00:5b:99") && !c.contains("linux "), "{c}");
    // A bundle's own loaders, under the names shim and GRUB ask for, with GRUB's entry
    // config beside them; a bundle without them has none.
    for (name, file) in [("shimx64.efi", shim), ("grubx64.efi", grub)] {
        assert_eq!(fetch(&format!("artifacts/os2@1/{name}")).as_deref(), Some(std::fs::read(file).unwrap().as_slice()), "{name} of os2");
        assert_eq!(s.get_bytes(&format!("/artifacts/os2@1/{name}")), (200, std::fs::read(file).unwrap()), "{name} of os2 over HTTP");
        assert!(fetch(&format!("artifacts/os1@1/{name}")).is_none(), "os1 has no {name}");
    }
    assert_eq!(fetch("artifacts/os2@1/grub.cfg").unwrap(), entry.as_bytes());
    assert_eq!(fetch("artifacts/os2@1/grub/x86_64-efi/grub.cfg").unwrap(), entry.as_bytes());
    // Hostile and malformed names: refused or not found, never a file outside.
    for bad in ["bootplane/grub/../../../etc/passwd", "bootplane/grub/not-a-mac", "bootplane/grub/52:54:00:00:5b:01/zz", "artifacts/../secret.key", "artifacts/os1/../../secret.key"] {
        assert!(fetch(bad).is_none(), "{bad}");
    }

    std::thread::sleep(std::time::Duration::from_millis(400));
    let (_, ev) = s.admin("GET", "/v1/events?machine=sb1&limit=1000");
    let ev: serde_json::Value = serde_json::from_str(&ev).unwrap();
    let decisions: Vec<&str> = ev.as_array().unwrap().iter().filter(|e| e["kind"] == "boot.script").map(|e| e["detail"]["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["install"], "{ev}");
    let (_, ev) = s.admin("GET", "/v1/events?limit=1000");
    assert!(ev.contains("\"discovered-52540000" ) || ev.contains("52:54:00:00:5b:99"), "the unknown machine is recorded: {ev}");
}
