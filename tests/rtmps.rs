//! End-to-end: RTMPS. ffmpeg publishes over TLS with a certificate made here, ffprobe plays it
//! back over RTMPS and plain RTMP; relays between nodes over TLS (`cluster.relay_tls`); bad
//! certificate files stop the start naming their key; SIGHUP swaps the certificate for new
//! connections only; hostile clients on the TLS port are closed with one log line each.

mod common;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::fleet::{self, wait_for, Fleet};
use common::fleet::{all_agree, nodes_seen_by, relay_entry, start_node_with, test_secret};
use common::*;
use ringcast::client::{ClientError, ClientOptions, RtmpClient, RtmpUrl};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::process::Command;

const SEC: Duration = Duration::from_secs(1);

/// A directory of certificates made for this test, removed when dropped.
struct Certs(PathBuf);

impl Certs {
    fn new(test: &str) -> Certs {
        let dir =
            std::env::temp_dir().join(format!("ringcast-rtmps-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Certs(dir)
    }

    /// A self-signed certificate for localhost and 127.0.0.1 and its key: `NAME.crt`,
    /// `NAME.key`.
    fn make(&self, name: &str) -> (PathBuf, PathBuf) {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
        let cert = self.write(&format!("{name}.crt"), ck.cert.pem().as_bytes());
        let key = self.write(
            &format!("{name}.key"),
            ck.signing_key.serialize_pem().as_bytes(),
        );
        (cert, key)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Environment of a node with an RTMPS listener on a free port.
fn tls_env(cert: &str, key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("RINGCAST_RTMP__TLS_LISTEN", "127.0.0.1:0".into()),
        ("RINGCAST_RTMP__TLS_CERT", cert.into()),
        ("RINGCAST_RTMP__TLS_KEY", key.into()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Our client over `rtmps://`, trusting only the certificates in `ca`.
async fn tls_client(url: &str, ca: &Path) -> Result<RtmpClient, ClientError> {
    let opts = ClientOptions {
        tls: Some(ringcast::tls::ca_client_config("test", ca).expect("trusted certificates")),
        ..ClientOptions::default()
    };
    RtmpClient::connect(&RtmpUrl::parse(url).expect("url"), opts).await
}

async fn ffprobe_codec(url: &str) -> (String, String) {
    let (_, out, err) = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            url,
        ]),
        20 * SEC,
    )
    .await;
    (out.trim().to_string(), err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_over_rtmps_and_ffprobe_plays_over_rtmps_and_rtmp() {
    let certs = Certs::new("ffmpeg");
    let (cert, key) = certs.make("node");
    let env = tls_env(&s(&cert), &s(&key));
    let node = Node::start(&borrowed(&env)).await;
    let _publisher = ffmpeg_publish(&node.tls_url("live/tls"), 30, 25);
    let line = node.wait_log("publish start", 20 * SEC).await;
    assert!(line.contains("tls=true"), "{line}");
    assert!(line.contains("rtmps://"), "the tcUrl says rtmps: {line}");

    let (codec, err) = ffprobe_codec(&node.tls_url("live/tls")).await;
    assert_eq!(codec, "h264", "ffprobe over rtmps: {err}");
    // A TLS client that hangs up without a close_notify is an ordinary close, not an error.
    node.wait_log_all(&["tls=true", "role=\"play\"", "closed"], 10 * SEC)
        .await;
    let errors: Vec<String> = node
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("tls=true") && l.contains("closed on error"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let (codec, err) = ffprobe_codec(&node.url("live/tls")).await;
    assert_eq!(codec, "h264", "ffprobe over plain rtmp: {err}");

    // Our client too, trusting only this certificate.
    let mut c = tls_client(&node.tls_url("live/tls"), &cert)
        .await
        .expect("rtmps connect");
    c.play().await.expect("play");
    assert!(wait_video(&mut c, 25, 10 * SEC).await >= 25);
}

/// Runs the binary expecting it to refuse its config: (exit code, stderr).
async fn refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcast"));
    cmd.env_clear()
        .args(args)
        .env("RINGCAST_RTMP__LISTEN", "127.0.0.1:0")
        .env("RINGCAST_HTTP__LISTEN", "127.0.0.1:0")
        .env("RINGCAST_RTMP__TLS_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn ringcast");
    match tokio::time::timeout(20 * SEC, child.wait_with_output()).await {
        Ok(Ok(out)) => (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => (None, e.to_string()),
        Err(_) => (None, "did not exit within 20 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificate_files_stop_the_start_naming_the_key() {
    let certs = Certs::new("bad");
    let (cert, key) = certs.make("good");
    let (_, other_key) = certs.make("other");
    let garbage = certs.write("garbage.pem", b"this is not PEM\n");
    let missing = certs.0.join("missing.pem");
    let cases = [
        (
            "missing certificate",
            s(&missing),
            s(&key),
            "rtmp.tls_cert:",
            "cannot read",
        ),
        (
            "certificate not PEM",
            s(&garbage),
            s(&key),
            "rtmp.tls_cert:",
            "no certificate",
        ),
        (
            "key not PEM",
            s(&cert),
            s(&garbage),
            "rtmp.tls_key:",
            "no private key",
        ),
        (
            "key of another certificate",
            s(&cert),
            s(&other_key),
            "rtmp.tls_key:",
            "does not match",
        ),
    ];
    for (what, c, k, key_name, why) in &cases {
        let env = [
            ("RINGCAST_RTMP__TLS_CERT", c.as_str()),
            ("RINGCAST_RTMP__TLS_KEY", k.as_str()),
        ];
        for args in [&[][..], &["--check-config"][..]] {
            let (code, err) = refused(args, &env).await;
            assert_eq!(code, Some(2), "{what} {args:?}: exit code; stderr: {err}");
            assert!(
                err.contains(&format!("config error: {key_name}")) && err.contains(why),
                "{what} {args:?}: {err}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_gives_new_connections_the_new_certificate_and_keeps_open_ones() {
    let certs = Certs::new("sighup");
    let (first_cert, first_key) = certs.make("first");
    let (second_cert, second_key) = certs.make("second");
    let live_cert = certs.write("live.crt", &std::fs::read(&first_cert).expect("read"));
    let live_key = certs.write("live.key", &std::fs::read(&first_key).expect("read"));
    let env = tls_env(&s(&live_cert), &s(&live_key));
    let node = Node::start(&borrowed(&env)).await;
    let publisher = synthetic_publisher(&node.url("live/hup"), 30, 2000, 30, 30 * 60);
    node.wait_log("publish start", 10 * SEC).await;
    let url = node.tls_url("live/hup");
    let mut player = tls_client(&url, &first_cert).await.expect("first cert");
    player.play().await.expect("play");
    assert!(wait_video(&mut player, 15, 5 * SEC).await >= 15);

    // New files, one SIGHUP: new handshakes get the second certificate.
    std::fs::copy(&second_cert, &live_cert).expect("copy");
    std::fs::copy(&second_key, &live_key).expect("copy");
    let mark = node.log_mark();
    node.signal("HUP");
    node.wait_log_since(mark, "RTMPS certificate reloaded", 5 * SEC)
        .await;
    let refused = tls_client(&url, &first_cert).await;
    assert!(
        matches!(refused, Err(ClientError::Tls(..))),
        "a client trusting only the old certificate is refused: {:?}",
        refused.err()
    );
    tls_client(&url, &second_cert).await.expect("second cert");
    // The player that connected before goes on with the keys it agreed on.
    assert!(wait_video(&mut player, 30, 5 * SEC).await >= 30);

    // A broken file: one error, and the second certificate stays.
    std::fs::write(&live_cert, b"-----BEGIN CERTIFICATE-----\ngarbage\n").expect("write");
    let mark = node.log_mark();
    node.signal("HUP");
    let line = node
        .wait_log_since(mark, "RTMPS certificate not reloaded", 5 * SEC)
        .await;
    assert!(line.contains("rtmp.tls_cert"), "{line}");
    tls_client(&url, &second_cert)
        .await
        .expect("second cert still served");
    assert!(wait_video(&mut player, 15, 5 * SEC).await >= 15);
    let errors = node
        .log_lines()
        .iter()
        .skip(mark)
        .filter(|l| l.contains("RTMPS certificate not reloaded"))
        .count();
    assert_eq!(errors, 1, "one error line per failed reload");
    assert!(node.log_contains("ringcast listening"), "still running");
    publisher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_between_nodes_go_to_the_rtmps_port_with_relay_tls() {
    let certs = Certs::new("relay");
    // One self-signed certificate for the whole cluster: every node trusts it (pinned).
    let (cert, key) = certs.make("cluster");
    let secret = test_secret("rtmps-relay");
    let mut origin_env = tls_env(&s(&cert), &s(&key));
    origin_env.push(("RINGCAST_CLUSTER__RELAY_TLS", "true".into()));
    let origin = start_node_with("origin-0", "origin", &secret, &[], &borrowed(&origin_env)).await;
    let seeds = vec![origin.gossip.clone().expect("gossip")];
    let edge_env = [
        ("RINGCAST_CLUSTER__RELAY_TLS", "true".to_string()),
        ("RINGCAST_CLUSTER__RELAY_TLS_CA", s(&cert)),
    ];
    let edge = start_node_with("edge-0", "edge", &secret, &seeds, &borrowed(&edge_env)).await;
    let origin_rtmps = origin.rtmps.clone().expect("origin has RTMPS");
    let fleet = Fleet {
        nodes: vec![("origin-0".into(), origin), ("edge-0".into(), edge)],
    };
    wait_for("cluster agrees", 20 * SEC, || all_agree(&fleet)).await;
    let (origin, edge) = (fleet.node("origin-0"), fleet.node("edge-0"));
    let seen = nodes_seen_by(edge).await.expect("nodes");
    assert_eq!(seen["origin-0"]["rtmps_addr"], origin_rtmps.as_str());
    let tls_port = port_of(&origin_rtmps);
    let plain_port = port_of(&origin.rtmp);

    // An edge pulling: its players' stream comes over TLS.
    let publisher = synthetic_publisher(&origin.url("live/pulled"), 30, 2000, 30, 30 * 30);
    origin.wait_log("publish start", 10 * SEC).await;
    let mut p = player(&edge.url("live/pulled")).await;
    assert!(wait_video(&mut p, 15, 10 * SEC).await >= 15);
    let pull = relay_entry(edge, "live/pulled", "pull")
        .await
        .expect("a pull");
    let pulled_from = pull["upstream_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        pulled_from.starts_with(&format!("rtmps://{origin_rtmps}/")),
        "{pull}"
    );
    assert_eq!(connections_to(edge.pid(), &[tls_port]), 1, "one TLS pull");
    assert_eq!(
        connections_to(edge.pid(), &[plain_port]),
        0,
        "no plain RTMP"
    );

    // An edge forwarding a publish: the origin gets it over TLS.
    let pushed = synthetic_publisher(&edge.url("live/pushed"), 30, 2000, 30, 30 * 30);
    let push = fleet::wait_for_value("a push", 10 * SEC, || async {
        match relay_entry(edge, "live/pushed", "push").await {
            Some(r) if r["state"] == "pushing" => Ok(r),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        push["upstream_url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("rtmps://{origin_rtmps}/"))),
        "{push}"
    );
    let mut on_origin = player(&origin.url("live/pushed")).await;
    assert!(wait_video(&mut on_origin, 15, 10 * SEC).await >= 15);
    assert_eq!(connections_to(edge.pid(), &[tls_port]), 2, "pull and push");
    assert_eq!(
        connections_to(edge.pid(), &[plain_port]),
        0,
        "still no plain RTMP"
    );
    publisher.abort();
    pushed.abort();
}

/// Lines of `node`'s log since `mark` about the connection from local port `port`.
fn lines_of(node: &Node, mark: usize, port: u16) -> Vec<String> {
    let needle = format!("peer=127.0.0.1:{port}");
    node.log_lines()
        .into_iter()
        .skip(mark)
        .filter(|l| l.contains(&needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_plain_rtmp_and_silence_on_the_tls_port_are_closed_with_one_line() {
    let certs = Certs::new("hostile");
    let (cert, key) = certs.make("node");
    let mut env = tls_env(&s(&cert), &s(&key));
    env.push(("RINGCAST_RTMP__HANDSHAKE_TIMEOUT_MS", "1000".into()));
    let node = Node::start(&borrowed(&env)).await;
    let addr = node.rtmps.clone().expect("rtmps");
    let mark = node.log_mark();
    let (hs, c0c1) = ringcast::rtmp::handshake::Handshake::client().expect("handshake");
    drop(hs);
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "TLS handshake",
        ),
        ("a plain RTMP handshake", c0c1, "TLS handshake"),
        ("nothing", Vec::new(), "no handshake within 1s"),
    ];
    for (what, bytes, why) in cases {
        let mut s = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
        let port = s.local_addr().expect("local").port();
        if !bytes.is_empty() {
            s.write_all(&bytes).await.expect("write");
        }
        assert!(closed_by_server(&mut s, 5 * SEC).await, "{what}: closed");
        let needle = format!("peer=127.0.0.1:{port}");
        node.wait_log_all_since(mark, &[&needle, "closed on error", why], 5 * SEC)
            .await;
        let lines = lines_of(&node, mark, port);
        assert_eq!(lines.len(), 1, "{what}: one line: {lines:#?}");
    }
    assert!(!node.log_contains("panicked"));
    let (status, _) = node.get("/healthz").await;
    assert_eq!(status, 200);
}

/// A TCP stream whose first write is prefixed with `prefix` (a PROXY header in the same
/// segment as the TLS ClientHello, as a proxy may send them).
struct PrefixFirstWrite {
    socket: tokio::net::TcpStream,
    prefix: Option<Vec<u8>>,
}

impl AsyncRead for PrefixFirstWrite {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for PrefixFirstWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match this.prefix.take() {
            None => Pin::new(&mut this.socket).poll_write(cx, buf),
            Some(prefix) => {
                let mut both = prefix.clone();
                both.extend_from_slice(buf);
                match Pin::new(&mut this.socket).poll_write(cx, &both) {
                    // A fresh loopback socket takes a few hundred bytes at once.
                    Poll::Ready(Ok(n)) if n == both.len() => Poll::Ready(Ok(buf.len())),
                    Poll::Ready(Ok(n)) => Poll::Ready(Err(std::io::Error::other(format!(
                        "short first write: {n} of {}",
                        both.len()
                    )))),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => {
                        this.prefix = Some(prefix);
                        Poll::Pending
                    }
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_comes_before_the_tls_handshake() {
    use ringcast::rtmp::handshake::{Handshake, Step};
    let certs = Certs::new("proxy");
    let (cert, key) = certs.make("node");
    let mut env = tls_env(&s(&cert), &s(&key));
    env.push(("RINGCAST_RTMP__PROXY_PROTOCOL", "true".into()));
    let node = Node::start(&borrowed(&env)).await;
    let socket = tokio::net::TcpStream::connect(node.rtmps.as_deref().expect("rtmps"))
        .await
        .expect("tcp");
    let stream = PrefixFirstWrite {
        socket,
        prefix: Some(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 1936\r\n".to_vec()),
    };
    let config = ringcast::tls::ca_client_config("test", &cert).expect("ca");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .expect("TLS after a PROXY header in the same segment");
    let (mut hs, c0c1) = Handshake::client().expect("handshake");
    tls.write_all(&c0c1).await.expect("c0c1");
    tls.flush().await.expect("flush");
    let mut buf = vec![0u8; 8192];
    loop {
        let n = tls.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed in the RTMP handshake");
        match hs.process(&buf[..n]).expect("handshake") {
            Step::Continue { reply } => tls.write_all(&reply).await.expect("write"),
            Step::Done { reply, .. } => {
                tls.write_all(&reply).await.expect("c2");
                tls.flush().await.expect("flush");
                break;
            }
        }
    }
    node.wait_log_all(
        &["handshake done", "client=203.0.113.7:40000", "tls=true"],
        5 * SEC,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_publishes_and_plays_over_rtmps() {
    let certs = Certs::new("load");
    let (cert, key) = certs.make("node");
    let env = tls_env(&s(&cert), &s(&key));
    let node = Node::start(&borrowed(&env)).await;
    for trust in [
        vec!["--insecure".to_string()],
        vec!["--ca".to_string(), s(&cert)],
    ] {
        let (ok, out, err) = run(
            Command::new(env!("CARGO_BIN_EXE_ringcast-load"))
                .args(["--url", &node.tls_url("live/load")])
                .args(["--players", "3", "--duration", "3", "--lead", "1"])
                .args(["--bitrate", "500", "--fail-if-behind"])
                .args(&trust),
            30 * SEC,
        )
        .await;
        assert!(ok, "{trust:?}: {out}\n{err}");
    }
}
