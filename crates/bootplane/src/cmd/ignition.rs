//! `bootplane ignition validate FILE`: a drop-in for `ignition-validate`.

use anyhow::Context;
use clap::Subcommand;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum IgnitionCmd {
    /// Validate an Ignition config (spec 3.0.0–3.5.0); exit 1 on any error. `-` reads stdin.
    Validate { file: PathBuf },
}

pub fn run(cmd: IgnitionCmd) -> anyhow::Result<ExitCode> {
    let IgnitionCmd::Validate { file } = cmd;
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
    };
    let report = bootplane_butane::ignition::validate(&text);
    for e in &report {
        eprintln!("{e}");
    }
    Ok(if report.iter().any(|e| e.level == bootplane_butane::Level::Error) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
