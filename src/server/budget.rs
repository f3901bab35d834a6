//! The latency budget, `rtmp.merge_write_ms`: the longest a frame may wait inside a node so
//! that it shares a syscall with the frames after it. A write or a read costs about the same
//! kernel time whatever its size, so batching is what makes small audiences and many small
//! streams cheap; the budget says how much delay an operator pays for it, at every audience
//! size.
//!
//! The budget is split per stream: a publisher's reads wait up to [`ingest_wait_for`] so that
//! several messages arrive in one read, and its players' writes wait for the rest. Each frame
//! carries the instant its bytes may first have waited in the publisher's socket (the end of
//! the last read that emptied it, `Frame::held_since`), and a player writes it by that instant
//! plus the budget ([`WriteDue`]). A frame therefore waits at most the budget from the
//! publisher's socket to a player's, never longer (a full batch, a command answer or a status
//! is written sooner). Frames without that instant (pulled from another node) may wait
//! [`write_window`], what the longest ingest wait leaves of the budget. Relays to other nodes
//! get no write window: their players' own window covers them, so an edge hop adds no merge
//! delay.

use std::time::Duration;

use tokio::time::Instant;

use crate::media::Frame;

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

/// How long the next read of a publisher with `players` players may wait after a read that
/// emptied its socket: the budget divided by ½ + √players / 4, never more than
/// [`ingest_wait`] (so up to about 100 players it is that, 17 ms at 2,000 players and a
/// 200 ms budget). A read is shared by every player of the stream and a write is not, so a
/// large audience gets more of the budget for its writes; but each read costs the node a
/// wake-up of its own, while the writes of a stream's players at a deadline share one (their
/// quiet spells end together, see [`quiet_until`]), so reads are worth more of the budget
/// than one read for one write. Measured with `benches/paired.sh` (120 rtmpdump players,
/// 350 ms): 27 → 54 ms of ingest wait cut CPU by 13 %, 54 → 100 ms by 3 % more; 2,000
/// load-tool players at 200 ms: 4 → 17 ms, 4 % less CPU.
pub(crate) fn ingest_wait_for(budget: Duration, players: usize) -> Duration {
    let divisor = 0.5 + (players.max(1) as f64).sqrt() / 4.0;
    let wait = budget.div_f64(divisor).min(ingest_wait(budget));
    if wait < TICK {
        Duration::ZERO
    } else {
        wait
    }
}

/// When a player's queued media must be written: the earliest deadline of its queued frames.
#[derive(Debug, Default)]
pub(crate) struct WriteDue(Option<Instant>);

impl WriteDue {
    /// Notes a frame queued for a player whose writes may wait `window` (zero: write at once).
    /// A frame from a local publisher is due `budget` after its bytes may first have waited
    /// in the publisher's socket; one without that instant, `window` from now. A frame queued
    /// after another is never due earlier, except across a change of publisher.
    pub(crate) fn frame(&mut self, frame: &Frame, budget: Duration, window: Duration) {
        let due = match (self.0, frame.held_since) {
            (Some(due), _) if window.is_zero() => due,
            (None, _) if window.is_zero() => Instant::now(),
            (Some(due), Some(since)) => due.min(Instant::from_std(since) + budget),
            // Frames without the instant come from a relay, whose first frame set the due.
            (Some(due), None) => due,
            (None, Some(since)) => Instant::from_std(since) + budget,
            (None, None) => Instant::now() + window,
        };
        self.0 = Some(due);
    }

    pub(crate) fn get(&self) -> Option<Instant> {
        self.0
    }

    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

/// Until when a player that drained its stream need not watch it: no frame still to come
/// is due before `floor` (`Player::next_held_since`, read before the drain) plus the
/// budget, so it sleeps until then and takes them all at once instead of waking for each.
/// None for a player that writes at once (`window` zero), when the floor is unknown, or
/// when it is too near to be worth a timer.
pub(crate) fn quiet_until(
    floor: Option<std::time::Instant>,
    budget: Duration,
    window: Duration,
) -> Option<Instant> {
    if window.is_zero() {
        return None;
    }
    let at = Instant::from_std(floor?) + budget;
    (at > Instant::now() + TICK).then_some(at)
}

/// Longest audio and data wait for a video frame to share a write with. Half the writes of
/// a typical stream are audio; sending it with video saves those syscalls and costs audio at
/// most one video frame interval.
pub(crate) const AUDIO_HOLD: Duration = Duration::from_millis(40);

/// When a player's queued media must be written, once nothing urgent and no full batch is
/// queued: when its frames are due ([`WriteDue`]); but audio and data queued without video
/// (`video` false) wait at least [`AUDIO_HOLD`] from `first_queued` for a video frame to
/// ride with. RTMP and HTTP-FLV players alike.
pub(crate) fn media_flush_at(
    due: Option<Instant>,
    first_queued: Option<Instant>,
    video: bool,
) -> Instant {
    let now = Instant::now();
    let due = due.unwrap_or(now);
    if video {
        due
    } else {
        due.max(first_queued.unwrap_or(now) + AUDIO_HOLD)
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
    fn larger_audiences_leave_more_of_the_budget_to_writes() {
        // Below the 100 ms ceiling, so that every step shows.
        let budget = 240 * MS;
        assert_eq!(ingest_wait_for(budget, 0), ingest_wait(budget));
        assert_eq!(ingest_wait_for(budget, 1), ingest_wait(budget));
        assert_eq!(ingest_wait_for(budget, 100), ingest_wait(budget));
        let mut last = ingest_wait(budget);
        for players in [120, 500, 2000, 5000, 100_000] {
            let wait = ingest_wait_for(budget, players);
            assert!(wait < last, "{players}: {wait:?}");
            last = wait;
        }
        assert_eq!(ingest_wait_for(350 * MS, 120), 100 * MS);
        assert_eq!(ingest_wait_for(200 * MS, 2000).as_millis(), 17);
        // Below the tick, no wait at all.
        assert_eq!(ingest_wait_for(10 * MS, 100_000), Duration::ZERO);
        assert_eq!(
            ingest_wait_for(200 * MS, 1),
            66 * MS + Duration::from_nanos(666_666)
        );
    }

    fn frame(held_since: Option<std::time::Instant>) -> Frame {
        let mut f = Frame::new(
            crate::media::FrameKind::Audio,
            0,
            bytes::Bytes::from_static(&[0xAF, 1]),
            4096,
        );
        f.held_since = held_since;
        f
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_is_due_a_budget_after_its_bytes_arrived() {
        let budget = 350 * MS;
        let window = write_window(budget, false);
        let since = std::time::Instant::now();
        let start = Instant::from_std(since);
        let mut due = WriteDue::default();
        assert_eq!(due.get(), None);
        due.frame(&frame(Some(since)), budget, window);
        assert_eq!(due.get(), Some(start + budget));
        // A later frame of the same publisher does not move the deadline.
        due.frame(&frame(Some(since + 100 * MS)), budget, window);
        assert_eq!(due.get(), Some(start + budget));
        // An earlier one (a new publisher's) does.
        due.frame(&frame(Some(since - 10 * MS)), budget, window);
        assert_eq!(due.get(), Some(start + budget - 10 * MS));
        due.clear();
        // A relayed frame: the window from now.
        let now = Instant::now();
        due.frame(&frame(None), budget, window);
        assert_eq!(due.get(), Some(now + window));
        // A relay player writes at once, whatever the frame says.
        let mut relay = WriteDue::default();
        relay.frame(&frame(Some(since)), budget, Duration::ZERO);
        assert_eq!(relay.get(), Some(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_drained_player_sleeps_until_the_next_frame_can_be_due() {
        let budget = 350 * MS;
        let window = write_window(budget, false);
        let floor = std::time::Instant::now();
        assert_eq!(
            quiet_until(Some(floor), budget, window),
            Some(Instant::from_std(floor) + budget)
        );
        // Unknown floor, or a player that writes at once: it watches the stream.
        assert_eq!(quiet_until(None, budget, window), None);
        assert_eq!(quiet_until(Some(floor), budget, Duration::ZERO), None);
        // Due within a tick, or already: not worth a timer.
        tokio::time::advance(budget - TICK / 2).await;
        assert_eq!(quiet_until(Some(floor), budget, window), None);
    }

    #[test]
    fn relays_get_no_write_window() {
        assert_eq!(write_window(350 * MS, true), Duration::ZERO);
    }
}
