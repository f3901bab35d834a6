//! Clusters of real nodes on 127.0.0.1: start a fleet, wait for agreement, ask where a
//! stream lives.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Node;

/// A secret no other test (or test run) shares.
pub fn test_secret(test: &str) -> String {
    format!("{test}-{}-ringcast-test", std::process::id())
}

/// Starts a clustered node with ephemeral ports.
pub async fn start_node(id: &str, role: &str, secret: &str, seeds: &[String]) -> Node {
    start_node_with(id, role, secret, seeds, &[]).await
}

/// `start_node` with extra environment (later entries win over the defaults).
pub async fn start_node_with(
    id: &str,
    role: &str,
    secret: &str,
    seeds: &[String],
    extra: &[(&str, &str)],
) -> Node {
    let seeds = seeds.join(",");
    let mut env = vec![
        ("RINGCAST_NODE__ID", id),
        ("RINGCAST_NODE__ROLE", role),
        ("RINGCAST_CLUSTER__SECRET", secret),
        ("RINGCAST_CLUSTER__GOSSIP_LISTEN", "127.0.0.1:0"),
        ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "127.0.0.1:0"),
        ("RINGCAST_CLUSTER__SEEDS", seeds.as_str()),
    ];
    env.extend_from_slice(extra);
    let node = Node::start(&env).await;
    let gossip = node.gossip.clone().expect("gossip= in the listening line");
    assert!(
        !gossip.ends_with(":0") && gossip.starts_with("127.0.0.1:"),
        "advertised gossip address {gossip}: port 0 must become the bound port"
    );
    node
}

/// Named nodes of one cluster.
pub struct Fleet {
    pub nodes: Vec<(String, Node)>,
}

impl Fleet {
    /// `origins` origins then `edges` edges; the first two origins seed everyone else.
    pub async fn start(secret: &str, origins: usize, edges: usize) -> Fleet {
        Fleet::start_with(secret, origins, edges, &[]).await
    }

    /// `start`, with extra environment for the edges (e.g. redirect mode).
    pub async fn start_with(
        secret: &str,
        origins: usize,
        edges: usize,
        edge_env: &[(&str, &str)],
    ) -> Fleet {
        let mut nodes: Vec<(String, Node)> = Vec::new();
        let mut seeds: Vec<String> = Vec::new();
        let ids = (0..origins)
            .map(|i| (format!("origin-{i}"), "origin"))
            .chain((0..edges).map(|i| (format!("edge-{i}"), "edge")));
        for (id, role) in ids {
            let extra = if role == "edge" { edge_env } else { &[] };
            let node = start_node_with(&id, role, secret, &seeds, extra).await;
            if seeds.len() < 2 && role == "origin" {
                seeds.push(node.gossip.clone().unwrap_or_default());
            }
            nodes.push((id, node));
        }
        Fleet { nodes }
    }

    pub fn node(&self, id: &str) -> &Node {
        self.nodes
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, n)| n)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(|(id, _)| id.clone()).collect()
    }

    pub fn origins(&self) -> Vec<String> {
        self.ids()
            .into_iter()
            .filter(|id| id.starts_with("origin"))
            .collect()
    }

    pub fn without(mut self, id: &str) -> (Fleet, Node) {
        let at = self
            .nodes
            .iter()
            .position(|(i, _)| i == id)
            .unwrap_or_else(|| panic!("no node {id}"));
        let (_, node) = self.nodes.remove(at);
        (self, node)
    }
}

/// Polls `check` every 100 ms until it passes; panics with its last complaint after `limit`.
/// Returns how long it took.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        let outcome = check().await;
        match outcome {
            Ok(()) => return started.elapsed(),
            Err(why) if started.elapsed() > limit => {
                panic!("{what}: not within {limit:?}: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The `/api/v1/cluster/nodes` list of `node`, by id.
pub async fn nodes_seen_by(node: &Node) -> Result<BTreeMap<String, Value>, String> {
    let (status, body) = node.get_json("/api/v1/cluster/nodes").await;
    if status != 200 {
        return Err(format!("nodes: status {status}: {body}"));
    }
    Ok(body["nodes"]
        .as_array()
        .ok_or("no nodes array")?
        .iter()
        .map(|n| (n["id"].as_str().unwrap_or_default().to_string(), n.clone()))
        .collect())
}

/// Every node of `fleet` lists exactly `fleet`'s ids as live, and the origins (only) in the ring.
pub async fn all_agree(fleet: &Fleet) -> Result<(), String> {
    let expected: BTreeSet<String> = fleet.ids().into_iter().collect();
    for (id, node) in &fleet.nodes {
        let seen = nodes_seen_by(node).await?;
        let live: BTreeSet<String> = seen
            .iter()
            .filter(|(_, n)| n["live"] == Value::Bool(true))
            .map(|(id, _)| id.clone())
            .collect();
        if live != expected {
            return Err(format!("{id} sees live {live:?}"));
        }
        for (other, view) in &seen {
            let origin = other.starts_with("origin");
            if view["in_ring"] != Value::Bool(origin) {
                return Err(format!(
                    "{id} sees {other} with in_ring {}",
                    view["in_ring"]
                ));
            }
            if view["role"] != if origin { "origin" } else { "edge" } {
                return Err(format!("{id} sees {other} as {}", view["role"]));
            }
        }
    }
    Ok(())
}

/// `GET /api/v1/cluster/locate?stream=..` on `node`: (node_id, source, rtmp).
pub async fn locate(node: &Node, stream: &str) -> Result<(String, String, String), String> {
    let (status, body) = node
        .get_json(&format!("/api/v1/cluster/locate?stream={stream}"))
        .await;
    if status != 200 {
        return Err(format!("locate {stream}: status {status}: {body}"));
    }
    if body["stream"] != stream {
        return Err(format!("locate {stream} answered for {}", body["stream"]));
    }
    let field = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    Ok((field("node_id"), field("source"), field("rtmp")))
}

/// Every node locates `stream` identically; returns that answer.
pub async fn locate_everywhere(
    fleet: &Fleet,
    stream: &str,
) -> Result<(String, String, String), String> {
    let mut answers = BTreeMap::new();
    for (id, node) in &fleet.nodes {
        answers.insert(id.clone(), locate(node, stream).await?);
    }
    let distinct: BTreeSet<_> = answers.values().cloned().collect();
    match distinct.len() {
        1 => Ok(distinct.into_iter().next().unwrap_or_default()),
        _ => Err(format!("{stream}: nodes disagree: {answers:?}")),
    }
}

/// `node`'s relay of `key` in `direction` ("pull"/"push"), if one runs.
pub async fn relay_entry(node: &Node, key: &str, direction: &str) -> Option<Value> {
    let (_, body) = node.get_json("/api/v1/streams").await;
    body["relays"]
        .as_array()?
        .iter()
        .find(|r| r["stream"] == key && r["direction"] == direction)
        .cloned()
}

/// Like `wait_for`, for a check that yields a value.
pub async fn wait_for_value<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(why) if started.elapsed() > limit => panic!("{what}: not within {limit:?}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
