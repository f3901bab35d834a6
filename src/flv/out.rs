//! An HTTP-FLV player's pending output: shared FLV tags (built once per frame, see
//! [`Frame::flv_tag`]) written as one HTTP chunk per batch with a vectored write, so a batch
//! costs one syscall and no copy of any media payload.

use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWrite;

use crate::media::{Frame, FrameKind};
use crate::server::write_all_vectored;

#[derive(Default)]
pub struct FlvOut {
    /// Tags (and the FLV header) queued, in order.
    pieces: Vec<Bytes>,
    queued: usize,
    video: bool,
}

impl FlvOut {
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// A video tag is queued.
    pub fn has_video(&self) -> bool {
        self.video
    }

    /// Queues bytes of this connection's own (the FLV file header).
    pub fn raw(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        self.pieces.push(bytes);
    }

    /// Queues a frame's shared FLV tag.
    pub fn frame(&mut self, frame: &Frame) {
        let tag = frame.flv_tag().clone();
        self.video |= frame.kind == FrameKind::Video;
        self.raw(tag);
    }

    /// Writes everything queued as one HTTP/1.1 chunk. Each write may wait at most `stall`
    /// for the peer to accept bytes: a stuck peer is an error, a slow one that keeps
    /// accepting is not.
    pub async fn write_chunk<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        stall: Duration,
    ) -> io::Result<usize> {
        if self.pieces.is_empty() {
            return Ok(0);
        }
        let head = format!("{:x}\r\n", self.queued);
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.pieces.len() + 2);
        slices.push(IoSlice::new(head.as_bytes()));
        slices.extend(self.pieces.iter().map(|p| IoSlice::new(p)));
        slices.push(IoSlice::new(b"\r\n"));
        let total = head.len() + self.queued + 2;
        write_all_vectored(w, &mut slices, stall).await?;
        self.pieces.clear();
        self.queued = 0;
        self.video = false;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_is_one_http_chunk_of_whole_tags() {
        let mut out = FlvOut::default();
        let a = Frame::new(FrameKind::Audio, 0, Bytes::from_static(&[0xAF, 1, 7]), 4096);
        let v = Frame::new(
            FrameKind::Video,
            40,
            Bytes::from_static(&[0x17, 1, 0, 0, 0]),
            4096,
        );
        out.raw(Bytes::from_static(b"FLV"));
        out.frame(&a);
        out.frame(&v);
        assert!(out.has_video());
        let body_len = 3 + (11 + 3 + 4) + (11 + 5 + 4);
        assert_eq!(out.queued_bytes(), body_len);
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let n = out
            .write_chunk(&mut server, Duration::from_secs(1))
            .await
            .expect("write");
        assert!(out.is_empty() && !out.has_video());
        drop(server);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut got)
            .await
            .expect("read");
        assert_eq!(n, got.len());
        let head = format!("{body_len:x}\r\n");
        assert!(got.starts_with(head.as_bytes()));
        assert!(got.ends_with(b"\r\n"));
        assert_eq!(&got[head.len()..head.len() + 3], b"FLV");
        assert_eq!(&got[head.len() + 3..head.len() + 3 + 18], &a.flv_tag()[..]);
        // Nothing queued: nothing written (an empty chunk would end the body).
        assert_eq!(
            out.write_chunk(&mut client, Duration::from_secs(1))
                .await
                .ok(),
            Some(0)
        );
    }
}
