//! Real TFTP clients (tftp-hpa's `tftp`, `atftp`) against the server: byte-identical
//! transfers with and without options, refusals, and a transfer through a lossy link
//! (netem in a namespace of the test's own).

use bootplane_tftp::server::RootOnly;
use bootplane_tftp::{TftpConfig, TftpServer, TransferEvent};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const IPXE: &str = "/usr/lib/ipxe";

fn sha(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

struct Running {
    addr: SocketAddr,
    events: Arc<Mutex<Vec<TransferEvent>>>,
}

async fn start(root: &Path, listen: &str) -> Running {
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let mut cfg = TftpConfig::new(listen.parse().unwrap(), root.to_path_buf());
    // As bootplane's default `tftp.allow_symlinks_to`: Debian links ipxe.efi to /boot.
    cfg.allowed_outside = vec!["/boot/ipxe.efi".into(), "/boot/ipxe.lkrn".into()];
    let server = TftpServer::new(cfg, Arc::new(RootOnly), Arc::new(move |e| ev.lock().unwrap().push(e))).unwrap();
    let sock = server.bind().await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(server.run(sock));
    Running { addr, events }
}

fn out_path(d: &tempfile::TempDir, name: &str) -> PathBuf {
    d.path().join(name)
}

fn tftp_hpa(addr: SocketAddr, remote: &str, local: &Path) -> std::process::Output {
    Command::new("tftp")
        .args(["-m", "binary", &addr.ip().to_string(), &addr.port().to_string(), "-c", "get", remote])
        .arg(local)
        .output()
        .expect("tftp-hpa client (apt-get install tftp-hpa)")
}

fn atftp(addr: SocketAddr, remote: &str, local: &Path, options: &[&str]) -> Command {
    let mut c = Command::new("atftp");
    for o in options {
        c.args(["--option", o]);
    }
    c.args(["-g", "-r", remote, "-l"]).arg(local).arg(addr.ip().to_string()).arg(addr.port().to_string());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_fetches_boot_files_byte_identical() {
    let s = start(Path::new(IPXE), "127.0.0.1:0").await;
    let d = tempfile::tempdir().unwrap();
    for f in ["ipxe.efi", "undionly.kpxe"] {
        let out = out_path(&d, f);
        let o = tftp_hpa(s.addr, f, &out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(sha(&out), sha(&Path::new(IPXE).join(f)), "{f}");
    }
    assert!(s.events.lock().unwrap().iter().any(|e| matches!(e, TransferEvent::Served { file, .. } if file == "undionly.kpxe")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atftp_with_and_without_options() {
    let s = start(Path::new(IPXE), "127.0.0.1:0").await;
    let d = tempfile::tempdir().unwrap();
    let sets: &[&[&str]] = &[
        &[],
        &["blksize 1468", "tsize 0"],
        &["blksize 1428", "windowsize 8", "timeout 2"],
        &["blksize 8"],
        &["windowsize 64", "blksize 8192"],
    ];
    for (i, opts) in sets.iter().enumerate() {
        for f in ["ipxe.efi", "undionly.kpxe"] {
            // 8-byte blocks of a 1 MiB file are 130k round trips: prove the option on
            // the small file only.
            if opts.contains(&"blksize 8") && f == "ipxe.efi" {
                continue;
            }
            let out = out_path(&d, &format!("{i}-{f}"));
            let o = atftp(s.addr, f, &out, opts).output().expect("atftp (apt-get install atftp)");
            assert!(o.status.success(), "{opts:?} {f}: {}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(sha(&out), sha(&Path::new(IPXE).join(f)), "{opts:?} {f}");
        }
    }
    let ev = s.events.lock().unwrap();
    assert!(ev.iter().any(|e| matches!(e, TransferEvent::Served { windowsize: 8, blksize: 1428, .. })), "{ev:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_are_refused_and_recorded() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(d.path().join("secret"), "do not serve").unwrap();
    std::fs::write(root.join("ok.txt"), "fine").unwrap();
    std::os::unix::fs::symlink(d.path().join("secret"), root.join("escape")).unwrap();
    let s = start(&root, "127.0.0.1:0").await;
    for name in ["../secret", "escape", "a/../../secret", "..\\secret"] {
        let out = d.path().join("got");
        let _ = std::fs::remove_file(&out);
        let o = atftp(s.addr, name, &out, &[]).output().unwrap();
        assert!(!o.status.success(), "{name} was served");
        assert_ne!(std::fs::read_to_string(&out).unwrap_or_default(), "do not serve");
    }
    // An absolute name is taken relative to the root, as tftpd-hpa does with -s.
    let o = atftp(s.addr, "/ok.txt", &d.path().join("abs"), &[]).output().unwrap();
    assert!(o.status.success());
    // Writes are refused.
    let o = Command::new("tftp").args(["127.0.0.1", &s.addr.port().to_string(), "-c", "put"]).arg(root.join("ok.txt")).arg("new.txt").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("read-only") || !root.join("new.txt").exists());
    let ev = s.events.lock().unwrap();
    let refused = ev.iter().filter(|e| matches!(e, TransferEvent::Refused { .. })).count();
    assert!(refused >= 4, "{ev:?}");
    assert!(ev.iter().any(|e| matches!(e, TransferEvent::Refused { file, .. } if file == "escape")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_survive_packet_loss() {
    bootplane_testkit::require_netns!();
    let ns = bootplane_testkit::Netns::new("tftp");
    ns.loss(5);
    let s = start(Path::new(IPXE), &format!("{}:0", ns.host_ip)).await;
    let d = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("undionly.kpxe", &[]),
        ("undionly.kpxe", &["blksize 1428", "windowsize 8", "tsize 0"]),
    ];
    let fetch = |f: &str, opts: &[&str]| {
        let out = out_path(&d, f);
        let mut args: Vec<String> = vec!["atftp".into(), "--tftp-timeout".into(), "1".into()];
        for o in opts.iter() {
            args.push("--option".into());
            args.push(o.to_string());
        }
        args.extend(["-g".into(), "-r".into(), f.to_string(), "-l".into(), out.display().to_string(), s.addr.ip().to_string(), s.addr.port().to_string()]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        // atftp gives up after a few lost packets in a row; a real firmware retries the
        // whole boot. Allow five attempts, and require a byte-identical result.
        let mut said = Vec::new();
        for _ in 0..5 {
            let o = ns.cmd(&argv).output().unwrap();
            if o.status.success() && sha(&out) == sha(&Path::new(IPXE).join(f)) {
                return;
            }
            said.push(String::from_utf8_lossy(&o.stderr).to_string());
            eprintln!("ATTEMPT FAILED {f}: {}", said.last().unwrap().lines().last().unwrap_or(""));
        }
        panic!("{f} {opts:?} did not arrive intact through 5% loss in 5 tries: {said:?} events: {:?}", s.events.lock().unwrap());
    };
    for (f, opts) in cases {
        fetch(f, opts);
    }
    let retransmits = || -> u32 {
        let ev = s.events.lock().unwrap();
        ev.iter().map(|e| if let TransferEvent::Served { retransmits, .. } = e { *retransmits } else { 0 }).sum()
    };
    // A 52-packet windowed transfer crosses 5% loss untouched about one time in fifteen;
    // more transfers (at most ten) make "no retransmission at all" a real failure.
    for _ in 0..10 {
        if retransmits() > 0 {
            break;
        }
        fetch(cases[1].0, cases[1].1);
    }
    assert!(retransmits() > 0, "5% loss must have cost retransmissions: {:?}", s.events.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_declining_the_oack_is_reported_as_declined() {
    use bootplane_tftp::packet::Packet;
    // What UEFI PXE does to learn a file's size: RRQ with tsize, then ERROR 8 to the OACK.
    let s = start(Path::new(IPXE), "127.0.0.1:0").await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rrq = Packet::Rrq { filename: "undionly.kpxe".into(), mode: "octet".into(), options: vec![("tsize".into(), "0".into())] };
    sock.send_to(&rrq.encode(), s.addr).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).await.unwrap();
    let size = std::fs::metadata(Path::new(IPXE).join("undionly.kpxe")).unwrap().len().to_string();
    assert_eq!(Packet::parse(&buf[..n]).unwrap(), Packet::Oack { options: vec![("tsize".into(), size)] });
    let err = Packet::Error { code: 8, message: "User aborted the transfer".into() };
    sock.send_to(&err.encode(), from).await.unwrap();
    for _ in 0..50 {
        if s.events.lock().unwrap().iter().any(|e| matches!(e, TransferEvent::Declined { code: 8, file, .. } if file == "undionly.kpxe")) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no Declined event: {:?}", s.events.lock().unwrap());
}
