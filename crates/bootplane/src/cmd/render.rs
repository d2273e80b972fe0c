use anyhow::{bail, Context};
use bootplane_config::Config;
use bootplane_core::model::MachineRecord;
use bootplane_core::{decide, ignition, ipxe, DecisionContext, IdentityMatch, MachineState, Observed};
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
    /// The merged Butane (not built yet).
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
    if what.butane || what.k3s_config {
        bail!("--butane and --k3s-config are not available in this version of bootplane; --ipxe and --ignition are");
    }
    let bundle = spec.bundle.as_deref().and_then(|b| cfg.bundle(b));
    if what.ignition {
        let v = bundle
            .and_then(|b| b.butane_version.as_deref())
            .and_then(ignition::spec_for_butane)
            .unwrap_or(ignition::DEFAULT_SPEC);
        let env = ignition::machine_env(&server, name, CREDENTIAL_PLACEHOLDER);
        let host = spec.hostname.clone().unwrap_or_else(|| spec.name.clone());
        println!("{}", serde_json::to_string_pretty(&ignition::base_config(v, &host, &env))?);
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
