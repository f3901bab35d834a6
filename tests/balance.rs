//! End-to-end balancer: real nodes on 127.0.0.1, an origin that balances its players
//! (`edge.play = "balance"`) over three edges of capacities 1:1:2; players arriving through
//! RTMP 302 redirects (after play, and FMS-style at connect), ffmpeg and rtmpdump through the
//! route API, a full cluster that says so, and a balancing edge that serves players itself.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::fleet::*;
use common::*;
use ringcast::client::{ClientError, ClientOptions, RtmpClient, RtmpUrl};
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);

/// An origin that balances players over `capacities.len()` edges with those `max_players`.
async fn balanced_fleet(test: &str, capacities: &[&str]) -> Fleet {
    let secret = test_secret(test);
    let origin = start_node_with(
        "origin-0",
        "origin",
        &secret,
        &[],
        &[("RINGCAST_EDGE__PLAY", "balance")],
    )
    .await;
    let seed = origin.gossip.clone().expect("gossip");
    let mut nodes = vec![("origin-0".to_string(), origin)];
    for (i, cap) in capacities.iter().enumerate() {
        let id = format!("edge-{i}");
        let node = start_node_with(
            &id,
            "edge",
            &secret,
            std::slice::from_ref(&seed),
            &[("RINGCAST_EDGE__MAX_PLAYERS", cap)],
        )
        .await;
        nodes.push((id, node));
    }
    let fleet = Fleet { nodes };
    wait_for("the fleet agrees", 20 * SEC, || all_agree(&fleet)).await;
    fleet
}

/// Players of `key` on each edge, from the edges' own `/api/v1/streams`.
async fn players_on_edges(fleet: &Fleet, key: &str) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for (id, node) in &fleet.nodes {
        if !id.starts_with("edge") {
            continue;
        }
        let (_, body) = node.get_json("/api/v1/streams").await;
        let n = body["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["key"] == key)
            .map(|s| s["players"].as_u64().unwrap_or(0))
            .sum();
        by.insert(id.clone(), n);
    }
    by
}

/// Which edge id serves RTMP at `authority`.
fn edge_at(fleet: &Fleet, authority: &str) -> String {
    fleet
        .nodes
        .iter()
        .find(|(_, n)| n.rtmp == authority)
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| format!("unknown {authority}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_are_spread_by_capacity() {
    let fleet = balanced_fleet("balance-spread", &["10", "10", "20"]).await;
    let origin = fleet.node("origin-0");
    let streams = ["live/b0", "live/b1", "live/b2", "live/b3"];
    let publishers: Vec<_> = streams
        .iter()
        .map(|s| synthetic_publisher(&origin.url(s), 25, 1000, 25, 2000))
        .collect();
    wait_for("the streams are advertised", 15 * SEC, || async {
        for s in streams {
            match locate_everywhere(&fleet, s).await? {
                (_, src, _) if src == "gossip" => {}
                other => return Err(format!("{s}: {other:?}")),
            }
        }
        Ok(())
    })
    .await;

    // 24 players (6 per stream) through the origin's RTMP 302s: they follow to the edges the
    // balancer picks.
    let mut players = Vec::new();
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..24 {
        let key = streams[i % streams.len()];
        let url = RtmpUrl::parse(&origin.url(key)).expect("url");
        let (client, chain) =
            RtmpClient::connect_following(&url, ClientOptions::default(), false, 3)
                .await
                .expect("a player follows the balancer");
        assert_eq!(chain.len(), 2, "one redirect: {chain:?}");
        *landed
            .entry(edge_at(&fleet, &client.url.authority()))
            .or_default() += 1;
        players.push(client);
        // Gossip shows each edge's players within a second or so; the balancer counts its
        // own redirects meanwhile.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (players, counts) = count_video_all(players, 2 * SEC).await;
    assert!(
        counts.iter().all(|&n| n > 10),
        "every player gets video: {counts:?}"
    );
    eprintln!("players by edge: {landed:?}");
    // Capacities 10:10:20 and 24 players: about 6, 6 and 12, none over capacity.
    for (edge, cap, share) in [("edge-0", 10, 6), ("edge-1", 10, 6), ("edge-2", 20, 12)] {
        let n = landed.get(edge).copied().unwrap_or(0);
        assert!(n <= cap, "{edge} over capacity: {landed:?}");
        assert!(
            n.abs_diff(share) <= 2,
            "{edge} far from its share: {landed:?}"
        );
    }
    drop(players);
    for p in publishers {
        p.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_audience_stays_on_one_edge() {
    // Edges far from full: each stream's players stay together on one edge (one pull each).
    let fleet = balanced_fleet("balance-together", &["1000", "1000", "2000"]).await;
    let origin = fleet.node("origin-0");
    let streams = ["live/t0", "live/t1"];
    let publishers: Vec<_> = streams
        .iter()
        .map(|s| synthetic_publisher(&origin.url(s), 25, 1000, 25, 2000))
        .collect();
    wait_for("the streams are advertised", 15 * SEC, || async {
        for s in streams {
            match locate_everywhere(&fleet, s).await? {
                (_, src, _) if src == "gossip" => {}
                other => return Err(format!("{s}: {other:?}")),
            }
        }
        Ok(())
    })
    .await;
    let mut players = Vec::new();
    for i in 0..16 {
        let url = RtmpUrl::parse(&origin.url(streams[i % 2])).expect("url");
        let (client, _) = RtmpClient::connect_following(&url, ClientOptions::default(), false, 3)
            .await
            .expect("a player follows the balancer");
        players.push(client);
    }
    for s in streams {
        let on = wait_for_value("the edges count the players", 10 * SEC, || async {
            let on = players_on_edges(&fleet, s).await;
            if on.values().sum::<u64>() == 8 {
                Ok(on)
            } else {
                Err(format!("{on:?}"))
            }
        })
        .await;
        let carrying = on.values().filter(|n| **n > 0).count();
        assert_eq!(carrying, 1, "{s} spread over {on:?}");
    }
    drop(players);
    for p in publishers {
        p.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_and_rtmpdump_use_the_route_api_and_a_full_cluster_says_so() {
    let fleet = balanced_fleet("balance-route", &["1", "1"]).await;
    let origin = fleet.node("origin-0");
    let key = "live/routed";
    let _publisher = ffmpeg_publish(&origin.url(key), 60, 25);
    wait_for("advertised", 20 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (_, s, _) if s == "gossip" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The route API answers an edge's URL (and counts the player there): for ffmpeg and
    // rtmpdump, which cannot follow an RTMP 302. Each edge takes one player: two answers, two
    // edges.
    let mut urls = Vec::new();
    let routed_at = tokio::time::Instant::now();
    for _ in 0..2 {
        let (status, route) = origin
            .get_json(&format!("/api/v1/cluster/route?stream={key}"))
            .await;
        assert_eq!(status, 200, "{route}");
        let reason = route["reason"].as_str().unwrap_or_default();
        assert!(reason == "ring" || reason == "carries", "{route}");
        let url = route["url"].as_str().expect("url").to_string();
        assert!(url.ends_with(key), "{url}");
        urls.push(url);
    }
    assert_ne!(urls[0], urls[1], "the second player goes to the other edge");
    let (ffmpeg, rtmpdump) = tokio::join!(
        ffmpeg_decode_frames(&urls[0], 25, 30 * SEC),
        rtmpdump_decodable_frames(&urls[1], 3)
    );
    assert_eq!(ffmpeg.0, 25, "ffmpeg through {}: {}", urls[0], ffmpeg.1);
    assert!(
        rtmpdump.0 >= 25,
        "rtmpdump through {}: {} frames",
        urls[1],
        rtmpdump.0
    );

    // When gossip shows them gone (and the balancer's own count of the players it routed has
    // lapsed: it keeps them `PENDING_WINDOW` unless an advert shows them first), fill both
    // edges (one player each): the next one is refused, clearly.
    wait_for("the origin sees the edges empty", 15 * SEC, || async {
        let nodes = nodes_seen_by(origin).await?;
        let busy: Vec<String> = nodes
            .iter()
            .filter(|(id, n)| id.starts_with("edge") && n["load"]["players"] != 0)
            .map(|(id, _)| id.clone())
            .collect();
        if busy.is_empty() {
            Ok(())
        } else {
            Err(format!("players on {busy:?}"))
        }
    })
    .await;
    tokio::time::sleep_until(routed_at + ringcast::balance::PENDING_WINDOW).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let url = RtmpUrl::parse(&origin.url(key)).expect("url");
        let (c, _) = RtmpClient::connect_following(&url, ClientOptions::default(), false, 3)
            .await
            .expect("a place left");
        held.push(c);
    }
    let url = RtmpUrl::parse(&origin.url(key)).expect("url");
    match RtmpClient::connect_following(&url, ClientOptions::default(), false, 3).await {
        Err(ClientError::Refused { description, .. }) => {
            assert!(
                description.contains("every edge is at its capacity"),
                "{description}"
            )
        }
        other => panic!("a full cluster must refuse: {:?}", other.map(|(_, c)| c)),
    }
    let (status, route) = origin
        .get_json(&format!("/api/v1/cluster/route?stream={key}"))
        .await;
    assert_eq!(
        (status, route["reason"].as_str()),
        (503, Some("full")),
        "{route}"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_named_at_connect_is_redirected_fms_style_and_a_chosen_edge_serves_itself() {
    let secret = test_secret("balance-fms");
    let origin = start_node("origin-0", "origin", &secret, &[]).await;
    let seed = origin.gossip.clone().expect("gossip");
    // A balancing edge, and one plain edge: the balancer picks among both.
    let balancer = start_node_with(
        "edge-0",
        "edge",
        &secret,
        std::slice::from_ref(&seed),
        &[("RINGCAST_EDGE__PLAY", "balance")],
    )
    .await;
    let other = start_node("edge-1", "edge", &secret, std::slice::from_ref(&seed)).await;
    let fleet = Fleet {
        nodes: vec![
            ("origin-0".into(), origin),
            ("edge-0".into(), balancer),
            ("edge-1".into(), other),
        ],
    };
    wait_for("agree", 20 * SEC, || all_agree(&fleet)).await;
    let publisher =
        synthetic_publisher(&fleet.node("origin-0").url("live/fms"), 25, 1000, 25, 1500);
    let balancer = fleet.node("edge-0");
    // With the stream in the connect query, the connect itself is answered with the 302 when
    // the balancer picks the other edge; the player ends up playing either way.
    let mut served_here = 0;
    let mut sent_away = 0;
    for i in 0..8 {
        let name = format!("fms{i}");
        let url = RtmpUrl::parse(&balancer.url(&format!("live/{name}"))).expect("url");
        // The stream named in connect, as FMS-era players pass it.
        let opts = ClientOptions {
            connect_args: vec![name.as_str().into()],
            ..ClientOptions::default()
        };
        let (_c, chain) = RtmpClient::connect_following(&url, opts, false, 3)
            .await
            .expect("played");
        if chain.len() == 1 {
            served_here += 1;
        } else {
            sent_away += 1;
            assert!(chain[1].contains(&fleet.node("edge-1").rtmp), "{chain:?}");
        }
    }
    eprintln!("balancing edge: served {served_here} itself, sent {sent_away} to edge-1");
    assert!(served_here > 0 && sent_away > 0, "both edges take players");
    assert!(balancer.log_contains("connect balanced to another edge"));
    publisher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_advertise_capacity_usage_zone_and_what_they_carry() {
    let secret = test_secret("balance-advert");
    let origin = start_node("origin-0", "origin", &secret, &[]).await;
    let seed = origin.gossip.clone().expect("gossip");
    let edge = start_node_with(
        "edge-0",
        "edge",
        &secret,
        std::slice::from_ref(&seed),
        &[
            ("RINGCAST_EDGE__MAX_PLAYERS", "123"),
            ("RINGCAST_EDGE__MAX_EGRESS_MBPS", "45"),
            ("RINGCAST_NODE__ZONE", "eu-west"),
        ],
    )
    .await;
    let fleet = Fleet {
        nodes: vec![("origin-0".into(), origin), ("edge-0".into(), edge)],
    };
    wait_for("agree", 20 * SEC, || all_agree(&fleet)).await;
    let key = "live/carried";
    let publisher = synthetic_publisher(&fleet.node("origin-0").url(key), 25, 1000, 25, 1500);
    wait_for("advertised", 15 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (_, s, _) if s == "gossip" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let _viewer = player(&fleet.node("edge-0").url(key)).await;
    let seen: Value = wait_for_value("the edge's advert", 15 * SEC, || async {
        let nodes = nodes_seen_by(fleet.node("origin-0")).await?;
        let e = nodes.get("edge-0").cloned().ok_or("no edge-0")?;
        if e["streams"] == 1 && e["usage"]["rss_kib"].as_u64().unwrap_or(0) > 0 {
            Ok(e)
        } else {
            Err(format!("{e}"))
        }
    })
    .await;
    assert_eq!(seen["capacity"]["max_players"], 123, "{seen}");
    assert_eq!(seen["capacity"]["max_egress_mbps"], 45, "{seen}");
    assert_eq!(seen["zone"], "eu-west", "{seen}");
    publisher.abort();
}
