use anyhow::{bail, Context};
use std::path::Path;
use std::process::ExitCode;

pub fn run(dir: &Path, force: bool) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("bootplane.yaml");
    if path.exists() && !force {
        bail!("{} already exists; pass --force to overwrite it", path.display());
    }
    std::fs::write(&path, bootplane_config::STARTER).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    println!("next: cd {} && bootplane check && bootplane serve", dir.display());
    Ok(ExitCode::SUCCESS)
}
