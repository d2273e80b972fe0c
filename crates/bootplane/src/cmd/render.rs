use anyhow::{bail, Context};
use bootplane_config::Config;
use bootplane_core::model::MachineRecord;
use bootplane_core::{decide, ipxe, DecisionContext, IdentityMatch, MachineState, Observed};
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[group(multiple = false)]
pub struct RenderWhat {
    /// The iPXE script the machine gets when it network-boots to install (default).
    #[arg(long)]
    ipxe: bool,
    /// The Ignition config it is served while provisioning.
    #[arg(long)]
    ignition: bool,
    /// The Butane it is built from (its templates and its own snippet).
    #[arg(long)]
    butane: bool,
    /// Its /etc/rancher/k3s/config.yaml (not built yet).
    #[arg(long)]
    k3s_config: bool,
}

/// Stands in for the per-machine credential, which only the server can issue.
const CREDENTIAL_PLACEHOLDER: &str = "issued-by-the-server-at-install-time";

pub fn run(name: &str, config: &Path, what: RenderWhat) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let spec = cfg
        .machine(name)
        .with_context(|| format!("{}: no machine named `{name}`", config.display()))?
        .clone();
    let server = cfg.server.advertise_url().unwrap_or_else(|| format!("http://{}", cfg.server.listen));
    if what.k3s_config {
        bail!("--k3s-config is not available in this version of bootplane; --ipxe, --ignition and --butane are");
    }
    let bundle = spec.bundle.as_deref().and_then(|b| cfg.bundle(b));
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
        let (config, _) = bootplane_core::config::assemble(&spec, &templates, bundle, &server, CREDENTIAL_PLACEHOLDER, &cfg.ssh_authorized_keys)?;
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = chrono::Utc::now();
    let record = MachineRecord {
        spec,
        state: MachineState::Provision,
        install_attempts: 0,
        credential_generation: 0,
        observed: Observed::default(),
        last_seen: None,
        created: now,
        updated: now,
    };
    let observed = Observed { mac: record.spec.macs.first().copied(), ..Default::default() };
    let decision = decide(&DecisionContext {
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
