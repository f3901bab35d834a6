//! The HTTP API: health, readiness, this node's streams, the cluster as this node sees it, and
//! Prometheus metrics.
//!
//! Owns: the HTTP listener and the JSON shapes operators script against. Reads the hub and the
//! cluster through their snapshot methods; must never mutate either, hold a lock across an
//! await, or keep the node alive after shutdown (it stops when `stop` is cancelled, and the
//! caller bounds how long open connections may linger).
//!
//! Endpoints (JSON unless stated):
//!
//! | path | answer |
//! |---|---|
//! | `GET /`, `/dashboard.js`, `/dashboard.css` | the cluster dashboard (HTML, JS, CSS compiled in; see `dashboard`) |
//! | `GET /healthz` | 200 `{"status":"ok"}` while the process runs |
//! | `GET /readyz` | 200 `{"status":"ready"}`; 503 `{"status":"starting"}` or `{"status":"draining"}` |
//! | `GET /api/v1/streams` | `{"node_id", "streams": [StreamInfo]}` |
//! | `GET /api/v1/cluster/nodes` | `{"node_id", "nodes": [NodeView]}` |
//! | `GET /api/v1/cluster/streams` | `{"node_id", "streams": [{"stream", "node_id", "rtmp"}]}` |
//! | `GET /api/v1/cluster/locate?stream=APP/STREAM` | `{"stream", "node_id", "rtmp", "source", "upstream"}` |
//! | `GET /metrics` | Prometheus text format 0.0.4 |
//!
//! `locate` names the stream's origin; `upstream` is `{"node_id", "rtmp", "source"}` of the node
//! this node would pull the stream from (`source` "edge" on edges of tier 2 and up), or `null`
//! when that is this node itself.
//!
//! Errors are `{"error": "..."}` with 400 (bad `stream`), 404 (no live origin, unknown path),
//! 503 (cluster paths while the node is still joining).
//! On a standalone node (no `cluster.secret`) every `/api/v1/cluster/*` path answers 404
//! `{"error": ..., "cluster": "disabled"}`: there is no cluster to describe, and 404 lets a
//! script tell "not clustered" from "cluster empty" (which is a 200 with a list).

mod admin;
mod cluster_api;
mod dashboard;
mod metrics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::cluster::{valid_stream_name, Cluster};
use crate::config::Role;
use crate::hub::Hub;
use crate::relay::Relays;

/// How long open HTTP connections may finish after the node stops.
pub const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Readiness as load balancers and orchestrators see it.
#[derive(Debug, Default)]
pub struct Health {
    /// The RTMP listener is bound and the node has joined its cluster (if any).
    ready: AtomicBool,
    /// Shutdown started: no new work should be sent here.
    draining: AtomicBool,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    fn status(&self) -> &'static str {
        if self.draining.load(Ordering::SeqCst) {
            "draining"
        } else if self.ready.load(Ordering::SeqCst) {
            "ready"
        } else {
            "starting"
        }
    }
}

/// What the handlers read.
pub struct HttpState {
    pub node_id: String,
    pub role: Role,
    pub hub: Hub,
    /// False on a standalone node (no `cluster.secret`).
    pub cluster_enabled: bool,
    /// Set once the node has joined; HTTP is served before that (probes answer while a seed
    /// or advertise name still resolves), and cluster paths answer 503 until then.
    pub cluster: OnceLock<Cluster>,
    /// Relays to and from other nodes (set with the cluster).
    pub relays: OnceLock<Arc<Relays>>,
    pub health: Arc<Health>,
    /// RTMP bytes in and out, node-wide.
    pub traffic: Arc<crate::server::Traffic>,
    /// The node-wide budget of log lines about connections that never got through connect.
    pub early_log: Arc<crate::server::log_limit::RateLimitedLog>,
    /// `http.admin_token`: "" = none required.
    pub admin_token: String,
    /// Open RTMP connections (list and kick).
    pub clients: Arc<crate::server::clients::Clients>,
    /// The access rules (decision counts for metrics).
    pub access: Arc<crate::access::rules::Access>,
    /// The HTTP hooks, when configured (latency and notification figures).
    pub hooks: Option<Arc<crate::access::hooks::HookChecker>>,
    /// Proves this node to the others (cluster API requests) and checks their proofs; set
    /// with the cluster.
    pub node_key: OnceLock<crate::access::relay_credential::RelayKey>,
    /// Cancelled by `POST /api/v1/drain` (as by a first SIGTERM).
    pub drain: CancellationToken,
}

/// Why a cluster path has no cluster to read.
enum NoCluster {
    /// Standalone node: 404.
    Disabled,
    /// Not joined yet: 503.
    Joining,
}

impl IntoResponse for NoCluster {
    fn into_response(self) -> Response {
        match self {
            NoCluster::Disabled => cluster_disabled(),
            NoCluster::Joining => error(StatusCode::SERVICE_UNAVAILABLE, "joining the cluster"),
        }
    }
}

impl HttpState {
    fn cluster(&self) -> Result<&Cluster, NoCluster> {
        if !self.cluster_enabled {
            return Err(NoCluster::Disabled);
        }
        self.cluster.get().ok_or(NoCluster::Joining)
    }
}

/// The API's routes over `state`.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/streams", get(streams))
        .route("/api/v1/streams/{app}/{stream}", delete(admin::kick_stream))
        .route("/api/v1/clients", get(admin::clients))
        .route("/api/v1/clients/{id}", delete(admin::kick_client))
        .route("/api/v1/drain", post(admin::drain))
        .route("/api/v1/cluster/nodes", get(cluster_nodes))
        .route("/api/v1/cluster/streams", get(cluster_api::streams))
        .route(
            "/api/v1/cluster/streams/{app}/{stream}",
            delete(cluster_api::kick_stream),
        )
        .route("/api/v1/cluster/clients", get(cluster_api::clients))
        .route("/api/v1/cluster/locate", get(locate))
        .route("/api/v1/cluster/route", get(route))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `stop` is cancelled, then lets open connections
/// finish for at most [`HTTP_SHUTDOWN_GRACE`].
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, stop: CancellationToken) {
    let stopped = stop.clone();
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stopped.cancelled().await });
    let server = tokio::spawn(async move { server.await });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => {
            // axum's accept loop retries accept errors itself, so this is unexpected.
            warn!(?result, "HTTP server ended before shutdown");
            return;
        }
        _ = stop.cancelled() => {}
    }
    if tokio::time::timeout(HTTP_SHUTDOWN_GRACE, &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn cluster_disabled() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": "cluster disabled: this node runs standalone (cluster.secret is not set)",
            "cluster": "disabled",
        })),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    let code = if state.health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({ "status": state.health.status() }))).into_response()
}

async fn streams(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = admin::refusal(&state, &headers, "GET /api/v1/streams") {
        return refused;
    }
    let relays = state.relays.get().map(|r| r.statuses()).unwrap_or_default();
    Json(json!({
        "node_id": state.node_id,
        "streams": state.hub.streams(),
        "relays": relays,
    }))
    .into_response()
}

async fn cluster_nodes(State(state): State<Arc<HttpState>>) -> Response {
    let cluster = match state.cluster() {
        Ok(cluster) => cluster,
        Err(no_cluster) => return no_cluster.into_response(),
    };
    let view = cluster.view();
    // What part of the hash space (of all stream names) each origin of the ring owns.
    let shares: serde_json::Map<String, serde_json::Value> = view
        .ring()
        .shares()
        .into_iter()
        .map(|(id, share)| (id, json!(share)))
        .collect();
    Json(json!({
        "node_id": state.node_id,
        "nodes": view.nodes(),
        "ring_shares": shares,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct LocateParams {
    stream: Option<String>,
}

/// `APP/STREAM`: both parts non-empty, no query, and advertisable (see `valid_stream_name`).
fn valid_locate_name(stream: &str) -> bool {
    let parts = stream.split_once('/');
    valid_stream_name(stream)
        && !stream.contains('?')
        && parts.is_some_and(|(app, name)| !app.is_empty() && !name.is_empty())
}

async fn locate(
    State(state): State<Arc<HttpState>>,
    params: Result<Query<LocateParams>, QueryRejection>,
) -> Response {
    let cluster = match state.cluster() {
        Ok(cluster) => cluster,
        Err(no_cluster) => return no_cluster.into_response(),
    };
    let stream = match params {
        Ok(Query(LocateParams { stream: Some(s) })) => s,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "missing query parameter: stream"),
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if !valid_locate_name(&stream) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid stream {:?}: expected APP/STREAM without a query, at most {} bytes",
                stream,
                crate::cluster::MAX_STREAM_NAME
            ),
        );
    }
    let upstream = cluster
        .locate_upstream(&stream)
        .filter(|up| up.node_id != cluster.node_id())
        .map(|up| json!({"node_id": up.node_id, "rtmp": up.rtmp_addr, "source": up.source}));
    match cluster.locate(&stream) {
        Some(location) => Json(json!({
            "stream": stream,
            "node_id": location.node_id,
            "rtmp": location.rtmp_addr,
            "source": location.source,
            "upstream": upstream,
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "no live origin known for {stream}: no origin advertises it and the ring is empty"
            ),
        ),
    }
}

#[derive(Deserialize)]
struct RouteParams {
    stream: Option<String>,
    zone: Option<String>,
}

/// `GET /api/v1/cluster/route?stream=APP/STREAM[&zone=Z]`: the edge the balancer sends a
/// player of the stream to (and counts it there as pending), for players that cannot follow an
/// RTMP 302: `{"stream", "node_id", "url", "http", "flv_url" (null when that edge serves no
/// HTTP-FLV), "reason": "carries" | "ring" | "full"}`.
async fn route(
    State(state): State<Arc<HttpState>>,
    params: Result<Query<RouteParams>, QueryRejection>,
) -> Response {
    let cluster = match state.cluster() {
        Ok(cluster) => cluster,
        Err(no_cluster) => return no_cluster.into_response(),
    };
    let Some(relays) = state.relays.get() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "joining the cluster");
    };
    let (stream, zone) = match params {
        Ok(Query(RouteParams {
            stream: Some(s),
            zone,
        })) => (s, zone),
        Ok(_) => return error(StatusCode::BAD_REQUEST, "missing query parameter: stream"),
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if !valid_locate_name(&stream) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid stream {stream:?}: expected APP/STREAM without a query"),
        );
    }
    let choice = relays
        .balancer()
        .route(&cluster.view(), &stream, zone.as_deref());
    let full = choice.reason == crate::balance::Reason::Full;
    let body = Json(json!({
        "stream": stream,
        "node_id": (!full).then_some(choice.node_id.as_str()),
        "url": (!full).then(|| format!("rtmp://{}/{stream}", choice.rtmp_addr)),
        "http": (!full).then_some(choice.http_addr.as_str()),
        "flv_url": cluster
            .view()
            .node(&choice.node_id)
            .filter(|n| !full && !n.flv_addr.is_empty())
            .map(|n| format!("http://{}/{stream}.flv", n.flv_addr)),
        "reason": choice.reason,
    }));
    if full {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    } else {
        body.into_response()
    }
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&state),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_names() {
        assert!(valid_locate_name("live/a"));
        assert!(valid_locate_name("live/a/b"));
        for bad in ["", "live", "/a", "live/", "live/a?token=1", "live/a\nb"] {
            assert!(!valid_locate_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn readiness_states() {
        let health = Health::default();
        assert_eq!((health.is_ready(), health.status()), (false, "starting"));
        health.set_ready();
        assert_eq!((health.is_ready(), health.status()), (true, "ready"));
        health.set_draining();
        assert_eq!((health.is_ready(), health.status()), (false, "draining"));
    }
}
