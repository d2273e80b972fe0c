//! Butane sugar that spans the whole config: `storage.trees` (a directory copied into
//! files and links) and `with_mount_unit` (a systemd mount or swap unit per filesystem).
//! Generated entries are merged as Butane merges them: mount units first, with a user
//! unit of the same name merged into them field by field; tree entries after the
//! user's own, filling user entries at the same path that have no contents yet.

use crate::translate::{Ctx, MountRequest};
use crate::yaml::{Node, Value};
use crate::dataurl;
use crate::schema::order_map;
use serde_json::{json, Map, Value as J};
use std::path::Path;

/// `systemd-escape --path`.
pub fn escape_path(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() {
        return "-".into();
    }
    let joined = parts.join("/");
    let mut out = String::new();
    for (i, b) in joined.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, std::fs::Metadata, std::path::PathBuf)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let meta = std::fs::symlink_metadata(e.path())?;
        out.push((r.clone(), meta.clone(), e.path()));
        if meta.is_dir() {
            walk(&e.path(), &r, out)?;
        }
    }
    Ok(())
}

fn find(list: &[J], path: &str) -> Option<usize> {
    list.iter().position(|e| e.get("path").and_then(J::as_str) == Some(path))
}

/// Expands `storage.trees` into `storage.files` and `storage.links`.
pub fn trees(ctx: &mut Ctx<'_>, trees_node: &Node, storage: &mut Map<String, J>) {
    let Value::Seq(items) = &trees_node.value else { return };
    let mut files: Vec<J> = storage.remove("files").and_then(|v| v.as_array().cloned()).unwrap_or_default();
    let mut links: Vec<J> = storage.remove("links").and_then(|v| v.as_array().cloned()).unwrap_or_default();
    let dirs: Vec<J> = storage.get("directories").and_then(|v| v.as_array().cloned()).unwrap_or_default();
    for (i, t) in items.iter().enumerate() {
        let tp = format!("storage.trees.{i}");
        let local = t.get("local").and_then(|n| if let Value::Scalar(s, _) = &n.value { Some((s.clone(), n.pos)) } else { None });
        let Some((local, lpos)) = local else {
            ctx.error(&tp, Some(t.pos), "local is required");
            continue;
        };
        let base = t.get("path").and_then(|n| if let Value::Scalar(s, _) = &n.value { Some(s.clone()) } else { None }).unwrap_or_else(|| "/".into());
        let Some(dir) = ctx.files_dir else {
            ctx.error(&format!("{tp}.local"), Some(lpos), "local file paths are relative to a files directory that must be specified with -d/--files-dir");
            continue;
        };
        if Path::new(&local).components().any(|c| matches!(c, std::path::Component::ParentDir)) && !dir.join(&local).starts_with(dir) {
            ctx.error(&format!("{tp}.local"), Some(lpos), "local file path traverses outside the files directory");
            continue;
        }
        let mut depth = 0i64;
        let mut escapes = false;
        for c in Path::new(&local).components() {
            match c {
                std::path::Component::ParentDir => depth -= 1,
                std::path::Component::Normal(_) => depth += 1,
                _ => {}
            }
            escapes |= depth < 0;
        }
        if escapes {
            ctx.error(&format!("{tp}.local"), Some(lpos), "local file path traverses outside the files directory");
            continue;
        }
        let root = dir.join(&local);
        match std::fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            _ => {
                ctx.error(&format!("{tp}.local"), Some(lpos), "root of tree must be a directory");
                continue;
            }
        }
        let mut entries = Vec::new();
        if let Err(e) = walk(&root, "", &mut entries) {
            ctx.error(&format!("{tp}.local"), Some(lpos), e.to_string());
            continue;
        }
        for (rel, meta, full) in entries {
            let dest = format!("{}/{rel}", base.trim_end_matches('/'));
            let dest = if dest.starts_with('/') { dest } else { format!("/{dest}") };
            let clash = || "matching filesystem node has existing contents or different type".to_string();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&full).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
                if find(&files, &dest).is_some() || find(&dirs, &dest).is_some() {
                    ctx.error(&format!("{tp}.local"), Some(lpos), clash());
                    continue;
                }
                match find(&links, &dest) {
                    Some(j) if links[j].get("target").is_none() => {
                        links[j]["target"] = J::String(target);
                    }
                    Some(_) => ctx.error(&format!("{tp}.local"), Some(lpos), clash()),
                    None => links.push(json!({ "path": dest, "target": target })),
                }
            } else if meta.is_file() {
                let data = match std::fs::read(&full) {
                    Ok(d) => d,
                    Err(e) => {
                        ctx.error(&format!("{tp}.local"), Some(lpos), e.to_string());
                        continue;
                    }
                };
                use std::os::unix::fs::PermissionsExt;
                let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
                let (url, compression) = dataurl::make(&data, ctx.no_auto_compression.then_some(""));
                let contents = json!({ "compression": compression, "source": url });
                if find(&links, &dest).is_some() || find(&dirs, &dest).is_some() {
                    ctx.error(&format!("{tp}.local"), Some(lpos), clash());
                    continue;
                }
                match find(&files, &dest) {
                    Some(j) if files[j].get("contents").and_then(|c| c.get("source")).is_none() => {
                        let f = files[j].as_object().cloned().unwrap_or_default();
                        let mode = f.get("mode").cloned().unwrap_or(json!(mode));
                        files[j] = reorder_file(f, contents, mode);
                    }
                    Some(_) => ctx.error(&format!("{tp}.local"), Some(lpos), clash()),
                    None => files.push(json!({ "path": dest, "contents": contents, "mode": mode })),
                }
            } else if !meta.is_dir() {
                ctx.error(&format!("{tp}.local"), Some(lpos), "trees may only contain files, directories, and symlinks");
            }
        }
    }
    if !files.is_empty() {
        storage.insert("files".into(), J::Array(files));
    }
    if !links.is_empty() {
        storage.insert("links".into(), J::Array(links));
    }
    order_map("Storage", storage);
}

fn reorder_file(mut f: Map<String, J>, contents: J, mode: J) -> J {
    f.insert("contents".into(), contents);
    f.insert("mode".into(), mode);
    order_map("File", &mut f);
    J::Object(f)
}


/// Generates the mount/swap units and merges the user's units into them.
pub fn mount_units(ctx: &mut Ctx<'_>, reqs: &[MountRequest], cfg: &mut Map<String, J>) -> Vec<(usize, usize)> {
    if reqs.is_empty() {
        return Vec::new();
    }
    let storage = cfg.get("storage").cloned().unwrap_or(json!({}));
    let filesystems = storage.get("filesystems").and_then(J::as_array).cloned().unwrap_or_default();
    let luks = storage.get("luks").and_then(J::as_array).cloned().unwrap_or_default();
    let mut generated: Vec<Map<String, J>> = Vec::new();
    for r in reqs {
        let found = match &r.device {
            Some(d) => filesystems.iter().find(|f| f.get("device").and_then(J::as_str) == Some(d.as_str())),
            None => filesystems.get(r.index),
        };
        let Some(fs) = found else { continue };
        let p = format!("storage.filesystems.{}", r.index);
        let device = fs.get("device").and_then(J::as_str).unwrap_or("").to_string();
        let Some(format) = fs.get("format").and_then(J::as_str).map(str::to_string) else {
            ctx.error(&format!("{p}.format"), Some(r.pos), "format is required if with_mount_unit is true");
            continue;
        };
        let options: Vec<String> = fs.get("mountOptions").and_then(J::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default();
        if format == "swap" {
            let mut c = format!("# Generated by Butane\n[Swap]\nWhat={device}\n");
            if !options.is_empty() {
                c += &format!("Options={}\n", options.join(","));
            }
            c += "\n[Install]\nRequiredBy=swap.target";
            generated.push(unit(c, format!("{}.swap", escape_path(&device))));
            continue;
        }
        let Some(path) = fs.get("path").and_then(J::as_str).map(str::to_string) else {
            ctx.error(&format!("{p}.path"), Some(r.pos), "path is required if with_mount_unit is true");
            continue;
        };
        let remote = luks.iter().any(|l| {
            let name = l.get("name").and_then(J::as_str).unwrap_or("");
            let tang = l.get("clevis").and_then(|c| c.get("tang")).and_then(J::as_array).is_some_and(|t| !t.is_empty());
            tang && (device == format!("/dev/mapper/{name}") || device == format!("/dev/disk/by-id/dm-name-{name}"))
        });
        let mut opts = options.clone();
        if remote {
            opts.push("_netdev".into());
        }
        let esc = escape_path(&device);
        let mut c = format!(
            "# Generated by Butane\n[Unit]\nRequires=systemd-fsck@{esc}.service\nAfter=systemd-fsck@{esc}.service\n\n[Mount]\nWhere={path}\nWhat={device}\nType={format}\n"
        );
        if !opts.is_empty() {
            c += &format!("Options={}\n", opts.join(","));
        }
        c += &format!("\n[Install]\nRequiredBy={}", if remote { "remote-fs.target" } else { "local-fs.target" });
        generated.push(unit(c, format!("{}.mount", escape_path(&path))));
    }
    // Merge: generated first; user units of the same name merge into them.
    let user: Vec<J> = cfg.get("systemd").and_then(|s| s.get("units")).and_then(J::as_array).cloned().unwrap_or_default();
    let mut out: Vec<Map<String, J>> = generated;
    let mut moved = Vec::new();
    for (i, u) in user.into_iter().enumerate() {
        let Some(um) = u.as_object().cloned() else { continue };
        let name = um.get("name").and_then(J::as_str).unwrap_or("").to_string();
        if let Some(j) = out.iter().position(|g| g.get("name").and_then(J::as_str) == Some(name.as_str())) {
            for (k, v) in um {
                out[j].insert(k, v);
            }
            order_map("Unit", &mut out[j]);
            moved.push((i, j));
        } else {
            out.push(um);
            moved.push((i, out.len() - 1));
        }
    }
    let systemd = cfg.entry("systemd").or_insert_with(|| json!({}));
    if let Some(s) = systemd.as_object_mut() {
        s.insert("units".into(), J::Array(out.into_iter().map(J::Object).collect()));
    }
    order_map("Config", cfg);
    moved
}

fn unit(contents: String, name: String) -> Map<String, J> {
    let mut m = Map::new();
    m.insert("contents".into(), J::String(contents));
    m.insert("enabled".into(), J::Bool(true));
    m.insert("name".into(), J::String(name));
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn systemd_escape_path() {
        assert_eq!(super::escape_path("/var/lib/containers"), "var-lib-containers");
        assert_eq!(super::escape_path("/dev/disk/by-label/foo"), "dev-disk-by\\x2dlabel-foo");
        assert_eq!(super::escape_path("/"), "-");
        assert_eq!(super::escape_path("/.hidden/a b"), "\\x2ehidden-a\\x20b");
    }
}
