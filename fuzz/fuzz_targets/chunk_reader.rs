//! The chunk reader on arbitrary bytes. The first byte picks how the rest is split into reads.
//!
//! Invariants: no panic; no message longer than its type's limit (`max_message_size` for media,
//! `max_data_size` for data, `max_command_size` for the rest); the capacity held for partial
//! messages never exceeds `max_buffered`; the chunk size stays within `1..=max_chunk_size`; and
//! the result (messages, then the error if any) does not depend on how the bytes were split
//! into reads.

#![no_main]

mod pieces;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcast::rtmp::chunk::{ChunkError, ChunkReader, RawMessage, ReaderLimits};

const LIMITS: ReaderLimits = ReaderLimits {
    max_chunk_size: 64 << 10,
    max_message_size: 64 << 10,
    max_command_size: 4 << 10,
    max_data_size: 16 << 10,
    max_buffered: 128 << 10,
    max_chunk_streams: 8,
};

fn limit_of(type_id: u8) -> usize {
    match type_id {
        8 | 9 | 22 => LIMITS.max_message_size,
        15 | 18 => LIMITS.max_data_size,
        _ => LIMITS.max_command_size,
    }
}

fn run(reads: &[&[u8]]) -> (Vec<RawMessage>, Option<ChunkError>) {
    let mut reader = ChunkReader::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match reader.read(&mut buf) {
                Ok(Some(m)) => {
                    let limit = limit_of(m.type_id);
                    assert!(
                        m.payload.len() <= limit,
                        "type {} message of {} bytes passed its {limit} byte limit",
                        m.type_id,
                        m.payload.len(),
                    );
                    messages.push(m);
                }
                Ok(None) => break,
                Err(e) => return (messages, Some(e)),
            }
            assert!(
                reader.buffered() <= LIMITS.max_buffered,
                "{} bytes of partial messages held",
                reader.buffered()
            );
            let size = reader.chunk_size();
            assert!(
                (1..=LIMITS.max_chunk_size).contains(&size),
                "chunk size {size} outside the limits"
            );
        }
    }
    (messages, None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    let whole = run(&[data]);
    if sel != 0 {
        let split = run(&pieces::pieces(sel, data));
        assert_eq!(whole, split, "result depends on how the input was split");
    }
});
