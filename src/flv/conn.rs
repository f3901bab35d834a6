//! One HTTP-FLV connection: read and check the request, apply the access rules, route it
//! through the cluster (a pull on an edge, an HTTP 302 from a balancing node), then stream
//! the FLV: header, metadata and sequence headers, the GOP from its keyframe, live tags.
//!
//! Owns the socket and this player's state. A player that falls behind skips to the next
//! keyframe as an RTMP player does, and one that keeps falling behind, or accepts no bytes
//! for `rtmp.player_write_timeout_ms`, is dropped. Must never: answer before the rules have,
//! log more than the node-wide early-log budget for requests that never became a player, or
//! read more than a bounded amount from a client after its request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info, warn, Instrument};

use super::out::FlvOut;
use super::request::{self, FlvRequest, Method, RequestError, MAX_HEAD};
use crate::access::{Action, Notice, Outcome, Request};
use crate::hub::{Event, Member, Player, Snapshot};
use crate::media::{Frame, FrameKind};
use crate::relay::{ClientInfo, Route};
use crate::server::clients::Registered;
use crate::server::clip::Clip;
use crate::server::{
    media_flush_at, parse_query, quiet_until, write_all_vectored, write_window, ServerContext,
    WriteDue, BATCH_BYTES, BATCH_FRAMES, MAX_CONSECUTIVE_LAGS, MERGE_MAX_BYTES,
};

/// Bytes a client may send after its request before it is closed (an HTTP-FLV player sends
/// nothing; this bounds what a client can make the node read for nothing).
const MAX_AFTER_HEAD: usize = 64 * 1024;

/// What every HTTP-FLV connection shares besides the server context.
pub struct FlvSettings {
    /// `flv.allow_origin` ("" = no CORS headers).
    pub allow_origin: String,
}

#[derive(Debug, thiserror::Error)]
enum FlvError {
    #[error("no complete request within {0:?}")]
    HeadTimeout(Duration),
    #[error("read: {0}")]
    Read(std::io::Error),
    #[error("write: {0}")]
    Write(std::io::Error),
    #[error("player fell behind {0} times in a row")]
    TooSlow(u32),
    #[error("client sent {0} bytes after its request")]
    TooChatty(usize),
}

/// How a connection ended, for its close line.
enum End {
    /// Answered without streaming (an error status, a redirect, a preflight, HEAD).
    Answered { status: u16, why: String },
    /// Streamed, then stopped for this reason.
    Played(String),
    /// Closed before a whole request came.
    Silent,
}

pub struct FlvConn {
    id: u64,
    peer: SocketAddr,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    ctx: Arc<ServerContext>,
    settings: Arc<FlvSettings>,
    registered: Registered,
    bytes_out: u64,
}

impl FlvConn {
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        id: u64,
        ctx: Arc<ServerContext>,
        settings: Arc<FlvSettings>,
    ) -> FlvConn {
        let _ = socket.set_nodelay(true);
        let (rd, wr) = socket.into_split();
        let registered = ctx.clients.register_as(id, peer, "http-flv", &ctx.shutdown);
        FlvConn {
            id,
            peer,
            rd,
            wr,
            ctx,
            settings,
            registered,
            bytes_out: 0,
        }
    }

    /// Serves the connection to its end and logs how it ended (once).
    pub async fn run(self) {
        let span = tracing::info_span!(
            "flv",
            id = self.id,
            peer = %self.peer,
            stream = tracing::field::Empty,
        );
        self.run_logged().instrument(span).await
    }

    async fn run_logged(mut self) {
        let started = Instant::now();
        let result = self.serve().await;
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(End::Played(why)) => {
                info!(duration_s = secs, bytes = self.bytes_out, reason = %why, "closed")
            }
            Ok(End::Answered { status, why }) if status < 400 => {
                debug!(status, reason = %Clip(&why), "answered")
            }
            // Anyone can send requests that go nowhere: those lines share the early budget.
            Ok(End::Answered { status, why }) => {
                if let Some(suppressed) = self.ctx.early_log.allow() {
                    info!(status, reason = %Clip(&why), similar_suppressed = suppressed, "refused")
                }
            }
            Ok(End::Silent) => {}
            Err(e) => {
                if let Some(suppressed) = self.ctx.early_log.allow() {
                    warn!(duration_s = secs, error = %e, similar_suppressed = suppressed, "closed on error")
                }
            }
        }
    }

    async fn serve(&mut self) -> Result<End, FlvError> {
        let Some(_slot) = self.ctx.per_ip.acquire(self.peer.ip()) else {
            let why = format!(
                "{} connections from {} already, the limit per address",
                self.ctx.per_ip.max(),
                self.peer.ip()
            );
            return self.answer(503, "Service Unavailable", &[], &why).await;
        };
        let req = match self.read_request().await {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(End::Silent),
            Err(Ok(e)) => {
                let (status, text) = e.status();
                return self.answer(status, text, &[], &e.to_string()).await;
            }
            Err(Err(e)) => return Err(e),
        };
        if req.method == Method::Options {
            let preflight = [
                (
                    "Access-Control-Allow-Methods",
                    "GET, HEAD, OPTIONS".to_string(),
                ),
                ("Access-Control-Allow-Headers", "*".to_string()),
                ("Access-Control-Max-Age", "86400".to_string()),
            ];
            return self.answer(204, "No Content", &preflight, "").await;
        }
        let (req, request) = match self.admit(req).await {
            Ok(admitted) => admitted,
            Err(answer) => return Ok(answer),
        };
        tracing::Span::current().record("stream", req.key.as_str());
        if let Some(answer) = self.route(&req).await? {
            return Ok(answer);
        }
        if req.method == Method::Head {
            let head = self.ok_head(false);
            self.write_raw(head.as_bytes()).await?;
            return Ok(End::Answered {
                status: 200,
                why: "HEAD".into(),
            });
        }
        let (player, snapshot) = match self.ctx.hub.play_as(&req.key, Member::FlvViewer) {
            Ok(joined) => joined,
            Err(e) => {
                return self
                    .answer(503, "Service Unavailable", &[], &e.to_string())
                    .await
            }
        };
        let entry = self.registered.entry.clone();
        entry.set_app(&req.app, false);
        entry.set_role(Some(("play", req.key.as_str())));
        info!(
            stream = %req.key,
            publishing = snapshot.publishing,
            has_query = !req.query.is_empty(),
            user_agent = %Clip(&req.user_agent),
            "http-flv play start"
        );
        let started = Instant::now();
        let result = self.stream(player, snapshot).await;
        entry.set_role(None);
        let extra = [
            ("bytes_out", self.bytes_out.to_string()),
            (
                "duration_s",
                format!("{:.3}", started.elapsed().as_secs_f64()),
            ),
        ];
        self.ctx.access.notify(Notice::PlayDone, &request, &extra);
        self.ctx.access.notify(Notice::Disconnect, &request, &extra);
        let why = match &result {
            Ok(why) => why.clone(),
            Err(e) => e.to_string(),
        };
        info!(stream = %req.key, duration_s = started.elapsed().as_secs_f64(),
            bytes = self.bytes_out, reason = %why, "http-flv play stop");
        result.map(End::Played)
    }

    /// Reads the request head within `rtmp.handshake_timeout_ms`: `Ok(None)` when the client
    /// closed first; `Err(Ok(_))` for a request to refuse with a status.
    async fn read_request(&mut self) -> Result<Option<FlvRequest>, Result<RequestError, FlvError>> {
        let limit = self.ctx.limits.handshake_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if buf.len() >= MAX_HEAD {
                return Err(Ok(RequestError::TooLarge));
            }
            buf.reserve(1024);
            let n = tokio::time::timeout_at(deadline, self.rd.read_buf(&mut buf))
                .await
                .map_err(|_| Err(FlvError::HeadTimeout(limit)))?
                .map_err(|e| Err(FlvError::Read(e)))?;
            if n == 0 {
                return Ok(None);
            }
            match request::parse(&buf) {
                Ok(Some(req)) => return Ok(Some(req)),
                Ok(None) => continue,
                Err(e) => return Err(Ok(e)),
            }
        }
    }

    /// What the access rules see of this request for `action`.
    fn access_request(&self, req: &FlvRequest, action: Action) -> Request {
        let play = action == Action::Play;
        Request {
            node_id: self.ctx.node_id.clone(),
            role: self.ctx.role,
            action,
            app: req.app.clone(),
            stream: if play {
                req.stream.clone()
            } else {
                String::new()
            },
            key: if play { req.key.clone() } else { String::new() },
            query: parse_query(&req.query),
            tc_url: format!("http://{}/{}", req.host, req.app),
            client: self.peer,
            flash_ver: req.user_agent.clone(),
            swf_url: String::new(),
            page_url: req.page_url.clone(),
            conn_id: self.id,
        }
    }

    /// Applies the rules of `connect` and `play` (an HTTP player does both at once). Gives
    /// the request to go on with (a hook may rename the stream) and the play request for the
    /// notifications, or the answer already sent.
    async fn admit(&mut self, mut req: FlvRequest) -> Result<(FlvRequest, Request), End> {
        let access = self.ctx.access.clone();
        for action in [Action::Connect, Action::Play] {
            if !access.has_rules(&req.app, action) {
                continue;
            }
            let outcome = access.decide(&self.access_request(&req, action)).await;
            match outcome {
                Outcome::Allow => {}
                Outcome::Deny(why) => {
                    info!(stream = %req.key, reason = %Clip(&why), "http-flv {} denied", action.as_str());
                    return Err(self.answer_or_end(403, "Forbidden", &[], &why).await);
                }
                Outcome::Redirect(to)
                    if to.starts_with("http://") || to.starts_with("https://") =>
                {
                    return Err(self.redirect(&to).await);
                }
                Outcome::Redirect(to) if to.contains("://") => {
                    let why = format!(
                        "the rules send this player to {}, which HTTP cannot play",
                        Clip(&to)
                    );
                    return Err(self.answer_or_end(403, "Forbidden", &[], &why).await);
                }
                Outcome::Redirect(to) => {
                    // nginx-rtmp: a Location that is not a URL is the stream name to use.
                    let (stream, query) = to.split_once('?').unwrap_or((to.as_str(), ""));
                    let key = crate::server::stream_key(&req.app, stream);
                    if let Err(e) = crate::server::limits::check_stream(stream, &key) {
                        let why = format!("redirected to a bad stream name: {e}");
                        return Err(self.answer_or_end(403, "Forbidden", &[], &why).await);
                    }
                    info!(from = %req.key, to = %key, "http-flv play renamed by the rules");
                    req.stream = stream.trim_matches('/').to_string();
                    if !query.is_empty() {
                        req.query = query.to_string();
                    }
                    req.key = key;
                }
            }
        }
        let request = self.access_request(&req, Action::Play);
        Ok((req, request))
    }

    /// Routes the play through the cluster: `None` to serve it here (a pull may be feeding
    /// the hub), or the answer sent (an HTTP 302 to the node that should serve it).
    async fn route(&mut self, req: &FlvRequest) -> Result<Option<End>, FlvError> {
        let Some(relays) = self.ctx.relays.get().cloned() else {
            return Ok(None);
        };
        let name = req.name_with_query();
        let client = ClientInfo {
            key: &req.key,
            app: &req.app,
            name: &name,
            connect_query: "",
            hops: 0,
        };
        match relays.route_play(&client) {
            Route::Local => Ok(None),
            Route::Refuse(why) => self
                .answer(503, "Service Unavailable", &[], &why)
                .await
                .map(Some),
            Route::Redirect { node_id, .. } => {
                let view = relays.cluster().view();
                let flv = view
                    .node(&node_id)
                    .map(|n| n.flv_addr.clone())
                    .unwrap_or_default();
                if flv.is_empty() {
                    let why = format!(
                        "{node_id} should serve {} but has no HTTP-FLV listener",
                        req.key
                    );
                    return self
                        .answer(503, "Service Unavailable", &[], &why)
                        .await
                        .map(Some);
                }
                let query = if req.query.is_empty() {
                    String::new()
                } else {
                    format!("?{}", req.query)
                };
                let to = format!("http://{flv}/{}/{}.flv{query}", req.app, req.stream);
                Ok(Some(self.redirect(&to).await))
            }
        }
    }

    async fn redirect(&mut self, to: &str) -> End {
        info!(to = %Clip(to), "redirecting http-flv player");
        let location = [("Location", to.to_string())];
        self.answer_or_end(302, "Found", &location, "").await
    }

    /// [`Self::answer`] where a failed write just ends the connection.
    async fn answer_or_end(
        &mut self,
        status: u16,
        text: &str,
        headers: &[(&str, String)],
        why: &str,
    ) -> End {
        match self.answer(status, text, headers, why).await {
            Ok(end) => end,
            Err(_) => End::Silent,
        }
    }

    /// Answers with `status` and `why` as a short text body, then the connection closes.
    async fn answer(
        &mut self,
        status: u16,
        text: &str,
        headers: &[(&str, String)],
        why: &str,
    ) -> Result<End, FlvError> {
        let mut head = format!("HTTP/1.1 {status} {text}\r\nConnection: close\r\n");
        head.push_str(&self.cors());
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = if why.is_empty() || status < 300 {
            String::new()
        } else {
            format!("{}\n", Clip(why))
        };
        if !body.is_empty() {
            head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.write_raw(head.as_bytes()).await?;
        Ok(End::Answered {
            status,
            why: why.to_string(),
        })
    }

    fn cors(&self) -> String {
        match self.settings.allow_origin.as_str() {
            "" => String::new(),
            origin => format!("Access-Control-Allow-Origin: {origin}\r\n"),
        }
    }

    /// The head of a stream answer.
    fn ok_head(&self, chunked: bool) -> String {
        let mut head = String::from(
            "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nCache-Control: no-cache, no-store\r\nConnection: close\r\n",
        );
        head.push_str(&self.cors());
        if chunked {
            head.push_str("Transfer-Encoding: chunked\r\n");
        }
        head.push_str("\r\n");
        head
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), FlvError> {
        let stall = self.ctx.limits.write_timeout;
        let mut slices = [std::io::IoSlice::new(bytes)];
        write_all_vectored(&mut self.wr, &mut slices, stall)
            .await
            .map_err(FlvError::Write)?;
        self.account(bytes.len());
        Ok(())
    }

    fn account(&mut self, n: usize) {
        self.bytes_out += n as u64;
        self.ctx.traffic.wrote_flv(n as u64);
        self.registered
            .entry
            .bytes_out
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Streams `player` until the client leaves, the node stops, an operator kicks it, or it
    /// is too slow. Returns why it stopped.
    async fn stream(&mut self, mut player: Player, snapshot: Snapshot) -> Result<String, FlvError> {
        let head = self.ok_head(true);
        self.write_raw(head.as_bytes()).await?;
        // HTTP-FLV players are never relays: the whole write share of the budget.
        let budget = self.ctx.limits.merge_write;
        let mut play = PlayState::new(budget, write_window(budget, false));
        let mut out = FlvOut::default();
        out.raw(flv_header(&snapshot));
        for frame in &snapshot.frames {
            play.queue(&mut out, frame);
        }
        self.flush(&mut out, &mut play).await?;

        // The kick switch is a child of the shutdown token: one token serves both.
        let mut stop = std::pin::pin!(self.registered.entry.kick.clone().cancelled_owned());
        let mut flush_timer = std::pin::pin!(tokio::time::sleep(Duration::from_secs(3600)));
        let mut scratch = [0u8; 1024];
        let mut read_after_head = 0usize;
        // After a drain at a deadline: until when nothing still to come can be due.
        let mut quiet: Option<tokio::time::Instant> = None;
        loop {
            let flush_at = flush_deadline(&out, &play);
            let now = tokio::time::Instant::now();
            if flush_at.is_some_and(|t| t <= now) {
                self.flush(&mut out, &mut play).await?;
                continue;
            }
            let timer_at = match (flush_at, quiet) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(at) = timer_at.filter(|at| *at != flush_timer.deadline()) {
                flush_timer.as_mut().reset(at);
            }
            // While merged video waits for its deadline, and while quiet, the stream is not
            // watched: frames wait in the ring and are drained once, at the deadline.
            let merging = out.has_video() && play.first_queued.is_some() && !play.window.is_zero();
            let watch = !merging && quiet.is_none_or(|q| q <= now);
            tokio::select! {
                biased;
                _ = &mut stop => {
                    if !self.ctx.shutdown.is_cancelled() {
                        return Ok("closed by an operator".into());
                    }
                    self.flush(&mut out, &mut play).await?;
                    self.write_raw(b"0\r\n\r\n").await?;
                    return Ok("server shutting down".into());
                }
                r = self.rd.read(&mut scratch) => match r {
                    Ok(0) => return Ok("client closed".into()),
                    Err(e) => return Err(FlvError::Read(e)),
                    Ok(n) => {
                        read_after_head += n;
                        if read_after_head > MAX_AFTER_HEAD {
                            return Err(FlvError::TooChatty(read_after_head));
                        }
                    }
                },
                ev = player.rx.recv(), if watch => {
                    play.on_events(&mut out, &mut player, ev)?;
                    if !out.is_empty() && play.first_queued.is_none() {
                        play.first_queued = Some(tokio::time::Instant::now());
                    }
                }
                _ = &mut flush_timer, if timer_at.is_some() => {
                    // The floor is read before the drain (see `budget::quiet_until`).
                    let floor = player.next_held_since();
                    let drained = play.drain(&mut out, &mut player, 0)?;
                    // What is due now is written at the top of the loop.
                    if !out.is_empty() && play.first_queued.is_none() {
                        play.first_queued = Some(tokio::time::Instant::now());
                    }
                    quiet = drained
                        .then(|| quiet_until(floor, play.budget, play.window))
                        .flatten();
                }
            }
        }
    }

    /// Writes what `out` holds; nothing is queued, or due, after it.
    async fn flush(&mut self, out: &mut FlvOut, play: &mut PlayState) -> Result<(), FlvError> {
        play.first_queued = None;
        play.due.clear();
        let n = out
            .write_chunk(&mut self.wr, self.ctx.limits.write_timeout)
            .await
            .map_err(FlvError::Write)?;
        self.account(n);
        Ok(())
    }
}

/// When queued tags must be written (`None`: nothing queued): at once past
/// [`MERGE_MAX_BYTES`], otherwise as RTMP players ([`media_flush_at`]).
fn flush_deadline(out: &FlvOut, play: &PlayState) -> Option<tokio::time::Instant> {
    if out.is_empty() {
        return None;
    }
    if out.queued_bytes() >= MERGE_MAX_BYTES {
        return Some(tokio::time::Instant::now());
    }
    Some(media_flush_at(
        play.due.get(),
        play.first_queued,
        out.has_video(),
    ))
}

/// The FLV file header (signature, version 1, which tracks, header size 9) and the first
/// previous-tag size (0). The track flags follow the stream's sequence headers when it has
/// them; a stream not published yet says both.
fn flv_header(snapshot: &Snapshot) -> Bytes {
    let has = |kind| {
        snapshot
            .frames
            .iter()
            .any(|f| f.kind == kind && f.sequence_header)
    };
    let (audio, video) = (has(FrameKind::Audio), has(FrameKind::Video));
    let flags = match (audio, video) {
        (false, false) => 0x05,
        (a, v) => (if a { 0x04 } else { 0 }) | u8::from(v),
    };
    Bytes::from(vec![b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// Keyframe gating, lag accounting and write deadlines of one player.
struct PlayState {
    /// Video is held back until a keyframe (start without a cached GOP, after a lag, after
    /// a republish), so the first picture a decoder sees is a keyframe.
    started_video: bool,
    lags: u32,
    dropped: u64,
    /// The latency budget, and how long video may wait when its frames do not say.
    budget: Duration,
    window: Duration,
    /// When the queued tags must be written, and when the first of them was queued.
    due: WriteDue,
    first_queued: Option<tokio::time::Instant>,
    /// Events taken from the ring and not yet handled (kept for its allocation).
    batch: Vec<Event>,
}

impl PlayState {
    fn new(budget: Duration, window: Duration) -> PlayState {
        PlayState {
            started_video: false,
            lags: 0,
            dropped: 0,
            budget,
            window,
            due: WriteDue::default(),
            first_queued: None,
            batch: Vec::new(),
        }
    }

    fn queue(&mut self, out: &mut FlvOut, frame: &Arc<Frame>) {
        if frame.kind == FrameKind::Video && !self.started_video && !frame.sequence_header {
            if !frame.keyframe {
                self.dropped += 1;
                return;
            }
            self.started_video = true;
            self.lags = 0;
        }
        out.frame(frame);
        self.due.frame(frame, self.budget, self.window);
    }

    /// An event, plus whatever else is already waiting, queued as one batch.
    fn on_events(
        &mut self,
        out: &mut FlvOut,
        player: &mut Player,
        first: Result<Event, RecvError>,
    ) -> Result<bool, FlvError> {
        let frames = match first {
            Ok(ev) => self.handle(out, ev),
            Err(RecvError::Lagged(missed)) => {
                self.lagged(player, missed)?;
                0
            }
            Err(RecvError::Closed) => return Ok(false),
        };
        self.drain(out, player, frames)
    }

    /// Takes what waits in the ring, a batch at a time under one lock each; true when the
    /// ring was left empty, false when `frames` plus those taken filled a batch.
    fn drain(
        &mut self,
        out: &mut FlvOut,
        player: &mut Player,
        mut frames: usize,
    ) -> Result<bool, FlvError> {
        loop {
            if frames >= BATCH_FRAMES || out.queued_bytes() >= BATCH_BYTES {
                return Ok(false);
            }
            let mut batch = std::mem::take(&mut self.batch);
            let more = match player.rx.recv_many(&mut batch, BATCH_FRAMES - frames) {
                Ok(more) => more,
                Err(missed) => {
                    self.batch = batch;
                    self.lagged(player, missed)?;
                    continue;
                }
            };
            for ev in batch.drain(..) {
                frames += self.handle(out, ev);
            }
            self.batch = batch;
            if !more {
                return Ok(true);
            }
        }
    }

    /// One event; how many frames it queued (0 or 1).
    fn handle(&mut self, out: &mut FlvOut, ev: Event) -> usize {
        match ev {
            Event::Frame(frame) => {
                self.queue(out, &frame);
                1
            }
            // The player waits for the stream to come back, as an RTMP player does; its
            // new headers and a keyframe come first.
            Event::Unpublished | Event::Published => {
                self.started_video = false;
                0
            }
        }
    }

    fn lagged(&mut self, player: &mut Player, missed: u64) -> Result<(), FlvError> {
        self.dropped += missed;
        self.lags += 1;
        debug!(
            missed,
            lags = self.lags,
            "http-flv player fell behind; skipping to live"
        );
        if self.lags > MAX_CONSECUTIVE_LAGS {
            return Err(FlvError::TooSlow(self.lags));
        }
        player.skip_to_live();
        self.started_video = false;
        Ok(())
    }
}
