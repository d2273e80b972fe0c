//! Butane → Ignition, in Rust: the `fcos` (1.0.0–1.6.0), `flatcar` (1.0.0–1.1.0) and
//! `openshift` (4.8.0–4.22.0, a MachineConfig) variants, producing the JSON the
//! reference `butane` prints (same fields, omissions
//! and Go field order; gzip bytes aside), with its errors and warnings at YAML path and
//! line:column. Used by `bootplane butane` (a drop-in for the CLI) and by the per-machine
//! config pipeline. Parsing is [`yaml`], the Ignition types are [`schema`], field
//! translation is [`translate`], whole-config sugar is [`sugar`], and the checks Butane
//! runs on its output are [`validate`]; fcos-only sugar (`boot_device`, `grub`) is
//! [`fcos`]; the `openshift` variant's MachineConfig is [`openshift`]; [`ignition`]
//! validates Ignition JSON on its own (`ignition-validate`).

pub mod dataurl;
pub mod fcos;
pub mod ignition;
pub mod openshift;
pub mod schema;
pub mod sugar;
pub mod translate;
mod unit;
pub mod validate;
pub mod yaml;

use serde_json::{json, Value as J};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// One report entry, as `butane --raw-errors` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub level: Level,
    /// `$.storage.files.0.mode`
    pub path: String,
    pub pos: Option<yaml::Pos>,
    pub message: String,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        match self.pos {
            Some(p) => write!(f, "{level} at {}, line {} col {}: {}", self.path, p.line, p.col, self.message),
            None => write!(f, "{level} at {}: {}", self.path, self.message),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    pub files_dir: Option<&'a Path>,
    /// `--raw`: the Ignition config of an `openshift` config, not its MachineConfig.
    pub raw: bool,
}

#[derive(Debug, Clone)]
pub struct Translated {
    pub config: J,
    /// The Ignition spec version emitted, e.g. `3.4.0`.
    pub spec: String,
    pub warnings: Vec<Entry>,
    /// `openshift` (without `raw`): the MachineConfig around `config`, what Butane prints.
    pub machine_config: Option<J>,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub report: Vec<Entry>,
    /// Butane's closing line, e.g. `config generated was invalid`.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.report {
            writeln!(f, "{e}")?;
        }
        write!(f, "Error translating config: {}", self.message)
    }
}

fn fail(message: impl Into<String>) -> Failure {
    Failure { report: Vec::new(), message: message.into() }
}

/// (spec minor, base) for a variant and version.
fn translator(variant: &str, version: &str) -> Option<(u32, u32, bool)> {
    Some(match (variant, version) {
        ("fcos", "1.0.0") => (0, 1, true),
        ("fcos", "1.1.0") => (1, 2, true),
        ("fcos", "1.2.0") => (2, 3, true),
        ("fcos", "1.3.0") => (2, 3, true),
        ("fcos", "1.4.0") => (3, 4, true),
        ("fcos", "1.5.0") => (4, 5, true),
        ("fcos", "1.6.0") => (5, 6, true),
        ("flatcar", "1.0.0") => (3, 4, false),
        ("flatcar", "1.1.0") => (4, 5, false),
        ("openshift", v) => {
            let minor = v.strip_prefix("4.")?.strip_suffix(".0")?.parse().ok()?;
            let (spec, base, _) = openshift::base(minor)?;
            (spec, base, true)
        }
        _ => return None,
    })
}

/// `MAJOR.MINOR.PATCH[-pre][+build]`, as go-semver parses Butane and Ignition versions.
pub(crate) fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

pub fn translate(text: &str, opts: &Options<'_>) -> Result<Translated, Failure> {
    let mut root = yaml::parse(text).map_err(|e| fail(format!("Error unmarshaling yaml: {}", e.message)))?;
    let scalar = |k: &str| root.get(k).and_then(|n| if let yaml::Value::Scalar(s, _) = &n.value { Some(s.clone()) } else { None });
    let variant = scalar("variant").filter(|v| !v.is_empty()).ok_or_else(|| fail("error parsing variant; must be specified"))?;
    let version = scalar("version").unwrap_or_default();
    if !is_semver(&version) {
        return Err(fail("error parsing version; must be a valid semver"));
    }
    if variant == "rhcos" {
        return Err(fail("rhcos variant has been removed; use openshift variant instead: https://coreos.github.io/butane/upgrading-openshift/"));
    }
    let (minor, base, fcos) =
        translator(&variant, &version).ok_or_else(|| fail(format!("No translator exists for variant {variant} with version {version}")))?;
    let mut variant_minor: u32 = version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0);
    let openshift_minor = (variant == "openshift").then_some(variant_minor);
    if let Some(m) = openshift_minor {
        // fcos-only sugar is gated on the fcos release the openshift one is built on.
        variant_minor = openshift::base(m).map_or(0, |(_, _, fcos)| fcos);
    }
    let mut ctx = translate::Ctx::for_butane(minor, base, fcos, variant_minor, opts.files_dir);
    ctx.no_auto_compression = openshift_minor.is_some_and(|m| m <= 9);
    let os_input = openshift_minor.map(|m| openshift::take(&mut ctx, &mut root, m));
    if let Some(i) = &os_input {
        openshift::validate_input(&mut ctx, i);
    }
    let cfg = ctx.value(&root, &schema::Ty::Struct("Config"), "");
    if !ctx.type_errors.is_empty() {
        return Err(fail(format!("yaml: unmarshal errors:\n  {}", ctx.type_errors.join("\n  "))));
    }
    let mut cfg = match cfg {
        Some(J::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    if let Some(trees) = ctx.trees.take() {
        let mut storage = cfg.remove("storage").and_then(|v| v.as_object().cloned()).unwrap_or_default();
        sugar::trees(&mut ctx, &trees, &mut storage);
        if !storage.is_empty() {
            cfg.insert("storage".into(), J::Object(storage));
        }
    }
    // boot_device and grub generate storage that the user's storage merges into.
    let mut generated = serde_json::Map::new();
    if let Some(n) = ctx.boot_device.take() {
        generated = fcos::boot_device(&mut ctx, &n);
    }
    if let Some(n) = ctx.grub.take() {
        let g = fcos::grub(&mut ctx, &n);
        generated = fcos::merge_storage(generated, g);
    }
    if !generated.is_empty() {
        let user = cfg.remove("storage").and_then(|v| v.as_object().cloned()).unwrap_or_default();
        let mut merged = J::Object(fcos::merge_storage(generated, user));
        schema::order("Storage", &mut merged);
        cfg.insert("storage".into(), merged);
    }
    let mounts = std::mem::take(&mut ctx.mounts);
    let moved = sugar::mount_units(&mut ctx, &mounts, &mut cfg);
    // Positions of user units follow them to where the merge put them.
    if !moved.is_empty() {
        let old = std::mem::take(&mut ctx.pos);
        for (k, v) in old {
            let mut key = k.clone();
            for (from, to) in &moved {
                let prefix = format!("systemd.units.{from}");
                if k == prefix || k.starts_with(&format!("{prefix}.")) {
                    key = format!("systemd.units.{to}{}", &k[prefix.len()..]);
                }
            }
            ctx.pos.insert(key, v);
        }
    }
    if let Some(i) = &os_input {
        openshift::check_output(&mut ctx, i, &mut cfg, opts.raw);
        if opts.raw {
            openshift::elided(&mut ctx, i);
        }
    }
    if ctx.report.iter().any(|e| e.level == Level::Error) {
        return Err(Failure { report: ctx.report, message: "source config is invalid".into() });
    }
    let ignition = cfg.entry("ignition").or_insert_with(|| json!({}));
    if let Some(m) = ignition.as_object_mut() {
        m.insert("version".into(), J::String(format!("3.{minor}.0")));
    }
    schema::order_map("Config", &mut cfg);
    let mut config = J::Object(cfg);
    validate::run(&mut ctx, &mut config);
    // Go Butane validates what it generated with Ignition's own rules; their entries get
    // the position of the nearest Butane node that produced them.
    let before = ctx.report.len();
    ignition::semantics(&mut ctx, &config);
    for i in before..ctx.report.len() {
        ctx.report[i].pos = ctx.nearest_pos(&ctx.report[i].path);
    }
    if ctx.report.iter().any(|e| e.level == Level::Error) {
        return Err(Failure { report: ctx.report, message: "config generated was invalid".into() });
    }
    let machine_config = os_input.filter(|_| !opts.raw).map(|i| openshift::machine_config(&i, config.clone()));
    Ok(Translated { config, spec: format!("3.{minor}.0"), warnings: ctx.report, machine_config })
}

/// JSON as Go's encoding/json writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped;
/// `pretty` is MarshalIndent with two spaces.
pub fn to_json(v: &J, pretty: bool) -> String {
    let s = if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) }.unwrap_or_default();
    s.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026").replace('\u{2028}', "\\u2028").replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod fuzz {
    /// Random YAML built from Butane-ish atoms never panics the compiler.
    #[test]
    fn random_yaml_never_panics() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let keys = ["storage", "files", "path", "contents", "inline", "local", "mode", "systemd", "units", "name", "enabled",
            "passwd", "users", "trees", "filesystems", "with_mount_unit", "device", "format", "disks", "partitions", "label",
            "number", "luks", "clevis", "tang", "kernel_arguments", "ignition", "config", "merge", "source", "compression", "links"];
        let vals = ["/a", "0644", "644", "true", "x", "\"q\"", "[]", "{}", "-1", "null", "root", "ext4", "~", "&a x", "*a", "|\n  z", "[1, 2]"];
        for _ in 0..3000 {
            let mut y = String::from("variant: fcos\nversion: 1.5.0\n");
            let depth_max = (next() % 6) as usize;
            for _ in 0..(next() % 12) {
                let depth = (next() % (depth_max as u64 + 1)) as usize;
                let key = keys[(next() % keys.len() as u64) as usize];
                let dash = if next() % 3 == 0 { "- " } else { "" };
                if next() % 2 == 0 {
                    y += &format!("{}{dash}{key}:\n", "  ".repeat(depth));
                } else {
                    y += &format!("{}{dash}{key}: {}\n", "  ".repeat(depth), vals[(next() % vals.len() as u64) as usize]);
                }
            }
            let _ = super::translate(&y, &Default::default());
        }
    }
}
