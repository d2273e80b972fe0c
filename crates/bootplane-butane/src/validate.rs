//! The checks Butane runs on the Ignition it produced (its own validators and the
//! vendored Ignition's): absolute paths, units enabled without
//! an `[Install]` section, decimal-looking and special-bit modes, user and group on hard
//! links. (Ignition's other rules, hashes among them, are [`crate::ignition`]'s.) Errors make the translation fail; warnings are reported.

use crate::translate::Ctx;
use serde_json::Value as J;

fn arr<'a>(v: &'a J, path: &[&str]) -> Vec<&'a J> {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return Vec::new(),
        }
    }
    cur.as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

fn is_typical(mode: i64, dir: bool) -> bool {
    if mode & !0o777 != 0 {
        return false;
    }
    let (u, g, o) = ((mode >> 6) & 7, (mode >> 3) & 7, mode & 7);
    let subset = |a: i64, b: i64| a & !b == 0;
    u & 4 != 0 && subset(g, u) && subset(o, g) && (!dir || u & 1 != 0)
}

/// Butane's "decimal mode" check: 644 written where 0644 was meant.
fn decimal_mode(mode: i64, dir: bool) -> bool {
    let digits = mode.to_string();
    if mode < 0 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return false;
    }
    let Ok(corrected) = i64::from_str_radix(&digits, 8) else { return false };
    corrected <= 0o7777 && !is_typical(mode, dir) && is_typical(corrected, dir)
}

pub fn run(ctx: &mut Ctx<'_>, cfg: &mut J) {
    let pos = |ctx: &Ctx<'_>, p: &str| ctx.pos.get(p).copied();
    for kind in ["files", "directories", "links"] {
        for (i, e) in arr(cfg, &["storage", kind]).into_iter().enumerate() {
            let p = format!("storage.{kind}.{i}");
            let path = e.get("path").and_then(J::as_str).unwrap_or("");
            if path.is_empty() {
                let at = pos(ctx, &p);
                ctx.error(&format!("{p}.path"), at, "path not specified");
            } else if !path.starts_with('/') {
                let at = pos(ctx, &format!("{p}.path"));
                ctx.error(&format!("{p}.path"), at, "path not absolute");
            }
            if let Some(mode) = e.get("mode").and_then(J::as_i64) {
                let at = pos(ctx, &format!("{p}.mode"));
                if ctx.butane && decimal_mode(mode, kind == "directories") {
                    ctx.warn(&format!("{p}.mode"), at, "unreasonable mode would be reasonable if specified in octal; remember to add a leading zero");
                }
                if mode & 0o7000 != 0 && ctx.minor < 6 {
                    ctx.warn(&format!("{p}.mode"), at, "setuid/setgid/sticky bits are not supported or functional in spec versions older than 3.6.0");
                }
            }
            if kind == "links" && e.get("hard").and_then(J::as_bool) == Some(true) {
                for (who, key) in [("user", "id"), ("user", "name"), ("group", "id"), ("group", "name")] {
                    if e.get(who).and_then(|o| o.get(key)).is_some_and(|v| !v.is_null()) {
                        let w = format!("{p}.{who}.{key}");
                        let at = pos(ctx, &w).or_else(|| pos(ctx, &p));
                        ctx.warn(&w, at, "user/group ignored for hard link");
                    }
                }
            }
        }
    }
    partitions(ctx, cfg);
    if !ctx.fcos {
        for (i, l) in arr(cfg, &["storage", "luks"]).into_iter().enumerate() {
            if l.get("clevis").is_some() {
                let p = format!("storage.luks.{i}.clevis");
                let at = pos(ctx, &p);
                ctx.error(&p, at, "clevis is not supported in this spec version");
            }
        }
    }
    for (i, u) in arr(cfg, &["systemd", "units"]).into_iter().enumerate() {
        let name = u.get("name").and_then(J::as_str).unwrap_or("");
        if let (Some(c), Some(true)) = (u.get("contents").and_then(J::as_str), u.get("enabled").and_then(J::as_bool)) {
            if !c.is_empty() && !crate::unit::has_install_section(c) {
                let p = format!("systemd.units.{i}.contents");
                let at = pos(ctx, &p);
                ctx.warn(&p, at, format!("unit \"{name}\" is enabled, but has no install section so enable does nothing"));
            }
        }
    }
}

fn int(v: &J, k: &str) -> Option<i64> {
    v.get(k).and_then(J::as_i64)
}

/// Ignition's partition rules, and the fcos layout warnings (reserved labels at their
/// fixed numbers, room for root) unless the disk is wiped.
fn partitions(ctx: &mut Ctx<'_>, cfg: &J) {
    for (d, disk) in arr(cfg, &["storage", "disks"]).into_iter().enumerate() {
        let parts = arr(disk, &["partitions"]);
        let dp = format!("storage.disks.{d}.partitions");
        for (i, p) in parts.iter().enumerate() {
            let n = int(p, "number").unwrap_or(0);
            if n == 0 && p.get("label").is_none() {
                let path = format!("{dp}.{i}");
                let at = ctx.pos.get(&path).copied();
                ctx.error(&path, at, "a partition number >= 1 or a label must be specified");
            }
        }
        let any_gone = parts.iter().any(|p| p.get("shouldExist").and_then(J::as_bool) == Some(false));
        // Ignition's partitionsMixZeroesAndNonexistence: a partition that must not exist
        // beside one that has no number.
        if any_gone && parts.iter().any(|p| int(p, "number").unwrap_or(0) == 0) {
            let at = ctx.pos.get(&dp).copied();
            ctx.error(&dp, at, "shouldExist is false for a partition and other partition(s) has start or size 0");
        }
        if !ctx.fcos || !ctx.butane || disk.get("wipeTable").and_then(J::as_bool) == Some(true) {
            continue;
        }
        for (i, p) in parts.iter().enumerate() {
            let label = p.get("label").and_then(J::as_str).unwrap_or("");
            let want = match label {
                "BIOS-BOOT" | "PowerPC-PReP-boot" => 1,
                "EFI-SYSTEM" => 2,
                "boot" => 3,
                "root" => 4,
                _ => continue,
            };
            let lp = format!("{dp}.{i}.label");
            if int(p, "number").unwrap_or(0) != want {
                let at = ctx.pos.get(&lp).copied();
                ctx.warn(&lp, at, "incorrect partition number; a new partition will be created using reserved label");
            }
            if label != "root" {
                continue;
            }
            match int(p, "sizeMiB") {
                Some(sz) if sz != 0 && sz < 8192 => {
                    let sp = format!("{dp}.{i}.size_mib");
                    let at = ctx.pos.get(&format!("{dp}.{i}.sizeMiB")).copied();
                    ctx.warn(&sp, at, "root should have 8GiB of space assigned");
                }
                Some(sz) if sz != 0 => {}
                _ => {
                    let root_no = int(p, "number").unwrap_or(0);
                    let blocked = parts.iter().enumerate().any(|(j, q)| {
                        j != i && int(q, "startMiB").unwrap_or(0) == 0 && (j > i || int(q, "number").unwrap_or(0) > root_no)
                    });
                    if blocked {
                        let at = ctx.pos.get(&lp).copied();
                        ctx.warn(&lp, at, "root partition cannot expand; it is set to fill available space but is followed by an auto-positioned partition");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_modes() {
        assert!(super::decimal_mode(644, false));
        assert!(super::decimal_mode(600, false));
        assert!(!super::decimal_mode(420, false));
        assert!(!super::decimal_mode(0o644, false));
        assert!(super::decimal_mode(755, true));
    }
}
