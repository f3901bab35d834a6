//! Players sent to an edge that its advert may not count yet: gossip load is seconds old, so
//! without this, a burst of players would all go to the edge that looked emptiest (herding).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Redirects per edge kept at most; a burst beyond it still counts as this many.
const MAX_PER_EDGE: usize = 100_000;

#[derive(Debug)]
pub struct Pending {
    window: Duration,
    sent: HashMap<String, VecDeque<Instant>>,
}

impl Pending {
    pub fn new(window: Duration) -> Pending {
        Pending {
            window,
            sent: HashMap::new(),
        }
    }

    /// One more player sent to `edge` at `now`.
    pub fn add(&mut self, edge: &str, now: Instant) {
        let sent = self.sent.entry(edge.to_string()).or_default();
        if sent.len() >= MAX_PER_EDGE {
            sent.pop_front();
        }
        sent.push_back(now);
    }

    /// Forgets what is older than the window before `now`.
    pub fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.sent.retain(|_, sent| {
            while sent
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > window)
            {
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
    fn redirects_count_for_the_window_then_expire() {
        let mut p = Pending::new(Duration::from_secs(3));
        let t0 = Instant::now();
        p.add("edge-0", t0);
        p.add("edge-0", t0 + Duration::from_secs(1));
        p.add("edge-1", t0);
        p.prune(t0 + Duration::from_secs(2));
        assert_eq!(p.count("edge-0"), 2);
        p.prune(t0 + Duration::from_millis(3500));
        assert_eq!(p.count("edge-0"), 1);
        assert_eq!(p.count("edge-1"), 0);
        assert_eq!(p.count("nobody"), 0);
        assert!(!p.sent.contains_key("edge-1"), "empty entries are dropped");
    }
}
