//! Envelope codec: turns a chitchat `ChitchatEnvelope` into chitchat's own wire bytes and back.
//!
//! Owns: three loopback sockets per gossip socket and the sentinel protocol that keeps an encode
//! or decode paired with its own datagram. Must never: see an unauthenticated byte (the transport
//! verifies the tag before [`EnvelopeCodec::decode`]), block longer than [`CODEC_TIMEOUT`], or
//! return an envelope that belongs to another call.
//!
//! Why this exists: chitchat 0.13 keeps `ChitchatEnvelope::serialize`/`deserialize` `pub(crate)`
//! and its `Digest` (inside `Syn`/`SynAck`) has no public field or constructor, so code outside
//! chitchat cannot produce or parse the bytes it would send. The only public code that does is
//! `chitchat::transport::UdpSocket`. We borrow it as a serializer: to encode, chitchat's socket
//! sends the envelope to a raw loopback socket we read; to decode, we send the bytes from that raw
//! socket to a second chitchat socket and read the envelope it parsed. Cost: two extra loopback
//! datagrams per gossip message (about 10 µs), no copy of chitchat's format in our code. If a
//! later chitchat exposes the (de)serializer, this file becomes two function calls.
//!
//! Pairing: chitchat's `recv` silently skips a payload it cannot parse and waits for the next
//! one, so every decode sends its payload followed by a *sentinel* (a `Syn` whose cluster id is
//! [`SENTINEL_PREFIX`] + a sequence number, which no real peer can send: cluster ids may not
//! contain NUL). The decoded payload is the envelope read just before our own sentinel; a stale
//! sentinel (from a decode that was cancelled or timed out) resets the candidate, so late
//! datagrams can never be returned by a later call.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use chitchat::transport::{RecvOutcome, Socket, UdpSocket as ChitchatUdpSocket};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};

/// Upper bound on one encode or decode. Loopback delivery happens inside the send system call,
/// so this only matters if the kernel defers it (heavy softirq load).
pub(crate) const CODEC_TIMEOUT: Duration = Duration::from_millis(500);

/// Cluster id prefix of the sentinel `Syn`. Real cluster ids are refused if they contain NUL.
const SENTINEL_PREFIX: &str = "\0ringcast-codec-sentinel:";

/// Datagrams read while looking for our own before giving up (stale or stray datagrams).
const MAX_DRAIN: usize = 64;

/// Largest datagram the loopback sockets carry (the IPv4 UDP payload limit).
const MAX_LOOPBACK_DATAGRAM: usize = 65_507;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("codec socket: {0}")]
    Io(#[from] io::Error),
    #[error("chitchat socket: {0}")]
    Chitchat(String),
    #[error("codec timed out")]
    Timeout,
    #[error("codec lost its own datagram")]
    Lost,
}

/// One per gossip socket; not shared (every call takes `&mut self`).
pub(crate) struct EnvelopeCodec {
    /// chitchat's socket that serializes what it sends to `raw`.
    encoder: Box<dyn Socket>,
    /// chitchat's socket that parses what `raw` sends to it.
    decoder: Box<dyn Socket>,
    /// Our loopback socket: reads encoder output, writes decoder input. Async: it shares its
    /// runtime with the other gossip tasks (and, in tests, with everything), so it must never
    /// block a worker thread.
    raw: tokio::net::UdpSocket,
    raw_addr: SocketAddr,
    encoder_addr: SocketAddr,
    decoder_addr: SocketAddr,
    next_sentinel: u64,
    buf: Vec<u8>,
}

impl EnvelopeCodec {
    pub(crate) async fn open() -> Result<EnvelopeCodec, CodecError> {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let encoder = ChitchatUdpSocket::open(loopback)
            .await
            .map_err(|err| CodecError::Chitchat(format!("{err:#}")))?;
        let decoder = ChitchatUdpSocket::open(loopback)
            .await
            .map_err(|err| CodecError::Chitchat(format!("{err:#}")))?;
        let encoder: Box<dyn Socket> = Box::new(encoder);
        let decoder: Box<dyn Socket> = Box::new(decoder);
        let encoder_addr = encoder
            .local_addr()
            .map_err(|err| CodecError::Chitchat(format!("{err:#}")))?;
        let decoder_addr = decoder
            .local_addr()
            .map_err(|err| CodecError::Chitchat(format!("{err:#}")))?;
        let raw = tokio::net::UdpSocket::bind(loopback).await?;
        let raw_addr = raw.local_addr()?;
        Ok(EnvelopeCodec {
            encoder,
            decoder,
            raw,
            raw_addr,
            encoder_addr,
            decoder_addr,
            next_sentinel: 0,
            buf: vec![0; MAX_LOOPBACK_DATAGRAM],
        })
    }

    /// chitchat's bytes for `envelope`.
    pub(crate) async fn encode(
        &mut self,
        envelope: ChitchatEnvelope,
    ) -> Result<Vec<u8>, CodecError> {
        self.drain_raw()?;
        let outcome = self
            .encoder
            .send(self.raw_addr, envelope)
            .await
            .map_err(|err| CodecError::Chitchat(format!("{err:#}")))?;
        for _ in 0..MAX_DRAIN {
            let received =
                tokio::time::timeout(CODEC_TIMEOUT, self.raw.recv_from(&mut self.buf)).await;
            let (len, from) = match received {
                Ok(Ok(received)) => received,
                Ok(Err(err)) => return Err(err.into()),
                Err(_elapsed) => return Err(CodecError::Timeout),
            };
            if from == self.encoder_addr && len == outcome.num_bytes_sent {
                return Ok(self.buf[..len].to_vec());
            }
        }
        Err(CodecError::Lost)
    }

    /// The envelope chitchat parses from `bytes`, or `Ok(None)` if chitchat rejects them.
    pub(crate) async fn decode(
        &mut self,
        bytes: &[u8],
    ) -> Result<Option<ChitchatEnvelope>, CodecError> {
        let seq = self.next_sentinel;
        self.next_sentinel = self.next_sentinel.wrapping_add(1);
        let sentinel = self.encode(sentinel_envelope(seq)).await?;
        self.raw.send_to(bytes, self.decoder_addr).await?;
        self.raw.send_to(&sentinel, self.decoder_addr).await?;
        let mut candidate = None;
        for _ in 0..MAX_DRAIN {
            let received = tokio::time::timeout(CODEC_TIMEOUT, self.decoder.recv()).await;
            let RecvOutcome {
                from_addr,
                envelope,
                ..
            } = match received {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(err)) => return Err(CodecError::Chitchat(format!("{err:#}"))),
                Err(_elapsed) => return Err(CodecError::Timeout),
            };
            if from_addr != self.raw_addr {
                continue;
            }
            match sentinel_seq(&envelope) {
                Some(found) if found == seq => return Ok(candidate),
                Some(_stale) => candidate = None,
                None => candidate = Some(envelope),
            }
        }
        Err(CodecError::Lost)
    }

    /// Drops whatever a previous, timed-out encode left behind.
    fn drain_raw(&mut self) -> Result<(), CodecError> {
        for _ in 0..MAX_DRAIN {
            match self.raw.try_recv_from(&mut self.buf) {
                Ok(_) => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }
}

fn sentinel_envelope(seq: u64) -> ChitchatEnvelope {
    ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::Syn {
            cluster_id: format!("{SENTINEL_PREFIX}{seq}"),
            digest: Default::default(),
        },
    }
}

fn sentinel_seq(envelope: &ChitchatEnvelope) -> Option<u64> {
    match &envelope.message {
        ChitchatMessage::Syn { cluster_id, .. } => {
            cluster_id.strip_prefix(SENTINEL_PREFIX)?.parse().ok()
        }
        _ => None,
    }
}

/// True if `cluster_id` could be confused with the codec's sentinel.
pub(crate) fn clashes_with_sentinel(cluster_id: &str) -> bool {
    cluster_id.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(cluster_id: &str) -> ChitchatEnvelope {
        ChitchatEnvelope {
            version: ProtocolVersion::V1,
            message: ChitchatMessage::Syn {
                cluster_id: cluster_id.to_string(),
                digest: Default::default(),
            },
        }
    }

    #[tokio::test]
    async fn round_trips_envelopes() -> anyhow::Result<()> {
        let mut codec = EnvelopeCodec::open().await?;
        for envelope in [
            syn("ringcast"),
            ChitchatEnvelope {
                version: ProtocolVersion::V0,
                message: ChitchatMessage::BadCluster,
            },
        ] {
            let bytes = codec.encode(envelope).await?;
            let again = codec.decode(&bytes).await?;
            let reencoded = match again {
                Some(envelope) => codec.encode(envelope).await?,
                None => anyhow::bail!("decode failed"),
            };
            assert_eq!(bytes, reencoded);
        }
        Ok(())
    }

    #[tokio::test]
    async fn garbage_decodes_to_none_and_does_not_poison_the_next_call() -> anyhow::Result<()> {
        let mut codec = EnvelopeCodec::open().await?;
        assert!(codec.decode(b"definitely not chitchat").await?.is_none());
        assert!(codec.decode(&[]).await?.is_none());
        let bytes = codec.encode(syn("after-garbage")).await?;
        match codec.decode(&bytes).await? {
            Some(ChitchatEnvelope {
                message: ChitchatMessage::Syn { cluster_id, .. },
                ..
            }) => assert_eq!(cluster_id, "after-garbage"),
            other => anyhow::bail!("unexpected {other:?}"),
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_stale_payload_is_never_returned_by_a_later_decode() -> anyhow::Result<()> {
        let mut codec = EnvelopeCodec::open().await?;
        // Simulate a cancelled decode: payload and an old sentinel already queued.
        let stale_payload = codec.encode(syn("stale")).await?;
        let stale_sentinel = codec.encode(sentinel_envelope(999)).await?;
        codec
            .raw
            .send_to(&stale_payload, codec.decoder_addr)
            .await?;
        codec
            .raw
            .send_to(&stale_sentinel, codec.decoder_addr)
            .await?;
        assert!(codec.decode(b"garbage").await?.is_none());
        Ok(())
    }
}
