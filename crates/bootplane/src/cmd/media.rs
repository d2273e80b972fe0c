//! `bootplane media`: boot media for a machine that cannot network-boot. The scripts come
//! from `bootplane_core::media`, the image from `bootplane_media`; this module resolves
//! the machine, the server's address and the network settings from the config file (and,
//! for a live ISO, the bundle's ISO from the content store and the site CA from the data
//! directory).

use anyhow::{bail, Context};
use bootplane_config::Config;
use bootplane_core::media::{self, MediaIdentity, MediaNet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// To write to a USB stick (`dd`).
    Usb,
    /// To burn or attach as a CD/DVD (virtual media on a BMC).
    Iso,
    /// fcos: the bundle's own live ISO with the machine's live Ignition embedded (also a
    /// USB image); it asks bootplane before it installs. Needs NAME.
    LiveIso,
}

#[derive(clap::Args, Debug)]
pub struct MediaArgs {
    /// The machine the media are for: they then identify as it (its MAC and UUID). Without
    /// it, any machine can boot them and is identified by what its firmware reports.
    pub name: Option<String>,
    /// `usb` and `iso` are the same hybrid image (BIOS and UEFI, optical and USB); the
    /// format says what it is meant for. `live-iso` is the fcos bundle's own live ISO with
    /// the machine's live Ignition embedded (a build with the `live-iso` feature).
    #[arg(long, value_enum)]
    pub format: Format,
    /// Where to write the image.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// The config that names the server and the machines.
    #[arg(long, short, default_value = "bootplane.yaml")]
    pub config: PathBuf,
    /// A static address instead of DHCP, as ADDRESS/PREFIX (for a LAN whose DHCP cannot be
    /// used). Without it, `--static` takes the machine's own (`network`, or `ip` with
    /// `dhcp.netmask`).
    #[arg(long, value_name = "ADDRESS/PREFIX")]
    pub ip: Option<String>,
    /// Use the machine's static address (needs NAME).
    #[arg(long = "static")]
    pub use_static: bool,
    #[arg(long)]
    pub gateway: Option<Ipv4Addr>,
    #[arg(long)]
    pub dns: Option<Ipv4Addr>,
    /// live-iso: the distribution's live ISO to start from. Default: the bundle's
    /// `live_iso` file from the content store.
    #[arg(long, value_name = "PATH")]
    pub iso: Option<PathBuf>,
    #[command(flatten)]
    pub store: crate::StoreArgs,
}

/// How the media reach the network, as the summary line says it.
fn describe(net: &MediaNet) -> String {
    match net {
        MediaNet::Dhcp => "DHCP".to_string(),
        MediaNet::Static { ip, prefix, .. } => format!("static {ip}/{prefix}"),
    }
}

fn parse_cidr(s: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/').with_context(|| format!("--ip {s}: expected ADDRESS/PREFIX, e.g. 10.0.0.20/24"))?;
    let ip: Ipv4Addr = ip.parse().with_context(|| format!("--ip {s}: `{ip}` is not an IPv4 address"))?;
    let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p)).with_context(|| format!("--ip {s}: prefix must be 1 to 32"))?;
    Ok((ip, prefix))
}

fn prefix_of(mask: Ipv4Addr) -> u8 {
    u32::from(mask).count_ones() as u8
}

pub fn run(a: MediaArgs) -> anyhow::Result<ExitCode> {
    if a.output.exists() && !a.force {
        bail!("{} exists; pass --force to replace it", a.output.display());
    }
    let cfg = Config::load(&a.config)?;
    let server = cfg
        .server
        .advertise_url()
        .with_context(|| format!("{}: set server.advertise: the media must know where to reach bootplane", a.config.display()))?;
    let machine = match &a.name {
        Some(n) => {
            let m = cfg.machine(n).with_context(|| format!("{}: no machine named `{n}`", a.config.display()))?;
            if m.bundle.is_none() {
                bail!("machine {n} has no bundle: the media would bring it to a server with nothing to install; set its `bundle`");
            }
            Some(m)
        }
        None => None,
    };
    let net = match (&a.ip, a.use_static) {
        (Some(cidr), _) => {
            let (ip, prefix) = parse_cidr(cidr)?;
            MediaNet::Static { ip, prefix, gateway: a.gateway, dns: a.dns }
        }
        (None, true) => {
            let m = machine.context("--static takes the machine's own address: name the machine (or give --ip)")?;
            match bootplane_core::network::of(m)? {
                Some(st) => MediaNet::Static { ip: st.address, prefix: st.prefix, gateway: a.gateway.or(st.gateway), dns: a.dns.or(st.dns.first().copied()) },
                None => {
                    let ip = m.ip.with_context(|| format!("machine {} has no `ip`; give --ip ADDRESS/PREFIX", m.name))?;
                    let mask = cfg.dhcp.netmask.with_context(|| format!("machine {} has an ip but no prefix is known: set dhcp.netmask or give --ip", m.name))?;
                    MediaNet::Static { ip, prefix: prefix_of(mask), gateway: a.gateway.or(cfg.dhcp.router), dns: a.dns.or(cfg.dhcp.dns.first().copied()) }
                }
            }
        }
        (None, false) => MediaNet::Dhcp,
    };
    let who = machine.map(|m| MediaIdentity { mac: m.macs.first().copied(), uuid: m.uuid.clone() });
    if a.format == Format::LiveIso {
        let m = machine.context("--format live-iso embeds one machine's config: name the machine")?;
        return live_iso(&a, &cfg, m, &server, &net, who.as_ref().expect("named"));
    }
    let host = server.split("://").nth(1).unwrap_or("").split(['/', ':']).next().unwrap_or("");
    let tftp_server: Ipv4Addr = host.parse().with_context(|| {
        format!("server.advertise {server}: the UEFI path reaches bootplane over GRUB's TFTP, which needs an IPv4 address, not `{host}`")
    })?;
    if !cfg.tftp.enabled || cfg.tftp.listen.port() != 69 {
        eprintln!("warning: the UEFI path needs bootplane's TFTP on port 69 (tftp.enabled: true, tftp.listen port 69)");
    }
    let scripts = bootplane_media::Scripts {
        ipxe: media::ipxe_script(&server, &net, who.as_ref()),
        grub_efi: media::grub_config(tftp_server, &net, who.as_ref()),
    };
    let work = tempfile::tempdir().context("a temporary directory")?;
    bootplane_media::build(&scripts, &bootplane_media::Sources::default(), work.path(), &a.output)?;
    let size = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    let how = describe(&net);
    let what = match a.format {
        Format::Usb => "write it with: dd if=IMAGE of=/dev/sdX bs=4M conv=fsync",
        Format::Iso | Format::LiveIso => "attach it as a CD (or a BMC's virtual media)",
    };
    println!(
        "{}: {} MiB, BIOS and UEFI (Secure Boot too), {how}, server {server}{}; {what}",
        a.output.display(),
        size / (1024 * 1024),
        a.name.as_deref().map(|n| format!(", identifies as {n}")).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--format live-iso`: the bundle's live ISO with `m`'s live Ignition embedded.
fn live_iso(a: &MediaArgs, cfg: &Config, m: &bootplane_core::model::MachineSpec, server: &str, net: &MediaNet, who: &MediaIdentity) -> anyhow::Result<ExitCode> {
    let bundle_name = m.bundle.as_deref().unwrap_or_default();
    let bundle = cfg.bundle(bundle_name);
    if let Some(b) = bundle.filter(|b| b.os != bootplane_core::model::OsKind::Fcos) {
        bail!("bundle {} is {}: a live ISO with an embedded Ignition is Fedora CoreOS's (os: fcos)", b.name, b.os.as_str());
    }
    if m.install_disk.is_none() {
        bail!("machine {} has no `install_disk`: the live ISO's installer must know which disk to write", m.name);
    }
    let dir = super::data_dir(&a.store, cfg, Some(&a.config));
    let base = match &a.iso {
        Some(p) => p.clone(),
        None => {
            let art = bundle.and_then(|b| b.live_iso.as_ref()).with_context(|| {
                format!("bundle {bundle_name} has no `live_iso` in {}: add the ISO (url + sha256) to the bundle, or give --iso PATH", a.config.display())
            })?;
            let sha = art.sha256.as_deref().with_context(|| format!("bundle {bundle_name}'s live_iso has no sha256: bootplane keeps only checked copies; add it, or give --iso PATH"))?;
            bootplane_artifacts::ContentStore::new(&dir).path(sha).filter(|p| p.is_file()).with_context(|| {
                format!("bundle {bundle_name}'s live_iso is not in the content store under {} yet (`serve` copies it in the background): wait, or give --iso PATH", dir.display())
            })?
        }
    };
    if !base.is_file() {
        bail!("{}: no such ISO", base.display());
    }
    let ca = std::fs::read_to_string(dir.join("tls/ca.crt")).ok();
    let ign = media::live_ignition(m, server, ca.as_deref(), net, who);
    let report = bootplane_butane::ignition::validate(&ign.to_string());
    if let Some(e) = report.iter().find(|e| e.level == bootplane_butane::Level::Error) {
        bail!("the live Ignition bootplane built does not validate ({e}): please report this");
    }
    if a.force && a.output.exists() {
        std::fs::remove_file(&a.output).with_context(|| format!("removing {}", a.output.display()))?;
    }
    bootplane_media::live::embed_ignition(&base, ign.to_string().as_bytes(), &a.output)?;
    let size = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    let how = describe(net);
    println!(
        "{}: {} MiB, {} with {}'s live Ignition ({how}, server {server}); it installs only when bootplane says so. \
         Attach it as a CD or write it to a USB stick (dd if=IMAGE of=/dev/sdX bs=4M conv=fsync)",
        a.output.display(),
        size / (1024 * 1024),
        base.display(),
        m.name
    );
    Ok(ExitCode::SUCCESS)
}
