//! The sockets: one listening socket for requests, one socket per transfer. Transfers
//! are windowed (RFC 7440): up to `windowsize` blocks go out, the client's ACK of the
//! last block it has in order slides the window, and a timeout resends from the first
//! unacknowledged block with the timeout doubled, up to `max_retries` times. Duplicate
//! ACKs never trigger a resend (Sorcerer's Apprentice, RFC 1350 errata).

use crate::options::{negotiate, Limits};
use crate::packet::{code, encode_data, Packet};
use crate::path::{normalise, resolve};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::UdpSocket;

/// Files bigger than this are refused: TFTP is for first-stage loaders, not images.
pub const MAX_FILE: u64 = 512 * 1024 * 1024;
/// Files up to this size are cached in memory and shared by concurrent transfers.
const CACHE_FILE: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct TftpConfig {
    pub listen: SocketAddr,
    pub root: PathBuf,
    pub limits: Limits,
    pub max_retries: u32,
    pub max_transfers: usize,
    /// Concurrent transfers one client address may hold (a PXE client needs one).
    pub max_per_client: usize,
    /// A transfer still running after this long is abandoned, however it is paced.
    pub max_transfer_time: Duration,
    /// Files outside `root` that symlinks inside it may point to.
    pub allowed_outside: Vec<PathBuf>,
}

impl TftpConfig {
    pub fn new(listen: SocketAddr, root: PathBuf) -> Self {
        TftpConfig {
            listen,
            root,
            limits: Limits::default(),
            max_retries: 6,
            max_transfers: 1024,
            max_per_client: 8,
            max_transfer_time: Duration::from_secs(600),
            allowed_outside: Vec::new(),
        }
    }
}

/// What a [`FileSource`] answers for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// Made for this request (e.g. `pxelinux.cfg/...`).
    Bytes(Vec<u8>),
    /// A file outside the root the name stands for (a bundle file, a signed loader):
    /// served like a root file, with its size limit and cache.
    File(PathBuf),
}

/// Generated and mapped names, consulted before the root directory.
#[async_trait]
pub trait FileSource: Send + Sync + 'static {
    async fn generated(&self, rel: &Path, client: SocketAddr) -> Option<Generated>;
}

/// No generated files.
pub struct RootOnly;
#[async_trait]
impl FileSource for RootOnly {
    async fn generated(&self, _: &Path, _: SocketAddr) -> Option<Generated> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    Served { client: SocketAddr, file: String, bytes: u64, blksize: usize, windowsize: u16, elapsed: Duration, retransmits: u32 },
    NotFound { client: SocketAddr, file: String },
    Refused { client: SocketAddr, file: String, reason: String },
    Failed { client: SocketAddr, file: String, reason: String },
    /// The client answered the OACK with an ERROR instead of ACK 0: it declined the
    /// options. UEFI PXE does this on purpose (it asks for tsize, aborts, asks again).
    Declined { client: SocketAddr, file: String, code: u16, message: String },
}

/// What a transfer sends: shared bytes (generated, cached or converted), or a file too
/// large to cache read block by block, so slow clients of a big file never each hold a
/// copy of it.
pub enum Body {
    Bytes(Arc<Vec<u8>>),
    File { file: Arc<std::fs::File>, len: u64 },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// Bytes `start..start + out.len()` (fewer at the end); `out` is at most one block.
    fn read_at(&self, start: u64, out: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Body::Bytes(b) => {
                let from = (start as usize).min(b.len());
                let n = out.len().min(b.len() - from);
                out[..n].copy_from_slice(&b[from..from + n]);
                Ok(n)
            }
            // One pread per block, from the page cache for a file being served.
            Body::File { file, len } => {
                let want = out.len().min(len.saturating_sub(start) as usize);
                let mut got = 0;
                while got < want {
                    match std::os::unix::fs::FileExt::read_at(&**file, &mut out[got..want], start + got as u64)? {
                        0 => break,
                        n => got += n,
                    }
                }
                Ok(got)
            }
        }
    }
}

/// Why a transfer did not complete.
enum SendError {
    Declined { code: u16, message: String },
    Failed(String),
}

impl From<std::io::Error> for SendError {
    fn from(e: std::io::Error) -> Self {
        SendError::Failed(e.to_string())
    }
}

/// Retransmission state shared by the OACK and data phases: the timeout doubles on
/// each expiry up to 8x the negotiated one, and progress resets it.
struct Retry {
    base: Duration,
    timeout: Duration,
    tries: u32,
    max_tries: u32,
    retransmits: u32,
}

impl Retry {
    fn new(base: Duration, max_tries: u32) -> Self {
        Retry { base, timeout: base, tries: 0, max_tries, retransmits: 0 }
    }

    /// Counts an expiry; false once the retries are spent.
    fn expired(&mut self) -> bool {
        self.tries += 1;
        self.retransmits += 1;
        self.timeout = (self.timeout * 2).min(self.base * 8);
        self.tries <= self.max_tries
    }

    fn progress(&mut self) {
        self.tries = 0;
        self.timeout = self.base;
    }
}

pub trait Observer: Send + Sync + 'static {
    fn event(&self, e: TransferEvent);
}

impl<F: Fn(TransferEvent) + Send + Sync + 'static> Observer for F {
    fn event(&self, e: TransferEvent) {
        self(e)
    }
}

type CacheKey = (PathBuf, u64, SystemTime);
/// A file's contents, valid while its [`CacheKey`] is unchanged.
type Cached = (CacheKey, Arc<Vec<u8>>);

pub struct TftpServer {
    cfg: TftpConfig,
    root: PathBuf,
    source: Arc<dyn FileSource>,
    observer: Arc<dyn Observer>,
    cache: Mutex<HashMap<PathBuf, Cached>>,
    active: Mutex<HashSet<SocketAddr>>,
}

enum Opened {
    Content(Body),
    Error(u16, String, TransferEvent),
}

impl TftpServer {
    pub fn new(cfg: TftpConfig, source: Arc<dyn FileSource>, observer: Arc<dyn Observer>) -> std::io::Result<Arc<Self>> {
        let root = cfg.root.canonicalize().map_err(|e| {
            std::io::Error::new(e.kind(), format!("TFTP root {}: {e}", cfg.root.display()))
        })?;
        Ok(Arc::new(TftpServer {
            cfg,
            root,
            source,
            observer,
            cache: Mutex::new(HashMap::new()),
            active: Mutex::new(HashSet::new()),
        }))
    }

    pub async fn bind(&self) -> std::io::Result<UdpSocket> {
        UdpSocket::bind(self.cfg.listen).await
    }

    /// Serves requests arriving on `socket` until the task is dropped.
    pub async fn run(self: Arc<Self>, socket: UdpSocket) -> std::io::Result<()> {
        let local_ip = socket.local_addr()?.ip();
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, client) = match socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("tftp: receive failed: {e}");
                    continue;
                }
            };
            let pkt = match Packet::parse(&buf[..n]) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(%client, "tftp: ignoring malformed packet: {e}");
                    continue;
                }
            };
            match pkt {
                Packet::Rrq { filename, mode, options } => {
                    let busy = {
                        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
                        if active.contains(&client) {
                            // The client resent its request before our first answer came.
                            continue;
                        }
                        let same_host = active.iter().filter(|a| a.ip() == client.ip()).count();
                        let busy = active.len() >= self.cfg.max_transfers || same_host >= self.cfg.max_per_client;
                        if !busy {
                            active.insert(client);
                        }
                        busy
                    };
                    if busy {
                        let e = Packet::Error { code: code::NOT_DEFINED, message: "server busy, retry".into() };
                        let _ = socket.send_to(&e.encode(), client).await;
                        continue;
                    }
                    let me = self.clone();
                    tokio::spawn(async move {
                        let file = filename.clone();
                        let limit = me.cfg.max_transfer_time;
                        if tokio::time::timeout(limit, me.transfer(local_ip, client, filename, mode, options)).await.is_err() {
                            let reason = format!("abandoned after {} s", limit.as_secs());
                            me.observer.event(TransferEvent::Failed { client, file, reason });
                        }
                        me.active.lock().unwrap_or_else(|p| p.into_inner()).remove(&client);
                    });
                }
                Packet::Wrq { filename } => {
                    let e = Packet::Error { code: code::ACCESS_VIOLATION, message: "read-only server".into() };
                    let _ = socket.send_to(&e.encode(), client).await;
                    self.observer.event(TransferEvent::Refused { client, file: filename, reason: "write request".into() });
                }
                // Stray DATA/ACK/ERROR/OACK to the request port belong to no transfer.
                _ => {}
            }
        }
    }

    async fn open(&self, client: SocketAddr, name: &str, netascii: bool) -> Opened {
        let refused = |reason: String| {
            Opened::Error(
                code::ACCESS_VIOLATION,
                "access violation".into(),
                TransferEvent::Refused { client, file: name.to_string(), reason },
            )
        };
        let not_found = || {
            Opened::Error(code::FILE_NOT_FOUND, "file not found".into(), TransferEvent::NotFound { client, file: name.to_string() })
        };
        let rel = match normalise(name) {
            Ok(r) => r,
            Err(e) => return refused(e.to_string()),
        };
        let path = match self.source.generated(&rel, client).await {
            Some(Generated::Bytes(bytes)) => {
                return Opened::Content(Body::Bytes(Arc::new(if netascii { to_netascii(&bytes) } else { bytes })))
            }
            Some(Generated::File(path)) => path,
            None => match resolve(&self.root, &rel, &self.cfg.allowed_outside) {
                Ok(Some(p)) => p,
                Ok(None) => return not_found(),
                Err(e) => return refused(e.to_string()),
            },
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            _ => return not_found(),
        };
        if meta.len() > MAX_FILE {
            return refused(format!("{} bytes is too large for TFTP; serve it over HTTP", meta.len()));
        }
        let key: CacheKey = (path.clone(), meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        if !netascii {
            if let Some((k, data)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&path) {
                if *k == key {
                    return Opened::Content(Body::Bytes(data.clone()));
                }
            }
        }
        if !netascii && meta.len() > CACHE_FILE {
            return match std::fs::File::open(&path) {
                Ok(f) => Opened::Content(Body::File { file: Arc::new(f), len: meta.len() }),
                Err(e) => refused(format!("cannot read: {e}")),
            };
        }
        let data = match tokio::fs::read(&path).await {
            Ok(d) => d,
            Err(e) => return refused(format!("cannot read: {e}")),
        };
        if netascii {
            return Opened::Content(Body::Bytes(Arc::new(to_netascii(&data))));
        }
        let data = Arc::new(data);
        if meta.len() <= CACHE_FILE {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= 64 {
                cache.clear();
            }
            cache.insert(path, (key, data.clone()));
        }
        Opened::Content(Body::Bytes(data))
    }

    async fn transfer(&self, local_ip: std::net::IpAddr, client: SocketAddr, name: String, mode: String, options: Vec<(String, String)>) {
        let sock = match UdpSocket::bind(SocketAddr::new(local_ip, 0)).await {
            Ok(s) => s,
            Err(e) => {
                self.observer.event(TransferEvent::Failed { client, file: name, reason: format!("no socket: {e}") });
                return;
            }
        };
        if sock.connect(client).await.is_err() {
            return;
        }
        let send_err = |code: u16, msg: String| {
            let p = Packet::Error { code, message: msg }.encode();
            let sock = &sock;
            async move {
                let _ = sock.send(&p).await;
            }
        };
        let netascii = match mode.as_str() {
            "octet" => false,
            "netascii" => true,
            other => {
                send_err(code::ILLEGAL_OPERATION, format!("mode {other} not supported")).await;
                self.observer.event(TransferEvent::Refused { client, file: name, reason: format!("mode {other}") });
                return;
            }
        };
        let data = match self.open(client, &name, netascii).await {
            Opened::Content(d) => d,
            Opened::Error(code, msg, ev) => {
                send_err(code, msg).await;
                self.observer.event(ev);
                return;
            }
        };
        let n = negotiate(&options, Some(data.len()), &self.cfg.limits);
        let started = Instant::now();
        match self.send_file(&sock, &data, &n).await {
            Ok(retransmits) => self.observer.event(TransferEvent::Served {
                client,
                file: name,
                bytes: data.len(),
                blksize: n.blksize,
                windowsize: n.windowsize,
                elapsed: started.elapsed(),
                retransmits,
            }),
            Err(SendError::Declined { code, message }) => {
                self.observer.event(TransferEvent::Declined { client, file: name, code, message })
            }
            Err(SendError::Failed(reason)) => self.observer.event(TransferEvent::Failed { client, file: name, reason }),
        }
    }

    /// Sends `data`; returns the number of retransmissions.
    async fn send_file(&self, sock: &UdpSocket, data: &Body, n: &crate::options::Negotiated) -> Result<u32, SendError> {
        let mut buf = vec![0u8; 65536];
        let mut retry = Retry::new(n.timeout, self.cfg.max_retries);

        if !n.oack.is_empty() {
            let oack = Packet::Oack { options: n.oack.clone() }.encode();
            'oack: loop {
                sock.send(&oack).await?;
                let deadline = tokio::time::Instant::now() + retry.timeout;
                loop {
                    match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                        Ok(Ok(len)) => match Packet::parse(&buf[..len]) {
                            Ok(Packet::Ack { block: 0 }) => break 'oack,
                            Ok(Packet::Error { code, message }) => return Err(SendError::Declined { code, message }),
                            _ => {}
                        },
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_) => {
                            if !retry.expired() {
                                return Err(SendError::Failed("no ACK for OACK".into()));
                            }
                            break;
                        }
                    }
                }
            }
            retry.progress();
        }

        let bs = n.blksize;
        // The last block is shorter than blksize, possibly empty.
        let total: u64 = data.len() / bs as u64 + 1;
        let mut acked: u64 = 0;
        let mut pkt = Vec::with_capacity(bs + 4);
        let mut block = vec![0u8; bs];
        while acked < total {
            let end = (acked + n.windowsize as u64).min(total);
            for b in acked + 1..=end {
                let got = data.read_at((b - 1) * bs as u64, &mut block)?;
                encode_data(&mut pkt, b as u16, &block[..got]);
                sock.send(&pkt).await?;
            }
            let deadline = tokio::time::Instant::now() + retry.timeout;
            loop {
                match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                    Ok(Ok(len)) => match Packet::parse(&buf[..len]) {
                        Ok(Packet::Ack { block }) => {
                            let diff = block.wrapping_sub(acked as u16) as u64;
                            if diff >= 1 && diff <= end - acked {
                                acked += diff;
                                retry.progress();
                                break;
                            }
                            // Duplicate or stale ACK: wait for the timeout.
                        }
                        Ok(Packet::Error { code, message }) => {
                            return Err(SendError::Failed(format!("client aborted ({code}: {message})")))
                        }
                        _ => {}
                    },
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => {
                        if !retry.expired() {
                            return Err(SendError::Failed(format!("timed out at block {}", acked + 1)));
                        }
                        break;
                    }
                }
            }
        }
        Ok(retry.retransmits)
    }
}

/// RFC 764 line endings: LF -> CR LF, CR -> CR NUL.
fn to_netascii(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + b.len() / 16);
    for &c in b {
        match c {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netascii_conversion() {
        assert_eq!(to_netascii(b"a\nb\rc"), b"a\r\nb\r\0c");
    }
}
