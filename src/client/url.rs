//! `rtmp://HOST[:PORT]/APP/STREAM[?query]` and `rtmps://` (RTMP over TLS, port 443 unless
//! given) parsing.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// `rtmps://`: RTMP over TLS.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The application, possibly with slashes (`live/sub` when the stream is the last segment).
    pub app: String,
    /// The stream name, without the query.
    pub stream: String,
    /// Query string without '?', passed along with the stream name (tokens).
    pub query: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("not an rtmp:// or rtmps:// URL: {0}")]
    Scheme(String),
    #[error("bad port in {0}")]
    Port(String),
    #[error("URL needs /APP/STREAM: {0}")]
    Path(String),
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<RtmpUrl, UrlError> {
        let (tls, rest) = match (url.strip_prefix("rtmps://"), url.strip_prefix("rtmp://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(UrlError::Scheme(url.to_string())),
        };
        let default_port = if tls { 443 } else { 1935 };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p.parse().map_err(|_| UrlError::Port(url.to_string()))?;
                (h.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => (authority, default_port),
        };
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let path = path.trim_matches('/');
        let (app, stream) = path
            .rsplit_once('/')
            .ok_or_else(|| UrlError::Path(url.to_string()))?;
        if host.is_empty() || app.is_empty() || stream.is_empty() {
            return Err(UrlError::Path(url.to_string()));
        }
        Ok(RtmpUrl {
            tls,
            host: host.to_string(),
            port,
            app: app.to_string(),
            stream: stream.to_string(),
            query: query.to_string(),
        })
    }

    /// `rtmp://host:port/app` (or `rtmps://`), what `connect` carries as tcUrl.
    pub fn tc_url(&self) -> String {
        format!("{}://{}/{}", self.scheme(), self.authority(), self.app)
    }

    /// `rtmp` or `rtmps`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "rtmps"
        } else {
            "rtmp"
        }
    }

    /// The stream name as sent in play/publish, with its query.
    pub fn stream_with_query(&self) -> String {
        if self.query.is_empty() {
            self.stream.clone()
        } else {
            format!("{}?{}", self.stream, self.query)
        }
    }

    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tc_url(), self.stream_with_query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/live/cam?token=x").expect("url");
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.app.as_str(),
                u.stream.as_str(),
                u.query.as_str()
            ),
            ("127.0.0.1", 1936, "live", "cam", "token=x")
        );
        assert_eq!(u.tc_url(), "rtmp://127.0.0.1:1936/live");
        assert_eq!(u.to_string(), "rtmp://127.0.0.1:1936/live/cam?token=x");
        let u = RtmpUrl::parse("rtmp://example.org/a/b/c").expect("url");
        assert_eq!(
            (u.port, u.app.as_str(), u.stream.as_str()),
            (1935, "a/b", "c")
        );
        let u = RtmpUrl::parse("rtmp://[::1]:1935/live/s").expect("url");
        assert_eq!(u.host, "::1");
        assert_eq!(u.tc_url(), "rtmp://[::1]:1935/live");
    }

    #[test]
    fn rtmps_defaults_to_port_443() {
        let u = RtmpUrl::parse("rtmps://example.org/live/cam?k=v").expect("url");
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.port), ("example.org", 443));
        assert_eq!(u.tc_url(), "rtmps://example.org:443/live");
        assert_eq!(u.to_string(), "rtmps://example.org:443/live/cam?k=v");
        let u = RtmpUrl::parse("rtmps://127.0.0.1:1936/live/cam").expect("url");
        assert_eq!((u.tls, u.port), (true, 1936));
        assert!(!RtmpUrl::parse("rtmp://x/a/b").expect("url").tls);
    }

    #[test]
    fn refuses_bad_urls() {
        assert!(RtmpUrl::parse("http://x/a/b").is_err());
        assert!(RtmpUrl::parse("rtmp://x/onlyapp").is_err());
        assert!(RtmpUrl::parse("rtmp://x:notaport/a/b").is_err());
    }
}
