//! The RTMP handshake, plain and the Flash Player 9 digest variant, on rml_rtmp's
//! implementation (which validates C1's digest at either offset and signs S2 as ffmpeg checks).
//! This wrapper only gives it our error type and a shape that cannot be driven past completion.

use rml_rtmp::handshake::{Handshake as RmlHandshake, HandshakeProcessResult, PeerType};

/// C0 + C1 (or S0 + S1) length.
pub const C0C1_LEN: usize = 1 + 1536;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(
        "handshake version byte is {0}, expected 3 (RTMPE and other variants are not supported)"
    )]
    BadVersion(u8),
    #[error("handshake failed: {0}")]
    Protocol(String),
}

pub enum Step {
    /// Send `reply` and feed more bytes.
    Continue { reply: Vec<u8> },
    /// Send `reply`; `remaining` are the first bytes of the chunk stream.
    Done { reply: Vec<u8>, remaining: Vec<u8> },
}

pub struct Handshake {
    inner: RmlHandshake,
    seen_version: bool,
}

impl Handshake {
    pub fn server() -> Self {
        Handshake {
            inner: RmlHandshake::new(PeerType::Server),
            seen_version: false,
        }
    }

    /// A client handshake and the C0+C1 bytes to send first.
    pub fn client() -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut inner = RmlHandshake::new(PeerType::Client);
        let c0c1 = inner
            .generate_outbound_p0_and_p1()
            .map_err(|e| HandshakeError::Protocol(e.to_string()))?;
        Ok((
            Handshake {
                inner,
                seen_version: false,
            },
            c0c1,
        ))
    }

    pub fn process(&mut self, bytes: &[u8]) -> Result<Step, HandshakeError> {
        if !self.seen_version {
            if let Some(&v) = bytes.first() {
                if v != 3 {
                    return Err(HandshakeError::BadVersion(v));
                }
                self.seen_version = true;
            }
        }
        match self.inner.process_bytes(bytes) {
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => Ok(Step::Continue {
                reply: response_bytes,
            }),
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => Ok(Step::Done {
                reply: response_bytes,
                remaining: remaining_bytes,
            }),
            Err(e) => Err(HandshakeError::Protocol(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &mut Handshake, client: &mut Handshake, c0c1: Vec<u8>) -> Vec<u8> {
        let s_reply = match server.process(&c0c1).expect("server c0c1") {
            Step::Continue { reply } => reply,
            Step::Done { .. } => panic!("server done too early"),
        };
        let (c2, rest) = match client.process(&s_reply).expect("client s0s1s2") {
            Step::Done { reply, remaining } => (reply, remaining),
            Step::Continue { reply } => (reply, vec![]),
        };
        assert!(rest.is_empty());
        let mut c2_and_data = c2;
        c2_and_data.extend_from_slice(b"chunks");
        match server.process(&c2_and_data).expect("server c2") {
            Step::Done { remaining, .. } => remaining,
            Step::Continue { .. } => panic!("server not done after c2"),
        }
    }

    #[test]
    fn digest_handshake_completes_and_passes_trailing_bytes() {
        let mut server = Handshake::server();
        let (mut client, c0c1) = Handshake::client().expect("client");
        assert_eq!(c0c1.len(), C0C1_LEN);
        assert_eq!(run(&mut server, &mut client, c0c1), b"chunks");
    }

    #[test]
    fn plain_handshake_completes() {
        // Plain C1: time, zero, then bytes that carry no valid digest.
        let mut c0c1 = vec![3u8, 0, 0, 0, 0, 0, 0, 0, 0];
        c0c1.extend((0..1528).map(|i| (i % 251) as u8));
        let mut server = Handshake::server();
        let reply = match server.process(&c0c1).expect("c0c1") {
            Step::Continue { reply } => reply,
            Step::Done { .. } => panic!("too early"),
        };
        assert_eq!(reply.len(), 1 + 1536 * 2);
        // C2 echoes S1.
        let mut c2 = reply[1..1537].to_vec();
        c2.extend_from_slice(b"x");
        assert!(matches!(
            server.process(&c2).expect("c2"),
            Step::Done { remaining, .. } if remaining == b"x"
        ));
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut server = Handshake::server();
        assert!(matches!(
            server.process(b"GET / HTTP/1.1\r\n"),
            Err(HandshakeError::BadVersion(b'G'))
        ));
    }
}
