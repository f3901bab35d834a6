//! Players sent to an edge that its advert may not count yet: gossip load is seconds old, so
//! without this, a burst of players would all go to the edge that looked emptiest (herding).
//!
//! Each redirect remembers the player count the edge should advertise once the player shows
//! up there (its advert then, plus the redirects still pending, plus one). When the advert
//! reaches it, the redirect is counted by the advert and leaves this table; one that never
//! shows up (the player left, or went elsewhere) expires after the window.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Redirects per edge kept at most; a burst beyond it still counts as this many.
const MAX_PER_EDGE: usize = 100_000;

#[derive(Debug)]
pub struct Pending {
    window: Duration,
    /// Per edge: (when sent, the advertised player count that will include it).
    sent: HashMap<String, VecDeque<(Instant, u64)>>,
}

impl Pending {
    pub fn new(window: Duration) -> Pending {
        Pending {
            window,
            sent: HashMap::new(),
        }
    }

    /// One more player sent at `now` to `edge`, which advertises `advertised` players.
    pub fn add(&mut self, edge: &str, advertised: u64, now: Instant) {
        let sent = self.sent.entry(edge.to_string()).or_default();
        if sent.len() >= MAX_PER_EDGE {
            sent.pop_front();
        }
        let expected = advertised + sent.len() as u64 + 1;
        sent.push_back((now, expected));
    }

    /// Forgets redirects older than the window before `now`, and those `advertised(edge)`
    /// (the edge's advertised players now) already counts.
    pub fn prune(&mut self, now: Instant, advertised: impl Fn(&str) -> Option<u64>) {
        let window = self.window;
        self.sent.retain(|edge, sent| {
            let shown = advertised(edge).unwrap_or(0);
            while sent.front().is_some_and(|(t, expected)| {
                now.saturating_duration_since(*t) > window || shown >= *expected
            }) {
                sent.pop_front();
            }
            !sent.is_empty()
        });
    }

    /// Players sent to `edge` and not pruned yet.
    pub fn count(&self, edge: &str) -> u64 {
        self.sent.get(edge).map_or(0, |sent| sent.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_count_until_the_advert_shows_them_or_the_window_ends() {
        let mut p = Pending::new(Duration::from_secs(3));
        let t0 = Instant::now();
        let none = |_: &str| Some(10);
        p.add("edge-0", 10, t0);
        p.add("edge-0", 10, t0 + Duration::from_secs(1));
        p.add("edge-1", 0, t0);
        p.prune(t0 + Duration::from_secs(2), none);
        assert_eq!(p.count("edge-0"), 2);
        // The advert of edge-0 now counts one of them (11 players): one is left.
        p.prune(t0 + Duration::from_secs(2), |e| {
            Some(if e == "edge-0" { 11 } else { 0 })
        });
        assert_eq!(p.count("edge-0"), 1);
        // Past the window, whatever the advert says.
        p.prune(t0 + Duration::from_millis(4500), none);
        assert_eq!(p.count("edge-0"), 0);
        assert_eq!(p.count("edge-1"), 0);
        assert_eq!(p.count("nobody"), 0);
        assert!(p.sent.is_empty(), "empty entries are dropped");
    }
}
