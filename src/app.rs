//! Wires a node together from its config: the hub, the RTMP listener, the HTTP API, cluster
//! membership, and the order things stop in.
//!
//! Owns: startup order, the mapping from config to [`ClusterSettings`], the task that keeps the
//! node's advert (streams, load) in step with the hub, and shutdown. Must never: let a node
//! advertise an address peers cannot dial (the config refuses wildcards), or report ready
//! before the RTMP listener is bound.
//!
//! Start: bind RTMP, bind HTTP and serve it (`/readyz` says "starting", cluster paths 503),
//! join the cluster if `cluster.secret` is set, log
//! `ringcast listening rtmp=.. http=.. gossip=..`, then mark the node ready (HTTP and gossip).
//!
//! Stop (SIGTERM/SIGINT): mark the node draining (`/readyz` 503; gossip takes it out of the
//! ring, so no new stream is routed here), stop RTMP (sessions are told and closed, within
//! [`SHUTDOWN_GRACE`]), leave the cluster (peers see `leave` within a gossip round or two),
//! then stop HTTP last, so probes see "draining" until the very end.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::access::relay_credential::RelayKey;
use crate::cluster::{Cluster, ClusterError, ClusterSettings, Load, NodeRole, Usage};
use crate::config::{parse_advertise, Config, EdgeMode, Role};
use crate::http::{Health, HttpState};
use crate::hub::{Hub, HubConfig};
use crate::relay::{Links, Mode, Relays};
use crate::rtmp::chunk::ReaderLimits;
use crate::server::{RateMeter, RtmpServer, ServerIdentity, SessionLimits, Traffic};
use crate::tls::{NodeTls, ServerCert, TlsError, TrustedCertificates};

/// A publisher silent this long may be taken over by a new publisher of its stream.
const STALE_PUBLISHER: Duration = Duration::from_secs(1);

/// How long sessions get to say goodbye after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often the hub's publishing set and load are compared with what this node advertises.
/// A stream published here reaches every peer's locator after at most this plus gossip
/// propagation (a few 300 ms rounds): about 1-1.5 s in a small cluster.
pub const ADVERTISE_INTERVAL: Duration = Duration::from_millis(500);
/// Advertise intervals the egress rate is averaged over (5 s).
const EGRESS_WINDOW: usize = 10;

/// How long a `cluster.gossip_advertise` host name may take to resolve at start (its DNS
/// record may appear a moment after the pod).
const RESOLVE_ATTEMPTS: u32 = 15;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot bind the {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("{key}: cannot resolve {value:?}: {reason}")]
    Resolve {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] ClusterError),
    /// A checker or rule of `[access]`, `[token]`, `[jwt]`, `[hooks]` or `[cidr]` is unusable.
    #[error("{0}")]
    Access(String),
    /// A certificate, key or trusted-certificate file is unusable.
    #[error("{0}")]
    Tls(#[from] TlsError),
}

impl AppError {
    /// True when the config is at fault (the binary exits with code 2, as for config errors).
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            AppError::Cluster(ClusterError::InvalidSetting { .. })
                | AppError::Access(_)
                | AppError::Tls(_)
        )
    }
}

pub fn hub_config(cfg: &Config) -> HubConfig {
    HubConfig {
        chunk_size: cfg.rtmp.chunk_size as usize,
        gop_cache_max_bytes: cfg.rtmp.gop_cache_max_bytes,
        queue_messages: cfg.rtmp.player_queue_messages,
        max_waiting_streams: cfg.rtmp.max_waiting_streams,
        // An encoder sends tens of messages a second: one silent for a second is stalled, and
        // a new publisher of its stream is most likely the same encoder reconnecting.
        stale_publisher: STALE_PUBLISHER.min(cfg.rtmp.publish_idle_timeout()),
    }
}

pub fn session_limits(cfg: &Config) -> SessionLimits {
    let max_message_size = cfg.rtmp.max_message_size as usize;
    SessionLimits {
        reader: ReaderLimits {
            max_chunk_size: cfg.rtmp.max_chunk_size as usize,
            max_message_size,
            max_command_size: cfg.rtmp.max_command_size as usize,
            max_data_size: cfg.rtmp.max_data_size as usize,
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
        proxy_protocol: cfg.rtmp.proxy_protocol,
        publish_idle_timeout: cfg.rtmp.publish_idle_timeout(),
        max_connections_per_ip: cfg.rtmp.max_connections_per_ip,
    }
}

pub fn node_role(role: Role) -> NodeRole {
    match role {
        Role::Origin => NodeRole::Origin,
        Role::Edge => NodeRole::Edge,
    }
}

/// `host:port` as written, with brackets around an IPv6 host.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The address peers and clients should dial for a listener bound at `bound`: the configured
/// advertise address (port 0 replaced by the bound port), else the bound address unless it is a
/// wildcard, else `""` (unknown).
pub fn advertise_addr(configured: &str, bound: SocketAddr) -> String {
    match parse_advertise(configured) {
        Some((host, 0)) => join_host_port(host, bound.port()),
        Some(_) => configured.to_string(),
        None if !bound.ip().is_unspecified() => bound.to_string(),
        None => String::new(),
    }
}

/// The RTMPS address other nodes dial (`rtmps` in gossip) for the RTMPS listener bound at
/// `bound`: `rtmp.tls_advertise` (port 0: the bound port), else the host of `rtmp.advertise`
/// with the bound port, else the bound address unless it is a wildcard, else `""`.
pub fn tls_advertise_addr(cfg: &Config, bound: SocketAddr) -> String {
    if !cfg.rtmp.tls_advertise.is_empty() {
        return advertise_addr(&cfg.rtmp.tls_advertise, bound);
    }
    match parse_advertise(&cfg.rtmp.advertise) {
        Some((host, _)) => join_host_port(host, bound.port()),
        None => advertise_addr("", bound),
    }
}

/// The HTTP address shown to operators: the bound address unless it is a wildcard, else the
/// RTMP advertise host with the HTTP port, else `""`.
pub fn http_advertise_addr(http_bound: SocketAddr, rtmp_advertise: &str) -> String {
    if !http_bound.ip().is_unspecified() {
        return http_bound.to_string();
    }
    parse_advertise(rtmp_advertise)
        .map(|(host, _)| join_host_port(host, http_bound.port()))
        .unwrap_or_default()
}

/// `cluster.gossip_advertise` as a socket address. Empty: the unspecified address, which the
/// cluster replaces with the bound one (the config refuses that when the listen IP is a
/// wildcard). A host name is resolved, retried for a while, preferring the listen IP's family.
async fn resolve_gossip_advertise(cfg: &Config) -> Result<SocketAddr, AppError> {
    let listen = cfg.cluster.gossip_listen;
    let value = &cfg.cluster.gossip_advertise;
    let Some((host, port)) = parse_advertise(value) else {
        let ip = match listen {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        return Ok(SocketAddr::new(ip, 0));
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reason = match tokio::net::lookup_host((host, port)).await {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                let same_family = addrs.iter().find(|a| a.is_ipv4() == listen.is_ipv4());
                match same_family.or(addrs.first()) {
                    Some(addr) => return Ok(*addr),
                    None => "no addresses".to_string(),
                }
            }
            Err(err) => err.to_string(),
        };
        if attempt >= RESOLVE_ATTEMPTS {
            return Err(AppError::Resolve {
                key: "cluster.gossip_advertise",
                value: value.clone(),
                reason,
            });
        }
        warn!(
            key = "cluster.gossip_advertise",
            %value,
            %reason,
            attempt,
            "does not resolve yet; retrying"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The cluster settings for this node; the addresses are what the listeners actually bound.
pub fn cluster_settings(
    cfg: &Config,
    rtmp_bound: SocketAddr,
    rtmps_bound: Option<SocketAddr>,
    http_bound: SocketAddr,
    gossip_advertise: SocketAddr,
) -> ClusterSettings {
    let rtmp_advertise = advertise_addr(&cfg.rtmp.advertise, rtmp_bound);
    let mut settings = ClusterSettings::new(
        cfg.node.id.clone(),
        node_role(cfg.node.role),
        cfg.cluster.secret.clone(),
    );
    settings.tier = cfg.edge.tier;
    settings.capacity = crate::cluster::Capacity {
        max_players: cfg.edge.max_players,
        max_egress_mbps: cfg.edge.max_egress_mbps,
    };
    settings.zone = cfg.node.zone.clone();
    settings.http_advertise = http_advertise_addr(http_bound, &rtmp_advertise);
    settings.rtmp_advertise = rtmp_advertise;
    settings.rtmps_advertise = rtmps_bound
        .map(|bound| tls_advertise_addr(cfg, bound))
        .unwrap_or_default();
    settings.gossip_listen = cfg.cluster.gossip_listen;
    settings.gossip_advertise = gossip_advertise;
    settings.seeds = cfg.cluster.seeds.clone();
    settings.cluster_id = cfg.cluster.cluster_id.clone();
    settings
}

/// This node's players and publishers as the hub sees it (egress is measured apart), the
/// streams published here (an origin's claims), and every stream with a publisher, pulled ones
/// included (what an edge carries).
fn hub_load(hub: &Hub) -> (Load, BTreeSet<String>, BTreeSet<String>) {
    let mut load = Load::default();
    let mut publishing = BTreeSet::new();
    let mut carried = BTreeSet::new();
    for stream in hub.streams() {
        load.players = load.players.saturating_add(stream.players as u64);
        if stream.publishing {
            carried.insert(stream.key.clone());
        }
        // A stream this node pulls from another origin is held there, not here.
        if stream.publishing && !stream.relayed {
            load.publishers = load.publishers.saturating_add(1);
            publishing.insert(stream.key);
        }
    }
    (load, publishing, carried)
}

/// This process's CPU over the last `interval` (thousandths of a core) and memory.
struct UsageMeter {
    last: Option<(tokio::time::Instant, Duration)>,
}

impl UsageMeter {
    fn sample(&mut self) -> Usage {
        let pid = std::process::id();
        let now = tokio::time::Instant::now();
        let cpu = crate::procstat::cpu_time(pid).unwrap_or_default();
        let cpu_permille = match self.last.replace((now, cpu)) {
            Some((then, before)) if now > then => {
                let used = cpu.saturating_sub(before).as_secs_f64();
                (used / now.duration_since(then).as_secs_f64() * 1000.0) as u64
            }
            _ => 0,
        };
        Usage {
            cpu_permille,
            rss_kib: crate::procstat::rss_kib(pid).unwrap_or(0),
        }
    }
}

/// Keeps the advert in step with the hub: every [`ADVERTISE_INTERVAL`], the load, and (only
/// when it changed) on an origin the set of streams published here (its claims), on an edge
/// the streams it carries (for the balancer; never claims). Polling keeps the hub free of
/// cluster hooks; the cost is one pass over the hub's streams per interval. The egress rate is
/// the RTMP bytes written over the last [`EGRESS_WINDOW`] intervals, and the CPU and memory
/// use, are re-advertised once per window (each change is gossiped to every node, so it must
/// not change every tick).
async fn advertise(cluster: Cluster, hub: Hub, traffic: Arc<Traffic>, stop: CancellationToken) {
    let origin = cluster.role() == NodeRole::Origin;
    let mut advertised: Option<BTreeSet<String>> = None;
    let mut tick = tokio::time::interval(ADVERTISE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    let mut egress = RateMeter::new(EGRESS_WINDOW);
    let mut egress_bps = 0;
    let mut usage = UsageMeter { last: None };
    for ticks in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let rate = egress.sample(started.elapsed(), traffic.egress_bytes());
        if ticks % EGRESS_WINDOW as u64 == 0 {
            egress_bps = rate;
            cluster.set_usage(usage.sample());
        }
        let (mut load, publishing, carried) = hub_load(&hub);
        load.egress_bps = egress_bps;
        cluster.set_load(load);
        let streams = if origin { publishing } else { carried };
        if advertised.as_ref() != Some(&streams) {
            if origin {
                cluster.set_streams(streams.iter().cloned().collect());
            } else {
                cluster.set_carried(streams.iter().cloned().collect());
            }
            advertised = Some(streams);
        }
    }
}

/// How a node is asked to stop: `drain` (the first SIGTERM, or `POST /api/v1/drain`) takes it
/// out of service but keeps serving what it holds; `stop` (a second signal) ends it now.
/// `reload` (SIGHUP) re-reads the RTMPS certificate and key.
#[derive(Clone, Default)]
pub struct Signals {
    pub drain: CancellationToken,
    pub stop: CancellationToken,
    pub reload: Arc<tokio::sync::Notify>,
}

/// Reloads the RTMPS certificate and what relays trust each time `reload` is notified, until
/// `stop`: new connections get the new ones, open connections keep theirs; a bad file keeps
/// what was in use (one error line).
async fn reload_certificates(
    cert: Option<Arc<ServerCert>>,
    trusted: Option<Arc<TrustedCertificates>>,
    reload: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = reload.notified() => {}
        }
        if cert.is_none() && trusted.is_none() {
            info!("SIGHUP: no certificates to reload");
        }
        let mut failed = None;
        if let Some(cert) = &cert {
            match cert.reload() {
                Ok(()) => info!("SIGHUP: RTMPS certificate reloaded"),
                Err(e) => {
                    error!(error = %e, "SIGHUP: RTMPS certificate not reloaded; keeping the one in use");
                    failed = Some(cert.cert_path());
                }
            }
        }
        if let Some(trusted) = &trusted {
            if failed == Some(trusted.path()) {
                // The same file (relays trust rtmp.tls_cert): one error line says it all.
                continue;
            }
            match trusted.reload() {
                Ok(()) => info!("SIGHUP: certificates relays trust reloaded"),
                Err(e) => {
                    error!(error = %e, "SIGHUP: certificates relays trust not reloaded; keeping the ones in use")
                }
            }
        }
    }
}

/// How often a draining node looks whether it still holds anything.
const DRAIN_CHECK: Duration = Duration::from_millis(250);

/// Whether the node still serves anything a drain must wait for: a publisher (a client, or an
/// edge's forwarded publish), or a player (a client or another node's relay) of a stream that
/// is live here. Players of a stream whose publisher left (or moved to another origin) have
/// nothing left to wait for on a node going away: they are closed with the rest and reconnect
/// elsewhere.
fn holds_something(ctx: &crate::server::ServerContext) -> bool {
    ctx.clients
        .list()
        .iter()
        .any(|c| match (c.role, &c.stream) {
            ("publish", _) => true,
            ("play", Some(key)) => ctx.hub.is_publishing(key),
            _ => false,
        })
}

/// Runs the node until `signals` say stop (see [`Signals`]).
pub async fn run(cfg: Config, signals: Signals) -> Result<(), AppError> {
    let hub = Hub::new(hub_config(&cfg));
    // RTMP stops on its own token: on shutdown the node drains first, then stops RTMP.
    let rtmp_stop = CancellationToken::new();
    let access = crate::access::build(&cfg).map_err(AppError::Access)?;
    let tls = NodeTls::from_config(&cfg)?;
    // Hook notifications and JWKS refreshes run until the node stops.
    let access_stop = CancellationToken::new();
    if let Some(hooks) = &access.hooks {
        hooks.spawn(access_stop.clone());
    }
    if let Some(jwt) = &access.jwt {
        jwt.spawn_refresh(access_stop.clone());
    }
    let identity = ServerIdentity {
        node_id: cfg.node.id.clone(),
        role: cfg.node.role.as_str(),
        access: access.access.clone(),
    };
    let mut server = RtmpServer::bind(
        cfg.rtmp.listen,
        hub.clone(),
        session_limits(&cfg),
        cfg.rtmp.max_connections,
        identity,
        rtmp_stop.clone(),
    )
    .await
    .map_err(|source| AppError::Bind {
        what: "RTMP",
        addr: cfg.rtmp.listen,
        source,
    })?;
    let rtmp_addr = server.local_addr().map_err(|source| AppError::Bind {
        what: "RTMP",
        addr: cfg.rtmp.listen,
        source,
    })?;
    let rtmps_addr = match &tls.server {
        None => None,
        Some(cert) => {
            let addr: SocketAddr = cfg.rtmp.tls_listen.parse().map_err(|e| TlsError::Config {
                key: "rtmp.tls_listen",
                message: format!("{e}"),
            })?;
            let bound = server
                .bind_tls(addr, cert.acceptor()?)
                .await
                .map_err(|source| AppError::Bind {
                    what: "RTMPS",
                    addr,
                    source,
                })?;
            Some(bound)
        }
    };
    let reload_stop = CancellationToken::new();
    tokio::spawn(reload_certificates(
        tls.server.clone(),
        tls.relay.clone(),
        signals.reload.clone(),
        reload_stop.clone(),
    ));
    let http_bind_error = |source| AppError::Bind {
        what: "HTTP",
        addr: cfg.http.listen,
        source,
    };
    let http_listener = TcpListener::bind(cfg.http.listen)
        .await
        .map_err(http_bind_error)?;
    let http_addr = http_listener.local_addr().map_err(http_bind_error)?;
    let flv = match cfg.flv.listen_addr() {
        Some(addr) => {
            let settings = crate::flv::FlvSettings {
                allow_origin: cfg.flv.allow_origin.clone(),
            };
            let bind_error = |source| AppError::Bind {
                what: "HTTP-FLV",
                addr,
                source,
            };
            let flv = crate::flv::FlvServer::bind(
                addr,
                server.context(),
                settings,
                cfg.rtmp.max_connections,
            )
            .await
            .map_err(bind_error)?;
            let bound = flv.local_addr().map_err(bind_error)?;
            Some((flv, bound))
        }
        None => None,
    };
    let flv_addr = flv.as_ref().map(|(_, bound)| *bound);

    let health = Arc::new(Health::default());
    let http_state = Arc::new(HttpState {
        node_id: cfg.node.id.clone(),
        role: cfg.node.role,
        hub: hub.clone(),
        cluster_enabled: cfg.cluster_enabled(),
        cluster: OnceLock::new(),
        relays: OnceLock::new(),
        health: health.clone(),
        traffic: server.context().traffic.clone(),
        early_log: server.context().early_log.clone(),
        admin_token: cfg.http.admin_token.clone(),
        clients: server.context().clients.clone(),
        access: server.context().access.clone(),
        hooks: access.hooks.clone(),
        node_key: OnceLock::new(),
        drain: signals.drain.clone(),
    });
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(crate::http::serve(
        http_listener,
        http_state.clone(),
        http_stop.clone(),
    ));

    let cluster = if cfg.cluster_enabled() {
        let gossip_advertise = resolve_gossip_advertise(&cfg).await?;
        let mut settings =
            cluster_settings(&cfg, rtmp_addr, rtmps_addr, http_addr, gossip_advertise);
        if let Some(bound) = flv_addr {
            settings.flv_advertise = http_advertise_addr(bound, &settings.rtmp_advertise);
        }
        // Gossip runs on its own thread: a loaded RTMP runtime must not delay heartbeats.
        let cluster = Cluster::start_isolated(settings).await?;
        let _ = http_state.cluster.set(cluster.clone());
        Some(cluster)
    } else {
        None
    };

    let gossip = cluster
        .as_ref()
        .map_or_else(|| "off".to_string(), |c| c.gossip_addr().to_string());
    let rtmps = rtmps_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    info!(
        node = %cfg.node.id,
        role = cfg.node.role.as_str(),
        rtmp = %rtmp_addr,
        rtmps = %rtmps,
        http = %http_addr,
        flv = %flv_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        gossip = %gossip,
        "ringcast listening"
    );
    let relays = cluster.as_ref().map(|cluster| {
        let relay_key = RelayKey::derive(&cfg.cluster.secret, &cfg.cluster.cluster_id);
        let mode = |m: EdgeMode| match m {
            EdgeMode::Proxy => Mode::Proxy,
            EdgeMode::Redirect => Mode::Redirect,
            EdgeMode::Balance => Mode::Balance,
        };
        let relays = Relays::new(
            hub.clone(),
            cluster.clone(),
            advertise_addr(&cfg.rtmp.advertise, rtmp_addr),
            mode(cfg.edge.play),
            mode(cfg.edge.publish),
            cfg.cluster.max_pulls,
            Links {
                relay_key: relay_key.clone(),
                tls: tls.relay.clone(),
            },
        );
        let _ = http_state.node_key.set(relay_key.clone());
        let _ = server.context().relay_key.set(relay_key);
        let _ = server.context().relays.set(relays.clone());
        let _ = http_state.relays.set(relays.clone());
        relays
    });

    let advertiser_stop = CancellationToken::new();
    let advertiser = cluster.as_ref().map(|cluster| {
        tokio::spawn(advertise(
            cluster.clone(),
            hub.clone(),
            server.context().traffic.clone(),
            advertiser_stop.clone(),
        ))
    });
    health.set_ready();
    if let Some(cluster) = &cluster {
        cluster.set_ready(true);
    }

    let context = server.context();
    let stop_accepting = CancellationToken::new();
    let mut rtmp = tokio::spawn(server.run(stop_accepting.clone(), SHUTDOWN_GRACE));
    let flv = flv.map(|(flv, _)| tokio::spawn(flv.run(stop_accepting.clone(), SHUTDOWN_GRACE)));
    tokio::select! {
        _ = signals.drain.cancelled() => {}
        _ = signals.stop.cancelled() => {}
        ended = &mut rtmp => error!(?ended, "RTMP server ended unexpectedly; shutting down"),
    }

    // Drain: out of service at once (not ready, out of the ring for new streams, no new
    // connections), but what the node holds is served until it ends, the drain timeout, or a
    // second signal.
    health.set_draining();
    if let Some(cluster) = &cluster {
        cluster.set_draining(true);
    }
    stop_accepting.cancel();
    let drain_timeout = Duration::from_secs(cfg.node.drain_timeout_s);
    let drained = async {
        while holds_something(&context) {
            tokio::time::sleep(DRAIN_CHECK).await;
        }
    };
    if !signals.stop.is_cancelled() && !rtmp.is_finished() {
        info!(
            timeout_s = cfg.node.drain_timeout_s,
            "draining: serving what this node holds until it ends"
        );
        tokio::select! {
            _ = drained => info!("drained: nothing left to serve"),
            _ = tokio::time::sleep(drain_timeout) => warn!("drain timeout; closing what is left"),
            _ = signals.stop.cancelled() => info!("stopping before the drain ended"),
        }
    }

    if let Some(relays) = &relays {
        relays.stop_all();
    }
    rtmp_stop.cancel();
    if !rtmp.is_finished() {
        let _ = rtmp.await;
    }
    if let Some(flv) = flv {
        let _ = flv.await;
    }
    advertiser_stop.cancel();
    if let Some(advertiser) = advertiser {
        let _ = advertiser.await;
    }
    if let Some(cluster) = &cluster {
        cluster.shutdown().await;
    }
    access_stop.cancel();
    reload_stop.cancel();
    http_stop.cancel();
    let _ = http.await;
    info!("ringcast stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn advertise_addresses() {
        let bound = addr("127.0.0.1:40000");
        let wildcard = addr("0.0.0.0:1935");
        assert_eq!(advertise_addr("", bound), "127.0.0.1:40000");
        assert_eq!(advertise_addr("", wildcard), "");
        assert_eq!(advertise_addr("", addr("[::]:1935")), "");
        assert_eq!(advertise_addr("", addr("[::1]:1935")), "[::1]:1935");
        assert_eq!(advertise_addr("origin-0:1935", wildcard), "origin-0:1935");
        assert_eq!(advertise_addr("origin-0:0", bound), "origin-0:40000");
        assert_eq!(advertise_addr("[fd00::1]:0", bound), "[fd00::1]:40000");

        assert_eq!(
            http_advertise_addr(addr("127.0.0.1:8080"), "origin-0:1935"),
            "127.0.0.1:8080"
        );
        assert_eq!(
            http_advertise_addr(addr("0.0.0.0:8080"), "origin-0:1935"),
            "origin-0:8080"
        );
        assert_eq!(http_advertise_addr(addr("0.0.0.0:8080"), ""), "");
    }

    #[tokio::test]
    async fn settings_follow_the_config() {
        let env: Vec<(String, String)> = [
            ("RINGCAST_NODE__ID", "origin-3"),
            ("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef"),
            ("RINGCAST_CLUSTER__SEEDS", "origin-0:7946,origin-1:7946"),
            ("RINGCAST_CLUSTER__GOSSIP_LISTEN", "127.0.0.1:0"),
            ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "127.0.0.1:0"),
            ("RINGCAST_CLUSTER__CLUSTER_ID", "blue"),
            ("RINGCAST_RTMP__ADVERTISE", "origin-3.example.com:1935"),
            ("RINGCAST_EDGE__TIER", "2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cfg = Config::load_from(None, &env).expect("config");
        let gossip = resolve_gossip_advertise(&cfg).await.expect("resolves");
        assert_eq!(gossip, addr("127.0.0.1:0"));
        let s = cluster_settings(
            &cfg,
            addr("0.0.0.0:1935"),
            Some(addr("0.0.0.0:1936")),
            addr("0.0.0.0:8080"),
            gossip,
        );
        assert_eq!(s.node_id, "origin-3");
        assert_eq!(s.role, NodeRole::Origin);
        assert_eq!(s.tier, 2, "passed on; the cluster ignores it on origins");
        assert_eq!(s.rtmp_advertise, "origin-3.example.com:1935");
        assert_eq!(s.rtmps_advertise, "origin-3.example.com:1936");
        assert_eq!(s.http_advertise, "origin-3.example.com:8080");
        assert_eq!(s.gossip_listen, addr("127.0.0.1:0"));
        assert_eq!(s.seeds, ["origin-0:7946", "origin-1:7946"]);
        assert_eq!(s.cluster_id, "blue");
        assert_eq!(s.secret, "k-0123456789abcdef");

        let mut cfg = cfg;
        cfg.cluster.gossip_advertise = "localhost:7946".into();
        let resolved = resolve_gossip_advertise(&cfg).await.expect("localhost");
        assert_eq!(resolved, addr("127.0.0.1:7946"));
        cfg.cluster.gossip_advertise = String::new();
        let unset = resolve_gossip_advertise(&cfg).await.expect("unset");
        assert!(unset.ip().is_unspecified() && unset.port() == 0);
    }
}
