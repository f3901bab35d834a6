//! The stream hub: the registry of live streams on this node and the fan-out from one publisher
//! to its players.
//!
//! It owns which streams exist, who publishes each, the fast-start cache and the per-stream
//! broadcast ring. It must never block on a socket or wait for a slow player: the publisher's
//! send is a short lock plus a ring write, and a player that falls behind is told it lagged and
//! skips to the next keyframe on its own. Relays (edges) will be ordinary publishers and players.

pub mod ingest;
mod ring;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

pub use ring::Receiver;
use stream::Stream;
pub use stream::{Event, Snapshot, StreamInfo};

use crate::media::FrameKind;

/// Settings the hub needs from the config.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// Outbound chunk size: frames are chunked once, at ingest, with it.
    pub chunk_size: usize,
    /// Per-stream cap on the GOP kept for fast start.
    pub gop_cache_max_bytes: usize,
    /// Per-stream broadcast ring length; a player further behind than this lags.
    pub queue_messages: usize,
    /// Streams that may have players and no publisher at once (players waiting for a
    /// publisher); a player of one more such stream is refused.
    pub max_waiting_streams: usize,
    /// A publisher that sent nothing for this long is stale: a new publisher of its stream
    /// takes the stream over at once (an encoder reconnecting after a network blip, while
    /// its dead connection has not timed out yet).
    pub stale_publisher: std::time::Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            chunk_size: 4096,
            gop_cache_max_bytes: 16 << 20,
            queue_messages: 256,
            max_waiting_streams: 1000,
            stale_publisher: std::time::Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("stream {0} is already being published")]
    AlreadyPublishing(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlayError {
    #[error("{0} streams already wait for a publisher on this node, the limit")]
    TooManyWaiting(usize),
}

/// How a publisher asks for a stream's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// A client: refused while a live publisher holds it.
    Publish,
    /// A relay pulling the stream from elsewhere: any client takes it over.
    Relay,
    /// An authorized client that takes the stream over whoever holds it.
    Takeover,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: HubConfig,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    /// Streams with players and no publisher, kept by the streams themselves.
    waiting: Arc<AtomicUsize>,
}

/// Locks a mutex; a panic elsewhere while it was held costs that connection, not the server.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                config,
                streams: Mutex::new(HashMap::new()),
                waiting: Arc::new(AtomicUsize::new(0)),
            }),
        }
    }

    pub fn config(&self) -> HubConfig {
        self.inner.config
    }

    /// Takes the publisher slot of `key`. A second publisher is refused and the first keeps
    /// going, unless the first has sent nothing for [`HubConfig::stale_publisher`]: then the
    /// new one takes the stream over (the stale one's `is_current` turns false).
    pub fn publish(&self, key: &str, conn_id: u64) -> Result<Publisher, PublishError> {
        self.take_slot(key, conn_id, Claim::Publish).map(|(p, _)| p)
    }

    /// Takes the publisher slot of `key` whoever holds it (an authorized publisher taking a
    /// live stream over); the connection id it was taken from, if any, so that connection can
    /// be told.
    pub fn publish_takeover(
        &self,
        key: &str,
        conn_id: u64,
    ) -> Result<(Publisher, Option<u64>), PublishError> {
        self.take_slot(key, conn_id, Claim::Takeover)
    }

    /// Takes the publisher slot for a relay that pulls `key` from another node. A real
    /// publisher arriving later takes the slot over (`Publisher::is_current` turns false).
    pub fn publish_relay(&self, key: &str, conn_id: u64) -> Result<Publisher, PublishError> {
        self.take_slot(key, conn_id, Claim::Relay).map(|(p, _)| p)
    }

    fn take_slot(
        &self,
        key: &str,
        conn_id: u64,
        claim: Claim,
    ) -> Result<(Publisher, Option<u64>), PublishError> {
        // Under the registry lock, so a concurrent release cannot orphan the stream.
        let (stream, replaced) = {
            let mut streams = lock(&self.inner.streams);
            let stream = self.entry(&mut streams, key);
            let replaced = stream.start_publish(conn_id, claim)?;
            (stream, replaced)
        };
        Ok((
            Publisher {
                hub: self.clone(),
                stream,
                conn_id,
                held_since: None,
            },
            replaced,
        ))
    }

    /// Whether `key` has a publisher (local or relay) right now.
    pub fn is_publishing(&self, key: &str) -> bool {
        let stream = lock(&self.inner.streams).get(key).cloned();
        stream.is_some_and(|s| s.has_publisher())
    }

    /// Players of `key` right now (0 when the stream does not exist).
    pub fn players_of(&self, key: &str) -> usize {
        let stream = lock(&self.inner.streams).get(key).cloned();
        stream.map_or(0, |s| s.player_count())
    }

    /// Joins `key` as a player: the fast-start snapshot and a receiver for what follows. A
    /// stream with no publisher yet is created empty and the player waits on it, unless
    /// [`HubConfig::max_waiting_streams`] streams already wait.
    pub fn play(&self, key: &str) -> Result<(Player, Snapshot), PlayError> {
        self.play_as(key, Member::Viewer)
    }

    /// [`Hub::play`] for a viewer or, `Member::Relay`, another node's relay of the stream
    /// (a player, counted apart so that APIs can tell viewers from relays).
    pub fn play_as(&self, key: &str, member: Member) -> Result<(Player, Snapshot), PlayError> {
        let stream = {
            let mut streams = lock(&self.inner.streams);
            let max = self.inner.config.max_waiting_streams;
            let starts_waiting = streams
                .get(key)
                .is_none_or(|s| !s.has_publisher() && s.player_count() == 0);
            if starts_waiting && self.waiting_streams() >= max {
                return Err(PlayError::TooManyWaiting(max));
            }
            let stream = self.entry(&mut streams, key);
            stream.add_player(member);
            stream
        };
        Ok(self.member(stream, member))
    }

    /// Joins `key` like [`Hub::play`] to forward it elsewhere (an edge's push to the origin):
    /// receives the same frames but is not counted as a player.
    pub fn play_forwarder(&self, key: &str) -> (Player, Snapshot) {
        // A forwarder never makes a stream wait, so the waiting limit does not apply.
        let stream = {
            let mut streams = lock(&self.inner.streams);
            let stream = self.entry(&mut streams, key);
            stream.add_player(Member::Forwarder);
            stream
        };
        self.member(stream, Member::Forwarder)
    }

    /// Streams with players and no publisher right now.
    pub fn waiting_streams(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// The membership of a player already counted in `stream`.
    fn member(&self, stream: Arc<Stream>, member: Member) -> (Player, Snapshot) {
        let (rx, snapshot) = stream.subscribe_with_snapshot();
        (
            Player {
                hub: self.clone(),
                stream,
                rx,
                member,
            },
            snapshot,
        )
    }

    /// The stream `key`, created empty if new (the caller holds the registry lock).
    fn entry(&self, streams: &mut HashMap<String, Arc<Stream>>, key: &str) -> Arc<Stream> {
        streams
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Stream::new(
                    key,
                    self.inner.config,
                    self.inner.waiting.clone(),
                ))
            })
            .clone()
    }

    /// Removes `stream` from the registry if nobody publishes or plays it any more.
    fn release(&self, stream: &Arc<Stream>) {
        let mut streams = lock(&self.inner.streams);
        if stream.is_unused() {
            if let Some(current) = streams.get(stream.key()) {
                if Arc::ptr_eq(current, stream) {
                    streams.remove(stream.key());
                }
            }
        }
    }

    pub fn streams(&self) -> Vec<StreamInfo> {
        let streams: Vec<Arc<Stream>> = lock(&self.inner.streams).values().cloned().collect();
        let mut infos: Vec<StreamInfo> = streams.iter().map(|s| s.info()).collect();
        infos.sort_by(|a, b| a.key.cmp(&b.key));
        infos
    }

    pub fn stream_count(&self) -> usize {
        lock(&self.inner.streams).len()
    }
}

/// The publisher slot of one stream; dropping it unpublishes (players are told and stay).
pub struct Publisher {
    hub: Hub,
    stream: Arc<Stream>,
    conn_id: u64,
    /// What the frames sent next carry as [`Frame::held_since`](crate::media::Frame).
    held_since: Option<Instant>,
}

impl Publisher {
    pub fn key(&self) -> &str {
        self.stream.key()
    }

    /// Feeds one audio, video or data message into the stream (ignored once another
    /// publisher took the slot over).
    pub fn send(&self, kind: FrameKind, timestamp: u32, payload: Bytes) {
        self.stream
            .ingest(self.conn_id, kind, timestamp, payload, self.held_since);
    }

    /// The earliest the bytes of the frames sent next may have waited in the publisher's
    /// socket (see [`Frame::held_since`](crate::media::Frame)); None where unknown.
    pub fn set_held_since(&mut self, since: Option<Instant>) {
        self.held_since = since;
    }

    /// The earliest [`Frame::held_since`](crate::media::Frame) every frame sent after this
    /// call will carry (None: unknown), which lets the stream's players sleep until those
    /// frames are due instead of waking for each.
    pub fn set_next_held_since(&self, since: Option<Instant>) {
        self.stream.set_next_held_since(self.conn_id, since);
    }

    /// `onMetaData` (without the `@setDataFrame` wrapper), kept whole for new players.
    pub fn set_metadata(&self, timestamp: u32, payload: Bytes) {
        self.stream
            .set_metadata(self.conn_id, timestamp, payload, self.held_since);
    }

    /// False once a real publisher took over a relay's slot.
    pub fn is_current(&self) -> bool {
        self.stream.is_publisher(self.conn_id)
    }

    /// The source changed (a relay moved to another origin): players keep their
    /// connection and continue on a new timeline from the new source's headers and keyframe.
    pub fn discontinuity(&self) {
        self.stream.discontinuity(self.conn_id);
    }

    /// Players of the stream, viewers and relays (a relaxed read, no lock).
    pub fn player_count(&self) -> usize {
        self.stream.player_count()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stream.stop_publish(self.conn_id);
        self.hub.release(&self.stream);
    }
}

/// A player's membership in one stream.
pub struct Player {
    hub: Hub,
    stream: Arc<Stream>,
    pub rx: ring::Receiver<Event>,
    member: Member,
}

/// How a player reads a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    /// A client watching it over RTMP.
    Viewer,
    /// A client watching it over HTTP-FLV.
    FlvViewer,
    /// Another ringcast node's relay (an edge pulling it): a player, not a viewer.
    Relay,
    /// This node's push of it to its origin ([`Hub::play_forwarder`]): not a player.
    Forwarder,
}

impl Player {
    pub fn key(&self) -> &str {
        self.stream.key()
    }

    /// Players of this stream now (a relaxed read, for pacing decisions).
    pub fn stream_players(&self) -> usize {
        self.stream.player_count()
    }

    /// The earliest [`Frame::held_since`](crate::media::Frame) a frame sent to this stream
    /// after this call may carry while its publisher stays (None: unknown). A player that
    /// reads this and then drains its receiver knows no frame still to come is due before
    /// it plus the budget.
    pub fn next_held_since(&self) -> Option<Instant> {
        self.stream.next_held_since()
    }

    /// After a lag: continue from the live edge; the caller waits for the next keyframe.
    pub fn skip_to_live(&mut self) {
        self.rx = self.rx.resubscribe();
    }

    /// After a pause: a fresh snapshot (sequence headers and current GOP) and receiver.
    pub fn resync(&mut self) -> Snapshot {
        let (rx, snapshot) = self.stream.subscribe_with_snapshot();
        self.rx = rx;
        snapshot
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.stream.remove_player(self.member);
        self.hub.release(&self.stream);
    }
}

#[cfg(test)]
mod tests;
