//! The binary's command line and config errors, as an operator meets them.

mod common;

use std::process::Command;
use std::time::Duration;

fn ringcast(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ringcast");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_effective_embedded_default() {
    let (code, out, err) = ringcast(&["--check-config"], &[]);
    assert_eq!(code, 0, "{err}");
    let v: toml::Value = toml::from_str(&out).expect("prints TOML");
    assert_eq!(v["node"]["role"].as_str(), Some("origin"));
    assert_eq!(v["rtmp"]["listen"].as_str(), Some("0.0.0.0:1935"));
    assert_eq!(v["http"]["listen"].as_str(), Some("127.0.0.1:8080"));
    assert!(
        !v["node"]["id"].as_str().unwrap_or("").is_empty(),
        "node.id defaults to the host name"
    );
}

#[test]
fn environment_overrides_and_file_are_applied() {
    let dir = std::env::temp_dir().join(format!("ringcast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("edge.toml");
    std::fs::write(
        &file,
        "[node]\nid = \"from-file\"\n[rtmp]\nchunk_size = 8192\n",
    )
    .expect("write");
    let path = file.to_string_lossy().to_string();
    let (code, out, err) = ringcast(
        &["--check-config", "-c", &path],
        &[
            ("RINGCAST_RTMP__LISTEN", "127.0.0.1:19999"),
            ("RINGCAST_NODE__ID", "from-env"),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{err}");
    let v: toml::Value = toml::from_str(&out).expect("TOML");
    assert_eq!(v["rtmp"]["chunk_size"].as_integer(), Some(8192));
    assert_eq!(v["rtmp"]["listen"].as_str(), Some("127.0.0.1:19999"));
    assert_eq!(v["node"]["id"].as_str(), Some("from-env"));
}

#[test]
fn bad_values_exit_2_naming_the_key() {
    for (env, key) in [
        (("RINGCAST_NODE__ROLE", "edg"), "node.role"),
        (("RINGCAST_RTMP__LISTEN", "0.0.0.0:99999"), "rtmp.listen"),
        (("RINGCAST_RTMP__LISEN", "0.0.0.0:1935"), "rtmp.lisen"),
        (("RINGCAST_RTMP__CHUNK_SIZE", "12"), "rtmp.chunk_size"),
    ] {
        // Refused both by --check-config and by a normal start.
        for args in [&["--check-config"][..], &[][..]] {
            let (code, _, err) = ringcast(args, &[env]);
            assert_eq!(code, 2, "{env:?} {args:?}: {err}");
            assert!(err.contains(key), "{env:?}: error should name {key}: {err}");
        }
    }
    let (code, _, err) = ringcast(&["-c", "/nonexistent/ringcast.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/ringcast.toml"), "{err}");
}

/// Every example in `conf/` passes `--check-config`; those with placeholder secrets (cluster
/// secret, token keys, admin token) only with real values in the environment: as they are,
/// they are refused, naming the key.
#[test]
fn every_example_in_conf_passes_check_config() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("conf/") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let file = path.to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("read");
        // A real value for each placeholder the file has.
        let real: Vec<(&str, &str)> = [
            (
                "secret = \"replace-me",
                "RINGCAST_CLUSTER__SECRET",
                "an-operator-secret-0123456789abc",
            ),
            (
                "keys = [\"replace-me",
                "RINGCAST_TOKEN__KEYS",
                "an-operator-token-key-0123456789",
            ),
            (
                "admin_token = \"replace-me",
                "RINGCAST_HTTP__ADMIN_TOKEN",
                "an-operator-admin-token-01234567",
            ),
        ]
        .into_iter()
        .filter(|(placeholder, _, _)| text.contains(placeholder))
        .map(|(_, var, value)| (var, value))
        .collect();
        let env: &[(&str, &str)] = if !real.is_empty() {
            let (code, _, err) = ringcast(&["--check-config", "-c", &file], &[]);
            assert_eq!(code, 2, "{file}: a placeholder must be refused");
            assert!(
                ["cluster.secret", "token.keys", "http.admin_token"]
                    .iter()
                    .any(|key| err.contains(key)),
                "{file}: {err}"
            );
            &real
        } else {
            &[]
        };
        let (code, out, err) = ringcast(&["--check-config", "-c", &file], env);
        assert_eq!(code, 0, "{file}: {err}");
        let v: toml::Value = toml::from_str(&out).expect("prints TOML");
        let role = v["node"]["role"].as_str().unwrap_or_default().to_string();
        checked.push((path.file_name().unwrap_or_default().to_owned(), role));
    }
    checked.sort();
    let names: Vec<String> = checked
        .iter()
        .map(|(n, r)| format!("{}={r}", n.to_string_lossy()))
        .collect();
    for expected in [
        "cluster-origin.toml=origin",
        "default.toml=origin",
        "edge.toml=edge",
        "locked-down.toml=origin",
        "origin.toml=origin",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

const TOKEN_KEY: &str = "a-signing-key-of-some-length";

#[test]
fn token_prints_a_signed_url_that_verifies() {
    use ringcast::access::{token, Action};
    let (code, out, err) = ringcast(
        &["token", "--publish", "live/cam1", "--ttl", "15m"],
        &[(
            "RINGCAST_TOKEN__KEYS",
            &format!("{TOKEN_KEY},an-older-key-still-valid"),
        )],
    );
    assert_eq!(code, 0, "{err}");
    let url = out.trim();
    let rest = url
        .strip_prefix("rtmp://127.0.0.1:1935/live/cam1?expires=")
        .unwrap_or_else(|| panic!("{url}"));
    let (expires, sig) = rest.split_once("&sig=").expect("sig");
    let expires: u64 = expires.parse().expect("expires");
    let now = token::now_unix();
    assert!(
        expires > now + 800 && expires <= now + 900,
        "{expires} vs {now}"
    );
    assert_eq!(
        sig,
        token::sign(TOKEN_KEY, Action::Publish, "live/cam1", expires, None)
    );
    assert!(err.contains("expires") && err.contains("UTC"), "{err}");

    // --key, --play, --url, --ip; the config's rtmp.advertise is the default base.
    let (code, out, err) = ringcast(
        &[
            "token",
            "--play",
            "live/cam1",
            "--key",
            TOKEN_KEY,
            "--ip",
            "192.0.2.7",
            "--url",
            "rtmp://media.example",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("rtmp://media.example/live/cam1?expires="),
        "{out}"
    );
    let (code, out, err) = ringcast(
        &["token", "--play", "live/cam1", "--key", TOKEN_KEY],
        &[("RINGCAST_RTMP__ADVERTISE", "media.example:1936")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("rtmp://media.example:1936/live/cam1?"),
        "{out}"
    );
}

#[test]
fn token_refuses_bad_input_with_exit_2() {
    let key = [("RINGCAST_TOKEN__KEYS", TOKEN_KEY)];
    for (args, env, says) in [
        (
            &["token", "--publish", "live/cam1"][..],
            &[][..],
            "RINGCAST_TOKEN__KEYS",
        ),
        (
            &["token", "--publish", "live/cam1", "--key", "short"][..],
            &[][..],
            "16",
        ),
        (&["token", "--publish", "cam1"][..], &key[..], "APP/STREAM"),
        (
            &["token", "--play", "live/cam1", "--ttl", "1y"][..],
            &key[..],
            "--ttl",
        ),
        (
            &["token", "--play", "live/x", "--url", "http://x"][..],
            &key[..],
            "rtmp://",
        ),
        (&["token"][..], &key[..], "--publish"),
        (
            &["token", "--publish", "a/b", "--play", "a/b"][..],
            &key[..],
            "cannot be used",
        ),
        (
            &["token", "--play", "a/b", "--ip", "nope"][..],
            &key[..],
            "--ip",
        ),
    ] {
        let (code, out, err) = ringcast(args, env);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: should say {says}: {err}");
    }
    // A bad config is still a config error.
    let (code, _, err) = ringcast(
        &["token", "--play", "live/cam1"],
        &[key[0], ("RINGCAST_RTMP__LISEN", "x")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("rtmp.lisen"), "{err}");
}

/// A free TCP port on 127.0.0.1 (bound and released: another process could take it before the
/// node does, which only makes the test fail loudly).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `ringcast healthcheck` (the image's HEALTHCHECK): asks the node that the same environment
/// configures, a wildcard `http.listen` on loopback; 0 when alive, 1 otherwise; `--ready`
/// follows `/readyz`, so a draining node is alive but not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_asks_the_configured_http_listener() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let wildcard = format!("0.0.0.0:{port}");
    let check = |listen: &str, extra: &[&str]| {
        let mut args = vec!["healthcheck"];
        args.extend_from_slice(extra);
        ringcast(&args, &[("RINGCAST_HTTP__LISTEN", listen)])
    };

    // Nothing listens yet.
    let (code, _, err) = check(&listen, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("GET http://{listen}/healthz")),
        "{err}"
    );

    let node = common::Node::start(&[("RINGCAST_HTTP__LISTEN", listen.as_str())]).await;
    let (code, out, err) = check(&listen, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/healthz: 200"), "{out}");
    // 0.0.0.0 is asked on 127.0.0.1.
    let (code, out, err) = check(&wildcard, &["--ready"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("http://{listen}/readyz: 200")),
        "{out}"
    );

    // A publisher keeps a draining node running: alive, not ready.
    let publisher = common::synthetic_publisher(&node.url("live/hc"), 25, 200, 25, 25 * 30);
    node.wait_log("publish start", Duration::from_secs(10))
        .await;
    node.signal("TERM");
    node.wait_log("draining", Duration::from_secs(10)).await;
    let (code, _, err) = check(&listen, &["--ready"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("503") && err.contains("draining"), "{err}");
    let (code, _, err) = check(&listen, &[]);
    assert_eq!(code, 0, "{err}");
    publisher.abort();

    // A port only the running node knows, and a bad config, are failures too (never 2:
    // Docker reserves it).
    let (code, _, err) = check("127.0.0.1:0", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("port 0"), "{err}");
    let (code, _, err) = check("nowhere", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("http.listen"), "{err}");
}
