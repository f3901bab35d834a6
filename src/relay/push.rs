//! One forwarded publish: an edge plays its local publisher's stream from the hub and
//! publishes it to the stream's origin; if that origin fails, it re-locates and re-publishes
//! to the new owner while the publisher's own connection to the edge carries on.
//!
//! "Fails" includes what sends no RST: every write to the origin has a deadline, and the
//! origin is left as soon as gossip says it is dead or leaving.
//!
//! An origin that drains is left make-before-break: a second push (its successor) goes to the
//! stream's new owner while this one carries on; the new owner takes the stream, its claim
//! wins in gossip, the edges pulling the stream switch to it (see `pull`), and only
//! [`HANDOVER_GRACE`] after that claim shows does this push close.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::{jitter_seed, upstream_gone, RelayContext, RelayError, RelayState, Retry, StatusCell};
use crate::client::{ClientError, RtmpClient};
use crate::cluster::{Location, Source};
use crate::hub::{Event, Player, Snapshot};
use crate::media::{Frame, FrameKind};

/// A write to the origin that makes no progress this long fails the push.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the push to a draining origin goes on after the new owner's claim shows in
/// gossip: the edges pulling the stream switch within a second or two of seeing it.
pub(crate) const HANDOVER_GRACE: Duration = Duration::from_secs(6);

enum End {
    /// The local publisher left (or the node stops).
    Done,
    /// The origin drained and the successor push to the new owner took over.
    HandedOver,
}

/// What one connection of the push needs.
struct Push<'a> {
    ctx: &'a RelayContext,
    key: &'a str,
    path: &'a (String, String),
    hops: u32,
    status: &'a StatusCell,
    stop: &'a CancellationToken,
}

/// A push to a draining origin and its successor: where the successor goes and since when the
/// new owner's claim shows.
#[derive(Default)]
struct Handover {
    target: Option<String>,
    claimed_since: Option<tokio::time::Instant>,
}

/// Writes what `client` has queued, within [`WRITE_TIMEOUT`].
async fn flush(client: &mut RtmpClient) -> Result<(), ClientError> {
    tokio::time::timeout(WRITE_TIMEOUT, client.flush())
        .await
        .map_err(|_| ClientError::Timeout("write to the origin"))?
}

/// Pushes `key` until `stop`: to `first` if given (a successor's new owner), then wherever the
/// stream's origin is.
pub(crate) async fn run(
    ctx: RelayContext,
    key: String,
    path: (String, String),
    hops: u32,
    status: StatusCell,
    stop: CancellationToken,
    mut first: Option<Location>,
) {
    let span = tracing::info_span!("push", stream = %key);
    async move {
        let (mut player, mut snapshot) = ctx.hub.play_forwarder(&key);
        let mut retry = Retry::new(jitter_seed(key.len() as u64));
        loop {
            if stop.is_cancelled() {
                break;
            }
            let Some(loc) = first.take().or_else(|| ctx.push_upstream(&key, &status)) else {
                if retry.wait_for_upstream(&stop).await {
                    break;
                }
                continue;
            };
            let push = Push {
                ctx: &ctx,
                key: &key,
                path: &path,
                hops,
                status: &status,
                stop: &stop,
            };
            match push.to(&loc, &mut player, snapshot).await {
                Ok(End::Done) => break,
                Ok(End::HandedOver) => {
                    info!(origin = %loc.node_id, "the new owner has the stream; push to the draining origin closed");
                    break;
                }
                Err(e) => {
                    warn!(origin = %loc.node_id, error = %e, attempt = retry.attempt(),
                        "forwarding failed; retrying");
                    if retry.after_failure(&stop, &status, &loc, &e).await {
                        break;
                    }
                }
            }
            // The next origin starts from the stream's current headers and GOP.
            snapshot = player.resync();
        }
        debug!("push ended");
    }
    .instrument(span)
    .await
}

impl Push<'_> {
    async fn to(
        &self,
        loc: &Location,
        player: &mut Player,
        snapshot: Snapshot,
    ) -> Result<End, RelayError> {
        let ctx = self.ctx;
        let mut view = ctx.cluster.subscribe();
        let mut client = ctx.connect(loc, self.path, self.hops, true).await?;
        self.status.set(RelayState::Pushing, Some(loc), None);
        self.status.set_url(&client.url);
        info!(origin = %loc.node_id, url = %client.url, "forwarding to origin");
        let mut waiting_keyframe = true;
        for frame in &snapshot.frames {
            forward(&mut client, frame, &mut waiting_keyframe);
        }
        flush(&mut client).await?;
        let mut handover = Handover::default();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(End::Done),
                changed = view.changed() => {
                    if changed.is_ok() && self.follow_the_cluster(loc, &mut handover)? {
                        return Ok(End::HandedOver);
                    }
                }
                _ = tick.tick() => {
                    if self.follow_the_cluster(loc, &mut handover)? {
                        return Ok(End::HandedOver);
                    }
                }
                ev = player.rx.recv() => {
                    match ev {
                        Ok(Event::Frame(frame)) => forward(&mut client, &frame, &mut waiting_keyframe),
                        // The local publisher left: the forwarded stream ends with it.
                        Ok(Event::Unpublished) | Err(RecvError::Closed) => return Ok(End::Done),
                        Ok(Event::Published) => waiting_keyframe = true,
                        Err(RecvError::Lagged(n)) => {
                            debug!(missed = n, "forwarding fell behind; skipping to the next keyframe");
                            player.skip_to_live();
                            waiting_keyframe = true;
                        }
                    }
                    // Everything already waiting goes out in one write.
                    loop {
                        match player.rx.try_recv() {
                            Ok(Event::Frame(frame)) => {
                                forward(&mut client, &frame, &mut waiting_keyframe)
                            }
                            Ok(Event::Unpublished) => {
                                flush(&mut client).await?;
                                return Ok(End::Done);
                            }
                            Ok(Event::Published) => waiting_keyframe = true,
                            Err(TryRecvError::Lagged(_)) => {
                                player.skip_to_live();
                                waiting_keyframe = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    flush(&mut client).await?;
                }
                // Answers pings and acks; an error here is the origin going away.
                ev = client.next() => { ev?; }
            }
        }
    }

    /// Leaves an origin gossip says is dead or leaving (an error: the loop re-locates); when it
    /// drains, starts the successor push to the stream's new owner once, and says `true` when
    /// the new owner's claim has shown for [`HANDOVER_GRACE`] (this push is done).
    fn follow_the_cluster(
        &self,
        loc: &Location,
        handover: &mut Handover,
    ) -> Result<bool, RelayError> {
        let ctx = self.ctx;
        let view = ctx.cluster.view();
        let own = ctx.cluster.node_id();
        if let Some(why) = upstream_gone(&view, own, self.key, loc, false) {
            return Err(RelayError::Left(why));
        }
        let draining = view.node(&loc.node_id).is_some_and(|n| n.draining);
        if !draining {
            return Ok(false);
        }
        if handover.target.is_none() {
            let next = view
                .locator()
                .ring_owner(self.key)
                .filter(|next| next.node_id != loc.node_id && next.node_id != own);
            if let Some(next) = next {
                info!(from = %loc.node_id, to = %next.node_id,
                    "origin draining: pushing to the new owner before leaving it");
                handover.target = Some(next.node_id.clone());
                tokio::spawn(run(
                    ctx.clone(),
                    self.key.to_string(),
                    self.path.clone(),
                    self.hops,
                    self.status.clone(),
                    self.stop.clone(),
                    Some(next),
                ));
            }
            return Ok(false);
        }
        let claimed = view.locate(self.key).is_some_and(|now| {
            now.source == Source::Gossip && Some(&now.node_id) == handover.target.as_ref()
        });
        if !claimed {
            return Ok(false);
        }
        let since = *handover
            .claimed_since
            .get_or_insert_with(tokio::time::Instant::now);
        Ok(since.elapsed() >= HANDOVER_GRACE)
    }
}

fn forward(client: &mut RtmpClient, frame: &Arc<Frame>, waiting_keyframe: &mut bool) {
    if frame.kind == FrameKind::Video && !frame.sequence_header && *waiting_keyframe {
        if !frame.keyframe {
            return;
        }
        *waiting_keyframe = false;
    }
    client.queue_frame(frame);
}
