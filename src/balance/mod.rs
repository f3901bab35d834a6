//! The balancer: which edge a player of stream S should use, chosen from gossip the same way on
//! every node, with no extra service.
//!
//! Owns: the choice ([`choose`]: an edge that already carries S, else S's owner on a
//! bounded-load ring of edges, else "full"), the players this node sent to edges that gossip
//! does not show yet ([`Pending`]), and the rings of eligible edges it reuses. Must never: send
//! a player to an edge at its capacity, to an edge that is not live, ready and serving, or
//! decide differently from another node with the same view (the choice depends only on the
//! view, the stream, the zone and the pending counts).

mod choice;
mod pending;

use std::sync::Mutex;
use std::time::Duration;

pub use choice::{choose, Choice, Reason, RingCache, EPSILON, NOMINAL_PLAYERS};
pub use pending::Pending;

use crate::cluster::ClusterView;
use crate::hub::lock;

/// How long a redirect counts as pending load on its edge: the edge advertises its players
/// every 500 ms and gossip carries that to every node in a second or so.
pub const PENDING_WINDOW: Duration = Duration::from_secs(3);

/// One node's balancer: the choice plus its own pending redirects.
pub struct Balancer {
    state: Mutex<(Pending, RingCache)>,
}

impl Default for Balancer {
    fn default() -> Self {
        Balancer {
            state: Mutex::new((Pending::new(PENDING_WINDOW), RingCache::default())),
        }
    }
}

impl Balancer {
    /// Picks the edge for a player of `stream` (`APP/STREAM`) in `zone`, and counts the player
    /// as pending on it (the caller sends it there, or serves it when it is this node).
    pub fn route(&self, view: &ClusterView, stream: &str, zone: Option<&str>) -> Choice {
        let mut state = lock(&self.state);
        let (pending, rings) = &mut *state;
        let now = std::time::Instant::now();
        let advertised = |id: &str| {
            view.edges()
                .iter()
                .find(|e| e.node_id == id)
                .map(|e| e.load.players)
        };
        pending.prune(now, advertised);
        let choice = choose(view.edges(), |id| pending.count(id), stream, zone, rings);
        if choice.reason != Reason::Full {
            pending.add(
                &choice.node_id,
                advertised(&choice.node_id).unwrap_or(0),
                now,
            );
        }
        choice
    }
}
