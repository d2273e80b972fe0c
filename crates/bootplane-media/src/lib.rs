//! Boot media for machines that cannot network-boot: one hybrid image that boots from an
//! optical drive and from a USB stick, on BIOS and on UEFI (what `grub-mkrescue` makes,
//! with the Secure Boot loaders instead of an unsigned GRUB). This crate owns the image's
//! layout and its assembly; what the loaders run comes from `bootplane_core::media`.
//!
//! - BIOS: GRUB's El Torito image (`grub-mkimage -O i386-pc-eltorito`, and GRUB's hybrid
//!   MBR for USB) starts `ipxe.lkrn` with the bootplane script as its initrd.
//! - UEFI: an EFI system partition (FAT, written here with the `fatfs` crate) holding the
//!   Microsoft-signed shim as `EFI/BOOT/BOOTX64.EFI`, Debian's signed network GRUB beside
//!   it, and the GRUB config in `/grub`; also the image's El Torito EFI entry.
//!
//! ISO 9660 with El Torito and the hybrid partition tables is written by Debian's
//! `xorriso` (no sound Rust crate writes bootable hybrid ISOs), GRUB's BIOS core by
//! `grub-mkimage`; both are run with argument vectors, never a shell.

pub mod live;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files the image is made of, from Debian's packages by default.
#[derive(Clone, Debug)]
pub struct Sources {
    /// iPXE as a Linux-style kernel (`ipxe`): runs an initrd script, all NIC drivers.
    pub ipxe_lkrn: PathBuf,
    /// Microsoft-signed shim (`shim-signed`).
    pub shim: PathBuf,
    /// Its MokManager, which shim starts when asked to (`shim-signed`).
    pub mokmanager: PathBuf,
    /// Debian-signed network GRUB (`grub-efi-amd64-signed`): `efinet`, `net_bootp` and
    /// `tftp` built in (the signed disk GRUB, `grubx64.efi`, has the network stack but no
    /// `tftp`: tried); booted from a disk it reads `/grub/grub.cfg` there.
    pub grub_efi: PathBuf,
    /// GRUB's BIOS modules (`grub-pc-bin`).
    pub grub_pc: PathBuf,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            ipxe_lkrn: "/usr/lib/ipxe/ipxe.lkrn".into(),
            shim: "/usr/lib/shim/shimx64.efi.signed".into(),
            mokmanager: "/usr/lib/shim/mmx64.efi.signed".into(),
            grub_efi: "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed".into(),
            grub_pc: "/usr/lib/grub/i386-pc".into(),
        }
    }
}

impl Sources {
    /// Each missing file with the Debian package that ships it.
    pub fn missing(&self) -> Vec<String> {
        let need = [
            (&self.ipxe_lkrn, "ipxe"),
            (&self.shim, "shim-signed"),
            (&self.mokmanager, "shim-signed"),
            (&self.grub_efi, "grub-efi-amd64-signed"),
            (&self.grub_pc.join("boot_hybrid.img"), "grub-pc-bin"),
        ];
        need.iter().filter(|(p, _)| !p.exists()).map(|(p, pkg)| format!("{} (apt install {pkg})", p.display())).collect()
    }
}

/// What the loaders run.
#[derive(Clone, Debug)]
pub struct Scripts {
    /// The iPXE script of the BIOS path.
    pub ipxe: String,
    /// The GRUB config of the UEFI path.
    pub grub_efi: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("missing boot files: {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{tool} failed ({status}): {stderr}; is it installed (apt install {package})?")]
    Tool { tool: &'static str, package: &'static str, status: String, stderr: String },
    #[error("live ISO: {0}")]
    Live(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MediaError {
    let what = what.into();
    move |source| MediaError::Io { what, source }
}

/// The GRUB config every path reads: UEFI GRUB runs the network config, BIOS GRUB hands
/// over to iPXE with the script as its initrd.
pub fn grub_cfg(scripts: &Scripts) -> String {
    format!(
        "# bootplane boot media\n\
         if [ \"$grub_platform\" = \"efi\" ]; then\n\
         {}\
         else\n\
         \x20 echo 'bootplane media: starting iPXE'\n\
         \x20 linux16 /boot/ipxe.lkrn\n\
         \x20 initrd16 /boot/bootplane.ipxe\n\
         \x20 boot\n\
         fi\n",
        scripts.grub_efi.lines().map(|l| format!("  {l}\n")).collect::<String>()
    )
}

/// The partition's FAT label, 11 bytes: `bootplane_core::grub::MEDIA_LABEL`, by which the
/// local-boot answer skips the stick.
const LABEL: [u8; 11] = *b"BPMEDIA    ";

/// Size of the EFI system partition image: the loaders (about 6 MiB) with room to spare.
const ESP_BYTES: u64 = 12 * 1024 * 1024;

/// Writes the EFI system partition image at `path`.
pub fn write_esp(path: &Path, sources: &Sources, cfg: &str) -> Result<(), MediaError> {
    let mut img = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).map_err(io(path.display().to_string()))?;
    img.set_len(ESP_BYTES).map_err(io("sizing the EFI partition image"))?;
    fatfs::format_volume(&mut img, fatfs::FormatVolumeOptions::new().volume_label(LABEL)).map_err(io("formatting the EFI partition"))?;
    let fs = fatfs::FileSystem::new(&mut img, fatfs::FsOptions::new()).map_err(io("opening the EFI partition"))?;
    let root = fs.root_dir();
    for d in ["EFI", "EFI/BOOT", "grub"] {
        root.create_dir(d).map_err(io(format!("EFI partition: {d}")))?;
    }
    let files: [(&str, Vec<u8>); 4] = [
        ("EFI/BOOT/BOOTX64.EFI", read(&sources.shim)?),
        ("EFI/BOOT/grubx64.efi", read(&sources.grub_efi)?),
        ("EFI/BOOT/mmx64.efi", read(&sources.mokmanager)?),
        // The network GRUB's prefix is `/grub` on the device it was loaded from.
        ("grub/grub.cfg", cfg.as_bytes().to_vec()),
    ];
    for (name, data) in files {
        let mut f = root.create_file(name).map_err(io(format!("EFI partition: {name}")))?;
        f.truncate().map_err(io(format!("EFI partition: {name}")))?;
        f.write_all(&data).map_err(io(format!("EFI partition: {name} (is the partition too small?)")))?;
    }
    drop(root);
    fs.unmount().map_err(io("closing the EFI partition"))?;
    Ok(())
}

fn read(p: &Path) -> Result<Vec<u8>, MediaError> {
    std::fs::read(p).map_err(io(p.display().to_string()))
}

fn run(tool: &'static str, package: &'static str, cmd: &mut Command) -> Result<(), MediaError> {
    let out = cmd.output().map_err(|e| MediaError::Tool { tool, package, status: "not started".into(), stderr: e.to_string() })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" / ");
    Err(MediaError::Tool { tool, package, status: out.status.to_string(), stderr })
}

/// Builds the hybrid image at `out` (replaced if it exists: the caller decides whether it
/// may be), staging in `work`.
pub fn build(scripts: &Scripts, sources: &Sources, work: &Path, out: &Path) -> Result<(), MediaError> {
    let missing = sources.missing();
    if !missing.is_empty() {
        return Err(MediaError::Missing(missing));
    }
    let tree = work.join("tree");
    let grub_dir = tree.join("boot/grub/i386-pc");
    std::fs::create_dir_all(&grub_dir).map_err(io(grub_dir.display().to_string()))?;
    let cfg = grub_cfg(scripts);
    std::fs::write(tree.join("boot/grub/grub.cfg"), &cfg).map_err(io("grub.cfg"))?;
    std::fs::write(tree.join("boot/bootplane.ipxe"), &scripts.ipxe).map_err(io("bootplane.ipxe"))?;
    std::fs::copy(&sources.ipxe_lkrn, tree.join("boot/ipxe.lkrn")).map_err(io(sources.ipxe_lkrn.display().to_string()))?;
    write_esp(&tree.join("efi.img"), sources, &cfg)?;
    run(
        "grub-mkimage",
        "grub-pc-bin",
        Command::new("grub-mkimage")
            .arg("--directory")
            .arg(&sources.grub_pc)
            .args(["-O", "i386-pc-eltorito", "-p", "/boot/grub", "-o"])
            .arg(grub_dir.join("eltorito.img"))
            .args(["biosdisk", "iso9660", "part_msdos", "part_gpt", "normal", "configfile", "linux16", "echo", "test", "sleep"]),
    )?;
    let _ = std::fs::remove_file(out);
    // The layout grub-mkrescue gives xorriso: El Torito BIOS + EFI entries, GRUB's hybrid
    // MBR (BIOS from USB), the EFI image also as a GPT partition (UEFI from USB).
    run(
        "xorriso",
        "xorriso",
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-V", "BOOTPLANE", "-r", "-J"])
            .args(["-b", "boot/grub/i386-pc/eltorito.img", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "--grub2-boot-info"])
            .arg("--grub2-mbr")
            .arg(sources.grub_pc.join("boot_hybrid.img"))
            .args(["--efi-boot", "efi.img", "-efi-boot-part", "--efi-boot-image", "--protective-msdos-label", "-o"])
            .arg(out)
            .arg(&tree),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_efi_partition_holds_shim_grub_and_the_config() {
        let d = tempfile::tempdir().unwrap();
        for (n, size) in [("shim", 1000), ("grub", 3000), ("mm", 10)] {
            std::fs::write(d.path().join(n), vec![n.len() as u8; size]).unwrap();
        }
        let sources = Sources { shim: d.path().join("shim"), grub_efi: d.path().join("grub"), mokmanager: d.path().join("mm"), ..Default::default() };
        let img = d.path().join("esp.img");
        write_esp(&img, &sources, "echo hi\n").unwrap();
        // Read back with the same crate: the files firmware and shim look for.
        let mut f = std::fs::File::open(&img).unwrap();
        let fs = fatfs::FileSystem::new(&mut f, fatfs::FsOptions::new()).unwrap();
        let read = |p: &str| {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut fs.root_dir().open_file(p).unwrap(), &mut v).unwrap();
            v
        };
        assert_eq!(read("EFI/BOOT/BOOTX64.EFI"), vec![4u8; 1000]);
        assert_eq!(read("efi/boot/GRUBX64.EFI"), vec![4u8; 3000], "FAT names are case-insensitive");
        assert_eq!(read("grub/grub.cfg"), b"echo hi\n");
    }

    #[test]
    fn the_grub_config_branches_by_platform() {
        let c = grub_cfg(&Scripts { ipxe: String::new(), grub_efi: "net_bootp\nconfigfile x\n".into() });
        assert!(c.contains("if [ \"$grub_platform\" = \"efi\" ]; then\n  net_bootp\n  configfile x\nelse\n"), "{c}");
        assert!(c.contains("linux16 /boot/ipxe.lkrn\n  initrd16 /boot/bootplane.ipxe\n"), "{c}");
    }

    #[test]
    fn missing_files_name_their_package() {
        let s = Sources { shim: "/nonexistent/shim".into(), ..Default::default() };
        assert!(s.missing().iter().any(|m| m.contains("/nonexistent/shim (apt install shim-signed)")));
        let e = build(&Scripts { ipxe: String::new(), grub_efi: String::new() }, &s, Path::new("/nonexistent"), Path::new("/nonexistent/out")).unwrap_err();
        assert!(e.to_string().contains("apt install shim-signed"), "{e}");
    }
}
