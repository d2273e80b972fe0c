//! One module per subcommand.

pub mod apply;
pub mod bundle;
pub mod butane;
pub mod check;
pub mod cluster;
pub mod dhcp;
pub mod ignition;
pub mod init;
pub mod machines;
pub mod migrate;
pub mod media;
pub mod render;
pub mod serve;

use crate::StoreArgs;
use anyhow::{bail, Context};
use bootplane_config::{stored, Config};
use bootplane_store::{ApplySet, PostgresStore, SqliteStore, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The data directory, one rule for every subcommand: `--data-dir` / `BOOTPLANE_DATA_DIR`,
/// else the config's `server.data_dir` (relative to that config file), else `./data`.
/// Never derived from where an applied file happens to live: `apply -f ../other/m3.yaml`
/// must reach the store the running server uses.
pub fn data_dir(args: &StoreArgs, cfg: &Config, config_path: Option<&Path>) -> PathBuf {
    if let Some(d) = &args.data_dir {
        return d.clone();
    }
    // The token and key belong beside the database the operator named.
    if let Some(db) = database_url(args, cfg).and_then(sqlite_path) {
        return match db.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
    }
    match &cfg.server.data_dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => {
            let base = config_path.and_then(|p| if p.is_dir() { Some(p) } else { p.parent() }).unwrap_or(Path::new("."));
            let base = if base.as_os_str().is_empty() { Path::new(".") } else { base };
            base.join(d)
        }
        None => default_data_dir(),
    }
}

/// `./data`, or `BOOTPLANE_DATA_DIR` when set (the CLI's client side reads the admin token there).
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("BOOTPLANE_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("data"))
}

/// The store URL: `--database` / `BOOTPLANE_DATABASE`, else the config's `server.database`.
fn database_url<'a>(args: &'a StoreArgs, cfg: &'a Config) -> Option<&'a str> {
    args.database.as_deref().or(cfg.server.database.as_deref())
}

/// Opens the store the operator named (default: `bootplane.db` in `data_dir`). A
/// PostgreSQL store's connections live on `rt`: use the store only there.
pub fn open_store(args: &StoreArgs, cfg: &Config, data_dir: &Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<Arc<dyn Store>> {
    match database_url(args, cfg) {
        None => Ok(Arc::new(SqliteStore::open(data_dir)?)),
        Some(url) => open_url(url, Some(data_dir), rt),
    }
}

/// The store at `url`; `data_dir`, when given, is created beside a PostgreSQL store
/// (it holds the token, the key and the artifact files).
pub fn open_url(url: &str, data_dir: Option<&Path>, rt: &tokio::runtime::Runtime) -> anyhow::Result<Arc<dyn Store>> {
    match Some(url) {
        Some(url) if sqlite_path(url).is_some() => {
            let path = sqlite_path(url).unwrap_or_default();
            let path = path.as_path();
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            Ok(Arc::new(SqliteStore::open_file(path)?))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            if let Some(d) = data_dir {
                private_dir(d)?;
            }
            let shown = bootplane_artifacts::download::redact_url(url);
            let store = rt
                .block_on(PostgresStore::connect(url))
                .with_context(|| format!("cannot open the PostgreSQL store {shown}; is the server running and the database created (createdb)?"))?;
            Ok(Arc::new(store))
        }
        _ => bail!(
            "store URL {}: unknown scheme; expected sqlite:PATH, sqlite://PATH or postgres://USER@HOST/DB",
            bootplane_artifacts::download::redact_url(url)
        ),
    }
}

/// Creates `dir` (0700) if needed, as the SQLite store does for its own directory.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// The file of a `sqlite:PATH` / `sqlite://PATH` store URL.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}


/// Everything of a config that goes into the store.
pub fn apply_set(cfg: &Config) -> anyhow::Result<ApplySet> {
    Ok(ApplySet {
        machines: cfg.machines.clone(),
        bundles: cfg.bundles.clone(),
        clusters: cfg.clusters.clone(),
        templates: cfg.templates.iter().map(|t| (t.name.clone(), t.butane.clone())).collect(),
        settings: vec![
            (stored::SERVER.into(), serde_json::to_string(&cfg.server)?),
            (stored::DHCP.into(), serde_json::to_string(&cfg.dhcp)?),
            (stored::TFTP.into(), serde_json::to_string(&cfg.tftp)?),
            (stored::UI.into(), serde_json::to_string(&cfg.ui)?),
            (stored::SSH_AUTHORIZED_KEYS.into(), serde_json::to_string(&cfg.ssh_authorized_keys)?),
        ],
    })
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}
