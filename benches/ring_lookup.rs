//! Ring lookups: the `hashring`-based `Ring` against the hand-written ring it replaced (kept
//! here only, as `OldRing`, for the comparison), at 10, 100 and 1,000 members.
//!
//! Run: `cargo bench --bench ring_lookup` (about 4 minutes on 2 cores). Without `--bench` (as
//! `cargo test --all-targets` runs it) each case runs once. Groups:
//!
//! - `owner`: one owner lookup (a binary search in both).
//! - `bounded`: the locator's lookup with every tenth member over the load bound: the owner, or
//!   the next member clockwise under the bound. About one lookup in ten walks.
//! - `walk`: only keys whose owner is over the bound, so every lookup walks.
//! - `storm`: an origin of 100 (or 1,000) dies and 1,000 of its streams are located again at
//!   once on the ring without it, the same tenth of the survivors over the bound.
//! - `build`: building the ring, as on every membership change.
//!
//! The bounded lookup three ways: `old`, the old ring's lazy walk from the owner;
//! `hashring_walk`, the owner, then `Ring::successors` (hashring's `get_with_replicas`, which
//! copies the ring) past an overloaded owner; `hashring_under_bound`, what the locator does: the
//! owner in a second ring of only the members under the bound (`+build` also builds that ring,
//! as a new view does after the storm's membership change).

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::hint::black_box;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use ringcast::cluster::{Ring, RingHasher, VNODES};

const SIZES: [usize; 3] = [10, 100, 1_000];
const KEYS: usize = 4_096;
const STORM_STREAMS: usize = 1_000;

fn ring_hash(bytes: &[u8]) -> u64 {
    let mut hasher = RingHasher.build_hasher();
    hasher.write(bytes);
    hasher.finish()
}

/// The ring as it was before hashring (src/cluster/ring.rs at 9a3dc00), lookups only.
struct OldRing {
    members: Vec<String>,
    points: Vec<(u64, u32)>,
}

impl OldRing {
    fn new(members: &[String]) -> OldRing {
        let mut members = members.to_vec();
        members.sort();
        members.dedup();
        let mut points: Vec<(u64, u32, u32)> = Vec::with_capacity(members.len() * VNODES as usize);
        for (index, member) in members.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            for vnode in 0..VNODES {
                let mut bytes = Vec::with_capacity(member.len() + 5);
                bytes.extend_from_slice(member.as_bytes());
                bytes.push(0);
                bytes.extend_from_slice(&vnode.to_be_bytes());
                points.push((ring_hash(&bytes), index, vnode));
            }
        }
        points.sort_unstable();
        OldRing {
            members,
            points: points.into_iter().map(|(p, index, _)| (p, index)).collect(),
        }
    }

    fn owner(&self, key: &str) -> Option<&str> {
        let hash = ring_hash(key.as_bytes());
        let at = self.points.partition_point(|(point, _)| *point < hash);
        let (_, index) = self.points.get(at).or_else(|| self.points.first())?;
        self.members.get(*index as usize).map(String::as_str)
    }

    fn successors(&self, key: &str) -> impl Iterator<Item = &str> + '_ {
        let hash = ring_hash(key.as_bytes());
        let start = self.points.partition_point(|(point, _)| *point < hash);
        let points = self.points.len();
        let mut seen = vec![false; self.members.len()];
        (0..points).filter_map(move |step| {
            let (_, index) = self.points.get((start + step) % points)?;
            let seen = seen.get_mut(*index as usize)?;
            if std::mem::replace(seen, true) {
                return None;
            }
            self.members.get(*index as usize).map(String::as_str)
        })
    }

    /// The old locator: walk from the owner, always.
    fn bounded<'a>(&'a self, key: &str, over: &HashSet<String>) -> Option<&'a str> {
        self.successors(key)
            .find(|id| !over.contains(*id))
            .or_else(|| self.owner(key))
    }
}

/// `Locator::locate` without claims, as it is: the owner in the ring of members under the
/// bound, else (all over) in the whole ring.
fn under_bound<'a>(under: &'a Ring, ring: &'a Ring, key: &str) -> Option<&'a str> {
    under.owner(key).or_else(|| ring.owner(key))
}

fn under_ring(ring: &Ring, over: &HashSet<String>) -> Ring {
    Ring::new(
        ring.members()
            .iter()
            .filter(|id| !over.contains(*id))
            .cloned(),
    )
}

/// The walk over hashring: the owner, then `successors` past an overloaded owner.
fn walked<'a>(ring: &'a Ring, key: &str, over: &HashSet<String>) -> Option<&'a str> {
    let owner = ring.owner(key)?;
    if !over.contains(owner) {
        return Some(owner);
    }
    ring.successors(key)
        .find(|id| !over.contains(*id))
        .or(Some(owner))
}

fn members(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("origin-{i:04}")).collect()
}

/// Every tenth member.
fn overloaded(members: &[String]) -> HashSet<String> {
    members.iter().step_by(10).cloned().collect()
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("live/stream-{i}")).collect()
}

/// Cycles through `keys`, one per call.
fn cycle<'a>(keys: &'a [String]) -> impl FnMut() -> &'a str + 'a {
    let mut i = 0;
    move || {
        i = (i + 1) % keys.len();
        keys[i].as_str()
    }
}

fn owner(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("ring_lookup/owner");
    for n in SIZES {
        let (new, old) = (Ring::new(members(n)), OldRing::new(&members(n)));
        for key in &keys {
            assert_eq!(new.owner(key), old.owner(key), "{n} members, {key}");
        }
        let mut next = cycle(&keys);
        group.bench_function(BenchmarkId::new("old", n), |b| {
            b.iter(|| old.owner(black_box(next())).map(str::len))
        });
        group.bench_function(BenchmarkId::new("hashring", n), |b| {
            b.iter(|| new.owner(black_box(next())).map(str::len))
        });
    }
    group.finish();
}

fn bounded_and_walk(c: &mut Criterion) {
    let keys = keys();
    for walk_only in [false, true] {
        let name = if walk_only { "walk" } else { "bounded" };
        let mut group = c.benchmark_group(format!("ring_lookup/{name}"));
        group.sample_size(20);
        for n in SIZES {
            let (new, old) = (Ring::new(members(n)), OldRing::new(&members(n)));
            let over = overloaded(new.members());
            let under = under_ring(&new, &over);
            let keys: Vec<String> = keys
                .iter()
                .filter(|k| !walk_only || new.owner(k).is_some_and(|o| over.contains(o)))
                .cloned()
                .collect();
            for key in &keys {
                assert_eq!(under_bound(&under, &new, key), old.bounded(key, &over));
            }
            // Spot checks: the walk takes milliseconds at 1,000 members unoptimized.
            for key in keys.iter().step_by(keys.len() / 50 + 1) {
                assert_eq!(walked(&new, key, &over), old.bounded(key, &over), "{key}");
            }
            let mut next = cycle(&keys);
            group.bench_function(BenchmarkId::new("old", n), |b| {
                b.iter(|| old.bounded(black_box(next()), &over).map(str::len))
            });
            group.bench_function(BenchmarkId::new("hashring_walk", n), |b| {
                b.iter(|| walked(&new, black_box(next()), &over).map(str::len))
            });
            group.bench_function(BenchmarkId::new("hashring_under_bound", n), |b| {
                b.iter(|| under_bound(&under, &new, black_box(next())).map(str::len))
            });
        }
        group.finish();
    }
}

fn storm(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_lookup/storm");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(STORM_STREAMS as u64));
    for n in [100usize, 1_000] {
        let all = members(n);
        let dead = all[n / 2].clone();
        let before = Ring::new(all.clone());
        let streams: Vec<String> = (0..)
            .map(|i| format!("live/storm-{i}"))
            .filter(|s| before.owner(s) == Some(dead.as_str()))
            .take(STORM_STREAMS)
            .collect();
        let survivors: Vec<String> = all.into_iter().filter(|m| *m != dead).collect();
        let (new, old) = (Ring::new(survivors.clone()), OldRing::new(&survivors));
        let over = overloaded(new.members());
        let under = under_ring(&new, &over);
        for key in &streams {
            assert_eq!(under_bound(&under, &new, key), old.bounded(key, &over));
        }
        for key in streams.iter().step_by(20) {
            assert_eq!(walked(&new, key, &over), old.bounded(key, &over), "{key}");
        }
        let relocate = |locate: &dyn Fn(&str) -> Option<usize>| {
            streams.iter().filter_map(|s| locate(s)).sum::<usize>()
        };
        group.bench_function(BenchmarkId::new("old", n), |b| {
            b.iter(|| relocate(&|s| old.bounded(s, &over).map(str::len)))
        });
        group.bench_function(BenchmarkId::new("hashring_walk", n), |b| {
            b.iter(|| relocate(&|s| walked(&new, s, &over).map(str::len)))
        });
        group.bench_function(BenchmarkId::new("hashring_under_bound", n), |b| {
            b.iter(|| relocate(&|s| under_bound(&under, &new, s).map(str::len)))
        });
        group.bench_function(BenchmarkId::new("hashring_under_bound+build", n), |b| {
            b.iter(|| {
                let under = under_ring(&new, &over);
                relocate(&|s| under_bound(&under, &new, s).map(str::len))
            })
        });
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_lookup/build");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for n in SIZES {
        let ids = members(n);
        group.bench_function(BenchmarkId::new("old", n), |b| {
            b.iter(|| OldRing::new(black_box(&ids)).points.len())
        });
        group.bench_function(BenchmarkId::new("hashring", n), |b| {
            b.iter(|| Ring::new(black_box(ids.iter().cloned())).members().len())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = owner, bounded_and_walk, storm, build
}
criterion_main!(benches);
