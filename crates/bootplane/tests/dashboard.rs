//! The web dashboard in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver) by `fantoccini`, against the real `bootplane` binary. The
//! test plays machines' boots over HTTP while the page is open and checks that the page
//! follows them live, that changes need a login and the session's CSRF token, that no
//! secret reaches any page or response, and that nothing is loaded from another origin.
//!
//! Without `chromium` and `chromedriver` the browser tests say they were not run (and
//! fail when `BOOTPLANE_REQUIRE_BROWSER=1`, as `.ci/run` sets). Screenshots go to
//! `target/dashboard-screenshots/` (or `$BOOTPLANE_SCREENSHOTS`).

mod common;

use base64::Engine as _;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn cluster_fixture() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clusters.yaml")).unwrap()
}

/// A headless Chromium behind its own chromedriver, both gone when dropped.
struct Browser {
    driver: Child,
    client: Client,
    /// Chromium's profile directory: it names this browser's processes.
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A test that panicked never closed its session: Chromium outlives chromedriver.
        let _ = Command::new("pkill").arg("-f").arg(format!("user-data-dir={}", self.profile.display())).status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn find(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The browser, or `None` (with a note) when Chromium is not installed here.
async fn browser(width: u32, height: u32) -> Option<Browser> {
    let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    let chromium = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"]);
    let (Some(driver), Some(chromium)) = (driver, chromium) else {
        if std::env::var("BOOTPLANE_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("chromium and chromium-driver are required (BOOTPLANE_REQUIRE_BROWSER=1): apt-get install chromium chromium-driver");
        }
        eprintln!("NOT RUN: the dashboard browser test needs Debian's chromium and chromium-driver");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(driver).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let profile = tempfile::tempdir().unwrap().keep();
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     format!("--user-data-dir={}", profile.display()), format!("--window-size={width},{height}")]
        }
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    // chromedriver starts in a second alone, much later on a loaded CI machine: a bound against a hang only.
    let deadline = Instant::now() + Duration::from_secs(180);
    let client = loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new()).capabilities(caps.clone()).connect(&url).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => panic!("chromedriver did not start: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    Some(Browser { driver: child, client, profile })
}

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("BOOTPLANE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let path = screenshots().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.unwrap()
}

/// Waits (at most `secs`) until `script` returns `want` in the page; the last value otherwise.
async fn wait_for(c: &Client, script: &str, want: serde_json::Value, secs: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = js(c, script).await;
        if v == want || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks what `css` finds and waits for the page it leads to (WebDriver's click does
/// not wait for a form's navigation to finish).
async fn click_and_load(c: &Client, css: &str) {
    js(c, "window.__old_page = true; return 0").await;
    c.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    let loaded = "return window.__old_page === undefined && document.readyState === 'complete'";
    assert_eq!(wait_for(c, loaded, true.into(), 20).await, true, "no page loaded after clicking {css}");
}

async fn login(c: &Client, base: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/ui/login"), "the fleet needs a login");
    c.find(Locator::Css("#token")).await.unwrap().send_keys(TOKEN).await.unwrap();
    click_and_load(c, "form[action='/ui/login'] button").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/");
}

/// The session cookie the browser holds, as a `Cookie:` header value.
async fn session_cookie(c: &Client) -> String {
    let cookies = c.get_all_cookies().await.unwrap();
    let s = cookies.iter().find(|k| k.name() == "bootplane_session").expect("a session cookie after login");
    assert!(s.http_only().unwrap_or(false), "session cookie must be HttpOnly");
    assert_eq!(format!("{:?}", s.same_site()), "Some(Strict)", "session cookie must be SameSite=Strict");
    format!("bootplane_session={}", s.value())
}

fn http(method: &str, url: &str, cookie: Option<&str>, origin: Option<&str>, form: Option<&str>) -> (u16, String, Vec<(String, String)>) {
    let agent = ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(10)).build();
    let mut r = agent.request(method, url);
    if let Some(c) = cookie {
        r = r.set("Cookie", c);
    }
    if let Some(o) = origin {
        r = r.set("Origin", o);
    }
    let res = match form {
        Some(f) => r.set("Content-Type", "application/x-www-form-urlencoded").send_string(f),
        None => r.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let code = resp.status();
    let headers = resp.headers_names().into_iter().map(|h| (h.clone(), resp.header(&h).unwrap_or("").to_string())).collect();
    (code, resp.into_string().unwrap_or_default(), headers)
}

/// The csrf field of the first form on a page.
fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + "name=\"csrf\" value=\"".len();
    html[at..].chars().take_while(|c| c.is_ascii_hexdigit()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_follows_a_boot_live_and_changes_need_a_login() {
    let Some(b) = browser(1280, 900).await else { return };
    let c = &b.client;
    let d = workdir(&cluster_fixture());
    let srv = Server::start(d.path());
    let base = srv.url.clone();

    // Read-only pages need the login too (ui.anonymous_read is off).
    for path in ["/", "/ui/machines/s1", "/ui/discovered", "/ui/clusters", "/ui/stream"] {
        let (code, _, h) = http("GET", &format!("{base}{path}"), None, None, None);
        assert_eq!(code, 303, "{path} without a login");
        assert!(h.iter().any(|(k, v)| k == "location" && v.starts_with("/ui/login")), "{path}: {h:?}");
    }
    // A wrong token is refused and gives no session.
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    c.find(Locator::Css("#token")).await.unwrap().send_keys("not-the-token").await.unwrap();
    click_and_load(c, "form[action='/ui/login'] button").await;
    assert!(c.find(Locator::Css("p.error")).await.is_ok(), "a wrong token says so");
    assert!(c.get_all_cookies().await.unwrap().iter().all(|k| k.name() != "bootplane_session"));

    login(c, &base).await;
    let cookie = session_cookie(c).await;

    // Changes: refused without a session, without the CSRF token, from another origin,
    // and without the machine's name typed back.
    let provision = format!("{base}/ui/machines/s1/provision");
    let (_, page, _) = http("GET", &format!("{base}/ui/machines/s1"), Some(&cookie), None, None);
    let csrf = csrf_in(&page);
    let form = format!("csrf={csrf}&confirm=s1");
    assert_eq!(http("POST", &provision, None, None, Some(&form)).0, 401, "no session");
    assert_eq!(http("POST", &provision, Some(&cookie), None, Some("confirm=s1")).0, 403, "no CSRF token");
    assert_eq!(http("POST", &provision, Some(&cookie), Some("http://evil.example"), Some(&form)).0, 403, "cross-origin");
    assert_eq!(http("POST", &provision, Some(&cookie), None, Some(&format!("csrf={csrf}&confirm=s2"))).0, 400, "wrong name typed");
    assert_eq!(srv.machine("s1")["state"], "ready", "nothing refused changed anything");

    // Provision in the browser, as an operator does.
    c.goto(&format!("{base}/ui/machines/s1")).await.unwrap();
    c.find(Locator::Css("form[action$='/provision'] input[name=confirm]")).await.unwrap().send_keys("s1").await.unwrap();
    click_and_load(c, "#provision").await;
    assert_eq!(wait_for(c, "return location.search", "?done=provision".into(), 10).await, "?done=provision");
    assert_eq!(srv.machine("s1")["state"], "provision");

    // The fleet view, open while s1 boots: it moves from provision to installing to
    // installed without a reload.
    c.goto(&format!("{base}/")).await.unwrap();
    let state_of = "return document.querySelector('tr[data-machine=\"s1\"]').dataset.state";
    let group_of = "return document.querySelector('tr[data-machine=\"s1\"]').closest('section').dataset.group";
    let step_of = "return document.querySelector('tr[data-machine=\"s1\"] .step').textContent";
    assert_eq!(js(c, state_of).await, "provision");
    assert_eq!(wait_for(c, "return document.getElementById('live').textContent", "live".into(), 10).await, "live");
    js(c, "window.__marker = 1; return 0").await;

    let (script, code, ign) = srv.boot_and_fetch("s1", "52:54:00:00:01:01");
    assert_eq!(code, 200, "{ign}");
    assert!(script.contains("#!ipxe"));
    assert_eq!(wait_for(c, state_of, "installing".into(), 15).await, "installing");
    assert_eq!(js(c, group_of).await, "installing", "the row moved to its state's group");
    assert_eq!(wait_for(c, step_of, "config fetched".into(), 10).await, "config fetched");
    shot(c, "fleet-installing-1280.png").await;

    let credential = credential_from_ignition(&ign);
    let (code, join) = req("GET", &format!("{base}/v1/machines/s1/join"), Some(&credential), None);
    assert_eq!(code, 200, "{join}");
    let tokens: Vec<String> = join.lines().filter_map(|l| l.split_once('=')).map(|(_, v)| v.trim_matches('"').to_string()).filter(|v| v.len() >= 16).collect();
    assert!(!tokens.is_empty(), "join material has tokens: {join}");
    let kubeconfig = base64::engine::general_purpose::STANDARD.encode(K3S_YAML);
    let body = format!(r#"{{"state":"installed","ca_hash":"{}","kubeconfig":"{kubeconfig}"}}"#, "c".repeat(64));
    assert_eq!(srv.post("/v1/machines/s1/report", Some(&credential), &body).0, 200);
    assert_eq!(wait_for(c, state_of, "installed".into(), 15).await, "installed");
    assert_eq!(js(c, group_of).await, "installed");
    assert_eq!(wait_for(c, step_of, "reported".into(), 10).await, "reported");
    assert_eq!(js(c, "return window.__marker").await, 1, "all of it without a page reload");
    assert_eq!(js(c, "return document.querySelector('[data-count=\"installed\"] b').textContent").await, "1");

    // Filter by label and by MAC.
    c.find(Locator::Css("#filter")).await.unwrap().send_keys("rack=r1").await.unwrap();
    let visible = "return [...document.querySelectorAll('tr[data-machine]')].filter(r => !r.hidden).map(r => r.dataset.machine)";
    assert_eq!(wait_for(c, visible, serde_json::json!(["s1"]), 5).await, serde_json::json!(["s1"]));
    c.find(Locator::Css("#filter")).await.unwrap().clear().await.unwrap();
    c.find(Locator::Css("#filter")).await.unwrap().send_keys("52:54:00:00:01:04").await.unwrap();
    assert_eq!(wait_for(c, visible, serde_json::json!(["a1"]), 5).await, serde_json::json!(["a1"]));
    c.goto(&format!("{base}/")).await.unwrap();
    shot(c, "fleet-1280.png").await;

    // A discovered machine with a hostile serial: shown, escaped, adoptable.
    let (code, _) = srv.get("/v1/boot/ipxe?mac=52:54:00:0d:15:c0&serial=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&arch=x86_64");
    assert_eq!(code, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.goto(&format!("{base}/ui/discovered")).await.unwrap();
    assert_eq!(js(c, "return document.querySelectorAll('img').length").await, 0, "the serial is text, not markup");
    let text = c.find(Locator::Css("section.discovered")).await.unwrap().text().await.unwrap();
    assert!(text.contains("52:54:00:0d:15:c0") && text.contains("<img src=x"), "{text}");
    shot(c, "discovered-1280.png").await;
    c.find(Locator::Css("form.adopt input[name=name]")).await.unwrap().send_keys("rack2-node9").await.unwrap();
    c.find(Locator::Css("form.adopt select[name=bundle]")).await.unwrap().select_by_value("fcos-40").await.unwrap();
    click_and_load(c, "form.adopt button").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/ui/machines/rack2-node9");
    let adopted = srv.machine("rack2-node9");
    assert_eq!((adopted["state"].as_str(), adopted["macs"][0].as_str()), (Some("ready"), Some("52:54:00:0d:15:c0")), "{adopted}");

    // The machine page: its boots, what it would get now, its credential generation.
    c.goto(&format!("{base}/ui/machines/s1")).await.unwrap();
    let page_text = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    for want in ["Boot 1", "config fetched", "Credential generation", "What it would receive now", "iPXE script"] {
        assert!(page_text.contains(want), "machine page lacks {want:?}");
    }
    js(c, "document.querySelectorAll('details').forEach(d => d.open = true); return 0").await;
    shot(c, "machine-s1-1280.png").await;
    c.goto(&format!("{base}/ui/clusters")).await.unwrap();
    let clusters = c.find(Locator::Css("section[data-cluster=lab]")).await.unwrap().text().await.unwrap();
    assert!(clusters.contains("reported by the bootstrap server"), "{clusters}");
    shot(c, "clusters-1280.png").await;

    // Phone width: no page scrolls sideways.
    c.set_window_size(390, 844).await.unwrap();
    for path in ["/", "/ui/machines/s1", "/ui/discovered", "/ui/clusters"] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let overflow = js(c, "return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap_or(99) <= 0, "{path} overflows at 390 px by {overflow}");
    }
    c.goto(&format!("{base}/")).await.unwrap();
    shot(c, "fleet-390.png").await;

    // Nothing from another origin, and no secret in any page or response the browser got.
    let mut urls: Vec<String> = Vec::new();
    for path in ["/", "/ui/machines/s1", "/ui/machines/s2", "/ui/discovered", "/ui/clusters"] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = js(c, "return performance.getEntries().map(e => e.name).filter(n => n.includes('://'))").await;
        for u in seen.as_array().unwrap() {
            let u = u.as_str().unwrap().to_string();
            assert!(u.starts_with(&base), "{path} loaded {u} from another origin");
            urls.push(u);
        }
        let html = c.source().await.unwrap();
        for secret in tokens.iter().chain([&credential, &TOKEN.to_string()]) {
            assert!(!html.contains(secret.as_str()), "{path} shows a secret");
        }
    }
    urls.sort();
    urls.dedup();
    for u in &urls {
        let (_, body, headers) = http("GET", u, Some(&cookie), None, None);
        for secret in tokens.iter().chain([&credential, &TOKEN.to_string()]) {
            assert!(!body.contains(secret.as_str()), "{u} carries a secret");
        }
        if !u.contains("/ui/stream") {
            assert!(headers.iter().any(|(k, v)| k == "content-security-policy" && v.contains("default-src 'none'")), "{u}: {headers:?}");
        }
    }
    // The live stream (a long-lived response, so not in the browser's resource timing):
    // everything it replays from the first event on.
    let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(2)).build();
    let resp = agent.get(&format!("{base}/ui/stream?after=0")).set("Cookie", &cookie).call().unwrap();
    let mut streamed = Vec::new();
    let _ = std::io::Read::read_to_end(&mut resp.into_reader(), &mut streamed);
    let streamed = String::from_utf8_lossy(&streamed);
    assert!(streamed.contains("event: update") && streamed.contains("\"machine\":\"s1\""), "{streamed}");
    for secret in tokens.iter().chain([&credential, &TOKEN.to_string()]) {
        assert!(!streamed.contains(secret.as_str()), "the live stream carries a secret");
    }

    // Logging out ends the session in the browser.
    c.set_window_size(1280, 900).await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    click_and_load(c, "header form[action='/ui/logout'] button").await;
    c.goto(&format!("{base}/ui/machines/s1")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/ui/login"));
    b.client.clone().close().await.unwrap();
}

/// 1,000 machines with 20 events each: the fleet's first render time in the browser,
/// and live updates at 100 events/s. Figures are printed for the issue notes; the test
/// checks that the page shows every machine and applies every event, not a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_machine_fleet_renders_and_keeps_up_with_100_events_per_second() {
    let Some(b) = browser(1280, 900).await else { return };
    let c = &b.client;
    let mut cfg = String::from(
        "server:\n  listen: 127.0.0.1:8080\n  advertise: http://198.18.0.10:8080\n  boot_requests_per_minute: 1000000\n  unauthenticated_events_per_minute: 1000000\n\
         dhcp: { mode: off }\nbundles:\n  - name: rescue\n    os: generic\n    kernel: { url: \"http://198.18.0.10:8081/vmlinuz\" }\n    \
         initrd: { url: \"http://198.18.0.10:8081/initrd.img\" }\nmachines:\n",
    );
    let mac = |i: usize| format!("52:54:00:10:{:02x}:{:02x}", i / 256, i % 256);
    for i in 0..1000 {
        cfg.push_str(&format!("  - {{ name: n{i:04}, macs: [\"{}\"], bundle: rescue, labels: {{ rack: r{} }} }}\n", mac(i), i / 40));
    }
    let d = workdir(&cfg);
    let srv = Server::start(d.path());
    let base = srv.url.clone();
    // 20 events each, a whole install's worth, written straight into the server's store
    // (a second writer on its SQLite file): playing 20,000 requests in a debug build
    // would take the test's time, and the events' path is not what is measured here.
    {
        use bootplane_store::{BatchItem, NewEvent, Store};
        let store = bootplane_store::SqliteStore::open(&d.path().join("data")).unwrap();
        let boot = [
            ("dhcp.offer", serde_json::json!({})),
            ("dhcp.ack", serde_json::json!({})),
            ("tftp.read", serde_json::json!({ "file": "undionly.kpxe" })),
            ("dhcp.ack", serde_json::json!({})),
            ("boot.script", serde_json::json!({ "decision": "local" })),
        ];
        let items: Vec<BatchItem> = (0..1000)
            .flat_map(|i| {
                (0..4).flat_map(|_| boot.iter()).map(move |(k, v)| BatchItem::Event(NewEvent::new(Some(&format!("n{i:04}")), k, None, v.clone())))
            })
            .collect();
        assert_eq!(items.len(), 20_000);
        store.write_batch(items).await.unwrap();
    }

    login(c, &base).await;
    c.goto(&format!("{base}/")).await.unwrap();
    let rows = js(c, "return [document.readyState, document.querySelectorAll('tr[data-machine]').length, document.documentElement.outerHTML.length]").await;
    eprintln!("rows {rows}");
    let rows = js(c, "return document.querySelectorAll('tr[data-machine]').length").await;
    assert_eq!(rows, 1000);
    let timing = js(
        c,
        "const n = performance.getEntriesByType('navigation')[0]; \
         const p = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint'); \
         return { response_end: n.responseEnd, dom_content_loaded: n.domContentLoadedEventEnd, load: n.loadEventEnd, \
                  first_contentful_paint: p ? p.startTime : null, bytes: n.transferSize }",
    )
    .await;
    eprintln!("FIGURE fleet of 1000 machines x 20 events, first render (ms from navigation start): {timing}");
    shot(c, "fleet-1000.png").await;

    // 100 events a second for 5 seconds, then: how long until the page has applied the last.
    assert_eq!(wait_for(c, "return document.getElementById('live').textContent", "live".into(), 10).await, "live");
    let start = Instant::now();
    for k in 0..500usize {
        let at = start + Duration::from_millis(10 * k as u64);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (code, _) = req("GET", &format!("{base}/v1/boot/ipxe?mac={}&arch=x86_64", mac((k * 7) % 1000)), None, None);
        assert_eq!(code, 200);
    }
    let sent = start.elapsed();
    let sent_at = Instant::now();
    let (_, ev) = srv.admin("GET", "/v1/events?limit=1");
    let mut newest = serde_json::from_str::<serde_json::Value>(&ev).unwrap()[0]["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lag_samples = Vec::new();
    let caught_up = loop {
        let applied = js(c, "return Number(document.body.dataset.applied)").await.as_i64().unwrap_or(0);
        lag_samples.push(newest - applied);
        if applied >= newest {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The sink may still be landing the last batch.
        let (_, ev) = srv.admin("GET", "/v1/events?limit=1");
        newest = serde_json::from_str::<serde_json::Value>(&ev).unwrap()[0]["id"].as_i64().unwrap();
    };
    eprintln!(
        "FIGURE 500 events at 100/s sent in {sent:?}; page applied the last {} ms after the last was sent (events behind at first check: {})",
        sent_at.elapsed().as_millis(),
        lag_samples.first().copied().unwrap_or(0)
    );
    assert!(caught_up, "the page fell behind: {} events not applied after 30 s", lag_samples.last().unwrap());
    // The rows show what happened: the last machine booted shows its boot script.
    let name = format!("n{:04}", (499 * 7) % 1000);
    let kind = js(c, &format!("return document.querySelector('tr[data-machine=\"{name}\"] [data-field=last] .kind').textContent")).await;
    assert_eq!(kind, "boot.script");
    b.client.clone().close().await.unwrap();
}

/// `ui.anonymous_read: true` opens the read-only pages, never the changes.
#[test]
fn anonymous_read_opens_pages_but_not_changes() {
    let cfg = cluster_fixture().replacen("server:\n", "ui:\n  anonymous_read: true\nserver:\n", 1);
    let d = workdir(&cfg);
    let srv = Server::start(d.path());
    for path in ["/", "/ui/machines/s1", "/ui/discovered", "/ui/clusters"] {
        let (code, body, _) = http("GET", &format!("{}{path}", srv.url), None, None, None);
        assert_eq!(code, 200, "{path}");
        assert!(!body.contains("name=\"csrf\""), "{path}: an anonymous reader gets no forms");
    }
    // The compiled config and the stored spec are what the boot path guards with a nonce:
    // a reader sees the machine's state, not them; a logged-in operator does.
    let (_, anonymous, _) = http("GET", &format!("{}/ui/machines/s1", srv.url), None, None, None);
    for secret in ["<summary>Ignition</summary>", "<summary>iPXE script</summary>", "<summary>Spec as stored</summary>"] {
        assert!(!anonymous.contains(secret), "an anonymous reader sees {secret}");
    }
    let (_, _, h) = http("POST", &format!("{}/ui/login", srv.url), None, None, Some(&format!("token={TOKEN}&next=/")));
    let cookie = h.iter().find(|(k, _)| k == "set-cookie").map(|(_, v)| v.split(';').next().unwrap().to_string()).unwrap();
    let (_, operator, _) = http("GET", &format!("{}/ui/machines/s1", srv.url), Some(&cookie), None, None);
    for shown in ["<summary>Ignition</summary>", "<summary>iPXE script</summary>", "<summary>Spec as stored</summary>"] {
        assert!(operator.contains(shown), "a logged-in operator does not see {shown}");
    }
    let (code, _, _) = http("POST", &format!("{}/ui/machines/s1/provision", srv.url), None, None, Some("confirm=s1&csrf="));
    assert_eq!(code, 401);
    assert_eq!(srv.machine("s1")["state"], "ready");
}

/// Bad input to the dashboard: a forged or expired session cookie, an unknown machine,
/// a hostile `next`, an adoption with a bad name: clear answers, nothing changed.
#[test]
fn forged_sessions_and_bad_forms_are_refused() {
    let d = workdir(&cluster_fixture());
    let srv = Server::start(d.path());
    let url = |p: &str| format!("{}{p}", srv.url);
    for forged in ["bootplane_session=v1.99999999999.00000000000000000000000000000000.00", "bootplane_session=", "bootplane_session=%00%ff"] {
        assert_eq!(http("GET", &url("/"), Some(forged), None, None).0, 303, "{forged}");
    }
    let (code, _, h) = http("POST", &url("/ui/login"), None, None, Some(&format!("token={TOKEN}&next=//evil.example/")));
    assert_eq!(code, 303);
    assert!(h.iter().any(|(k, v)| k == "location" && v == "/"), "{h:?}");
    let cookie = h.iter().find(|(k, _)| k == "set-cookie").map(|(_, v)| v.split(';').next().unwrap().to_string()).unwrap();
    let (code, body, _) = http("GET", &url("/ui/machines/nope"), Some(&cookie), None, None);
    assert_eq!(code, 404);
    assert!(body.contains("no machine named"), "{body}");
    srv.get("/v1/boot/ipxe?mac=52:54:00:0d:15:c1&arch=x86_64");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, page, _) = http("GET", &url("/ui/discovered"), Some(&cookie), None, None);
    let csrf = csrf_in(&page);
    let discovered = page.split("action=\"/ui/discovered/").nth(1).unwrap().split('/').next().unwrap().to_string();
    for (form, want) in [
        (format!("csrf={csrf}&name=Not_A_Name&bundle=fcos-40"), 400),
        (format!("csrf={csrf}&name=ok-name&bundle=no-such-bundle"), 400),
        (format!("csrf={csrf}&name=s1&bundle=fcos-40"), 409),
    ] {
        let (code, body, _) = http("POST", &url(&format!("/ui/discovered/{discovered}/adopt")), Some(&cookie), None, Some(&form));
        assert_eq!(code, want, "{form}: {body}");
    }
    let (code, _, _) = http("POST", &url("/ui/machines/s1/explode"), Some(&cookie), None, Some(&format!("csrf={csrf}&confirm=s1")));
    assert_eq!(code, 404);
    assert_eq!(srv.machine("s1")["state"], "ready");
}
