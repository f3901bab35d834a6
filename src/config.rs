//! Configuration for ringcast.
//!
//! Layers, later ones win:
//! 1. the embedded defaults ([`DEFAULT_TOML`], `conf/default.toml`);
//! 2. the file given with `--config FILE`, if any;
//! 3. environment variables `RINGCAST_<SECTION>__<KEY>` (e.g. `RINGCAST_NODE__ROLE=edge`,
//!    `RINGCAST_CLUSTER__SEEDS=origin-0:7946,origin-1:7946`).
//!
//! The layers are merged with the `config` crate. Before the merged result is deserialized,
//! every key of the file and of the environment is checked against the key table below
//! (unknown keys, wrong types), then every merged value is checked (ranges, enum values,
//! addresses), so each error names the key (`rtmp.listen`) and the layer the offending value
//! came from (file path or environment variable name).
//!
//! Typed views: the listen addresses (`rtmp.listen`, `http.listen`, `cluster.gossip_listen`) are
//! [`SocketAddr`] fields; the advertise addresses and seeds stay `String`s (they may be host
//! names) validated as `host:port` (see [`parse_host_port`]; advertise addresses may use port 0
//! for "the port the listener bound", see [`parse_advertise`]), with `""` meaning "not set" for
//! the advertise addresses; timeouts are `*_ms` integer fields with [`Duration`] accessors on
//! [`RtmpConfig`]. Rules spanning several keys (an edge needs a cluster, advertised addresses
//! must be routable) are checked last.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The embedded default configuration (every key, with its default value).
pub const DEFAULT_TOML: &str = include_str!("../conf/default.toml");

/// Prefix of the configuration environment variables (`RINGCAST_NODE__ROLE`, ...).
pub const ENV_PREFIX: &str = "RINGCAST";

/// Node id used when `node.id` is empty and no host name can be found.
pub const FALLBACK_NODE_ID: &str = "ringcast";

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// The effective configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub rtmp: RtmpConfig,
    pub http: HttpConfig,
    pub cluster: ClusterConfig,
    pub edge: EdgeConfig,
    pub log: LogConfig,
}

/// `[node]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name in the cluster. Never empty after loading: an empty value is replaced by the
    /// host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else [`FALLBACK_NODE_ID`]).
    pub id: String,
    pub role: Role,
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
    /// Largest inbound message in bytes, 1024..=16777215.
    pub max_message_size: u32,
    /// 1..=1_000_000.
    pub max_connections: usize,
    /// 1..=65535.
    pub max_streams_per_connection: usize,
    /// 1..=86_400_000; see [`RtmpConfig::handshake_timeout`].
    pub handshake_timeout_ms: u64,
    /// 1..=86_400_000; see [`RtmpConfig::idle_timeout`].
    pub idle_timeout_ms: u64,
    /// Per-stream fast-start cache limit in bytes, 0..=1 GiB.
    pub gop_cache_max_bytes: usize,
    /// Per-stream fan-out ring length in messages, 1..=1_048_576.
    pub player_queue_messages: usize,
    /// 1..=86_400_000; see [`RtmpConfig::player_write_timeout`].
    pub player_write_timeout_ms: u64,
    /// Cap of adaptive write merging: a player's video may wait 20 µs per player of its
    /// stream, at most this long, to share a write with what follows. 0: write at once.
    /// 0..=1000; see [`RtmpConfig::merge_write`].
    pub merge_write_ms: u64,
    /// Every connection must start with a PROXY protocol header (v1 or v2), as sent by
    /// HAProxy's `send-proxy`, nginx's `proxy_protocol on` or a cloud load balancer; the
    /// client address it names is logged. Connections without one are refused.
    pub proxy_protocol: bool,
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
            .finish()
    }
}

/// `[edge]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    pub play: EdgeMode,
    pub publish: EdgeMode,
    /// 1 pulls from origins; N (2..=3) pulls from the edges of tier N - 1.
    pub tier: u8,
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
// Errors
// ---------------------------------------------------------------------------------------------

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// The embedded defaults.
    Default,
    /// The `--config` file.
    File(PathBuf),
    /// An environment variable (its name as given).
    Env(String),
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Default => f.write_str("in the embedded default config"),
            Layer::File(path) => write!(f, "in file {}", path.display()),
            Layer::Env(name) => write!(f, "from environment variable {name}"),
        }
    }
}

/// A configuration error. Every message names the offending key (or the file that could not
/// be read) and where the value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file is missing or unreadable.
    #[error("cannot read config file {}: {error}", path.display())]
    ReadFile {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The `--config` file is not valid TOML (the message has line and column).
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// A key (`rtmp.lisen`) or section that does not exist.
    #[error("unknown key {key} ({layer})")]
    UnknownKey { key: String, layer: Layer },
    /// A value of the wrong type, out of range, or otherwise invalid.
    #[error("{key}: {message} ({layer})")]
    Invalid {
        key: String,
        message: String,
        layer: Layer,
    },
    /// An error from the `config` crate that is not tied to a key (not expected in practice).
    #[error("configuration error: {0}")]
    Other(String),
}

impl ConfigError {
    /// The dotted key the error is about, if any (`"rtmp.listen"`).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Key table
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Kind {
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
    /// "" or host:port; port 0 means "the port the matching listener bound" (see
    /// [`parse_advertise`]).
    OptionalAdvertise,
    /// List of host:port.
    HostPortList,
}

const DAY_MS: i64 = 86_400_000;
const STR: Kind = Kind::Str { non_empty: false };
const NON_EMPTY_STR: Kind = Kind::Str { non_empty: true };

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

/// Every key, with how its value is checked. A test keeps this in step with the structs and
/// with `conf/default.toml`.
const KEYS: &[(&str, Kind)] = &[
    ("node.id", STR),
    ("node.role", Kind::Choice(&["origin", "edge"])),
    ("rtmp.listen", Kind::Listen),
    ("rtmp.advertise", Kind::OptionalAdvertise),
    ("rtmp.chunk_size", int(128, 65_536)),
    ("rtmp.max_chunk_size", int(128, 16_777_215)),
    ("rtmp.max_message_size", int(1024, 16_777_215)),
    ("rtmp.max_connections", int(1, 1_000_000)),
    ("rtmp.max_streams_per_connection", int(1, 65_535)),
    ("rtmp.handshake_timeout_ms", int(1, DAY_MS)),
    ("rtmp.idle_timeout_ms", int(1, DAY_MS)),
    ("rtmp.gop_cache_max_bytes", int(0, 1 << 30)),
    ("rtmp.player_queue_messages", int(1, 1 << 20)),
    ("rtmp.player_write_timeout_ms", int(1, DAY_MS)),
    ("rtmp.merge_write_ms", int(0, 1000)),
    ("rtmp.proxy_protocol", Kind::Bool),
    ("http.listen", Kind::Listen),
    ("cluster.gossip_listen", Kind::Listen),
    ("cluster.gossip_advertise", Kind::OptionalAdvertise),
    ("cluster.seeds", Kind::HostPortList),
    ("cluster.secret", STR),
    ("cluster.cluster_id", NON_EMPTY_STR),
    ("edge.play", Kind::Choice(&["proxy", "redirect"])),
    ("edge.publish", Kind::Choice(&["proxy", "redirect"])),
    // At most 3 tiers: a relay chain is cut after `relay::MAX_HOPS` (3) pulls.
    ("edge.tier", int(1, 3)),
    ("log.level", NON_EMPTY_STR),
    ("log.format", Kind::Choice(&["text", "json"])),
];

fn kind_of(key: &str) -> Option<Kind> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

fn is_section(name: &str) -> bool {
    KEYS.iter().any(|(k, _)| {
        k.split_once('.')
            .is_some_and(|(section, _)| section == name)
    })
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

struct FileLayer {
    path: PathBuf,
    text: String,
    table: toml::Table,
}

struct EnvVar {
    name: String,
    value: String,
}

/// Which layer set which key, for error messages.
struct Layers<'a> {
    file: Option<&'a FileLayer>,
    /// Dotted key -> the variable that set it (the last one given, if several map to one key).
    env: &'a BTreeMap<String, EnvVar>,
}

impl Layers<'_> {
    fn layer_of(&self, key: &str) -> Layer {
        // `cluster.seeds[2]` -> `cluster.seeds`
        let key = key.split('[').next().unwrap_or(key);
        if let Some(var) = self.env.get(key) {
            return Layer::Env(var.name.clone());
        }
        if let Some(file) = self.file {
            let in_file = key
                .split_once('.')
                .and_then(|(section, k)| file.table.get(section)?.as_table()?.get(k))
                .is_some();
            if in_file || (!key.contains('.') && file.table.contains_key(key)) {
                return Layer::File(file.path.clone());
            }
        }
        Layer::Default
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            message: message.into(),
            layer: self.layer_of(key),
        }
    }

    /// Rewrites a `config` crate error, naming the key when it has one.
    fn crate_error(&self, err: config::ConfigError) -> ConfigError {
        let key = match &err {
            config::ConfigError::Type { key: Some(key), .. }
            | config::ConfigError::At { key: Some(key), .. }
            | config::ConfigError::NotFound(key) => Some(key.clone()),
            _ => None,
        };
        match key {
            Some(key) => self.invalid(&key, err.to_string()),
            None => ConfigError::Other(err.to_string()),
        }
    }
}

impl Config {
    /// Load with the embedded default, an optional file, and the process environment
    /// (`RINGCAST_*` variables, and `HOSTNAME` for the `node.id` fallback).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            // A name that is not UTF-8 cannot be one of ours.
            let Ok(name) = name.into_string() else {
                continue;
            };
            let ours = env_key(&name).is_some();
            if !ours && name != "HOSTNAME" {
                continue;
            }
            match value.into_string() {
                Ok(value) => env.push((name, value)),
                Err(_) if ours => {
                    return Err(ConfigError::Invalid {
                        key: env_key(&name).unwrap_or_default(),
                        message: "value is not valid UTF-8".to_owned(),
                        layer: Layer::Env(name),
                    })
                }
                Err(_) => {}
            }
        }
        Self::load_from(file, &env)
    }

    /// Same, but with an explicit environment (list of (NAME, VALUE)) so tests don't mutate the
    /// process env. Variables other than `RINGCAST_*` and `HOSTNAME` are ignored.
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let file = file.map(read_file).transpose()?;
        let env_vars = collect_env(env)?;
        let layers = Layers {
            file: file.as_ref(),
            env: &env_vars,
        };
        let hostname_env = env
            .iter()
            .rev()
            .find(|(name, _)| name == "HOSTNAME")
            .map(|(_, value)| value.as_str());

        let merged = merge(&layers)?;
        for (key, kind) in KEYS {
            check_value(&merged, key, *kind, &layers)?;
        }
        let mut config: Config = merged
            .try_deserialize()
            .map_err(|e| layers.crate_error(e))?;

        if config.node.id.is_empty() {
            config.node.id = pick_node_id(
                std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
                hostname_env,
            );
        }
        if !config.cluster.seeds.is_empty() && config.cluster.secret.is_empty() {
            return Err(layers.invalid(
                "cluster.seeds",
                "set cluster.secret too; gossip is authenticated",
            ));
        }
        check_cluster_addresses(&config, &layers)?;
        Ok(config)
    }

    /// True when this node joins a cluster (`cluster.secret` is set); otherwise it runs
    /// standalone and opens no gossip port.
    pub fn cluster_enabled(&self) -> bool {
        !self.cluster.secret.is_empty()
    }

    /// The effective config as TOML (for --check-config). Includes `cluster.secret`.
    pub fn to_toml(&self) -> String {
        match toml::to_string(self) {
            Ok(text) => text,
            // Not reachable for this struct (only strings, integers, string lists, tables).
            Err(e) => format!("# the configuration cannot be shown as TOML: {e}\n"),
        }
    }
}

fn read_file(path: &Path) -> Result<FileLayer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ReadFile {
        path: path.to_owned(),
        error,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let layer = || Layer::File(path.to_owned());
    for (section, value) in &table {
        if !is_section(section) {
            return Err(ConfigError::UnknownKey {
                key: section.clone(),
                layer: layer(),
            });
        }
        let Some(entries) = value.as_table() else {
            return Err(ConfigError::Invalid {
                key: section.clone(),
                message: format!("expected a table ([{section}]), found {}", value.type_str()),
                layer: layer(),
            });
        };
        for (name, value) in entries {
            let key = format!("{section}.{name}");
            let Some(kind) = kind_of(&key) else {
                return Err(ConfigError::UnknownKey {
                    key,
                    layer: layer(),
                });
            };
            if let Some(message) = toml_type_error(kind, value) {
                return Err(ConfigError::Invalid {
                    key,
                    message,
                    layer: layer(),
                });
            }
        }
    }
    Ok(FileLayer {
        path: path.to_owned(),
        text,
        table,
    })
}

/// The type check for a value in the file: `None` if it has the type `kind` needs.
fn toml_type_error(kind: Kind, value: &toml::Value) -> Option<String> {
    let found = |v: &toml::Value| match v {
        toml::Value::String(s) => format!("string {s:?}"),
        toml::Value::Integer(i) => format!("integer {i}"),
        toml::Value::Float(x) => format!("float {x}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        other => other.type_str().to_owned(),
    };
    match kind {
        Kind::Int { .. } if value.as_integer().is_none() => {
            Some(format!("expected an integer, found {}", found(value)))
        }
        Kind::Bool if value.as_bool().is_none() => {
            Some(format!("expected true or false, found {}", found(value)))
        }
        Kind::Str { .. } | Kind::Choice(_) | Kind::Listen | Kind::OptionalAdvertise
            if value.as_str().is_none() =>
        {
            Some(format!("expected a string, found {}", found(value)))
        }
        Kind::HostPortList => match value.as_array() {
            None => Some(format!(
                "expected a list of \"host:port\" strings, found {}",
                found(value)
            )),
            Some(items) => items.iter().enumerate().find_map(|(i, item)| {
                item.as_str().is_none().then(|| {
                    format!(
                        "expected a list of \"host:port\" strings, found {} at entry {}",
                        found(item),
                        i + 1
                    )
                })
            }),
        },
        _ => None,
    }
}

/// `RINGCAST_RTMP__LISTEN` -> `rtmp.listen` (what the `config` crate's `Environment` does with
/// our prefix and separators); `None` for variables without the prefix.
fn env_key(name: &str) -> Option<String> {
    let lower = name.to_lowercase();
    let prefix = format!("{}_", ENV_PREFIX.to_lowercase());
    lower
        .strip_prefix(&prefix)
        .map(|rest| rest.replace("__", "."))
}

/// The `RINGCAST_*` variables by key, each checked: known key, and an integer where one is
/// needed (so `true` or `4096.5` is refused rather than converted).
fn collect_env(env: &[(String, String)]) -> Result<BTreeMap<String, EnvVar>, ConfigError> {
    let mut vars = BTreeMap::new();
    for (name, value) in env {
        let Some(key) = env_key(name) else {
            continue;
        };
        let layer = || Layer::Env(name.clone());
        match kind_of(&key) {
            None if is_section(&key) => {
                return Err(ConfigError::Invalid {
                    message: format!(
                        "is a section; set its keys with {ENV_PREFIX}_{}__<KEY>",
                        key.to_uppercase()
                    ),
                    key,
                    layer: layer(),
                })
            }
            None => {
                return Err(ConfigError::UnknownKey {
                    key,
                    layer: layer(),
                })
            }
            Some(Kind::Int { .. }) if value.parse::<i64>().is_err() => {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("expected an integer, found {value:?}"),
                    layer: layer(),
                })
            }
            Some(Kind::Bool) if parse_bool(value).is_none() => {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("expected true or false, found {value:?}"),
                    layer: layer(),
                })
            }
            Some(_) => {}
        }
        vars.insert(
            key,
            EnvVar {
                name: name.clone(),
                value: value.clone(),
            },
        );
    }
    Ok(vars)
}

/// Merges defaults, file and environment with the `config` crate.
fn merge(layers: &Layers<'_>) -> Result<config::Config, ConfigError> {
    use config::{Environment, File, FileFormat};

    let mut builder =
        config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(file) = layers.file {
        builder = builder.add_source(File::from_str(&file.text, FileFormat::Toml));
    }
    let env_map: config::Map<String, String> = layers
        .env
        .values()
        .map(|var| (var.name.clone(), var.value.clone()))
        .collect();
    builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("cluster.seeds")
            .try_parsing(true)
            .source(Some(env_map)),
    );
    // `try_parsing` turns every number-, bool- or float-looking value into a number
    // ("0123" -> 123, "1e3" -> 1000, "TRUE" -> true), and splits "" into [""]. Integer keys
    // want exactly that; string keys and the seeds list are re-set verbatim here.
    for (key, var) in layers.env {
        builder = match kind_of(key) {
            Some(Kind::Int { .. }) | None => continue,
            Some(Kind::HostPortList) => builder.set_override(key, split_list(&var.value)),
            Some(Kind::Bool) => builder.set_override(key, parse_bool(&var.value).unwrap_or(false)),
            Some(_) => builder.set_override(key, var.value.clone()),
        }
        .map_err(|e| layers.crate_error(e))?;
    }
    builder.build().map_err(|e| layers.crate_error(e))
}

/// "true" / "false" in any case (what `collect_env` accepts for a boolean key).
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// "a:1, b:2" -> ["a:1", "b:2"]; "" (or only commas/spaces) -> [].
fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check_value(
    merged: &config::Config,
    key: &str,
    kind: Kind,
    layers: &Layers<'_>,
) -> Result<(), ConfigError> {
    let get_string = || merged.get_string(key).map_err(|e| layers.crate_error(e));
    match kind {
        Kind::Str { non_empty } => {
            if non_empty && get_string()?.trim().is_empty() {
                return Err(layers.invalid(key, "must not be empty"));
            }
        }
        Kind::Int { min, max } => {
            let value = merged.get_int(key).map_err(|e| layers.crate_error(e))?;
            if !(min..=max).contains(&value) {
                return Err(layers.invalid(
                    key,
                    format!("{value} is out of range, expected {min}..={max}"),
                ));
            }
        }
        Kind::Bool => {
            merged.get_bool(key).map_err(|e| layers.crate_error(e))?;
        }
        Kind::Choice(choices) => {
            let value = get_string()?;
            if !choices.contains(&value.as_str()) {
                return Err(layers.invalid(
                    key,
                    format!("unknown value {value:?}, expected {}", or_list(choices)),
                ));
            }
        }
        Kind::Listen => {
            let value = get_string()?;
            if value.parse::<SocketAddr>().is_err() {
                return Err(layers.invalid(
                    key,
                    format!("invalid socket address {value:?}, expected IP:port such as 0.0.0.0:1935 or [::]:1935"),
                ));
            }
        }
        Kind::OptionalAdvertise => {
            let value = get_string()?;
            if !value.is_empty() && parse_advertise(&value).is_none() {
                return Err(layers.invalid(
                    key,
                    format!("invalid host:port {value:?}, expected e.g. node-1.example.com:1935, 10.0.0.1:1935 or [::1]:1935 (or empty for not set)"),
                ));
            }
        }
        Kind::HostPortList => {
            let items = merged.get_array(key).map_err(|e| layers.crate_error(e))?;
            for (i, item) in items.into_iter().enumerate() {
                let value = item.into_string().map_err(|e| layers.crate_error(e))?;
                if parse_host_port(&value).is_none() {
                    return Err(layers.invalid(
                        key,
                        format!(
                            "invalid host:port {value:?} at entry {}, expected e.g. origin-0:7946",
                            i + 1
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Rules that involve several keys: what a node in a cluster needs to be reachable.
///
/// - an edge only makes sense in a cluster, so it needs `cluster.secret`;
/// - in a cluster, `node.id` is a gossip identity: no spaces or control characters;
/// - an advertised address must be one peers and clients can dial: never `0.0.0.0` or `::`;
/// - in a cluster, a wildcard `cluster.gossip_listen` needs `cluster.gossip_advertise`, and an
///   origin whose `rtmp.listen` is a wildcard needs `rtmp.advertise` (the cluster would refuse
///   both at start; refusing them here lets `--check-config` catch them too).
fn check_cluster_addresses(config: &Config, layers: &Layers<'_>) -> Result<(), ConfigError> {
    if config.node.role == Role::Edge && !config.cluster_enabled() {
        return Err(layers.invalid(
            "node.role",
            "an edge needs a cluster; set cluster.secret and cluster.seeds",
        ));
    }
    for (key, value) in [
        ("rtmp.advertise", &config.rtmp.advertise),
        ("cluster.gossip_advertise", &config.cluster.gossip_advertise),
    ] {
        let unspecified = parse_advertise(value)
            .and_then(|(host, _)| host.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_unspecified());
        if unspecified {
            return Err(layers.invalid(
                key,
                format!("{value:?} is not routable; advertise an address other nodes and clients can reach (the node's IP or DNS name)"),
            ));
        }
    }
    if !config.cluster_enabled() {
        return Ok(());
    }
    let id = &config.node.id;
    if id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(layers.invalid(
            "node.id",
            "in a cluster, must be 1-128 characters without spaces or control characters",
        ));
    }
    if config.cluster.gossip_advertise.is_empty()
        && config.cluster.gossip_listen.ip().is_unspecified()
    {
        return Err(layers.invalid(
            "cluster.gossip_advertise",
            format!(
                "required when cluster.gossip_listen ({}) is a wildcard address; set the host:port other nodes reach this node's gossip at",
                config.cluster.gossip_listen
            ),
        ));
    }
    if config.node.role == Role::Origin
        && config.rtmp.advertise.is_empty()
        && config.rtmp.listen.ip().is_unspecified()
    {
        return Err(layers.invalid(
            "rtmp.advertise",
            format!(
                "required for an origin in a cluster when rtmp.listen ({}) is a wildcard address; set the host:port edges and redirected clients reach this node at",
                config.rtmp.listen
            ),
        ));
    }
    Ok(())
}

/// ["a", "b", "c"] -> "a, b or c"
fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn pick_node_id(proc_hostname: Option<String>, hostname_env: Option<&str>) -> String {
    proc_hostname
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .or_else(|| hostname_env.map(str::trim).filter(|h| !h.is_empty()))
        .unwrap_or(FALLBACK_NODE_ID)
        .to_owned()
}

/// Splits a `host:port` address as accepted for `rtmp.advertise`, `cluster.gossip_advertise`
/// and `cluster.seeds`: a host name (letters, digits, `-`, `_`, dot-separated labels), an IPv4
/// address, or a bracketed IPv6 address (`[::1]:1935`, returned without brackets), then a port
/// 1..=65535.
pub fn parse_host_port(s: &str) -> Option<(&str, u16)> {
    split_host_port(s).filter(|(_, port)| *port != 0)
}

/// Splits an advertise address (`rtmp.advertise`, `cluster.gossip_advertise`): like
/// [`parse_host_port`], but port 0 is allowed and means "the port the matching listener bound"
/// (useful with `listen = "127.0.0.1:0"`).
pub fn parse_advertise(s: &str) -> Option<(&str, u16)> {
    split_host_port(s)
}

fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (host, port) = rest.split_once("]:")?;
            host.parse::<Ipv6Addr>().ok()?;
            (host, port)
        }
        None => {
            let (host, port) = s.rsplit_once(':')?;
            if !valid_host_name(host) {
                return None;
            }
            (host, port)
        }
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    Some((host, port))
}

fn valid_host_name(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    // All-numeric dotted names must be real IPv4 addresses (refuses 999.1.1.1).
    let numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    labels_ok && (!numeric || host.parse::<Ipv4Addr>().is_ok())
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A file in the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &str) -> TempFile {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "ringcast-config-test-{}-{}.toml",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, contents).expect("write temp config");
            TempFile(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn defaults() -> Config {
        Config::load_from(None, &[]).expect("defaults load")
    }

    fn with_file(contents: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let file = TempFile::new(contents);
        Config::load_from(Some(file.path()), &env(vars))
    }

    fn file_err(contents: &str) -> (String, TempFile) {
        let file = TempFile::new(contents);
        let err = Config::load_from(Some(file.path()), &[]).expect_err("should be refused");
        (err.to_string(), file)
    }

    fn env_err(vars: &[(&str, &str)]) -> String {
        Config::load_from(None, &env(vars))
            .expect_err("should be refused")
            .to_string()
    }

    fn origin_toml_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/origin.toml")
    }

    fn expected_node_id() -> String {
        pick_node_id(
            std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
            None,
        )
    }

    fn dotted_keys(table: &toml::Table) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for (section, value) in table {
            let entries = value.as_table().expect("sections only at top level");
            for name in entries.keys() {
                keys.insert(format!("{section}.{name}"));
            }
        }
        keys
    }

    fn table_keys() -> BTreeSet<String> {
        KEYS.iter().map(|(k, _)| (*k).to_owned()).collect()
    }

    #[test]
    fn defaults_equal_documented_values() {
        let c = defaults();
        assert_eq!(c.node.id, expected_node_id());
        assert!(!c.node.id.is_empty());
        assert_eq!(c.node.role, Role::Origin);

        assert_eq!(c.rtmp.listen, "0.0.0.0:1935".parse::<SocketAddr>().unwrap());
        assert_eq!(c.rtmp.advertise, "");
        assert_eq!(c.rtmp.chunk_size, 4096);
        assert_eq!(c.rtmp.max_chunk_size, 1_048_576);
        assert_eq!(c.rtmp.max_message_size, 8_388_608);
        assert_eq!(c.rtmp.max_connections, 10_000);
        assert_eq!(c.rtmp.max_streams_per_connection, 8);
        assert_eq!(c.rtmp.handshake_timeout_ms, 10_000);
        assert_eq!(c.rtmp.idle_timeout_ms, 30_000);
        assert_eq!(c.rtmp.gop_cache_max_bytes, 16_777_216);
        assert_eq!(c.rtmp.player_queue_messages, 256);
        assert_eq!(c.rtmp.merge_write_ms, 100);
        assert_eq!(c.rtmp.player_write_timeout_ms, 10_000);
        assert_eq!(c.rtmp.handshake_timeout(), Duration::from_secs(10));
        assert_eq!(c.rtmp.idle_timeout(), Duration::from_secs(30));
        assert_eq!(c.rtmp.player_write_timeout(), Duration::from_secs(10));

        assert_eq!(
            c.http.listen,
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );

        assert_eq!(
            c.cluster.gossip_listen,
            "0.0.0.0:7946".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(c.cluster.gossip_advertise, "");
        assert!(c.cluster.seeds.is_empty());
        assert_eq!(c.cluster.secret, "");
        assert_eq!(c.cluster.cluster_id, "ringcast");

        assert_eq!(c.edge.play, EdgeMode::Proxy);
        assert_eq!(c.edge.publish, EdgeMode::Proxy);
        assert_eq!(c.edge.tier, 1);

        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn embedded_default_and_origin_example_agree() {
        let example = Config::load_from(Some(&origin_toml_path()), &[]).expect("origin.toml");
        assert_eq!(example, defaults());

        // Both files spell out every key, with node.id left empty.
        let embedded: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
        let text = std::fs::read_to_string(origin_toml_path()).unwrap();
        let example: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(dotted_keys(&embedded), table_keys());
        assert_eq!(dotted_keys(&example), table_keys());
        for table in [&embedded, &example] {
            assert_eq!(table["node"]["id"].as_str(), Some(""));
        }
    }

    #[test]
    fn key_table_matches_structs() {
        let serialized: toml::Table = toml::from_str(&defaults().to_toml()).unwrap();
        assert_eq!(dotted_keys(&serialized), table_keys());
    }

    #[test]
    fn file_overrides_defaults() {
        let c = with_file(
            r#"
            [node]
            id = "origin-7"
            role = "edge"
            [rtmp]
            listen = "[::]:1936"
            advertise = "origin-7.example.com:1936"
            chunk_size = 128
            [cluster]
            gossip_advertise = "origin-7.example.com:7946"
            seeds = ["origin-0:7946", "10.0.0.2:7946", "[fd00::3]:7946"]
            secret = "s3cret"
            [edge]
            play = "redirect"
            tier = 2
            [log]
            format = "json"
            "#,
            &[],
        )
        .unwrap();
        assert_eq!(c.node.id, "origin-7");
        assert_eq!(c.node.role, Role::Edge);
        assert_eq!(c.rtmp.listen, "[::]:1936".parse::<SocketAddr>().unwrap());
        assert_eq!(c.rtmp.advertise, "origin-7.example.com:1936");
        assert_eq!(c.rtmp.chunk_size, 128);
        assert_eq!(c.cluster.gossip_advertise, "origin-7.example.com:7946");
        assert_eq!(
            c.cluster.seeds,
            ["origin-0:7946", "10.0.0.2:7946", "[fd00::3]:7946"]
        );
        assert_eq!(c.edge.play, EdgeMode::Redirect);
        assert_eq!(c.edge.publish, EdgeMode::Proxy);
        assert_eq!(c.edge.tier, 2);
        assert_eq!(c.log.format, LogFormat::Json);
        // Untouched keys keep their defaults.
        assert_eq!(c.rtmp.max_connections, 10_000);
        assert_eq!(c.http, defaults().http);
    }

    #[test]
    fn env_overrides_file() {
        let c = with_file(
            "[node]\nrole = \"edge\"\n[rtmp]\nlisten = \"0.0.0.0:1936\"\nchunk_size = 8192\n",
            &[
                ("RINGCAST_NODE__ROLE", "origin"),
                ("RINGCAST_RTMP__LISTEN", "127.0.0.1:1937"),
                ("RINGCAST_RTMP__CHUNK_SIZE", "65536"),
                ("RINGCAST_RTMP__IDLE_TIMEOUT_MS", "1500"),
                ("RINGCAST_LOG__LEVEL", "info,ringcast=debug"),
                ("UNRELATED", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(c.node.role, Role::Origin);
        assert_eq!(
            c.rtmp.listen,
            "127.0.0.1:1937".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(c.rtmp.chunk_size, 65_536);
        assert_eq!(c.rtmp.idle_timeout(), Duration::from_millis(1500));
        assert_eq!(c.log.level, "info,ringcast=debug");
    }

    #[test]
    fn env_without_file() {
        let c = Config::load_from(None, &env(&[("RINGCAST_RTMP__CHUNK_SIZE", "8192")])).unwrap();
        assert_eq!(c.rtmp.chunk_size, 8192);
        let mut vars = CLUSTER_ENV.to_vec();
        vars.push(("RINGCAST_NODE__ROLE", "edge"));
        let c = Config::load_from(None, &env(&vars)).unwrap();
        assert_eq!(c.node.role, Role::Edge);
    }

    /// What a clustered origin on the default (wildcard) listen addresses needs.
    const CLUSTER_ENV: [(&str, &str); 3] = [
        ("RINGCAST_CLUSTER__SECRET", "k"),
        ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "10.0.0.1:7946"),
        ("RINGCAST_RTMP__ADVERTISE", "10.0.0.1:1935"),
    ];

    fn cluster_env(extra: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
        let mut vars = CLUSTER_ENV.to_vec();
        vars.extend_from_slice(extra);
        env(&vars)
    }

    #[test]
    fn seeds_from_comma_list() {
        let c = Config::load_from(
            None,
            &cluster_env(&[("RINGCAST_CLUSTER__SEEDS", "origin-0:7946, origin-1:7946")]),
        )
        .unwrap();
        assert_eq!(c.cluster.seeds, ["origin-0:7946", "origin-1:7946"]);

        let one = Config::load_from(
            None,
            &cluster_env(&[("RINGCAST_CLUSTER__SEEDS", "origin-0:7946")]),
        )
        .unwrap();
        assert_eq!(one.cluster.seeds, ["origin-0:7946"]);
    }

    #[test]
    fn empty_seeds_env_clears_the_list() {
        let c = with_file(
            "[cluster]\nseeds = [\"origin-0:7946\"]\nsecret = \"k\"\ngossip_advertise = \"10.0.0.1:7946\"\n[rtmp]\nadvertise = \"10.0.0.1:1935\"\n",
            &[("RINGCAST_CLUSTER__SEEDS", "")],
        )
        .unwrap();
        assert!(c.cluster.seeds.is_empty());
    }

    #[test]
    fn an_edge_needs_a_cluster() {
        let msg = env_err(&[("RINGCAST_NODE__ROLE", "edge")]);
        assert!(
            msg.contains(
                "node.role: an edge needs a cluster; set cluster.secret and cluster.seeds"
            ),
            "{msg}"
        );
        assert!(msg.contains("RINGCAST_NODE__ROLE"), "{msg}");
        // An edge need not advertise RTMP (nobody is sent to it), only gossip.
        let c = Config::load_from(
            None,
            &env(&[
                ("RINGCAST_NODE__ROLE", "edge"),
                ("RINGCAST_CLUSTER__SECRET", "k"),
                ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "edge-0:7946"),
            ]),
        )
        .unwrap();
        assert_eq!(c.node.role, Role::Edge);
        assert!(c.cluster_enabled());
    }

    #[test]
    fn advertised_addresses_must_be_routable() {
        // Refused even standalone: such a value is never what the operator meant.
        for (var, value, key) in [
            ("RINGCAST_RTMP__ADVERTISE", "0.0.0.0:1935", "rtmp.advertise"),
            ("RINGCAST_RTMP__ADVERTISE", "[::]:1935", "rtmp.advertise"),
            (
                "RINGCAST_CLUSTER__GOSSIP_ADVERTISE",
                "0.0.0.0:7946",
                "cluster.gossip_advertise",
            ),
        ] {
            let msg = env_err(&[(var, value)]);
            assert!(msg.contains(&format!("{key}: ")), "{msg}");
            assert!(msg.contains("is not routable"), "{msg}");
            assert!(msg.contains(var), "{msg}");
            let mut vars = CLUSTER_ENV.to_vec();
            vars.push((var, value));
            let msg = env_err(&vars);
            assert!(msg.contains(&format!("{key}: ")), "{msg}");
        }
        // Port 0: the port the listener bound.
        let c = Config::load_from(
            None,
            &env(&[
                ("RINGCAST_CLUSTER__SECRET", "k"),
                ("RINGCAST_CLUSTER__GOSSIP_LISTEN", "127.0.0.1:0"),
                ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "127.0.0.1:0"),
                ("RINGCAST_RTMP__LISTEN", "127.0.0.1:0"),
            ]),
        )
        .unwrap();
        assert_eq!(c.cluster.gossip_advertise, "127.0.0.1:0");
        assert_eq!(parse_advertise("node-1:0"), Some(("node-1", 0)));
        assert_eq!(parse_advertise("node-1"), None);
    }

    #[test]
    fn a_clustered_node_on_wildcard_listeners_must_say_where_it_is() {
        let msg = env_err(&[("RINGCAST_CLUSTER__SECRET", "k")]);
        assert!(
            msg.contains("cluster.gossip_advertise: required when cluster.gossip_listen (0.0.0.0:7946) is a wildcard address"),
            "{msg}"
        );
        let msg = env_err(&[
            ("RINGCAST_CLUSTER__SECRET", "k"),
            ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "origin-0:7946"),
        ]);
        assert!(
            msg.contains("rtmp.advertise: required for an origin in a cluster when rtmp.listen (0.0.0.0:1935) is a wildcard address"),
            "{msg}"
        );
        let msg = env_err(&[
            ("RINGCAST_CLUSTER__SECRET", "k"),
            ("RINGCAST_CLUSTER__GOSSIP_LISTEN", "10.0.0.1:7946"),
            ("RINGCAST_RTMP__LISTEN", "10.0.0.1:1935"),
            ("RINGCAST_NODE__ID", "origin 1"),
        ]);
        assert!(msg.contains("node.id: in a cluster, must be"), "{msg}");
        // Specific listen IPs are their own advertise addresses.
        let c = Config::load_from(
            None,
            &env(&[
                ("RINGCAST_CLUSTER__SECRET", "k"),
                ("RINGCAST_CLUSTER__GOSSIP_LISTEN", "10.0.0.1:7946"),
                ("RINGCAST_RTMP__LISTEN", "10.0.0.1:1935"),
            ]),
        )
        .unwrap();
        assert!(c.cluster_enabled());
        // Standalone, wildcards need nothing.
        assert!(!defaults().cluster_enabled());
    }

    #[test]
    fn numeric_looking_env_values_for_string_keys_stay_verbatim() {
        let c = Config::load_from(
            None,
            &env(&[
                ("RINGCAST_NODE__ID", "0123"),
                ("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "10.0.0.1:7946"),
                ("RINGCAST_RTMP__ADVERTISE", "10.0.0.1:1935"),
                ("RINGCAST_CLUSTER__SECRET", "1e3"),
                ("RINGCAST_CLUSTER__CLUSTER_ID", "42"),
                ("RINGCAST_LOG__LEVEL", "TRUE"),
            ]),
        )
        .unwrap();
        assert_eq!(c.node.id, "0123");
        assert_eq!(c.cluster.secret, "1e3");
        assert_eq!(c.cluster.cluster_id, "42");
        assert_eq!(c.log.level, "TRUE");
    }

    #[test]
    fn env_prefix_is_case_insensitive_like_the_config_crate() {
        let c = Config::load_from(None, &env(&[("ringcast_log__format", "json")])).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn empty_node_id_uses_host_name() {
        let c = with_file("[node]\nid = \"\"\n", &[]).unwrap();
        assert_eq!(c.node.id, expected_node_id());
        assert_eq!(pick_node_id(Some("box-1\n".into()), Some("env")), "box-1");
        assert_eq!(
            pick_node_id(Some("\n".into()), Some("env-host")),
            "env-host"
        );
        assert_eq!(pick_node_id(None, Some(" ")), FALLBACK_NODE_ID);
        assert_eq!(pick_node_id(None, None), FALLBACK_NODE_ID);
    }

    #[test]
    fn bad_address() {
        let (msg, file) = file_err("[rtmp]\nlisten = \"0.0.0.0:99999\"\n");
        assert!(
            msg.contains(r#"rtmp.listen: invalid socket address "0.0.0.0:99999""#),
            "{msg}"
        );
        assert!(msg.contains(&file.path().display().to_string()), "{msg}");

        let msg = env_err(&[("RINGCAST_HTTP__LISTEN", "localhost:8080")]);
        assert!(msg.contains("http.listen: invalid socket address"), "{msg}");
        assert!(msg.contains("RINGCAST_HTTP__LISTEN"), "{msg}");

        let (msg, _f) = file_err("[rtmp]\nadvertise = \"no-port\"\n");
        assert!(msg.contains("rtmp.advertise: invalid host:port"), "{msg}");

        let msg = env_err(&[("RINGCAST_CLUSTER__GOSSIP_ADVERTISE", "a b:1")]);
        assert!(msg.contains("cluster.gossip_advertise"), "{msg}");
    }

    #[test]
    fn booleans_from_file_and_environment() {
        assert!(!defaults().rtmp.proxy_protocol);
        let on = with_file("[rtmp]\nproxy_protocol = true\n", &[]).expect("bool in file");
        assert!(on.rtmp.proxy_protocol);
        let (msg, _f) = file_err("[rtmp]\nproxy_protocol = \"yes\"\n");
        assert!(
            msg.contains("rtmp.proxy_protocol: expected true or false, found string \"yes\""),
            "{msg}"
        );
        for (value, expected) in [("true", true), ("TRUE", true), ("False", false)] {
            let c = Config::load_from(None, &env(&[("RINGCAST_RTMP__PROXY_PROTOCOL", value)]))
                .expect("bool in env");
            assert_eq!(c.rtmp.proxy_protocol, expected, "{value}");
        }
        // The environment overrides the file.
        let off = with_file(
            "[rtmp]\nproxy_protocol = true\n",
            &[("RINGCAST_RTMP__PROXY_PROTOCOL", "false")],
        )
        .expect("env over file");
        assert!(!off.rtmp.proxy_protocol);
        let msg = env_err(&[("RINGCAST_RTMP__PROXY_PROTOCOL", "1")]);
        assert!(msg.contains("expected true or false, found \"1\""), "{msg}");
        assert!(msg.contains("RINGCAST_RTMP__PROXY_PROTOCOL"), "{msg}");
    }

    #[test]
    fn bad_role_and_modes() {
        let (msg, _f) = file_err("[node]\nrole = \"edg\"\n");
        assert!(
            msg.contains(r#"node.role: unknown value "edg", expected origin or edge"#),
            "{msg}"
        );
        let msg = env_err(&[("RINGCAST_NODE__ROLE", "edg")]);
        assert!(
            msg.contains(r#"node.role: unknown value "edg", expected origin or edge"#),
            "{msg}"
        );
        assert!(msg.contains("RINGCAST_NODE__ROLE"), "{msg}");
        let msg = env_err(&[("RINGCAST_NODE__ROLE", "1")]);
        assert!(msg.contains("node.role: unknown value \"1\""), "{msg}");
        let msg = env_err(&[("RINGCAST_EDGE__PUBLISH", "Proxy")]);
        assert!(msg.contains("edge.publish: unknown value"), "{msg}");
        let msg = env_err(&[("RINGCAST_LOG__FORMAT", "xml")]);
        assert!(msg.contains("log.format: unknown value"), "{msg}");
        let msg = env_err(&[("RINGCAST_EDGE__TIER", "4")]);
        assert!(msg.contains("edge.tier"), "{msg}");
    }

    #[test]
    fn out_of_range_values() {
        let (msg, _f) = file_err("[rtmp]\nchunk_size = 100\n");
        assert!(
            msg.contains("rtmp.chunk_size: 100 is out of range"),
            "{msg}"
        );
        let msg = env_err(&[("RINGCAST_RTMP__CHUNK_SIZE", "65537")]);
        assert!(msg.contains("rtmp.chunk_size"), "{msg}");
        assert!(msg.contains("RINGCAST_RTMP__CHUNK_SIZE"), "{msg}");
        let msg = env_err(&[("RINGCAST_RTMP__MAX_MESSAGE_SIZE", "16777216")]);
        assert!(msg.contains("rtmp.max_message_size"), "{msg}");
        let msg = env_err(&[("RINGCAST_RTMP__IDLE_TIMEOUT_MS", "0")]);
        assert!(msg.contains("rtmp.idle_timeout_ms"), "{msg}");
        let (msg, _f) = file_err("[rtmp]\nmax_connections = -1\n");
        assert!(msg.contains("rtmp.max_connections"), "{msg}");
        let (msg, _f) = file_err("[rtmp]\nmax_chunk_size = 99999999999\n");
        assert!(msg.contains("rtmp.max_chunk_size"), "{msg}");
    }

    #[test]
    fn unknown_key_in_file() {
        let (msg, file) = file_err("[rtmp]\nlisen = \"0.0.0.0:1935\"\n");
        assert!(msg.contains("unknown key rtmp.lisen"), "{msg}");
        assert!(msg.contains(&file.path().display().to_string()), "{msg}");

        let (msg, _f) = file_err("[rtmpp]\nlisten = \"0.0.0.0:1935\"\n");
        assert!(msg.contains("unknown key rtmpp"), "{msg}");
        let (msg, _f) = file_err("listen = \"0.0.0.0:1935\"\n");
        assert!(msg.contains("unknown key listen"), "{msg}");
        let (msg, _f) = file_err("[rtmp.tls]\ncert = \"x\"\n");
        assert!(msg.contains("unknown key rtmp.tls"), "{msg}");
    }

    #[test]
    fn unknown_key_in_env() {
        let msg = env_err(&[("RINGCAST_RTMP__LISEN", "0.0.0.0:1935")]);
        assert!(msg.contains("unknown key rtmp.lisen"), "{msg}");
        assert!(msg.contains("RINGCAST_RTMP__LISEN"), "{msg}");
        let msg = env_err(&[("RINGCAST_RTMP_LISTEN", "0.0.0.0:1935")]);
        assert!(msg.contains("unknown key rtmp_listen"), "{msg}");
        let msg = env_err(&[("RINGCAST_RTMP", "x")]);
        assert!(msg.contains("rtmp: is a section"), "{msg}");
    }

    #[test]
    fn wrong_type() {
        let (msg, _f) = file_err("[rtmp]\nchunk_size = \"big\"\n");
        assert!(
            msg.contains(r#"rtmp.chunk_size: expected an integer, found string "big""#),
            "{msg}"
        );
        let (msg, _f) = file_err("[rtmp]\nchunk_size = 4096.5\n");
        assert!(
            msg.contains("rtmp.chunk_size: expected an integer"),
            "{msg}"
        );
        let (msg, _f) = file_err("[node]\nid = 7\n");
        assert!(msg.contains("node.id: expected a string"), "{msg}");
        let (msg, _f) = file_err("[cluster]\nseeds = \"origin-0:7946\"\n");
        assert!(msg.contains("cluster.seeds: expected a list"), "{msg}");
        let (msg, _f) = file_err("[cluster]\nseeds = [\"a:1\", 2]\n");
        assert!(msg.contains("cluster.seeds"), "{msg}");
        let (msg, _f) = file_err("rtmp = 5\n");
        assert!(msg.contains("rtmp: expected a table"), "{msg}");

        let msg = env_err(&[("RINGCAST_RTMP__CHUNK_SIZE", "big")]);
        assert!(
            msg.contains("rtmp.chunk_size: expected an integer"),
            "{msg}"
        );
        let msg = env_err(&[("RINGCAST_RTMP__MAX_CONNECTIONS", "true")]);
        assert!(msg.contains("rtmp.max_connections"), "{msg}");
    }

    #[test]
    fn missing_or_bad_file() {
        let path = std::env::temp_dir().join("ringcast-config-test-does-not-exist.toml");
        let err = Config::load_from(Some(&path), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::ReadFile { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("cannot read config file"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");

        let (msg, file) = file_err("[rtmp\nlisten = 1\n");
        assert!(msg.contains("is not valid TOML"), "{msg}");
        assert!(msg.contains(&file.path().display().to_string()), "{msg}");
    }

    #[test]
    fn seeds_need_a_secret_and_valid_entries() {
        let msg = env_err(&[("RINGCAST_CLUSTER__SEEDS", "origin-0:7946")]);
        assert!(
            msg.contains("cluster.seeds: set cluster.secret too; gossip is authenticated"),
            "{msg}"
        );
        let msg = env_err(&[
            ("RINGCAST_CLUSTER__SEEDS", "origin-0:7946,origin-1"),
            ("RINGCAST_CLUSTER__SECRET", "k"),
        ]);
        assert!(
            msg.contains("cluster.seeds: invalid host:port \"origin-1\""),
            "{msg}"
        );
        let (msg, _f) = file_err("[cluster]\nseeds = [\"\"]\nsecret = \"k\"\n");
        assert!(msg.contains("cluster.seeds: invalid host:port"), "{msg}");
    }

    #[test]
    fn empty_required_strings() {
        let msg = env_err(&[("RINGCAST_CLUSTER__CLUSTER_ID", "")]);
        assert!(
            msg.contains("cluster.cluster_id: must not be empty"),
            "{msg}"
        );
        let (msg, _f) = file_err("[log]\nlevel = \" \"\n");
        assert!(msg.contains("log.level: must not be empty"), "{msg}");
    }

    #[test]
    fn to_toml_round_trips() {
        let mut c = defaults();
        c.node.id = "edge-3".into();
        c.node.role = Role::Edge;
        c.rtmp.listen = "[::1]:19350".parse().unwrap();
        c.rtmp.advertise = "edge-3.example.com:1935".into();
        c.rtmp.gop_cache_max_bytes = 0;
        c.cluster.gossip_advertise = "edge-3.example.com:7946".into();
        c.cluster.seeds = vec!["origin-0:7946".into(), "origin-1:7946".into()];
        c.cluster.secret = "0123".into();
        c.edge.publish = EdgeMode::Redirect;
        c.log.format = LogFormat::Json;

        let text = c.to_toml();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, c);
        let file = TempFile::new(&text);
        assert_eq!(Config::load_from(Some(file.path()), &[]).unwrap(), c);

        let d = defaults();
        assert_eq!(toml::from_str::<Config>(&d.to_toml()).unwrap(), d);
    }

    #[test]
    fn debug_redacts_the_secret() {
        let mut c = defaults();
        c.cluster.secret = "hunter2".into();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn error_key_accessor() {
        let err = Config::load_from(None, &env(&[("RINGCAST_RTMP__LISEN", "x")])).unwrap_err();
        assert_eq!(err.key(), Some("rtmp.lisen"));
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(parse_host_port("origin-0:7946"), Some(("origin-0", 7946)));
        assert_eq!(parse_host_port("10.0.0.1:1935"), Some(("10.0.0.1", 1935)));
        assert_eq!(parse_host_port("[::1]:1935"), Some(("::1", 1935)));
        assert_eq!(
            parse_host_port("a.b_c.example:1"),
            Some(("a.b_c.example", 1))
        );
        for bad in [
            "",
            "host",
            "host:",
            ":1935",
            "host:0",
            "host:65536",
            "host:+80",
            "::1:1935",
            "[::1]",
            "[nope]:1",
            "a..b:1",
            ".a:1",
            "a b:1",
            "999.1.1.1:1",
            "host:80x",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn or_list_formats() {
        assert_eq!(or_list(&["a"]), "a");
        assert_eq!(or_list(&["a", "b"]), "a or b");
        assert_eq!(or_list(&["a", "b", "c"]), "a, b or c");
    }
}
