//! One upstream pull: locate the stream's origin, play it, feed the local hub; on failure
//! re-locate and reconnect with backoff, never giving up while local players are attached.
//! The relay holds the hub's publisher slot throughout, so local players never see an
//! unpublish during a failover: only a gap, then the new origin's headers and keyframe.
//!
//! The upstream is left, without waiting for TCP to notice, as soon as gossip says its node
//! is dead or leaving, or when no media came for [`MEDIA_STALL`] while the stream is still
//! advertised (a frozen upstream).
//!
//! When the stream's claim moves to another origin while this one still sends (a draining
//! origin whose edge pushes the stream to its new owner as well), the pull moves
//! make-before-break: it plays the stream from the new owner too, and switches at the first
//! frame the old upstream has not delivered yet (both carry the same frames with the same
//! timestamps), so players see no gap, no repeat and no jump.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::{
    jitter_seed, upstream_gone, RelayContext, RelayError, RelayState, Retry, StatusCell,
    PULL_LINGER,
};
use crate::client::{Incoming, RtmpClient};
use crate::cluster::{Location, Source};
use crate::hub::{ingest, Publisher};
use crate::media::FrameKind;
use crate::rtmp::chunk::RawMessage;
use crate::rtmp::{MSG_AUDIO, MSG_DATA_AMF0, MSG_DATA_AMF3, MSG_VIDEO};

/// How often a connected pull checks for players, for media, and (while the upstream has no
/// publisher) whether the stream moved to another node.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// No media this long from an upstream while some origin advertises the stream: reconnect.
pub(crate) const MEDIA_STALL: Duration = Duration::from_secs(3);

enum End {
    Stopped,
    NoPlayers,
}

pub(crate) async fn run(
    ctx: RelayContext,
    key: String,
    path: (String, String),
    hops: u32,
    conn_id: u64,
    status: StatusCell,
    stop: CancellationToken,
) {
    let span = tracing::info_span!("pull", stream = %key);
    async move {
        let publisher = match ctx.hub.publish_relay(&key, conn_id) {
            Ok(p) => p,
            Err(_) => return, // published locally meanwhile: nothing to pull
        };
        let mut retry = Retry::new(jitter_seed(conn_id));
        let mut idle_since: Option<Instant> = None;
        let mut connected_before = false;
        loop {
            if stop.is_cancelled() || !publisher.is_current() {
                break;
            }
            if no_players_for(&ctx, &key, &mut idle_since) {
                info!("no players left; closing upstream");
                break;
            }
            let Some(loc) = ctx.pull_upstream(&key, &status) else {
                if retry.wait_for_upstream(&stop).await {
                    break;
                }
                continue;
            };
            let mut pull = Pull {
                ctx: &ctx,
                key: &key,
                loc,
                publisher: &publisher,
                idle_since: &mut idle_since,
            };
            let result = pull
                .run(
                    &path,
                    hops,
                    &status,
                    &stop,
                    &mut connected_before,
                    &mut retry,
                )
                .await;
            match result {
                Ok(End::Stopped) => break,
                Ok(End::NoPlayers) => {
                    info!("no players left; closing upstream");
                    break;
                }
                Err(e) => {
                    let loc = &pull.loc;
                    warn!(upstream = %loc.node_id, error = %e, attempt = retry.attempt(),
                        "upstream failed; retrying");
                    if retry.after_failure(&stop, &status, loc, &e).await {
                        break;
                    }
                }
            }
        }
        debug!("pull ended");
    }
    .instrument(span)
    .await
}

fn no_players_for(ctx: &RelayContext, key: &str, idle_since: &mut Option<Instant>) -> bool {
    if ctx.hub.players_of(key) > 0 {
        *idle_since = None;
        return false;
    }
    let since = *idle_since.get_or_insert_with(Instant::now);
    since.elapsed() >= PULL_LINGER
}

/// One connection of the pull, to the upstream at `loc` (which a handover changes).
struct Pull<'a> {
    ctx: &'a RelayContext,
    key: &'a str,
    loc: Location,
    publisher: &'a Publisher,
    idle_since: &'a mut Option<Instant>,
}

/// How long a handover waits for the new owner (connect and play, then the first frame the
/// old upstream has not delivered); past it the pull moves the plain way.
const HANDOVER_LIMIT: Duration = Duration::from_secs(5);
/// After a handover, frames at or before the last one forwarded (per track) are the old
/// upstream's again, from the new one's fast-start cache: dropped for this long.
const DEDUPE_AFTER_HANDOVER: Duration = Duration::from_secs(10);

/// The timestamps of the last audio and video frames fed into the hub, to switch upstreams
/// without a repeat or a gap.
#[derive(Debug, Default, Clone, Copy)]
struct LastFed {
    audio: Option<u32>,
    video: Option<u32>,
}

impl LastFed {
    fn slot(&mut self, type_id: u8) -> Option<&mut Option<u32>> {
        match type_id {
            MSG_AUDIO => Some(&mut self.audio),
            MSG_VIDEO => Some(&mut self.video),
            _ => None,
        }
    }

    /// Whether `m` comes after what was fed on its track (data messages: never, while
    /// deduplicating; they are the new upstream's fast-start copies).
    fn is_new(&mut self, m: &RawMessage) -> bool {
        match self.slot(m.type_id) {
            Some(last) => last.is_none_or(|t| m.timestamp > t),
            None => false,
        }
    }

    fn record(&mut self, m: &RawMessage) {
        if let Some(last) = self.slot(m.type_id) {
            *last = Some(m.timestamp);
        }
    }
}

impl Pull<'_> {
    /// Feeds one message from the upstream into the hub.
    fn feed(&self, m: RawMessage, last: &mut LastFed) {
        last.record(&m);
        let publisher = self.publisher;
        match m.type_id {
            MSG_AUDIO => publisher.send(FrameKind::Audio, m.timestamp, m.payload),
            MSG_VIDEO => publisher.send(FrameKind::Video, m.timestamp, m.payload),
            MSG_DATA_AMF0 => ingest::data(publisher, m.timestamp, m.payload),
            MSG_DATA_AMF3 if !m.payload.is_empty() => {
                ingest::data(publisher, m.timestamp, m.payload.slice(1..))
            }
            _ => {}
        }
    }

    async fn run(
        &mut self,
        path: &(String, String),
        hops: u32,
        status: &StatusCell,
        stop: &CancellationToken,
        connected_before: &mut bool,
        retry: &mut Retry,
    ) -> Result<End, RelayError> {
        let ctx = self.ctx;
        let mut view = ctx.cluster.subscribe();
        let mut client = ctx.connect(&self.loc, path, hops, false).await?;
        if *connected_before {
            // A new source: new timeline and headers for local players, who stay connected.
            self.publisher.discontinuity();
        }
        *connected_before = true;
        retry.reset();
        status.set(RelayState::Pulling, Some(&self.loc), None);
        status.set_url(&client.url);
        info!(upstream = %self.loc.node_id, url = %client.url, source = ?self.loc.source, "pulling");
        // Whether media flows: an origin without the stream parks us, sending nothing.
        let mut upstream_live = false;
        let mut last_media = Instant::now();
        let mut last = LastFed::default();
        let mut dedupe_until: Option<Instant> = None;
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.reset();
        loop {
            let moved = tokio::select! {
                _ = stop.cancelled() => return Ok(End::Stopped),
                changed = view.changed() => {
                    if changed.is_ok() {
                        self.check_upstream(upstream_live)?
                    } else {
                        None
                    }
                }
                _ = check.tick() => {
                    if !self.publisher.is_current() {
                        return Ok(End::Stopped);
                    }
                    if no_players_for(ctx, self.key, self.idle_since) {
                        return Ok(End::NoPlayers);
                    }
                    if last_media.elapsed() >= MEDIA_STALL && ctx.advertised_elsewhere(self.key) {
                        return Err(RelayError::Left(format!(
                            "no media for {MEDIA_STALL:?} while the stream is advertised"
                        )));
                    }
                    self.check_upstream(upstream_live)?
                }
                ev = client.next() => {
                    match ev? {
                        Incoming::Media(m) => {
                            let media = m.type_id == MSG_AUDIO || m.type_id == MSG_VIDEO;
                            upstream_live |= media;
                            if media {
                                last_media = Instant::now();
                            }
                            let deduping = dedupe_until.is_some_and(|t| Instant::now() < t);
                            if !deduping || last.is_new(&m) {
                                self.feed(m, &mut last);
                            }
                        }
                        Incoming::Status(s) => match s.code.as_str() {
                            "NetStream.Play.UnpublishNotify" => {
                                debug!("origin's publisher left");
                                upstream_live = false;
                            }
                            "NetStream.Play.PublishNotify" => last_media = Instant::now(),
                            "NetStream.Play.Stop" => {
                                return Err(RelayError::Left("the upstream stopped the stream".into()))
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                    None
                }
            };
            if let Some(next) = moved {
                match self
                    .handover(&mut client, &next, path, hops, &mut last)
                    .await
                {
                    Ok(new_client) => {
                        info!(from = %self.loc.node_id, to = %next.node_id,
                            "switched upstream make-before-break");
                        client = new_client;
                        self.loc = next;
                        status.set(RelayState::Pulling, Some(&self.loc), None);
                        status.set_url(&client.url);
                        last_media = Instant::now();
                        dedupe_until = Some(Instant::now() + DEDUPE_AFTER_HANDOVER);
                    }
                    Err(e) => {
                        warn!(to = %next.node_id, error = %e, "handover failed; moving the plain way");
                        return Err(RelayError::Left(format!(
                            "the stream is now on {}",
                            next.node_id
                        )));
                    }
                }
            }
        }
    }

    /// Plays the stream from `next` while `old` goes on feeding the hub, and switches at the
    /// first frame from `next` that `old` has not delivered (same source, same timestamps):
    /// the client to go on with.
    async fn handover(
        &self,
        old: &mut RtmpClient,
        next: &Location,
        path: &(String, String),
        hops: u32,
        last: &mut LastFed,
    ) -> Result<RtmpClient, RelayError> {
        let deadline = Instant::now() + HANDOVER_LIMIT;
        let mut new = tokio::time::timeout_at(deadline, self.ctx.connect(next, path, hops, false))
            .await
            .map_err(|_| RelayError::Left(format!("{} did not answer in time", next.node_id)))??;
        let mut old_alive = true;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(RelayError::Left(format!(
                        "no new frame from {} within {HANDOVER_LIMIT:?}",
                        next.node_id
                    )));
                }
                ev = old.next(), if old_alive => match ev {
                    Ok(Incoming::Media(m)) => {
                        if last.is_new(&m) || !matches!(m.type_id, MSG_AUDIO | MSG_VIDEO) {
                            self.feed(m, last);
                        }
                    }
                    Ok(_) => {}
                    // The old upstream went away meanwhile: the new one is all there is.
                    Err(_) => old_alive = false,
                },
                ev = new.next() => {
                    if let Incoming::Media(m) = ev? {
                        if last.is_new(&m) {
                            self.feed(m, last);
                            return Ok(new);
                        }
                    }
                }
            }
        }
    }

    /// Leaves an upstream that gossip says is gone (an error), and (only while it sends
    /// nothing) an upstream no longer chosen for the stream. When the stream's claim moved to
    /// another origin while this one still sends, the origin to hand over to. A healthy
    /// upstream edge is never left for another: that would flip on every ring change.
    fn check_upstream(&self, upstream_live: bool) -> Result<Option<Location>, RelayError> {
        let ctx = self.ctx;
        let view = ctx.cluster.view();
        let own = ctx.cluster.node_id();
        let from_origin = self.loc.source != Source::Edge;
        if let Some(why) = upstream_gone(&view, own, self.key, &self.loc, false) {
            return Err(RelayError::Left(why));
        }
        if from_origin {
            if let Some(now) = view.locate(self.key) {
                let moved = now.source == Source::Gossip
                    && now.node_id != self.loc.node_id
                    && now.node_id != own;
                if moved && upstream_live {
                    return Ok(Some(now));
                }
                if moved {
                    return Err(RelayError::Left(format!(
                        "the stream is now on {}",
                        now.node_id
                    )));
                }
            }
        }
        if !upstream_live {
            if let Some(moved) = ctx.cluster.locate_upstream(self.key) {
                if moved.node_id != self.loc.node_id && moved.node_id != own {
                    return Err(RelayError::Left(format!(
                        "the stream is now on {}",
                        moved.node_id
                    )));
                }
            }
        }
        Ok(None)
    }
}
