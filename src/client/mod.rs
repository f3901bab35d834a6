//! The RTMP client: connect, play, publish. Used by the load tool, by tests, and by edge relays.
//!
//! It owns one connection and answers the protocol on its own (acknowledgements, pings, chunk
//! size); callers see media messages and status events. It never trusts the server either:
//! the same chunk reader and limits as the server side apply.

mod stream;
mod url;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use stream::ClientStream;
pub use url::{RtmpUrl, UrlError};

/// Connect property carrying a relay's hop count (see `ClientOptions::hops`).
pub const HOPS_PROPERTY: &str = "ringcastHops";

use crate::rtmp::amf0::Amf0Value;
use crate::rtmp::chunk::{
    encode_message, ChunkError, ChunkReader, MessageHeader, RawMessage, ReaderLimits,
};
use crate::rtmp::command::{Command, CommandError};
use crate::rtmp::handshake::{Handshake, HandshakeError, Step};
use crate::rtmp::message::{self, MessageError, UserControl};
use crate::rtmp::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Url(#[from] UrlError),
    #[error("connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("control message: {0}")]
    Message(#[from] MessageError),
    #[error("command: {0}")]
    Command(#[from] CommandError),
    #[error("server closed the connection")]
    Closed,
    #[error("redirected to {url}")]
    Redirect { url: String },
    #[error("redirect loop: {0}")]
    RedirectLoop(String),
    #[error("more than {max} redirects: {chain}")]
    TooManyRedirects { max: usize, chain: String },
    #[error("server refused {call}: {code} {description}")]
    Refused {
        call: &'static str,
        code: String,
        description: String,
        info: Amf0Value,
    },
}

/// An `onStatus` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub level: String,
    pub code: String,
    pub description: String,
    pub info: Amf0Value,
}

impl Status {
    fn from_info(info: Amf0Value) -> Status {
        let field = |k: &str| {
            info.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        Status {
            level: field("level"),
            code: field("code"),
            description: field("description"),
            info,
        }
    }
}

/// What the server sent that the caller may care about.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// Audio (8), video (9) or data (18/15) message.
    Media(RawMessage),
    Status(Status),
    /// Any other command (e.g. `onFCPublish`, `_result`s the caller did not wait for).
    Command(Command),
    UserControl(UserControl),
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub flash_ver: String,
    /// Relay hops so far: 0 for a player or publisher; a ringcast relay sends its own hop
    /// count + 1 as `ringcastHops` in connect, so nodes can tell peers from clients and cut
    /// relay chains.
    pub hops: u32,
    /// Chunk size we announce and send with.
    pub chunk_size: usize,
    /// Bounds each step: TCP connect + handshake + `connect`, createStream, play, publish.
    pub timeout: Duration,
    pub limits: ReaderLimits,
    /// TCP keepalive probes on the socket (relays: a peer that vanishes without a FIN or RST,
    /// a hung host or a partition, is noticed even while nothing is being sent).
    pub keepalive: bool,
    /// A relay credential (see `access::relay_credential`), sent as `ringcastRelay` in connect
    /// so that the upstream treats this connection as a relay.
    pub relay_credential: Option<String>,
    /// Arguments after the command object of `connect` (Flash's `NetConnection.connect(uri,
    /// ...args)`; an FMS-style balancer may read the stream name there).
    pub connect_args: Vec<Amf0Value>,
    /// Whom an `rtmps://` URL may connect to (see `tls`); without it such a URL fails.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            flash_ver: format!("ringcast/{}", env!("CARGO_PKG_VERSION")),
            hops: 0,
            chunk_size: 4096,
            timeout: Duration::from_secs(10),
            limits: ReaderLimits::default(),
            keepalive: false,
            relay_credential: None,
            connect_args: Vec::new(),
            tls: None,
        }
    }
}

pub struct RtmpClient {
    socket: ClientStream,
    rbuf: BytesMut,
    reader: ChunkReader,
    out: BytesMut,
    opts: ClientOptions,
    next_txn: f64,
    bytes_in: u64,
    acked: u64,
    window: u32,
    pending: VecDeque<Incoming>,
    pub url: RtmpUrl,
    /// Message stream id of the play or publish stream (0 before one is created).
    pub stream_id: u32,
}

impl RtmpClient {
    /// TCP connect (and TLS for `rtmps://`), handshake and the `connect` command.
    pub async fn connect(url: &RtmpUrl, opts: ClientOptions) -> Result<RtmpClient, ClientError> {
        let limit = opts.timeout;
        tokio::time::timeout(limit, Self::connect_inner(url, opts))
            .await
            .map_err(|_| ClientError::Timeout("connect"))?
    }

    async fn connect_inner(url: &RtmpUrl, opts: ClientOptions) -> Result<RtmpClient, ClientError> {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| ClientError::Connect(url.authority(), e))?;
        tcp.set_nodelay(true)?;
        if opts.keepalive {
            set_keepalive(&tcp)?;
        }
        let mut socket = if url.tls {
            let Some(config) = opts.tls.clone() else {
                return Err(ClientError::Tls(
                    url.authority(),
                    "rtmps:// needs a TLS client configuration".into(),
                ));
            };
            stream::tls(tcp, &url.host, config)
                .await
                .map_err(|e| ClientError::Tls(url.authority(), e))?
        } else {
            stream::tcp(tcp)
        };
        let (mut hs, c0c1) = Handshake::client()?;
        write_flushed(&mut socket, &c0c1).await?;
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        loop {
            rbuf.reserve(8192);
            if socket.read_buf(&mut rbuf).await? == 0 {
                return Err(ClientError::Closed);
            }
            let input = rbuf.split();
            match hs.process(&input)? {
                Step::Continue { reply } => write_flushed(&mut socket, &reply).await?,
                Step::Done { reply, remaining } => {
                    write_flushed(&mut socket, &reply).await?;
                    rbuf.extend_from_slice(&remaining);
                    break;
                }
            }
        }
        let mut client = RtmpClient {
            socket,
            rbuf,
            reader: ChunkReader::new(opts.limits),
            out: BytesMut::new(),
            opts,
            next_txn: 1.0,
            bytes_in: 0,
            acked: 0,
            window: 0,
            pending: VecDeque::new(),
            url: url.clone(),
            stream_id: 0,
        };
        // Announce our chunk size first; until then everything goes out in 128-byte chunks.
        let chunk_size = client.opts.chunk_size;
        client.control_at(
            MSG_SET_CHUNK_SIZE,
            &message::u32_payload(chunk_size as u32),
            128,
        );
        let mut object = Amf0Value::object([
            ("app", url.app.as_str().into()),
            ("type", "nonprivate".into()),
            ("flashVer", client.opts.flash_ver.as_str().into()),
            ("tcUrl", url.tc_url().into()),
            ("fpad", false.into()),
            ("capabilities", 15.0.into()),
            ("audioCodecs", 3191.0.into()),
            ("videoCodecs", 252.0.into()),
            ("videoFunction", 1.0.into()),
            ("objectEncoding", 0.0.into()),
        ]);
        if let Amf0Value::Object(props) = &mut object {
            if client.opts.hops > 0 {
                props.push((HOPS_PROPERTY.into(), (client.opts.hops as f64).into()));
            }
            if let Some(credential) = &client.opts.relay_credential {
                props.push((
                    crate::access::relay_credential::PROPERTY.into(),
                    credential.as_str().into(),
                ));
            }
        }
        let args = client.opts.connect_args.clone();
        client.call_and_wait("connect", object, args).await?;
        Ok(client)
    }

    fn control_at(&mut self, type_id: u8, payload: &[u8], chunk_size: usize) {
        let h = MessageHeader {
            csid: CSID_CONTROL,
            timestamp: 0,
            type_id,
            stream_id: 0,
        };
        encode_message(&mut self.out, &h, payload, chunk_size);
    }

    fn queue(&mut self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: &[u8]) {
        let h = MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        };
        encode_message(&mut self.out, &h, payload, self.opts.chunk_size);
    }

    fn queue_command(&mut self, stream_id: u32, cmd: &Command) {
        self.queue(CSID_COMMAND, MSG_COMMAND_AMF0, stream_id, 0, &cmd.encode());
    }

    /// Writes what is queued. Cancel-safe: each write consumes only what it wrote (TLS
    /// records not yet on the wire go out with the next flush).
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        while !self.out.is_empty() {
            if self.socket.write_buf(&mut self.out).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
        self.socket.flush().await?;
        Ok(())
    }

    /// Calls `name` and waits for its `_result`; an `_error` is a `Refused` error.
    async fn call_and_wait(
        &mut self,
        name: &'static str,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) -> Result<Command, ClientError> {
        let txn = self.next_txn;
        self.next_txn += 1.0;
        self.queue_command(0, &Command::new(name, txn, object, args));
        self.flush().await?;
        loop {
            match self.read_incoming().await? {
                Incoming::Command(c) if c.transaction == txn && c.name == "_result" => {
                    return Ok(c)
                }
                Incoming::Command(c) if c.transaction == txn && c.name == "_error" => {
                    let status =
                        Status::from_info(c.args.first().cloned().unwrap_or(Amf0Value::Null));
                    if let Some(url) = self.redirect_target(&status) {
                        return Err(ClientError::Redirect { url });
                    }
                    return Err(ClientError::Refused {
                        call: name,
                        code: status.code,
                        description: status.description,
                        info: status.info,
                    });
                }
                other => self.pending.push_back(other),
            }
        }
    }

    pub async fn create_stream(&mut self) -> Result<u32, ClientError> {
        let limit = self.opts.timeout;
        tokio::time::timeout(limit, self.create_stream_inner())
            .await
            .map_err(|_| ClientError::Timeout("createStream"))?
    }

    async fn create_stream_inner(&mut self) -> Result<u32, ClientError> {
        let result = self
            .call_and_wait("createStream", Amf0Value::Null, vec![])
            .await?;
        let id = result.arg_number(0).unwrap_or(1.0) as u32;
        self.stream_id = id;
        Ok(id)
    }

    /// createStream + play; returns once the server says `NetStream.Play.Start`. Each of
    /// the two calls is bounded by `ClientOptions::timeout`.
    pub async fn play(&mut self) -> Result<(), ClientError> {
        let sid = self.create_stream().await?;
        let limit = self.opts.timeout;
        tokio::time::timeout(limit, self.play_inner(sid))
            .await
            .map_err(|_| ClientError::Timeout("play"))?
    }

    async fn play_inner(&mut self, sid: u32) -> Result<(), ClientError> {
        let name = self.url.stream_with_query();
        let txn = self.next_txn;
        self.next_txn += 1.0;
        let play = Command::new(
            "play",
            txn,
            Amf0Value::Null,
            vec![name.into(), Amf0Value::Number(-2000.0)],
        );
        self.queue_command(sid, &play);
        let buffer = UserControl::SetBufferLength {
            stream_id: sid,
            millis: 1000,
        };
        self.control_at(MSG_USER_CONTROL, &buffer.encode(), self.opts.chunk_size);
        self.flush().await?;
        self.wait_status("play", "NetStream.Play.Start").await?;
        // SRS-style redirects follow Play.Start in the same write: look at what has already
        // arrived before declaring success.
        let mut seen = Vec::new();
        while let Some(ev) = self.parse_buffered()? {
            if let Incoming::Status(s) = &ev {
                if let Some(url) = self.redirect_target(s) {
                    return Err(ClientError::Redirect { url });
                }
            }
            seen.push(ev);
        }
        self.pending.extend(seen);
        Ok(())
    }

    /// releaseStream, FCPublish, createStream, publish(live); returns on `Publish.Start`.
    /// Bounded by `ClientOptions::timeout` per call.
    pub async fn publish(&mut self) -> Result<(), ClientError> {
        let limit = self.opts.timeout;
        tokio::time::timeout(limit, self.publish_inner())
            .await
            .map_err(|_| ClientError::Timeout("publish"))?
    }

    async fn publish_inner(&mut self) -> Result<(), ClientError> {
        let name = self.url.stream_with_query();
        for call in ["releaseStream", "FCPublish"] {
            let txn = self.next_txn;
            self.next_txn += 1.0;
            self.queue_command(
                0,
                &Command::new(call, txn, Amf0Value::Null, vec![name.as_str().into()]),
            );
        }
        let sid = self.create_stream().await?;
        let txn = self.next_txn;
        self.next_txn += 1.0;
        let publish = Command::new(
            "publish",
            txn,
            Amf0Value::Null,
            vec![name.into(), "live".into()],
        );
        self.queue_command(sid, &publish);
        self.flush().await?;
        self.wait_status("publish", "NetStream.Publish.Start").await
    }

    async fn wait_status(&mut self, call: &'static str, want: &str) -> Result<(), ClientError> {
        loop {
            match self.read_incoming().await? {
                Incoming::Status(s) if s.code == want => return Ok(()),
                Incoming::Status(s) if self.redirect_target(&s).is_some() => {
                    let url = self.redirect_target(&s).unwrap_or_default();
                    return Err(ClientError::Redirect { url });
                }
                Incoming::Status(s) if s.level == "error" => {
                    return Err(ClientError::Refused {
                        call,
                        code: s.code,
                        description: s.description,
                        info: s.info,
                    })
                }
                other => self.pending.push_back(other),
            }
        }
    }

    /// Where an RTMP 302 sends us: `ex.redirect2` (full URL), else `ex.redirect` (a tcUrl)
    /// plus our stream name and query. `None` for any other status.
    fn redirect_target(&self, status: &Status) -> Option<String> {
        let ex = status.info.get("ex")?;
        if status.code != "NetConnection.Connect.Rejected"
            || ex.get("code").and_then(|v| v.as_number()) != Some(302.0)
        {
            return None;
        }
        if let Some(full) = ex.get("redirect2").and_then(|v| v.as_str()) {
            return Some(full.to_string());
        }
        let tc_url = ex.get("redirect").and_then(|v| v.as_str())?;
        Some(format!(
            "{}/{}",
            tc_url.trim_end_matches('/'),
            self.url.stream_with_query()
        ))
    }

    /// Connects and plays (or publishes), following RTMP 302 redirects up to `max_depth`
    /// times; a redirect back to a URL already visited is a loop and an error.
    pub async fn connect_following(
        url: &RtmpUrl,
        opts: ClientOptions,
        publish: bool,
        max_depth: usize,
    ) -> Result<(RtmpClient, Vec<String>), ClientError> {
        let mut chain = vec![url.to_string()];
        let mut current = url.clone();
        loop {
            // An FMS-style redirect answers the connect itself; an SRS-style one, the play.
            let result = match RtmpClient::connect(&current, opts.clone()).await {
                Ok(mut client) => {
                    let called = if publish {
                        client.publish().await
                    } else {
                        client.play().await
                    };
                    called.map(|()| client)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(client) => return Ok((client, chain)),
                Err(ClientError::Redirect { url: next }) => {
                    if chain.contains(&next) {
                        chain.push(next);
                        return Err(ClientError::RedirectLoop(chain.join(" -> ")));
                    }
                    chain.push(next.clone());
                    if chain.len() > max_depth + 1 {
                        return Err(ClientError::TooManyRedirects {
                            max: max_depth,
                            chain: chain.join(" -> "),
                        });
                    }
                    current = RtmpUrl::parse(&next)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues a hub frame as it is, already chunked at the hub's chunk size: only valid
    /// when this client's chunk size equals it (relays set `ClientOptions::chunk_size` so).
    pub fn queue_frame(&mut self, frame: &crate::media::Frame) {
        let sid = self.stream_id;
        crate::rtmp::chunk::encode_header(&mut self.out, &frame.header(sid), frame.len);
        self.out.extend_from_slice(&frame.chunked);
    }

    /// Queues a media or data message on the publish stream; `flush` sends.
    pub fn queue_media(&mut self, type_id: u8, timestamp: u32, payload: &[u8]) {
        let csid = match type_id {
            MSG_AUDIO => CSID_AUDIO,
            MSG_VIDEO => CSID_VIDEO,
            _ => CSID_DATA,
        };
        let sid = self.stream_id;
        self.queue(csid, type_id, sid, timestamp, payload);
    }

    pub async fn send_media(
        &mut self,
        type_id: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.queue_media(type_id, timestamp, payload);
        self.flush().await
    }

    /// Sends a command on the current stream without waiting (e.g. `deleteStream`, `pause`).
    pub async fn send_command(
        &mut self,
        name: &str,
        args: Vec<Amf0Value>,
    ) -> Result<(), ClientError> {
        let txn = self.next_txn;
        self.next_txn += 1.0;
        let sid = self.stream_id;
        self.queue_command(sid, &Command::new(name, txn, Amf0Value::Null, args));
        self.flush().await
    }

    /// Sends raw bytes as they are (tests of hostile input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.flush().await?;
        write_flushed(&mut self.socket, bytes).await?;
        Ok(())
    }

    /// The next thing the server sent that the caller may care about. Cancel-safe.
    pub async fn next(&mut self) -> Result<Incoming, ClientError> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(ev);
        }
        self.read_incoming().await
    }

    /// Total bytes received after the handshake.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// The next event from the wire, not from `pending` (callers waiting for one answer
    /// park the others there).
    async fn read_incoming(&mut self) -> Result<Incoming, ClientError> {
        loop {
            if let Some(ev) = self.parse_buffered()? {
                return Ok(ev);
            }
            self.fill().await?;
        }
    }

    /// The next event already received, without touching the socket.
    pub fn try_next(&mut self) -> Result<Option<Incoming>, ClientError> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        self.parse_buffered()
    }

    fn parse_buffered(&mut self) -> Result<Option<Incoming>, ClientError> {
        while let Some(msg) = self.reader.read(&mut self.rbuf)? {
            // Answers (acks, pongs) queued here go out with the next `fill`; returning
            // without awaiting keeps `next()` cancel-safe under a timeout.
            if let Some(ev) = self.handle(msg)? {
                return Ok(Some(ev));
            }
        }
        Ok(None)
    }

    /// Writes what is queued, then reads once from the socket (up to 64 KiB more).
    pub async fn fill(&mut self) -> Result<usize, ClientError> {
        self.flush().await?;
        if self.rbuf.capacity() - self.rbuf.len() < 16 * 1024 {
            self.rbuf.reserve(64 * 1024);
        }
        let n = match self.socket.read_buf(&mut self.rbuf).await {
            // TLS: the server closed TCP without a close_notify first.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            r => r?,
        };
        if n == 0 {
            return Err(ClientError::Closed);
        }
        self.bytes_in += n as u64;
        if self.window > 0 && self.bytes_in - self.acked >= self.window as u64 {
            self.acked = self.bytes_in;
            let seq = message::u32_payload(self.bytes_in as u32);
            self.control_at(MSG_ACK, &seq, self.opts.chunk_size);
        }
        Ok(n)
    }

    fn handle(&mut self, msg: RawMessage) -> Result<Option<Incoming>, ClientError> {
        Ok(match msg.type_id {
            MSG_AUDIO | MSG_VIDEO | MSG_DATA_AMF0 | MSG_DATA_AMF3 => Some(Incoming::Media(msg)),
            MSG_WINDOW_ACK_SIZE => {
                self.window = message::read_u32("window ack size", &msg.payload)?;
                None
            }
            MSG_USER_CONTROL => {
                let uc = UserControl::parse(&msg.payload)?;
                if let UserControl::PingRequest(t) = uc {
                    let pong = UserControl::PingResponse(t).encode();
                    self.control_at(MSG_USER_CONTROL, &pong, self.opts.chunk_size);
                }
                Some(Incoming::UserControl(uc))
            }
            MSG_COMMAND_AMF0 | MSG_COMMAND_AMF3 => {
                let cmd = Command::decode(msg.type_id, &msg.payload)?;
                if cmd.name == "onStatus" {
                    let info = cmd.args.first().cloned().unwrap_or(Amf0Value::Null);
                    Some(Incoming::Status(Status::from_info(info)))
                } else {
                    Some(Incoming::Command(cmd))
                }
            }
            _ => None,
        })
    }
}

/// Writes `bytes` and flushes (TLS holds records back until a flush).
async fn write_flushed(socket: &mut ClientStream, bytes: &[u8]) -> std::io::Result<()> {
    socket.write_all(bytes).await?;
    socket.flush().await
}

/// Keepalive probes after 5 s of silence, every 2 s, 3 of them: a vanished peer is given up
/// about 11 s after the last byte even if nothing is written (relays also watch gossip,
/// which says so sooner).
fn set_keepalive(socket: &TcpStream) -> std::io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(3);
    socket2::SockRef::from(socket).set_tcp_keepalive(&keepalive)
}
