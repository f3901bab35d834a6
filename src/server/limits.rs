//! What one client may ask of the node: the lengths of the names it sends, how fast it may ask
//! for streams, how many connections one address may hold.
//!
//! Owns those limits and their bookkeeping. Must never: allocate in proportion to what a
//! client claims, or let one address's connections be counted after they closed (each count
//! is held by a guard that gives it back on drop).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::valid_stream_name;
use crate::hub::lock;

/// Longest `app` in connect, without its query.
pub const MAX_APP: usize = 128;
/// Longest stream name in play or publish, without its query.
pub const MAX_STREAM_NAME: usize = 128;
/// Longest query string (tokens) on the app, the tcUrl or the stream name: room for an RS256
/// JWT (600 to 900 bytes) with other arguments.
pub const MAX_QUERY: usize = 2048;
/// Longest tcUrl.
pub const MAX_TC_URL: usize = 2048;
/// flashVer, swfUrl and pageUrl are kept (for access decisions) cut to this.
pub const MAX_INFO_FIELD: usize = 1024;

/// play, publish and createStream calls a connection may make in a burst...
pub const STREAM_CALL_BURST: u32 = 16;
/// ...and how often it earns one more.
pub const STREAM_CALL_REFILL: Duration = Duration::from_millis(500);

/// Why a name from a client is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("no {0} given")]
    Empty(&'static str),
    #[error("{what} is {len} bytes, the limit is {limit}")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{0} contains control characters")]
    Control(&'static str),
}

fn check(what: &'static str, s: &str, limit: usize) -> Result<(), NameError> {
    if s.len() > limit {
        return Err(NameError::TooLong {
            what,
            len: s.len(),
            limit,
        });
    }
    if s.chars().any(char::is_control) {
        return Err(NameError::Control(what));
    }
    Ok(())
}

/// Checks `app` (without query), the tcUrl and the connect query.
pub fn check_connect(app: &str, tc_url: &str, query: &str) -> Result<(), NameError> {
    if app.is_empty() {
        return Err(NameError::Empty("app"));
    }
    check("app", app, MAX_APP)?;
    check("tcUrl", tc_url, MAX_TC_URL)?;
    check("query", query, MAX_QUERY)
}

/// Checks a play or publish name (`name?query`) and the stream key it makes.
pub fn check_stream(name: &str, key: &str) -> Result<(), NameError> {
    let (bare, query) = name.split_once('?').unwrap_or((name, ""));
    if bare.trim_matches('/').is_empty() {
        return Err(NameError::Empty("stream name"));
    }
    check("stream name", bare, MAX_STREAM_NAME)?;
    check("query", query, MAX_QUERY)?;
    if !valid_stream_name(key) {
        return Err(NameError::TooLong {
            what: "stream key",
            len: key.len(),
            limit: crate::cluster::MAX_STREAM_NAME,
        });
    }
    Ok(())
}

/// `s` cut to at most `limit` bytes, on a character boundary.
pub fn cut(s: &str, limit: usize) -> String {
    let mut end = s.len().min(limit);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A token bucket for one connection's play / publish / createStream calls.
#[derive(Debug)]
pub struct CallBucket {
    tokens: u32,
    refilled: Instant,
}

impl Default for CallBucket {
    fn default() -> Self {
        CallBucket {
            tokens: STREAM_CALL_BURST,
            refilled: Instant::now(),
        }
    }
}

impl CallBucket {
    /// Takes one call; false when the connection is calling faster than allowed.
    pub fn take(&mut self) -> bool {
        let earned = self.refilled.elapsed().as_millis() / STREAM_CALL_REFILL.as_millis();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(STREAM_CALL_BURST);
            self.refilled = Instant::now();
        }
        match self.tokens.checked_sub(1) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }
}

/// Open connections per client address (0 = unlimited).
pub struct PerIp {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerIp`]; given back on drop.
pub struct IpSlot {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub fn new(max: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` when it already holds the maximum.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut counts = lock(&self.counts);
        let count = counts.entry(ip).or_insert(0);
        if self.max > 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            owner: self.clone(),
            ip,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open from `ip` now.
    pub fn count(&self, ip: IpAddr) -> usize {
        lock(&self.counts).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.owner.counts);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_within_limits_pass_and_others_say_why() {
        assert_eq!(check_connect("live", "rtmp://h/live", "token=1"), Ok(()));
        assert_eq!(check_connect("", "", ""), Err(NameError::Empty("app")));
        let long = "a".repeat(MAX_APP + 1);
        assert_eq!(
            check_connect(&long, "", "").map_err(|e| e.to_string()),
            Err(format!(
                "app is {} bytes, the limit is {MAX_APP}",
                MAX_APP + 1
            ))
        );
        assert!(check_connect("live", &"t".repeat(MAX_TC_URL + 1), "").is_err());
        assert!(check_connect("live", "", &"q".repeat(MAX_QUERY + 1)).is_err());
        assert_eq!(
            check_connect("li\nve", "", ""),
            Err(NameError::Control("app"))
        );

        assert_eq!(check_stream("cam1?token=x", "live/cam1"), Ok(()));
        assert_eq!(
            check_stream("?x", "live/"),
            Err(NameError::Empty("stream name"))
        );
        let name = "n".repeat(MAX_STREAM_NAME + 1);
        assert!(check_stream(&name, "live/x").is_err());
        let query = format!("cam?{}", "q".repeat(MAX_QUERY + 1));
        assert!(check_stream(&query, "live/cam").is_err());
        // A key past the cluster's advertisable length is refused too.
        let key = format!("{}/{}", "a".repeat(100), "b".repeat(120));
        assert!(check_stream(&"b".repeat(120), &key).is_err());
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[tokio::test(start_paused = true)]
    async fn the_call_bucket_allows_a_burst_then_refills() {
        let mut bucket = CallBucket::default();
        let burst = (0..100).filter(|_| bucket.take()).count();
        assert_eq!(burst, STREAM_CALL_BURST as usize);
        tokio::time::advance(STREAM_CALL_REFILL * 2).await;
        assert!(bucket.take());
        assert!(bucket.take());
        assert!(!bucket.take());
    }

    #[test]
    fn per_ip_slots_are_counted_and_given_back() {
        let per_ip = PerIp::new(2);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let a = per_ip.acquire(ip);
        let b = per_ip.acquire(ip);
        assert!(a.is_some() && b.is_some());
        assert!(per_ip.acquire(ip).is_none());
        assert!(
            per_ip.acquire(other).is_some(),
            "each address has its own count"
        );
        drop(a);
        assert_eq!(per_ip.count(ip), 1);
        assert!(per_ip.acquire(ip).is_some());
        let unlimited = PerIp::new(0);
        let held: Vec<_> = (0..1000).filter_map(|_| unlimited.acquire(ip)).collect();
        assert_eq!(held.len(), 1000);
    }
}
