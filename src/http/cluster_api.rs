//! The cluster-wide API: every stream with its origin, the node where its publisher entered,
//! the edges carrying it and its players on every node; the clients of a stream wherever they
//! are; ending a stream wherever its publisher is.
//!
//! Owns: asking the other nodes (their own API over HTTP, in parallel, with a deadline,
//! proving itself with a credential derived from the cluster secret) and putting the answers
//! together with gossip. Must never: wait for a node past [`ASK_DEADLINE`] (a dead or frozen
//! node is listed in `unreachable`, the answer comes anyway), or ask a node gossip says is
//! dead (it is listed in `unreachable` without being asked).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::{node_credential, refusal, NODE_HEADER};
use super::{error, HttpState};
use crate::cluster::NodeRole;

/// How long the answering node waits for the others.
pub const ASK_DEADLINE: Duration = Duration::from_millis(1500);
/// The largest answer read from another node (a node with 100k streams answers ~30 MB).
const MAX_ANSWER: usize = 64 << 20;

/// Every other live node's answer to `method path` (their JSON), and the nodes that did not
/// answer in time.
async fn ask_others(
    state: &HttpState,
    method: Method,
    path: &str,
) -> (Vec<(String, Value)>, Vec<String>) {
    let Some(cluster) = state.cluster.get() else {
        return (Vec::new(), Vec::new());
    };
    let own = cluster.node_id().to_string();
    // Nodes gossip already calls dead are not asked (nothing would answer), but listed: what
    // they held is missing from the answer. Nodes that left for good are not.
    let (peers, dead): (Vec<_>, Vec<_>) = cluster
        .nodes()
        .into_iter()
        .filter(|n| !n.leaving && n.id != own)
        .partition(|n| n.live);
    let dead: Vec<String> = dead.into_iter().map(|n| n.id).collect();
    let peers: Vec<(String, String)> = peers.into_iter().map(|n| (n.id, n.http_addr)).collect();
    let client = match crate::http_client::client() {
        Ok(client) => client,
        Err(_) => {
            let all = peers.into_iter().map(|(id, _)| id).chain(dead).collect();
            return (Vec::new(), all);
        }
    };
    let scope = format!("{method} {path}");
    let credential = state
        .node_key
        .get()
        .map(|key| node_credential(key, &own, &scope));
    let asks = peers.into_iter().map(|(id, addr)| {
        let (client, method, credential) = (client.clone(), method.clone(), credential.clone());
        let url = format!("http://{addr}{path}");
        async move {
            if addr.is_empty() {
                return (id, None);
            }
            let mut request = client.request(method, url).timeout(ASK_DEADLINE);
            if let Some(credential) = credential {
                request = request.header(NODE_HEADER, credential);
            }
            let answer = async {
                let response = request.send().await.ok()?;
                let status = response.status();
                // Bounded: a node's answer is its own API's, but no peer gets unlimited memory.
                let bytes = response.bytes().await.ok()?;
                if bytes.len() > MAX_ANSWER {
                    return None;
                }
                let body: Value = serde_json::from_slice(&bytes).ok()?;
                // A 404 is an answer too (nothing of that here); errors are not.
                (status.is_success() || status == StatusCode::NOT_FOUND).then_some(body)
            };
            (
                id,
                tokio::time::timeout(ASK_DEADLINE, answer)
                    .await
                    .ok()
                    .flatten(),
            )
        }
    });
    let mut answered = Vec::new();
    let mut unreachable = dead;
    for (id, body) in futures_join_all(asks).await {
        match body {
            Some(body) => answered.push((id, body)),
            None => unreachable.push(id),
        }
    }
    unreachable.sort();
    (answered, unreachable)
}

/// Runs all `futures` at once and collects their outputs, in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(value) = handle.await {
            out.push(value);
        }
    }
    out
}

/// This node's `/api/v1/streams` answer, as the others would get it.
fn own_streams(state: &HttpState) -> Value {
    let relays = state.relays.get().map(|r| r.statuses()).unwrap_or_default();
    json!({
        "node_id": state.node_id,
        "streams": state.hub.streams(),
        "relays": relays,
    })
}

/// `GET /api/v1/cluster/streams`: every stream of the cluster (claimed by an origin, or with a
/// publisher on some node): `{"stream", "node_id" (its origin), "rtmp", "entry" (the node its
/// publisher entered), "edges" (that carry it), "players" (viewers by node; other nodes'
/// relays are not counted), "players_total",
/// "bitrate_bps", "relays"}`, plus `unreachable` (nodes that did not answer).
pub(super) async fn streams(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&state, &headers, "GET /api/v1/cluster/streams") {
        return refused;
    }
    let cluster = match state.cluster() {
        Ok(cluster) => cluster.clone(),
        Err(no_cluster) => return no_cluster.into_response(),
    };
    let (mut answers, unreachable) = ask_others(&state, Method::GET, "/api/v1/streams").await;
    answers.push((state.node_id.clone(), own_streams(&state)));
    let view = cluster.view();
    let role_of = |id: &str| view.node(id).map(|n| n.role);

    #[derive(Default)]
    struct Entry {
        origin: Option<String>,
        entry: Option<String>,
        edges: BTreeSet<String>,
        players: BTreeMap<String, u64>,
        bitrate_bps: u64,
        relays: Vec<Value>,
    }
    let mut table: BTreeMap<String, Entry> = BTreeMap::new();
    for (stream, origin) in view.locator().streams() {
        table.entry(stream).or_default().origin = Some(origin);
    }
    for (node, body) in &answers {
        let edge = role_of(node) == Some(NodeRole::Edge);
        for s in body["streams"].as_array().into_iter().flatten() {
            let Some(key) = s["key"].as_str() else {
                continue;
            };
            let e = table.entry(key.to_string()).or_default();
            // Viewers: other nodes' relays are players of this node but not viewers.
            let all = s["players"].as_u64().unwrap_or(0);
            let players = all.saturating_sub(s["relay_players"].as_u64().unwrap_or(0));
            if players > 0 {
                e.players.insert(node.clone(), players);
            }
            let publishing = s["publishing"].as_bool().unwrap_or(false);
            if edge && publishing {
                e.edges.insert(node.clone());
            }
            if publishing && e.origin.as_deref() == Some(node.as_str()) {
                let bytes = s["bytes_in"].as_f64().unwrap_or(0.0);
                let secs = s["publish_seconds"].as_f64().unwrap_or(0.0);
                if secs > 0.0 {
                    e.bitrate_bps = (bytes * 8.0 / secs) as u64;
                }
            }
            // A non-relayed publisher on an edge or origin: the publisher entered here.
            if publishing && !s["relayed"].as_bool().unwrap_or(true) && !edge {
                e.entry.get_or_insert_with(|| node.clone());
            }
        }
        for r in body["relays"].as_array().into_iter().flatten() {
            let Some(key) = r["stream"].as_str() else {
                continue;
            };
            let e = table.entry(key.to_string()).or_default();
            if r["direction"] == "push" {
                // The edge that forwards the publisher: where it entered.
                e.entry = Some(node.clone());
            }
            e.relays.push(json!({
                "node_id": node,
                "direction": r["direction"],
                "state": r["state"],
                "upstream_node": r["upstream_node"],
            }));
        }
    }
    let streams: Vec<Value> = table
        .into_iter()
        .map(|(stream, e)| {
            let rtmp = e
                .origin
                .as_deref()
                .and_then(|o| view.node(o))
                .map(|n| n.rtmp_addr.clone());
            json!({
                "stream": stream,
                "node_id": e.origin,
                "rtmp": rtmp,
                "entry": e.entry.or(e.origin.clone()),
                "edges": e.edges,
                "players_total": e.players.values().sum::<u64>(),
                "players": e.players,
                "bitrate_bps": e.bitrate_bps,
                "relays": e.relays,
            })
        })
        .collect();
    Json(json!({
        "node_id": state.node_id,
        "streams": streams,
        "unreachable": unreachable,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct ClientsParams {
    stream: Option<String>,
}

/// `GET /api/v1/cluster/clients[?stream=APP/STREAM]`: the connections of every node (of that
/// stream), each with its `node_id`, plus `unreachable`.
pub(super) async fn clients(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    params: Result<Query<ClientsParams>, QueryRejection>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers, "GET /api/v1/cluster/clients") {
        return refused;
    }
    if let Err(no_cluster) = state.cluster() {
        return no_cluster.into_response();
    }
    let stream = match params {
        Ok(Query(p)) => p.stream,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let (mut answers, unreachable) = ask_others(&state, Method::GET, "/api/v1/clients").await;
    answers.push((
        state.node_id.clone(),
        json!({ "clients": state.clients.list() }),
    ));
    let mut clients = Vec::new();
    for (node, body) in answers {
        for c in body["clients"].as_array().into_iter().flatten() {
            if stream.as_deref().is_some_and(|s| c["stream"] != s) {
                continue;
            }
            let mut c = c.clone();
            c["node_id"] = json!(node);
            clients.push(c);
        }
    }
    Json(json!({
        "node_id": state.node_id,
        "stream": stream,
        "clients": clients,
        "unreachable": unreachable,
    }))
    .into_response()
}

/// `DELETE /api/v1/cluster/streams/{app}/{stream}`: closes the stream's publisher wherever
/// it is (the node it entered: an edge forwarding it, or its origin). 404 when no node that
/// answered has it.
pub(super) async fn kick_stream(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((app, stream)): Path<(String, String)>,
) -> Response {
    let scope = format!("DELETE /api/v1/cluster/streams/{app}/{stream}");
    if let Some(refused) = refusal(&state, &headers, &scope) {
        return refused;
    }
    if let Err(no_cluster) = state.cluster() {
        return no_cluster.into_response();
    }
    let key = format!("{app}/{stream}");
    let path = format!("/api/v1/streams/{app}/{stream}");
    let (answers, unreachable) = ask_others(&state, Method::DELETE, &path).await;
    let mut kicked_on: Vec<String> = answers
        .into_iter()
        .filter(|(_, body)| body["kicked"].is_u64())
        .map(|(node, _)| node)
        .collect();
    if state.clients.kick_publisher(&key).is_some() {
        kicked_on.push(state.node_id.clone());
    }
    let status = if kicked_on.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(json!({
            "node_id": state.node_id,
            "stream": key,
            "kicked_on": kicked_on,
            "unreachable": unreachable,
        })),
    )
        .into_response()
}
