use super::{apply_set, data_dir, open_store, runtime};
use crate::StoreArgs;
use anyhow::Context;
use bootplane_config::Config;
use bootplane_server::{AdminToken, MIN_TOKEN_LEN};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The admin token: `BOOTPLANE_TOKEN`, else `server.admin_token_file`, else the one in the
/// data directory, generated (and printed, once) on first start.
fn admin_token(cfg: &Config, config_path: Option<&Path>, data_dir: &Path) -> anyhow::Result<AdminToken> {
    let long_enough = |t: &str, from: &str| {
        let n = t.trim().chars().count();
        anyhow::ensure!(
            n >= MIN_TOKEN_LEN,
            "{from}: the admin token has {n} characters, fewer than {MIN_TOKEN_LEN}; use a long random one \
             (e.g. `openssl rand -hex 32`), or unset it and let bootplane generate one in the data directory"
        );
        Ok(AdminToken::new(t))
    };
    if let Ok(t) = std::env::var("BOOTPLANE_TOKEN") {
        if !t.trim().is_empty() {
            return long_enough(&t, "BOOTPLANE_TOKEN");
        }
    }
    if let Some(f) = &cfg.server.admin_token_file {
        let f = match config_path.and_then(Path::parent) {
            Some(base) if f.is_relative() => base.join(f),
            _ => f.clone(),
        };
        warn_if_shared(&f);
        let t = std::fs::read_to_string(&f).with_context(|| format!("reading server.admin_token_file {}", f.display()))?;
        anyhow::ensure!(!t.trim().is_empty(), "server.admin_token_file {} is empty", f.display());
        return long_enough(&t, &format!("server.admin_token_file {}", f.display()));
    }
    let path = data_dir.join("admin-token");
    warn_if_shared(&path);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(AdminToken::new(t)),
        _ => {
            let token = hex::encode(rand::random::<[u8; 32]>());
            write_private(&path, &format!("{token}\n"))?;
            // The path, not the token: stderr ends up in the journal.
            eprintln!("bootplane: generated an admin token in {}", path.display());
            eprintln!("  export BOOTPLANE_TOKEN=$(cat {})", path.display());
            Ok(AdminToken::new(token))
        }
    }
}

/// The key sealing cluster secrets: `server.secret_key_file`, else `secret.key` in the
/// data directory, created on first start. 64 hex digits.
fn secret_key(cfg: &Config, config_path: Option<&Path>, data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = match &cfg.server.secret_key_file {
        Some(f) => match config_path.and_then(Path::parent) {
            Some(base) if f.is_relative() => base.join(f),
            _ => f.clone(),
        },
        None => data_dir.join("secret.key"),
    };
    warn_if_shared(&path);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && cfg.server.secret_key_file.is_none() => {
            let t = hex::encode(rand::random::<[u8; 32]>());
            write_private(&path, &format!("{t}\n"))?;
            t
        }
        Err(e) => return Err(e).with_context(|| format!("reading secret key {}", path.display())),
    };
    let bytes = hex::decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
    bytes.with_context(|| format!("{}: expected 64 hex digits (a 32-byte key); create one with `openssl rand -hex 32`", path.display()))
}

/// Warns when a secret file can be read by other local users.
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "bootplane: warning: {} is readable by group or others (mode {:04o}); run `chmod 600 {}`",
                path.display(),
                m.permissions().mode() & 0o7777,
                path.display()
            );
        }
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

pub fn run(config: Option<PathBuf>, listen: Option<std::net::SocketAddr>, args: StoreArgs) -> anyhow::Result<ExitCode> {
    let config = config.or_else(|| Some(PathBuf::from("bootplane.yaml")).filter(|p| p.exists()));
    let cfg = match &config {
        Some(p) => Config::load(p)?,
        None => {
            eprintln!("bootplane: no --config and no ./bootplane.yaml: serving the embedded starter configuration");
            Config::from_str_named(Path::new("<embedded starter>"), bootplane_config::STARTER)?
        }
    };
    let mut cfg = cfg;
    if let Some(l) = listen {
        cfg.server.listen = l;
    }
    if let Some(n) = bootplane_server::conn::raise_fd_limit() {
        tracing::debug!(open_files = n, "file descriptor limit");
    }
    let dir = data_dir(&args, &cfg, config.as_deref());
    let rt = runtime()?;
    let store = open_store(&args, &cfg, &dir, &rt)?;
    let key = secret_key(&cfg, config.as_deref(), &dir)?;
    rt.block_on(async move {
        // Before anything is written: an instance with another key must not touch a store
        // whose secrets it cannot open.
        bootplane_server::check_seal_key(store.as_ref(), &key).await?;
        let report = store.apply(apply_set(&cfg)?).await?;
        tracing::info!(
            created = report.machines_created,
            updated = report.machines_updated,
            provision = report.machines_provisioned,
            "configuration applied"
        );
        let token = admin_token(&cfg, config.as_deref(), &dir)?;
        let listener = tokio::net::TcpListener::bind(cfg.server.listen)
            .await
            .with_context(|| format!("cannot listen on {} (server.listen)", cfg.server.listen))?;
        let addr = listener.local_addr()?;
        let mut settings = cfg.server.clone();
        // With port 0 (or any implicit advertise URL), tell machines the real address.
        settings.listen = addr;
        let mut listeners = vec![bootplane_server::Listener::Plain(listener)];
        if let Some(a) = cfg.server.admin_listen {
            let l = tokio::net::TcpListener::bind(a).await.with_context(|| format!("cannot listen on {a} (server.admin_listen)"))?;
            eprintln!("bootplane: admin API on http://{}", l.local_addr()?);
            listeners.push(bootplane_server::Listener::Admin(l));
        }
        let tls = match &cfg.server.tls {
            Some(t) => {
                let l = tokio::net::TcpListener::bind(t.listen)
                    .await
                    .with_context(|| format!("cannot listen on {} (server.tls.listen)", t.listen))?;
                let at = l.local_addr()?;
                if let Some(st) = settings.tls.as_mut() {
                    st.listen = at;
                }
                let names = tls_names(settings.secure_url().as_deref(), at);
                let identity = match (&t.cert_file, &t.key_file) {
                    (Some(c), Some(k)) => bootplane_server::tls::operator_identity(c, k)?,
                    (None, None) => bootplane_server::tls::site_identity(&dir.join("tls"), &names)?,
                    _ => anyhow::bail!("server.tls: set both cert_file and key_file, or neither (bootplane then creates a site CA)"),
                };
                listeners.push(bootplane_server::Listener::Tls(l, identity.acceptor));
                Some((at, identity.ca_pem))
            }
            None => None,
        };
        let state = bootplane_server::state(store, settings, token, key).await?;
        if let Some((at, ca)) = tls {
            let _ = state.tls_ca.set(ca);
            eprintln!("bootplane: serving HTTPS on https://{at} (site CA in {})", dir.join("tls/ca.crt").display());
        }
        let _ = state.content.set(bootplane_artifacts::ContentStore::new(&dir));
        bootplane_server::mirror::start(state.clone(), std::time::Duration::from_secs(30));
        let _ = state.ui.set(cfg.ui.clone());
        let first_stage = bootplane_server::FirstStage {
            root: cfg.tftp.root.clone(),
            allowed: cfg.tftp.allow_symlinks_to.clone(),
            shim: cfg.tftp.shim.clone(),
            grub: cfg.tftp.grub.clone(),
        };
        let _ = state.first_stage.set(first_stage.clone());
        if cfg.tftp.enabled {
            let t = bootplane_server::tftp::start(state.clone(), cfg.tftp.listen, first_stage).await?;
            eprintln!("bootplane: TFTP on {t} from {}", cfg.tftp.root.display());
        }
        let dhcp = bootplane_server::dhcp::start(state.clone(), &cfg.dhcp).await?;
        if let Some((ip, _)) = &dhcp {
            eprintln!(
                "bootplane: DHCP ({:?}) on {} as {ip}",
                cfg.dhcp.mode,
                cfg.dhcp.interface.as_deref().unwrap_or("?")
            );
        }
        eprintln!("bootplane: serving on http://{addr} (data in {})", dir.display());
        let served = bootplane_server::run(state, listeners, shutdown_signal()).await;
        if let Some((_, handle)) = dhcp {
            // Its last events are written before the process ends.
            tokio::task::spawn_blocking(move || handle.stop()).await?;
        }
        served?;
        eprintln!("bootplane: stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The names the HTTPS certificate must carry: the advertised host, and the listening
/// address when it is a concrete one.
fn tls_names(advertise: Option<&str>, at: std::net::SocketAddr) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(host) = advertise.and_then(|u| u.split_once("://")).map(|(_, r)| r.split(['/', ':']).next().unwrap_or("")) {
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    if !at.ip().is_unspecified() && !names.contains(&at.ip().to_string()) {
        names.push(at.ip().to_string());
    }
    names
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
