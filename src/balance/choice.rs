//! The choice itself: a pure function of the serving edges (from gossip), the players this node
//! sent that gossip does not show yet, the stream and the zone.
//!
//! 1. Candidates: the serving edges of the highest tier (the player-facing ones), in the
//!    player's zone when one is given and any edge is in it.
//! 2. Each candidate's utilization after one more player: players / `max_players` and
//!    egress / `max_egress_mbps`, the larger (an unlimited edge counts players against
//!    [`NOMINAL_PLAYERS`]). The bound is (1 + [`EPSILON`]) times the average utilization (all
//!    players over all capacity, the new one included), and never under [`EPSILON`]: below
//!    that, one stream's audience stays together rather than being spread for balance.
//! 3. An edge that carries the stream, is under its capacity and within the bound: the least
//!    utilized one ("carries": its players share the upstream it already has).
//! 4. Else the owner of the stream on the ring of candidates within the bound and under their
//!    capacity, each with ring members in proportion to its capacity ("ring": a stream's
//!    players land together, so few edges pull it, and big edges own more streams).
//! 5. Else the least utilized candidate still under its capacity ("ring" too: the bound is a
//!    preference, capacity is not); else "full".

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::cluster::{EdgeView, Ring};

/// Slack of the load bound (Mirrokni et al.'s ε), and the utilization under which an edge is
/// always within it.
pub const EPSILON: f64 = 0.1;
/// The player capacity an edge without `max_players` is measured against.
pub const NOMINAL_PLAYERS: u64 = 10_000;
/// Rings of eligible edges kept for reuse.
const RING_CACHE: usize = 64;
/// An edge's weight on the ring (its capacity over the smallest) is capped at this.
const MAX_WEIGHT: f64 = 8.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The edge already carries the stream.
    Carries,
    /// The stream's owner on the bounded-load ring of edges.
    Ring,
    /// Every edge is at its capacity (or there is none): the player is refused.
    Full,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Carries => "carries",
            Reason::Ring => "ring",
            Reason::Full => "full",
        }
    }
}

/// Where a player goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Empty when `reason` is `Full`.
    pub node_id: String,
    pub rtmp_addr: String,
    pub http_addr: String,
    pub reason: Reason,
}

impl Choice {
    fn full() -> Choice {
        Choice {
            node_id: String::new(),
            rtmp_addr: String::new(),
            http_addr: String::new(),
            reason: Reason::Full,
        }
    }

    fn of(edge: &EdgeView, reason: Reason) -> Choice {
        Choice {
            node_id: edge.node_id.clone(),
            rtmp_addr: edge.rtmp_addr.clone(),
            http_addr: edge.http_addr.clone(),
            reason,
        }
    }
}

/// Rings of eligible edges by member set: the set changes only when an edge crosses the bound
/// or its capacity, and building a ring costs far more than a lookup.
#[derive(Default)]
pub struct RingCache {
    rings: HashMap<Vec<String>, Arc<Ring>>,
}

impl RingCache {
    fn ring(&mut self, members: Vec<String>) -> Arc<Ring> {
        if let Some(ring) = self.rings.get(&members) {
            return ring.clone();
        }
        if self.rings.len() >= RING_CACHE {
            self.rings.clear();
        }
        let ring = Arc::new(Ring::new(members.iter().cloned()));
        self.rings.insert(members, ring.clone());
        ring
    }
}

struct Candidate<'a> {
    edge: &'a EdgeView,
    /// Utilization after one more player.
    util: f64,
    /// One more player would pass a capacity.
    full: bool,
}

/// Picks the edge for a player of `stream` (see the module's rules). `pending(id)`: players
/// this node sent to edge `id` that its advert may not count yet.
pub fn choose(
    edges: &[EdgeView],
    pending: impl Fn(&str) -> u64,
    stream: &str,
    zone: Option<&str>,
    rings: &mut RingCache,
) -> Choice {
    let Some(top) = edges.iter().map(|e| e.tier).max() else {
        return Choice::full();
    };
    let mut pool: Vec<&EdgeView> = edges.iter().filter(|e| e.tier == top).collect();
    if let Some(zone) = zone.filter(|z| !z.is_empty()) {
        if pool.iter().any(|e| e.zone == zone) {
            pool.retain(|e| e.zone == zone);
        }
    }
    let players = |e: &EdgeView| e.load.players.saturating_add(pending(&e.node_id)) as f64;
    // What one more player adds to egress: the average rate of the pool's players.
    let (all_players, all_egress) = pool.iter().fold((0.0, 0.0), |(p, b), e| {
        (p + e.load.players as f64, b + e.load.egress_bps as f64)
    });
    let per_player = if all_players > 0.0 {
        all_egress / all_players
    } else {
        0.0
    };
    let player_cap = |e: &EdgeView| match e.capacity.max_players {
        0 => NOMINAL_PLAYERS as f64,
        n => n as f64,
    };
    let egress_cap = |e: &EdgeView| e.capacity.max_egress_mbps as f64 * 1e6;
    let egress_after =
        |e: &EdgeView| e.load.egress_bps as f64 + (pending(&e.node_id) as f64 + 1.0) * per_player;
    let candidates: Vec<Candidate> = pool
        .iter()
        .map(|e| {
            let after = players(e) + 1.0;
            let mut util = after / player_cap(e);
            let mut full = e.capacity.max_players > 0 && after > player_cap(e);
            if e.capacity.max_egress_mbps > 0 {
                util = util.max(egress_after(e) / egress_cap(e));
                full |= egress_after(e) > egress_cap(e);
            }
            Candidate {
                edge: e,
                util,
                full,
            }
        })
        .collect();
    // The average utilization: all players (the new one included) over all capacity, in
    // players and, across the edges that limit it, in egress.
    let total_players: f64 = pool.iter().map(|e| players(e)).sum::<f64>() + 1.0;
    let mut average = total_players / pool.iter().map(|e| player_cap(e)).sum::<f64>().max(1.0);
    let limited: Vec<&&EdgeView> = pool
        .iter()
        .filter(|e| e.capacity.max_egress_mbps > 0)
        .collect();
    if !limited.is_empty() {
        let egress: f64 = limited.iter().map(|e| egress_after(e)).sum();
        let cap: f64 = limited.iter().map(|e| egress_cap(e)).sum();
        average = average.max(egress / cap.max(1.0));
    }
    let bound = ((1.0 + EPSILON) * average).max(EPSILON);
    let eligible = |c: &&Candidate| !c.full && c.util <= bound;
    let least = |a: &&Candidate, b: &&Candidate| {
        a.util
            .total_cmp(&b.util)
            .then_with(|| a.edge.node_id.cmp(&b.edge.node_id))
    };

    if let Some(best) = candidates
        .iter()
        .filter(eligible)
        .filter(|c| c.edge.carries(stream))
        .min_by(least)
    {
        return Choice::of(best.edge, Reason::Carries);
    }
    // The ring gives each edge a share of streams in proportion to its capacity: a member per
    // multiple of the smallest capacity (at most MAX_WEIGHT), named `id` then `id\x01k`
    // (node ids have no control characters, so no name can clash).
    let smallest = candidates
        .iter()
        .map(|c| player_cap(c.edge))
        .fold(f64::INFINITY, f64::min);
    let mut members: Vec<String> = candidates
        .iter()
        .filter(eligible)
        .flat_map(|c| {
            let weight = (player_cap(c.edge) / smallest)
                .round()
                .clamp(1.0, MAX_WEIGHT) as usize;
            let id = c.edge.node_id.clone();
            (0..weight).map(move |k| {
                if k == 0 {
                    id.clone()
                } else {
                    format!("{id}\u{1}{k}")
                }
            })
        })
        .collect();
    members.sort();
    if !members.is_empty() {
        let ring = rings.ring(members);
        if let Some(owner) = ring.owner(stream) {
            let owner = owner.split('\u{1}').next().unwrap_or(owner);
            if let Some(c) = candidates.iter().find(|c| c.edge.node_id == owner) {
                return Choice::of(c.edge, Reason::Ring);
            }
        }
    }
    match candidates.iter().filter(|c| !c.full).min_by(least) {
        Some(c) => Choice::of(c.edge, Reason::Ring),
        None => Choice::full(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Capacity, Load};

    fn edge(id: &str, players: u64, max_players: u64, carried: &[&str]) -> EdgeView {
        EdgeView::for_test(
            id,
            1,
            "",
            Load {
                players,
                publishers: 0,
                egress_bps: players * 1_000_000,
            },
            Capacity {
                max_players,
                max_egress_mbps: 0,
            },
            carried,
        )
    }

    fn pick(edges: &[EdgeView], stream: &str) -> Choice {
        choose(edges, |_| 0, stream, None, &mut RingCache::default())
    }

    #[test]
    fn an_edge_that_carries_the_stream_is_preferred_within_the_bound() {
        let edges = [
            edge("edge-0", 300, 1000, &[]),
            edge("edge-1", 310, 1000, &["live/a"]),
            edge("edge-2", 290, 1000, &["live/a"]),
        ];
        let choice = pick(&edges, "live/a");
        assert_eq!(
            (choice.node_id.as_str(), choice.reason),
            ("edge-2", Reason::Carries),
            "the least utilized of the two that carry it"
        );
        // A carrier over the bound is passed over: the ring decides among the others.
        let edges = [
            edge("edge-0", 100, 1000, &[]),
            edge("edge-1", 900, 1000, &["live/a"]),
            edge("edge-2", 100, 1000, &[]),
        ];
        let choice = pick(&edges, "live/a");
        assert_eq!(choice.reason, Reason::Ring);
        assert_ne!(choice.node_id, "edge-1");
    }

    #[test]
    fn a_new_stream_goes_to_its_ring_owner_and_its_audience_stays_together() {
        let edges = [
            edge("edge-0", 0, 1000, &[]),
            edge("edge-1", 0, 1000, &[]),
            edge("edge-2", 0, 2000, &[]),
        ];
        let first = pick(&edges, "live/fifty");
        assert_eq!(first.reason, Reason::Ring);
        // The owner on the ring of all three, pinned (a change of the ring's hash moves
        // players).
        let ring = Ring::new(["edge-0", "edge-1", "edge-2"]);
        assert_eq!(Some(first.node_id.as_str()), ring.owner("live/fifty"));
        assert_eq!(first.node_id, "edge-0");
        // Fifty viewers, one at a time as gossip shows them: all on that edge.
        let mut pending = std::collections::HashMap::new();
        for _ in 0..50 {
            let choice = choose(
                &edges,
                |id| pending.get(id).copied().unwrap_or(0),
                "live/fifty",
                None,
                &mut RingCache::default(),
            );
            *pending.entry(choice.node_id.clone()).or_insert(0u64) += 1;
        }
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending.get("edge-0"), Some(&50));
    }

    #[test]
    fn full_edges_are_never_chosen_and_all_full_says_so() {
        let edges = [
            edge("edge-0", 1000, 1000, &["live/a"]),
            edge("edge-1", 999, 1000, &[]),
        ];
        let choice = pick(&edges, "live/a");
        assert_eq!(choice.node_id, "edge-1", "the carrier is full");
        let edges = [
            edge("edge-0", 1000, 1000, &[]),
            edge("edge-1", 1000, 1000, &[]),
        ];
        let choice = pick(&edges, "live/a");
        assert_eq!(choice.reason, Reason::Full);
        assert!(choice.node_id.is_empty());
        assert_eq!(pick(&[], "live/a").reason, Reason::Full, "no edge at all");
    }

    #[test]
    fn pending_players_prevent_herding_onto_the_emptiest_edge() {
        // Gossip says edge-0 is empty; 1,000 players arrive before it says otherwise.
        let edges = [
            edge("edge-0", 0, 1000, &[]),
            edge("edge-1", 500, 1000, &[]),
            edge("edge-2", 500, 1000, &[]),
        ];
        let mut pending = std::collections::HashMap::new();
        let mut rings = RingCache::default();
        for i in 0..1000 {
            let stream = format!("live/s{}", i % 10);
            let choice = choose(
                &edges,
                |id| pending.get(id).copied().unwrap_or(0),
                &stream,
                None,
                &mut rings,
            );
            assert_ne!(choice.reason, Reason::Full);
            *pending.entry(choice.node_id).or_insert(0u64) += 1;
        }
        let total = |id: &str, base: u64| base + pending.get(id).copied().unwrap_or(0);
        let loads = [
            total("edge-0", 0),
            total("edge-1", 500),
            total("edge-2", 500),
        ];
        // 2,000 players over 3,000 of capacity: each edge near 667, none over the bound.
        for load in loads {
            assert!((600..=740).contains(&load), "{loads:?}");
        }
    }

    #[test]
    fn every_node_with_the_same_view_chooses_alike() {
        let edges = [
            edge("edge-0", 10, 1000, &["live/a"]),
            edge("edge-1", 20, 1000, &[]),
            edge("edge-2", 30, 2000, &["live/b"]),
        ];
        let mut reversed = edges.clone();
        reversed.reverse();
        for stream in ["live/a", "live/b", "live/c", "live/d"] {
            assert_eq!(pick(&edges, stream), pick(&reversed, stream), "{stream}");
        }
    }

    #[test]
    fn a_zone_keeps_players_in_it_when_it_can_and_the_top_tier_serves() {
        let mut edges = vec![
            EdgeView::for_test("eu-0", 1, "eu", Load::default(), Capacity::default(), &[]),
            EdgeView::for_test("us-0", 1, "us", Load::default(), Capacity::default(), &[]),
        ];
        let in_zone = |edges: &[EdgeView], zone| {
            choose(
                edges,
                |_| 0,
                "live/z",
                Some(zone),
                &mut RingCache::default(),
            )
            .node_id
        };
        assert_eq!(in_zone(&edges, "eu"), "eu-0");
        assert_eq!(in_zone(&edges, "us"), "us-0");
        assert!(
            !in_zone(&edges, "ap").is_empty(),
            "no edge in the zone: any edge"
        );
        // With a tier-2 edge present, players go to tier 2 (tier 1 feeds it).
        edges.push(EdgeView::for_test(
            "t2-0",
            2,
            "",
            Load::default(),
            Capacity::default(),
            &[],
        ));
        assert_eq!(in_zone(&edges, "eu"), "t2-0");
    }

    #[test]
    fn a_ramp_over_capacities_1_1_2_lands_on_the_shares_with_streams_kept_together() {
        use std::collections::{BTreeMap, BTreeSet};
        let caps = [("edge-0", 600u64), ("edge-1", 600), ("edge-2", 1200)];
        let mut players: BTreeMap<&str, u64> = caps.iter().map(|(e, _)| (*e, 0)).collect();
        let mut on: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        let mut rings = RingCache::default();
        // 10 streams x 200 players arriving round robin, each seen by gossip before the next.
        for i in 0..2000 {
            let stream = format!("live/ramp-{}", i % 10);
            let edges: Vec<EdgeView> = caps
                .iter()
                .map(|(id, cap)| {
                    let carried: Vec<&str> = on
                        .iter()
                        .filter(|(_, edges)| edges.contains(id))
                        .map(|(s, _)| s.as_str())
                        .collect();
                    edge(id, players[id], *cap, &carried)
                })
                .collect();
            let choice = choose(&edges, |_| 0, &stream, None, &mut rings);
            let (id, _) = caps
                .iter()
                .find(|(id, _)| *id == choice.node_id)
                .expect("an edge");
            *players.get_mut(id).expect("edge") += 1;
            on.entry(stream).or_default().insert(id);
        }
        for (id, share) in [("edge-0", 500), ("edge-1", 500), ("edge-2", 1000)] {
            assert!(players[id].abs_diff(share) <= share / 50, "{players:?}");
        }
        let spread: Vec<usize> = on.values().map(BTreeSet::len).collect();
        assert!(spread.iter().all(|n| *n <= 2), "{spread:?}");
        assert!(
            spread.iter().filter(|n| **n == 1).count() >= 6,
            "{spread:?}"
        );
    }
}
