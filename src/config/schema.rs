//! The typed configuration and the key table.
//!
//! Owns: the structs and enums the rest of ringcast reads ([`Config`] and one struct per
//! section, with their config spellings and [`Duration`] accessors) and [`KEYS`], every dotted
//! key with the [`Kind`] of value it takes. Must never: read the file or the environment, or
//! check a value (the layers and `checks.rs` do); a struct field without a `KEYS` entry, or the
//! reverse, fails the `key_table_matches_structs` test.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The effective configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub rtmp: RtmpConfig,
    pub http: HttpConfig,
    pub flv: FlvConfig,
    pub cluster: ClusterConfig,
    pub edge: EdgeConfig,
    pub access: AccessConfig,
    /// Signed URLs (the `token` checker).
    pub token: crate::access::token::TokenConfig,
    /// JSON Web Tokens (the `jwt` checker).
    pub jwt: crate::access::jwt::JwtConfig,
    /// HTTP callbacks, nginx-rtmp style (the `hook` checker and notifications).
    pub hooks: crate::access::hooks::HooksConfig,
    /// Address rules (the `cidr` checker).
    pub cidr: crate::access::cidr::CidrConfig,
    pub log: LogConfig,
}

/// `[node]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name in the cluster. Never empty after loading: an empty value is replaced by the
    /// host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else
    /// [`FALLBACK_NODE_ID`](super::FALLBACK_NODE_ID)).
    pub id: String,
    pub role: Role,
    /// A label (region, rack) the balancer may prefer for players that name it; "" = none.
    pub zone: String,
    /// How long a draining node (after SIGTERM or `POST /api/v1/drain`) keeps serving what it
    /// holds, in seconds; it exits sooner once it holds nothing.
    pub drain_timeout_s: u64,
}

/// `[rtmp]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RtmpConfig {
    /// RTMP listener bind address.
    pub listen: SocketAddr,
    /// `host:port` other nodes and redirected clients use; `""` = not set.
    pub advertise: String,
    /// Outbound chunk size we announce, 128..=65536.
    pub chunk_size: u32,
    /// Largest inbound chunk size a peer may set, 128..=16777215.
    pub max_chunk_size: u32,
    /// Largest inbound audio/video message in bytes, 1024..=16777215.
    pub max_message_size: u32,
    /// Largest inbound command message, and of any message before a connection publishes,
    /// 1024..=1048576.
    pub max_command_size: u32,
    /// Largest inbound data message (metadata) of a publisher, 1024..=16777215.
    pub max_data_size: u32,
    /// 1..=1_000_000.
    pub max_connections: usize,
    /// Open connections per client address (the PROXY protocol's client behind a balancer),
    /// 0 = unlimited, 0..=1_000_000.
    pub max_connections_per_ip: usize,
    /// Streams that may have players and no publisher at once, 0..=1_000_000 (0: a player of
    /// an unpublished stream is refused).
    pub max_waiting_streams: usize,
    /// 1..=65535.
    pub max_streams_per_connection: usize,
    /// 1..=86_400_000; see [`RtmpConfig::handshake_timeout`].
    pub handshake_timeout_ms: u64,
    /// 1..=86_400_000; see [`RtmpConfig::idle_timeout`].
    pub idle_timeout_ms: u64,
    /// A publisher that sends no media this long loses the stream, 100..=86_400_000; see
    /// [`RtmpConfig::publish_idle_timeout`].
    pub publish_idle_timeout_ms: u64,
    /// Per-stream fast-start cache limit in bytes, 0..=1 GiB.
    pub gop_cache_max_bytes: usize,
    /// Per-stream fan-out ring length in messages, 1..=1_048_576.
    pub player_queue_messages: usize,
    /// 1..=86_400_000; see [`RtmpConfig::player_write_timeout`].
    pub player_write_timeout_ms: u64,
    /// The latency budget: the longest a frame may wait in this node to share a read or a
    /// write (split by `server::budget`). 0: read and write at once. 0..=1000; see
    /// [`RtmpConfig::merge_write`].
    pub merge_write_ms: u64,
    /// Every connection must start with a PROXY protocol header (v1 or v2), as sent by
    /// HAProxy's `send-proxy`, nginx's `proxy_protocol on` or a cloud load balancer; the
    /// client address it names is logged. Connections without one are refused.
    pub proxy_protocol: bool,
    /// RTMPS listener bind address (IP:port); `""` = no RTMPS listener.
    pub tls_listen: String,
    /// `host:port` other nodes use for RTMPS (relays with `cluster.relay_tls`); `""` = the host
    /// of `rtmp.advertise` with the bound RTMPS port, else the bound address.
    pub tls_advertise: String,
    /// PEM certificate chain of the RTMPS listener (leaf first); re-read on SIGHUP.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`; re-read on SIGHUP.
    pub tls_key: String,
}

impl RtmpConfig {
    /// `rtmp.handshake_timeout_ms` as a [`Duration`].
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// `rtmp.idle_timeout_ms` as a [`Duration`].
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// `rtmp.publish_idle_timeout_ms` as a [`Duration`].
    pub fn publish_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_idle_timeout_ms)
    }

    /// `rtmp.player_write_timeout_ms` as a [`Duration`].
    pub fn player_write_timeout(&self) -> Duration {
        Duration::from_millis(self.player_write_timeout_ms)
    }

    /// `rtmp.merge_write_ms` as a [`Duration`].
    pub fn merge_write(&self) -> Duration {
        Duration::from_millis(self.merge_write_ms)
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// HTTP listener bind address.
    pub listen: SocketAddr,
    /// Bearer token the API requires for stream keys, client lists and every mutating
    /// endpoint; `""` = not required (keep `listen` on loopback then).
    pub admin_token: String,
}

/// `[flv]`: HTTP-FLV delivery to browsers and HTTP players.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FlvConfig {
    /// HTTP-FLV listener bind address (`GET /APP/STREAM.flv`); `""` = off.
    pub listen: String,
    /// `Access-Control-Allow-Origin` of every answer (web players on other origins);
    /// `""` = no CORS headers.
    pub allow_origin: String,
}

impl FlvConfig {
    /// The bind address, `None` when HTTP-FLV is off (checked at load: never unparsable).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

/// `[cluster]`. `Debug` shows `secret` as `"<redacted>"` when it is set.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Gossip listener bind address.
    pub gossip_listen: SocketAddr,
    /// `host:port` other nodes use for gossip; `""` = not set.
    pub gossip_advertise: String,
    /// `host:port` entries; non-empty requires a non-empty `secret`.
    pub seeds: Vec<String>,
    pub secret: String,
    /// Never empty.
    pub cluster_id: String,
    /// Upstream pulls this node runs at once, 1..=1_000_000.
    pub max_pulls: usize,
    /// Relays between nodes (pulls and forwarded publishes) use RTMPS, to the `rtmps`
    /// address each node advertises.
    pub relay_tls: bool,
    /// PEM certificates a relay trusts (pinned, or as roots); `""` = `rtmp.tls_cert`.
    pub relay_tls_ca: String,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.secret.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("ClusterConfig")
            .field("gossip_listen", &self.gossip_listen)
            .field("gossip_advertise", &self.gossip_advertise)
            .field("seeds", &self.seeds)
            .field("secret", &secret)
            .field("cluster_id", &self.cluster_id)
            .field("max_pulls", &self.max_pulls)
            .field("relay_tls", &self.relay_tls)
            .field("relay_tls_ca", &self.relay_tls_ca)
            .finish()
    }
}

/// `[edge]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// `proxy`, `redirect`, or `balance` (send each player to the edge the balancer picks).
    pub play: EdgeMode,
    /// `proxy` or `redirect`.
    pub publish: EdgeMode,
    /// 1 pulls from origins; N (2..=3) pulls from the edges of tier N - 1.
    pub tier: u8,
    /// Players this edge may take (the balancer keeps it under); 0 = unlimited.
    pub max_players: u64,
    /// Egress this edge may send, in Mb/s (the balancer keeps it under); 0 = unlimited.
    pub max_egress_mbps: u64,
}

/// `[access]`: which checkers decide connect, publish and play, per app.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// The rules of every app not listed in `apps` (all empty: open).
    pub default: AppAccess,
    /// Rules per app (app names as clients send them, without query).
    pub apps: BTreeMap<String, AppAccess>,
}

/// `[access.default]`, `[access.apps.APP]`. Each list entry is a checker that must allow
/// (`token`, `jwt`, `hook`, `cidr`), or several joined by `|` of which one must; an empty list
/// lets everyone.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AppAccess {
    pub connect: Vec<String>,
    pub publish: Vec<String>,
    pub play: Vec<String>,
    /// With publish rules: an authorized publisher of a live stream takes it over.
    pub takeover: bool,
}

impl Default for AppAccess {
    fn default() -> Self {
        AppAccess {
            connect: Vec::new(),
            publish: Vec::new(),
            play: Vec::new(),
            takeover: true,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive (not parsed here); never empty. `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

/// `node.role`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Origin,
    Edge,
}

/// `edge.play`, `edge.publish`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeMode {
    Proxy,
    Redirect,
    /// `edge.play` only: the balancer picks the edge.
    Balance,
}

/// `log.format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Role {
    /// The config spelling: `"origin"` or `"edge"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Origin => "origin",
            Role::Edge => "edge",
        }
    }
}

impl EdgeMode {
    /// The config spelling: `"proxy"` or `"redirect"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeMode::Proxy => "proxy",
            EdgeMode::Redirect => "redirect",
            EdgeMode::Balance => "balance",
        }
    }
}

impl LogFormat {
    /// The config spelling: `"text"` or `"json"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for EdgeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Key table
// ---------------------------------------------------------------------------------------------

/// How a key's value is checked (see `checks.rs`; the file layer checks its TOML type first).
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// Any string; `non_empty` refuses "" (and whitespace only).
    Str {
        non_empty: bool,
    },
    Int {
        min: i64,
        max: i64,
    },
    Choice(&'static [&'static str]),
    /// `true` or `false` (in the environment too, in any case).
    Bool,
    /// IP:port, parsed into `SocketAddr`.
    Listen,
    /// "" (off) or IP:port.
    OptionalListen,
    /// "" or host:port; port 0 means "the port the matching listener bound" (see
    /// [`parse_advertise`](super::parse_advertise)).
    OptionalAdvertise,
    /// List of host:port.
    HostPortList,
    /// List of strings (each checked by the rule that reads it); from the environment,
    /// comma-separated.
    StrList,
}

const DAY_MS: i64 = 86_400_000;
const STR: Kind = Kind::Str { non_empty: false };
const NON_EMPTY_STR: Kind = Kind::Str { non_empty: true };

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

/// Every key, with how its value is checked. A test keeps this in step with the structs and
/// with `conf/default.toml`.
pub(super) const KEYS: &[(&str, Kind)] = &[
    ("node.id", STR),
    ("node.role", Kind::Choice(&["origin", "edge"])),
    ("node.zone", STR),
    ("node.drain_timeout_s", int(0, 7 * 86_400)),
    ("rtmp.listen", Kind::Listen),
    ("rtmp.advertise", Kind::OptionalAdvertise),
    ("rtmp.chunk_size", int(128, 65_536)),
    ("rtmp.max_chunk_size", int(128, 16_777_215)),
    ("rtmp.max_message_size", int(1024, 16_777_215)),
    ("rtmp.max_command_size", int(1024, 1 << 20)),
    ("rtmp.max_data_size", int(1024, 16_777_215)),
    ("rtmp.max_connections", int(1, 1_000_000)),
    ("rtmp.max_connections_per_ip", int(0, 1_000_000)),
    ("rtmp.max_waiting_streams", int(0, 1_000_000)),
    ("rtmp.max_streams_per_connection", int(1, 65_535)),
    ("rtmp.handshake_timeout_ms", int(1, DAY_MS)),
    ("rtmp.idle_timeout_ms", int(1, DAY_MS)),
    ("rtmp.publish_idle_timeout_ms", int(100, DAY_MS)),
    ("rtmp.gop_cache_max_bytes", int(0, 1 << 30)),
    ("rtmp.player_queue_messages", int(1, 1 << 20)),
    ("rtmp.player_write_timeout_ms", int(1, DAY_MS)),
    ("rtmp.merge_write_ms", int(0, 1000)),
    ("rtmp.proxy_protocol", Kind::Bool),
    ("rtmp.tls_listen", Kind::OptionalListen),
    ("rtmp.tls_advertise", Kind::OptionalAdvertise),
    ("rtmp.tls_cert", STR),
    ("rtmp.tls_key", STR),
    ("http.listen", Kind::Listen),
    ("http.admin_token", STR),
    ("flv.listen", Kind::OptionalListen),
    ("flv.allow_origin", STR),
    ("cluster.gossip_listen", Kind::Listen),
    ("cluster.gossip_advertise", Kind::OptionalAdvertise),
    ("cluster.seeds", Kind::HostPortList),
    ("cluster.secret", STR),
    ("cluster.cluster_id", NON_EMPTY_STR),
    ("cluster.max_pulls", int(1, 1_000_000)),
    ("cluster.relay_tls", Kind::Bool),
    ("cluster.relay_tls_ca", STR),
    ("edge.play", Kind::Choice(&["proxy", "redirect", "balance"])),
    ("edge.publish", Kind::Choice(&["proxy", "redirect"])),
    // At most 3 tiers: a relay chain is cut after `relay::MAX_HOPS` (3) pulls.
    ("edge.tier", int(1, 3)),
    ("edge.max_players", int(0, 100_000_000)),
    ("edge.max_egress_mbps", int(0, 100_000_000)),
    ("access.default.connect", Kind::StrList),
    ("access.default.publish", Kind::StrList),
    ("access.default.play", Kind::StrList),
    ("access.default.takeover", Kind::Bool),
    ("access.apps.*.connect", Kind::StrList),
    ("access.apps.*.publish", Kind::StrList),
    ("access.apps.*.play", Kind::StrList),
    ("access.apps.*.takeover", Kind::Bool),
    ("token.keys", Kind::StrList),
    ("token.bind_ip", Kind::Bool),
    (
        "jwt.algorithm",
        Kind::Choice(&["", "HS256", "RS256", "ES256"]),
    ),
    ("jwt.secret", STR),
    ("jwt.key_file", STR),
    ("jwt.jwks_file", STR),
    ("jwt.jwks_url", STR),
    ("jwt.jwks_refresh_s", int(1, 86_400)),
    ("jwt.param", NON_EMPTY_STR),
    ("jwt.claim", NON_EMPTY_STR),
    ("jwt.issuer", STR),
    ("jwt.audience", STR),
    ("hooks.on_connect", STR),
    ("hooks.on_publish", STR),
    ("hooks.on_play", STR),
    ("hooks.on_publish_done", STR),
    ("hooks.on_play_done", STR),
    ("hooks.on_disconnect", STR),
    ("hooks.timeout_ms", int(1, 60_000)),
    ("hooks.cache_s", int(0, 86_400)),
    ("hooks.retries", int(0, 10)),
    ("cidr.connect_allow", Kind::StrList),
    ("cidr.connect_deny", Kind::StrList),
    ("cidr.publish_allow", Kind::StrList),
    ("cidr.publish_deny", Kind::StrList),
    ("cidr.play_allow", Kind::StrList),
    ("cidr.play_deny", Kind::StrList),
    ("log.level", NON_EMPTY_STR),
    ("log.format", Kind::Choice(&["text", "json"])),
];

/// Whether the dotted `key` matches `pattern`, where a `*` segment stands for one segment
/// (`access.apps.*.publish` matches `access.apps.live.publish`).
fn matches(pattern: &str, key: &str) -> bool {
    let mut p = pattern.split('.');
    let mut k = key.split('.');
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some("*"), Some(seg)) if !seg.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The [`Kind`] of a dotted key; `None` for a key that does not exist.
pub(super) fn kind_of(key: &str) -> Option<Kind> {
    KEYS.iter()
        .find(|(k, _)| matches(k, key))
        .map(|(_, kind)| *kind)
}

/// Whether `key` is a key pattern with a `*` segment (checked per instance, not by name).
pub(super) fn is_pattern(key: &str) -> bool {
    key.split('.').any(|seg| seg == "*")
}

/// True when `prefix` (`rtmp`, `access.apps`, `access.apps.live`) is a table that holds keys:
/// a strict prefix of some key.
pub(super) fn is_table(prefix: &str) -> bool {
    let depth = prefix.split('.').count();
    KEYS.iter().any(|(k, _)| {
        let segments: Vec<&str> = k.split('.').collect();
        segments.len() > depth && matches(&segments[..depth].join("."), prefix)
    })
}

/// True when `name` is a section (`rtmp`): the part before the dot of some key.
pub(super) fn is_section(name: &str) -> bool {
    !name.contains('.') && is_table(name)
}
