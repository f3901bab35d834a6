//! The chunk reader on arbitrary bytes. The first byte picks how the rest is split into reads.
//!
//! Invariants: no panic; no message longer than `max_message_size`; the chunk size stays within
//! `1..=max_chunk_size`; and the result (messages, then the error if any) does not depend on
//! how the bytes were split into reads.

#![no_main]

mod pieces;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcast::rtmp::chunk::{ChunkError, ChunkReader, RawMessage, ReaderLimits};

const LIMITS: ReaderLimits = ReaderLimits {
    max_chunk_size: 64 << 10,
    max_message_size: 64 << 10,
    max_buffered: 128 << 10,
    max_chunk_streams: 8,
};

fn run(reads: &[&[u8]]) -> (Vec<RawMessage>, Option<ChunkError>) {
    let mut reader = ChunkReader::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match reader.read(&mut buf) {
                Ok(Some(m)) => {
                    assert!(
                        m.payload.len() <= LIMITS.max_message_size,
                        "message of {} bytes passed the {} byte limit",
                        m.payload.len(),
                        LIMITS.max_message_size
                    );
                    messages.push(m);
                }
                Ok(None) => break,
                Err(e) => return (messages, Some(e)),
            }
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
