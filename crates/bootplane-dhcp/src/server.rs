//! The DHCP sockets. Each socket is bound to the configured interface with
//! SO_BINDTODEVICE, so the server never answers on any other link, even though it must
//! bind 0.0.0.0 to receive broadcasts. One task owns the lease pool and handles packets
//! in order, which is what makes allocation conflict-free without locks.
//!
//! Packets are handled in bursts: everything already queued on the sockets (up to
//! [`BURST`]) is decided, the leases that must survive a restart (bound, released,
//! declined; not mere offers) are written in one transaction, and only then do the
//! replies leave. An acknowledged address is therefore never forgotten, and under load
//! one commit serves many clients. Machine names, hostnames and reservations come from
//! a snapshot refreshed every few seconds, so no packet waits on a store read.

use crate::policy::{self, Destination, Mode, Request, Settings};
use crate::pool::LeasePool;
use async_trait::async_trait;
use bootplane_core::model::{Lease, LeaseState};
use bootplane_core::Mac;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use tokio::net::UdpSocket;

/// Most packets decided per commit.
pub const BURST: usize = 256;
/// How often the machine snapshot is refreshed.
pub const REFRESH: Duration = Duration::from_secs(5);

/// What DHCP needs to know about a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownMachine {
    pub name: String,
    pub hostname: String,
    /// Its fixed address, if it has one.
    pub ip: Option<Ipv4Addr>,
}

/// One thing that happened, for the event log.
#[derive(Debug, Clone)]
pub struct DhcpEvent {
    pub kind: &'static str,
    pub mac: Mac,
    pub machine: Option<String>,
    /// The client's address, when it has or was given one.
    pub ip: Option<Ipv4Addr>,
    pub detail: serde_json::Value,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn load_leases(&self) -> Vec<Lease>;
    /// Persists leases in one transaction; an error means the replies must not leave.
    async fn save_leases(&self, leases: &[Lease]) -> Result<(), String>;
    /// Every known machine, by MAC.
    async fn machines(&self) -> HashMap<Mac, KnownMachine>;
    async fn events(&self, events: Vec<DhcpEvent>);
}

/// The first IPv4 address and netmask of `interface`.
pub fn interface_addr(interface: &str) -> std::io::Result<(Ipv4Addr, Ipv4Addr)> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
    for a in addrs {
        if a.interface_name != interface {
            continue;
        }
        let ip = a.address.as_ref().and_then(|s| s.as_sockaddr_in()).map(|s| s.ip());
        let mask = a.netmask.as_ref().and_then(|s| s.as_sockaddr_in()).map(|s| s.ip());
        if let (Some(ip), Some(mask)) = (ip, mask) {
            return Ok((ip, mask));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("interface {interface} has no IPv4 address (dhcp.interface)"),
    ))
}

pub fn bind(interface: &str, port: u16) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    // Room for a burst of clients booting at once.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind_device(Some(interface.as_bytes()))
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind to interface {interface}: {e}")))?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on UDP port {port} on {interface}: {e}")))?;
    UdpSocket::from_std(s.into())
}

pub struct DhcpServer<B: Backend> {
    pub settings: Settings,
    pub interface: String,
    pub range: (Ipv4Addr, Ipv4Addr),
    pub backend: B,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

struct Received {
    bytes: Vec<u8>,
    src: SocketAddr,
    port: u16,
}

impl<B: Backend> DhcpServer<B> {
    /// Binds the sockets (port 67, and 4011 in proxy mode) and serves until dropped.
    pub async fn run(self) -> std::io::Result<()> {
        let main = bind(&self.interface, 67)?;
        let pxe = match self.settings.mode {
            Mode::Proxy => Some(bind(&self.interface, 4011)?),
            Mode::Full => None,
        };
        let mut pool = LeasePool::new(self.range.0, self.range.1);
        if self.settings.mode == Mode::Full {
            pool.load(self.backend.load_leases().await);
        }
        let mut known = HashMap::new();
        let mut refresh = tokio::time::interval(REFRESH);
        let mut buf = vec![0u8; 1500];
        let mut buf_pxe = vec![0u8; 1500];
        loop {
            let first = tokio::select! {
                r = main.recv_from(&mut buf) => match r { Ok((n, src)) => Received { bytes: buf[..n].to_vec(), src, port: 67 }, Err(_) => continue },
                r = async { match &pxe { Some(s) => s.recv_from(&mut buf_pxe).await, None => std::future::pending().await } } => {
                    match r { Ok((n, src)) => Received { bytes: buf_pxe[..n].to_vec(), src, port: 4011 }, Err(_) => continue }
                }
                _ = refresh.tick() => {
                    known = self.backend.machines().await;
                    pool.set_reservations(known.iter().filter_map(|(mac, m)| m.ip.map(|ip| (*mac, ip))));
                    continue;
                }
            };
            let mut burst = vec![first];
            while burst.len() < BURST {
                match main.try_recv_from(&mut buf) {
                    Ok((n, src)) => burst.push(Received { bytes: buf[..n].to_vec(), src, port: 67 }),
                    Err(_) => break,
                }
            }
            if let Some(p) = &pxe {
                while burst.len() < BURST {
                    match p.try_recv_from(&mut buf) {
                        Ok((n, src)) => burst.push(Received { bytes: buf[..n].to_vec(), src, port: 4011 }),
                        Err(_) => break,
                    }
                }
            }
            self.handle_burst(burst, &main, pxe.as_ref(), &mut pool, &known).await;
        }
    }

    async fn handle_burst(
        &self,
        burst: Vec<Received>,
        main: &UdpSocket,
        pxe: Option<&UdpSocket>,
        pool: &mut LeasePool,
        known: &HashMap<Mac, KnownMachine>,
    ) {
        let t = now();
        let mut durable = Vec::new();
        let mut replies = Vec::new();
        let mut events = Vec::new();
        for r in burst {
            let Some(msg) = policy::decode(&r.bytes) else { continue };
            let Some(mac) = policy::client_mac(&msg) else { continue };
            let machine = known.get(&mac);
            let out = policy::handle(
                &Request { msg: &msg, port: r.port, hostname: machine.map(|m| m.hostname.clone()), now: t },
                &self.settings,
                pool,
            );
            if let Some(lease) = out.lease {
                // An offer that is lost in a restart is simply offered again.
                if lease.state != LeaseState::Offered {
                    durable.push(lease);
                }
            }
            let mut client_ip = None;
            if let Some((reply, dest)) = out.reply {
                if !reply.yiaddr().is_unspecified() {
                    client_ip = Some(reply.yiaddr());
                }
                let to: SocketAddr = match dest {
                    Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, 68).into(),
                    Destination::Client(ip) => SocketAddrV4::new(ip, 68).into(),
                    Destination::Relay(ip) => SocketAddrV4::new(ip, 67).into(),
                    Destination::Source => r.src,
                };
                if let Some(bytes) = policy::encode(&reply) {
                    replies.push((bytes, to, r.port));
                }
            }
            if let Some((kind, detail)) = out.event {
                events.push(DhcpEvent { kind, mac, machine: machine.map(|m| m.name.clone()), ip: client_ip, detail });
            }
        }
        if !durable.is_empty() {
            if let Err(e) = self.backend.save_leases(&durable).await {
                // Better no answer than an acknowledgement we may forget: clients retry.
                tracing::error!("dhcp: cannot save {} lease(s), not answering this burst: {e}", durable.len());
                return;
            }
        }
        for (bytes, to, port) in replies {
            let sock = if port == 4011 { pxe.unwrap_or(main) } else { main };
            if let Err(e) = sock.send_to(&bytes, to).await {
                tracing::warn!("dhcp: cannot send to {to}: {e}");
            }
        }
        if !events.is_empty() {
            self.backend.events(events).await;
        }
    }
}
