//! What to answer, for `full` and `proxy` mode (RFC 2131 §4.3, PXE 2.1 §2.2 for
//! ProxyDHCP). Pure: the caller passes the packet, the port it came to, the machine's
//! hostname when the MAC is known, and the time; it gets back the reply with where to
//! send it, the lease to persist and an event to record.

use crate::classify::{self, boot_answer, BootAnswer, BootFiles, ClientKind};
use crate::pool::LeasePool;
use bootplane_core::model::Lease;
use bootplane_core::Mac;
use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use serde_json::json;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Addresses and boot information.
    Full,
    /// Boot information only, beside another DHCP server.
    Proxy,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    pub server_ip: Ipv4Addr,
    /// An address in the subnet these settings serve: `server_ip` for the server's own
    /// link, the range's first address for a relayed subnet.
    pub network: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    /// Seconds.
    pub lease_time: u32,
    pub boot_files: BootFiles,
    /// HTTP base URL machines use.
    pub server_url: String,
    /// How long an offer holds its address, seconds.
    pub offer_hold: i64,
    /// How long a declined address is withheld, seconds.
    pub decline_hold: i64,
    /// Relay agents (giaddr) whose relayed requests are answered.
    pub relays: Vec<Ipv4Addr>,
    /// Unknown machines take the shim chain (`dhcp.loader: shim`).
    pub shim: bool,
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:68 on the interface. Used instead of unicast to a client that has
    /// no address yet, which would need an ARP entry written first.
    Broadcast,
    /// A client that has an address: its ciaddr, port 68.
    Client(Ipv4Addr),
    /// Back through the relay agent: giaddr, port 67.
    Relay(Ipv4Addr),
    /// Back to the source address and port (PXE requests to port 4011).
    Source,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub reply: Option<(Message, Destination)>,
    pub lease: Option<Lease>,
    /// (kind, detail) for the event log.
    pub event: Option<(&'static str, serde_json::Value)>,
}

pub struct Request<'a> {
    pub msg: &'a Message,
    /// Who sent the packet (its IP source address): a relayed request is trusted by
    /// this, since anyone can write a relay's address into giaddr.
    pub src: Ipv4Addr,
    /// 67 or 4011.
    pub port: u16,
    /// The machine's hostname, when the MAC belongs to a known machine.
    pub hostname: Option<String>,
    /// UEFI x86-64 gets this shim (the Secure Boot chain) rather than iPXE: the machine's
    /// loader setting, or the site's for an unknown MAC.
    pub shim: Option<String>,
    pub now: i64,
}

pub fn client_mac(msg: &Message) -> Option<Mac> {
    let c = msg.chaddr();
    (msg.hlen() == 6 && c.len() >= 6).then(|| Mac([c[0], c[1], c[2], c[3], c[4], c[5]]))
}

fn subnet(ip: Ipv4Addr, mask: Ipv4Addr) -> u32 {
    u32::from(ip) & u32::from(mask)
}

fn requested_ip(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    }
}

fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

fn base_reply(req: &Message, mtype: MessageType, s: &Settings) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_htype(req.htype())
        .set_xid(req.xid())
        .set_flags(req.flags())
        .set_giaddr(req.giaddr())
        .set_chaddr(&req.chaddr()[..(req.hlen() as usize).min(16)]);
    m.opts_mut().insert(DhcpOption::MessageType(mtype));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(s.server_ip));
    m
}

/// PXE vendor options (option 43): PXE_DISCOVERY_CONTROL = 8, "use the boot file
/// name in this packet; no boot server discovery, no menu" — what dnsmasq sends too.
const PXE_VENDOR_OPTIONS: [u8; 4] = [6, 1, 8, 255];

/// The same plus a one-item PXE_BOOT_MENU (sub-option 9: type 0x8000, "bootplane"), for
/// ProxyDHCP answers. iPXE treats a `PXEClient` offer *without* a boot menu as a bare
/// "go ask port 4011" pointer and, in the 2019 ROMs QEMU ships, then boots nothing (seen
/// in the e2e proxy run: "Nothing to boot"); with the menu it takes this offer as the
/// PXE settings directly, as it does with dnsmasq's proxy offers. Discovery control 8
/// still tells every PXE client to use the file name and skip the menu.
const PXE_PROXY_VENDOR_OPTIONS: [u8; 17] = [6, 1, 8, 9, 12, 0x80, 0x00, 9, b'b', b'o', b'o', b't', b'p', b'l', b'a', b'n', b'e'];

/// Adds boot information for `kind`; returns what was given.
/// The BOOTP `file` field holds 128 bytes (and dhcproto panics beyond that); option 67
/// always carries the whole name.
fn set_file(m: &mut Message, name: &str) {
    if name.len() < 128 {
        m.set_fname_str(name);
    }
    m.opts_mut().insert(DhcpOption::BootfileName(name.as_bytes().to_vec()));
}

/// Encodes a packet, zero-padded to the 300 bytes of a BOOTP message (RFC 1542 §2.1):
/// dnsmasq ignores shorter requests, and some PXE ROMs shorter replies.
pub fn encode(m: &Message) -> Option<Vec<u8>> {
    use dhcproto::Encodable;
    let mut v = m.to_vec().ok()?;
    if v.len() < 300 {
        v.resize(300, 0);
    }
    Some(v)
}

/// Decodes a packet. dhcproto 0.15 has a `debug_assert!` on option 80's length that a
/// malformed packet trips, and `chaddr()` panics when `hlen` > 16 (both found by this
/// crate's fuzz test), so decoding runs under `catch_unwind` and checks `hlen`: a
/// hostile packet is dropped, never a crash.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    use dhcproto::Decodable;
    let m = std::panic::catch_unwind(|| Message::from_bytes(bytes).ok()).ok().flatten()?;
    // `Message::chaddr()` slices by `hlen` and panics past 16.
    (m.hlen() <= 16).then_some(m)
}

fn add_boot(m: &mut Message, req: &Message, kind: ClientKind, s: &Settings, shim: Option<&str>) -> BootAnswer {
    let answer = boot_answer(kind, &s.boot_files, &s.server_url, shim);
    match (&answer, kind) {
        (BootAnswer::None, _) => {}
        (BootAnswer::Tftp(f), _) => {
            m.set_siaddr(s.server_ip);
            set_file(m, f);
            m.opts_mut().insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
            m.opts_mut().insert(DhcpOption::VendorExtensions(PXE_VENDOR_OPTIONS.to_vec()));
        }
        (BootAnswer::Http(u), ClientKind::Http { .. }) => {
            set_file(m, u);
            m.opts_mut().insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
        }
        (BootAnswer::Http(u), _) => {
            set_file(m, u);
        }
    }
    if answer != BootAnswer::None {
        // PXE clients expect their UUID echoed (PXE 2.1, option 97).
        if let Some(DhcpOption::ClientMachineIdentifier(id)) = req.opts().get(OptionCode::ClientMachineIdentifier) {
            m.opts_mut().insert(DhcpOption::ClientMachineIdentifier(id.clone()));
        }
    }
    answer
}

fn add_network(m: &mut Message, s: &Settings, hostname: Option<&str>, with_lease: bool) {
    m.opts_mut().insert(DhcpOption::SubnetMask(s.netmask));
    if let Some(r) = s.router {
        m.opts_mut().insert(DhcpOption::Router(vec![r]));
    }
    if !s.dns.is_empty() {
        m.opts_mut().insert(DhcpOption::DomainNameServer(s.dns.clone()));
    }
    if let Some(d) = &s.domain {
        m.opts_mut().insert(DhcpOption::DomainName(d.clone()));
    }
    if let Some(h) = hostname {
        m.opts_mut().insert(DhcpOption::Hostname(h.split('.').next().unwrap_or(h).to_string()));
    }
    if with_lease {
        m.opts_mut().insert(DhcpOption::AddressLeaseTime(s.lease_time));
        m.opts_mut().insert(DhcpOption::Renewal(s.lease_time / 2));
        m.opts_mut().insert(DhcpOption::Rebinding(s.lease_time / 8 * 7));
    }
}

fn destination(req: &Message, nak: bool) -> Destination {
    if !req.giaddr().is_unspecified() {
        Destination::Relay(req.giaddr())
    } else if !nak && !req.ciaddr().is_unspecified() {
        Destination::Client(req.ciaddr())
    } else {
        Destination::Broadcast
    }
}

/// An answer's event detail, with the relay it went through (giaddr) when relayed: the
/// dashboard shows where a discovered machine sits.
fn with_relay(mut detail: serde_json::Value, msg: &Message) -> serde_json::Value {
    if !msg.giaddr().is_unspecified() {
        detail["relay"] = json!(msg.giaddr());
    }
    detail
}

fn kind_json(kind: ClientKind) -> serde_json::Value {
    match kind {
        ClientKind::NotBoot => json!("host"),
        ClientKind::Pxe { arch } => json!({ "pxe": arch }),
        ClientKind::Http { arch } => json!({ "http_boot": arch }),
        ClientKind::Ipxe { arch } => json!({ "ipxe": arch }),
    }
}

/// The client's link as a relay names it: the link-selection option (118, RFC 3011) when
/// present, else giaddr.
fn link_address(msg: &Message) -> Ipv4Addr {
    match msg.opts().get(OptionCode::SubnetSelection) {
        Some(DhcpOption::SubnetSelection(ip)) => *ip,
        _ => msg.giaddr(),
    }
}

/// Which of `subnets` (the server's own link first) a request belongs to: the own link
/// for a request that was not relayed; for a relayed one, the subnet holding its link
/// address, or `None` (nobody serves that link).
pub fn select(msg: &Message, subnets: &[&Settings]) -> Option<usize> {
    if msg.giaddr().is_unspecified() {
        return Some(0);
    }
    let link = link_address(msg);
    subnets.iter().position(|s| subnet(link, s.netmask) == subnet(s.network, s.netmask))
}

pub fn handle(req: &Request<'_>, s: &Settings, pool: &mut LeasePool) -> Outcome {
    let msg = req.msg;
    if msg.opcode() != Opcode::BootRequest {
        return Outcome::default();
    }
    let Some(mac) = client_mac(msg) else { return Outcome::default() };
    let Some(mtype) = msg.opts().msg_type() else { return Outcome::default() };
    let kind = classify::classify(msg);
    // A relayed request must come from a configured relay of our subnet (we serve one),
    // judged by who sent it: anyone can put a relay's address in giaddr. A relay sends
    // from giaddr, or from another of its addresses that `dhcp.relays` also names.
    if !msg.giaddr().is_unspecified() {
        let why = if !s.relays.contains(&msg.giaddr()) {
            Some("relay is not in dhcp.relays")
        } else if req.src != msg.giaddr() && !s.relays.contains(&req.src) {
            Some("relayed request sent by a host that is not a relay in dhcp.relays")
        } else if subnet(link_address(msg), s.netmask) != subnet(s.network, s.netmask) {
            Some("relay from a subnet this server does not serve")
        } else {
            None
        };
        if let Some(reason) = why {
            return Outcome {
                event: Some(("dhcp.ignored", json!({ "reason": reason, "giaddr": msg.giaddr(), "sender": req.src }))),
                ..Default::default()
            };
        }
    }
    match s.mode {
        Mode::Full => full(req, s, pool, mac, mtype, kind),
        Mode::Proxy => proxy(req, s, mtype, kind),
    }
}

fn full(req: &Request<'_>, s: &Settings, pool: &mut LeasePool, mac: Mac, mtype: MessageType, kind: ClientKind) -> Outcome {
    let msg = req.msg;
    let now = req.now;
    let host = req.hostname.clone();
    match mtype {
        MessageType::Discover => {
            let ip = match pool.allocate(mac, requested_ip(msg), now) {
                Ok(ip) => ip,
                Err(e) => return Outcome { event: Some(("dhcp.exhausted", json!({ "error": e.to_string() }))), ..Default::default() },
            };
            let lease = pool.offer(mac, ip, now, s.offer_hold, host.clone());
            let mut m = base_reply(msg, MessageType::Offer, s);
            m.set_yiaddr(ip);
            add_network(&mut m, s, host.as_deref(), true);
            let boot = add_boot(&mut m, msg, kind, s, req.shim.as_deref());
            Outcome {
                reply: Some((m, destination(msg, false))),
                lease: Some(lease),
                event: Some(("dhcp.offer", with_relay(json!({ "ip": ip, "client": kind_json(kind), "boot": boot.file() }), msg))),
            }
        }
        MessageType::Request => {
            match server_id(msg) {
                Some(id) if id != s.server_ip => {
                    // The client took another server's offer: ours is free again, in this
                    // pool only. Nothing is written: the store holds no offer of ours to undo
                    // (or, with instances sharing leases, the other server's fresh binding
                    // of this very MAC, which a `released` row would clobber).
                    let freed = pool.lease_of(mac).filter(|l| l.state == bootplane_core::model::LeaseState::Offered).map(|l| l.ip);
                    if let Some(ip) = freed {
                        pool.release(mac, ip, now);
                    }
                    return Outcome { event: Some(("dhcp.declined_offer", json!({ "server": id }))), ..Default::default() };
                }
                _ => {}
            }
            let wanted = if !msg.ciaddr().is_unspecified() { Some(msg.ciaddr()) } else { requested_ip(msg) };
            let Some(ip) = wanted else {
                return Outcome { event: Some(("dhcp.ignored", json!({ "reason": "REQUEST without an address" }))), ..Default::default() };
            };
            match pool.bind(mac, ip, now, s.lease_time as i64, host.clone()) {
                Ok(lease) => {
                    let mut m = base_reply(msg, MessageType::Ack, s);
                    m.set_yiaddr(ip);
                    m.set_ciaddr(msg.ciaddr());
                    add_network(&mut m, s, host.as_deref(), true);
                    let boot = add_boot(&mut m, msg, kind, s, req.shim.as_deref());
                    Outcome {
                        reply: Some((m, destination(msg, false))),
                        lease: Some(lease),
                        event: Some(("dhcp.ack", with_relay(json!({ "ip": ip, "client": kind_json(kind), "boot": boot.file() }), msg))),
                    }
                }
                Err(e) => {
                    let mut m = base_reply(msg, MessageType::Nak, s);
                    m.opts_mut().insert(DhcpOption::Message(e.to_string()));
                    Outcome {
                        reply: Some((m, destination(msg, true))),
                        lease: None,
                        event: Some(("dhcp.nak", json!({ "ip": ip, "reason": e.to_string() }))),
                    }
                }
            }
        }
        // RFC 2131 4.3.3: a DECLINE names us (option 54) and the address it refuses.
        MessageType::Decline => {
            let Some(ip) = requested_ip(msg).filter(|_| server_id(msg) == Some(s.server_ip)) else { return Outcome::default() };
            let lease = pool.decline(mac, ip, now, s.decline_hold);
            Outcome { lease, event: Some(("dhcp.decline", json!({ "ip": ip }))), ..Default::default() }
        }
        MessageType::Release => {
            let lease = pool.release(mac, msg.ciaddr(), now);
            Outcome { lease, event: Some(("dhcp.release", json!({ "ip": msg.ciaddr() }))), ..Default::default() }
        }
        // The ACK goes to ciaddr: only to addresses of the network we serve, so a forged
        // INFORM cannot aim replies at any host.
        MessageType::Inform if subnet(msg.ciaddr(), s.netmask) != subnet(s.network, s.netmask) || msg.ciaddr().is_unspecified() => {
            Outcome { event: Some(("dhcp.ignored", json!({ "reason": "INFORM from outside the served network", "ciaddr": msg.ciaddr() }))), ..Default::default() }
        }
        MessageType::Inform => {
            let mut m = base_reply(msg, MessageType::Ack, s);
            m.set_ciaddr(msg.ciaddr());
            add_network(&mut m, s, host.as_deref(), false);
            Outcome {
                reply: Some((m, destination(msg, false))),
                lease: None,
                event: Some(("dhcp.inform", json!({ "ip": msg.ciaddr() }))),
            }
        }
        _ => Outcome::default(),
    }
}

fn proxy(req: &Request<'_>, s: &Settings, mtype: MessageType, kind: ClientKind) -> Outcome {
    let msg = req.msg;
    if kind == ClientKind::NotBoot {
        return Outcome::default();
    }
    let (reply_type, dest) = match (mtype, req.port) {
        // ProxyDHCP offer, alongside the real server's (PXE 2.1 §2.2.4).
        (MessageType::Discover, 67) => (MessageType::Offer, Destination::Broadcast),
        // The PXE client's request to the boot server port.
        (MessageType::Request, 4011) => (MessageType::Ack, Destination::Source),
        // A request on 67 is for the real DHCP server, unless it names us.
        (MessageType::Request, 67) if server_id(msg) == Some(s.server_ip) => (MessageType::Ack, destination(msg, false)),
        (MessageType::Inform, 4011) => (MessageType::Ack, Destination::Source),
        _ => return Outcome::default(),
    };
    let mut m = base_reply(msg, reply_type, s);
    m.set_ciaddr(msg.ciaddr());
    let boot = add_boot(&mut m, msg, kind, s, req.shim.as_deref());
    // Nothing to boot (a shim machine's HTTP boot option): a proxy offer without a file
    // would only confuse the client; the real DHCP server's offer stands alone.
    if boot == BootAnswer::None {
        return Outcome { event: Some(("dhcp.ignored", json!({ "reason": "no boot file for this client", "client": kind_json(kind) }))), ..Default::default() };
    }
    // A ProxyDHCP offer is recognised by vendor class `PXEClient` (PXE 2.1 §2.2.4); iPXE
    // ignores one without it, even when all it needs is the boot file name.
    if !matches!(m.opts().get(OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(v)) if v == b"HTTPClient") {
        m.opts_mut().insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
        let mut v = PXE_PROXY_VENDOR_OPTIONS.to_vec();
        v.push(255);
        m.opts_mut().insert(DhcpOption::VendorExtensions(v));
    }
    let kind_name = if reply_type == MessageType::Offer { "dhcp.proxy_offer" } else { "dhcp.proxy_ack" };
    Outcome {
        reply: Some((m, dest)),
        lease: None,
        event: Some((kind_name, json!({ "client": kind_json(kind), "boot": boot.file() }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::discover;
    use dhcproto::{Decodable, Encodable};

    #[test]
    fn long_boot_urls_do_not_panic() {
        let mut s = settings(Mode::Full);
        s.server_url = format!("http://{}.example:8080", "x".repeat(200));
        let mut p = pool();
        let d = discover(MAC, Some("PXEClient"), Some(0), Some(b"\x04iPXE"));
        let (offer, _) = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &d, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p)
            .reply
            .unwrap();
        assert!(offer.fname().is_none());
        assert!(matches!(offer.opts().get(OptionCode::BootfileName), Some(DhcpOption::BootfileName(v)) if v.len() > 200));
    }

    fn settings(mode: Mode) -> Settings {
        Settings {
            mode,
            server_ip: "198.18.0.1".parse().unwrap(),
            network: "198.18.0.1".parse().unwrap(),
            netmask: "255.255.255.0".parse().unwrap(),
            router: Some("198.18.0.1".parse().unwrap()),
            dns: vec!["198.18.0.1".parse().unwrap()],
            domain: Some("lab.internal".into()),
            lease_time: 3600,
            boot_files: BootFiles::default(),
            server_url: "http://198.18.0.1:8080".into(),
            offer_hold: 60,
            decline_hold: 600,
            relays: vec!["198.18.0.254".parse().unwrap()],
            shim: false,
        }
    }

    fn pool() -> LeasePool {
        LeasePool::new("198.18.0.50".parse().unwrap(), "198.18.0.60".parse().unwrap())
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 9];

    fn request_for(offer: &Message, mac: [u8; 6]) -> Message {
        let mut r = discover(mac, Some("PXEClient:Arch:00000"), Some(0), None);
        r.set_xid(offer.xid());
        r.opts_mut().insert(DhcpOption::MessageType(MessageType::Request));
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        r.opts_mut().insert(DhcpOption::ServerIdentifier("198.18.0.1".parse().unwrap()));
        r
    }

    #[test]
    fn a_decline_must_name_this_server_and_come_from_the_holder() {
        let s = settings(Mode::Full);
        let mut p = pool();
        let d = discover(MAC, Some("PXEClient:Arch:00000"), Some(0), None);
        let (offer, _) = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &d, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p)
            .reply
            .unwrap();
        let decline = |mac: [u8; 6], server: &str| {
            let mut m = request_for(&offer, mac);
            m.opts_mut().insert(DhcpOption::MessageType(MessageType::Decline));
            m.opts_mut().insert(DhcpOption::ServerIdentifier(server.parse().unwrap()));
            m
        };
        let run = |m: &Message, p: &mut LeasePool| {
            handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: m, port: 67, hostname: None, shim: None, now: 1 }, &s, p).lease
        };
        assert!(run(&decline(MAC, "198.18.0.2"), &mut p).is_none(), "another server's address");
        assert!(run(&decline([0x52, 0x54, 0, 0, 0, 10], "198.18.0.1"), &mut p).is_none(), "not the holder");
        assert!(run(&decline(MAC, "198.18.0.1"), &mut p).is_some_and(|l| l.state == bootplane_core::model::LeaseState::Declined));
    }

    #[test]
    fn full_discover_request_ack() {
        let s = settings(Mode::Full);
        let mut p = pool();
        let d = discover(MAC, Some("PXEClient:Arch:00000"), Some(0), None);
        let o = handle(
            &Request { src: Ipv4Addr::UNSPECIFIED, msg: &d, port: 67, hostname: Some("node1.lab.internal".into()), shim: None, now: 0 },
            &s,
            &mut p,
        );
        let (offer, dest) = o.reply.unwrap();
        assert_eq!(dest, Destination::Broadcast);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(offer.yiaddr(), "198.18.0.50".parse::<Ipv4Addr>().unwrap());
        assert_eq!(offer.fname_str().unwrap().unwrap(), "undionly.kpxe");
        assert_eq!(offer.siaddr(), s.server_ip);
        assert!(matches!(offer.opts().get(OptionCode::Hostname), Some(DhcpOption::Hostname(h)) if h == "node1"));
        // Survives the wire.
        let bytes = offer.to_vec().unwrap();
        assert_eq!(Message::from_bytes(&bytes).unwrap().yiaddr(), offer.yiaddr());

        let r = request_for(&offer, MAC);
        let o = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &r, port: 67, hostname: None, shim: None, now: 1 }, &s, &mut p);
        let (ack, _) = o.reply.unwrap();
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(o.lease.unwrap().state, bootplane_core::model::LeaseState::Bound);
    }

    #[test]
    fn non_boot_clients_get_an_address_but_no_boot_options() {
        let s = settings(Mode::Full);
        let mut p = pool();
        let d = discover(MAC, None, None, None);
        let (offer, _) = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &d, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p)
            .reply
            .unwrap();
        assert!(offer.fname().is_none() && offer.opts().get(OptionCode::BootfileName).is_none());
        assert!(offer.opts().get(OptionCode::ClassIdentifier).is_none());
    }

    #[test]
    fn wrong_address_is_naked_and_other_servers_offer_frees_ours() {
        let s = settings(Mode::Full);
        let mut p = pool();
        let mut r = discover(MAC, None, None, None);
        r.opts_mut().insert(DhcpOption::MessageType(MessageType::Request));
        r.opts_mut().insert(DhcpOption::RequestedIpAddress("10.9.9.9".parse().unwrap()));
        let (nak, dest) = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &r, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p)
            .reply
            .unwrap();
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(dest, Destination::Broadcast);

        let d = discover(MAC, None, None, None);
        handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &d, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p);
        let mut r = discover(MAC, None, None, None);
        r.opts_mut().insert(DhcpOption::MessageType(MessageType::Request));
        r.opts_mut().insert(DhcpOption::ServerIdentifier("198.18.0.2".parse().unwrap()));
        let o = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &r, port: 67, hostname: None, shim: None, now: 1 }, &s, &mut p);
        assert!(o.reply.is_none());
        assert_eq!(p.lease_of(Mac(MAC)).unwrap().state, bootplane_core::model::LeaseState::Released, "free in our pool");
        assert!(o.lease.is_none(), "nothing to write: the store may hold the other server's binding of this MAC");
    }

    #[test]
    fn relayed_requests_go_back_through_the_relay() {
        let s = settings(Mode::Full);
        let mut p = pool();
        let mut d = discover(MAC, Some("PXEClient:Arch:00007"), Some(7), None);
        let relay: Ipv4Addr = "198.18.0.254".parse().unwrap();
        d.set_giaddr(relay);
        let out = handle(&Request { src: relay, msg: &d, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p);
        assert_eq!(out.event.as_ref().unwrap().1["relay"], "198.18.0.254", "the event says which relay");
        let (offer, dest) = out.reply.unwrap();
        assert_eq!(dest, Destination::Relay("198.18.0.254".parse().unwrap()));
        assert_eq!(offer.giaddr(), d.giaddr());
        assert_eq!(offer.fname_str().unwrap().unwrap(), "ipxe.efi");
        // A relay from a foreign subnet is not ours to answer.
        d.set_giaddr("10.0.0.1".parse::<Ipv4Addr>().unwrap());
        assert!(handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &d, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p)
            .reply
            .is_none());
        // Nor is a host of our subnet posing as a relay (finding 12).
        d.set_giaddr("198.18.0.77".parse::<Ipv4Addr>().unwrap());
        let o = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &d, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p);
        assert!(o.reply.is_none() && o.event.is_some_and(|(_, e)| e["reason"] == "relay is not in dhcp.relays"));
        // Nor a host of our link that writes a configured relay's address into giaddr
        // (issue 28, finding 7): the sender is not the relay.
        d.set_giaddr(relay);
        let o = handle(&Request { src: "198.18.0.66".parse().unwrap(), msg: &d, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p);
        assert!(o.reply.is_none(), "a forged giaddr drains the relayed pool");
        assert!(o
            .event
            .is_some_and(|(_, e)| e["sender"] == "198.18.0.66" && e["reason"].as_str().unwrap().contains("not a relay")));
    }

    #[test]
    fn relayed_requests_are_matched_to_their_subnet_by_link_selection_or_giaddr() {
        let local = settings(Mode::Full);
        let rack = Settings {
            network: "198.18.7.100".parse().unwrap(),
            router: Some("198.18.7.1".parse().unwrap()),
            relays: vec!["198.18.7.1".parse().unwrap()],
            ..settings(Mode::Full)
        };
        let subnets = [&local, &rack];
        let mut d = discover(MAC, None, None, None);
        assert_eq!(select(&d, &subnets), Some(0), "not relayed: the server's own link");
        d.set_giaddr("198.18.7.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(select(&d, &subnets), Some(1));
        let mut rack_pool = LeasePool::new("198.18.7.100".parse().unwrap(), "198.18.7.110".parse().unwrap());
        let (offer, dest) =
            handle(&Request { src: "198.18.7.1".parse().unwrap(), msg: &d, port: 67, hostname: None, shim: None, now: 0 }, &rack, &mut rack_pool)
                .reply
                .unwrap();
        assert!(offer.yiaddr().octets()[2] == 7 && dest == Destination::Relay("198.18.7.1".parse().unwrap()));
        assert!(matches!(offer.opts().get(OptionCode::Router), Some(DhcpOption::Router(r)) if r[0] == "198.18.7.1".parse::<Ipv4Addr>().unwrap()));
        // Option 118 names the client's link when the relay's giaddr is elsewhere.
        d.set_giaddr("198.18.0.254".parse::<Ipv4Addr>().unwrap());
        d.opts_mut().insert(DhcpOption::SubnetSelection("198.18.7.0".parse().unwrap()));
        assert_eq!(select(&d, &subnets), Some(1));
        d.opts_mut().insert(DhcpOption::SubnetSelection("10.9.9.0".parse().unwrap()));
        assert_eq!(select(&d, &subnets), None, "a link nobody serves");
    }

    #[test]
    fn inform_answers_only_addresses_of_the_served_network() {
        let s = settings(Mode::Full);
        let mut p = pool();
        let mut m = discover(MAC, None, None, None);
        m.opts_mut().insert(DhcpOption::MessageType(MessageType::Inform));
        m.set_ciaddr("203.0.113.9".parse::<Ipv4Addr>().unwrap());
        assert!(
            handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &m, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p)
                .reply
                .is_none(),
            "a forged INFORM aims at nobody"
        );
        m.set_ciaddr("198.18.0.77".parse::<Ipv4Addr>().unwrap());
        let (_, dest) = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &m, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p)
            .reply
            .unwrap();
        assert_eq!(dest, Destination::Client("198.18.0.77".parse().unwrap()));
    }

    #[test]
    fn proxy_mode_gives_boot_information_only() {
        let s = settings(Mode::Proxy);
        let mut p = pool();
        let d = discover(MAC, Some("PXEClient:Arch:00007:UNDI:003016"), Some(7), None);
        let o = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &d, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p);
        let (offer, _) = o.reply.unwrap();
        assert!(offer.yiaddr().is_unspecified());
        assert!(o.lease.is_none());
        assert_eq!(offer.fname_str().unwrap().unwrap(), "ipxe.efi");
        // Discovery control 8 (use this file name) and a boot menu, so iPXE takes the offer
        // itself as its PXE settings.
        assert!(matches!(offer.opts().get(OptionCode::VendorExtensions), Some(DhcpOption::VendorExtensions(v)) if v[..] == [&PXE_PROXY_VENDOR_OPTIONS[..], &[255]].concat()[..]));
        // iPXE gets the entry script, in an offer marked as ProxyDHCP.
        let ip = discover(MAC, Some("PXEClient:Arch:00000"), Some(0), Some(b"\x04iPXE"));
        let (o, _) = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &ip, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p)
            .reply
            .unwrap();
        assert!(matches!(o.opts().get(OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(v)) if v == b"PXEClient"));
        assert_eq!(o.fname_str().unwrap().unwrap(), "http://198.18.0.1:8080/boot.ipxe");
        // Ordinary hosts are the other server's business.
        let h = discover(MAC, None, None, None);
        assert!(handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &h, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p)
            .reply
            .is_none());
        // The PXE request to port 4011 is answered to its source.
        let mut r = d.clone();
        r.opts_mut().insert(DhcpOption::MessageType(MessageType::Request));
        let (ack, dest) = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &r, port: 4011, hostname: None, shim: None, now: 0 }, &s, &mut p)
            .reply
            .unwrap();
        assert_eq!((ack.opts().msg_type(), dest), (Some(MessageType::Ack), Destination::Source));
        // A plain REQUEST on 67 belongs to the real server.
        assert!(handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &r, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p)
            .reply
            .is_none());
    }

    #[test]
    fn a_shim_machine_gets_shim_over_pxe_and_no_http_boot_file() {
        for mode in [Mode::Full, Mode::Proxy] {
            let s = settings(mode);
            let mut p = pool();
            let d = discover(MAC, Some("PXEClient:Arch:00007:UNDI:003016"), Some(7), None);
            let o = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &d, port: 67, hostname: None, shim: Some(bootplane_core::grub::SHIM_FILE.into()), now: 0 }, &s, &mut p);
            let (offer, _) = o.reply.unwrap();
            assert_eq!(offer.fname_str().unwrap().unwrap(), "shimx64.efi", "{mode:?}");
            assert_eq!(offer.siaddr(), s.server_ip);
            // A bundle's own shim: its TFTP path (GRUB is fetched from beside it).
            let own = "artifacts/fcos@3/shimx64.efi";
            let o = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &d, port: 67, hostname: None, shim: Some(own.into()), now: 0 }, &s, &mut p);
            assert_eq!(o.reply.unwrap().0.fname_str().unwrap().unwrap(), own, "{mode:?}");
            // Its HTTP boot option: an address in full mode, no boot file; nothing in proxy.
            let h = discover(MAC, Some("HTTPClient:Arch:00016:UNDI:003001"), Some(16), None);
            let o = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &h, port: 67, hostname: None, shim: Some(bootplane_core::grub::SHIM_FILE.into()), now: 0 }, &s, &mut p);
            match mode {
                Mode::Full => {
                    let (offer, _) = o.reply.unwrap();
                    assert!(offer.opts().get(OptionCode::BootfileName).is_none() && !offer.yiaddr().is_unspecified());
                }
                Mode::Proxy => assert!(o.reply.is_none() && o.event.is_some_and(|(k, _)| k == "dhcp.ignored")),
            }
            // Without shim the same HTTP client gets iPXE's URL and the HTTPClient class.
            let o = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &h, port: 67, hostname: None, shim: None, now: 0 }, &s, &mut p);
            let (offer, _) = o.reply.unwrap();
            assert_eq!(offer.fname_str().unwrap().unwrap(), "http://198.18.0.1:8080/boot/ipxe.efi");
            assert!(matches!(offer.opts().get(OptionCode::ClassIdentifier), Some(DhcpOption::ClassIdentifier(v)) if v == b"HTTPClient"));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let s = settings(Mode::Full);
        let sp = settings(Mode::Proxy);
        let mut p = pool();
        let mut rng = rand::rngs::StdRng::seed_from_u64(93);
        let valid = discover(MAC, Some("PXEClient:Arch:00000"), Some(0), None).to_vec().unwrap();
        for i in 0..100_000 {
            let mut b = if i % 2 == 0 {
                let len = rng.gen_range(0..600);
                (0..len).map(|_| rng.gen()).collect::<Vec<u8>>()
            } else {
                let mut v = valid.clone();
                for _ in 0..rng.gen_range(1..8) {
                    let j = rng.gen_range(0..v.len());
                    v[j] = rng.gen();
                }
                v.truncate(rng.gen_range(200..v.len() + 1));
                v
            };
            if b.len() >= 240 && rng.gen_bool(0.5) {
                b[236..240].copy_from_slice(&[99, 130, 83, 99]);
            }
            if let Some(m) = decode(&b) {
                let _ = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &m, port: 67, hostname: None, shim: None, now: i }, &s, &mut p);
                let _ = handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &m, port: 4011, hostname: None, shim: None, now: i }, &sp, &mut p);
                if let Some((r, _)) =
                    handle(&Request { src: Ipv4Addr::UNSPECIFIED, msg: &m, port: 67, hostname: None, shim: None, now: i }, &s, &mut p).reply
                {
                    let _ = r.to_vec();
                }
            }
        }
    }
}
