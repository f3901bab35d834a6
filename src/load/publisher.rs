//! Load-tool publishers: a synthetic stream or an FLV file looped, paced in real time.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::flv::FlvTag;
use super::synth::{self, SynthProfile, AAC_SEQUENCE_HEADER, AUDIO_FPS, AVC_SEQUENCE_HEADER};
use crate::client::{ClientError, ClientOptions, RtmpClient, RtmpUrl};
use crate::media::tag::{inspect_video, is_audio_sequence_header};
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::{MSG_AUDIO, MSG_DATA_AMF0, MSG_VIDEO};

#[derive(Clone)]
pub enum Source {
    Synthetic(SynthProfile),
    /// Tags of an FLV file; `stamp` puts an SEI NAL unit with a send stamp before each H.264
    /// picture (delay and loss figures for load-tool players; real players still decode it,
    /// and servers that parse H.264, SRS among them, accept it).
    File {
        tags: Arc<Vec<FlvTag>>,
        stamp: bool,
    },
}

#[derive(Debug, Default, Clone)]
pub struct PublisherStats {
    pub url: String,
    pub video_frames: u64,
    pub bytes: u64,
    pub error: Option<String>,
}

/// Publishes `source` to `url` until `until`; `tls` says whom an `rtmps://` URL may reach.
pub async fn run(
    url: RtmpUrl,
    source: Source,
    until: Instant,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> PublisherStats {
    let mut stats = PublisherStats {
        url: url.to_string(),
        ..Default::default()
    };
    if let Err(e) = publish(&url, &source, until, tls, &mut stats).await {
        stats.error = Some(e.to_string());
    }
    stats
}

async fn publish(
    url: &RtmpUrl,
    source: &Source,
    until: Instant,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    stats: &mut PublisherStats,
) -> Result<(), ClientError> {
    let opts = ClientOptions {
        tls,
        ..ClientOptions::default()
    };
    let mut c = RtmpClient::connect(url, opts).await?;
    c.publish().await?;
    match source {
        Source::Synthetic(p) => synthetic(&mut c, p, until, stats).await,
        Source::File { tags, stamp } => file(&mut c, tags, *stamp, until, stats).await,
    }
}

fn metadata(p: &SynthProfile) -> Vec<u8> {
    amf0::encode_all(&[
        "@setDataFrame".into(),
        "onMetaData".into(),
        Amf0Value::EcmaArray(vec![
            ("width".into(), 320.0.into()),
            ("height".into(), 240.0.into()),
            ("framerate".into(), (p.fps as f64).into()),
            ("videocodecid".into(), 7.0.into()),
            ("videodatarate".into(), (p.video_bps as f64 / 1000.0).into()),
            ("audiocodecid".into(), 10.0.into()),
            ("audiodatarate".into(), (p.audio_bps as f64 / 1000.0).into()),
            ("encoder".into(), "ringcast-load".into()),
        ]),
    ])
    .to_vec()
}

async fn synthetic(
    c: &mut RtmpClient,
    p: &SynthProfile,
    until: Instant,
    stats: &mut PublisherStats,
) -> Result<(), ClientError> {
    c.queue_media(MSG_DATA_AMF0, 0, &metadata(p));
    c.queue_media(MSG_VIDEO, 0, AVC_SEQUENCE_HEADER);
    if p.audio_bps > 0 {
        c.queue_media(MSG_AUDIO, 0, AAC_SEQUENCE_HEADER);
    }
    c.flush().await?;
    let start = Instant::now();
    let video_ms = 1000.0 / p.fps.max(1) as f64;
    let audio_ms = 1000.0 / AUDIO_FPS;
    let (mut v, mut a) = (0u32, 0u32);
    loop {
        let tv = v as f64 * video_ms;
        let ta = if p.audio_bps > 0 {
            a as f64 * audio_ms
        } else {
            f64::MAX
        };
        let t = tv.min(ta);
        let at = start + Duration::from_micros((t * 1000.0) as u64);
        if at >= until {
            return Ok(());
        }
        tokio::time::sleep_until(at).await;
        if tv <= ta {
            let body = p.video(v);
            stats.bytes += body.len() as u64;
            stats.video_frames += 1;
            c.send_media(MSG_VIDEO, tv as u32, &body).await?;
            v += 1;
        } else {
            let body = p.audio(a);
            stats.bytes += body.len() as u64;
            c.send_media(MSG_AUDIO, ta as u32, &body).await?;
            a += 1;
        }
    }
}

async fn file(
    c: &mut RtmpClient,
    tags: &[FlvTag],
    stamp: bool,
    until: Instant,
    stats: &mut PublisherStats,
) -> Result<(), ClientError> {
    let start = Instant::now();
    let span = tags.last().map_or(0, |t| t.timestamp) + 40;
    let mut loop_offset = 0u32;
    let mut seq = 0u32;
    loop {
        for tag in tags {
            let video = (tag.type_id == MSG_VIDEO).then(|| inspect_video(&tag.data));
            // An end-of-sequence tag would make players' decoders flush on every loop.
            if video.is_some_and(|v| v.command) {
                continue;
            }
            // Sequence headers and metadata once; media on every loop.
            let is_header = tag.type_id == MSG_DATA_AMF0
                || video.is_some_and(|v| v.sequence_header)
                || (tag.type_id == MSG_AUDIO && is_audio_sequence_header(&tag.data));
            if loop_offset > 0 && is_header {
                continue;
            }
            let ts = tag.timestamp.wrapping_add(loop_offset);
            let at = start + Duration::from_millis(ts as u64);
            if at >= until {
                return Ok(());
            }
            tokio::time::sleep_until(at).await;
            stats.bytes += tag.data.len() as u64;
            if video.is_some() && !is_header {
                stats.video_frames += 1;
                if stamp {
                    if let Some(body) = synth::with_sei_stamp(&tag.data, seq) {
                        seq += 1;
                        c.send_media(tag.type_id, ts, &body).await?;
                        continue;
                    }
                }
            }
            c.send_media(tag.type_id, ts, &tag.data).await?;
        }
        loop_offset = loop_offset.wrapping_add(span);
    }
}
