//! The load tool's report: per-run aggregates as a human table and as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::player::PlayerStats;
use super::publisher::PublisherStats;

#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut values: Vec<f64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Some(Percentiles {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ServerUsage {
    pub pid: u32,
    pub cpu_seconds: f64,
    /// CPU time over wall time of the measured window (1.0 = one core busy).
    pub cpu_cores: f64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    pub rss_peak_kib: u64,
    pub cpu_seconds_per_gb: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub label: String,
    pub duration_s: f64,
    pub publishers: usize,
    pub publisher_errors: Vec<String>,
    pub published_video_frames: u64,
    pub players: usize,
    pub players_connected: usize,
    pub players_with_errors: usize,
    pub error_samples: Vec<String>,
    /// Players that lost frames, exceeded the delay limit, or failed.
    pub players_behind: usize,
    pub egress_gbps: f64,
    pub player_kbps: Option<Percentiles>,
    pub player_fps: Option<Percentiles>,
    pub delay_ms: Option<Percentiles>,
    pub ttff_ms: Option<Percentiles>,
    pub loss_max: f64,
    /// Each player's longest pause between two video frames.
    pub max_gap_ms: Option<Percentiles>,
    /// Over all players: stamped frames skipped, seen twice, with a timestamp going back, and
    /// the largest timestamp step between consecutive frames (ms).
    pub missing_frames: u64,
    pub repeated_frames: u64,
    pub timestamps_backward: u64,
    pub max_timestamp_step_ms: u32,
    pub server: Option<ServerUsage>,
    /// CPU the load tool itself used over the window (cores); near 1.0 per worker thread
    /// means the tool, not the server, may be the limit.
    pub load_tool_cores: f64,
    /// Connected players by the server (`host:port`) they played from: after a route lookup
    /// or redirects, how a balancer spread them.
    pub players_by_server: std::collections::BTreeMap<String, usize>,
}

pub struct Criteria {
    pub max_delay: Duration,
    pub max_loss: f64,
}

impl Report {
    pub fn build(
        label: &str,
        window: Duration,
        publishers: &[PublisherStats],
        players: &[PlayerStats],
        criteria: &Criteria,
    ) -> Report {
        let secs = window.as_secs_f64().max(1e-3);
        let total_bytes: u64 = players.iter().map(|p| p.bytes).sum();
        let mut errors: Vec<String> = players.iter().filter_map(|p| p.error.clone()).collect();
        errors.sort();
        errors.dedup();
        let behind = players
            .iter()
            .filter(|p| {
                let mut delays: Vec<f64> = p.delays_us.iter().map(|&d| d as f64).collect();
                let p95 = Percentiles::of(std::mem::take(&mut delays)).map_or(0.0, |x| x.p95);
                p.error.is_some()
                    || !p.connected
                    || p.video_frames == 0
                    || p.loss() > criteria.max_loss
                    || p95 > criteria.max_delay.as_micros() as f64
            })
            .count();
        let active = |p: &PlayerStats| p.active.as_secs_f64().max(1e-3);
        Report {
            label: label.to_string(),
            duration_s: secs,
            publishers: publishers.len(),
            publisher_errors: publishers.iter().filter_map(|p| p.error.clone()).collect(),
            published_video_frames: publishers.iter().map(|p| p.video_frames).sum(),
            players: players.len(),
            players_connected: players.iter().filter(|p| p.connected).count(),
            players_with_errors: players.iter().filter(|p| p.error.is_some()).count(),
            error_samples: errors.into_iter().take(5).collect(),
            players_behind: behind,
            players_by_server: players.iter().filter_map(|p| p.server.clone()).fold(
                std::collections::BTreeMap::new(),
                |mut by, server| {
                    *by.entry(server).or_insert(0) += 1;
                    by
                },
            ),
            egress_gbps: total_bytes as f64 * 8.0 / secs / 1e9,
            player_kbps: Percentiles::of(
                players
                    .iter()
                    .map(|p| p.bytes as f64 * 8.0 / active(p) / 1000.0)
                    .collect(),
            ),
            player_fps: Percentiles::of(
                players
                    .iter()
                    .map(|p| p.video_frames as f64 / active(p))
                    .collect(),
            ),
            delay_ms: Percentiles::of(
                players
                    .iter()
                    .flat_map(|p| p.delays_us.iter().map(|&d| d as f64 / 1000.0))
                    .collect(),
            ),
            ttff_ms: Percentiles::of(
                players
                    .iter()
                    .filter_map(|p| p.ttff.map(|d| d.as_secs_f64() * 1000.0))
                    .collect(),
            ),
            loss_max: players.iter().map(|p| p.loss()).fold(0.0, f64::max),
            max_gap_ms: Percentiles::of(
                players
                    .iter()
                    .filter(|p| p.stamped_frames > 1)
                    .map(|p| p.max_gap.as_secs_f64() * 1000.0)
                    .collect(),
            ),
            missing_frames: players.iter().map(|p| p.missing_frames).sum(),
            repeated_frames: players.iter().map(|p| p.repeated_frames).sum(),
            timestamps_backward: players.iter().map(|p| p.timestamps_backward).sum(),
            max_timestamp_step_ms: players
                .iter()
                .map(|p| p.max_timestamp_step_ms)
                .max()
                .unwrap_or(0),
            server: None,
            load_tool_cores: 0.0,
        }
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let pct = |p: &Option<Percentiles>| match p {
            Some(p) => format!(
                "p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
                p.p50, p.p95, p.p99, p.max
            ),
            None => "-".into(),
        };
        let _ = writeln!(s, "== {} ({:.1} s)", self.label, self.duration_s);
        let _ = writeln!(
            s,
            "publishers        {} ({} video frames sent, {} errors)",
            self.publishers,
            self.published_video_frames,
            self.publisher_errors.len()
        );
        let _ = writeln!(
            s,
            "players           {} connected of {}, {} with errors, {} behind",
            self.players_connected, self.players, self.players_with_errors, self.players_behind
        );
        if self.players_by_server.len() > 1 {
            let by: Vec<String> = self
                .players_by_server
                .iter()
                .map(|(server, n)| format!("{server} {n}"))
                .collect();
            let _ = writeln!(s, "players by server {}", by.join(", "));
        }
        let _ = writeln!(s, "egress            {:.3} Gb/s", self.egress_gbps);
        let _ = writeln!(s, "player kb/s       {}", pct(&self.player_kbps));
        let _ = writeln!(s, "player video fps  {}", pct(&self.player_fps));
        let _ = writeln!(s, "delay ms          {}", pct(&self.delay_ms));
        let _ = writeln!(s, "first frame ms    {}", pct(&self.ttff_ms));
        let _ = writeln!(s, "worst loss        {:.2} %", self.loss_max * 100.0);
        let _ = writeln!(s, "longest gap ms    {}", pct(&self.max_gap_ms));
        let _ = writeln!(
            s,
            "continuity        {} missing, {} repeated, {} timestamps back, largest step {} ms",
            self.missing_frames,
            self.repeated_frames,
            self.timestamps_backward,
            self.max_timestamp_step_ms
        );
        if let Some(u) = &self.server {
            let _ = writeln!(
                s,
                "server pid {}     cpu {:.2} s ({:.2} cores), {} cpu-s/GB; rss {} -> {} KiB (peak {})",
                u.pid,
                u.cpu_seconds,
                u.cpu_cores,
                u.cpu_seconds_per_gb
                    .map_or("-".into(), |c| format!("{c:.3}")),
                u.rss_start_kib,
                u.rss_end_kib,
                u.rss_peak_kib
            );
        }
        let _ = writeln!(s, "load tool cpu     {:.2} cores", self.load_tool_cores);
        for e in &self.error_samples {
            let _ = writeln!(s, "error sample      {e}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_behind_players() {
        let p = Percentiles::of((1..=100).map(|v| v as f64).collect()).expect("values");
        assert_eq!((p.p50, p.p99, p.max), (51.0, 99.0, 100.0));
        assert!(Percentiles::of(vec![]).is_none());

        let good = PlayerStats {
            connected: true,
            video_frames: 100,
            bytes: 1_000_000,
            delays_us: vec![2_000; 100],
            first_seq: Some(0),
            last_seq: Some(99),
            stamped_frames: 100,
            active: Duration::from_secs(4),
            ..Default::default()
        };
        let lossy = PlayerStats {
            stamped_frames: 50,
            ..good.clone()
        };
        let late = PlayerStats {
            delays_us: vec![2_000_000; 100],
            ..good.clone()
        };
        let criteria = Criteria {
            max_delay: Duration::from_secs(1),
            max_loss: 0.01,
        };
        let r = Report::build(
            "t",
            Duration::from_secs(4),
            &[],
            &[good, lossy, late],
            &criteria,
        );
        assert_eq!(r.players_behind, 2);
        assert!((r.loss_max - 0.5).abs() < 1e-9);
        assert!((r.egress_gbps - 0.006).abs() < 1e-9);
        assert!(r.table().contains("2 behind"));
    }
}
