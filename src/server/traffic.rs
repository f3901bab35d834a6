//! Bytes moved by RTMP sessions and HTTP-FLV players, node-wide: for `/metrics` and the
//! egress rate a node advertises to the cluster.
//!
//! Owns three monotonic counters. Must never be more than one relaxed atomic add per socket
//! read or write on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Traffic {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    flv_bytes_out: AtomicU64,
}

impl Traffic {
    pub(crate) fn read(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn wrote(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn wrote_flv(&self, n: u64) {
        self.flv_bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes written to HTTP-FLV players since start (heads, FLV tags, chunk framing).
    pub fn flv_bytes_out(&self) -> u64 {
        self.flv_bytes_out.load(Ordering::Relaxed)
    }

    /// Everything written to clients, RTMP and HTTP-FLV: the node's egress.
    pub fn egress_bytes(&self) -> u64 {
        self.bytes_out() + self.flv_bytes_out()
    }

    /// Bytes read from RTMP clients since start (after the handshake).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Bytes written to RTMP clients since start (media, control and commands).
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }
}

/// Turns samples of a byte counter into a bit rate over a sliding window of whole samples,
/// rounded to two significant digits so that an advertised rate only changes when the
/// traffic really does (every change is gossiped to every node).
#[derive(Debug)]
pub struct RateMeter {
    window: usize,
    /// (elapsed since the first sample, counter value), oldest first, at most `window + 1`.
    samples: std::collections::VecDeque<(Duration, u64)>,
}

impl RateMeter {
    /// A meter averaging over the last `window` intervals between samples.
    pub fn new(window: usize) -> RateMeter {
        RateMeter {
            window: window.max(1),
            samples: std::collections::VecDeque::new(),
        }
    }

    /// Records the counter's value at `at`; returns the rate in bits per second over the
    /// window so far (0 until two samples exist).
    pub fn sample(&mut self, at: Duration, counter: u64) -> u64 {
        self.samples.push_back((at, counter));
        while self.samples.len() > self.window + 1 {
            self.samples.pop_front();
        }
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return 0;
        };
        let secs = last.0.saturating_sub(first.0).as_secs_f64();
        if secs <= 0.0 {
            return 0;
        }
        let bits = last.1.saturating_sub(first.1) as f64 * 8.0;
        two_significant_digits((bits / secs) as u64)
    }
}

/// 1_234_567 -> 1_200_000; values under 100 are kept.
fn two_significant_digits(value: u64) -> u64 {
    let mut scale = 1u64;
    while value / scale >= 100 {
        scale *= 10;
    }
    value / scale * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up() {
        let t = Traffic::default();
        t.read(10);
        t.wrote(5);
        t.wrote(7);
        assert_eq!((t.bytes_in(), t.bytes_out()), (10, 12));
    }

    #[test]
    fn rate_is_averaged_over_the_window_and_rounded() {
        let mut m = RateMeter::new(2);
        let s = Duration::from_secs;
        assert_eq!(m.sample(s(0), 0), 0);
        // 125,000 bytes per second = 1 Mb/s.
        assert_eq!(m.sample(s(1), 125_000), 1_000_000);
        assert_eq!(m.sample(s(2), 250_000), 1_000_000);
        // The window holds the last 2 intervals: (250k..) at 0 b/s and the burst.
        assert_eq!(m.sample(s(3), 250_000), 1_000_000 / 2);
        assert_eq!(m.sample(s(4), 250_000), 0);
        // 154,321 bytes over the 2 s window = 617,284 b/s, rounded to two significant digits.
        assert_eq!(m.sample(s(5), 250_000 + 154_321), 610_000);
        assert_eq!(two_significant_digits(99), 99);
        assert_eq!(two_significant_digits(12_345), 12_000);
        assert_eq!(two_significant_digits(u64::MAX), 18_000_000_000_000_000_000);
    }
}
