//! HTTP-FLV with real processes: ffprobe and ffmpeg read `http://…/APP/STREAM.flv` from an
//! origin and through an edge, players wait for a stream as RTMP players do, the access rules
//! apply, a balancing node answers HTTP 302, and hostile or slow clients are closed without
//! costing anything else.

mod common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use common::fleet::{
    all_agree, locate_everywhere, relay_entry, start_node_with, test_secret, wait_for,
    wait_for_value, Fleet,
};
use common::hooks::{calls_to, hook_server};
use common::*;
use ringcast::access::{token, Action};
use ringcast::load::http_flv::{HttpFlvError, HttpFlvPlayer};

const SEC: Duration = Duration::from_secs(1);
const FLV_ON: (&str, &str) = ("RINGCAST_FLV__LISTEN", "127.0.0.1:0");

/// What ffprobe says of `url`: the codec of each stream, and whether the first video frame
/// is a keyframe.
async fn probe(url: &str) -> (Vec<String>, bool, String) {
    let (_, codecs, err) = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            url,
        ]),
        20 * SEC,
    )
    .await;
    let (_, frames, _) = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_frames",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=key_frame",
            "-of",
            "csv=p=0",
            url,
        ]),
        20 * SEC,
    )
    .await;
    let mut codecs: Vec<String> = codecs.lines().map(|l| l.trim().to_string()).collect();
    codecs.sort();
    (codecs, frames.lines().next() == Some("1"), err)
}

/// Reads tags until `want` video tags came (or `limit`): the video tags' (keyframe,
/// sequence header) flags in order.
async fn video_tags(p: &mut HttpFlvPlayer, want: usize, limit: Duration) -> Vec<(bool, bool)> {
    video_tags_sized(p, want, limit)
        .await
        .into_iter()
        .map(|(key, seq, _)| (key, seq))
        .collect()
}

/// [`video_tags`] with each tag's payload size.
async fn video_tags_sized(
    p: &mut HttpFlvPlayer,
    want: usize,
    limit: Duration,
) -> Vec<(bool, bool, usize)> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Vec::new();
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, p.next_tag()).await {
            Ok(Ok(Some(t))) if t.type_id == 9 => {
                let key = t.data.first().is_some_and(|b| b >> 4 == 1);
                let seq = t.data.get(1) == Some(&0);
                seen.push((key, seq, t.data.len()));
            }
            Ok(Ok(Some(_))) => {}
            _ => break,
        }
    }
    seen
}

/// A standalone node with HTTP-FLV on, plus `extra` environment.
async fn flv_node(extra: &[(&str, &str)]) -> Node {
    let mut env = vec![FLV_ON];
    env.extend_from_slice(extra);
    Node::start(&env).await
}

/// Sends `request` raw and reads the answer until the server closes (at most `limit`).
async fn raw_exchange(addr: &str, request: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_and_ffmpeg_read_http_flv_from_an_origin_and_through_an_edge() {
    let secret = test_secret("flv-edge");
    let origin = start_node_with("origin-0", "origin", &secret, &[], &[FLV_ON]).await;
    let seeds = vec![origin.gossip.clone().expect("gossip")];
    let edge = start_node_with("edge-0", "edge", &secret, &seeds, &[FLV_ON]).await;
    let fleet = Fleet {
        nodes: vec![("origin-0".into(), origin), ("edge-0".into(), edge)],
    };
    wait_for("two nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    let key = "live/flv";
    let _ffmpeg = ffmpeg_publish(&fleet.node("origin-0").url(key), 60, 25);
    wait_for("the stream is advertised", 15 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (_, s, _) if s == "gossip" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    for id in ["origin-0", "edge-0"] {
        let url = fleet.node(id).flv_url(key);
        let (codecs, keyframe_first, err) = probe(&url).await;
        assert_eq!(codecs, vec!["aac", "h264"], "{id}: {err}");
        assert!(keyframe_first, "{id}: the first video frame is a keyframe");
        let (decoded, err) = ffmpeg_decode_frames(&url, 50, 20 * SEC).await;
        assert!(
            decoded >= 50,
            "{id}: ffmpeg decoded {decoded} frames: {err}"
        );
    }
    // The edge pulled the stream once, as for RTMP players.
    let edge = fleet.node("edge-0");
    let pull = relay_entry(edge, key, "pull")
        .await
        .expect("the edge pulls");
    assert_eq!(pull["upstream_node"], "origin-0", "{pull}");

    // While a player is connected it is counted, by protocol, in the stream, the clients and
    // the metrics; its answer is chunked FLV with CORS.
    let mut p = HttpFlvPlayer::connect(&edge.flv_url(key), 0)
        .await
        .expect("play");
    assert_eq!(p.header("content-type"), Some("video/x-flv"));
    assert_eq!(p.header("transfer-encoding"), Some("chunked"));
    assert_eq!(p.header("access-control-allow-origin"), Some("*"));
    let tags = video_tags(&mut p, 30, 10 * SEC).await;
    assert!(tags.len() >= 30, "{tags:?}");
    let first_picture = tags.iter().find(|(_, seq)| !seq).expect("a picture");
    assert!(first_picture.0, "fast start begins at a keyframe: {tags:?}");
    let (_, streams) = edge.get_json("/api/v1/streams").await;
    let entry = streams["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["key"] == key))
        .cloned()
        .expect("the stream on the edge");
    assert_eq!(
        (&entry["players"], &entry["flv_players"]),
        (&1.into(), &1.into()),
        "{entry}"
    );
    let (_, clients) = edge.get_json("/api/v1/clients").await;
    assert!(
        clients["clients"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| { c["protocol"] == "http-flv" && c["role"] == "play" && c["stream"] == key })),
        "{clients}"
    );
    let (_, metrics) = edge.get("/metrics").await;
    assert!(
        metrics.contains("ringcast_players_by_protocol{protocol=\"http-flv\"} 1"),
        "{metrics}"
    );
    let flv_bytes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringcast_http_flv_bytes_out_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(flv_bytes > 100_000, "{flv_bytes}");
    drop(p);
    wait_for("the player is gone", 10 * SEC, || async {
        let (_, c) = edge.get_json("/api/v1/clients").await;
        match c["clients"].as_array() {
            Some(list) if list.iter().all(|c| c["protocol"] != "http-flv") => Ok(()),
            _ => Err(format!("{c}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_waits_for_its_stream_and_a_republish_starts_at_a_keyframe() {
    let node = flv_node(&[]).await;
    let key = "live/later";
    let mut p = HttpFlvPlayer::connect(&node.flv_url(key), 0)
        .await
        .expect("a player of a stream nobody publishes is answered and waits");
    assert_eq!(p.header("content-type"), Some("video/x-flv"));
    // Nothing comes while nobody publishes.
    assert!(video_tags(&mut p, 1, SEC).await.is_empty());
    let publisher = synthetic_publisher(&node.url(key), 25, 1000, 25, 100);
    let tags = video_tags(&mut p, 20, 10 * SEC).await;
    assert!(tags.len() >= 20, "{tags:?}");
    let first_picture = tags.iter().find(|(_, seq)| !seq).expect("a picture");
    assert!(first_picture.0, "{tags:?}");
    publisher.await.expect("join").expect("publisher");
    // The publisher left; the player stays, and a new publisher's stream (frames of another
    // size) starts at its keyframe again, after what the player had not read yet.
    let again = synthetic_publisher(&node.url(key), 25, 1200, 10, 100);
    let tags = video_tags_sized(&mut p, 120, 15 * SEC).await;
    let second: Vec<_> = tags
        .iter()
        .filter(|(_, seq, len)| !seq && *len == 1200)
        .collect();
    assert!(second.len() >= 10, "{tags:?}");
    assert!(
        second[0].0,
        "the republished stream starts at a keyframe: {tags:?}"
    );
    again.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_gate_http_flv_players() {
    const KEY: &str = "an-http-flv-token-key-32-chars!!";
    let node = flv_node(&[
        ("RINGCAST_TOKEN__KEYS", KEY),
        ("RINGCAST_ACCESS__APPS__LIVE__PLAY", "token"),
    ])
    .await;
    let key = "live/paid";
    let publisher = synthetic_publisher(&node.url(key), 25, 1000, 25, 1500);
    match HttpFlvPlayer::connect(&node.flv_url(key), 0).await {
        Err(HttpFlvError::Status { status, body }) => {
            assert_eq!(status, 403);
            assert!(body.starts_with("token:"), "{body}");
        }
        other => panic!("a player without a token must get 403: {:?}", other.err()),
    }
    let signed = token::query(KEY, Action::Play, key, token::now_unix() + 600, None);
    let other = token::query(
        KEY,
        Action::Play,
        "live/free",
        token::now_unix() + 600,
        None,
    );
    assert!(matches!(
        HttpFlvPlayer::connect(&node.flv_url(&format!("{key}?{other}")), 0).await,
        Err(HttpFlvError::Status { status: 403, .. })
    ));
    let mut p = HttpFlvPlayer::connect(&node.flv_url(&format!("{key}?{signed}")), 0)
        .await
        .expect("a signed URL plays");
    assert!(video_tags(&mut p, 10, 10 * SEC).await.len() >= 10);
    let (_, metrics) = node.get("/metrics").await;
    assert!(
        metrics.contains(
            r#"ringcast_access_decisions_total{action="play",checker="token",result="deny"} 2"#
        ),
        "{metrics}"
    );
    publisher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_decide_and_hear_of_http_flv_players_as_of_rtmp_ones() {
    let (hooks, calls) = hook_server().await;
    let decide = format!("http://{hooks}/decide");
    let done = format!("http://{hooks}/done");
    let node = flv_node(&[
        ("RINGCAST_HOOKS__ON_PLAY", decide.as_str()),
        ("RINGCAST_HOOKS__ON_PLAY_DONE", done.as_str()),
        ("RINGCAST_ACCESS__DEFAULT__PLAY", "hook"),
    ])
    .await;
    let publisher = synthetic_publisher(&node.url("live/allow"), 25, 1000, 25, 1500);
    match HttpFlvPlayer::connect(&node.flv_url("live/deny"), 0).await {
        Err(HttpFlvError::Status { status, .. }) => assert_eq!(status, 403),
        other => panic!("denied by the hook: {:?}", other.err()),
    }
    let mut p = HttpFlvPlayer::connect(&node.flv_url("live/allow?token=abc"), 0)
        .await
        .expect("allowed by the hook");
    assert!(video_tags(&mut p, 5, 10 * SEC).await.len() >= 5);
    drop(p);
    wait_for("on_play_done", 10 * SEC, || async {
        let done = calls_to(&calls, "/done");
        match done
            .iter()
            .find(|c| c.get("call").map(String::as_str) == Some("play_done"))
        {
            Some(c) if c.get("name").map(String::as_str) == Some("allow") => Ok(()),
            _ => Err(format!("{done:?}")),
        }
    })
    .await;
    let decided = calls_to(&calls, "/decide");
    let allow = decided
        .iter()
        .find(|c| c.get("name").map(String::as_str) == Some("allow"))
        .expect("the hook was asked");
    let field = |k: &str| allow.get(k).cloned().unwrap_or_default();
    assert_eq!(field("call"), "play");
    assert_eq!(field("app"), "live");
    assert_eq!(
        field("token"),
        "abc",
        "query arguments reach the hook: {allow:?}"
    );
    assert!(field("tcurl").starts_with("http://"), "{allow:?}");
    assert_eq!(field("addr"), "127.0.0.1");
    publisher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancing_node_sends_http_players_to_the_chosen_edge_with_a_302() {
    let secret = test_secret("flv-balance");
    let balance = [FLV_ON, ("RINGCAST_EDGE__PLAY", "balance")];
    let origin = start_node_with("origin-0", "origin", &secret, &[], &balance).await;
    let seeds = vec![origin.gossip.clone().expect("gossip")];
    let edge = start_node_with("edge-0", "edge", &secret, &seeds, &[FLV_ON]).await;
    let fleet = Fleet {
        nodes: vec![("origin-0".into(), origin), ("edge-0".into(), edge)],
    };
    wait_for("two nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    let key = "live/spread";
    let origin = fleet.node("origin-0");
    let edge = fleet.node("edge-0");
    let _ffmpeg = ffmpeg_publish(&origin.url(key), 60, 25);
    wait_for_value("advertised", 15 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (n, s, _) if s == "gossip" => Ok(n),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let origin_flv = origin.flv.clone().expect("flv");
    let answer = raw_exchange(
        &origin_flv,
        format!("GET /{key}.flv?token=abc HTTP/1.1\r\nHost: {origin_flv}\r\n\r\n").as_bytes(),
        5 * SEC,
    )
    .await;
    assert_eq!(status_of(&answer), 302, "{answer}");
    let expected = format!(
        "location: http://{}/{key}.flv?token=abc",
        edge.flv.as_deref().expect("edge flv")
    );
    assert!(answer.to_ascii_lowercase().contains(&expected), "{answer}");
    // ffprobe and ffmpeg follow it and play from the edge.
    let (codecs, keyframe_first, err) = probe(&origin.flv_url(key)).await;
    assert_eq!(codecs, vec!["aac", "h264"], "{err}");
    assert!(keyframe_first);
    let (decoded, err) = ffmpeg_decode_frames(&origin.flv_url(key), 25, 20 * SEC).await;
    assert!(decoded >= 25, "{err}");
    assert!(
        relay_entry(edge, key, "pull").await.is_some(),
        "the edge serves it"
    );
    let (_, route) = origin
        .get_json(&format!("/api/v1/cluster/route?stream={key}"))
        .await;
    assert_eq!(
        route["flv_url"],
        format!(
            "http://{}/{key}.flv",
            edge.flv.as_deref().unwrap_or_default()
        ),
        "{route}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_slow_http_clients_are_closed_and_cost_nothing_else() {
    let node = flv_node(&[
        ("RINGCAST_RTMP__HANDSHAKE_TIMEOUT_MS", "1000"),
        ("RINGCAST_RTMP__PLAYER_WRITE_TIMEOUT_MS", "1500"),
        ("RINGCAST_LOG__LEVEL", "info"),
    ])
    .await;
    let flv = node.flv.clone().expect("flv");
    let key = "live/busy";
    // 200 KB frames at 25 fps: a player that reads nothing fills its socket within a second.
    let publisher = synthetic_publisher(&node.url(key), 25, 200_000, 25, 25 * 60);
    let mut good = HttpFlvPlayer::connect(&node.flv_url(key), 0)
        .await
        .expect("a good player");
    assert!(video_tags(&mut good, 5, 10 * SEC).await.len() >= 5);
    // The good player reads on its own task all along, counting video tags.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let good = tokio::spawn(async move {
        let mut video = 0usize;
        loop {
            tokio::select! {
                _ = &mut stopped => return Ok(video),
                tag = good.next_tag() => match tag {
                    Ok(Some(t)) if t.type_id == 9 => video += 1,
                    Ok(Some(_)) => {}
                    other => return Err(format!("after {video} video tags: {:?}", other.err())),
                },
            }
        }
    });

    // Refusals, each with its status, one connection each.
    for (request, status) in [
        (b"POST /live/busy.flv HTTP/1.1\r\n\r\n".to_vec(), 405),
        (b"GET /live/busy.mp4 HTTP/1.1\r\n\r\n".to_vec(), 404),
        (b"GET /favicon.ico HTTP/1.1\r\n\r\n".to_vec(), 404),
        (b"\x03\x00\x00\x00 not http at all\r\n\r\n".to_vec(), 400),
        (
            [
                b"GET /live/busy.flv HTTP/1.1\r\nX: ".as_slice(),
                &[b'a'; 20_000],
            ]
            .concat(),
            431,
        ),
        (
            format!("GET /live/{}.flv HTTP/1.1\r\n\r\n", "n".repeat(500)).into_bytes(),
            400,
        ),
    ] {
        let answer = raw_exchange(&flv, &request, 5 * SEC).await;
        assert_eq!(status_of(&answer), status, "{answer}");
    }
    // A client that never finishes its request is closed after the handshake timeout.
    let mut slowloris = TcpStream::connect(&flv).await.expect("connect");
    slowloris
        .write_all(b"GET /live/busy.flv HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(10 * SEC, slowloris.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "slowloris closed");
    assert!(started.elapsed() < 5 * SEC, "{:?}", started.elapsed());

    // A player that stops reading is dropped: the stall timeout or its lag, whichever first.
    let mut stuck = TcpStream::connect(&flv).await.expect("connect");
    stuck
        .write_all(format!("GET /{key}.flv HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let rss_before = rss_kib(node.pid());
    wait_for("the stuck player is dropped", 20 * SEC, || async {
        let (_, c) = node.get_json("/api/v1/clients").await;
        let players = c["clients"].as_array().map_or(0, |l| {
            l.iter().filter(|c| c["protocol"] == "http-flv").count()
        });
        if players == 1 {
            Ok(())
        } else {
            Err(format!("{players} http-flv clients"))
        }
    })
    .await;
    let rss_after = rss_kib(node.pid());
    // A chatty client (sends after its request) is closed too.
    let mut chatty = TcpStream::connect(&flv).await.expect("connect");
    chatty
        .write_all(format!("GET /{key}.flv HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let junk = vec![b'j'; 128 * 1024];
    let _ = chatty.write_all(&junk).await;
    assert!(
        closed_by_server(&mut chatty, 10 * SEC).await,
        "chatty client closed"
    );

    // The good player never noticed.
    let _ = stop.send(());
    let video = good
        .await
        .expect("join")
        .expect("the good player still plays");
    assert!(video >= 25, "the good player got {video} video tags");
    eprintln!("RSS {rss_before} KiB with a stuck player, {rss_after} KiB after it was dropped");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    publisher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_flooded_with_http_flv_requests_for_random_names_opens_no_upstream() {
    let secret = test_secret("flv-flood");
    let origin = start_node_with("origin-0", "origin", &secret, &[], &[]).await;
    let seeds = vec![origin.gossip.clone().expect("gossip")];
    let edge = start_node_with("edge-0", "edge", &secret, &seeds, &[FLV_ON]).await;
    let origin_port = port_of(&origin.rtmp);
    let fleet = Fleet {
        nodes: vec![("origin-0".into(), origin), ("edge-0".into(), edge)],
    };
    wait_for("two nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    let edge = fleet.node("edge-0");
    let flv = edge.flv.clone().expect("flv");
    let log_before = edge.log_bytes();
    let mut players = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(&flv).await.expect("connect");
        s.write_all(format!("GET /live/random-{i}.flv HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        players.push(s);
    }
    wait_for("300 waiting http-flv players", 20 * SEC, || async {
        let (_, c) = edge.get_json("/api/v1/clients").await;
        let n = c["clients"].as_array().map_or(0, |l| l.len());
        if n >= 300 {
            Ok(())
        } else {
            Err(format!("{n} clients"))
        }
    })
    .await;
    assert_eq!(
        connections_to(edge.pid(), &[origin_port]),
        0,
        "random names open no upstream"
    );
    let logged = edge.log_bytes() - log_before;
    eprintln!(
        "300 waiting random-name http-flv players: 0 upstream connections, log +{logged} bytes"
    );
    drop(players);
}
