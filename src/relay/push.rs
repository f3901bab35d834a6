//! One forwarded publish: an edge plays its local publisher's stream from the hub and
//! publishes it to the stream's origin; if that origin fails, it re-locates and re-publishes
//! to the new owner while the publisher's own connection to the edge carries on.

use std::sync::Arc;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::{RelayContext, RelayState, Retry, StatusCell};
use crate::client::{ClientError, RtmpClient};
use crate::cluster::Location;
use crate::hub::{Event, Player, Snapshot};
use crate::media::{Frame, FrameKind};

enum End {
    /// The local publisher left (or the node stops).
    Done,
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
        let mut retry = Retry::new(crate::load::synth::now_micros() | 1);
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
) -> Result<End, ClientError> {
    let mut client = ctx.connect(loc, path, hops, true).await?;
    status.set(RelayState::Pushing, Some(loc), None);
    info!(origin = %loc.node_id, rtmp = %loc.rtmp_addr, "forwarding to origin");
    let mut waiting_keyframe = true;
    for frame in &snapshot.frames {
        forward(&mut client, frame, &mut waiting_keyframe);
    }
    client.flush().await?;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(End::Done),
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
                            client.flush().await?;
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
                client.flush().await?;
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
