//! `bootplane butane`: a drop-in for the `butane` CLI (same flags, stdin/stdout by
//! default, warnings on stderr, `--strict` fails on any warning).

use anyhow::Context;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ButaneArgs {
    /// Print the version and exit.
    #[arg(short = 'V', long)]
    version: bool,
    /// Check the config without producing output.
    #[arg(short, long)]
    check: bool,
    /// Fail on any warning.
    #[arg(short, long)]
    strict: bool,
    /// Output formatted JSON.
    #[arg(short, long)]
    pretty: bool,
    /// Never wrap in a MachineConfig; force Ignition output (`openshift` configs; fcos
    /// and flatcar always give Ignition).
    #[arg(short, long)]
    raw: bool,
    /// Show raw errors rather than pretty-printing them (ours are always one line each).
    #[arg(long)]
    raw_errors: bool,
    /// Color of the messages: auto, always or never (they are never colored here).
    #[arg(long, visible_alias = "colour", value_parser = ["auto", "always", "never", "yes", "no"], num_args = 0..=1, require_equals = true, default_value = "auto", default_missing_value = "always")]
    color: String,
    /// Directory for `local:` file references.
    #[arg(short = 'd', long)]
    files_dir: Option<PathBuf>,
    /// Output file (default stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Deprecated form of the input argument (as the Go tool keeps it).
    #[arg(long = "input", hide = true, conflicts_with = "input")]
    input_flag: Option<PathBuf>,
    /// Input file (default stdin).
    input: Option<PathBuf>,
}

pub fn run(a: ButaneArgs) -> anyhow::Result<ExitCode> {
    if a.version {
        println!("Butane {} (bootplane)", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    let _ = (a.raw_errors, &a.color);
    let input = a.input.as_ref().or(a.input_flag.as_ref());
    let mut text = String::new();
    let name = input.map(|p| p.display().to_string()).unwrap_or_else(|| "<stdin>".into());
    let read = match input {
        Some(p) => std::fs::read_to_string(p).map(|t| text = t),
        None => std::io::stdin().read_to_string(&mut text).map(drop),
    };
    if let Err(e) = read {
        eprintln!("failed to read {name}: {e}");
        return Ok(ExitCode::from(1));
    }
    let opts = bootplane_butane::Options { files_dir: a.files_dir.as_deref(), raw: a.raw };
    match bootplane_butane::translate(&text, &opts) {
        Ok(t) => {
            for w in &t.warnings {
                eprintln!("{w}");
            }
            if a.strict && !t.warnings.is_empty() {
                eprintln!("Config produced warnings and --strict was specified");
                return Ok(ExitCode::from(1));
            }
            if a.check {
                return Ok(ExitCode::SUCCESS);
            }
            // openshift: the MachineConfig, as YAML (`--raw`: its Ignition config).
            let mut out = match &t.machine_config {
                Some(mc) => bootplane_butane::openshift::to_yaml(mc),
                None => bootplane_butane::to_json(&t.config, a.pretty),
            };
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
