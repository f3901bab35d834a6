//! One stream: publisher slot, fast-start cache, timeline and event ring.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use super::ring::{Receiver, Ring};
use super::Member;
use super::{lock, Claim, HubConfig, PublishError};
use crate::media::{Frame, FrameKind};

/// What players receive, in order.
#[derive(Debug, Clone)]
pub enum Event {
    Frame(Arc<Frame>),
    /// The publisher left; players stay attached and wait.
    Unpublished,
    /// A publisher (re)started; its sequence headers follow as frames.
    Published,
}

/// What a joining player is sent before live frames: metadata, sequence headers, then the
/// current GOP from its keyframe.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub publishing: bool,
    pub frames: Vec<Arc<Frame>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    pub key: String,
    pub publishing: bool,
    pub publisher_conn: Option<u64>,
    pub publish_seconds: Option<f64>,
    /// The publisher is a relay pulling the stream from another node.
    pub relayed: bool,
    /// Every player, viewers and other nodes' relays alike (what the node serves).
    pub players: usize,
    /// Of `players`, the relays of other nodes (an edge pulling the stream): not viewers.
    pub relay_players: usize,
    /// Of `players`, those watching over HTTP-FLV.
    pub flv_players: usize,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub gop_cache_frames: usize,
    pub gop_cache_bytes: usize,
}

pub(super) struct Stream {
    key: String,
    config: HubConfig,
    ring: Arc<Ring<Event>>,
    state: Mutex<State>,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    /// Mirror of `State::players` that players read without the lock (write merging).
    players: AtomicUsize,
    /// The hub's count of streams with players and no publisher: this stream adds one while
    /// it is such a stream (kept in step under `state`'s lock).
    waiting: Arc<AtomicUsize>,
}

#[derive(Default)]
struct State {
    /// Connection id of the publisher, since when, and whether it is a relay (an edge's pull
    /// from its origin), which a real publisher may take the slot from.
    publisher: Option<(u64, Instant, bool)>,
    /// When the publisher last sent something (or started).
    last_ingest: Option<Instant>,
    players: usize,
    /// Of `players`, other nodes' relays.
    relay_players: usize,
    /// Of `players`, HTTP-FLV viewers.
    flv_players: usize,
    /// Push relays reading the stream to forward it to its origin: not players (not counted
    /// in `players`, in the node's load or in the API), but they keep the stream in use.
    forwarders: usize,
    metadata: Option<Arc<Frame>>,
    video_sequence: Option<Arc<Frame>>,
    audio_sequence: Option<Arc<Frame>>,
    /// Frames since the last keyframe; empty while waiting for one.
    gop: Vec<Arc<Frame>>,
    gop_bytes: usize,
    /// Last timestamp sent to players, and the offset that maps this publisher's timestamps
    /// onto the stream's timeline so players see no jump back after a republish.
    last_timestamp: Option<u32>,
    offset: u32,
    /// Set when a publisher starts on a stream that already has a timeline.
    rebase_pending: bool,
    /// The earliest `Frame::held_since` the publisher's frames sent from now on may carry
    /// (None: unknown, or no publisher). Players that drained the ring sleep until it plus
    /// the budget instead of waking for every frame.
    next_held_since: Option<Instant>,
}

impl State {
    /// Whether `conn_id` holds the publisher slot.
    fn holds(&self, conn_id: u64) -> bool {
        self.publisher.is_some_and(|(id, _, _)| id == conn_id)
    }
}

impl Stream {
    pub(super) fn new(key: &str, config: HubConfig, waiting: Arc<AtomicUsize>) -> Stream {
        Stream {
            key: key.to_string(),
            config,
            ring: Ring::new(config.queue_messages.max(16)),
            state: Mutex::new(State::default()),
            frames_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            players: AtomicUsize::new(0),
            waiting,
        }
    }

    /// Whether the stream counts as waiting (players, no publisher) in `state`.
    fn is_waiting(state: &State) -> bool {
        state.players > 0 && state.publisher.is_none()
    }

    /// Runs `change` on the state and keeps the hub's waiting count in step with it.
    fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let mut state = lock(&self.state);
        let before = Self::is_waiting(&state);
        let result = change(&mut state);
        match (before, Self::is_waiting(&state)) {
            (false, true) => {
                self.waiting.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        result
    }

    pub(super) fn key(&self) -> &str {
        &self.key
    }

    /// Gives the slot to `conn_id`; the connection it was taken from, if any.
    pub(super) fn start_publish(
        &self,
        conn_id: u64,
        claim: Claim,
    ) -> Result<Option<u64>, PublishError> {
        let relay = claim == Claim::Relay;
        self.update(|state| {
            let stale = state
                .last_ingest
                .is_some_and(|t| t.elapsed() >= self.config.stale_publisher);
            let replaced = state.publisher.map(|(id, _, _)| id);
            match state.publisher {
                // A publisher arriving where a relay was pulling the stream from elsewhere
                // (e.g. OBS reconnecting through another node) takes over: the relay notices
                // it is no longer current and stops. So does one arriving for a stream whose
                // publisher went silent (most likely the same encoder, reconnecting), and an
                // authorized takeover.
                Some((_, _, true)) if !relay => Self::clear_media(state),
                Some(_) if !relay && stale => Self::clear_media(state),
                Some(_) if claim == Claim::Takeover => Self::clear_media(state),
                Some(_) => return Err(PublishError::AlreadyPublishing(self.key.clone())),
                None => {}
            }
            let now = Instant::now();
            state.publisher = Some((conn_id, now, relay));
            state.last_ingest = Some(now);
            state.rebase_pending = state.last_timestamp.is_some();
            state.next_held_since = None;
            self.ring.send(Event::Published);
            Ok(replaced)
        })
    }

    fn clear_media(state: &mut State) {
        // The next publisher may use other codecs: its own headers replace these.
        state.metadata = None;
        state.video_sequence = None;
        state.audio_sequence = None;
        state.gop.clear();
        state.gop_bytes = 0;
    }

    /// Whether `conn_id` still holds the publisher slot.
    pub(super) fn is_publisher(&self, conn_id: u64) -> bool {
        lock(&self.state).holds(conn_id)
    }

    pub(super) fn stop_publish(&self, conn_id: u64) {
        self.update(|state| {
            if !state.holds(conn_id) {
                return;
            }
            state.publisher = None;
            state.next_held_since = None;
            Self::clear_media(state);
            self.ring.send(Event::Unpublished);
        })
    }

    /// The same publisher continues from another source (a relay reconnected to a new
    /// origin): new timeline, new headers, no unpublish seen by players.
    pub(super) fn discontinuity(&self, conn_id: u64) {
        let mut state = lock(&self.state);
        if state.holds(conn_id) {
            Self::clear_media(&mut state);
            state.rebase_pending = state.last_timestamp.is_some();
        }
    }

    /// Records, for the slot holder `conn_id`, the earliest `held_since` of its later frames.
    pub(super) fn set_next_held_since(&self, conn_id: u64, since: Option<Instant>) {
        let mut state = lock(&self.state);
        if state.holds(conn_id) {
            state.next_held_since = since;
        }
    }

    /// The earliest `held_since` a frame sent after this call may carry, while the
    /// publisher stays (a new publisher is announced by an event first).
    pub(super) fn next_held_since(&self) -> Option<Instant> {
        lock(&self.state).next_held_since
    }

    pub(super) fn add_player(&self, member: Member) {
        self.update(|state| match member {
            Member::Forwarder => state.forwarders += 1,
            Member::Viewer | Member::Relay | Member::FlvViewer => {
                state.players += 1;
                state.relay_players += usize::from(member == Member::Relay);
                state.flv_players += usize::from(member == Member::FlvViewer);
                self.players.store(state.players, Ordering::Relaxed);
            }
        })
    }

    pub(super) fn remove_player(&self, member: Member) {
        self.update(|state| match member {
            Member::Forwarder => state.forwarders = state.forwarders.saturating_sub(1),
            Member::Viewer | Member::Relay | Member::FlvViewer => {
                state.players = state.players.saturating_sub(1);
                if member == Member::Relay {
                    state.relay_players = state.relay_players.saturating_sub(1);
                }
                if member == Member::FlvViewer {
                    state.flv_players = state.flv_players.saturating_sub(1);
                }
                self.players.store(state.players, Ordering::Relaxed);
            }
        })
    }

    pub(super) fn has_publisher(&self) -> bool {
        lock(&self.state).publisher.is_some()
    }

    pub(super) fn player_count(&self) -> usize {
        self.players.load(Ordering::Relaxed)
    }

    pub(super) fn is_unused(&self) -> bool {
        let state = lock(&self.state);
        state.publisher.is_none() && state.players == 0 && state.forwarders == 0
    }

    /// `timestamp` on the stream's timeline. After a republish (or a relay's new source) the
    /// first audio or video frame fixes the offset that continues the timeline; headers and
    /// data messages that come before it do not (`settles` false): a fast-start copy carries
    /// their original, older timestamps (an upstream's `|RtmpSampleAccess` comes at 0), and
    /// an offset taken from those would throw every later frame forward by the stream's age.
    /// They are placed at the timeline's end instead.
    fn timeline(state: &mut State, timestamp: u32, settles: bool) -> u32 {
        if state.rebase_pending && !settles {
            if let Some(last) = state.last_timestamp {
                return last;
            }
        }
        if state.rebase_pending {
            state.rebase_pending = false;
            if let Some(last) = state.last_timestamp {
                state.offset = last.wrapping_add(1).wrapping_sub(timestamp);
            }
        }
        let t = timestamp.wrapping_add(state.offset);
        state.last_timestamp = Some(t);
        t
    }

    pub(super) fn set_metadata(
        &self,
        conn_id: u64,
        timestamp: u32,
        payload: Bytes,
        held_since: Option<Instant>,
    ) {
        let mut state = lock(&self.state);
        if !state.holds(conn_id) {
            return;
        }
        state.last_ingest = Some(Instant::now());
        let t = Self::timeline(&mut state, timestamp, false);
        let mut frame = Frame::new(FrameKind::Data, t, payload, self.config.chunk_size);
        frame.held_since = held_since;
        let frame = Arc::new(frame);
        state.metadata = Some(frame.clone());
        self.ring.send(Event::Frame(frame));
    }

    pub(super) fn ingest(
        &self,
        conn_id: u64,
        kind: FrameKind,
        timestamp: u32,
        payload: Bytes,
        held_since: Option<Instant>,
    ) {
        let mut state = lock(&self.state);
        // A relay that lost the slot to a real publisher may still be sending.
        if !state.holds(conn_id) {
            return;
        }
        state.last_ingest = Some(Instant::now());
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let settles = kind != FrameKind::Data && !Frame::is_sequence_header(kind, &payload);
        let t = Self::timeline(&mut state, timestamp, settles);
        // Chunked once here, inside the lock only because the timeline decides the timestamp;
        // it is a single copy of the payload shared by every player.
        let mut frame = Frame::new(kind, t, payload, self.config.chunk_size);
        frame.held_since = held_since;
        let frame = Arc::new(frame);
        if frame.sequence_header {
            match kind {
                FrameKind::Video => state.video_sequence = Some(frame.clone()),
                FrameKind::Audio => state.audio_sequence = Some(frame.clone()),
                FrameKind::Data => {}
            }
        } else if kind == FrameKind::Video && frame.keyframe {
            state.gop.clear();
            state.gop_bytes = frame.len;
            state.gop.push(frame.clone());
        } else if kind != FrameKind::Data && !state.gop.is_empty() {
            state.gop_bytes += frame.len;
            if state.gop_bytes > self.config.gop_cache_max_bytes {
                // Too long a GOP to cache: new players wait for the next keyframe instead.
                state.gop.clear();
                state.gop_bytes = 0;
            } else {
                state.gop.push(frame.clone());
            }
        }
        self.ring.send(Event::Frame(frame));
    }

    /// A receiver and the snapshot it continues from, taken under the lock so no frame is
    /// missed or repeated between them.
    pub(super) fn subscribe_with_snapshot(&self) -> (Receiver<Event>, Snapshot) {
        let state = lock(&self.state);
        let rx = self.ring.subscribe();
        let mut frames = Vec::with_capacity(3 + state.gop.len());
        frames.extend(state.metadata.iter().cloned());
        frames.extend(state.video_sequence.iter().cloned());
        frames.extend(state.audio_sequence.iter().cloned());
        frames.extend(state.gop.iter().cloned());
        (
            rx,
            Snapshot {
                publishing: state.publisher.is_some(),
                frames,
            },
        )
    }

    pub(super) fn info(&self) -> StreamInfo {
        let state = lock(&self.state);
        StreamInfo {
            key: self.key.clone(),
            publishing: state.publisher.is_some(),
            publisher_conn: state.publisher.map(|(id, _, _)| id),
            publish_seconds: state.publisher.map(|(_, t, _)| t.elapsed().as_secs_f64()),
            relayed: state.publisher.is_some_and(|(_, _, relay)| relay),
            players: state.players,
            relay_players: state.relay_players,
            flv_players: state.flv_players,
            frames_in: self.frames_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            gop_cache_frames: state.gop.len(),
            gop_cache_bytes: state.gop_bytes,
        }
    }
}
