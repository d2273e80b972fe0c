//! The DHCP sockets. Each socket is bound to the configured interface with
//! SO_BINDTODEVICE, so the server never answers on any other link, even though it must
//! bind 0.0.0.0 to receive broadcasts. One task owns the lease pool and handles packets
//! in order, which is what makes allocation conflict-free without locks; leases are
//! written through to the [`Backend`] before the reply leaves, so a restart never
//! forgets an address it has acknowledged.

use crate::policy::{self, Destination, Mode, Request, Settings};
use crate::pool::LeasePool;
use async_trait::async_trait;
use bootplane_core::model::Lease;
use bootplane_core::Mac;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;
use tokio::net::UdpSocket;

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn load_leases(&self) -> Vec<Lease>;
    async fn save_lease(&self, lease: &Lease);
    /// (MAC, address) of every machine with a fixed `ip`.
    async fn reservations(&self) -> Vec<(Mac, Ipv4Addr)>;
    /// The hostname of the machine with this MAC, if known.
    async fn hostname_for(&self, mac: Mac) -> Option<String>;
    /// Records what happened; `ip` is the client's address when it has one.
    async fn event(&self, kind: &str, mac: Mac, ip: Option<Ipv4Addr>, detail: serde_json::Value);
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
            pool.set_reservations(self.backend.reservations().await);
        }
        let mut refresh = tokio::time::interval(Duration::from_secs(5));
        let mut b67 = vec![0u8; 1500];
        let mut b4011 = vec![0u8; 1500];
        loop {
            let (n, src, port) = tokio::select! {
                r = main.recv_from(&mut b67) => match r { Ok((n, src)) => (n, src, 67u16), Err(_) => continue },
                r = async { match &pxe { Some(s) => s.recv_from(&mut b4011).await, None => std::future::pending().await } } => {
                    match r { Ok((n, src)) => (n, src, 4011u16), Err(_) => continue }
                }
                _ = refresh.tick() => {
                    if self.settings.mode == Mode::Full {
                        pool.set_reservations(self.backend.reservations().await);
                    }
                    continue;
                }
            };
            let bytes = if port == 67 { &b67[..n] } else { &b4011[..n] };
            let Some(msg) = policy::decode(bytes) else { continue };
            let Some(mac) = policy::client_mac(&msg) else { continue };
            let hostname = self.backend.hostname_for(mac).await;
            let out = policy::handle(&Request { msg: &msg, port, hostname, now: now() }, &self.settings, &mut pool);
            if let Some(lease) = &out.lease {
                self.backend.save_lease(lease).await;
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
                    Destination::Source => src,
                };
                let sock = if port == 4011 { pxe.as_ref().unwrap_or(&main) } else { &main };
                match policy::encode(&reply) {
                    Some(bytes) => {
                        if let Err(e) = sock.send_to(&bytes, to).await {
                            tracing::warn!("dhcp: cannot send to {to}: {e}");
                        }
                    }
                    None => tracing::warn!("dhcp: cannot encode reply to {to}"),
                }
            }
            if let Some((kind, detail)) = out.event {
                self.backend.event(kind, mac, client_ip, detail).await;
            }
        }
    }
}
