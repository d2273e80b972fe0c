//! The Secure Boot chain: Microsoft-signed shim, then the distribution-signed network
//! GRUB, then a signed kernel (the way MAAS boots Secure Boot machines). iPXE is not
//! signed by Microsoft, so firmware with Secure Boot on refuses it; shim is, and shim
//! checks GRUB and GRUB (through shim) the kernel against the distribution's key.
//!
//! This module owns which machines take that chain ([`Loader`], [`effective`]) and the
//! GRUB configs: the entry config every GRUB reads first (`grub/grub.cfg` under its
//! prefix), which asks for `bootplane/grub/<mac>/<uuid>`, and the per-machine config
//! rendered from the same [`BootDecision`] as iPXE and PXELINUX.
//!
//! What GRUB can do, measured on Debian 12's signed `grubnetx64.efi` (2.06-13): it has
//! `tftp` but no `http` module, and under Secure Boot it loads no module from outside its
//! image; so the kernel and initrd come over TFTP (bootplane's TFTP serves bundle files
//! under `artifacts/<bundle>/<role>`), and an artifact only reachable by its own URL
//! cannot be installed through this chain. Identity: `$net_default_mac` and the SMBIOS
//! UUID (`smbios --get-uuid`); the serial number is left out because GRUB cannot escape
//! it into a file name. Local boot chainloads the first EFI loader found on a local disk
//! (the removable path, then the distributions' shims; shim verifies it; boot media are
//! skipped): GRUB 2.06's
//! `exit` always returns success, which ends the firmware's boot order walk in its setup
//! menu (seen in the Secure Boot e2e run), so leaving GRUB cannot mean "try the disk".

use crate::decision::BootDecision;
use crate::identity::{Mac, Observed, SmbiosUuid};
use crate::model::{Bundle, MachineSpec};

// The loader kinds and shim/GRUB file names are the data model's (machines and bundles
// name them); re-exported here where the chain is rendered.
pub use crate::model::{Loader, GRUB_FILE, SHIM_FILE};

/// Where the per-machine configs live, under the TFTP root.
pub const CONFIG_DIR: &str = "bootplane/grub";

/// The machine's setting, else its bundle's, else the site's (`dhcp.loader`).
pub fn effective(machine: Option<&MachineSpec>, bundle: Option<&Bundle>, site: Loader) -> Loader {
    machine.and_then(|m| m.loader).or(bundle.and_then(|b| b.loader)).unwrap_or(site)
}

/// The TFTP name of the shim a machine of the shim chain boots (`None`: iPXE): its
/// bundle's own (`artifacts/BUNDLE@REV/shimx64.efi`, with the bundle's GRUB beside it,
/// where shim looks) when the bundle has one, which a Secure Boot site needs for an OS
/// whose kernels another vendor signs (Fedora's for FCOS); else the site's
/// ([`SHIM_FILE`], `tftp.shim`).
pub fn shim_file(machine: Option<&MachineSpec>, bundle: Option<&Bundle>, site: Loader) -> Option<String> {
    if effective(machine, bundle, site) != Loader::Shim {
        return None;
    }
    Some(match bundle.filter(|b| b.shim.is_some()) {
        Some(b) => format!("artifacts/{}/{SHIM_FILE}", b.pinned_name()),
        None => SHIM_FILE.to_string(),
    })
}

/// The config GRUB reads from its prefix: collects what identifies the machine and asks
/// for its own config. Served for `grub/grub.cfg` and `grub/x86_64-efi/grub.cfg` (the
/// signed image's built-in config tries the second, then the first).
pub fn entry_config() -> String {
    format!(
        "# bootplane entry config: ask the server what this machine should boot.\n\
         set timeout=0\n\
         set bootplane_uuid=\n\
         smbios --type 1 --get-uuid 8 --set bootplane_uuid\n\
         echo \"bootplane: asking for ${{net_default_mac}} ${{bootplane_uuid}}\"\n\
         configfile \"($root)/{CONFIG_DIR}/${{net_default_mac}}/${{bootplane_uuid}}\"\n\
         echo 'bootplane: no answer from the server; booting local disk'\n\
         sleep 5\n\
         exit 1\n"
    )
}

/// Reads `bootplane/grub/<mac>[/<uuid>]` (already relative to the TFTP root). `None`:
/// not such a name, or a MAC that does not parse.
pub fn parse(rel: &str) -> Option<Observed> {
    let rest = rel.strip_prefix(CONFIG_DIR)?.strip_prefix('/')?;
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let mac: Mac = parts.next()?.parse().ok()?;
    let uuid = match parts.next() {
        Some(u) => Some(u.parse::<SmbiosUuid>().ok()?).filter(|u| !u.is_placeholder()),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Observed { mac: Some(mac), uuid, arch: Some("x86_64".into()), platform: Some("efi".into()), ..Default::default() })
}

/// A string GRUB's script parser takes literally: single-quoted, with `'` closed,
/// escaped and reopened (GRUB quotes as sh does).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A message for `echo`: printable ASCII only, quoted.
fn message(s: &str) -> String {
    let clean: String = s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(200).collect();
    quote(&format!("bootplane: {clean}"))
}

/// The TFTP path GRUB loads `url` from: bundle files bootplane serves, by the name its
/// TFTP server gives them. `None` for a file only reachable by its own URL.
fn tftp_path(url: &str, server: &str) -> Option<String> {
    let path = url.strip_prefix(server)?;
    path.starts_with("/artifacts/").then(|| format!("($root){path}"))
}

/// Loaders tried on local disks, in order: the removable path (Fedora CoreOS and Flatcar
/// install one), then the distributions' own shims.
const LOCAL_LOADERS: &[&str] =
    &["/EFI/BOOT/BOOTX64.EFI", "/EFI/fedora/shimx64.efi", "/EFI/debian/shimx64.efi", "/EFI/ubuntu/shimx64.efi", "/EFI/redhat/shimx64.efi"];

/// The FAT label of bootplane's boot media (`bootplane media`): the local answer never
/// chainloads the stick it was booted from, which also carries the removable-path loader.
pub const MEDIA_LABEL: &str = "BPMEDIA";

/// Boots the local disk: chainloads the first EFI loader on a disk's partition (disks and
/// partitions in order, GPT or MBR, then an unpartitioned disk), skipping boot media, else says so and leaves GRUB.
/// GRUB's `search` returns only the first match, which would be the media's own loader
/// when the stick sorts first; hence the explicit walk.
fn local_tail() -> String {
    format!(
        "set bootplane_esp=\n\
         set bootplane_skip=\n\
         search --no-floppy --label --set=bootplane_skip {MEDIA_LABEL}\n\
         regexp --set=1:bootplane_skip '^([^,]*)' \"$bootplane_skip\"\n\
         for d in hd0 hd1 hd2 hd3 hd4 hd5 hd6 hd7; do\n\
         \x20 if [ \"$d\" = \"$bootplane_skip\" ]; then continue; fi\n\
         \x20 for p in gpt1 gpt2 gpt3 gpt4 msdos1 msdos2 msdos3 msdos4 disk; do\n\
         \x20   if [ \"$p\" = disk ]; then set bootplane_dev=\"$d\"; else set bootplane_dev=\"$d,$p\"; fi\n\
         \x20   for f in {}; do\n\
         \x20     if [ -z \"$bootplane_esp\" ]; then if [ -f \"($bootplane_dev)$f\" ]; then set bootplane_esp=\"$bootplane_dev\"; set bootplane_loader=\"$f\"; fi; fi\n\
         \x20   done\n\
         \x20 done\n\
         done\n\
         if [ -n \"$bootplane_esp\" ]; then\n\
         \x20 echo \"bootplane: starting $bootplane_loader on $bootplane_esp\"\n\
         \x20 set root=\"$bootplane_esp\"\n\
         \x20 chainloader \"$bootplane_loader\"\n\
         \x20 boot\n\
         fi\n\
         echo 'bootplane: no EFI loader found on a local disk'\n\
         sleep 5\n\
         exit 1\n",
        LOCAL_LOADERS.join(" ")
    )
}

/// The per-machine config for a decision. `server` is the advertise URL the decision's
/// URLs start with.
pub fn render(decision: &BootDecision, observed: &Observed, server: &str) -> String {
    let mut s = String::from("# bootplane\n");
    match decision {
        BootDecision::Install { machine, bundle, plan } => {
            let files: Option<Vec<String>> = std::iter::once(&plan.kernel_url)
                .chain(plan.initrds.iter().map(|(_, u)| u))
                .map(|u| tftp_path(u, server))
                .collect();
            let Some(files) = files else {
                s += &format!("echo {}\n", message(&format!(
                    "cannot install {machine}: bundle {bundle} has files bootplane does not serve itself, and GRUB loads only over TFTP; give them a sha256 so bootplane keeps them, or use loader: ipxe"
                )));
                s += "sleep 10\n";
                s += &local_tail();
                return s;
            };
            s += &format!("echo {}\n", message(&format!("installing {machine} from bundle {bundle}")));
            let args: String = plan.args.split_whitespace().map(|a| format!(" {}", quote(a))).collect();
            s += &format!("linux {}{args}\n", files[0]);
            s += &format!("initrd {}\n", files[1..].join(" "));
            s += "boot\n";
        }
        BootDecision::LocalBoot { machine, state } => {
            let why = crate::decision::local_boot_note(*state);
            s += &format!("echo {}\n", message(&format!("{machine} is {state}{why}: booting local disk")));
            s += &local_tail();
        }
        BootDecision::Quarantine { reason } => {
            s += &format!("echo {}\n", message(&format!("QUARANTINE: {reason}")));
            s += &format!(
                "echo {}\n",
                message(&format!(
                    "observed mac={} uuid={}",
                    observed.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                    observed.uuid.as_ref().map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
                ))
            );
            s += &format!("echo {}\n", message("no installer is served to this machine; booting local disk"));
            s += "sleep 5\n";
            s += &local_tail();
        }
        BootDecision::Misconfigured { machine, reason } => {
            s += &format!("echo {}\n", message(&format!("cannot install {machine}: {reason}")));
            s += "sleep 5\n";
            s += &local_tail();
        }
        BootDecision::AttemptsExhausted { machine, attempts } => {
            s += &format!("echo {}\n", message(&format!("{machine} used {attempts} install attempts without reporting; marked failed")));
            s += &local_tail();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_with_its_own_shim_boots_it() {
        let m = MachineSpec { name: "m".into(), loader: Some(Loader::Shim), ..Default::default() };
        let mut b = Bundle::new("fcos", crate::OsKind::Fcos, "x86_64");
        b.revision = 3;
        assert_eq!(shim_file(Some(&m), Some(&b), Loader::Ipxe).as_deref(), Some("shimx64.efi"), "the site's");
        b.shim = Some(crate::model::Artifact { sha256: Some("a".repeat(64)), ..Default::default() });
        assert_eq!(shim_file(Some(&m), Some(&b), Loader::Ipxe).as_deref(), Some("artifacts/fcos@3/shimx64.efi"));
        assert_eq!(b.artifact("shimx64.efi"), b.shim.as_ref(), "served under the name firmware asks for");
        let ipxe = MachineSpec { loader: Some(Loader::Ipxe), ..m.clone() };
        assert_eq!(shim_file(Some(&ipxe), Some(&b), Loader::Shim), None);
        assert_eq!(shim_file(None, None, Loader::Shim).as_deref(), Some("shimx64.efi"));
    }
    use crate::state::MachineState;
    use crate::os::InstallerPlan;

    fn install(kernel: &str) -> BootDecision {
        BootDecision::Install {
            machine: "sb1".into(),
            bundle: "os".into(),
            plan: InstallerPlan {
                kernel_url: kernel.into(),
                initrds: vec![("initrd".into(), "http://bp:8080/artifacts/os@2/initrd".into())],
                args: "console=ttyS0 cfg=http://bp:8080/v1/machines/sb1/ignition?nonce=ab&x=1 it's $x".into(),
            },
        }
    }

    #[test]
    fn install_loads_bundle_files_over_tftp_with_args_taken_literally() {
        let c = render(&install("http://bp:8080/artifacts/os@2/kernel"), &Observed::default(), "http://bp:8080");
        assert!(c.contains("linux ($root)/artifacts/os@2/kernel 'console=ttyS0' 'cfg=http://bp:8080/v1/machines/sb1/ignition?nonce=ab&x=1' 'it'\\''s' '$x'\n"), "{c}");
        assert!(c.contains("initrd ($root)/artifacts/os@2/initrd\nboot\n"), "{c}");
    }

    #[test]
    fn install_from_a_foreign_url_is_refused_in_words() {
        let c = render(&install("http://mirror.example/vmlinuz"), &Observed::default(), "http://bp:8080");
        assert!(!c.contains("linux "), "{c}");
        assert!(c.contains("GRUB loads only over TFTP") && c.ends_with("exit 1\n"), "{c}");
    }

    #[test]
    fn every_other_decision_leaves_grub_with_a_failure_status() {
        let obs = Observed { mac: Some("52:54:00:00:00:01".parse().unwrap()), ..Default::default() };
        for d in [
            BootDecision::LocalBoot { machine: "m".into(), state: MachineState::Installed },
            BootDecision::Quarantine { reason: "machine is not in the inventory; `x` $(reboot)".into() },
            BootDecision::Misconfigured { machine: "m".into(), reason: "no bundle".into() },
            BootDecision::AttemptsExhausted { machine: "m".into(), attempts: 3 },
        ] {
            let c = render(&d, &obs, "http://bp:8080");
            assert!(c.ends_with("exit 1\n") && !c.contains("linux"), "{c}");
            // GRUB 2.06 builds the loaded image's device path from `root`, not from the
            // file's device: root must be the ESP (else the disk's loader finds nothing).
            assert!(c.contains("set root=\"$bootplane_esp\"\n  chainloader \"$bootplane_loader\""), "{c}");
            // Observed text is quoted: no expansion, no command substitution.
            for line in c.lines().filter(|l| l.starts_with("echo ")) {
                assert!(line.starts_with("echo '") && line.ends_with('\''), "{line}");
            }
        }
    }

    #[test]
    fn config_names_carry_mac_and_uuid() {
        let o = parse("bootplane/grub/52:54:00:00:00:01/4c4c4544-0000-1000-8000-000000000001").unwrap();
        assert_eq!(o.mac.unwrap().to_string(), "52:54:00:00:00:01");
        assert!(o.uuid.is_some());
        assert_eq!(o.arch.as_deref(), Some("x86_64"));
        // GRUB without an SMBIOS UUID: empty or all-zero.
        assert!(parse("bootplane/grub/52:54:00:00:00:01").unwrap().uuid.is_none());
        assert!(parse("bootplane/grub/52:54:00:00:00:01/00000000-0000-0000-0000-000000000000").unwrap().uuid.is_none());
        for bad in ["bootplane/grub/", "bootplane/grub/zz", "bootplane/grub/52:54:00:00:00:01/nope", "bootplane/grub/52:54:00:00:00:01/a/b", "grub/grub.cfg"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn loader_precedence_machine_then_bundle_then_site() {
        let mut m = MachineSpec { name: "m".into(), ..Default::default() };
        let mut b = Bundle::new("b", crate::model::OsKind::Generic, "x86_64");
        assert_eq!(effective(Some(&m), Some(&b), Loader::Ipxe), Loader::Ipxe);
        assert_eq!(effective(Some(&m), Some(&b), Loader::Shim), Loader::Shim);
        b.loader = Some(Loader::Shim);
        assert_eq!(effective(Some(&m), Some(&b), Loader::Ipxe), Loader::Shim);
        m.loader = Some(Loader::Ipxe);
        assert_eq!(effective(Some(&m), Some(&b), Loader::Shim), Loader::Ipxe);
        assert_eq!(effective(None, None, Loader::Shim), Loader::Shim);
    }
}
