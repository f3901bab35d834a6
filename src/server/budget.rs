//! The latency budget, `rtmp.merge_write_ms`: the longest a frame may wait inside a node so
//! that it shares a syscall with the frames after it. A write or a read costs about the same
//! kernel time whatever its size, so batching is what makes small audiences and many small
//! streams cheap; the budget says how much delay an operator pays for it, at every audience
//! size.
//!
//! The budget is split once per node: a publisher's reads wait up to [`ingest_wait`] (a third
//! of the budget, at most 100 ms) so that several messages arrive in one read, and a player's writes
//! wait up to [`write_window`] for the rest. A frame therefore waits at most the budget from the publisher's socket to a
//! player's, never longer (a full batch, a command answer or a status is written sooner).
//! Relays to other nodes get no write window: their players' own window covers them, so an
//! edge hop adds no merge delay.

use std::time::Duration;

/// The timer's resolution: a wait below it would only cost a wake-up.
const TICK: Duration = Duration::from_millis(1);
/// The share of the budget ingest may use, and its ceiling. Each read of a publisher costs a
/// wake-up, the read and the window update the kernel sends back; for a stream with few
/// players that is as much as its writes (measured: 300 streams of one player each, budget
/// 100 ms: a 25 ms ingest wait saved 5 % of CPU, 50 ms saved 15 %), while a large audience
/// gains from a longer write window instead. A third is between the two; beyond 10 reads a
/// second there is little left to gain.
const INGEST_SHARE: u32 = 3;
const INGEST_MAX: Duration = Duration::from_millis(100);

/// How long a publisher's next read may wait after a read that emptied the socket.
pub(crate) fn ingest_wait(budget: Duration) -> Duration {
    let wait = (budget / INGEST_SHARE).min(INGEST_MAX);
    if wait < TICK {
        Duration::ZERO
    } else {
        wait
    }
}

/// How long a player's queued video may wait to share a write: what ingest left of the
/// budget; nothing for a relay (another node pulling the stream).
pub(crate) fn write_window(budget: Duration, relay: bool) -> Duration {
    if relay {
        return Duration::ZERO;
    }
    let window = budget.saturating_sub(ingest_wait(budget));
    if window < TICK {
        Duration::ZERO
    } else {
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ingest_and_writes_share_the_budget_and_never_exceed_it() {
        for ms in [0u64, 1, 2, 3, 4, 10, 20, 50, 100, 200, 350, 1000] {
            let budget = Duration::from_millis(ms);
            let total = ingest_wait(budget) + write_window(budget, false);
            assert!(total <= budget, "{ms} ms: {total:?}");
        }
        assert_eq!(ingest_wait(90 * MS), 30 * MS);
        assert_eq!(write_window(90 * MS, false), 60 * MS);
        assert_eq!(ingest_wait(350 * MS), 100 * MS);
        assert_eq!(write_window(350 * MS, false), 250 * MS);
    }

    #[test]
    fn a_zero_budget_writes_and_reads_at_once() {
        assert_eq!(ingest_wait(Duration::ZERO), Duration::ZERO);
        assert_eq!(write_window(Duration::ZERO, false), Duration::ZERO);
        // Below the timer's tick a wait is not worth its wake-up.
        assert_eq!(ingest_wait(MS), Duration::ZERO);
        assert_eq!(write_window(MS, false), MS);
    }

    #[test]
    fn relays_get_no_write_window() {
        assert_eq!(write_window(350 * MS, true), Duration::ZERO);
    }
}
