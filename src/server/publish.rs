//! The publishing side of a session: take the stream's publisher slot, feed media into the hub.

use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::session::{Session, SessionError};
use crate::hub::Publisher;
use crate::media::FrameKind;
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::chunk::RawMessage;
use crate::rtmp::command::Command;
use crate::rtmp::message::UserControl;
use crate::rtmp::{MSG_AGGREGATE, MSG_AUDIO, MSG_DATA_AMF0, MSG_DATA_AMF3, MSG_VIDEO};

pub struct Publishing {
    pub publisher: Publisher,
    pub stream_id: u32,
    pub started: Instant,
    pub bytes: u64,
    pub messages: u64,
}

impl Session {
    pub(super) fn on_publish(&mut self, cmd: &Command, stream_id: u32) -> Result<(), SessionError> {
        let name = cmd.arg_str(0).unwrap_or("").to_string();
        let key = match self.key_for(&name) {
            Some(k) if !name.split('?').next().unwrap_or("").is_empty() => k,
            _ => {
                self.on_status(
                    stream_id,
                    "error",
                    "NetStream.Publish.BadName",
                    "no stream name",
                );
                self.closing = Some("publish without a stream name".into());
                return Ok(());
            }
        };
        if self.publishing.is_some() {
            self.on_status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                "this connection already publishes",
            );
            return Ok(());
        }
        match self.ctx.hub.publish(&key, self.id) {
            Ok(publisher) => {
                self.span.record("stream", key.as_str());
                self.span.record("role", "publish");
                let conn = self.connect.as_ref();
                info!(
                    stream = %key,
                    kind = cmd.arg_str(1).unwrap_or("live"),
                    tc_url = conn.map_or("", |c| c.tc_url.as_str()),
                    has_query = conn.is_some_and(|c| !c.query.is_empty()) || name.contains('?'),
                    "publish start"
                );
                self.publishing = Some(Publishing {
                    publisher,
                    stream_id,
                    started: Instant::now(),
                    bytes: 0,
                    messages: 0,
                });
                self.user_control(UserControl::StreamBegin(stream_id));
                self.on_status(
                    stream_id,
                    "status",
                    "NetStream.Publish.Start",
                    &format!("{name} is now published."),
                );
            }
            Err(e) => {
                warn!(stream = %key, "publish refused: already publishing");
                self.on_status(
                    stream_id,
                    "error",
                    "NetStream.Publish.BadName",
                    &e.to_string(),
                );
                self.closing = Some(e.to_string());
            }
        }
        Ok(())
    }

    pub(super) fn stop_publishing(&mut self, why: &str) {
        if let Some(p) = self.publishing.take() {
            info!(
                stream = %p.publisher.key(),
                duration_s = p.started.elapsed().as_secs_f64(),
                bytes = p.bytes,
                messages = p.messages,
                reason = why,
                "publish stop"
            );
        }
    }

    /// Audio, video, data and aggregate messages from a publisher.
    pub(super) fn on_media(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        let Some(p) = self.publishing.as_mut() else {
            debug!(
                type_id = msg.type_id,
                "media from a connection that is not publishing"
            );
            return Ok(());
        };
        p.bytes += msg.payload.len() as u64;
        p.messages += 1;
        match msg.type_id {
            MSG_AUDIO => p
                .publisher
                .send(FrameKind::Audio, msg.timestamp, msg.payload),
            MSG_VIDEO => p
                .publisher
                .send(FrameKind::Video, msg.timestamp, msg.payload),
            MSG_DATA_AMF0 => on_data(&p.publisher, msg.timestamp, msg.payload),
            MSG_DATA_AMF3 => {
                // A format byte, then AMF0 values.
                let body = if msg.payload.is_empty() {
                    msg.payload
                } else {
                    msg.payload.slice(1..)
                };
                on_data(&p.publisher, msg.timestamp, body)
            }
            MSG_AGGREGATE => on_aggregate(&p.publisher, msg.timestamp, &msg.payload),
            _ => {}
        }
        Ok(())
    }
}

/// A data message: `@setDataFrame onMetaData {...}` is kept as `onMetaData {...}`, byte for
/// byte, for new players; `@clearDataFrame` clears nothing we keep; anything else is passed on.
fn on_data(publisher: &Publisher, timestamp: u32, payload: Bytes) {
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
        Some("@clearDataFrame") => {}
        _ => publisher.send(FrameKind::Data, timestamp, payload),
    }
}

/// An aggregate message: FLV tags back to back, timestamps relative to the first one.
fn on_aggregate(publisher: &Publisher, timestamp: u32, payload: &Bytes) {
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
            MSG_DATA_AMF0 => on_data(publisher, t, body),
            _ => {}
        }
        // Skip the 4-byte previous tag size.
        pos = end + 4;
    }
}
