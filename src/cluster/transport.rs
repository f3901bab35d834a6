//! Authenticated gossip transport: chitchat's `Transport` over UDP or over [`SimNetwork`].
//!
//! Owns: the frame format, the cluster key, fragmentation, replay checks, the wire sockets and
//! the counters of rejected datagrams. Must never: hand chitchat bytes whose tag was not
//! verified first, parse anything before the tag check, accept a datagram twice or from
//! outside the time window (see `replay`), send a datagram larger than [`MAX_DATAGRAM`], or
//! panic on network input.
//!
//! Frame (one datagram), integers big-endian:
//!
//! ```text
//! "RCG" | version=2 | sender u64 | seq u64 | sent_ms u64 | msg_id u32 | fragment index u8
//!       | fragment count u8 | chunk | tag[32]
//! tag = HMAC-SHA256(K, every byte before the tag)
//! K   = HMAC-SHA256(key = secret, "ringcast/gossip/v1\0" || cluster_id)
//! ```
//!
//! `sender` is random per transport (a restart is a new sender), `seq` counts that sender's
//! datagrams, `sent_ms` is its wall clock: with them the receiver refuses replays (a captured
//! datagram sent again) and stale captures, see `replay`.
//!
//! chitchat fills a message up to 65,507 bytes, so with our 42 bytes of framing a message may
//! need two datagrams; each fragment carries its own tag and fragments are reassembled per
//! (sender, msg_id) in a small bounded table. Binding the key to `cluster_id` means a node of
//! another cluster with the same secret is rejected like a stranger.
//!

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tracing::{debug, warn};

use super::codec::EnvelopeCodec;
use super::replay::ReplayGuard;
use super::simnet::{SimEndpoint, SimNetwork};

/// Largest UDP payload over IPv4; no datagram we send is larger.
pub const MAX_DATAGRAM: usize = 65_507;

const MAGIC: &[u8; 3] = b"RCG";
const FRAME_VERSION: u8 = 2;
const HEADER_LEN: usize = 3 + 1 + 8 + 8 + 8 + 4 + 1 + 1;
/// Receive buffer asked of the kernel for the gossip socket, so that a burst of datagrams
/// (a large cluster's digests arriving together) is not dropped (Linux caps it at
/// `net.core.rmem_max`).
const RECV_BUFFER: usize = 4 << 20;
const TAG_LEN: usize = 32;
/// Largest message chunk in one datagram.
const MAX_CHUNK: usize = MAX_DATAGRAM - HEADER_LEN - TAG_LEN;
/// chitchat messages are at most [`MAX_DATAGRAM`] bytes, so two fragments always suffice.
const MAX_FRAGMENTS: u8 = 2;
/// Messages being reassembled at once (all senders together); the oldest is evicted.
const MAX_PARTIAL_MESSAGES: usize = 32;
const KDF_LABEL: &[u8] = b"ringcast/gossip/v1\0";

type HmacSha256 = Hmac<Sha256>;

/// The per-cluster gossip key, derived from the shared secret and bound to the cluster id.
#[derive(Clone)]
pub(crate) struct GossipKey([u8; 32]);

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKey(..)")
    }
}

impl GossipKey {
    pub(crate) fn derive(secret: &str, cluster_id: &str) -> GossipKey {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
        let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
        };
        mac.update(KDF_LABEL);
        mac.update(cluster_id.as_bytes());
        GossipKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self) -> HmacSha256 {
        match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
        }
    }
}

/// Why a datagram was dropped before reaching chitchat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("datagram too short")]
    TooShort,
    #[error("bad tag")]
    BadTag,
    #[error("unknown frame magic or version")]
    BadHeader,
    #[error("bad fragment header")]
    BadFragment,
}

/// A verified frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) sender: u64,
    pub(crate) seq: u64,
    pub(crate) sent_ms: u64,
    pub(crate) msg_id: u32,
    pub(crate) index: u8,
    pub(crate) count: u8,
    pub(crate) chunk: &'a [u8],
}

/// Where a sealed datagram says it comes from: the sender, its next sequence number (one per
/// datagram; advanced by [`seal`]) and its clock.
pub(crate) struct Origin {
    pub(crate) sender: u64,
    pub(crate) next_seq: u64,
    pub(crate) now_ms: u64,
}

/// Splits `message` into tagged datagrams; `None` if it needs more than [`MAX_FRAGMENTS`].
pub(crate) fn seal(
    key: &GossipKey,
    origin: &mut Origin,
    msg_id: u32,
    message: &[u8],
) -> Option<Vec<Vec<u8>>> {
    let chunks: Vec<&[u8]> = if message.is_empty() {
        vec![message]
    } else {
        message.chunks(MAX_CHUNK).collect()
    };
    let count = u8::try_from(chunks.len())
        .ok()
        .filter(|count| *count <= MAX_FRAGMENTS)?;
    let datagrams = (0..count)
        .zip(chunks)
        .map(|(index, chunk)| {
            let mut datagram = Vec::with_capacity(HEADER_LEN + chunk.len() + TAG_LEN);
            datagram.extend_from_slice(MAGIC);
            datagram.push(FRAME_VERSION);
            datagram.extend_from_slice(&origin.sender.to_be_bytes());
            datagram.extend_from_slice(&origin.next_seq.to_be_bytes());
            origin.next_seq = origin.next_seq.wrapping_add(1);
            datagram.extend_from_slice(&origin.now_ms.to_be_bytes());
            datagram.extend_from_slice(&msg_id.to_be_bytes());
            datagram.push(index);
            datagram.push(count);
            datagram.extend_from_slice(chunk);
            let mut mac = key.mac();
            mac.update(&datagram);
            datagram.extend_from_slice(&mac.finalize().into_bytes());
            datagram
        })
        .collect();
    Some(datagrams)
}

/// Verifies the tag (constant time), then the header. Nothing is read before the tag check.
pub(crate) fn open<'a>(key: &GossipKey, datagram: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    if datagram.len() < HEADER_LEN + TAG_LEN {
        return Err(FrameError::TooShort);
    }
    let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
    let mut mac = key.mac();
    mac.update(signed);
    mac.verify_slice(tag).map_err(|_| FrameError::BadTag)?;
    let (header, chunk) = signed.split_at(HEADER_LEN);
    if &header[0..3] != MAGIC || header[3] != FRAME_VERSION {
        return Err(FrameError::BadHeader);
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let (sender, seq, sent_ms) = (u64_at(4), u64_at(12), u64_at(20));
    let msg_id = u32::from_be_bytes([header[28], header[29], header[30], header[31]]);
    let (index, count) = (header[32], header[33]);
    if count == 0 || count > MAX_FRAGMENTS || index >= count {
        return Err(FrameError::BadFragment);
    }
    Ok(Frame {
        sender,
        seq,
        sent_ms,
        msg_id,
        index,
        count,
        chunk,
    })
}

/// Reassembles fragmented messages; bounded in entries and bytes.
#[derive(Default)]
pub(crate) struct Reassembler {
    partial: VecDeque<Partial>,
}

struct Partial {
    from: SocketAddr,
    msg_id: u32,
    chunks: Vec<Option<Vec<u8>>>,
}

impl Reassembler {
    /// Returns the whole message once its last missing fragment arrives.
    pub(crate) fn accept(&mut self, from: SocketAddr, frame: Frame<'_>) -> Option<Vec<u8>> {
        if frame.count == 1 {
            return Some(frame.chunk.to_vec());
        }
        let position = self
            .partial
            .iter()
            .position(|p| p.from == from && p.msg_id == frame.msg_id);
        let position = match position {
            Some(position) if self.partial[position].chunks.len() == usize::from(frame.count) => {
                position
            }
            Some(position) => {
                // Same id, different fragment count: a sender restart reused the id.
                self.partial.remove(position);
                self.insert(from, &frame)
            }
            None => self.insert(from, &frame),
        };
        let partial = self.partial.get_mut(position)?;
        let slot = partial.chunks.get_mut(usize::from(frame.index))?;
        *slot = Some(frame.chunk.to_vec());
        if partial.chunks.iter().all(Option::is_some) {
            let partial = self.partial.remove(position)?;
            Some(partial.chunks.into_iter().flatten().flatten().collect())
        } else {
            None
        }
    }

    fn insert(&mut self, from: SocketAddr, frame: &Frame<'_>) -> usize {
        if self.partial.len() >= MAX_PARTIAL_MESSAGES {
            self.partial.pop_front();
        }
        self.partial.push_back(Partial {
            from,
            msg_id: frame.msg_id,
            chunks: vec![None; usize::from(frame.count)],
        });
        self.partial.len() - 1
    }
}

/// Counters shared by every socket of one transport.
#[derive(Debug, Default)]
pub(crate) struct TransportStats {
    bad_datagrams: AtomicU64,
    replayed: AtomicU64,
    undecodable: AtomicU64,
    datagrams_sent: AtomicU64,
    bytes_sent: AtomicU64,
    datagrams_received: AtomicU64,
    bytes_received: AtomicU64,
}

/// Gossip traffic counters since start (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GossipStats {
    /// Datagrams and bytes put on the wire, framing included.
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// Authenticated datagrams and bytes taken off the wire.
    pub datagrams_received: u64,
    pub bytes_received: u64,
    /// Dropped before chitchat saw them: bad or missing tag, malformed frame.
    pub bad_datagrams: u64,
    /// Authenticated, but refused as replays or sent outside the time window.
    pub replayed: u64,
    /// Authenticated, but chitchat could not parse them (version skew).
    pub undecodable: u64,
}

impl TransportStats {
    pub(crate) fn bad_datagrams(&self) -> u64 {
        self.bad_datagrams.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> GossipStats {
        GossipStats {
            datagrams_sent: self.datagrams_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            datagrams_received: self.datagrams_received.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            bad_datagrams: self.bad_datagrams.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            undecodable: self.undecodable.load(Ordering::Relaxed),
        }
    }
}

/// chitchat `Transport` that authenticates every datagram with the cluster key.
pub(crate) struct AuthTransport {
    key: GossipKey,
    /// Bound by `Cluster::start` (so the advertised port is known before chitchat starts);
    /// taken by the first `open`.
    prebound: Mutex<Option<Wire>>,
    /// Where later `open`s bind: this simulated network, or UDP if `None`.
    network: Option<SimNetwork>,
    stats: Arc<TransportStats>,
    /// This transport's sender id (see `replay`); also seeds its message ids.
    sender: u64,
}

impl AuthTransport {
    pub(crate) fn new(
        key: GossipKey,
        prebound: Wire,
        network: Option<SimNetwork>,
        stats: Arc<TransportStats>,
        sender: u64,
    ) -> AuthTransport {
        AuthTransport {
            key,
            prebound: Mutex::new(Some(prebound)),
            network,
            stats,
            sender,
        }
    }
}

#[async_trait]
impl Transport for AuthTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let prebound = self
            .prebound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .filter(|wire| wire.local_addr().ok() == Some(listen_addr));
        let wire = match prebound {
            Some(wire) => wire,
            None => Wire::bind(listen_addr, self.network.as_ref()).await?,
        };
        let codec = EnvelopeCodec::open().await?;
        Ok(Box::new(AuthSocket {
            key: self.key.clone(),
            wire,
            codec,
            reassembler: Reassembler::default(),
            stats: self.stats.clone(),
            // Low bits of the sender: a restarted node does not reuse its predecessor's
            // message ids, so stale fragments never mix with new ones.
            next_msg_id: self.sender as u32,
            sender: self.sender,
            next_seq: 0,
            replay: ReplayGuard::default(),
            warned_skew: false,
            buf: vec![0; MAX_DATAGRAM],
            pending: None,
        }))
    }
}

/// A bound gossip socket: UDP, or an endpoint of a simulated network.
pub(crate) enum Wire {
    Udp(tokio::net::UdpSocket),
    Sim(SimEndpoint),
}

impl Wire {
    pub(crate) async fn bind(addr: SocketAddr, network: Option<&SimNetwork>) -> io::Result<Wire> {
        match network {
            Some(network) => Ok(Wire::Sim(network.bind(addr)?)),
            None => {
                let socket = tokio::net::UdpSocket::bind(addr).await?;
                if let Err(err) = socket2::SockRef::from(&socket).set_recv_buffer_size(RECV_BUFFER)
                {
                    debug!(error = %err, "cannot enlarge the gossip receive buffer");
                }
                Ok(Wire::Udp(socket))
            }
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Wire::Udp(socket) => socket.local_addr(),
            Wire::Sim(endpoint) => Ok(endpoint.local_addr()),
        }
    }

    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        match self {
            Wire::Udp(socket) => socket.send_to(datagram, to).await.map(|_| ()),
            Wire::Sim(endpoint) => {
                endpoint.send_to(datagram, to);
                Ok(())
            }
        }
    }

    /// Cancel safe: a datagram is either returned or still queued.
    async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            Wire::Udp(socket) => socket.recv_from(buf).await,
            Wire::Sim(endpoint) => endpoint.recv_from(buf).await,
        }
    }
}

struct AuthSocket {
    key: GossipKey,
    wire: Wire,
    codec: EnvelopeCodec,
    reassembler: Reassembler,
    stats: Arc<TransportStats>,
    next_msg_id: u32,
    sender: u64,
    next_seq: u64,
    replay: ReplayGuard,
    /// A clock-skew refusal was logged already (once per socket is enough to say why).
    warned_skew: bool,
    buf: Vec<u8>,
    /// A verified message whose decode was interrupted (chitchat's loop drops `recv` futures
    /// when its gossip timer fires); decoded first by the next `recv`.
    pending: Option<(SocketAddr, Vec<u8>)>,
}

fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::OutOfMemory
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[async_trait]
impl Socket for AuthSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.wire.local_addr()?)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let message = self.codec.encode(envelope).await?;
        let msg_id = self.next_msg_id;
        self.next_msg_id = self.next_msg_id.wrapping_add(1);
        let mut origin = Origin {
            sender: self.sender,
            next_seq: self.next_seq,
            now_ms: super::wall_ms(),
        };
        let sealed = seal(&self.key, &mut origin, msg_id, &message);
        self.next_seq = origin.next_seq;
        let Some(datagrams) = sealed else {
            anyhow::bail!("gossip message of {} bytes is too large", message.len());
        };
        let mut num_bytes_sent = 0;
        for datagram in datagrams {
            self.wire.send_to(&datagram, to).await?;
            num_bytes_sent += datagram.len();
            self.stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_sent
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        }
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if let Some((from, message)) = self.pending.as_ref() {
                let (from, num_bytes_received) = (*from, message.len());
                let decoded = self.codec.decode(message).await;
                self.pending = None;
                match decoded {
                    Ok(Some(envelope)) => {
                        return Ok(RecvOutcome {
                            from_addr: from,
                            envelope,
                            num_bytes_received,
                        })
                    }
                    Ok(None) => {
                        self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                        warn!(%from, "authenticated gossip message chitchat cannot parse");
                    }
                    Err(err) => debug!(%from, error = %err, "gossip codec failed; message dropped"),
                }
            }
            let (len, from) = match self.wire.recv_from(&mut self.buf).await {
                Ok(received) => received,
                Err(err) if is_transient(&err) => continue,
                Err(err) => return Err(err.into()),
            };
            let frame = match open(&self.key, &self.buf[..len]) {
                Ok(frame) => frame,
                Err(err) => {
                    self.stats.bad_datagrams.fetch_add(1, Ordering::Relaxed);
                    debug!(%from, len, error = %err, "dropped gossip datagram");
                    continue;
                }
            };
            if let Err(err) =
                self.replay
                    .check(frame.sender, frame.seq, frame.sent_ms, super::wall_ms())
            {
                self.stats.replayed.fetch_add(1, Ordering::Relaxed);
                if matches!(err, super::replay::ReplayError::Stale { .. }) && !self.warned_skew {
                    self.warned_skew = true;
                    warn!(%from, error = %err, "gossip datagram refused: is this node's clock \
                        or the sender's off? Clocks must agree within the replay window");
                } else {
                    debug!(%from, error = %err, "gossip datagram refused");
                }
                continue;
            }
            self.stats
                .datagrams_received
                .fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_received
                .fetch_add(len as u64, Ordering::Relaxed);
            if let Some(message) = self.reassembler.accept(from, frame) {
                self.pending = Some((from, message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> GossipKey {
        GossipKey::derive("s3cret", "ringcast")
    }

    fn origin() -> Origin {
        Origin {
            sender: 42,
            next_seq: 7,
            now_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn key_depends_on_secret_and_cluster_id() {
        assert_ne!(key().0, GossipKey::derive("s3cret", "other").0);
        assert_ne!(key().0, GossipKey::derive("other", "ringcast").0);
        assert_eq!(key().0, GossipKey::derive("s3cret", "ringcast").0);
    }

    #[test]
    fn seal_open_round_trip_small_and_fragmented() {
        let key = key();
        let small = b"hello chitchat".to_vec();
        let datagrams = seal(&key, &mut origin(), 7, &small).unwrap_or_default();
        assert_eq!(datagrams.len(), 1);
        let frame = open(&key, &datagrams[0]);
        assert_eq!(
            frame,
            Ok(Frame {
                sender: 42,
                seq: 7,
                sent_ms: 1_700_000_000_000,
                msg_id: 7,
                index: 0,
                count: 1,
                chunk: &small[..]
            })
        );

        let big: Vec<u8> = (0..MAX_DATAGRAM).map(|i| (i % 251) as u8).collect();
        let mut fragmented = origin();
        let datagrams = seal(&key, &mut fragmented, 8, &big).unwrap_or_default();
        assert_eq!(datagrams.len(), 2);
        assert_eq!(fragmented.next_seq, 9, "one sequence number per datagram");
        let seqs: Vec<u64> = datagrams
            .iter()
            .filter_map(|d| open(&key, d).ok().map(|f| f.seq))
            .collect();
        assert_eq!(seqs, [7, 8]);
        assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM));
        let from: SocketAddr = ([127, 0, 0, 1], 9).into();
        let mut reassembler = Reassembler::default();
        // Out of order arrival.
        let second = open(&key, &datagrams[1]).map(|f| reassembler.accept(from, f));
        assert_eq!(second, Ok(None));
        let first = open(&key, &datagrams[0]).map(|f| reassembler.accept(from, f));
        assert_eq!(first, Ok(Some(big)));
    }

    #[test]
    fn messages_needing_more_than_two_datagrams_are_refused() {
        assert!(seal(&key(), &mut origin(), 1, &vec![0u8; 2 * MAX_CHUNK]).is_some());
        assert!(seal(&key(), &mut origin(), 1, &vec![0u8; 2 * MAX_CHUNK + 1]).is_none());
    }

    #[test]
    fn wrong_key_truncation_and_tampering_are_rejected() {
        let datagram = seal(&key(), &mut origin(), 1, b"payload")
            .and_then(|d| d.into_iter().next())
            .unwrap_or_default();
        let other = GossipKey::derive("wrong", "ringcast");
        assert_eq!(open(&other, &datagram), Err(FrameError::BadTag));
        assert_eq!(open(&key(), &datagram[..10]), Err(FrameError::TooShort));
        assert_eq!(open(&key(), &[]), Err(FrameError::TooShort));
        for i in 0..datagram.len() {
            let mut tampered = datagram.clone();
            tampered[i] ^= 0x01;
            assert_eq!(open(&key(), &tampered), Err(FrameError::BadTag), "byte {i}");
        }
    }

    #[test]
    fn authenticated_but_malformed_fragment_headers_are_rejected() {
        let key = key();
        let forge = |index: u8, count: u8| {
            let mut datagram = Vec::new();
            datagram.extend_from_slice(MAGIC);
            datagram.push(FRAME_VERSION);
            datagram.extend_from_slice(&[0; 24]); // sender, seq, sent_ms
            datagram.extend_from_slice(&1u32.to_be_bytes());
            datagram.push(index);
            datagram.push(count);
            datagram.extend_from_slice(b"x");
            let mut mac = key.mac();
            mac.update(&datagram);
            datagram.extend_from_slice(&mac.finalize().into_bytes());
            datagram
        };
        assert_eq!(open(&key, &forge(0, 0)), Err(FrameError::BadFragment));
        assert_eq!(open(&key, &forge(2, 2)), Err(FrameError::BadFragment));
        assert_eq!(open(&key, &forge(0, 3)), Err(FrameError::BadFragment));
        assert!(open(&key, &forge(1, 2)).is_ok());
    }

    #[test]
    fn reassembly_table_is_bounded() {
        let key = key();
        let big = vec![1u8; MAX_DATAGRAM];
        let mut reassembler = Reassembler::default();
        let from: SocketAddr = ([127, 0, 0, 1], 9).into();
        for msg_id in 0..(MAX_PARTIAL_MESSAGES as u32 * 4) {
            let datagrams = seal(&key, &mut origin(), msg_id, &big).unwrap_or_default();
            if let Ok(frame) = open(&key, &datagrams[0]) {
                assert_eq!(reassembler.accept(from, frame), None);
            }
        }
        assert_eq!(reassembler.partial.len(), MAX_PARTIAL_MESSAGES);
    }
}
