//! A rolling update's move of a forwarded stream, with real processes: ffmpeg publishes
//! through one edge, the project's client and rtmpdump play through the other, the origin
//! holding the stream gets SIGTERM; the stream moves to its new owner make-before-break, and
//! every player sees no gap over 100 ms, no lost or repeated frame and one continuous
//! timeline. Alone in its test binary: it measures gaps, so nothing else should share the
//! machine's cores with it.

mod common;

use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::watch;

use common::fleet::{
    all_agree, locate_everywhere, relay_entry, test_secret, wait_for, wait_for_value, Fleet,
};
use common::*;
use ringcast::client::{Incoming, RtmpClient};

const SEC: Duration = Duration::from_secs(1);
/// ffmpeg's test stream: 25 fps, so video timestamps step 40 ms.
const FRAME_MS: u32 = 40;

/// Video frames a player received: (arrival, RTMP timestamp), sequence headers left out.
type Frames = Vec<(Instant, u32)>;

/// Each player reads on its own task until `stop` turns true and records its video frames; a
/// player that loses its connection (or gets nothing for 10 s) is an error.
fn record_frames(
    players: Vec<RtmpClient>,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Result<Frames, String>>> {
    players
        .into_iter()
        .map(|mut p| {
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut frames = Vec::new();
                loop {
                    tokio::select! {
                        _ = stop.changed() => return Ok(frames),
                        ev = tokio::time::timeout(10 * SEC, p.next()) => match ev {
                            Ok(Ok(Incoming::Media(m)))
                                if m.type_id == 9 && !is_video_sequence_header(&m) =>
                            {
                                frames.push((Instant::now(), m.timestamp))
                            }
                            Ok(Ok(_)) => {}
                            other => {
                                return Err(format!(
                                    "player lost its connection after {} frames: {other:?}",
                                    frames.len()
                                ))
                            }
                        },
                    }
                }
            })
        })
        .collect()
}

/// Steps between consecutive video timestamps that are not one frame interval: (index, from,
/// to). Empty for a stream with no lost, repeated or shifted frame.
fn timeline_breaks(timestamps: &[u32]) -> Vec<(usize, u32, u32)> {
    timestamps
        .windows(2)
        .enumerate()
        .filter(|(_, w)| !(FRAME_MS - 1..=FRAME_MS + 1).contains(&w[1].wrapping_sub(w[0])))
        .map(|(i, w)| (i, w[0], w[1]))
        .collect()
}

/// The longest pause between two frames, and when it ended.
fn largest_gap(frames: &Frames) -> (Duration, Option<Instant>) {
    frames
        .windows(2)
        .map(|w| (w[1].0.duration_since(w[0].0), Some(w[1].0)))
        .max()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_origin_hands_a_forwarded_stream_over_make_before_break() {
    // Gaps are measured frame by frame: the edges write each frame at once instead of
    // merging writes for the latency budget (origins never merge for relays).
    let mut fleet = Fleet::start_with(
        &test_secret("rolling-move"),
        3,
        2,
        &[("RINGCAST_RTMP__MERGE_WRITE_MS", "0")],
    )
    .await;
    wait_for("five nodes agree", 20 * SEC, || all_agree(&fleet)).await;
    let key = "live/rolling";
    let mut ffmpeg = ffmpeg_publish(&fleet.node("edge-0").url(key), 90, 25);
    let holder = wait_for_value("the stream held by an origin", 20 * SEC, || async {
        match locate_everywhere(&fleet, key).await? {
            (n, s, _) if s == "gossip" => Ok(n),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Two players of the project's client and one rtmpdump, all on the other edge.
    let (edge_in, edge_out) = (fleet.node("edge-0"), fleet.node("edge-1"));
    let mut players = Vec::new();
    for _ in 0..2 {
        let mut p = player(&edge_out.url(key)).await;
        assert!(wait_video(&mut p, 30, 10 * SEC).await >= 30);
        players.push(p);
    }
    let flv = std::env::temp_dir().join(format!("ringcast-rolling-{}.flv", std::process::id()));
    let mut rtmpdump = Command::new("rtmpdump")
        .args(["-q", "-r", &edge_out.url(key), "--live", "-o"])
        .arg(&flv)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rtmpdump (apt-get install rtmpdump)");
    let (stop_tx, stop_rx) = watch::channel(false);
    let recorders = record_frames(players, &stop_rx);
    tokio::time::sleep(2 * SEC).await;

    // SIGTERM the origin holding the stream: it drains.
    let mark_in = edge_in.log_mark();
    let mark_out = edge_out.log_mark();
    let drained_at = Instant::now();
    fleet.node(&holder).signal("TERM");
    let next = wait_for_value("edge-0 pushes to the new owner", 20 * SEC, || async {
        match relay_entry(edge_in, key, "push").await {
            Some(r) if r["state"] == "pushing" && r["upstream_node"] != holder.as_str() => {
                Ok(r["upstream_node"].as_str().unwrap_or_default().to_string())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    edge_out
        .wait_log_since(mark_out, "switched upstream make-before-break", 20 * SEC)
        .await;
    edge_in
        .wait_log_since(mark_in, "push to the draining origin closed", 20 * SEC)
        .await;
    let old = fleet
        .nodes
        .iter_mut()
        .find(|(id, _)| *id == holder)
        .map(|(_, n)| n)
        .expect("the holder");
    let status = old
        .wait_exit(30 * SEC)
        .await
        .expect("the drained origin exits once the stream left it");
    assert!(status.success(), "{status:?}");
    assert!(old.log_contains("drained: nothing left to serve"));
    let moved_in = drained_at.elapsed();
    tokio::time::sleep(3 * SEC).await;
    let _ = stop_tx.send(true);
    let _ = rtmpdump.start_kill();
    let _ = rtmpdump.wait().await;

    // The publisher never noticed.
    assert!(
        ffmpeg.try_wait().expect("ffmpeg status").is_none(),
        "ffmpeg must still be publishing"
    );
    let edge_out = fleet.node("edge-1");
    match relay_entry(edge_out, key, "pull").await {
        Some(r) => assert_eq!(r["upstream_node"], next.as_str(), "{r}"),
        None => panic!("edge-1 no longer pulls {key}"),
    }
    for (i, recorder) in recorders.into_iter().enumerate() {
        let frames = recorder
            .await
            .expect("join")
            .expect("player stays connected");
        let (gap, gap_at) = largest_gap(&frames);
        let timestamps: Vec<u32> = frames.iter().map(|f| f.1).collect();
        let breaks = timeline_breaks(&timestamps);
        let at = gap_at.map(|t| {
            t.duration_since(drained_at.min(t)).as_secs_f64() - {
                if t < drained_at {
                    drained_at.duration_since(t).as_secs_f64()
                } else {
                    0.0
                }
            }
        });
        eprintln!(
            "player {i}: {} frames over the move ({moved_in:?}), largest gap {gap:?} ending \
             {at:?} s after the SIGTERM, timeline breaks {breaks:?}",
            frames.len(),
        );
        let long: Vec<String> = frames
            .windows(2)
            .filter(|w| w[1].0.duration_since(w[0].0) > Duration::from_millis(60))
            .map(|w| {
                let end = w[1].0;
                let at = if end >= drained_at {
                    end.duration_since(drained_at).as_secs_f64()
                } else {
                    -drained_at.duration_since(end).as_secs_f64()
                };
                format!(
                    "{:?} at {at:+.2} s ts {}",
                    w[1].0.duration_since(w[0].0),
                    w[1].1
                )
            })
            .collect();
        eprintln!("player {i}: pauses over 60 ms: {long:?}");
        assert!(breaks.is_empty(), "player {i}: {breaks:?}");
        assert!(gap < Duration::from_millis(100), "player {i}: gap {gap:?}");
        assert!(
            frames.len() as f64 >= moved_in.as_secs_f64() * 25.0,
            "player {i}: only {} frames in {moved_in:?}",
            frames.len()
        );
    }
    let recording = std::fs::read(&flv).expect("rtmpdump's recording");
    let tags = ringcast::load::flv::parse(recording.into()).expect("an FLV recording");
    let video: Vec<u32> = tags
        .iter()
        .filter(|t| t.type_id == 9 && t.data.get(1) == Some(&1))
        .map(|t| t.timestamp)
        .collect();
    let breaks = timeline_breaks(&video);
    let (_, probed, _) = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(&flv),
        20 * SEC,
    )
    .await;
    let _ = std::fs::remove_file(&flv);
    eprintln!(
        "rtmpdump: {} video frames recorded, {} decoded by ffprobe, timeline breaks {breaks:?}",
        video.len(),
        probed.trim()
    );
    assert!(breaks.is_empty(), "rtmpdump: {breaks:?}");
    assert!(video.len() as f64 >= moved_in.as_secs_f64() * 25.0);
    assert_eq!(
        probed.trim(),
        video.len().to_string(),
        "every frame decodes"
    );
    let _ = ffmpeg.start_kill();
}
