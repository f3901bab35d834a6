//! Protocol control and user control messages: parse what peers send, build what we send.

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("{what} message is {len} bytes, expected at least {need}")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
}

/// Reads the leading big-endian u32 of a control message (ack, window size, set chunk size).
pub fn read_u32(what: &'static str, payload: &[u8]) -> Result<u32, MessageError> {
    match payload {
        [a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(MessageError::Short {
            what,
            len: payload.len(),
            need: 4,
        }),
    }
}

/// User control events (message type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        millis: u32,
    },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    /// An event type we do not act on (e.g. Flash's SWF verification); kept for the log.
    Other(u16),
}

impl UserControl {
    pub fn parse(payload: &[u8]) -> Result<UserControl, MessageError> {
        let short = |need| MessageError::Short {
            what: "user control",
            len: payload.len(),
            need,
        };
        if payload.len() < 2 {
            return Err(short(2));
        }
        let event = u16::from_be_bytes([payload[0], payload[1]]);
        let arg = |at: usize| {
            payload
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(short(at + 4))
        };
        Ok(match event {
            0 => UserControl::StreamBegin(arg(2)?),
            1 => UserControl::StreamEof(arg(2)?),
            2 => UserControl::StreamDry(arg(2)?),
            3 => UserControl::SetBufferLength {
                stream_id: arg(2)?,
                millis: arg(6)?,
            },
            4 => UserControl::StreamIsRecorded(arg(2)?),
            6 => UserControl::PingRequest(arg(2)?),
            7 => UserControl::PingResponse(arg(2)?),
            other => UserControl::Other(other),
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(10);
        let (event, a, b) = match *self {
            UserControl::StreamBegin(s) => (0, s, None),
            UserControl::StreamEof(s) => (1, s, None),
            UserControl::StreamDry(s) => (2, s, None),
            UserControl::SetBufferLength { stream_id, millis } => (3, stream_id, Some(millis)),
            UserControl::StreamIsRecorded(s) => (4, s, None),
            UserControl::PingRequest(t) => (6, t, None),
            UserControl::PingResponse(t) => (7, t, None),
            UserControl::Other(e) => (e, 0, None),
        };
        out.put_u16(event);
        out.put_u32(a);
        if let Some(b) = b {
            out.put_u32(b);
        }
        out.freeze()
    }
}

/// Set Peer Bandwidth limit type 2: dynamic.
pub fn set_peer_bandwidth(window: u32, limit_type: u8) -> Bytes {
    let mut out = BytesMut::with_capacity(5);
    out.put_u32(window);
    out.put_u8(limit_type);
    out.freeze()
}

pub fn u32_payload(value: u32) -> Bytes {
    Bytes::copy_from_slice(&value.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_control_round_trip() {
        for uc in [
            UserControl::StreamBegin(1),
            UserControl::StreamEof(2),
            UserControl::StreamDry(3),
            UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            },
            UserControl::StreamIsRecorded(1),
            UserControl::PingRequest(12345),
            UserControl::PingResponse(54321),
        ] {
            assert_eq!(UserControl::parse(&uc.encode()), Ok(uc));
        }
    }

    #[test]
    fn short_user_control_is_an_error() {
        assert!(UserControl::parse(&[0]).is_err());
        assert!(UserControl::parse(&[0, 3, 0, 0, 0, 1]).is_err());
        assert_eq!(UserControl::parse(&[0, 26, 1]), Ok(UserControl::Other(26)));
    }
}
