//! A hook backend like an operator's, for the access tests: axum on 127.0.0.1, answering by
//! the stream name and recording every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

/// One request the hook server received: its path and form fields.
pub type Calls = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

pub fn form(body: &str) -> HashMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                if let Some(b) = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// A hook backend like an operator's: `/decide` answers by the stream name (`allow`, `deny`,
/// `redirect`, `error`, `slow`, `rename`; `allow` for connect and for any other name), and
/// `/done` records notifications. Every call is recorded.
pub async fn hook_server() -> (String, Calls) {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::post;
    let calls: Calls = Arc::default();
    let record = calls.clone();
    let decide = move |body: String| {
        let record = record.clone();
        async move {
            let fields = form(&body);
            let name = fields.get("name").cloned().unwrap_or_default();
            record
                .lock()
                .expect("calls")
                .push(("/decide".into(), fields));
            match name.as_str() {
                "deny" => (StatusCode::FORBIDDEN, "no").into_response(),
                "error" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
                "redirect" => (
                    StatusCode::FOUND,
                    [(header::LOCATION, "rtmp://127.0.0.1:1/live/elsewhere")],
                )
                    .into_response(),
                "rename" => (StatusCode::FOUND, [(header::LOCATION, "renamed")]).into_response(),
                "slow" => {
                    tokio::time::sleep(10 * SEC).await;
                    StatusCode::OK.into_response()
                }
                _ => StatusCode::OK.into_response(),
            }
        }
    };
    let record = calls.clone();
    let done = move |body: String| {
        let record = record.clone();
        async move {
            record
                .lock()
                .expect("calls")
                .push(("/done".into(), form(&body)));
            StatusCode::OK
        }
    };
    let app = axum::Router::new()
        .route("/decide", post(decide))
        .route("/done", post(done));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind hook server");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, calls)
}

/// The calls to `path` so far.
pub fn calls_to(calls: &Calls, path: &str) -> Vec<HashMap<String, String>> {
    calls
        .lock()
        .expect("calls")
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, f)| f.clone())
        .collect()
}
