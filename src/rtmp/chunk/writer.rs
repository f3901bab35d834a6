//! Outbound chunking.
//!
//! Two shapes: `encode_message` chunks one message into a buffer (control and command messages,
//! and clients), and the split used by the fan-out path — `chunk_body` cuts a media payload once
//! into its shared continuation form, `encode_header` writes the small per-connection fmt 0
//! header in front of it. A player's write is then `[header, shared body]` with no copy of the
//! media. We never interleave messages on output, so fmt 3 continuations are unambiguous.

use bytes::{BufMut, Bytes, BytesMut};

use crate::rtmp::EXTENDED_TIMESTAMP;

/// What a fmt 0 header says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    pub csid: u32,
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
}

/// Largest header `encode_header` writes: 3-byte basic header, 11-byte message header,
/// 4-byte extended timestamp.
pub const MAX_HEADER_LEN: usize = 18;

fn put_basic_header<B: BufMut>(out: &mut B, fmt: u8, csid: u32) {
    match csid {
        2..=63 => out.put_u8(fmt << 6 | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            // csid 0/1 are not encodable as such; callers use 2..=65599.
            let id = csid.clamp(64, 65599) - 64;
            out.put_u8(fmt << 6 | 1);
            out.put_u8(id as u8);
            out.put_u8((id >> 8) as u8);
        }
    }
}

/// Writes a fmt 0 header for a message of `len` bytes.
pub fn encode_header<B: BufMut>(out: &mut B, h: &MessageHeader, len: usize) {
    put_basic_header(out, 0, h.csid);
    let extended = h.timestamp >= EXTENDED_TIMESTAMP;
    let ts = if extended {
        EXTENDED_TIMESTAMP
    } else {
        h.timestamp
    };
    out.put_uint(ts as u64, 3);
    out.put_uint(len as u64 & 0xff_ffff, 3);
    out.put_u8(h.type_id);
    out.put_u32_le(h.stream_id);
    if extended {
        out.put_u32(h.timestamp);
    }
}

/// The payload with a fmt 3 basic header (and the repeated extended timestamp, if any) before
/// every chunk after the first. Shared by every connection that uses the same chunk size, csid
/// and timestamp. Always a fresh allocation of exactly its size, even for a single chunk: the
/// payload is usually a slice of a 64 KiB read buffer, and a cached frame holding such a slice
/// would keep the whole buffer alive (fast-start caches hold seconds of frames per stream).
pub fn chunk_body(csid: u32, timestamp: u32, payload: &[u8], chunk_size: usize) -> Bytes {
    let mut out =
        BytesMut::with_capacity(chunk_body_len(csid, timestamp, payload.len(), chunk_size));
    put_chunk_body(&mut out, csid, timestamp, payload, chunk_size);
    out.freeze()
}

/// The length of [`chunk_body`]'s result.
pub fn chunk_body_len(csid: u32, timestamp: u32, len: usize, chunk_size: usize) -> usize {
    let extended = timestamp >= EXTENDED_TIMESTAMP;
    let per_chunk = if extended { 5 } else { 1 } + if csid >= 64 { 2 } else { 0 };
    let chunks = len.div_ceil(chunk_size.max(1)).max(1);
    len + (chunks - 1) * per_chunk
}

/// Appends what [`chunk_body`] returns to `out`.
pub fn put_chunk_body(
    out: &mut BytesMut,
    csid: u32,
    timestamp: u32,
    payload: &[u8],
    chunk_size: usize,
) {
    let extended = timestamp >= EXTENDED_TIMESTAMP;
    for (i, piece) in payload.chunks(chunk_size.max(1)).enumerate() {
        if i > 0 {
            put_basic_header(out, 3, csid);
            if extended {
                out.put_u32(timestamp);
            }
        }
        out.put_slice(piece);
    }
}

/// Chunks a whole message into `out` (header, payload, continuation chunks).
pub fn encode_message(out: &mut BytesMut, h: &MessageHeader, payload: &[u8], chunk_size: usize) {
    out.reserve(MAX_HEADER_LEN + payload.len() + payload.len() / chunk_size.max(1) * 7);
    encode_header(out, h, payload.len());
    let extended = h.timestamp >= EXTENDED_TIMESTAMP;
    for (i, piece) in payload.chunks(chunk_size.max(1)).enumerate() {
        if i > 0 {
            put_basic_header(out, 3, h.csid);
            if extended {
                out.put_u32(h.timestamp);
            }
        }
        out.put_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::reader::{ChunkReader, ReaderLimits};

    #[test]
    fn shared_body_with_per_connection_header_equals_whole_encoding() {
        for &(len, ts, csid) in &[
            (10usize, 5u32, 6u32),
            (4096, 5, 6),
            (4097, 5, 6),
            (20_000, 0x0123_4567, 6),
            (9000, 77, 100),
            (9000, 77, 400),
        ] {
            let payload = Bytes::from(vec![0x5a; len]);
            let h = MessageHeader {
                csid,
                timestamp: ts,
                type_id: 9,
                stream_id: 3,
            };
            let mut whole = BytesMut::new();
            encode_message(&mut whole, &h, &payload, 4096);
            let mut split = BytesMut::new();
            encode_header(&mut split, &h, len);
            assert!(split.len() <= MAX_HEADER_LEN);
            split.extend_from_slice(&chunk_body(csid, ts, &payload, 4096));
            assert_eq!(whole, split, "len {len} ts {ts} csid {csid}");

            // And the reader gets the message back.
            let mut reader = ChunkReader::new(ReaderLimits::default());
            let mut scs = BytesMut::new();
            encode_message(
                &mut scs,
                &MessageHeader {
                    csid: 2,
                    timestamp: 0,
                    type_id: 1,
                    stream_id: 0,
                },
                &4096u32.to_be_bytes(),
                128,
            );
            scs.extend_from_slice(&split);
            assert!(reader.read(&mut scs).expect("scs").is_some());
            let m = reader.read(&mut scs).expect("msg").expect("complete");
            assert_eq!((m.csid, m.timestamp, m.stream_id), (csid, ts, 3));
            assert_eq!(m.payload, payload);
        }
    }

    #[test]
    fn body_is_an_exact_copy_not_a_view_of_the_read_buffer() {
        let read_buffer = Bytes::from(vec![1u8; 65536]);
        let payload = read_buffer.slice(100..200);
        let body = chunk_body(6, 0, &payload, 4096);
        assert_eq!(body, payload);
        assert_ne!(body.as_ptr(), payload.as_ptr());
        assert!(chunk_body(6, 0, &[], 4096).is_empty());
    }
}
