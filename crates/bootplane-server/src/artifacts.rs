//! `/artifacts/{bundle}/{role}`: bundle files from the content store, with Range, HEAD,
//! ETag (the sha256: content-addressed files never change under a name) and
//! If-None-Match. Two paths serve it. [`fast`] answers plain HTTP/1.1 artifact requests
//! straight off the connection with sendfile(2): no user-space copy, no buffer per
//! client, so memory stays flat at any concurrency — hyper has no sendfile, and a
//! streamed body costs a buffer per client and two copies per byte. [`handler`] is the
//! ordinary axum route for everything the fast path does not take (a request that
//! arrives after a non-artifact one on the same connection), same answers.

use crate::Shared;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bootplane_artifacts::range::{self, Answer};
use std::os::fd::AsFd;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A servable file.
pub struct Located {
    pub path: PathBuf,
    pub size: u64,
    pub etag: String,
}

/// Finds `role` of `bundle` in the local content store, or says why not.
/// `bundle` may pin a revision (`name@2`), as the URLs in installer answers do.
pub async fn locate(s: &Shared, bundle: &str, role: &str) -> Result<Located, (StatusCode, String)> {
    let found = match bundle.split_once('@') {
        Some((name, rev)) => match rev.parse::<u32>() {
            Ok(rev) => s.store.bundle_revision(name, rev).await,
            Err(_) => return Err((StatusCode::NOT_FOUND, format!("`{rev}` is not a bundle revision"))),
        },
        None => s.store.bundle(bundle).await,
    };
    let b = match found {
        Ok(Some(b)) => b,
        Ok(None) => return Err((StatusCode::NOT_FOUND, format!("no bundle named `{bundle}`"))),
        Err(e) => return Err((StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"))),
    };
    let art = b.artifact(role).ok_or_else(|| (StatusCode::NOT_FOUND, format!("bundle {bundle} has no {role}")))?;
    let sha = art.sha256.as_deref().unwrap_or("");
    let content = s.content.get().ok_or((StatusCode::NOT_FOUND, "no content store".to_string()))?;
    match content.path(sha) {
        Some(path) => match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && art.size.is_some_and(|n| n != m.len()) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{role} of bundle {bundle}: the bundle says {} bytes, the file with its sha256 has {}; fix the bundle's size", art.size.unwrap_or(0), m.len()),
            )),
            Ok(m) if m.is_file() => Ok(Located { path, size: m.len(), etag: range::etag(sha) }),
            _ if art.url.is_some() => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{role} of bundle {bundle} is being copied from {} and checked against its sha256; retry shortly \
                     (an artifact.failed event says if it cannot be)",
                    bootplane_artifacts::download::redact_url(art.url.as_deref().unwrap_or_default())
                ),
            )),
            _ => Err((
                StatusCode::NOT_FOUND,
                format!("{role} of bundle {bundle} is not in the local store; run `bootplane bundle fetch` or `bundle import`"),
            )),
        },
        None => Err((StatusCode::NOT_FOUND, format!("{role} of bundle {bundle} has no sha256; it is served from its own URL"))),
    }
}

/// The ordinary route.
pub async fn handler(State(s): State<Shared>, method: Method, headers: HeaderMap, Path((bundle, role)): Path<(String, String)>) -> Response {
    let loc = match locate(&s, &bundle, &role).await {
        Ok(l) => l,
        Err((code, msg)) => return (code, format!("{msg}\n")).into_response(),
    };
    let h = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    let answer = range::decide(h(header::RANGE), h(header::IF_NONE_MATCH), h(header::IF_RANGE), loc.size, &loc.etag);
    let (status, start, len) = match answer {
        Answer::NotModified => return (StatusCode::NOT_MODIFIED, [(header::ETAG, loc.etag)]).into_response(),
        Answer::Unsatisfiable => {
            return (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{}", loc.size))]).into_response()
        }
        Answer::Full => (StatusCode::OK, 0, loc.size),
        Answer::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ETAG, &loc.etag)
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{}", start + len - 1, loc.size));
    }
    if method == Method::HEAD {
        return resp.body(axum::body::Body::empty()).unwrap_or_default();
    }
    let file = match tokio::fs::File::open(&loc.path).await {
        Ok(f) => f,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = file;
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let stream = tokio_util_stream(file.take(len));
    resp.body(axum::body::Body::from_stream(stream)).unwrap_or_default()
}

fn tokio_util_stream<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    r: R,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Send {
    futures_util::stream::unfold((r, vec![0u8; 64 * 1024]), |(mut r, mut buf)| async move {
        use tokio::io::AsyncReadExt;
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => Some((Ok(axum::body::Bytes::copy_from_slice(&buf[..n])), (r, buf))),
            Err(e) => Some((Err(e), (r, buf))),
        }
    })
}

/// Whether the bytes at the start of a connection are a request the fast path takes.
pub fn is_fast(peeked: &[u8]) -> Option<bool> {
    const GET: &[u8] = b"GET /artifacts/";
    const HEAD: &[u8] = b"HEAD /artifacts/";
    if peeked.starts_with(GET) || peeked.starts_with(HEAD) {
        return Some(true);
    }
    let could_be = |p: &[u8]| p.starts_with(&peeked[..peeked.len().min(p.len())]);
    if peeked.len() < HEAD.len() && (could_be(GET) || could_be(HEAD)) {
        None // not enough bytes to tell yet
    } else {
        Some(false)
    }
}

pub mod fast {
    use super::*;

    fn get_header<'a>(req: &httparse::Request<'_, 'a>, name: &str) -> Option<&'a str> {
        req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).and_then(|h| std::str::from_utf8(h.value).ok())
    }

    /// Serves artifact requests on `stream` until it closes or a request arrives that
    /// the fast path does not take. Returns `true` when the caller should hand the
    /// (untouched) rest of the connection to hyper.
    pub async fn serve(s: &Shared, stream: &mut TcpStream, limits: &crate::conn::Limits) -> std::io::Result<bool> {
        let header_timeout = limits.header_timeout;
        let mut buf = vec![0u8; 8192];
        loop {
            // Peek until the headers are complete, without consuming anything yet; a
            // client that sends nothing (or never ends its headers) is dropped.
            let deadline = tokio::time::Instant::now() + header_timeout;
            let mut waited = 0;
            let (n, head_len) = loop {
                let Ok(peeked) = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await else { return Ok(false) };
                let n = peeked?;
                if n == 0 {
                    return Ok(false);
                }
                match is_fast(&buf[..n]) {
                    Some(false) => return Ok(true),
                    None => {}
                    Some(true) => {
                        if let Some(i) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
                            break (n, i + 4);
                        }
                        if n == buf.len() {
                            respond_plain(stream, 431, "request headers too large").await?;
                            return Ok(false);
                        }
                    }
                }
                waited += 1;
                if waited > 200 {
                    return Ok(false);
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            };
            let _ = n;
            let mut head = vec![0u8; head_len];
            tokio::io::AsyncReadExt::read_exact(stream, &mut head).await?;
            let mut hdrs = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut hdrs);
            if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
                respond_plain(stream, 400, "malformed request").await?;
                return Ok(false);
            }
            // GET and HEAD carry no body; one that does would be read as the next request.
            let get = |name: &str| get_header(&req, name);
            if get("content-length").is_some_and(|v| v.trim() != "0") || get("transfer-encoding").is_some() {
                respond_plain(stream, 400, "a GET or HEAD request has no body").await?;
                return Ok(false);
            }
            let is_head = req.method == Some("HEAD");
            let path = req.path.unwrap_or("");
            let http10 = req.version == Some(0);
            let close = get("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) || (http10 && !get("connection").is_some_and(|c| c.eq_ignore_ascii_case("keep-alive")));
            let parts: Vec<&str> = path.trim_start_matches("/artifacts/").split('?').next().unwrap_or("").split('/').collect();
            let (bundle, role) = match parts.as_slice() {
                [b, r] if !b.is_empty() && !r.is_empty() => (b.to_string(), r.to_string()),
                _ => {
                    respond_plain(stream, 404, "expected /artifacts/{bundle}/{role}").await?;
                    if close { return Ok(false) } else { continue }
                }
            };
            let loc = match locate(s, &bundle, &role).await {
                Ok(l) => l,
                Err((code, msg)) => {
                    respond_plain(stream, code.as_u16(), &msg).await?;
                    if close { return Ok(false) } else { continue }
                }
            };
            let answer = range::decide(get("range"), get("if-none-match"), get("if-range"), loc.size, &loc.etag);
            let conn = if close { "close" } else { "keep-alive" };
            let (status, reason, start, len, extra) = match answer {
                Answer::NotModified => {
                    let h = format!("HTTP/1.1 304 Not Modified\r\nETag: {}\r\nConnection: {conn}\r\n\r\n", loc.etag);
                    stream.write_all(h.as_bytes()).await?;
                    if close { return Ok(false) } else { continue }
                }
                Answer::Unsatisfiable => {
                    let h = format!(
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: {conn}\r\n\r\n",
                        loc.size
                    );
                    stream.write_all(h.as_bytes()).await?;
                    if close { return Ok(false) } else { continue }
                }
                Answer::Full => (200, "OK", 0, loc.size, String::new()),
                Answer::Partial { start, end } => {
                    (206, "Partial Content", start, end - start + 1, format!("Content-Range: bytes {start}-{end}/{}\r\n", loc.size))
                }
            };
            let h = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nETag: {}\r\nAccept-Ranges: bytes\r\n{extra}Connection: {conn}\r\n\r\n",
                loc.etag
            );
            stream.write_all(h.as_bytes()).await?;
            if !is_head && len > 0 {
                let file = std::fs::File::open(&loc.path)?;
                sendfile_all(stream, &file, start, len, limits.send_stall).await?;
            }
            if close {
                return Ok(false);
            }
        }
    }

    async fn respond_plain(stream: &mut TcpStream, code: u16, msg: &str) -> std::io::Result<()> {
        let body = format!("{msg}\n");
        let reason = match code {
            400 => "Bad Request",
            404 => "Not Found",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let h = format!("HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        stream.write_all(h.as_bytes()).await
    }

    async fn sendfile_all(stream: &TcpStream, file: &std::fs::File, start: u64, len: u64, stall: std::time::Duration) -> std::io::Result<()> {
        let mut offset = start as i64;
        let mut left = len;
        while left > 0 {
            // A reader that takes nothing for this long holds a slot for nothing.
            tokio::time::timeout(stall, stream.writable())
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the client read nothing for too long"))??;
            let r = stream.try_io(tokio::io::Interest::WRITABLE, || {
                let count = left.min(1 << 30) as usize;
                nix::sys::sendfile::sendfile64(stream.as_fd(), file.as_fd(), Some(&mut offset), count).map_err(std::io::Error::from)
            });
            match r {
                Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shorter than its size")),
                Ok(n) => left -= n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::super::is_fast;
        #[test]
        fn prefix_detection() {
            assert_eq!(is_fast(b"GET /artifacts/a/b HTTP/1.1\r\n"), Some(true));
            assert_eq!(is_fast(b"HEAD /artifacts/a/kernel"), Some(true));
            assert_eq!(is_fast(b"GET /v1/machines HTTP/1.1"), Some(false));
            assert_eq!(is_fast(b"GET /art"), None);
            assert_eq!(is_fast(b"POST /artifacts/"), Some(false));
            assert_eq!(is_fast(b"G"), None);
        }
    }
}
