//! The playing side of a session: join a stream, fast start, then forward live frames in
//! batches; a player that falls behind skips to the next keyframe, and one that keeps falling
//! behind is disconnected.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info};

use super::clip::Clip;
use super::session::{Session, SessionError};
use crate::access::{Action, Notice};
use crate::hub::{Event, Player, Snapshot};
use crate::media::{Frame, FrameKind};
use crate::relay::Route;
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::chunk::MessageHeader;
use crate::rtmp::command::Command;
use crate::rtmp::message::UserControl;
use crate::rtmp::{CSID_DATA, MSG_DATA_AMF0};

/// Frames gathered into one vectored write at most.
pub(crate) const BATCH_FRAMES: usize = 128;
/// Bytes gathered into one vectored write at most.
pub(crate) const BATCH_BYTES: usize = 512 * 1024;
/// Lags in a row (each followed by a skip to the live edge) before a player is dropped.
pub(crate) const MAX_CONSECUTIVE_LAGS: u32 = 4;

pub struct Playing {
    /// The stream name as the client asked for it (with its query), for notifications.
    pub name: String,
    pub player: Player,
    pub stream_id: u32,
    pub started: Instant,
    pub bytes_out: u64,
    pub paused: bool,
    pub receive_audio: bool,
    pub receive_video: bool,
    /// How long video may wait to share a write when its frames do not say (see
    /// [`super::budget`]): nothing for another node's relay.
    pub write_window: std::time::Duration,
    /// Video is held back until a keyframe (start without a cached GOP, after a lag, after a
    /// republish), so the first picture a decoder sees is a keyframe.
    waiting_keyframe: bool,
    consecutive_lags: u32,
    dropped: u64,
    /// Events taken from the ring and not yet handled (kept for its allocation).
    batch: Vec<Event>,
}

impl Session {
    pub(super) async fn on_play(
        &mut self,
        cmd: &Command,
        stream_id: u32,
    ) -> Result<(), SessionError> {
        let name = cmd.arg_str(0).unwrap_or("").to_string();
        let key = match self.key_for(&name, stream_id) {
            Ok(k) => k,
            Err(why) => {
                if self.notices.allow() {
                    info!(name = %Clip(&name), reason = %why, "play refused");
                }
                self.on_status(stream_id, "error", "NetStream.Play.StreamNotFound", &why);
                return Ok(());
            }
        };
        let Some((name, key)) = self.admit(Action::Play, name, key, stream_id).await else {
            return Ok(());
        };
        // A new play on this connection replaces the previous one.
        self.stop_playing("replaced by a new play");
        self.quiet_until = None;
        let reset = cmd.args.get(3).and_then(|v| v.as_bool()).unwrap_or(true);
        match self.route(&key, &name, false) {
            None | Some(Route::Local) => {}
            Some(Route::Redirect { tc_url, url, .. }) => {
                self.span.record("stream", key.as_str());
                self.user_control(UserControl::StreamBegin(stream_id));
                self.on_status(stream_id, "status", "NetStream.Play.Reset", "redirecting");
                self.on_status(stream_id, "status", "NetStream.Play.Start", "redirecting");
                self.redirect(&tc_url, &url);
                return Ok(());
            }
            Some(Route::Refuse(why)) => {
                if self.notices.allow() {
                    info!(stream = %key, reason = %why, "play refused");
                }
                self.on_status(stream_id, "error", "NetStream.Play.StreamNotFound", &why);
                return Ok(());
            }
        }
        // Another node's relay (a valid relay credential) is a player but not a viewer.
        let member = if self.connect.as_ref().is_some_and(|c| c.relay.is_some()) {
            crate::hub::Member::Relay
        } else {
            crate::hub::Member::Viewer
        };
        let (player, snapshot) = match self.ctx.hub.play_as(&key, member) {
            Ok(joined) => joined,
            Err(e) => {
                if self.notices.allow() {
                    info!(stream = %key, reason = %e, "play refused");
                }
                self.on_status(
                    stream_id,
                    "error",
                    "NetStream.Play.StreamNotFound",
                    &e.to_string(),
                );
                return Ok(());
            }
        };
        self.span.record("stream", key.as_str());
        self.span.record("role", "play");
        let conn = self.connect.as_ref();
        info!(
            stream = %key,
            publishing = snapshot.publishing,
            tc_url = conn.map_or("", |c| c.tc_url.as_str()),
            has_query = conn.is_some_and(|c| !c.query.is_empty()) || name.contains('?'),
            object_encoding = conn.map_or(0.0, |c| c.object_encoding),
            "play start"
        );

        self.user_control(UserControl::StreamBegin(stream_id));
        if reset {
            self.on_status(
                stream_id,
                "status",
                "NetStream.Play.Reset",
                &format!("Playing and resetting {name}."),
            );
        }
        self.on_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        );
        let access = amf0::encode_all(&[
            Amf0Value::String("|RtmpSampleAccess".into()),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(true),
        ]);
        self.out.message(
            MessageHeader {
                csid: CSID_DATA,
                timestamp: 0,
                type_id: MSG_DATA_AMF0,
                stream_id,
            },
            &access,
        );
        self.registered.entry.set_role(Some(("play", key.as_str())));
        let hops = self.connect.as_ref().map_or(0, |c| c.hops);
        let write_window = super::budget::write_window(self.ctx.limits.merge_write, hops > 0);
        self.playing = Some(Playing {
            name: name.clone(),
            player,
            stream_id,
            started: Instant::now(),
            bytes_out: 0,
            paused: false,
            receive_audio: true,
            receive_video: true,
            write_window,
            waiting_keyframe: true,
            consecutive_lags: 0,
            dropped: 0,
            batch: Vec::new(),
        });
        self.send_snapshot(snapshot);
        Ok(())
    }

    fn send_snapshot(&mut self, snapshot: Snapshot) {
        for frame in &snapshot.frames {
            self.queue_frame(frame.clone());
        }
    }

    /// Queues a frame for the player unless it must be held back.
    fn queue_frame(&mut self, frame: Arc<Frame>) {
        let Some(p) = self.playing.as_mut() else {
            return;
        };
        let wanted = match frame.kind {
            FrameKind::Audio => p.receive_audio,
            FrameKind::Video => p.receive_video,
            FrameKind::Data => true,
        };
        if !wanted {
            return;
        }
        if frame.kind == FrameKind::Video && p.waiting_keyframe && !frame.sequence_header {
            if !frame.keyframe {
                p.dropped += 1;
                return;
            }
            p.waiting_keyframe = false;
            p.consecutive_lags = 0;
        }
        let (sid, window) = (p.stream_id, p.write_window);
        self.write_due
            .frame(&frame, self.ctx.limits.merge_write, window);
        self.out.frame(frame, sid);
    }

    pub(super) fn on_pause(&mut self, pause: bool, stream_id: u32) {
        let Some(p) = self.playing.as_mut() else {
            return;
        };
        if pause == p.paused {
            return;
        }
        p.paused = pause;
        if pause {
            self.on_status(stream_id, "status", "NetStream.Pause.Notify", "Paused live");
        } else {
            // Live has no past to resume from: start again from the current GOP.
            let snapshot = p.player.resync();
            p.waiting_keyframe = true;
            self.quiet_until = None;
            self.user_control(UserControl::StreamBegin(stream_id));
            self.on_status(
                stream_id,
                "status",
                "NetStream.Unpause.Notify",
                "Unpaused live",
            );
            self.send_snapshot(snapshot);
        }
    }

    pub(super) fn stop_playing(&mut self, why: &str) {
        if let Some(p) = self.playing.take() {
            self.registered.entry.set_role(None);
            let extra = [
                ("bytes_out", p.bytes_out.to_string()),
                (
                    "duration_s",
                    format!("{:.3}", p.started.elapsed().as_secs_f64()),
                ),
            ];
            self.notify(Notice::PlayDone, &p.name, &extra);
            info!(
                stream = %p.player.key(),
                duration_s = p.started.elapsed().as_secs_f64(),
                bytes = p.bytes_out,
                dropped = p.dropped,
                reason = why,
                "play stop"
            );
        }
    }

    /// An event from the stream, plus whatever else is already waiting, written as one batch.
    /// True when the receiver was left empty (not stopped by a full batch).
    pub(super) fn on_event(
        &mut self,
        first: Result<Event, RecvError>,
    ) -> Result<bool, SessionError> {
        let mut frames = 0usize;
        match first {
            Ok(ev) => frames += self.handle_event(ev),
            Err(RecvError::Lagged(n)) => self.on_lagged(n)?,
            Err(RecvError::Closed) => return Ok(false),
        }
        self.drain_events(frames)
    }

    /// Takes what waits in the stream's ring, a batch at a time under one lock each; true
    /// when the ring was left empty, false when `frames` plus those taken filled a batch.
    pub(super) fn drain_events(&mut self, mut frames: usize) -> Result<bool, SessionError> {
        loop {
            if frames >= BATCH_FRAMES || self.out.queued_bytes() >= BATCH_BYTES {
                return Ok(false);
            }
            let Some(p) = self.playing.as_mut() else {
                return Ok(false);
            };
            let mut batch = std::mem::take(&mut p.batch);
            let more = match p.player.rx.recv_many(&mut batch, BATCH_FRAMES - frames) {
                Ok(more) => more,
                Err(missed) => {
                    p.batch = batch;
                    self.on_lagged(missed)?;
                    continue;
                }
            };
            for ev in batch.drain(..) {
                frames += self.handle_event(ev);
            }
            if let Some(p) = self.playing.as_mut() {
                p.batch = batch;
            }
            if !more {
                return Ok(true);
            }
        }
    }

    /// One event of the stream; how many frames it queued (0 or 1).
    fn handle_event(&mut self, ev: Event) -> usize {
        match ev {
            Event::Frame(frame) => {
                self.queue_frame(frame);
                1
            }
            Event::Unpublished => {
                self.on_unpublished();
                0
            }
            Event::Published => {
                self.on_published();
                0
            }
        }
    }

    fn on_unpublished(&mut self) {
        let Some(p) = self.playing.as_mut() else {
            return;
        };
        p.waiting_keyframe = true;
        let sid = p.stream_id;
        info!("publisher left; player waits");
        self.user_control(UserControl::StreamEof(sid));
        self.on_status(
            sid,
            "status",
            "NetStream.Play.UnpublishNotify",
            "stream is now unpublished",
        );
    }

    fn on_published(&mut self) {
        let Some(p) = self.playing.as_mut() else {
            return;
        };
        p.waiting_keyframe = true;
        let sid = p.stream_id;
        debug!("publisher (re)started");
        self.user_control(UserControl::StreamBegin(sid));
        self.on_status(
            sid,
            "status",
            "NetStream.Play.PublishNotify",
            "stream is now published",
        );
    }

    fn on_lagged(&mut self, missed: u64) -> Result<(), SessionError> {
        let Some(p) = self.playing.as_mut() else {
            return Ok(());
        };
        p.dropped += missed;
        p.consecutive_lags += 1;
        debug!(
            missed,
            lags = p.consecutive_lags,
            "player fell behind; skipping to live"
        );
        if p.consecutive_lags > MAX_CONSECUTIVE_LAGS {
            return Err(SessionError::TooSlow(p.consecutive_lags));
        }
        p.player.skip_to_live();
        p.waiting_keyframe = true;
        Ok(())
    }
}
