//! The inbound RTMP chunk reader: turns the byte stream after the handshake into whole messages.
//!
//! It owns the per-chunk-stream header state and the reassembly of interleaved chunk streams.
//! It never does IO and never trusts a length from the wire: a message is never preallocated
//! from its declared length, the memory held for partial messages (allocated capacity, not
//! just bytes received) is capped and given back when a message is aborted or replaced, each
//! message type has its own size limit (commands are small; audio and video may be large only
//! once the connection may send media), and every limit breach is an error naming the problem. The shape is mini-redis's framing: look at the buffer,
//! consume only whole chunks, return `Ok(None)` when more bytes are needed.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

use crate::rtmp::{
    EXTENDED_TIMESTAMP, MSG_ABORT, MSG_AGGREGATE, MSG_AUDIO, MSG_DATA_AMF0, MSG_DATA_AMF3,
    MSG_SET_CHUNK_SIZE, MSG_VIDEO,
};

/// One reassembled RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub csid: u32,
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk stream {0} continues a message header it never started (fmt {1} first)")]
    NoPreviousHeader(u32, u8),
    #[error("{kind} message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// "media", "data", "command" (any other type), or "media before publish".
        kind: &'static str,
        size: u32,
        limit: usize,
    },
    #[error("peer set chunk size {0}, outside 1..={1}")]
    BadChunkSize(u32, usize),
    #[error("set chunk size message is {0} bytes, expected 4")]
    ShortSetChunkSize(usize),
    #[error("more than {0} chunk streams in use")]
    TooManyChunkStreams(usize),
    #[error("{held} bytes of partial messages held, limit {limit}")]
    TooMuchBuffered { held: usize, limit: usize },
}

/// Limits applied to what a peer may make us hold.
#[derive(Debug, Clone, Copy)]
pub struct ReaderLimits {
    pub max_chunk_size: usize,
    /// Largest audio, video or aggregate message (once media is allowed).
    pub max_message_size: usize,
    /// Largest command, control or other message, and of any message while media is not
    /// allowed: what an anonymous connection can make us hold.
    pub max_command_size: usize,
    /// Largest data message (metadata) once media is allowed.
    pub max_data_size: usize,
    /// Total capacity allocated for partially received messages on one connection.
    pub max_buffered: usize,
    pub max_chunk_streams: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_chunk_size: 1 << 20,
            max_message_size: 8 << 20,
            max_command_size: 64 << 10,
            max_data_size: 1 << 20,
            max_buffered: 16 << 20,
            max_chunk_streams: 64,
        }
    }
}

#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// The timestamp field of the last header (absolute for fmt 0, a delta otherwise), reused by
    /// a fmt 3 chunk that starts a new message (as ffmpeg and librtmp read it).
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether the last header carried an extended timestamp; fmt 3 chunks then repeat it.
    extended: bool,
    /// Payload received so far of the message in progress.
    partial: BytesMut,
    in_progress: bool,
}

impl ChunkStream {
    /// Ends the message in progress with `payload`.
    fn complete(&mut self, csid: u32, payload: Bytes) -> RawMessage {
        self.in_progress = false;
        RawMessage {
            csid,
            timestamp: self.timestamp,
            type_id: self.type_id,
            stream_id: self.stream_id,
            payload,
        }
    }
}

pub struct ChunkReader {
    chunk_size: usize,
    limits: ReaderLimits,
    streams: HashMap<u32, ChunkStream>,
    /// Capacity of every `ChunkStream::partial`, summed.
    buffered: usize,
    /// Whether audio, video and data messages may use their own (larger) limits; until then
    /// every message is held to `max_command_size`.
    media_allowed: bool,
}

/// A parsed chunk header, before it is applied to the stream state.
struct Header {
    fmt: u8,
    csid: u32,
    /// Bytes the basic + message header + extended timestamp took.
    len: usize,
    ts_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

impl ChunkReader {
    pub fn new(limits: ReaderLimits) -> Self {
        ChunkReader {
            chunk_size: 128,
            limits,
            streams: HashMap::new(),
            buffered: 0,
            media_allowed: true,
        }
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Lets audio, video and data messages reach their own limits (a server allows it once a
    /// connection publishes; a client from the start), or holds them to the command limit.
    pub fn allow_media(&mut self, allowed: bool) {
        self.media_allowed = allowed;
    }

    /// Capacity held for partial messages right now.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// The size limit of a message of `type_id`, and what to call it in an error.
    fn limit_for(&self, type_id: u8) -> (usize, &'static str) {
        let l = &self.limits;
        match type_id {
            MSG_AUDIO | MSG_VIDEO | MSG_AGGREGATE | MSG_DATA_AMF0 | MSG_DATA_AMF3
                if !self.media_allowed =>
            {
                (l.max_command_size, "media before publish")
            }
            MSG_AUDIO | MSG_VIDEO | MSG_AGGREGATE => (l.max_message_size, "media"),
            MSG_DATA_AMF0 | MSG_DATA_AMF3 => (l.max_data_size.min(l.max_message_size), "data"),
            _ => (l.max_command_size.min(l.max_message_size), "command"),
        }
    }

    /// Forgets the partial message of `stream`, giving its buffer back.
    fn drop_partial(buffered: &mut usize, stream: &mut ChunkStream) {
        *buffered -= stream.partial.capacity();
        stream.partial = BytesMut::new();
    }

    /// Reads chunks from the front of `buf` until one message completes (`Ok(Some)`) or a whole
    /// chunk is not yet buffered (`Ok(None)`). Set Chunk Size and Abort are applied here, as
    /// they change how the following bytes are read, and are still returned to the caller.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some(header) = self.parse_header(buf)? else {
                return Ok(None);
            };
            let state = self.streams.get(&header.csid);
            let (length, type_id, in_progress, received) = match (header.fmt, state) {
                (0, _) => (header.length, header.type_id, false, 0),
                (1, Some(s)) => (
                    header.length,
                    header.type_id,
                    s.in_progress,
                    s.partial.len(),
                ),
                (2 | 3, Some(s)) => (s.length, s.type_id, s.in_progress, s.partial.len()),
                (fmt, _) => return Err(ChunkError::NoPreviousHeader(header.csid, fmt)),
            };
            let (limit, kind) = self.limit_for(type_id);
            if length as usize > limit {
                return Err(ChunkError::MessageTooLarge {
                    kind,
                    size: length,
                    limit,
                });
            }
            let continuing = in_progress && header.fmt == 3;
            let already = if continuing { received } else { 0 };
            let want = (length as usize - already).min(self.chunk_size);
            if buf.len() < header.len + want {
                return Ok(None);
            }
            if !self.streams.contains_key(&header.csid)
                && self.streams.len() >= self.limits.max_chunk_streams
            {
                return Err(ChunkError::TooManyChunkStreams(
                    self.limits.max_chunk_streams,
                ));
            }
            buf.advance(header.len);

            let stream = self.streams.entry(header.csid).or_default();
            if !continuing {
                // A new message starts: drop any partial one this header replaced.
                if stream.partial.capacity() > 0 {
                    Self::drop_partial(&mut self.buffered, stream);
                }
                match header.fmt {
                    0 => {
                        stream.timestamp = header.ts_field;
                        stream.ts_field = header.ts_field;
                        stream.length = header.length;
                        stream.type_id = header.type_id;
                        stream.stream_id = header.stream_id;
                    }
                    1 => {
                        stream.ts_field = header.ts_field;
                        stream.timestamp = stream.timestamp.wrapping_add(header.ts_field);
                        stream.length = header.length;
                        stream.type_id = header.type_id;
                    }
                    2 => {
                        stream.ts_field = header.ts_field;
                        stream.timestamp = stream.timestamp.wrapping_add(header.ts_field);
                    }
                    _ => {
                        stream.timestamp = stream.timestamp.wrapping_add(stream.ts_field);
                    }
                }
                if header.fmt < 3 {
                    stream.extended = header.extended;
                }
                stream.in_progress = true;
            }

            if already == 0 && want == length as usize {
                // The whole message is in this one chunk: hand out the reader's bytes, no copy.
                let payload = buf.split_to(want).freeze();
                let msg = stream.complete(header.csid, payload);
                self.apply_control(&msg)?;
                return Ok(Some(msg));
            }

            let needed = stream.partial.len() + want;
            if stream.partial.capacity() < needed {
                // Grow by doubling, never past the message's length, and count the capacity
                // against the limit before allocating it.
                let old = stream.partial.capacity();
                let new = (old * 2).max(needed).min(length as usize);
                let held = self.buffered - old + new;
                if held > self.limits.max_buffered {
                    return Err(ChunkError::TooMuchBuffered {
                        held,
                        limit: self.limits.max_buffered,
                    });
                }
                let mut grown = BytesMut::with_capacity(new);
                grown.extend_from_slice(&stream.partial);
                self.buffered = self.buffered - old + grown.capacity();
                stream.partial = grown;
            }
            stream.partial.extend_from_slice(&buf[..want]);
            buf.advance(want);
            if stream.partial.len() == length as usize {
                self.buffered -= stream.partial.capacity();
                let payload = std::mem::take(&mut stream.partial).freeze();
                let msg = stream.complete(header.csid, payload);
                self.apply_control(&msg)?;
                return Ok(Some(msg));
            }
        }
    }

    fn apply_control(&mut self, msg: &RawMessage) -> Result<(), ChunkError> {
        match msg.type_id {
            MSG_SET_CHUNK_SIZE => {
                if msg.payload.len() < 4 {
                    return Err(ChunkError::ShortSetChunkSize(msg.payload.len()));
                }
                // The top bit is reserved and must be zero; mask it as librtmp does.
                let size = u32::from_be_bytes([
                    msg.payload[0],
                    msg.payload[1],
                    msg.payload[2],
                    msg.payload[3],
                ]) & 0x7fff_ffff;
                if size == 0 || size as usize > self.limits.max_chunk_size {
                    return Err(ChunkError::BadChunkSize(size, self.limits.max_chunk_size));
                }
                self.chunk_size = size as usize;
            }
            MSG_ABORT if msg.payload.len() >= 4 => {
                let csid = u32::from_be_bytes([
                    msg.payload[0],
                    msg.payload[1],
                    msg.payload[2],
                    msg.payload[3],
                ]);
                if let Some(s) = self.streams.get_mut(&csid) {
                    Self::drop_partial(&mut self.buffered, s);
                    s.in_progress = false;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Parses the chunk header at the front of `buf` without consuming it.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, ChunkError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (64 + b1 as u32, 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + b1 as u32 + ((b2 as u32) << 8), 3),
                _ => return Ok(None),
            },
            n => (n as u32, 1),
        };
        let mh_len = [11, 7, 3, 0][fmt as usize];
        if buf.len() < pos + mh_len {
            return Ok(None);
        }
        let mh = &buf[pos..pos + mh_len];
        pos += mh_len;
        let be24 = |b: &[u8]| (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let mut header = Header {
            fmt,
            csid,
            len: 0,
            ts_field: 0,
            extended: false,
            length: 0,
            type_id: 0,
            stream_id: 0,
        };
        if fmt <= 2 {
            header.ts_field = be24(&mh[0..3]);
        }
        if fmt <= 1 {
            header.length = be24(&mh[3..6]);
            header.type_id = mh[6];
        }
        if fmt == 0 {
            header.stream_id = u32::from_le_bytes([mh[7], mh[8], mh[9], mh[10]]);
        }
        let state = self.streams.get(&csid);
        let read_extended = if fmt <= 2 {
            header.ts_field == EXTENDED_TIMESTAMP
        } else {
            state.is_some_and(|s| s.extended)
        };
        if read_extended {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let ext = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]);
            if fmt <= 2 {
                header.ts_field = ext;
                header.extended = true;
                pos += 4;
            } else {
                let continuing = state.is_some_and(|s| s.in_progress);
                // A continuation chunk repeats the extended timestamp per the spec (ffmpeg,
                // librtmp, OBS do); some old encoders omit it. Consume it only when it matches,
                // as SRS does; a new message's fmt 3 chunk always carries it.
                // The repeated value is the header's timestamp field; accept the absolute
                // timestamp too, which some writers put there.
                let repeated = state.is_some_and(|s| ext == s.ts_field || ext == s.timestamp);
                if !continuing || repeated {
                    pos += 4;
                }
            }
        }
        header.len = pos;
        Ok(Some(header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::writer::{encode_message, MessageHeader};

    fn msg(csid: u32, ts: u32, type_id: u8, sid: u32, len: usize, seed: u8) -> RawMessage {
        RawMessage {
            csid,
            timestamp: ts,
            type_id,
            stream_id: sid,
            payload: Bytes::from(
                (0..len)
                    .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                    .collect::<Vec<_>>(),
            ),
        }
    }

    fn encode(m: &RawMessage, chunk_size: usize) -> BytesMut {
        let mut out = BytesMut::new();
        encode_message(
            &mut out,
            &MessageHeader {
                csid: m.csid,
                timestamp: m.timestamp,
                type_id: m.type_id,
                stream_id: m.stream_id,
            },
            &m.payload,
            chunk_size,
        );
        out
    }

    fn read_all(reader: &mut ChunkReader, buf: &mut BytesMut) -> Vec<RawMessage> {
        let mut out = Vec::new();
        while let Some(m) = reader.read(buf).expect("valid stream") {
            out.push(m);
        }
        out
    }

    #[test]
    fn round_trip_across_chunk_sizes_and_byte_by_byte_delivery() {
        for &len in &[0usize, 1, 127, 128, 129, 4096, 10_000] {
            let m = msg(6, 1234, 9, 1, len, 7);
            let wire = encode(&m, 128);
            let mut reader = ChunkReader::new(ReaderLimits::default());
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for b in wire.iter() {
                buf.extend_from_slice(&[*b]);
                got.extend(read_all(&mut reader, &mut buf));
            }
            assert_eq!(got, vec![m], "len {len}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn interleaved_chunk_streams_reassemble() {
        // Two 300-byte messages on csid 4 and 6, chunks alternating (what rml_rtmp panics on).
        let a = msg(4, 10, 8, 1, 300, 1);
        let b = msg(6, 20, 9, 1, 300, 2);
        let wa = encode(&a, 128);
        let wb = encode(&b, 128);
        // Each encoding: 12-byte header + 128, then 1 + 128, then 1 + 44.
        let cuts = |w: &BytesMut| vec![w[..140].to_vec(), w[140..269].to_vec(), w[269..].to_vec()];
        let (ca, cb) = (cuts(&wa), cuts(&wb));
        let mut wire = BytesMut::new();
        for i in 0..3 {
            wire.extend_from_slice(&ca[i]);
            wire.extend_from_slice(&cb[i]);
        }
        let mut reader = ChunkReader::new(ReaderLimits::default());
        let got = read_all(&mut reader, &mut wire);
        assert_eq!(got, vec![a, b]);
    }

    #[test]
    fn extended_timestamp_in_header_and_continuations() {
        let m = msg(6, 0x0100_0000 + 5, 9, 1, 1000, 3);
        let wire = encode(&m, 128);
        // fmt 0 header: 1 + 11 + 4 ext; then 7 continuations each 1 + 4 ext.
        assert_eq!(wire.len(), 16 + 1000 + 7 * 5);
        let mut reader = ChunkReader::new(ReaderLimits::default());
        let mut buf = wire.clone();
        assert_eq!(read_all(&mut reader, &mut buf), vec![m]);
    }

    #[test]
    fn continuation_without_repeated_extended_timestamp_is_accepted() {
        // Old encoders omit the extended timestamp on continuation chunks.
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&[0x06, 0xff, 0xff, 0xff, 0, 0, 200, 9, 1, 0, 0, 0]);
        wire.extend_from_slice(&0x0200_0000u32.to_be_bytes());
        wire.extend_from_slice(&[0xAB; 128]);
        wire.extend_from_slice(&[0xC6]);
        wire.extend_from_slice(&[0xCD; 72]);
        let mut reader = ChunkReader::new(ReaderLimits::default());
        let got = read_all(&mut reader, &mut wire);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].timestamp, 0x0200_0000);
        assert_eq!(got[0].payload.len(), 200);
        assert_eq!(got[0].payload[127], 0xAB);
        assert_eq!(got[0].payload[128], 0xCD);
    }

    #[test]
    fn compressed_headers_accumulate_deltas() {
        let mut wire = BytesMut::new();
        // fmt 0: ts 100, len 2, type 8, sid 1
        wire.extend_from_slice(&[0x04, 0, 0, 100, 0, 0, 2, 8, 1, 0, 0, 0, 1, 2]);
        // fmt 2: delta 23
        wire.extend_from_slice(&[0x84, 0, 0, 23, 3, 4]);
        // fmt 3 new message: same delta again
        wire.extend_from_slice(&[0xC4, 5, 6]);
        // fmt 1: delta 10, len 1, type 9
        wire.extend_from_slice(&[0x44, 0, 0, 10, 0, 0, 1, 9, 7]);
        let mut reader = ChunkReader::new(ReaderLimits::default());
        let got = read_all(&mut reader, &mut wire);
        let ts: Vec<_> = got
            .iter()
            .map(|m| (m.timestamp, m.type_id, m.stream_id))
            .collect();
        assert_eq!(ts, vec![(100, 8, 1), (123, 8, 1), (146, 8, 1), (156, 9, 1)]);
    }

    #[test]
    fn set_chunk_size_applies_to_following_chunks() {
        let mut wire = BytesMut::new();
        let scs = RawMessage {
            csid: 2,
            timestamp: 0,
            type_id: MSG_SET_CHUNK_SIZE,
            stream_id: 0,
            payload: Bytes::from_static(&[0, 0, 0x10, 0]),
        };
        wire.extend_from_slice(&encode(&scs, 128));
        let big = msg(6, 0, 9, 1, 4000, 9);
        wire.extend_from_slice(&encode(&big, 4096));
        let mut reader = ChunkReader::new(ReaderLimits::default());
        let got = read_all(&mut reader, &mut wire);
        assert_eq!(got, vec![scs, big]);
        assert_eq!(reader.chunk_size(), 4096);
    }

    #[test]
    fn hostile_inputs_are_errors() {
        let limits = ReaderLimits::default();
        // Chunk size 0.
        let mut wire = encode(
            &RawMessage {
                csid: 2,
                timestamp: 0,
                type_id: MSG_SET_CHUNK_SIZE,
                stream_id: 0,
                payload: Bytes::from_static(&[0, 0, 0, 0]),
            },
            128,
        );
        assert_eq!(
            ChunkReader::new(limits).read(&mut wire),
            Err(ChunkError::BadChunkSize(0, limits.max_chunk_size))
        );
        // A 16 MB message header with no body: refused before any allocation.
        let mut wire = BytesMut::from(&[0x06, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0][..]);
        assert!(matches!(
            ChunkReader::new(limits).read(&mut wire),
            Err(ChunkError::MessageTooLarge { .. })
        ));
        // A continuation with no header ever seen.
        let mut wire = BytesMut::from(&[0xC7, 1, 2, 3][..]);
        assert_eq!(
            ChunkReader::new(limits).read(&mut wire),
            Err(ChunkError::NoPreviousHeader(7, 3))
        );
        // Partial messages on many chunk streams past the buffered cap.
        let small = ReaderLimits {
            max_buffered: 1000,
            ..limits
        };
        let mut reader = ChunkReader::new(small);
        let mut wire = BytesMut::new();
        for csid in 3..40u8 {
            wire.extend_from_slice(&[csid, 0, 0, 0, 0, 0x10, 0, 9, 1, 0, 0, 0]);
            wire.extend_from_slice(&[0u8; 128]);
        }
        let mut result = Ok(None);
        for _ in 0..40 {
            result = reader.read(&mut wire);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(ChunkError::TooMuchBuffered { .. })));
    }

    #[test]
    fn each_message_type_has_its_limit_and_media_waits_for_publish() {
        let limits = ReaderLimits {
            max_command_size: 1000,
            max_data_size: 5000,
            max_message_size: 20_000,
            ..ReaderLimits::default()
        };
        let too_big = |reader: &mut ChunkReader, type_id: u8, len: usize| {
            let mut wire = encode(&msg(6, 0, type_id, 1, len, 1), 128);
            match reader.read(&mut wire) {
                Err(ChunkError::MessageTooLarge { kind, limit, .. }) => Some((kind, limit)),
                _ => None,
            }
        };
        let mut server = ChunkReader::new(limits);
        server.allow_media(false);
        assert_eq!(too_big(&mut server, 20, 1001), Some(("command", 1000)));
        assert_eq!(
            too_big(&mut server, 9, 1001),
            Some(("media before publish", 1000))
        );
        assert_eq!(
            too_big(&mut server, 18, 1001),
            Some(("media before publish", 1000))
        );
        server.allow_media(true);
        assert_eq!(too_big(&mut server, 20, 1001), Some(("command", 1000)));
        assert_eq!(too_big(&mut server, 18, 5001), Some(("data", 5000)));
        assert_eq!(too_big(&mut server, 9, 20_001), Some(("media", 20_000)));
        let mut reader = ChunkReader::new(limits);
        assert_eq!(
            too_big(&mut reader, 9, 20_000),
            None,
            "a client allows media"
        );
        assert_eq!(
            ChunkError::MessageTooLarge {
                kind: "command",
                size: 8,
                limit: 4
            }
            .to_string(),
            "command message of 8 bytes exceeds the limit of 4 bytes"
        );
    }

    #[test]
    fn partial_messages_are_counted_by_capacity_and_given_back() {
        let mut reader = ChunkReader::new(ReaderLimits::default());
        // A 100 KB video message in 128-byte chunks: the held capacity never exceeds the
        // message length, and all of it is given back when the message completes.
        let m = msg(6, 0, 9, 1, 100_000, 4);
        let wire = encode(&m, 128);
        let mut buf = BytesMut::new();
        let mut peak = 0;
        let mut got = None;
        for piece in wire.chunks(129) {
            buf.extend_from_slice(piece);
            if let Some(done) = reader.read(&mut buf).expect("valid") {
                got = Some(done);
            }
            peak = peak.max(reader.buffered());
        }
        assert_eq!(got, Some(m));
        assert!(peak <= 100_000, "peak {peak}");
        assert!(peak >= 50_000, "doubling reaches the message size: {peak}");
        assert_eq!(reader.buffered(), 0);

        // An aborted partial message gives its buffer back.
        let mut wire = encode(&msg(6, 0, 9, 1, 10_000, 5), 128);
        wire.truncate(12 + 128 + 20 * 129);
        while reader.read(&mut wire).expect("valid").is_some() {}
        assert!(reader.buffered() >= 2000);
        let abort = RawMessage {
            csid: 2,
            timestamp: 0,
            type_id: MSG_ABORT,
            stream_id: 0,
            payload: Bytes::from_static(&[0, 0, 0, 6]),
        };
        let mut wire = encode(&abort, 128);
        assert!(reader.read(&mut wire).expect("valid").is_some());
        assert_eq!(reader.buffered(), 0);
        assert_eq!(
            reader.streams.get(&6).map(|s| s.partial.capacity()),
            Some(0)
        );

        // A new message on the chunk stream replaces the partial one and frees it.
        let mut wire = encode(&msg(6, 0, 9, 1, 10_000, 5), 128);
        wire.truncate(12 + 128 + 20 * 129);
        while reader.read(&mut wire).expect("valid").is_some() {}
        assert!(reader.buffered() > 0);
        let mut wire = encode(&msg(6, 0, 9, 1, 50, 6), 128);
        assert!(reader.read(&mut wire).expect("valid").is_some());
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn truncated_input_waits_for_more() {
        let m = msg(6, 42, 9, 1, 500, 5);
        let wire = encode(&m, 128);
        for cut in 0..wire.len() {
            let mut reader = ChunkReader::new(ReaderLimits::default());
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(read_all(&mut reader, &mut buf), vec![], "cut {cut}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut reader = ChunkReader::new(ReaderLimits::default());
            let mut buf = BytesMut::new();
            for _ in 0..(x % 300) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.extend_from_slice(&[x as u8]);
            }
            while let Ok(Some(_)) = reader.read(&mut buf) {}
        }
    }
}
