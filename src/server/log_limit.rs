//! Budgets for log lines a peer can cause: per connection (the first few notices, then a
//! count) and node-wide (lines about connections that never got past `connect`, refusals at
//! accept), so that no client, and no flood of clients, decides how fast the log grows.
//!
//! Owns the counting only; callers decide what a line says. Must never: block, or drop the
//! count of what it suppressed (the next line that passes, or the connection's close line,
//! reports it).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::hub::lock;

/// Notices one connection logs before the rest are only counted.
pub const NOTICES_PER_CONNECTION: u32 = 5;

/// Per-connection budget of notice lines (refused plays, unknown commands, ...).
#[derive(Debug, Default)]
pub struct Notices {
    logged: u32,
    suppressed: u32,
}

impl Notices {
    /// Whether the next notice may be logged; counts it as suppressed otherwise.
    pub fn allow(&mut self) -> bool {
        if self.logged < NOTICES_PER_CONNECTION {
            self.logged += 1;
            true
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            false
        }
    }

    /// Notices not logged so far (reported in the connection's close line).
    pub fn suppressed(&self) -> u32 {
        self.suppressed
    }
}

/// A node-wide allowance of `per_window` lines per `window`.
pub struct RateLimitedLog {
    per_window: u32,
    window: Duration,
    state: Mutex<Window>,
    /// Every line suppressed since start (for a metric).
    total_suppressed: std::sync::atomic::AtomicU64,
}

struct Window {
    start: Instant,
    count: u32,
    suppressed: u64,
}

impl RateLimitedLog {
    pub fn new(per_window: u32, window: Duration) -> RateLimitedLog {
        RateLimitedLog {
            per_window,
            window,
            state: Mutex::new(Window {
                start: Instant::now(),
                count: 0,
                suppressed: 0,
            }),
            total_suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Lines suppressed since start.
    pub fn total_suppressed(&self) -> u64 {
        self.total_suppressed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were suppressed since the
    /// last one that was; `None` when this one must be suppressed.
    pub fn allow(&self) -> Option<u64> {
        let mut w = lock(&self.state);
        let now = Instant::now();
        if now.duration_since(w.start) >= self.window {
            w.start = now;
            w.count = 0;
        }
        if w.count < self.per_window {
            w.count += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            self.total_suppressed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_logs_a_few_notices_then_counts() {
        let mut n = Notices::default();
        let allowed = (0..100).filter(|_| n.allow()).count();
        assert_eq!(allowed, NOTICES_PER_CONNECTION as usize);
        assert_eq!(n.suppressed(), 100 - NOTICES_PER_CONNECTION);
    }

    #[test]
    fn the_node_wide_budget_refills_per_window_and_reports_what_it_dropped() {
        let log = RateLimitedLog::new(3, Duration::from_millis(50));
        assert_eq!(log.allow(), Some(0));
        assert_eq!(log.allow(), Some(0));
        assert_eq!(log.allow(), Some(0));
        assert_eq!(log.allow(), None);
        assert_eq!(log.allow(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            log.allow(),
            Some(2),
            "the two suppressed lines are reported"
        );
        assert_eq!(log.allow(), Some(0));
    }
}
