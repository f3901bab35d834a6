//! The consistent-hash ring of origins that may own streams (and, built separately, of each
//! tier of edges that higher tiers pull through: `tiers`).
//!
//! Owns: the hash function, virtual-node placement and the owner lookup. Must never: depend on
//! the order members were added, feed the hasher anything but explicit bytes (std's `Hash`
//! appends `0xff` to a `str` and prefixes slices with their length, and is no stable format),
//! or mix origins and edges (callers pass only live, ready, non-draining origins, or only the
//! edges of one tier).
//!
//! Crate: `hashring`, the one the design names, holds the points, sorts them and answers
//! lookups. It hashes nodes and keys through `Hash` with a `BuildHasher` of our choice, so
//! [`RingHasher`] builds SipHash-2-4 with the ring's fixed keys (from `siphasher`: hashring's
//! default hasher has zero keys and cannot take ours), and [`VNode`] and [`StreamKey`] write
//! only their bytes. SipHash is a published, stable function with strong mixing on short,
//! similar inputs ("origin-1#7" vs "origin-1#8"), where FNV-1a clusters. Changing the keys, the
//! point encoding or [`VNODES`] moves streams: the golden-vector test pins them.
//!
//! Points: each member gets [`VNODES`] points `hash(node_id || 0x00 || vnode as u32 BE)`; a
//! stream belongs to the first point at or after `hash(stream)`, wrapping around. Points are
//! added in (node id, vnode) order in one `batch_add`, whose sort is stable, so they stand in
//! (hash, node id, vnode) order, as the hand-written ring before sorted them, and even a 64-bit
//! collision between points resolves the same everywhere (one caveat: [`Ring::owner`]). 160
//! virtual nodes give a spread of about 1/sqrt(160) = 8% per origin (measured max/avg keys per
//! origin: see the balance test and the benchmark).
//!
//! Cost: [`Ring::owner`] is a binary search, as before. hashring 0.3 has no iterator over a
//! ring with our hasher, and its `get_with_replicas` returns a rotated copy of the whole ring,
//! so [`Ring::successors`] costs O(members x VNODES) per call (4 ms at 1,000 members, against
//! 0.16 µs for the old ring's walk). The locator therefore does not walk: it looks a stream up
//! in a second ring of only the origins under the load bound (see `locator`). Numbers:
//! BENCHMARKS.md, `benches/ring_lookup.rs`.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use hashring::HashRing;
use siphasher::sip::SipHasher24;

/// Virtual nodes per origin.
pub const VNODES: u32 = 160;

const RING_KEY_0: u64 = u64::from_le_bytes(*b"ringcast");
const RING_KEY_1: u64 = u64::from_le_bytes(*b"ring-v1\0");

/// Builds the ring's hasher: SipHash-2-4 with the ring's fixed keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingHasher;

impl BuildHasher for RingHasher {
    type Hasher = SipHasher24;

    fn build_hasher(&self) -> SipHasher24 {
        SipHasher24::new_with_keys(RING_KEY_0, RING_KEY_1)
    }
}

/// SipHash-2-4 of `bytes` with the ring's fixed keys, as the ring computes it.
#[cfg(test)]
fn ring_hash(bytes: &[u8]) -> u64 {
    RingHasher.build_hasher().hash(bytes)
}

/// A stream name as the ring hashes it: its bytes and nothing else.
#[derive(Debug, Clone, Copy)]
struct StreamKey<'a>(&'a str);

impl Hash for StreamKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

/// One virtual node: hashes as `node_id || 0x00 || vnode (u32 BE)`.
#[derive(Debug, Clone)]
struct VNode {
    /// Cloned by every walk (hashring copies the ring), hence shared rather than a `String`.
    id: Arc<str>,
    /// Index into [`Ring::members`].
    member: u32,
    vnode: u32,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // SipHash streams its input, so three writes hash like their concatenation (tested).
        state.write(self.id.as_bytes());
        state.write(&[0]);
        state.write(&self.vnode.to_be_bytes());
    }
}

/// Sorted, deduplicated `members` and their points, hashed by `hasher`.
fn build<I, S, H>(members: I, hasher: H) -> (Vec<String>, HashRing<VNode, H>)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
    H: BuildHasher,
{
    let mut members: Vec<String> = members.into_iter().map(Into::into).collect();
    members.sort();
    members.dedup();
    let mut vnodes = Vec::with_capacity(members.len() * VNODES as usize);
    for (index, id) in members.iter().enumerate() {
        let id: Arc<str> = Arc::from(id.as_str());
        let member = u32::try_from(index).unwrap_or(u32::MAX);
        for vnode in 0..VNODES {
            let id = id.clone();
            vnodes.push(VNode { id, member, vnode });
        }
    }
    // In (node id, vnode) order, and batch_add sorts by hash with a stable sort (one sort;
    // `add` would re-sort per point): equal hashes keep this order on every node.
    let mut ring = HashRing::with_hasher(hasher);
    ring.batch_add(vnodes);
    (members, ring)
}

/// Every member once, in the order of `walk` (a run of points).
fn distinct<'a>(members: &'a [String], walk: Vec<VNode>) -> impl Iterator<Item = &'a str> + 'a {
    let mut seen = vec![false; members.len()];
    walk.into_iter().filter_map(move |point| {
        let index = point.member as usize;
        if std::mem::replace(seen.get_mut(index)?, true) {
            return None;
        }
        members.get(index).map(String::as_str)
    })
}

/// An immutable ring; build a new one when membership changes.
#[derive(Clone)]
pub struct Ring {
    /// Sorted, deduplicated member ids.
    members: Vec<String>,
    /// [`VNODES`] points per member.
    points: HashRing<VNode, RingHasher>,
}

impl Ring {
    /// Builds the ring of `members` (duplicates are ignored; order does not matter).
    pub fn new<I, S>(members: I) -> Ring
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let (members, points) = build(members, RingHasher);
        Ring { members, points }
    }

    /// The member owning `key`, or `None` if the ring is empty.
    ///
    /// Caveat: were `hash(key)` exactly the hash of two or more points (a 64-bit collision
    /// between points, about 1 in 10^9 for 1,000 members, and then a key hitting that very
    /// value, 1 in 2^64 per key), hashring's binary search returns one of them: the same on
    /// every node of one build, but not necessarily the first, which the old ring returned, and
    /// a `std` with another binary search could pick another.
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.points.get(&StreamKey(key)).map(|point| &*point.id)
    }

    /// Every member once, in ring order from `key`'s point: the owner first, then each next
    /// distinct member clockwise (the bounded-load walk). Empty if the ring is.
    ///
    /// Copies the whole ring (hashring's `get_with_replicas`): O(members x [`VNODES`]), so
    /// not for a lookup path; the owner in a ring without the members to skip is the same
    /// answer for a binary search (what `Locator` does).
    pub fn successors(&self, key: &str) -> impl Iterator<Item = &str> + '_ {
        // More replicas than points: hashring returns each point once.
        let walk = self.points.get_with_replicas(&StreamKey(key), usize::MAX);
        distinct(&self.members, walk.unwrap_or_default())
    }

    /// Sorted member ids.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Each member's share of the hash space (what part of all streams it owns), by member;
    /// the shares add up to 1. Computed from the points (O(members x [`VNODES`])), for
    /// operators (the dashboard), not for lookups.
    pub fn shares(&self) -> Vec<(String, f64)> {
        let mut points: Vec<(u64, usize)> =
            Vec::with_capacity(self.members.len() * VNODES as usize);
        for (index, id) in self.members.iter().enumerate() {
            let id: Arc<str> = Arc::from(id.as_str());
            for vnode in 0..VNODES {
                let point = VNode {
                    id: id.clone(),
                    member: index as u32,
                    vnode,
                };
                points.push((RingHasher.hash_one(&point), index));
            }
        }
        points.sort_unstable();
        let mut owned = vec![0u128; self.members.len()];
        let mut previous = points.last().map_or(0, |(h, _)| *h);
        for (i, (hash, member)) in points.iter().enumerate() {
            // A key maps to the first point at or after it: the arc up to a point is its
            // member's, and the first point also owns the wrap-around past the last.
            let arc = if i == 0 {
                (u64::MAX - previous) as u128 + *hash as u128 + 1
            } else {
                (*hash - previous) as u128
            };
            owned[*member] += arc;
            previous = *hash;
        }
        let total = (u64::MAX as u128 + 1) as f64;
        self.members
            .iter()
            .cloned()
            .zip(owned.into_iter().map(|o| o as f64 / total))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl Default for Ring {
    fn default() -> Ring {
        Ring {
            members: Vec::new(),
            points: HashRing::with_hasher(RingHasher),
        }
    }
}

/// The points are a function of the members.
impl PartialEq for Ring {
    fn eq(&self, other: &Ring) -> bool {
        self.members == other.members
    }
}

impl Eq for Ring {}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("members", &self.members)
            .field("points", &self.points.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    use super::*;

    fn origins(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("origin-{i}")).collect()
    }

    /// Pinned owners. If this test fails, stream placement changed for every deployed
    /// cluster: that is a breaking change (mixed versions would disagree on owners).
    #[test]
    fn golden_vectors() {
        // SipHash-2-4 reference vector (Aumasson & Bernstein, key 00..0f, empty message).
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            SipHasher24::new_with_key(&key).hash(b""),
            0x726f_db47_dd0e_0e31
        );
        assert_eq!(
            ring_hash(b""),
            4_591_577_428_063_333_203,
            "ring keys changed"
        );
        let ring = Ring::new(origins(5));
        let golden: &[(&str, &str)] = &[
            ("live/stream-0", "origin-3"),
            ("live/stream-1", "origin-3"),
            ("live/stream-2", "origin-3"),
            ("live/stream-3", "origin-3"),
            ("live/stream-4", "origin-1"),
            ("live/stream-5", "origin-1"),
            ("live/stream-6", "origin-3"),
            ("live/stream-7", "origin-4"),
            ("live/stream-8", "origin-2"),
            ("live/stream-9", "origin-3"),
            ("live/stream-10", "origin-2"),
            ("live/stream-11", "origin-3"),
            ("live/stream-12", "origin-3"),
            ("live/stream-13", "origin-0"),
            ("live/stream-14", "origin-2"),
            ("live/stream-15", "origin-2"),
            ("live/stream-16", "origin-3"),
            ("live/stream-17", "origin-2"),
            ("live/stream-18", "origin-3"),
            ("live/stream-19", "origin-2"),
            ("app/a", "origin-4"),
            ("live/", "origin-2"),
            ("a/b/c", "origin-2"),
            ("live/ünïcödé", "origin-4"),
        ];
        let mut actual = Vec::new();
        for i in 0..20 {
            let key = format!("live/stream-{i}");
            let owner = ring.owner(&key).unwrap_or("none");
            actual.push((key, owner.to_string()));
        }
        for key in ["app/a", "live/", "a/b/c", "live/ünïcödé"] {
            let owner = ring.owner(key).unwrap_or("none");
            actual.push((key.to_string(), owner.to_string()));
        }
        let actual_ref: Vec<(&str, &str)> = actual
            .iter()
            .map(|(k, o)| (k.as_str(), o.as_str()))
            .collect();
        assert_eq!(actual_ref, golden);
    }

    #[test]
    fn empty_ring_has_no_owner() {
        assert_eq!(Ring::new(Vec::<String>::new()).owner("live/x"), None);
        assert!(Ring::default().is_empty());
    }

    #[test]
    fn answer_is_independent_of_insertion_order_and_duplicates() {
        let base = Ring::new(origins(12));
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..20 {
            let mut shuffled = origins(12);
            shuffled.shuffle(&mut rng);
            shuffled.push(shuffled[0].clone());
            let ring = Ring::new(shuffled);
            assert_eq!(ring, base);
            for i in 0..500 {
                let key = format!("live/{i}");
                assert_eq!(ring.owner(&key), base.owner(&key));
            }
        }
    }

    fn max_over_avg(ring: &Ring, keys: usize) -> f64 {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for i in 0..keys {
            if let Some(owner) = ring.owner(&format!("live/stream-{i}")) {
                *counts.entry(owner).or_default() += 1;
            }
        }
        let max = counts.values().copied().max().unwrap_or(0) as f64;
        max / (keys as f64 / ring.members().len() as f64)
    }

    #[test]
    fn balance_with_10_and_100_origins() {
        let ten = max_over_avg(&Ring::new(origins(10)), 100_000);
        let hundred = max_over_avg(&Ring::new(origins(100)), 100_000);
        assert!(ten < 1.25, "10 origins: max/avg {ten:.3}");
        assert!(hundred < 1.40, "100 origins: max/avg {hundred:.3}");
    }

    #[test]
    fn a_join_moves_about_one_share_of_keys_and_only_to_the_newcomer() {
        for n in [5usize, 20] {
            let before = Ring::new(origins(n));
            let after = Ring::new(origins(n + 1));
            let newcomer = format!("origin-{n}");
            let keys = 50_000;
            let mut moved = 0;
            for i in 0..keys {
                let key = format!("live/stream-{i}");
                let (old, new) = (before.owner(&key), after.owner(&key));
                if old != new {
                    moved += 1;
                    assert_eq!(new, Some(newcomer.as_str()));
                }
            }
            let share = moved as f64 / keys as f64;
            let expected = 1.0 / (n + 1) as f64;
            assert!(
                (share - expected).abs() < expected * 0.35,
                "n={n}: moved {share:.4}, expected about {expected:.4}"
            );
        }
    }

    #[test]
    fn successors_start_at_the_owner_and_list_every_member_once() {
        let ring = Ring::new(origins(7));
        for i in 0..200 {
            let key = format!("live/s-{i}");
            let walk: Vec<&str> = ring.successors(&key).collect();
            assert_eq!(walk.first().copied(), ring.owner(&key));
            assert_eq!(walk.len(), 7);
            assert_eq!(walk.iter().collect::<HashSet<_>>().len(), 7);
        }
        assert_eq!(Ring::default().successors("live/x").count(), 0);
    }

    fn point_bytes(id: &str, vnode: u32) -> Vec<u8> {
        let mut bytes = id.as_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(&vnode.to_be_bytes());
        bytes
    }

    #[test]
    fn points_and_keys_hash_exactly_their_bytes() {
        let sip = |bytes: &[u8]| SipHasher24::new_with_keys(RING_KEY_0, RING_KEY_1).hash(bytes);
        // Ids of every length around SipHash's 8-byte blocks, so the three writes of a point
        // cross block boundaries at every offset.
        for len in 0..=20 {
            let id: String = "origin-0123456789abcdef".chars().take(len).collect();
            let arc: Arc<str> = Arc::from(id.as_str());
            for vnode in [0, 1, 159, 0x0102_0304, u32::MAX] {
                let point = VNode {
                    id: arc.clone(),
                    member: 0,
                    vnode,
                };
                let bytes = point_bytes(&id, vnode);
                assert_eq!(RingHasher.hash_one(&point), sip(&bytes), "{id:?} #{vnode}");
                assert_eq!(ring_hash(&bytes), sip(&bytes));
            }
            assert_eq!(RingHasher.hash_one(StreamKey(&id)), sip(id.as_bytes()));
        }
        // What `StreamKey` is for: std's `Hash` for `str` appends 0xff.
        assert_ne!(RingHasher.hash_one("live/a"), ring_hash(b"live/a"));
    }

    /// The ring as it was built before hashring: every point, sorted by (hash, node id, vnode).
    fn sorted_points(members: &[String], hash: impl Fn(&[u8]) -> u64) -> Vec<(u64, &str, u32)> {
        let mut points: Vec<(u64, &str, u32)> = members
            .iter()
            .flat_map(|id| (0..VNODES).map(move |vnode| (id.as_str(), vnode)))
            .map(|(id, vnode)| (hash(&point_bytes(id, vnode)), id, vnode))
            .collect();
        points.sort_unstable();
        points
    }

    /// Every point of `ring` clockwise from `key`'s, as (node id, vnode).
    fn walk<H: BuildHasher>(ring: &HashRing<VNode, H>, key: &str) -> Vec<(String, u32)> {
        let points = ring.get_with_replicas(&StreamKey(key), usize::MAX);
        points
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.id.to_string(), p.vnode))
            .collect()
    }

    #[test]
    fn owners_and_walks_are_those_of_the_sorted_point_list() {
        for n in [1usize, 2, 7, 50] {
            let ring = Ring::new(origins(n));
            let points = sorted_points(ring.members(), ring_hash);
            for i in 0..2_000 {
                let key = format!("live/k-{i}");
                // First point at or after the key's hash, wrapping around.
                let at = points.partition_point(|(hash, _, _)| *hash < ring_hash(key.as_bytes()));
                let expected = points.get(at).or(points.first()).map(|p| p.1);
                assert_eq!(ring.owner(&key), expected, "n={n} {key}");
                if i < 50 {
                    let mut seen = HashSet::new();
                    let old: Vec<&str> = (0..points.len())
                        .map(|step| points[(at + step) % points.len()].1)
                        .filter(|id| seen.insert(*id))
                        .collect();
                    assert_eq!(
                        ring.successors(&key).collect::<Vec<_>>(),
                        old,
                        "n={n} {key}"
                    );
                }
            }
        }
    }

    /// SipHash cut to its top 4 bits: 16 values, so most points collide.
    #[derive(Clone, Copy)]
    struct Colliding;

    struct CollidingHasher(SipHasher24);

    impl Hasher for CollidingHasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.write(bytes);
        }
        fn finish(&self) -> u64 {
            self.0.finish() >> 60
        }
    }

    impl BuildHasher for Colliding {
        type Hasher = CollidingHasher;
        fn build_hasher(&self) -> CollidingHasher {
            CollidingHasher(RingHasher.build_hasher())
        }
    }

    #[test]
    fn equal_hashes_stand_in_node_id_and_vnode_order_whatever_the_insertion_order() {
        let weak = |bytes: &[u8]| {
            let mut hasher = Colliding.build_hasher();
            hasher.write(bytes);
            hasher.finish()
        };
        let sorted: Vec<(String, u32)> = sorted_points(&origins(10), weak)
            .into_iter()
            .map(|(_, id, vnode)| (id.to_string(), vnode))
            .collect();
        let base = build(origins(10), Colliding).1;
        let mut rng = StdRng::seed_from_u64(16);
        for round in 0..10 {
            let mut shuffled = origins(10);
            shuffled.shuffle(&mut rng);
            let (_, ring) = build(shuffled, Colliding);
            for i in 0..20 {
                let key = format!("live/c-{i}");
                // The ring holds the sorted list, rotated to the key's point.
                let walk = walk(&ring, &key);
                let start = sorted.iter().position(|p| Some(p) == walk.first());
                let mut rotated = sorted.clone();
                rotated.rotate_left(start.unwrap_or(0));
                assert_eq!(walk, rotated, "round {round} {key}");
                // Every node picks the same point, even on an exact hit of a collided hash.
                let owner = |r: &HashRing<VNode, Colliding>| {
                    r.get(&StreamKey(&key)).map(|p| (p.id.clone(), p.vnode))
                };
                assert_eq!(owner(&ring), owner(&base), "round {round} {key}");
            }
        }
    }

    #[test]
    fn shares_add_up_and_follow_the_owners() {
        let ring = Ring::new(["origin-0", "origin-1", "origin-2"]);
        let shares = ring.shares();
        let total: f64 = shares.iter().map(|(_, s)| s).sum();
        assert!((total - 1.0).abs() < 1e-9, "{shares:?}");
        // Against 30,000 keys: each member's share of owners is its share of the space.
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..30_000 {
            let key = format!("live/s{i}");
            *counts
                .entry(ring.owner(&key).unwrap_or("").to_string())
                .or_insert(0u32) += 1;
        }
        for (member, share) in shares {
            let seen = f64::from(counts[&member]) / 30_000.0;
            assert!((seen - share).abs() < 0.02, "{member}: {seen} vs {share}");
        }
        assert!(Ring::default().shares().is_empty());
    }
}
