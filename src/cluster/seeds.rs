//! Seed discovery: re-resolves the seed names and greets addresses that are not members yet.
//!
//! Owns: the periodic DNS lookups of `seeds`. Must never: block gossip (it runs in its own task
//! and only sends chitchat a "gossip with X" command), or greet itself or a current member.
//!
//! chitchat 0.13 takes `seed_nodes: Vec<String>`, resolves host names once at start and then
//! every 60 s (a private constant, no way to trigger it), and gossips with a seed when it knows
//! few live nodes. A Kubernetes headless service lists only pods that exist (and, by default,
//! are ready), so the first pods often resolve to nothing, and waiting 60 s to see the others is
//! too slow. So `Cluster::start` resolves the seeds itself and hands chitchat addresses, and
//! this task re-resolves every `seed_refresh` (10 s by default) and asks chitchat to gossip once
//! with each resolved address that is not a live member: one SYN per unknown seed per refresh,
//! and chitchat takes it from there. Addresses of another IP family than our socket are skipped
//! (a `localhost` seed resolves to both `127.0.0.1` and `::1`). Kubernetes: use a headless
//! service with `publishNotReadyAddresses: true`, so that starting pods find each other.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::ChitchatHandle;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Resolves `seeds` (`host:port` or `ip:port`) to addresses of the same family as `local`.
pub(crate) async fn resolve(seeds: &[String], local: SocketAddr) -> BTreeSet<SocketAddr> {
    let mut resolved = BTreeSet::new();
    for seed in seeds {
        if let Ok(addr) = seed.parse::<SocketAddr>() {
            resolved.insert(addr);
            continue;
        }
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => resolved.extend(addrs),
            Err(err) => debug!(%seed, error = %err, "seed does not resolve (yet)"),
        }
    }
    resolved.retain(|addr| addr.is_ipv4() == local.is_ipv4());
    resolved
}

/// The resolved seeds worth a SYN: not ourselves, not a live member.
pub(crate) fn to_greet(
    resolved: &BTreeSet<SocketAddr>,
    members: &HashSet<SocketAddr>,
    local: SocketAddr,
) -> Vec<SocketAddr> {
    resolved
        .iter()
        .copied()
        .filter(|addr| *addr != local && !members.contains(addr))
        .collect()
}

/// Runs until `shutdown` flips or its sender is dropped.
pub(crate) async fn run(
    handle: Arc<ChitchatHandle>,
    seeds: Vec<String>,
    refresh: Duration,
    local: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    if seeds.is_empty() {
        return;
    }
    let mut interval = tokio::time::interval(refresh);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The seeds were resolved at start; our first look is one period later.
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let resolved = resolve(&seeds, local).await;
        let members: HashSet<SocketAddr> = {
            let chitchat = handle.chitchat();
            let chitchat = chitchat.lock().await;
            chitchat
                .live_nodes()
                .map(|id| id.gossip_advertise_addr)
                .collect()
        };
        for addr in to_greet(&resolved, &members, local) {
            if let Err(err) = handle.gossip(addr) {
                warn!(%addr, error = %err, "gossip loop gone; seed refresh stops");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        match s.parse() {
            Ok(addr) => addr,
            Err(err) => panic!("{s}: {err}"),
        }
    }

    #[tokio::test]
    async fn resolves_literals_and_names_and_keeps_the_local_family() {
        let local = addr("127.0.0.1:7000");
        let seeds = vec![
            "127.0.0.1:7001".to_string(),
            "localhost:7002".to_string(),
            "[::1]:7003".to_string(),
            "does-not-exist.invalid:7004".to_string(),
        ];
        let resolved = resolve(&seeds, local).await;
        assert!(resolved.contains(&addr("127.0.0.1:7001")));
        assert!(resolved.contains(&addr("127.0.0.1:7002")));
        assert!(resolved.iter().all(SocketAddr::is_ipv4));
    }

    #[test]
    fn greets_only_strangers() {
        let local = addr("10.0.0.1:7946");
        let resolved: BTreeSet<SocketAddr> = ["10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"]
            .into_iter()
            .map(addr)
            .collect();
        let members: HashSet<SocketAddr> = [addr("10.0.0.2:7946")].into_iter().collect();
        assert_eq!(
            to_greet(&resolved, &members, local),
            vec![addr("10.0.0.3:7946")]
        );
    }
}
