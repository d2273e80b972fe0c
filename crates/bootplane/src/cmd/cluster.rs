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
    /// New join tokens for every later join. The running cluster keeps the old ones until
    /// you rotate them there: the new values are printed (to you only) with the commands.
    RotateTokens { name: String },
    /// Forget the cluster's recorded CA, kubeconfig and tokens so its bootstrap server
    /// founds it anew on its next install (for rebuilding a cluster from scratch).
    Reset { name: String },
}

pub fn run(cmd: ClusterCmd, client: ClientArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&client)?;
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
            eprintln!("cluster {name}: CA, kubeconfig and tokens forgotten; its bootstrap server will run cluster-init on its next install");
        }
        ClusterCmd::RotateTokens { name } => {
            let v: serde_json::Value = serde_json::from_str(&c.text("POST", &format!("/v1/clusters/{name}/rotate-tokens"))?)?;
            let (server, agent) = (v["server_token"].as_str().unwrap_or_default(), v["agent_token"].as_str().unwrap_or_default());
            println!("# cluster {name}: bootplane now hands these tokens to every node that joins.");
            println!("# The running cluster must accept them before the next join. On one server:");
            println!("k3s token rotate --new-token {server}");
            println!("# then on every server, put the new agent token in /etc/rancher/k3s/agent-token and restart k3s:");
            println!("echo {agent} > /etc/rancher/k3s/agent-token && systemctl restart k3s");
        }
    }
    Ok(ExitCode::SUCCESS)
}
