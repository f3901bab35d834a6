//! ringcast behind a real HAProxy that sends the PROXY protocol (`send-proxy` for version 1,
//! `send-proxy-v2` for version 2) from its own source address 127.0.0.3: ffmpeg publishes and
//! plays through it, and ringcast logs the client's address from the header, not the proxy's.
//! A client that connects directly, without a header, is refused and logged; the proxied
//! stream goes on.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::process::{Child, Command};

const SEC: Duration = Duration::from_secs(1);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// HAProxy in the foreground with two TCP frontends to `backend`: (process, v1 port, v2 port).
async fn haproxy(backend: &str) -> (Child, tempdir::Dir, u16, u16) {
    let (v1, v2) = (free_port(), free_port());
    let dir = tempdir::Dir::new("haproxy");
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 200\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             listen v1\n  bind 127.0.0.1:{v1}\n  server rc {backend} send-proxy source 127.0.0.3\n\
             listen v2\n  bind 127.0.0.1:{v2}\n  server rc {backend} send-proxy-v2 source 127.0.0.3\n"
        ),
    )
    .expect("write haproxy.cfg");
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn haproxy (apt-get install haproxy)");
    for port in [v1, v2] {
        let mut tries = 0;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tries += 1;
            assert!(tries < 100, "haproxy does not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (child, dir, v1, v2)
}

/// A temporary directory removed on drop.
mod tempdir {
    pub struct Dir(std::path::PathBuf);

    impl Dir {
        pub fn new(name: &str) -> Dir {
            let path = std::env::temp_dir().join(format!("ringcast-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }

        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_haproxy_are_logged_with_their_own_address() {
    let node = Node::start(&[("RINGCAST_RTMP__PROXY_PROTOCOL", "true")]).await;
    let (_haproxy, _dir, v1, v2) = haproxy(&node.rtmp).await;
    let via = |port: u16, key: &str| format!("rtmp://127.0.0.1:{port}/{key}");

    // ffmpeg publishes through the version 2 frontend.
    let _publisher = ffmpeg_publish(&via(v2, "live/proxied"), 40, 25);
    let line = node.wait_log("publish start", 15 * SEC).await;
    eprintln!("{line}");
    assert!(
        line.contains("peer=127.0.0.3:") && line.contains("client=127.0.0.1:"),
        "the publisher's line names HAProxy as peer and the client from the header: {line}"
    );

    // ffmpeg and rtmpdump play through the version 1 frontend.
    let (frames, err) = ffmpeg_decode_frames(&via(v1, "live/proxied"), 50, 30 * SEC).await;
    assert_eq!(frames, 50, "ffmpeg through HAProxy v1: {err}");
    let (recorded, _) = rtmpdump_decodable_frames(&via(v1, "live/proxied"), 2).await;
    assert!(
        recorded >= 20,
        "rtmpdump through HAProxy recorded {recorded} frames"
    );
    let play = node
        .wait_log_all(&["play start", "client=127.0.0.1:"], 5 * SEC)
        .await;
    assert!(play.contains("peer=127.0.0.3:"), "{play}");

    // Straight to ringcast, without a header: refused and logged, nothing else disturbed.
    let mut direct = tokio::net::TcpStream::connect(&node.rtmp)
        .await
        .expect("tcp");
    use tokio::io::AsyncWriteExt;
    direct.write_all(&[3u8; 1537]).await.expect("write C0C1");
    assert!(closed_by_server(&mut direct, 5 * SEC).await);
    node.wait_log("expected a PROXY protocol header", 3 * SEC)
        .await;
    let (frames, err) = ffmpeg_decode_frames(&via(v2, "live/proxied"), 25, 30 * SEC).await;
    assert_eq!(frames, 25, "still served through HAProxy v2: {err}");
    assert!(!node.log_contains("panicked"));
}
