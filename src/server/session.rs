//! One RTMP connection: handshake, then a loop that reads chunks, answers commands, feeds a
//! publisher's media into the hub and writes a player's frames out.
//!
//! Owns the socket and every per-connection state. Each connection runs in its own task, so a
//! bug costs this connection, never the process. Errors end here: one log line naming the
//! problem, then the socket closes. Nothing here waits on another connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info, warn, Instrument, Span};

use super::clip::Clip;
use super::limits::{CallBucket, IpSlot};
use super::log_limit::Notices;
use super::outbound::Outbound;
use super::play::Playing;
use super::publish::Publishing;
use super::stream::{self, Reader, Writer};
use super::ServerContext;
use crate::hub::Event;
use crate::rtmp::chunk::{ChunkError, ChunkReader, MessageHeader, RawMessage};
use crate::rtmp::command::{Command, CommandError};
use crate::rtmp::handshake::{Handshake, HandshakeError, Step};
use crate::rtmp::message::{self, MessageError, UserControl};
use crate::rtmp::*;
use crate::tls::TlsAcceptor;

/// Window acknowledgement size and peer bandwidth we announce: nginx-rtmp's 5,000,000. We
/// do not pace on acknowledgements, and a player acknowledges every tenth of the peer
/// bandwidth (librtmp) or every window (ffmpeg): at 2.5 MB (SRS's), a 1 Mb/s player's
/// acknowledgements were a sixth of its syscalls at a 350 ms budget.
pub(super) const WINDOW_ACK_SIZE: u32 = 5_000_000;
/// Merged media is written once this much is queued, whatever the merge window.
pub(crate) const MERGE_MAX_BYTES: usize = 256 * 1024;
/// Events of the played stream passed on at shutdown before the goodbye.
const SHUTDOWN_DRAIN_EVENTS: usize = 1024;
/// Read buffer growth step.
const READ_RESERVE: usize = 64 * 1024;
/// Smallest read buffer after the handshake.
const MIN_READ_RESERVE: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("peer closed the connection during the handshake")]
    ClosedInHandshake,
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("{0}")]
    ProxyHeader(#[from] super::proxy_header::ProxyHeaderError),
    #[error("bad chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("bad control message: {0}")]
    Message(#[from] MessageError),
    #[error("bad command: {0}")]
    Command(#[from] CommandError),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("read: {0}")]
    Read(std::io::Error),
    #[error("write: {0}")]
    Write(std::io::Error),
    #[error("player fell behind {0} times in a row")]
    TooSlow(u32),
    #[error("{0}")]
    Rejected(String),
    #[error("{count} connections from {ip} already, the limit per address")]
    TooManyFromIp { ip: std::net::IpAddr, count: usize },
    #[error("publisher sent no media for {0:?}; stream released")]
    PublishIdle(Duration),
}

impl SessionError {
    /// A peer that hangs up abruptly (players do, at the end) is not a server-side problem;
    /// nor is a TLS peer closing TCP without a close_notify first (most RTMPS clients do).
    fn is_peer_reset(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        matches!(self, SessionError::Read(e) | SessionError::Write(e)
            if matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof))
    }
}

/// What the peer said in `connect`: the fields routing, relays and access decisions need,
/// each within its length limit (see `limits`); the rest of the command object is not kept.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    pub app: String,
    pub tc_url: String,
    /// The query string from the app or tcUrl (tokens, options), without '?'.
    pub query: String,
    pub flash_ver: String,
    pub swf_url: String,
    pub page_url: String,
    pub object_encoding: f64,
    /// `ringcastHops` from connect for a relay with a valid credential (at least 1); 0 for
    /// every other client, whatever it sent.
    pub hops: u32,
    /// The stream and node a valid relay credential (`ringcastRelay`) names.
    pub relay: Option<crate::access::relay_credential::Relay>,
}

/// Why the main loop woke up.
enum Wake {
    Read(std::io::Result<usize>),
    IdleTimeout,
    Event(Result<Event, RecvError>),
    /// Merged media has waited long enough.
    FlushDue,
    /// A publisher's batched read may go ahead.
    ReadResume,
    Shutdown,
    /// The admin API asked this connection to close.
    Kicked,
}

pub struct Session {
    pub(super) id: u64,
    pub(super) ctx: Arc<ServerContext>,
    pub(super) span: Span,
    rd: Reader,
    wr: Writer,
    /// Set on the RTMPS listener's connections until the TLS handshake.
    tls: Option<TlsAcceptor>,
    rbuf: BytesMut,
    pub(super) reader: ChunkReader,
    pub(super) out: Outbound,
    pub(super) connect: Option<ConnectInfo>,
    /// Message stream ids handed out by createStream.
    pub(super) created_streams: Vec<u32>,
    next_stream_id: u32,
    pub(super) publishing: Option<Publishing>,
    pub(super) playing: Option<Playing>,
    /// Bytes received after the handshake, for cumulative acknowledgements.
    bytes_in: u64,
    acked: u64,
    /// The peer's window acknowledgement size: we ack every this many bytes (0: never).
    peer_window: u32,
    /// Set when the connection must close once what is queued has been written.
    pub(super) closing: Option<String>,
    /// Why it closed that way (for the close line).
    close_reason: Option<String>,
    /// Size of the last read, to size the next one.
    last_read: usize,
    /// After an RTMP 302: when to close if the client has not gone by itself.
    pub(super) close_at: Option<tokio::time::Instant>,
    /// When the oldest media still queued was queued (write merging).
    pending_since: Option<tokio::time::Instant>,
    /// When the queued media must be written (see [`super::budget`]).
    pub(super) write_due: super::budget::WriteDue,
    /// A player that drained its stream: until when no frame still to come can be due, so
    /// the stream is not watched (one wake-up per write instead of one per frame).
    pub(super) quiet_until: Option<tokio::time::Instant>,
    /// The client: the TCP peer, or the address a PROXY protocol header named.
    pub(super) client: SocketAddr,
    /// This connection's place in the per-address connection count.
    ip_slot: Option<IpSlot>,
    /// Notice lines this connection may still log.
    pub(super) notices: Notices,
    /// Its allowance of play, publish and createStream calls.
    pub(super) calls: CallBucket,
    /// When the publisher last sent media (or started publishing).
    pub(super) last_media: tokio::time::Instant,
    /// This connection in the registry the admin API reads (and kicks through).
    pub(super) registered: super::clients::Registered,
}

impl Session {
    /// A connection accepted on the RTMP listener, or with `tls` on the RTMPS one.
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        id: u64,
        ctx: Arc<ServerContext>,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let _ = socket.set_nodelay(true);
        let (rd, wr) = stream::tcp(socket);
        let span = tracing::info_span!(
            "conn",
            id,
            %peer,
            tls = tls.is_some().then_some(true),
            client = tracing::field::Empty,
            app = tracing::field::Empty,
            stream = tracing::field::Empty,
            role = tracing::field::Empty,
            // Recorded only for the close line, and only when there is something to say.
            reason = tracing::field::Empty,
            suppressed = tracing::field::Empty,
            similar_suppressed = tracing::field::Empty,
        );
        let limits = ctx.limits;
        let registered = ctx.clients.register(id, peer, &ctx.shutdown);
        let mut reader = ChunkReader::new(limits.reader);
        // Until it publishes, every message a client sends is held to the command limit.
        reader.allow_media(false);
        Session {
            id,
            span,
            rd,
            wr,
            tls,
            rbuf: BytesMut::with_capacity(4096),
            reader,
            out: Outbound::new(128),
            connect: None,
            created_streams: Vec::new(),
            next_stream_id: 1,
            publishing: None,
            playing: None,
            bytes_in: 0,
            acked: 0,
            peer_window: 0,
            closing: None,
            close_reason: None,
            pending_since: None,
            write_due: Default::default(),
            quiet_until: None,
            close_at: None,
            last_read: 0,
            client: peer,
            ip_slot: None,
            notices: Notices::default(),
            calls: CallBucket::default(),
            last_media: tokio::time::Instant::now(),
            registered,
            ctx,
        }
    }

    /// Runs the connection to its end and logs how it ended.
    pub async fn run(self) {
        let span = self.span.clone();
        self.run_logged().instrument(span).await
    }

    async fn run_logged(mut self) {
        let started = Instant::now();
        let result = self.run_inner().await;
        self.stop_publishing("connection closed");
        self.stop_playing("connection closed");
        let secs = started.elapsed().as_secs_f64();
        let entry = &self.registered.entry;
        let totals = [
            (
                "bytes_in",
                entry
                    .bytes_in
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ),
            (
                "bytes_out",
                entry
                    .bytes_out
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            ),
            ("duration_s", format!("{secs:.3}")),
        ];
        self.notify(crate::access::Notice::Disconnect, "", &totals);
        // A connection that never got through `connect` is anyone's: its close line comes
        // out of the node-wide budget, so a flood of such connections cannot flood the log.
        if self.connect.is_none() {
            match self.ctx.early_log.allow() {
                Some(0) => {}
                Some(n) => {
                    self.span.record("similar_suppressed", n);
                }
                None => return,
            }
        }
        if self.notices.suppressed() > 0 {
            self.span.record("suppressed", self.notices.suppressed());
        }
        if let Some(reason) = &self.close_reason {
            self.span
                .record("reason", tracing::field::display(Clip(reason)));
        }
        match result {
            Ok(()) => info!(duration_s = secs, "closed"),
            Err(e) if e.is_peer_reset() => info!(duration_s = secs, error = %e, "closed by peer"),
            Err(e) => warn!(duration_s = secs, error = %e, "closed on error"),
        }
    }

    async fn run_inner(&mut self) -> Result<(), SessionError> {
        let limit = self.ctx.limits.handshake_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        if self.ctx.limits.proxy_protocol {
            self.proxy_header(deadline).await?;
        }
        let ip = self.client.ip();
        match self.ctx.per_ip.acquire(ip) {
            Some(slot) => self.ip_slot = Some(slot),
            None => {
                return Err(SessionError::TooManyFromIp {
                    ip,
                    count: self.ctx.per_ip.max(),
                })
            }
        }
        if let Some(acceptor) = self.tls.take() {
            // Bytes that came with the PROXY header are the start of the TLS handshake.
            let prefix = self.rbuf.split().freeze();
            let handshake = stream::start_tls(&mut self.rd, &mut self.wr, prefix, &acceptor);
            tokio::time::timeout_at(deadline, handshake)
                .await
                .map_err(|_| SessionError::HandshakeTimeout(limit))?
                .map_err(SessionError::Tls)?;
            debug!("TLS handshake done");
        }
        self.handshake(deadline).await?;
        self.main_loop().await
    }

    /// Reads more of the handshake (or PROXY header) into `rbuf`, by `deadline`.
    async fn read_handshake_bytes(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<(), SessionError> {
        self.rbuf.reserve(8192);
        let n = tokio::time::timeout_at(deadline, self.rd.read_buf(&mut self.rbuf))
            .await
            .map_err(|_| SessionError::HandshakeTimeout(self.ctx.limits.handshake_timeout))?
            .map_err(SessionError::Read)?;
        if n == 0 {
            return Err(SessionError::ClosedInHandshake);
        }
        Ok(())
    }

    /// Consumes the PROXY protocol header and records the client it names (`client` in the
    /// connection's log lines; `peer` stays the proxy).
    async fn proxy_header(&mut self, deadline: tokio::time::Instant) -> Result<(), SessionError> {
        loop {
            if let Some(header) = super::proxy_header::parse(&self.rbuf)? {
                let _ = self.rbuf.split_to(header.len);
                match header.source {
                    Some(client) => {
                        self.span.record("client", tracing::field::display(client));
                        self.client = client;
                        self.registered.entry.set_client(client);
                    }
                    None => debug!("PROXY header without a client address (LOCAL or UNKNOWN)"),
                }
                return Ok(());
            }
            self.read_handshake_bytes(deadline).await?;
        }
    }

    async fn handshake(&mut self, deadline: tokio::time::Instant) -> Result<(), SessionError> {
        let mut hs = Handshake::server();
        loop {
            // Bytes that came with the PROXY header are handshake bytes already.
            if self.rbuf.is_empty() {
                self.read_handshake_bytes(deadline).await?;
            }
            let limit = self.ctx.limits.handshake_timeout;
            let input = self.rbuf.split();
            let (reply, done) = match hs.process(&input)? {
                Step::Continue { reply } => (reply, None),
                Step::Done { reply, remaining } => (reply, Some(remaining)),
            };
            if !reply.is_empty() {
                let wr = &mut self.wr;
                let write = async move {
                    wr.write_all(&reply).await?;
                    wr.flush().await
                };
                tokio::time::timeout_at(deadline, write)
                    .await
                    .map_err(|_| SessionError::HandshakeTimeout(limit))?
                    .map_err(SessionError::Write)?;
            }
            if let Some(remaining) = done {
                debug!("handshake done");
                // A fresh, small buffer: the handshake's 8 KiB one would stay allocated for the
                // whole life of a player, which reads little more than acknowledgements.
                let mut rbuf = BytesMut::with_capacity(MIN_READ_RESERVE.max(remaining.len()));
                rbuf.extend_from_slice(&remaining);
                self.rbuf = rbuf;
                self.bytes_in = remaining.len() as u64;
                return Ok(());
            }
        }
    }

    async fn main_loop(&mut self) -> Result<(), SessionError> {
        // Chunks that arrived with the handshake's last packet.
        self.process_input().await?;
        // The shutdown wait and both timers live as long as the session: a future created per
        // wake-up registers with (and on drop leaves) the token's waiter list or the timer
        // wheel each time, which is measurable at tens of thousands of wake-ups per second.
        // The kick switch is a child of the shutdown token: one token serves both.
        let mut stop = std::pin::pin!(self.registered.entry.kick.clone().cancelled_owned());
        let idle_timeout = self.ctx.limits.idle_timeout;
        let mut last_activity = tokio::time::Instant::now();
        let mut idle = std::pin::pin!(tokio::time::sleep_until(last_activity + idle_timeout));
        // Armed only while `flush_at` is set; its deadline until then does not matter.
        let mut flush_timer = std::pin::pin!(tokio::time::sleep_until(idle.deadline()));
        // A publisher's reads are batched: after a read that emptied the socket the next one
        // waits a share of the budget that shrinks as the stream's audience grows (see
        // `budget`), so that several messages arrive in one read. The frames of a read carry
        // the instant the socket was last emptied: the earliest their bytes may have arrived.
        let budget = self.ctx.limits.merge_write;
        let mut read_paused = false;
        let mut emptied_at = std::time::Instant::now();
        let mut ingest_timer = std::pin::pin!(tokio::time::sleep_until(idle.deadline()));
        loop {
            let mut flush_at = self.flush_deadline();
            if flush_at.is_some_and(|t| t <= tokio::time::Instant::now()) || self.closing.is_some()
            {
                self.flush().await?;
                flush_at = None;
            }
            if let Some(reason) = self.closing.take() {
                self.close_reason = Some(reason);
                return Ok(());
            }
            // One timer for both: queued output due, or the end of a quiet spell.
            let timer_at = match (flush_at, self.quiet_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(at) = timer_at.filter(|at| *at != flush_timer.deadline()) {
                flush_timer.as_mut().reset(at);
            }
            let watch_ring = !self.merging_video()
                && self
                    .quiet_until
                    .is_none_or(|q| q <= tokio::time::Instant::now());
            // Players may legitimately send nothing for minutes (acks come every 0.5-5 MB);
            // they are bounded by the write stall timeout instead, and get no idle timeout.
            // Others are closed after `idle_timeout` without a byte; the timer is armed once
            // and, when it fires, re-armed from the last read instead of on every read.
            // A publisher is also held to `publish_idle_timeout` without media, whether or not
            // it plays too, so that a dead publisher's slot frees up for its reconnect soon.
            let publish_due = self
                .publishing
                .is_some()
                .then(|| self.last_media + self.ctx.limits.publish_idle_timeout);
            let read_due = self
                .playing
                .is_none()
                .then_some(last_activity + idle_timeout);
            let idle_due = self.close_at.or(match (publish_due, read_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
            // The timer only ever moves earlier here; when it fires before `idle_due` (which
            // moves later with every read) it is re-armed below.
            if let Some(due) = idle_due.filter(|due| *due < idle.deadline()) {
                idle.as_mut().reset(due);
            }
            // The read buffer follows the peer's rate: twice the last read, 2 KiB to 64 KiB.
            // Players and idle connections send little and keep small buffers; a fast
            // publisher gets large reads.
            let reserve = (self.last_read * 2).clamp(MIN_READ_RESERVE, READ_RESERVE);
            if self.rbuf.capacity() - self.rbuf.len() < reserve / 2 {
                self.rbuf.reserve(reserve);
            }
            let room = self.rbuf.capacity() - self.rbuf.len();
            let wake = tokio::select! {
                biased;
                _ = &mut stop => if self.ctx.shutdown.is_cancelled() {
                    Wake::Shutdown
                } else {
                    Wake::Kicked
                },
                r = self.rd.read_buf(&mut self.rbuf), if !read_paused => Wake::Read(r),
                _ = &mut ingest_timer, if read_paused => Wake::ReadResume,
                _ = &mut idle, if idle_due.is_some() => {
                    match idle_due {
                        Some(due) if due > tokio::time::Instant::now() => {
                            idle.as_mut().reset(due);
                            continue;
                        }
                        _ => Wake::IdleTimeout,
                    }
                }
                // While merged video waits for its deadline the stream is not watched at all:
                // frames wait in the ring and are drained once, at the deadline, instead of
                // waking this task for every frame.
                ev = recv_event(&mut self.playing), if watch_ring => Wake::Event(ev),
                _ = &mut flush_timer, if timer_at.is_some() => Wake::FlushDue,
            };
            if matches!(wake, Wake::Read(_)) {
                last_activity = tokio::time::Instant::now();
            }
            match wake {
                Wake::Shutdown => {
                    // What the stream already said (an unpublish, the last frames) may still
                    // wait in the ring while merged video waits for its deadline: pass it on
                    // before the goodbye (a bounded number, however fast the ring fills).
                    // Each drain takes at most a batch of frames.
                    for _ in 0..SHUTDOWN_DRAIN_EVENTS.div_ceil(super::play::BATCH_FRAMES) {
                        if !matches!(self.drain_events(0), Ok(false)) {
                            break;
                        }
                    }
                    self.say_goodbye("server shutting down");
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
                    return Ok(());
                }
                Wake::Kicked => {
                    let why = "closed by an operator";
                    self.say_goodbye(why);
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
                    self.close_reason = Some(why.into());
                    return Ok(());
                }
                Wake::Read(Ok(0)) => return Ok(()),
                Wake::Read(Ok(n)) => {
                    self.bytes_in += n as u64;
                    self.ctx.traffic.read(n as u64);
                    self.registered
                        .entry
                        .bytes_in
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    self.last_read = n;
                    // A relay pushing from another node was batched where it entered, and
                    // its frames may already have waited there.
                    let relay = self.connect.as_ref().is_some_and(|c| c.hops > 0);
                    if let Some(p) = self.publishing.as_mut() {
                        p.publisher.set_held_since((!relay).then_some(emptied_at));
                    }
                    // A read that filled the buffer may have left more behind: read again.
                    if n < room {
                        emptied_at = std::time::Instant::now();
                    }
                    self.process_input().await?;
                    self.maybe_ack();
                    // Whatever this publisher reads next waited since `emptied_at` at most.
                    if let Some(p) = self.publishing.as_ref() {
                        p.publisher
                            .set_next_held_since((!relay).then_some(emptied_at));
                    }
                    let wait = match &self.publishing {
                        Some(p) if !relay && n < room => {
                            super::budget::ingest_wait_for(budget, p.publisher.player_count())
                        }
                        _ => Duration::ZERO,
                    };
                    if !wait.is_zero() {
                        read_paused = true;
                        // What arrives during the pause waits without waking the node,
                        // unless it fills a whole read.
                        self.rd.set_wake_threshold(READ_RESERVE);
                        ingest_timer
                            .as_mut()
                            .reset(tokio::time::Instant::now() + wait);
                    }
                }
                Wake::ReadResume => {
                    read_paused = false;
                    self.rd.set_wake_threshold(1);
                }
                Wake::Read(Err(e)) => return Err(SessionError::Read(e)),
                Wake::IdleTimeout if self.close_at.is_some() => {
                    info!("redirected client did not leave; closing");
                    return Ok(());
                }
                Wake::IdleTimeout
                    if publish_due.is_some_and(|due| due <= tokio::time::Instant::now()) =>
                {
                    let idle = self.ctx.limits.publish_idle_timeout;
                    if let Some(sid) = self.publishing.as_ref().map(|p| p.stream_id) {
                        self.on_status(sid, "status", "NetStream.Unpublish.Success", "no media");
                    }
                    self.stop_publishing("no media");
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
                    return Err(SessionError::PublishIdle(idle));
                }
                Wake::IdleTimeout => {
                    return Err(SessionError::Idle(self.ctx.limits.idle_timeout));
                }
                Wake::Event(ev) => {
                    self.on_event(ev)?;
                    if !self.out.is_empty() && self.pending_since.is_none() {
                        self.pending_since = Some(tokio::time::Instant::now());
                    }
                }
                Wake::FlushDue => {
                    // Read before draining: no frame sent after the drain is due before it
                    // plus the budget, so until then the ring need not be watched.
                    self.quiet_until = None;
                    let floor = self
                        .playing
                        .as_ref()
                        .and_then(|p| p.player.next_held_since());
                    let drained = self.drain_events(0)?;
                    if !self.out.is_empty() && self.pending_since.is_none() {
                        self.pending_since = Some(tokio::time::Instant::now());
                    }
                    if drained {
                        self.quiet_until = self.quiet_deadline(floor);
                    }
                }
            }
        }
    }

    /// When queued output must be written, never when nothing is queued:
    /// - now for command answers and statuses, and once a batch is full;
    /// - video when its frames are due (see [`super::budget`]);
    /// - audio and data alone ride with the next video frame, waiting at least
    ///   [`super::budget::AUDIO_HOLD`] for it. Not for a relay (another node pulling the stream): audio and video would then reach
    ///   its hub together, and its players would wait out their whole merge window for video
    ///   that has no later frame to merge with (measured: +3.4 ms per edge hop at 100 players).
    fn flush_deadline(&self) -> Option<tokio::time::Instant> {
        if self.out.is_empty() {
            return None;
        }
        let now = tokio::time::Instant::now();
        if self.out.is_urgent() || self.out.queued_bytes() >= MERGE_MAX_BYTES {
            return Some(now);
        }
        let relay = self.connect.as_ref().is_some_and(|c| c.hops > 0);
        Some(super::budget::media_flush_at(
            self.write_due.get(),
            self.pending_since,
            self.out.has_video() || relay,
        ))
    }

    /// Video is queued and waiting out a merge window.
    fn merging_video(&self) -> bool {
        self.out.has_video()
            && !self.out.is_urgent()
            && self.pending_since.is_some()
            && !self.merge_window().is_zero()
    }

    /// After the ring was drained with `floor` read first: until when it need not be
    /// watched ([`super::budget::quiet_until`]).
    fn quiet_deadline(&self, floor: Option<std::time::Instant>) -> Option<tokio::time::Instant> {
        let p = self.playing.as_ref().filter(|p| !p.paused)?;
        super::budget::quiet_until(floor, self.ctx.limits.merge_write, p.write_window)
    }

    /// How long this player's video may wait to share a write (see [`super::budget`]).
    fn merge_window(&self) -> Duration {
        self.playing
            .as_ref()
            .map_or(Duration::ZERO, |p| p.write_window)
    }

    pub(super) async fn flush(&mut self) -> Result<(), SessionError> {
        self.pending_since = None;
        self.write_due.clear();
        if self.out.is_empty() {
            return Ok(());
        }
        let written = self.out.queued_bytes() as u64;
        self.out
            .write_to(&mut self.wr, self.ctx.limits.write_timeout)
            .await
            .map_err(SessionError::Write)?;
        self.ctx.traffic.wrote(written);
        self.registered
            .entry
            .bytes_out
            .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
        if let Some(p) = self.playing.as_mut() {
            p.bytes_out += written;
        }
        Ok(())
    }

    async fn process_input(&mut self) -> Result<(), SessionError> {
        while let Some(msg) = self.reader.read(&mut self.rbuf)? {
            self.handle_message(msg).await?;
            if self.closing.is_some() {
                break;
            }
        }
        Ok(())
    }

    /// Sends a cumulative acknowledgement each time the peer's window fills.
    fn maybe_ack(&mut self) {
        if self.peer_window > 0 && self.bytes_in - self.acked >= self.peer_window as u64 {
            self.acked = self.bytes_in;
            // The sequence number is the total received, modulo 2^32.
            let seq = self.bytes_in as u32;
            self.control(MSG_ACK, &message::u32_payload(seq));
        }
    }

    async fn handle_message(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        match msg.type_id {
            MSG_SET_CHUNK_SIZE => debug!(size = self.reader.chunk_size(), "peer chunk size"),
            MSG_ABORT | MSG_ACK | MSG_SET_PEER_BANDWIDTH => {}
            MSG_WINDOW_ACK_SIZE => {
                self.peer_window = message::read_u32("window ack size", &msg.payload)?;
            }
            MSG_USER_CONTROL => match UserControl::parse(&msg.payload)? {
                UserControl::PingRequest(t) => {
                    self.control(MSG_USER_CONTROL, &UserControl::PingResponse(t).encode())
                }
                other => debug!(?other, "user control"),
            },
            MSG_AUDIO | MSG_VIDEO | MSG_DATA_AMF0 | MSG_DATA_AMF3 | MSG_AGGREGATE => {
                self.on_media(msg)?
            }
            MSG_COMMAND_AMF0 | MSG_COMMAND_AMF3 => {
                let cmd = Command::decode(msg.type_id, &msg.payload)?;
                self.on_command(cmd, msg.stream_id).await?;
            }
            MSG_SHARED_OBJECT_AMF0 | MSG_SHARED_OBJECT_AMF3 => {
                debug!("shared object message ignored")
            }
            other => debug!(type_id = other, "unknown message type ignored"),
        }
        Ok(())
    }

    /// Queues a protocol control message (chunk stream 2, message stream 0).
    pub(super) fn control(&mut self, type_id: u8, payload: &[u8]) {
        self.out.message(
            MessageHeader {
                csid: CSID_CONTROL,
                timestamp: 0,
                type_id,
                stream_id: 0,
            },
            payload,
        );
    }

    /// Queues a command message on message stream `stream_id`.
    pub(super) fn send_command(&mut self, stream_id: u32, cmd: &Command) {
        self.out.message(
            MessageHeader {
                csid: CSID_COMMAND,
                timestamp: 0,
                type_id: MSG_COMMAND_AMF0,
                stream_id,
            },
            &cmd.encode(),
        );
    }

    /// Hands out the next message stream id, within the per-connection limit.
    pub(super) fn create_stream(&mut self) -> Option<u32> {
        if self.created_streams.len() >= self.ctx.limits.max_streams {
            return None;
        }
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        self.created_streams.push(id);
        Some(id)
    }

    /// Tells the peer its stream ends (`why`), then stops it.
    fn say_goodbye(&mut self, why: &str) {
        if let Some(sid) = self.playing.as_ref().map(|p| p.stream_id) {
            self.user_control(UserControl::StreamEof(sid));
            self.on_status(sid, "status", "NetStream.Play.Stop", why);
            self.stop_playing(why);
        }
        if let Some(sid) = self.publishing.as_ref().map(|p| p.stream_id) {
            self.on_status(sid, "status", "NetStream.Unpublish.Success", why);
            self.stop_publishing(why);
        }
    }

    /// The stream key a play or publish of `name` on message stream `stream_id` asks for, or
    /// why it is refused: not connected, a message stream that createStream did not hand out,
    /// or a name that is empty or over its limits (see `limits`).
    pub(super) fn key_for(&self, name: &str, stream_id: u32) -> Result<String, String> {
        let app = match self.connect.as_ref() {
            Some(conn) => conn.app.as_str(),
            None => return Err("connect first".into()),
        };
        if !self.created_streams.contains(&stream_id) {
            return Err(format!("message stream {stream_id} was not created"));
        }
        let key = stream_key(app, name);
        super::limits::check_stream(name, &key).map_err(|e| e.to_string())?;
        Ok(key)
    }
}

/// `APP/STREAM` without queries: the identity of a stream.
pub fn stream_key(app: &str, name: &str) -> String {
    let strip = |s: &str| {
        s.split('?')
            .next()
            .unwrap_or("")
            .trim_matches('/')
            .to_string()
    };
    format!("{}/{}", strip(app), strip(name))
}

/// Waits for the next event of the stream being played; pending forever when not playing.
async fn recv_event(playing: &mut Option<Playing>) -> Result<Event, RecvError> {
    match playing {
        Some(p) if !p.paused => p.player.rx.recv().await,
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::stream_key;

    #[test]
    fn stream_key_drops_queries_and_slashes() {
        assert_eq!(stream_key("live", "cam1"), "live/cam1");
        assert_eq!(stream_key("live?token=a", "cam1?x=1"), "live/cam1");
        assert_eq!(stream_key("live/", "/cam1"), "live/cam1");
    }
}
