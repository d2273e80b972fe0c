//! DHCP inside `bootplane serve`: the store behind the lease pool, machines' `ip` as
//! reservations and their hostnames in replies, and a `dhcp.*` event per exchange tied
//! to the machine owning the MAC (or to the MAC alone when it is unknown).

use crate::Shared;
use bootplane_config::{DhcpMode, DhcpSettings};
use bootplane_core::model::{discovered_name, Lease};
use bootplane_core::grub::{self, Loader};
use bootplane_core::{Bundle, Mac, MachineState, Observed};
use bootplane_dhcp::server::{interface_addr, Backend, DhcpEvent, DhcpHandle, DhcpServer, KnownMachine};
use std::collections::HashMap;
use bootplane_dhcp::{BootFiles, Mode, Settings};
use bootplane_store::{BatchItem, NewEvent};
use std::net::Ipv4Addr;

/// Runs on the DHCP thread: async store calls go through the runtime's handle; leases
/// and their events are committed together through the store's blocking lease writer
/// when it has one.
struct StoreBackend {
    state: Shared,
    runtime: tokio::runtime::Handle,
    writer: Option<bootplane_store::LeaseWriter>,
    site_loader: Loader,
    /// Seconds, for how long a binding vouches for its address.
    lease_time: i64,
    /// What DHCP packets from unknown MACs may write: any host can send them with any
    /// MAC, so one budget covers them all ([`UNKNOWN_BUDGET_FACTOR`] times a source's).
    unknown: crate::gate::Gate,
}

/// How many sources' event budgets all unknown DHCP clients share: a rack of new
/// machines powering on is seen in full, a flood of made-up MACs is not.
const UNKNOWN_BUDGET_FACTOR: u32 = 30;

impl Backend for StoreBackend {
    fn load_leases(&mut self) -> Vec<Lease> {
        self.runtime.block_on(self.state.store.leases()).unwrap_or_else(|e| {
            tracing::error!("dhcp: cannot load leases: {e}");
            Vec::new()
        })
    }

    fn commit(&mut self, leases: &[Lease], events: Vec<DhcpEvent>) -> Result<Vec<Lease>, String> {
        let events = self.to_store(events);
        let refused = match &mut self.writer {
            Some(w) => {
                let refused = w(leases, &events).map_err(|e| e.to_string())?;
                // Live event streams wait on this rather than polling.
                self.state.sink.written.notify_waiters();
                refused
            }
            None => {
                let refused = match leases.is_empty() {
                    true => Vec::new(),
                    false => self.runtime.block_on(self.state.store.put_leases(leases)).map_err(|e| e.to_string())?,
                };
                // Never waits for room: a DHCP server stalled on its own log answers nobody.
                for e in events {
                    self.state.sink.try_push(BatchItem::Event(e));
                }
                refused
            }
        };
        for l in &refused {
            tracing::info!(ip = %l.ip, holder = %l.mac, "dhcp: address claimed by another instance; its offer is decided again");
        }
        Ok(refused)
    }

    fn shared(&self) -> bool {
        self.state.store.shares_leases()
    }

    fn answered(&mut self, events: &[DhcpEvent]) {
        let now = chrono::Utc::now().timestamp();
        for e in events {
            match (e.kind, e.ip) {
                ("dhcp.ack", Some(ip)) => self.state.handshakes.bound(e.mac, ip, now + self.lease_time),
                ("dhcp.proxy_offer" | "dhcp.proxy_ack", _) => self.state.handshakes.proxied(e.mac, now),
                _ => {}
            }
        }
    }

    fn machines(&mut self) -> HashMap<Mac, KnownMachine> {
        let machines = self.runtime.block_on(self.state.store.machines()).unwrap_or_default();
        let bundles: HashMap<String, Bundle> =
            self.runtime.block_on(self.state.store.bundles()).unwrap_or_default().into_iter().map(|b| (b.name.clone(), b)).collect();
        let mut out = HashMap::new();
        for m in machines.iter().filter(|m| m.state != MachineState::Discovered) {
            let retired = m.state == MachineState::Retired;
            for mac in &m.spec.macs {
                out.insert(
                    *mac,
                    KnownMachine {
                        name: m.spec.name.clone(),
                        hostname: m.spec.hostname.clone().unwrap_or_else(|| m.spec.name.clone()),
                        // A retired machine's address goes back to the pool.
                        ip: m.spec.ip.filter(|_| !retired),
                        shim: grub::shim_file(Some(&m.spec), m.spec.bundle.as_ref().and_then(|b| bundles.get(b)), self.site_loader),
                    },
                );
            }
        }
        out
    }
}

impl StoreBackend {
    fn to_store(&self, events: Vec<DhcpEvent>) -> Vec<NewEvent> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            if let (Some(ip), Some(m)) = (e.ip, &e.machine) {
                self.state.remember_ip(ip.into(), m);
            }
            let mut detail = e.detail;
            // A binding is kept whoever it is (the pool bounds them); the rest of what
            // unknown MACs cause is written within their shared budget.
            if e.machine.is_none() && e.kind != "dhcp.ack" {
                let all_unknown = Some(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                match self.unknown.admit(all_unknown, std::time::Instant::now()) {
                    None => {
                        self.state.metrics.events_suppressed.inc();
                        continue;
                    }
                    Some(n) if n > 0 => detail["suppressed_before"] = serde_json::json!(n),
                    Some(_) => {}
                }
            }
            detail["mac"] = serde_json::json!(e.mac);
            let name = e.machine.or_else(|| discovered_name(&Observed { mac: Some(e.mac), ..Default::default() }));
            out.push(NewEvent::new(name.as_deref(), e.kind, None, detail));
        }
        out
    }
}

/// Starts DHCP per `cfg` on its interface; returns the address it serves as and the
/// handle that stops it (call it at shutdown: it writes the events still pending).
pub async fn start(state: Shared, cfg: &DhcpSettings) -> anyhow::Result<Option<(Ipv4Addr, DhcpHandle)>> {
    let mode = match cfg.mode {
        DhcpMode::Off => return Ok(None),
        DhcpMode::Full => Mode::Full,
        DhcpMode::Proxy => Mode::Proxy,
    };
    let interface = cfg
        .interface
        .clone()
        .ok_or_else(|| anyhow::anyhow!("dhcp.interface is required when dhcp.mode is not off"))?;
    let (if_ip, if_mask) = interface_addr(&interface)?;
    let server_ip = cfg.server_ip.unwrap_or(if_ip);
    let netmask = cfg.netmask.unwrap_or(if_mask);
    let range = match (mode, cfg.range) {
        (_, Some(r)) => (r.first, r.last),
        (Mode::Proxy, None) => (server_ip, server_ip),
        (Mode::Full, None) => anyhow::bail!("dhcp.range is required in full mode"),
    };
    let server_url = state
        .settings
        .advertise_url()
        .ok_or_else(|| anyhow::anyhow!("server.advertise is required when DHCP is on: machines must be told where to boot from"))?;
    let settings = Settings {
        mode,
        server_ip,
        network: server_ip,
        netmask,
        router: cfg.router,
        dns: cfg.dns.clone(),
        domain: cfg.domain.clone(),
        lease_time: cfg.lease_time.map(|d| d.0.as_secs().min(u32::MAX as u64) as u32).unwrap_or(3600),
        boot_files: BootFiles {
            bios: cfg.boot_files.bios.clone(),
            efi_x64: cfg.boot_files.efi_x64.clone(),
            efi_arm64: cfg.boot_files.efi_arm64.clone(),
        },
        server_url,
        // Clients request within a second or two; a long hold lets a DISCOVER flood
        // (or clients that took another server's offer) drain the pool.
        offer_hold: 10,
        decline_hold: 600,
        relays: cfg.relays.clone(),
        shim: cfg.loader == Loader::Shim,
    };
    let relayed = cfg
        .subnets
        .iter()
        .map(|sn| {
            let s = Settings {
                network: sn.range.first,
                netmask: sn.netmask,
                router: sn.router,
                dns: sn.dns.clone(),
                domain: sn.domain.clone(),
                relays: sn.relays.clone(),
                ..settings.clone()
            };
            (s, (sn.range.first, sn.range.last))
        })
        .collect();
    let writer = state.store.lease_writer();
    state.handshakes.set_mode(mode);
    let lease_time = settings.lease_time as i64;
    let unknown = crate::gate::Gate::new(state.settings.unauthenticated_events_per_minute.saturating_mul(UNKNOWN_BUDGET_FACTOR));
    let backend = StoreBackend { state, runtime: tokio::runtime::Handle::current(), writer, site_loader: cfg.loader, lease_time, unknown };
    // Binds before returning, so a missing interface or a busy port fails `serve` at start.
    let handle = DhcpServer { settings, interface, range, relayed, backend }.spawn()?;
    Ok(Some((server_ip, handle)))
}
