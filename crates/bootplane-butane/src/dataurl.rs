//! Butane's data-URL encoding of inline and local contents (base/util/url.go
//! MakeDataURL): the shortest of percent-escaped, base64, and base64 of gzip — gzip
//! only when the user did not set `compression`, and only if it is shorter by more than
//! the four bytes "gzip" costs in the output. The gzip bytes come from flate2, not Go's
//! compress/flate, so they differ from Butane's; the decompressed content, the
//! `compression` value and (but near the threshold) the decision are the same.

use base64::Engine;
use std::io::Write;

const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The percent-escaped form alone: `data:,` and the escaped bytes.
pub fn escaped(data: &[u8]) -> String {
    format!("data:,{}", percent_encoding::percent_encode(data, UNRESERVED))
}

/// The bytes of a `data:` URL, percent-escaped or base64 (`None` if it is neither).
pub fn decode(url: &str) -> Option<Vec<u8>> {
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    if meta.ends_with(";base64") {
        base64::engine::general_purpose::STANDARD.decode(data).ok()
    } else {
        Some(percent_encoding::percent_decode_str(data).collect())
    }
}

/// (source, compression)
pub fn make(data: &[u8], user_compression: Option<&str>) -> (String, String) {
    let escaped = escaped(data);
    let b64 = format!("data:;base64,{}", base64::engine::general_purpose::STANDARD.encode(data));
    let mut best = if b64.len() < escaped.len() { b64 } else { escaped };
    if let Some(c) = user_compression {
        return (best, c.to_string());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    if gz.write_all(data).is_ok() {
        if let Ok(z) = gz.finish() {
            let zurl = format!("data:;base64,{}", base64::engine::general_purpose::STANDARD.encode(z));
            if zurl.len() + 4 < best.len() {
                best = zurl;
                return (best, "gzip".into());
            }
        }
    }
    (best, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn shortest_wins() {
        assert_eq!(make(b"xyzzy", None), ("data:,xyzzy".into(), "".into()));
        assert_eq!(make(b"", None), ("data:,".into(), "".into()));
        let (u, c) = make(&[b'z'; 149], None);
        assert_eq!(c, "gzip");
        assert!(u.starts_with("data:;base64,H4sI"));
        let (u, c) = make(&[b'z'; 149], Some("gzip"));
        assert_eq!((u.starts_with("data:,zzz"), c.as_str()), (true, "gzip"));
        assert_eq!(make(&[0xff, 0xfe, 0x00], None).0, "data:,%FF%FE%00");
        assert_eq!(make(&[0xff; 9], None).0, "data:;base64,////////////");
    }
}
