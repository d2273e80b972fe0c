//! `bootplane butane`: a drop-in for the `butane` CLI (same flags, stdin/stdout by
//! default, warnings on stderr, `--strict` fails on any warning).

use anyhow::Context;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ButaneArgs {
    /// Fail on any warning.
    #[arg(short, long)]
    strict: bool,
    /// Output formatted JSON.
    #[arg(short, long)]
    pretty: bool,
    /// Directory for `local:` file references.
    #[arg(short = 'd', long)]
    files_dir: Option<PathBuf>,
    /// Output file (default stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Print only report lines (accepted for compatibility; this is the default form).
    #[arg(short, long)]
    raw_errors: bool,
    /// Input file (default stdin).
    input: Option<PathBuf>,
}

pub fn run(a: ButaneArgs) -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    match &a.input {
        Some(p) => text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        None => {
            std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        }
    }
    let opts = bootplane_butane::Options { files_dir: a.files_dir.as_deref() };
    match bootplane_butane::translate(&text, &opts) {
        Ok(t) => {
            for w in &t.warnings {
                eprintln!("{w}");
            }
            if a.strict && !t.warnings.is_empty() {
                eprintln!("Config produced warnings and --strict was specified");
                return Ok(ExitCode::from(1));
            }
            let mut out = bootplane_butane::to_json(&t.config, a.pretty);
            out.push('\n');
            match &a.output {
                Some(p) => std::fs::write(p, out).with_context(|| format!("writing {}", p.display()))?,
                None => std::io::stdout().write_all(out.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(f) => {
            eprintln!("{f}");
            Ok(ExitCode::from(1))
        }
    }
}
