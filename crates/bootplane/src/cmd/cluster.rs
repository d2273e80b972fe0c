use super::machines::Client;
use crate::ClientArgs;
use anyhow::Context;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Write the cluster's kubeconfig (from its bootstrap server, with the API address
    /// rewritten from 127.0.0.1 to the cluster's VIP or bootstrap server).
    Kubeconfig {
        name: String,
        /// Where to write it (mode 0600); `-` for standard output.
        #[arg(long, short, default_value = "-")]
        output: PathBuf,
    },
    /// Forget the cluster's recorded CA and kubeconfig so its bootstrap server founds it
    /// anew on its next install (for rebuilding a cluster from scratch).
    Reset { name: String },
}

pub fn run(cmd: ClusterCmd, client: ClientArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&client);
    match cmd {
        ClusterCmd::Kubeconfig { name, output } => {
            let text = c.text("GET", &format!("/v1/clusters/{name}/kubeconfig"))?;
            if output.as_os_str() == "-" {
                print!("{text}");
            } else {
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&output)
                    .with_context(|| format!("creating {}", output.display()))?;
                f.write_all(text.as_bytes())?;
                eprintln!("wrote {} (export KUBECONFIG={})", output.display(), output.display());
            }
        }
        ClusterCmd::Reset { name } => {
            c.text("POST", &format!("/v1/clusters/{name}/reset"))?;
            eprintln!("cluster {name}: CA and kubeconfig forgotten; its bootstrap server will run cluster-init on its next install");
        }
    }
    Ok(ExitCode::SUCCESS)
}
