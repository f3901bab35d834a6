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

/// The access side of a node, built from its config: the rules with their checkers, and the
/// checkers that run in the background or have figures of their own.
pub struct Built {
    pub access: std::sync::Arc<rules::Access>,
    /// Configured when any hook URL is set: start its notifications with `spawn`.
    pub hooks: Option<std::sync::Arc<hooks::HookChecker>>,
    /// Configured when `jwt.algorithm` is set: start its key refresh with `spawn_refresh`.
    pub jwt: Option<std::sync::Arc<jwt::JwtChecker>>,
}

impl rules::Notifier for hooks::HookChecker {
    fn notify(&self, notice: Notice, request: &Request, extra: &[(&str, String)]) {
        hooks::HookChecker::notify(self, notice, request, extra);
    }
}

/// Builds the checkers a config sets up and the rules over them. Errors name the key. Starts
/// nothing (see [`Built`]), so `--check-config` can call it too.
pub fn build(cfg: &crate::config::Config) -> Result<Built, String> {
    use std::sync::Arc;
    let mut checkers: Vec<Arc<dyn Checker>> = Vec::new();
    if !cfg.token.keys.is_empty() {
        checkers.push(Arc::new(token::TokenChecker::new(cfg.token.clone())?));
    }
    let jwt = if cfg.jwt.algorithm.is_empty() {
        None
    } else {
        let jwt = jwt::JwtChecker::new(cfg.jwt.clone())?;
        checkers.push(jwt.clone());
        Some(jwt)
    };
    let h = &cfg.hooks;
    let any_hook = [
        &h.on_connect,
        &h.on_publish,
        &h.on_play,
        &h.on_publish_done,
        &h.on_play_done,
        &h.on_disconnect,
    ]
    .iter()
    .any(|url| !url.is_empty());
    let hooks = if any_hook {
        let hooks = hooks::HookChecker::new(cfg.hooks.clone())?;
        checkers.push(hooks.clone());
        Some(hooks)
    } else {
        None
    };
    let c = &cfg.cidr;
    let any_cidr = [
        &c.connect_allow,
        &c.connect_deny,
        &c.publish_allow,
        &c.publish_deny,
        &c.play_allow,
        &c.play_deny,
    ]
    .iter()
    .any(|list| !list.is_empty());
    if any_cidr {
        checkers.push(Arc::new(cidr::CidrChecker::new(cfg.cidr.clone())?));
    }
    let notifier = hooks.clone().map(|h| h as Arc<dyn rules::Notifier>);
    let access = rules::Access::new(&cfg.access, checkers, notifier)?;
    Ok(Built {
        access: Arc::new(access),
        hooks,
        jwt,
    })
}
