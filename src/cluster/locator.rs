//! "Where is stream S": the gossip table of live claims first, the ring owner second.
//!
//! Owns: the claim-resolution rule and the choice between gossip and ring. Must never: answer
//! with a node that is not a live origin in the view it was built from, or resolve the same
//! claims differently on two nodes (the rule depends only on gossiped data).
//!
//! Claim rule: when several live origins claim a stream (split brain, or a publisher that
//! reconnected to another origin before the old one withdrew), the claim with the largest
//! `(stamp, node_id)` wins. A stamp is the claiming origin's wall clock in milliseconds when it
//! first advertised the stream, raised above every claim for that stream it could already see
//! (a Lamport-style bump, see `Cluster::set_streams`). So the newest publisher wins whenever its
//! origin had heard of the old claim, independent of clock skew; if it had not, the later wall
//! clock wins; an exact tie goes to the larger node id. Claims of dead or leaving nodes are not
//! in the view at all, so a dead origin's streams disappear with its membership.
//!
//! Bounded loads: an unclaimed stream goes to the first origin clockwise from its point that is
//! not over the bound. That is the owner in the ring of only the origins under the bound (the
//! same points, fewer members), so the locator keeps that second ring and looks up there: a
//! binary search, where walking the full ring (`Ring::successors`) copies it per lookup
//! (BENCHMARKS.md). The second ring is built with the view, off the RTMP runtime, and reused
//! while the set of origins under the bound stays the same.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::ring::Ring;
use super::state::Advert;
use super::Load;

/// An origin over this many times the average load is skipped for unclaimed streams.
pub const LOAD_BOUND: f64 = 1.25;
/// Egress is compared in whole units of this many bits per second.
const EGRESS_UNIT_BPS: u64 = 1_000_000;

/// Which table answered [`Locator::locate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A live origin advertises the stream.
    Gossip,
    /// Nobody advertises it; the ring owner will hold it.
    Ring,
    /// An edge of the tier below, which relays the stream (see `tiers`): only in answers to
    /// `Cluster::locate_upstream` on edges of tier 2 and up.
    Edge,
}

/// Answer of [`Locator::locate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub node_id: String,
    /// RTMP `host:port` of that origin.
    pub rtmp_addr: String,
    pub source: Source,
}

/// A live origin whose claims count.
#[derive(Debug, Clone)]
pub(crate) struct Claimant {
    pub(crate) node_id: String,
    pub(crate) rtmp: String,
    pub(crate) advert: Arc<Advert>,
}

/// True if claim `a` beats claim `b`.
pub(crate) fn claim_beats(a: (u64, &str), b: (u64, &str)) -> bool {
    a > b
}

/// Immutable lookup structure of one cluster view.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    /// Sorted by node id.
    claimants: Vec<Claimant>,
    ring: Arc<Ring>,
    /// RTMP address of each ring member.
    ring_rtmp: HashMap<String, String>,
    /// Ring members over the load bound: skipped for unclaimed streams.
    over_bound: HashSet<String>,
    /// The ring of the members not in `over_bound` (`ring` itself when none is).
    under_bound: Arc<Ring>,
}

impl Locator {
    /// `ring_load`: the advertised load of each ring member (absent = none). `reuse`: a ring
    /// of members under the bound from an earlier view, taken if its members are still those.
    pub(crate) fn new(
        mut claimants: Vec<Claimant>,
        ring: Arc<Ring>,
        ring_rtmp: HashMap<String, String>,
        ring_load: &HashMap<String, Load>,
        reuse: &Arc<Ring>,
    ) -> Locator {
        claimants.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        let over_bound = over_bound(ring.members(), ring_load);
        let under_bound = if over_bound.is_empty() {
            ring.clone()
        } else {
            let under = || ring.members().iter().filter(|id| !over_bound.contains(*id));
            if reuse.members().iter().eq(under()) {
                reuse.clone()
            } else {
                Arc::new(Ring::new(under().cloned()))
            }
        };
        Locator {
            claimants,
            ring,
            ring_rtmp,
            over_bound,
            under_bound,
        }
    }

    /// Where `stream` (`APP/STREAM`, no query) is or will be.
    pub fn locate(&self, stream: &str) -> Option<Location> {
        if let Some((_, claimant)) = self.winning_claim(stream) {
            return Some(Location {
                node_id: claimant.node_id.clone(),
                rtmp_addr: claimant.rtmp.clone(),
                source: Source::Gossip,
            });
        }
        self.ring_owner(stream)
    }

    /// Where `stream` would go if nobody held it: the ring owner with bounded loads. For a
    /// stream held by a draining origin, the origin it moves to.
    pub fn ring_owner(&self, stream: &str) -> Option<Location> {
        // The first origin clockwise under the bound; the plain owner if every one is over.
        let owner = self
            .under_bound
            .owner(stream)
            .or_else(|| self.ring.owner(stream))?;
        Some(Location {
            node_id: owner.to_string(),
            rtmp_addr: self.ring_rtmp.get(owner).cloned().unwrap_or_default(),
            source: Source::Ring,
        })
    }

    fn winning_claim(&self, stream: &str) -> Option<(u64, &Claimant)> {
        let mut best: Option<(u64, &Claimant)> = None;
        for claimant in &self.claimants {
            if let Some(stamp) = claimant.advert.claim(stream) {
                let beats = best.is_none_or(|(best_stamp, best_claimant)| {
                    claim_beats(
                        (stamp, &claimant.node_id),
                        (best_stamp, &best_claimant.node_id),
                    )
                });
                if beats {
                    best = Some((stamp, claimant));
                }
            }
        }
        best
    }

    /// Every claim for `stream`: (node id, stamp), sorted by node id.
    pub fn claims(&self, stream: &str) -> Vec<(String, u64)> {
        self.claimants
            .iter()
            .filter_map(|c| Some((c.node_id.clone(), c.advert.claim(stream)?)))
            .collect()
    }

    /// The newest stamp any live origin holds for `stream`.
    pub(crate) fn max_stamp(&self, stream: &str) -> Option<u64> {
        self.claimants
            .iter()
            .filter_map(|c| c.advert.claim(stream))
            .max()
    }

    /// Every advertised stream with the node that wins it, sorted by stream.
    pub fn streams(&self) -> Vec<(String, String)> {
        let mut winners: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
        for claimant in &self.claimants {
            for (stream, stamp) in claimant.advert.claims() {
                let claim = (stamp, claimant.node_id.as_str());
                let entry = winners.entry(stream).or_insert(claim);
                if claim_beats(claim, *entry) {
                    *entry = claim;
                }
            }
        }
        winners
            .into_iter()
            .map(|(stream, (_, node))| (stream.to_string(), node.to_string()))
            .collect()
    }

    /// The ring this locator falls back to.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The ring of members under the load bound, for the next view's [`Locator::new`].
    pub(crate) fn under_bound(&self) -> &Arc<Ring> {
        &self.under_bound
    }

    /// Whether `node_id` is over the load bound (skipped for unclaimed streams).
    pub fn is_over_bound(&self, node_id: &str) -> bool {
        self.over_bound.contains(node_id)
    }
}

/// Members whose publishers or egress exceed [`LOAD_BOUND`] times the members' average.
fn over_bound(members: &[String], loads: &HashMap<String, Load>) -> HashSet<String> {
    let load = |id: &String| loads.get(id).copied().unwrap_or_default();
    let dimensions: [fn(&Load) -> u64; 2] = [|l| l.publishers, |l| l.egress_bps / EGRESS_UNIT_BPS];
    let mut over = HashSet::new();
    if members.len() < 2 {
        return over;
    }
    for measure in dimensions {
        // Adverts come from the network: a sum must not overflow, whatever they say.
        let total = members
            .iter()
            .map(|id| measure(&load(id)))
            .fold(0u64, u64::saturating_add);
        if total == 0 {
            continue;
        }
        let bound = LOAD_BOUND * total as f64 / members.len() as f64;
        over.extend(
            members
                .iter()
                .filter(|id| measure(&load(id)) as f64 > bound)
                .cloned(),
        );
    }
    over
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chitchat::NodeState;

    use super::super::state::LocalAdvert;
    use super::super::{Load, NodeRole};
    use super::*;

    fn claimant(node_id: &str, streams: &[(&str, u64)]) -> Claimant {
        let local = LocalAdvert {
            role: NodeRole::Origin,
            rtmp: format!("{node_id}:1935"),
            rtmps: String::new(),
            http: String::new(),
            flv: String::new(),
            ready: true,
            draining: false,
            leaving: false,
            load: Load::default(),
            tier: 0,
            capacity: Default::default(),
            usage: Default::default(),
            zone: String::new(),
            streams: streams
                .iter()
                .map(|(s, t)| (s.to_string(), *t))
                .collect::<BTreeMap<_, _>>(),
        };
        let mut state = NodeState::for_test();
        local.apply(&mut state);
        match Advert::parse(&state, None) {
            Some(advert) => Claimant {
                node_id: node_id.into(),
                rtmp: local.rtmp,
                advert: Arc::new(advert),
            },
            None => panic!("advert did not parse"),
        }
    }

    fn locator(claimants: Vec<Claimant>, ring: &[&str]) -> Locator {
        let ring_rtmp = ring
            .iter()
            .map(|id| (id.to_string(), format!("{id}:1935")))
            .collect();
        Locator::new(
            claimants,
            Arc::new(Ring::new(ring.iter().copied())),
            ring_rtmp,
            &HashMap::new(),
            &Arc::default(),
        )
    }

    #[test]
    fn gossip_first_then_ring() {
        let loc = locator(
            vec![claimant("origin-1", &[("live/a", 5)])],
            &["origin-0", "origin-1"],
        );
        assert_eq!(
            loc.locate("live/a"),
            Some(Location {
                node_id: "origin-1".into(),
                rtmp_addr: "origin-1:1935".into(),
                source: Source::Gossip
            })
        );
        let by_ring = loc.locate("live/unclaimed");
        assert_eq!(by_ring.as_ref().map(|l| l.source), Some(Source::Ring));
        assert_eq!(
            by_ring.map(|l| l.node_id),
            loc.ring().owner("live/unclaimed").map(String::from)
        );
        assert_eq!(locator(vec![], &[]).locate("live/a"), None);
    }

    #[test]
    fn newest_claim_wins_and_ties_go_to_the_larger_node_id_in_any_order() {
        let a = claimant("origin-a", &[("live/x", 100), ("live/tie", 7)]);
        let b = claimant("origin-b", &[("live/x", 99), ("live/tie", 7)]);
        for claimants in [vec![a.clone(), b.clone()], vec![b, a]] {
            let loc = locator(claimants, &["origin-a", "origin-b"]);
            assert_eq!(
                loc.locate("live/x").map(|l| l.node_id),
                Some("origin-a".into())
            );
            assert_eq!(
                loc.locate("live/tie").map(|l| l.node_id),
                Some("origin-b".into())
            );
            assert_eq!(
                loc.streams(),
                vec![
                    ("live/tie".to_string(), "origin-b".to_string()),
                    ("live/x".to_string(), "origin-a".to_string())
                ]
            );
            assert_eq!(loc.max_stamp("live/x"), Some(100));
            assert_eq!(loc.claims("live/x").len(), 2);
        }
    }

    #[test]
    fn a_claim_from_a_node_outside_the_ring_still_answers() {
        // A draining origin keeps its publishers: it is out of the ring but still the location.
        let loc = locator(
            vec![claimant("origin-draining", &[("live/a", 1)])],
            &["origin-0"],
        );
        assert_eq!(
            loc.locate("live/a").map(|l| (l.node_id, l.source)),
            Some(("origin-draining".into(), Source::Gossip))
        );
    }

    fn loaded(publishers: u64, egress_bps: u64) -> Load {
        Load {
            players: 0,
            publishers,
            egress_bps,
        }
    }

    #[test]
    fn unclaimed_streams_skip_origins_over_the_load_bound() {
        let members = ["origin-0", "origin-1", "origin-2"];
        let ring = Arc::new(Ring::new(members));
        let rtmp: HashMap<String, String> = members
            .iter()
            .map(|id| (id.to_string(), format!("{id}:1935")))
            .collect();
        let streams: Vec<String> = (0..300).map(|i| format!("live/b-{i}")).collect();
        let with = |loads: &[(&str, Load)]| {
            let loads = loads.iter().map(|(id, l)| (id.to_string(), *l)).collect();
            Locator::new(
                Vec::new(),
                ring.clone(),
                rtmp.clone(),
                &loads,
                &Arc::default(),
            )
        };
        let owners = |loc: &Locator| -> Vec<String> {
            streams
                .iter()
                .map(|s| loc.locate(s).map(|l| l.node_id).unwrap_or_default())
                .collect()
        };
        let plain = owners(&with(&[]));
        assert!(plain.iter().any(|o| o == "origin-0"));

        // Equal loads, or loads within the bound: the plain ring owner.
        let even = with(&[
            ("origin-0", loaded(4, 9_000_000)),
            ("origin-1", loaded(4, 9_000_000)),
            ("origin-2", loaded(3, 8_000_000)),
        ]);
        assert_eq!(owners(&even), plain);

        // origin-0 holds most publishers: its streams go to the next origin on the ring.
        let busy = with(&[("origin-0", loaded(5, 0)), ("origin-1", loaded(1, 0))]);
        assert!(busy.is_over_bound("origin-0"));
        let moved = owners(&busy);
        for (stream, (before, after)) in streams.iter().zip(plain.iter().zip(&moved)) {
            if before == "origin-0" {
                let next = ring.successors(stream).nth(1).unwrap_or_default();
                assert_eq!(after, next, "{stream}");
            } else {
                assert_eq!(after, before, "{stream}");
            }
        }

        // Egress counts in whole Mb/s: acknowledgements alone never move a stream.
        let acks = with(&[("origin-0", loaded(0, 900_000))]);
        assert!(!acks.is_over_bound("origin-0"));
        let hot = with(&[
            ("origin-1", loaded(0, 50_000_000)),
            ("origin-2", loaded(0, 2_000_000)),
        ]);
        assert!(hot.is_over_bound("origin-1") && !hot.is_over_bound("origin-2"));
        assert!(owners(&hot).iter().all(|o| o != "origin-1"));

        // A claim still wins over any load.
        let claimed = Locator::new(
            vec![claimant("origin-1", &[("live/b-0", 1)])],
            ring.clone(),
            rtmp.clone(),
            &[("origin-1".to_string(), loaded(0, 50_000_000))]
                .into_iter()
                .collect(),
            &Arc::default(),
        );
        assert_eq!(
            claimed.locate("live/b-0").map(|l| l.node_id),
            Some("origin-1".into())
        );
    }

    #[test]
    fn the_ring_under_the_bound_answers_like_the_walk_past_overloaded_origins() {
        let members: Vec<String> = (0..20).map(|i| format!("origin-{i}")).collect();
        let ring = Arc::new(Ring::new(members.clone()));
        let rtmp: HashMap<String, String> = members
            .iter()
            .map(|id| (id.clone(), format!("{id}:1935")))
            .collect();
        let mut previous = Locator::default();
        // The first `p` origins hold 10 publishers each, the next `e` 10 Mb/s of egress each,
        // the rest nothing: `p` + `e` origins over the bound, until all 20 are.
        let split = |p: usize, e: usize| -> HashMap<String, Load> {
            let load = |i: usize| match i {
                i if i < p => loaded(10, 0),
                i if i < p + e => loaded(0, 10_000_000),
                _ => loaded(0, 0),
            };
            members
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), load(i)))
                .collect()
        };
        let rounds = [(0, 0), (1, 0), (2, 1), (2, 1), (8, 7), (10, 10)];
        for (round, (p, e)) in rounds.into_iter().enumerate() {
            let loads = split(p, e);
            let reuse = previous.under_bound();
            let loc = Locator::new(Vec::new(), ring.clone(), rtmp.clone(), &loads, reuse);
            let over = members.iter().filter(|m| loc.is_over_bound(m)).count();
            assert_eq!(over, p + e, "round {round}");
            if round == 3 {
                assert!(Arc::ptr_eq(loc.under_bound(), previous.under_bound()));
            }
            for i in 0..500 {
                let stream = format!("live/u-{i}");
                let walked = ring
                    .successors(&stream)
                    .find(|id| !loc.is_over_bound(id))
                    .or_else(|| ring.owner(&stream));
                let located = loc.locate(&stream).map(|l| l.node_id);
                assert_eq!(located.as_deref(), walked, "round {round} {stream}");
            }
            previous = loc;
        }
    }
}
