//! Cluster convergence benchmark (not a test): whole `Cluster` nodes on a `SimNetwork` under a
//! paused tokio clock, so times are simulated seconds of protocol time (CPU time is free);
//! wall time is printed too.
//!
//! ```text
//! cargo bench --bench cluster_convergence                 # the table (~45 s on 2 cores)
//! cargo bench --bench cluster_convergence -- --quick      # 10 and 50 nodes, 20k streams
//! cargo bench --bench cluster_convergence -- --encodings  # + raw chitchat: key per stream vs
//!     packed (--encoding-key / --encoding-packed run only one, to compare peak memory)
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it makes one small smoke pass:
//! 10 nodes, 10 x 200 streams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use ringcast::cluster::{Cluster, ClusterSettings, NodeRole, Ring, SimNetwork};

const SECRET: &str = "bench-secret";
const GOSSIP: Duration = Duration::from_millis(300);
const STEP: Duration = Duration::from_millis(100);

fn addr_of(index: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, (index / 200) as u8, (index % 200) as u8 + 1], 7946))
}

async fn start_nodes(net: &SimNetwork, n: usize) -> anyhow::Result<Vec<Cluster>> {
    let seeds: Vec<String> = (0..3.min(n)).map(|i| addr_of(i).to_string()).collect();
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let addr = addr_of(i);
        let mut settings = ClusterSettings::new(format!("origin-{i:03}"), NodeRole::Origin, SECRET);
        settings.rtmp_advertise = format!("{}:1935", addr.ip());
        settings.gossip_listen = addr;
        settings.gossip_advertise = addr;
        settings.seeds = seeds.clone();
        settings.gossip_interval = GOSSIP;
        settings.network = Some(net.clone());
        let node = Cluster::start(settings).await?;
        node.set_ready(true);
        nodes.push(node);
    }
    Ok(nodes)
}

/// Simulated time until `done` holds for every node, checked every 100 ms.
async fn time_until(
    nodes: &[Cluster],
    limit: Duration,
    done: impl Fn(&Cluster) -> bool,
) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    loop {
        if nodes.iter().all(&done) {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(STEP).await;
    }
}

fn fmt_secs(d: Option<Duration>) -> String {
    d.map_or("timeout".into(), |d| format!("{:.1}", d.as_secs_f64()))
}

struct ScaleRow {
    nodes: usize,
    converge: Option<Duration>,
    detect_first: Option<Duration>,
    detect_all: Option<Duration>,
    bytes_per_node_s: f64,
    state_bytes: usize,
    wall: Duration,
}

async fn scale(n: usize) -> anyhow::Result<ScaleRow> {
    let wall = Instant::now();
    let net = SimNetwork::new();
    let mut nodes = start_nodes(&net, n).await?;
    let converge = time_until(&nodes, Duration::from_secs(60), |node| {
        let view = node.view();
        view.nodes().iter().filter(|v| v.live).count() == n && view.ring().members().len() == n
    })
    .await;
    // Steady state: let the failure detector learn, then measure gossip traffic.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = net.stats().bytes_sent;
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let bytes_per_node_s =
        (net.stats().bytes_sent - before) as f64 / n as f64 / window.as_secs_f64();
    let state_bytes = nodes[0].view().state_bytes();

    // Crash the last node (not a seed).
    let victim = nodes.pop().context("no nodes")?;
    let victim_id = victim.node_id().to_string();
    drop(victim);
    let start = tokio::time::Instant::now();
    let gone = |node: &Cluster| !node.view().ring().members().contains(&victim_id);
    let mut detect_first = None;
    let mut detect_all = None;
    while start.elapsed() < Duration::from_secs(30) {
        if detect_first.is_none() && nodes.iter().any(gone) {
            detect_first = Some(start.elapsed());
        }
        if nodes.iter().all(gone) {
            detect_all = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(STEP).await;
    }
    Ok(ScaleRow {
        nodes: n,
        converge,
        detect_first,
        detect_all,
        bytes_per_node_s,
        state_bytes,
        wall: wall.elapsed(),
    })
}

struct StreamsRow {
    origins: usize,
    per_origin: usize,
    converge: Option<Duration>,
    state_bytes: usize,
    wire_bytes: u64,
    steady_bytes_per_node_s: f64,
    wall: Duration,
}

async fn many_streams(origins: usize, per_origin: usize) -> anyhow::Result<StreamsRow> {
    let wall = Instant::now();
    let net = SimNetwork::new();
    let nodes = start_nodes(&net, origins).await?;
    for (i, node) in nodes.iter().enumerate() {
        node.set_streams(
            (0..per_origin)
                .map(|s| format!("live/o{i:03}-stream-{s:04}"))
                .collect(),
        );
    }
    let total = origins * per_origin;
    let converge = time_until(&nodes, Duration::from_secs(120), |node| {
        let view = node.view();
        view.nodes()
            .iter()
            .filter(|v| v.live)
            .map(|v| v.streams)
            .sum::<usize>()
            == total
            && view.ring().members().len() == origins
    })
    .await;
    let wire_bytes = net.stats().bytes_sent;
    let state_bytes = nodes[0].view().state_bytes();
    // Steady state with the streams in place, one stream change per origin every 10 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = net.stats().bytes_sent;
    let window = Duration::from_secs(10);
    for (i, node) in nodes.iter().enumerate() {
        let mut streams: Vec<String> = (1..per_origin)
            .map(|s| format!("live/o{i:03}-stream-{s:04}"))
            .collect();
        streams.push(format!("live/o{i:03}-replacement"));
        node.set_streams(streams);
    }
    tokio::time::sleep(window).await;
    let steady_bytes_per_node_s =
        (net.stats().bytes_sent - before) as f64 / origins as f64 / window.as_secs_f64();
    // Spot check: every node locates a sample of streams at their publisher.
    for (i, node) in nodes.iter().enumerate().step_by(7) {
        let stream = format!(
            "live/o{:03}-stream-{:04}",
            (i * 31) % origins,
            1 + i % (per_origin - 1).max(1)
        );
        let found = node.locate(&stream).map(|l| l.node_id);
        anyhow::ensure!(
            found == Some(format!("origin-{:03}", (i * 31) % origins)),
            "{stream} located at {found:?}"
        );
    }
    Ok(StreamsRow {
        origins,
        per_origin,
        converge,
        state_bytes,
        wire_bytes,
        steady_bytes_per_node_s,
        wall: wall.elapsed(),
    })
}

fn ring_rows() -> Vec<(usize, f64, f64, f64)> {
    let keys = 100_000;
    [10usize, 100]
        .into_iter()
        .map(|n| {
            let members = |n: usize| (0..n).map(|i| format!("origin-{i:03}"));
            let ring = Ring::new(members(n));
            let grown = Ring::new(members(n + 1));
            let mut counts: HashMap<&str, usize> = HashMap::new();
            let mut moved = 0usize;
            for k in 0..keys {
                let key = format!("live/stream-{k}");
                let owner = ring.owner(&key).unwrap_or("");
                *counts.entry(owner).or_default() += 1;
                if grown.owner(&key) != Some(owner) {
                    moved += 1;
                }
            }
            let max = counts.values().copied().max().unwrap_or(0) as f64;
            let avg = keys as f64 / n as f64;
            (
                n,
                max / avg,
                moved as f64 / keys as f64,
                1.0 / (n + 1) as f64,
            )
        })
        .collect()
}

/// Raw chitchat on its own in-memory transport: one key per stream vs our packed buckets.
async fn encodings(origins: usize, per_origin: usize, modes: &[&str]) -> anyhow::Result<()> {
    use chitchat::transport::ChannelTransport;
    use chitchat::{
        spawn_chitchat, ChitchatConfig, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    };
    println!();
    println!(
        "encoding comparison, raw chitchat + ChannelTransport, {origins} x {per_origin} streams"
    );
    println!(
        "{:<22} {:>12} {:>14} {:>12} {:>10}",
        "encoding", "converge s", "state bytes", "wire MB", "wall s"
    );
    for &mode in modes {
        let wall = Instant::now();
        let transport = ChannelTransport::with_mtu(65_507);
        let mut handles = Vec::new();
        let mut state_bytes = 0usize;
        for i in 0..origins {
            let addr = addr_of(i);
            let config = ChitchatConfig {
                chitchat_id: ChitchatId::new(format!("origin-{i:03}"), 1, addr),
                cluster_id: "bench".into(),
                gossip_interval: GOSSIP,
                listen_addr: addr,
                seed_nodes: vec![addr_of(0).to_string()],
                failure_detector_config: FailureDetectorConfig {
                    initial_interval: GOSSIP,
                    ..FailureDetectorConfig::default()
                },
                marked_for_deletion_grace_period: Duration::from_secs(600),
                catchup_callback: None,
                extra_liveness_predicate: None,
                protocol_version: ProtocolVersion::V1,
            };
            let stamp = 0x18f_0000_0000u64;
            let names = (0..per_origin).map(|s| format!("live/o{i:03}-stream-{s:04}"));
            let kvs: Vec<(String, String)> = if mode == "key per stream" {
                names
                    .map(|n| (format!("s:{n}"), format!("{stamp:x}")))
                    .collect()
            } else {
                let mut buckets = vec![String::new(); 256];
                for (s, n) in names.enumerate() {
                    buckets[(s * 7919 + i) % 256].push_str(&format!("{stamp:x} {n}\n"));
                }
                buckets
                    .into_iter()
                    .enumerate()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(b, v)| (format!("s/{b:02x}"), v))
                    .collect()
            };
            state_bytes += kvs
                .iter()
                .map(|(k, v)| k.len() + v.len() + 13)
                .sum::<usize>();
            handles.push(spawn_chitchat(config, kvs, &transport).await?);
        }
        let expected_keys: usize = {
            let mut total = 0;
            for h in &handles {
                let chitchat = h.chitchat();
                let guard = chitchat.lock().await;
                total += guard
                    .node_states()
                    .get(h.chitchat_id())
                    .map_or(0, |s| s.num_key_values());
            }
            total
        };
        let start = tokio::time::Instant::now();
        let converge = loop {
            let mut done = true;
            for h in &handles {
                let chitchat = h.chitchat();
                let guard = chitchat.lock().await;
                let keys: usize = guard
                    .node_states()
                    .values()
                    .map(|s| s.num_key_values())
                    .sum();
                if keys < expected_keys || guard.live_nodes().count() < origins {
                    done = false;
                    break;
                }
            }
            if done {
                break Some(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(120) {
                break None;
            }
            tokio::time::sleep(STEP).await;
        };
        println!(
            "{:<22} {:>12} {:>14} {:>12.1} {:>10.1}",
            mode,
            fmt_secs(converge),
            state_bytes,
            transport.statistics().num_bytes_total as f64 / 1e6,
            wall.elapsed().as_secs_f64()
        );
        for h in &handles {
            h.abort();
        }
    }
    Ok(())
}

fn print_streams(row: &StreamsRow) {
    println!();
    println!(
        "{} origins x {} streams = {} streams:",
        row.origins,
        row.per_origin,
        row.origins * row.per_origin
    );
    println!(
        "  converge (every node sees every stream): {} s",
        fmt_secs(row.converge)
    );
    println!(
        "  replicated state per node: {:.2} MB ({:.1} bytes/stream)",
        row.state_bytes as f64 / 1e6,
        row.state_bytes as f64 / (row.origins * row.per_origin) as f64
    );
    println!(
        "  wire bytes until converged: {:.1} MB total, {:.2} MB per node",
        row.wire_bytes as f64 / 1e6,
        row.wire_bytes as f64 / 1e6 / row.origins as f64
    );
    println!(
        "  steady state, one stream change per origin per 10 s: {:.0} bytes/node/s",
        row.steady_bytes_per_node_s
    );
    println!("  wall: {:.1} s", row.wall.as_secs_f64());
}

fn print_ring() {
    println!();
    println!("ring (160 virtual nodes, SipHash-2-4), 100k keys:");
    println!(
        "{:>8} {:>10} {:>22} {:>10}",
        "origins", "max/avg", "moved on one join", "expected"
    );
    for (n, balance, moved, expected) in ring_rows() {
        println!(
            "{n:>8} {balance:>10.3} {:>21.2}% {:>9.2}%",
            moved * 100.0,
            expected * 100.0
        );
    }
}

async fn bench(args: &[String]) -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not.
    let smoke = !args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let only_encodings = args.iter().any(|a| a.starts_with("--encoding-"));
    let sizes: &[usize] = match (only_encodings, smoke, quick) {
        (true, _, _) => &[],
        (false, true, _) => &[10],
        (false, false, true) => &[10, 50],
        (false, false, false) => &[10, 50, 100],
    };
    println!("ringcast gossip benchmark: SimNetwork (authenticated frames), paused tokio clock,");
    println!("times in simulated seconds; gossip every {GOSSIP:?}, phi threshold 8.");
    println!();
    println!(
        "{:>5} {:>12} {:>18} {:>18} {:>16} {:>10} {:>8}",
        "nodes",
        "converge s",
        "kill seen first s",
        "kill out of all s",
        "bytes/node/s",
        "state B",
        "wall s"
    );
    for &n in sizes {
        let row = scale(n).await?;
        println!(
            "{:>5} {:>12} {:>18} {:>18} {:>16.0} {:>10} {:>8.1}",
            row.nodes,
            fmt_secs(row.converge),
            fmt_secs(row.detect_first),
            fmt_secs(row.detect_all),
            row.bytes_per_node_s,
            row.state_bytes,
            row.wall.as_secs_f64()
        );
    }

    if !only_encodings {
        let (origins, per_origin) = match (smoke, quick) {
            (true, _) => (10, 200),
            (false, true) => (20, 1000),
            (false, false) => (100, 1000),
        };
        print_streams(&many_streams(origins, per_origin).await?);
        print_ring();
    }
    let (key, packed) = ("key per stream", "packed (256 buckets)");
    for (flag, modes) in [
        ("--encodings", &[key, packed][..]),
        ("--encoding-key", &[key][..]),
        ("--encoding-packed", &[packed][..]),
    ] {
        if args.iter().any(|a| a == flag) {
            encodings(100, 1000, modes).await?;
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    runtime.block_on(bench(&args))
}
