//! RTMP chunk stream: the inbound reader and the outbound writer.

pub mod reader;
pub mod writer;

pub use reader::{ChunkError, ChunkReader, RawMessage, ReaderLimits};
pub use writer::{
    chunk_body, chunk_body_len, encode_header, encode_message, put_chunk_body, MessageHeader,
    MAX_HEADER_LEN,
};
