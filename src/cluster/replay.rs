//! Replay protection for authenticated gossip datagrams: a time window and, per sender, the
//! sequence numbers already seen.
//!
//! Owns the decision "seen before or too old" for a datagram whose tag was already verified
//! (the sender id, sequence number and send time are inside the authenticated bytes, so they
//! cannot be forged, only replayed). Must never: grow without bound (senders and sequence
//! numbers per sender are capped), or be fed unverified datagrams (a forger could then evict
//! real senders).
//!
//! A sender is one transport instance: a random id chosen at start, so a restarted node is a
//! new sender. Each datagram carries the sender's next sequence number. A datagram is refused
//! when its send time is more than [`TIME_WINDOW`] away from our clock (a capture replayed
//! later, or a node whose clock is off by that much), when its sequence number was seen
//! already, or when it is more than [`SEQ_WINDOW`] behind the newest seen from that sender.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

/// Send times further than this from our clock are refused. Nodes' clocks must agree within
/// it (NTP keeps them within milliseconds).
pub const TIME_WINDOW: Duration = Duration::from_secs(60);
/// Sequence numbers kept per sender: reordering deeper than this is treated as a replay.
pub const SEQ_WINDOW: u64 = 1024;
/// Senders tracked at once; the least recently heard is forgotten first.
pub const MAX_SENDERS: usize = 4096;

/// Why a verified datagram is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("sent {skew_ms} ms away from our clock, outside the {window_s} s window")]
    Stale { skew_ms: i64, window_s: u64 },
    #[error("sequence number {0} already seen")]
    Replayed(u64),
    #[error("sequence number {seq} is {behind} behind the newest, outside the window")]
    TooOld { seq: u64, behind: u64 },
}

#[derive(Default)]
struct Sender {
    highest: u64,
    /// Sequence numbers seen in `(highest - SEQ_WINDOW, highest]`.
    seen: BTreeSet<u64>,
    /// When it was last heard, in `ReplayGuard::clock` ticks.
    heard: u64,
}

#[derive(Default)]
pub struct ReplayGuard {
    senders: HashMap<u64, Sender>,
    /// (sender, tick) each time a sender is heard, oldest first; an entry whose tick is not
    /// the sender's latest `heard` is stale and skipped.
    order: VecDeque<(u64, u64)>,
    clock: u64,
}

impl ReplayGuard {
    /// Accepts `seq` from `sender`, sent at `sent_ms` (ms since the Unix epoch) by the
    /// sender's clock, when our clock reads `now_ms`; records it as seen.
    pub fn check(
        &mut self,
        sender: u64,
        seq: u64,
        sent_ms: u64,
        now_ms: u64,
    ) -> Result<(), ReplayError> {
        let skew_ms = (sent_ms as i128 - now_ms as i128).clamp(i64::MIN as i128, i64::MAX as i128);
        if skew_ms.unsigned_abs() > TIME_WINDOW.as_millis() {
            return Err(ReplayError::Stale {
                skew_ms: skew_ms as i64,
                window_s: TIME_WINDOW.as_secs(),
            });
        }
        if !self.senders.contains_key(&sender) {
            self.make_room();
        }
        let entry = self.senders.entry(sender).or_default();
        if seq > entry.highest || entry.seen.is_empty() {
            entry.highest = entry.highest.max(seq);
            let floor = entry.highest.saturating_sub(SEQ_WINDOW - 1);
            // Drop what fell out of the window (cheap: the set is ordered).
            entry.seen = entry.seen.split_off(&floor);
            entry.seen.insert(seq);
        } else {
            let behind = entry.highest - seq;
            if behind >= SEQ_WINDOW {
                return Err(ReplayError::TooOld { seq, behind });
            }
            if !entry.seen.insert(seq) {
                return Err(ReplayError::Replayed(seq));
            }
        }
        self.clock += 1;
        entry.heard = self.clock;
        self.order.push_back((sender, self.clock));
        if self.order.len() > 4 * MAX_SENDERS {
            let senders = &self.senders;
            self.order
                .retain(|(id, tick)| senders.get(id).is_some_and(|s| s.heard == *tick));
        }
        Ok(())
    }

    /// Senders tracked now.
    #[cfg(test)]
    pub fn senders(&self) -> usize {
        self.senders.len()
    }

    /// Forgets the least recently heard senders until there is room for one more.
    fn make_room(&mut self) {
        while self.senders.len() >= MAX_SENDERS {
            let Some((oldest, tick)) = self.order.pop_front() else {
                // Out of step (cannot happen): start over rather than grow.
                self.senders.clear();
                return;
            };
            if self.senders.get(&oldest).is_some_and(|s| s.heard == tick) {
                self.senders.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_replayed_or_stale_datagram_is_refused() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(7, 1, NOW, NOW), Ok(()));
        assert_eq!(guard.check(7, 2, NOW, NOW), Ok(()));
        assert_eq!(guard.check(7, 1, NOW, NOW), Err(ReplayError::Replayed(1)));
        // Reordered but new: accepted once.
        assert_eq!(guard.check(7, 5, NOW, NOW), Ok(()));
        assert_eq!(guard.check(7, 4, NOW, NOW), Ok(()));
        assert_eq!(guard.check(7, 4, NOW, NOW), Err(ReplayError::Replayed(4)));
        // Another sender has its own numbers.
        assert_eq!(guard.check(8, 1, NOW, NOW), Ok(()));
        // Too far behind the newest.
        assert_eq!(guard.check(7, 5 + SEQ_WINDOW, NOW, NOW), Ok(()));
        assert_eq!(
            guard.check(7, 3, NOW, NOW),
            Err(ReplayError::TooOld {
                seq: 3,
                behind: 2 + SEQ_WINDOW
            })
        );
        // Outside the time window, either way.
        let window = TIME_WINDOW.as_millis() as u64;
        assert!(matches!(
            guard.check(9, 1, NOW - window - 1, NOW),
            Err(ReplayError::Stale { .. })
        ));
        assert!(matches!(
            guard.check(9, 1, NOW + window + 1, NOW),
            Err(ReplayError::Stale { .. })
        ));
        assert_eq!(guard.check(9, 1, NOW + window, NOW), Ok(()));
    }

    #[test]
    fn memory_is_bounded_per_sender_and_in_senders() {
        let mut guard = ReplayGuard::default();
        for seq in 0..10 * SEQ_WINDOW {
            assert_eq!(guard.check(1, seq, NOW, NOW), Ok(()));
        }
        assert!(guard.senders[&1].seen.len() <= SEQ_WINDOW as usize);
        for sender in 0..(3 * MAX_SENDERS as u64) {
            assert_eq!(guard.check(sender + 100, 1, NOW, NOW), Ok(()));
        }
        assert!(guard.senders() <= MAX_SENDERS);
        assert!(guard.order.len() <= 4 * MAX_SENDERS + 1);
        // The most recent senders are still known.
        let last = 3 * MAX_SENDERS as u64 + 99;
        assert_eq!(
            guard.check(last, 1, NOW, NOW),
            Err(ReplayError::Replayed(1))
        );
    }
}
