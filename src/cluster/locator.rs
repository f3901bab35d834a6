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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::ring::Ring;
use super::state::Advert;

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
}

impl Locator {
    pub(crate) fn new(
        mut claimants: Vec<Claimant>,
        ring: Arc<Ring>,
        ring_rtmp: HashMap<String, String>,
    ) -> Locator {
        claimants.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Locator {
            claimants,
            ring,
            ring_rtmp,
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
        let owner = self.ring.owner(stream)?;
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
            http: String::new(),
            ready: true,
            draining: false,
            leaving: false,
            load: Load::default(),
            tier: 0,
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
}
