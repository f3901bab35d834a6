//! Relays between nodes: an edge (or an origin asked for a stream another origin holds) pulls
//! the stream once and feeds its local hub; an edge forwards a local publisher to the stream's
//! origin; in redirect mode it tells the client where to go instead.
//!
//! Owns the table of running relays (one pull and at most one push per stream), the players
//! waiting for a stream to appear in gossip, and the routing decision for each play and
//! publish. Relays are ordinary hub clients: a pull publishes into the hub, a push plays from
//! it. Must never: run two pulls of one stream, give up while players are attached, flip
//! origins while the current one is healthy, stay on an upstream gossip says is dead or
//! leaving, pull for a relay that is itself pulling (loops: a node only pulls for plain
//! clients, and an edge for relays fewer than `MAX_HOPS` deep), or open an upstream for a
//! stream no origin advertises: a player of such a stream waits here, with no upstream
//! connection, and the pull starts when the stream appears (so a client asking for thousands
//! of made-up names costs the upstreams nothing).

mod pull;
mod push;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::access::relay_credential::RelayKey;
use crate::balance::{Balancer, Reason};
use crate::client::{ClientError, ClientOptions, RtmpClient, RtmpUrl, UrlError};
use crate::cluster::{Cluster, ClusterView, Location, NodeRole, Source};
use crate::hub::{lock, Hub};

/// Relay chains longer than this are refused (edge tiers; loops are cut well before).
pub const MAX_HOPS: u32 = 3;
/// A pull closes this long after its last player left at most (it checks twice a second):
/// long enough to survive a player's reconnect, too short to keep pulls open for players
/// that are gone.
pub const PULL_LINGER: Duration = Duration::from_secs(1);
/// How often the players waiting for a stream to be advertised are looked at even without
/// a change of the cluster view (to forget those that left).
const WAITING_SWEEP: Duration = Duration::from_secs(1);

/// Why a relay left or could not use an upstream.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The relay gave the upstream up: gossip says it is dead or leaving, the stream moved,
    /// or media stopped while the stream is still advertised.
    #[error("left the upstream: {0}")]
    Left(String),
}

/// A jitter seed for a relay's backoff that differs between relays and restarts.
pub(crate) fn jitter_seed(salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ salt.rotate_left(17)) | 1
}

/// Why a relay must leave its upstream at `loc` for `key`, as `view` tells it: the node is
/// gone, dead or leaving, or (`follow_claims`, a pull from an origin) the stream's winning
/// claim is on another origin. A frozen or partitioned upstream sends no RST; gossip is what
/// says it is gone.
pub(crate) fn upstream_gone(
    view: &ClusterView,
    own: &str,
    key: &str,
    loc: &Location,
    follow_claims: bool,
) -> Option<String> {
    let node = match view.node(&loc.node_id) {
        None => return Some(format!("{} left the cluster", loc.node_id)),
        Some(node) => node,
    };
    if !node.live {
        return Some(format!("{} is dead per gossip", loc.node_id));
    }
    if node.leaving {
        return Some(format!("{} is leaving", loc.node_id));
    }
    if follow_claims {
        if let Some(now) = view.locate(key) {
            if now.source == Source::Gossip && now.node_id != loc.node_id && now.node_id != own {
                return Some(format!("the stream is now on {}", now.node_id));
            }
        }
    }
    None
}

/// How an edge serves a play or a publish (`edge.play` / `edge.publish`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Proxy,
    Redirect,
    /// Plays only (on any node): the balancer picks the edge, and the player is sent there
    /// or served here when that is this node.
    Balance,
}

/// What the session should do with a play or publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Serve from the local hub (a pull may be feeding it).
    Local,
    /// Send the client an RTMP 302 to `tc_url` / `url`, on node `node_id` (an HTTP player
    /// is sent to that node's HTTP-FLV address instead).
    Redirect {
        tc_url: String,
        url: String,
        node_id: String,
    },
    /// Refuse with this description (no origin known, redirect to ourselves).
    Refuse(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayState {
    /// Locating the origin or connecting to it.
    Connecting,
    /// Connected: media flows.
    Pulling,
    Pushing,
    /// No origin known for the stream yet.
    Waiting,
    /// The upstream failed; retrying after a backoff.
    Retrying,
}

impl RelayState {
    /// The one spelling, for JSON and metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            RelayState::Connecting => "connecting",
            RelayState::Pulling => "pulling",
            RelayState::Pushing => "pushing",
            RelayState::Waiting => "waiting",
            RelayState::Retrying => "retrying",
        }
    }
}

impl Serialize for RelayState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    pub stream: String,
    /// "pull" or "push".
    pub direction: &'static str,
    pub state: RelayState,
    /// The upstream's node id and RTMP address while connected (or last tried): the origin,
    /// or for a pull on an edge of tier 2 and up, an edge of the tier below.
    pub upstream_node: Option<String>,
    pub upstream_rtmp: Option<String>,
    /// The URL of the last upstream connection (`rtmps://` with `cluster.relay_tls`).
    pub upstream_url: Option<String>,
    pub since_seconds: f64,
    /// Upstream connections made so far (1 = never failed over).
    pub connects: u64,
    pub last_error: Option<String>,
}

/// Shared, updatable status of one relay.
#[derive(Clone)]
pub(crate) struct StatusCell(Arc<Mutex<(RelayStatus, Instant)>>);

impl StatusCell {
    fn new(stream: &str, direction: &'static str) -> StatusCell {
        StatusCell(Arc::new(Mutex::new((
            RelayStatus {
                stream: stream.to_string(),
                direction,
                state: RelayState::Connecting,
                upstream_node: None,
                upstream_rtmp: None,
                upstream_url: None,
                since_seconds: 0.0,
                connects: 0,
                last_error: None,
            },
            Instant::now(),
        ))))
    }

    pub(crate) fn set(
        &self,
        state: RelayState,
        upstream: Option<&Location>,
        error: Option<String>,
    ) {
        let mut cell = lock(&self.0);
        if cell.0.state != state {
            cell.1 = Instant::now();
        }
        cell.0.state = state.clone();
        if let Some(loc) = upstream {
            cell.0.upstream_node = Some(loc.node_id.clone());
            cell.0.upstream_rtmp = Some(loc.rtmp_addr.clone());
        }
        if matches!(state, RelayState::Pulling | RelayState::Pushing) {
            cell.0.connects += 1;
        }
        if error.is_some() {
            cell.0.last_error = error;
        }
    }

    /// Records the URL the relay connected to.
    pub(crate) fn set_url(&self, url: &RtmpUrl) {
        lock(&self.0).0.upstream_url = Some(url.to_string());
    }

    fn snapshot(&self) -> RelayStatus {
        let cell = lock(&self.0);
        let mut s = cell.0.clone();
        s.since_seconds = cell.1.elapsed().as_secs_f64();
        s
    }
}

struct Running {
    stop: CancellationToken,
    status: StatusCell,
}

/// Everything a relay task needs.
#[derive(Clone)]
pub(crate) struct RelayContext {
    pub hub: Hub,
    pub cluster: Cluster,
    /// Our own RTMP advertise address, to never relay or redirect to ourselves.
    pub self_rtmp: String,
    pub chunk_size: usize,
    /// Makes the credentials that prove our relays to other nodes.
    pub relay_key: RelayKey,
    /// With `cluster.relay_tls`: relays dial each node's `rtmps` address, trusting these
    /// certificates, and never plain RTMP.
    pub tls: Option<Arc<crate::tls::TrustedCertificates>>,
}

/// How this node's relays reach other nodes: the key their credentials come from, and TLS
/// when `cluster.relay_tls` is on.
pub struct Links {
    pub relay_key: RelayKey,
    pub tls: Option<Arc<crate::tls::TrustedCertificates>>,
}

impl RelayContext {
    /// Where a pull of `key` goes: the stream's origin, or on an edge of tier 2 and up the
    /// edge of the tier below that carries it (see `cluster::tiers`). Never this node.
    pub(crate) fn pull_upstream(&self, key: &str, status: &StatusCell) -> Option<Location> {
        self.mark_upstream(self.cluster.locate_upstream(key), status)
    }

    /// Where a push of `key` goes: always the stream's origin, whatever this edge's tier.
    pub(crate) fn push_upstream(&self, key: &str, status: &StatusCell) -> Option<Location> {
        self.mark_upstream(self.cluster.locate(key), status)
    }

    /// Whether some origin other than this node advertises `key` in gossip.
    pub(crate) fn advertised_elsewhere(&self, key: &str) -> bool {
        self.cluster.locate(key).is_some_and(|loc| {
            loc.source == Source::Gossip && loc.node_id != self.cluster.node_id()
        })
    }

    /// `located` unless it is this node, marking the relay `Connecting` to it, or `Waiting`
    /// when there is nowhere else to go.
    fn mark_upstream(&self, located: Option<Location>, status: &StatusCell) -> Option<Location> {
        let own = self.cluster.node_id();
        match located.filter(|l| l.node_id != own) {
            Some(loc) => {
                status.set(RelayState::Connecting, Some(&loc), None);
                Some(loc)
            }
            None => {
                status.set(RelayState::Waiting, None, None);
                None
            }
        }
    }
}

/// Redirects a relay follows before giving up on an upstream (as the design's depth 3).
const MAX_REDIRECTS: usize = 3;
/// Each step of a relay's connect (TCP + handshake + connect, createStream, play/publish).
const RELAY_CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl RelayContext {
    /// Connects to `path` on the node at `loc` as a relay `hops` deep (identified as such,
    /// and chunking at the hub's chunk size so hub frames can be written as they are), then
    /// plays or publishes it. An RTMP 302 on the way is followed (`redirect2`, else `redirect`
    /// plus the stream name) up to [`MAX_REDIRECTS`] times, and a redirect loop is an error.
    /// ringcast nodes never redirect a relay; a foreign upstream (an SRS origin cluster) may.
    pub(crate) async fn connect(
        &self,
        loc: &Location,
        path: &(String, String),
        hops: u32,
        publish: bool,
    ) -> Result<RtmpClient, ClientError> {
        let url = match &self.tls {
            None => upstream_url(&loc.rtmp_addr, path)?,
            Some(_) => {
                let addr = self
                    .cluster
                    .view()
                    .node(&loc.node_id)
                    .map(|node| node.rtmps_addr.clone())
                    .unwrap_or_default();
                if addr.is_empty() {
                    return Err(ClientError::Tls(
                        loc.node_id.clone(),
                        "advertises no RTMPS address (rtmp.tls_listen), and cluster.relay_tls allows no plain RTMP".into(),
                    ));
                }
                RtmpUrl::parse(&format!("rtmps://{}/{}/{}", addr, path.0, path.1))?
            }
        };
        let key = crate::server::stream_key(&path.0, &path.1);
        let credential = self.relay_key.issue(
            self.cluster.node_id(),
            &key,
            crate::access::relay_credential::now_unix(),
        );
        let opts = ClientOptions {
            relay_credential: Some(credential),
            flash_ver: format!("ringcast-relay/{}", env!("CARGO_PKG_VERSION")),
            hops,
            chunk_size: self.chunk_size,
            timeout: RELAY_CALL_TIMEOUT,
            keepalive: true,
            tls: self.tls.as_ref().map(|trusted| trusted.config()),
            ..ClientOptions::default()
        };
        let (client, chain) =
            RtmpClient::connect_following(&url, opts, publish, MAX_REDIRECTS).await?;
        if self.tls.is_some() && !client.url.tls {
            // Only a foreign upstream redirects a relay; never down to plain RTMP.
            return Err(ClientError::Tls(
                client.url.authority(),
                "redirected to plain RTMP, and cluster.relay_tls allows none".into(),
            ));
        }
        if chain.len() > 1 {
            info!(chain = %chain.join(" -> "), "upstream redirected the relay");
        }
        Ok(client)
    }
}

/// Sleeps `d` unless stopped first; true when stopped.
pub(crate) async fn wait(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

pub struct Relays {
    ctx: RelayContext,
    role: NodeRole,
    play_mode: Mode,
    publish_mode: Mode,
    /// Upstream pulls running at most (`cluster.max_pulls`).
    max_pulls: usize,
    pulls: Mutex<HashMap<String, Running>>,
    pushes: Mutex<HashMap<String, Running>>,
    /// Streams with local players that no origin advertises yet: pulled once one does.
    waiting: Mutex<HashMap<String, WaitingPull>>,
    /// Picks the edge of each player (`edge.play = "balance"`, and the route API).
    balancer: Balancer,
    next_id: Mutex<u64>,
}

/// A pull to start once its stream is advertised.
struct WaitingPull {
    app: String,
    name: String,
    connect_query: String,
    hops: u32,
}

/// Connection ids of relays, far from the server's own (which count up from 1).
const RELAY_CONN_BASE: u64 = 1 << 62;

/// Stops a push relay when the publisher's session ends.
pub struct PushGuard {
    relays: Arc<Relays>,
    key: String,
    stop: CancellationToken,
}

impl Drop for PushGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        let mut pushes = lock(&self.relays.pushes);
        if pushes.get(&self.key).is_some_and(|r| r.stop == self.stop) {
            pushes.remove(&self.key);
        }
    }
}

/// What a session knows about its client, for routing.
pub struct ClientInfo<'a> {
    pub key: &'a str,
    pub app: &'a str,
    /// Stream name with its query, as the client sent it.
    pub name: &'a str,
    /// The client's query from connect (tcUrl or app), without '?'.
    pub connect_query: &'a str,
    /// `ringcastHops` from connect: 0 for plain clients.
    pub hops: u32,
}

impl ClientInfo<'_> {
    /// The `zone` query argument (the stream's query, else the connect query), for the
    /// balancer.
    pub fn zone(&self) -> Option<String> {
        let stream_query = self.name.split_once('?').map_or("", |(_, q)| q);
        [stream_query, self.connect_query]
            .iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("zone="))
            .map(str::to_string)
    }
}

impl Relays {
    /// The relays of a node; starts the task that starts waiting pulls (it ends when the
    /// last handle drops). Must be called inside a tokio runtime.
    pub fn new(
        hub: Hub,
        cluster: Cluster,
        self_rtmp: String,
        play_mode: Mode,
        publish_mode: Mode,
        max_pulls: usize,
        links: Links,
    ) -> Arc<Relays> {
        let chunk_size = hub.config().chunk_size;
        let role = cluster.role();
        let view = cluster.subscribe();
        let relays = Arc::new(Relays {
            ctx: RelayContext {
                hub,
                cluster,
                self_rtmp,
                chunk_size,
                relay_key: links.relay_key,
                tls: links.tls,
            },
            role,
            play_mode,
            publish_mode,
            max_pulls,
            pulls: Mutex::new(HashMap::new()),
            pushes: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            balancer: Balancer::default(),
            next_id: Mutex::new(RELAY_CONN_BASE),
        });
        tokio::spawn(start_waiting_pulls(Arc::downgrade(&relays), view));
        relays
    }

    fn conn_id(&self) -> u64 {
        let mut id = lock(&self.next_id);
        *id += 1;
        *id
    }

    /// Decides how to serve a play, starting a pull when the stream lives elsewhere.
    pub fn route_play(self: &Arc<Self>, client: &ClientInfo<'_>) -> Route {
        if let Some(route) = self.balance(client) {
            return route;
        }
        if self.ctx.hub.is_publishing(client.key) && !self.is_pulling(client.key) {
            // Published here (or forwarded through here): serve it.
            return Route::Local;
        }
        let edge = self.role == NodeRole::Edge;
        if edge && self.play_mode == Mode::Redirect && client.hops == 0 {
            return self.redirect(client);
        }
        // Origins pull only for plain clients; edges also for relays of lower tiers.
        let may_pull = if edge {
            client.hops < MAX_HOPS
        } else {
            client.hops == 0
        };
        if !may_pull || self.is_pulling(client.key) {
            return Route::Local;
        }
        if !self.ctx.advertised_elsewhere(client.key) {
            // Nobody publishes it yet: the player waits here, and no upstream is opened
            // until an origin advertises the stream.
            self.wait_for(client);
            return Route::Local;
        }
        match self.ensure_pull(client.key, &upstream_path(client), client.hops) {
            Ok(()) => Route::Local,
            Err(why) => Route::Refuse(why),
        }
    }

    /// With `edge.play = "balance"`: where the balancer sends a player of `client`'s stream, or
    /// `None` when it is this node (serve it) or the node does not balance.
    pub fn balance(&self, client: &ClientInfo<'_>) -> Option<Route> {
        if self.play_mode != Mode::Balance || client.hops > 0 {
            return None;
        }
        let view = self.ctx.cluster.view();
        let zone = client.zone();
        let choice = self.balancer.route(&view, client.key, zone.as_deref());
        if choice.reason == Reason::Full {
            return Some(Route::Refuse(format!(
                "every edge is at its capacity; {} cannot be served now",
                client.key
            )));
        }
        (choice.node_id != self.ctx.cluster.node_id())
            .then(|| redirect_to(&choice.node_id, &choice.rtmp_addr, client))
    }

    /// Parks a pull of `client`'s stream until an origin advertises it (see
    /// [`start_waiting_pulls`]). Bounded like the hub's waiting streams.
    fn wait_for(&self, client: &ClientInfo<'_>) {
        let mut waiting = lock(&self.waiting);
        if waiting.len() >= self.ctx.hub.config().max_waiting_streams {
            return;
        }
        waiting
            .entry(client.key.to_string())
            .or_insert_with(|| WaitingPull {
                app: client.app.to_string(),
                name: client.name.to_string(),
                connect_query: client.connect_query.to_string(),
                hops: client.hops,
            });
    }

    /// Starts the pulls of waiting streams that are now advertised, and forgets those whose
    /// players left or that are published here meanwhile.
    fn start_waiting(self: &Arc<Self>) {
        let ready: Vec<(String, WaitingPull)> = {
            let mut waiting = lock(&self.waiting);
            let hub = &self.ctx.hub;
            waiting.retain(|key, _| hub.players_of(key) > 0 && !hub.is_publishing(key));
            let keys: Vec<String> = waiting
                .keys()
                .filter(|key| self.ctx.advertised_elsewhere(key))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|key| waiting.remove(&key).map(|w| (key, w)))
                .collect()
        };
        for (key, w) in ready {
            let client = ClientInfo {
                key: &key,
                app: &w.app,
                name: &w.name,
                connect_query: &w.connect_query,
                hops: w.hops,
            };
            if let Err(why) = self.ensure_pull(&key, &upstream_path(&client), w.hops) {
                warn!(stream = %key, reason = %why, "cannot start the pull of a waiting stream");
                lock(&self.waiting).insert(key, w);
            }
        }
    }

    /// Streams whose players wait for an origin to advertise them.
    pub fn waiting_count(&self) -> usize {
        lock(&self.waiting).len()
    }

    /// Decides how to take a publish: edges forward it (or redirect); origins keep it.
    pub fn route_publish(self: &Arc<Self>, client: &ClientInfo<'_>) -> Route {
        if self.role != NodeRole::Edge || client.hops > 0 {
            return Route::Local;
        }
        match self.publish_mode {
            Mode::Redirect => self.redirect(client),
            // `edge.publish` has no balance (the config refuses it): publishers are proxied.
            Mode::Proxy | Mode::Balance => Route::Local,
        }
    }

    /// Starts forwarding a local publisher's stream to its origin (edges in proxy mode); the
    /// push stops when the guard drops.
    pub fn start_push(self: &Arc<Self>, client: &ClientInfo<'_>) -> Option<PushGuard> {
        if self.role != NodeRole::Edge || self.publish_mode != Mode::Proxy || client.hops > 0 {
            return None;
        }
        let stop = CancellationToken::new();
        let status = StatusCell::new(client.key, "push");
        let target = upstream_path(client);
        lock(&self.pushes).insert(
            client.key.to_string(),
            Running {
                stop: stop.clone(),
                status: status.clone(),
            },
        );
        info!(stream = client.key, "forwarding publisher to its origin");
        tokio::spawn(push::run(
            self.ctx.clone(),
            client.key.to_string(),
            target,
            client.hops + 1,
            status,
            stop.clone(),
            None,
        ));
        Some(PushGuard {
            relays: self.clone(),
            key: client.key.to_string(),
            stop,
        })
    }

    fn is_pulling(&self, key: &str) -> bool {
        lock(&self.pulls).contains_key(key)
    }

    /// Starts the pull of `key` unless one runs; refuses past `max_pulls`.
    fn ensure_pull(
        self: &Arc<Self>,
        key: &str,
        target: &(String, String),
        client_hops: u32,
    ) -> Result<(), String> {
        let mut pulls = lock(&self.pulls);
        if pulls.contains_key(key) {
            return Ok(());
        }
        if pulls.len() >= self.max_pulls {
            return Err(format!(
                "this node already relays {} streams, its limit",
                self.max_pulls
            ));
        }
        let stop = CancellationToken::new();
        let status = StatusCell::new(key, "pull");
        pulls.insert(
            key.to_string(),
            Running {
                stop: stop.clone(),
                status: status.clone(),
            },
        );
        drop(pulls);
        info!(stream = key, "starting upstream pull");
        let relays = self.clone();
        let key = key.to_string();
        let target = target.clone();
        let hops = client_hops + 1;
        let conn_id = self.conn_id();
        tokio::spawn(async move {
            pull::run(
                relays.ctx.clone(),
                key.clone(),
                target,
                hops,
                conn_id,
                status,
                stop.clone(),
            )
            .await;
            let mut pulls = lock(&relays.pulls);
            if pulls.get(&key).is_some_and(|r| r.stop == stop) {
                pulls.remove(&key);
            }
        });
        Ok(())
    }

    fn redirect(&self, client: &ClientInfo<'_>) -> Route {
        let Some(loc) = self.ctx.cluster.locate(client.key) else {
            return Route::Refuse(format!("no origin known for {}", client.key));
        };
        if loc.rtmp_addr == self.ctx.self_rtmp || loc.node_id == self.ctx.cluster.node_id() {
            // A redirect to ourselves would loop (misconfigured advertise address).
            return Route::Refuse(format!(
                "refusing to redirect {} to this node itself ({})",
                client.key, loc.rtmp_addr
            ));
        }
        redirect_to(&loc.node_id, &loc.rtmp_addr, client)
    }

    /// The balancer (route API, `edge.play = "balance"`).
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// The cluster this node is in.
    pub fn cluster(&self) -> &Cluster {
        &self.ctx.cluster
    }

    /// Every running relay, for `/api/v1/streams`.
    pub fn statuses(&self) -> Vec<RelayStatus> {
        let mut all: Vec<RelayStatus> = lock(&self.pulls)
            .values()
            .chain(lock(&self.pushes).values())
            .map(|r| r.status.snapshot())
            .collect();
        all.sort_by(|a, b| (&a.stream, a.direction).cmp(&(&b.stream, b.direction)));
        all
    }

    /// Stops every relay (node shutdown).
    pub fn stop_all(&self) {
        for r in lock(&self.pulls)
            .values()
            .chain(lock(&self.pushes).values())
        {
            r.stop.cancel();
        }
    }
}

/// Starts waiting pulls whenever the cluster view changes (a stream appears in gossip), and
/// sweeps the waiting players every [`WAITING_SWEEP`]. Ends with the relays.
async fn start_waiting_pulls(
    relays: Weak<Relays>,
    mut view: tokio::sync::watch::Receiver<Arc<ClusterView>>,
) {
    let mut sweep = tokio::time::interval(WAITING_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = view.changed() => if changed.is_err() { return },
            _ = sweep.tick() => {}
        }
        match relays.upgrade() {
            Some(relays) => relays.start_waiting(),
            None => return,
        }
    }
}

/// An RTMP 302 sending `client` to the same app and stream (queries kept) at `rtmp_addr`.
fn redirect_to(node_id: &str, rtmp_addr: &str, client: &ClientInfo<'_>) -> Route {
    let query = if client.connect_query.is_empty() {
        String::new()
    } else {
        format!("?{}", client.connect_query)
    };
    let tc_url = format!("rtmp://{}/{}{}", rtmp_addr, client.app, query);
    let url = format!("rtmp://{}/{}/{}", rtmp_addr, client.app, client.name);
    Route::Redirect {
        tc_url,
        url,
        node_id: node_id.to_string(),
    }
}

/// The app and stream (with query) a relay asks the upstream for.
fn upstream_path(client: &ClientInfo<'_>) -> (String, String) {
    (client.app.to_string(), client.name.to_string())
}

/// The URL of `path` on the origin at `rtmp_addr`.
pub(crate) fn upstream_url(rtmp_addr: &str, path: &(String, String)) -> Result<RtmpUrl, UrlError> {
    RtmpUrl::parse(&format!("rtmp://{}/{}/{}", rtmp_addr, path.0, path.1))
}

/// Retry pacing of one relay: the attempt count and the jitter seed of [`backoff`].
pub(crate) struct Retry {
    attempt: u32,
    seed: u64,
}

impl Retry {
    pub(crate) fn new(seed: u64) -> Retry {
        Retry { attempt: 0, seed }
    }

    /// Failures since the last successful connect.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Connected: the next failure starts again from the shortest backoff.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Nowhere to connect yet: waits a backoff of at most the fourth step (about 1.6 s), so
    /// that a stream appearing in gossip is picked up soon. True when stopped meanwhile.
    pub(crate) async fn wait_for_upstream(&mut self, stop: &CancellationToken) -> bool {
        wait(stop, backoff(self.attempt.min(3), &mut self.seed)).await
    }

    /// The upstream at `loc` failed with `error`: marks the relay `Retrying` and waits the
    /// next, longer backoff. True when stopped meanwhile.
    pub(crate) async fn after_failure(
        &mut self,
        stop: &CancellationToken,
        status: &StatusCell,
        loc: &Location,
        error: &RelayError,
    ) -> bool {
        status.set(RelayState::Retrying, Some(loc), Some(error.to_string()));
        self.attempt += 1;
        // Leaving an upstream gossip gave up on is no failure of the next one: go there at
        // once (a second departure in a row backs off as usual).
        if matches!(error, RelayError::Left(_)) && self.attempt == 1 {
            return stop.is_cancelled();
        }
        wait(stop, backoff(self.attempt, &mut self.seed)).await
    }
}

/// Exponential backoff with jitter: 200 ms doubling to 5 s, +-25 %.
pub(crate) fn backoff(attempt: u32, seed: &mut u64) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(5)).min(5_000);
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let jitter = (*seed % (base / 2 + 1)) as i64 - (base / 4) as i64;
    Duration::from_millis((base as i64 + jitter).max(50) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let mut seed = 0x1234_5678_9abc_def0;
        let first: Vec<u128> = (0..50).map(|_| backoff(0, &mut seed).as_millis()).collect();
        assert!(
            first.iter().all(|&ms| (150..=250).contains(&ms)),
            "{first:?}"
        );
        assert!(first.iter().any(|&ms| ms != first[0]), "jitter varies");
        let late: Vec<u128> = (0..50)
            .map(|_| backoff(30, &mut seed).as_millis())
            .collect();
        assert!(
            late.iter().all(|&ms| (3_750..=6_250).contains(&ms)),
            "{late:?}"
        );
    }

    #[test]
    fn upstream_url_keeps_app_and_query() {
        let url =
            upstream_url("10.0.0.5:1935", &("live".into(), "cam?token=x".into())).expect("url");
        assert_eq!(url.to_string(), "rtmp://10.0.0.5:1935/live/cam?token=x");
    }
}
