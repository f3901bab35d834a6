//! Connect rate with HTTP hooks: how many clients a second the real binary admits when every
//! connect and every play is decided by a hook server on 127.0.0.1, against the same node with
//! no rules, and how long the decisions take (client side: connect + createStream + play, and
//! the node's own `ringcast_hook_duration_seconds`).
//!
//!   cargo bench --bench hook_rate          # 4,000 clients, 64 at a time, per mode
//!   cargo test --bench hook_rate           # a quick pass (200 clients), as the test suite runs it
//!
//! The hook server answers 200 at once (an operator's backend at its best): the figures are the
//! cost of the decision path itself (a form POST per decision over a pooled keep-alive
//! connection), not of a backend.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcast::client::{ClientOptions, RtmpClient, RtmpUrl};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct Node {
    child: tokio::process::Child,
    rtmp: String,
    http: String,
}

async fn start(env: &[(&str, String)]) -> Node {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    cmd.env_clear()
        .env("RINGCAST_RTMP__LISTEN", "127.0.0.1:0")
        .env("RINGCAST_HTTP__LISTEN", "127.0.0.1:0")
        .env("RINGCAST_LOG__LEVEL", "warn,ringcast::app=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn ringcast");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = loop {
        match tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await {
            Ok(Ok(Some(l))) if l.contains("ringcast listening") => break l,
            Ok(Ok(Some(_))) => continue,
            other => panic!("ringcast did not start: {other:?}"),
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_string)
            .expect("address in the listening line")
    };
    Node {
        rtmp: field("rtmp="),
        http: field("http="),
        child,
    }
}

async fn hook_server() -> String {
    use axum::routing::post;
    let app = axum::Router::new().route("/ok", post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/ok")
}

/// `clients` players, `concurrency` at a time, each connect + createStream + play then leave:
/// (clients per second, latency p50 and p99 of one admission).
async fn run(node: &Node, clients: usize, concurrency: usize) -> (f64, Duration, Duration) {
    let url = RtmpUrl::parse(&format!("rtmp://{}/live/bench", node.rtmp)).expect("url");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (url, next) = (url.clone(), next.clone());
            tokio::spawn(async move {
                let mut took = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < clients {
                    let t = Instant::now();
                    let mut c = RtmpClient::connect(&url, ClientOptions::default())
                        .await
                        .expect("connect admitted");
                    c.play().await.expect("play admitted");
                    took.push(t.elapsed());
                }
                took
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
    (rate, pct(0.5), pct(0.99))
}

/// The node's own figures for its play hook: calls, mean, and the bucket its p99 falls in.
async fn hook_p99(node: &Node) -> String {
    let (_, metrics) = fetch(&node.http, "/metrics").await;
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let play: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("ringcast_hook_duration_seconds") && l.contains("call=\"play\""))
        .collect();
    let find = |suffix: &str| {
        play.iter()
            .find(|l| l.starts_with(&format!("ringcast_hook_duration_seconds_{suffix}")))
            .and_then(|l| value(l))
            .unwrap_or(0.0)
    };
    let (count, sum) = (find("count"), find("sum"));
    let p99 = play
        .iter()
        .filter(|l| l.starts_with("ringcast_hook_duration_seconds_bucket"))
        .find(|l| value(l).is_some_and(|c| c >= 0.99 * count))
        .and_then(|l| l.split("le=\"").nth(1)?.split('"').next())
        .unwrap_or("?");
    format!(
        "{count} calls, mean {:.2} ms, p99 within {p99} s",
        sum / count.max(1.0) * 1e3
    )
}

async fn fetch(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("http");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (clients, concurrency) = if full { (4000, 64) } else { (200, 16) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let hook = hook_server().await;
        let open = start(&[]).await;
        let hooked = start(&[
            ("RINGCAST_HOOKS__ON_CONNECT", hook.clone()),
            ("RINGCAST_HOOKS__ON_PLAY", hook.clone()),
            ("RINGCAST_ACCESS__DEFAULT__CONNECT", "hook".to_string()),
            ("RINGCAST_ACCESS__DEFAULT__PLAY", "hook".to_string()),
        ])
        .await;
        println!("hook_rate: {clients} clients, {concurrency} at a time, connect + createStream + play each");
        for (label, node) in [("no rules", &open), ("connect and play hooks", &hooked)] {
            let (rate, p50, p99) = run(node, clients, concurrency).await;
            println!(
                "  {label:<24} {rate:>7.0} clients/s   admission p50 {:>6.2} ms  p99 {:>6.2} ms",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }
        println!("  node's play hook figures: {}", hook_p99(&hooked).await);
        drop(open.child);
        drop(hooked.child);
    });
}
