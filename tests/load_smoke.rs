//! A CI-sized run of ringcast-load against the real binary: asserts delivery, not speed.

mod common;

use std::time::Duration;

use common::*;
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tool_publishes_and_every_player_receives() {
    let node = Node::start(&[]).await;
    let dir = std::env::temp_dir().join(format!("ringcast-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let json = dir.join("report.json");
    let pid = node.pid().to_string();
    let url = node.url("live/smoke");
    let json_path = json.to_string_lossy().to_string();
    let (ok, out, err) = run(
        Command::new(env!("CARGO_BIN_EXE_ringcast-load")).args([
            "--url",
            &url,
            "--streams",
            "2",
            "--players",
            "10",
            "--ramp",
            "50",
            "--duration",
            "4",
            "--lead",
            "1",
            "--bitrate",
            "1000",
            "--fps",
            "25",
            "--gop",
            "25",
            "--server-pid",
            &pid,
            "--json",
            &json_path,
            "--fail-if-behind",
        ]),
        Duration::from_secs(30),
    )
    .await;
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
            .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "ringcast-load failed:\n{out}\n{err}");
    eprintln!("{out}");
    assert_eq!(report["publishers"], 2);
    assert_eq!(report["players"], 20);
    assert_eq!(report["players_connected"], 20);
    assert_eq!(report["players_behind"], 0);
    assert!(report["published_video_frames"].as_u64().unwrap_or(0) >= 2 * 25 * 4);
    // Every player got video at roughly the stream's frame rate and started on a keyframe.
    assert!(
        report["player_fps"]["p50"].as_f64().unwrap_or(0.0) > 20.0,
        "{report}"
    );
    assert!(report["ttff_ms"]["max"].as_f64().is_some(), "{report}");
    assert!(report["delay_ms"]["p50"].as_f64().is_some(), "{report}");
    assert!(
        report["server"]["cpu_seconds"].as_f64().is_some(),
        "{report}"
    );
    assert!(report["egress_gbps"].as_f64().unwrap_or(0.0) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tool_replays_an_flv_file() {
    let node = Node::start(&[]).await;
    let dir = std::env::temp_dir().join(format!("ringcast-flv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let flv = dir.join("clip.flv").to_string_lossy().to_string();
    let (ok, _, err) = run(
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-t",
            "2",
            "-f",
            "flv",
            "-y",
            &flv,
        ]),
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "ffmpeg: {err}");
    let url = node.url("live/file");
    let (ok, out, err) = run(
        Command::new(env!("CARGO_BIN_EXE_ringcast-load")).args([
            "--url",
            &url,
            "--publish",
            "file",
            "--flv",
            &flv,
            "--stamp-flv",
            "--players",
            "5",
            "--duration",
            "4",
            "--lead",
            "1",
            "--fail-if-behind",
        ]),
        Duration::from_secs(30),
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "ringcast-load failed:\n{out}\n{err}");
    // The 2 s clip loops: 4 s of play at 25 fps is about 100 frames per player.
    assert!(out.contains("5 connected of 5"), "{out}");
    assert!(out.contains("0 behind"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tool_players_play_over_http_flv() {
    let node = Node::start(&[("RINGCAST_FLV__LISTEN", "127.0.0.1:0")]).await;
    let dir = std::env::temp_dir().join(format!("ringcast-load-flv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let json = dir.join("report.json").to_string_lossy().to_string();
    let flv = format!("http://{}/live/smoke", node.flv.as_deref().expect("flv"));
    let (ok, out, err) = run(
        Command::new(env!("CARGO_BIN_EXE_ringcast-load")).args([
            "--url",
            &node.url("live/smoke"),
            "--flv-url",
            &flv,
            "--streams",
            "2",
            "--players",
            "10",
            "--ramp",
            "50",
            "--duration",
            "4",
            "--lead",
            "1",
            "--fps",
            "25",
            "--gop",
            "25",
            "--json",
            &json,
            "--fail-if-behind",
        ]),
        Duration::from_secs(30),
    )
    .await;
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
            .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "ringcast-load failed:\n{out}\n{err}");
    eprintln!("{out}");
    assert_eq!(report["players_connected"], 20, "{report}");
    assert_eq!(report["players_behind"], 0, "{report}");
    assert_eq!(report["missing_frames"], 0, "{report}");
    assert!(
        report["player_fps"]["p50"].as_f64().unwrap_or(0.0) > 20.0,
        "{report}"
    );
    let servers = report["players_by_server"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        servers.keys().collect::<Vec<_>>(),
        vec![node.flv.as_ref().expect("flv")],
        "every player played from the HTTP-FLV listener: {report}"
    );
}
