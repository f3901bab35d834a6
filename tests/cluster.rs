//! End-to-end cluster discovery: real `ringcast` processes on 127.0.0.1 gossiping over UDP,
//! observed through their HTTP API.
//!
//! Every node binds port 0 for RTMP, HTTP and gossip (`gossip_advertise = 127.0.0.1:0` takes
//! the bound port) and the first origins' real gossip addresses are the others' seeds. Each
//! test uses its own secret, so tests running in parallel never join each other's clusters.
//! Measured times are printed (`cargo test --test cluster -- --nocapture`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge_then_a_sigkilled_origin_leaves_every_ring() {
    let secret = test_secret("converge");
    let started = Instant::now();
    let fleet = Fleet::start(&secret, 3, 2).await;
    let all_up = started.elapsed();
    let converged = wait_for("5 nodes list each other", 15 * SEC, || all_agree(&fleet)).await;
    println!(
        "5 real nodes (3 origins, 2 edges): all processes up after {all_up:?}, every node \
         lists all 5 live with the right ring {converged:?} later ({:?} from the first start)",
        started.elapsed()
    );

    // Streams the victim owns by the ring: they must move to a survivor.
    let names: Vec<String> = (0..20).map(|i| format!("live/k{i}")).collect();
    let mut owners_before = BTreeMap::new();
    for name in &names {
        let (owner, source, _) = locate_everywhere(&fleet, name).await.expect("agree");
        assert_eq!(source, "ring");
        owners_before.insert(name.clone(), owner);
    }
    let owned_by_victim = owners_before.values().filter(|o| *o == "origin-2").count();

    let (fleet, mut victim) = fleet.without("origin-2");
    victim.signal("KILL");
    let killed = Instant::now();
    let removal = wait_for("origin-2 out of every ring", 15 * SEC, || {
        gone_everywhere(&fleet, "origin-2")
    })
    .await;
    println!(
        "SIGKILLed origin-2 out of every remaining node's ring after {removal:?} \
         ({owned_by_victim} of 20 ring streams were its)"
    );
    assert!(victim.wait_exit(5 * SEC).await.is_some());
    assert!(killed.elapsed() < 15 * SEC);

    // The survivors agree on new owners, and none is the dead origin.
    for name in &names {
        wait_for(&format!("{name} relocated"), 5 * SEC, || async {
            match locate_everywhere(&fleet, name).await? {
                (owner, source, _)
                    if source == "ring" && (owner == "origin-0" || owner == "origin-1") =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    // The same node id comes back (new process, new ports, new generation): the ring is keyed
    // by node id, so every stream returns to the owner it had before the crash.
    let seeds = vec![fleet.node("origin-0").gossip.clone().unwrap_or_default()];
    let restarted = start_node("origin-2", "origin", &secret, &seeds).await;
    let mut fleet = fleet;
    fleet.nodes.push(("origin-2".into(), restarted));
    let back = wait_for("restarted origin-2 back everywhere", 15 * SEC, || {
        all_agree(&fleet)
    })
    .await;
    println!("origin-2 restarted under the same id: back in every ring after {back:?}");
    for (name, owner) in &owners_before {
        let (now, _, rtmp) = locate_everywhere(&fleet, name).await.expect("agree");
        assert_eq!(&now, owner, "{name} moved after a restart");
        assert_eq!(
            rtmp,
            fleet.node(owner).rtmp,
            "{name}: the new incarnation's address"
        );
    }
}

/// No node of `fleet` has `id` in its ring: absent, dead, leaving or draining.
async fn gone_everywhere(fleet: &Fleet, id: &str) -> Result<(), String> {
    for (seer, node) in &fleet.nodes {
        if let Some(v) = nodes_seen_by(node).await?.get(id) {
            if v["in_ring"] != Value::Bool(false) {
                return Err(format!("{seer} still has {id} in its ring: {v}"));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_locates_alike_and_a_published_stream_at_its_origin_by_gossip() {
    let secret = test_secret("locate");
    let fleet = Fleet::start(&secret, 3, 2).await;
    wait_for("5 nodes list each other", 15 * SEC, || all_agree(&fleet)).await;
    let origins = fleet.origins();

    // Nobody publishes: every node gives the same ring owner for every name.
    let mut owners = BTreeSet::new();
    for i in 0..20 {
        let name = format!("live/stream-{i}");
        let (owner, source, rtmp) = locate_everywhere(&fleet, &name).await.expect("agree");
        assert_eq!(source, "ring", "{name}");
        assert!(origins.contains(&owner), "{name} at {owner}");
        assert_eq!(
            rtmp,
            fleet.node(&owner).rtmp,
            "{name}: RTMP address of {owner}"
        );
        owners.insert(owner);
    }
    assert!(owners.len() >= 2, "20 names all on {owners:?}");

    // Publish on an origin that is NOT the ring owner: gossip must win over the ring.
    let name = "live/published";
    let (ring_owner, _, _) = locate_everywhere(&fleet, name).await.expect("agree");
    let holder = origins
        .iter()
        .find(|o| **o != ring_owner)
        .cloned()
        .unwrap_or_default();
    let publisher = synthetic_publisher(&fleet.node(&holder).url(name), 25, 500, 25, 25 * 120);
    let latency = wait_for("published stream located by gossip", 10 * SEC, || async {
        let (node_id, source, rtmp) = locate_everywhere(&fleet, name).await?;
        if (node_id.as_str(), source.as_str()) != (holder.as_str(), "gossip") {
            return Err(format!("located at {node_id} by {source}"));
        }
        if rtmp != fleet.node(&holder).rtmp {
            return Err(format!("rtmp {rtmp}"));
        }
        Ok(())
    })
    .await;
    println!(
        "{name} published on {holder} (ring owner {ring_owner}): every node locates it there \
         by gossip {latency:?} after the publisher started"
    );

    for (id, node) in &fleet.nodes {
        let (status, body) = node.get_json("/api/v1/cluster/streams").await;
        assert_eq!(status, 200);
        let streams = body["streams"].as_array().cloned().unwrap_or_default();
        assert!(
            streams.iter().any(|s| s["stream"] == name
                && s["node_id"] == holder.as_str()
                && s["rtmp"] == fleet.node(&holder).rtmp.as_str()),
            "{id}: cluster streams {body}"
        );
    }
    let (_, local) = fleet.node(&holder).get_json("/api/v1/streams").await;
    assert!(
        local["streams"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["key"] == name && s["publishing"] == Value::Bool(true))),
        "{holder} streams: {local}"
    );

    // The publisher leaves: the claim is withdrawn and the ring answers again.
    publisher.abort();
    let withdrawn = wait_for("claim withdrawn", 10 * SEC, || async {
        match locate_everywhere(&fleet, name).await? {
            (owner, source, _) if owner == ring_owner && source == "ring" => Ok(()),
            other => Err(format!("still {other:?}")),
        }
    })
    .await;
    println!("{name} unpublished: every node back on the ring owner after {withdrawn:?}");

    // A clean stop (SIGTERM) announces `leave`: faster than failure detection.
    let (fleet, mut leaver) = fleet.without(&holder);
    leaver.signal("TERM");
    let left = wait_for("stopped origin out of every ring", 10 * SEC, || {
        gone_everywhere(&fleet, &holder)
    })
    .await;
    println!("SIGTERMed {holder} out of every remaining node's ring after {left:?}");
    let status = leaver
        .wait_exit(10 * SEC)
        .await
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_is_never_listed_and_its_datagrams_are_counted() {
    let secret = test_secret("stranger");
    let fleet = Fleet::start(&secret, 2, 0).await;
    wait_for("2 origins list each other", 15 * SEC, || all_agree(&fleet)).await;
    let seeds: Vec<String> = fleet
        .nodes
        .iter()
        .filter_map(|(_, n)| n.gossip.clone())
        .collect();
    let stranger = start_node(
        "intruder",
        "origin",
        "not-the-secret-of-this-cluster",
        &seeds,
    )
    .await;

    // For several seconds (many gossip rounds of the stranger's SYNs to both seeds).
    let watch_until = Instant::now() + 5 * SEC;
    while Instant::now() < watch_until {
        for (id, node) in &fleet.nodes {
            let seen = nodes_seen_by(node).await.expect("nodes");
            assert!(!seen.contains_key("intruder"), "{id} lists the intruder");
            assert_eq!(seen.len(), 2, "{id}: {seen:?}");
        }
        let mine = nodes_seen_by(&stranger).await.expect("nodes");
        assert_eq!(
            mine.keys().cloned().collect::<Vec<_>>(),
            ["intruder"],
            "the intruder sees only itself"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (id, node) in &fleet.nodes {
        let (status, text) = node.get("/metrics").await;
        assert_eq!(status, 200);
        let bad = metric(&text, "ringcast_gossip_bad_datagrams_total").unwrap_or(0.0);
        assert!(bad > 0.0, "{id} counted no bad datagrams:\n{text}");
        println!("{id} dropped {bad} datagrams of the wrong-secret node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_health_readiness_streams_metrics_and_standalone_answers() {
    let secret = test_secret("http");
    let solo = start_node("solo", "origin", &secret, &[]).await;
    let standalone = Node::start(&[]).await;
    assert_eq!(standalone.gossip, None, "standalone opens no gossip port");
    let lonely_edge = start_node("lonely-edge", "edge", &test_secret("http-edge"), &[]).await;

    for node in [&solo, &standalone, &lonely_edge] {
        let (status, body) = node.get_json("/healthz").await;
        assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));
        wait_for("ready", 5 * SEC, || async {
            match node.get_json("/readyz").await {
                (200, body) if body["status"] == "ready" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    // A publisher on the clustered origin shows in its streams, metrics and cluster tables.
    let mut publisher = client(&solo.url("live/http")).await;
    publisher.publish().await.expect("publish");
    publisher
        .send_media(9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f])
        .await
        .expect("send");
    let (status, body) = solo.get_json("/api/v1/streams").await;
    assert_eq!(status, 200);
    assert_eq!(body["node_id"], "solo");
    let stream = body["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["key"] == "live/http"))
        .cloned()
        .unwrap_or_else(|| panic!("live/http not in {body}"));
    assert_eq!(stream["publishing"], true);

    wait_for("solo advertises live/http", 5 * SEC, || async {
        match locate(&solo, "live/http").await? {
            (node, source, rtmp) if node == "solo" && source == "gossip" && rtmp == solo.rtmp => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (_, streams) = solo.get_json("/api/v1/cluster/streams").await;
    let entry = &streams["streams"][0];
    assert_eq!(
        streams["streams"].as_array().map(Vec::len),
        Some(1),
        "{streams}"
    );
    assert_eq!(entry["stream"], "live/http");
    assert_eq!(entry["node_id"], "solo", "its origin");
    assert_eq!(entry["rtmp"], solo.rtmp.as_str());
    assert_eq!(entry["entry"], "solo", "published straight to the origin");
    assert_eq!(entry["players_total"], 0);
    assert!(entry["bitrate_bps"].as_u64().unwrap_or(0) > 0, "{entry}");
    assert_eq!(streams["unreachable"], serde_json::json!([]));
    let seen = nodes_seen_by(&solo).await.expect("nodes");
    let me = &seen["solo"];
    assert_eq!(
        (
            &me["live"],
            &me["in_ring"],
            &me["rtmp_addr"],
            &me["streams"]
        ),
        (
            &Value::Bool(true),
            &Value::Bool(true),
            &Value::from(solo.rtmp.as_str()),
            &Value::from(1)
        ),
        "{me}"
    );
    assert_eq!(me["load"]["publishers"], 1, "{me}");

    let (status, headers, text) = http_get_full(&solo.http, "/metrics").await;
    assert_eq!(status, 200);
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for name in [
        "ringcast_ready",
        "ringcast_streams",
        "ringcast_publishers",
        "ringcast_players",
        "ringcast_cluster_enabled",
        "ringcast_cluster_nodes_live",
        "ringcast_cluster_ring_members",
        "ringcast_cluster_streams",
        "ringcast_gossip_bad_datagrams_total",
        "ringcast_gossip_bytes_sent_total",
        "ringcast_gossip_bytes_received_total",
    ] {
        assert!(metric(&text, name).is_some(), "{name} missing:\n{text}");
    }
    assert_eq!(metric(&text, "ringcast_publishers"), Some(1.0));
    assert_eq!(metric(&text, "ringcast_cluster_nodes_live"), Some(1.0));
    assert_eq!(metric(&text, "ringcast_cluster_enabled"), Some(1.0));
    assert!(text.contains("ringcast_info{node_id=\"solo\",role=\"origin\""));

    // Bad requests and unknown paths: JSON errors.
    for (path, code) in [
        ("/api/v1/cluster/locate", 400),
        ("/api/v1/cluster/locate?stream=", 400),
        ("/api/v1/cluster/locate?stream=nostream", 400),
        ("/api/v1/cluster/locate?stream=live/x%3Ftoken%3D1", 400),
        ("/api/v1/nope", 404),
    ] {
        let (status, body) = solo.get_json(path).await;
        assert_eq!(status, code, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    // An edge that knows no origin cannot locate anything.
    let (status, body) = lonely_edge
        .get_json("/api/v1/cluster/locate?stream=live/x")
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no live origin")),
        "{body}"
    );
    // A standalone node has no cluster to describe.
    for path in [
        "/api/v1/cluster/nodes",
        "/api/v1/cluster/streams",
        "/api/v1/cluster/locate?stream=live/x",
    ] {
        let (status, body) = standalone.get_json(path).await;
        assert_eq!((status, &body["cluster"]), (404, &Value::from("disabled")));
    }
    let (_, text) = standalone.get("/metrics").await;
    assert_eq!(metric(&text, "ringcast_cluster_enabled"), Some(0.0));
    let (status, _) = standalone.get_json("/api/v1/streams").await;
    assert_eq!(status, 200);

    // SIGTERM: /readyz turns 503 "draining" while the node shuts down, then it exits cleanly.
    let mut solo = solo;
    solo.signal("TERM");
    let mut draining_seen = false;
    let deadline = Instant::now() + 10 * SEC;
    while Instant::now() < deadline {
        match solo.get("/readyz").await {
            (503, body) if body.contains("draining") => {
                draining_seen = true;
                break;
            }
            (0, _) => break,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(draining_seen, "never saw /readyz 503 draining");
    let status = solo.wait_exit(10 * SEC).await.expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(solo.log_contains("left gossip"));
}

/// Runs the binary with exactly `env` (plus safe listen addresses), at most 10 s:
/// (exit code, stderr). A binary that does not exit is killed and reported as -1.
async fn ringcast_exit(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ringcast"));
    cmd.env_clear()
        .args(args)
        .env("RINGCAST_RTMP__LISTEN", "127.0.0.1:0")
        .env("RINGCAST_HTTP__LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn ringcast");
    match tokio::time::timeout(10 * SEC, child.wait_with_output()).await {
        Ok(Ok(out)) => (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        _ => (-1, "did not exit within 10 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_config_errors_exit_2_naming_the_key() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("RINGCAST_NODE__ROLE", "edge")],
            "node.role",
            "an edge needs a cluster; set cluster.secret and cluster.seeds",
        ),
        (
            &[
                ("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef"),
                ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "0.0.0.0:7946"),
            ],
            "cluster.gossip_advertise",
            "RINGCAST_CLUSTER__GOSSIP_ADVERTISE",
        ),
        (
            &[("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef")],
            "cluster.gossip_advertise",
            "wildcard",
        ),
        (
            &[
                ("RINGCAST_CLUSTER__SECRET", "k-0123456789abcdef"),
                ("RINGCAST_CLUSTER__GOSSIP_LISTEN", "127.0.0.1:0"),
                ("RINGCAST_RTMP__ADVERTISE", "[::]:1935"),
            ],
            "rtmp.advertise",
            "not routable",
        ),
        (
            &[
                ("RINGCAST_CLUSTER__SEEDS", "127.0.0.1:7946"),
                ("RINGCAST_NODE__ROLE", "edge"),
            ],
            "cluster.seeds",
            "set cluster.secret",
        ),
        (
            &[("RINGCAST_CLUSTER__SECRET", "short")],
            "cluster.secret",
            "use at least 16",
        ),
        (
            &[("RINGCAST_CLUSTER__SECRET", "replace-me")],
            "cluster.secret",
            "placeholder",
        ),
    ];
    for (env, key, detail) in cases {
        for args in [&["--check-config"][..], &[][..]] {
            let (code, err) = ringcast_exit(args, env).await;
            assert_eq!(code, 2, "{env:?} {args:?}: {err}");
            assert!(
                err.contains(&format!("{key}: ")) && err.contains(detail),
                "{env:?} {args:?}: expected {key} / {detail:?} in: {err}"
            );
        }
    }
}
