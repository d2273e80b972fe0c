//! An Ignition config validator for specs 3.0.0–3.5.0, a drop-in for
//! `ignition-validate`: JSON syntax, the spec version, the schema of that version
//! (unknown keys warn, wrong types fail, as Ignition does) and the semantic checks
//! ([`crate::validate`] plus URL, unit-name, link and partition-overlap rules).
//! Exit status follows ignition-validate: 1 on any error, 0 otherwise.

use crate::schema::{types, Ty};
use crate::translate::Ctx;
use crate::{Entry, Level};
use serde_json::Value as J;

fn jtype(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "bool",
        J::Number(_) => "number",
        J::String(_) => "string",
        J::Array(_) => "array",
        J::Object(_) => "object",
    }
}

fn check(ctx: &mut Ctx<'_>, v: &J, ty: &Ty, path: &str, owner: &str) {
    let ok = match (ty, v) {
        (_, J::Null) => true,
        (Ty::Str, J::String(_)) | (Ty::Bool, J::Bool(_)) => true,
        (Ty::Int, J::Number(n)) => n.is_i64(),
        (Ty::List(inner), J::Array(a)) => {
            for (i, x) in a.iter().enumerate() {
                check(ctx, x, inner, &format!("{path}.{i}"), owner);
            }
            true
        }
        (Ty::Struct(name), J::Object(m)) => {
            let fields = &types()[name];
            for (k, x) in m {
                let want = fields.iter().find(|f| f.ign == k.as_str() && (f.since <= ctx.minor || (f.ign == "version" && *name == "Ignition")));
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match want {
                    Some(f) => check(ctx, x, &f.ty, &p, name),
                    None => ctx.warn(&p, None, format!("Unused key {k}")),
                }
            }
            true
        }
        _ => false,
    };
    if !ok {
        let t = match ty {
            Ty::Str => "string".to_string(),
            Ty::Int => "int".into(),
            Ty::Bool => "bool".into(),
            Ty::Struct(s) => format!("types.{s}"),
            Ty::List(_) => "slice".into(),
        };
        ctx.error(path, None, format!("json: cannot unmarshal {} into Go struct field {owner}.{path} of type {t}", jtype(v)));
    }
}

fn valid_source(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else { return false };
    match scheme {
        "http" | "https" | "tftp" | "s3" | "gs" | "arn" => rest.starts_with("//") || scheme == "arn",
        "data" => {
            let Some((meta, data)) = rest.split_once(',') else { return false };
            if meta.ends_with(";base64") {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(data).is_ok()
            } else {
                percent_encoding::percent_decode_str(data).count() > 0 || data.is_empty()
            }
        }
        _ => false,
    }
}

const UNIT_SUFFIXES: &[&str] =
    &[".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target", ".path", ".timer", ".snapshot", ".slice", ".scope"];

fn semantics(ctx: &mut Ctx<'_>, cfg: &J) {
    let mut sources = Vec::new();
    fn collect(v: &J, path: String, out: &mut Vec<(String, String)>) {
        match v {
            J::Object(m) => {
                for (k, x) in m {
                    if k == "source" {
                        if let Some(s) = x.as_str() {
                            out.push((format!("{path}.source"), s.to_string()));
                        }
                    } else {
                        collect(x, if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, out);
                    }
                }
            }
            J::Array(a) => a.iter().enumerate().for_each(|(i, x)| collect(x, format!("{path}.{i}"), out)),
            _ => {}
        }
    }
    collect(cfg, String::new(), &mut sources);
    for (p, s) in sources {
        if !valid_source(&s) {
            ctx.error(&p, None, "invalid url");
        }
    }
    let list = |k: &[&str]| -> Vec<J> {
        let mut cur = cfg;
        for x in k {
            match cur.get(x) {
                Some(n) => cur = n,
                None => return Vec::new(),
            }
        }
        cur.as_array().cloned().unwrap_or_default()
    };
    for (i, u) in list(&["systemd", "units"]).iter().enumerate() {
        let name = u.get("name").and_then(J::as_str).unwrap_or("");
        if !UNIT_SUFFIXES.iter().any(|s| name.ends_with(s)) || name.len() <= 1 {
            ctx.error(&format!("systemd.units.{i}.name"), None, "invalid systemd unit extension");
        }
        if u.get("contents").and_then(J::as_str).is_some_and(|c| !unit_content_parses(c)) {
            ctx.error(&format!("systemd.units.{i}.contents"), None, "invalid unit content");
        }
        let mut dropins = std::collections::HashSet::new();
        for (j, d) in u.get("dropins").and_then(J::as_array).into_iter().flatten().enumerate() {
            if d.get("name").and_then(J::as_str).is_some_and(|n| !dropins.insert(n.to_string())) {
                ctx.error(&format!("systemd.units.{i}.dropins.{j}"), None, "duplicate entry defined");
            }
            if !d.get("name").and_then(J::as_str).is_some_and(|n| n.ends_with(".conf")) {
                ctx.error(&format!("systemd.units.{i}.dropins.{j}.name"), None, "invalid systemd drop-in extension");
            }
            if d.get("contents").and_then(J::as_str).is_some_and(|c| !unit_content_parses(c)) {
                ctx.error(&format!("systemd.units.{i}.dropins.{j}.contents"), None, "invalid unit content");
            }
        }
    }
    // An argument both wanted and unwanted (or listed twice) is a duplicate entry.
    let mut args = std::collections::HashSet::new();
    for kind in ["shouldExist", "shouldNotExist"] {
        for (i, a) in list(&["kernelArguments", kind]).iter().enumerate() {
            if let Some(a) = a.as_str() {
                if !args.insert(a.to_string()) {
                    ctx.error(&format!("kernelArguments.{kind}.{i}"), None, "duplicate entry defined");
                }
            }
        }
    }
    let links: Vec<String> = list(&["storage", "links"]).iter().filter_map(|l| l.get("path").and_then(J::as_str).map(str::to_string)).collect();
    for kind in ["files", "directories", "links"] {
        for (i, e) in list(&["storage", kind]).iter().enumerate() {
            let path = e.get("path").and_then(J::as_str).unwrap_or("");
            if links.iter().any(|l| path.starts_with(&format!("{}/", l.trim_end_matches('/')))) {
                ctx.error(&format!("storage.{kind}.{i}.path"), None, "path traverses a link defined in the config");
            }
            if let Some(m) = e.get("mode").and_then(J::as_i64) {
                if !(0..=0o7777).contains(&m) {
                    ctx.error(&format!("storage.{kind}.{i}.mode"), None, "illegal file mode");
                }
            }
            if path.starts_with('/') && clean(path) != path {
                ctx.error(&format!("storage.{kind}.{i}.path"), None, "path is not fully simplified");
            }
            let contents = e.get("contents");
            if kind == "files" {
                let source = contents.and_then(|c| c.get("source")).is_some_and(|s| !s.is_null());
                if e.get("overwrite").and_then(J::as_bool) == Some(true) && !source {
                    ctx.error(&format!("storage.files.{i}.overwrite"), None, "overwrite must be false if source is unspecified");
                }
            }
            for who in ["user", "group"] {
                if e.get(who).is_some_and(|u| !u.get("id").unwrap_or(&J::Null).is_null() && !u.get("name").unwrap_or(&J::Null).is_null()) {
                    ctx.error(&format!("storage.{kind}.{i}.{who}"), None, "cannot set both id and name");
                }
            }
            if kind == "links" && e.get("target").and_then(J::as_str).is_none_or(str::is_empty) {
                ctx.error(&format!("storage.links.{i}.target"), None, "link target is required");
            }
        }
    }
    for (i, f) in list(&["storage", "filesystems"]).iter().enumerate() {
        if let Some(p) = f.get("path").and_then(J::as_str) {
            if !p.starts_with('/') {
                ctx.error(&format!("storage.filesystems.{i}.path"), None, "path not absolute");
            } else if clean(p) != p {
                ctx.error(&format!("storage.filesystems.{i}.path"), None, "path is not fully simplified");
            }
        }
        let format = f.get("format").and_then(J::as_str).unwrap_or("");
        let set = |k: &str| match f.get(k) {
            Some(J::String(s)) => !s.is_empty(),
            Some(J::Bool(b)) => *b,
            Some(J::Array(a)) => !a.is_empty(),
            _ => false,
        };
        if format.is_empty() && ["path", "label", "uuid", "wipeFilesystem", "mountOptions", "options"].iter().any(|k| set(k)) {
            ctx.error(&format!("storage.filesystems.{i}.format"), None, "format cannot be empty when path, label, uuid, wipeFilesystem, options, or mountOptions is specified");
        } else if !format.is_empty() && !["ext4", "btrfs", "xfs", "vfat", "swap", "none"].contains(&format) {
            ctx.error(&format!("storage.filesystems.{i}.format"), None, "invalid filesystem format");
        }
        let max = match format {
            "ext4" => 16,
            "btrfs" => 256,
            "xfs" => 12,
            "swap" => 15,
            "vfat" => 11,
            _ => usize::MAX,
        };
        if f.get("label").and_then(J::as_str).is_some_and(|l| l.len() > max) {
            ctx.error(&format!("storage.filesystems.{i}.label"), None, format!("filesystem labels cannot be longer than {max} characters when using {format}"));
        }
    }
    for (i, r) in list(&["storage", "raid"]).iter().enumerate() {
        let spares = r.get("spares").and_then(J::as_i64).unwrap_or(0);
        match r.get("level").and_then(J::as_str).unwrap_or("") {
            "" => ctx.error(&format!("storage.raid.{i}.level"), None, "raid level is required"),
            "linear" | "raid0" | "0" | "stripe" if spares != 0 => {
                ctx.error(&format!("storage.raid.{i}.level"), None, "spares unsupported for linear and raid0 arrays")
            }
            "linear" | "raid0" | "0" | "stripe" | "raid1" | "1" | "mirror" | "raid4" | "4" | "raid5" | "5" | "raid6" | "6" | "raid10" | "10" => {}
            _ => ctx.error(&format!("storage.raid.{i}.level"), None, "unrecognized raid level"),
        }
        if r.get("devices").and_then(J::as_array).is_none_or(|d| d.is_empty()) {
            ctx.error(&format!("storage.raid.{i}.devices"), None, "raid devices required");
        }
    }
    for (i, u) in list(&["passwd", "users"]).iter().enumerate() {
        let mut groups = std::collections::HashSet::new();
        for (j, g) in u.get("groups").and_then(J::as_array).into_iter().flatten().enumerate() {
            if g.as_str().is_some_and(|g| !groups.insert(g.to_string())) {
                ctx.error(&format!("passwd.users.{i}.groups.{j}"), None, "duplicate entry defined");
            }
        }
    }
    // Resources that exist only to be fetched: a merged config, a CA (a `replace` without
    // a source means "none", as ignition-validate agrees).
    let ign = cfg.get("ignition");
    let needs_source = ign
        .and_then(|i| i.get("config"))
        .and_then(|c| c.get("merge"))
        .and_then(J::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(j, m)| (format!("ignition.config.merge.{j}"), m))
        .chain(
            ign.and_then(|i| i.get("security")).and_then(|s| s.get("tls")).and_then(|t| t.get("certificateAuthorities")).and_then(J::as_array).into_iter().flatten().enumerate().map(|(j, c)| (format!("ignition.security.tls.certificateAuthorities.{j}"), c)),
        )
        .filter(|(_, r)| r.get("source").is_none_or(J::is_null))
        .map(|(p, _)| p)
        .collect::<Vec<_>>();
    for p in needs_source {
        ctx.error(&p, None, "source is required");
    }
    let directories: Vec<String> = list(&["storage", "directories"]).iter().filter_map(|d| d.get("path").and_then(J::as_str).map(str::to_string)).collect();
    for (i, l) in list(&["storage", "links"]).iter().enumerate() {
        let hard = l.get("hard").and_then(J::as_bool) == Some(true);
        if hard && l.get("target").and_then(J::as_str).is_some_and(|t| directories.iter().any(|d| d == t)) {
            ctx.error(&format!("storage.links.{i}"), None, "hard link target is a directory");
        }
    }
    for (i, l) in list(&["storage", "luks"]).iter().enumerate() {
        let Some(clevis) = l.get("clevis") else { continue };
        for (j, t) in clevis.get("tang").and_then(J::as_array).into_iter().flatten().enumerate() {
            if t.get("thumbprint").and_then(J::as_str).is_none_or(str::is_empty) {
                ctx.error(&format!("storage.luks.{i}.clevis.tang.{j}.thumbprint"), None, "thumbprint is required");
            }
        }
        let Some(custom) = clevis.get("custom").filter(|c| c.as_object().is_some_and(|o| o.values().any(|v| !v.is_null()))) else { continue };
        let others = clevis.get("tpm2").and_then(J::as_bool) == Some(true)
            || clevis.get("tang").and_then(J::as_array).is_some_and(|t| !t.is_empty())
            || clevis.get("threshold").and_then(J::as_i64).is_some_and(|t| t != 0);
        if others {
            ctx.error(&format!("storage.luks.{i}.clevis"), None, "cannot use custom clevis config with tpm2, tang, or threshold");
        }
        match custom.get("pin").and_then(J::as_str).unwrap_or("") {
            "" => ctx.error(&format!("storage.luks.{i}.clevis.custom.pin"), None, "missing required custom clevis pin"),
            "tpm2" | "tang" | "sss" => {}
            _ => ctx.error(&format!("storage.luks.{i}.clevis.custom.pin"), None, "unsupported clevis pin"),
        }
        if custom.get("config").and_then(J::as_str).is_none_or(str::is_empty) {
            ctx.error(&format!("storage.luks.{i}.clevis.custom.config"), None, "missing required custom clevis config");
        }
    }
    for (i, l) in list(&["storage", "luks"]).iter().enumerate() {
        if l.get("name").and_then(J::as_str).is_some_and(|n| n.contains('/')) {
            ctx.error(&format!("storage.luks.{i}.name"), None, "device names cannot contain slashes");
        }
        if l.get("label").and_then(J::as_str).is_some_and(|n| n.len() > 47) {
            ctx.error(&format!("storage.luks.{i}.label"), None, "luks device labels cannot be longer than 47 characters");
        }
        if l.get("device").and_then(J::as_str).is_none_or(str::is_empty) {
            ctx.error(&format!("storage.luks.{i}.device"), None, "disk device is required");
        }
    }
    if let Some(proxy) = cfg.get("ignition").and_then(|i| i.get("proxy")) {
        for k in ["httpProxy", "httpsProxy"] {
            if proxy.get(k).and_then(J::as_str).is_some_and(|u| !(u.is_empty() || u.starts_with("http://") || u.starts_with("https://"))) {
                ctx.error(&format!("ignition.proxy.{k}"), None, "proxies must be http(s)");
            }
        }
    }
    resources(ctx, cfg, String::new());
    for (d, disk) in list(&["storage", "disks"]).iter().enumerate() {
        if disk.get("device").and_then(J::as_str).is_none_or(str::is_empty) {
            ctx.error(&format!("storage.disks.{d}.device"), None, "disk device is required");
        }
        let parts = disk.get("partitions").and_then(J::as_array).cloned().unwrap_or_default();
        let (mut numbers, mut labels) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        for (i, p) in parts.iter().enumerate() {
            let at = format!("storage.disks.{d}.partitions.{i}");
            let label = p.get("label").and_then(J::as_str);
            // Go's len(): bytes, not characters.
            if label.is_some_and(|l| l.len() > 36) {
                ctx.error(&format!("{at}.label"), None, "partition labels may not exceed 36 characters");
            } else if label.is_some_and(|l| l.contains(':')) {
                ctx.error(&format!("{at}.label"), None, "partition label will be truncated to text before the colon");
            }
            for g in ["guid", "typeGuid"] {
                if p.get(g).and_then(J::as_str).is_some_and(|v| !v.is_empty() && !is_guid(v)) {
                    ctx.error(&format!("{at}.{g}"), None, "doesn't match the form \"01234567-89AB-CDEF-EDCB-A98765432101\"");
                }
            }
            let given = |k: &str| p.get(k).is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
            if p.get("shouldExist").and_then(J::as_bool) == Some(false)
                && (p.get("label").is_some_and(|v| !v.is_null()) || ["typeGuid", "guid", "startMiB", "sizeMiB"].iter().any(|k| given(k)))
            {
                ctx.error(&at, None, "shouldExist specified false with other options also specified");
            }
            let number = p.get("number").and_then(J::as_i64).unwrap_or(0);
            if number != 0 && !numbers.insert(number) {
                ctx.error(&at, None, "partition numbers collide");
            }
            if let Some(l) = label {
                if !labels.insert(l.to_string()) {
                    ctx.error(&at, None, "cannot use the same partition label twice");
                }
            }
        }
        let spans: Vec<(usize, i64, i64)> = parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let s = p.get("startMiB").and_then(J::as_i64)?;
                let z = p.get("sizeMiB").and_then(J::as_i64)?;
                (s > 0 && z > 0).then_some((i, s, s + z))
            })
            .collect();
        for (a, &(i, s1, e1)) in spans.iter().enumerate() {
            for &(_, s2, e2) in &spans[a + 1..] {
                if s1 < e2 && s2 < e1 {
                    ctx.error(&format!("storage.disks.{d}.partitions.{i}"), None, "partition overlaps another partition");
                }
            }
        }
    }
}

/// Rules of every resource (an object with a `source`: file contents and appends, merged
/// configs, CAs, key files): compression, verification needs a source, HTTP headers only
/// for http(s), each with a name, once.
fn resources(ctx: &mut Ctx<'_>, v: &J, path: String) {
    match v {
        J::Object(m) => {
            let source = m.get("source").and_then(J::as_str);
            if m.get("compression").and_then(J::as_str).is_some_and(|c| !c.is_empty() && c != "gzip") {
                ctx.error(&format!("{path}.compression"), None, "invalid compression method");
            }
            if m.get("verification").and_then(|v| v.get("hash")).is_some_and(|h| !h.is_null()) && source.is_none() {
                ctx.error(&format!("{path}.verification.hash"), None, "source must be specified if verification is specified");
            }
            if let Some(headers) = m.get("httpHeaders").and_then(J::as_array).filter(|h| !h.is_empty()) {
                if source.is_some_and(|s| !(s.starts_with("http://") || s.starts_with("https://"))) {
                    ctx.error(&format!("{path}.httpHeaders"), None, "cannot use HTTP headers with this source scheme");
                }
                let mut names = std::collections::HashSet::new();
                for (i, h) in headers.iter().enumerate() {
                    let name = h.get("name").and_then(J::as_str).unwrap_or("");
                    if name.is_empty() {
                        ctx.error(&format!("{path}.httpHeaders.{i}.name"), None, "HTTP header name can't be empty");
                    } else if !names.insert(name.to_string()) {
                        ctx.error(&format!("{path}.httpHeaders.{i}"), None, "duplicate entry defined");
                    }
                }
            }
            for (k, x) in m {
                resources(ctx, x, if path.is_empty() { k.clone() } else { format!("{path}.{k}") });
            }
        }
        J::Array(a) => a.iter().enumerate().for_each(|(i, x)| resources(ctx, x, format!("{path}.{i}"))),
        _ => {}
    }
}

/// `01234567-89AB-CDEF-EDCB-A98765432101`
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Go's `path.Clean` for an absolute path: no empty, `.` or `..` elements, no trailing `/`.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    format!("/{}", out.join("/"))
}

/// Whether systemd unit text parses as go-systemd's deserializer (which Ignition uses)
/// reads it: every line is blank, a comment, a `[Section]` header or `Key=value`; a
/// trailing backslash continues a line. (It accepts options before any section, `[]`,
/// and a continuation at the end, so this does too: checked against ignition-validate.)
fn unit_content_parses(text: &str) -> bool {
    let mut continued = false;
    for line in text.lines() {
        let t = line.trim();
        if std::mem::take(&mut continued) {
            continued = t.ends_with('\\');
            continue;
        }
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if t.starts_with('[') {
            if !t.ends_with(']') || t.len() < 2 {
                return false;
            }
            continue;
        }
        if !t.contains('=') {
            return false;
        }
        continued = t.ends_with('\\');
    }
    true
}

/// Validates Ignition JSON; the report lists errors and warnings.
pub fn validate(text: &str) -> Vec<Entry> {
    let v: J = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return vec![Entry {
                level: Level::Error,
                path: "$".into(),
                pos: Some(crate::yaml::Pos { line: e.line(), col: e.column() }),
                message: e.to_string(),
            }]
        }
    };
    let version = v.get("ignition").and_then(|i| i.get("version")).and_then(J::as_str).unwrap_or("");
    let minor = match version {
        "3.0.0" => 0,
        "3.1.0" => 1,
        "3.2.0" => 2,
        "3.3.0" => 3,
        "3.4.0" => 4,
        "3.5.0" => 5,
        "" => return vec![Entry { level: Level::Error, path: "$.ignition.version".into(), pos: None, message: "invalid config version".into() }],
        _ => return vec![Entry { level: Level::Error, path: "$.ignition.version".into(), pos: None, message: "unsupported config version".into() }],
    };
    let mut ctx = Ctx::for_ignition(minor);
    check(&mut ctx, &v, &Ty::Struct("Config"), "", "Config");
    if !ctx.report.iter().any(|e| e.level == Level::Error) {
        let mut v = v;
        crate::validate::run(&mut ctx, &mut v);
        semantics(&mut ctx, &v);
    }
    ctx.report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(s: &str) -> Vec<String> {
        validate(s).into_iter().filter(|e| e.level == Level::Error).map(|e| e.to_string()).collect()
    }

    #[test]
    fn accepts_and_rejects() {
        assert!(errors(r#"{"ignition":{"version":"3.3.0"}}"#).is_empty());
        assert!(errors(r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","mode":420,"contents":{"source":"data:,x"}}]}}"#).is_empty());
        for bad in [
            "nope",
            r#"{"ignition":{"version":"9.0.0"}}"#,
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"rel"}]}}"#,
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","mode":"x"}]}}"#,
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a"},{"path":"/a"}]}}"#,
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"nope"}}]}}"#,
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"verification":{"hash":"md5-00"}}}]}}"#,
            r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"nounit"}]}}"#,
            r#"{"ignition":{"version":"3.3.0"},"storage":{"links":[{"path":"/l","target":"/x"}],"files":[{"path":"/l/f"}]}}"#,
            r#"{"ignition":{"version":"3.2.0"},"storage":{"disks":[{"device":"/dev/a","partitions":[{"number":1,"startMiB":1,"sizeMiB":10},{"number":2,"startMiB":5,"sizeMiB":10}]}]}}"#,
        ] {
            assert!(!errors(bad).is_empty(), "{bad}");
        }
        // Unknown keys and keys newer than the spec only warn.
        let r = validate(r#"{"ignition":{"version":"3.2.0"},"kernelArguments":{"shouldExist":["a"]},"foo":1}"#);
        assert_eq!(r.iter().filter(|e| e.level == Level::Warning).count(), 2, "{r:?}");
        assert!(r.iter().all(|e| e.level == Level::Warning));
    }

    #[test]
    fn random_json_never_panics() {
        let mut seed = 12345u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let atoms = ["{", "}", "[", "]", ",", ":", "\"ignition\"", "\"version\"", "\"3.3.0\"", "\"storage\"", "\"files\"", "\"path\"", "\"/a\"", "1", "-5", "true", "null", "\"mode\"", "\"units\"", "\"systemd\"", "\"source\"", "\"data:,\""];
        for _ in 0..20_000 {
            let n = (next() % 40) as usize;
            let s: String = (0..n).map(|_| atoms[(next() % atoms.len() as u64) as usize]).collect();
            let _ = validate(&s);
            let _ = validate(&format!("{{\"ignition\":{{\"version\":\"3.3.0\"}},{s}}}"));
        }
    }
}
