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
