use super::{apply_set, data_dir, open_store, runtime};
use crate::StoreArgs;
use bootplane_config::Config;
use std::path::Path;
use std::process::ExitCode;

pub fn run(file: &Path, args: StoreArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(file)?;
    let dir = data_dir(&args, &cfg, Some(file));
    let store = open_store(&args, &dir)?;
    let report = runtime()?.block_on(store.apply(apply_set(&cfg)?))?;
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
