//! Limits on HTTP connections, so idle or slow sockets cannot take the boot path down: a
//! cap on connections in all and per source address (a rack powering on is many sources
//! with a few connections each; an attacker is one source with many), a deadline for a
//! request's headers (also between keep-alive requests), and the file-descriptor soft
//! limit raised to the hard limit at start, and a stall deadline on every answer we
//! send (a reader that takes nothing for `server.send_stall_timeout` is dropped, so
//! never-read downloads cannot hold slots). Each listener counts its connections on its own. HTTP/1.1 only: no firmware or installer
//! speaks HTTP/2, so h2c is not accepted at all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_source: usize,
    /// From accepting a connection (or finishing a response) to having the next
    /// request's headers.
    pub header_timeout: Duration,
    /// How long a response may make no progress before its connection is dropped:
    /// firmware reading slowly still takes bytes; a socket nobody reads takes none.
    pub send_stall: Duration,
}

impl From<&bootplane_config::ServerSettings> for Limits {
    fn from(s: &bootplane_config::ServerSettings) -> Self {
        Limits {
            max_connections: s.max_connections,
            max_per_source: s.max_connections_per_source,
            header_timeout: s.header_timeout.0,
            send_stall: s.send_stall_timeout.0,
        }
    }
}

/// `stream` with `stall` on its writes (tokio-io-timeout: a write pending that long
/// fails, and hyper drops the connection).
pub fn stall_guard<S>(stream: S, stall: Duration) -> std::pin::Pin<Box<tokio_io_timeout::TimeoutStream<S>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let mut s = tokio_io_timeout::TimeoutStream::new(stream);
    s.set_write_timeout(Some(stall));
    Box::pin(s)
}

/// Open connections, in all and per source.
#[derive(Default)]
pub struct Tracker {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; its slot is given back when it is dropped.
pub struct Slot {
    tracker: Arc<Tracker>,
    ip: IpAddr,
}

impl Tracker {
    /// A slot for a connection from `ip`, or `None` when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Option<Slot> {
        let mut g = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_ip) = &mut *g;
        let mine = by_ip.get(&ip).copied().unwrap_or(0);
        if *total >= limits.max_connections || mine >= limits.max_per_source {
            return None;
        }
        *total += 1;
        by_ip.insert(ip, mine + 1);
        Some(Slot { tracker: self.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.tracker.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_ip) = &mut *g;
        *total -= 1;
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Raises the open-files soft limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
    }
    Some(hard.max(soft))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_source_and_in_all_and_slots_come_back() {
        let t = Arc::new(Tracker::default());
        let l = Limits { max_connections: 3, max_per_source: 2, header_timeout: Duration::from_secs(1), send_stall: Duration::from_secs(1) };
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        let s1 = t.admit(a, &l).unwrap();
        let _s2 = t.admit(a, &l).unwrap();
        assert!(t.admit(a, &l).is_none(), "per source");
        let _s3 = t.admit(b, &l).unwrap();
        assert!(t.admit("198.18.0.3".parse().unwrap(), &l).is_none(), "in all");
        drop(s1);
        assert!(t.admit(a, &l).is_some());
    }
}
