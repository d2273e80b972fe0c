use super::runtime;
use bootplane_dhcp::probe::Probe;
use clap::Subcommand;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum DhcpCmd {
    /// Send a DHCP DISCOVER on INTERFACE as a boot client would, and print every answer
    /// as it arrives (one JSON object per line). Needs root.
    Probe {
        #[arg(long)]
        interface: String,
        /// Option 60, e.g. `PXEClient:Arch:00000:UNDI:002001` or `HTTPClient:Arch:00016`.
        #[arg(long)]
        vendor_class: Option<String>,
        /// Option 93: 0 BIOS, 7/9 UEFI x64, 11 UEFI ARM64, 16 UEFI HTTP x64.
        #[arg(long)]
        arch: Option<u16>,
        /// Send user class `iPXE`.
        #[arg(long)]
        ipxe: bool,
        /// Seconds to collect answers for, per step.
        #[arg(long, default_value_t = 3)]
        wait: u64,
        /// Also REQUEST the first offer that carries an address.
        #[arg(long)]
        request: bool,
        /// Instead of DISCOVER: send the PXE request to this boot server's port 4011.
        #[arg(long, requires = "client_ip")]
        pxe_server: Option<Ipv4Addr>,
        /// The address this client already holds (for --pxe-server).
        #[arg(long)]
        client_ip: Option<Ipv4Addr>,
    },
}

pub fn run(cmd: DhcpCmd) -> anyhow::Result<ExitCode> {
    let DhcpCmd::Probe { interface, vendor_class, arch, ipxe, wait, request, pxe_server, client_ip } = cmd;
    let probe = Probe { interface, vendor_class, arch, ipxe, wait: Duration::from_secs(wait) };
    // One JSON line per answer as it arrives, so a watcher sees who answered when.
    let mut print = |a: &bootplane_dhcp::probe::Answer| {
        use std::io::Write;
        if let Ok(line) = serde_json::to_string(a) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|_| out.flush());
        }
    };
    let answers = runtime()?.block_on(async {
        match (pxe_server, client_ip) {
            (Some(server), Some(client)) => probe.pxe_request(server, client, &mut print).await,
            _ => probe.run(request, &mut print).await,
        }
    })?;
    Ok(if answers.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
