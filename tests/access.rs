//! End-to-end access control: the real binary, real ffmpeg, a real HTTP hook server started
//! by the test (axum on 127.0.0.1), signed URLs from `ringcast token`, JWT with a JWKS file,
//! address rules, relays between nodes of a cluster with rules on both sides, a client posing
//! as a relay, the admin token and the kicks.

mod common;

use std::time::{Duration, Instant};

use common::fleet::*;
use common::hooks::{calls_to, hook_server};
use common::*;
use ringcast::access::token;
use ringcast::access::Action;
use ringcast::client::{ClientError, ClientOptions, Incoming, RtmpClient, RtmpUrl};
use tokio::process::Command;

const SEC: Duration = Duration::from_secs(1);
const TOKEN_KEY: &str = "a-token-key-of-32-characters-ok!";

/// Plays `url` with the project's client: what the server answered.
async fn try_play(url: &str) -> Result<RtmpClient, ClientError> {
    let url = RtmpUrl::parse(url).expect("url");
    let mut c = RtmpClient::connect(&url, ClientOptions::default()).await?;
    c.play().await?;
    Ok(c)
}

async fn try_publish(url: &str, opts: ClientOptions) -> Result<RtmpClient, ClientError> {
    let url = RtmpUrl::parse(url).expect("url");
    let mut c = RtmpClient::connect(&url, opts).await?;
    c.publish().await?;
    Ok(c)
}

fn refused_code(r: Result<RtmpClient, ClientError>) -> String {
    match r {
        Err(ClientError::Refused {
            code, description, ..
        }) => format!("{code}: {description}"),
        Err(other) => format!("error: {other}"),
        Ok(_) => "accepted".into(),
    }
}

/// ffmpeg publishing `url` for a few seconds: (exit success, stderr).
async fn ffmpeg_push(url: &str, seconds: u32) -> (bool, String) {
    let child = ffmpeg_publish(url, seconds, 25);
    match tokio::time::timeout(30 * SEC, child.wait_with_output()).await {
        Ok(Ok(out)) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        other => (false, format!("{other:?}")),
    }
}

/// A signed URL from the real `ringcast token` command.
async fn cli_token(node: &Node, action: &str, key: &str) -> String {
    let (ok, out, err) = run(
        Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .env_clear()
            .env("RINGCAST_TOKEN__KEYS", TOKEN_KEY)
            .args([
                "token",
                &format!("--{action}"),
                key,
                "--ttl",
                "1h",
                "--url",
                &format!("rtmp://{}", node.rtmp),
            ]),
        10 * SEC,
    )
    .await;
    assert!(ok, "ringcast token: {err}");
    out.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_let_ffmpeg_publish_only_with_a_valid_token() {
    let node = Node::start(&[
        ("RINGCAST_TOKEN__KEYS", TOKEN_KEY),
        ("RINGCAST_ACCESS__APPS__LIVE__PUBLISH", "token"),
    ])
    .await;
    // Without a token: ffmpeg is refused and says so.
    let mark = node.log_mark();
    let (ok, err) = ffmpeg_push(&node.url("live/cam1"), 3).await;
    assert!(!ok, "ffmpeg must fail without a token");
    eprintln!("ffmpeg without a token: {}", err.trim());
    node.wait_log_since(mark, "publish denied", 5 * SEC).await;

    // An expired token and one for another stream are refused.
    let expired = token::query(
        TOKEN_KEY,
        Action::Publish,
        "live/cam1",
        token::now_unix() - 5,
        None,
    );
    let other = token::query(
        TOKEN_KEY,
        Action::Publish,
        "live/cam2",
        token::now_unix() + 600,
        None,
    );
    for (what, query) in [("expired", expired), ("another stream's", other)] {
        let url = node.url(&format!("live/cam1?{query}"));
        let answer = refused_code(try_publish(&url, ClientOptions::default()).await);
        assert!(
            answer.starts_with("NetStream.Publish.BadName: token:"),
            "{what} token: {answer}"
        );
    }

    // With the URL `ringcast token` prints: ffmpeg publishes, players (open) get it.
    let url = cli_token(&node, "publish", "live/cam1").await;
    assert!(url.contains("?expires=") && url.contains("&sig="), "{url}");
    let _publisher = ffmpeg_publish(&url, 30, 25);
    node.wait_log("publish start", 15 * SEC).await;
    let (frames, err) = ffmpeg_decode_frames(&node.url("live/cam1"), 25, 20 * SEC).await;
    assert_eq!(frames, 25, "{err}");
    // Apps without rules stay open.
    let mut open = try_publish(&node.url("other/cam"), ClientOptions::default())
        .await
        .expect("an app without rules");
    open.send_command("FCUnpublish", vec![])
        .await
        .expect("send");
    let (_, metrics) = http_get(&node.http, "/metrics").await;
    assert!(
        metrics.contains(
            r#"ringcast_access_decisions_total{action="publish",checker="token",result="deny"}"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_with_a_jwks_file_gates_players() {
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    ringcast::http_client::install_crypto_provider();
    ringcast::access::jwt::install_crypto_provider();
    let pem = include_str!("../src/access/testdata/rsa1.key.pem");
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("jwk");
    jwk.common.key_id = Some("k1".into());
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let dir = std::env::temp_dir().join(format!("ringcast-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks).expect("write jwks");
    let jwks_path = jwks_file.to_string_lossy().to_string();
    let node = Node::start(&[
        ("RINGCAST_JWT__ALGORITHM", "RS256"),
        ("RINGCAST_JWT__JWKS_FILE", &jwks_path),
        ("RINGCAST_ACCESS__APPS__LIVE__PLAY", "jwt"),
    ])
    .await;
    let _publisher = ffmpeg_publish(&node.url("live/tv"), 30, 25);
    node.wait_log("publish start", 15 * SEC).await;
    let sign = |perms: serde_json::Value| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        let claims = serde_json::json!({
            "exp": token::now_unix() + 600,
            "ringcast": perms,
        });
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    };
    let viewer = sign(serde_json::json!([{"action": "play", "stream": "live/*"}]));
    let (frames, err) =
        ffmpeg_decode_frames(&node.url(&format!("live/tv?jwt={viewer}")), 25, 20 * SEC).await;
    assert_eq!(frames, 25, "ffmpeg with a JWT: {err}");
    let answer = refused_code(try_play(&node.url("live/tv")).await);
    assert!(
        answer.starts_with("NetStream.Play.Failed: jwt:"),
        "{answer}"
    );
    let publisher_only = sign(serde_json::json!([{"action": "publish", "stream": "live/*"}]));
    let answer = refused_code(try_play(&node.url(&format!("live/tv?jwt={publisher_only}"))).await);
    assert!(
        answer.starts_with("NetStream.Play.Failed: jwt:"),
        "{answer}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_allow_deny_redirect_and_fail_closed_and_notify_after_the_fact() {
    let (hooks, calls) = hook_server().await;
    let decide = format!("http://{hooks}/decide");
    let done = format!("http://{hooks}/done");
    let node = Node::start(&[
        ("RINGCAST_HOOKS__ON_PLAY", &decide),
        ("RINGCAST_HOOKS__ON_PUBLISH", &decide),
        ("RINGCAST_HOOKS__ON_PUBLISH_DONE", &done),
        ("RINGCAST_HOOKS__ON_PLAY_DONE", &done),
        ("RINGCAST_HOOKS__ON_DISCONNECT", &done),
        ("RINGCAST_HOOKS__TIMEOUT_MS", "500"),
        ("RINGCAST_ACCESS__DEFAULT__PLAY", "hook"),
        ("RINGCAST_ACCESS__DEFAULT__PUBLISH", "hook"),
    ])
    .await;

    // 2xx allows; every field nginx-rtmp sends, and the query, reach the backend.
    let allowed = try_play(&node.url("live/allow?token=abc&x=1")).await;
    assert!(allowed.is_ok(), "{}", refused_code(allowed));
    let play = calls_to(&calls, "/decide")
        .into_iter()
        .find(|f| f.get("name").map(String::as_str) == Some("allow"))
        .expect("the play hook was called");
    for (field, value) in [
        ("call", "play"),
        ("app", "live"),
        ("addr", "127.0.0.1"),
        ("token", "abc"),
        ("x", "1"),
    ] {
        assert_eq!(
            play.get(field).map(String::as_str),
            Some(value),
            "{field} in {play:?}"
        );
    }
    for field in ["clientid", "tcurl", "flashver"] {
        assert!(play.contains_key(field), "{field} in {play:?}");
    }

    // 403 and 500 deny; a 3xx with an rtmp:// Location is an RTMP 302.
    for name in ["deny", "error"] {
        let answer = refused_code(try_play(&node.url(&format!("live/{name}"))).await);
        assert!(
            answer.starts_with("NetStream.Play.Failed: hook:"),
            "{name}: {answer}"
        );
    }
    match try_play(&node.url("live/redirect")).await {
        Err(ClientError::Redirect { url }) => assert_eq!(url, "rtmp://127.0.0.1:1/live/elsewhere"),
        other => panic!("expected an RTMP 302: {:?}", other.err()),
    }
    // A bare name in Location: the player gets that stream of this node instead.
    let renamed = try_play(&node.url("live/rename")).await.expect("renamed");
    drop(renamed);
    node.wait_log("renamed by the rules", 3 * SEC).await;

    // A hook slower than hooks.timeout_ms denies, soon.
    let started = Instant::now();
    let answer = refused_code(try_play(&node.url("live/slow")).await);
    let took = started.elapsed();
    eprintln!("a hook past its 500 ms timeout denied after {took:?}");
    assert!(answer.contains("timed out"), "{answer}");
    assert!(took < 3 * SEC, "took {took:?}");

    // A real ffmpeg publisher the hook refuses.
    let (ok, _) = ffmpeg_push(&node.url("live/deny"), 3).await;
    assert!(!ok, "ffmpeg must be refused");

    // Notifications come after the fact: publish, play, stop, disconnect.
    let mut publisher = try_publish(&node.url("live/allow"), ClientOptions::default())
        .await
        .expect("publish allowed");
    publisher
        .send_media(9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f])
        .await
        .expect("media");
    drop(publisher);
    drop(allowed);
    wait_for(
        "publish_done, play_done and disconnect",
        10 * SEC,
        || async {
            let done = calls_to(&calls, "/done");
            let seen = |call: &str| {
                done.iter()
                    .any(|f| f.get("call").map(String::as_str) == Some(call))
            };
            if seen("publish_done") && seen("play_done") && seen("disconnect") {
                Ok(())
            } else {
                Err(format!("{done:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hook_denies() {
    // A port nothing listens on: bind, note it, close.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let url = format!("http://{closed}/decide");
    let node = Node::start(&[
        ("RINGCAST_HOOKS__ON_CONNECT", &url),
        ("RINGCAST_ACCESS__APPS__LIVE__CONNECT", "hook"),
    ])
    .await;
    let rtmp = RtmpUrl::parse(&node.url("live/x")).expect("url");
    match RtmpClient::connect(&rtmp, ClientOptions::default()).await {
        Err(ClientError::Refused {
            code, description, ..
        }) => {
            assert_eq!(code, "NetConnection.Connect.Rejected");
            assert!(description.contains("unreachable"), "{description}");
        }
        Err(other) => panic!("expected a rejected connect: {other}"),
        Ok(_) => panic!("an unreachable hook must not let the client in"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_rules_and_a_client_posing_as_a_relay() {
    let node = Node::start(&[
        ("RINGCAST_CIDR__PUBLISH_ALLOW", "10.0.0.0/8"),
        ("RINGCAST_CIDR__PLAY_DENY", "127.0.0.0/8"),
        ("RINGCAST_ACCESS__DEFAULT__PUBLISH", "cidr"),
        ("RINGCAST_ACCESS__DEFAULT__PLAY", "cidr"),
    ])
    .await;
    let answer = refused_code(try_publish(&node.url("live/a"), ClientOptions::default()).await);
    assert!(
        answer.contains("cidr:"),
        "127.0.0.1 is not in 10.0.0.0/8: {answer}"
    );
    // ringcastHops alone does not make a relay: still an ordinary client, still refused.
    let posing = ClientOptions {
        hops: 1,
        ..ClientOptions::default()
    };
    let answer = refused_code(try_publish(&node.url("live/a"), posing).await);
    assert!(answer.contains("cidr:"), "a fake relay: {answer}");
    // A deny entry wins, with no allow list needed.
    let answer = refused_code(try_play(&node.url("live/a")).await);
    assert!(
        answer.starts_with("NetStream.Play.Failed: cidr:"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_on_origins_and_edges_pass_authorized_clients_through_the_cluster() {
    let secret = test_secret("access-cluster");
    let rules: &[(&str, &str)] = &[
        ("RINGCAST_TOKEN__KEYS", TOKEN_KEY),
        ("RINGCAST_ACCESS__APPS__LIVE__PUBLISH", "token"),
        ("RINGCAST_ACCESS__APPS__LIVE__PLAY", "token"),
    ];
    let origin = start_node_with("origin-0", "origin", &secret, &[], rules).await;
    let seed = origin.gossip.clone().expect("gossip");
    let edge_a = start_node_with(
        "edge-0",
        "edge",
        &secret,
        std::slice::from_ref(&seed),
        rules,
    )
    .await;
    let edge_b = start_node_with("edge-1", "edge", &secret, &[seed], rules).await;
    let fleet = Fleet {
        nodes: vec![
            ("origin-0".into(), origin),
            ("edge-0".into(), edge_a),
            ("edge-1".into(), edge_b),
        ],
    };
    wait_for("three nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    let (edge_a, edge_b) = (fleet.node("edge-0"), fleet.node("edge-1"));
    let key = "live/secure";
    let publish = cli_token(edge_a, "publish", key).await;
    let _publisher = ffmpeg_publish(&publish, 40, 25);
    wait_for("the stream reaches its origin", 20 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (_, s, _) if s == "gossip" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // An authorized player through the other edge: its pull passes the origin's rules as a
    // relay (a credential), not with the player's token.
    let play = cli_token(edge_b, "play", key).await;
    let (frames, err) = ffmpeg_decode_frames(&play, 25, 30 * SEC).await;
    assert_eq!(frames, 25, "an authorized player through edge-1: {err}");
    let answer = refused_code(try_play(&edge_b.url(key)).await);
    assert!(
        answer.starts_with("NetStream.Play.Failed: token:"),
        "{answer}"
    );
    let answer = refused_code(try_play(&fleet.node("origin-0").url(key)).await);
    assert!(
        answer.starts_with("NetStream.Play.Failed: token:"),
        "the origin too: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorized_publisher_takes_a_live_stream_over() {
    let node = Node::start(&[
        ("RINGCAST_TOKEN__KEYS", TOKEN_KEY),
        ("RINGCAST_ACCESS__APPS__LIVE__PUBLISH", "token"),
    ])
    .await;
    let query = token::query(
        TOKEN_KEY,
        Action::Publish,
        "live/obs",
        token::now_unix() + 600,
        None,
    );
    let url = node.url(&format!("live/obs?{query}"));
    let mut first = try_publish(&url, ClientOptions::default())
        .await
        .expect("first");
    first
        .send_media(9, 0, &[0x17, 1, 0, 0, 0, 1])
        .await
        .expect("media");
    // The second, live and authorized, takes over; the first is told and closed.
    let _second = try_publish(&url, ClientOptions::default())
        .await
        .expect("takeover");
    let closed = loop {
        match tokio::time::timeout(5 * SEC, first.next()).await {
            Ok(Ok(Incoming::Status(s))) if s.code == "NetStream.Unpublish.Success" => continue,
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "the replaced publisher is closed");
    node.wait_log("authorized publisher takes the stream over", 3 * SEC)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_client_lists_and_kicks() {
    let node = Node::start(&[("RINGCAST_HTTP__ADMIN_TOKEN", "admin-token-0123456789")]).await;
    let auth = [("Authorization", "Bearer admin-token-0123456789")];
    let mut publisher = try_publish(&node.url("live/kick"), ClientOptions::default())
        .await
        .expect("publish");
    publisher
        .send_media(9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f])
        .await
        .expect("media");
    let mut viewer = try_play(&node.url("live/kick")).await.expect("play");

    for path in ["/api/v1/clients", "/api/v1/streams"] {
        let (status, _, _) = http_request(&node.http, "GET", path, &[]).await;
        assert_eq!(status, 401, "{path} without the token");
        let (status, _, _) = http_request(
            &node.http,
            "GET",
            path,
            &[("Authorization", "Bearer wrong")],
        )
        .await;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (status, _, body) = http_request(&node.http, "GET", "/api/v1/clients", &auth).await;
    assert_eq!(status, 200, "{body}");
    let clients: serde_json::Value = serde_json::from_str(&body).expect("json");
    let list = clients["clients"].as_array().expect("clients");
    let id_of = |role: &str| {
        list.iter()
            .find(|c| c["role"] == role && c["stream"] == "live/kick")
            .and_then(|c| c["id"].as_u64())
            .unwrap_or_else(|| panic!("no {role} in {list:?}"))
    };
    let (publisher_id, viewer_id) = (id_of("publish"), id_of("play"));
    let (status, _, _) = http_request(&node.http, "GET", "/healthz", &[]).await;
    assert_eq!(status, 200, "health stays open");

    // Kicking needs the token.
    let path = format!("/api/v1/clients/{viewer_id}");
    let (status, _, _) = http_request(&node.http, "DELETE", &path, &[]).await;
    assert_eq!(status, 401);
    let (status, _, body) = http_request(&node.http, "DELETE", &path, &auth).await;
    assert_eq!(status, 200, "{body}");
    assert!(wait_status(&mut viewer, "NetStream.Play.Stop", 3 * SEC).await);

    // Kicking a stream ends its publisher.
    let (status, _, _) = http_request(&node.http, "DELETE", "/api/v1/streams/live/kick", &[]).await;
    assert_eq!(status, 401);
    let (status, _, body) =
        http_request(&node.http, "DELETE", "/api/v1/streams/live/kick", &auth).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("\"kicked\":{publisher_id}")),
        "{body}"
    );
    assert!(wait_status(&mut publisher, "NetStream.Unpublish.Success", 3 * SEC).await);
    let (status, _, _) =
        http_request(&node.http, "DELETE", "/api/v1/streams/live/nobody", &auth).await;
    assert_eq!(status, 404);
}
