//! `bootplane bundle ...`: fetch, import, list and gc bundles in the local store and
//! content store (offline, like `apply`; a running server sees the result at once).

use super::{data_dir, open_store, runtime};
use crate::StoreArgs;
use anyhow::{bail, Context};
use bootplane_artifacts::download::{self, Expected};
use bootplane_artifacts::release::{self, PlannedFile, ReleasePlan};
use bootplane_artifacts::ContentStore;
use bootplane_config::Config;
use bootplane_core::model::{Artifact, Bundle, OsKind};
use bootplane_store::{ApplySet, Store};
use clap::Subcommand;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum BundleCmd {
    /// Download an OS release, verify it, and record it as an immutable bundle.
    Fetch {
        #[command(subcommand)]
        source: FetchSource,
    },
    /// Record the files of DIR (named kernel, initramfs or initrd, rootfs, image) as a
    /// bundle, for air-gapped sites.
    Import {
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_os)]
        os: OsKind,
        #[arg(long, default_value = "x86_64")]
        arch: String,
        /// Kernel arguments (a template for generic bundles, as `args` in YAML).
        #[arg(long)]
        args: Option<String>,
        /// Default Butane `variant version` for its machines, e.g. "fcos 1.5.0".
        #[arg(long)]
        butane_version: Option<String>,
        /// The image is not signed (coreos-installer --insecure), as `insecure_image` in YAML.
        #[arg(long)]
        insecure_image: bool,
    },
    /// Bundles in the store, their files, and how many machines use each.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a bundle and its earlier revisions; refused while a machine uses it.
    Rm { name: String },
    /// Delete stored files no bundle refers to; with --prune-bundles, first drop bundles
    /// no machine uses. A bundle in use by a machine is never touched.
    Gc {
        #[arg(long)]
        prune_bundles: bool,
    },
}

#[derive(Subcommand)]
pub enum FetchSource {
    /// Fedora CoreOS from its stream metadata.
    Fcos {
        #[arg(long, default_value = "stable")]
        stream: String,
        #[arg(long, default_value = "x86_64")]
        arch: String,
        /// A mirror of builds.coreos.fedoraproject.org (same paths).
        #[arg(long)]
        base_url: Option<String>,
        /// OpenPGP keyring (e.g. Fedora's, from the fedora-gpg-keys package) to check
        /// each file's published detached signature with gpgv. Without it only the
        /// sha256 digests are checked.
        #[arg(long)]
        keyring: Option<PathBuf>,
    },
    /// Flatcar Container Linux from its release directory.
    Flatcar {
        #[arg(long, default_value = "stable")]
        channel: String,
        /// Flatcar's name: amd64 or arm64.
        #[arg(long, default_value = "amd64")]
        arch: String,
        /// The release directory to use instead of https://CHANNEL.release.flatcar-linux.net/ARCH-usr/current.
        #[arg(long)]
        base_url: Option<String>,
    },
    /// Any files: `--file kernel=URL[#sha256]` per role.
    Urls {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = parse_os)]
        os: OsKind,
        #[arg(long, default_value = "x86_64")]
        arch: String,
        #[arg(long = "file", required = true)]
        files: Vec<String>,
    },
}

fn parse_os(s: &str) -> Result<OsKind, String> {
    serde_json::from_value(serde_json::json!(s)).map_err(|_| format!("`{s}` is not an OS kind: fcos, flatcar, ubuntu or generic"))
}

const ROLES: [&str; Bundle::ROLES.len()] = Bundle::ROLES;

fn set_role(b: &mut Bundle, role: &str, a: Artifact) {
    if let Some(slot) = b.slot_mut(role) {
        *slot = Some(a);
    }
}

fn artifacts(b: &Bundle) -> Vec<(&'static str, &Artifact)> {
    b.artifacts()
}

struct Env {
    store: Arc<dyn Store>,
    content: ContentStore,
    /// The runtime the store's connections live on (PostgreSQL's pool is bound to it).
    rt: tokio::runtime::Runtime,
}

fn env(args: &StoreArgs, config: Option<&Path>) -> anyhow::Result<Env> {
    // The data directory: as for every subcommand (`--config`, else ./bootplane.yaml as
    // `serve` reads it), said on stderr so a second store never appears unnoticed.
    let default = PathBuf::from("bootplane.yaml");
    let cfg_path = config.map(Path::to_path_buf).or_else(|| default.exists().then_some(default));
    let cfg = match &cfg_path {
        Some(p) => Config::parse(p)?,
        None => Config::default(),
    };
    let dir = data_dir(args, &cfg, cfg_path.as_deref());
    eprintln!("bootplane: store in {}", dir.display());
    let rt = runtime()?;
    Ok(Env { store: open_store(args, &cfg, &dir, &rt)?, content: ContentStore::new(&dir), rt })
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout_connect(std::time::Duration::from_secs(15)).timeout_read(std::time::Duration::from_secs(60)).build()
}

fn get_text(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    agent.get(url).call().map_err(|e| format!("{url}: {e}"))?.into_string().map_err(|e| format!("{url}: {e}"))
}

/// Checks `data` against the detached signature `sig` with gpgv.
fn verify_signature(keyring: &Path, sig: &Path, data: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new("gpgv")
        .arg("--keyring")
        .arg(keyring)
        .arg(sig)
        .arg(data)
        .output()
        .context("running gpgv (apt-get install gpgv)")?;
    if !out.status.success() {
        bail!("signature does not verify with {}: {}", keyring.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Downloads every file of `plan`, then records the bundle: all or nothing. The image's
/// detached signature is kept as `image.sig`, since coreos-installer asks for it beside
/// the image; other signatures are only downloaded to be checked against `keyring`.
fn fetch_plan(e: &Env, plan: &ReleasePlan, keyring: Option<&Path>) -> anyhow::Result<ExitCode> {
    let rt = &e.rt;
    let keeps_sig = |f: &PlannedFile| f.role == "image" && f.signature.is_some();
    if let Some(existing) = rt.block_on(e.store.bundle(&plan.name))? {
        let have = |role: &str| existing.artifact(role).and_then(|a| a.sha256.as_deref()).is_some_and(|h| e.content.has(h));
        if plan.files.iter().all(|f| have(f.role) && (!keeps_sig(f) || have("image.sig"))) {
            println!("bundle {} is already in the store", plan.name);
            return Ok(ExitCode::SUCCESS);
        }
    }
    let agent = agent();
    let mut b = Bundle::new(&plan.name, plan.os, &plan.arch);
    let nothing = || format!("{}: nothing was recorded; run the same command again to resume", plan.name);
    for f in &plan.files {
        let label = format!("{} {}", plan.name, f.role);
        let stored = download::fetch(&agent, &e.content, &f.url, &f.expected, &label, 3).with_context(nothing)?;
        let sig = match &f.signature {
            Some(url) if keeps_sig(f) || keyring.is_some() => {
                let s = download::fetch(&agent, &e.content, url, &Expected::Unverified, &format!("{label} signature"), 3)
                    .with_context(nothing)?;
                Some(s)
            }
            _ => None,
        };
        match (&sig, keyring) {
            (Some(sig), Some(k)) => {
                let path = |h: &str| e.content.path(h).expect("stored hashes are valid");
                verify_signature(k, &path(&sig.sha256), &path(&stored.sha256))
                    .with_context(|| format!("{label}: {}", f.signature.as_deref().unwrap_or_default()))
                    .with_context(nothing)?;
                eprintln!("{label}: signature verified");
            }
            _ if f.signature.is_some() => eprintln!("{label}: sha256 verified; signature not checked (no --keyring)"),
            _ => {}
        }
        set_role(&mut b, f.role, Artifact { sha256: Some(stored.sha256), size: Some(stored.size), ..Default::default() });
        if let (true, Some(sig)) = (keeps_sig(f), sig) {
            set_role(&mut b, "image.sig", Artifact { sha256: Some(sig.sha256), size: Some(sig.size), ..Default::default() });
        }
    }
    rt.block_on(e.store.apply(ApplySet { bundles: vec![b], ..Default::default() }))?;
    println!("bundle {} recorded ({} files, verified)", plan.name, plan.files.len());
    Ok(ExitCode::SUCCESS)
}

fn import(e: &Env, dir: &Path, mut b: Bundle) -> anyhow::Result<ExitCode> {
    let name = b.name.clone();
    let mut any = false;
    for role in ROLES {
        let p = dir.join(role);
        if p.is_file() {
            let s = e.content.import(&p, None)?;
            println!("{role}: {} ({} bytes)", s.sha256, s.size);
            set_role(&mut b, role, Artifact { sha256: Some(s.sha256), size: Some(s.size), ..Default::default() });
            any = true;
        }
    }
    if !any {
        bail!("{}: no files named by role ({})", dir.display(), ROLES.join(", "));
    }
    // The same lints as a bundle in YAML (secrets in args, butane_version, signatures).
    let cfg = Config { bundles: vec![b.clone()], ..Config::default() };
    let errors: Vec<String> = bootplane_config::lint(&cfg)
        .into_iter()
        .filter(|f| f.severity == bootplane_config::Severity::Error)
        .map(|f| f.message)
        .collect();
    if !errors.is_empty() {
        bail!("bundle {name} not recorded:\n  {}", errors.join("\n  "));
    }
    let r = e.rt.block_on(e.store.apply(ApplySet { bundles: vec![b], ..Default::default() }))?;
    match (r.bundles_created, r.bundles_revised) {
        (1, _) => println!("bundle {name} recorded"),
        (_, 1) => println!("bundle {name} recorded as a new revision; machines mid-install keep the previous one"),
        _ => println!("bundle {name} unchanged"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(cmd: BundleCmd, config: Option<PathBuf>, args: StoreArgs) -> anyhow::Result<ExitCode> {
    let e = env(&args, config.as_deref())?;
    match cmd {
        BundleCmd::Import { dir, name, os, arch, args, butane_version, insecure_image } => {
            let b = Bundle { args, butane_version, insecure_image, ..Bundle::new(&name, os, &arch) };
            import(&e, &dir, b)
        }
        BundleCmd::Fetch { source } => {
            let agent = agent();
            let mut keyring_arg: Option<PathBuf> = None;
            let plan = match source {
                FetchSource::Fcos { stream, arch, base_url, ref keyring } => {
                    keyring_arg = keyring.clone();
                    let url = release::fcos_stream_url(&stream, base_url.as_deref());
                    let json = get_text(&agent, &url).map_err(anyhow::Error::msg)?;
                    release::fcos(&json, &arch, base_url.as_deref()).with_context(|| url.clone())?
                }
                FetchSource::Flatcar { channel, arch, base_url } => {
                    let base = release::flatcar_base(&channel, &arch, base_url.as_deref());
                    release::flatcar(&base, &arch, |u| get_text(&agent, u))?
                }
                FetchSource::Urls { name, os, arch, files } => {
                    let mut planned = Vec::new();
                    for f in &files {
                        let (role, rest) = f.split_once('=').with_context(|| format!("--file {f}: expected ROLE=URL[#sha256]"))?;
                        let role = ROLES.iter().find(|r| **r == role).with_context(|| format!("--file {f}: unknown role `{role}`"))?;
                        let (url, expected) = match rest.rsplit_once('#') {
                            Some((u, h)) if bootplane_artifacts::content::is_sha256(h) => (u.to_string(), Expected::Sha256(h.into())),
                            _ => (rest.to_string(), Expected::Unverified),
                        };
                        planned.push(release::PlannedFile { role, url, expected, signature: None });
                    }
                    ReleasePlan { name, os, arch, files: planned }
                }
            };
            fetch_plan(&e, &plan, keyring_arg.as_deref())
        }
        BundleCmd::List { json } => {
            let rt = &e.rt;
            let bundles = rt.block_on(e.store.bundles())?;
            let machines = rt.block_on(e.store.machines())?;
            let mut users: BTreeMap<&str, usize> = BTreeMap::new();
            for m in &machines {
                if let Some(b) = &m.spec.bundle {
                    *users.entry(b.as_str()).or_default() += 1;
                }
            }
            if json {
                let v: Vec<_> = bundles
                    .iter()
                    .map(|b| {
                        let mut v = serde_json::to_value(b).unwrap_or_default();
                        v["revision"] = serde_json::json!(b.revision);
                        v["machines"] = serde_json::json!(users.get(b.name.as_str()).copied().unwrap_or(0));
                        v["local"] = serde_json::json!(artifacts(b).iter().all(|(_, a)| a.sha256.as_deref().is_some_and(|h| e.content.has(h))));
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new();
            t.load_preset(UTF8_BORDERS_ONLY);
            t.set_header(["NAME", "REV", "OS", "ARCH", "FILES", "STORED", "MACHINES"]);
            for b in &bundles {
                let arts = artifacts(b);
                let files: Vec<String> = arts
                    .iter()
                    .map(|(r, a)| match a.size {
                        Some(s) => format!("{r} {:.1} MiB", s as f64 / 1048576.0),
                        None => r.to_string(),
                    })
                    .collect();
                let local = arts.iter().filter(|(_, a)| a.sha256.as_deref().is_some_and(|h| e.content.has(h))).count();
                let stored = if local == arts.len() { "local".to_string() } else if local == 0 { "remote".to_string() } else { format!("{local}/{}", arts.len()) };
                t.add_row([b.name.clone(), b.revision.to_string(), b.os.as_str().to_string(), b.arch.clone(), files.join(", "), stored, users.get(b.name.as_str()).copied().unwrap_or(0).to_string()]);
            }
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
        BundleCmd::Rm { name } => {
            let rt = &e.rt;
            if rt.block_on(e.store.bundle(&name))?.is_none() {
                bail!("no bundle named `{name}` in the store (bootplane bundle list shows them)");
            }
            rt.block_on(e.store.delete_bundle(&name)).map_err(|err| match err {
                bootplane_store::StoreError::Conflict(why) => anyhow::anyhow!("{why}; point them at another bundle first (bootplane apply)"),
                other => other.into(),
            })?;
            println!("removed bundle {name}; `bootplane bundle gc` deletes its files");
            Ok(ExitCode::SUCCESS)
        }
        BundleCmd::Gc { prune_bundles } => {
            let rt = &e.rt;
            if prune_bundles {
                for b in rt.block_on(e.store.bundles())? {
                    match rt.block_on(e.store.delete_bundle(&b.name)) {
                        Ok(()) => println!("removed bundle {} (no machine uses it)", b.name),
                        Err(bootplane_store::StoreError::Conflict(_)) => {}
                        Err(err) => return Err(err.into()),
                    }
                }
            }
            // Earlier revisions too: a machine mid-install still downloads their files.
            let mut all = rt.block_on(e.store.bundles())?;
            all.extend(rt.block_on(e.store.bundle_history())?);
            let keep: HashSet<String> = all
                .iter()
                .flat_map(|b| artifacts(b).into_iter().filter_map(|(_, a)| a.sha256.clone()).collect::<Vec<_>>())
                .collect();
            let removed = e.content.gc(&keep)?;
            println!("removed {} unreferenced file(s); {} kept", removed.len(), keep.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}
