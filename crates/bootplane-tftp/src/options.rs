//! Option negotiation (RFC 2347): which requested options the server accepts and the
//! values it answers with in the OACK. Unknown options are ignored, as the RFC asks;
//! out-of-range values are clamped or dropped, never an error.

use std::time::Duration;

/// RFC 1350's block size when no `blksize` is negotiated.
pub const DEFAULT_BLKSIZE: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: usize,
    pub windowsize: u16,
    pub timeout: Duration,
    /// What goes into the OACK, in the client's order. Empty: no OACK, plain RFC 1350.
    pub oack: Vec<(String, String)>,
}

/// Limits the server puts on what clients may ask.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest block size accepted (RFC 2348 allows up to 65464); a block must fit in
    /// one datagram on the path, which the client knows better than we do.
    pub max_blksize: usize,
    pub max_windowsize: u16,
    pub default_timeout: Duration,
    /// Longest `timeout` accepted (RFC 2349 allows 255 s). With the doubling retries a
    /// client asking for 255 s would hold a transfer slot and a socket for hours.
    pub max_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_blksize: 65464, max_windowsize: 64, default_timeout: Duration::from_secs(1), max_timeout: Duration::from_secs(10) }
    }
}

/// `file_size` is `None` when the size is not known in advance (netascii conversion).
pub fn negotiate(requested: &[(String, String)], file_size: Option<u64>, limits: &Limits) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: limits.default_timeout,
        oack: Vec::new(),
    };
    for (k, v) in requested {
        match k.as_str() {
            "blksize" => {
                if let Ok(b) = v.trim().parse::<usize>() {
                    if b >= 8 {
                        n.blksize = b.min(limits.max_blksize);
                        n.oack.push((k.clone(), n.blksize.to_string()));
                    }
                }
            }
            "windowsize" => {
                if let Ok(w) = v.trim().parse::<u32>() {
                    if (1..=65535).contains(&w) {
                        n.windowsize = (w as u16).min(limits.max_windowsize);
                        n.oack.push((k.clone(), n.windowsize.to_string()));
                    }
                }
            }
            // RFC 2349: the OACK can only echo the requested timeout, so a longer one is
            // declined by leaving it out, and the default applies.
            "timeout" => {
                if let Ok(t) = v.trim().parse::<u64>() {
                    if t >= 1 && Duration::from_secs(t) <= limits.max_timeout {
                        n.timeout = Duration::from_secs(t);
                        n.oack.push((k.clone(), t.to_string()));
                    }
                }
            }
            "tsize" => {
                if let Some(size) = file_size {
                    n.oack.push((k.clone(), size.to_string()));
                }
            }
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn accepted_options_are_echoed() {
        let n = negotiate(&opts(&[("blksize", "1468"), ("tsize", "0"), ("windowsize", "16"), ("foo", "1")]), Some(1000), &Limits::default());
        assert_eq!((n.blksize, n.windowsize), (1468, 16));
        assert_eq!(n.oack, opts(&[("blksize", "1468"), ("tsize", "1000"), ("windowsize", "16")]));
    }

    #[test]
    fn bad_values_are_dropped_or_clamped() {
        let n = negotiate(&opts(&[("blksize", "4"), ("timeout", "0"), ("windowsize", "x")]), None, &Limits::default());
        assert!(n.oack.is_empty());
        assert_eq!(n.blksize, DEFAULT_BLKSIZE);
        let n = negotiate(&opts(&[("blksize", "99999"), ("windowsize", "65535"), ("tsize", "0")]), None, &Limits::default());
        assert_eq!(n.oack, opts(&[("blksize", "65464"), ("windowsize", "64")]));
    }
}
