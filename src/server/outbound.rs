//! A connection's pending output: small per-connection headers and shared bodies, written with
//! vectored writes so a batch of frames costs one syscall and no copy of any media payload.

use std::io::{self, IoSlice};
use std::ops::Range;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use crate::media::{Frame, FrameKind};
use crate::rtmp::chunk::{encode_header, encode_message, MessageHeader};

/// Most iovecs one `writev` takes on Linux (IOV_MAX).
const MAX_IOVECS: usize = 1024;

enum Piece {
    /// A range of `Outbound::own`: headers and control messages written for this connection.
    Own(Range<usize>),
    /// A frame body shared with every other player.
    Shared(Bytes),
}

pub struct Outbound {
    own: BytesMut,
    pieces: Vec<Piece>,
    /// Bytes queued and not yet written.
    queued: usize,
    /// Something other than media is queued (a command answer, a status): write it now.
    urgent: bool,
    /// A video frame is queued.
    video: bool,
    chunk_size: usize,
}

impl Outbound {
    pub fn new(chunk_size: usize) -> Self {
        Outbound {
            own: BytesMut::with_capacity(4096),
            pieces: Vec::with_capacity(64),
            queued: 0,
            urgent: false,
            video: false,
            chunk_size,
        }
    }

    /// The chunk size messages are written with; change it only right after queueing the
    /// Set Chunk Size message that announces it.
    pub fn set_chunk_size(&mut self, size: usize) {
        self.chunk_size = size;
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    pub fn is_urgent(&self) -> bool {
        self.urgent
    }

    pub fn has_video(&self) -> bool {
        self.video
    }

    fn extend_own(&mut self, start: usize) {
        let end = self.own.len();
        self.queued += end - start;
        if let Some(Piece::Own(r)) = self.pieces.last_mut() {
            if r.end == start {
                r.end = end;
                return;
            }
        }
        self.pieces.push(Piece::Own(start..end));
    }

    /// Queues a whole message, chunked at the current chunk size.
    pub fn message(&mut self, header: MessageHeader, payload: &[u8]) {
        let start = self.own.len();
        encode_message(&mut self.own, &header, payload, self.chunk_size);
        self.extend_own(start);
        self.urgent = true;
    }

    /// Queues a shared frame for message stream `stream_id`: our header, its shared body.
    pub fn frame(&mut self, frame: &Frame, stream_id: u32) {
        let start = self.own.len();
        encode_header(&mut self.own, &frame.header(stream_id), frame.len);
        self.video |= frame.kind == FrameKind::Video;
        self.extend_own(start);
        if !frame.chunked.is_empty() {
            self.queued += frame.chunked.len();
            self.pieces.push(Piece::Shared(frame.chunked.clone()));
        }
    }

    /// Writes everything queued. Each write may wait at most `stall` for the peer to accept
    /// bytes: a stuck peer is an error, a slow one that keeps accepting is not.
    pub async fn write_to(&mut self, w: &mut OwnedWriteHalf, stall: Duration) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Own(r) => IoSlice::new(&self.own[r.clone()]),
                Piece::Shared(b) => IoSlice::new(b),
            })
            .collect();
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            let n = rest.len().min(MAX_IOVECS);
            let written = match tokio::time::timeout(stall, w.write_vectored(&rest[..n])).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("peer accepted no bytes for {} ms", stall.as_millis()),
                    ))
                }
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, written);
        }
        drop(slices);
        self.pieces.clear();
        self.own.clear();
        self.queued = 0;
        self.urgent = false;
        self.video = false;
        Ok(())
    }
}
