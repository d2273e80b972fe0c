use anyhow::{bail, Context};
use bootplane_config::Config;
use bootplane_core::config::Inputs;
use bootplane_core::k3s;
use bootplane_core::model::{MachineRecord, OsKind};
use bootplane_core::node::K3sInputs;
use bootplane_core::{decide, ipxe, DecisionContext, IdentityMatch, MachineState, Observed};
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[group(multiple = false)]
pub struct RenderWhat {
    /// The iPXE script the machine gets when it network-boots to install (default).
    #[arg(long)]
    ipxe: bool,
    /// The config it is served while provisioning: Ignition, or for an ubuntu bundle
    /// the cloud-init `user-data`.
    #[arg(long)]
    ignition: bool,
    /// The Butane it is built from (its templates and its own snippet).
    #[arg(long)]
    butane: bool,
    /// Its /etc/rancher/k3s/config.yaml (cluster members only).
    #[arg(long)]
    k3s_config: bool,
}

/// Stands in for the per-attempt config nonce, which only the server issues, per boot.
const NONCE_PLACEHOLDER: &str = "issued-per-boot";

/// Stands in for the per-machine credential, which only the server can issue.
const CREDENTIAL_PLACEHOLDER: &str = "issued-by-the-server-at-install-time";
/// The k3s node password is derived from the server's key: offline, a placeholder.
const NODE_PASSWORD_PLACEHOLDER: &str = "derived-by-the-server-from-its-key";

pub fn run(name: &str, config: &Path, what: RenderWhat) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let spec = cfg.machine(name).with_context(|| format!("{}: no machine named `{name}`", config.display()))?;
    let server = cfg.server.advertise_url().unwrap_or_else(|| format!("http://{}", cfg.server.listen));
    let bundle = spec.bundle.as_deref().and_then(|b| cfg.bundle(b));
    let os = bundle.map(|b| b.os).unwrap_or(OsKind::Generic);
    let cluster = spec.cluster.as_deref().and_then(|c| cfg.cluster(c));
    let node = match cluster {
        Some(c) => {
            let bootstrap = c.k3s.bootstrap.as_deref().and_then(|b| cfg.machine(b));
            Some(k3s::node(c, spec, bootstrap, os)?)
        }
        None => None,
    };
    if what.k3s_config {
        let Some(node) = &node else { bail!("machine {name} is in no cluster; it has no k3s config") };
        let ip = bootplane_core::network::of(spec)?.map(|n| n.address);
        print!("{}", k3s::config_yaml(node, ip));
        return Ok(ExitCode::SUCCESS);
    }
    let templates: Vec<(String, String)> =
        spec.templates.iter().filter_map(|t| cfg.templates.iter().find(|x| &x.name == t).map(|x| (x.name.clone(), x.butane.clone()))).collect();
    if what.butane {
        for (n, t) in &templates {
            println!("# template {n}\n---\n{t}");
        }
        match &spec.butane {
            Some(b) => println!("# {name}'s own butane\n---\n{b}"),
            None if templates.is_empty() => eprintln!("# {name} has no Butane of its own; it gets only bootplane's files (see --ignition)"),
            None => {}
        }
        return Ok(ExitCode::SUCCESS);
    }
    if what.ignition {
        let airgap = cluster.and_then(|c| c.k3s.airgap_bundle.as_deref()).and_then(|b| cfg.bundle(b));
        let inputs = Inputs {
            spec,
            templates: &templates,
            bundle,
            server: &server,
            credential: CREDENTIAL_PLACEHOLDER,
            ssh_keys: &cfg.ssh_authorized_keys,
            k3s: node.clone().map(|node| K3sInputs { node, airgap, node_password: NODE_PASSWORD_PLACEHOLDER }),
            ca_pem: None,
        };
        if os == OsKind::Ubuntu {
            eprintln!("# {name} installs Ubuntu: this is its cloud-init user-data");
            print!("{}", bootplane_core::os::ubuntu::user_data(&inputs)?);
        } else {
            let (config, _) = bootplane_core::config::assemble(&inputs)?;
            println!("{}", serde_json::to_string_pretty(&config)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = chrono::Utc::now();
    let record = MachineRecord::fresh(spec.clone(), MachineState::Provision, now);
    let observed = Observed { mac: record.spec.macs.first().copied(), ..Default::default() };
    let decision = decide(&DecisionContext {
        nonce: NONCE_PLACEHOLDER,
        observed: &observed,
        identity: &IdentityMatch::Known(name.to_string()),
        machine: Some(&record),
        bundle,
        server: &server,
        max_install_attempts: u32::MAX,
    });
    eprintln!("# {name} as it would boot in state `provision` (decision: {})", decision.kind());
    print!("{}", ipxe::render(&decision, &observed));
    Ok(ExitCode::SUCCESS)
}
