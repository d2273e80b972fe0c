//! An Ignition config validator for specs 3.0.0–3.5.0, a drop-in for
//! `ignition-validate`: JSON syntax, the spec version, the schema of that version
//! (unknown keys warn, wrong types fail, as Ignition does) and the semantic checks
//! ([`crate::validate`] plus the `Validate` rules of Ignition's config types, read rule by
//! rule from coreos/ignition's current source, warnings included: URL schemes per spec
//! version and S3 forms, units and the nodes they conflict with, links, partitions,
//! filesystems on whole disks, LUKS/CEX/Tang, proxies, headers, hashes). Butane's compiler
//! runs the same rules on its output, as Go Butane does. Where Debian's ignition-validate
//! (2.14) predates a rule, current Ignition wins. Exit status follows ignition-validate:
//! 1 on any error, 0 otherwise.

use crate::unit::unit_option_sections;
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

/// The config as Ignition's types for spec 3.`minor` hold it: keys that version does not
/// know (reported as unused) are dropped, so no rule reads them.
fn prune(v: &mut J, ty: &Ty, minor: u32) {
    match (ty, v) {
        (Ty::List(inner), J::Array(a)) => a.iter_mut().for_each(|x| prune(x, inner, minor)),
        (Ty::Struct(name), J::Object(m)) => {
            let fields = &types()[name];
            m.retain(|k, _| fields.iter().any(|f| f.ign == k.as_str() && (f.since <= minor || (f.ign == "version" && *name == "Ignition"))));
            for (k, x) in m.iter_mut() {
                if let Some(f) = fields.iter().find(|f| f.ign == k.as_str()) {
                    prune(x, &f.ty, minor);
                }
            }
        }
        _ => {}
    }
}

/// Go's `url.URL.Scheme` as `url.Parse` finds it: a letter, then letters, digits, `+-.`,
/// up to the first `:`; lower-cased. No scheme gives "".
fn go_scheme(s: &str) -> String {
    let Some((head, _)) = s.split_once(':') else { return String::new() };
    let mut b = head.bytes();
    let ok = b.next().is_some_and(|c| c.is_ascii_alphabetic()) && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c));
    if ok { head.to_ascii_lowercase() } else { String::new() }
}

/// The first value of `key` in a URL's query, as Go's `url.Query()[key]` reads it.
fn query_value(s: &str, key: &str) -> Option<String> {
    let q = s.split_once('?')?.1.split('#').next().unwrap_or("");
    q.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_encoding::percent_decode_str(k).decode_utf8_lossy() == key).then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
    })
}

/// Ignition's `validateURL` for spec 3.`minor`: which schemes that version fetches, S3
/// object versions, S3 ARNs (3.4+), data URLs. `None` when the source is valid.
fn source_error(s: &str, minor: u32) -> Option<&'static str> {
    // What makes Go's url.Parse itself fail: control characters, bad escapes.
    let bad_escape = s.match_indices('%').any(|(i, _)| !s.get(i + 1..i + 3).is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) || (bad_escape && !s.starts_with("data:")) {
        return Some("unable to parse url");
    }
    let s3_version = || match query_value(s, "versionId") {
        Some(v) if v.is_empty() => Some("invalid S3 object VersionId"),
        _ => None,
    };
    match go_scheme(s).as_str() {
        "http" | "https" | "tftp" => None,
        "gs" if minor >= 2 => None,
        "s3" => s3_version(),
        "arn" if minor >= 4 => {
            // aws-sdk-go's arn.IsARN/Parse: `arn:partition:service:region:account:resource`;
            // Ignition wants service s3 and an object (bucket/key, accesspoint/name/key).
            let full = s.split(['?', '#']).next().unwrap_or("");
            let parts: Vec<&str> = full.splitn(6, ':').collect();
            if parts.len() < 6 || parts[2] != "s3" {
                return Some("invalid S3 ARN format");
            }
            let slashes = full.split('/').count();
            if slashes < 2 || (parts[5].starts_with("accesspoint/") && slashes < 3) {
                return Some("invalid S3 ARN format");
            }
            s3_version()
        }
        "data" => {
            let rest = &s["data:".len()..];
            let Some((meta, data)) = rest.split_once(',') else { return Some("unable to parse url") };
            if meta.ends_with(";base64") {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(data).is_err().then_some("unable to parse url")
            } else {
                None
            }
        }
        _ => Some("invalid url scheme"),
    }
}

const UNIT_SUFFIXES: &[&str] =
    &[".service", ".socket", ".device", ".mount", ".automount", ".swap", ".target", ".path", ".timer", ".snapshot", ".slice", ".scope"];

/// Ignition's Validate rules beyond the schema (run on Butane's output too, as Go Butane
/// does).
pub(crate) fn semantics(ctx: &mut Ctx<'_>, cfg: &J) {
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
    // validateURLNilOK: an empty source is no source.
    for (p, s) in sources.into_iter().filter(|(_, s)| !s.is_empty()) {
        if let Some(e) = source_error(&s, ctx.minor) {
            ctx.error(&p, None, e);
        }
    }
    for (i, u) in items(cfg, &["systemd", "units"]).iter().enumerate() {
        let name = u.get("name").and_then(J::as_str).unwrap_or("");
        if !UNIT_SUFFIXES.iter().any(|s| name.ends_with(s)) || name.len() <= 1 {
            ctx.error(&format!("systemd.units.{i}.name"), None, "invalid systemd unit extension");
        }
        if u.get("contents").and_then(J::as_str).is_some_and(|c| unit_option_sections(c).is_none()) {
            ctx.error(&format!("systemd.units.{i}.contents"), None, "invalid unit content");
        }
        for (j, d) in u.get("dropins").and_then(J::as_array).into_iter().flatten().enumerate() {
            if !d.get("name").and_then(J::as_str).is_some_and(|n| n.ends_with(".conf")) {
                ctx.error(&format!("systemd.units.{i}.dropins.{j}.name"), None, "invalid systemd drop-in extension");
            }
            if d.get("contents").and_then(J::as_str).is_some_and(|c| unit_option_sections(c).is_none()) {
                ctx.error(&format!("systemd.units.{i}.dropins.{j}.contents"), None, "invalid unit content");
            }
        }
    }
    let links: Vec<String> = items(cfg, &["storage", "links"]).iter().filter_map(|l| l.get("path").and_then(J::as_str).map(str::to_string)).collect();
    for kind in ["files", "directories", "links"] {
        for (i, e) in items(cfg, &["storage", kind]).iter().enumerate() {
            let path = e.get("path").and_then(J::as_str).unwrap_or("");
            if links.iter().any(|l| path.starts_with(&format!("{l}/"))) {
                let what = &kind[..kind.len() - if kind == "directories" { 3 } else { 1 }];
                let what = if what == "director" { "directory" } else { what };
                ctx.error(&format!("storage.{kind}.{i}"), None, format!("{what} path includes link in config"));
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
                if e.get(who).is_some_and(|u| u.get("id").is_some_and(|v| !v.is_null()) && non_empty(u, "name")) {
                    ctx.error(&format!("storage.{kind}.{i}.{who}"), None, "cannot set both id and name");
                }
            }
            if kind == "links" && e.get("target").and_then(J::as_str).is_none_or(str::is_empty) {
                ctx.error(&format!("storage.links.{i}.target"), None, "link target is required");
            }
        }
    }
    for (i, f) in items(cfg, &["storage", "filesystems"]).iter().enumerate() {
        if let Some(p) = f.get("path").and_then(J::as_str).filter(|p| !p.is_empty()) {
            path_rule(ctx, &format!("storage.filesystems.{i}.path"), p);
        }
        path_rule(ctx, &format!("storage.filesystems.{i}.device"), f.get("device").and_then(J::as_str).unwrap_or(""));
        let format = f.get("format").and_then(J::as_str).unwrap_or("");
        let set = |k: &str| match f.get(k) {
            Some(J::String(s)) => !s.is_empty(),
            Some(J::Bool(b)) => *b,
            Some(J::Array(a)) => !a.is_empty(),
            _ => false,
        };
        if format.is_empty() && ["path", "label", "uuid", "wipeFilesystem", "mountOptions", "options"].iter().any(|k| set(k)) {
            ctx.error(&format!("storage.filesystems.{i}.format"), None, "format cannot be empty when path, label, uuid, wipeFilesystem, options, or mountOptions is specified");
            if set("label") {
                ctx.error(&format!("storage.filesystems.{i}.label"), None, "filesystem must specify format if label is specified");
            }
        } else if !(format.is_empty() || ["ext4", "btrfs", "xfs", "vfat", "swap"].contains(&format) || format == "none" && ctx.minor >= 3) {
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
    for (i, r) in items(cfg, &["storage", "raid"]).iter().enumerate() {
        let spares = r.get("spares").and_then(J::as_i64).unwrap_or(0);
        match r.get("level").and_then(J::as_str).unwrap_or("") {
            "" => ctx.error(&format!("storage.raid.{i}.level"), None, "raid level is required"),
            "linear" | "raid0" | "0" | "stripe" if spares != 0 => {
                ctx.error(&format!("storage.raid.{i}.level"), None, "spares unsupported for linear and raid0 arrays")
            }
            "linear" | "raid0" | "0" | "stripe" | "raid1" | "1" | "mirror" | "raid4" | "4" | "raid5" | "5" | "raid6" | "6" | "raid10" | "10" => {}
            _ => ctx.error(&format!("storage.raid.{i}.level"), None, "unrecognized raid level"),
        }
        for (j, dev) in r.get("devices").and_then(J::as_array).into_iter().flatten().enumerate() {
            path_rule(ctx, &format!("storage.raid.{i}.devices.{j}"), dev.as_str().unwrap_or(""));
        }
        if r.get("devices").and_then(J::as_array).is_none_or(|d| d.is_empty()) {
            ctx.error(&format!("storage.raid.{i}.devices"), None, "raid devices required");
        }
    }
    // Resources that exist only to be fetched: a merged config, a CA (a `replace` without
    // a source means "none", as ignition-validate agrees). Spec 3.0's types differ: a merge
    // may lack its source, a CA's source is a plain string (so "" is a bad URL).
    let ign = cfg.get("ignition").unwrap_or(&J::Null);
    let merges = items(ign, &["config", "merge"]).iter().enumerate().map(|(j, m)| (format!("ignition.config.merge.{j}"), m, true));
    let cas = items(ign, &["security", "tls", "certificateAuthorities"]).iter().enumerate().map(|(j, c)| (format!("ignition.security.tls.certificateAuthorities.{j}"), c, false));
    for (p, _, merge) in merges.chain(cas).filter(|(_, r, _)| !non_empty(r, "source")).collect::<Vec<_>>() {
        match (ctx.minor, merge) {
            (0, true) => {}
            (0, false) => ctx.error(&format!("{p}.source"), None, "invalid url scheme"),
            _ => ctx.error(&p, None, "source is required"),
        }
    }
    let directories: Vec<String> = items(cfg, &["storage", "directories"]).iter().filter_map(|d| d.get("path").and_then(J::as_str).map(str::to_string)).collect();
    for (i, l) in items(cfg, &["storage", "links"]).iter().enumerate() {
        let hard = l.get("hard").and_then(J::as_bool) == Some(true);
        if hard && l.get("target").and_then(J::as_str).is_some_and(|t| directories.iter().any(|d| d == t)) {
            ctx.error(&format!("storage.links.{i}"), None, "hard link target is a directory");
        }
    }
    for (i, l) in items(cfg, &["storage", "luks"]).iter().enumerate() {
        let Some(clevis) = l.get("clevis") else { continue };
        for (j, t) in clevis.get("tang").and_then(J::as_array).into_iter().flatten().enumerate() {
            if t.get("thumbprint").and_then(J::as_str).is_none_or(str::is_empty) {
                ctx.error(&format!("storage.luks.{i}.clevis.tang.{j}.thumbprint"), None, "thumbprint is required");
            }
        }
        // ClevisCustom.Validate: nothing to check while pin and config are empty and the
        // network is not needed.
        let Some(custom) = clevis.get("custom").filter(|c| non_empty(c, "pin") || non_empty(c, "config") || c.get("needsNetwork").and_then(J::as_bool) == Some(true)) else { continue };
        let others = clevis.get("tpm2").and_then(J::as_bool) == Some(true)
            || clevis.get("tang").and_then(J::as_array).is_some_and(|t| !t.is_empty())
            || clevis.get("threshold").and_then(J::as_i64).is_some_and(|t| t != 0);
        if others && non_empty(custom, "pin") {
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
    for (i, l) in items(cfg, &["storage", "luks"]).iter().enumerate() {
        if l.get("name").and_then(J::as_str).is_some_and(|n| n.contains('/')) {
            ctx.error(&format!("storage.luks.{i}.name"), None, "device names cannot contain slashes");
        }
        if l.get("label").and_then(J::as_str).is_some_and(|n| n.len() > 47) {
            ctx.error(&format!("storage.luks.{i}.label"), None, "luks device labels cannot be longer than 47 characters");
        }
        match l.get("device").and_then(J::as_str).unwrap_or("") {
            "" => ctx.error(&format!("storage.luks.{i}.device"), None, "disk device is required"),
            dev => path_rule(ctx, &format!("storage.luks.{i}.device"), dev),
        }
    }
    // Ignition's Proxy.Validate: an empty string is set, and has no scheme.
    if let Some(proxy) = cfg.get("ignition").and_then(|i| i.get("proxy")) {
        for k in ["httpProxy", "httpsProxy"] {
            let Some(u) = proxy.get(k).and_then(J::as_str) else { continue };
            let at = format!("ignition.proxy.{k}");
            match go_scheme(u).as_str() {
                "https" => {}
                "http" if k == "httpProxy" => {}
                "http" => ctx.warn(&at, None, "insecure plaintext HTTP proxy specified for HTTPS resources"),
                _ => ctx.error(&at, None, "proxies must be http(s)"),
            }
        }
    }
    resources(ctx, cfg, String::new());
    duplicates(ctx, cfg, String::new());
    systemd_conflicts(ctx, cfg);
    filesystems_on_disks(ctx, cfg);
    luks_keys(ctx, cfg);
    for (d, disk) in items(cfg, &["storage", "disks"]).iter().enumerate() {
        // Disk.Validate stops at a disk without a device.
        match disk.get("device").and_then(J::as_str).unwrap_or("") {
            "" => {
                ctx.error(&format!("storage.disks.{d}.device"), None, "disk device is required");
                continue;
            }
            dev => path_rule(ctx, &format!("storage.disks.{d}.device"), dev),
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
        // Ignition's partitionsOverlap: only explicitly placed partitions, a size of 0 ends
        // where it starts, one error at the first partition found overlapped.
        let placed: Vec<(usize, &J, i64, i64)> = parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let (s, z) = (p.get("startMiB")?.as_i64()?, p.get("sizeMiB")?.as_i64()?);
                (s != 0).then_some((i, p, s, if z == 0 { s } else { s + z - 1 }))
            })
            .collect();
        let overlapped = placed.iter().find_map(|&(_, p, s1, e1)| {
            placed.iter().find(|&&(_, o, s2, e2)| o != p && ((s1 >= s2 && s1 <= e2) || (e1 >= s2 && e1 <= e2) || (s1 < s2 && e1 > e2))).map(|o| o.0)
        });
        if let Some(i) = overlapped {
            ctx.error(&format!("storage.disks.{d}.partitions.{i}"), None, "partitions overlap");
        }
    }
}

/// Ignition's ValidateDups: in every object, the entries of each list (files, directories
/// and links as one list, both kernel-argument lists as one) must differ by their key:
/// a string itself, else the type's `Key()` (an empty key counts too). Option lists and
/// file appends are exempt, as their types declare.
fn duplicates(ctx: &mut Ctx<'_>, v: &J, path: String) {
    let at = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match v {
        J::Object(m) => {
            let mut groups: std::collections::HashMap<&str, std::collections::HashSet<String>> = Default::default();
            for (k, x) in m {
                let Some(items) = x.as_array() else { continue };
                if ["append", "options", "mountOptions"].contains(&k.as_str()) {
                    continue;
                }
                let group = match k.as_str() {
                    "files" | "directories" | "links" => "node",
                    "shouldExist" | "shouldNotExist" => "karg",
                    k => k,
                };
                let seen = groups.entry(group).or_default();
                for (i, e) in items.iter().enumerate() {
                    let field = |f: &str| e.get(f).and_then(J::as_str).unwrap_or("").to_string();
                    let key = match (k.as_str(), e) {
                        (_, J::String(s)) => s.clone(),
                        ("partitions", _) => match (e.get("number").and_then(J::as_i64).unwrap_or(0), e.get("label").and_then(J::as_str)) {
                            (0, Some(l)) => format!("label:{l}"),
                            (0, None) => String::new(),
                            (n, _) => format!("number:{n}"),
                        },
                        ("files" | "directories" | "links", _) => field("path"),
                        ("disks" | "filesystems", _) => field("device"),
                        ("tang", _) => field("url"),
                        ("merge" | "certificateAuthorities", _) => field("source"),
                        _ => field("name"),
                    };
                    if !seen.insert(key) {
                        ctx.error(&format!("{}.{i}", at(k)), None, "duplicate entry defined");
                    }
                }
            }
            for (k, x) in m {
                duplicates(ctx, x, at(k));
            }
        }
        J::Array(a) => a.iter().enumerate().for_each(|(i, x)| duplicates(ctx, x, format!("{path}.{i}"))),
        _ => {}
    }
}

/// Ignition's validatePath, for devices and mount paths.
fn path_rule(ctx: &mut Ctx<'_>, at: &str, p: &str) {
    let error = if p.is_empty() {
        "path not specified"
    } else if !p.starts_with('/') {
        "path not absolute"
    } else if clean(p) != p {
        "path is not fully simplified"
    } else {
        return;
    };
    ctx.error(at, None, error);
}

/// The array at `path` (empty when absent).
pub(crate) fn items<'a>(v: &'a J, path: &[&str]) -> &'a [J] {
    path.iter().try_fold(v, |cur, k| cur.get(k)).and_then(J::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn non_empty(v: &J, k: &str) -> bool {
    v.get(k).and_then(J::as_str).is_some_and(|s| !s.is_empty())
}

/// Ignition's Config.Validate (a node where a unit or drop-in with contents is written)
/// and Systemd.Validate (an enabled template instance whose template has contents but no
/// `[Install]`).
fn systemd_conflicts(ctx: &mut Ctx<'_>, cfg: &J) {
    let units = items(cfg, &["systemd", "units"]);
    let mut written = std::collections::HashSet::new();
    for u in units {
        let name = u.get("name").and_then(J::as_str).unwrap_or("");
        if non_empty(u, "contents") {
            written.insert(format!("/etc/systemd/system/{name}"));
        }
        for d in u.get("dropins").and_then(J::as_array).into_iter().flatten().filter(|d| non_empty(d, "contents")) {
            written.insert(format!("/etc/systemd/system/{name}.d/{}", d.get("name").and_then(J::as_str).unwrap_or("")));
        }
    }
    for kind in ["files", "directories", "links"] {
        for (i, e) in items(cfg, &["storage", kind]).iter().enumerate() {
            if e.get("path").and_then(J::as_str).is_some_and(|p| written.contains(p)) {
                ctx.error(&format!("storage.{kind}.{i}.path"), None, "path conflicts with systemd unit or dropin");
            }
        }
    }
    let by_name: std::collections::HashMap<&str, &J> = units.iter().filter_map(|u| Some((u.get("name")?.as_str()?, u))).collect();
    for (i, u) in units.iter().enumerate() {
        let name = u.get("name").and_then(J::as_str).unwrap_or("");
        // `^(.+?)@(.+?)\.service$`
        let Some(at) = name.get(1..).and_then(|n| n.find('@')).map(|a| a + 1) else { continue };
        let (prefix, instance) = (&name[..at], name[at + 1..].strip_suffix(".service").unwrap_or(""));
        if instance.is_empty() || u.get("enabled").and_then(J::as_bool) != Some(true) {
            continue;
        }
        let template = format!("{prefix}@.service");
        let Some(contents) = by_name.get(template.as_str()).and_then(|t| t.get("contents")).and_then(J::as_str).filter(|c| !c.is_empty()) else { continue };
        if unit_option_sections(contents).is_some_and(|s| !s.iter().any(|s| s == "Install")) {
            ctx.warn(&format!("systemd.units.{i}.contents"), None, format!("template unit \"{template}\" for \"{name}\" doesn't have Install section"));
        }
    }
}

/// Ignition's Storage.validateFilesystems: a filesystem made on a whole disk the config
/// also partitions, or whose table it wipes.
fn filesystems_on_disks(ctx: &mut Ctx<'_>, cfg: &J) {
    let disks: std::collections::HashMap<&str, &J> = items(cfg, &["storage", "disks"]).iter().filter_map(|d| Some((d.get("device")?.as_str()?, d))).collect();
    for (i, f) in items(cfg, &["storage", "filesystems"]).iter().enumerate() {
        let Some(disk) = f.get("device").and_then(J::as_str).and_then(|d| disks.get(d)) else { continue };
        let at = format!("storage.filesystems.{i}.device");
        if !items(disk, &["partitions"]).is_empty() {
            ctx.warn(&at, None, "filesystem overwrites partitioned device");
        } else if f.get("wipeFilesystem").and_then(J::as_bool) != Some(true) && disk.get("wipeTable").and_then(J::as_bool) == Some(true) {
            ctx.warn(&at, None, "device matches disk with wipeTable enabled; filesystem will be wiped");
        }
    }
}

/// Ignition's Luks.Validate (key file, CEX) and Tang.Validate (advertisement) rules.
fn luks_keys(ctx: &mut Ctx<'_>, cfg: &J) {
    for (i, l) in items(cfg, &["storage", "luks"]).iter().enumerate() {
        let key_file = l.get("keyFile").and_then(|k| k.get("source")).and_then(J::as_str).filter(|s| !s.is_empty());
        if key_file.is_some_and(|s| source_error(s, ctx.minor).is_some()) {
            ctx.error(&format!("storage.luks.{i}.keys"), None, "invalid key-file source");
        }
        let clevis = l.get("clevis").unwrap_or(&J::Null);
        let clevis_present = clevis.get("custom").is_some_and(|c| non_empty(c, "pin"))
            || !items(clevis, &["tang"]).is_empty()
            || clevis.get("tpm2").and_then(J::as_bool) == Some(true)
            || clevis.get("threshold").and_then(J::as_i64).is_some_and(|t| t != 0);
        if l.get("cex").and_then(|c| c.get("enabled")).and_then(J::as_bool) == Some(true) {
            if clevis_present {
                ctx.error(&format!("storage.luks.{i}.cex"), None, "cannot use cex with clevis");
            }
            if key_file.is_some() {
                ctx.error(&format!("storage.luks.{i}.cex"), None, "cannot use key file with cex");
            }
        }
        for (j, t) in items(clevis, &["tang"]).iter().enumerate() {
            if t.get("advertisement").and_then(J::as_str).is_some_and(|a| !a.is_empty() && serde_json::from_str::<J>(a).is_err()) {
                ctx.error(&format!("storage.luks.{i}.clevis.tang.{j}.advertisement"), None, "advertisement is not valid JSON");
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
            // Verification.Validate: the form and length of the sum, not its digits.
            if let Some(h) = m.get("verification").and_then(|v| v.get("hash")).and_then(J::as_str) {
                let error = match h.split_once('-') {
                    None => Some("malformed hash specifier"),
                    Some(("sha512", sum)) => (sum.len() != 128).then_some("incorrect size for hash sum"),
                    Some(("sha256", sum)) => (sum.len() != 64).then_some("incorrect size for hash sum"),
                    Some(_) => Some("unrecognized hash function"),
                };
                if let Some(e) = error {
                    ctx.error(&format!("{path}.verification.hash"), None, e);
                }
            }
            if m.get("verification").and_then(|v| v.get("hash")).is_some_and(|h| !h.is_null()) && source.is_none() {
                ctx.error(&format!("{path}.verification.hash"), None, "source must be specified if verification is specified");
            }
            if let Some(headers) = m.get("httpHeaders").and_then(J::as_array).filter(|h| !h.is_empty()) {
                match source.filter(|s| !s.is_empty()).map(go_scheme).as_deref() {
                    None => ctx.error(&format!("{path}.httpHeaders"), None, "unable to parse url"),
                    Some("http" | "https") => {}
                    Some(_) => ctx.error(&format!("{path}.httpHeaders"), None, "cannot use HTTP headers with this source scheme"),
                }
                for (i, h) in headers.iter().enumerate() {
                    if !non_empty(h, "name") {
                        ctx.error(&format!("{path}.httpHeaders.{i}.name"), None, "HTTP header name can't be empty");
                    }
                    if h.get("value").and_then(J::as_str) == Some("") {
                        ctx.error(&format!("{path}.httpHeaders.{i}.value"), None, "unable to parse HTTP header");
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
        // Ignition: what is not semver cannot be parsed; other semvers are not supported.
        v if !crate::is_semver(v) => return vec![Entry { level: Level::Error, path: "$.ignition.version".into(), pos: None, message: "invalid config version (couldn't parse)".into() }],
        _ => return vec![Entry { level: Level::Error, path: "$.ignition.version".into(), pos: None, message: "unsupported config version".into() }],
    };
    let mut ctx = Ctx::for_ignition(minor);
    check(&mut ctx, &v, &Ty::Struct("Config"), "", "Config");
    if !ctx.report.iter().any(|e| e.level == Level::Error) {
        let mut v = v;
        prune(&mut v, &Ty::Struct("Config"), minor);
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

    /// `level path: message` of every entry.
    fn report(s: &str) -> Vec<String> {
        validate(s).into_iter().map(|e| format!("{:?} {}: {}", e.level, e.path, e.message)).collect()
    }

    /// Ignition's Validate rules read from coreos/ignition's config/v3_*/types (and its
    /// shared errors) that Debian's ignition-validate 2.14 predates or words differently:
    /// each config gives exactly the entries Ignition's report has.
    #[test]
    fn rules_of_current_ignition_rule_by_rule() {
        let cases: &[(&str, &[&str])] = &[
            // Config.Validate: a node where a unit or drop-in with contents is written.
            (
                r#"{"ignition":{"version":"3.2.0"},"systemd":{"units":[{"name":"a.service","contents":"[Unit]\nA=b","dropins":[{"name":"x.conf","contents":"[Unit]\nB=c"}]}]},"storage":{"files":[{"path":"/etc/systemd/system/a.service"}],"directories":[{"path":"/etc/systemd/system/a.service.d/x.conf"}]}}"#,
                &["Error $.storage.files.0.path: path conflicts with systemd unit or dropin", "Error $.storage.directories.0.path: path conflicts with systemd unit or dropin"],
            ),
            // ... only units with contents: a masked or drop-in-only unit writes no file.
            (r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","mask":true}]},"storage":{"links":[{"path":"/etc/systemd/system/a.service","target":"/dev/null"}]}}"#, &[]),
            // Systemd.Validate: an enabled instance of a template without [Install].
            (
                r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"get@.service","contents":"[Service]\nExecStart=/x %i"},{"name":"get@a.service","enabled":true}]}}"#,
                &[r#"Warning $.systemd.units.1.contents: template unit "get@.service" for "get@a.service" doesn't have Install section"#],
            ),
            (r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"get@.service","contents":"[Service]\nExecStart=/x\n[Install]\nWantedBy=m.target"},{"name":"get@a.service","enabled":true}]}}"#, &[]),
            // Unit.Validate: an [Install] with no option is none to go-systemd; empty contents need none.
            (
                r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Unit]\nA=b\n[Install]\n"},{"name":"b.service","enabled":true,"contents":""}]}}"#,
                &[r#"Warning $.systemd.units.0.contents: unit "a.service" is enabled, but has no install section so enable does nothing"#],
            ),
            // Storage.validateFilesystems.
            (
                r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/sda","partitions":[{"number":1}]},{"device":"/dev/sdb","wipeTable":true},{"device":"/dev/sdc","wipeTable":true}],"filesystems":[{"device":"/dev/sda","format":"ext4"},{"device":"/dev/sdb","format":"ext4"},{"device":"/dev/sdc","format":"ext4","wipeFilesystem":true}]}}"#,
                &["Warning $.storage.filesystems.0.device: filesystem overwrites partitioned device", "Warning $.storage.filesystems.1.device: device matches disk with wipeTable enabled; filesystem will be wiped"],
            ),
            // Storage.validateLinks: the owner of a hard link, per field.
            (
                r#"{"ignition":{"version":"3.3.0"},"storage":{"links":[{"path":"/l","target":"/t","hard":true,"user":{"id":1},"group":{"name":"g"}}]}}"#,
                &["Warning $.storage.links.0.user.id: user/group ignored for hard link", "Warning $.storage.links.0.group.name: user/group ignored for hard link"],
            ),
            // Proxy.Validate.
            (r#"{"ignition":{"version":"3.1.0","proxy":{"httpsProxy":"http://p:3128"}}}"#, &["Warning $.ignition.proxy.httpsProxy: insecure plaintext HTTP proxy specified for HTTPS resources"]),
            (r#"{"ignition":{"version":"3.1.0","proxy":{"httpProxy":"HTTP://p:3128","httpsProxy":"https://p"}}}"#, &[]),
            (r#"{"ignition":{"version":"3.1.0","proxy":{"httpProxy":""}}}"#, &["Error $.ignition.proxy.httpProxy: proxies must be http(s)"]),
            // validateURL: schemes by spec version, S3 object versions and ARNs.
            (r#"{"ignition":{"version":"3.1.0"},"storage":{"files":[{"path":"/a","contents":{"source":"gs://b/k"}}]}}"#, &["Error $.storage.files.0.contents.source: invalid url scheme"]),
            (r#"{"ignition":{"version":"3.2.0"},"storage":{"files":[{"path":"/a","contents":{"source":"gs://b/k"}}]}}"#, &[]),
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"s3://b/k?versionId="}}]}}"#, &["Error $.storage.files.0.contents.source: invalid S3 object VersionId"]),
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"s3://b/k?versionId=3"}}]}}"#, &[]),
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"arn:aws:s3:::b/k"}}]}}"#, &["Error $.storage.files.0.contents.source: invalid url scheme"]),
            (r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/a","contents":{"source":"arn:aws:s3:::b/k"}}]}}"#, &[]),
            (r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/a","contents":{"source":"arn:aws:s3:us-east-1:123:accesspoint/ap/k?versionId=1"}}]}}"#, &[]),
            (r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/a","contents":{"source":"arn:aws:s3:us-east-1:123:accesspoint/ap"}}]}}"#, &["Error $.storage.files.0.contents.source: invalid S3 ARN format"]),
            (r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/a","contents":{"source":"arn:aws:s3:::bucket"}}]}}"#, &["Error $.storage.files.0.contents.source: invalid S3 ARN format"]),
            (r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/a","contents":{"source":"arn:aws:iam:::b/k"}}]}}"#, &["Error $.storage.files.0.contents.source: invalid S3 ARN format"]),
            (r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/a","contents":{"source":"arn:aws:s3:b/k"}}]}}"#, &["Error $.storage.files.0.contents.source: invalid S3 ARN format"]),
            (r#"{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/a","contents":{"source":"arn:aws:s3:::b/k?versionId"}}]}}"#, &["Error $.storage.files.0.contents.source: invalid S3 object VersionId"]),
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"http://x/%zz"}}]}}"#, &["Error $.storage.files.0.contents.source: unable to parse url"]),
            // Luks.Validate: the key file (reported under `keys` too), CEX (3.5).
            (
                r#"{"ignition":{"version":"3.2.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","keyFile":{"source":"ftp://x"}}]}}"#,
                &["Error $.storage.luks.0.keyFile.source: invalid url scheme", "Error $.storage.luks.0.keys: invalid key-file source"],
            ),
            (r#"{"ignition":{"version":"3.5.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","cex":{"enabled":true},"clevis":{"tpm2":true}}]}}"#, &["Error $.storage.luks.0.cex: cannot use cex with clevis"]),
            (r#"{"ignition":{"version":"3.5.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","cex":{"enabled":true},"keyFile":{"source":"data:,k"}}]}}"#, &["Error $.storage.luks.0.cex: cannot use key file with cex"]),
            (r#"{"ignition":{"version":"3.5.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","cex":{"enabled":false},"clevis":{"tpm2":true},"keyFile":{"source":"data:,k"}}]}}"#, &[]),
            (r#"{"ignition":{"version":"3.4.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","cex":{"enabled":true}}]}}"#, &["Warning $.storage.luks.0.cex: Unused key cex"]),
            // Tang.Validate (3.4+).
            (
                r#"{"ignition":{"version":"3.4.0"},"storage":{"luks":[{"name":"a","device":"/dev/sda","clevis":{"tang":[{"url":"http://t","thumbprint":"x","advertisement":"{\"payload\":\"\"}"},{"url":"http://u","thumbprint":"x","advertisement":"{nope"}]}}]}}"#,
                &["Error $.storage.luks.0.clevis.tang.1.advertisement: advertisement is not valid JSON"],
            ),
            // Storage.validate{Files,Directories,Links}: a node under a link of the config.
            (
                r#"{"ignition":{"version":"3.3.0"},"storage":{"links":[{"path":"/l","target":"/x"},{"path":"/l/m","target":"/y"}],"files":[{"path":"/l/f"}],"directories":[{"path":"/l/d"}]}}"#,
                &["Error $.storage.files.0: file path includes link in config", "Error $.storage.directories.0: directory path includes link in config", "Error $.storage.links.1: link path includes link in config"],
            ),
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":""}]}}"#, &["Error $.storage.files.0.path: path not specified"]),
            // HTTPHeader.Validate: a value given empty.
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"http://x/y","httpHeaders":[{"name":"A","value":""},{"name":"B"}]}}]}}"#, &["Error $.storage.files.0.contents.httpHeaders.0.value: unable to parse HTTP header"]),
            // Verification.Validate, in every resource: form, function, length (not digits).
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"http://x/y","verification":{"hash":"sha256"}}}]}}"#, &["Error $.storage.files.0.contents.verification.hash: malformed hash specifier"]),
            (r#"{"ignition":{"version":"3.3.0","config":{"merge":[{"source":"http://x/y","verification":{"hash":"md5-00"}}]}}}"#, &["Error $.ignition.config.merge.0.verification.hash: unrecognized hash function"]),
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","append":[{"source":"http://x/y","verification":{"hash":"sha256-00"}}]}]}}"#, &["Error $.storage.files.0.append.0.verification.hash: incorrect size for hash sum"]),
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a","contents":{"source":"http://x/y","verification":{"hash":"sha256-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"}}}]}}"#, &[]),
            // Disk.Validate: explicitly placed partitions only; one error.
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/a","partitions":[{"number":1,"startMiB":1,"sizeMiB":10},{"number":2,"startMiB":5,"sizeMiB":10},{"number":3,"startMiB":0,"sizeMiB":10}]}]}}"#, &["Error $.storage.disks.0.partitions.1: partitions overlap"]),
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/a","partitions":[{"number":1,"startMiB":1,"sizeMiB":10},{"number":2,"startMiB":11,"sizeMiB":0}]}]}}"#, &[]),
            // Versions: not semver, or not one this validates.
            (r#"{"ignition":{"version":"3.3"}}"#, &["Error $.ignition.version: invalid config version (couldn't parse)"]),
            (r#"{"ignition":{"version":"3.9.0"}}"#, &["Error $.ignition.version: unsupported config version"]),
            // ValidateDups: every list by its key; nodes as one list; options and appends exempt.
            (
                r#"{"ignition":{"version":"3.3.0"},"passwd":{"users":[{"name":"a","sshAuthorizedKeys":["k","k"]}]},"storage":{"files":[{"path":"/a"},{"path":"/b","append":[{"source":"data:,x"},{"source":"data:,x"}]}],"links":[{"path":"/a","target":"/x"}],"raid":[{"name":"md","level":"raid1","devices":["/dev/a","/dev/a"],"options":["x","x"]}]}}"#,
                &["Error $.passwd.users.0.sshAuthorizedKeys.1: duplicate entry defined", "Error $.storage.links.0: duplicate entry defined", "Error $.storage.raid.0.devices.1: duplicate entry defined"],
            ),
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"/dev/a","partitions":[{"sizeMiB":1},{"sizeMiB":2}]}]}}"#, &["Error $.storage.disks.0.partitions.0: a partition number >= 1 or a label must be specified", "Error $.storage.disks.0.partitions.1: a partition number >= 1 or a label must be specified", "Error $.storage.disks.0.partitions.1: duplicate entry defined"]),
            (r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a"}],"directories":[{"path":"/a/"}]}}"#, &["Error $.storage.directories.0.path: path is not fully simplified"]),
            (r#"{"ignition":{"version":"3.3.0","config":{"merge":[{"source":"http://m"},{"source":"http://m"}]},"proxy":{"noProxy":["a","a"]}}}"#, &["Error $.ignition.config.merge.1: duplicate entry defined", "Error $.ignition.proxy.noProxy.1: duplicate entry defined"]),
            // File/Directory.Validate: special bits (functional from 3.6, past what this validates).
            (r#"{"ignition":{"version":"3.5.0"},"storage":{"directories":[{"path":"/d","mode":1023}]}}"#, &["Warning $.storage.directories.0.mode: setuid/setgid/sticky bits are not supported or functional in spec versions older than 3.6.0"]),
        ];
        for (config, want) in cases {
            assert_eq!(report(config), *want, "{config}");
        }
    }

    /// Go Butane validates its output with Ignition's rules: so does the compiler, and
    /// the entries point at the Butane line that made the node.
    #[test]
    fn butane_output_is_held_to_ignition_rules_with_positions() {
        let conflict = "variant: fcos\nversion: 1.5.0\nstorage:\n  files:\n    - path: /etc/systemd/system/a.service\n      contents: { inline: x }\nsystemd:\n  units:\n    - name: a.service\n      contents: \"[Unit]\\nA=b\\n\"\n";
        let f = crate::translate(conflict, &Default::default()).expect_err("a file where a unit is written is refused");
        assert_eq!(f.message, "config generated was invalid");
        let e = f.report.iter().find(|e| e.message == "path conflicts with systemd unit or dropin").expect("the conflict is named");
        assert_eq!(e.pos.map(|p| p.line), Some(5), "{e}");
        let warn = "variant: fcos\nversion: 1.5.0\nstorage:\n  disks:\n    - device: /dev/sdb\n      partitions:\n        - number: 1\n  filesystems:\n    - device: /dev/sdb\n      format: ext4\n";
        let t = crate::translate(warn, &Default::default()).expect("a warning only");
        let w = t.warnings.iter().find(|w| w.message == "filesystem overwrites partitioned device").expect("warned");
        assert_eq!(w.pos.map(|p| p.line), Some(9), "{w}");
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
