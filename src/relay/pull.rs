//! One upstream pull: locate the stream's origin, play it, feed the local hub; on failure
//! re-locate and reconnect with backoff, never giving up while local players are attached.
//! The relay holds the hub's publisher slot throughout, so local players never see an
//! unpublish during a failover: only a gap, then the new origin's headers and keyframe.
//!
//! The upstream is left, without waiting for TCP to notice, as soon as gossip says its node
//! is dead or leaving, when the stream's claim moves to another origin, or when no media came
//! for [`MEDIA_STALL`] while the stream is still advertised (a frozen upstream).

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::{
    jitter_seed, upstream_gone, RelayContext, RelayError, RelayState, Retry, StatusCell,
    PULL_LINGER,
};
use crate::client::Incoming;
use crate::cluster::{Location, Source};
use crate::hub::{ingest, Publisher};
use crate::media::FrameKind;
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
                loc: &loc,
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
                    warn!(upstream = %loc.node_id, error = %e, attempt = retry.attempt(),
                        "upstream failed; retrying");
                    if retry.after_failure(&stop, &status, &loc, &e).await {
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

/// One connection of the pull to the upstream at `loc`.
struct Pull<'a> {
    ctx: &'a RelayContext,
    key: &'a str,
    loc: &'a Location,
    publisher: &'a Publisher,
    idle_since: &'a mut Option<Instant>,
}

impl Pull<'_> {
    async fn run(
        &mut self,
        path: &(String, String),
        hops: u32,
        status: &StatusCell,
        stop: &CancellationToken,
        connected_before: &mut bool,
        retry: &mut Retry,
    ) -> Result<End, RelayError> {
        let (ctx, loc) = (self.ctx, self.loc);
        let mut view = ctx.cluster.subscribe();
        let mut client = ctx.connect(loc, path, hops, false).await?;
        if *connected_before {
            // A new source: new timeline and headers for local players, who stay connected.
            self.publisher.discontinuity();
        }
        *connected_before = true;
        retry.reset();
        status.set(RelayState::Pulling, Some(loc), None);
        info!(upstream = %loc.node_id, rtmp = %loc.rtmp_addr, source = ?loc.source, "pulling");
        // Whether media flows: an origin without the stream parks us, sending nothing.
        let mut upstream_live = false;
        let mut last_media = Instant::now();
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.reset();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(End::Stopped),
                changed = view.changed() => {
                    if changed.is_ok() {
                        self.check_upstream(upstream_live)?;
                    }
                }
                _ = check.tick() => {
                    if !self.publisher.is_current() {
                        return Ok(End::Stopped);
                    }
                    if no_players_for(ctx, self.key, self.idle_since) {
                        return Ok(End::NoPlayers);
                    }
                    self.check_upstream(upstream_live)?;
                    if last_media.elapsed() >= MEDIA_STALL && ctx.advertised_elsewhere(self.key) {
                        return Err(RelayError::Left(format!(
                            "no media for {MEDIA_STALL:?} while the stream is advertised"
                        )));
                    }
                }
                ev = client.next() => match ev? {
                    Incoming::Media(m) => {
                        let media = m.type_id == MSG_AUDIO || m.type_id == MSG_VIDEO;
                        upstream_live |= media;
                        if media {
                            last_media = Instant::now();
                        }
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
                },
            }
        }
    }

    /// Leaves an upstream that gossip says is gone, one whose stream is now claimed by another
    /// origin, and (only while it sends nothing) an upstream edge no longer chosen for it. A
    /// healthy upstream edge is never left for another: that would flip on every ring change.
    fn check_upstream(&self, upstream_live: bool) -> Result<(), RelayError> {
        let ctx = self.ctx;
        let view = ctx.cluster.view();
        let own = ctx.cluster.node_id();
        let from_origin = self.loc.source != Source::Edge;
        if let Some(why) = upstream_gone(&view, own, self.key, self.loc, from_origin) {
            return Err(RelayError::Left(why));
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
        Ok(())
    }
}
