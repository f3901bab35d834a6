//! An HTTP-FLV player for the load tool and the tests: `GET http://HOST:PORT/APP/STREAM.flv`,
//! follow redirects, then read the endless FLV body (chunked or not) tag by tag, without
//! decoding. Never trusts the server: heads, chunk sizes and tags are bounded.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::flv::FlvTag;

/// The largest response head read.
const MAX_HEAD: usize = 16 * 1024;
/// The largest FLV tag accepted (16 MiB, the most its 24-bit size can say).
const MAX_TAG: usize = 1 << 24;

#[derive(Debug, thiserror::Error)]
pub enum HttpFlvError {
    #[error("bad URL {0:?}: expected http://HOST:PORT/APP/STREAM.flv[?query]")]
    Url(String),
    #[error("connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("server answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("bad response: {0}")]
    Protocol(String),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
}

/// `http://host:port/path?q` -> ("host:port", "/path?q").
pub fn split_url(url: &str) -> Result<(String, String), HttpFlvError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpFlvError::Url(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return Err(HttpFlvError::Url(url.to_string())),
    };
    if authority.is_empty() {
        return Err(HttpFlvError::Url(url.to_string()));
    }
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// One HTTP-FLV player connection, past its response head.
pub struct HttpFlvPlayer {
    stream: TcpStream,
    /// Bytes read and not yet consumed (still chunk-framed when `chunked`).
    raw: BytesMut,
    /// De-chunked body bytes not yet parsed into tags.
    body: BytesMut,
    chunked: bool,
    /// Body bytes left in the current chunk.
    chunk_left: usize,
    /// The chunk's trailing CRLF is still to be skipped.
    chunk_crlf: bool,
    /// The zero-size chunk (or EOF) was seen.
    ended: bool,
    flv_header_seen: bool,
    bytes_in: u64,
    /// `host:port` it ended up playing from.
    pub server: String,
    /// The response headers (names lower-cased).
    pub headers: Vec<(String, String)>,
}

impl HttpFlvPlayer {
    /// Requests `url`, following up to `max_redirects` 301/302/307 answers; an answer other
    /// than 200 is an error carrying its status and body.
    pub async fn connect(url: &str, max_redirects: usize) -> Result<HttpFlvPlayer, HttpFlvError> {
        let mut url = url.to_string();
        for _ in 0..=max_redirects {
            let (authority, path) = split_url(&url)?;
            let mut stream = TcpStream::connect(&authority)
                .await
                .map_err(|e| HttpFlvError::Connect(authority.clone(), e))?;
            let _ = stream.set_nodelay(true);
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: ringcast-load\r\nAccept: */*\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            let mut raw = BytesMut::with_capacity(8192);
            let (status, headers, head_len) = loop {
                if stream.read_buf(&mut raw).await? == 0 {
                    return Err(HttpFlvError::Protocol(
                        "closed before the response head".into(),
                    ));
                }
                let mut parsed = [httparse::EMPTY_HEADER; 64];
                let mut resp = httparse::Response::new(&mut parsed);
                match resp.parse(&raw) {
                    Ok(httparse::Status::Complete(len)) => {
                        let headers: Vec<(String, String)> = resp
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect();
                        break (resp.code.unwrap_or(0), headers, len);
                    }
                    Ok(httparse::Status::Partial) if raw.len() < MAX_HEAD => continue,
                    Ok(httparse::Status::Partial) => {
                        return Err(HttpFlvError::Protocol("response head too long".into()))
                    }
                    Err(e) => return Err(HttpFlvError::Protocol(e.to_string())),
                }
            };
            raw.advance(head_len);
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            if matches!(status, 301 | 302 | 307) {
                url = header("location")
                    .ok_or_else(|| HttpFlvError::Protocol(format!("{status} without Location")))?;
                continue;
            }
            if status != 200 {
                // The body of an error is short; read what comes within a moment.
                let _ = tokio::time::timeout(
                    std::time::Duration::from_millis(500),
                    stream.read_buf(&mut raw),
                )
                .await;
                let body = String::from_utf8_lossy(&raw).trim().to_string();
                return Err(HttpFlvError::Status { status, body });
            }
            let chunked =
                header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
            return Ok(HttpFlvPlayer {
                stream,
                raw,
                body: BytesMut::new(),
                chunked,
                chunk_left: 0,
                chunk_crlf: false,
                ended: false,
                flv_header_seen: false,
                bytes_in: head_len as u64,
                server: authority,
                headers,
            });
        }
        Err(HttpFlvError::TooManyRedirects(max_redirects))
    }

    /// Bytes read from the socket so far (head included).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// The next FLV tag; `None` when the body ended.
    pub async fn next_tag(&mut self) -> Result<Option<FlvTag>, HttpFlvError> {
        loop {
            if let Some(tag) = self.parse_tag()? {
                return Ok(Some(tag));
            }
            if self.ended {
                return Ok(None);
            }
            self.dechunk()?;
            if self.parse_ready() {
                continue;
            }
            self.raw.reserve(64 * 1024);
            let n = self.stream.read_buf(&mut self.raw).await?;
            self.bytes_in += n as u64;
            if n == 0 {
                self.ended = true;
                self.dechunk()?;
            }
        }
    }

    /// Whether the body holds a whole header or tag to parse.
    fn parse_ready(&self) -> bool {
        if !self.flv_header_seen {
            return self.body.len() >= 13;
        }
        self.body.len() >= 11 && {
            let size = u32::from_be_bytes([0, self.body[1], self.body[2], self.body[3]]) as usize;
            self.body.len() >= 11 + size + 4
        }
    }

    /// Moves whole chunk payload bytes from `raw` to `body`.
    fn dechunk(&mut self) -> Result<(), HttpFlvError> {
        if !self.chunked {
            let all = self.raw.split();
            self.body.extend_from_slice(&all);
            return Ok(());
        }
        loop {
            if self.chunk_left > 0 {
                let take = self.chunk_left.min(self.raw.len());
                if take == 0 {
                    return Ok(());
                }
                let piece = self.raw.split_to(take);
                self.body.extend_from_slice(&piece);
                self.chunk_left -= take;
                continue;
            }
            if self.chunk_crlf {
                if self.raw.len() < 2 {
                    return Ok(());
                }
                if &self.raw[..2] != b"\r\n" {
                    return Err(HttpFlvError::Protocol("chunk without its CRLF".into()));
                }
                self.raw.advance(2);
                self.chunk_crlf = false;
            }
            let Some(end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                if self.raw.len() > 64 {
                    return Err(HttpFlvError::Protocol("chunk size line too long".into()));
                }
                return Ok(());
            };
            let line = String::from_utf8_lossy(&self.raw[..end]).to_string();
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| HttpFlvError::Protocol(format!("bad chunk size {line:?}")))?;
            self.raw.advance(end + 2);
            if size == 0 {
                self.ended = true;
                return Ok(());
            }
            self.chunk_left = size;
            self.chunk_crlf = true;
        }
    }

    fn parse_tag(&mut self) -> Result<Option<FlvTag>, HttpFlvError> {
        if !self.flv_header_seen {
            if self.body.len() < 13 {
                return Ok(None);
            }
            if &self.body[..3] != b"FLV" {
                return Err(HttpFlvError::Protocol("no FLV signature".into()));
            }
            let header_len =
                u32::from_be_bytes([self.body[5], self.body[6], self.body[7], self.body[8]]);
            if header_len != 9 {
                return Err(HttpFlvError::Protocol(format!(
                    "FLV header of {header_len} bytes"
                )));
            }
            self.body.advance(13);
            self.flv_header_seen = true;
        }
        if self.body.len() < 11 {
            return Ok(None);
        }
        let h = &self.body[..11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        if size > MAX_TAG {
            return Err(HttpFlvError::Protocol(format!("tag of {size} bytes")));
        }
        if self.body.len() < 11 + size + 4 {
            return Ok(None);
        }
        let type_id = h[0] & 0x1f;
        let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        self.body.advance(11);
        let data: Bytes = self.body.split_to(size).freeze();
        self.body.advance(4);
        Ok(Some(FlvTag {
            type_id,
            timestamp,
            data,
        }))
    }

    /// The response header `name` (lower-case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8081/live/x.flv?t=1").expect("url"),
            ("127.0.0.1:8081".to_string(), "/live/x.flv?t=1".to_string())
        );
        assert_eq!(
            split_url("http://edge/live/x.flv").expect("url").0,
            "edge:80"
        );
        assert!(split_url("rtmp://h/live/x").is_err());
        assert!(split_url("http:///x.flv").is_err());
    }

    #[tokio::test]
    async fn reads_tags_across_chunks_and_follows_a_redirect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            // First connection: a redirect to the same server; second: the stream.
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let redirect = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://{addr}/live/b.flv\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = s.write_all(redirect.as_bytes()).await;
            let (mut s, _) = listener.accept().await.expect("accept");
            let _ = s.read(&mut buf).await;
            let mut body = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
            for (t, ts, data) in [(9u8, 0u32, vec![0x17u8, 1, 2]), (8, 23, vec![0xAF, 1])] {
                body.push(t);
                body.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                body.extend_from_slice(&ts.to_be_bytes()[1..]);
                body.extend_from_slice(&[0, 0, 0, 0]);
                body.extend_from_slice(&data);
                body.extend_from_slice(&(data.len() as u32 + 11).to_be_bytes());
            }
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            // Cut mid-tag, in two chunks.
            let (a, b) = body.split_at(20);
            for piece in [a, b] {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            let _ = s.write_all(&out).await;
        });
        let mut p = HttpFlvPlayer::connect(&format!("http://{addr}/live/a.flv"), 2)
            .await
            .expect("connect");
        let first = p.next_tag().await.expect("read").expect("a tag");
        assert_eq!(
            (first.type_id, first.timestamp, &first.data[..]),
            (9, 0, &[0x17u8, 1, 2][..])
        );
        let second = p.next_tag().await.expect("read").expect("a tag");
        assert_eq!((second.type_id, second.timestamp), (8, 23));
        assert!(
            p.next_tag().await.expect("read").is_none(),
            "the zero chunk ends it"
        );
    }
}
