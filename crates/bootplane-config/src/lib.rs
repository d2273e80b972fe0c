//! `bootplane.yaml`: loading one file or a directory of them into a [`Config`], the hard
//! validation every load runs ([`Config::validate`]), and the softer lints of
//! `bootplane check` ([`lint`]). Parsing is strict: unknown keys are errors carrying the
//! file, line and column, and the list of keys that were expected. This crate reads files
//! but never writes the store; `apply` and `serve` do that with what it returns.

mod duration;
mod lint;
mod locate;
mod settings;

pub use duration::parse_duration;

/// The store's settings keys under which `apply` keeps the site-wide sections of the
/// configuration, read back by `apply`'s merge and by the server's config builder.
pub mod stored {
    pub const SERVER: &str = "config.server";
    pub const DHCP: &str = "config.dhcp";
    pub const TFTP: &str = "config.tftp";
    pub const UI: &str = "config.ui";
    pub const SSH_AUTHORIZED_KEYS: &str = "config.ssh_authorized_keys";
}
pub use lint::{lint, Finding, Severity};
pub use settings::{BootFiles, DhcpMode, DhcpSettings, DhcpSubnet, IpRange, ServerSettings, TftpSettings, TlsSettings, UiSettings};

use bootplane_core::model::{Bundle, Cluster, MachineSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A reusable Butane snippet, referenced by machines' `templates`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    pub butane: String,
}

/// One YAML document as written: every section optional so a directory can split them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    server: Option<ServerSettings>,
    dhcp: Option<DhcpSettings>,
    tftp: Option<TftpSettings>,
    ui: Option<UiSettings>,
    #[serde(default)]
    bundles: Vec<Bundle>,
    #[serde(default)]
    clusters: Vec<Cluster>,
    ssh_authorized_keys: Option<Vec<String>>,
    #[serde(default)]
    machines: Vec<MachineSpec>,
    #[serde(default)]
    templates: Vec<Template>,
}

/// Where an object came from, for messages that point at the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub file: PathBuf,
    /// The object's index in its file's list.
    pub index: usize,
    /// 1-based line and column of the entry, when known.
    pub line: usize,
    pub column: usize,
}

impl Origin {
    fn new(file: &Path, index: usize, positions: &[(usize, usize)]) -> Self {
        let (line, column) = positions.get(index).copied().unwrap_or((0, 0));
        Origin { file: file.into(), index, line, column }
    }

    /// `file:line:column`, or just the file when the position is unknown.
    pub fn location(&self) -> String {
        if self.line > 0 {
            format!("{}:{}:{}", self.file.display(), self.line, self.column)
        } else {
            self.file.display().to_string()
        }
    }
}

/// The whole configuration, merged from one or more files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub server: ServerSettings,
    pub dhcp: DhcpSettings,
    pub tftp: TftpSettings,
    pub ui: UiSettings,
    pub bundles: Vec<Bundle>,
    pub clusters: Vec<Cluster>,
    pub ssh_authorized_keys: Vec<String>,
    pub machines: Vec<MachineSpec>,
    pub templates: Vec<Template>,
    /// `machines[i]` came from `machine_origins[i]`.
    #[serde(skip)]
    pub machine_origins: Vec<Origin>,
    #[serde(skip)]
    pub bundle_origins: Vec<Origin>,
    /// The sections the files set, so `apply` changes only those.
    #[serde(skip)]
    pub named: Named,
}

/// Which of the single-valued sections a file set (lists are named entry by entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Named {
    pub server: bool,
    pub dhcp: bool,
    pub tftp: bool,
    pub ui: bool,
    pub ssh_authorized_keys: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: no such file; `bootplane init` writes a commented starter bootplane.yaml into the current directory, or name your config's path", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: no *.yaml or *.yml files in this directory", path.display())]
    EmptyDir { path: PathBuf },
}

/// The starter configuration `bootplane init` writes and `serve` falls back to.
pub const STARTER: &str = include_str!("starter.yaml");

impl Config {
    /// Loads a file, or every `*.yaml`/`*.yml` in a directory (sorted by name), and
    /// validates it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let cfg = Self::parse(path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Like [`Config::load`] without validation, for `bootplane check` to list every finding.
    pub fn parse(path: &Path) -> Result<Config, ConfigError> {
        let files = if path.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| ConfigError::Read { path: path.into(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            v.sort();
            if v.is_empty() {
                return Err(ConfigError::EmptyDir { path: path.into() });
            }
            v
        } else {
            vec![path.to_path_buf()]
        };
        let mut parts = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => ConfigError::NotFound { path: f.clone() },
                _ => ConfigError::Read { path: f.clone(), source },
            })?;
            parts.push((f, text));
        }
        Self::parse_sources(parts.iter().map(|(p, t)| (p.as_path(), t.as_str())))
    }

    /// Parses, merges and validates in-memory sources, each named by the path used in
    /// messages.
    pub fn from_sources<'a>(sources: impl IntoIterator<Item = (&'a Path, &'a str)>) -> Result<Config, ConfigError> {
        let cfg = Self::parse_sources(sources)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn parse_sources<'a>(sources: impl IntoIterator<Item = (&'a Path, &'a str)>) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        let mut server_from: Option<PathBuf> = None;
        let mut dhcp_from: Option<PathBuf> = None;
        let mut tftp_from: Option<PathBuf> = None;
        let mut ui_from: Option<PathBuf> = None;
        for (path, text) in sources {
            let file: ConfigFile = if text.trim().is_empty() {
                ConfigFile::default()
            } else {
                yaml_serde::from_str(text).map_err(|e| syntax_error(path, &e))?
            };
            let once = |seen: &mut Option<PathBuf>, what: &str| -> Result<(), ConfigError> {
                if let Some(prev) = seen {
                    return Err(ConfigError::Invalid {
                        path: path.into(),
                        message: format!("`{what}` is already set in {}; keep one `{what}` section", prev.display()),
                    });
                }
                *seen = Some(path.into());
                Ok(())
            };
            if let Some(s) = file.server {
                once(&mut server_from, "server")?;
                cfg.named.server = true;
                cfg.server = s;
            }
            if let Some(d) = file.dhcp {
                once(&mut dhcp_from, "dhcp")?;
                cfg.named.dhcp = true;
                cfg.dhcp = d;
            }
            if let Some(t) = file.tftp {
                once(&mut tftp_from, "tftp")?;
                cfg.named.tftp = true;
                cfg.tftp = t;
            }
            if let Some(u) = file.ui {
                once(&mut ui_from, "ui")?;
                cfg.named.ui = true;
                cfg.ui = u;
            }
            let at = locate::item_positions(text, "machines");
            for (index, m) in file.machines.into_iter().enumerate() {
                cfg.machine_origins.push(Origin::new(path, index, &at));
                cfg.machines.push(m);
            }
            let at = locate::item_positions(text, "bundles");
            for (index, b) in file.bundles.into_iter().enumerate() {
                cfg.bundle_origins.push(Origin::new(path, index, &at));
                cfg.bundles.push(b);
            }
            cfg.clusters.extend(file.clusters);
            if let Some(keys) = file.ssh_authorized_keys {
                cfg.named.ssh_authorized_keys = true;
                cfg.ssh_authorized_keys.extend(keys);
            }
            cfg.templates.extend(file.templates);
        }
        cfg.resolve_defaults();
        Ok(cfg)
    }

    /// `apply`'s view: this (partial) file over the desired state already stored. Sections
    /// the file does not set, and bundles, clusters, templates and machines it does not
    /// name, come from `stored`; defaults are then resolved against the whole, so a file
    /// naming one machine can use the stored bundles, cluster and DHCP network. Validate
    /// the result before applying it.
    pub fn over(mut self, stored: Config) -> Config {
        if !self.named.server {
            self.server = stored.server;
        }
        if !self.named.dhcp {
            self.dhcp = stored.dhcp;
        }
        if !self.named.tftp {
            self.tftp = stored.tftp;
        }
        if !self.named.ui {
            self.ui = stored.ui;
        }
        if !self.named.ssh_authorized_keys {
            self.ssh_authorized_keys = stored.ssh_authorized_keys;
        }
        fn keep<T>(mine: &mut Vec<T>, theirs: Vec<T>, name: impl Fn(&T) -> &str) {
            let taken: std::collections::HashSet<String> = mine.iter().map(|x| name(x).to_string()).collect();
            mine.extend(theirs.into_iter().filter(|x| !taken.contains(name(x))));
        }
        keep(&mut self.bundles, stored.bundles, |b| &b.name);
        keep(&mut self.clusters, stored.clusters, |c| &c.name);
        keep(&mut self.templates, stored.templates, |t| &t.name);
        keep(&mut self.machines, stored.machines, |m| &m.name);
        self.resolve_defaults();
        self
    }

    /// Fills in what the file leaves to defaults, so the store keeps complete specs:
    /// each cluster's bootstrap server (the first server in file order) and each static
    /// network's address, gateway, DNS and domain from the machine's `ip` and `dhcp`.
    fn resolve_defaults(&mut self) {
        for c in &mut self.clusters {
            if c.k3s.bootstrap.is_none() {
                c.k3s.bootstrap = bootplane_core::k3s::bootstrap_name(c, &self.machines);
            }
        }
        let d = &self.dhcp;
        let prefix = d.netmask.and_then(bootplane_core::network::prefix_of);
        for m in &mut self.machines {
            let Some(n) = &mut m.network else { continue };
            if n.address.is_none() {
                if let (Some(ip), Some(p)) = (m.ip, prefix) {
                    n.address = Some(format!("{ip}/{p}"));
                }
            }
            if n.gateway.is_none() {
                n.gateway = d.router;
            }
            if n.dns.is_empty() {
                n.dns = d.dns.clone();
            }
            if n.domain.is_none() {
                n.domain = d.domain.clone();
            }
        }
    }

    pub fn from_str_named(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Self::from_sources([(path, text)])
    }

    /// The checks that make a configuration unusable: they stop `apply` and `serve`.
    /// `lint` reports these too, with the softer findings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let errors: Vec<Finding> = lint(self).into_iter().filter(|f| f.severity == Severity::Error).collect();
        match errors.first() {
            None => Ok(()),
            Some(_) => Err(ConfigError::Invalid {
                path: self.machine_origins.first().map(|o| o.file.clone()).unwrap_or_else(|| "bootplane.yaml".into()),
                message: format!(
                    "{} error(s):\n{}",
                    errors.len(),
                    errors.iter().map(|f| format!("  {}", f.message)).collect::<Vec<_>>().join("\n")
                ),
            }),
        }
    }

    pub fn bundle(&self, name: &str) -> Option<&Bundle> {
        self.bundles.iter().find(|b| b.name == name)
    }
    pub fn machine(&self, name: &str) -> Option<&MachineSpec> {
        self.machines.iter().find(|m| m.name == name)
    }
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// `file` (entry N, NAME) for messages.
    pub fn describe_machine(&self, i: usize) -> String {
        let m = &self.machines[i];
        match self.machine_origins.get(i) {
            Some(o) => format!("{}: machines[{}] ({})", o.location(), o.index, m.name),
            None => format!("stored machine {}", m.name),
        }
    }
}

fn syntax_error(path: &Path, e: &yaml_serde::Error) -> ConfigError {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    // yaml_serde appends " at line L column C"; the prefix already says where.
    let mut message = e.to_string();
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    ConfigError::Syntax { path: path.into(), line, column, message }
}

#[cfg(test)]
mod tests;
