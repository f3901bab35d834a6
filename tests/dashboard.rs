//! The dashboard (`GET /`) in a real headless Chromium against real nodes.
//!
//! A cluster of 2 origins and 1 edge with a synthetic stream and a player attached through the
//! edge: every node's page, as Chromium leaves it after running its script (`--dump-dom`),
//! has a row for each node and one for the stream with the player count the cluster API
//! gives; a screenshot of it is saved as `target/dashboard.png` (with
//! `RINGCAST_UPDATE_SCREENSHOT=1`, also as `tests/dashboard/dashboard.png`, the README's). A
//! standalone node with an admin token: the page says standalone and shows the 401 hint.
//!
//! Chromium is Debian's `chromium` package (`scripts/test.sh` installs it). Every browser
//! run is bounded and runs in its own process group, killed whole if it overruns or the test
//! ends first.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::browser::{browser, chromium};
use common::fleet::*;
use common::*;
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);
/// The DOM of `url` after its scripts ran.
async fn dump_dom(url: &str) -> Result<String, String> {
    browser(url, &["--dump-dom".to_string()])
        .await
        .map(|(dom, _)| dom)
}

/// Dumps the DOM of `url` until `check` passes on it (each dump is a fresh browser: the page
/// loads, fetches the API, draws); panics with the last complaint and DOM after `limit`.
async fn dom_until(
    what: &str,
    url: &str,
    limit: Duration,
    check: impl Fn(&str) -> Result<(), String>,
) -> (String, u32) {
    let started = Instant::now();
    let mut runs = 0;
    loop {
        runs += 1;
        let (why, dom) = match dump_dom(url).await {
            Ok(dom) => match check(&dom) {
                Ok(()) => return (dom, runs),
                Err(why) => (why, dom),
            },
            Err(why) => (why, String::new()),
        };
        if started.elapsed() > limit {
            panic!("{what}: not within {limit:?} ({runs} browser runs): {why}\nDOM:\n{dom}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The start tags of the elements carrying `attr` (e.g. `data-node="edge-0"`).
fn tags_with<'a>(dom: &'a str, attr: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    dom.match_indices(attr).filter_map(move |(at, _)| {
        let start = dom[..at].rfind('<')?;
        let end = at + dom[at..].find('>')?;
        // Inside a tag, not in text.
        (!dom[start..at].contains('>')).then_some(&dom[start..=end])
    })
}

/// The start tag of the first element carrying `attr`.
fn need(dom: &str, attr: &str) -> Result<String, String> {
    tags_with(dom, attr)
        .next()
        .map(str::to_string)
        .ok_or_else(|| format!("no element with {attr}"))
}

/// The start tag of the first `<tr>` carrying `attr`.
fn row(dom: &str, attr: &str) -> Result<String, String> {
    tags_with(dom, attr)
        .find(|t| t.starts_with("<tr "))
        .map(str::to_string)
        .ok_or_else(|| format!("no row with {attr}"))
}

/// Static assets: content type, no caching, the CSP.
async fn check_assets(node: &Node) {
    for (path, ty, file) in [
        (
            "/",
            "text/html",
            include_str!("../src/http/dashboard/index.html"),
        ),
        (
            "/dashboard.js",
            "text/javascript",
            include_str!("../src/http/dashboard/dashboard.js"),
        ),
        (
            "/dashboard.css",
            "text/css",
            include_str!("../src/http/dashboard/dashboard.css"),
        ),
    ] {
        let (status, headers, body) = http_get_full(&node.http, path).await;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        assert_eq!(status, 200, "GET {path}");
        assert!(
            header("content-type").starts_with(ty),
            "GET {path}: {headers:?}"
        );
        assert_eq!(header("cache-control"), "no-cache", "GET {path}");
        assert!(
            header("content-security-policy").starts_with("default-src 'self'"),
            "GET {path}: {headers:?}"
        );
        assert_eq!(body, file, "GET {path} serves the compiled-in file");
    }
}

/// Reads everything a player gets, until the connection ends (keeps it from being dropped as
/// a slow player).
fn drain_player(mut c: ringcast::client::RtmpClient) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while c.next().await.is_ok() {} })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_cluster_in_a_real_browser() {
    let started = Instant::now();
    let version = std::process::Command::new(chromium())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let secret = test_secret("dashboard");
    // The edge has a capacity (bars against it) and a zone.
    let fleet = Fleet::start_with(
        &secret,
        2,
        1,
        &[
            ("RINGCAST_EDGE__MAX_PLAYERS", "200"),
            ("RINGCAST_EDGE__MAX_EGRESS_MBPS", "100"),
            ("RINGCAST_NODE__ZONE", "zone-b"),
        ],
    )
    .await;
    wait_for("3 nodes agree", 30 * SEC, || all_agree(&fleet)).await;

    // live/cam1 on its ring owner, played through the edge; live/cam2 on the other origin.
    let (owner, _, _) = wait_for_value("live/cam1 located", 10 * SEC, || {
        locate_everywhere(&fleet, "live/cam1")
    })
    .await;
    let other = fleet
        .origins()
        .into_iter()
        .find(|o| *o != owner)
        .expect("two origins");
    let cam1 = synthetic_publisher(&fleet.node(&owner).url("live/cam1"), 25, 1500, 25, 25 * 600);
    let cam2 = synthetic_publisher(&fleet.node(&other).url("live/cam2"), 25, 900, 25, 25 * 600);
    wait_for("live/cam1 claimed", 15 * SEC, || async {
        match locate_everywhere(&fleet, "live/cam1").await? {
            (node, source, _) if node == owner && source == "gossip" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let edge = fleet.node("edge-0");
    let mut viewer = player(&edge.url("live/cam1")).await;
    assert!(
        wait_video(&mut viewer, 5, 20 * SEC).await >= 5,
        "the player through edge-0 gets video"
    );
    let viewer = drain_player(viewer);

    let origin0 = fleet.node("origin-0");
    let players_total = wait_for_value("cluster streams show the player", 30 * SEC, || async {
        let (status, body) = origin0.get_json("/api/v1/cluster/streams").await;
        if status != 200 {
            return Err(format!("status {status}: {body}"));
        }
        let streams = body["streams"].as_array().cloned().unwrap_or_default();
        let find = |name: &str| streams.iter().find(|s| s["stream"] == name).cloned();
        let cam1 = find("live/cam1").ok_or(format!("no live/cam1: {body}"))?;
        find("live/cam2").ok_or(format!("no live/cam2: {body}"))?;
        if cam1["players"]["edge-0"] != 1 || cam1["node_id"] != owner.as_str() {
            return Err(format!("live/cam1: {cam1}"));
        }
        if cam1["bitrate_bps"].as_u64().unwrap_or(0) == 0 {
            return Err(format!("live/cam1 has no bitrate yet: {cam1}"));
        }
        cam1["players_total"]
            .as_u64()
            .ok_or(format!("players_total: {cam1}"))
    })
    .await;
    // Load is advertised every 5 s: wait for the edge's egress to reach the others.
    wait_for("edge-0's egress advertised", 20 * SEC, || async {
        let nodes = nodes_seen_by(origin0).await?;
        let edge = nodes.get("edge-0").cloned().unwrap_or_default();
        match edge["load"]["egress_bps"].as_u64() {
            Some(bps) if bps > 0 => Ok(()),
            _ => Err(format!("edge-0: {edge}")),
        }
    })
    .await;
    let cluster_ready = started.elapsed();

    for (_, node) in &fleet.nodes {
        check_assets(node).await;
    }

    // Every node's page shows the three nodes and the stream.
    let mut runs = Vec::new();
    let browsing = Instant::now();
    for (id, node) in &fleet.nodes {
        let url = format!("http://{}/", node.http);
        let (dom, n) = dom_until(&format!("{id}'s dashboard"), &url, 90 * SEC, |dom| {
            let body = need(dom, "data-mode=")?;
            if !body.contains(r#"data-mode="cluster""#) || !body.contains(r#"data-state="ok""#) {
                return Err(format!("body {body}"));
            }
            for node in ["origin-0", "origin-1", "edge-0"] {
                let tr = row(dom, &format!(r#"data-node="{node}""#))?;
                if !tr.contains(r#"data-live="yes""#) || !tr.contains(r#"data-ready="yes""#) {
                    return Err(format!("node row {tr}"));
                }
            }
            let cam1 = row(dom, r#"data-stream="live/cam1""#)?;
            let total = format!(r#"data-players-total="{players_total}""#);
            if !cam1.contains(&total) || !cam1.contains(&format!(r#"data-origin="{owner}""#)) {
                return Err(format!("stream row {cam1}, want {total}"));
            }
            row(dom, r#"data-stream="live/cam2""#)?;
            need(dom, r#"data-players-node="edge-0" data-players="1""#)?;
            need(dom, r#"data-relay-node="edge-0" data-direction="pull""#)?;
            need(dom, r#"data-share="origin-0""#)?;
            need(dom, r#"data-share="origin-1""#)?;
            let drain = need(dom, r#"id="drain""#)?;
            if !drain.contains(r#"data-can-drain="yes""#) {
                return Err(format!("no token needed, yet the drain button is {drain}"));
            }
            Ok(())
        })
        .await;
        let me = need(&dom, "data-self=").expect("body");
        assert!(me.contains(&format!(r#"data-self="{id}""#)), "{id}: {me}");
        let banner = need(&dom, r#"id="error-banner""#).expect("error banner");
        assert!(banner.contains("hidden"), "{id}: error banner shown: {dom}");
        runs.push(n);
    }
    let dom_time = browsing.elapsed();

    // The screenshot, of origin-0's page.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let png = target.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let shot = Instant::now();
    browser(
        &format!("http://{}/", origin0.http),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,900".to_string(),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("screenshot: {e}"));
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000,
        "screenshot {} is not a full PNG ({} bytes)",
        png.display(),
        bytes.len()
    );
    if std::env::var_os("RINGCAST_UPDATE_SCREENSHOT").is_some() {
        let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/dashboard.png");
        std::fs::copy(&png, &readme).expect("copy the screenshot for the README");
        println!("screenshot copied to {}", readme.display());
    }
    println!(
        "{version}: cluster up with a stream and a player after {cluster_ready:?}; the three \
         dashboards showed every node and the stream in {dom_time:?} ({runs:?} browser runs); \
         screenshot {} ({} bytes) in {:?}; {:?} in all",
        png.display(),
        bytes.len(),
        shot.elapsed(),
        started.elapsed()
    );
    viewer.abort();
    cam1.abort();
    cam2.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_dashboard_without_the_admin_token_shows_the_401() {
    let node = Node::start(&[
        ("RINGCAST_NODE__ID", "solo-0"),
        ("RINGCAST_HTTP__ADMIN_TOKEN", "dashboard-test-token"),
    ])
    .await;
    let (status, body) = node.get_json("/api/v1/streams").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = node.get_json("/api/v1/cluster/nodes").await;
    assert_eq!((status, &body["cluster"]), (404, &Value::from("disabled")));
    check_assets(&node).await;

    let url = format!("http://{}/", node.http);
    let (dom, runs) = dom_until("the 401 hint", &url, 90 * SEC, |dom| {
        let body = need(dom, "data-mode=")?;
        if !body.contains(r#"data-mode="standalone""#) || !body.contains(r#"data-auth="required""#)
        {
            return Err(format!("body {body}"));
        }
        let hint = need(dom, r#"id="auth-hint""#)?;
        if hint.contains("hidden") || !hint.contains(r#"data-auth="required""#) {
            return Err(format!("auth hint {hint}"));
        }
        if !dom.contains("Admin token required (401)") {
            return Err("no 401 text".into());
        }
        // The node itself, known from /metrics without the token.
        row(dom, r#"data-node="solo-0""#)?;
        let drain = need(dom, r#"id="drain""#)?;
        if !drain.contains(r#"data-can-drain="no""#) || !drain.contains("disabled") {
            return Err(format!("drain button {drain}"));
        }
        if !dom.contains("needs the admin token") {
            return Err("no drain hint".into());
        }
        Ok(())
    })
    .await;
    assert!(dom.contains("Standalone"), "standalone note");
    println!("the standalone page showed the 401 hint after {runs} browser run(s)");
}
