//! The `bootplane` binary: parses the command line and dispatches once. Every capability
//! lives in a library crate; the modules under `cmd/` only wire arguments to them and
//! print results.

mod cmd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "bootplane", version, about = "Bare-metal provisioning server: DHCP, TFTP, iPXE, Ignition and k3s from one binary.")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the store lives; shared by `serve` and `apply`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct StoreArgs {
    /// Data directory (SQLite database, admin token). Default: the config's
    /// `server.data_dir` (relative to that file), else `./data`.
    #[arg(long, global = true, env = "BOOTPLANE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Store URL instead of `bootplane.db` in the data directory: `sqlite:PATH` /
    /// `sqlite://PATH` (the data directory is then the file's directory unless given), or
    /// `postgres://USER@HOST/DB` (several instances on one database; each keeps its own
    /// data directory for the token, key and artifact files). Default: `server.database`.
    #[arg(long, global = true, env = "BOOTPLANE_DATABASE")]
    pub database: Option<String>,
}

/// How the CLI reaches a running server.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(long, global = true, env = "BOOTPLANE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Admin token (default: `admin-token` in BOOTPLANE_DATA_DIR or `./data`, when it exists).
    #[arg(long, global = true, env = "BOOTPLANE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// The CA an https:// --server is checked against (default: the site CA bootplane
    /// made, `tls/ca.crt` in the data directory, when this is the server host).
    #[arg(long, global = true, env = "BOOTPLANE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a commented starter bootplane.yaml (loopback, DHCP off) into DIR.
    Init {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite an existing bootplane.yaml.
        #[arg(long)]
        force: bool,
    },
    /// Run the server: apply the config, then serve boot scripts and the API.
    Serve {
        /// Config file or directory (default: ./bootplane.yaml, else the embedded starter).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address, overriding `server.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Merge a config file or directory into the store's desired state: references resolve
    /// against what is stored; only the sections and entries the file names change.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print what would change (+ new, ~ changed, = unchanged, - pruned) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove what the file set no longer names: machines are retired, unused
        /// bundles removed (clusters and templates are kept).
        #[arg(long)]
        prune: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Lint a configuration; exits non-zero when it has errors.
    Check {
        #[arg(default_value = "bootplane.yaml")]
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Inspect and drive machines on a running server.
    Machines {
        #[command(subcommand)]
        cmd: cmd::machines::MachinesCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The known_hosts entries to drop after NAME is reinstalled (its SSH host keys change):
    /// `ssh-keygen -R` for its name, host name and address.
    SshKnownHosts {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// k3s clusters on a running server.
    Cluster {
        #[command(subcommand)]
        cmd: cmd::cluster::ClusterCmd,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// OS bundles: fetch, import, list, gc.
    Bundle {
        #[command(subcommand)]
        cmd: cmd::bundle::BundleCmd,
        /// Config whose `server.data_dir` locates the store (default: ./bootplane.yaml
        /// when it exists).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Translate Butane to Ignition (a drop-in for the `butane` CLI).
    Butane(cmd::butane::ButaneArgs),
    /// Ignition tools.
    Ignition {
        #[command(subcommand)]
        cmd: cmd::ignition::IgnitionCmd,
    },
    /// DHCP diagnostics.
    Dhcp {
        #[command(subcommand)]
        cmd: cmd::dhcp::DhcpCmd,
    },
    /// Copy a whole site from one store to another (e.g. SQLite to PostgreSQL): machines,
    /// leases, events, clusters, bundles and sealed secrets. The target must be empty; stop
    /// the servers using the source first. Instances on the target need the source's
    /// `secret.key`.
    Migrate {
        /// The source store: `sqlite:PATH` or `postgres://USER@HOST/DB`.
        #[arg(long)]
        from: String,
        /// The target store (new and empty).
        #[arg(long)]
        to: String,
    },
    /// Write boot media (USB stick or ISO image) for machines that cannot network-boot:
    /// BIOS and UEFI (Secure Boot too), by DHCP or a static address, then the normal chain.
    Media(cmd::media::MediaArgs),
    /// Show what MACHINE would receive, offline, from the config file.
    Render {
        machine: String,
        #[arg(long, short, default_value = "bootplane.yaml")]
        config: PathBuf,
        #[command(flatten)]
        what: cmd::render::RenderWhat,
    },
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOOTPLANE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Building the log filter costs most of a millisecond; the one-shot tools
    // (butane, ignition validate, check, render) are called in loops and skip it.
    if matches!(cli.cmd, Cmd::Serve { .. } | Cmd::Apply { .. } | Cmd::Bundle { .. }) {
        init_logging();
    }
    let result = match cli.cmd {
        Cmd::Init { dir, force } => cmd::init::run(&dir, force),
        Cmd::Serve { config, listen, store } => cmd::serve::run(config, listen, store),
        Cmd::Apply { file, dry_run, prune, store } => cmd::apply::run(&file, store, dry_run, prune),
        Cmd::Check { path, json } => cmd::check::run(&path, json),
        Cmd::Machines { cmd, client } => cmd::machines::run(cmd, client),
        Cmd::SshKnownHosts { name, client } => cmd::machines::ssh_known_hosts(&name, client),
        Cmd::Cluster { cmd, client } => cmd::cluster::run(cmd, client),
        Cmd::Media(a) => cmd::media::run(a),
        Cmd::Render { machine, config, what } => cmd::render::run(&machine, &config, what),
        Cmd::Dhcp { cmd } => cmd::dhcp::run(cmd),
        Cmd::Butane(a) => cmd::butane::run(a),
        Cmd::Ignition { cmd } => cmd::ignition::run(cmd),
        Cmd::Bundle { cmd, config, store } => cmd::bundle::run(cmd, config, store),
        Cmd::Migrate { from, to } => cmd::migrate::run(&from, &to),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
