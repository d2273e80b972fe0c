//! The `openshift` variant (4.8.0–4.22.0), read rule by rule from coreos/butane's
//! `config/openshift/v4_*`: an fcos config (1.3 for 4.8–4.13, 1.5 for 4.14–4.18, 1.6 for
//! 4.19–4.22) plus `metadata` (name, the `machineconfiguration.openshift.io/role` label)
//! and `openshift` (`kernel_arguments`, `extensions`, `fips`, `kernel_type`), wrapped in
//! a MachineConfig for OpenShift's Machine Config Operator. What the MCO rejects or cannot
//! change later is refused as Butane refuses it: its field filters (MachineConfig output
//! only, as in Butane, where they match MachineConfig paths), and the RHCOS/MCO checks
//! (both outputs). `fips: true` adds the FIPS cipher to LUKS volumes that set none.
//! With `--raw` the Ignition config alone is printed and the MachineConfig-only fields
//! are reported as ignored. The MachineConfig is written as YAML by [`to_yaml`], the way
//! Butane's yaml.v3 encoder writes it (its JSON round trip sorts every map's keys).

use crate::ignition::items;
use crate::translate::Ctx;
use crate::yaml::{Node, Pos, Value};
use serde_json::{json, Map, Value as J};

pub const ROLE_LABEL: &str = "machineconfiguration.openshift.io/role";

/// (Ignition spec minor, Butane base minor, fcos minor) of openshift 4.`minor`.0.
pub fn base(minor: u32) -> Option<(u32, u32, u32)> {
    Some(match minor {
        8..=13 => (2, 3, 3),
        14..=18 => (4, 5, 5),
        19..=22 => (5, 6, 6),
        _ => return None,
    })
}

/// The `metadata` and `openshift` sections, read off the document before the fcos part
/// is translated.
#[derive(Debug, Default)]
pub struct Input {
    pub minor: u32,
    pub name: Option<String>,
    pub labels: Vec<(String, String)>,
    pub kernel_arguments: Vec<String>,
    pub extensions: Vec<String>,
    pub fips: Option<bool>,
    pub kernel_type: Option<String>,
    /// Where each section and field was (`metadata.name`, `openshift.fips`, ...).
    pub pos: Vec<(String, Pos)>,
}

impl Input {
    fn at(&self, key: &str) -> Option<Pos> {
        self.pos.iter().find(|(k, _)| k == key).map(|(_, p)| *p)
    }
}

fn scalar(ctx: &mut Ctx<'_>, n: &Node, go: &str) -> Option<String> {
    match &n.value {
        Value::Scalar(s, _) if !n.is_null() => Some(s.clone()),
        _ if n.is_null() => None,
        _ => {
            ctx.type_errors.push(format!("line {}: cannot unmarshal {} into {go}", n.pos.line, n.tag()));
            None
        }
    }
}

fn strings(ctx: &mut Ctx<'_>, n: &Node) -> Vec<String> {
    match &n.value {
        Value::Seq(items) => items.iter().filter_map(|i| scalar(ctx, i, "string")).collect(),
        _ if n.is_null() => Vec::new(),
        _ => {
            ctx.type_errors.push(format!("line {}: cannot unmarshal {} into []string", n.pos.line, n.tag()));
            Vec::new()
        }
    }
}

/// Takes `metadata` and `openshift` out of the document (so the fcos translation does not
/// see them as unknown keys) and reads them. Type errors go where the fcos ones go.
pub fn take(ctx: &mut Ctx<'_>, root: &mut Node, minor: u32) -> Input {
    let mut input = Input { minor, ..Default::default() };
    let Value::Map(entries) = &mut root.value else { return input };
    let mut taken = Vec::new();
    entries.retain(|(k, p, n)| {
        let ours = k == "metadata" || k == "openshift";
        if ours {
            taken.push((k.clone(), *p, n.clone()));
        }
        !ours
    });
    for (section, pos, node) in taken {
        input.pos.push((section.clone(), pos));
        let Value::Map(fields) = &node.value else {
            if !node.is_null() {
                ctx.type_errors.push(format!("line {}: cannot unmarshal {} into {section}", node.pos.line, node.tag()));
            }
            continue;
        };
        for (k, p, v) in fields {
            input.pos.push((format!("{section}.{k}"), *p));
            match (section.as_str(), k.as_str()) {
                ("metadata", "name") => input.name = scalar(ctx, v, "string"),
                ("metadata", "labels") => match &v.value {
                    Value::Map(labels) => {
                        for (lk, lp, lv) in labels {
                            input.pos.push((format!("metadata.labels.{lk}"), *lp));
                            if let Some(s) = scalar(ctx, lv, "string") {
                                input.labels.push((lk.clone(), s));
                            }
                        }
                    }
                    _ if v.is_null() => {}
                    _ => ctx.type_errors.push(format!("line {}: cannot unmarshal {} into map[string]string", v.pos.line, v.tag())),
                },
                ("openshift", "kernel_arguments") => input.kernel_arguments = strings(ctx, v),
                ("openshift", "extensions") => input.extensions = strings(ctx, v),
                ("openshift", "fips") => match scalar(ctx, v, "bool").as_deref() {
                    Some("true") => input.fips = Some(true),
                    Some("false") => input.fips = Some(false),
                    Some(other) => ctx.type_errors.push(format!("line {}: cannot unmarshal !!str `{other}` into bool", v.pos.line)),
                    None => {}
                },
                ("openshift", "kernel_type") => input.kernel_type = scalar(ctx, v, "string"),
                _ => ctx.warn(&format!("{section}.{k}"), Some(*p), format!("Unused key {k}")),
            }
        }
    }
    input
}

/// Butane's `Metadata.Validate` and `OpenShift.Validate`.
pub fn validate_input(ctx: &mut Ctx<'_>, input: &Input) {
    if input.name.as_deref().unwrap_or("").is_empty() {
        let at = input.at("metadata.name").or(input.at("metadata"));
        ctx.error("metadata.name", at, "metadata.name is required");
    }
    if !input.labels.iter().any(|(k, v)| k == ROLE_LABEL && !v.is_empty()) {
        let at = input.at("metadata.labels").or(input.at("metadata"));
        ctx.error("metadata.labels", at, "machineconfiguration.openshift.io/role label is required");
    }
    if let Some(t) = &input.kernel_type {
        if !["", "default", "realtime"].contains(&t.as_str()) {
            ctx.error("openshift.kernel_type", input.at("openshift.kernel_type"), "must be empty, \"default\", or \"realtime\"");
        }
    }
}

fn snake(camel: &str) -> String {
    let mut s = String::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            s.push('_');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

fn set(v: Option<&J>) -> bool {
    match v {
        None | Some(J::Null) => false,
        Some(J::String(s)) => !s.is_empty(),
        Some(J::Array(a)) => !a.is_empty(),
        Some(J::Object(o)) => !o.is_empty(),
        Some(J::Bool(b)) => *b,
        Some(J::Number(n)) => n.as_f64() != Some(0.0),
    }
}

/// FIPS ciphers, then the RHCOS and MCO checks of the generated config (both outputs), then
/// (MachineConfig output only) the field filters. Errors point at the Butane line that made
/// the field.
pub fn check_output(ctx: &mut Ctx<'_>, input: &Input, cfg: &mut Map<String, J>, raw: bool) {
    if input.fips == Some(true) {
        if let Some(luks) = cfg.get_mut("storage").and_then(|s| s.get_mut("luks")).and_then(J::as_array_mut) {
            for l in luks {
                let opts = l.as_object_mut().expect("luks entries are objects").entry("options").or_insert_with(|| json!([]));
                let has_cipher = opts.as_array().is_some_and(|o| {
                    o.iter().filter_map(J::as_str).any(|o| o == "--cipher" || o.starts_with("--cipher=") || o == "-c")
                });
                if !has_cipher {
                    if let Some(a) = opts.as_array_mut() {
                        a.extend([json!("--cipher"), json!("aes-cbc-essiv:sha256")]);
                    }
                }
            }
        }
    }
    let cfg_v = J::Object(cfg.clone());
    let err = |ctx: &mut Ctx<'_>, path: String, msg: &str| {
        let at = ctx.nearest_pos(&path);
        let shown = path.split('.').map(snake).collect::<Vec<_>>().join(".");
        ctx.error(&shown, at, msg);
    };
    for (i, f) in items(&cfg_v, &["storage", "filesystems"]).iter().enumerate() {
        match f.get("format").and_then(J::as_str) {
            Some("btrfs") => err(ctx, format!("storage.filesystems.{i}.format"), "btrfs is not supported in this spec version"),
            Some("none") if input.minor >= 14 => err(ctx, format!("storage.filesystems.{i}.format"), "format \"none\" is not supported in this spec version"),
            _ => {}
        }
    }
    for (i, f) in items(&cfg_v, &["storage", "files"]).iter().enumerate() {
        if let Some(src) = f.get("contents").and_then(|c| c.get("source")).and_then(J::as_str) {
            let scheme = src.split_once(':').map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
            if scheme != "data" && !scheme.is_empty() {
                err(ctx, format!("storage.files.{i}.contents.source"), "file contents source must be data URL in this spec version");
            }
        }
        if input.minor >= 10 && f.get("mode").and_then(J::as_i64).is_some_and(|m| m & !0o777 != 0) {
            err(ctx, format!("storage.files.{i}.mode"), "special mode bits are not supported in this spec version");
        }
    }
    for (i, u) in items(&cfg_v, &["passwd", "users"]).iter().enumerate() {
        if u.get("name").and_then(J::as_str) != Some("core") {
            err(ctx, format!("passwd.users.{i}.name"), "users other than \"core\" are not supported in this spec version");
        }
    }
    if raw {
        return;
    }
    // The field filters (FieldFilters().Verify on the MachineConfig).
    if input.minor >= 14 && set(cfg_v.get("kernelArguments")) {
        err(ctx, "kernelArguments".into(), "this section cannot be used for kernel arguments in this spec version; use openshift.kernel_arguments instead");
    }
    if set(cfg_v.get("passwd").and_then(|p| p.get("groups"))) {
        err(ctx, "passwd.groups".into(), "groups are not supported in this spec version");
    }
    let mut user_fields = vec!["gecos", "groups", "homeDir", "noCreateHome", "noLogInit", "noUserGroup", "primaryGroup", "shell", "shouldExist", "system", "uid"];
    if input.minor < 13 {
        user_fields.push("passwordHash");
    }
    for (i, u) in items(&cfg_v, &["passwd", "users"]).iter().enumerate() {
        for f in &user_fields {
            if set(u.get(*f)) {
                err(
                    ctx,
                    format!("passwd.users.{i}.{f}"),
                    "fields other than \"name\", \"ssh_authorized_keys\", and \"password_hash\" (4.13.0+) are not supported in this spec version",
                );
            }
        }
    }
    if set(cfg_v.get("storage").and_then(|s| s.get("directories"))) {
        err(ctx, "storage.directories".into(), "directories are not supported in this spec version");
    }
    if set(cfg_v.get("storage").and_then(|s| s.get("links"))) {
        err(ctx, "storage.links".into(), "links are not supported in this spec version");
    }
    for (i, f) in items(&cfg_v, &["storage", "files"]).iter().enumerate() {
        if set(f.get("append")) {
            err(ctx, format!("storage.files.{i}.append"), "appending to files is not supported in this spec version");
        }
        if set(f.get("contents").and_then(|c| c.get("httpHeaders"))) {
            err(ctx, format!("storage.files.{i}.contents.httpHeaders"), "file HTTP headers are not supported in this spec version");
        }
        // 4.8 and 4.9 filter compression too (the "" desugaring writes is not a use).
        if input.minor <= 9 && set(f.get("contents").and_then(|c| c.get("compression"))) {
            err(ctx, format!("storage.files.{i}.contents.compression"), "file compression is not supported in this spec version");
        }
    }
}

/// The MachineConfig around the Ignition `config`.
pub fn machine_config(input: &Input, config: J) -> J {
    let mut labels = Map::new();
    for (k, v) in &input.labels {
        labels.insert(k.clone(), J::String(v.clone()));
    }
    let mut metadata = Map::new();
    metadata.insert("name".into(), J::String(input.name.clone().unwrap_or_default()));
    if !labels.is_empty() {
        metadata.insert("labels".into(), J::Object(labels));
    }
    let mut spec = Map::new();
    spec.insert("config".into(), config);
    if !input.kernel_arguments.is_empty() {
        spec.insert("kernelArguments".into(), json!(input.kernel_arguments));
    }
    if !input.extensions.is_empty() {
        spec.insert("extensions".into(), json!(input.extensions));
    }
    if let Some(f) = input.fips {
        spec.insert("fips".into(), J::Bool(f));
    }
    if let Some(t) = &input.kernel_type {
        spec.insert("kernelType".into(), J::String(t.clone()));
    }
    json!({ "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfig", "metadata": metadata, "spec": spec })
}

/// `--raw`: the MachineConfig-only fields that were set, each "field ignored in raw mode"
/// (Butane's CheckForElidedFields, reported at the Butane field).
pub fn elided(ctx: &mut Ctx<'_>, input: &Input) {
    let fields = [
        ("kernel_arguments", !input.kernel_arguments.is_empty()),
        ("extensions", !input.extensions.is_empty()),
        ("fips", input.fips == Some(true)),
        ("kernel_type", input.kernel_type.as_deref().is_some_and(|t| !t.is_empty())),
    ];
    for (f, present) in fields {
        if present {
            let path = format!("openshift.{f}");
            ctx.warn(&path, input.at(&path), "field ignored in raw mode");
        }
    }
}

/// yaml.v3's key order (its `keyList.Less`): runs of digits compare as numbers, a letter
/// after a non-letter.
fn key_less(a: &str, b: &str) -> bool {
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut digits = false;
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            digits = ar[i].is_ascii_digit();
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let (mut ai, mut bi) = (i, i);
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.saturating_mul(10).saturating_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.saturating_mul(10).saturating_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

/// Whether yaml.v3's encoder must double-quote `s`: it would read back as something other
/// than a string (null, bool, int, float, merge key), or as a YAML 1.1 bool or base-60
/// number (`resolve`, `isOldBool`, `isBase60Float` in yaml.v3's encode.go).
fn needs_double(s: &str) -> bool {
    const EXACT: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF",
        "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", "<<", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No",
        "NO", "off", "Off", "OFF",
    ];
    if EXACT.contains(&s) {
        return true;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let plain = unsigned.replace('_', "");
    let int = !plain.is_empty()
        && (plain.bytes().all(|b| b.is_ascii_digit())
            || plain.strip_prefix("0x").is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
            || plain.strip_prefix("0o").is_some_and(|o| !o.is_empty() && o.bytes().all(|b| (b'0'..=b'7').contains(&b)))
            || plain.strip_prefix("0b").is_some_and(|o| !o.is_empty() && o.bytes().all(|b| b == b'0' || b == b'1')));
    // ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
    let float = {
        let (mant, exp) = match unsigned.find(['e', 'E']) {
            Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
            None => (unsigned, None),
        };
        let mant_ok = match mant.split_once('.') {
            Some(("", f)) => !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()),
            Some((i, f)) => !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) && f.bytes().all(|b| b.is_ascii_digit()),
            None => !mant.is_empty() && mant.bytes().all(|b| b.is_ascii_digit()),
        };
        let exp_ok = exp.is_none_or(|e| {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        });
        mant_ok && exp_ok
    };
    // ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$
    let base60 = {
        let (head, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let mut parts = head.split(':');
        let first = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        first.bytes().next().is_some_and(|b| b.is_ascii_digit())
            && first.bytes().all(|b| b.is_ascii_digit() || b == b'_')
            && !rest.is_empty()
            && rest.iter().all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) && (p.len() == 1 || p.as_bytes()[0] <= b'5'))
            && frac.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    };
    int || float || base60
}

/// Whether the emitter allows `s` as a plain scalar in block context (yaml.v3's
/// `yaml_emitter_analyze_scalar`); if not, it single-quotes it.
fn plain_allowed(s: &str) -> bool {
    if s.starts_with(' ') || s.ends_with(' ') || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let next_blank = next.is_none_or(|n| n == ' ' || n == '\t');
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(c) || ("?:-".contains(c) && next_blank) {
                return false;
            }
        } else {
            if c == ':' && next_blank {
                return false;
            }
            if c == '#' && chars[i - 1] == ' ' {
                return false;
            }
        }
        if c.is_control() || c == '\u{feff}' {
            return false;
        }
    }
    true
}

fn quoted(s: &str) -> String {
    // Single quotes unless the text has characters only double quotes can carry.
    if s.chars().all(|c| !c.is_control()) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

fn string_text(s: &str) -> String {
    if needs_double(s) {
        serde_json::to_string(s).unwrap_or_default()
    } else if plain_allowed(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

fn scalar_text(v: &J) -> String {
    match v {
        J::Null => "null".into(),
        J::Bool(b) => b.to_string(),
        J::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        J::String(s) => string_text(s),
        _ => unreachable!("containers are not scalars"),
    }
}

/// A string yaml.v3 writes as a literal block: it has a line break, and no line ends in a
/// space (that would need quoting).
fn literal(s: &str) -> bool {
    s.contains('\n') && !s.lines().any(|l| l.ends_with(' ') || l.ends_with('\t')) && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
}

fn block(out: &mut String, s: &str, indent: usize) {
    let chomp = if !s.ends_with('\n') {
        "-"
    } else if s.ends_with("\n\n") {
        "+"
    } else {
        ""
    };
    let lead = if s.starts_with(' ') { "2" } else { "" };
    out.push_str(&format!("|{lead}{chomp}\n"));
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str(&" ".repeat(indent));
            out.push_str(line);
            out.push('\n');
        }
    }
}

fn emit(out: &mut String, v: &J, indent: usize) {
    match v {
        J::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| if key_less(a, b) { std::cmp::Ordering::Less } else if key_less(b, a) { std::cmp::Ordering::Greater } else { std::cmp::Ordering::Equal });
            let mut first = true;
            for k in keys {
                if !first || !out.ends_with("- ") {
                    out.push_str(&" ".repeat(indent));
                }
                first = false;
                let key = string_text(k);
                entry(out, &key, &m[k.as_str()], indent);
            }
        }
        J::Array(a) => {
            for item in a {
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                match item {
                    J::Object(o) if !o.is_empty() => emit(out, item, indent + 2),
                    J::Array(x) if !x.is_empty() => {
                        out.push('\n');
                        emit(out, item, indent + 2);
                    }
                    J::String(s) if literal(s) => block(out, s, indent + 2),
                    _ => {
                        out.push_str(&flow_or_scalar(item));
                        out.push('\n');
                    }
                }
            }
        }
        _ => {
            out.push_str(&scalar_text(v));
            out.push('\n');
        }
    }
}

fn flow_or_scalar(v: &J) -> String {
    match v {
        J::Object(_) => "{}".into(),
        J::Array(_) => "[]".into(),
        _ => scalar_text(v),
    }
}

fn entry(out: &mut String, key: &str, v: &J, indent: usize) {
    out.push_str(key);
    out.push(':');
    match v {
        J::Object(o) if !o.is_empty() => {
            out.push('\n');
            emit(out, v, indent + 2);
        }
        J::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit(out, v, indent + 2);
        }
        J::String(s) if literal(s) => {
            out.push(' ');
            block(out, s, indent + 2);
        }
        _ => {
            out.push(' ');
            out.push_str(&flow_or_scalar(v));
            out.push('\n');
        }
    }
}

/// The MachineConfig as Butane prints it: a header comment, then yaml.v3 with an indent
/// of 2 (sequences indented under their key), every map's keys sorted, no trailing
/// newline (the CLI adds one).
pub fn to_yaml(mc: &J) -> String {
    let mut out = String::from("# Generated by Butane; do not edit\n");
    emit(&mut out, mc, 0);
    out.trim_end_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_v3_key_order_and_scalars() {
        assert!(key_less("apiVersion", "kind") && key_less("a2", "a10") && key_less("a.b", "ab"));
        assert!(!key_less("spec", "metadata"));
        for (s, want) in [
            ("data:,hello%20world", "data:,hello%20world"),
            ("", "\"\""),
            ("true", "\"true\""),
            ("yes", "\"yes\""),
            ("n", "\"n\""),
            ("420", "\"420\""),
            ("1e3", "\"1e3\""),
            ("0x1F", "\"0x1F\""),
            ("1:20", "\"1:20\""),
            ("nosmt", "nosmt"),
            ("a: b", "'a: b'"),
            ("-x", "-x"),
            ("- x", "'- x'"),
            ("#x", "'#x'"),
            ("it's", "it's"),
            ("3.4.0", "3.4.0"),
        ] {
            assert_eq!(scalar_text(&J::String(s.into())), want, "{s}");
        }
        assert_eq!(scalar_text(&json!(420)), "420");
    }

    #[test]
    fn machine_config_yaml_layout() {
        let mc = json!({"apiVersion": "v1", "kind": "MachineConfig", "metadata": {"name": "99-worker-n", "labels": {ROLE_LABEL: "worker"}},
            "spec": {"config": {"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "/a", "mode": 420, "contents": {"source": "data:,x", "compression": ""}}]},
            "systemd": {"units": [{"name": "a.service", "contents": "[Unit]\nA=b\n", "enabled": true}]}}, "kernelArguments": ["nosmt"]}});
        let want = "# Generated by Butane; do not edit
apiVersion: v1
kind: MachineConfig
metadata:
  labels:
    machineconfiguration.openshift.io/role: worker
  name: 99-worker-n
spec:
  config:
    ignition:
      version: 3.4.0
    storage:
      files:
        - contents:
            compression: \"\"
            source: data:,x
          mode: 420
          path: /a
    systemd:
      units:
        - contents: |
            [Unit]
            A=b
          enabled: true
          name: a.service
  kernelArguments:
    - nosmt";
        assert_eq!(to_yaml(&mc), want);
    }
}
