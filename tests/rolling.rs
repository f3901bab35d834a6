//! Draining and the cluster-wide API with real processes: a draining origin keeps serving
//! what it holds (a direct publisher and its players) and exits once it holds nothing; the
//! drain endpoint and its timeout; the cluster API answered by every node, with one node
//! frozen and then dead, and a stream ended cluster-wide.
//! (The make-before-break move of a forwarded stream: `make_before_break.rs`, alone in its
//! binary because it measures gaps.)

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::fleet::{
    self, all_agree, locate_everywhere, test_secret, wait_for, wait_for_value, Fleet,
};
use common::*;

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_origin_keeps_a_direct_publisher_and_its_players_until_it_stops() {
    let mut fleet = Fleet::start(&test_secret("rolling-direct"), 2, 1).await;
    wait_for("three nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    let key = "live/direct";
    let origin = fleet.node("origin-0");
    // ffmpeg publishes straight to origin-0 for 14 s; one player there, one through the edge.
    let mut ffmpeg = ffmpeg_publish(&origin.url(key), 14, 25);
    let mut direct = player(&origin.url(key)).await;
    assert!(wait_video(&mut direct, 30, 10 * SEC).await >= 30);
    let mut through_edge = player(&fleet.node("edge-0").url(key)).await;
    assert!(wait_video(&mut through_edge, 30, 10 * SEC).await >= 30);

    origin.signal("TERM");
    // Out of service at once: not ready, out of the ring, the listener closed ...
    wait_for("origin-0 not ready", 5 * SEC, || async {
        match origin.get("/readyz").await {
            (503, body) if body.contains("draining") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    wait_for("origin-1 sees origin-0 draining", 10 * SEC, || async {
        let seen = fleet::nodes_seen_by(fleet.node("origin-1")).await?;
        let o = &seen["origin-0"];
        match (&o["draining"], &o["in_ring"], &o["live"]) {
            (Value::Bool(true), Value::Bool(false), _) => Ok(()),
            _ => Err(format!("{o}")),
        }
    })
    .await;
    wait_for("new RTMP connections refused", 5 * SEC, || async {
        match tokio::net::TcpStream::connect(&origin.rtmp).await {
            Err(_) => Ok(()),
            Ok(_) => Err("origin-0 still accepts".into()),
        }
    })
    .await;
    for i in 0..20 {
        let name = format!("live/new-{i}");
        let (node, source, _) = fleet::locate(fleet.node("edge-0"), &name)
            .await
            .expect("locate");
        assert_eq!(source, "ring", "{name}");
        assert_eq!(
            node, "origin-1",
            "a new stream never goes to the draining origin"
        );
    }
    // ... but it still serves its stream: to both players, and it is still located there.
    let (node, source, _) = fleet::locate(fleet.node("edge-0"), key)
        .await
        .expect("locate");
    assert_eq!((node.as_str(), source.as_str()), ("origin-0", "gossip"));
    for p in [&mut direct, &mut through_edge] {
        assert!(
            wait_video(p, 75, 10 * SEC).await >= 75,
            "frames keep coming"
        );
    }
    let origin_pid = origin.pid();
    assert!(
        std::path::Path::new(&format!("/proc/{origin_pid}")).exists(),
        "still running while its publisher is"
    );

    // ffmpeg finishes its 14 s unharmed; then the origin has nothing left and exits.
    let status = tokio::time::timeout(30 * SEC, ffmpeg.wait())
        .await
        .expect("ffmpeg ends by itself")
        .expect("ffmpeg status");
    assert!(
        status.success(),
        "ffmpeg kept publishing to the end: {status:?}"
    );
    assert!(wait_status(&mut direct, "NetStream.Play.UnpublishNotify", 10 * SEC).await);
    let origin = fleet
        .nodes
        .iter_mut()
        .find(|(id, _)| id == "origin-0")
        .map(|(_, n)| n)
        .expect("origin-0");
    let exit = origin
        .wait_exit(15 * SEC)
        .await
        .expect("exits once it holds nothing");
    assert!(exit.success(), "{exit:?}");
    assert!(origin.log_contains("drained: nothing left to serve"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_endpoint_needs_the_admin_token_and_the_drain_timeout_ends_what_is_left() {
    let token = "rolling-admin-token-for-tests";
    let mut node = Node::start(&[
        ("RINGCAST_HTTP__ADMIN_TOKEN", token),
        ("RINGCAST_NODE__DRAIN_TIMEOUT_S", "3"),
    ])
    .await;
    let key = "live/forever";
    let publisher = synthetic_publisher(&node.url(key), 25, 500, 25, 25 * 120);
    let mut p = player(&node.url(key)).await;
    assert!(wait_video(&mut p, 25, 10 * SEC).await >= 25);

    for headers in [&[][..], &[("Authorization", "Bearer wrong")][..]] {
        let (status, _, body) = http_request(&node.http, "POST", "/api/v1/drain", headers).await;
        assert_eq!(status, 401, "{body}");
    }
    let (_, ready) = node.get("/readyz").await;
    assert!(
        ready.contains("\"ready\""),
        "a refused drain changes nothing: {ready}"
    );
    let bearer = format!("Bearer {token}");
    let (status, _, body) = http_request(
        &node.http,
        "POST",
        "/api/v1/drain",
        &[("Authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"draining\":true"), "{body}");
    let asked = Instant::now();
    let (status, _) = node.get("/readyz").await;
    assert_eq!(status, 503);
    // Served until the timeout, then the player is told the stream stopped and the node exits.
    assert!(wait_video(&mut p, 20, 10 * SEC).await >= 20);
    assert!(wait_status(&mut p, "NetStream.Play.Stop", 15 * SEC).await);
    let exit = node
        .wait_exit(15 * SEC)
        .await
        .expect("exits after the timeout");
    assert!(exit.success(), "{exit:?}");
    assert!(
        asked.elapsed() >= Duration::from_secs(3),
        "served for the whole drain timeout"
    );
    assert!(node.log_contains("drain timeout; closing what is left"));
    let ended = tokio::time::timeout(10 * SEC, publisher)
        .await
        .expect("publisher ends");
    assert!(ended.expect("join").is_err(), "the publisher was closed");
}

/// `node`'s `/api/v1/cluster/streams` entry for `key`, and the nodes it lists unreachable.
async fn cluster_stream(node: &Node, key: &str) -> Result<(Value, Value), String> {
    let (status, body) = node.get_json("/api/v1/cluster/streams").await;
    if status != 200 {
        return Err(format!("status {status}: {body}"));
    }
    let entry = body["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stream"] == key))
        .cloned()
        .ok_or_else(|| format!("{key} not in {body}"))?;
    Ok((entry, body["unreachable"].clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_answers_for_the_cluster_with_one_node_frozen_then_dead_and_kicks_anywhere() {
    let mut fleet = Fleet::start(&test_secret("rolling-api"), 3, 2).await;
    wait_for("five nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    let key = "live/api";
    let publisher = synthetic_publisher(&fleet.node("edge-0").url(key), 25, 2000, 25, 25 * 120);
    let holder = wait_for_value("the stream held by an origin", 20 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (n, s, _) if s == "gossip" => Ok(n),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Viewers: two on edge-1, one on edge-0, one straight on the origin.
    let mut viewers = Vec::new();
    for node in ["edge-1", "edge-1", "edge-0", holder.as_str()] {
        let mut p = player(&fleet.node(node).url(key)).await;
        assert!(wait_video(&mut p, 5, 10 * SEC).await >= 5, "{node}");
        viewers.push(p);
    }

    // Every node tells the same story: origin, entry, edges, viewers per node (relays are not
    // viewers), bitrate.
    let expected_players = serde_json::json!({"edge-0": 1, "edge-1": 2, holder.as_str(): 1});
    for (id, node) in &fleet.nodes {
        wait_for(&format!("{id} describes {key}"), 15 * SEC, || async {
            let (entry, unreachable) = cluster_stream(node, key).await?;
            let edges = entry["edges"].as_array().cloned().unwrap_or_default();
            let ok = entry["node_id"] == holder.as_str()
                && entry["entry"] == "edge-0"
                && edges.contains(&Value::from("edge-0"))
                && edges.contains(&Value::from("edge-1"))
                && entry["players"] == expected_players
                && entry["players_total"] == 4
                && entry["bitrate_bps"].as_u64().unwrap_or(0) > 100_000
                && unreachable == serde_json::json!([]);
            if ok {
                Ok(())
            } else {
                Err(format!("{entry} unreachable {unreachable}"))
            }
        })
        .await;
    }
    let (status, clients) = fleet
        .node("origin-0")
        .get_json(&format!("/api/v1/cluster/clients?stream={key}"))
        .await;
    assert_eq!(status, 200, "{clients}");
    let listed = clients["clients"].as_array().cloned().unwrap_or_default();
    let viewers_by_node = |node: &str| {
        listed
            .iter()
            .filter(|c| c["role"] == "play" && c["relay"] == false && c["node_id"] == node)
            .count()
    };
    assert_eq!(
        (
            viewers_by_node("edge-0"),
            viewers_by_node("edge-1"),
            viewers_by_node(&holder)
        ),
        (1, 2, 1),
        "{clients}"
    );
    assert!(
        listed
            .iter()
            .any(|c| c["role"] == "publish" && c["relay"] == false && c["node_id"] == "edge-0"),
        "the publisher, where it entered: {clients}"
    );

    // One origin that holds nothing freezes: every other node still answers, in bounded time,
    // and says who did not.
    let bystander = fleet
        .origins()
        .into_iter()
        .find(|o| *o != holder)
        .expect("another origin");
    fleet.node(&bystander).signal("STOP");
    let others: Vec<String> = fleet
        .ids()
        .into_iter()
        .filter(|id| *id != bystander)
        .collect();
    for id in &others {
        let asked = Instant::now();
        let (entry, unreachable) = cluster_stream(fleet.node(id), key)
            .await
            .expect("an answer");
        let took = asked.elapsed();
        assert!(took < 5 * SEC, "{id} took {took:?} with {bystander} frozen");
        assert_eq!(unreachable, serde_json::json!([bystander]), "{id}");
        assert_eq!(entry["players_total"], 4, "{id}: {entry}");
    }
    // Then it is SIGKILLed: still listed (gossip calls it dead) and never waited for.
    fleet.node(&bystander).signal("KILL");
    let (fleet_left, _dead) = fleet.without(&bystander);
    fleet = fleet_left;
    wait_for("gossip calls it dead", 30 * SEC, || async {
        let seen = fleet::nodes_seen_by(fleet.node("edge-1")).await?;
        match seen.get(&bystander) {
            Some(n) if n["live"] == false => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    for id in &others {
        let asked = Instant::now();
        let (_, unreachable) = cluster_stream(fleet.node(id), key)
            .await
            .expect("an answer");
        assert!(asked.elapsed() < 5 * SEC, "{id}");
        assert_eq!(unreachable, serde_json::json!([bystander]), "{id}");
    }

    // Ended from a node that holds none of it: the publisher entered on edge-0 is closed.
    let (status, _, body) = http_request(
        &fleet.node("edge-1").http,
        "DELETE",
        &format!("/api/v1/cluster/streams/{key}"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"edge-0\""),
        "kicked where it entered: {body}"
    );
    let ended = tokio::time::timeout(15 * SEC, publisher)
        .await
        .expect("the publisher is closed");
    assert!(ended.expect("join").is_err(), "closed, not finished");
    // No origin holds it any more; its viewers are still there, waiting for it to return.
    wait_for("no node holds the stream", 15 * SEC, || async {
        for id in &others {
            let (entry, _) = cluster_stream(fleet.node(id), key).await?;
            if !entry["node_id"].is_null() || entry["bitrate_bps"] != 0 {
                return Err(format!("{id}: {entry}"));
            }
        }
        Ok(())
    })
    .await;
    // Nothing to end any more: 404.
    let (status, _, body) = http_request(
        &fleet.node("edge-0").http,
        "DELETE",
        &format!("/api/v1/cluster/streams/{key}"),
        &[],
    )
    .await;
    assert_eq!(status, 404, "{body}");
}
