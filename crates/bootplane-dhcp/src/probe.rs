//! A DHCP client for diagnosis (`bootplane dhcp probe`): sends what a PXE ROM, a UEFI
//! HTTP-boot client, iPXE or an ordinary host would send on one interface and reports
//! every answer, from every server. Operators use it to see who answers on a link;
//! the tests use it as the PXE client that `udhcpc`/`dhclient` cannot play (they take the
//! first offer, even a ProxyDHCP one without an address).

use dhcproto::v4::{Architecture, DhcpOption, Flags, Message, MessageType, OptionCode};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub interface: String,
    pub vendor_class: Option<String>,
    pub arch: Option<u16>,
    /// Send user class `iPXE`, as iPXE itself does.
    pub ipxe: bool,
    pub wait: Duration,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Answer {
    pub from: SocketAddr,
    #[serde(rename = "type")]
    pub kind: String,
    pub server_id: Option<Ipv4Addr>,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub file: Option<String>,
    pub vendor_class: Option<String>,
    pub hostname: Option<String>,
    pub subnet_mask: Option<Ipv4Addr>,
}

fn answer(m: &Message, from: SocketAddr) -> Answer {
    let o = m.opts();
    let text = |v: &[u8]| String::from_utf8_lossy(v).to_string();
    let file = match o.get(OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(v)) => Some(text(v)),
        _ => m.fname().map(|f| text(f).trim_end_matches('\0').to_string()).filter(|f| !f.is_empty()),
    };
    Answer {
        from,
        kind: format!("{:?}", o.msg_type().unwrap_or(MessageType::Unknown(0))).to_lowercase(),
        server_id: match o.get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        },
        yiaddr: m.yiaddr(),
        siaddr: m.siaddr(),
        file,
        vendor_class: match o.get(OptionCode::ClassIdentifier) {
            Some(DhcpOption::ClassIdentifier(v)) => Some(text(v)),
            _ => None,
        },
        hostname: match o.get(OptionCode::Hostname) {
            Some(DhcpOption::Hostname(h)) => Some(h.clone()),
            _ => None,
        },
        subnet_mask: match o.get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(m)) => Some(*m),
            _ => None,
        },
    }
}

fn interface_mac(interface: &str) -> std::io::Result<[u8; 6]> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
    for a in addrs {
        if a.interface_name == interface {
            if let Some(mac) = a.address.as_ref().and_then(|s| s.as_link_addr()).and_then(|l| l.addr()) {
                return Ok(mac);
            }
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no link-layer address on {interface}")))
}

impl Probe {
    fn message(&self, mac: &[u8; 6], mtype: MessageType, xid: u32) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(xid, z, z, z, z, mac);
        m.set_flags(Flags::default().set_broadcast());
        m.opts_mut().insert(DhcpOption::MessageType(mtype));
        if let Some(v) = &self.vendor_class {
            m.opts_mut().insert(DhcpOption::ClassIdentifier(v.as_bytes().to_vec()));
        }
        if let Some(a) = self.arch {
            m.opts_mut().insert(DhcpOption::ClientSystemArchitecture(Architecture(a)));
        }
        if self.ipxe {
            m.opts_mut().insert(DhcpOption::UserClass(b"\x04iPXE".to_vec()));
        }
        m
    }

    /// Sends `packet` to `to`, resending it every second as firmware does (a link that
    /// just came up may drop the first one), and collects distinct answers until `wait`,
    /// handing each to `seen` as it arrives.
    async fn exchange(
        &self,
        sock: &tokio::net::UdpSocket,
        packet: &[u8],
        to: SocketAddr,
        xid: u32,
        seen: &mut dyn FnMut(&Answer),
    ) -> std::io::Result<Vec<Answer>> {
        let mut out: Vec<Answer> = Vec::new();
        let mut buf = vec![0u8; 1500];
        let deadline = tokio::time::Instant::now() + self.wait;
        // Firmware backs off too; servers that ping an address before offering it
        // (dnsmasq) answer only after a few seconds.
        let mut resend = tokio::time::interval(Duration::from_millis(2000));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = resend.tick() => {
                    sock.send_to(packet, to).await?;
                }
                r = sock.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { continue };
                    let decoded = crate::policy::decode(&buf[..n]);
                    if decoded.is_none() {
                        eprintln!("probe: ignoring an undecodable {n}-byte answer from {from}");
                    }
                    if let Some(m) = decoded {
                        let a = answer(&m, from);
                        if m.xid() == xid && !out.contains(&a) {
                            seen(&a);
                            out.push(a);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Broadcasts a DISCOVER; with `request`, then REQUESTs the first offer that carries
    /// an address. Returns every answer seen (each also handed to `seen` on arrival).
    pub async fn run(&self, request: bool, seen: &mut dyn FnMut(&Answer)) -> std::io::Result<Vec<Answer>> {
        let mac = interface_mac(&self.interface)?;
        let sock = crate::server::bind(&self.interface, 68)?;
        let xid: u32 = rand_xid();
        let discover = self.message(&mac, MessageType::Discover, xid);
        let to: SocketAddr = (Ipv4Addr::BROADCAST, 67).into();
        let mut answers =
            self.exchange(&sock, &crate::policy::encode(&discover).ok_or_else(|| std::io::Error::other("encode"))?, to, xid, seen).await?;
        if request {
            if let Some(offer) = answers.iter().find(|a| a.kind == "offer" && !a.yiaddr.is_unspecified()).cloned() {
                let mut req = self.message(&mac, MessageType::Request, xid);
                req.opts_mut().insert(DhcpOption::RequestedIpAddress(offer.yiaddr));
                if let Some(id) = offer.server_id {
                    req.opts_mut().insert(DhcpOption::ServerIdentifier(id));
                }
                answers.extend(
                    self.exchange(&sock, &crate::policy::encode(&req).ok_or_else(|| std::io::Error::other("encode"))?, to, xid, seen).await?,
                );
            }
        }
        Ok(answers)
    }

    /// The PXE boot-server request: unicast to `server`:4011 from `client`:68.
    pub async fn pxe_request(&self, server: Ipv4Addr, client: Ipv4Addr, seen: &mut dyn FnMut(&Answer)) -> std::io::Result<Vec<Answer>> {
        let mac = interface_mac(&self.interface)?;
        let sock = crate::server::bind(&self.interface, 68)?;
        let xid = rand_xid();
        let mut req = self.message(&mac, MessageType::Request, xid);
        req.set_ciaddr(client);
        let packet = crate::policy::encode(&req).ok_or_else(|| std::io::Error::other("encode"))?;
        self.exchange(&sock, &packet, SocketAddr::from((server, 4011)), xid, seen).await
    }
}

fn rand_xid() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(13)) | 1
}
