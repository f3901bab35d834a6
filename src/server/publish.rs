//! The publishing side of a session: take the stream's publisher slot, feed media into the hub.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::session::{Session, SessionError};
use crate::access::{Action, Notice};
use crate::hub::{ingest, PublishError, Publisher};
use crate::media::FrameKind;
use crate::relay::{ClientInfo, PushGuard, Route};
use crate::rtmp::chunk::RawMessage;
use crate::rtmp::command::Command;
use crate::rtmp::message::UserControl;
use crate::rtmp::{MSG_AGGREGATE, MSG_AUDIO, MSG_DATA_AMF0, MSG_DATA_AMF3, MSG_VIDEO};

pub struct Publishing {
    /// The stream name as the client sent it (with its query), for notifications.
    pub name: String,
    pub publisher: Publisher,
    /// On an edge: the relay forwarding this stream to its origin, stopped on drop.
    _push: Option<PushGuard>,
    pub stream_id: u32,
    pub started: Instant,
    pub bytes: u64,
    pub messages: u64,
}

/// Beyond the ingest wait, how long a publish waits for the slot a publisher is leaving.
const SLOT_GRACE: Duration = Duration::from_millis(50);
/// How often it looks.
const SLOT_POLL: Duration = Duration::from_millis(5);

impl Session {
    pub(super) async fn on_publish(
        &mut self,
        cmd: &Command,
        stream_id: u32,
    ) -> Result<(), SessionError> {
        let name = cmd.arg_str(0).unwrap_or("").to_string();
        let key = match self.key_for(&name, stream_id) {
            Ok(k) => k,
            Err(why) => {
                self.on_status(stream_id, "error", "NetStream.Publish.BadName", &why);
                self.closing = Some(format!("publish refused: {why}"));
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
        let Some((name, key)) = self.admit(Action::Publish, name, key, stream_id).await else {
            return Ok(());
        };
        match self.route(&key, &name, true) {
            None | Some(Route::Local) => {}
            Some(Route::Redirect { tc_url, url, .. }) => {
                self.span.record("stream", key.as_str());
                self.redirect(&tc_url, &url);
                return Ok(());
            }
            Some(Route::Refuse(why)) => {
                if self.notices.allow() {
                    info!(stream = %key, reason = %why, "publish refused");
                }
                self.on_status(stream_id, "error", "NetStream.Publish.BadName", &why);
                self.closing = Some(why);
                return Ok(());
            }
        }
        match self.take_stream_waiting(&key).await {
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
                let push = self.start_push(&key, &name);
                self.reader.allow_media(true);
                self.last_media = tokio::time::Instant::now();
                self.registered
                    .entry
                    .set_role(Some(("publish", key.as_str())));
                self.publishing = Some(Publishing {
                    name: name.clone(),
                    publisher,
                    _push: push,
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
                if self.notices.allow() {
                    warn!(stream = %key, "publish refused: already publishing");
                }
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

    /// [`Session::take_stream`], waiting a little for a publisher that just left: between two
    /// batched reads (see `budget::ingest_wait`) a session has not seen its peer close yet, and
    /// a publisher reconnecting at once (ffmpeg in a loop, OBS after a blip) would be refused.
    async fn take_stream_waiting(&self, key: &str) -> Result<Publisher, PublishError> {
        let wait = super::budget::ingest_wait(self.ctx.limits.merge_write);
        let deadline = tokio::time::Instant::now() + wait + SLOT_GRACE;
        loop {
            match self.take_stream(key) {
                Err(PublishError::AlreadyPublishing(_))
                    if !wait.is_zero() && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(SLOT_POLL).await
                }
                other => return other,
            }
        }
    }

    /// The publisher slot of `key`: refused while a live publisher holds it, unless this app's
    /// publish rules allowed this client and `takeover` is on; then the one it replaces is
    /// asked to close.
    fn take_stream(&self, key: &str) -> Result<Publisher, PublishError> {
        let hub = &self.ctx.hub;
        match hub.publish(key, self.id) {
            Err(PublishError::AlreadyPublishing(_)) if self.may_take_over() => {
                let (publisher, replaced) = hub.publish_takeover(key, self.id)?;
                if let Some(old) = replaced {
                    info!(stream = %key, replaced = old, "authorized publisher takes the stream over");
                    self.ctx.clients.kick(old);
                }
                Ok(publisher)
            }
            other => other,
        }
    }

    /// An authorized publisher (this app has publish rules, and they allowed it) may take a
    /// live stream over when the app's `takeover` is on.
    fn may_take_over(&self) -> bool {
        self.connect
            .as_ref()
            .is_some_and(|c| c.relay.is_none() && self.ctx.access.takeover(&c.app))
    }

    fn start_push(&self, key: &str, name: &str) -> Option<PushGuard> {
        let relays = self.ctx.relays.get()?;
        let conn = self.connect.as_ref()?;
        relays.start_push(&ClientInfo {
            key,
            app: &conn.app,
            name,
            connect_query: &conn.query,
            hops: self.hops_for(key),
        })
    }

    pub(super) fn stop_publishing(&mut self, why: &str) {
        if let Some(p) = self.publishing.take() {
            self.reader.allow_media(false);
            self.registered.entry.set_role(None);
            let extra = [
                ("bytes_in", p.bytes.to_string()),
                (
                    "duration_s",
                    format!("{:.3}", p.started.elapsed().as_secs_f64()),
                ),
            ];
            self.notify(Notice::PublishDone, &p.name, &extra);
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
        self.last_media = tokio::time::Instant::now();
        match msg.type_id {
            MSG_AUDIO => p
                .publisher
                .send(FrameKind::Audio, msg.timestamp, msg.payload),
            MSG_VIDEO => p
                .publisher
                .send(FrameKind::Video, msg.timestamp, msg.payload),
            MSG_DATA_AMF0 => ingest::data(&p.publisher, msg.timestamp, msg.payload),
            MSG_DATA_AMF3 => {
                // A format byte, then AMF0 values.
                let body = if msg.payload.is_empty() {
                    msg.payload
                } else {
                    msg.payload.slice(1..)
                };
                ingest::data(&p.publisher, msg.timestamp, body)
            }
            MSG_AGGREGATE => ingest::aggregate(&p.publisher, msg.timestamp, &msg.payload),
            _ => {}
        }
        Ok(())
    }
}
