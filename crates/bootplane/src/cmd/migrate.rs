//! `bootplane migrate --from URL --to URL`: the whole store, read in one snapshot and
//! written in one transaction, so a failed or interrupted migration leaves the target
//! empty and the command can simply be run again.

use super::{open_url, runtime, sqlite_path};
use anyhow::{bail, Context};
use bootplane_artifacts::download::redact_url;
use std::process::ExitCode;

pub fn run(from: &str, to: &str) -> anyhow::Result<ExitCode> {
    if from == to {
        bail!("--from and --to name the same store");
    }
    // Opening a SQLite URL creates the file: a typo in --from must not "migrate" an empty site.
    if let Some(p) = sqlite_path(from) {
        if !p.is_file() {
            bail!("--from {from}: no such database file");
        }
    }
    let rt = runtime()?;
    let source = open_url(from, None, &rt).with_context(|| format!("opening the source {}", redact_url(from)))?;
    let target = open_url(to, None, &rt).with_context(|| format!("opening the target {}", redact_url(to)))?;
    let snapshot = rt.block_on(source.export()).with_context(|| format!("reading {}", redact_url(from)))?;
    let summary = snapshot.summary();
    rt.block_on(target.import(snapshot)).with_context(|| format!("writing {}", redact_url(to)))?;
    println!("migrated {summary} from {} to {}", redact_url(from), redact_url(to));
    println!("next: give every instance on the new store the old data directory's secret.key (sealed secrets), then start them with --database {}", redact_url(to));
    Ok(ExitCode::SUCCESS)
}
