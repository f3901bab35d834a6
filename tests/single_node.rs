//! End-to-end: one ringcast node, real ffmpeg/ffprobe/rtmpdump and the project's client.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ringcast::client::{ClientError, Incoming};
use tokio::process::Command;

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_and_ffmpeg_ffprobe_rtmpdump_play() {
    let node = Node::start(&[]).await;
    let url = node.url("live/e2e");
    let _publisher = ffmpeg_publish(&url, 30, 25);
    node.wait_log("publish start", 15 * SEC).await;

    let (ok, out, err) = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
            &url,
        ]),
        20 * SEC,
    )
    .await;
    assert!(ok, "ffprobe failed: {err}");
    assert!(out.contains("h264,320,240"), "ffprobe saw: {out}");
    assert!(out.contains("aac"), "ffprobe saw: {out}");

    let (frames, err) = ffmpeg_decode_frames(&url, 50, 20 * SEC).await;
    assert_eq!(frames, 50, "ffmpeg decoded {frames} frames; stderr: {err}");
    assert!(err.trim().is_empty(), "ffmpeg decode errors: {err}");

    // rtmpdump (librtmp) records 3 s of the live stream; ffprobe decodes the recording.
    let (recorded, dump_err) = rtmpdump_decodable_frames(&url, 3).await;
    assert!(
        recorded >= 25,
        "rtmpdump recording has {recorded} decodable frames; rtmpdump said: {dump_err}"
    );
    node.wait_log_all(&["play stop", "bytes="], 10 * SEC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_player_gets_metadata_headers_then_a_keyframe_quickly() {
    let node = Node::start(&[]).await;
    let url = node.url("live/late");
    // Keyframe every 2 s, so a player joining mid-GOP depends on the GOP cache.
    let _publisher = ffmpeg_publish(&url, 30, 50);
    node.wait_log("publish start", 15 * SEC).await;
    tokio::time::sleep(Duration::from_millis(3300)).await;

    let mut ttff = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut c = player(&url).await;
        let mut first_video = None;
        let mut saw_metadata = false;
        let mut saw_avc_header = false;
        while first_video.is_none() {
            let m = next_media(&mut c, 5 * SEC).await.expect("media");
            match m.type_id {
                18 => saw_metadata = true,
                9 if is_video_sequence_header(&m) => saw_avc_header = true,
                9 => first_video = Some((m, started.elapsed())),
                _ => {}
            }
        }
        let (m, elapsed) = first_video.expect("video");
        assert!(saw_metadata, "onMetaData must come before video");
        assert!(
            saw_avc_header,
            "the AVC sequence header must come before video"
        );
        assert!(
            is_video_keyframe(&m),
            "first video frame must be a keyframe"
        );
        ttff.push(elapsed);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ttff.sort();
    eprintln!("time to first frame (connect to keyframe), 5 late joiners: {ttff:?}");
    assert!(ttff[2] < SEC, "median time to first frame {:?}", ttff[2]);

    // ffmpeg too decodes from its first frame without errors.
    let (frames, err) = ffmpeg_decode_frames(&url, 10, 20 * SEC).await;
    assert_eq!(frames, 10, "{err}");
    assert!(
        err.trim().is_empty(),
        "late ffmpeg player had decode errors: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ffmpeg_players_at_once() {
    let node = Node::start(&[]).await;
    let url = node.url("live/two");
    let _publisher = ffmpeg_publish(&url, 30, 25);
    node.wait_log("publish start", 15 * SEC).await;
    let (a, b) = tokio::join!(
        ffmpeg_decode_frames(&url, 75, 25 * SEC),
        ffmpeg_decode_frames(&url, 75, 25 * SEC)
    );
    assert_eq!(a.0, 75, "{}", a.1);
    assert_eq!(b.0, 75, "{}", b.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_waits_for_publisher_then_starts_on_a_keyframe() {
    let node = Node::start(&[]).await;
    let url = node.url("live/early");
    let mut c = player(&url).await;
    // Nothing to play yet: the player is parked, not refused.
    let early = next_media(&mut c, Duration::from_millis(700)).await;
    assert!(
        early.as_ref().is_none_or(|m| m.type_id == 18),
        "only |RtmpSampleAccess may come before a publisher: {early:?}"
    );
    assert!(next_media(&mut c, Duration::from_millis(700))
        .await
        .is_none());

    let _publisher = ffmpeg_publish(&url, 20, 25);
    assert!(wait_status(&mut c, "NetStream.Play.PublishNotify", 15 * SEC).await);
    let first_video = loop {
        let m = next_media(&mut c, 10 * SEC)
            .await
            .expect("media after publish");
        if m.type_id == 9 && !is_video_sequence_header(&m) {
            break m;
        }
    };
    assert!(is_video_keyframe(&first_video));
    assert!(wait_video(&mut c, 25, 6 * SEC).await >= 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_reconnect_resumes_attached_players() {
    let node = Node::start(&[]).await;
    let url = node.url("live/reconnect");
    let mut first = ffmpeg_publish(&url, 3, 25);
    node.wait_log("publish start", 15 * SEC).await;
    let mut c = player(&url).await;
    let mut last_ts = 0;
    let mut before = 0;
    // Frames until the publisher ends, then the notification.
    loop {
        match tokio::time::timeout(10 * SEC, c.next()).await {
            Ok(Ok(Incoming::Media(m))) if m.type_id == 9 => {
                before += 1;
                last_ts = m.timestamp;
            }
            Ok(Ok(Incoming::Status(s))) if s.code == "NetStream.Play.UnpublishNotify" => break,
            Ok(Ok(_)) => {}
            other => panic!("player lost before unpublish: {other:?}"),
        }
    }
    assert!(before > 10, "only {before} frames before unpublish");
    let _ = first.wait().await;

    // OBS-style reconnect: a new publisher on the same stream; the same player continues.
    let _second = ffmpeg_publish(&url, 20, 25);
    assert!(wait_status(&mut c, "NetStream.Play.PublishNotify", 15 * SEC).await);
    let mut after = Vec::new();
    while after.len() < 25 {
        let m = next_media(&mut c, 10 * SEC)
            .await
            .expect("frames after republish");
        if m.type_id == 9 && !is_video_sequence_header(&m) {
            after.push(m);
        }
    }
    assert!(is_video_keyframe(&after[0]), "resumes on a keyframe");
    assert!(
        after[0].timestamp > last_ts,
        "timeline continues: {} after {}",
        after[0].timestamp,
        last_ts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_is_refused_and_the_first_keeps_going() {
    let node = Node::start(&[]).await;
    let url = node.url("live/taken");
    let _publisher = ffmpeg_publish(&url, 30, 25);
    node.wait_log("publish start", 15 * SEC).await;
    let mut watcher = player(&url).await;
    assert!(wait_video(&mut watcher, 11, 3 * SEC).await >= 11);

    let mut intruder = client(&url).await;
    match intruder.publish().await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "NetStream.Publish.BadName"),
        other => panic!("second publish must be refused, got {other:?}"),
    }
    // A second ffmpeg publisher fails too.
    let mut second = ffmpeg_publish(&url, 5, 25);
    let status = tokio::time::timeout(15 * SEC, second.wait())
        .await
        .expect("second ffmpeg exits")
        .expect("wait");
    assert!(!status.success(), "second ffmpeg publisher must fail");
    node.wait_log("publish refused", 5 * SEC).await;
    // The first publisher's stream still flows.
    assert!(wait_video(&mut watcher, 26, 6 * SEC).await >= 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sigterm_drains_and_a_second_tells_clients_and_exits_promptly() {
    let mut node = Node::start(&[]).await;
    let url = node.url("live/bye");
    let mut publisher = client(&url).await;
    publisher.publish().await.expect("publish");
    publisher
        .send_media(9, 0, &[0x17, 1, 0, 0, 0, 0x65])
        .await
        .expect("send");
    let mut c = player(&url).await;
    assert!(next_media(&mut c, 5 * SEC).await.is_some());

    // The first SIGTERM drains: the node leaves service but keeps serving its clients.
    let mark = node.log_mark();
    node.signal("TERM");
    node.wait_log_since(mark, "SIGTERM: draining", 5 * SEC)
        .await;
    let (status, _) = node.get("/readyz").await;
    assert_eq!(status, 503);
    publisher
        .send_media(9, 40, &[0x27, 1, 0, 0, 0, 0x66])
        .await
        .expect("still publishing");
    assert!(next_media(&mut c, 5 * SEC).await.is_some(), "still playing");
    // The second stops it: clients are told, the node exits promptly.
    let started = Instant::now();
    node.signal("TERM");
    assert!(wait_status(&mut c, "NetStream.Play.Stop", 5 * SEC).await);
    assert!(wait_status(&mut publisher, "NetStream.Unpublish.Success", 5 * SEC).await);
    let status = node
        .wait_exit(10 * SEC)
        .await
        .expect("exits after the second SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < 7 * SEC, "took {:?}", started.elapsed());
    assert!(node.log_contains("SIGTERM: shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_rtmp_hevc_and_opus_pass_through_with_fast_start() {
    let node = Node::start(&[]).await;
    let url = node.url("live/ertmp");
    let mut p = client(&url).await;
    p.publish().await.expect("publish");
    // Enhanced RTMP (OBS 29+, ffmpeg 6.1+): video bit 0x80, FourCC, packet type.
    let hevc_seq = [0x90, b'h', b'v', b'c', b'1', 1, 2, 3, 4];
    let opus_seq = [0x90, b'O', b'p', b'u', b's', 9, 9];
    let key = |n: u8| vec![0x91, b'h', b'v', b'c', b'1', 0, 0, 0, n];
    let inter = |n: u8| vec![0xA3, b'h', b'v', b'c', b'1', n];
    let opus = |n: u8| vec![0x91, b'O', b'p', b'u', b's', n];
    p.send_media(9, 0, &hevc_seq).await.expect("send");
    p.send_media(8, 0, &opus_seq).await.expect("send");
    p.send_media(9, 0, &key(0)).await.expect("send");
    p.send_media(9, 40, &inter(1)).await.expect("send");
    p.send_media(9, 80, &key(2)).await.expect("send");
    p.send_media(8, 90, &opus(3)).await.expect("send");
    p.send_media(9, 120, &inter(4)).await.expect("send");
    // The node reads publishers in batches (the latency budget): wait until it has all seven.
    common::fleet::wait_for("the node took all seven frames", 5 * SEC, || async {
        let (_, body) = node.get_json("/api/v1/streams").await;
        let frames = body["streams"][0]["frames_in"].as_u64();
        if frames == Some(7) {
            Ok(())
        } else {
            Err(format!("frames_in {frames:?}"))
        }
    })
    .await;

    // A late player: sequence starts, then the GOP from the last keyframe, byte for byte.
    let mut c = player(&url).await;
    let mut got = Vec::new();
    while got.len() < 5 {
        let m = next_media(&mut c, 5 * SEC).await.expect("media");
        if m.type_id != 18 {
            got.push((m.type_id, m.timestamp, m.payload.to_vec()));
        }
    }
    assert_eq!(
        got,
        vec![
            (9, 0, hevc_seq.to_vec()),
            (8, 0, opus_seq.to_vec()),
            (9, 80, key(2)),
            (8, 90, opus(3)),
            (9, 120, inter(4)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_replayed_whole() {
    let node = Node::start(&[]).await;
    let url = node.url("live/meta");
    let mut p = client(&url).await;
    p.publish().await.expect("publish");
    // @setDataFrame onMetaData with 20 fields, including ones rml_rtmp would drop.
    let mut props: Vec<(String, ringcast::rtmp::amf0::Amf0Value)> = Vec::new();
    for i in 0..20 {
        props.push((format!("field{i}"), (i as f64).into()));
    }
    props.push((
        "encoder".into(),
        "obs-output module (libobs version 30.0.0)".into(),
    ));
    let meta = ringcast::rtmp::amf0::encode_all(&[
        "@setDataFrame".into(),
        "onMetaData".into(),
        ringcast::rtmp::amf0::Amf0Value::EcmaArray(props.clone()),
    ]);
    p.send_media(18, 0, &meta).await.expect("send");
    let mut c = player(&url).await;
    let m = loop {
        let m = next_media(&mut c, 5 * SEC).await.expect("metadata");
        if m.type_id == 18 && m.payload.windows(10).any(|w| w == b"onMetaData") {
            break m;
        }
    };
    let values = ringcast::rtmp::amf0::decode_all(&m.payload).expect("AMF");
    assert_eq!(values[0].as_str(), Some("onMetaData"));
    assert_eq!(values[1], ringcast::rtmp::amf0::Amf0Value::EcmaArray(props));
}
