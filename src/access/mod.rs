//! Access decisions: who may connect, publish and play, decided once where a client enters the
//! cluster, before the hub sees it.
//!
//! Owns: the request a decision is made on ([`Request`]), the outcomes ([`Outcome`]), the
//! checkers (signed URLs, JWT, HTTP hooks, address rules; one file each) behind one
//! [`Checker`] trait, and the per-app rules that combine them. Must never: let a checker that
//! fails (timeout, refused connection, bad answer) allow a client (fail closed), block other
//! connections while one waits for a checker, or trust a relay because it says it is one (only
//! a valid [`relay_credential`] makes a connection a relay).

pub mod cidr;
pub mod hooks;
pub mod http_client;
pub mod jwt;
pub mod relay_credential;
pub mod rules;
pub mod token;

use std::net::SocketAddr;

use async_trait::async_trait;

/// What a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Connect,
    Publish,
    Play,
}

impl Action {
    /// The spelling in config keys, hook `call` fields, tokens and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Connect => "connect",
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }
}

/// Everything a decision may look at. Strings are already within the session's length limits.
#[derive(Debug, Clone)]
pub struct Request {
    pub node_id: String,
    /// "origin" or "edge".
    pub role: &'static str,
    pub action: Action,
    /// The app, without its query.
    pub app: String,
    /// The stream name without its query; empty for `Connect`.
    pub stream: String,
    /// `APP/STREAM`; empty for `Connect`.
    pub key: String,
    /// Every query argument, percent-decoded, in order: the connect query (app or tcUrl)
    /// first, then the stream name's.
    pub query: Vec<(String, String)>,
    pub tc_url: String,
    /// The client: the TCP peer, or the address a PROXY protocol header named.
    pub client: SocketAddr,
    pub flash_ver: String,
    pub swf_url: String,
    pub page_url: String,
    /// The session's connection id (`clientid` in hooks).
    pub conn_id: u64,
}

impl Request {
    /// The first query argument named `name`.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a checker (or the combination of them) decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    /// Refused; the reason goes to the client (status description) and to the log.
    Deny(String),
    /// Send the client elsewhere: an `rtmp://` URL, or (from an HTTP hook's `Location`, as
    /// nginx-rtmp does) a bare stream name on this node.
    Redirect(String),
}

/// One way of deciding. Implementations must bound their own time (a hook has a timeout) and
/// must answer `Deny` when they cannot decide.
#[async_trait]
pub trait Checker: Send + Sync {
    /// The name used in `access.apps.*` rules and metrics (`token`, `jwt`, `hook`, `cidr`).
    fn name(&self) -> &'static str;
    async fn check(&self, request: &Request) -> Outcome;
}

/// Something that happened, for notification hooks (`on_publish_done`, `on_play_done`,
/// `on_disconnect`): sent after the fact, never waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    PublishDone,
    PlayDone,
    Disconnect,
}

impl Notice {
    /// The hook `call` field, as nginx-rtmp spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::PublishDone => "publish_done",
            Notice::PlayDone => "play_done",
            Notice::Disconnect => "disconnect",
        }
    }
}
