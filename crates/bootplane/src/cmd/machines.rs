use crate::ClientArgs;
use anyhow::{bail, Context};
use clap::Subcommand;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde_json::Value;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum MachinesCmd {
    /// All machines, discovered ones included.
    List,
    /// One machine, with its recent events (where its last boot stopped).
    Show { name: String },
    /// Install NAME on its next network boot (also reinstalls an installed machine). An
    /// installed k3s node is cordoned, drained and deleted from its cluster first.
    Provision {
        name: String,
        /// Also when its cluster cannot be reached (the node then stays in the cluster).
        #[arg(long)]
        force: bool,
        /// The node is dead: delete it from the cluster without cordon and drain.
        #[arg(long)]
        no_drain: bool,
    },
    /// Take NAME out of service; it boots its local disk and never installs. A k3s node
    /// is cordoned, drained and deleted from its cluster first (its name is then free).
    Retire {
        name: String,
        /// Also when it is its cluster's only server, or its cluster cannot be reached
        /// (the node then stays in the cluster).
        #[arg(long)]
        force: bool,
        /// The node is dead: delete it from the cluster without cordon and drain.
        #[arg(long)]
        no_drain: bool,
    },
    /// Reinstall NAME end to end: a k3s node cordoned, drained and deleted from its
    /// cluster, one-time network boot, provision, power cycle through its `power:`
    /// driver, then follow its events until it reports (or --timeout).
    Reinstall {
        name: String,
        /// Also when it is its cluster's only server (the cluster is rebuilt).
        #[arg(long)]
        force: bool,
        /// The node is dead: delete it from the cluster without cordon and drain.
        #[arg(long)]
        no_drain: bool,
        /// Seconds to wait for the installed report.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Power machines on in waves, so DHCP, TFTP and HTTP are not hit by a whole rack at
    /// once. SELECTOR: machine names and/or labels (`rack=r1`, `rack=r1,role=worker`);
    /// none: every machine with a `power:`.
    PowerOn {
        selector: Vec<String>,
        /// Machines per wave.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        wave: u32,
        /// Time between the start of one wave and the next (90s, 2m, or seconds).
        #[arg(long, default_value = "30s", value_parser = bootplane_config::parse_duration)]
        interval: std::time::Duration,
    },
    /// Switch NAME's power or read it, through its `power:` driver (IPMI, Redfish, command).
    Power {
        name: String,
        #[arg(value_parser = ["on", "off", "cycle", "status"])]
        action: String,
    },
}

/// The admin API's HTTP agent: over https, trusting `--ca-file`, else the site CA in the
/// data directory when there is one (the server host), else the system's roots.
fn agent(args: &ClientArgs) -> anyhow::Result<ureq::Agent> {
    let builder = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(30));
    let site_ca = super::default_data_dir().join("tls/ca.crt");
    let ca = match &args.ca_file {
        Some(f) => Some(f.clone()),
        None => site_ca.exists().then_some(site_ca),
    };
    match ca {
        Some(ca) if args.server.starts_with("https://") => {
            bootplane_power::trusting(builder, &ca).map_err(|e| anyhow::anyhow!("--ca-file: {e}"))
        }
        _ => Ok(builder.build()),
    }
}

pub(crate) struct Client {
    base: String,
    token: Option<String>,
    /// Where the token came from (or where none was found), for a 401's message.
    token_source: String,
    agent: ureq::Agent,
}

impl Client {
    pub(crate) fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let file = super::default_data_dir().join("admin-token");
        let (token, token_source) = match &args.token {
            Some(t) => (Some(t.clone()), "--token / BOOTPLANE_TOKEN".to_string()),
            None => match std::fs::read_to_string(&file) {
                Ok(t) => (Some(t.trim().to_string()), file.display().to_string()),
                Err(_) => (None, file.display().to_string()),
            },
        };
        Ok(Client { base: args.server.trim_end_matches('/').to_string(), token, token_source, agent: agent(args)? })
    }

    fn call(&self, method: &str, path: &str) -> anyhow::Result<Value> {
        self.call_with(method, path, None)
    }

    fn call_with(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let r = self.send(method, path, body)?;
        r.into_json().with_context(|| format!("{method} {url}: response is not JSON"))
    }

    /// A text answer, e.g. a kubeconfig.
    pub(crate) fn text(&self, method: &str, path: &str) -> anyhow::Result<String> {
        let url = format!("{}{}", self.base, path);
        self.send(method, path, None)?.into_string().with_context(|| format!("{method} {url}: unreadable response"))
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<ureq::Response> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let sent = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match sent {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(401, _)) if self.token.is_none() => bail!(
                "{method} {url}: the server wants the admin token and none was sent: no --token, no BOOTPLANE_TOKEN, \
                 and no {} (`bootplane serve` writes it into its data directory; run from there, set \
                 BOOTPLANE_DATA_DIR, or pass --token)",
                self.token_source
            ),
            Err(ureq::Error::Status(401, _)) => bail!(
                "{method} {url}: the server refused the admin token from {}; it is in the server's data directory \
                 (admin-token) or its config's server.admin_token_file",
                self.token_source
            ),
            Err(ureq::Error::Status(code, r)) => {
                let body: Value = r.into_json().unwrap_or(Value::Null);
                let msg = body["error"].as_str().unwrap_or("no detail").to_string();
                bail!("{method} {url}: HTTP {code}: {msg}")
            }
            Err(e) => bail!("cannot reach bootplane at {}: {e} (is `bootplane serve` running? set --server or BOOTPLANE_SERVER)", self.base),
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `bootplane ssh-known-hosts NAME`: the `ssh-keygen -R` lines for every name the
/// machine's host key may be known under.
pub fn ssh_known_hosts(name: &str, args: ClientArgs) -> anyhow::Result<ExitCode> {
    let m = Client::new(&args)?.call("GET", &format!("/v1/machines/{name}"))?;
    let mut hosts: Vec<String> = vec![name.to_string()];
    for k in ["hostname", "ip"] {
        if let Some(h) = m[k].as_str() {
            hosts.push(h.to_string());
            if let Some((short, _)) = h.split_once('.').filter(|_| k == "hostname") {
                hosts.push(short.to_string());
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    for h in hosts {
        println!("ssh-keygen -R {h}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(cmd: MachinesCmd, args: ClientArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&args)?;
    if let MachinesCmd::Reinstall { name, force, no_drain, timeout } = &cmd {
        return reinstall(&c, name, *force, *no_drain, *timeout);
    }
    if let MachinesCmd::PowerOn { selector, wave, interval } = &cmd {
        let (labels, names): (Vec<&String>, Vec<&String>) = selector.iter().partition(|s| s.contains('='));
        let names: Vec<String> = names.into_iter().cloned().collect();
        let labels = labels.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
        return power_on_in_waves(&c, &names, *wave as usize, *interval, Some(labels.as_str()).filter(|l| !l.is_empty()));
    }

    let v = match &cmd {
        MachinesCmd::List => c.call("GET", "/v1/machines")?,
        MachinesCmd::Show { name } => c.call("GET", &format!("/v1/machines/{name}"))?,
        MachinesCmd::Provision { name, force, no_drain } | MachinesCmd::Retire { name, force, no_drain } => {
            let op = if matches!(cmd, MachinesCmd::Provision { .. }) { "provision" } else { "retire" };
            c.call_with("POST", &format!("/v1/machines/{name}/{op}"), Some(serde_json::json!({ "force": force, "no_drain": no_drain })))?
        }
        MachinesCmd::Reinstall { .. } | MachinesCmd::PowerOn { .. } => unreachable!("handled above"),
        MachinesCmd::Power { name, action } if action == "status" => c.call("GET", &format!("/v1/machines/{name}/power"))?,
        MachinesCmd::Power { name, action } => {
            c.call_with("POST", &format!("/v1/machines/{name}/power"), Some(serde_json::json!({ "action": action })))?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    match cmd {
        MachinesCmd::List => {
            let mut t = Table::new();
            t.load_preset(UTF8_BORDERS_ONLY);
            t.set_header(["NAME", "STATE", "HOSTNAME", "MACS", "UUID", "ARCH", "BUNDLE", "LAST SEEN"]);
            for m in v.as_array().into_iter().flatten() {
                let arch = if m["arch"].is_null() { &m["observed"]["arch"] } else { &m["arch"] };
                t.add_row([
                    s(&m["name"]),
                    s(&m["state"]),
                    s(&m["hostname"]),
                    s(&m["macs"]),
                    s(&m["uuid"]),
                    s(arch),
                    s(&m["bundle"]),
                    s(&m["last_seen"]),
                ]);
            }
            println!("{t}");
        }
        MachinesCmd::Show { .. } => {
            for k in ["name", "state", "hostname", "macs", "uuid", "serial", "ip", "role", "cluster", "bundle", "install_disk", "install_attempts", "last_seen"] {
                println!("{k:<17}{}", s(&v[k]));
            }
            println!("{:<17}{}", "observed", v["observed"]);
            let mut t = Table::new();
            t.load_preset(UTF8_BORDERS_ONLY);
            t.set_header(["TIME", "EVENT", "SOURCE", "DETAIL"]);
            for e in v["events"].as_array().into_iter().flatten() {
                t.add_row([s(&e["time"]), s(&e["kind"]), s(&e["source"]), e["detail"].to_string()]);
            }
            println!("\nrecent events (oldest first):\n{t}");
            // Why it failed, in the failing unit's own words (k3s's "Node password
            // rejected", an installer's error), without reading the JSON above.
            // (A report's details sit inside its state change's.)
            let failure = v["events"].as_array().into_iter().flatten().rev().map(|e| (e, &e["detail"]["detail"])).find(|(_, d)| d["log_tail"].is_string());
            if let (Some("failed"), Some((e, d))) = (v["state"].as_str(), failure) {
                println!("\nwhy it failed: {} reported at {}; its last log lines:", s(&d["unit"]), s(&e["time"]));
                let tail: Vec<&str> = d["log_tail"].as_str().unwrap_or_default().lines().collect();
                for line in &tail[tail.len().saturating_sub(12)..] {
                    println!("  {line}");
                }
            }
        }
        MachinesCmd::Reinstall { .. } | MachinesCmd::PowerOn { .. } => unreachable!("handled above"),
        MachinesCmd::Power { name, .. } => {
            let did = v["action"].as_str().map(|a| format!("power {a} done; ")).unwrap_or_default();
            println!("{name}: {did}power is {} ({})", s(&v["state"]), s(&v["driver"]));
        }
        MachinesCmd::Provision { name, .. } | MachinesCmd::Retire { name, .. } => {
            for step in v["steps"].as_array().into_iter().flatten() {
                println!("{name}: {}", s(step));
            }
            let changed = v["changed"].as_bool().unwrap_or(false);
            println!("{name}: {}{}", s(&v["state"]), if changed { "" } else { " (unchanged)" });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `machines reinstall`: the server does the power steps; this follows the machine's
/// events until it reports `installed` (exit 0), `failed` (1) or the timeout (1).
fn reinstall(c: &Client, name: &str, force: bool, no_drain: bool, timeout: u64) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({ "force": force, "no_drain": no_drain });
    let started = c.call_with("POST", &format!("/v1/machines/{name}/reinstall"), Some(body))?;
    for step in started["steps"].as_array().into_iter().flatten() {
        println!("{name}: {}", s(step));
    }
    let mut after = started["after"].as_i64().unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    loop {
        let m = c.call("GET", &format!("/v1/machines/{name}"))?;
        for e in m["events"].as_array().into_iter().flatten() {
            let id = e["id"].as_i64().unwrap_or(0);
            if id > after {
                after = id;
                let detail = &e["detail"];
                let what = match e["kind"].as_str() {
                    Some("state.changed") => format!("{} -> {}", s(&detail["from"]), s(&detail["to"])),
                    _ => detail.to_string(),
                };
                println!("{name}: {} {what}", s(&e["kind"]));
            }
        }
        match m["state"].as_str() {
            Some("installed") => {
                println!("{name}: reinstalled. Its SSH host keys changed; drop the old ones with `bootplane ssh-known-hosts {name}`");
                return Ok(ExitCode::SUCCESS);
            }
            Some("failed") => {
                eprintln!("{name}: the install failed; `bootplane machines show {name}` has its events");
                return Ok(ExitCode::from(1));
            }
            _ => {}
        }
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "{name}: no installed report within {timeout} s (state {}); it may still be installing: `bootplane machines show {name}`",
                s(&m["state"])
            );
            return Ok(ExitCode::from(1));
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// Which machines `power-on` takes: the names given, else those with a `power:` whose
/// labels include every `k=v` of the selector; in name order.
pub(crate) fn wave_targets(machines: &[Value], names: &[String], selector: Option<&str>) -> anyhow::Result<Vec<String>> {
    let wanted: Vec<(String, String)> = match selector {
        Some(sel) => sel
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).with_context(|| format!("selector `{p}` is not key=value")))
            .collect::<anyhow::Result<_>>()?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for m in machines {
        let name = m["name"].as_str().unwrap_or_default().to_string();
        let named = names.is_empty() || names.contains(&name);
        let labelled = wanted.iter().all(|(k, v)| m["labels"][k].as_str() == Some(v.as_str()));
        let retired = m["state"] == "retired";
        if named && labelled && !retired && !m["power"].is_null() {
            out.push(name);
        }
    }
    for n in names {
        if !out.contains(n) {
            bail!("machine {n} is unknown, retired, or has no `power:`; `bootplane machines show {n}` says which");
        }
    }
    out.sort();
    Ok(out)
}

/// `machines power-on`: each wave's machines are switched on together, the next wave
/// starts `interval` seconds after this one started.
fn power_on_in_waves(c: &Client, names: &[String], wave: usize, interval: std::time::Duration, selector: Option<&str>) -> anyhow::Result<ExitCode> {
    let machines = c.call("GET", "/v1/machines")?;
    let targets = wave_targets(machines.as_array().map(Vec::as_slice).unwrap_or_default(), names, selector)?;
    if targets.is_empty() {
        bail!("no machine with a `power:` matches; nothing to do");
    }
    let waves: Vec<&[String]> = targets.chunks(wave).collect();
    let mut failed = 0;
    for (i, group) in waves.iter().enumerate() {
        let started = std::time::Instant::now();
        let results: Vec<(String, anyhow::Result<Value>)> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|n| s.spawn(move || (n.clone(), c.call_with("POST", &format!("/v1/machines/{n}/power"), Some(serde_json::json!({ "action": "on" }))))))
                .collect();
            handles.into_iter().map(|h| h.join().expect("power thread")).collect()
        });
        for (n, r) in results {
            match r {
                Ok(v) => println!("wave {}/{}: {n}: power is {}", i + 1, waves.len(), s(&v["state"])),
                Err(e) => {
                    failed += 1;
                    println!("wave {}/{}: {n}: FAILED: {e:#}", i + 1, waves.len());
                }
            }
        }
        if i + 1 < waves.len() {
            std::thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wave_targets_follow_names_labels_and_power() {
        let ms: Vec<Value> = serde_json::from_str(
            r#"[{"name":"b","labels":{"rack":"r1"},"power":{},"state":"installed"},
                {"name":"a","labels":{"rack":"r1"},"power":{},"state":"ready"},
                {"name":"c","labels":{"rack":"r2"},"power":{},"state":"ready"},
                {"name":"d","labels":{"rack":"r1"},"state":"ready"},
                {"name":"e","labels":{"rack":"r1"},"power":{},"state":"retired"}]"#,
        )
        .unwrap();
        assert_eq!(wave_targets(&ms, &[], Some("rack=r1")).unwrap(), ["a", "b"], "sorted; no power or retired left out");
        assert_eq!(wave_targets(&ms, &[], None).unwrap(), ["a", "b", "c"]);
        assert_eq!(wave_targets(&ms, &["c".into()], None).unwrap(), ["c"]);
        assert!(wave_targets(&ms, &["d".into()], None).unwrap_err().to_string().contains("no `power:`"));
        assert!(wave_targets(&ms, &[], Some("rack")).is_err());
    }
}
