//! End-to-end: hostile and broken input. Each bad connection is closed with a log line naming
//! the problem; a healthy ffmpeg stream and its player keep going; memory stays bounded.

mod common;

use std::time::{Duration, Instant};

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
    assert!(wait_video(&mut healthy, 15, 3 * SEC).await >= 15);
    let addr = node.rtmp.clone();

    let mark = node.log_mark();
    // 1. Not RTMP at all.
    let mut s = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log_since(mark, "handshake version byte is 71", 3 * SEC)
        .await;

    let mark = node.log_mark();
    // 2. Silent connection: handshake timeout.
    let mut s = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
    assert!(closed_by_server(&mut s, 5 * SEC).await);
    node.wait_log_since(mark, "no handshake within", 3 * SEC)
        .await;

    // 3. Truncated C1, then nothing.
    let mut s = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
    s.write_all(&[3u8; 700]).await.expect("write");
    assert!(closed_by_server(&mut s, 5 * SEC).await);

    let mark = node.log_mark();
    // 4. A continuation chunk with no header before it (garbage after the handshake).
    let mut s = raw_after_handshake(&addr).await;
    s.write_all(&[0xC5, 0xde, 0xad, 0xbe, 0xef])
        .await
        .expect("write");
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log_since(mark, "continues a message header it never started", 3 * SEC)
        .await;

    let mark = node.log_mark();
    // 5. A 16 MB message header with no body: refused before any allocation (before a
    // connection publishes, every message is held to the command limit).
    let mut s = raw_after_handshake(&addr).await;
    s.write_all(&header(0xff_ffff, 9, 1)).await.expect("write");
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log_since(
        mark,
        "media before publish message of 16777215 bytes exceeds the limit of 65536",
        3 * SEC,
    )
    .await;

    let mark = node.log_mark();
    // 6. Chunk size 0.
    let mut s = raw_after_handshake(&addr).await;
    let mut m = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
    m.extend_from_slice(&0u32.to_be_bytes());
    s.write_all(&m).await.expect("write");
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log_since(mark, "peer set chunk size 0", 3 * SEC)
        .await;

    let mark = node.log_mark();
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
    node.wait_log_since(mark, "bad command: command payload is not AMF", 3 * SEC)
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

    let mark = node.log_mark();
    // 10. Connected but idle (not playing): closed after the idle timeout.
    let mut idle = client(&url).await;
    assert!(matches!(
        tokio::time::timeout(5 * SEC, idle.next()).await,
        Ok(Err(ClientError::Closed)) | Ok(Err(ClientError::Io(_)))
    ));
    node.wait_log_since(mark, "idle for", 3 * SEC).await;

    // The healthy player never noticed.
    let frames = wait_video(&mut healthy, 40, 6 * SEC).await;
    assert!(frames >= 40, "healthy player got {frames} frames in 6 s");
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

/// Sends `payload` as one message of `type_id` on chunk stream 3, first raising the chunk
/// size so that it goes out in one chunk when it fits (and in 64 KiB chunks otherwise).
async fn send_message(s: &mut tokio::net::TcpStream, type_id: u8, payload: &[u8]) {
    use ringcast::rtmp::chunk::{encode_message, MessageHeader};
    let mut out = bytes::BytesMut::new();
    let chunk_size = 65_536u32;
    let control = MessageHeader {
        csid: 2,
        timestamp: 0,
        type_id: 1,
        stream_id: 0,
    };
    encode_message(&mut out, &control, &chunk_size.to_be_bytes(), 128);
    let h = MessageHeader {
        csid: 3,
        timestamp: 0,
        type_id,
        stream_id: 0,
    };
    encode_message(&mut out, &h, payload, chunk_size as usize);
    // The server may close half way (that is the point): a failed write is fine.
    let _ = s.write_all(&out).await;
}

/// Samples the RSS of `pid` every 20 ms until `done` resolves; returns the largest seen.
async fn peak_rss_during<F: std::future::Future>(pid: u32, done: F) -> (u64, F::Output) {
    tokio::pin!(done);
    let mut peak = rss_kib(pid);
    loop {
        tokio::select! {
            out = &mut done => return (peak.max(rss_kib(pid)), out),
            _ = tokio::time::sleep(Duration::from_millis(20)) => peak = peak.max(rss_kib(pid)),
        }
    }
}

/// Issue 9, row 1: command messages made of AMF0 null markers once took RSS from 6 MiB to
/// 772 MiB with 8 connections of 8 MiB each. Now an 8 MiB command is refused at its header
/// and one under the command limit stops at the AMF value budget: RSS stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_of_null_markers_keep_memory_flat() {
    let node = Node::start(&[]).await;
    let url = node.url("live/steady");
    let publisher = synthetic_publisher(&url, 25, 2000, 25, 400);
    node.wait_log("publish start", 10 * SEC).await;
    let mut healthy = player(&url).await;
    let pid = node.pid();
    tokio::time::sleep(SEC).await;
    let before = rss_kib(pid);
    let addr = node.rtmp.clone();
    let mark = node.log_mark();
    let attack = async {
        let mut conns = Vec::new();
        // The table's row: 8 connections, one 8 MiB command of nulls each.
        for _ in 0..8 {
            let mut s = raw_after_handshake(&addr).await;
            let mut payload = amf_string("connect");
            payload.resize(8 << 20, 0x05);
            send_message(&mut s, 20, &payload).await;
            conns.push(s);
        }
        // And 64 more just under the 64 KiB command limit, which the chunk reader lets through.
        for _ in 0..64 {
            let mut s = raw_after_handshake(&addr).await;
            let mut payload = amf_string("connect");
            payload.resize(65_000, 0x05);
            send_message(&mut s, 20, &payload).await;
            conns.push(s);
        }
        let mut closed = 0;
        for s in &mut conns {
            if closed_by_server(s, 5 * SEC).await {
                closed += 1;
            }
        }
        closed
    };
    let (peak, closed) = peak_rss_during(pid, attack).await;
    eprintln!(
        "RSS before {before} KiB, peak {peak} KiB during 8 x 8 MiB and 64 x 64 KiB null-marker commands"
    );
    assert_eq!(closed, 72, "every hostile connection is closed");
    assert!(
        peak < before + 64 * 1024,
        "RSS grew from {before} KiB to {peak} KiB"
    );
    // One line per connection, within the node-wide budget for connections that never got
    // through connect (20 a second): the rest are counted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = node.log_lines();
    let too_large = lines[mark..]
        .iter()
        .filter(|l| l.contains("command message of 8388608 bytes exceeds the limit of 65536"))
        .count();
    let budget = lines[mark..]
        .iter()
        .filter(|l| l.contains("more than 512 AMF values in one message"))
        .count();
    let suppressed = metric(&node, "ringcast_log_lines_suppressed_total").await;
    eprintln!("{too_large} + {budget} lines logged, {suppressed} suppressed");
    assert!(too_large >= 1 && budget >= 1, "({too_large}, {budget})");
    assert_eq!(too_large as u64 + budget as u64 + suppressed, 72);
    assert!(
        wait_video(&mut healthy, 40, 6 * SEC).await >= 40,
        "the healthy player kept going"
    );
    publisher.abort();
}

fn amf_string(s: &str) -> Vec<u8> {
    ringcast::rtmp::amf0::encode_all(&[Amf0Value::String(s.into())]).to_vec()
}

/// A connect command with `app` (and tcUrl) as ffmpeg sends it.
fn connect_payload(app: &str) -> Vec<u8> {
    ringcast::rtmp::command::Command::new(
        "connect",
        1.0,
        Amf0Value::object([
            ("app", app.into()),
            ("tcUrl", format!("rtmp://127.0.0.1/{app}").into()),
            ("flashVer", "FMLE/3.0".into()),
        ]),
        vec![],
    )
    .encode()
    .to_vec()
}

/// Issue 9, row 2: a 1 MiB app name was in every log line of its connection (214 MB of log
/// for 200 unknown commands). Now names have limits, client text is cut in log lines, and
/// unknown commands log at debug; the node here logs at debug, and the log still grows by
/// far less than 1 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_names_and_unknown_commands_do_not_inflate_the_log() {
    let node = Node::start(&[]).await;
    let addr = node.rtmp.clone();
    let before = node.log_bytes();
    let mark = node.log_mark();

    // A 1 MiB app name: a command over the command limit, refused at its header.
    let mut s = raw_after_handshake(&addr).await;
    send_message(&mut s, 20, &connect_payload(&"a".repeat(1 << 20))).await;
    assert!(closed_by_server(&mut s, 3 * SEC).await);

    // A 30 KiB app name (and tcUrl) fits in a command, but not in an app: refused with the
    // usual rejection, then closed.
    let mut s = raw_after_handshake(&addr).await;
    send_message(&mut s, 20, &connect_payload(&"b".repeat(30_000))).await;
    assert!(closed_by_server(&mut s, 3 * SEC).await);
    node.wait_log_since(mark, "app is 30000 bytes, the limit is 128", 3 * SEC)
        .await;

    // A proper connection, then 200 unknown commands with 30 KiB names: each answered with
    // _error, the connection stays; then plays of 30 KiB names until the call budget closes it.
    let mut c = client(&node.url("live/x")).await;
    for i in 0..200 {
        let name = format!("{i}{}", "z".repeat(30_000));
        c.send_command(&name, vec![Amf0Value::Null])
            .await
            .expect("send");
    }
    let mut errors = 0;
    while errors < 200 {
        match tokio::time::timeout(5 * SEC, c.next()).await {
            Ok(Ok(Incoming::Command(cmd))) if cmd.name == "_error" => errors += 1,
            Ok(Ok(_)) => {}
            other => panic!("after {errors} answers: {other:?}"),
        }
    }
    c.create_stream().await.expect("createStream");
    for _ in 0..40 {
        let name = "p".repeat(30_000);
        if c.send_command("play", vec![Amf0Value::Null, name.into()])
            .await
            .is_err()
        {
            break;
        }
    }
    let closed = loop {
        match tokio::time::timeout(5 * SEC, c.next()).await {
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "plays past the call budget close the connection");
    node.wait_log_since(
        mark,
        "too many play, publish or createStream calls",
        3 * SEC,
    )
    .await;
    // Let the last lines arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = node.log_bytes() - before;
    let longest = node.log_lines()[mark..]
        .iter()
        .map(|l| l.len())
        .max()
        .unwrap_or(0);
    eprintln!("log grew by {grown} bytes; longest line {longest} bytes");
    assert!(grown < 1 << 20, "the log grew by {grown} bytes");
    assert!(longest < 2048, "a line of {longest} bytes");
}

/// Before a connection publishes, its messages are held to the command limit: a media
/// header announcing 8 MiB is refused at once, whatever memory it would have taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_before_publish_are_refused_at_their_header() {
    let node = Node::start(&[]).await;
    let addr = node.rtmp.clone();
    let mark = node.log_mark();
    let mut conns = Vec::new();
    for _ in 0..100 {
        let mut s = raw_after_handshake(&addr).await;
        let mut m = header(8 * 1024 * 1024 - 1, 9, 1);
        m.extend_from_slice(&[0x27; 64]);
        s.write_all(&m).await.expect("write");
        conns.push(s);
    }
    for s in &mut conns {
        assert!(closed_by_server(s, 3 * SEC).await);
    }
    let refused = node.log_lines()[mark..]
        .iter()
        .filter(|l| l.contains("media before publish message of 8388607 bytes"))
        .count();
    let suppressed = metric(&node, "ringcast_log_lines_suppressed_total").await;
    assert!(refused >= 1, "the refusal is logged");
    assert_eq!(
        refused as u64 + suppressed,
        100,
        "each connection logged or counted"
    );
}

/// Issue 9, row 5: an encoder whose connection died without a FIN (a network blip) kept its
/// stream until the idle timeout (30 s), so its reconnect was refused as "already
/// publishing". Now a publisher silent for a second is taken over by a new publisher of its
/// stream, and one silent for `rtmp.publish_idle_timeout_ms` loses the stream and its
/// connection, even when that connection also plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_publisher_is_taken_over_so_a_reconnect_publishes_at_once() {
    let node = Node::start(&[]).await;
    let url = node.url("live/obs");
    let mut watcher = player(&url).await;

    // The first "OBS": publishes, also plays another stream, sends a second of video, then
    // goes silent with its socket still open.
    let mut first = client(&url).await;
    first.publish().await.expect("publish");
    let mut also_plays = client(&node.url("live/other")).await;
    also_plays.play().await.expect("play");
    first
        .send_media(9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f])
        .await
        .expect("sequence header");
    for i in 0..25u32 {
        let key = i % 25 == 0;
        first
            .send_media(9, i * 40, &[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 7])
            .await
            .expect("frame");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let silent_at = Instant::now();

    // Right away the stream is still the first one's.
    let mut second = client(&url).await;
    match second.publish().await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "NetStream.Publish.BadName"),
        other => panic!("a live publisher's stream must be refused: {other:?}"),
    }
    // The reconnect after a blip: accepted as soon as the first has been silent a second.
    let mark = node.log_mark();
    let accepted = loop {
        let mut retry = client(&url).await;
        match retry.publish().await {
            Ok(()) => break retry,
            Err(e) => assert!(silent_at.elapsed() < 5 * SEC, "still refused: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let waited = silent_at.elapsed();
    eprintln!("the reconnecting publisher got the stream {waited:?} after the first went silent");
    assert!(waited < 3 * SEC, "took {waited:?}");
    let mut accepted = accepted;
    accepted
        .send_media(9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f])
        .await
        .expect("sequence header");
    accepted
        .send_media(9, 0, &[0x17, 1, 0, 0, 0, 42])
        .await
        .expect("keyframe");
    assert!(
        wait_status(&mut watcher, "NetStream.Play.PublishNotify", 3 * SEC).await,
        "the player is told of the new publisher"
    );
    let frame = loop {
        let m = next_media(&mut watcher, 3 * SEC).await.expect("media");
        if m.type_id == 9 && m.payload.last() == Some(&42) {
            break m;
        }
    };
    assert!(is_video_keyframe(&frame));
    // The silent connection itself is closed after the publish idle timeout (5 s), although
    // it plays too.
    node.wait_log_since(mark, "publisher sent no media for 5s", 8 * SEC)
        .await;
    drop(first);
    drop(also_plays);
}

/// Players of streams nobody publishes wait, within `rtmp.max_waiting_streams`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_streams_are_capped_and_published_streams_always_play() {
    let node = Node::start(&[("RINGCAST_RTMP__MAX_WAITING_STREAMS", "2")]).await;
    let _a = player(&node.url("live/wait-a")).await;
    let _b = player(&node.url("live/wait-b")).await;
    let mut c = client(&node.url("live/wait-c")).await;
    match c.play().await {
        Err(ClientError::Refused {
            code, description, ..
        }) => {
            assert_eq!(code, "NetStream.Play.StreamNotFound");
            assert!(
                description.contains("wait for a publisher"),
                "{description}"
            );
        }
        other => panic!("a third waiting stream must be refused: {other:?}"),
    }
    let url = node.url("live/published");
    let publisher = synthetic_publisher(&url, 25, 1000, 25, 100);
    node.wait_log("publish start", 5 * SEC).await;
    let mut p = player(&url).await;
    assert!(wait_video(&mut p, 6, 3 * SEC).await >= 6);
    let (_, metrics) = http_get(&node.http, "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "ringcast_streams_waiting 2"),
        "{metrics}"
    );
    publisher.abort();
}

/// `rtmp.max_connections_per_ip`: one address cannot take every connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped() {
    let node = Node::start(&[("RINGCAST_RTMP__MAX_CONNECTIONS_PER_IP", "3")]).await;
    let url = node.url("live/ip");
    let _held: Vec<_> = futures_join(3, &url).await;
    let mut fourth = tokio::net::TcpStream::connect(&node.rtmp)
        .await
        .expect("tcp");
    assert!(closed_by_server(&mut fourth, 3 * SEC).await);
    node.wait_log("3 connections from 127.0.0.1 already", 3 * SEC)
        .await;
    // Another address has its own count.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let other = socket
        .connect(node.rtmp.parse().expect("addr"))
        .await
        .expect("connect");
    let mut other = other;
    assert!(
        !closed_by_server(&mut other, SEC).await,
        "127.0.0.2 is let in"
    );
}

async fn futures_join(n: usize, url: &str) -> Vec<ringcast::client::RtmpClient> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(client(url).await);
    }
    out
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

/// A counter or gauge from the node's `/metrics`.
async fn metric(node: &Node, name: &str) -> u64 {
    let (_, text) = http_get(&node.http, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}
