//! Load-tool players: connect, play, read and parse chunks without decoding, and record what a
//! viewer would feel — time to first frame, delay, loss, bitrate.

use std::time::Duration;

use tokio::time::Instant;

use super::synth::{now_micros, read_stamp};
use crate::client::{ClientOptions, Incoming, RtmpClient, RtmpUrl};
use crate::media::tag::inspect_video;
use crate::rtmp::MSG_VIDEO;

#[derive(Debug, Default, Clone)]
pub struct PlayerStats {
    pub connected: bool,
    /// Connect start to the first video keyframe.
    pub ttff: Option<Duration>,
    pub video_frames: u64,
    pub bytes: u64,
    /// Publisher-to-player delay of every stamped frame sent after the player connected and
    /// after the ramp (frames from the fast-start cache are older by design and not delay),
    /// microseconds.
    pub delays_us: Vec<u32>,
    /// Stamped sequence numbers seen: first and last, to compute loss.
    pub first_seq: Option<u32>,
    pub last_seq: Option<u32>,
    pub stamped_frames: u64,
    pub error: Option<String>,
    /// How long the player was receiving (for its bitrate).
    pub active: Duration,
    /// `host:port` of the server it ended up playing from (after a route lookup or redirects).
    pub server: Option<String>,
    /// The longest pause between two stamped video frames arriving (after the ramp): what a
    /// viewer sees as a freeze.
    pub max_gap: Duration,
    /// Stamped frames skipped (a sequence number jumped ahead) and seen again (a number at or
    /// before the last one): a failover or handover that loses or repeats frames.
    pub missing_frames: u64,
    pub repeated_frames: u64,
    /// Stamped frames whose RTMP timestamp went backwards, and the largest forward step
    /// between consecutive ones (ms): a continuous timeline has neither a step back nor a
    /// jump much over one frame interval.
    pub timestamps_backward: u64,
    pub max_timestamp_step_ms: u32,
}

impl PlayerStats {
    /// Records one stamped video frame (`seq`, RTMP `timestamp`) arriving `at`; `measured`:
    /// sent after the ramp, so its arrival counts for gaps.
    fn stamped(&mut self, seq: u32, timestamp: u32, at: Instant, measured: bool, last: &mut Last) {
        if let Some((prev_seq, prev_ts, prev_at)) = last.frame {
            if seq > prev_seq.wrapping_add(1) {
                self.missing_frames += u64::from(seq - prev_seq - 1);
            } else if seq <= prev_seq {
                self.repeated_frames += 1;
                return;
            }
            if timestamp < prev_ts {
                self.timestamps_backward += 1;
            } else {
                self.max_timestamp_step_ms = self.max_timestamp_step_ms.max(timestamp - prev_ts);
            }
            if measured && last.measuring {
                self.max_gap = self.max_gap.max(at.duration_since(prev_at));
            }
        }
        last.frame = Some((seq, timestamp, at));
        last.measuring = measured;
        self.first_seq.get_or_insert(seq);
        self.last_seq = Some(seq);
        self.stamped_frames += 1;
    }

    /// Share of stamped frames between the first and last seen that never arrived.
    pub fn loss(&self) -> f64 {
        match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) if b >= a => {
                let expected = (b - a + 1) as f64;
                (1.0 - self.stamped_frames as f64 / expected).max(0.0)
            }
            _ => 0.0,
        }
    }
}

/// The previous stamped frame a player saw: (seq, timestamp, arrival), and whether it counted.
#[derive(Default)]
struct Last {
    frame: Option<(u32, u32, Instant)>,
    measuring: bool,
}

/// How a load-tool player behaves.
#[derive(Debug, Clone)]
pub struct PlayerOptions {
    /// Read the socket at most this often (fewer, larger reads: a cheaper client for
    /// capacity runs; delay figures then include up to one interval). Zero: as data arrives.
    pub read_interval: Duration,
    /// Record delay for frames sent at or after this wall-clock time (µs): the steady state
    /// after every player has joined, not the ramp.
    pub measure_from_us: u64,
    /// Follow RTMP 302 redirects (up to 3), as SRS edges and Flash-era players do.
    pub follow_redirects: bool,
    /// Whom `rtmps://` URLs may connect to.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Where a player connects: the URL itself, or the one a balancer's route API names.
#[derive(Debug, Clone)]
pub enum Target {
    Url(RtmpUrl),
    /// Ask `GET http://{api}/api/v1/cluster/route?stream=APP/STREAM` first, then play the
    /// `url` it answers (with the query of `url`).
    Route {
        api: String,
        url: RtmpUrl,
    },
    /// Play over HTTP-FLV: `http://HOST:PORT/APP/STREAM.flv[?query]` (redirects followed).
    Flv(String),
}

/// Plays `target` until `until`.
pub async fn run(target: Target, until: Instant, opts: PlayerOptions) -> PlayerStats {
    let mut stats = PlayerStats::default();
    let started = Instant::now();
    let result = tokio::time::timeout_at(until, async {
        let url = match target {
            Target::Url(url) => url,
            Target::Route { api, url } => route(&api, &url).await?,
            Target::Flv(url) => return play_flv(&url, started, opts, &mut stats).await,
        };
        play(&url, started, opts, &mut stats).await
    })
    .await;
    stats.active = started.elapsed();
    match result {
        Ok(Err(e)) => stats.error = Some(e.to_string()),
        Ok(Ok(())) => stats.error = Some("server ended the stream".into()),
        Err(_) => {} // ran to the end
    }
    stats
}

async fn play(
    url: &RtmpUrl,
    started: Instant,
    opts: PlayerOptions,
    stats: &mut PlayerStats,
) -> Result<(), crate::client::ClientError> {
    let joined_at = now_micros().max(opts.measure_from_us);
    let read_interval = opts.read_interval;
    let client_opts = ClientOptions {
        tls: opts.tls.clone(),
        ..ClientOptions::default()
    };
    let mut c = if opts.follow_redirects {
        RtmpClient::connect_following(url, client_opts, false, 3)
            .await?
            .0
    } else {
        let mut c = RtmpClient::connect(url, client_opts).await?;
        c.play().await?;
        c
    };
    stats.connected = true;
    stats.server = Some(c.url.authority());
    let mut next_read = Instant::now();
    let mut last = Last::default();
    loop {
        let ev = match c.try_next()? {
            Some(ev) => ev,
            None => {
                if !read_interval.is_zero() {
                    next_read += read_interval;
                    tokio::time::sleep_until(next_read).await;
                }
                c.fill().await?;
                stats.bytes = c.bytes_in();
                continue;
            }
        };
        let msg = match ev {
            Incoming::Media(m) => m,
            Incoming::Status(s) if s.code == "NetStream.Play.Stop" => return Ok(()),
            _ => continue,
        };
        if msg.type_id != MSG_VIDEO {
            continue;
        }
        let info = inspect_video(&msg.payload);
        if info.sequence_header || info.command {
            continue;
        }
        stats.video_frames += 1;
        if stats.ttff.is_none() && info.keyframe {
            stats.ttff = Some(started.elapsed());
        }
        if let Some((sent, seq)) = read_stamp(&msg.payload) {
            let measured = sent >= joined_at;
            if measured {
                let delay = now_micros().saturating_sub(sent).min(u32::MAX as u64) as u32;
                stats.delays_us.push(delay);
            }
            stats.stamped(seq, msg.timestamp, Instant::now(), measured, &mut last);
        }
    }
}

/// Plays `url` over HTTP-FLV, recording what [`play`] records.
async fn play_flv(
    url: &str,
    started: Instant,
    opts: PlayerOptions,
    stats: &mut PlayerStats,
) -> Result<(), crate::client::ClientError> {
    let fail = |e: super::http_flv::HttpFlvError| crate::client::ClientError::Refused {
        call: "http-flv",
        code: "http".into(),
        description: e.to_string(),
        info: crate::rtmp::amf0::Amf0Value::Null,
    };
    let joined_at = now_micros().max(opts.measure_from_us);
    let redirects = if opts.follow_redirects { 3 } else { 0 };
    let mut p = super::http_flv::HttpFlvPlayer::connect(url, redirects)
        .await
        .map_err(fail)?;
    stats.connected = true;
    stats.server = Some(p.server.clone());
    let mut last = Last::default();
    while let Some(tag) = p.next_tag().await.map_err(fail)? {
        stats.bytes = p.bytes_in();
        if tag.type_id != MSG_VIDEO {
            continue;
        }
        let info = inspect_video(&tag.data);
        if info.sequence_header || info.command {
            continue;
        }
        stats.video_frames += 1;
        if stats.ttff.is_none() && info.keyframe {
            stats.ttff = Some(started.elapsed());
        }
        if let Some((sent, seq)) = read_stamp(&tag.data) {
            let measured = sent >= joined_at;
            if measured {
                let delay = now_micros().saturating_sub(sent).min(u32::MAX as u64) as u32;
                stats.delays_us.push(delay);
            }
            stats.stamped(seq, tag.timestamp, Instant::now(), measured, &mut last);
        }
    }
    Ok(())
}

/// Asks the route API at `api` (`host:port`) where a player of `url`'s stream should go: that
/// node's URL, with `url`'s query.
async fn route(api: &str, url: &RtmpUrl) -> Result<RtmpUrl, crate::client::ClientError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = format!("{}/{}", url.app, url.stream);
    let fail = |why: String| crate::client::ClientError::Refused {
        call: "route",
        code: "route".into(),
        description: why,
        info: crate::rtmp::amf0::Amf0Value::Null,
    };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(api).await?;
        let request = format!(
            "GET /api/v1/cluster/route?stream={stream} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| crate::client::ClientError::Timeout("route"))??;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let answer: serde_json::Value =
        serde_json::from_str(body).map_err(|e| fail(format!("route answer: {e}: {body}")))?;
    let Some(target) = answer["url"].as_str() else {
        return Err(fail(format!("no edge: {}", answer["reason"])));
    };
    let with_query = match url.stream_with_query().split_once('?') {
        Some((_, query)) => format!("{target}?{query}"),
        None => target.to_string(),
    };
    Ok(RtmpUrl::parse(&with_query)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds stamped frames (seq, timestamp ms, arrival ms after the start).
    fn feed(frames: &[(u32, u32, u64)]) -> PlayerStats {
        let start = Instant::now();
        let mut stats = PlayerStats::default();
        let mut last = Last::default();
        for &(seq, ts, at) in frames {
            let at = start + Duration::from_millis(at);
            stats.stamped(seq, ts, at, true, &mut last);
        }
        stats
    }

    #[test]
    fn a_continuous_stream_has_no_gap_loss_repeat_or_jump() {
        let frames: Vec<_> = (0..50).map(|i| (i, i * 40, u64::from(i) * 40)).collect();
        let s = feed(&frames);
        assert_eq!((s.missing_frames, s.repeated_frames), (0, 0));
        assert_eq!((s.timestamps_backward, s.max_timestamp_step_ms), (0, 40));
        assert_eq!(s.max_gap, Duration::from_millis(40));
        assert_eq!(s.loss(), 0.0);
    }

    #[test]
    fn a_handover_that_loses_repeats_or_rewinds_is_counted() {
        // 0..=3, then 6 (4 and 5 lost) after a 300 ms freeze, 5 again, then a rewound clock.
        let s = feed(&[
            (0, 0, 0),
            (1, 40, 40),
            (2, 80, 80),
            (3, 120, 120),
            (6, 240, 420),
            (5, 200, 430),
            (7, 0, 460),
        ]);
        assert_eq!(s.missing_frames, 2);
        assert_eq!(s.repeated_frames, 1);
        assert_eq!(s.timestamps_backward, 1);
        assert_eq!(s.max_timestamp_step_ms, 120);
        assert_eq!(s.max_gap, Duration::from_millis(300));
        assert_eq!(
            (s.first_seq, s.last_seq, s.stamped_frames),
            (Some(0), Some(7), 6)
        );
    }
}
