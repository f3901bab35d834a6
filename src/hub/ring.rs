//! A stream's ring of events: one sender (the stream), any number of receivers (players),
//! each at its own position. A receiver takes every event that waits for it under one lock
//! ([`Receiver::recv_many`]), so a player that writes every few hundred milliseconds pays one
//! lock per write rather than per frame; one that falls more than the ring's length behind is
//! told how much it missed and continues from the oldest event kept.
//!
//! The errors are tokio's broadcast errors, with the same meaning: `Lagged(n)` once after `n`
//! events were missed; `Closed` never happens (the stream outlives its receivers).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::Notify;

use super::lock;

pub(super) struct Ring<T> {
    events: Mutex<Events<T>>,
    /// Woken at every send: receivers waiting in [`Receiver::recv`].
    sent: Notify,
}

struct Events<T> {
    queue: VecDeque<T>,
    /// Position of `queue[0]` since the ring began.
    first: u64,
    capacity: usize,
}

impl<T> Events<T> {
    fn end(&self) -> u64 {
        self.first + self.queue.len() as u64
    }
}

impl<T: Clone> Ring<T> {
    pub(super) fn new(capacity: usize) -> Arc<Ring<T>> {
        let capacity = capacity.max(1);
        Arc::new(Ring {
            events: Mutex::new(Events {
                queue: VecDeque::with_capacity(capacity),
                first: 0,
                capacity,
            }),
            sent: Notify::new(),
        })
    }

    /// Appends `event`, dropping the oldest once the ring is full, and wakes the waiting.
    pub(super) fn send(&self, event: T) {
        {
            let mut events = lock(&self.events);
            if events.queue.len() == events.capacity {
                events.queue.pop_front();
                events.first += 1;
            }
            events.queue.push_back(event);
        }
        self.sent.notify_waiters();
    }

    /// A receiver of what is sent from now on.
    pub(super) fn subscribe(self: &Arc<Self>) -> Receiver<T> {
        let next = lock(&self.events).end();
        Receiver {
            ring: self.clone(),
            next,
        }
    }
}

pub struct Receiver<T> {
    ring: Arc<Ring<T>>,
    /// Position of the next event this receiver takes.
    next: u64,
}

impl<T: Clone> Receiver<T> {
    /// The next event if one waits, without waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        take(&self.ring, &mut self.next)
    }

    /// Appends up to `max` waiting events to `out` under one lock; true when more wait.
    /// After a lag it appends nothing and returns how many events were missed: the next
    /// call continues from the oldest event kept.
    pub fn recv_many(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool, u64> {
        let events = lock(&self.ring.events);
        if self.next < events.first {
            let missed = events.first - self.next;
            self.next = events.first;
            return Err(missed);
        }
        let start = (self.next - events.first) as usize;
        let end = events.queue.len().min(start.saturating_add(max));
        out.extend(events.queue.range(start..end).cloned());
        self.next += (end - start) as u64;
        Ok(end < events.queue.len())
    }

    /// The next event, waiting for it. Cancel-safe: dropping the future loses nothing.
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        let Receiver { ring, next } = self;
        loop {
            // Most calls find an event waiting (a player woken for one, or behind): take it
            // without registering for a wake-up.
            match take(ring, next) {
                Err(TryRecvError::Empty) => {}
                Ok(event) => return Ok(event),
                Err(TryRecvError::Lagged(n)) => return Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
            }
            // Registered before looking again, so that a send in between still wakes this.
            let sent = ring.sent.notified();
            let mut sent = std::pin::pin!(sent);
            sent.as_mut().enable();
            match take(ring, next) {
                Ok(event) => return Ok(event),
                Err(TryRecvError::Lagged(n)) => return Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
                Err(TryRecvError::Empty) => sent.await,
            }
        }
    }

    /// A receiver of the same ring at its live edge: what is sent from now on.
    pub fn resubscribe(&self) -> Receiver<T> {
        self.ring.subscribe()
    }
}

/// The event at `next` in `ring`, advancing `next`; or how many were missed.
fn take<T: Clone>(ring: &Ring<T>, next: &mut u64) -> Result<T, TryRecvError> {
    let events = lock(&ring.events);
    if *next < events.first {
        let missed = events.first - *next;
        *next = events.first;
        return Err(TryRecvError::Lagged(missed));
    }
    let index = (*next - events.first) as usize;
    match events.queue.get(index) {
        Some(event) => {
            *next += 1;
            Ok(event.clone())
        }
        None => Err(TryRecvError::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn receivers_take_events_in_order_from_where_they_joined() {
        let ring = Ring::new(8);
        ring.send(1);
        let mut a = ring.subscribe();
        ring.send(2);
        ring.send(3);
        let mut b = ring.subscribe();
        ring.send(4);
        assert_eq!(a.try_recv(), Ok(2));
        let mut got = Vec::new();
        assert_eq!(a.recv_many(&mut got, 100), Ok(false));
        assert_eq!(got, [3, 4]);
        assert_eq!(a.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(b.try_recv(), Ok(4));
        assert_eq!(b.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn recv_many_stops_at_max_and_says_more_wait() {
        let ring = Ring::new(8);
        let mut r = ring.subscribe();
        for i in 0..5 {
            ring.send(i);
        }
        let mut got = Vec::new();
        assert_eq!(r.recv_many(&mut got, 3), Ok(true));
        assert_eq!(r.recv_many(&mut got, 3), Ok(false));
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(r.recv_many(&mut got, 3), Ok(false));
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn a_receiver_left_behind_is_told_what_it_missed_once() {
        let ring = Ring::new(4);
        let mut r = ring.subscribe();
        let mut s = ring.subscribe();
        for i in 0..10 {
            ring.send(i);
        }
        // 0..6 were dropped to keep four.
        assert_eq!(r.try_recv(), Err(TryRecvError::Lagged(6)));
        assert_eq!(r.try_recv(), Ok(6));
        let mut got = Vec::new();
        assert_eq!(s.recv_many(&mut got, 100), Err(6));
        assert!(got.is_empty());
        assert_eq!(s.recv_many(&mut got, 100), Ok(false));
        assert_eq!(got, [6, 7, 8, 9]);
        // At the live edge after a resubscribe: only what comes next.
        let mut live = s.resubscribe();
        ring.send(10);
        assert_eq!(live.try_recv(), Ok(10));
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_the_next_send() {
        let ring = Ring::new(4);
        let mut r = ring.subscribe();
        let waiter = tokio::spawn(async move { (r.recv().await, r.recv().await) });
        // Whenever the waiter registers, before or after these sends, it sees both.
        tokio::task::yield_now().await;
        ring.send(1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        ring.send(2);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(got, (Ok(1), Ok(2)));
    }

    #[tokio::test]
    async fn dropping_a_waiting_recv_loses_nothing() {
        let ring = Ring::new(4);
        let mut r = ring.subscribe();
        // A recv cancelled while it waits (as `select!` does) takes nothing with it.
        let cancelled = tokio::time::timeout(Duration::from_millis(5), r.recv()).await;
        assert!(cancelled.is_err());
        ring.send(7);
        assert_eq!(r.recv().await, Ok(7));
    }
}
