//! End-to-end edges: three origins and two edges as real processes on 127.0.0.1; ffmpeg,
//! rtmpdump and the project's client publish and play through the edges; an origin is
//! SIGKILLed under a live stream; redirect mode; a tier-2 edge pulls through tier-1 edges and
//! one of them is SIGKILLed. Measured gaps are printed (`cargo test --test edge -- --nocapture`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;
use ringcast::client::{ClientError, ClientOptions, Incoming, RtmpClient, RtmpUrl};
use ringcast::rtmp::amf0::Amf0Value as Amf0;
use serde_json::Value;
use tokio::process::Command;

const SEC: Duration = Duration::from_secs(1);

async fn converged(secret: &str, edge_env: &[(&str, &str)]) -> Fleet {
    let fleet = Fleet::start_with(secret, 3, 2, edge_env).await;
    wait_for("five nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    fleet
}

/// This node's `/api/v1/streams` entry for `key`, if any.
async fn stream_entry(node: &Node, key: &str) -> Option<Value> {
    let (status, body) = node.get_json("/api/v1/streams").await;
    if status != 200 {
        return None;
    }
    body["streams"]
        .as_array()?
        .iter()
        .find(|s| s["key"] == key)
        .cloned()
}

/// Each player reads on its own task for `window` and records when each video frame
/// arrives; a player that loses its connection (or gets nothing for 15 s) is an error.
type Arrivals = tokio::task::JoinHandle<Result<Vec<Instant>, String>>;

fn record_video_arrivals(players: Vec<RtmpClient>, window: Duration) -> Vec<Arrivals> {
    players
        .into_iter()
        .map(|mut p| {
            tokio::spawn(async move {
                let mut arrivals = Vec::new();
                let deadline = Instant::now() + window;
                while Instant::now() < deadline {
                    match tokio::time::timeout(15 * SEC, p.next()).await {
                        Ok(Ok(Incoming::Media(m))) if m.type_id == 9 => {
                            arrivals.push(Instant::now())
                        }
                        Ok(Ok(_)) => {}
                        other => return Err(format!("player lost its connection: {other:?}")),
                    }
                }
                Ok(arrivals)
            })
        })
        .collect()
}

/// The longest pause between two video frames of each player; asserts that every player stayed
/// connected and got at least `min_after` frames after `event`.
async fn largest_gaps_after(
    readers: Vec<Arrivals>,
    event: Instant,
    min_after: usize,
) -> Vec<Duration> {
    let mut gaps = Vec::new();
    for reader in readers {
        let arrivals = reader.await.expect("join").expect("player stays connected");
        let after = arrivals.iter().filter(|t| **t > event).count();
        assert!(
            after >= min_after,
            "player got only {after} frames after the event"
        );
        let gap = arrivals
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default();
        gaps.push(gap);
    }
    gaps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_one_edge_play_from_the_other_through_the_located_origin() {
    let fleet = converged(&test_secret("edge-e2e"), &[]).await;
    let (edge_a, edge_b) = (fleet.node("edge-0"), fleet.node("edge-1"));
    let key = "live/through";
    let _publisher = ffmpeg_publish(&edge_a.url(key), 40, 25);

    // The edge forwards to the origin every node locates.
    wait_for("edge-0 pushes to an origin", 15 * SEC, || async {
        match relay_entry(edge_a, key, "push").await {
            Some(r) if r["state"] == "pushing" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let at_edge = stream_entry(edge_a, key).await.expect("stream on edge-0");
    assert_eq!(
        at_edge["players"], 0,
        "the push relay is not a player: {at_edge}"
    );
    let (origin, source, _) = wait_for_value("located by gossip", 10 * SEC, || async {
        let answer = locate_everywhere(&fleet, key).await?;
        if answer.1 == "gossip" {
            Ok(answer)
        } else {
            Err(format!("{answer:?}"))
        }
    })
    .await;
    assert_eq!(source, "gossip");
    let held = stream_entry(fleet.node(&origin), key)
        .await
        .expect("stream on its origin");
    assert_eq!(held["publishing"], true);
    assert_eq!(
        held["relayed"], false,
        "the origin holds the publisher itself"
    );

    // ffmpeg and rtmpdump play from the other edge.
    let url_b = edge_b.url(key);
    let (frames, err) = ffmpeg_decode_frames(&url_b, 50, 30 * SEC).await;
    assert_eq!(frames, 50, "ffmpeg through edge-1: {err}");
    let (recorded, _) = rtmpdump_decodable_frames(&url_b, 3).await;
    assert!(
        recorded >= 25,
        "rtmpdump through edge-1 recorded {recorded} frames"
    );
    let pull = relay_entry(edge_b, key, "pull")
        .await
        .expect("edge-1 pulls");
    assert_eq!(pull["upstream_node"], origin.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_players_on_an_edge_share_one_upstream_and_origins_serve_each_others_streams() {
    let fleet = converged(&test_secret("edge-ten"), &[]).await;
    let key = "live/shared";
    // Published straight to an origin that is not necessarily the ring owner.
    let publisher = synthetic_publisher(&fleet.node("origin-0").url(key), 25, 4000, 25, 1500);
    wait_for("origin-0 holds it", 10 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (n, s, _) if n == "origin-0" && s == "gossip" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let edge = fleet.node("edge-1");
    let mut players = Vec::new();
    for _ in 0..10 {
        players.push(player(&edge.url(key)).await);
    }
    // While they play, the edge's measured egress reaches the cluster: ten players of a
    // 0.8 Mb/s stream (25 fps x 4,000 bytes) make about 8 Mb/s, averaged over 5 s.
    let egress = async {
        wait_for_value("edge-1 advertises its egress", 14 * SEC, || async {
            let seen = nodes_seen_by(fleet.node("origin-0")).await?;
            let bps = seen["edge-1"]["load"]["egress_bps"].as_u64().unwrap_or(0);
            if (6_000_000..12_000_000).contains(&bps) {
                Ok(bps)
            } else {
                Err(format!("egress_bps {bps}"))
            }
        })
        .await
    };
    let ((players, counts), egress_bps) = tokio::join!(count_video_all(players, 15 * SEC), egress);
    assert!(
        counts.iter().all(|&n| n > 20 * 15 / 2),
        "every edge player gets video: {counts:?}"
    );
    let (_, metrics) = http_get(&edge.http, "/metrics").await;
    let bytes_out: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringcast_rtmp_bytes_out_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        bytes_out > 10 * 15 * 100_000 * 9 / 10,
        "edge-1 wrote {bytes_out} bytes to ten players in 15 s"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"ringcast_relays{direction="pull",state="pulling"} 1"#),
        "one pulling relay in edge-1's metrics"
    );
    eprintln!("edge-1 advertised egress {egress_bps} b/s for ten players");
    let at_origin = stream_entry(fleet.node("origin-0"), key)
        .await
        .expect("stream");
    assert_eq!(
        at_origin["players"], 1,
        "ten edge players, one upstream: {at_origin}"
    );
    let at_edge = stream_entry(edge, key).await.expect("stream on the edge");
    assert_eq!(at_edge["players"], 10);
    assert_eq!(at_edge["relayed"], true);

    // A player on another origin gets the stream too (that origin pulls it).
    let mut elsewhere = player(&fleet.node("origin-1").url(key)).await;
    assert!(wait_video(&mut elsewhere, 21, 9 * SEC).await >= 21);
    let at_origin1 = stream_entry(fleet.node("origin-1"), key)
        .await
        .expect("stream");
    assert_eq!(at_origin1["relayed"], true);
    // And origin-1's pull is not advertised as a second holder.
    assert_eq!(
        locate_everywhere(&fleet, key).await.expect("agree").0,
        "origin-0"
    );
    // When the last players leave, each pull closes its upstream with them (after a linger
    // of at most a second or so, not long enough to keep many open).
    drop(players);
    drop(elsewhere);
    let left = Instant::now();
    let closed = wait_for(
        "upstream pulls close with their last player",
        10 * SEC,
        || async {
            let origin_players = stream_entry(fleet.node("origin-0"), key)
                .await
                .map_or(0, |s| s["players"].as_u64().unwrap_or(0));
            let pulls = relay_entry(edge, key, "pull").await.is_some()
                || relay_entry(fleet.node("origin-1"), key, "pull")
                    .await
                    .is_some();
            if origin_players == 0 && !pulls {
                Ok(())
            } else {
                Err(format!(
                    "origin-0 players {origin_players}, pulls running {pulls}"
                ))
            }
        },
    )
    .await;
    eprintln!(
        "pulls closed {:?} after the last player left ({closed:?})",
        left.elapsed()
    );
    assert!(
        left.elapsed() < 4 * SEC,
        "pulls must close with their last player: closed after {:?}",
        left.elapsed()
    );
    publisher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_origin_keeps_publisher_and_players_connected() {
    let fleet = converged(&test_secret("edge-kill"), &[]).await;
    let key = "live/failover";
    let (edge_a, edge_b) = (fleet.node("edge-0"), fleet.node("edge-1"));
    // 40 s of a 25 fps stream pushed through edge-0 by one connection that must never fail.
    let publisher = synthetic_publisher(&edge_a.url(key), 25, 3000, 25, 1000);
    let origin = wait_for_value("stream held by an origin", 15 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (n, s, _) if s == "gossip" => Ok(n),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let mut players = Vec::new();
    for _ in 0..3 {
        let mut p = player(&edge_b.url(key)).await;
        assert!(wait_video(&mut p, 11, 3 * SEC).await >= 11);
        players.push(p);
    }

    let readers = record_video_arrivals(players, 20 * SEC);
    tokio::time::sleep(SEC).await;
    fleet.node(&origin).signal("KILL");
    let killed_at = Instant::now();
    let gaps = largest_gaps_after(readers, killed_at, 100).await;
    let since = wait_for_value("edge-0 pushes to a new origin", 15 * SEC, || async {
        match relay_entry(edge_a, key, "push").await {
            Some(r) if r["state"] == "pushing" && r["upstream_node"] != origin.as_str() => {
                Ok(r["since_seconds"].as_f64().unwrap_or(0.0))
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let publisher_gap = killed_at.elapsed().as_secs_f64() - since;
    eprintln!(
        "origin {origin} killed: player-side gaps {gaps:?}; publisher-side: edge-0 pushing to \
         a new origin {publisher_gap:.2} s after the kill"
    );
    assert!(gaps.iter().all(|g| *g < 15 * SEC), "gaps {gaps:?}");
    assert!(
        !publisher.is_finished(),
        "the publisher's connection to edge-0 must survive"
    );
    publisher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_mode_sends_followers_to_the_origin_and_ffmpeg_gets_an_error() {
    let fleet = converged(
        &test_secret("edge-redirect"),
        &[
            ("RINGCAST_EDGE__PLAY", "redirect"),
            ("RINGCAST_EDGE__PUBLISH", "redirect"),
        ],
    )
    .await;
    let edge = fleet.node("edge-0");
    let key = "live/redirected";
    let owner = locate_everywhere(&fleet, key).await.expect("agree");

    // The project's client follows the 302 for a publish and lands on the owner.
    let url = RtmpUrl::parse(&edge.url(&format!("{key}?token=abc"))).expect("url");
    let (mut publisher, chain) =
        RtmpClient::connect_following(&url, ClientOptions::default(), true, 3)
            .await
            .expect("publish through a redirect");
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert!(
        chain[1].starts_with(&format!("rtmp://{}/live/redirected", owner.2)),
        "{chain:?}"
    );
    assert!(
        chain[1].ends_with("?token=abc"),
        "the query survives: {chain:?}"
    );
    let feeder = tokio::spawn(async move {
        publisher
            .send_media(9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f])
            .await?;
        for i in 0..200u32 {
            let kind = if i % 25 == 0 { 0x17 } else { 0x27 };
            publisher
                .send_media(9, i * 40, &[kind, 1, 0, 0, 0, i as u8])
                .await?;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        Ok::<_, ClientError>(())
    });
    // A following player ends on the owner too and gets the stream.
    let (mut viewer, chain) =
        RtmpClient::connect_following(&url, ClientOptions::default(), false, 3)
            .await
            .expect("play through a redirect");
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert!(wait_video(&mut viewer, 11, 6 * SEC).await >= 11);

    // ffmpeg does not follow RTMP 302: it must fail with an error, quickly, not hang.
    let started = Instant::now();
    let (ok, _, err) = run(
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            &edge.url(key),
            "-frames:v",
            "1",
            "-f",
            "null",
            "-",
        ]),
        20 * SEC,
    )
    .await;
    assert!(!ok, "ffmpeg cannot play from a redirecting edge");
    assert!(
        started.elapsed() < 10 * SEC,
        "ffmpeg took {:?}",
        started.elapsed()
    );
    assert!(!err.contains("timed out"), "{err}");
    eprintln!("ffmpeg against a redirecting edge: {}", err.trim());
    feeder.abort();

    // The load tool's players follow the 302 too (publisher straight on the owner).
    let load_key = "live/load-redirected";
    let owner = locate_everywhere(&fleet, load_key).await.expect("agree");
    let (ok, out, err) = run(
        Command::new(env!("CARGO_BIN_EXE_ringcast-load")).args([
            "--url",
            &edge.url(load_key),
            "--publish-url",
            &format!("rtmp://{}/{load_key}", owner.2),
            "--players",
            "5",
            "--duration",
            "4",
            "--lead",
            "1",
            "--follow-redirects",
            "--fail-if-behind",
        ]),
        30 * SEC,
    )
    .await;
    assert!(ok, "ringcast-load --follow-redirects:\n{out}\n{err}");
    assert!(out.contains("5 connected of 5"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_back_to_the_same_node_is_cut() {
    // Misconfiguration: the only origin advertises the redirecting edge's RTMP address, so
    // the edge would send clients to itself forever.
    let secret = test_secret("edge-loop");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let edge_port = probe.local_addr().expect("addr").port();
    drop(probe);
    let edge_rtmp = format!("127.0.0.1:{edge_port}");
    let origin = start_node_with(
        "origin-0",
        "origin",
        &secret,
        &[],
        &[("RINGCAST_RTMP__ADVERTISE", &edge_rtmp)],
    )
    .await;
    let seed = origin.gossip.clone().expect("gossip");
    let edge = start_node_with(
        "edge-0",
        "edge",
        &secret,
        &[seed],
        &[
            ("RINGCAST_RTMP__LISTEN", &edge_rtmp),
            ("RINGCAST_RTMP__ADVERTISE", &edge_rtmp),
            ("RINGCAST_EDGE__PLAY", "redirect"),
        ],
    )
    .await;
    wait_for("edge sees the origin", 15 * SEC, || async {
        locate(&edge, "live/loop").await.map(|_| ())
    })
    .await;
    let url = RtmpUrl::parse(&edge.url("live/loop")).expect("url");
    match RtmpClient::connect_following(&url, ClientOptions::default(), false, 3).await {
        Err(ClientError::Refused { description, .. }) => {
            assert!(
                description.contains("refusing to redirect"),
                "{description}"
            )
        }
        Err(ClientError::RedirectLoop(chain))
        | Err(ClientError::TooManyRedirects { chain, .. }) => {
            panic!("the edge should refuse before the client loops: {chain}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|(_, c)| c)),
    }
    edge.wait_log("refusing to redirect", 5 * SEC).await;
}

/// `/api/v1/cluster/locate` on `node`: where it would pull `key` from, as (node id, source).
async fn pull_upstream_of(node: &Node, key: &str) -> Result<(String, String), String> {
    let (status, body) = node
        .get_json(&format!("/api/v1/cluster/locate?stream={key}"))
        .await;
    let up = &body["upstream"];
    match (status, up["node_id"].as_str(), up["source"].as_str()) {
        (200, Some(id), Some(source)) => Ok((id.to_string(), source.to_string())),
        _ => Err(format!("locate: {status} {body}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_two_edge_pulls_through_a_tier_one_edge_and_survives_its_death() {
    let secret = test_secret("edge-tiers");
    let mut fleet = Fleet::start(&secret, 2, 2).await;
    let seeds: Vec<String> = ["origin-0", "origin-1"]
        .iter()
        .filter_map(|id| fleet.node(id).gossip.clone())
        .collect();
    let tier2 = start_node_with(
        "edge-t2",
        "edge",
        &secret,
        &seeds,
        &[("RINGCAST_EDGE__TIER", "2")],
    )
    .await;
    fleet.nodes.push(("edge-t2".into(), tier2));
    wait_for("five nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    let tiers = nodes_seen_by(fleet.node("origin-0")).await.expect("nodes");
    assert_eq!(tiers["edge-t2"]["tier"], 2);
    assert_eq!(tiers["edge-0"]["tier"], 1);
    assert_eq!(tiers["origin-0"]["tier"], 0);

    let key = "live/tiers";
    let _publisher = ffmpeg_publish(&fleet.node("origin-0").url(key), 60, 25);
    wait_for("origin-0 holds it", 15 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (n, s, _) if n == "origin-0" && s == "gossip" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let tier2 = fleet.node("edge-t2");
    let (via, source) = pull_upstream_of(tier2, key).await.expect("tier-2 upstream");
    assert_eq!(source, "edge", "a tier-2 edge pulls through tier 1");
    assert!(via == "edge-0" || via == "edge-1", "{via}");
    let other = if via == "edge-0" { "edge-1" } else { "edge-0" };
    assert_eq!(
        pull_upstream_of(fleet.node(&via), key).await,
        Ok(("origin-0".to_string(), "gossip".to_string())),
        "tier 1 pulls from the origin"
    );

    // Real ffmpeg decodes through two relays; five more players share the tier-2 pull.
    let (frames, err) = ffmpeg_decode_frames(&tier2.url(key), 50, 30 * SEC).await;
    assert_eq!(frames, 50, "ffmpeg through edge-t2: {err}");
    let mut players = Vec::new();
    for _ in 0..5 {
        players.push(player(&tier2.url(key)).await);
    }
    let (players, counts) = count_video_all(players, 2 * SEC).await;
    assert!(counts.iter().all(|&n| n > 20), "tier-2 players: {counts:?}");

    // One upstream per level: origin ← tier-1 edge ← tier-2 edge ← players.
    let pull2 = relay_entry(tier2, key, "pull").await.expect("tier-2 pull");
    assert_eq!(pull2["upstream_node"], via.as_str());
    assert_eq!(pull2["state"], "pulling");
    let pull1 = relay_entry(fleet.node(&via), key, "pull")
        .await
        .expect("tier-1 pull");
    assert_eq!(pull1["upstream_node"], "origin-0");
    let players_on = |id: &str| {
        let node = fleet.node(id);
        async move {
            stream_entry(node, key)
                .await
                .map_or(0, |s| s["players"].as_u64().unwrap_or(0))
        }
    };
    assert_eq!(players_on("origin-0").await, 1, "origin serves only tier 1");
    assert_eq!(
        players_on(&via).await,
        1,
        "tier 1 serves only the tier-2 pull"
    );
    assert_eq!(players_on("edge-t2").await, 5);
    assert!(
        relay_entry(fleet.node(other), key, "pull").await.is_none(),
        "the other tier-1 edge is not involved"
    );

    // SIGKILL the tier-1 edge: tier-2 players stay connected and resume through the other.
    let readers = record_video_arrivals(players, 14 * SEC);
    tokio::time::sleep(SEC).await;
    fleet.node(&via).signal("KILL");
    let killed_at = Instant::now();
    let gaps = largest_gaps_after(readers, killed_at, 100).await;
    let pull2 = relay_entry(tier2, key, "pull").await.expect("tier-2 pull");
    assert_eq!(
        pull2["upstream_node"], other,
        "moved to the surviving tier-1 edge"
    );
    assert_eq!(pull2["state"], "pulling");
    assert_eq!(
        players_on("origin-0").await,
        1,
        "still one upstream at the origin"
    );
    eprintln!("tier-1 edge {via} killed: tier-2 player gaps {gaps:?}");
    assert!(gaps.iter().all(|g| *g < 10 * SEC), "gaps {gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_streams_skip_an_origin_over_the_load_bound() {
    let fleet = Fleet::start(&test_secret("edge-bounded"), 3, 1).await;
    wait_for("four nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    // Six names the plain ring gives to origin-0.
    let ring = ringcast::cluster::Ring::new(["origin-0", "origin-1", "origin-2"]);
    let names: Vec<String> = (0..)
        .map(|i| format!("live/bounded-{i}"))
        .filter(|name| ring.owner(name) == Some("origin-0"))
        .take(6)
        .collect();
    let edge = fleet.node("edge-0");
    let mut publishers = Vec::new();
    let mut placed = BTreeMap::new();
    for name in &names {
        // Published through the edge, which forwards to the origin its locator names.
        publishers.push(synthetic_publisher(&edge.url(name), 25, 500, 25, 1000));
        let origin = wait_for_value("the stream is claimed", 15 * SEC, || async {
            match locate_everywhere(&fleet, name).await? {
                (n, s, _) if s == "gossip" => Ok(n),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        *placed.entry(origin).or_insert(0) += 1;
    }
    eprintln!("six streams the ring gives to origin-0 were placed {placed:?}");
    // Six streams on three origins: the bound is 1.25 x 2 = 2.5, so an origin holding three
    // is over it, and the API says so.
    let seen = nodes_seen_by(edge).await.expect("nodes");
    let flagged: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| n["over_load_bound"] == true)
        .map(|(id, _)| id)
        .collect();
    let expected: Vec<&String> = placed
        .iter()
        .filter(|(_, n)| **n == 3)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        flagged, expected,
        "over_load_bound in /api/v1/cluster/nodes"
    );
    assert!(
        placed.len() >= 2 && placed.values().all(|&n| n <= 3),
        "bounded loads spread them: {placed:?}"
    );
    for p in publishers {
        p.abort();
    }
}

/// RTMP ports of the fleet's origins.
fn origin_ports(fleet: &Fleet) -> Vec<u16> {
    fleet
        .nodes
        .iter()
        .filter(|(id, _)| id.starts_with("origin"))
        .map(|(_, n)| port_of(&n.rtmp))
        .collect()
}

/// Issue 9, row 3: 2,000 plays of random names on an edge once opened 2,000 upstream
/// connections to the origins, still open after the client left. Now a pull starts only for a
/// stream some origin advertises; players of other names wait on the edge with no upstream,
/// and a connection that asks faster than a person could is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_flooded_with_random_play_names_opens_no_upstream() {
    let secret = test_secret("edge-flood");
    let fleet = Fleet::start(&secret, 2, 1).await;
    wait_for("three nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    let edge = fleet.node("edge-0");
    let edge_pid = edge.pid();
    let ports = origin_ports(&fleet);
    let real = "live/real";
    let publisher = synthetic_publisher(&fleet.node("origin-0").url(real), 25, 2000, 25, 1500);
    wait_for("the real stream is advertised", 10 * SEC, || async {
        match locate_everywhere(&fleet, real).await? {
            (_, s, _) if s == "gossip" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // One connection, 2,000 plays as fast as it can: closed after its burst.
    let mut one = client(&edge.url("live/x")).await;
    one.create_stream().await.expect("createStream");
    let mut sent = 0;
    for i in 0..2000 {
        let name = format!("flood-{i}");
        if one
            .send_command("play", vec![Amf0::Null, name.into()])
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    let closed = loop {
        match tokio::time::timeout(5 * SEC, one.next()).await {
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
    };
    assert!(
        closed,
        "the flooding connection is closed ({sent} plays sent)"
    );

    // 2,000 plays spread over 134 connections (each within its call budget): none of them
    // names an advertised stream, so none opens an upstream.
    let started = Instant::now();
    let mut flooders = Vec::new();
    for c in 0..134 {
        let mut conn = client(&edge.url("live/x")).await;
        conn.create_stream().await.expect("createStream");
        for i in 0..15 {
            let name = format!("random-{c}-{i}");
            conn.send_command("play", vec![Amf0::Null, name.into()])
                .await
                .expect("play within the budget");
        }
        flooders.push(conn);
    }
    eprintln!("2,010 plays of random names in {:?}", started.elapsed());
    tokio::time::sleep(2 * SEC).await;
    let during = connections_to(edge_pid, &ports);
    assert_eq!(during, 0, "upstream connections for names nobody publishes");
    let (_, metrics) = http_get(&edge.http, "/metrics").await;
    let waiting: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringcast_relays_waiting_for_origin "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        waiting <= 134,
        "{waiting} streams wait (one player per connection)"
    );

    // A player of the real stream opens exactly one.
    let mut viewer = player(&edge.url(real)).await;
    assert!(wait_video(&mut viewer, 21, 6 * SEC).await >= 21);
    assert_eq!(
        connections_to(edge_pid, &ports),
        1,
        "one pull for the real stream"
    );

    // When they all leave, no upstream connection remains.
    drop(flooders);
    drop(viewer);
    wait_for("no upstream connection left", 10 * SEC, || async {
        match connections_to(edge_pid, &ports) {
            0 => Ok(()),
            n => Err(format!("{n} upstream connections")),
        }
    })
    .await;
    publisher.abort();
}

/// Issue 9, row 4: an origin that freezes (SIGSTOP: a hung host, no RST) was declared dead
/// by gossip within seconds, but the relays on it stayed `pulling`/`pushing` and the player
/// got nothing. Now relays leave an upstream as soon as gossip says it is dead: real ffmpeg
/// publishes through edge-0, players on edge-1, and both relays move with a gap under 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_origin_is_left_as_soon_as_gossip_says_it_is_dead() {
    let fleet = converged(&test_secret("edge-frozen"), &[]).await;
    let key = "live/frozen";
    let (edge_a, edge_b) = (fleet.node("edge-0"), fleet.node("edge-1"));
    let _publisher = ffmpeg_publish(&edge_a.url(key), 60, 25);
    let origin = wait_for_value("stream held by an origin", 20 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (n, s, _) if s == "gossip" => Ok(n),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let mut players = Vec::new();
    for _ in 0..3 {
        let mut p = player(&edge_b.url(key)).await;
        assert!(wait_video(&mut p, 11, 6 * SEC).await >= 11);
        players.push(p);
    }
    let readers = record_video_arrivals(players, 14 * SEC);
    tokio::time::sleep(2 * SEC).await;
    let frozen = fleet.node(&origin);
    frozen.signal("STOP");
    let frozen_at = Instant::now();
    let gaps = largest_gaps_after(readers, frozen_at, 100).await;
    let since = wait_for_value("edge-0 pushes to another origin", 10 * SEC, || async {
        match relay_entry(edge_a, key, "push").await {
            Some(r) if r["state"] == "pushing" && r["upstream_node"] != origin.as_str() => {
                Ok(r["since_seconds"].as_f64().unwrap_or(0.0))
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let push_moved = frozen_at.elapsed().as_secs_f64() - since;
    let pull = relay_entry(edge_b, key, "pull")
        .await
        .expect("edge-1 pulls");
    frozen.signal("CONT");
    eprintln!(
        "origin {origin} frozen: player gaps {gaps:?}; edge-0 pushing elsewhere {push_moved:.2} s \
         after the freeze; edge-1 pulls from {}",
        pull["upstream_node"]
    );
    assert_ne!(pull["upstream_node"], origin.as_str(), "{pull}");
    assert!(gaps.iter().all(|g| *g < 3 * SEC), "gaps {gaps:?}");
    assert!(
        push_moved < 3.0,
        "the push moved {push_moved:.2} s after the freeze"
    );
}
