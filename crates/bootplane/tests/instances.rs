//! Several `bootplane serve` instances on one PostgreSQL store (Debian's real server, a
//! throwaway cluster per test), each with its own data directory and interfaces, as a
//! site runs them: a boot started on one instance finishes on another, a report is
//! accepted once whichever instance gets it, every instance sees every event, an
//! instance with another sealing key refuses the store, a SQLite site migrates and boots
//! the same, three instances stay consistent under concurrent boots and reports with one
//! killed mid-burst, and three DHCP servers in full mode on one LAN share one pool with
//! real clients, also while one is killed.

mod common;
use bootplane_testkit::{require_netns, require_postgres, Lan};
use common::*;
use std::path::Path;
use std::time::Duration;

/// Starts an instance in `dir` on `url`, with `key` as its sealing key when given.
fn instance(dir: &Path, url: &str, key: Option<&Path>) -> Server {
    if let Some(k) = key {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::copy(k, dir.join("data/secret.key")).unwrap();
    }
    Server::start_with(dir, &["--config", "bootplane.yaml", "--database", url])
}

#[test]
fn two_instances_share_machines_credentials_and_events() {
    let pg = require_postgres!();
    let url = pg.new_database();
    let (da, db) = (workdir(CONFIG), workdir(CONFIG));
    let a = instance(da.path(), &url, None);
    let b = instance(db.path(), &url, Some(&da.path().join("data/secret.key")));

    // B's live event stream, open before anything happens.
    let stream_url = format!("{}/v1/events?follow=true", b.url);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = ureq::get(&stream_url).set("Authorization", &format!("Bearer {TOKEN}")).call().unwrap();
        for l in std::io::BufRead::lines(std::io::BufReader::new(r.into_reader())).map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));

    // node1 boots from instance A and fetches its config there ...
    let (_, code, ign) = a.boot_and_fetch("node1", "52:54:00:12:34:56");
    assert_eq!(code, 200, "{ign}");
    let cred = credential_from_ignition(&ign);
    assert_eq!(b.machine("node1")["state"], "installing", "B sees A's transition");
    // ... and reports through instance B, once.
    let (code, body) = b.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"written"}"#);
    assert_eq!(code, 200, "{body}");
    // The installer's retry after a lost answer, on the other instance: acknowledged,
    // not recorded twice (the list of changes below has one `written`).
    let (code, body) = a.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"written"}"#);
    assert_eq!(code, 200, "{body}");
    let (code, body) = a.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"installed"}"#);
    assert_eq!(code, 200, "{body}");
    let (code, _) = b.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"installed"}"#);
    assert_ne!(code, 200, "the credential was retired by A's report; B refuses it");

    // A's events reach B's live stream (woken by PostgreSQL's NOTIFY, within seconds).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut streamed = Vec::new();
    while !streamed.iter().any(|l: &String| l.contains("config.served")) {
        assert!(std::time::Instant::now() < deadline, "A's config.served never reached B's stream: {streamed:?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            streamed.push(l);
        }
    }
    // /metrics is each instance's own work: the boot went to A only; the machine gauge
    // (from the shared store) is the same on both.
    let boots = |s: &Server| -> u64 {
        let (_, text) = s.get("/metrics");
        text.lines().filter(|l| l.starts_with("bootplane_boot_decisions_total")).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    assert_eq!((boots(&a), boots(&b)), (1, 0), "each instance counts its own boot decisions");
    // Every instance's event list holds every instance's events.
    std::thread::sleep(Duration::from_millis(600));
    let (code, body) = b.admin("GET", "/v1/events?machine=node1&limit=200");
    assert_eq!(code, 200, "{body}");
    let events: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"config.served"), "A's config event reaches B: {kinds:?}");
    let changes: Vec<&str> =
        events.iter().filter(|e| e["kind"] == "state.changed").map(|e| e["detail"]["to"].as_str().unwrap()).collect();
    assert_eq!(changes, ["provision", "installing", "written", "installed"], "one event per change");
}

#[test]
fn an_instance_with_another_secret_key_refuses_the_store() {
    let pg = require_postgres!();
    let url = pg.new_database();
    let (da, db) = (workdir(CONFIG), workdir(CONFIG));
    let a = instance(da.path(), &url, None);
    // The first instance's sealed secrets exist (a cluster's tokens would be among them).
    a.stop();
    // A second instance with a fresh key of its own.
    let out = bootplane(db.path())
        .args(["serve", "--config", "bootplane.yaml", "--listen", "127.0.0.1:0", "--database", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with the wrong key: {err}");
    assert!(err.contains("sealed with another secret key") && err.contains("Nothing was changed"), "{err}");
    // And the right key still works: nothing was overwritten.
    let a = instance(da.path(), &url, None);
    assert_eq!(a.machine("node1")["state"], "provision");
}

/// The DHCP config of both instances: one range, on `interface`.
fn dhcp_config(lan: &Lan, interface: &str, own_ip: &str) -> String {
    let p = &lan.prefix;
    format!(
        r#"
server:
  listen: 0.0.0.0:0
  advertise: http://{own_ip}:8080
dhcp:
  mode: full
  interface: {interface}
  range: {p}.50-{p}.99
  netmask: 255.255.255.0
  router: {p}.1
  lease_time: 10m
"#
    )
}

/// Runs udhcpc on `h` with patient retries; the address it was given.
fn lease(h: &bootplane_testkit::Host, dir: &Path) -> Option<String> {
    let out = dir.join(format!("{}.ip", h.name));
    let script = dir.join(format!("{}.sh", h.name));
    std::fs::write(&script, format!("#!/bin/sh\ncase \"$1\" in bound|renew) echo \"$ip\" > {};; esac\n", out.display())).unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&script).status().unwrap();
    // Without `-n`: a client whose REQUEST went to an instance that died before acking
    // starts over with a DISCOVER (after `-A`), as PXE firmware does; with `-n` udhcpc
    // gives up after its three REQUESTs, which the survivors rightly leave unanswered
    // (RFC 2131 4.3.2: a REQUEST naming another server is not theirs). Bounded by
    // `timeout`.
    let o = h
        .cmd(&["timeout", "60", "udhcpc", "-i", "eth0", "-q", "-f", "-t", "10", "-T", "1", "-A", "1", "-s", &script.display().to_string()])
        .output();
    let got = std::fs::read_to_string(&out).ok().map(|s| s.trim().to_string());
    if got.is_none() {
        // What the client saw, for the failure message.
        let said = o.map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))).unwrap_or_else(|e| e.to_string());
        std::fs::write(dir.join(format!("{}.udhcpc", h.mac)), said).unwrap();
    }
    got
}

#[test]
fn three_dhcp_instances_share_one_pool_and_survive_a_kill() {
    require_netns!();
    let pg = require_postgres!();
    let url = pg.new_database();
    let lan = Lan::new("dinst");
    let p = lan.prefix.clone();
    // Instance A on the LAN's server namespace (br0), B and C on hosts of their own (eth0).
    let da = workdir(&dhcp_config(&lan, "br0", &format!("{p}.1")));
    let a = Server::start_in_netns_with(&lan.srv.name, &lan.srv.ns_ip, da.path(), &["--database", &url]);
    let srv2 = lan.add_host("srv2", "02:00:00:00:09:02");
    srv2.exec_ok(&["ip", "addr", "add", &format!("{p}.2/24"), "dev", "eth0"]);
    let db = workdir(&dhcp_config(&lan, "eth0", &format!("{p}.2")));
    std::fs::create_dir_all(db.path().join("data")).unwrap();
    std::fs::copy(da.path().join("data/secret.key"), db.path().join("data/secret.key")).unwrap();
    // (The test talks to B and C only through the database: they are on the LAN alone.)
    let b = Server::start_in_netns_with(&srv2.name, &format!("{p}.2"), db.path(), &["--database", &url]);
    let srv3 = lan.add_host("srv3", "02:00:00:00:09:03");
    srv3.exec_ok(&["ip", "addr", "add", &format!("{p}.3/24"), "dev", "eth0"]);
    let dc = workdir(&dhcp_config(&lan, "eth0", &format!("{p}.3")));
    std::fs::create_dir_all(dc.path().join("data")).unwrap();
    std::fs::copy(da.path().join("data/secret.key"), dc.path().join("data/secret.key")).unwrap();
    let c = Server::start_in_netns_with(&srv3.name, &format!("{p}.3"), dc.path(), &["--database", &url]);

    let run = |hs: &[bootplane_testkit::Host]| -> Vec<(String, Option<String>)> {
        std::thread::scope(|s| {
            let ts: Vec<_> = hs.iter().map(|h| s.spawn(|| (h.mac.clone(), lease(h, da.path())))).collect();
            ts.into_iter().map(|t| t.join().unwrap()).collect()
        })
    };
    // Round 0: B never hears these 8 clients (a real LAN loses packets to one server),
    // so A alone binds them and B's pool knows nothing of it until it reloads.
    let unheard: Vec<_> = (0..8).map(|i| lan.add_host(&format!("u{i}"), &format!("02:00:00:00:0b:{i:02x}"))).collect();
    let macs: Vec<&str> = unheard.iter().map(|h| h.mac.as_str()).collect();
    srv2.exec_ok(&["nft", "add", "table", "netdev", "deaf"]);
    srv2.exec_ok(&["nft", "add", "chain", "netdev", "deaf", "in", "{ type filter hook ingress device eth0 priority 0; }"]);
    srv2.exec_ok(&["nft", "add", "rule", "netdev", "deaf", "in", "ether", "saddr", &format!("{{ {} }}", macs.join(", ")), "drop"]);
    let mut got = run(&unheard);
    // Round 1 at once: 16 clients both servers hear. B's pool would offer A's fresh
    // bindings; the store refuses those claims and B answers nothing for them.
    let hosts: Vec<_> = (0..24).map(|i| lan.add_host(&format!("c{i}"), &format!("02:00:00:00:0a:{i:02x}"))).collect();
    got.extend(run(&hosts[..16]));
    // Round 2: 8 more clients, and instance A is killed while they are mid-exchange.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        a.kill9();
    });
    got.extend(run(&hosts[16..]));
    killer.join().unwrap();

    let missing: Vec<_> = got.iter().filter(|(_, ip)| ip.is_none()).map(|(m, _)| m.clone()).collect();
    if !missing.is_empty() {
        let said: Vec<String> = missing.iter().map(|m| format!("{m}: {}", std::fs::read_to_string(da.path().join(format!("{m}.udhcpc"))).unwrap_or_default())).collect();
        let rows = pg.psql(url.rsplit('/').next().unwrap(), "SELECT mac || ' ' || ip || ' ' || state || ' ' || expires FROM leases ORDER BY ip");
        panic!(
            "clients without an address (the survivors should have answered): {missing:?}\nclients:\n{}\nleases:\n{rows}\nB:\n{}\nC:\n{}",
            said.join("\n"),
            b.stop().join("\n"),
            c.stop().join("\n")
        );
    }
    let mut ips: Vec<&String> = got.iter().filter_map(|(_, ip)| ip.as_ref()).collect();
    ips.sort();
    let n = ips.len();
    ips.dedup();
    assert_eq!(ips.len(), n, "one address went to two clients: {got:?}");
    // The database agrees with what every client was told.
    let rows = pg.psql(url.rsplit('/').next().unwrap(), "SELECT mac || ' ' || ip || ' ' || state FROM leases ORDER BY ip");
    for (mac, ip) in &got {
        let row = format!("{mac} {} bound", ip.as_deref().unwrap());
        assert!(rows.lines().any(|l| l == row), "{row} not in the store:\n{rows}");
    }
    let acks = pg.psql(url.rsplit('/').next().unwrap(), "SELECT count(*) FROM events WHERE kind = 'dhcp.ack'");
    assert!(acks.parse::<usize>().unwrap() >= got.len(), "every binding is on record: {acks} acks");
}

/// A boot answer with what differs between two servers (address, nonces) taken out.
fn decision(s: &Server, mac: &str) -> String {
    let (code, script) = s.get(&format!("/v1/boot/ipxe?mac={mac}&arch=x86_64"));
    assert_eq!(code, 200, "{script}");
    let host = s.url.trim_start_matches("http://");
    let script = script.replace(host, "SERVER");
    let mut out = String::new();
    let mut run = String::new();
    for c in script.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() >= 16 { "HEX" } else { &run });
        run.clear();
        out.push(c);
    }
    out
}

#[test]
fn a_sqlite_site_moves_to_postgres_and_boots_the_same() {
    let pg = require_postgres!();
    let url = pg.new_database();
    let d = workdir(CONFIG);
    let s = Server::start(d.path());
    // Machines in several states: written (node1), installing (node2), ready (node3),
    // and a discovered stranger.
    let (_, code, ign) = s.boot_and_fetch("node1", "52:54:00:12:34:56");
    assert_eq!(code, 200);
    let cred = credential_from_ignition(&ign);
    assert_eq!(s.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"written"}"#).0, 200);
    s.boot_and_fetch("node2", "52:54:00:12:34:57");
    let macs = ["52:54:00:12:34:56", "52:54:00:12:34:57", "52:54:00:12:34:58", "52:54:00:99:99:99"];
    // The stranger's first sighting makes it `discovered` (written just after the answer).
    decision(&s, macs[3]);
    std::thread::sleep(Duration::from_millis(600));
    let before: Vec<String> = macs.iter().map(|m| decision(&s, m)).collect();
    let states: Vec<serde_json::Value> = ["node1", "node2", "node3"].iter().map(|n| s.machine(n)["state"].clone()).collect();
    std::thread::sleep(Duration::from_millis(600));
    s.stop();

    let db = d.path().join("data/bootplane.db");
    let out = bootplane(d.path()).args(["migrate", "--from", &format!("sqlite:{}", db.display()), "--to", &url]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("migrated 4 machines"), "{said}");
    // A second run finds the target full and changes nothing.
    let again = bootplane(d.path()).args(["migrate", "--from", &format!("sqlite:{}", db.display()), "--to", &url]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&again.stderr));
    // Bad input: a source that does not exist.
    let missing = bootplane(d.path()).args(["migrate", "--from", "sqlite:/nonexistent/b.db", "--to", &url]).output().unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such database file"));

    // Served from PostgreSQL with the same data directory (token, sealing key).
    let p = Server::start_with(d.path(), &["--config", "bootplane.yaml", "--database", &url]);
    let after_states: Vec<serde_json::Value> = ["node1", "node2", "node3"].iter().map(|n| p.machine(n)["state"].clone()).collect();
    assert_eq!(after_states, states);
    let after: Vec<String> = macs.iter().map(|m| decision(&p, m)).collect();
    assert_eq!(after, before, "every machine boots the same decision");
    // The written machine's installed system still reports with its credential.
    assert_eq!(p.post("/v1/machines/node1/report", Some(&cred), r#"{"state":"installed"}"#).0, 200);
}

/// 24 machines to provision, with the gates a single lab client would hit opened wide.
fn fleet_config(n: usize) -> String {
    let mut c = String::from(
        "server:\n  listen: 127.0.0.1:0\n  max_install_attempts: 100000\n  boot_requests_per_minute: 1000000\n  \
         unauthenticated_events_per_minute: 1000000\n  max_connections_per_source: 1000\n\
         bundles:\n  - { name: rescue, os: generic, arch: x86_64, kernel: { url: http://mirror.test/k }, initrd: { url: http://mirror.test/i }, args: \"bootplane.config={{ ignition_url }}\" }\n\
         machines:\n",
    );
    for i in 0..n {
        c.push_str(&format!("  - {{ name: m{i}, hostname: m{i}, macs: [\"02:00:00:00:0c:{i:02x}\"], bundle: rescue, provision: true }}\n"));
    }
    c
}

/// Three instances, one database: thousands of boot decisions, config fetches, valid,
/// replayed and forged reports for the same machines from many threads, spread over the
/// instances, and one instance SIGKILLed in the middle of the report burst. Afterwards,
/// in the database: every machine moved once per step, with one event per move; each
/// install attempt counted once; no credential was accepted twice; nothing an instance
/// answered 200 for was lost.
#[test]
fn three_instances_under_concurrent_boots_and_reports() {
    let pg = require_postgres!();
    let url = pg.new_database();
    const N: usize = 24;
    let cfg = fleet_config(N);
    let dirs: Vec<_> = (0..3).map(|_| workdir(&cfg)).collect();
    let first = instance(dirs[0].path(), &url, None);
    let key = dirs[0].path().join("data/secret.key");
    let mut servers = vec![first, instance(dirs[1].path(), &url, Some(&key)), instance(dirs[2].path(), &url, Some(&key))];
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let mac = |i: usize| format!("02:00:00:00:0c:{i:02x}");

    // 1. Boot decisions: 16 threads, 1,920 requests over the three instances.
    let nonces: Vec<Vec<String>> = std::thread::scope(|s| {
        let ts: Vec<_> = (0..16)
            .map(|t| {
                let urls = &urls;
                s.spawn(move || {
                    let mut got = Vec::new();
                    for k in 0..120 {
                        let i = (t * 7 + k) % N;
                        let (code, script) = req("GET", &format!("{}/v1/boot/ipxe?mac={}&arch=x86_64", urls[k % 3], mac(i)), None, None);
                        assert_eq!(code, 200, "{script}");
                        got.push((i, nonce_in(&script)));
                    }
                    got
                })
            })
            .collect();
        let mut per = vec![Vec::new(); N];
        for t in ts {
            for (i, n) in t.join().unwrap() {
                per[i].push(n);
            }
        }
        per
    });

    // The last boot of each machine (after the storm) names the current attempt; any
    // earlier nonce is refused by every instance.
    let current: Vec<String> = (0..N)
        .map(|i| {
            let (code, script) = req("GET", &format!("{}/v1/boot/ipxe?mac={}&arch=x86_64", urls[i % 3], mac(i)), None, None);
            assert_eq!(code, 200, "{script}");
            nonce_in(&script)
        })
        .collect();
    let stale = nonces[0].iter().find(|n| **n != current[0]).expect("m0 booted many times");
    assert_eq!(req("GET", &format!("{}/v1/machines/m0/ignition?nonce={stale}", urls[1]), None, None).0, 403);

    // 2. Every machine fetches its config at once from all three instances.
    let creds: Vec<String> = std::thread::scope(|s| {
        let ts: Vec<_> = (0..N)
            .map(|i| {
                let (urls, nonce) = (&urls, current[i].clone());
                s.spawn(move || {
                    let answers: Vec<(u16, String)> = (0..3)
                        .map(|k| req("GET", &format!("{}/v1/machines/m{i}/ignition?nonce={nonce}", urls[k]), None, None))
                        .collect();
                    let ok: Vec<&String> = answers.iter().filter(|(c, _)| *c == 200).map(|(_, b)| b).collect();
                    assert!(!ok.is_empty(), "m{i}: no config: {answers:?}");
                    // The first fetch and its two same-address retries: all served, none lost to
                    // contention between instances (a deadlock used to answer 503 here).
                    assert_eq!(ok.len(), 3, "m{i}: {:?}", answers.iter().map(|(c, b)| (c, &b[..b.len().min(200)])).collect::<Vec<_>>());
                    let creds: Vec<String> = ok.iter().map(|b| credential_from_ignition(b)).collect();
                    assert!(creds.windows(2).all(|w| w[0] == w[1]), "m{i}: two credentials for one provision");
                    creds[0].clone()
                })
            })
            .collect();
        ts.into_iter().map(|t| t.join().unwrap()).collect()
    });

    // Nothing went wrong inside the instances either (deadlocks, dropped batch items).
    for (k, srv) in servers.iter().enumerate() {
        let errors: Vec<String> = srv.log.try_iter().filter(|l| l.contains("ERROR") || l.contains("not written")).collect();
        assert!(errors.is_empty(), "instance {k}: {errors:#?}");
    }
    // 3. Reports: `written`, then `installed` each sent to all three at once, plus a
    // forged one per machine; instance C is killed in the middle.
    let killed = std::sync::atomic::AtomicBool::new(false);
    let victim = servers.pop().unwrap();
    let accepted: Vec<(usize, u32)> = std::thread::scope(|s| {
        let ts: Vec<_> = (0..N)
            .map(|i| {
                let (urls, cred) = (&urls, &creds[i]);
                s.spawn(move || {
                    let post = |k: usize, bearer: &str, state: &str| {
                        try_req("POST", &format!("{}/v1/machines/m{i}/report", urls[k]), Some(bearer), Some(&format!("{{\"state\":\"{state}\"}}"))).ok()
                    };
                    assert_eq!(post(i % 2, &"0".repeat(64), "installed").map(|r| r.0), Some(401), "m{i}: a forged report");
                    // `written` is retried by installers: every copy is acknowledged.
                    while post(i % 2, cred, "written").map(|r| r.0) != Some(200) {}
                    let oks = std::thread::scope(|s| {
                        let ts: Vec<_> = (0..3).map(|k| s.spawn(move || post(k, cred, "installed"))).collect();
                        ts.into_iter().map(|t| t.join().unwrap()).filter(|r| matches!(r, Some((200, _)))).count() as u32
                    });
                    (i, oks)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        victim.kill9();
        killed.store(true, std::sync::atomic::Ordering::SeqCst);
        ts.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(killed.load(std::sync::atomic::Ordering::SeqCst));

    let dbname = url.rsplit('/').next().unwrap();
    for (i, oks) in &accepted {
        let state = pg.psql(dbname, &format!("SELECT state FROM machines WHERE name = 'm{i}'"));
        assert!(*oks <= 1, "m{i}: the credential was accepted {oks} times");
        if *oks == 1 {
            assert_eq!(state, "installed", "m{i}: an acknowledged report was lost");
        }
    }
    // Machines whose `installed` reached only the killed instance report again, to a survivor.
    for (i, _) in accepted.iter().filter(|(_, n)| *n == 0) {
        let (code, body) = req("POST", &format!("{}/v1/machines/m{i}/report", urls[0]), Some(&creds[*i]), Some(r#"{"state":"installed"}"#));
        let state = pg.psql(dbname, &format!("SELECT state FROM machines WHERE name = 'm{i}'"));
        assert!(code == 200 || state == "installed", "m{i}: {code} {body}");
    }
    // One event per move, and the table agrees with the log.
    let moves = pg.psql(
        dbname,
        "SELECT machine || ':' || string_agg((detail::jsonb) ->> 'to', ',' ORDER BY id) FROM events \
         WHERE kind = 'state.changed' GROUP BY machine ORDER BY machine",
    );
    assert_eq!(moves.lines().count(), N, "{moves}");
    for l in moves.lines() {
        assert!(l.ends_with(":provision,installing,written,installed"), "{l}");
    }
    let attempts = pg.psql(dbname, "SELECT SUM(install_attempts) FROM machines");
    // An attempt counts at its config's first fetch: three instances served each config
    // at once, and each attempt was counted once.
    assert_eq!(
        attempts,
        N.to_string(),
        "an install attempt counted twice (or not at all):\n{}",
        pg.psql(dbname, "SELECT name || ' ' || install_attempts FROM machines ORDER BY name")
    );
}
