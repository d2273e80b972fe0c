//! The translation: Butane YAML tree → Ignition JSON in Go field order. Schema fields
//! are carried over by the table in [`crate::schema`]; Butane's sugar (inline/local
//! contents, `*_local`, trees, mount units) is expanded here; then the Ignition
//! validations Butane runs on its output (absolute paths, duplicates, unit install
//! sections, modes) report against the YAML positions they came from.

use crate::schema::{types, Ty};
use crate::yaml::{parse_bool, parse_int, Node, Pos, Value};
use crate::{dataurl, Entry, Level};
use serde_json::{json, Map, Value as J};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

pub struct Ctx<'a> {
    /// Ignition spec 3.<minor>.
    pub minor: u32,
    /// Butane base version v0_<base>.
    pub base: u32,
    pub fcos: bool,
    /// Butane's own checks (decimal modes) on top of Ignition's.
    pub butane: bool,
    pub files_dir: Option<&'a Path>,
    pub report: Vec<Entry>,
    /// yaml.v3-style type errors; any of them fails the whole translation.
    pub type_errors: Vec<String>,
    /// openshift 4.8 and 4.9: inline and local contents are never gzipped (the MCO of
    /// those releases cannot read compressed files).
    pub no_auto_compression: bool,
    /// Output JSON path ("storage.files.0.mode") → where it came from in the YAML.
    pub pos: HashMap<String, Pos>,
    /// `storage.trees`, expanded once the rest is translated.
    pub trees: Option<Node>,
    /// Filesystems with `with_mount_unit: true`.
    pub mounts: Vec<MountRequest>,
    /// Minor version of the variant (fcos 1.<minor>.0), for variant-only sugar.
    pub variant_minor: u32,
    pub boot_device: Option<Node>,
    pub grub: Option<Node>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn go_type(ty: &Ty) -> String {
    match ty {
        Ty::Str => "string".into(),
        Ty::Int => "int".into(),
        Ty::Bool => "bool".into(),
        Ty::Struct(s) => format!("base.{s}"),
        Ty::List(t) => format!("[]{}", go_type(t)),
    }
}

impl<'a> Ctx<'a> {
    /// A context for translating Butane of `variant` 1.`variant_minor` (base v0_`base`)
    /// into Ignition 3.`minor`.
    pub fn for_butane(minor: u32, base: u32, fcos: bool, variant_minor: u32, files_dir: Option<&'a Path>) -> Self {
        Ctx {
            minor,
            base,
            fcos,
            butane: true,
            files_dir,
            report: Vec::new(),
            type_errors: Vec::new(),
            no_auto_compression: false,
            pos: Default::default(),
            trees: None,
            mounts: Vec::new(),
            variant_minor,
            boot_device: None,
            grub: None,
        }
    }

    /// A context for validating Ignition 3.`minor` on its own: Ignition's checks only.
    pub fn for_ignition(minor: u32) -> Self {
        Ctx { butane: false, ..Self::for_butane(minor, 0, true, 0, None) }
    }
}

impl Ctx<'_> {
    /// The position of the Butane node behind output `path`, or of its nearest ancestor
    /// that has one.
    pub fn nearest_pos(&self, path: &str) -> Option<Pos> {
        let mut key = path.trim_start_matches("$.").to_string();
        loop {
            if let Some(p) = self.pos.get(&key) {
                return Some(*p);
            }
            key = key.rsplit_once('.')?.0.to_string();
        }
    }

    pub fn warn(&mut self, path: &str, pos: Option<Pos>, message: impl Into<String>) {
        self.report.push(Entry { level: Level::Warning, path: format!("$.{path}"), pos, message: message.into() });
    }
    pub fn error(&mut self, path: &str, pos: Option<Pos>, message: impl Into<String>) {
        self.report.push(Entry { level: Level::Error, path: format!("$.{path}"), pos, message: message.into() });
    }
    fn type_error(&mut self, node: &Node, ty: &Ty) {
        let shown = match &node.value {
            Value::Scalar(s, _) => format!(" `{s}`"),
            _ => String::new(),
        };
        self.type_errors.push(format!("line {}: cannot unmarshal {}{shown} into {}", node.pos.line, node.tag(), go_type(ty)));
    }

    /// Translates a value of type `ty`; `path` is its output (and input) JSON path.
    pub fn value(&mut self, node: &Node, ty: &Ty, path: &str) -> Option<J> {
        if node.is_null() {
            return None;
        }
        self.pos.insert(path.to_string(), node.pos);
        match (ty, &node.value) {
            (Ty::Str, Value::Scalar(s, _)) => Some(J::String(s.clone())),
            (Ty::Int, Value::Scalar(s, true)) if parse_int(s).is_some() => Some(json!(parse_int(s))),
            (Ty::Bool, Value::Scalar(s, true)) if parse_bool(s).is_some() => Some(json!(parse_bool(s))),
            (Ty::List(inner), Value::Seq(items)) => {
                let mut out = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    let p = join(path, &i.to_string());
                    match self.value(it, inner, &p) {
                        Some(v) => out.push(v),
                        // A null list element decodes to a zero value.
                        None => out.push(zero(inner)),
                    }
                }
                Some(J::Array(out))
            }
            (Ty::Struct(name), Value::Map(_)) => Some(J::Object(self.strukt(node, name, path))),
            _ => {
                self.type_error(node, ty);
                None
            }
        }
    }

    fn strukt(&mut self, node: &Node, name: &str, path: &str) -> Map<String, J> {
        let Value::Map(entries) = &node.value else { return Map::new() };
        let fields = &types()[name];
        let mut vals: HashMap<&'static str, J> = HashMap::new();
        let mut sugar: Vec<(&str, Pos, &Node)> = Vec::new();
        for (key, kpos, v) in entries {
            if let Some(f) = fields.iter().find(|f| f.bu == key && f.since <= self.minor) {
                let p = join(path, f.ign);
                if let Some(out) = self.value(v, &f.ty, &p) {
                    vals.insert(f.ign, out);
                }
            } else if self.is_sugar(name, key, path) {
                sugar.push((key.as_str(), *kpos, v));
            } else {
                self.warn(&join(path, key), Some(*kpos), format!("unused key {key}"));
            }
        }
        self.apply_sugar(name, path, &mut vals, &sugar);
        let mut out = Map::new();
        for f in fields.iter().filter(|f| f.since <= self.minor) {
            match vals.remove(f.ign) {
                Some(J::Object(m)) if m.is_empty() => {}
                Some(J::Array(a)) if a.is_empty() => {}
                Some(v) if f.omit_zero && v == json!(0) => {}
                Some(v) => {
                    out.insert(f.ign.to_string(), v);
                }
                None if f.always => {
                    out.insert(f.ign.to_string(), zero(&f.ty));
                }
                None => {}
            }
        }
        out
    }

    fn is_sugar(&self, ty: &str, key: &str, path: &str) -> bool {
        match (ty, key) {
            ("Config", "variant" | "version") => path.is_empty(),
            ("Config", "boot_device") => path.is_empty() && self.fcos && self.variant_minor >= 3,
            ("Config", "grub") => path.is_empty() && self.fcos && self.variant_minor >= 5,
            ("Resource", "inline") => true,
            ("Resource", "local") => self.base >= 2,
            ("Storage", "trees") => self.base >= 2,
            ("Filesystem", "with_mount_unit") => self.base >= 3,
            ("Unit" | "Dropin", "contents_local") => self.base >= 5,
            ("PasswdUser", "ssh_authorized_keys_local") => self.base >= 5,
            _ => false,
        }
    }

    /// Reads `rel` under the files directory, with Butane's errors.
    pub fn read_local(&mut self, rel: &str, path: &str, pos: Pos) -> Option<Vec<u8>> {
        let Some(dir) = self.files_dir else {
            self.error(path, Some(pos), "local file paths are relative to a files directory that must be specified with -d/--files-dir");
            return None;
        };
        let mut depth: i64 = 0;
        for c in Path::new(rel).components() {
            match c {
                Component::ParentDir => depth -= 1,
                Component::Normal(_) => depth += 1,
                Component::RootDir | Component::Prefix(_) => depth = 0,
                Component::CurDir => {}
            }
            if depth < 0 {
                self.error(path, Some(pos), "local file path traverses outside the files directory");
                return None;
            }
        }
        let full: PathBuf = dir.join(rel.trim_start_matches('/'));
        match std::fs::read(&full) {
            Ok(b) => Some(b),
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                    _ => e.to_string(),
                };
                self.error(path, Some(pos), format!("open {}: {why}", full.display()));
                None
            }
        }
    }

    /// A merged or replacing config given inline or locally must be Ignition JSON.
    fn check_embedded_config(&mut self, data: &[u8], path: &str, key: &str, kpos: Pos) {
        match serde_json::from_slice::<J>(data) {
            Err(_) => self.error(&join(path, key), Some(kpos), "config is not valid"),
            Ok(v) => {
                let version = v.get("ignition").and_then(|i| i.get("version")).and_then(J::as_str).unwrap_or("");
                if !matches!(version, "3.0.0" | "3.1.0" | "3.2.0" | "3.3.0" | "3.4.0" | "3.5.0") {
                    let at = self.pos.get(path).copied();
                    self.warn(&join(path, "version"), at, "skipping validation for the merge/replace ignition config due to an unkown version");
                }
            }
        }
    }

    fn apply_sugar(&mut self, ty: &str, path: &str, vals: &mut HashMap<&'static str, J>, sugar: &[(&str, Pos, &Node)]) {
        let get = |k: &str| sugar.iter().find(|(key, _, n)| *key == k && !n.is_null()).map(|(_, p, n)| (*p, *n));
        match ty {
            "Resource" => {
                let inline = get("inline");
                let local = get("local");
                let source_set = vals.contains_key("source");
                let set: Vec<&str> = [("source", source_set), ("inline", inline.is_some()), ("local", local.is_some())]
                    .iter()
                    .filter(|(_, s)| *s)
                    .map(|(k, _)| *k)
                    .collect();
                if set.len() > 1 {
                    let last = set[set.len() - 1];
                    let pos = match last {
                        "inline" => inline.map(|(p, _)| p),
                        "local" => local.map(|(p, _)| p),
                        _ => self.pos.get(&join(path, "source")).copied(),
                    };
                    self.error(&join(path, last), pos, "only one of the following can be set: inline, local, source");
                    return;
                }
                let data = if let Some((_, n)) = inline {
                    match &n.value {
                        Value::Scalar(s, _) => Some(s.clone().into_bytes()),
                        _ => {
                            self.type_error(n, &Ty::Str);
                            None
                        }
                    }
                } else if let Some((p, n)) = local {
                    match &n.value {
                        Value::Scalar(s, _) => self.read_local(&s.clone(), &join(path, "local"), p),
                        _ => {
                            self.type_error(n, &Ty::Str);
                            None
                        }
                    }
                } else {
                    None
                };
                if let Some(data) = data {
                    if path.starts_with("ignition.config.") {
                        let (key, kpos) = if let Some((p, _)) = inline { ("inline", p) } else { ("local", local.map(|(p, _)| p).unwrap_or_default()) };
                        self.check_embedded_config(&data, path, key, kpos);
                    }
                    let user = vals.get("compression").and_then(|c| c.as_str()).map(str::to_string);
                    let user = user.or_else(|| self.no_auto_compression.then(String::new));
                    let (url, compression) = dataurl::make(&data, user.as_deref());
                    vals.insert("source", J::String(url));
                    vals.insert("compression", J::String(compression));
                    let p = inline.or(local).map(|(p, _)| p);
                    if let Some(p) = p {
                        self.pos.insert(join(path, "source"), p);
                    }
                }
            }
            "Unit" | "Dropin" => {
                if let Some((p, n)) = get("contents_local") {
                    if vals.contains_key("contents") {
                        self.error(&join(path, "contents_local"), Some(p), "only one of the following can be set: contents, contents_local");
                        return;
                    }
                    if let Value::Scalar(s, _) = &n.value {
                        if let Some(b) = self.read_local(&s.clone(), &join(path, "contents_local"), p) {
                            vals.insert("contents", J::String(String::from_utf8_lossy(&b).into_owned()));
                            self.pos.insert(join(path, "contents"), p);
                        }
                    }
                }
            }
            "PasswdUser" => {
                if let Some((_, n)) = get("ssh_authorized_keys_local") {
                    let Value::Seq(items) = &n.value else {
                        self.type_error(n, &Ty::List(Box::new(Ty::Str)));
                        return;
                    };
                    let mut keys: Vec<J> = vals.remove("sshAuthorizedKeys").and_then(|v| v.as_array().cloned()).unwrap_or_default();
                    for (i, it) in items.iter().enumerate() {
                        if let Value::Scalar(s, _) = &it.value {
                            let p = join(path, &format!("ssh_authorized_keys_local.{i}"));
                            if let Some(b) = self.read_local(&s.clone(), &p, it.pos) {
                                let text = String::from_utf8_lossy(&b).into_owned();
                                for line in text.split('\n') {
                                    let line = line.strip_suffix('\r').unwrap_or(line);
                                    if !line.is_empty() {
                                        keys.push(J::String(line.to_string()));
                                    }
                                }
                            }
                        }
                    }
                    vals.insert("sshAuthorizedKeys", J::Array(keys));
                }
            }
            "Config" => {
                if let Some((_, n)) = get("boot_device") {
                    self.boot_device = Some(n.clone());
                }
                if let Some((_, n)) = get("grub") {
                    self.grub = Some(n.clone());
                }
            }
            "Storage" => {
                if let Some((_, n)) = get("trees") {
                    self.trees = Some(n.clone());
                }
            }
            "Filesystem" => {
                if let Some((p, n)) = get("with_mount_unit") {
                    match &n.value {
                        Value::Scalar(s, true) if parse_bool(s).is_some() => {
                            if parse_bool(s) == Some(true) {
                                let index = path.rsplit('.').next().and_then(|i| i.parse().ok()).unwrap_or(0);
                                let device = vals.get("device").and_then(J::as_str).map(str::to_string);
                                self.mounts.push(MountRequest { index, device, pos: p });
                            }
                        }
                        _ => self.type_error(n, &Ty::Bool),
                    }
                }
            }
            _ => {}
        }
    }
}

pub fn zero(ty: &Ty) -> J {
    match ty {
        Ty::Str => J::String(String::new()),
        Ty::Int => json!(0),
        Ty::Bool => json!(false),
        Ty::Struct(_) => J::Object(Map::new()),
        Ty::List(_) => J::Array(Vec::new()),
    }
}

/// One filesystem asking for a mount unit.
pub struct MountRequest {
    /// Index among the user's filesystems.
    pub index: usize,
    /// Its device, which finds it again after generated filesystems were merged in.
    pub device: Option<String>,
    pub pos: crate::yaml::Pos,
}

