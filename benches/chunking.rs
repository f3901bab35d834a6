//! Chunking costs on the hot paths: reading a publisher's chunk stream, preparing a frame once
//! per publisher message, and queueing it for every player.
//!
//! Run: `cargo bench --bench chunking`. Inputs are built deterministically here; nothing is read
//! from disk and nothing touches a socket.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ringcast::media::{Frame, FrameKind};
use ringcast::rtmp::chunk::{
    encode_header, encode_message, ChunkReader, MessageHeader, ReaderLimits,
};
use ringcast::rtmp::{
    CSID_AUDIO, CSID_CONTROL, CSID_VIDEO, MSG_AUDIO, MSG_SET_CHUNK_SIZE, MSG_VIDEO,
};

/// Stream id of the publisher's (and each player's) media messages.
const STREAM_ID: u32 = 1;
/// Players one frame is queued for in `fanout/per_player`.
const PLAYERS: usize = 1_000;
/// The server's outbound chunk size.
const OUT_CHUNK_SIZE: usize = 4096;

/// Deterministic pseudo-random filler, so payloads are not all zeros.
fn filler(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// An AVC video payload as FLV carries it: frame type/codec byte, packet type 1 (NALU), a zero
/// composition time, then the coded frame.
fn video_payload(len: usize, keyframe: bool, seed: u32) -> Bytes {
    let mut p = filler(len, seed);
    p[..5].copy_from_slice(&[if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
    Bytes::from(p)
}

/// An AAC raw frame: sound format 10, 44.1 kHz stereo, packet type 1.
fn audio_payload(len: usize, seed: u32) -> Bytes {
    let mut p = filler(len, seed);
    p[..2].copy_from_slice(&[0xAF, 1]);
    Bytes::from(p)
}

struct Message {
    header: MessageHeader,
    payload: Bytes,
}

/// Two seconds of a ~2.7 Mb/s publisher in timestamp order: 30 fps video (an 80 KB keyframe
/// every 60 frames, 10 KB otherwise) and 43 fps AAC audio (300 B frames).
fn publisher_messages() -> Vec<Message> {
    let video = (0..60u32).map(|i| Message {
        header: MessageHeader {
            csid: CSID_VIDEO,
            timestamp: i * 1000 / 30,
            type_id: MSG_VIDEO,
            stream_id: STREAM_ID,
        },
        payload: if i.is_multiple_of(60) {
            video_payload(80_000, true, i)
        } else {
            video_payload(10_000, false, i)
        },
    });
    let audio = (0..86u32).map(|i| Message {
        header: MessageHeader {
            csid: CSID_AUDIO,
            timestamp: i * 1024 * 1000 / 44_100,
            type_id: MSG_AUDIO,
            stream_id: STREAM_ID,
        },
        payload: audio_payload(300, 1000 + i),
    });
    let mut all: Vec<Message> = video.chain(audio).collect();
    // Stable: at equal timestamps video stays before audio.
    all.sort_by_key(|m| m.header.timestamp);
    all
}

/// The Set Chunk Size message a publisher sends first (the reader starts at 128).
fn set_chunk_size(chunk_size: usize) -> BytesMut {
    let mut out = BytesMut::new();
    let header = MessageHeader {
        csid: CSID_CONTROL,
        timestamp: 0,
        type_id: MSG_SET_CHUNK_SIZE,
        stream_id: 0,
    };
    encode_message(&mut out, &header, &(chunk_size as u32).to_be_bytes(), 128);
    out
}

/// One message's encoding cut at chunk boundaries: the fmt 0 chunk, then the fmt 3 ones.
fn chunks_of(m: &Message, chunk_size: usize) -> Vec<Bytes> {
    let mut wire = BytesMut::new();
    encode_message(&mut wire, &m.header, &m.payload, chunk_size);
    let mut header = BytesMut::new();
    encode_header(&mut header, &m.header, m.payload.len());
    // Continuations are one basic-header byte: csid < 64 and no extended timestamp here.
    assert!(m.header.csid < 64 && m.header.timestamp < 0xff_ffff);
    let mut wire = wire.freeze();
    let mut out = Vec::new();
    let mut overhead = header.len();
    let mut left = m.payload.len();
    loop {
        let piece = left.min(chunk_size);
        out.push(wire.split_to(overhead + piece));
        left -= piece;
        if left == 0 {
            break;
        }
        overhead = 1;
    }
    assert!(wire.is_empty(), "chunk boundaries miscounted");
    out
}

/// The whole publisher stream at `chunk_size`. Sequential: each message's chunks back to back,
/// as librtmp, OBS and ffmpeg write. Interleaved: the audio and video chunk streams alternate
/// chunk by chunk, which the spec allows and an odd or hostile encoder may do.
fn publisher_stream(chunk_size: usize, interleaved: bool) -> (Bytes, usize) {
    let messages = publisher_messages();
    let mut wire = if chunk_size == 128 {
        BytesMut::new()
    } else {
        set_chunk_size(chunk_size)
    };
    let control = usize::from(chunk_size != 128);
    if interleaved {
        let per_csid = |csid: u32| -> Vec<Bytes> {
            messages
                .iter()
                .filter(|m| m.header.csid == csid)
                .flat_map(|m| chunks_of(m, chunk_size))
                .collect()
        };
        let (video, audio) = (per_csid(CSID_VIDEO), per_csid(CSID_AUDIO));
        for i in 0..video.len().max(audio.len()) {
            for chunks in [&video, &audio] {
                if let Some(c) = chunks.get(i) {
                    wire.extend_from_slice(c);
                }
            }
        }
    } else {
        for m in &messages {
            encode_message(&mut wire, &m.header, &m.payload, chunk_size);
        }
    }
    (wire.freeze(), messages.len() + control)
}

fn read_all(wire: &mut BytesMut) -> usize {
    let mut reader = ChunkReader::new(ReaderLimits::default());
    let mut count = 0;
    while let Some(m) = reader.read(wire).expect("valid stream") {
        black_box(&m);
        count += 1;
    }
    count
}

fn chunk_reader(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunk_reader/read");
    for interleaved in [false, true] {
        for chunk_size in [4096, 128] {
            let (wire, messages) = publisher_stream(chunk_size, interleaved);
            // The stream must read back whole before its speed means anything.
            let mut check = BytesMut::from(&wire[..]);
            assert_eq!(read_all(&mut check), messages);
            assert!(check.is_empty());

            let layout = if interleaved {
                "interleaved"
            } else {
                "sequential"
            };
            group.throughput(Throughput::Bytes(wire.len() as u64));
            group.bench_with_input(BenchmarkId::new(layout, chunk_size), &wire, |b, wire| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| read_all(&mut buf),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

fn fanout_prepare(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout/prepare");
    for (len, keyframe) in [(10_000, false), (80_000, true)] {
        let payload = video_payload(len, keyframe, 7);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &payload, |b, payload| {
            b.iter(|| {
                Frame::new(
                    FrameKind::Video,
                    black_box(1000),
                    payload.clone(),
                    OUT_CHUNK_SIZE,
                )
            })
        });
    }
    group.finish();
}

/// What a player's queue holds between writes, as the server's `Outbound` does (which is
/// private to the server): bytes written for this connection, and shared frame bodies.
#[derive(Default)]
struct PlayerQueue {
    own: BytesMut,
    shared: Vec<Bytes>,
}

impl PlayerQueue {
    /// The server's path: a per-player fmt 0 header, the frame's shared body by reference.
    fn queue_shared(&mut self, frame: &Frame) {
        encode_header(&mut self.own, &frame.header(STREAM_ID), frame.len);
        self.shared.push(frame.chunked.clone());
    }

    /// The naive path: chunk and copy the whole message for this player, from the plain payload
    /// (which a `Frame` does not keep; the naive design would).
    fn queue_copied(&mut self, frame: &Frame, payload: &[u8]) {
        encode_message(
            &mut self.own,
            &frame.header(STREAM_ID),
            payload,
            OUT_CHUNK_SIZE,
        );
    }

    /// What a completed write leaves: empty queues that keep their capacity.
    fn written(&mut self) {
        self.own.clear();
        self.shared.clear();
    }
}

fn fanout_per_player(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout/per_player");
    group.sample_size(30);
    for (len, keyframe) in [(10_000, false), (80_000, true)] {
        let payload = video_payload(len, keyframe, 9);
        let frame = Frame::new(FrameKind::Video, 1000, payload.clone(), OUT_CHUNK_SIZE);
        // Both paths put the same bytes on the wire.
        let (mut shared, mut copied) = (PlayerQueue::default(), PlayerQueue::default());
        shared.queue_shared(&frame);
        copied.queue_copied(&frame, &payload);
        let mut joined = shared.own.clone();
        joined.extend_from_slice(&shared.shared[0]);
        assert_eq!(joined, copied.own);
        // Bytes that reach the players' sockets, the same for both paths.
        let per_player = copied.own.len();
        group.throughput(Throughput::Bytes((per_player * PLAYERS) as u64));

        let mut players: Vec<PlayerQueue> = (0..PLAYERS).map(|_| PlayerQueue::default()).collect();
        group.bench_function(BenchmarkId::new("shared_body", len), |b| {
            b.iter(|| {
                for p in players.iter_mut() {
                    p.queue_shared(&frame);
                }
                for p in players.iter_mut() {
                    p.written();
                }
            })
        });
        group.bench_function(BenchmarkId::new("copy_per_player", len), |b| {
            b.iter(|| {
                for p in players.iter_mut() {
                    p.queue_copied(&frame, &payload);
                }
                for p in players.iter_mut() {
                    black_box(&p.own);
                    p.written();
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = chunk_reader, fanout_prepare, fanout_per_player
}
criterion_main!(benches);
