//! One upstream pull: locate the stream's origin, play it, feed the local hub; on failure
//! re-locate and reconnect with backoff, never giving up while local players are attached.
//! The relay holds the hub's publisher slot throughout, so local players never see an
//! unpublish during a failover: only a gap, then the new origin's headers and keyframe.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::{RelayContext, RelayState, Retry, StatusCell, PULL_LINGER};
use crate::client::{ClientError, Incoming};
use crate::cluster::Location;
use crate::hub::{ingest, Publisher};
use crate::media::FrameKind;
use crate::rtmp::{MSG_AUDIO, MSG_DATA_AMF0, MSG_DATA_AMF3, MSG_VIDEO};

/// How often a connected pull checks for players and, while the upstream has no publisher,
/// whether the stream moved to another origin.
const CHECK_EVERY: Duration = Duration::from_secs(1);

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
        let mut retry = Retry::new(conn_id ^ crate::load::synth::now_micros());
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
            let result = pull_from(
                &ctx,
                &key,
                &path,
                hops,
                &loc,
                &publisher,
                &status,
                &stop,
                &mut idle_since,
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

#[allow(clippy::too_many_arguments)]
async fn pull_from(
    ctx: &RelayContext,
    key: &str,
    path: &(String, String),
    hops: u32,
    loc: &Location,
    publisher: &Publisher,
    status: &StatusCell,
    stop: &CancellationToken,
    idle_since: &mut Option<Instant>,
    connected_before: &mut bool,
    retry: &mut Retry,
) -> Result<End, ClientError> {
    let mut client = ctx.connect(loc, path, hops, false).await?;
    if *connected_before {
        // A new source: new timeline and headers for local players, who stay connected.
        publisher.discontinuity();
    }
    *connected_before = true;
    retry.reset();
    status.set(RelayState::Pulling, Some(loc), None);
    info!(upstream = %loc.node_id, rtmp = %loc.rtmp_addr, source = ?loc.source, "pulling");
    // Whether media flows: an origin without the stream parks us, sending nothing.
    let mut upstream_live = false;
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.reset();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(End::Stopped),
            _ = check.tick() => {
                if !publisher.is_current() {
                    return Ok(End::Stopped);
                }
                if no_players_for(ctx, key, idle_since) {
                    return Ok(End::NoPlayers);
                }
                // A healthy upstream is never left; one without the stream is left as soon
                // as the cluster says the stream lives elsewhere (publisher reconnected there,
                // or the edge tier below changed).
                if !upstream_live {
                    let own = ctx.cluster.node_id();
                    if let Some(moved) = ctx.cluster.locate_upstream(key) {
                        if moved.node_id != loc.node_id && moved.node_id != own {
                            return Err(ClientError::Refused {
                                call: "play",
                                code: "stream moved".into(),
                                description: format!("now on {}", moved.node_id),
                                info: crate::rtmp::amf0::Amf0Value::Null,
                            });
                        }
                    }
                }
            }
            ev = client.next() => match ev? {
                Incoming::Media(m) => {
                    upstream_live |= m.type_id == MSG_AUDIO || m.type_id == MSG_VIDEO;
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
                    "NetStream.Play.Stop" => return Err(ClientError::Closed),
                    _ => {}
                },
                _ => {}
            },
        }
    }
}
