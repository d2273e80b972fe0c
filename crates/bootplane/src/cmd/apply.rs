//! `bootplane apply -f FILE`: the file is merged into the store's desired state, as
//! `kubectl apply` does: references resolve against what the store already holds, and
//! only what the file names changes (sections it sets, entries it lists by name).

use super::{data_dir, open_store, runtime};
use crate::StoreArgs;
use bootplane_config::{stored, Config, DhcpSettings, ServerSettings, Template, TftpSettings, UiSettings};
use bootplane_core::model::Bundle;
use bootplane_core::state::{MachineState, Trigger};
use bootplane_store::{ApplySet, Store};
use std::path::Path;
use std::process::ExitCode;

pub fn run(file: &Path, args: StoreArgs, dry_run: bool, prune: bool) -> anyhow::Result<ExitCode> {
    let partial = Config::parse(file)?;
    let dir = data_dir(&args, &partial, Some(file));
    let rt = runtime()?;
    // A file that is invalid on its own creates no store.
    let existing = args.database.is_some() || partial.server.database.is_some() || dir.join("bootplane.db").exists();
    let stored = match existing {
        true => rt.block_on(stored_config(open_store(&args, &partial, &dir, &rt)?.as_ref(), &partial))?,
        false => Config::default(),
    };
    let before = stored.clone();
    let merged = partial.clone().over(stored);
    merged.validate()?;
    if dry_run {
        for line in diff(&before, &named_set(&merged, &partial)?) {
            println!("{line}");
        }
        if prune {
            for (kind, name) in prunable(&before, &partial) {
                println!("- {kind} {name}");
            }
        }
        println!("dry run: nothing written to {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let store = open_store(&args, &partial, &dir, &rt)?;
    let set = named_set(&merged, &partial)?;
    let report = rt.block_on(store.apply(set))?;
    if prune {
        for (kind, name) in prunable(&before, &partial) {
            // A k3s node (any machine past `ready`) leaves its cluster through the
            // cluster's API first, which the server does (`machines retire`); retiring it
            // here would leave its node and node password behind, so its name could not
            // join again.
            let member = match kind {
                "machine" => rt.block_on(store.machine(&name))?.filter(|m| !matches!(m.state, MachineState::Discovered | MachineState::Ready)).and_then(|m| m.spec.cluster),
                _ => None,
            };
            if let Some(cluster) = member {
                println!(
                    "kept machine {name}: it is a node of cluster {cluster}; `bootplane machines retire {name}` takes it out of the cluster and retires it"
                );
                continue;
            }
            let done = match kind {
                "machine" => rt
                    .block_on(store.transition(
                        &name,
                        MachineState::Retired,
                        Trigger::AdminRetire,
                        None,
                        serde_json::json!(format!("pruned: {} no longer names it", file.display())),
                    ))
                    .map(|_| "retired (its history stays; `machines show` has it)".to_string()),
                _ => rt.block_on(store.delete_bundle(&name)).map(|_| "removed".to_string()),
            };
            match done {
                Ok(what) => println!("pruned {kind} {name}: {what}"),
                Err(e) => println!("kept {kind} {name}: {e}"),
            }
        }
    }
    println!(
        "applied {}: {} machine(s) created, {} updated, {} adopted from discovered, {} set to provision; {} new bundle(s)",
        file.display(),
        report.machines_created,
        report.machines_updated,
        report.machines_adopted,
        report.machines_provisioned,
        report.bundles_created
    );
    Ok(ExitCode::SUCCESS)
}

/// The store's desired state as a config: its settings, bundles, clusters, the templates
/// `partial`'s machines refer to, and every machine an operator declared (not the
/// discovered or retired ones).
async fn stored_config(store: &dyn Store, partial: &Config) -> anyhow::Result<Config> {
    async fn setting<T: serde::de::DeserializeOwned>(store: &dyn Store, key: &str) -> anyhow::Result<Option<T>> {
        match store.setting(key).await? {
            Some(v) => Ok(Some(serde_json::from_str(&v).map_err(|e| anyhow::anyhow!("stored {key} is unreadable: {e}"))?)),
            None => Ok(None),
        }
    }
    let mut cfg = Config {
        server: setting::<ServerSettings>(store, stored::SERVER).await?.unwrap_or_default(),
        dhcp: setting::<DhcpSettings>(store, stored::DHCP).await?.unwrap_or_default(),
        tftp: setting::<TftpSettings>(store, stored::TFTP).await?.unwrap_or_default(),
        ui: setting::<UiSettings>(store, stored::UI).await?.unwrap_or_default(),
        ssh_authorized_keys: setting(store, stored::SSH_AUTHORIZED_KEYS).await?.unwrap_or_default(),
        bundles: store.bundles().await?,
        clusters: store.clusters().await?,
        ..Config::default()
    };
    cfg.machines = store
        .machines()
        .await?
        .into_iter()
        .filter(|m| !matches!(m.state, MachineState::Discovered | MachineState::Retired))
        .map(|m| m.spec)
        .collect();
    let wanted: std::collections::BTreeSet<&String> = partial.machines.iter().flat_map(|m| &m.templates).collect();
    for name in wanted {
        if let Some(butane) = store.template(name).await? {
            cfg.templates.push(Template { name: name.clone(), butane });
        }
    }
    Ok(cfg)
}

/// What `partial` names, taken from `merged` (so defaults are resolved against the whole).
fn named_set(merged: &Config, partial: &Config) -> anyhow::Result<ApplySet> {
    let named = |names: &[&str], name: &str| names.contains(&name);
    let machines: Vec<&str> = partial.machines.iter().map(|m| m.name.as_str()).collect();
    let bundles: Vec<&str> = partial.bundles.iter().map(|b| b.name.as_str()).collect();
    let clusters: Vec<&str> = partial.clusters.iter().map(|c| c.name.as_str()).collect();
    let templates: Vec<&str> = partial.templates.iter().map(|t| t.name.as_str()).collect();
    let mut settings = Vec::new();
    let n = partial.named;
    if n.server {
        settings.push((stored::SERVER.into(), serde_json::to_string(&merged.server)?));
    }
    if n.dhcp {
        settings.push((stored::DHCP.into(), serde_json::to_string(&merged.dhcp)?));
    }
    if n.tftp {
        settings.push((stored::TFTP.into(), serde_json::to_string(&merged.tftp)?));
    }
    if n.ui {
        settings.push((stored::UI.into(), serde_json::to_string(&merged.ui)?));
    }
    if n.ssh_authorized_keys {
        settings.push((stored::SSH_AUTHORIZED_KEYS.into(), serde_json::to_string(&merged.ssh_authorized_keys)?));
    }
    Ok(ApplySet {
        machines: merged.machines.iter().filter(|m| named(&machines, &m.name)).cloned().collect(),
        bundles: merged.bundles.iter().filter(|b| named(&bundles, &b.name)).cloned().collect(),
        clusters: merged.clusters.iter().filter(|c| named(&clusters, &c.name)).cloned().collect(),
        templates: merged
            .templates
            .iter()
            .filter(|t| named(&templates, &t.name))
            .map(|t| (t.name.clone(), t.butane.clone()))
            .collect(),
        settings,
    })
}

/// `+ machine m3`, `~ cluster lab`, `= bundle fcos` (unchanged) for a dry run.
fn diff(stored: &Config, set: &ApplySet) -> Vec<String> {
    fn line<T: PartialEq>(kind: &str, name: &str, new: &T, old: Option<&T>) -> String {
        let mark = match old {
            None => "+",
            Some(o) if o == new => "=",
            Some(_) => "~",
        };
        format!("{mark} {kind} {name}")
    }
    let mut out = Vec::new();
    for (k, v) in &set.settings {
        let old = match k.as_str() {
            stored::SERVER => serde_json::to_string(&stored.server).ok(),
            stored::DHCP => serde_json::to_string(&stored.dhcp).ok(),
            stored::TFTP => serde_json::to_string(&stored.tftp).ok(),
            stored::UI => serde_json::to_string(&stored.ui).ok(),
            _ => serde_json::to_string(&stored.ssh_authorized_keys).ok(),
        };
        out.push(line("setting", k.trim_start_matches("config."), v, old.as_ref()));
    }
    for b in &set.bundles {
        let old = stored.bundles.iter().find(|x| x.name == b.name).map(|x| Bundle { revision: b.revision, ..x.clone() });
        out.push(line("bundle", &b.name, b, old.as_ref()));
    }
    for c in &set.clusters {
        out.push(line("cluster", &c.name, c, stored.clusters.iter().find(|x| x.name == c.name)));
    }
    for (name, butane) in &set.templates {
        out.push(line("template", name, butane, stored.templates.iter().find(|t| &t.name == name).map(|t| &t.butane)));
    }
    for m in &set.machines {
        out.push(line("machine", &m.name, m, stored.machines.iter().find(|x| x.name == m.name)));
    }
    out
}

/// What `--prune` removes: declared machines in the store that the file set does not
/// name, and bundles it neither names nor uses. Clusters and templates are never pruned (a cluster holds its CA and
/// tokens; `bootplane cluster reset` is the deliberate way to drop them).
fn prunable(stored: &Config, partial: &Config) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for m in &stored.machines {
        if partial.machine(&m.name).is_none() {
            out.push(("machine", m.name.clone()));
        }
    }
    // A bundle the remaining machines or clusters use stays, named or not.
    let used: Vec<&str> = partial
        .machines
        .iter()
        .filter_map(|m| m.bundle.as_deref())
        .chain(partial.clusters.iter().filter_map(|c| c.k3s.airgap_bundle.as_deref()))
        .collect();
    for b in &stored.bundles {
        if partial.bundle(&b.name).is_none() && !used.contains(&b.name.as_str()) {
            out.push(("bundle", b.name.clone()));
        }
    }
    out
}
