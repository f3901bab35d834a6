//! `ringcast-load`: load generator and measuring player for any RTMP server.
//!
//! Example: one 2.5 Mb/s synthetic stream to 500 players ramped at 100/s for 20 s, with the
//! server's CPU and memory:
//!   ringcast-load --url rtmp://127.0.0.1:1935/live/bench --players 500 --ramp 100 \
//!                 --duration 20 --server-pid $(pidof ringcast) --json out.json

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use ringcast::client::RtmpUrl;
use ringcast::load::publisher::Source;
use ringcast::load::report::Criteria;
use ringcast::load::synth::SynthProfile;
use ringcast::load::{flv, LoadPlan};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Publish {
    /// Generated stream with send stamps (see --bitrate, --fps, --gop, --audio-kbps).
    Synthetic,
    /// An FLV file looped in real time (--flv).
    File,
    /// No publisher: play what someone else publishes (or idle players on an empty stream).
    None,
}

#[derive(Parser, Debug)]
#[command(
    name = "ringcast-load",
    version,
    about = "RTMP load generator: publishers, players, delay, time to first frame"
)]
struct Cli {
    /// rtmp://HOST:PORT/APP/STREAM (or rtmps://, see --insecure and --ca); with --streams N
    /// the names are STREAM-0..STREAM-(N-1).
    #[arg(long)]
    url: String,
    /// Publish to this URL instead of --url (e.g. an origin, with players on an edge).
    #[arg(long)]
    publish_url: Option<String>,
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Players per stream.
    #[arg(long, default_value_t = 1)]
    players: usize,
    /// Players started per second (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Seconds players play.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds publishers run before players start.
    #[arg(long, default_value_t = 2.0)]
    lead: f64,
    #[arg(long, value_enum, default_value_t = Publish::Synthetic)]
    publish: Publish,
    /// Video bitrate of the synthetic stream, kb/s.
    #[arg(long, default_value_t = 2500)]
    bitrate: u64,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Frames per GOP (keyframe interval).
    #[arg(long, default_value_t = 60)]
    gop: u32,
    /// Audio bitrate of the synthetic stream, kb/s (0: no audio).
    #[arg(long, default_value_t = 64)]
    audio_kbps: u64,
    /// FLV file for --publish file.
    #[arg(long)]
    flv: Option<PathBuf>,
    /// Stamp the FLV file's H.264 pictures for delay and loss figures: an SEI NAL unit before
    /// each (the video still decodes, and SRS accepts it).
    #[arg(long)]
    stamp_flv: bool,
    /// Server process to measure (CPU seconds, RSS).
    #[arg(long)]
    server_pid: Option<u32>,
    /// A player whose delay p95 exceeds this is counted as behind.
    #[arg(long, default_value_t = 1000)]
    max_delay_ms: u64,
    /// A player that lost more than this share of frames is counted as behind.
    #[arg(long, default_value_t = 0.01)]
    max_loss: f64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Name of this run in the report.
    #[arg(long, default_value = "run")]
    label: String,
    /// Exit with status 1 when any player is behind or failed.
    #[arg(long)]
    fail_if_behind: bool,
    /// Players read their sockets at most every this many ms: a cheaper client for capacity
    /// runs (delay figures then include up to one interval). 0: read as data arrives.
    #[arg(long, default_value_t = 0)]
    read_interval_ms: u64,
    /// Players follow RTMP 302 redirects (up to 3), as SRS edges do.
    #[arg(long)]
    follow_redirects: bool,
    /// Players ask this node's route API (`http://HOST:PORT`, its `http.listen`) which edge to
    /// play from before they connect, as players that cannot follow an RTMP 302 do.
    #[arg(long)]
    route_url: Option<String>,
    /// Players play over HTTP-FLV from this base instead of RTMP:
    /// http://HOST:PORT/APP/STREAM[.flv] (names STREAM-0.flv.. with --streams N); publishers
    /// still publish to --publish-url, else --url, over RTMP.
    #[arg(long)]
    flv_url: Option<String>,
    /// For rtmps:// URLs: accept any server certificate (self-signed benchmark servers).
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    /// For rtmps:// URLs: trust the certificates of this PEM file (pinned, or as roots)
    /// instead of the system's.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Runtime worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let base = match RtmpUrl::parse(&cli.url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("ringcast-load: {e}");
            return ExitCode::from(2);
        }
    };
    let publish_base = match cli.publish_url.as_deref().map(RtmpUrl::parse).transpose() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("ringcast-load: --publish-url: {e}");
            return ExitCode::from(2);
        }
    };
    let any_tls = base.tls || publish_base.as_ref().is_some_and(|u| u.tls);
    let tls = if !any_tls {
        None
    } else {
        let config = match (&cli.ca, cli.insecure) {
            (Some(path), _) => ringcast::tls::ca_client_config("--ca", path),
            (None, true) => ringcast::tls::insecure_client_config(),
            (None, false) => ringcast::tls::platform_client_config(),
        };
        match config {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("ringcast-load: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let source = match cli.publish {
        Publish::None => None,
        Publish::Synthetic => Some(Source::Synthetic(SynthProfile {
            video_bps: cli.bitrate * 1000,
            fps: cli.fps.max(1),
            gop: cli.gop.max(1),
            audio_bps: cli.audio_kbps * 1000,
        })),
        Publish::File => {
            let Some(path) = &cli.flv else {
                eprintln!("ringcast-load: --publish file needs --flv FILE");
                return ExitCode::from(2);
            };
            let tags = match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| flv::parse(b.into()).map_err(|e| e.to_string()))
            {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("ringcast-load: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            };
            Some(Source::File {
                tags: Arc::new(tags),
                stamp: cli.stamp_flv,
            })
        }
    };
    let plan = LoadPlan {
        label: cli.label.clone(),
        base,
        publish_base,
        streams: cli.streams.max(1),
        source,
        players_per_stream: cli.players,
        ramp_per_sec: cli.ramp,
        duration: Duration::from_secs_f64(cli.duration.max(0.1)),
        lead: Duration::from_secs_f64(cli.lead.max(0.0)),
        server_pid: cli.server_pid,
        criteria: Criteria {
            max_delay: Duration::from_millis(cli.max_delay_ms),
            max_loss: cli.max_loss,
        },
        read_interval: Duration::from_millis(cli.read_interval_ms),
        follow_redirects: cli.follow_redirects,
        flv_base: cli.flv_url.clone(),
        route_api: cli.route_url.as_deref().map(|u| {
            u.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string()
        }),
        tls,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringcast-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(ringcast::load::run(plan));
    print!("{}", report.table());
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("ringcast-load: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if cli.fail_if_behind && (report.players_behind > 0 || !report.publisher_errors.is_empty()) {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
