//! The one request an HTTP-FLV connection makes: its head, parsed by `httparse` within a size
//! limit, and the stream it names.
//!
//! Owns: what is accepted (GET, HEAD and OPTIONS of `/APP/STREAM.flv[?query]`, a head of at
//! most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers) and the HTTP status of everything
//! else. Must never: allocate in proportion to what a client sends beyond those limits, or
//! accept a name the RTMP side would refuse (the same length limits apply).

use crate::server::limits::{check_connect, check_stream, MAX_INFO_FIELD};
use crate::server::stream_key;

/// The largest request head read; a longer one is answered 431 and closed.
pub const MAX_HEAD: usize = 8192;
/// Headers parsed at most; more is answered 431.
pub const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
}

/// A request for a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvRequest {
    pub method: Method,
    pub app: String,
    /// The stream name without `.flv` and without the query.
    pub stream: String,
    /// The query without `?` ("" when none).
    pub query: String,
    /// `APP/STREAM`.
    pub key: String,
    /// `Host`, as the client sent it ("" when absent), for the tcUrl hooks see.
    pub host: String,
    pub user_agent: String,
    /// `Referer`, else `Origin` (a web page's address), for hooks' `pageUrl`.
    pub page_url: String,
}

impl FlvRequest {
    /// The stream name with its query, as an RTMP client would ask for it.
    pub fn name_with_query(&self) -> String {
        if self.query.is_empty() {
            self.stream.clone()
        } else {
            format!("{}?{}", self.stream, self.query)
        }
    }
}

/// Why a request is not served, and the status it is answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request head over {MAX_HEAD} bytes or {MAX_HEADERS} headers")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("method {0} not allowed (GET, HEAD, OPTIONS)")]
    Method(String),
    #[error("not a stream: {0} (expected /APP/STREAM.flv)")]
    NotFound(String),
    #[error("bad stream name: {0}")]
    BadName(String),
}

impl RequestError {
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RequestError::TooLarge => (431, "Request Header Fields Too Large"),
            RequestError::Malformed(_) | RequestError::BadName(_) => (400, "Bad Request"),
            RequestError::Method(_) => (405, "Method Not Allowed"),
            RequestError::NotFound(_) => (404, "Not Found"),
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete (and under
/// [`MAX_HEAD`]).
pub fn parse(buf: &[u8]) -> Result<Option<FlvRequest>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Err(RequestError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => Err(RequestError::TooLarge),
        Ok(httparse::Status::Complete(_)) => {
            let method = match req.method.unwrap_or("") {
                "GET" => Method::Get,
                "HEAD" => Method::Head,
                "OPTIONS" => Method::Options,
                other => return Err(RequestError::Method(clip(other))),
            };
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| clip(&String::from_utf8_lossy(h.value)))
                    .unwrap_or_default()
            };
            let (host, user_agent) = (header("host"), header("user-agent"));
            let referer = header("referer");
            let page_url = if referer.is_empty() {
                header("origin")
            } else {
                referer
            };
            let target = req.path.unwrap_or("");
            let (app, stream, query) = split_target(target)?;
            let key = stream_key(&app, &stream);
            check_connect(&app, "", &query).map_err(|e| RequestError::BadName(e.to_string()))?;
            check_stream(&stream, &key).map_err(|e| RequestError::BadName(e.to_string()))?;
            Ok(Some(FlvRequest {
                method,
                app,
                stream,
                query,
                key,
                host,
                user_agent,
                page_url,
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(RequestError::TooLarge),
        Err(e) => Err(RequestError::Malformed(e.to_string())),
    }
}

/// `/live/cam.flv?token=x` -> ("live", "cam", "token=x"); an app may have several segments
/// (`/a/b/cam.flv` -> "a/b"). Percent escapes in the path are decoded.
fn split_target(target: &str) -> Result<(String, String, String), RequestError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let not_found = || RequestError::NotFound(clip(path));
    let path = path.strip_prefix('/').ok_or_else(not_found)?;
    let (app, file) = path.rsplit_once('/').ok_or_else(not_found)?;
    let stream = file.strip_suffix(".flv").ok_or_else(not_found)?;
    let (app, stream) = (decode_path(app), decode_path(stream));
    if app.is_empty()
        || stream.is_empty()
        || app.split('/').any(str::is_empty)
        || [&app, &stream]
            .iter()
            .any(|s| s.chars().any(|c| c.is_control() || c == '?'))
    {
        return Err(not_found());
    }
    Ok((app, stream, query.to_string()))
}

/// Percent-decodes a path segment (`+` stays a `+` in paths); a bad escape is kept.
fn decode_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A client-controlled string cut for logs and hooks.
fn clip(s: &str) -> String {
    crate::server::limits::cut(s, MAX_INFO_FIELD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> Vec<u8> {
        format!("GET {target} HTTP/1.1\r\nHost: edge:8081\r\nUser-Agent: t\r\nOrigin: https://p.example\r\n\r\n")
            .into_bytes()
    }

    #[test]
    fn a_stream_request_names_app_stream_and_query() {
        let r = parse(&get("/live/cam1.flv?token=a%2Fb&zone=eu"))
            .expect("valid")
            .expect("complete");
        assert_eq!(r.method, Method::Get);
        assert_eq!((r.app.as_str(), r.stream.as_str()), ("live", "cam1"));
        assert_eq!(r.query, "token=a%2Fb&zone=eu");
        assert_eq!(r.key, "live/cam1");
        assert_eq!(r.name_with_query(), "cam1?token=a%2Fb&zone=eu");
        assert_eq!(
            (r.host.as_str(), r.page_url.as_str()),
            ("edge:8081", "https://p.example")
        );
        let nested = parse(&get("/a/b/my%20cam.flv"))
            .expect("valid")
            .expect("complete");
        assert_eq!(
            (nested.app.as_str(), nested.stream.as_str()),
            ("a/b", "my cam")
        );
        let head = parse(b"HEAD /live/x.flv HTTP/1.1\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert_eq!(head.method, Method::Head);
    }

    #[test]
    fn everything_else_gets_its_status() {
        assert_eq!(parse(b"GET /live/x.flv HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        for (req, status) in [
            (get("/live/x.mp4"), 404),
            (get("/x.flv"), 404),
            (get("//x.flv"), 404),
            (get("/live//x.flv"), 404),
            (get("/live/.flv"), 404),
            (get("/live/a%00b.flv"), 404),
            (b"POST /live/x.flv HTTP/1.1\r\n\r\n".to_vec(), 405),
            (b"\x16\x03\x01garbage\r\n\r\n".to_vec(), 400),
            (get(&format!("/live/{}.flv", "n".repeat(300))), 400),
            (get(&format!("/{}/x.flv", "a".repeat(300))), 400),
        ] {
            let err = parse(&req).expect_err("refused");
            assert_eq!(
                err.status().0,
                status,
                "{err}: {:?}",
                String::from_utf8_lossy(&req)
            );
        }
        // A head that never ends, or has too many headers: 431, whatever its length.
        let endless = [
            b"GET /live/x.flv HTTP/1.1\r\n".as_slice(),
            &[b'a'; MAX_HEAD],
        ]
        .concat();
        assert_eq!(parse(&endless), Err(RequestError::TooLarge));
        let many: String = (0..40).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET /live/x.flv HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(many.as_bytes()), Err(RequestError::TooLarge));
    }
}
