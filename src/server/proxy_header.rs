//! The PROXY protocol header (HAProxy, versions 1 and 2) that a load balancer puts before the
//! RTMP bytes so that the server learns the client's address
//! (<https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt>).
//!
//! Owns: recognising and parsing one header from the start of a connection. No IO, so it can
//! be fuzzed. Must never: read past what it was given, accept a header longer than the limits
//! below, or panic on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest version 1 header, CRLF included (spec: 107 bytes).
pub const MAX_V1: usize = 107;
/// Longest version 2 header we accept: the 16-byte preamble plus addresses and TLVs. The spec
/// allows 64 KiB of TLVs; load balancers send a few hundred bytes at most.
pub const MAX_V2: usize = 16 + 1024;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Bytes the header took; the RTMP handshake starts after them.
    pub len: usize,
    /// The client as the proxy saw it; `None` for a proxy's own connection (v2 `LOCAL`, a
    /// health check) or an address family it does not name (v1 `UNKNOWN`, v2 `UNSPEC`, UNIX
    /// sockets): the connection's own peer stands.
    pub source: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("expected a PROXY protocol header (rtmp.proxy_protocol is on), got {0:02x?}")]
    Missing(Vec<u8>),
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// Parses the header at the start of `buf`: `Ok(None)` while more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    let prefix_of = |sig: &[u8]| buf.len() < sig.len() && sig.starts_with(buf);
    if buf.starts_with(V2_SIGNATURE) {
        parse_v2(buf)
    } else if buf.starts_with(V1_PREFIX) {
        parse_v1(buf)
    } else if prefix_of(V2_SIGNATURE) || prefix_of(V1_PREFIX) {
        Ok(None)
    } else {
        Err(ProxyHeaderError::Missing(
            buf.iter().take(8).copied().collect(),
        ))
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    let malformed = ProxyHeaderError::Malformed;
    let window = &buf[..buf.len().min(MAX_V1)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= MAX_V1 {
            Err(malformed("version 1 header longer than 107 bytes"))
        } else {
            Ok(None)
        };
    };
    let len = cr + 2;
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr])
        .map_err(|_| malformed("version 1 header is not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.as_slice() {
        ["UNKNOWN", ..] => None,
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = *family == "TCP4";
            let ip = |s: &str| -> Result<IpAddr, ProxyHeaderError> {
                let ip = if v4 {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| malformed("bad address in version 1 header"))
            };
            let port = |s: &str| -> Result<u16, ProxyHeaderError> {
                // Decimal without leading zeros (spec), so "01" and "+1" are refused.
                if s.is_empty()
                    || (s.len() > 1 && s.starts_with('0'))
                    || !s.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(malformed("bad port in version 1 header"));
                }
                s.parse()
                    .map_err(|_| malformed("bad port in version 1 header"))
            };
            ip(dst)?;
            port(dport)?;
            Some(SocketAddr::new(ip(src)?, port(sport)?))
        }
        _ => {
            return Err(malformed(
                "version 1 header: expected TCP4, TCP6 or UNKNOWN and four fields",
            ))
        }
    };
    Ok(Some(ProxyHeader { len, source }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    let malformed = ProxyHeaderError::Malformed;
    let Some(&[ver_cmd, family, hi, lo]) = buf.get(12..16) else {
        return Ok(None);
    };
    if ver_cmd >> 4 != 2 {
        return Err(malformed("version 2 signature with another version"));
    }
    let len = 16 + usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_V2 {
        return Err(malformed("version 2 header longer than 1040 bytes"));
    }
    let Some(body) = buf.get(16..len) else {
        return Ok(None);
    };
    let source = match (ver_cmd & 0x0f, family) {
        // LOCAL: the proxy's own connection (health check); addresses, if any, are ignored.
        (0, _) => None,
        (1, 0x11) => {
            let a = body
                .get(..12)
                .ok_or(malformed("version 2 TCP4 addresses cut short"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([a[8], a[9]]),
            ))
        }
        (1, 0x21) => {
            let a = body
                .get(..36)
                .ok_or(malformed("version 2 TCP6 addresses cut short"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        // UNSPEC, UDP, UNIX: no TCP client address to report.
        (1, _) => None,
        _ => return Err(malformed("version 2 command is neither LOCAL nor PROXY")),
    };
    Ok(Some(ProxyHeader { len, source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn version_1_headers() {
        let h = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n\x03rest";
        assert_eq!(
            parse(h),
            Ok(Some(ProxyHeader {
                len: h.len() - 5,
                source: Some("192.168.0.1:56324".parse().unwrap()),
            }))
        );
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 1935\r\n";
        assert_eq!(
            parse(h).map(|p| p.and_then(|p| p.source)),
            Ok(Some("[2001:db8::1]:4000".parse().unwrap()))
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
            Ok(Some(ProxyHeader {
                len: 35,
                source: None
            }))
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").map(|p| p.map(|p| p.len)),
            Ok(Some(15))
        );
    }

    #[test]
    fn version_2_headers() {
        let mut body = vec![10, 0, 0, 7, 10, 0, 0, 1];
        body.extend_from_slice(&5000u16.to_be_bytes());
        body.extend_from_slice(&1935u16.to_be_bytes());
        body.extend_from_slice(&[0x04, 0, 1, 0xff]); // a TLV, skipped
        let h = v2(1, 0x11, &body);
        assert_eq!(
            parse(&h),
            Ok(Some(ProxyHeader {
                len: h.len(),
                source: Some("10.0.0.7:5000".parse().unwrap()),
            }))
        );
        let mut body = vec![0u8; 36];
        body[15] = 1;
        body[32..34].copy_from_slice(&6000u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &body)).map(|p| p.and_then(|p| p.source)),
            Ok(Some("[::1]:6000".parse().unwrap()))
        );
        let local = v2(0, 0, &[]);
        assert_eq!(
            parse(&local),
            Ok(Some(ProxyHeader {
                len: 16,
                source: None
            }))
        );
    }

    #[test]
    fn partial_headers_ask_for_more() {
        let full = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec();
        let mut body = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
        body.extend_from_slice(&[0; 4]);
        let full2 = v2(1, 0x11, &body);
        for full in [full, full2] {
            for cut in 0..full.len() {
                assert_eq!(parse(&full[..cut]), Ok(None), "cut at {cut}");
            }
            assert!(matches!(parse(&full), Ok(Some(_))));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        // An RTMP client talking directly: C0 = 3.
        assert!(matches!(
            parse(&[3, 0, 0, 0]),
            Err(ProxyHeaderError::Missing(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyHeaderError::Missing(_))
        ));
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..],
            b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyHeaderError::Malformed(_))),
                "{bad:?}"
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 200]].concat();
        assert!(matches!(parse(&long), Err(ProxyHeaderError::Malformed(_))));
        let mut h = v2(1, 0x11, &[0; 4]);
        assert!(
            matches!(parse(&h), Err(ProxyHeaderError::Malformed(_))),
            "short TCP4"
        );
        h[12] = 0x31;
        assert!(
            matches!(parse(&h), Err(ProxyHeaderError::Malformed(_))),
            "version 3"
        );
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(parse(&huge), Err(ProxyHeaderError::Malformed(_))));
    }
}
