//! A media or data message from a publisher, prepared once for every player.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use super::tag;
use crate::rtmp::chunk::{
    chunk_body_len, encode_header, put_chunk_body, MessageHeader, MAX_HEADER_LEN,
};
use crate::rtmp::{CSID_AUDIO, CSID_DATA, CSID_VIDEO, MSG_AUDIO, MSG_DATA_AMF0, MSG_VIDEO};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Audio,
    Video,
    Data,
}

impl FrameKind {
    pub fn type_id(self) -> u8 {
        match self {
            FrameKind::Audio => MSG_AUDIO,
            FrameKind::Video => MSG_VIDEO,
            FrameKind::Data => MSG_DATA_AMF0,
        }
    }

    pub fn csid(self) -> u32 {
        match self {
            FrameKind::Audio => CSID_AUDIO,
            FrameKind::Video => CSID_VIDEO,
            FrameKind::Data => CSID_DATA,
        }
    }
}

/// One message as every player receives it. Immutable and shared (`Arc<Frame>`): the
/// per-player part of a send is at most the fmt 0 header built from these fields, and nothing
/// for a player on message stream 1 (almost every player), which sends `wire` as it is.
#[derive(Debug)]
pub struct Frame {
    pub kind: FrameKind,
    /// Timestamp on the stream's timeline (publisher timestamps, rebased across republishes).
    pub timestamp: u32,
    pub keyframe: bool,
    pub sequence_header: bool,
    /// Length of the payload as the publisher sent it.
    pub len: usize,
    /// The payload with fmt 3 continuation headers at the server's outbound chunk size. The
    /// plain payload is not kept beside it: for a multi-chunk message that would hold every
    /// byte twice in the GOP cache and the fan-out ring.
    pub chunked: Bytes,
    /// The whole message for message stream 1: its fmt 0 header, then `chunked` (which is a
    /// slice of it).
    pub wire: Bytes,
    /// The chunk size `chunked` was cut at.
    chunk_size: usize,
    /// The frame as an FLV tag (header, payload, previous-tag size), built the first time an
    /// HTTP-FLV player needs it and then shared by all of them, as `chunked` is by RTMP
    /// players. Streams nobody plays over HTTP never build it.
    flv: OnceLock<Bytes>,
    /// The earliest its bytes may have waited in the publisher's socket on this node (the end
    /// of the publisher's last read that emptied it): players write it by then plus the
    /// latency budget. None where unknown (frames pulled from another node), and players
    /// then wait at most the budget's write window.
    pub held_since: Option<std::time::Instant>,
}

impl Frame {
    /// Whether `payload` of `kind` is a codec sequence header (what `new` finds too).
    pub fn is_sequence_header(kind: FrameKind, payload: &[u8]) -> bool {
        match kind {
            FrameKind::Video => tag::inspect_video(payload).sequence_header,
            FrameKind::Audio => tag::is_audio_sequence_header(payload),
            FrameKind::Data => false,
        }
    }

    pub fn new(kind: FrameKind, timestamp: u32, payload: Bytes, chunk_size: usize) -> Frame {
        let (keyframe, sequence_header) = match kind {
            FrameKind::Video => {
                let info = tag::inspect_video(&payload);
                (info.keyframe, info.sequence_header)
            }
            FrameKind::Audio => (false, tag::is_audio_sequence_header(&payload)),
            FrameKind::Data => (false, false),
        };
        let chunk_size = chunk_size.max(1);
        let (csid, len) = (kind.csid(), payload.len());
        let body = chunk_body_len(csid, timestamp, len, chunk_size);
        let header = MessageHeader {
            csid,
            timestamp,
            type_id: kind.type_id(),
            stream_id: 1,
        };
        // One exact allocation, the header included (see `chunk_body` on why it is fresh).
        let mut out = BytesMut::with_capacity(MAX_HEADER_LEN + body);
        encode_header(&mut out, &header, len);
        let header_len = out.len();
        put_chunk_body(&mut out, csid, timestamp, &payload, chunk_size);
        let wire = out.freeze();
        let chunked = wire.slice(header_len..);
        Frame {
            kind,
            timestamp,
            keyframe,
            sequence_header,
            len: payload.len(),
            chunked,
            wire,
            chunk_size,
            flv: OnceLock::new(),
            held_since: None,
        }
    }

    /// The payload as the publisher sent it, taken back out of `chunked` (the continuation
    /// headers removed): one copy.
    fn payload(&self) -> Bytes {
        if self.len <= self.chunk_size {
            return self.chunked.slice(..self.len.min(self.chunked.len()));
        }
        let extended = self.timestamp >= crate::rtmp::EXTENDED_TIMESTAMP;
        let basic = match self.kind.csid() {
            csid if csid >= 320 => 3,
            csid if csid >= 64 => 2,
            _ => 1,
        };
        let skip = basic + if extended { 4 } else { 0 };
        let mut out = BytesMut::with_capacity(self.len);
        let mut rest: &[u8] = &self.chunked;
        while !rest.is_empty() && out.len() < self.len {
            let take = (self.len - out.len()).min(self.chunk_size).min(rest.len());
            out.put_slice(&rest[..take]);
            rest = &rest[take..];
            if out.len() < self.len {
                rest = rest.get(skip..).unwrap_or_default();
            }
        }
        out.freeze()
    }

    /// This frame as an FLV tag: the 11-byte tag header, the payload, and the 4-byte size of
    /// the tag that follows every tag in an FLV stream. Built once, then shared.
    pub fn flv_tag(&self) -> &Bytes {
        self.flv.get_or_init(|| {
            let payload = self.payload();
            let size = payload.len() as u32;
            let ts = self.timestamp;
            let mut tag = BytesMut::with_capacity(11 + payload.len() + 4);
            let type_id = match self.kind {
                FrameKind::Audio => 8,
                FrameKind::Video => 9,
                FrameKind::Data => 18,
            };
            tag.put_u8(type_id);
            tag.put_slice(&size.to_be_bytes()[1..]);
            // Lower 24 bits, then the upper 8 (FLV's "timestamp extended").
            tag.put_slice(&ts.to_be_bytes()[1..]);
            tag.put_u8((ts >> 24) as u8);
            tag.put_slice(&[0, 0, 0]);
            tag.put_slice(&payload);
            tag.put_u32(11 + size);
            tag.freeze()
        })
    }

    /// The fmt 0 header fields for a player on message stream `stream_id`.
    pub fn header(&self, stream_id: u32) -> MessageHeader {
        MessageHeader {
            csid: self.kind.csid(),
            timestamp: self.timestamp,
            type_id: self.kind.type_id(),
            stream_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses one FLV tag back: (type, timestamp, payload), and checks the trailing size.
    fn parse_tag(tag: &[u8]) -> (u8, u32, Vec<u8>) {
        let size = u32::from_be_bytes([0, tag[1], tag[2], tag[3]]) as usize;
        let ts = u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]);
        assert_eq!(tag.len(), 11 + size + 4);
        let trailer = u32::from_be_bytes([
            tag[11 + size],
            tag[12 + size],
            tag[13 + size],
            tag[14 + size],
        ]);
        assert_eq!(trailer as usize, 11 + size);
        (tag[0], ts, tag[11..11 + size].to_vec())
    }

    #[test]
    fn flv_tags_carry_the_payload_whatever_the_chunking() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        // Small, exactly one chunk, several chunks; plain and extended timestamps.
        for (len, chunk_size, ts) in [
            (5usize, 4096usize, 40u32),
            (4096, 4096, 0),
            (10_000, 128, 1_000),
            (10_000, 4096, 0x0100_0000 + 7),
            (1, 1, 0xFFFF_FFFF),
        ] {
            let body = Bytes::from(payload[..len].to_vec());
            let frame = Frame::new(FrameKind::Video, ts, body.clone(), chunk_size);
            let (type_id, t, got) = parse_tag(frame.flv_tag());
            assert_eq!((type_id, t), (9, ts), "len {len} chunk {chunk_size}");
            assert_eq!(got, body.to_vec(), "len {len} chunk {chunk_size} ts {ts}");
            // Built once: the same bytes every time.
            assert_eq!(frame.flv_tag().as_ptr(), frame.flv_tag().as_ptr());
        }
        let audio = Frame::new(
            FrameKind::Audio,
            23,
            Bytes::from_static(&[0xAF, 1, 2]),
            4096,
        );
        assert_eq!(parse_tag(audio.flv_tag()), (8, 23, vec![0xAF, 1, 2]));
        let data = Frame::new(
            FrameKind::Data,
            0,
            Bytes::from_static(b"\x02\x00\x01x"),
            4096,
        );
        assert_eq!(parse_tag(data.flv_tag()).0, 18);
        let empty = Frame::new(FrameKind::Video, 0, Bytes::new(), 4096);
        assert_eq!(parse_tag(empty.flv_tag()), (9, 0, vec![]));
    }
}
