use bootplane_config::{lint, Config, Severity};
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = match Config::parse(path) {
        Ok(c) => c,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!([{ "severity": "error", "message": e.to_string() }]));
            } else {
                eprintln!("error: {e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let findings = lint(&cfg);
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        for f in &findings {
            let tag = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            println!("{tag}: {}", f.message);
        }
        println!(
            "{}: {} machine(s), {} bundle(s), {} cluster(s); {} error(s), {} warning(s)",
            path.display(),
            cfg.machines.len(),
            cfg.bundles.len(),
            cfg.clusters.len(),
            errors,
            findings.len() - errors
        );
    }
    Ok(if errors > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
