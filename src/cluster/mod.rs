//! Cluster layer: gossip membership, the origin ring and the stream locator.
//!
//! Owns: this node's gossip identity and advert, the background tasks that keep the
//! [`ClusterView`] current, and the [`Cluster`] handle the rest of ringcast reads. Must never:
//! block a caller (every method reads a snapshot or writes a small local state that a task
//! pushes into gossip), open a gossip port without a secret, or panic on peer input.
//!
//! Data flow:
//!
//! ```text
//! UDP / SimNetwork → transport (HMAC, fragments) → codec → chitchat (membership, keys)
//!   → view: state (parse adverts) → ring (live ready origins) → locator (claims, then ring)
//!   → watch<Arc<ClusterView>> → Cluster::{nodes, locate, cluster_streams, subscribe}
//! Cluster::set_* → local advert → chitchat self state → gossip
//! ```
//!
//! Failure detection (defaults, see [`FailureDetection`]): chitchat's phi is `time since a
//! peer's heartbeat last advanced / mean interval between advances`, and a peer is dead above
//! 8. With 300 ms gossip a peer's heartbeat reaches us through several digests per round, so
//! the mean interval is ~150-190 ms and a peer is declared dead after ~1.2-1.5 s without news;
//! the liveness check runs once per round. Measured (`benches/cluster_convergence.rs`,
//! simulated time): a killed node is out of the first ring after 1.3-1.6 s and out of every
//! ring after 1.9-2.8 s, for 10 to 100 nodes. The price: a node whose gossip stalls for more
//! than ~1.2 s is briefly declared dead. The binary therefore runs gossip on a thread of its own
//! ([`Cluster::start_isolated`]), where RTMP load cannot delay it; raise `phi_threshold`
//! (12 ≈ 2 s of silence) if a whole machine is starved that long in production.
//!
//! Generations: a node's chitchat id is (node id, generation = start time in ns, gossip
//! address). A restart is a new chitchat id; the view shows only the newest live generation of a
//! node id, and the ring hashes node ids, so a restart does not move streams.

mod codec;
mod locator;
mod replay;
mod ring;
mod seeds;
mod simnet;
mod state;
mod tiers;
mod transport;
mod view;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::{
    spawn_chitchat, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use locator::{Location, Locator, Source};
pub use ring::{Ring, RingHasher, VNODES};
pub use simnet::{SimNetwork, SimStats};
pub use state::{valid_stream_name, MAX_STREAM_NAME};
pub use transport::{GossipStats, MAX_DATAGRAM};
pub use view::{ClusterView, EdgeView, NodeView};

use state::LocalAdvert;
use transport::{AuthTransport, GossipKey, TransportStats, Wire};
use view::ViewBuilder;

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Holds publishers; advertises its streams; member of the ring.
    Origin,
    /// Serves players by relaying or redirecting to origins; never owns a stream.
    Edge,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Origin => "origin",
            NodeRole::Edge => "edge",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<NodeRole> {
        match s {
            "origin" => Some(NodeRole::Origin),
            "edge" => Some(NodeRole::Edge),
            _ => None,
        }
    }
}

/// Load a node reports (the origin ring's bounded loads and the edge balancer read it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Load {
    pub players: u64,
    pub publishers: u64,
    pub egress_bps: u64,
}

/// What an edge may take (`edge.max_players`, `edge.max_egress_mbps`); 0 = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capacity {
    pub max_players: u64,
    pub max_egress_mbps: u64,
}

/// The machine resources a node uses: CPU of this process in thousandths of one core over the
/// last advert interval, and its resident memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_permille: u64,
    pub rss_kib: u64,
}

/// chitchat failure-detector and garbage-collection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureDetection {
    /// A peer is dead when `time since its heartbeat last advanced / mean interval between
    /// advances` exceeds this. 8 ≈ 1.2-1.5 s without news at a 300 ms gossip interval, so a
    /// killed node leaves every ring in 1.9-2.8 s (measured, 10-100 nodes).
    pub phi_threshold: f64,
    /// Heartbeat intervals kept for the mean. 100 intervals ≈ 30 s of history: adapts quickly
    /// after a partition and keeps one outlier from moving the mean much.
    pub sampling_window: usize,
    /// Longer intervals (a partition, a paused process) are not sampled, so they do not make
    /// the detector slow afterwards. Default 2 s.
    pub max_interval: Duration,
    /// How long a dead node's state is kept (and listed with `live: false`) before chitchat
    /// forgets it. After half of it the node is no longer gossiped. Default 5 min: a partition
    /// that heals sooner re-merges without help; a longer one re-merges through the seeds.
    pub dead_node_grace: Duration,
    /// How long tombstones of deleted keys are kept. We never delete keys (emptied buckets are
    /// set to ""), so this only bounds chitchat's own bookkeeping. Default 10 min.
    pub marked_for_deletion_grace: Duration,
}

impl Default for FailureDetection {
    fn default() -> Self {
        FailureDetection {
            phi_threshold: 8.0,
            sampling_window: 100,
            max_interval: Duration::from_secs(2),
            dead_node_grace: Duration::from_secs(5 * 60),
            marked_for_deletion_grace: Duration::from_secs(10 * 60),
        }
    }
}

/// Everything [`Cluster::start`] needs.
#[derive(Clone)]
pub struct ClusterSettings {
    /// Unique in the cluster, stable across restarts (the ring hashes it).
    pub node_id: String,
    pub role: NodeRole,
    /// Edge tier: 1 pulls from origins, N from edges of tier N - 1 (see `tiers`). Ignored
    /// on origins. Default 1.
    pub tier: u8,
    /// What this edge may take (the balancer keeps it under); unlimited by default.
    pub capacity: Capacity,
    /// `node.zone`: a label the balancer may prefer players' edges by ("" = none).
    pub zone: String,
    /// RTMP `host:port` other nodes and redirected clients use.
    pub rtmp_advertise: String,
    /// RTMPS `host:port` other nodes use (relays with `cluster.relay_tls`); "" = none.
    pub rtmps_advertise: String,
    /// HTTP `host:port`, shown to operators.
    pub http_advertise: String,
    /// HTTP-FLV `host:port` players are sent to; "" when HTTP-FLV is off.
    pub flv_advertise: String,
    /// Gossip bind address; port 0 picks a free port.
    pub gossip_listen: SocketAddr,
    /// Address peers use. An unspecified IP takes the listen IP (refused if that is a
    /// wildcard too); port 0 takes the bound port.
    pub gossip_advertise: SocketAddr,
    /// `host:port` or `ip:port`; names are re-resolved every `seed_refresh`.
    pub seeds: Vec<String>,
    /// Shared cluster key. Required: there is no unauthenticated gossip.
    pub secret: String,
    pub cluster_id: String,
    /// Default 300 ms.
    pub gossip_interval: Duration,
    pub failure_detection: FailureDetection,
    /// Default 10 s.
    pub seed_refresh: Duration,
    /// Gossip over this in-memory network instead of UDP (tests and benchmarks).
    pub network: Option<SimNetwork>,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("node_id", &self.node_id)
            .field("role", &self.role)
            .field("tier", &self.tier)
            .field("capacity", &self.capacity)
            .field("zone", &self.zone)
            .field("rtmp_advertise", &self.rtmp_advertise)
            .field("rtmps_advertise", &self.rtmps_advertise)
            .field("http_advertise", &self.http_advertise)
            .field("flv_advertise", &self.flv_advertise)
            .field("gossip_listen", &self.gossip_listen)
            .field("gossip_advertise", &self.gossip_advertise)
            .field("seeds", &self.seeds)
            .field("secret", &"<redacted>")
            .field("cluster_id", &self.cluster_id)
            .field("gossip_interval", &self.gossip_interval)
            .field("failure_detection", &self.failure_detection)
            .field("seed_refresh", &self.seed_refresh)
            .field("network", &self.network.is_some())
            .finish()
    }
}

impl ClusterSettings {
    /// Settings with the defaults above; set the addresses and seeds before starting.
    pub fn new(node_id: impl Into<String>, role: NodeRole, secret: impl Into<String>) -> Self {
        ClusterSettings {
            node_id: node_id.into(),
            role,
            tier: 1,
            capacity: Capacity::default(),
            zone: String::new(),
            rtmp_advertise: String::new(),
            rtmps_advertise: String::new(),
            http_advertise: String::new(),
            flv_advertise: String::new(),
            gossip_listen: SocketAddr::from(([0, 0, 0, 0], 7946)),
            gossip_advertise: SocketAddr::from(([0, 0, 0, 0], 0)),
            seeds: Vec::new(),
            secret: secret.into(),
            cluster_id: "ringcast".into(),
            gossip_interval: Duration::from_millis(300),
            failure_detection: FailureDetection::default(),
            seed_refresh: Duration::from_secs(10),
            network: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A setting is unusable; `key` is the config key (`cluster.secret`, ...).
    #[error("{key}: {reason}")]
    InvalidSetting { key: &'static str, reason: String },
    #[error("cannot bind gossip socket {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start gossip: {0}")]
    Start(String),
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ClusterError {
    ClusterError::InvalidSetting {
        key,
        reason: reason.into(),
    }
}

fn validate(settings: &ClusterSettings) -> Result<(), ClusterError> {
    let id = &settings.node_id;
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            "node.id",
            "must be 1-128 characters without spaces or control characters",
        ));
    }
    if settings.secret.is_empty() {
        return Err(invalid("cluster.secret", "required to open a gossip port"));
    }
    if settings.cluster_id.is_empty() || codec::clashes_with_sentinel(&settings.cluster_id) {
        return Err(invalid(
            "cluster.cluster_id",
            "must be non-empty, without NUL",
        ));
    }
    if settings.rtmp_advertise.is_empty() && settings.role == NodeRole::Origin {
        return Err(invalid(
            "rtmp.advertise",
            "an origin must advertise its RTMP address",
        ));
    }
    if settings.gossip_interval < Duration::from_millis(10) {
        return Err(invalid("cluster.gossip_interval", "must be at least 10 ms"));
    }
    let fd = &settings.failure_detection;
    if !(fd.phi_threshold.is_finite() && fd.phi_threshold > 0.0) || fd.sampling_window == 0 {
        return Err(invalid(
            "cluster.failure_detection",
            "phi_threshold must be > 0 and sampling_window >= 1",
        ));
    }
    Ok(())
}

/// Wall clock in milliseconds since the Unix epoch (0 if the clock is before 1970).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// chitchat generation: start time in ns, strictly increasing within this process (two nodes
/// started in the same nanosecond by a test still get different generations).
fn next_generation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let previous = LAST.fetch_max(now, Ordering::Relaxed);
    if previous >= now {
        LAST.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        now
    }
}

/// Handle to this node's cluster membership. Clones share it. Dropping the last clone without
/// [`Cluster::shutdown`] stops gossip abruptly, like a crash (peers detect it by timeout).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    role: NodeRole,
    /// 0 on origins.
    tier: u8,
    gossip_addr: SocketAddr,
    gossip_interval: Duration,
    chitchat: Arc<ChitchatHandle>,
    local: Arc<Mutex<LocalAdvert>>,
    local_changed: Arc<Notify>,
    view: watch::Receiver<Arc<ClusterView>>,
    stats: Arc<TransportStats>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopping: AtomicBool,
    /// Set by [`Cluster::start_isolated`]: dropping it stops the gossip thread's runtime.
    own_runtime: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.chitchat.abort();
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// Binds the gossip socket, joins through the seeds and starts the background tasks.
    /// The node starts not ready: call [`Cluster::set_ready`] when it accepts RTMP.
    pub async fn start(settings: ClusterSettings) -> Result<Cluster, ClusterError> {
        validate(&settings)?;
        let wire = Wire::bind(settings.gossip_listen, settings.network.as_ref())
            .await
            .map_err(|source| ClusterError::Bind {
                addr: settings.gossip_listen,
                source,
            })?;
        let bound = wire.local_addr().map_err(|source| ClusterError::Bind {
            addr: settings.gossip_listen,
            source,
        })?;
        let mut advertise = settings.gossip_advertise;
        if advertise.ip().is_unspecified() {
            if bound.ip().is_unspecified() {
                return Err(invalid(
                    "cluster.gossip_advertise",
                    "required when cluster.gossip_listen is a wildcard address",
                ));
            }
            advertise.set_ip(bound.ip());
        }
        if advertise.port() == 0 {
            advertise.set_port(bound.port());
        }

        let generation = next_generation();
        let stats = Arc::new(TransportStats::default());
        let transport = AuthTransport::new(
            GossipKey::derive(&settings.secret, &settings.cluster_id),
            wire,
            settings.network.clone(),
            stats.clone(),
            // The sender id of replay protection: a restart is a new sender.
            generation,
        );
        let fd = &settings.failure_detection;
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(settings.node_id.clone(), generation, advertise),
            cluster_id: settings.cluster_id.clone(),
            gossip_interval: settings.gossip_interval,
            listen_addr: bound,
            // Resolved here (same IP family as our socket); `seeds::run` re-resolves.
            seed_nodes: seeds::resolve(&settings.seeds, advertise)
                .await
                .iter()
                .map(SocketAddr::to_string)
                .collect(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: fd.phi_threshold,
                sampling_window_size: fd.sampling_window,
                max_interval: fd.max_interval,
                // The prior of chitchat's smoothed mean (weighted as 5 samples): with chitchat's
                // 5 s default, a peer that joined seconds ago needs ~30 s of silence to be
                // declared dead.
                initial_interval: settings.gossip_interval,
                dead_node_grace_period: fd.dead_node_grace,
            },
            marked_for_deletion_grace_period: fd.marked_for_deletion_grace,
            catchup_callback: None,
            extra_liveness_predicate: None,
            // zstd-compressed digests: 22 KB/s instead of 103 KB/s of gossip per node at 100
            // nodes (bench). Safe because every node runs chitchat 0.13, which decodes both.
            protocol_version: ProtocolVersion::V1,
        };
        let tier = match settings.role {
            NodeRole::Origin => 0,
            NodeRole::Edge => settings.tier,
        };
        let local = LocalAdvert {
            role: settings.role,
            tier,
            rtmp: settings.rtmp_advertise.clone(),
            rtmps: settings.rtmps_advertise.clone(),
            http: settings.http_advertise.clone(),
            flv: settings.flv_advertise.clone(),
            ready: false,
            draining: false,
            leaving: false,
            load: Load::default(),
            capacity: settings.capacity,
            usage: Usage::default(),
            zone: settings.zone.clone(),
            streams: BTreeMap::new(),
        };
        let handle = spawn_chitchat(config, local.initial_key_values(), &transport)
            .await
            .map_err(|err| ClusterError::Start(format!("{err:#}")))?;
        let handle = Arc::new(handle);
        let chitchat = handle.chitchat();

        let mut builder = ViewBuilder::default();
        let (first_view, live_watch) = {
            let chitchat = chitchat.lock().await;
            (builder.rebuild(&chitchat), chitchat.live_nodes_watcher())
        };
        let (view_tx, view_rx) = watch::channel(Arc::new(first_view.unwrap_or_default()));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let local = Arc::new(Mutex::new(local));
        let local_changed = Arc::new(Notify::new());

        let membership = tokio::spawn(run_membership(Membership {
            chitchat: chitchat.clone(),
            live_watch,
            local: local.clone(),
            local_changed: local_changed.clone(),
            view_tx,
            builder,
            shutdown: shutdown_rx.clone(),
        }));
        let seeder = tokio::spawn(seeds::run(
            handle.clone(),
            settings.seeds.clone(),
            settings.seed_refresh,
            advertise,
            shutdown_rx,
        ));
        info!(node_id = %settings.node_id, role = settings.role.as_str(), gossip = %advertise,
            generation, seeds = ?settings.seeds, "joined gossip");
        Ok(Cluster {
            inner: Arc::new(Inner {
                node_id: settings.node_id,
                role: settings.role,
                tier,
                gossip_addr: advertise,
                gossip_interval: settings.gossip_interval,
                chitchat: handle,
                local,
                local_changed,
                view: view_rx,
                stats,
                shutdown: shutdown_tx,
                tasks: Mutex::new(vec![membership, seeder]),
                stopping: AtomicBool::new(false),
                own_runtime: Mutex::new(None),
            }),
        })
    }

    /// [`Cluster::start`] on a runtime of its own: one OS thread that runs gossip, failure
    /// detection and view rebuilds, so that a busy or stalled RTMP runtime cannot delay
    /// heartbeats and get this node declared dead by its peers (at the default phi threshold,
    /// about 1.2 s without news). The thread ends when the last clone of the handle drops.
    pub async fn start_isolated(settings: ClusterSettings) -> Result<Cluster, ClusterError> {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("ringcast-gossip".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = started_tx.send(Err(ClusterError::Start(format!(
                            "cannot build the gossip runtime: {err}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let _ = started_tx.send(Cluster::start(settings).await);
                    // Runs the gossip tasks until the handle is gone (sender dropped).
                    let _ = stop_rx.await;
                });
            })
            .map_err(|err| ClusterError::Start(format!("cannot start the gossip thread: {err}")))?;
        let cluster = started_rx
            .await
            .map_err(|_| ClusterError::Start("the gossip thread ended".into()))??;
        *lock(&cluster.inner.own_runtime) = Some(stop_tx);
        Ok(cluster)
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    pub fn role(&self) -> NodeRole {
        self.inner.role
    }

    /// The gossip address peers use (the bound port if the settings said 0).
    pub fn gossip_addr(&self) -> SocketAddr {
        self.inner.gossip_addr
    }

    /// The current snapshot.
    pub fn view(&self) -> Arc<ClusterView> {
        self.inner.view.borrow().clone()
    }

    /// Known nodes (this one included), one per node id, sorted by id.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.view().nodes().to_vec()
    }

    /// Where `stream` (`APP/STREAM`) is: a live origin that advertises it, else the ring owner.
    pub fn locate(&self, stream: &str) -> Option<Location> {
        self.view().locate(stream)
    }

    /// Where this node pulls `stream` from: for an edge of tier 2 or more, the edge of the
    /// tier below that the ring picks (if any is live); otherwise [`Cluster::locate`].
    pub fn locate_upstream(&self, stream: &str) -> Option<Location> {
        self.view().locate_upstream(stream, self.inner.tier)
    }

    /// Every stream live origins advertise, with the origin that wins it, sorted by stream.
    pub fn cluster_streams(&self) -> Vec<(String, String)> {
        self.view().locator().streams()
    }

    /// Notified whenever membership, the ring or the advertised streams change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.inner.view.clone()
    }

    /// Gossip datagrams dropped unparsed: bad or missing tag, malformed frame.
    pub fn bad_datagrams(&self) -> u64 {
        self.inner.stats.bad_datagrams()
    }

    /// Gossip traffic counters (for metrics).
    pub fn gossip_stats(&self) -> GossipStats {
        self.inner.stats.snapshot()
    }

    /// Replaces the set of streams (`APP/STREAM`) this origin holds. Invalid names (see
    /// [`valid_stream_name`]) are skipped with a warning. No-op on an edge.
    pub fn set_streams(&self, streams: Vec<String>) {
        if self.inner.role == NodeRole::Edge {
            debug!("set_streams on an edge ignored: edges never own streams");
            return;
        }
        let view = self.view();
        let now = wall_ms();
        let mut local = lock(&self.inner.local);
        let mut next = BTreeMap::new();
        for stream in streams {
            if !valid_stream_name(&stream) {
                warn!(stream = %stream.escape_debug(), "stream name not advertised");
                continue;
            }
            let stamp = match local.streams.get(&stream) {
                Some(stamp) => *stamp,
                // Newer than any claim we can see, so that this claim wins (locator rule).
                None => view
                    .locator()
                    .max_stamp(&stream)
                    .map_or(now, |seen| now.max(seen.saturating_add(1))),
            };
            next.insert(stream, stamp);
        }
        if local.streams != next {
            local.streams = next;
            drop(local);
            self.inner.local_changed.notify_one();
        }
    }

    pub fn set_load(&self, load: Load) {
        self.update_local(|local| local.load = load);
    }

    pub fn set_usage(&self, usage: Usage) {
        self.update_local(|local| local.usage = usage);
    }

    /// Replaces the set of streams (`APP/STREAM`) this edge carries: pulls, and publishers
    /// forwarded through it. The balancer prefers edges that carry a player's stream. No-op
    /// on an origin (its claims say what it holds).
    pub fn set_carried(&self, streams: Vec<String>) {
        if self.inner.role != NodeRole::Edge {
            return;
        }
        let next: BTreeMap<String, u64> = streams
            .into_iter()
            .filter(|s| valid_stream_name(s))
            .map(|s| (s, 0))
            .collect();
        self.update_local(|local| local.streams = next);
    }

    /// Ready origins are ring members. Starts false.
    pub fn set_ready(&self, ready: bool) {
        self.update_local(|local| local.ready = ready);
    }

    /// A draining origin leaves the ring (no new streams) but keeps answering for the streams
    /// it still advertises.
    pub fn set_draining(&self, draining: bool) {
        self.update_local(|local| local.draining = draining);
    }

    fn update_local(&self, change: impl FnOnce(&mut LocalAdvert)) {
        let mut local = lock(&self.inner.local);
        let before = local.clone();
        change(&mut local);
        if *local != before {
            drop(local);
            self.inner.local_changed.notify_one();
        }
    }

    /// Leaves cleanly: announces `leave`, which takes this node out of every ring and claim
    /// table within a few gossip rounds, then stops gossip. Idempotent.
    pub async fn shutdown(&self) {
        if self.inner.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let advert = {
            let mut local = lock(&self.inner.local);
            local.leaving = true;
            local.ready = false;
            local.clone()
        };
        let peers: Vec<SocketAddr> = {
            let chitchat = self.inner.chitchat.chitchat();
            let mut chitchat = chitchat.lock().await;
            advert.apply(chitchat.self_node_state());
            let me = chitchat.self_chitchat_id().clone();
            chitchat
                .live_nodes()
                .filter(|id| **id != me)
                .map(|id| id.gossip_advertise_addr)
                .collect()
        };
        // Push the news to every live peer now rather than waiting for random gossip.
        for peer in peers {
            let _ = self.inner.chitchat.gossip(peer);
        }
        tokio::time::sleep(self.inner.gossip_interval * 3).await;
        let _ = self.inner.chitchat.initiate_shutdown();
        let _ = self.inner.shutdown.send(true);
        let tasks: Vec<JoinHandle<()>> = lock(&self.inner.tasks).drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
        info!(node_id = %self.inner.node_id, "left gossip");
    }
}

struct Membership {
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    live_watch: watch::Receiver<BTreeMap<ChitchatId, chitchat::NodeState>>,
    local: Arc<Mutex<LocalAdvert>>,
    local_changed: Arc<Notify>,
    view_tx: watch::Sender<Arc<ClusterView>>,
    builder: ViewBuilder,
    shutdown: watch::Receiver<bool>,
}

/// How often the view is re-checked without a membership event (dead nodes being forgotten).
const VIEW_REFRESH: Duration = Duration::from_secs(1);

/// How long a node id may have two live incarnations before we call it a misconfiguration:
/// well above the few seconds a crashed predecessor stays live after a quick restart.
const DUPLICATE_ID_GRACE: Duration = Duration::from_secs(10);

/// Tracks [`ClusterView::duplicate_ids`] over time; warns once per id when one lasts.
#[derive(Default)]
struct DuplicateIds {
    since: HashMap<String, (tokio::time::Instant, bool)>,
}

impl DuplicateIds {
    fn observe(&mut self, view: &ClusterView) {
        let now = tokio::time::Instant::now();
        self.since
            .retain(|id, _| view.duplicate_ids().iter().any(|d| d == id));
        for id in view.duplicate_ids() {
            let (first_seen, warned) = self.since.entry(id.clone()).or_insert((now, false));
            if !*warned && now.duration_since(*first_seen) >= DUPLICATE_ID_GRACE {
                *warned = true;
                warn!(node_id = %id, "several live nodes use this node id; only the newest is \
                    listed and in the ring, the others' streams cannot be located: give every \
                    node a unique node.id");
            }
        }
    }
}

/// Pushes local changes into chitchat and republishes the view when gossip changes it.
async fn run_membership(mut m: Membership) {
    let mut refresh = tokio::time::interval(VIEW_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut duplicates = DuplicateIds::default();
    loop {
        let mut local_change = false;
        tokio::select! {
            _ = m.local_changed.notified() => local_change = true,
            changed = m.live_watch.changed() => if changed.is_err() { return },
            _ = refresh.tick() => {}
            _ = m.shutdown.changed() => return,
        }
        let view = {
            let mut chitchat = m.chitchat.lock().await;
            if local_change {
                let advert = lock(&m.local).clone();
                advert.apply(chitchat.self_node_state());
            }
            m.builder.rebuild(&chitchat)
        };
        if let Some(view) = view {
            m.view_tx.send_replace(Arc::new(view));
        }
        duplicates.observe(&m.view_tx.borrow());
    }
}

#[cfg(test)]
mod isolation_tests {
    use std::time::Instant;

    use super::*;

    /// Each scenario is its own cluster (`scenario` in the cluster id): they run at once.
    fn settings(id: &str, scenario: &str, seeds: Vec<String>) -> ClusterSettings {
        let mut s = ClusterSettings::new(id, NodeRole::Origin, "isolation-secret");
        s.rtmp_advertise = "127.0.0.1:1935".into();
        s.gossip_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        s.gossip_advertise = s.gossip_listen;
        s.seeds = seeds;
        s.cluster_id = format!("isolation-{scenario}-{}", std::process::id());
        s
    }

    /// The observer's failure detector: a 2 s silence (phi 12) declares a node dead, so the
    /// stalled control is always declared dead while a loaded CI machine that delays the
    /// isolated thread by a few hundred milliseconds does not get it declared dead too.
    const OBSERVER_PHI: f64 = 12.0;
    /// Longer than the observer's 2 s, with margin.
    const STALL: Duration = Duration::from_millis(4_000);

    /// Whether `observer` saw `id` not live at any moment during `window` (polled every 50 ms
    /// from a plain thread, so that no runtime of the test is involved).
    fn ever_dead(
        observer: Cluster,
        id: &'static str,
        window: Duration,
    ) -> std::thread::JoinHandle<bool> {
        std::thread::spawn(move || {
            let end = Instant::now() + window;
            while Instant::now() < end {
                if observer.view().node(id).is_none_or(|n| !n.live) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
    }

    /// Starts `id` (isolated or on `runtime`) and an isolated observer that has seen it live
    /// for a few seconds; then blocks `runtime`'s only thread for `STALL` and reports whether
    /// the observer declared `id` dead meanwhile.
    fn stall_declares_dead(id: &'static str, isolated: bool) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (node, observer) = runtime.block_on(async {
            let node = if isolated {
                Cluster::start_isolated(settings(id, id, vec![])).await
            } else {
                Cluster::start(settings(id, id, vec![])).await
            }
            .expect("node starts");
            node.set_ready(true);
            let seed = node.gossip_addr().to_string();
            let mut observer_settings = settings("observer", id, vec![seed]);
            observer_settings.failure_detection.phi_threshold = OBSERVER_PHI;
            let observer = Cluster::start_isolated(observer_settings)
                .await
                .expect("observer starts");
            let started = Instant::now();
            while observer.view().node(id).is_none_or(|n| !n.live) {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "{id} never seen"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Let the failure detector learn the heartbeat interval.
            tokio::time::sleep(Duration::from_secs(3)).await;
            (node, observer)
        });
        let watcher = ever_dead(observer, id, STALL + Duration::from_secs(2));
        // A stalled runtime: what a CPU-bound RTMP runtime looks like to tasks sharing it.
        runtime.block_on(async { std::thread::sleep(STALL) });
        let dead = watcher.join().expect("watcher");
        drop(node);
        dead
    }

    #[test]
    fn a_stalled_runtime_does_not_get_an_isolated_node_declared_dead() {
        let shared = std::thread::spawn(|| stall_declares_dead("shared", false));
        assert!(
            !stall_declares_dead("isolated", true),
            "gossip on its own thread must keep the node alive through a 4 s stall"
        );
        // The control: gossip on the stalled runtime itself is declared dead.
        assert!(
            shared.join().expect("control"),
            "control: shared runtime not declared dead"
        );
    }
}
