//! The RTMP server: accept loop, connection limit, and one session task per connection.
//!
//! Owns the listening socket and the shutdown of every session. Never blocks the accept loop
//! on a connection: each runs in its own task, and a panic in one is logged by its task's end,
//! not felt by the others.

mod budget;
pub mod clients;
pub mod clip;
mod commands;
mod decide;
pub mod limits;
pub mod log_limit;
mod outbound;
mod play;
pub mod proxy_header;
mod publish;
mod session;
mod stream;
mod traffic;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub(crate) use budget::{media_flush_at, quiet_until, write_window, WriteDue};
pub(crate) use decide::parse_query;
pub(crate) use outbound::write_all_vectored;
pub(crate) use play::{BATCH_BYTES, BATCH_FRAMES, MAX_CONSECUTIVE_LAGS};
pub(crate) use session::MERGE_MAX_BYTES;
pub use session::{stream_key, SessionError};
pub use traffic::{RateMeter, Traffic};

use crate::access::relay_credential::RelayKey;
use crate::access::rules::Access;
use crate::hub::Hub;
use crate::relay::Relays;
use crate::rtmp::chunk::ReaderLimits;
use crate::tls::TlsAcceptor;
use clients::Clients;
use limits::PerIp;
use log_limit::RateLimitedLog;

/// Node-wide log lines about connections that never got through `connect`, per second.
const EARLY_LOG_PER_SECOND: u32 = 20;

/// Per-connection limits, from the config.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub reader: ReaderLimits,
    /// Our outbound chunk size (announced at connect).
    pub chunk_size: usize,
    pub max_streams: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// A write that makes no progress this long disconnects the peer.
    pub write_timeout: Duration,
    /// The latency budget, `rtmp.merge_write_ms` (see `budget`; 0: no waiting at all).
    pub merge_write: Duration,
    /// Every connection starts with a PROXY protocol header (v1 or v2) naming the client.
    pub proxy_protocol: bool,
    /// A publisher that sends no media this long loses the stream (and its connection).
    pub publish_idle_timeout: Duration,
    /// Open connections one client address may hold (0: unlimited).
    pub max_connections_per_ip: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            reader: ReaderLimits::default(),
            chunk_size: 4096,
            max_streams: 8,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            merge_write: Duration::from_millis(200),
            proxy_protocol: false,
            publish_idle_timeout: Duration::from_secs(5),
            max_connections_per_ip: 1000,
        }
    }
}

/// What every session shares.
pub struct ServerContext {
    pub hub: Hub,
    pub limits: SessionLimits,
    pub shutdown: CancellationToken,
    /// Routing to other nodes; set once the node has joined its cluster (never standalone).
    pub relays: OnceLock<Arc<Relays>>,
    /// Bytes every session read and wrote.
    pub traffic: Arc<Traffic>,
    /// Connections per client address.
    pub per_ip: Arc<PerIp>,
    /// Budget of log lines about connections that never got through `connect` (and refusals
    /// at accept): anyone can open those, as fast as they like.
    pub early_log: Arc<RateLimitedLog>,
    /// Who may connect, publish and play.
    pub access: Arc<Access>,
    /// Open connections, for the admin API.
    pub clients: Arc<Clients>,
    /// Checks relay credentials; set once the node has joined its cluster.
    pub relay_key: OnceLock<RelayKey>,
    /// This node, as access decisions and hooks name it.
    pub node_id: String,
    pub role: &'static str,
    /// Connection ids, shared by every listener (RTMP, HTTP-FLV) so that the client registry
    /// and the logs name each connection once.
    pub next_conn_id: AtomicU64,
}

impl ServerContext {
    /// A connection id no other connection of this node has.
    pub fn conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Who a server is, and the rules it applies: what [`RtmpServer::bind`] needs besides sockets.
pub struct ServerIdentity {
    pub node_id: String,
    /// "origin" or "edge".
    pub role: &'static str,
    pub access: Arc<Access>,
}

pub struct RtmpServer {
    listener: TcpListener,
    /// The RTMPS listener (`rtmp.tls_listen`) and the TLS its connections start with.
    tls: Option<(TcpListener, TlsAcceptor)>,
    ctx: Arc<ServerContext>,
    max_connections: usize,
    tracker: TaskTracker,
}

impl RtmpServer {
    pub async fn bind(
        addr: SocketAddr,
        hub: Hub,
        limits: SessionLimits,
        max_connections: usize,
        identity: ServerIdentity,
        shutdown: CancellationToken,
    ) -> std::io::Result<RtmpServer> {
        let listener = TcpListener::bind(addr).await?;
        Ok(RtmpServer {
            listener,
            tls: None,
            ctx: Arc::new(ServerContext {
                hub,
                limits,
                shutdown,
                relays: OnceLock::new(),
                traffic: Arc::new(Traffic::default()),
                per_ip: PerIp::new(limits.max_connections_per_ip),
                early_log: Arc::new(RateLimitedLog::new(
                    EARLY_LOG_PER_SECOND,
                    Duration::from_secs(1),
                )),
                access: identity.access,
                clients: Arc::new(Clients::default()),
                relay_key: OnceLock::new(),
                node_id: identity.node_id,
                role: identity.role,
                next_conn_id: AtomicU64::new(1),
            }),
            max_connections,
            tracker: TaskTracker::new(),
        })
    }

    /// What sessions share; the node sets `relays` on it after joining its cluster.
    pub fn context(&self) -> Arc<ServerContext> {
        self.ctx.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Opens the RTMPS listener: its connections start with a TLS handshake (after the PROXY
    /// header when `proxy_protocol` is on), then are sessions like any other, under the same
    /// limits. Returns the bound address.
    pub async fn bind_tls(
        &mut self,
        addr: SocketAddr,
        acceptor: TlsAcceptor,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        self.tls = Some((listener, acceptor));
        Ok(bound)
    }

    /// Accepts until `stop_accepting` (a drain: the listeners close, sessions go on) or
    /// shutdown is cancelled; then, once shutdown is cancelled (sessions are told and close),
    /// waits up to `grace` for them to finish. `rtmp.max_connections` counts the connections
    /// of both listeners.
    pub async fn run(mut self, stop_accepting: CancellationToken, grace: Duration) {
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let tls = self.tls.take();
        let plain = self.accept_loop(&self.listener, None, &limit, &stop_accepting);
        let secure = async {
            if let Some((listener, acceptor)) = &tls {
                self.accept_loop(listener, Some(acceptor), &limit, &stop_accepting)
                    .await
            }
        };
        tokio::join!(plain, secure);
        drop(tls);
        self.finish(grace).await
    }

    async fn accept_loop(
        &self,
        listener: &TcpListener,
        tls: Option<&TlsAcceptor>,
        limit: &Arc<Semaphore>,
        stop_accepting: &CancellationToken,
    ) {
        loop {
            let accepted = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => break,
                _ = stop_accepting.cancelled() => break,
                r = listener.accept() => r,
            };
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let permit = match limit.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if let Some(similar_suppressed) = self.ctx.early_log.allow() {
                        warn!(%peer, max = self.max_connections, similar_suppressed,
                            "connection refused: limit reached");
                    }
                    drop(socket);
                    continue;
                }
            };
            let id = self.ctx.conn_id();
            let session = session::Session::new(socket, peer, id, self.ctx.clone(), tls.cloned());
            self.tracker.spawn(async move {
                session.run().await;
                drop(permit);
            });
        }
    }

    async fn finish(self, grace: Duration) {
        // Close the listener first, so that nothing new queues behind it.
        drop(self.listener);
        info!(sessions = self.tracker.len(), "stopped accepting");
        self.ctx.shutdown.cancelled().await;
        info!(sessions = self.tracker.len(), "closing sessions");
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = self.tracker.len(),
                "sessions still open after grace period"
            );
        }
    }
}
