//! Edge tiers: which node an edge pulls a stream from.
//!
//! Owns: one ring per edge tier and the choice of a pull upstream. Must never: answer a tier-N
//! edge with anything but an edge of tier N - 1 or the stream's origin (so relay chains only
//! go down in tier and cannot loop), or include an edge other nodes cannot dial.
//!
//! A tier-1 edge (the default) pulls from the stream's origin. A tier-N edge pulls from the
//! owner of the stream in the ring of live, ready, not draining, not leaving tier-(N - 1)
//! edges that advertise an RTMP address; every tier-N edge picks the same one, so each stream
//! crosses each tier once per pulling edge and reaches the origin once per tier-1 edge that
//! carries it. With no such edge alive the tier-N edge pulls from the origin directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::locator::{Location, Source};
use super::ring::Ring;

/// The members of one tier: node id → RTMP address.
pub(crate) type TierMembers = BTreeMap<String, String>;

#[derive(Debug, Clone, Default)]
struct TierRing {
    ring: Arc<Ring>,
    rtmp: HashMap<String, String>,
}

/// One ring per edge tier, rebuilt only for tiers whose members changed.
#[derive(Debug, Clone, Default)]
pub(crate) struct EdgeTiers {
    by_tier: BTreeMap<u8, TierRing>,
}

impl EdgeTiers {
    /// The tiers for `members` (tier → members), sharing rings with `previous` where a
    /// tier's members did not change.
    pub(crate) fn rebuild(previous: &EdgeTiers, members: BTreeMap<u8, TierMembers>) -> EdgeTiers {
        let by_tier = members
            .into_iter()
            .map(|(tier, members)| {
                let ring = match previous.by_tier.get(&tier) {
                    Some(old) if old.ring.members().iter().eq(members.keys()) => old.ring.clone(),
                    _ => Arc::new(Ring::new(members.keys().cloned())),
                };
                let rtmp = members.into_iter().collect();
                (tier, TierRing { ring, rtmp })
            })
            .collect();
        EdgeTiers { by_tier }
    }

    /// The edge of `tier` that relays `stream`, if that tier has live members.
    pub(crate) fn owner(&self, tier: u8, stream: &str) -> Option<Location> {
        let tier = self.by_tier.get(&tier)?;
        let node_id = tier.ring.owner(stream)?;
        Some(Location {
            node_id: node_id.to_string(),
            rtmp_addr: tier.rtmp.get(node_id).cloned().unwrap_or_default(),
            source: Source::Edge,
        })
    }

    /// Number of edges in `tier`'s ring.
    #[cfg(test)]
    pub(crate) fn members(&self, tier: u8) -> usize {
        self.by_tier
            .get(&tier)
            .map_or(0, |t| t.ring.members().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(tiers: &[(u8, &[&str])]) -> BTreeMap<u8, TierMembers> {
        tiers
            .iter()
            .map(|(tier, ids)| {
                let ids = ids
                    .iter()
                    .map(|id| (id.to_string(), format!("{id}:1935")))
                    .collect();
                (*tier, ids)
            })
            .collect()
    }

    #[test]
    fn each_tier_has_its_own_ring() {
        let tiers = EdgeTiers::rebuild(
            &EdgeTiers::default(),
            members(&[(1, &["e1-a", "e1-b"]), (2, &["e2-a"])]),
        );
        assert_eq!(tiers.members(1), 2);
        assert_eq!(tiers.members(2), 1);
        assert_eq!(tiers.members(3), 0);
        for i in 0..100 {
            let stream = format!("live/{i}");
            let one = tiers.owner(1, &stream).map(|l| l.node_id);
            assert!(matches!(one.as_deref(), Some("e1-a" | "e1-b")), "{one:?}");
            let two = tiers.owner(2, &stream);
            assert_eq!(
                two,
                Some(Location {
                    node_id: "e2-a".into(),
                    rtmp_addr: "e2-a:1935".into(),
                    source: Source::Edge,
                })
            );
            assert_eq!(tiers.owner(3, &stream), None);
        }
        // Both members of tier 1 get a share.
        let a = (0..100)
            .filter(|i| {
                tiers.owner(1, &format!("live/{i}")).map(|l| l.node_id) == Some("e1-a".into())
            })
            .count();
        assert!((20..=80).contains(&a), "e1-a owns {a} of 100");
    }

    #[test]
    fn unchanged_tiers_keep_their_ring() {
        let first = EdgeTiers::rebuild(
            &EdgeTiers::default(),
            members(&[(1, &["a", "b"]), (2, &["c"])]),
        );
        let second = EdgeTiers::rebuild(&first, members(&[(1, &["a", "b"]), (2, &["c", "d"])]));
        let ring = |t: &EdgeTiers, tier: u8| t.by_tier.get(&tier).map(|r| r.ring.clone());
        assert!(
            matches!((ring(&first, 1), ring(&second, 1)), (Some(x), Some(y)) if Arc::ptr_eq(&x, &y))
        );
        assert!(
            matches!((ring(&first, 2), ring(&second, 2)), (Some(x), Some(y)) if !Arc::ptr_eq(&x, &y))
        );
        assert_eq!(second.members(2), 2);
    }
}
