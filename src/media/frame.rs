//! A media or data message from a publisher, prepared once for every player.

use bytes::Bytes;

use super::tag;
use crate::rtmp::chunk::{chunk_body, MessageHeader};
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
/// per-player part of a send is only the fmt 0 header built from these fields.
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
        let chunked = chunk_body(kind.csid(), timestamp, &payload, chunk_size);
        Frame {
            kind,
            timestamp,
            keyframe,
            sequence_header,
            len: payload.len(),
            chunked,
        }
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
