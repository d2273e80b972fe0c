//! Fedora CoreOS sugar: `boot_device` (LUKS with TPM2/Tang, and boot disk mirroring
//! with the per-architecture partition layout of FCOS's disk image) and `grub` (boot
//! menu passwords). Both generate a storage config that the user's own storage is then
//! merged into, entry by entry (config/fcos/v1_3+ translate.go in Butane).

use crate::dataurl;
use crate::translate::Ctx;
use crate::yaml::{parse_bool, parse_int, Node, Value};
use serde_json::{json, Map, Value as J};

fn s(n: &Node) -> Option<String> {
    match &n.value {
        Value::Scalar(v, _) if !n.is_null() => Some(v.clone()),
        _ => None,
    }
}

fn known_keys(ctx: &mut Ctx<'_>, n: &Node, path: &str, keys: &[&str]) {
    if let Value::Map(m) = &n.value {
        for (k, p, _) in m {
            if !keys.contains(&k.as_str()) {
                ctx.warn(&format!("{path}.{k}"), Some(*p), format!("unused key {k}"));
            }
        }
    }
}

const BIOS: &str = "21686148-6449-6E6F-744E-656564454649";
const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const PREP: &str = "9E1A2D38-C612-4316-AA26-8B49521E5A8B";
const RESERVED: &str = "8DA63339-0007-60C0-C436-083AC8230908";

/// The storage `boot_device` stands for.
pub fn boot_device(ctx: &mut Ctx<'_>, n: &Node) -> Map<String, J> {
    let mut out = Map::new();
    known_keys(ctx, n, "boot_device", &["layout", "luks", "mirror"]);
    let layout = n.get("layout").and_then(s);
    if let Some(l) = &layout {
        if !matches!(l.as_str(), "aarch64" | "ppc64le" | "x86_64") {
            let p = n.get("layout").map(|x| x.pos);
            ctx.error("boot_device.layout", p, "layout must be one of: aarch64, ppc64le, x86_64");
            return out;
        }
    }
    let layout = layout.unwrap_or_else(|| "x86_64".into());
    let devices: Vec<String> = match n.get("mirror").and_then(|m| m.get("devices")).map(|d| &d.value) {
        Some(Value::Seq(items)) => items.iter().filter_map(s).collect(),
        _ => Vec::new(),
    };
    if let Some(m) = n.get("mirror") {
        known_keys(ctx, m, "boot_device.mirror", &["devices"]);
    }
    let luks = n.get("luks");
    if let Some(l) = luks {
        let mut keys = vec!["tang", "tpm2", "threshold", "device"];
        if ctx.minor >= 4 {
            keys.push("discard");
        }
        known_keys(ctx, l, "boot_device.luks", &keys);
    }
    let tang: Vec<J> = match luks.and_then(|l| l.get("tang")).map(|t| &t.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .map(|t| {
                let mut m = Map::new();
                if ctx.minor >= 4 {
                    if let Some(a) = t.get("advertisement").and_then(s) {
                        m.insert("advertisement".into(), J::String(a));
                    }
                }
                if let Some(v) = t.get("thumbprint").and_then(s) {
                    m.insert("thumbprint".into(), J::String(v));
                }
                m.insert("url".into(), J::String(t.get("url").and_then(s).unwrap_or_default()));
                J::Object(m)
            })
            .collect(),
        _ => Vec::new(),
    };
    let tpm2 = luks.and_then(|l| l.get("tpm2")).and_then(s).and_then(|v| parse_bool(&v));
    let threshold = luks.and_then(|l| l.get("threshold")).and_then(s).and_then(|v| parse_int(&v));
    let discard = luks.and_then(|l| l.get("discard")).and_then(s).and_then(|v| parse_bool(&v));
    let want_luks = tpm2 == Some(true) || !tang.is_empty();
    let mirrored = n.get("mirror").is_some() && !devices.is_empty();
    if n.get("mirror").is_some() {
        if devices.len() < 2 {
            let p = n.get("mirror").and_then(|m| m.get("devices")).map(|d| d.pos);
            ctx.error("boot_device.mirror.devices", p, "mirroring requires at least two devices");
            return out;
        }
        if n.get("layout").is_none() {
            let p = n.get("mirror").map(|m| m.pos);
            ctx.warn("boot_device.mirror", p, "boot_device.layout should be specified when boot_device.mirror is specified");
        }
    }
    let mut disks = Vec::new();
    let mut filesystems = Vec::new();
    let mut raid = Vec::new();
    if mirrored {
        for (i, dev) in devices.iter().enumerate() {
            let n = i + 1;
            let part = |label: String, size: Option<i64>, ty: Option<&str>| {
                let mut m = Map::new();
                m.insert("label".into(), J::String(label));
                if let Some(z) = size {
                    m.insert("sizeMiB".into(), json!(z));
                }
                if let Some(t) = ty {
                    m.insert("typeGuid".into(), J::String(t.into()));
                }
                J::Object(m)
            };
            let mut parts = Vec::new();
            match layout.as_str() {
                "x86_64" => {
                    parts.push(part(format!("bios-{n}"), Some(1), Some(BIOS)));
                    parts.push(part(format!("esp-{n}"), Some(127), Some(ESP)));
                }
                "aarch64" => {
                    parts.push(part(format!("reserved-{n}"), Some(1), Some(RESERVED)));
                    parts.push(part(format!("esp-{n}"), Some(127), Some(ESP)));
                }
                _ => {
                    parts.push(part(format!("prep-{n}"), Some(4), Some(PREP)));
                    parts.push(part(format!("reserved-{n}"), Some(1), Some(RESERVED)));
                }
            }
            parts.push(part(format!("boot-{n}"), Some(384), None));
            parts.push(part(format!("root-{n}"), None, None));
            disks.push(json!({ "device": dev, "partitions": parts, "wipeTable": true }));
            if layout != "ppc64le" {
                filesystems.push(json!({ "device": format!("/dev/disk/by-partlabel/esp-{n}"), "format": "vfat", "label": format!("esp-{n}"), "wipeFilesystem": true }));
            }
        }
        filesystems.push(json!({ "device": "/dev/md/md-boot", "format": "ext4", "label": "boot", "wipeFilesystem": true }));
        let by = |p: &str| devices.iter().enumerate().map(|(i, _)| format!("/dev/disk/by-partlabel/{p}-{}", i + 1)).collect::<Vec<_>>();
        raid.push(json!({ "devices": by("boot"), "level": "raid1", "name": "md-boot", "options": ["--metadata=1.0"] }));
        raid.push(json!({ "devices": by("root"), "level": "raid1", "name": "md-root" }));
    }
    let mut luks_out = Vec::new();
    if want_luks {
        let mut clevis = Map::new();
        if !tang.is_empty() {
            clevis.insert("tang".into(), J::Array(tang));
        }
        if let Some(t) = threshold {
            clevis.insert("threshold".into(), json!(t));
        }
        if let Some(t) = tpm2 {
            clevis.insert("tpm2".into(), json!(t));
        }
        let mut l = Map::new();
        l.insert("clevis".into(), J::Object(clevis));
        l.insert("device".into(), J::String(if mirrored { "/dev/md/md-root".into() } else { "/dev/disk/by-partlabel/root".into() }));
        if let (Some(d), true) = (discard, ctx.minor >= 4) {
            l.insert("discard".into(), json!(d));
        }
        l.insert("label".into(), J::String("luks-root".into()));
        l.insert("name".into(), J::String("root".into()));
        l.insert("wipeVolume".into(), J::Bool(true));
        luks_out.push(J::Object(l));
    }
    if want_luks || mirrored {
        let dev = if want_luks { "/dev/mapper/root" } else { "/dev/md/md-root" };
        filesystems.push(json!({ "device": dev, "format": "xfs", "label": "root", "wipeFilesystem": true }));
    }
    for (k, v) in [("disks", disks), ("filesystems", filesystems), ("luks", luks_out), ("raid", raid)] {
        if !v.is_empty() {
            out.insert(k.into(), J::Array(v));
        }
    }
    out
}

/// The storage `grub.users` stands for.
pub fn grub(ctx: &mut Ctx<'_>, n: &Node) -> Map<String, J> {
    let mut out = Map::new();
    known_keys(ctx, n, "grub", &["users"]);
    let Some(Value::Seq(users)) = n.get("users").map(|u| &u.value) else { return out };
    let mut names = Vec::new();
    let mut lines = String::new();
    for (i, u) in users.iter().enumerate() {
        let name = u.get("name").and_then(s);
        let hash = u.get("password_hash").and_then(s);
        match (name, hash) {
            (Some(name), Some(hash)) => {
                lines += &format!("password_pbkdf2 {name} {hash}\n");
                names.push(name);
            }
            (None, _) => ctx.error(&format!("grub.users.{i}.name"), Some(u.pos), "field is required"),
            (_, None) => ctx.error(&format!("grub.users.{i}.password_hash"), Some(u.pos), "field is required"),
        }
    }
    if names.is_empty() {
        return out;
    }
    let text = format!("# Generated by Butane\n\nset superusers=\"{}\"\n{lines}", names.join(" "));
    let (url, compression) = dataurl::make(text.as_bytes(), ctx.no_auto_compression.then_some(""));
    out.insert("files".into(), json!([{ "path": "/boot/grub2/user.cfg", "append": [{ "compression": compression, "source": url }] }]));
    out.insert("filesystems".into(), json!([{ "device": "/dev/disk/by-label/boot", "format": "ext4", "path": "/boot" }]));
    out
}

fn key_of(list: &str, e: &J) -> Option<String> {
    let k = match list {
        "disks" | "filesystems" => "device",
        "luks" | "raid" => "name",
        _ => "path",
    };
    e.get(k).and_then(J::as_str).map(str::to_string)
}

/// Merges `user` into `generated` entry by entry: the user's fields win, the user's
/// new entries follow the generated ones.
pub fn merge_storage(generated: Map<String, J>, user: Map<String, J>) -> Map<String, J> {
    let mut out = generated;
    for (list, uv) in user {
        let Some(items) = uv.as_array().cloned() else {
            out.insert(list, uv);
            continue;
        };
        let target = out.entry(list.clone()).or_insert_with(|| J::Array(Vec::new()));
        let Some(arr) = target.as_array_mut() else { continue };
        for item in items {
            let pos = key_of(&list, &item).and_then(|k| arr.iter().position(|g| key_of(&list, g).as_deref() == Some(k.as_str())));
            match pos {
                Some(i) => merge_entry(&list, &mut arr[i], item),
                None => arr.push(item),
            }
        }
    }
    out
}

fn merge_entry(list: &str, into: &mut J, from: J) {
    let (Some(a), J::Object(b)) = (into.as_object_mut(), from) else { return };
    for (k, v) in b {
        if list == "disks" && k == "partitions" {
            let mut parts = a.get("partitions").and_then(J::as_array).cloned().unwrap_or_default();
            for p in v.as_array().cloned().unwrap_or_default() {
                let num = p.get("number").and_then(J::as_i64).filter(|n| *n != 0);
                let label = p.get("label").and_then(J::as_str).map(str::to_string);
                let hit = parts.iter().position(|g| match num {
                    Some(n) => g.get("number").and_then(J::as_i64) == Some(n),
                    None => label.is_some() && g.get("label").and_then(J::as_str) == label.as_deref(),
                });
                match hit {
                    Some(i) => {
                        if let (Some(gm), Some(pm)) = (parts[i].as_object_mut(), p.as_object()) {
                            for (pk, pv) in pm {
                                gm.insert(pk.clone(), pv.clone());
                            }
                        }
                    }
                    None => parts.push(p),
                }
            }
            a.insert("partitions".into(), J::Array(parts));
        } else {
            a.insert(k, v);
        }
    }
}
