//! The query string of `/v1/boot/ipxe` and `/v1/boot/live` (`mac`, `uuid`, `serial`,
//! `arch`, `platform`), as any LAN host may send it. Parsed strictly and by hand: a
//! malformed escape or a key given twice is an error, where `percent-encoding` (and
//! `form_urlencoded`) pass a bad escape through and keep the last duplicate, which would
//! let two readers of one query see different identities. Pure, so it is fuzzed
//! (fuzz/fuzz_targets/boot_query.rs) without the HTTP server.

use std::collections::HashMap;

/// Longest query string accepted on the boot path; iPXE's own is far shorter.
pub const MAX_QUERY: usize = 2048;

/// The identity keys of a boot query; others are ignored.
const KEYS: [&str; 5] = ["mac", "uuid", "serial", "arch", "platform"];

/// Parses a boot query: each known key at most once, values percent-decoded (`+` is a
/// space) to UTF-8. The error says what was wrong, for the 400 answer.
pub fn parse(raw: &str) -> Result<HashMap<String, String>, String> {
    if raw.len() > MAX_QUERY {
        return Err(format!("query string is {} bytes; at most {MAX_QUERY} are accepted", raw.len()));
    }
    let mut out = HashMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = v.replace('+', " ");
        let v = percent_decode(&v).ok_or_else(|| format!("query parameter `{k}` is not valid percent-encoded UTF-8"))?;
        if KEYS.contains(&k) && out.insert(k.to_string(), v).is_some() {
            return Err(format!("query parameter `{k}` given twice"));
        }
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_refuses_what_it_cannot_read() {
        assert_eq!(parse("mac=52%3A54%3A00%3A00%3A00%3A01&x=1").unwrap()["mac"], "52:54:00:00:00:01");
        assert_eq!(parse("serial=A+B%2B").unwrap()["serial"], "A B+");
        assert!(parse("mac=%zz").is_err());
        assert!(parse("mac=%ff%fe").is_err());
        assert!(parse("mac=a&mac=b").is_err());
        assert!(parse("x=1&x=2").is_ok(), "unknown keys are not read");
        assert!(parse(&"a".repeat(MAX_QUERY + 1)).is_err());
        assert!(parse("serial=%").is_err());
        assert!(parse("serial=%4").is_err());
    }
}
