//! `ringcast-load`: publishers and players against any RTMP server (ringcast, nginx-rtmp, SRS),
//! measuring what viewers feel and what the server spends. Built to stay cheaper than the
//! server it measures: players parse chunks and look at tag headers, never decode.

pub mod flv;
pub mod http_flv;
pub mod player;

pub mod publisher;
pub mod report;
pub mod synth;

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::RtmpUrl;
use player::PlayerStats;
use publisher::{PublisherStats, Source};
use report::{Criteria, Report, ServerUsage};

pub struct LoadPlan {
    pub label: String,
    /// `rtmp://host:port/app/name`; with several streams they are `name-0`, `name-1`, ...
    pub base: RtmpUrl,
    /// Where publishers publish, when not `base` (e.g. an origin, with players on an edge).
    pub publish_base: Option<RtmpUrl>,
    pub streams: usize,
    /// What to publish on each stream; `None` plays streams published by someone else (or
    /// nobody: idle players).
    pub source: Option<Source>,
    pub players_per_stream: usize,
    /// Players started per second (0: all at once).
    pub ramp_per_sec: f64,
    /// How long players play, from the first player's start.
    pub duration: Duration,
    /// Publishers start this long before players, so a GOP is cached.
    pub lead: Duration,
    pub server_pid: Option<u32>,
    pub criteria: Criteria,
    /// Players read their sockets at most this often (0: as data arrives).
    pub read_interval: Duration,
    /// Players follow RTMP 302 redirects.
    pub follow_redirects: bool,
    /// `host:port` of a node whose route API players ask before connecting.
    pub route_api: Option<String>,
    /// Players play over HTTP-FLV from `http://HOST:PORT/APP/STREAM` (`.flv` is added, with
    /// `-N` before it when there are several streams) instead of RTMP.
    pub flv_base: Option<String>,
    /// Whom `rtmps://` URLs may connect to (`--insecure`, `--ca`, else the system's roots).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl LoadPlan {
    /// Stream `i`'s URL for players.
    pub fn stream_url(&self, i: usize) -> RtmpUrl {
        Self::nth(&self.base, self.streams, i)
    }

    /// Stream `i`'s URL for its publisher.
    pub fn publish_url(&self, i: usize) -> RtmpUrl {
        Self::nth(
            self.publish_base.as_ref().unwrap_or(&self.base),
            self.streams,
            i,
        )
    }

    /// Stream `i`'s HTTP-FLV URL from `base` (`http://HOST:PORT/APP/STREAM[?query]`).
    pub fn flv_url(&self, base: &str, i: usize) -> String {
        let (path, query) = base.split_once('?').unwrap_or((base, ""));
        let path = path.strip_suffix(".flv").unwrap_or(path);
        let name = if self.streams > 1 {
            format!("{path}-{i}.flv")
        } else {
            format!("{path}.flv")
        };
        if query.is_empty() {
            name
        } else {
            format!("{name}?{query}")
        }
    }

    fn nth(base: &RtmpUrl, streams: usize, i: usize) -> RtmpUrl {
        let mut url = base.clone();
        if streams > 1 {
            url.stream = format!("{}-{i}", base.stream);
        }
        url
    }
}

pub async fn run(plan: LoadPlan) -> Report {
    let lead = if plan.source.is_some() {
        plan.lead
    } else {
        Duration::ZERO
    };
    let players_start = Instant::now() + lead;
    let end = players_start + plan.duration;

    let mut publishers = JoinSet::new();
    if let Some(source) = &plan.source {
        for i in 0..plan.streams {
            publishers.spawn(publisher::run(
                plan.publish_url(i),
                source.clone(),
                end,
                plan.tls.clone(),
            ));
        }
    }
    tokio::time::sleep_until(players_start).await;

    let cpu_start = plan.server_pid.and_then(crate::procstat::cpu_time);
    let own_cpu_start = crate::procstat::cpu_time(std::process::id());
    let rss_start = plan
        .server_pid
        .and_then(crate::procstat::rss_kib)
        .unwrap_or(0);
    let mut rss_peak = rss_start;
    let mut players = JoinSet::new();
    let total = plan.streams * plan.players_per_stream;
    let gap = if plan.ramp_per_sec > 0.0 {
        Duration::from_secs_f64(1.0 / plan.ramp_per_sec)
    } else {
        Duration::ZERO
    };
    // Delay and loss describe the steady state: from one second after the last player joined.
    let ramp = gap * total as u32;
    let settle = (ramp + Duration::from_secs(1)).min(plan.duration / 2);
    let measure_from_us = synth::now_micros() + settle.as_micros() as u64;
    for n in 0..total {
        // Round-robin over streams so every stream ramps up together.
        let url = plan.stream_url(n % plan.streams);
        let target = match (&plan.flv_base, &plan.route_api) {
            (Some(base), _) => player::Target::Flv(plan.flv_url(base, n % plan.streams)),
            (None, Some(api)) => player::Target::Route {
                api: api.clone(),
                url,
            },
            (None, None) => player::Target::Url(url),
        };
        let opts = player::PlayerOptions {
            read_interval: plan.read_interval,
            measure_from_us,
            follow_redirects: plan.follow_redirects,
            tls: plan.tls.clone(),
        };
        players.spawn(player::run(target, end, opts));
        if !gap.is_zero() {
            tokio::time::sleep_until(players_start + gap * (n as u32 + 1)).await;
        }
    }
    let mut player_stats: Vec<PlayerStats> = Vec::with_capacity(total);
    let mut sample = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            joined = players.join_next() => match joined {
                Some(Ok(stats)) => player_stats.push(stats),
                Some(Err(e)) => player_stats.push(PlayerStats { error: Some(e.to_string()), ..Default::default() }),
                None => break,
            },
            _ = sample.tick() => {
                if let Some(rss) = plan.server_pid.and_then(crate::procstat::rss_kib) {
                    rss_peak = rss_peak.max(rss);
                }
            }
        }
    }
    let cpu_end = plan.server_pid.and_then(crate::procstat::cpu_time);
    let own_cpu_end = crate::procstat::cpu_time(std::process::id());
    let rss_end = plan
        .server_pid
        .and_then(crate::procstat::rss_kib)
        .unwrap_or(0);

    let mut publisher_stats: Vec<PublisherStats> = Vec::new();
    while let Some(joined) = publishers.join_next().await {
        publisher_stats.push(joined.unwrap_or_else(|e| PublisherStats {
            error: Some(e.to_string()),
            ..Default::default()
        }));
    }
    let mut report = Report::build(
        &plan.label,
        plan.duration,
        &publisher_stats,
        &player_stats,
        &plan.criteria,
    );
    if let (Some(a), Some(b)) = (own_cpu_start, own_cpu_end) {
        report.load_tool_cores =
            b.saturating_sub(a).as_secs_f64() / plan.duration.as_secs_f64().max(1e-3);
    }
    if let (Some(pid), Some(a), Some(b)) = (plan.server_pid, cpu_start, cpu_end) {
        let cpu = b.saturating_sub(a).as_secs_f64();
        let gb = player_stats.iter().map(|p| p.bytes).sum::<u64>() as f64 / 1e9;
        report.server = Some(ServerUsage {
            pid,
            cpu_seconds: cpu,
            cpu_cores: cpu / plan.duration.as_secs_f64().max(1e-3),
            rss_start_kib: rss_start,
            rss_end_kib: rss_end,
            rss_peak_kib: rss_peak.max(rss_end),
            cpu_seconds_per_gb: (gb > 0.0).then(|| cpu / gb),
        });
    }
    report
}
