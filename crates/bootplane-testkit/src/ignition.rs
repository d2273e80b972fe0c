//! Runs the real Ignition (Debian's `ignition` package) on a config: the
//! `fetch-offline` and `files` stages into a temporary root that has the minimum Ignition
//! expects (passwd/group/shadow files, an SELinux config saying "disabled").

use std::path::{Path, PathBuf};
use std::process::Command;

pub const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

/// Creates `dir/root` and applies `config` to it; panics with Ignition's log on failure.
pub fn apply(dir: &Path, config: &str) -> PathBuf {
    let root = dir.join("root");
    for d in ["etc/selinux", "usr/share/zoneinfo", "home", "usr/local/bin", "opt/bin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nwheel:x:10:\n").unwrap();
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(root.join("etc/gshadow"), "root:::\nwheel:::\n").unwrap();
    // Ignition relabels what it wrote when the root says SELinux is there; a temporary
    // root has no policy to relabel with.
    std::fs::write(root.join("etc/selinux/config"), "SELINUX=disabled\nSELINUXTYPE=targeted\n").unwrap();
    let cfg = dir.join("config.ign");
    std::fs::write(&cfg, config).unwrap();
    // Debian's Ignition still calls `setfiles`, with the root's policy, which does not
    // exist here: a no-op `setfiles` is the only stand-in; everything else is the real thing.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("setfiles"), "#!/bin/sh\ncat >/dev/null\nexit 0\n").unwrap();
    std::fs::set_permissions(bin.join("setfiles"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for stage in ["fetch-offline", "files"] {
        let o = Command::new(IGNITION)
            .env("IGNITION_CONFIG_FILE", &cfg)
            .env("PATH", &path)
            .args(["-platform", "file", "-stage", stage, "-log-to-stdout", "-root"])
            .arg(&root)
            .arg("-config-cache")
            .arg(dir.join("cache.json"))
            .arg("-state-file")
            .arg(dir.join("state"))
            .output()
            .expect("Ignition binary (apt-get install ignition)");
        assert!(o.status.success(), "ignition {stage}: {}", String::from_utf8_lossy(&o.stdout));
    }
    root
}
