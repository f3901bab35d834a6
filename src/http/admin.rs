//! The admin side of the API: the bearer token, the client list and the kicks.
//!
//! Owns: who may read stream keys and client lists and who may change anything
//! (`http.admin_token`), `GET /api/v1/clients`, `DELETE /api/v1/clients/{id}` and
//! `DELETE /api/v1/streams/{app}/{stream}`. Must never: compare the token in a way whose time
//! depends on where it differs, or do more than ask a session to close (the session tells
//! its client and closes itself).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{error, HttpState};
use crate::access::relay_credential::{self, RelayKey};

/// Equality whose time depends only on the lengths, not on where the bytes differ (a token's
/// length is no secret worth keeping).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Header another node of the cluster proves itself with (see [`node_credential`]).
pub const NODE_HEADER: &str = "x-ringcast-node";

/// What a node sends in [`NODE_HEADER`] to ask `scope` (`"GET /api/v1/streams"`) of another:
/// a relay credential (same key, same format) naming the scope instead of a stream.
pub fn node_credential(key: &RelayKey, node_id: &str, scope: &str) -> String {
    key.issue(node_id, scope, relay_credential::now_unix())
}

/// Whether `headers` carry a valid credential of another node of this cluster for `scope`.
fn from_a_node(state: &HttpState, headers: &HeaderMap, scope: &str) -> bool {
    let (Some(key), Some(credential)) = (
        state.node_key.get(),
        headers.get(NODE_HEADER).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    key.verify(credential, relay_credential::now_unix())
        .is_ok_and(|node| node.stream == scope)
}

/// The 401 answer when an admin token is set and the request carries neither it (as
/// `Authorization: Bearer TOKEN`) nor another node's credential for `scope`
/// (`"METHOD /path"`); `None` when it may go on.
pub(super) fn refusal(state: &HttpState, headers: &HeaderMap, scope: &str) -> Option<Response> {
    if state.admin_token.is_empty() || from_a_node(state, headers, scope) {
        return None;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same(given.as_bytes(), state.admin_token.as_bytes()) {
        None
    } else {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs the admin token: Authorization: Bearer TOKEN (http.admin_token)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        Some(response)
    }
}

pub(super) async fn clients(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&state, &headers, "GET /api/v1/clients") {
        return refused;
    }
    Json(json!({
        "node_id": state.node_id,
        "clients": state.clients.list(),
    }))
    .into_response()
}

pub(super) async fn kick_client(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers, &format!("DELETE /api/v1/clients/{id}")) {
        return refused;
    }
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, format!("bad client id {id:?}"));
    };
    if state.clients.kick(id) {
        Json(json!({ "node_id": state.node_id, "kicked": id })).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("no client {id} on this node"),
        )
    }
}

pub(super) async fn kick_stream(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((app, stream)): Path<(String, String)>,
) -> Response {
    let scope = format!("DELETE /api/v1/streams/{app}/{stream}");
    if let Some(refused) = refusal(&state, &headers, &scope) {
        return refused;
    }
    let key = format!("{app}/{stream}");
    match state.clients.kick_publisher(&key) {
        Some(id) => Json(json!({
            "node_id": state.node_id,
            "stream": key,
            "kicked": id,
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no publisher of {key} on this node"),
        ),
    }
}

/// `POST /api/v1/drain`: as a first SIGTERM (see `app::Signals`): the node leaves service
/// but serves what it holds.
pub(super) async fn drain(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&state, &headers, "POST /api/v1/drain") {
        return refused;
    }
    tracing::info!("drain asked through the API");
    state.drain.cancel();
    Json(json!({ "node_id": state.node_id, "draining": true })).into_response()
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn token_comparison() {
        assert!(same(b"s3cret-token", b"s3cret-token"));
        assert!(!same(b"s3cret-token", b"s3cret-tokem"));
        assert!(!same(b"s3cret", b"s3cret-token"));
        assert!(!same(b"", b"x"));
        assert!(same(b"", b""));
    }
}
