//! The DHCP sockets. Each socket is bound to the configured interface with
//! SO_BINDTODEVICE, so the server never answers on any other link, even though it must
//! bind 0.0.0.0 to receive broadcasts. One task owns the lease pool and handles packets
//! in order, which is what makes allocation conflict-free without locks.
//!
//! Packets are handled in bursts: everything already queued on the sockets (up to
//! [`BURST`]) is decided, the leases that must survive a restart (bound, released,
//! declined; not mere offers) are written in one transaction, and only then do the
//! replies leave. An acknowledged address is therefore never forgotten, and under load
//! one commit serves many clients. The burst's events ride in the same transaction;
//! events of bursts with nothing durable (offers, proxy answers) wait for the next
//! commit, at most [`EVENT_LINGER`] or [`EVENT_BATCH`] events, so an exchange costs one
//! commit, not one per packet plus one for its events. Machine names, hostnames and
//! reservations come from a snapshot refreshed every few seconds, so no packet waits on
//! a store read.
//!
//! The loop runs on its own OS thread with plain sockets and `poll(2)`, and commits
//! through a synchronous [`Backend`]: profiling the async version at saturation showed a
//! third of the CPU in thread switches (runtime wake-ups and the blocking-pool hand-off
//! of every commit), none of which this path has. Under load it reads on a [`TICK`]
//! instead of waiting for each packet (see there).

use crate::policy::{self, Destination, Mode, Request, Settings};
use crate::pool::LeasePool;
use dhcproto::v4::Message;
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
/// While packets keep coming, the loop sleeps this long between empty reads instead of
/// waiting in `poll(2)`: a sleeper in `poll` is woken by every arriving packet, and
/// under load those wake-ups (paid for by the sender's CPU, and ours) cost more than
/// the packets. Ticks give bigger bursts, so fewer commits, for at most this much
/// added latency.
pub const TICK: Duration = Duration::from_micros(250);
/// Empty ticks (5 ms) before the loop goes back to waiting in `poll(2)`.
pub const QUIET_TICKS: u32 = 20;
/// Longest an event waits for a commit to ride in.
pub const EVENT_LINGER: Duration = Duration::from_millis(200);
/// Most events held back before they are written on their own.
pub const EVENT_BATCH: usize = 1024;

/// What DHCP needs to know about a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownMachine {
    pub name: String,
    pub hostname: String,
    /// Its fixed address, if it has one.
    pub ip: Option<Ipv4Addr>,
    /// The shim it boots on UEFI x86-64 (the Secure Boot chain), if it takes that chain
    /// (`bootplane_core::grub::shim_file`).
    pub shim: Option<String>,
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

/// What the DHCP thread needs from the rest of bootplane. Called on that thread, so
/// implementations may block (briefly: every call delays the next burst).
pub trait Backend: Send + 'static {
    fn load_leases(&mut self) -> Vec<Lease>;
    /// Persists leases and events in one transaction; an error means the replies that
    /// depend on these leases must not leave. Each lease is a claim; the refused ones
    /// come back as the leases holding those addresses (another instance's).
    fn commit(&mut self, leases: &[Lease], events: Vec<DhcpEvent>) -> Result<Vec<Lease>, String>;
    /// Whether other instances allocate from the same leases: then offers are claimed
    /// before they are sent, and the pools reload the others' leases every [`REFRESH`].
    fn shared(&self) -> bool {
        false
    }
    /// Every known machine, by MAC.
    fn machines(&mut self) -> HashMap<Mac, KnownMachine>;
    /// The bindings and proxy answers of a burst ([`is_handshake`]), once they are
    /// durable and before they leave (their events may be written later): the HTTP side binds a machine's install answer to
    /// the DHCP exchange bootplane itself had with it.
    fn answered(&mut self, _events: &[DhcpEvent]) {}
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

/// [`bind_std`] as a tokio socket (for the probe).
pub fn bind(interface: &str, port: u16) -> std::io::Result<UdpSocket> {
    UdpSocket::from_std(bind_std(interface, port)?)
}

/// A non-blocking UDP socket on `0.0.0.0:port` that only sees `interface`.
pub fn bind_std(interface: &str, port: u16) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    // Room for a burst of clients booting at once. SO_RCVBUF is capped by
    // net.core.rmem_max (208 KiB by default); we run as root, so force it.
    if nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &(4 << 20)).is_err() {
        let _ = s.set_recv_buffer_size(4 << 20);
    }
    s.bind_device(Some(interface.as_bytes()))
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind to interface {interface}: {e}")))?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on UDP port {port} on {interface}: {e}")))?;
    Ok(s.into())
}

pub struct DhcpServer<B: Backend> {
    pub settings: Settings,
    pub interface: String,
    pub range: (Ipv4Addr, Ipv4Addr),
    /// Subnets behind relay agents, each with its settings and range.
    pub relayed: Vec<(Settings, (Ipv4Addr, Ipv4Addr))>,
    pub backend: B,
}

/// Events decided but not yet written, and since when the oldest has waited.
#[derive(Default)]
struct Pending {
    events: Vec<DhcpEvent>,
    since: Option<std::time::Instant>,
}

impl Pending {
    fn push(&mut self, events: Vec<DhcpEvent>) {
        if !events.is_empty() {
            self.since.get_or_insert_with(std::time::Instant::now);
            self.events.extend(events);
        }
    }

    /// When they must be written even if no lease needs a commit.
    fn deadline(&self) -> Option<std::time::Instant> {
        self.since.map(|t| t + EVENT_LINGER)
    }

    fn due(&self, now: std::time::Instant) -> bool {
        self.events.len() >= EVENT_BATCH || self.deadline().is_some_and(|d| now >= d)
    }

    fn take(&mut self) -> Vec<DhcpEvent> {
        self.since = None;
        std::mem::take(&mut self.events)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

struct Received {
    bytes: Vec<u8>,
    src: SocketAddr,
    port: u16,
}

/// A reply ready to send: `claimed` is the address its lease claims, `index` its
/// message's place in the work list (to decide it again if the claim is refused).
struct Reply {
    bytes: Vec<u8>,
    to: SocketAddr,
    port: u16,
    claimed: Option<Ipv4Addr>,
    offer: bool,
    index: usize,
}

/// The answers that tell the HTTP side a machine's boot went through bootplane's own
/// DHCP: a binding (full mode) or a proxy answer (proxy mode).
pub fn is_handshake(kind: &str) -> bool {
    matches!(kind, "dhcp.ack" | "dhcp.proxy_offer" | "dhcp.proxy_ack")
}

/// How many times one burst's refused offers are decided again (see `handle_burst`).
const CLAIM_PASSES: usize = 3;

/// Under overload (a full burst), finishes exchanges before starting new ones: requests
/// and the rest go first, and only [`BURST`]/4 DISCOVERs are answered (their clients
/// retry). Answering every DISCOVER of a flood leaves no time for the REQUESTs that
/// complete leases, and served leases collapse.
fn shed(mut msgs: Vec<(Message, Received)>, full: bool) -> Vec<(Message, Received)> {
    if !full {
        return msgs;
    }
    let is_discover = |m: &Message| matches!(m.opts().msg_type(), Some(dhcproto::v4::MessageType::Discover));
    msgs.sort_by_key(|(m, _)| is_discover(m));
    let first_discover = msgs.iter().position(|(m, _)| is_discover(m)).unwrap_or(msgs.len());
    msgs.truncate(first_discover + BURST / 4);
    msgs
}

/// Waits until one of `socks` or `woken` is readable or `timeout` passes.
fn wait_readable(socks: &[&std::net::UdpSocket], woken: &std::os::unix::net::UnixDatagram, timeout: Duration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds: Vec<PollFd> = socks.iter().map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN)).collect();
    fds.push(PollFd::new(woken.as_fd(), PollFlags::POLLIN));
    let ms = PollTimeout::from(timeout.as_millis().min(60_000) as u16);
    let _ = poll(&mut fds, ms);
}

/// Sends on a non-blocking socket, waiting (a little) for room in a full send buffer.
fn send(sock: &std::net::UdpSocket, bytes: &[u8], to: SocketAddr) -> std::io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    for _ in 0..3 {
        match sock.send_to(bytes, to) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = poll(&mut [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)], PollTimeout::from(10u8));
            }
            r => return r.map(|_| ()),
        }
    }
    Err(std::io::ErrorKind::WouldBlock.into())
}

/// A running server; [`DhcpHandle::stop`] ends it.
pub struct DhcpHandle {
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Wakes the loop out of `poll(2)`.
    wake: std::os::unix::net::UnixDatagram,
    thread: std::thread::JoinHandle<()>,
}

impl DhcpHandle {
    /// Stops answering and returns once the events not yet written are written.
    pub fn stop(self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
        let _ = self.wake.send(&[1]);
        let _ = self.thread.join();
    }
}

impl<B: Backend> DhcpServer<B> {
    /// Binds the sockets (port 67, and 4011 in proxy mode) and serves on a thread of its
    /// own until stopped.
    pub fn spawn(self) -> std::io::Result<DhcpHandle> {
        let main = bind_std(&self.interface, 67)?;
        let pxe = match self.settings.mode {
            Mode::Proxy => Some(bind_std(&self.interface, 4011)?),
            Mode::Full => None,
        };
        let (wake, woken) = std::os::unix::net::UnixDatagram::pair()?;
        woken.set_nonblocking(true)?;
        let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stopping.clone();
        let thread = std::thread::Builder::new().name("dhcp".into()).spawn(move || self.run(main, pxe, &flag, &woken))?;
        Ok(DhcpHandle { stopping, wake, thread })
    }

    fn run(
        mut self,
        main: std::net::UdpSocket,
        pxe: Option<std::net::UdpSocket>,
        stopping: &std::sync::atomic::AtomicBool,
        woken: &std::os::unix::net::UnixDatagram,
    ) {
        // One pool per subnet, the own link's first; a stored lease belongs to the pool
        // whose range holds its address.
        let ranges: Vec<(Ipv4Addr, Ipv4Addr)> = std::iter::once(self.range).chain(self.relayed.iter().map(|(_, r)| *r)).collect();
        let mut pools: Vec<LeasePool> = ranges.iter().map(|r| LeasePool::new(r.0, r.1)).collect();
        if self.backend.shared() {
            // Other instances allocate from the same ranges: start elsewhere than they do.
            for pool in &mut pools {
                pool.start_fresh_at(rand::random());
            }
        }
        if self.settings.mode == Mode::Full {
            let leases = self.backend.load_leases();
            for (pool, r) in pools.iter_mut().zip(&ranges) {
                pool.load(leases.iter().filter(|l| r.0 <= l.ip && l.ip <= r.1).cloned());
            }
        }
        let mut known = HashMap::new();
        let mut next_refresh = std::time::Instant::now();
        let mut pending = Pending::default();
        let mut buf = vec![0u8; 1500];
        let mut quiet_ticks = QUIET_TICKS;
        loop {
            if stopping.load(std::sync::atomic::Ordering::Acquire) {
                if !pending.events.is_empty() {
                    self.commit(&[], &mut pending);
                }
                return;
            }
            let now_i = std::time::Instant::now();
            if now_i >= next_refresh {
                if self.backend.shared() {
                    let leases = self.backend.load_leases();
                    for (pool, r) in pools.iter_mut().zip(&ranges) {
                        pool.load(leases.iter().filter(|l| r.0 <= l.ip && l.ip <= r.1).cloned());
                    }
                }
                known = self.backend.machines();
                for pool in &mut pools {
                    pool.set_reservations(known.iter().filter_map(|(mac, m)| m.ip.map(|ip| (*mac, ip))));
                }
                next_refresh = now_i + REFRESH;
            }
            if pending.due(now_i) {
                self.commit(&[], &mut pending);
            }
            let mut burst = Vec::new();
            for (sock, port) in std::iter::once((&main, 67)).chain(pxe.as_ref().map(|p| (p, 4011))) {
                while burst.len() < BURST {
                    match sock.recv_from(&mut buf) {
                        Ok((n, src)) => burst.push(Received { bytes: buf[..n].to_vec(), src, port }),
                        Err(_) => break,
                    }
                }
            }
            if burst.is_empty() && quiet_ticks < QUIET_TICKS {
                quiet_ticks += 1;
                std::thread::sleep(TICK);
                continue;
            }
            if burst.is_empty() {
                let socks: Vec<&std::net::UdpSocket> = std::iter::once(&main).chain(pxe.as_ref()).collect();
                let wake = pending.deadline().map_or(next_refresh, |d| d.min(next_refresh));
                wait_readable(&socks, woken, wake.saturating_duration_since(std::time::Instant::now()));
                continue;
            }
            quiet_ticks = 0;
            self.handle_burst(burst, &main, pxe.as_ref(), &mut pools, &known, &mut pending);
        }
    }

    /// Answers one burst. With other instances on the same leases, an offer whose
    /// address turns out to be claimed already is decided again at once with the pool
    /// now knowing the holder ([`CLAIM_PASSES`] at most): answering nothing would cost
    /// the client a whole retry interval per collision, and after an instance dies its
    /// fresh claims are exactly where the survivors' pools collide.
    fn handle_burst(
        &mut self,
        burst: Vec<Received>,
        main: &std::net::UdpSocket,
        pxe: Option<&std::net::UdpSocket>,
        pools: &mut [LeasePool],
        known: &HashMap<Mac, KnownMachine>,
        pending: &mut Pending,
    ) {
        let full = burst.len() >= BURST;
        let decoded: Vec<(Message, Received)> = burst.into_iter().filter_map(|r| policy::decode(&r.bytes).map(|m| (m, r))).collect();
        let mut work = shed(decoded, full);
        for pass in 0..CLAIM_PASSES {
            let (durable, replies, events) = self.decide(&work, pools, known);
            let handshakes: Vec<DhcpEvent> = events.iter().filter(|e| is_handshake(e.kind)).cloned().collect();
            pending.push(events);
            let must_commit = !durable.is_empty() || pending.due(std::time::Instant::now());
            let refused = match must_commit {
                true => match self.commit(&durable, pending) {
                    Some(refused) => refused,
                    // Better no answer than an acknowledgement we may forget: clients retry.
                    None => return,
                },
                false => Vec::new(),
            };
            // Another instance holds these addresses: learn it, and decide those offers
            // again (a refused binding is not retried: the client's REQUEST named it).
            let taken: std::collections::HashSet<Ipv4Addr> = refused.iter().map(|l| l.ip).collect();
            for holder in refused {
                if let Some(pool) = pools.iter_mut().find(|p| p.in_range(holder.ip)) {
                    pool.load([holder]);
                }
            }
            let answered: Vec<DhcpEvent> = handshakes.into_iter().filter(|e| !e.ip.is_some_and(|ip| taken.contains(&ip))).collect();
            if !answered.is_empty() {
                self.backend.answered(&answered);
            }
            let mut again = Vec::new();
            for r in replies {
                if r.claimed.is_some_and(|ip| taken.contains(&ip)) {
                    if r.offer && pass + 1 < CLAIM_PASSES {
                        again.push(r.index);
                    }
                    continue;
                }
                let sock = if r.port == 4011 { pxe.unwrap_or(main) } else { main };
                if let Err(e) = send(sock, &r.bytes, r.to) {
                    tracing::warn!("dhcp: cannot send to {}: {e}", r.to);
                }
            }
            if again.is_empty() {
                return;
            }
            let mut keep = again.into_iter().collect::<std::collections::HashSet<usize>>();
            work = work.into_iter().enumerate().filter(|(i, _)| keep.remove(i)).map(|(_, m)| m).collect();
        }
    }

    /// The policy's outcome for each message of `work`: leases to claim, replies (with
    /// the index of their message), events.
    fn decide(
        &mut self,
        work: &[(Message, Received)],
        pools: &mut [LeasePool],
        known: &HashMap<Mac, KnownMachine>,
    ) -> (Vec<Lease>, Vec<Reply>, Vec<DhcpEvent>) {
        let t = now();
        let mut durable = Vec::new();
        let mut replies = Vec::new();
        let mut events = Vec::new();
        let subnets: Vec<&Settings> = std::iter::once(&self.settings).chain(self.relayed.iter().map(|(s, _)| s)).collect();
        let shared = self.backend.shared();
        for (index, (msg, r)) in work.iter().enumerate() {
            let Some(mac) = policy::client_mac(msg) else {
                continue;
            };
            let machine = known.get(&mac);
            // A relayed request from a link nobody serves goes to the own link's policy,
            // which refuses it with an event.
            let i = policy::select(msg, &subnets).unwrap_or(0);
            let src = match r.src.ip() {
                std::net::IpAddr::V4(v4) => v4,
                std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            let out = policy::handle(
                &Request {
                    msg,
                    src,
                    port: r.port,
                    hostname: machine.map(|m| m.hostname.clone()),
                    shim: match machine {
                        Some(m) => m.shim.clone(),
                        None => self.settings.shim.then(|| bootplane_core::grub::SHIM_FILE.to_string()),
                    },
                    now: t,
                },
                subnets[i],
                &mut pools[i],
            );
            let mut claimed = None;
            if let Some(lease) = out.lease {
                // An offer that is lost in a restart is simply offered again; with other
                // instances on the same leases it is a claim like any other.
                if lease.state != LeaseState::Offered || shared {
                    claimed = Some(lease.ip);
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
                let offer = reply.opts().msg_type() == Some(dhcproto::v4::MessageType::Offer);
                if let Some(bytes) = policy::encode(&reply) {
                    replies.push(Reply { bytes, to, port: r.port, claimed, offer, index });
                }
            }
            if let Some((kind, detail)) = out.event {
                events.push(DhcpEvent { kind, mac, machine: machine.map(|m| m.name.clone()), ip: client_ip, detail });
            }
        }
        (durable, replies, events)
    }

    /// Writes `durable` and every pending event in one transaction; `None` when the
    /// replies that depend on `durable` must not leave, else the refused claims. On
    /// failure the events are dropped (with a log line): holding them would only grow the
    /// queue while the store fails.
    fn commit(&mut self, durable: &[Lease], pending: &mut Pending) -> Option<Vec<Lease>> {
        let events = pending.take();
        let n = events.len();
        match self.backend.commit(durable, events) {
            Ok(refused) => Some(refused),
            Err(e) if durable.is_empty() => {
                tracing::error!("dhcp: cannot write {n} event(s), dropped: {e}");
                Some(Vec::new())
            }
            Err(e) => {
                tracing::error!("dhcp: cannot save {} lease(s), not answering this burst: {e}", durable.len());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::discover;
    use dhcproto::v4::{DhcpOption, MessageType};

    fn packets(n_discover: usize, n_request: usize) -> Vec<(Message, Received)> {
        let r = || Received { bytes: Vec::new(), src: SocketAddr::from(([0, 0, 0, 0], 68)), port: 67 };
        let mut v = Vec::new();
        for i in 0..n_discover.max(n_request) {
            if i < n_discover {
                v.push((discover([2, 0, 0, 0, 0, i as u8], None, None, None), r()));
            }
            if i < n_request {
                let mut m = discover([2, 0, 0, 0, 1, i as u8], None, None, None);
                m.opts_mut().insert(DhcpOption::MessageType(MessageType::Request));
                v.push((m, r()));
            }
        }
        v
    }

    #[test]
    fn events_wait_for_a_commit_but_not_for_long() {
        let ev = || DhcpEvent { kind: "dhcp.offer", mac: Mac([2, 0, 0, 0, 0, 1]), machine: None, ip: None, detail: serde_json::json!({}) };
        let mut p = Pending::default();
        let t0 = std::time::Instant::now();
        assert!(!p.due(t0) && p.deadline().is_none(), "nothing pending, nothing due");
        p.push(vec![ev()]);
        // Relative to the push, not the wall clock (slow under qemu-user).
        assert!(!p.due(t0) && p.deadline().is_some_and(|d| d >= t0 + EVENT_LINGER));
        assert!(p.due(p.deadline().unwrap() + Duration::from_millis(1)), "an old event is written on its own");
        assert_eq!(p.take().len(), 1);
        assert!(p.deadline().is_none());
        p.push((0..EVENT_BATCH).map(|_| ev()).collect());
        assert!(p.due(std::time::Instant::now()), "a full batch is written at once");
    }

    #[test]
    fn overload_finishes_exchanges_before_starting_new_ones() {
        let is_req = |m: &Message| m.opts().msg_type() == Some(MessageType::Request);
        // Not overloaded: everything, in arrival order.
        let out = shed(packets(10, 10), false);
        assert_eq!(out.len(), 20);
        assert!(!is_req(&out[0].0) && is_req(&out[1].0));
        // A full burst: every request first, then a quarter burst of discovers.
        let out = shed(packets(200, 56), true);
        assert_eq!(out.len(), 56 + BURST / 4);
        assert!(out[..56].iter().all(|(m, _)| is_req(m)) && out[56..].iter().all(|(m, _)| !is_req(m)));
    }
}
