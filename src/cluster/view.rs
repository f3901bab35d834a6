//! The cluster as one node sees it: membership, ring and claims, rebuilt from chitchat's state.
//!
//! Owns: turning chitchat node states into [`NodeView`]s, choosing ring members and claimants,
//! caching parsed adverts between rebuilds. Must never: mutate chitchat state, keep the chitchat
//! lock longer than one pass over the node table, or publish a view that did not change.
//!
//! Rules:
//! - one entry per node id: a live generation beats a dead one, then the highest generation
//!   wins (a restarted node is a new chitchat id with a larger generation; its dead predecessor
//!   is hidden, and the ring, keyed by node id, does not move). Ids with several live, not
//!   leaving generations are reported ([`ClusterView::duplicate_ids`]): for a moment after a
//!   crash and quick restart that is normal, for longer it means two nodes share a `node.id`
//!   and the older one is invisible;
//! - nodes whose identity keys have not arrived yet are not listed;
//! - ring members: live, ready, not draining, not leaving origins;
//! - claimants: live, not leaving origins (a draining origin still serves its publishers);
//! - tier rings (see `tiers`): live, ready, not draining, not leaving edges with an RTMP
//!   address, one ring per tier.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use chitchat::{Chitchat, ChitchatId};
use serde::Serialize;

use super::locator::{Claimant, Location, Locator};
use super::ring::Ring;
use super::state::Advert;
use super::tiers::{EdgeTiers, TierMembers};
use super::{Capacity, Load, NodeRole, Usage};

/// One node as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    pub id: String,
    pub role: NodeRole,
    /// RTMP `host:port` clients are sent to.
    pub rtmp_addr: String,
    /// RTMPS `host:port` relays with `cluster.relay_tls` dial; "" = no RTMPS listener.
    pub rtmps_addr: String,
    pub http_addr: String,
    /// HTTP-FLV `host:port` ("" = the node serves no HTTP-FLV).
    pub flv_addr: String,
    pub gossip_addr: SocketAddr,
    /// Start time of this incarnation (ns since the Unix epoch); a restart is a new generation.
    pub generation: u64,
    /// The failure detector considers the node alive. Dead nodes stay listed until chitchat
    /// forgets them (`FailureDetection::dead_node_grace`).
    pub live: bool,
    pub ready: bool,
    pub draining: bool,
    /// The node announced a clean shutdown.
    pub leaving: bool,
    /// Member of the origin ring (live, ready, not draining, not leaving origin). Edges are
    /// never in it; an edge that is live, ready, not draining, not leaving and advertises RTMP
    /// is in its tier's ring (see `tiers`).
    pub in_ring: bool,
    /// Edge tier: 1 pulls from origins, N from edges of tier N - 1. 0 on origins.
    pub tier: u8,
    /// A ring member over the load bound: skipped for streams nobody holds yet (`locator`).
    pub over_load_bound: bool,
    pub load: Load,
    /// What an edge may take (0 = unlimited).
    pub capacity: Capacity,
    /// CPU and memory the node uses.
    pub usage: Usage,
    /// `node.zone` ("" = none).
    pub zone: String,
    /// Streams the node advertises: an origin's claims, the streams an edge carries.
    pub streams: usize,
}

/// A serving edge as the balancer sees it: live, ready, not draining or leaving, with an
/// RTMP address.
#[derive(Debug, Clone)]
pub struct EdgeView {
    pub node_id: String,
    pub rtmp_addr: String,
    pub http_addr: String,
    pub flv_addr: String,
    pub tier: u8,
    pub zone: String,
    pub load: Load,
    pub capacity: Capacity,
    pub usage: Usage,
    advert: Arc<Advert>,
}

impl EdgeView {
    /// Whether this edge carries `stream` (pulls it, or forwards its publisher).
    pub fn carries(&self, stream: &str) -> bool {
        self.advert.claim(stream).is_some()
    }

    /// An edge as a peer would advertise it, for tests of what reads edges (the balancer).
    #[cfg(test)]
    pub(crate) fn for_test(
        node_id: &str,
        tier: u8,
        zone: &str,
        load: Load,
        capacity: Capacity,
        carried: &[&str],
    ) -> EdgeView {
        let local = super::state::LocalAdvert {
            role: NodeRole::Edge,
            rtmp: format!("{node_id}:1935"),
            rtmps: String::new(),
            http: format!("{node_id}:8080"),
            flv: format!("{node_id}:8081"),
            ready: true,
            draining: false,
            leaving: false,
            load,
            tier,
            capacity,
            usage: Usage::default(),
            zone: zone.to_string(),
            streams: carried.iter().map(|s| (s.to_string(), 0)).collect(),
        };
        let mut state = chitchat::NodeState::for_test();
        local.apply(&mut state);
        let advert = match Advert::parse(&state, None) {
            Some(advert) => Arc::new(advert),
            None => panic!("a test advert must parse"),
        };
        EdgeView {
            node_id: node_id.to_string(),
            rtmp_addr: advert.rtmp.clone(),
            http_addr: advert.http.clone(),
            flv_addr: advert.flv.clone(),
            tier,
            zone: zone.to_string(),
            load,
            capacity,
            usage: Usage::default(),
            advert,
        }
    }
}

/// An immutable snapshot of the cluster; cheap to share (`Arc`).
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    version: u64,
    nodes: Vec<NodeView>,
    locator: Locator,
    tiers: EdgeTiers,
    state_bytes: usize,
    duplicate_ids: Vec<String>,
    /// Serving edges, sorted by node id.
    edges: Vec<EdgeView>,
}

impl ClusterView {
    /// Serving edges (live, ready, not draining or leaving, with an RTMP address), by id.
    pub fn edges(&self) -> &[EdgeView] {
        &self.edges
    }

    /// Increases by one with every published change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Known nodes, sorted by id, this node included.
    pub fn nodes(&self) -> &[NodeView] {
        &self.nodes
    }

    pub fn node(&self, id: &str) -> Option<&NodeView> {
        self.nodes
            .binary_search_by(|node| node.id.as_str().cmp(id))
            .ok()
            .and_then(|at| self.nodes.get(at))
    }

    /// See [`Locator::locate`].
    pub fn locate(&self, stream: &str) -> Option<Location> {
        self.locator.locate(stream)
    }

    /// Where an edge of `tier` pulls `stream` from: the owner in the ring of tier - 1 edges
    /// when `tier` >= 2 and that tier has live members, else the stream's origin
    /// ([`ClusterView::locate`]). See `tiers`.
    pub fn locate_upstream(&self, stream: &str, tier: u8) -> Option<Location> {
        tier.checked_sub(1)
            .filter(|below| *below >= 1)
            .and_then(|below| self.tiers.owner(below, stream))
            .or_else(|| self.locate(stream))
    }

    pub fn locator(&self) -> &Locator {
        &self.locator
    }

    pub fn ring(&self) -> &Ring {
        self.locator.ring()
    }

    /// Bytes of gossiped keys and values this node holds for all known nodes (dead ones
    /// included): the size of the replicated state.
    pub fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    /// Node ids with more than one live, not leaving incarnation, sorted. Only the newest of
    /// them is listed and in the ring. Normal for about the failure-detection time after a
    /// node crashed and restarted; a misconfiguration (two nodes sharing `node.id`) if it
    /// lasts.
    pub fn duplicate_ids(&self) -> &[String] {
        &self.duplicate_ids
    }
}

struct Cached {
    max_version: u64,
    advert: Option<Arc<Advert>>,
    bytes: usize,
}

/// Rebuilds [`ClusterView`]s, re-parsing only nodes whose state changed.
#[derive(Default)]
pub(crate) struct ViewBuilder {
    cache: HashMap<ChitchatId, Cached>,
    /// (id, max version, live) of every known node at the last rebuild.
    fingerprint: Vec<(ChitchatId, u64, bool)>,
    ring: Arc<Ring>,
    /// The last locator's ring of origins under the load bound (see `locator`).
    under_bound: Arc<Ring>,
    tiers: EdgeTiers,
    version: u64,
    built_once: bool,
}

impl ViewBuilder {
    /// A new view if anything changed since the last call.
    pub(crate) fn rebuild(&mut self, chitchat: &Chitchat) -> Option<ClusterView> {
        let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        let states = chitchat.node_states();
        let fingerprint: Vec<(ChitchatId, u64, bool)> = states
            .iter()
            .map(|(id, state)| (id.clone(), state.max_version(), live.contains(id)))
            .collect();
        if self.built_once && fingerprint == self.fingerprint {
            return None;
        }
        self.built_once = true;
        self.cache.retain(|id, _| states.contains_key(id));
        let mut best: BTreeMap<&str, (bool, u64, &ChitchatId, Arc<Advert>)> = BTreeMap::new();
        let mut live_incarnations: BTreeMap<&str, usize> = BTreeMap::new();
        let mut state_bytes = 0;
        for (id, state) in states {
            let cached = self.cache.get(id);
            let advert = match cached {
                Some(cached) if cached.max_version == state.max_version() => {
                    state_bytes += cached.bytes;
                    cached.advert.clone()
                }
                _ => {
                    let previous = cached.and_then(|c| c.advert.as_deref());
                    let advert = Advert::parse(state, previous).map(Arc::new);
                    let bytes = state.key_values().map(|(k, v)| k.len() + v.len()).sum();
                    state_bytes += bytes;
                    self.cache.insert(
                        id.clone(),
                        Cached {
                            max_version: state.max_version(),
                            advert: advert.clone(),
                            bytes,
                        },
                    );
                    advert
                }
            };
            let Some(advert) = advert else { continue };
            if live.contains(id) && !advert.leaving {
                *live_incarnations.entry(&id.node_id).or_default() += 1;
            }
            let rank = (live.contains(id), id.generation_id);
            let entry = best.entry(&id.node_id);
            match entry {
                std::collections::btree_map::Entry::Vacant(vacant) => {
                    vacant.insert((rank.0, rank.1, id, advert));
                }
                std::collections::btree_map::Entry::Occupied(mut occupied) => {
                    let current = occupied.get();
                    if rank > (current.0, current.1) {
                        occupied.insert((rank.0, rank.1, id, advert));
                    }
                }
            }
        }

        let mut nodes = Vec::with_capacity(best.len());
        let mut claimants = Vec::new();
        let mut ring_rtmp = HashMap::new();
        let mut ring_load = HashMap::new();
        let mut tier_members: BTreeMap<u8, TierMembers> = BTreeMap::new();
        let mut edges = Vec::new();
        for (node_id, (live, generation, id, advert)) in best {
            let origin = advert.role == NodeRole::Origin;
            let serving = live && advert.ready && !advert.draining && !advert.leaving;
            let in_ring = serving && origin;
            if in_ring {
                ring_rtmp.insert(node_id.to_string(), advert.rtmp.clone());
                ring_load.insert(node_id.to_string(), advert.load);
            } else if serving && !advert.rtmp.is_empty() {
                tier_members
                    .entry(advert.tier)
                    .or_default()
                    .insert(node_id.to_string(), advert.rtmp.clone());
                edges.push(EdgeView {
                    node_id: node_id.to_string(),
                    rtmp_addr: advert.rtmp.clone(),
                    http_addr: advert.http.clone(),
                    flv_addr: advert.flv.clone(),
                    tier: advert.tier,
                    zone: advert.zone.clone(),
                    load: advert.load,
                    capacity: advert.capacity,
                    usage: advert.usage,
                    advert: advert.clone(),
                });
            }
            if live && origin && !advert.leaving {
                claimants.push(Claimant {
                    node_id: node_id.to_string(),
                    rtmp: advert.rtmp.clone(),
                    advert: advert.clone(),
                });
            }
            nodes.push(NodeView {
                id: node_id.to_string(),
                role: advert.role,
                rtmp_addr: advert.rtmp.clone(),
                rtmps_addr: advert.rtmps.clone(),
                http_addr: advert.http.clone(),
                flv_addr: advert.flv.clone(),
                gossip_addr: id.gossip_advertise_addr,
                generation,
                live,
                ready: advert.ready,
                draining: advert.draining,
                leaving: advert.leaving,
                in_ring,
                tier: advert.tier,
                over_load_bound: false,
                load: advert.load,
                capacity: advert.capacity,
                usage: advert.usage,
                zone: advert.zone.clone(),
                streams: advert.stream_count(),
            });
        }
        let mut members: Vec<&String> = ring_rtmp.keys().collect();
        members.sort();
        if self.ring.members().iter().ne(members.iter().copied()) {
            self.ring = Arc::new(Ring::new(members.into_iter().cloned()));
        }
        let duplicate_ids = live_incarnations
            .into_iter()
            .filter(|(_, count)| *count > 1)
            .map(|(id, _)| id.to_string())
            .collect();
        let locator = Locator::new(
            claimants,
            self.ring.clone(),
            ring_rtmp,
            &ring_load,
            &self.under_bound,
        );
        self.under_bound = locator.under_bound().clone();
        for node in &mut nodes {
            node.over_load_bound = locator.is_over_bound(&node.id);
        }
        self.tiers = EdgeTiers::rebuild(&self.tiers, tier_members);
        self.fingerprint = fingerprint;
        self.version += 1;
        Some(ClusterView {
            version: self.version,
            nodes,
            locator,
            tiers: self.tiers.clone(),
            state_bytes,
            duplicate_ids,
            edges,
        })
    }
}
