//! A connection's pending output: small per-connection headers and shared bodies, written with
//! vectored writes so a batch of frames costs one syscall and no copy of any media payload.

use std::future::Future;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::media::{Frame, FrameKind};
use crate::rtmp::chunk::{encode_header, encode_message, MessageHeader};

/// Most iovecs one `writev` takes on Linux (IOV_MAX).
const MAX_IOVECS: usize = 1024;

enum Piece {
    /// A range of `Outbound::own`: headers and control messages written for this connection.
    Own(Range<usize>),
    /// A frame's body, shared with every other player. Holding the frame (moved in from the
    /// stream's ring) rather than a clone of its body saves a reference count per frame.
    Shared(Arc<Frame>),
    /// A whole frame for message stream 1, its header included: shared too.
    Whole(Arc<Frame>),
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
            own: BytesMut::new(),
            pieces: Vec::new(),
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

    /// Queues a shared frame for message stream `stream_id`: on stream 1 the frame as it is
    /// (one iovec, nothing built per player); on another, our header and its shared body.
    pub fn frame(&mut self, frame: Arc<Frame>, stream_id: u32) {
        self.video |= frame.kind == FrameKind::Video;
        if stream_id == 1 {
            self.queued += frame.wire.len();
            self.pieces.push(Piece::Whole(frame));
            return;
        }
        let start = self.own.len();
        encode_header(&mut self.own, &frame.header(stream_id), frame.len);
        self.extend_own(start);
        if !frame.chunked.is_empty() {
            self.queued += frame.chunked.len();
            self.pieces.push(Piece::Shared(frame));
        }
    }

    /// Writes everything queued, then flushes (TLS may hold records back until then; TCP
    /// holds nothing). Each write may wait at most `stall` for the peer to accept bytes: a
    /// stuck peer is an error, a slow one that keeps accepting is not.
    pub async fn write_to<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        stall: Duration,
    ) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Own(r) => IoSlice::new(&self.own[r.clone()]),
                Piece::Shared(f) => IoSlice::new(&f.chunked),
                Piece::Whole(f) => IoSlice::new(&f.wire),
            })
            .collect();
        write_all_vectored(w, &mut slices, stall).await?;
        drop(slices);
        within(stall, w.flush()).await?;
        self.pieces.clear();
        self.own.clear();
        self.queued = 0;
        self.urgent = false;
        self.video = false;
        Ok(())
    }
}

/// Writes every slice, [`MAX_IOVECS`] at a time, each write within `stall`: RTMP players'
/// batches and HTTP-FLV players' chunks alike.
pub(crate) async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    slices: &mut [IoSlice<'_>],
    stall: Duration,
) -> io::Result<()> {
    let mut rest: &mut [IoSlice<'_>] = slices;
    while !rest.is_empty() {
        let n = rest.len().min(MAX_IOVECS);
        let written = within(stall, w.write_vectored(&rest[..n])).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, written);
    }
    Ok(())
}

/// `io`, failed as stalled unless done within `stall`. Most writes to a socket are done at
/// their first poll, and those build no timer.
async fn within<T>(stall: Duration, io: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    let mut io = std::pin::pin!(io);
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await {
        return done;
    }
    match tokio::time::timeout(stall, io).await {
        Ok(done) => done,
        Err(_) => Err(stalled(stall)),
    }
}

fn stalled(stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("peer accepted no bytes for {} ms", stall.as_millis()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::{ChunkReader, ReaderLimits};
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    /// Many frames and control messages through a real socket whose reader is slow: partial
    /// vectored writes must resume exactly, and the peer must read back every message.
    #[tokio::test]
    async fn vectored_batches_survive_partial_writes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        let (_rd, mut wr) = client.into_split();

        let mut out = Outbound::new(128);
        let mut expected = Vec::new();
        // The peer starts at chunk size 128; announce 4096 the way a session does.
        out.message(
            MessageHeader {
                csid: 2,
                timestamp: 0,
                type_id: 1,
                stream_id: 0,
            },
            &4096u32.to_be_bytes(),
        );
        out.set_chunk_size(4096);
        for i in 0..600u32 {
            let len = 100 + (i as usize * 977) % 30_000;
            let payload = Bytes::from(vec![(i % 251) as u8; len]);
            let frame = Frame::new(FrameKind::Video, i * 33, payload.clone(), 4096);
            // Stream 1 sends the frame whole; any other gets its own header.
            let sid = if i % 3 == 0 { 2 } else { 1 };
            out.frame(Arc::new(frame), sid);
            expected.push((sid, i * 33, payload));
        }
        assert!(out.is_urgent() && out.has_video());
        let reader = tokio::spawn(async move {
            let mut reader = ChunkReader::new(ReaderLimits::default());
            let mut buf = bytes::BytesMut::new();
            let mut got = Vec::new();
            while got.len() < 601 {
                buf.reserve(1000);
                // Small, slow reads keep the sender's socket buffer full.
                let mut small = vec![0u8; 1000];
                let n = server.read(&mut small).await.expect("read");
                assert!(n > 0, "closed early");
                buf.extend_from_slice(&small[..n]);
                while let Some(m) = reader.read(&mut buf).expect("valid chunks") {
                    got.push((m.stream_id, m.timestamp, m.payload));
                }
            }
            got
        });
        out.write_to(&mut wr, Duration::from_secs(20))
            .await
            .expect("write");
        assert!(out.is_empty() && out.queued_bytes() == 0 && !out.is_urgent() && !out.has_video());
        let got = reader.await.expect("reader");
        assert_eq!(got.len(), 601);
        assert_eq!(&got[1..], &expected[..]);
    }
}
