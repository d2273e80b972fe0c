//! DHCP inside `bootplane serve`, against real clients (`udhcpc`, `dhclient`) and beside
//! a real dnsmasq, in network namespaces the test makes: the server is bound to the
//! namespace bridge only. Client scripts here only write down what the client was
//! given; the DHCP exchange itself is the real clients'.

mod common;
use bootplane_testkit::{require_netns, Host, Lan};
use common::*;
use std::path::Path;

fn config(lan: &Lan, mode: &str) -> String {
    let p = &lan.prefix;
    format!(
        r#"
server:
  listen: 0.0.0.0:0
  advertise: http://{p}.1:8080
dhcp:
  mode: {mode}
  interface: br0
  range: {p}.50-{p}.60
  netmask: 255.255.255.0
  router: {p}.1
  dns: [{p}.1]
  domain: lab.internal
  lease_time: 10m
bundles:
  - {{ name: g, os: generic, kernel: {{ url: http://m/k }}, initrd: {{ url: http://m/i }} }}
machines:
  - name: reserved1
    hostname: reserved1.lab.internal
    macs: ["02:00:00:00:01:05"]
    ip: {p}.20
    bundle: g
"#
    )
}

/// Runs busybox udhcpc once on the host; returns the variables its script saw.
fn udhcpc(h: &Host, dir: &Path, extra: &[&str]) -> Option<std::collections::HashMap<String, String>> {
    let out = dir.join(format!("udhcpc-{}.env", h.name));
    let _ = std::fs::remove_file(&out);
    let script = dir.join("udhcpc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in bound|renew) printf 'ip=%s\\nsubnet=%s\\nrouter=%s\\nhostname=%s\\nboot_file=%s\\nsiaddr=%s\\ndomain=%s\\n' \"$ip\" \"$subnet\" \"$router\" \"$hostname\" \"$boot_file\" \"$siaddr\" \"$domain\" > {};; esac\n",
            out.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    let script_s = script.display().to_string();
    let mut args = vec!["udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "4", "-T", "1", "-A", "1", "-s", &script_s];
    args.extend_from_slice(extra);
    let o = h.cmd(&args).output().expect("udhcpc (apt-get install udhcpc)");
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = o;
    Some(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// Runs ISC dhclient once (it stays in the background, inside the namespace).
fn dhclient(h: &Host, dir: &Path) -> Option<String> {
    let out = dir.join(format!("dhclient-{}.ip", h.name));
    let _ = std::fs::remove_file(&out);
    let script = dir.join(format!("dhclient-{}.sh", h.name));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$reason\" in BOUND|RENEW|REBOOT|REBIND) echo \"$new_ip_address\" > {};; esac\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    let lf = dir.join(format!("dhclient-{}.leases", h.name));
    let pf = dir.join(format!("dhclient-{}.pid", h.name));
    let o = h
        .cmd(&["dhclient", "-1", "-sf", &script.display().to_string(), "-lf", &lf.display().to_string(), "-pf", &pf.display().to_string(), "eth0"])
        .output()
        .expect("dhclient (apt-get install isc-dhcp-client)");
    if let Ok(pid) = std::fs::read_to_string(&pf) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    let _ = o;
    std::fs::read_to_string(&out).ok().map(|s| s.trim().to_string())
}

fn in_pool(lan: &Lan, ip: &str) -> bool {
    ip.strip_prefix(&format!("{}.", lan.prefix)).and_then(|l| l.parse::<u8>().ok()).is_some_and(|n| (50..=60).contains(&n))
}

#[test]
fn full_mode_serves_real_clients_and_keeps_leases_across_restart() {
    require_netns!();
    let lan = Lan::new("dfull");
    let d = workdir(&config(&lan, "full"));
    let s = Server::start_in_netns(&lan.srv.name, &lan.srv.ns_ip, d.path());
    let h1 = lan.add_host("h1", "02:00:00:00:01:01");
    let h2 = lan.add_host("h2", "02:00:00:00:01:02");
    let h3 = lan.add_host("h3", "02:00:00:00:01:05");

    let a1 = udhcpc(&h1, d.path(), &[]).expect("udhcpc got a lease");
    assert!(in_pool(&lan, &a1["ip"]), "{a1:?}");
    assert_eq!(a1["subnet"], "255.255.255.0");
    assert_eq!(a1["router"], format!("{}.1", lan.prefix));
    assert_eq!(a1["boot_file"], "", "an ordinary host gets no boot file");
    let ip2 = dhclient(&h2, d.path()).expect("dhclient got a lease");
    assert!(in_pool(&lan, &ip2), "{ip2}");
    assert_ne!(a1["ip"], ip2, "two clients, two addresses");
    let a3 = udhcpc(&h3, d.path(), &[]).expect("reserved client got a lease");
    assert_eq!(a3["ip"], format!("{}.20", lan.prefix), "reservation honoured");
    assert_eq!(a3["hostname"], "reserved1");

    s.stop();
    let s = Server::start_in_netns(&lan.srv.name, &lan.srv.ns_ip, d.path());
    let again = udhcpc(&h1, d.path(), &[]).expect("lease after restart");
    assert_eq!(again["ip"], a1["ip"], "the client keeps its address across a restart");
    let again2 = dhclient(&h2, d.path()).expect("dhclient after restart");
    assert_eq!(again2, ip2);

    std::thread::sleep(std::time::Duration::from_millis(400));
    let m = s.machine("reserved1");
    // Both halves of the exchange are on record: the offer's event waits for the ACK's
    // commit and lands with it.
    for kind in ["dhcp.offer", "dhcp.ack"] {
        assert!(m["events"].as_array().unwrap().iter().any(|e| e["kind"] == kind), "no {kind}: {m}");
    }
}

#[test]
fn option_93_matrix_with_a_real_client() {
    require_netns!();
    let lan = Lan::new("d93");
    let d = workdir(&config(&lan, "full"));
    let _s = Server::start_in_netns(&lan.srv.name, &lan.srv.ns_ip, d.path());
    let h = lan.add_host("h", "02:00:00:00:02:01");
    let http = format!("http://{}.1:8080", lan.prefix);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"], "undionly.kpxe".into()),
        (vec!["-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"], "ipxe.efi".into()),
        (vec!["-V", "PXEClient:Arch:00009:UNDI:003016", "-x", "0x5d:0009"], "ipxe.efi".into()),
        (vec!["-V", "HTTPClient:Arch:00016:UNDI:003001", "-x", "0x5d:0010"], format!("{http}/boot/ipxe.efi")),
        (vec!["-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000", "-x", "0x4d:0469505845"], format!("{http}/boot.ipxe")),
        (vec![], String::new()),
    ];
    for (args, want) in cases {
        let got = udhcpc(&h, d.path(), &args).unwrap_or_else(|| panic!("no lease with {args:?}"));
        assert_eq!(got["boot_file"], want, "{args:?}");
        if want.ends_with(".kpxe") || want.ends_with("ipxe.efi") && !want.starts_with("http") {
            assert_eq!(got["siaddr"], format!("{}.1", lan.prefix), "next-server is us");
        }
    }
}

#[test]
fn proxy_mode_beside_dnsmasq() {
    require_netns!();
    let lan = Lan::new("dprx");
    let d = workdir(&config(&lan, "proxy"));
    let p = lan.prefix.clone();
    // The "home router": dnsmasq doing plain DHCP on the same LAN.
    let router = lan.add_host("rt", "02:00:00:00:03:fe");
    router.exec_ok(&["ip", "addr", "add", &format!("{p}.254/24"), "dev", "eth0"]);
    let lease_file = d.path().join("dnsmasq.leases");
    let mut dnsmasq = router
        .cmd(&[
            "dnsmasq",
            "--no-daemon",
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            "--user=root",
            &format!("--dhcp-range={p}.100,{p}.150,255.255.255.0,10m"),
            &format!("--dhcp-leasefile={}", lease_file.display()),
            "--log-dhcp",
        ])
        .stderr(std::fs::File::create(d.path().join("dnsmasq.log")).unwrap())
        .spawn()
        .expect("dnsmasq (apt-get install dnsmasq-base)");
    let s = Server::start_in_netns(&lan.srv.name, &lan.srv.ns_ip, d.path());
    std::thread::sleep(std::time::Duration::from_millis(500));

    // An ordinary host: address from dnsmasq, nothing from bootplane.
    let plain = lan.add_host("pl", "02:00:00:00:03:01");
    let got = udhcpc(&plain, d.path(), &[]).expect("lease from dnsmasq");
    let n: u8 = got["ip"].rsplit('.').next().unwrap().parse().unwrap();
    assert!((100..=150).contains(&n), "{got:?}");

    // A PXE client: the firmware's view, through `bootplane dhcp probe`.
    let pxe = lan.add_host("px", "02:00:00:00:03:02");
    let o = pxe
        .cmd(&[BIN, "dhcp", "probe", "--interface", "eth0", "--vendor-class", "PXEClient:Arch:00000:UNDI:002001", "--arch", "0", "--request", "--wait", "6"])
        .output()
        .unwrap();
    let answers: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let router_ip = format!("{p}.254");
    let srv_ip = format!("{p}.1");
    eprintln!("probe answers: {answers:?}");
    let addr_offer = answers.iter().find(|a| a["type"] == "offer" && a["server_id"] == router_ip.as_str()).expect("dnsmasq offered");
    let boot_offer = answers.iter().find(|a| a["type"] == "offer" && a["server_id"] == srv_ip.as_str()).expect("bootplane proxy-offered");
    assert_eq!(boot_offer["yiaddr"], "0.0.0.0", "proxy never hands out addresses");
    assert_eq!(boot_offer["file"], "undionly.kpxe");
    assert_eq!(boot_offer["vendor_class"], "PXEClient");
    assert_eq!(addr_offer["file"], serde_json::Value::Null);
    let ack = answers.iter().find(|a| a["type"] == "ack" && a["server_id"] == router_ip.as_str()).expect("dnsmasq acked");
    let ip = ack["yiaddr"].as_str().unwrap().to_string();

    // With its address configured, the client asks the boot server on port 4011.
    pxe.exec_ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    let o = pxe
        .cmd(&[BIN, "dhcp", "probe", "--interface", "eth0", "--vendor-class", "PXEClient:Arch:00007:UNDI:003016", "--arch", "7", "--pxe-server", &srv_ip, "--client-ip", &ip, "--wait", "2"])
        .output()
        .unwrap();
    let a: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().expect("answer on 4011")).unwrap();
    assert_eq!(a["type"], "ack");
    assert_eq!(a["file"], "ipxe.efi");

    // Proxy answers commit no lease: their events are written on their own shortly
    // after, under the unknown client's observed identity.
    let kinds = || -> Vec<String> {
        let (code, body) = s.admin("GET", "/v1/events?machine=discovered-020000000302");
        assert_eq!(code, 200, "{body}");
        let ev: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        ev.iter().map(|e| e["kind"].as_str().unwrap_or_default().to_string()).collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let k = kinds();
        if ["dhcp.proxy_offer", "dhcp.proxy_ack"].iter().all(|want| k.iter().any(|have| have == want)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "proxy events never written: {k:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
}

#[test]
fn events_still_pending_are_written_at_shutdown() {
    require_netns!();
    let lan = Lan::new("dsd");
    let d = workdir(&config(&lan, "full"));
    let s = Server::start_in_netns(&lan.srv.name, &lan.srv.ns_ip, d.path());
    let h = lan.add_host("h", "02:00:00:00:04:01");
    // A DISCOVER alone: its offer commits nothing, so the offer's event waits for a
    // later commit. The probe prints the offer the moment it arrives; the server is
    // stopped right then, well inside the event's wait.
    let mut probe = h
        .cmd(&[BIN, "dhcp", "probe", "--interface", "eth0", "--wait", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(probe.stdout.take().unwrap()), &mut first).unwrap();
    let offer: serde_json::Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
    assert_eq!(offer["type"], "offer", "{offer}");
    s.stop();
    let _ = probe.kill();
    let _ = probe.wait();

    let s = Server::start_in_netns(&lan.srv.name, &lan.srv.ns_ip, d.path());
    let (code, body) = s.admin("GET", "/v1/events?machine=discovered-020000000401");
    assert_eq!(code, 200, "{body}");
    let ev: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert!(ev.iter().any(|e| e["kind"] == "dhcp.offer"), "the offer's event was lost at shutdown: {ev:?}");
}

/// Plugs a new client namespace into `relay`'s namespace by a veth pair: the relay side
/// gets `relay_if` with `relay_ip/24`, the client side `eth0` with `mac` and no address.
fn downstream(relay: &bootplane_testkit::Host, relay_if: &str, relay_ip: &str, tag: &str, mac: &str) -> bootplane_testkit::Host {
    let suffix: u32 = rand::random::<u32>() % 100_000;
    let name = format!("bp{tag}{suffix}");
    let (outer, inner) = (format!("bpr{suffix}"), format!("bpc{suffix}"));
    bootplane_testkit::run(&["ip", "netns", "add", &name]);
    let host = bootplane_testkit::Host { name, ifname: "eth0".into(), mac: mac.into() };
    bootplane_testkit::run(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner]);
    bootplane_testkit::run(&["ip", "link", "set", &outer, "netns", &relay.name]);
    bootplane_testkit::run(&["ip", "link", "set", &inner, "netns", &host.name]);
    relay.exec_ok(&["ip", "link", "set", &outer, "name", relay_if]);
    relay.exec_ok(&["ip", "addr", "add", &format!("{relay_ip}/24"), "dev", relay_if]);
    relay.exec_ok(&["ip", "link", "set", relay_if, "up"]);
    host.exec_ok(&["ip", "link", "set", &inner, "name", "eth0"]);
    host.exec_ok(&["ip", "link", "set", "eth0", "address", mac]);
    host.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    host
}

#[test]
fn two_subnets_behind_a_real_relay_get_their_own_ranges() {
    require_netns!();
    let lan = Lan::new("drly");
    let p = lan.prefix.clone();
    // Two more /24s no one uses here: the rack behind the relay, and one nobody serves.
    let r = format!("198.19.{}", bootplane_testkit::free_subnet());
    let u = format!("198.19.{}", bootplane_testkit::free_subnet());
    assert_ne!(r, u);
    let cfg = config(&lan, "full").replace(
        "  lease_time: 10m\n",
        &format!("  lease_time: 10m\n  subnets:\n    - range: {r}.100-{r}.110\n      netmask: 255.255.255.0\n      router: {r}.1\n      dns: [{r}.1]\n      domain: rack2.lab\n      relays: [{r}.1, {p}.2]\n"),
    );
    let d = workdir(&cfg);
    let s = Server::start_in_netns(&lan.srv.name, &lan.srv.ns_ip, d.path());
    // Replies to a relay go to its giaddr: the server routes the racks through it.
    let relay = lan.add_host("rly", "02:00:00:00:03:01");
    relay.exec_ok(&["ip", "addr", "add", &format!("{p}.2/24"), "dev", "eth0"]);
    for net in [&r, &u] {
        lan.srv.exec_ok(&["ip", "route", "add", &format!("{net}.0/24"), "via", &format!("{p}.2")]);
    }
    let c1 = downstream(&relay, "rack2", &format!("{r}.1"), "c1", "02:00:00:00:03:11");
    let c2 = downstream(&relay, "rack9", &format!("{u}.1"), "c2", "02:00:00:00:03:12");
    let pidfile = d.path().join("dhcrelay.pid").display().to_string();
    let mut dhcrelay = relay
        .cmd(&["dhcrelay", "-4", "-d", "-q", "-pf", &pidfile, "-id", "rack2", "-id", "rack9", "-iu", "eth0", &format!("{p}.1")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dhcrelay (apt-get install isc-dhcp-relay)");
    std::thread::sleep(std::time::Duration::from_millis(500));

    let local = lan.add_host("h1", "02:00:00:00:03:21");
    let a = udhcpc(&local, d.path(), &[]).expect("a client on the server's own link got a lease");
    assert!(in_pool(&lan, &a["ip"]), "{a:?}");
    let b = udhcpc(&c1, d.path(), &["-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"]).expect("a client behind the relay got a lease");
    let last: u8 = b["ip"].rsplit('.').next().unwrap().parse().unwrap();
    assert!(b["ip"].starts_with(&format!("{r}.")) && (100..=110).contains(&last), "the rack's own range: {b:?}");
    assert_eq!((b["router"].as_str(), b["domain"].as_str()), (format!("{r}.1").as_str(), "rack2.lab"), "{b:?}");
    assert_eq!(b["boot_file"], "undionly.kpxe", "the right boot file through the relay: {b:?}");
    // Unknown to the inventory, it shows up as discovered with the relay it sits behind.
    let (code, _) = s.get("/v1/boot/ipxe?mac=02:00:00:00:03:11&arch=x86_64");
    assert_eq!(code, 200);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (_, discovered) = s.admin("GET", "/v1/discovered");
    let discovered: serde_json::Value = serde_json::from_str(&discovered).unwrap();
    let c1_seen = discovered.as_array().unwrap().iter().find(|d| d["observed"]["mac"] == "02:00:00:00:03:11").expect("c1 discovered");
    assert_eq!(c1_seen["relay"], format!("{r}.1"), "{c1_seen}");
    // A relay speaking for a subnet nobody configured is ignored, with an event.
    assert!(udhcpc(&c2, d.path(), &[]).is_none(), "a client of an unknown subnet got an address");
    let (_, events) = s.admin("GET", "/v1/events?limit=200");
    assert!(events.contains("dhcp.ignored") && events.contains(&format!("{u}.1")), "{events}");
    let _ = dhcrelay.kill();
    let _ = dhcrelay.wait();
}
