//! What a publisher sends besides plain audio and video: data messages (metadata kept
//! whole) and aggregate messages. Shared by local publishers and relays.

use bytes::Bytes;
use tracing::debug;

use super::Publisher;
use crate::media::FrameKind;
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::{MSG_AUDIO, MSG_DATA_AMF0, MSG_VIDEO};

/// A data message: `@setDataFrame onMetaData {...}` is kept as `onMetaData {...}`, byte for
/// byte, for new players; `@clearDataFrame` clears nothing we keep, `|RtmpSampleAccess` is
/// a server's notice and dropped; anything else is passed on.
pub fn data(publisher: &Publisher, timestamp: u32, payload: Bytes) {
    let mut rest: &[u8] = &payload;
    let first = match amf0::decode(&mut rest) {
        Ok(v) => v,
        Err(e) => {
            debug!(error = %e, "undecodable data message passed through");
            publisher.send(FrameKind::Data, timestamp, payload);
            return;
        }
    };
    match first.as_str() {
        Some("@setDataFrame") => {
            let body = payload.slice(payload.len() - rest.len()..);
            let mut peek: &[u8] = &body;
            if let Ok(Amf0Value::String(name)) = amf0::decode(&mut peek) {
                if name == "onMetaData" {
                    publisher.set_metadata(timestamp, body);
                    return;
                }
            }
            publisher.send(FrameKind::Data, timestamp, body);
        }
        Some("onMetaData") => publisher.set_metadata(timestamp, payload),
        // A server's own notice to its players (an upstream's, when this is a relay): the
        // local session sends its own.
        Some("@clearDataFrame") | Some("|RtmpSampleAccess") => {}
        _ => publisher.send(FrameKind::Data, timestamp, payload),
    }
}

/// An aggregate message: FLV tags back to back, timestamps relative to the first one.
pub fn aggregate(publisher: &Publisher, timestamp: u32, payload: &Bytes) {
    let mut pos = 0usize;
    let mut first_ts: Option<u32> = None;
    while payload.len() >= pos + 11 {
        let h = &payload[pos..pos + 11];
        let tag_type = h[0];
        let size = (h[1] as usize) << 16 | (h[2] as usize) << 8 | h[3] as usize;
        let ts = (h[7] as u32) << 24 | (h[4] as u32) << 16 | (h[5] as u32) << 8 | h[6] as u32;
        let start = pos + 11;
        let Some(end) = start.checked_add(size).filter(|&e| e <= payload.len()) else {
            debug!("truncated aggregate message");
            return;
        };
        let base = *first_ts.get_or_insert(ts);
        let t = timestamp.wrapping_add(ts.wrapping_sub(base));
        let body = payload.slice(start..end);
        match tag_type {
            MSG_AUDIO => publisher.send(FrameKind::Audio, t, body),
            MSG_VIDEO => publisher.send(FrameKind::Video, t, body),
            MSG_DATA_AMF0 => data(publisher, t, body),
            _ => {}
        }
        // Skip the 4-byte previous tag size.
        pos = end + 4;
    }
}
