//! Wires a node together from its config: the hub, the RTMP listener, shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::hub::{Hub, HubConfig};
use crate::rtmp::chunk::ReaderLimits;
use crate::server::{RtmpServer, SessionLimits};

/// How long sessions get to say goodbye after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub fn hub_config(cfg: &Config) -> HubConfig {
    HubConfig {
        chunk_size: cfg.rtmp.chunk_size as usize,
        gop_cache_max_bytes: cfg.rtmp.gop_cache_max_bytes,
        queue_messages: cfg.rtmp.player_queue_messages,
    }
}

pub fn session_limits(cfg: &Config) -> SessionLimits {
    let max_message_size = cfg.rtmp.max_message_size as usize;
    SessionLimits {
        reader: ReaderLimits {
            max_chunk_size: cfg.rtmp.max_chunk_size as usize,
            max_message_size,
            // Room for one maximal message plus the small interleaved ones beside it.
            max_buffered: max_message_size + (1 << 20),
            max_chunk_streams: 64,
        },
        chunk_size: cfg.rtmp.chunk_size as usize,
        max_streams: cfg.rtmp.max_streams_per_connection,
        handshake_timeout: cfg.rtmp.handshake_timeout(),
        idle_timeout: cfg.rtmp.idle_timeout(),
        write_timeout: cfg.rtmp.player_write_timeout(),
        merge_write: cfg.rtmp.merge_write(),
    }
}

/// Runs the node until `shutdown` is cancelled.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> std::io::Result<()> {
    let hub = Hub::new(hub_config(&cfg));
    let server = RtmpServer::bind(
        cfg.rtmp.listen,
        hub,
        session_limits(&cfg),
        cfg.rtmp.max_connections,
        shutdown,
    )
    .await?;
    let addr = server.local_addr()?;
    info!(
        node = %cfg.node.id,
        role = cfg.node.role.as_str(),
        rtmp = %addr,
        "ringcast listening"
    );
    server.run(SHUTDOWN_GRACE).await;
    info!("ringcast stopped");
    Ok(())
}
