//! Scenario tests: whole nodes on a [`SimNetwork`] under a paused tokio clock.
//!
//! Each scenario is a list of [`Op`]s. Time only moves when every task waits, so "within 6 s"
//! means simulated seconds and a run takes well under a second of wall time per simulated ten.
//! Our randomness is seeded; chitchat picks gossip peers with its own unseeded RNG, so timings
//! vary slightly between runs and the assertions use bounds, not exact instants.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;

const SECRET: &str = "scenario-secret";
const STEP: Duration = Duration::from_millis(100);

type Check = Box<dyn Fn(&Sim) -> Result<(), String>>;

enum Op {
    /// Starts a node (origins are made ready) with the cluster secret.
    Add(&'static str, NodeRole),
    /// Starts a ready edge of this tier (as `app` does: every node is ready once it listens).
    AddEdge(&'static str, u8),
    /// Starts a node with another secret, seeded with the cluster's seeds.
    AddStranger(&'static str),
    Streams(&'static str, Vec<String>),
    Drain(&'static str),
    /// Drops the node without leaving: a crash.
    Kill(&'static str),
    /// Starts a killed node again: same id and address, new generation.
    Restart(&'static str),
    /// Clean shutdown.
    Leave(&'static str),
    Partition(Vec<&'static str>, Vec<&'static str>),
    Isolate(&'static str),
    Heal,
    Wait(Duration),
    /// Every running member agrees on membership, ring and streams within the bound.
    Converge(Duration),
    /// Each group agrees internally (partitions) within the bound.
    ConvergeGroups(Vec<Vec<&'static str>>, Duration),
    /// Waits until the check passes, failing after the bound; records the time it took.
    Within(&'static str, Duration, Check),
    /// Checks now.
    Assert(Check),
}

struct Node {
    cluster: Option<Cluster>,
    addr: SocketAddr,
    role: NodeRole,
    /// Edge tier, or `None` for origins and the default not-ready tier-1 edges of `Add`.
    tier: Option<u8>,
    secret: &'static str,
    draining: bool,
    left: bool,
    streams: Vec<String>,
}

struct Sim {
    net: SimNetwork,
    nodes: BTreeMap<&'static str, Node>,
    seeds: Vec<String>,
    /// How long each `Within`/`Converge` took, for the test output.
    timings: Vec<(String, Duration)>,
}

fn addr_of(index: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (index / 200) as u8, (index % 200) as u8 + 1], 7946))
}

impl Sim {
    fn new() -> Sim {
        Sim {
            net: SimNetwork::new(),
            nodes: BTreeMap::new(),
            seeds: (0..3).map(|i| addr_of(i).to_string()).collect(),
            timings: Vec::new(),
        }
    }

    fn cluster(&self, id: &str) -> Result<&Cluster, String> {
        self.nodes
            .get(id)
            .and_then(|node| node.cluster.as_ref())
            .ok_or_else(|| format!("{id} is not running"))
    }

    async fn start(&mut self, id: &'static str) -> Result<(), String> {
        let (addr, role, tier, secret) = match self.nodes.get(id) {
            Some(node) => (node.addr, node.role, node.tier, node.secret),
            None => return Err(format!("unknown node {id}")),
        };
        let mut settings = ClusterSettings::new(id, role, secret);
        settings.tier = tier.unwrap_or(1);
        settings.rtmp_advertise = format!("{}:1935", addr.ip());
        settings.http_advertise = format!("{}:8080", addr.ip());
        settings.gossip_listen = addr;
        settings.gossip_advertise = addr;
        settings.seeds = self.seeds.clone();
        settings.network = Some(self.net.clone());
        let cluster = Cluster::start(settings)
            .await
            .map_err(|err| format!("{id}: {err}"))?;
        if role == NodeRole::Origin || tier.is_some() {
            cluster.set_ready(true);
        }
        if let Some(node) = self.nodes.get_mut(id) {
            cluster.set_streams(node.streams.clone());
            node.cluster = Some(cluster);
            node.left = false;
        }
        Ok(())
    }

    fn add(&mut self, id: &'static str, role: NodeRole, secret: &'static str) {
        self.add_with_tier(id, role, None, secret);
    }

    fn add_with_tier(
        &mut self,
        id: &'static str,
        role: NodeRole,
        tier: Option<u8>,
        secret: &'static str,
    ) {
        let addr = addr_of(self.nodes.len());
        self.nodes.insert(
            id,
            Node {
                cluster: None,
                addr,
                role,
                tier,
                secret,
                draining: false,
                left: false,
                streams: Vec::new(),
            },
        );
    }

    /// Running members of the cluster (right secret, not left).
    fn members(&self) -> Vec<&'static str> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.cluster.is_some() && n.secret == SECRET && !n.left)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Everyone in `group` sees exactly `group` live (in their current generation), the same ring
    /// (its ready, non-draining origins) and the same stream table.
    fn agree(&self, group: &[&'static str]) -> Result<(), String> {
        let expect_live: BTreeSet<&str> = group.iter().copied().collect();
        let expect_ring: BTreeSet<&str> = group
            .iter()
            .copied()
            .filter(|id| {
                self.nodes
                    .get(id)
                    .is_some_and(|n| n.role == NodeRole::Origin && !n.draining)
            })
            .collect();
        let mut first_streams: Option<(&str, Vec<(String, String)>)> = None;
        for id in group {
            let view = self.cluster(id)?.view();
            let live: BTreeSet<&str> = view
                .nodes()
                .iter()
                .filter(|n| n.live && !n.leaving)
                .map(|n| n.id.as_str())
                .collect();
            if live != expect_live {
                return Err(format!("{id} sees live {live:?}, expected {expect_live:?}"));
            }
            // Everyone sees the incarnation each node reports for itself.
            for other in group {
                let own = self
                    .cluster(other)?
                    .view()
                    .node(other)
                    .map(|n| n.generation);
                let seen = view.node(other).map(|n| n.generation);
                if own != seen {
                    return Err(format!(
                        "{id} sees {other} generation {seen:?}, not {own:?}"
                    ));
                }
            }
            let ring: BTreeSet<&str> = view.ring().members().iter().map(String::as_str).collect();
            if ring != expect_ring {
                return Err(format!("{id} has ring {ring:?}, expected {expect_ring:?}"));
            }
            let streams = view.locator().streams();
            match &first_streams {
                None => first_streams = Some((id, streams)),
                Some((first, expected)) if *expected != streams => {
                    return Err(format!(
                        "{id} lists {} streams, {first} lists {}",
                        streams.len(),
                        expected.len()
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    async fn within(
        &mut self,
        what: String,
        bound: Duration,
        check: impl Fn(&Sim) -> Result<(), String>,
    ) -> Result<(), String> {
        let start = tokio::time::Instant::now();
        loop {
            match check(self) {
                Ok(()) => {
                    self.timings.push((what, start.elapsed()));
                    return Ok(());
                }
                Err(reason) if start.elapsed() >= bound => {
                    return Err(format!("{what}: not within {bound:?}: {reason}"))
                }
                Err(_) => tokio::time::sleep(STEP).await,
            }
        }
    }

    async fn run(&mut self, ops: Vec<Op>) -> Result<(), String> {
        for op in ops {
            match op {
                Op::Add(id, role) => {
                    self.add(id, role, SECRET);
                    self.start(id).await?;
                }
                Op::AddEdge(id, tier) => {
                    self.add_with_tier(id, NodeRole::Edge, Some(tier), SECRET);
                    self.start(id).await?;
                }
                Op::AddStranger(id) => {
                    self.add(id, NodeRole::Origin, "not-the-secret");
                    self.start(id).await?;
                }
                Op::Streams(id, streams) => {
                    self.cluster(id)?.set_streams(streams.clone());
                    if let Some(node) = self.nodes.get_mut(id) {
                        node.streams = streams;
                    }
                }
                Op::Drain(id) => {
                    self.cluster(id)?.set_draining(true);
                    if let Some(node) = self.nodes.get_mut(id) {
                        node.draining = true;
                    }
                }
                Op::Kill(id) => {
                    if let Some(node) = self.nodes.get_mut(id) {
                        node.cluster = None;
                    }
                    // Let the runtime drop the aborted tasks (and free the address).
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Op::Restart(id) => self.start(id).await?,
                Op::Leave(id) => {
                    self.cluster(id)?.shutdown().await;
                    if let Some(node) = self.nodes.get_mut(id) {
                        node.left = true;
                        node.cluster = None;
                    }
                }
                Op::Partition(a, b) => {
                    let side = |ids: &[&str]| -> Vec<SocketAddr> {
                        ids.iter()
                            .filter_map(|id| self.nodes.get(id).map(|n| n.addr))
                            .collect()
                    };
                    self.net.partition(&side(&a), &side(&b));
                }
                Op::Isolate(id) => {
                    if let Some(node) = self.nodes.get(id) {
                        self.net.isolate(node.addr);
                    }
                }
                Op::Heal => self.net.heal_all(),
                Op::Wait(duration) => tokio::time::sleep(duration).await,
                Op::Converge(bound) => {
                    self.within("converge".into(), bound, |sim| sim.agree(&sim.members()))
                        .await?
                }
                Op::ConvergeGroups(groups, bound) => {
                    self.within(format!("converge {groups:?}"), bound, |sim| {
                        groups.iter().try_for_each(|group| sim.agree(group))
                    })
                    .await?
                }
                Op::Within(what, bound, check) => self.within(what.into(), bound, check).await?,
                Op::Assert(check) => check(self)?,
            }
        }
        for (what, took) in &self.timings {
            eprintln!("{what}: {:.1} s (simulated)", took.as_secs_f64());
        }
        Ok(())
    }
}

fn streams(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("live/{prefix}-{i}")).collect()
}

/// No running member lists `id` as live or has it in its ring.
fn gone_everywhere(id: &'static str) -> Check {
    Box::new(move |sim: &Sim| {
        for member in sim.members() {
            let view = sim.cluster(member)?.view();
            if view
                .nodes()
                .iter()
                .any(|n| n.id == id && n.live && !n.leaving)
            {
                return Err(format!("{member} still lists {id} live"));
            }
            if view.ring().members().iter().any(|m| m == id) {
                return Err(format!("{member} still has {id} in its ring"));
            }
        }
        Ok(())
    })
}

/// Every member answers `locate(stream)` with `node` (and the given source).
fn located_everywhere(stream: &'static str, node: &'static str, source: Source) -> Check {
    Box::new(move |sim: &Sim| {
        for member in sim.members() {
            let found = sim.cluster(member)?.locate(stream);
            let got = found.as_ref().map(|l| (l.node_id.as_str(), l.source));
            if got != Some((node, source)) {
                return Err(format!("{member} locates {stream} at {got:?}"));
            }
        }
        Ok(())
    })
}

fn five_origins() -> Vec<Op> {
    ["origin-0", "origin-1", "origin-2", "origin-3", "origin-4"]
        .into_iter()
        .map(|id| Op::Add(id, NodeRole::Origin))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn five_nodes_join_and_agree_on_membership_and_ring() -> Result<(), String> {
    let mut sim = Sim::new();
    let mut ops = five_origins();
    ops.push(Op::Add("edge-0", NodeRole::Edge));
    ops.push(Op::Converge(Duration::from_secs(5)));
    ops.push(Op::Assert(Box::new(|sim: &Sim| {
        let expected = Ring::new((0..5).map(|i| format!("origin-{i}")));
        for member in sim.members() {
            let view = sim.cluster(member)?.view();
            if *view.ring() != expected {
                return Err(format!("{member}: ring differs from a locally built one"));
            }
            let edge = view.node("edge-0").ok_or("edge-0 not listed")?;
            if edge.in_ring || edge.role != NodeRole::Edge {
                return Err("edge in ring".into());
            }
        }
        Ok(())
    })));
    sim.run(ops).await
}

/// Where every member's view says an edge of `tier` pulls each stream from: fails unless all
/// members agree, and returns (node, source) per stream.
fn upstreams_of_tier(
    sim: &Sim,
    tier: u8,
    streams: &[String],
) -> Result<Vec<(String, Source)>, String> {
    let mut agreed: Option<Vec<(String, Source)>> = None;
    for member in sim.members() {
        let view = sim.cluster(member)?.view();
        let answers = streams
            .iter()
            .map(|s| {
                let up = view
                    .locate_upstream(s, tier)
                    .ok_or(format!("{member}: no upstream for {s}"))?;
                Ok((up.node_id, up.source))
            })
            .collect::<Result<Vec<_>, String>>()?;
        match &agreed {
            None => agreed = Some(answers),
            Some(first) if *first != answers => {
                return Err(format!("{member} picks other tier-{tier} upstreams"))
            }
            Some(_) => {}
        }
    }
    agreed.ok_or_else(|| "no members".to_string())
}

#[tokio::test(start_paused = true)]
async fn edge_tiers_pull_through_the_tier_below_and_fall_back_to_origins() -> Result<(), String> {
    let mut sim = Sim::new();
    let probe = streams("tier", 60);
    let mut ops = vec![
        Op::Add("origin-0", NodeRole::Origin),
        Op::Add("origin-1", NodeRole::Origin),
        Op::AddEdge("edge-1a", 1),
        Op::AddEdge("edge-1b", 1),
        Op::AddEdge("edge-2a", 2),
        Op::AddEdge("edge-3a", 3),
        Op::Converge(Duration::from_secs(5)),
    ];
    let p = probe.clone();
    ops.push(Op::Within(
        "tier views agree",
        Duration::from_secs(5),
        Box::new(move |sim: &Sim| {
            // Tier 1 (and origins asking) go to the origin the locator names.
            let origins = upstreams_of_tier(sim, 1, &p)?;
            let view = sim.cluster("edge-2a")?.view();
            for (stream, (node, _)) in p.iter().zip(&origins) {
                if view.locate(stream).map(|l| l.node_id).as_ref() != Some(node) {
                    return Err(format!("tier 1 does not pull {stream} from its origin"));
                }
            }
            // Tier 2 pulls through tier-1 edges, both of which get a share.
            let two = upstreams_of_tier(sim, 2, &p)?;
            let on_a = two.iter().filter(|(n, _)| n == "edge-1a").count();
            let on_b = two.iter().filter(|(n, _)| n == "edge-1b").count();
            if on_a + on_b != p.len() || on_a < 10 || on_b < 10 {
                return Err(format!(
                    "tier 2 upstreams: {on_a} on edge-1a, {on_b} on edge-1b"
                ));
            }
            if two.iter().any(|(_, source)| *source != Source::Edge) {
                return Err("tier-2 upstream not marked as an edge".into());
            }
            // Tier 3 pulls through the only tier-2 edge.
            let three = upstreams_of_tier(sim, 3, &p)?;
            if three
                .iter()
                .any(|(n, s)| n != "edge-2a" || *s != Source::Edge)
            {
                return Err(format!("tier 3 upstreams: {three:?}"));
            }
            let tiers: Vec<u8> = view.nodes().iter().map(|n| n.tier).collect();
            if tiers != [1, 1, 2, 3, 0, 0] {
                return Err(format!("tiers listed: {tiers:?}"));
            }
            Ok(())
        }),
    ));
    ops.push(Op::Kill("edge-1a"));
    let p = probe.clone();
    ops.push(Op::Within(
        "killed tier-1 edge replaced",
        Duration::from_secs(6),
        Box::new(move |sim: &Sim| {
            let two = upstreams_of_tier(sim, 2, &p)?;
            match two.iter().find(|(n, _)| n != "edge-1b") {
                Some(other) => Err(format!("tier 2 still pulls from {other:?}")),
                None => Ok(()),
            }
        }),
    ));
    ops.push(Op::Kill("edge-1b"));
    let p = probe;
    ops.push(Op::Within(
        "empty tier falls back to origins",
        Duration::from_secs(6),
        Box::new(move |sim: &Sim| {
            let two = upstreams_of_tier(sim, 2, &p)?;
            let origins = upstreams_of_tier(sim, 1, &p)?;
            if two != origins {
                return Err("tier 2 does not pull from origins with tier 1 gone".into());
            }
            Ok(())
        }),
    ));
    sim.run(ops).await
}

#[tokio::test(start_paused = true)]
async fn killed_origin_leaves_every_ring_within_a_few_seconds() -> Result<(), String> {
    let mut sim = Sim::new();
    let mut ops = five_origins();
    ops.extend([
        Op::Add("edge-0", NodeRole::Edge),
        Op::Streams("origin-2", streams("two", 10)),
        Op::Converge(Duration::from_secs(5)),
        // Let the failure detector learn the steady heartbeat interval.
        Op::Wait(Duration::from_secs(20)),
        Op::Assert(located_everywhere("live/two-3", "origin-2", Source::Gossip)),
        Op::Kill("origin-2"),
        Op::Within(
            "kill detected",
            Duration::from_secs(5),
            gone_everywhere("origin-2"),
        ),
        Op::Converge(Duration::from_secs(1)),
        // Its streams left the table with it: the ring answers now.
        Op::Assert(Box::new(|sim: &Sim| {
            for member in sim.members() {
                let cluster = sim.cluster(member)?;
                if cluster
                    .cluster_streams()
                    .iter()
                    .any(|(_, n)| n == "origin-2")
                {
                    return Err(format!("{member} still lists origin-2's streams"));
                }
                let at = cluster.locate("live/two-3").map(|l| l.source);
                if at != Some(Source::Ring) {
                    return Err(format!("{member}: {at:?}"));
                }
            }
            Ok(())
        })),
    ]);
    sim.run(ops).await
}

#[tokio::test(start_paused = true)]
async fn a_clean_leave_is_seen_within_a_second_and_a_restart_is_a_new_generation(
) -> Result<(), String> {
    let mut sim = Sim::new();
    let mut ops = five_origins();
    ops.extend([
        Op::Converge(Duration::from_secs(5)),
        Op::Leave("origin-4"),
        Op::Within(
            "leave seen",
            Duration::from_secs(1),
            gone_everywhere("origin-4"),
        ),
        Op::Restart("origin-4"),
        Op::Converge(Duration::from_secs(5)),
        Op::Kill("origin-1"),
        Op::Restart("origin-1"),
        Op::Converge(Duration::from_secs(5)),
        Op::Assert(Box::new(|sim: &Sim| {
            let restarted = sim.cluster("origin-1")?.view();
            let own = restarted.node("origin-1").map(|n| n.generation);
            for member in sim.members() {
                let view = sim.cluster(member)?.view();
                let listed: Vec<&NodeView> =
                    view.nodes().iter().filter(|n| n.id == "origin-1").collect();
                if listed.len() != 1 || Some(listed[0].generation) != own || !listed[0].live {
                    return Err(format!("{member} lists origin-1 as {listed:?}"));
                }
            }
            Ok(())
        })),
    ]);
    sim.run(ops).await
}

#[tokio::test(start_paused = true)]
async fn partition_then_heal_converges() -> Result<(), String> {
    let mut sim = Sim::new();
    let mut ops = five_origins();
    ops.extend([
        Op::Add("edge-0", NodeRole::Edge),
        Op::Streams("origin-0", streams("zero", 5)),
        Op::Streams("origin-4", streams("four", 5)),
        Op::Converge(Duration::from_secs(5)),
        Op::Wait(Duration::from_secs(10)),
        Op::Partition(
            vec!["origin-0", "origin-1", "edge-0"],
            vec!["origin-2", "origin-3", "origin-4"],
        ),
        Op::ConvergeGroups(
            vec![
                vec!["origin-0", "origin-1", "edge-0"],
                vec!["origin-2", "origin-3", "origin-4"],
            ],
            Duration::from_secs(8),
        ),
        // Each side only sees its own origins' streams.
        Op::Assert(Box::new(|sim: &Sim| {
            let edge = sim.cluster("edge-0")?;
            let at = edge.locate("live/four-1").map(|l| l.source);
            if at != Some(Source::Ring) {
                return Err(format!("edge-0 still sees origin-4's claim: {at:?}"));
            }
            Ok(())
        })),
        Op::Wait(Duration::from_secs(30)),
        Op::Heal,
        Op::Converge(Duration::from_secs(15)),
        Op::Assert(located_everywhere(
            "live/four-1",
            "origin-4",
            Source::Gossip,
        )),
    ]);
    sim.run(ops).await
}

#[tokio::test(start_paused = true)]
async fn a_flapping_node_is_dropped_and_readmitted() -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(0xF1A9);
    let mut sim = Sim::new();
    let mut ops = five_origins();
    ops.push(Op::Converge(Duration::from_secs(5)));
    ops.push(Op::Wait(Duration::from_secs(10)));
    for _ in 0..4 {
        // Short flaps (below detection) and long ones (above it), in a seeded order.
        let down = Duration::from_millis(rng.random_range(500..8_000));
        ops.push(Op::Isolate("origin-3"));
        ops.push(Op::Wait(down));
        ops.push(Op::Heal);
        ops.push(Op::Converge(Duration::from_secs(10)));
        ops.push(Op::Wait(Duration::from_millis(
            rng.random_range(1_000..5_000),
        )));
    }
    ops.push(Op::Assert(located_everywhere_ring_owner()));
    sim.run(ops).await
}

/// Unclaimed streams go to the same ring owner on every member.
fn located_everywhere_ring_owner() -> Check {
    Box::new(|sim: &Sim| {
        let members = sim.members();
        for i in 0..200 {
            let stream = format!("live/unclaimed-{i}");
            let mut answers = BTreeSet::new();
            for member in &members {
                let found = sim.cluster(member)?.locate(&stream);
                answers.insert(found.map(|l| (l.node_id, l.source)));
            }
            if answers.len() != 1 {
                return Err(format!("{stream}: {answers:?}"));
            }
        }
        Ok(())
    })
}

#[tokio::test(start_paused = true)]
async fn twenty_origins_with_500_streams_each_locate_identically_everywhere() -> Result<(), String>
{
    const ORIGINS: [&str; 20] = [
        "origin-00",
        "origin-01",
        "origin-02",
        "origin-03",
        "origin-04",
        "origin-05",
        "origin-06",
        "origin-07",
        "origin-08",
        "origin-09",
        "origin-10",
        "origin-11",
        "origin-12",
        "origin-13",
        "origin-14",
        "origin-15",
        "origin-16",
        "origin-17",
        "origin-18",
        "origin-19",
    ];
    let mut rng = StdRng::seed_from_u64(20_500);
    let mut sim = Sim::new();
    let mut ops: Vec<Op> = ORIGINS
        .iter()
        .map(|id| Op::Add(id, NodeRole::Origin))
        .collect();
    ops.push(Op::Add("edge-0", NodeRole::Edge));
    ops.push(Op::Add("edge-1", NodeRole::Edge));
    // Seeded stream names: each origin publishes 500 random ids.
    let mut published: BTreeMap<String, &'static str> = BTreeMap::new();
    for id in ORIGINS {
        let mut mine = Vec::new();
        while mine.len() < 500 {
            let stream = format!("live/{:016x}", rng.random::<u64>());
            if !published.contains_key(&stream) {
                published.insert(stream.clone(), id);
                mine.push(stream);
            }
        }
        ops.push(Op::Streams(id, mine));
    }
    ops.push(Op::Converge(Duration::from_secs(10)));
    ops.push(Op::Assert(Box::new(move |sim: &Sim| {
        for member in sim.members() {
            let cluster = sim.cluster(member)?;
            if cluster.cluster_streams().len() != published.len() {
                return Err(format!(
                    "{member} lists {}",
                    cluster.cluster_streams().len()
                ));
            }
            for (stream, owner) in &published {
                let got = cluster.locate(stream);
                let got = got.as_ref().map(|l| (l.node_id.as_str(), l.source));
                if got != Some((*owner, Source::Gossip)) {
                    return Err(format!("{member} locates {stream} at {got:?}"));
                }
            }
        }
        Ok(())
    })));
    ops.push(Op::Assert(located_everywhere_ring_owner()));
    sim.run(ops).await
}

#[tokio::test(start_paused = true)]
async fn two_origins_claiming_one_stream_resolve_identically() -> Result<(), String> {
    let mut sim = Sim::new();
    let mut ops = five_origins();
    ops.extend([
        Op::Add("edge-0", NodeRole::Edge),
        Op::Converge(Duration::from_secs(5)),
        // Fast publisher reconnect: origin-1 holds the stream, then origin-3 claims it while
        // origin-1 has not withdrawn yet. origin-3 saw origin-1's claim, so it must win.
        Op::Streams("origin-1", vec!["live/dup".into()]),
        Op::Within(
            "claim spread",
            Duration::from_secs(3),
            located_everywhere("live/dup", "origin-1", Source::Gossip),
        ),
        Op::Streams("origin-3", vec!["live/dup".into()]),
        Op::Within(
            "newer claim wins",
            Duration::from_secs(3),
            located_everywhere("live/dup", "origin-3", Source::Gossip),
        ),
        Op::Converge(Duration::from_secs(3)),
        // Split brain: two origins claim at once, before either hears of the other.
        Op::Streams("origin-0", vec!["live/split".into()]),
        Op::Streams("origin-4", vec!["live/split".into()]),
        Op::Within(
            "both claims seen",
            Duration::from_secs(3),
            Box::new(|sim: &Sim| {
                let mut answers = BTreeSet::new();
                for member in sim.members() {
                    let cluster = sim.cluster(member)?;
                    answers.insert(cluster.locate("live/split").map(|l| l.node_id));
                    if cluster.view().locator().claims("live/split").len() != 2 {
                        return Err(format!("{member} does not see both claims"));
                    }
                }
                if answers.len() != 1 {
                    return Err(format!("answers differ: {answers:?}"));
                }
                Ok(())
            }),
        ),
        Op::Converge(Duration::from_secs(3)),
        // The old origin withdraws: still origin-3.
        Op::Streams("origin-1", vec![]),
        Op::Converge(Duration::from_secs(3)),
        Op::Assert(located_everywhere("live/dup", "origin-3", Source::Gossip)),
    ]);
    sim.run(ops).await
}

#[tokio::test(start_paused = true)]
async fn a_draining_origin_leaves_the_ring_but_keeps_its_streams() -> Result<(), String> {
    let mut sim = Sim::new();
    let mut ops = five_origins();
    ops.extend([
        Op::Streams("origin-2", vec!["live/kept".into()]),
        Op::Converge(Duration::from_secs(5)),
        Op::Drain("origin-2"),
        Op::Converge(Duration::from_secs(2)),
        Op::Assert(located_everywhere("live/kept", "origin-2", Source::Gossip)),
        Op::Assert(Box::new(|sim: &Sim| {
            for member in sim.members() {
                let view = sim.cluster(member)?.view();
                let drained = view.node("origin-2").ok_or("origin-2 not listed")?;
                if !drained.draining || drained.in_ring || !drained.live {
                    return Err(format!("{member}: {drained:?}"));
                }
            }
            Ok(())
        })),
    ]);
    sim.run(ops).await
}

#[tokio::test(start_paused = true)]
async fn a_node_with_the_wrong_secret_is_never_listed_and_its_datagrams_are_counted(
) -> Result<(), String> {
    let mut sim = Sim::new();
    let mut ops = five_origins();
    ops.extend([
        Op::AddStranger("stranger"),
        Op::Converge(Duration::from_secs(5)),
        Op::Wait(Duration::from_secs(10)),
        Op::Converge(Duration::ZERO),
        Op::Assert(Box::new(|sim: &Sim| {
            let mut bad = 0;
            for member in sim.members() {
                let cluster = sim.cluster(member)?;
                if cluster.view().node("stranger").is_some() {
                    return Err(format!("{member} lists the stranger"));
                }
                bad += cluster.bad_datagrams();
            }
            // The stranger greets the seeds every gossip round.
            if bad < 20 {
                return Err(format!("only {bad} bad datagrams counted"));
            }
            let stranger = sim.cluster("stranger")?;
            let seen: Vec<String> = stranger.nodes().into_iter().map(|n| n.id).collect();
            if seen != ["stranger"] {
                return Err(format!("the stranger sees {seen:?}"));
            }
            Ok(())
        })),
    ]);
    sim.run(ops).await
}

#[tokio::test(start_paused = true)]
async fn forged_and_replayed_bytes_do_not_reach_chitchat() -> Result<(), String> {
    let mut sim = Sim::new();
    let mut ops = five_origins();
    ops.push(Op::Converge(Duration::from_secs(5)));
    sim.run(ops).await?;
    let target = sim
        .nodes
        .get("origin-0")
        .map(|n| n.addr)
        .ok_or("no origin-0")?;
    let before = sim.cluster("origin-0")?.bad_datagrams();
    let intruder = SocketAddr::from(([10, 9, 9, 9], 7946));
    let mut rng = StdRng::seed_from_u64(99);
    for len in [0usize, 1, 41, 42, 43, 1_000, 65_507] {
        let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        sim.net.inject(intruder, target, &junk);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = sim.cluster("origin-0")?.bad_datagrams();
    if after - before != 7 {
        return Err(format!("counted {} of 7 forged datagrams", after - before));
    }
    // Authentic datagrams captured on the way to origin-0 and sent again are refused as
    // replays (and are not "bad": their tags are right).
    sim.net.record(target, 20);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let captured = sim.net.recorded(target);
    if captured.len() < 5 {
        return Err(format!("captured only {} datagrams", captured.len()));
    }
    let stats = sim.cluster("origin-0")?.gossip_stats();
    for (from, datagram) in &captured {
        sim.net.inject(*from, target, datagram);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let replayed = sim.cluster("origin-0")?.gossip_stats();
    if replayed.replayed - stats.replayed != captured.len() as u64 {
        return Err(format!(
            "{} of {} replays refused",
            replayed.replayed - stats.replayed,
            captured.len()
        ));
    }
    if replayed.bad_datagrams != stats.bad_datagrams {
        return Err("replays were counted as bad datagrams".into());
    }
    sim.run(vec![
        Op::Converge(Duration::ZERO),
        Op::Assert(Box::new(|sim: &Sim| {
            match sim.cluster("origin-0")?.view().nodes().len() {
                5 => Ok(()),
                n => Err(format!("{n} nodes listed")),
            }
        })),
    ])
    .await
}

#[tokio::test(start_paused = true)]
async fn settings_are_validated() {
    let mut settings = ClusterSettings::new("n", NodeRole::Origin, "");
    settings.rtmp_advertise = "10.0.0.1:1935".into();
    settings.network = Some(SimNetwork::new());
    let key = |s: &ClusterSettings| match validate(s) {
        Err(ClusterError::InvalidSetting { key, .. }) => Some(key),
        _ => None,
    };
    assert_eq!(key(&settings), Some("cluster.secret"));
    settings.secret = "s".into();
    assert_eq!(key(&settings), None);
    settings.cluster_id = "a\0b".into();
    assert_eq!(key(&settings), Some("cluster.cluster_id"));
    settings.cluster_id = "ringcast".into();
    settings.node_id = "has space".into();
    assert_eq!(key(&settings), Some("node.id"));
    settings.node_id = "n".into();
    settings.rtmp_advertise.clear();
    assert_eq!(key(&settings), Some("rtmp.advertise"));
    settings.rtmp_advertise = "10.0.0.1:1935".into();
    // Wildcard listen without an advertise address.
    let started = Cluster::start(settings).await;
    assert!(matches!(
        started,
        Err(ClusterError::InvalidSetting {
            key: "cluster.gossip_advertise",
            ..
        })
    ));
}

/// Real UDP on 127.0.0.1 with ports chosen by the OS: three nodes converge; a fourth with the
/// wrong secret is never listed. Real clock, bounded waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_three_nodes_converge_and_a_wrong_secret_is_refused() -> Result<(), String> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut nodes: Vec<Cluster> = Vec::new();
    let mut seeds: Vec<String> = Vec::new();
    for (i, secret) in [SECRET, SECRET, SECRET, "wrong"].into_iter().enumerate() {
        let mut settings = ClusterSettings::new(format!("udp-{i}"), NodeRole::Origin, secret);
        settings.rtmp_advertise = format!("127.0.0.1:{}", 1935 + i);
        settings.gossip_listen = loopback;
        settings.gossip_advertise = loopback;
        settings.gossip_interval = Duration::from_millis(100);
        // A name, to exercise resolution; the family filter drops ::1.
        settings.seeds = seeds.clone();
        let cluster = Cluster::start(settings)
            .await
            .map_err(|err| err.to_string())?;
        cluster.set_ready(true);
        cluster.set_streams(vec![format!("live/udp-{i}")]);
        if seeds.is_empty() {
            seeds.push(format!("localhost:{}", cluster.gossip_addr().port()));
        }
        nodes.push(cluster);
    }
    let expected: BTreeSet<String> = (0..3).map(|i| format!("udp-{i}")).collect();
    let mut agreed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        agreed = nodes[..3].iter().all(|node| {
            let view = node.view();
            let live: BTreeSet<String> = view
                .nodes()
                .iter()
                .filter(|n| n.live)
                .map(|n| n.id.clone())
                .collect();
            live == expected
                && view.ring().members().len() == 3
                && node.locate("live/udp-2").map(|l| l.node_id) == Some("udp-2".into())
        });
        if agreed {
            break;
        }
    }
    if !agreed {
        let views: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| n.nodes().into_iter().map(|v| v.id).collect())
            .collect();
        return Err(format!("no agreement within 10 s: {views:?}"));
    }
    if nodes[0].bad_datagrams() == 0 {
        return Err("the wrong-secret node's datagrams were not counted".into());
    }
    if nodes[3].nodes().len() != 1 {
        return Err("the wrong-secret node learned about the cluster".into());
    }
    for node in &nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// The seed refresh greets a seed that was not a member: two nodes that started without seeds
/// find each other once the refresh resolves one to the other's address.
#[tokio::test(start_paused = true)]
async fn seed_refresh_introduces_nodes_that_started_alone() -> Result<(), String> {
    let net = SimNetwork::new();
    let mut nodes = Vec::new();
    for i in 0..2 {
        let addr = addr_of(i);
        let mut settings = ClusterSettings::new(format!("alone-{i}"), NodeRole::Origin, SECRET);
        settings.rtmp_advertise = format!("{}:1935", addr.ip());
        settings.gossip_listen = addr;
        settings.gossip_advertise = addr;
        settings.network = Some(net.clone());
        nodes.push(Cluster::start(settings).await.map_err(|e| e.to_string())?);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    if nodes[0].nodes().len() != 1 {
        return Err("nodes met without seeds".into());
    }
    let (_tx, shutdown) = watch::channel(false);
    let refresh = tokio::spawn(seeds::run(
        nodes[0].inner.chitchat.clone(),
        vec![addr_of(1).to_string()],
        Duration::from_secs(10),
        addr_of(0),
        shutdown,
    ));
    let start = tokio::time::Instant::now();
    while nodes
        .iter()
        .any(|n| n.nodes().iter().filter(|v| v.live).count() != 2)
    {
        if start.elapsed() > Duration::from_secs(13) {
            return Err("the refresh did not introduce the nodes".into());
        }
        tokio::time::sleep(STEP).await;
    }
    refresh.abort();
    Ok(())
}

/// Two live nodes sharing a node id (several nodes on one host keeping the host-name default)
/// are reported rather than silently merged, and the report clears once one of them is gone.
#[tokio::test(start_paused = true)]
async fn two_live_nodes_with_one_id_are_reported() -> Result<(), String> {
    let net = SimNetwork::new();
    let mut nodes = Vec::new();
    for (i, id) in ["twin", "twin", "watcher"].into_iter().enumerate() {
        let addr = addr_of(i);
        let mut settings = ClusterSettings::new(id, NodeRole::Origin, SECRET);
        settings.rtmp_advertise = format!("{}:1935", addr.ip());
        settings.gossip_listen = addr;
        settings.gossip_advertise = addr;
        settings.seeds = vec![addr_of(0).to_string()];
        settings.network = Some(net.clone());
        let cluster = Cluster::start(settings).await.map_err(|e| e.to_string())?;
        cluster.set_ready(true);
        nodes.push(cluster);
    }
    let start = tokio::time::Instant::now();
    while nodes.iter().any(|n| n.view().duplicate_ids() != ["twin"]) {
        if start.elapsed() > Duration::from_secs(10) {
            let seen: Vec<Vec<String>> = nodes
                .iter()
                .map(|n| n.view().duplicate_ids().to_vec())
                .collect();
            return Err(format!("duplicates not reported: {seen:?}"));
        }
        tokio::time::sleep(STEP).await;
    }
    // Listed once: the newest incarnation.
    let twins: Vec<NodeView> = nodes[2]
        .nodes()
        .into_iter()
        .filter(|n| n.id == "twin")
        .collect();
    if twins.len() != 1 || twins[0].gossip_addr != addr_of(1) {
        return Err(format!("twin listed as {twins:?}"));
    }
    // The older twin crashes: once it is declared dead the report clears.
    drop(nodes.remove(0));
    let start = tokio::time::Instant::now();
    while !nodes.iter().all(|n| n.view().duplicate_ids().is_empty()) {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("the duplicate report did not clear".into());
        }
        tokio::time::sleep(STEP).await;
    }
    Ok(())
}
