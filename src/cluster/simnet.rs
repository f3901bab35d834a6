//! In-memory datagram network for scenario tests and benchmarks.
//!
//! Owns: the table of simulated endpoints, which links are cut, and byte/datagram counters.
//! Must never: reorder or duplicate datagrams, block a sender (a full receiver queue drops, like
//! a full UDP buffer), or be used outside tests and benchmarks.
//!
//! Why not chitchat's `ChannelTransport`: it moves decoded envelopes, so no byte ever exists to
//! authenticate. [`SimNetwork`] moves the same framed, tagged bytes the UDP wire carries, so
//! scenario tests exercise the whole transport (tag check, fragments, counters) and only the
//! network is simulated. Delivery is immediate; partitions and isolation drop datagrams.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

/// Datagrams queued per endpoint before new ones are dropped.
const QUEUE_DATAGRAMS: usize = 1024;

type Datagram = (SocketAddr, Vec<u8>);

/// A simulated network; clones share it.
#[derive(Clone, Default)]
pub struct SimNetwork {
    inner: Arc<Mutex<SimInner>>,
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNetwork").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct SimInner {
    endpoints: HashMap<SocketAddr, mpsc::Sender<Datagram>>,
    /// Cut links, stored with the smaller address first.
    cut: HashSet<(SocketAddr, SocketAddr)>,
    isolated: BTreeSet<SocketAddr>,
    stats: SimStats,
    sent_by: HashMap<SocketAddr, u64>,
    /// Copies of datagrams delivered to these endpoints (at most `.1` each): what an
    /// eavesdropper captures, to be replayed with `inject`.
    recording: HashMap<SocketAddr, (Vec<Datagram>, usize)>,
}

/// Totals since the network was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// Dropped by a cut link, isolation, a missing endpoint or a full queue.
    pub datagrams_dropped: u64,
}

fn ordered(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl SimNetwork {
    pub fn new() -> SimNetwork {
        SimNetwork::default()
    }

    fn lock(&self) -> MutexGuard<'_, SimInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Cuts the link between `a` and `b` in both directions.
    pub fn cut(&self, a: SocketAddr, b: SocketAddr) {
        self.lock().cut.insert(ordered(a, b));
    }

    /// Cuts every link between the two sides.
    pub fn partition(&self, side_a: &[SocketAddr], side_b: &[SocketAddr]) {
        let mut inner = self.lock();
        for a in side_a {
            for b in side_b {
                inner.cut.insert(ordered(*a, *b));
            }
        }
    }

    /// Drops everything `addr` sends or should receive until [`SimNetwork::heal_all`].
    pub fn isolate(&self, addr: SocketAddr) {
        self.lock().isolated.insert(addr);
    }

    /// Restores every cut link and isolated endpoint.
    pub fn heal_all(&self) {
        let mut inner = self.lock();
        inner.cut.clear();
        inner.isolated.clear();
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    /// Bytes sent by the endpoint bound to `addr` (framing included).
    pub fn bytes_sent_by(&self, addr: SocketAddr) -> u64 {
        self.lock().sent_by.get(&addr).copied().unwrap_or(0)
    }

    /// Delivers raw bytes as if `from` had sent them (forged or foreign traffic in tests).
    pub fn inject(&self, from: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        self.deliver(from, to, datagram);
    }

    /// Keeps copies of the next `max` datagrams delivered to `to`.
    pub fn record(&self, to: SocketAddr, max: usize) {
        self.lock().recording.insert(to, (Vec::new(), max));
    }

    /// The datagrams recorded for `to` so far: (sender, bytes).
    pub fn recorded(&self, to: SocketAddr) -> Vec<(SocketAddr, Vec<u8>)> {
        self.lock()
            .recording
            .get(&to)
            .map(|(kept, _)| kept.clone())
            .unwrap_or_default()
    }

    pub(crate) fn bind(&self, mut addr: SocketAddr) -> io::Result<SimEndpoint> {
        let mut inner = self.lock();
        if addr.port() == 0 {
            let free = (1..=u16::MAX).find(|port| {
                !inner
                    .endpoints
                    .contains_key(&SocketAddr::new(addr.ip(), *port))
            });
            match free {
                Some(port) => addr.set_port(port),
                None => return Err(io::ErrorKind::AddrInUse.into()),
            }
        }
        if inner.endpoints.contains_key(&addr) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        let (tx, rx) = mpsc::channel(QUEUE_DATAGRAMS);
        inner.endpoints.insert(addr, tx);
        Ok(SimEndpoint {
            addr,
            network: self.clone(),
            rx,
        })
    }

    fn deliver(&self, from: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        let mut inner = self.lock();
        inner.stats.datagrams_sent += 1;
        inner.stats.bytes_sent += datagram.len() as u64;
        *inner.sent_by.entry(from).or_default() += datagram.len() as u64;
        let blocked = inner.cut.contains(&ordered(from, to))
            || inner.isolated.contains(&from)
            || inner.isolated.contains(&to);
        let delivered = !blocked
            && inner
                .endpoints
                .get(&to)
                .is_some_and(|tx| tx.try_send((from, datagram.to_vec())).is_ok());
        if !delivered {
            inner.stats.datagrams_dropped += 1;
        } else if let Some((kept, max)) = inner.recording.get_mut(&to) {
            if kept.len() < *max {
                kept.push((from, datagram.to_vec()));
            }
        }
    }
}

/// One bound address on a [`SimNetwork`]; unbinds on drop.
pub(crate) struct SimEndpoint {
    addr: SocketAddr,
    network: SimNetwork,
    rx: mpsc::Receiver<Datagram>,
}

impl SimEndpoint {
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn send_to(&self, datagram: &[u8], to: SocketAddr) {
        self.network.deliver(self.addr, to, datagram);
    }

    /// Cancel safe (`mpsc::Receiver::recv` is). Truncates like UDP if `buf` is too small.
    pub(crate) async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self.rx.recv().await {
            Some((from, datagram)) => {
                let len = datagram.len().min(buf.len());
                buf[..len].copy_from_slice(&datagram[..len]);
                Ok((len, from))
            }
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }
}

impl Drop for SimEndpoint {
    fn drop(&mut self) {
        self.network.lock().endpoints.remove(&self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 7946))
    }

    #[tokio::test]
    async fn delivers_counts_and_cuts() -> anyhow::Result<()> {
        let net = SimNetwork::new();
        let a = net.bind(addr(1))?;
        let mut b = net.bind(addr(2))?;
        let mut buf = [0u8; 16];
        a.send_to(b"hi", addr(2));
        assert_eq!(b.recv_from(&mut buf).await?, (2, addr(1)));
        net.cut(addr(2), addr(1));
        a.send_to(b"lost", addr(2));
        net.heal_all();
        a.send_to(b"back", addr(2));
        assert_eq!(b.recv_from(&mut buf).await?, (4, addr(1)));
        assert_eq!(&buf[..4], b"back");
        assert_eq!(
            net.stats(),
            SimStats {
                datagrams_sent: 3,
                bytes_sent: 10,
                datagrams_dropped: 1
            }
        );
        assert_eq!(net.bytes_sent_by(addr(1)), 10);
        Ok(())
    }

    #[tokio::test]
    async fn binding_twice_fails_and_drop_unbinds() -> anyhow::Result<()> {
        let net = SimNetwork::new();
        let first = net.bind(addr(1))?;
        assert!(net.bind(addr(1)).is_err());
        drop(first);
        let again = net.bind(addr(1))?;
        assert_eq!(again.local_addr(), addr(1));
        let any = net.bind(SocketAddr::from(([10, 0, 0, 1], 0)))?;
        assert_ne!(any.local_addr().port(), 0);
        Ok(())
    }
}
