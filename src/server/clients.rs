//! The registry of open connections (RTMP and HTTP-FLV), for the admin API: who is connected, doing what,
//! and a way to end one.
//!
//! Owns one entry per session (added when the session starts, removed when it ends, by a
//! guard) with the counters the session keeps up to date and its kick switch. Must never:
//! hold its lock across anything slow (the API copies a snapshot), or let a kick do more than
//! ask the session to close (the session tells its client and closes itself).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::hub::lock;

/// What one session shares with the registry.
pub struct ClientEntry {
    pub id: u64,
    /// "rtmp" or "http-flv".
    protocol: &'static str,
    client: Mutex<SocketAddr>,
    started: Instant,
    started_unix: u64,
    /// Cancelled to ask the session to close: by a kick, or by the server's shutdown.
    pub kick: CancellationToken,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    state: Mutex<ClientState>,
}

#[derive(Debug, Clone, Default)]
struct ClientState {
    app: Option<String>,
    /// "publish", "play", or none yet.
    role: Option<&'static str>,
    stream: Option<String>,
    relay: bool,
}

/// One connection, as `GET /api/v1/clients` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClientInfo {
    pub id: u64,
    /// "rtmp" or "http-flv".
    pub protocol: &'static str,
    /// "publish", "play" or "connected".
    pub role: &'static str,
    pub app: Option<String>,
    pub stream: Option<String>,
    /// The client address (the PROXY protocol client behind a balancer).
    pub client: String,
    /// A relay of another ringcast node (with a valid relay credential).
    pub relay: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Seconds since the Unix epoch when it connected.
    pub since_unix: u64,
    pub duration_seconds: f64,
}

impl ClientEntry {
    pub fn set_client(&self, client: SocketAddr) {
        *lock(&self.client) = client;
    }

    pub fn set_app(&self, app: &str, relay: bool) {
        let mut state = lock(&self.state);
        state.app = Some(app.to_string());
        state.relay = relay;
    }

    /// The session now publishes or plays `stream` (`None`: neither any more).
    pub fn set_role(&self, role: Option<(&'static str, &str)>) {
        let mut state = lock(&self.state);
        state.role = role.map(|(r, _)| r);
        state.stream = role.map(|(_, s)| s.to_string());
    }

    fn info(&self) -> ClientInfo {
        let state = lock(&self.state).clone();
        ClientInfo {
            id: self.id,
            protocol: self.protocol,
            role: state.role.unwrap_or("connected"),
            app: state.app,
            stream: state.stream,
            client: lock(&self.client).to_string(),
            relay: state.relay,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            since_unix: self.started_unix,
            duration_seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

#[derive(Default)]
pub struct Clients {
    entries: Mutex<HashMap<u64, Arc<ClientEntry>>>,
}

/// Removes its entry when the session ends.
pub struct Registered {
    clients: Arc<Clients>,
    pub entry: Arc<ClientEntry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.clients.entries).remove(&self.entry.id);
    }
}

impl Clients {
    /// Adds the RTMP session `id`, connected from `client`; see [`Clients::register_as`].
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        client: SocketAddr,
        shutdown: &CancellationToken,
    ) -> Registered {
        self.register_as(id, client, "rtmp", shutdown)
    }

    /// Adds connection `id` of `protocol` ("rtmp", "http-flv"), connected from `client`. Its
    /// kick switch is a child of `shutdown`, so that a connection watches one token for both
    /// (each watched token costs a lock on every wake-up of the connection).
    pub fn register_as(
        self: &Arc<Self>,
        id: u64,
        client: SocketAddr,
        protocol: &'static str,
        shutdown: &CancellationToken,
    ) -> Registered {
        let entry = Arc::new(ClientEntry {
            id,
            protocol,
            client: Mutex::new(client),
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            kick: shutdown.child_token(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            state: Mutex::new(ClientState::default()),
        });
        lock(&self.entries).insert(id, entry.clone());
        Registered {
            clients: self.clone(),
            entry,
        }
    }

    /// Every open connection, by id.
    pub fn list(&self) -> Vec<ClientInfo> {
        let entries: Vec<Arc<ClientEntry>> = lock(&self.entries).values().cloned().collect();
        let mut infos: Vec<ClientInfo> = entries.iter().map(|e| e.info()).collect();
        infos.sort_by_key(|c| c.id);
        infos
    }

    /// Connections that publish or play `stream`.
    pub fn of_stream(&self, stream: &str) -> Vec<ClientInfo> {
        self.list()
            .into_iter()
            .filter(|c| c.stream.as_deref() == Some(stream))
            .collect()
    }

    /// Asks connection `id` to close; false when there is none.
    pub fn kick(&self, id: u64) -> bool {
        match lock(&self.entries).get(&id) {
            Some(entry) => {
                entry.kick.cancel();
                true
            }
            None => false,
        }
    }

    /// Asks the connection publishing `stream` to close; its id, if there was one. A relay of
    /// another node (forwarding a publisher that entered there) is not the publisher.
    pub fn kick_publisher(&self, stream: &str) -> Option<u64> {
        let id = self
            .of_stream(stream)
            .into_iter()
            .find(|c| c.role == "publish" && !c.relay)?
            .id;
        self.kick(id).then_some(id)
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_as_long_as_their_session_and_can_be_kicked() {
        let clients = Arc::new(Clients::default());
        let addr: SocketAddr = ([127, 0, 0, 1], 4000).into();
        let a = clients.register(1, addr, &CancellationToken::new());
        let b = clients.register(2, addr, &CancellationToken::new());
        a.entry.set_app("live", false);
        a.entry.set_role(Some(("publish", "live/cam")));
        b.entry.set_role(Some(("play", "live/cam")));
        a.entry.bytes_in.fetch_add(100, Ordering::Relaxed);
        let list = clients.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].role, "publish");
        assert_eq!(list[0].bytes_in, 100);
        assert_eq!(list[0].app.as_deref(), Some("live"));
        assert_eq!(clients.of_stream("live/cam").len(), 2);
        assert_eq!(clients.kick_publisher("live/cam"), Some(1));
        assert!(a.entry.kick.is_cancelled() && !b.entry.kick.is_cancelled());
        assert!(clients.kick(2));
        assert!(!clients.kick(3));
        // The server's shutdown reaches every connection through the same token.
        let shutdown = CancellationToken::new();
        let c = clients.register(3, addr, &shutdown);
        shutdown.cancel();
        assert!(c.entry.kick.is_cancelled());
        drop(c);
        drop(a);
        assert_eq!(clients.len(), 1);
        drop(b);
        assert!(clients.is_empty());
    }
}
