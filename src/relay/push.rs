//! One forwarded publish: an edge plays its local publisher's stream from the hub and
//! publishes it to the stream's origin; if that origin fails, it re-locates and re-publishes
//! to the new owner while the publisher's own connection to the edge carries on.
//!
//! "Fails" includes what sends no RST: every write to the origin has a deadline, and the
//! origin is left as soon as gossip says it is dead or leaving.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::{jitter_seed, upstream_gone, RelayContext, RelayError, RelayState, Retry, StatusCell};
use crate::client::{ClientError, RtmpClient};
use crate::cluster::Location;
use crate::hub::{Event, Player, Snapshot};
use crate::media::{Frame, FrameKind};

/// A write to the origin that makes no progress this long fails the push.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

enum End {
    /// The local publisher left (or the node stops).
    Done,
}

/// Writes what `client` has queued, within [`WRITE_TIMEOUT`].
async fn flush(client: &mut RtmpClient) -> Result<(), ClientError> {
    tokio::time::timeout(WRITE_TIMEOUT, client.flush())
        .await
        .map_err(|_| ClientError::Timeout("write to the origin"))?
}

pub(crate) async fn run(
    ctx: RelayContext,
    key: String,
    path: (String, String),
    hops: u32,
    status: StatusCell,
    stop: CancellationToken,
) {
    let span = tracing::info_span!("push", stream = %key);
    async move {
        let (mut player, mut snapshot) = ctx.hub.play_forwarder(&key);
        let mut retry = Retry::new(jitter_seed(key.len() as u64));
        loop {
            if stop.is_cancelled() {
                break;
            }
            let Some(loc) = ctx.push_upstream(&key, &status) else {
                if retry.wait_for_upstream(&stop).await {
                    break;
                }
                continue;
            };
            match push_to(
                &ctx,
                &path,
                hops,
                &loc,
                &mut player,
                snapshot,
                &status,
                &stop,
            )
            .await
            {
                Ok(End::Done) => break,
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

#[allow(clippy::too_many_arguments)]
async fn push_to(
    ctx: &RelayContext,
    path: &(String, String),
    hops: u32,
    loc: &Location,
    player: &mut Player,
    snapshot: Snapshot,
    status: &StatusCell,
    stop: &CancellationToken,
) -> Result<End, RelayError> {
    let mut view = ctx.cluster.subscribe();
    let mut client = ctx.connect(loc, path, hops, true).await?;
    status.set(RelayState::Pushing, Some(loc), None);
    info!(origin = %loc.node_id, rtmp = %loc.rtmp_addr, "forwarding to origin");
    let mut waiting_keyframe = true;
    for frame in &snapshot.frames {
        forward(&mut client, frame, &mut waiting_keyframe);
    }
    flush(&mut client).await?;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(End::Done),
            changed = view.changed() => {
                if changed.is_ok() {
                    let view = ctx.cluster.view();
                    let key = player.key();
                    if let Some(why) = upstream_gone(&view, ctx.cluster.node_id(), key, loc, false) {
                        return Err(RelayError::Left(why));
                    }
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

fn forward(client: &mut RtmpClient, frame: &Arc<Frame>, waiting_keyframe: &mut bool) {
    if frame.kind == FrameKind::Video && !frame.sequence_header && *waiting_keyframe {
        if !frame.keyframe {
            return;
        }
        *waiting_keyframe = false;
    }
    client.queue_frame(frame);
}
