//! A real browser plays HTTP-FLV: headless Chromium runs a page with mpegts.js (vendored in
//! tests/fixtures/mpegts) that plays a ringcast stream ffmpeg publishes, from another origin
//! (so CORS is exercised), and reports the video element's decoded frame count back to the
//! test, which hosts the page.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::browser;
use common::fleet::wait_for_value;
use common::hooks::form;
use common::*;

const SEC: Duration = Duration::from_secs(1);

type Reports = Arc<Mutex<Vec<HashMap<String, String>>>>;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mpegts")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Serves the page and mpegts.js, and records what the page reports (`/report?...`).
async fn page_server() -> (String, Reports) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let reports: Reports = Arc::default();
    let record = reports.clone();
    let (page, script) = (fixture("player.html"), fixture("mpegts.js"));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (page, script, record) = (page.clone(), script.clone(), record.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let Ok(n) = s.read(&mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let (kind, body): (&str, &[u8]) = match path {
                    "/player.html" => ("text/html", &page),
                    "/mpegts.js" => ("text/javascript", &script),
                    "/report" => {
                        record.lock().expect("reports").push(form(query));
                        ("text/plain", b"")
                    }
                    _ => ("text/plain", b"not here"),
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.write_all(body).await;
            });
        }
    });
    (addr, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_http_flv_with_mpegts_js() {
    let node = Node::start(&[("RINGCAST_FLV__LISTEN", "127.0.0.1:0")]).await;
    let key = "live/browser";
    let _ffmpeg = ffmpeg_publish(&node.url(key), 90, 25);
    // The stream is live before the page asks for it.
    let mut probe = player(&node.url(key)).await;
    assert!(wait_video(&mut probe, 10, 15 * SEC).await >= 10);
    drop(probe);

    let (pages, reports) = page_server().await;
    let url = format!(
        "http://{pages}/player.html?flv={}&report=http://{pages}/report",
        node.flv_url(key)
    );
    let _browser =
        browser::spawn(&url, &["--autoplay-policy=no-user-gesture-required"]).expect("chromium");
    let last = |reports: &Reports| reports.lock().expect("reports").last().cloned();
    let decoded = wait_for_value("the page decodes frames", 60 * SEC, || async {
        match last(&reports) {
            Some(r) if r.get("h264").map(String::as_str) == Some("false") => Ok(r),
            Some(r)
                if r.get("frames")
                    .and_then(|f| f.parse::<u32>().ok())
                    .is_some_and(|f| f >= 50) =>
            {
                Ok(r)
            }
            other => Err(format!("last report: {other:?}")),
        }
    })
    .await;
    eprintln!("mpegts.js in headless Chromium reported {decoded:?}");
    assert_eq!(
        decoded.get("h264").map(String::as_str),
        Some("true"),
        "this Chromium cannot decode H.264 in MSE: {decoded:?}"
    );
    assert_eq!(decoded.get("errors").map(String::as_str), Some(""));
    assert_eq!(
        (
            decoded.get("width").map(String::as_str),
            decoded.get("height").map(String::as_str)
        ),
        (Some("320"), Some("240"))
    );
    let time: f64 = decoded
        .get("time")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0);
    assert!(time > 1.0, "the video element plays: {decoded:?}");
    // It was an HTTP-FLV player of this node, from the page's other origin.
    let (_, clients) = node.get_json("/api/v1/clients").await;
    assert!(
        clients["clients"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["protocol"] == "http-flv" && c["stream"] == key)),
        "{clients}"
    );
}
