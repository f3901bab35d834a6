//! HTTP-FLV delivery: `GET /APP/STREAM.flv[?query]` on `flv.listen` answers the live stream
//! as an FLV file that never ends (chunked transfer), for browsers (mpegts.js, flv.js), ffmpeg
//! and VLC. Another kind of subscriber of the hub, beside RTMP players: the same fast start,
//! the same pulls on edges, the same access rules (connect and play, the token in the query),
//! the same slow-player policy; each frame's FLV tag is built once and shared.
//!
//! Owns the listening socket and its connections (one task each, see [`conn`]), with the
//! node's connection limits. Must never: block the accept loop on a connection, or serve a
//! request the RTMP side would refuse.

mod conn;
mod out;
pub mod request;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub use conn::FlvSettings;

use crate::server::ServerContext;

/// The HTTP-FLV listener of a node.
pub struct FlvServer {
    listener: TcpListener,
    ctx: Arc<ServerContext>,
    settings: Arc<FlvSettings>,
    max_connections: usize,
    tracker: TaskTracker,
}

impl FlvServer {
    /// Binds `addr`; connections share `ctx` (hub, rules, relays, limits) with RTMP.
    pub async fn bind(
        addr: SocketAddr,
        ctx: Arc<ServerContext>,
        settings: FlvSettings,
        max_connections: usize,
    ) -> std::io::Result<FlvServer> {
        Ok(FlvServer {
            listener: TcpListener::bind(addr).await?,
            ctx,
            settings: Arc::new(settings),
            max_connections,
            tracker: TaskTracker::new(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until `stop_accepting` (a drain: the listener closes, players go on) or the
    /// node's shutdown; then, once shutdown is cancelled (players are sent the end of the
    /// stream), waits up to `grace` for them to finish.
    pub async fn run(self, stop_accepting: CancellationToken, grace: Duration) {
        let limit = Arc::new(Semaphore::new(self.max_connections));
        loop {
            let accepted = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => break,
                _ = stop_accepting.cancelled() => break,
                r = self.listener.accept() => r,
            };
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    error!(error = %e, "http-flv accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                if let Some(similar_suppressed) = self.ctx.early_log.allow() {
                    warn!(%peer, max = self.max_connections, similar_suppressed,
                        "http-flv connection refused: limit reached");
                }
                continue;
            };
            let id = self.ctx.conn_id();
            let conn =
                conn::FlvConn::new(socket, peer, id, self.ctx.clone(), self.settings.clone());
            self.tracker.spawn(async move {
                conn.run().await;
                drop(permit);
            });
        }
        drop(self.listener);
        info!(players = self.tracker.len(), "http-flv stopped accepting");
        self.ctx.shutdown.cancelled().await;
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = self.tracker.len(),
                "http-flv players still open after grace period"
            );
        }
    }
}
