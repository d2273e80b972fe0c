//! The HTTP decision for one artifact request (RFC 9110 §13–14): 304 for a matching
//! `If-None-Match`, 206 for one satisfiable byte range (honouring `If-Range`), 416 for a
//! range that starts past the end, and the whole file otherwise. Several ranges in one
//! request are answered with the whole file, which RFC 9110 allows and every download
//! client accepts. Pure, so the sendfile fast path and the ordinary handler share it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Full,
    /// Inclusive byte positions.
    Partial { start: u64, end: u64 },
    NotModified,
    Unsatisfiable,
}

/// The strong ETag of content-addressed data: its sha256, quoted.
pub fn etag(sha256: &str) -> String {
    format!("\"{sha256}\"")
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

pub fn decide(range: Option<&str>, if_none_match: Option<&str>, if_range: Option<&str>, size: u64, etag: &str) -> Answer {
    if if_none_match.is_some_and(|l| etag_matches(l, etag)) {
        return Answer::NotModified;
    }
    let Some(r) = range else { return Answer::Full };
    if if_range.is_some_and(|v| v.trim() != etag) {
        return Answer::Full;
    }
    let Some(spec) = r.trim().strip_prefix("bytes=") else { return Answer::Full };
    if spec.contains(',') {
        return Answer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Answer::Full };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), _) if start >= size => Answer::Unsatisfiable,
        (Ok(start), Ok(end)) if end >= start => Answer::Partial { start, end: end.min(size - 1) },
        (Ok(start), Err(_)) if b.is_empty() => Answer::Partial { start, end: size - 1 },
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 || size == 0 {
                Answer::Unsatisfiable
            } else {
                Answer::Partial { start: size.saturating_sub(n), end: size - 1 }
            }
        }
        _ => Answer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let e = etag("ab");
        let d = |r: Option<&str>| decide(r, None, None, 100, &e);
        assert_eq!(d(None), Answer::Full);
        assert_eq!(d(Some("bytes=0-9")), Answer::Partial { start: 0, end: 9 });
        assert_eq!(d(Some("bytes=90-")), Answer::Partial { start: 90, end: 99 });
        assert_eq!(d(Some("bytes=-10")), Answer::Partial { start: 90, end: 99 });
        assert_eq!(d(Some("bytes=50-500")), Answer::Partial { start: 50, end: 99 });
        assert_eq!(d(Some("bytes=100-")), Answer::Unsatisfiable);
        assert_eq!(d(Some("bytes=-0")), Answer::Unsatisfiable);
        assert_eq!(d(Some("bytes=0-1,5-6")), Answer::Full);
        assert_eq!(d(Some("bytes=9-2")), Answer::Full);
        assert_eq!(d(Some("items=0-1")), Answer::Full);
        assert_eq!(d(Some("bytes=x-y")), Answer::Full);
    }

    #[test]
    fn validators() {
        let e = etag("ab");
        assert_eq!(decide(None, Some("\"ab\""), None, 10, &e), Answer::NotModified);
        assert_eq!(decide(None, Some("\"zz\", W/\"ab\""), None, 10, &e), Answer::NotModified);
        assert_eq!(decide(Some("bytes=0-1"), None, Some("\"ab\""), 10, &e), Answer::Partial { start: 0, end: 1 });
        assert_eq!(decide(Some("bytes=0-1"), None, Some("\"old\""), 10, &e), Answer::Full);
    }
}
