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
                // A fresh 0600 file renamed over the target: an existing file's wider mode
                // (or a reader holding it open) never sees the admin credentials.
                use std::os::unix::fs::OpenOptionsExt;
                let name = output.file_name().with_context(|| format!("{}: not a file name", output.display()))?;
                let tmp = output.with_file_name(format!(".{}.bootplane-{}", name.to_string_lossy(), std::process::id()));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &output).with_context(|| format!("replacing {}", output.display()))?;
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
