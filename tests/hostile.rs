//! End-to-end: hostile and broken input. Each bad connection is closed with a log line naming
//! the problem; a healthy ffmpeg stream and its player keep going; memory stays bounded.

mod common;

use std::time::Duration;

use common::*;
use ringcast::client::{ClientError, Incoming};
use ringcast::rtmp::amf0::Amf0Value;
use tokio::io::AsyncWriteExt;

const SEC: Duration = Duration::from_secs(1);

/// A fmt 0 chunk header on csid 3.
fn header(len: u32, type_id: u8, stream_id: u32) -> Vec<u8> {
    let mut h = vec![0x03, 0, 0, 0];
    h.extend_from_slice(&len.to_be_bytes()[1..]);
    h.push(type_id);
    h.extend_from_slice(&stream_id.to_le_bytes());
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_are_closed_and_logged_while_a_stream_keeps_flowing() {
    let node = Node::start(&[
        ("RINGCAST_RTMP__HANDSHAKE_TIMEOUT_MS", "1000"),
        ("RINGCAST_RTMP__IDLE_TIMEOUT_MS", "1500"),
    ])
    .await;
    let url = node.url("live/healthy");
    let _publisher = ffmpeg_publish(&url, 60, 25);
    node.wait_log("publish start", 15 * SEC).await;
    let mut healthy = player(&url).await;
    assert!(count_video(&mut healthy, SEC).await >= 15);
    let addr = node.rtmp.clone();

    // 1. Not RTMP at all.
    let mut s = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log("handshake version byte is 71", 3 * SEC).await;

    // 2. Silent connection: handshake timeout.
    let mut s = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
    assert!(closed_by_server(&mut s, 5 * SEC).await);
    node.wait_log("no handshake within", 3 * SEC).await;

    // 3. Truncated C1, then nothing.
    let mut s = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
    s.write_all(&[3u8; 700]).await.expect("write");
    assert!(closed_by_server(&mut s, 5 * SEC).await);

    // 4. A continuation chunk with no header before it (garbage after the handshake).
    let mut s = raw_after_handshake(&addr).await;
    s.write_all(&[0xC5, 0xde, 0xad, 0xbe, 0xef])
        .await
        .expect("write");
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log("continues a message header it never started", 3 * SEC)
        .await;

    // 5. A 16 MB message header with no body: refused before any allocation.
    let mut s = raw_after_handshake(&addr).await;
    s.write_all(&header(0xff_ffff, 9, 1)).await.expect("write");
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log("16777215 bytes exceeds the limit", 3 * SEC)
        .await;

    // 6. Chunk size 0.
    let mut s = raw_after_handshake(&addr).await;
    let mut m = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
    m.extend_from_slice(&0u32.to_be_bytes());
    s.write_all(&m).await.expect("write");
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log("peer set chunk size 0", 3 * SEC).await;

    // 7. Bad AMF in a command: a string that claims more bytes than it has, then an unknown marker.
    let mut s = raw_after_handshake(&addr).await;
    let body = [
        0x02u8, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0x00, 0, 0, 0, 0, 0, 0, 0xf0,
        0x3f, 0x42,
    ];
    let mut m = header(body.len() as u32, 20, 0);
    m.extend_from_slice(&body);
    s.write_all(&m).await.expect("write");
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log("bad command: command payload is not AMF", 3 * SEC)
        .await;

    // 8. Random bytes after the handshake: closed by a chunk error or the idle timeout.
    let mut s = raw_after_handshake(&addr).await;
    let mut x: u32 = 0x1234_5678;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let _ = s.write_all(&junk).await;
    assert!(closed_by_server(&mut s, 5 * SEC).await);

    // 9. Truncated message then a hang-up: the partial message is dropped with the connection.
    let mut s = raw_after_handshake(&addr).await;
    let mut m = header(1000, 9, 1);
    m.extend_from_slice(&[0x17; 10]);
    s.write_all(&m).await.expect("write");
    drop(s);

    // 10. Connected but idle (not playing): closed after the idle timeout.
    let mut idle = client(&url).await;
    assert!(matches!(
        tokio::time::timeout(5 * SEC, idle.next()).await,
        Ok(Err(ClientError::Closed)) | Ok(Err(ClientError::Io(_)))
    ));
    node.wait_log("idle for", 3 * SEC).await;

    // The healthy player never noticed.
    let frames = count_video(&mut healthy, 2 * SEC).await;
    assert!(frames >= 40, "healthy player got {frames} frames in 2 s");
    assert!(!node.log_contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commands_and_too_many_streams_get_errors_not_disconnects() {
    let node = Node::start(&[("RINGCAST_RTMP__MAX_STREAMS_PER_CONNECTION", "3")]).await;
    let url = node.url("live/x");
    let mut c = client(&url).await;
    c.send_command("noSuchCommand", vec![Amf0Value::Null])
        .await
        .expect("send");
    let answer = loop {
        match tokio::time::timeout(3 * SEC, c.next()).await {
            Ok(Ok(Incoming::Command(cmd))) => break cmd,
            Ok(Ok(_)) => continue,
            other => panic!("no answer: {other:?}"),
        }
    };
    assert_eq!(answer.name, "_error");
    let desc = answer.args[0]
        .get("description")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    assert!(desc.contains("unknown command noSuchCommand"), "{desc}");

    for _ in 0..3 {
        c.create_stream().await.expect("within the limit");
    }
    match c.create_stream().await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "NetConnection.Call.Failed"),
        other => panic!("4th stream must be refused: {other:?}"),
    }
    // Still connected and usable.
    c.send_command("deleteStream", vec![Amf0Value::Number(1.0)])
        .await
        .expect("send");
    c.create_stream().await.expect("a slot was freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_chunks_from_a_publisher_are_reassembled() {
    let node = Node::start(&[]).await;
    let url = node.url("live/interleave");
    let mut watcher = player(&url).await;
    let mut p = client(&url).await;
    p.publish().await.expect("publish");
    let sid = p.stream_id;

    // Audio (csid 4) and video (csid 6), 300 bytes each, 128-byte chunks alternating — the
    // pattern that panics rml_rtmp's deserializer. Our client announced chunk size 4096, so
    // first go back to 128.
    let mut wire = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 128];
    let audio: Vec<u8> = std::iter::once(0xAF)
        .chain(std::iter::once(1))
        .chain((0..298).map(|i| i as u8))
        .collect();
    let video: Vec<u8> = [0x17, 1, 0, 0, 0]
        .into_iter()
        .chain((0..295).map(|i| (i * 7) as u8))
        .collect();
    let chunks = |csid: u8, type_id: u8, payload: &[u8]| -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (i, piece) in payload.chunks(128).enumerate() {
            let mut c = Vec::new();
            if i == 0 {
                c.push(csid);
                c.extend_from_slice(&[0, 0, 40]);
                c.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
                c.push(type_id);
                c.extend_from_slice(&sid.to_le_bytes());
            } else {
                c.push(0xC0 | csid);
            }
            c.extend_from_slice(piece);
            out.push(c);
        }
        out
    };
    let a = chunks(4, 8, &audio);
    let v = chunks(6, 9, &video);
    for i in 0..3 {
        wire.extend_from_slice(&a[i]);
        wire.extend_from_slice(&v[i]);
    }
    p.send_raw(&wire).await.expect("send");

    let mut got = Vec::new();
    while got.len() < 2 {
        let m = next_media(&mut watcher, 5 * SEC).await.expect("media");
        if m.type_id == 8 || m.type_id == 9 {
            got.push(m);
        }
    }
    let by_type = |t: u8| got.iter().find(|m| m.type_id == t).expect("message");
    assert_eq!(by_type(8).payload.as_ref(), audio.as_slice());
    assert_eq!(by_type(9).payload.as_ref(), video.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_from_many_connections_keep_memory_bounded() {
    let node = Node::start(&[]).await;
    let pid = node.pid();
    let before = rss_kib(pid);
    let addr = node.rtmp.clone();
    let mut conns = Vec::new();
    for _ in 0..100 {
        let mut s = raw_after_handshake(&addr).await;
        // Just under the 8 MiB limit: accepted, and the server must not reserve it up front.
        let mut m = header(8 * 1024 * 1024 - 1, 9, 1);
        m.extend_from_slice(&[0x27; 64]);
        s.write_all(&m).await.expect("write");
        conns.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_kib(pid);
    eprintln!("RSS before {before} KiB, with 100 connections each announcing 8 MiB: {during} KiB");
    assert!(
        during < before + 64 * 1024,
        "RSS grew from {before} KiB to {during} KiB"
    );
    drop(conns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_extra_connections() {
    let node = Node::start(&[("RINGCAST_RTMP__MAX_CONNECTIONS", "2")]).await;
    let url = node.url("live/limit");
    let _a = client(&url).await;
    let _b = client(&url).await;
    let mut s = tokio::net::TcpStream::connect(&node.rtmp)
        .await
        .expect("tcp");
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log("connection refused: limit reached", 3 * SEC)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_player_is_dropped_without_slowing_the_publisher_or_others() {
    let node = Node::start(&[
        ("RINGCAST_RTMP__PLAYER_WRITE_TIMEOUT_MS", "1500"),
        ("RINGCAST_RTMP__PLAYER_QUEUE_MESSAGES", "64"),
    ])
    .await;
    let url = node.url("live/slow");
    // About 10 Mb/s: 50 KB frames at 25 fps, keyframe every 25 frames, for 12 s.
    let publisher = synthetic_publisher(&url, 25, 50_000, 25, 300);
    node.wait_log("publish start", 10 * SEC).await;
    let mut healthy = player(&url).await;
    // The stuck player plays and then never reads again.
    let stuck = player(&url).await;

    let started = tokio::time::Instant::now();
    let mut received = 0;
    while started.elapsed() < 10 * SEC {
        if let Some(m) = next_media(&mut healthy, 2 * SEC).await {
            if m.type_id == 9 {
                received += 1;
            }
        } else {
            break;
        }
    }
    // 10 s at 25 fps is 250 frames; allow for the start.
    assert!(
        received >= 220,
        "healthy player received only {received} frames"
    );
    let line = node
        .wait_log_all(&["closed on error", "play"], 5 * SEC)
        .await;
    eprintln!("stuck player: {line}");
    let sent = publisher.await.expect("join").expect("publisher ran");
    assert_eq!(sent, 300);
    drop(stuck);
}
