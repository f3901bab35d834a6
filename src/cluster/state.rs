//! What a node advertises in chitchat key-values, and how peers read it back.
//!
//! Owns: key names, value formats, the packing of stream claims into buckets, size limits.
//! Must never: trust a peer's values (a bad value makes that node's advert incomplete, never a
//! panic), delete a key (deletes leave tombstones; an emptied bucket is set to ""), or produce a
//! value that cannot fit in one gossip datagram.
//!
//! Keys (format version [`ADVERT_VERSION`]):
//!
//! | key      | value                                   |
//! |----------|-----------------------------------------|
//! | `v`      | `1`                                     |
//! | `role`   | `origin` or `edge`                      |
//! | `rtmp`   | RTMP `host:port` clients are sent to    |
//! | `rtmps`  | RTMPS `host:port` relays with `cluster.relay_tls` dial (absent or "": none) |
//! | `http`   | HTTP `host:port`                        |
//! | `ready`  | `1`/`0`                                 |
//! | `drain`  | `1`/`0`                                 |
//! | `leave`  | `1` once the node is leaving for good   |
//! | `load`   | `players publishers egress_bps`         |
//! | `tier`   | edge tier `1`..; `0` on origins (absent: 1 on edges, 0 on origins) |
//! | `cap`    | `max_players max_egress_mbps` (0 = unlimited; absent: unlimited) |
//! | `use`    | `cpu_permille rss_kib` (absent: 0 0)    |
//! | `zone`   | `node.zone` (absent: none)              |
//! | `s/XX`   | claims of bucket XX (hex, 256 buckets); on an edge, the streams it carries |
//!
//! A bucket value holds one line per stream, sorted by name: `<claim stamp, hex> <APP/STREAM>\n`.
//! An edge carries streams without claiming them: its lines have stamp 0 and it is never a
//! claimant (only origins are).
//! A stream's bucket is `siphash(stream) % 256` (fixed keys), so a reader looking for one
//! stream reads one bucket per origin.
//!
//! Why packed buckets rather than one key per stream. Measured with raw chitchat 0.13 on its
//! in-memory transport, 100 origins x 1,000 streams, 300 ms gossip, paused clock, all nodes in
//! one process (`benches/cluster_convergence.rs --encoding-key` / `--encoding-packed`):
//!
//! | per 100k streams        | key per stream | packed (this file) |
//! |-------------------------|----------------|--------------------|
//! | state (keys + values)   | 4.70 MB        | 3.84 MB            |
//! | converged after (sim.)  | 1.9-2.2 s      | 2.2-2.8 s          |
//! | bytes on the wire       | 68 MB          | 72 MB              |
//! | CPU (wall, 1 core)      | 26-35 s        | 10-11 s            |
//! | peak memory (100 nodes) | 4.4 GB         | 1.7 GB             |
//!
//! Convergence and traffic are the same within run-to-run noise; the difference is CPU and
//! memory: chitchat keeps a `BTreeMap` entry per key and clones every live node's key-values
//! into its membership watch on each change, so 100k keys per node cost 2.5x the memory and 3x
//! the CPU. The price of packing: one stream change re-sends its bucket (~140 bytes at 1,000
//! streams per origin) instead of ~48 bytes. Through `Cluster` the state costs 35 bytes per
//! stream (3.5 MB for 100k) and converges in 2.2-2.5 s.
//!
//! With 256 buckets one origin can advertise about 100k short stream names before a bucket
//! nears [`MAX_BUCKET_BYTES`]; beyond that, claims are dropped (and logged) rather than
//! producing a value chitchat could never send.

use std::collections::BTreeMap;
use std::sync::Arc;

use chitchat::NodeState;
use siphasher::sip::SipHasher24;

use super::{Capacity, Load, NodeRole, Usage};

/// Format version of the advertised keys.
pub(crate) const ADVERT_VERSION: &str = "1";
pub(crate) const BUCKETS: usize = 256;
/// Longest stream name advertised, in bytes.
pub const MAX_STREAM_NAME: usize = 200;
/// Largest bucket value: well under one datagram even with a 100-node digest beside it.
pub(crate) const MAX_BUCKET_BYTES: usize = 24 * 1024;

const KEY_VERSION: &str = "v";
const KEY_ROLE: &str = "role";
const KEY_RTMP: &str = "rtmp";
const KEY_RTMPS: &str = "rtmps";
const KEY_HTTP: &str = "http";
/// HTTP-FLV `host:port` (absent or empty: the node serves no HTTP-FLV).
const KEY_FLV: &str = "flv";
const KEY_READY: &str = "ready";
const KEY_DRAIN: &str = "drain";
const KEY_LEAVE: &str = "leave";
const KEY_LOAD: &str = "load";
const KEY_TIER: &str = "tier";
const KEY_CAPACITY: &str = "cap";
const KEY_USAGE: &str = "use";
const KEY_ZONE: &str = "zone";
/// Longest zone label advertised.
pub(crate) const MAX_ZONE: usize = 64;
const BUCKET_PREFIX: &str = "s/";

const BUCKET_KEY_0: u64 = u64::from_le_bytes(*b"ringcast");
const BUCKET_KEY_1: u64 = u64::from_le_bytes(*b"bucket\0\0");

/// The bucket a stream's claim lives in, on every node.
pub(crate) fn bucket_of(stream: &str) -> usize {
    let hash = SipHasher24::new_with_keys(BUCKET_KEY_0, BUCKET_KEY_1).hash(stream.as_bytes());
    (hash % BUCKETS as u64) as usize
}

fn bucket_key(bucket: usize) -> String {
    format!("{BUCKET_PREFIX}{bucket:02x}")
}

/// True if `stream` can be advertised: non-empty, at most [`MAX_STREAM_NAME`] bytes, no control
/// characters (they would break the line format).
pub fn valid_stream_name(stream: &str) -> bool {
    !stream.is_empty() && stream.len() <= MAX_STREAM_NAME && !stream.chars().any(char::is_control)
}

/// What this node wants to advertise. Cheap to clone at the scale of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalAdvert {
    pub(crate) role: NodeRole,
    pub(crate) rtmp: String,
    /// "" when the node has no RTMPS listener.
    pub(crate) rtmps: String,
    pub(crate) http: String,
    /// HTTP-FLV `host:port`; "" when off.
    pub(crate) flv: String,
    pub(crate) ready: bool,
    pub(crate) draining: bool,
    pub(crate) leaving: bool,
    pub(crate) load: Load,
    /// Edge tier (1 pulls from origins, N from edges of tier N - 1); 0 on origins.
    pub(crate) tier: u8,
    pub(crate) capacity: Capacity,
    pub(crate) usage: Usage,
    pub(crate) zone: String,
    /// Stream → claim stamp (see `locator`); on an edge, the streams it carries (stamp 0).
    pub(crate) streams: BTreeMap<String, u64>,
}

fn flag(value: bool) -> &'static str {
    if value {
        "1"
    } else {
        "0"
    }
}

impl LocalAdvert {
    /// The keys set when chitchat starts: identity first, so that a peer never sees streams
    /// of a node whose role it does not know yet (chitchat applies a node's keys in version
    /// order).
    pub(crate) fn initial_key_values(&self) -> Vec<(String, String)> {
        let mut key_values = self.scalar_key_values();
        key_values.extend(
            self.bucket_values()
                .into_iter()
                .enumerate()
                .filter(|(_, value)| !value.is_empty())
                .map(|(bucket, value)| (bucket_key(bucket), value)),
        );
        key_values
    }

    fn scalar_key_values(&self) -> Vec<(String, String)> {
        vec![
            (KEY_VERSION.into(), ADVERT_VERSION.into()),
            (KEY_ROLE.into(), self.role.as_str().into()),
            (KEY_RTMP.into(), self.rtmp.clone()),
            (KEY_RTMPS.into(), self.rtmps.clone()),
            (KEY_HTTP.into(), self.http.clone()),
            (KEY_FLV.into(), self.flv.clone()),
            (KEY_READY.into(), flag(self.ready).into()),
            (KEY_DRAIN.into(), flag(self.draining).into()),
            (KEY_LEAVE.into(), flag(self.leaving).into()),
            (
                KEY_LOAD.into(),
                format!(
                    "{} {} {}",
                    self.load.players, self.load.publishers, self.load.egress_bps
                ),
            ),
            (KEY_TIER.into(), self.tier.to_string()),
            (
                KEY_CAPACITY.into(),
                format!(
                    "{} {}",
                    self.capacity.max_players, self.capacity.max_egress_mbps
                ),
            ),
            (
                KEY_USAGE.into(),
                format!("{} {}", self.usage.cpu_permille, self.usage.rss_kib),
            ),
            (KEY_ZONE.into(), self.zone.clone()),
        ]
    }

    /// Bucket values, index = bucket. Claims that would overflow a bucket are left out.
    pub(crate) fn bucket_values(&self) -> Vec<String> {
        let mut buckets = vec![String::new(); BUCKETS];
        // `streams` is sorted, so every bucket's lines are sorted too.
        for (stream, stamp) in &self.streams {
            let bucket = &mut buckets[bucket_of(stream)];
            let line = format!("{stamp:x} {stream}\n");
            if bucket.len() + line.len() > MAX_BUCKET_BYTES {
                tracing::error!(%stream, "stream bucket full; claim not advertised");
                continue;
            }
            bucket.push_str(&line);
        }
        buckets
    }

    /// Writes the advert into this node's chitchat state. Unchanged values are no-ops in
    /// chitchat (no new version, nothing gossiped).
    pub(crate) fn apply(&self, state: &mut NodeState) {
        for (key, value) in self.scalar_key_values() {
            state.set(key, value);
        }
        for (bucket, value) in self.bucket_values().into_iter().enumerate() {
            let key = bucket_key(bucket);
            if !value.is_empty() || state.get(&key).is_some() {
                state.set(key, value);
            }
        }
    }
}

/// One bucket of a peer's claims, shared between views until its version changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bucket {
    version: u64,
    text: Arc<str>,
    lines: usize,
}

/// A peer's advert, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advert {
    pub(crate) role: NodeRole,
    pub(crate) rtmp: String,
    pub(crate) rtmps: String,
    pub(crate) http: String,
    pub(crate) flv: String,
    pub(crate) ready: bool,
    pub(crate) draining: bool,
    pub(crate) leaving: bool,
    pub(crate) load: Load,
    /// See [`LocalAdvert::tier`].
    pub(crate) tier: u8,
    pub(crate) capacity: Capacity,
    pub(crate) usage: Usage,
    pub(crate) zone: String,
    /// Index = bucket; `None` if the node never set it.
    buckets: Vec<Option<Bucket>>,
}

fn parse_flag(state: &NodeState, key: &str) -> Option<bool> {
    match state.get(key)? {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

fn parse_load(value: &str) -> Option<Load> {
    let mut fields = value.split(' ').map(str::parse::<u64>);
    let load = Load {
        players: fields.next()?.ok()?,
        publishers: fields.next()?.ok()?,
        egress_bps: fields.next()?.ok()?,
    };
    fields.next().is_none().then_some(load)
}

/// Two space-separated integers; `None` if malformed.
fn parse_pair(value: &str) -> Option<(u64, u64)> {
    let (a, b) = value.split_once(' ')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// An edge's tier; 1 if absent or malformed (what a node without tiers does), 0 on origins.
fn parse_tier(state: &NodeState, role: NodeRole) -> u8 {
    match role {
        NodeRole::Origin => 0,
        NodeRole::Edge => state
            .get(KEY_TIER)
            .and_then(|v| v.parse::<u8>().ok())
            .filter(|tier| *tier >= 1)
            .unwrap_or(1),
    }
}

impl Advert {
    /// Parses a peer's keys. `None` if the identity keys are missing or malformed (a node that
    /// just joined, or a newer format): such a node is not listed, owns nothing, claims nothing.
    /// Buckets whose version did not change since `previous` are shared, not copied.
    pub(crate) fn parse(state: &NodeState, previous: Option<&Advert>) -> Option<Advert> {
        if state.get(KEY_VERSION)? != ADVERT_VERSION {
            return None;
        }
        let role = NodeRole::parse(state.get(KEY_ROLE)?)?;
        let mut buckets: Vec<Option<Bucket>> = vec![None; BUCKETS];
        for (key, versioned) in state.iter_prefix(BUCKET_PREFIX) {
            let Some(index) = key
                .strip_prefix(BUCKET_PREFIX)
                .and_then(|hex| usize::from_str_radix(hex, 16).ok())
                .filter(|index| *index < BUCKETS)
            else {
                continue;
            };
            let reused = previous
                .and_then(|previous| previous.buckets.get(index))
                .and_then(Option::as_ref)
                .filter(|bucket| bucket.version == versioned.version)
                .cloned();
            buckets[index] = Some(reused.unwrap_or_else(|| Bucket {
                version: versioned.version,
                lines: versioned.value.lines().count(),
                text: Arc::from(versioned.value.as_str()),
            }));
        }
        Some(Advert {
            role,
            rtmp: state.get(KEY_RTMP)?.to_string(),
            rtmps: state
                .get(KEY_RTMPS)
                .filter(|a| crate::config::parse_host_port(a).is_some())
                .unwrap_or_default()
                .to_string(),
            http: state.get(KEY_HTTP).unwrap_or_default().to_string(),
            flv: state.get(KEY_FLV).unwrap_or_default().to_string(),
            ready: parse_flag(state, KEY_READY)?,
            draining: parse_flag(state, KEY_DRAIN)?,
            leaving: parse_flag(state, KEY_LEAVE).unwrap_or(false),
            load: state.get(KEY_LOAD).and_then(parse_load).unwrap_or_default(),
            tier: parse_tier(state, role),
            capacity: state
                .get(KEY_CAPACITY)
                .and_then(parse_pair)
                .map(|(max_players, max_egress_mbps)| Capacity {
                    max_players,
                    max_egress_mbps,
                })
                .unwrap_or_default(),
            usage: state
                .get(KEY_USAGE)
                .and_then(parse_pair)
                .map(|(cpu_permille, rss_kib)| Usage {
                    cpu_permille,
                    rss_kib,
                })
                .unwrap_or_default(),
            zone: state
                .get(KEY_ZONE)
                .filter(|z| z.len() <= MAX_ZONE && !z.chars().any(char::is_control))
                .unwrap_or_default()
                .to_string(),
            buckets,
        })
    }

    /// Number of streams this node claims.
    pub(crate) fn stream_count(&self) -> usize {
        self.buckets
            .iter()
            .flatten()
            .map(|bucket| bucket.lines)
            .sum()
    }

    /// The claim stamp of `stream` if this node claims it.
    pub(crate) fn claim(&self, stream: &str) -> Option<u64> {
        let bucket = self.buckets.get(bucket_of(stream))?.as_ref()?;
        claims_in(&bucket.text).find_map(|(name, stamp)| (name == stream).then_some(stamp))
    }

    /// Every (stream, stamp) this node claims.
    pub(crate) fn claims(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.buckets
            .iter()
            .flatten()
            .flat_map(|bucket| claims_in(&bucket.text))
    }
}

/// A claim stamped further ahead of our clock than this is refused: no node's clock can be
/// that far ahead (gossip from outside the replay window is not accepted at all), and such a
/// stamp would beat every later claim of the stream for as long.
pub(crate) const MAX_CLAIM_AHEAD: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// Lines of a bucket value; malformed lines and claims stamped too far ahead are skipped.
fn claims_in(text: &str) -> impl Iterator<Item = (&str, u64)> + '_ {
    let latest = super::wall_ms().saturating_add(MAX_CLAIM_AHEAD.as_millis() as u64);
    text.lines().filter_map(move |line| {
        let (stamp, name) = line.split_once(' ')?;
        let stamp = u64::from_str_radix(stamp, 16).ok()?;
        (!name.is_empty() && stamp <= latest).then_some((name, stamp))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(streams: &[(&str, u64)]) -> LocalAdvert {
        LocalAdvert {
            role: NodeRole::Origin,
            rtmp: "10.0.0.1:1935".into(),
            rtmps: "10.0.0.1:1936".into(),
            http: "10.0.0.1:8080".into(),
            flv: "10.0.0.1:8081".into(),
            ready: true,
            draining: false,
            leaving: false,
            load: Load {
                players: 3,
                publishers: 1,
                egress_bps: 9_000_000,
            },
            tier: 0,
            capacity: Capacity {
                max_players: 500,
                max_egress_mbps: 0,
            },
            usage: Usage {
                cpu_permille: 250,
                rss_kib: 40_000,
            },
            zone: "eu-1".into(),
            streams: streams.iter().map(|(s, t)| (s.to_string(), *t)).collect(),
        }
    }

    fn node_state_with(key_values: &[(String, String)]) -> NodeState {
        let mut state = NodeState::for_test();
        for (key, value) in key_values {
            state.set(key, value);
        }
        state
    }

    #[test]
    fn bucket_assignment_is_pinned() {
        // Changing the bucket function makes mixed-version clusters unable to find streams.
        let got: Vec<usize> = ["live/a", "live/b", "app/stream-1", ""]
            .iter()
            .map(|s| bucket_of(s))
            .collect();
        assert_eq!(got, vec![102, 14, 223, 67]);
    }

    #[test]
    fn round_trip_through_node_state() {
        let local = advert(&[("live/a", 0x10), ("live/b", 0x20), ("app/x y", 7)]);
        let state = node_state_with(&local.initial_key_values());
        let parsed = Advert::parse(&state, None);
        let Some(parsed) = parsed else {
            panic!("advert did not parse");
        };
        assert_eq!(parsed.role, NodeRole::Origin);
        assert_eq!(parsed.rtmp, "10.0.0.1:1935");
        assert_eq!(parsed.rtmps, "10.0.0.1:1936");
        assert_eq!(parsed.load, local.load);
        assert_eq!(parsed.capacity, local.capacity);
        assert_eq!(parsed.usage, local.usage);
        assert_eq!(parsed.zone, "eu-1");
        assert!(parsed.ready && !parsed.draining && !parsed.leaving);
        assert_eq!(parsed.stream_count(), 3);
        assert_eq!(parsed.claim("live/a"), Some(0x10));
        assert_eq!(parsed.claim("app/x y"), Some(7));
        assert_eq!(parsed.claim("live/c"), None);
        let mut all: Vec<(&str, u64)> = parsed.claims().collect();
        all.sort();
        assert_eq!(
            all,
            vec![("app/x y", 7), ("live/a", 0x10), ("live/b", 0x20)]
        );
    }

    #[test]
    fn claims_stamped_far_ahead_of_our_clock_are_refused() {
        let now = crate::cluster::wall_ms();
        let ahead = MAX_CLAIM_AHEAD.as_millis() as u64;
        let local = advert(&[
            ("live/soon", now + 1_000),
            ("live/forever", now + 2 * ahead),
        ]);
        let state = node_state_with(&local.initial_key_values());
        let Some(parsed) = Advert::parse(&state, None) else {
            panic!("advert did not parse");
        };
        assert_eq!(parsed.claim("live/soon"), Some(now + 1_000));
        assert_eq!(parsed.claim("live/forever"), None);
        assert_eq!(parsed.claims().count(), 1);
    }

    #[test]
    fn apply_only_touches_changed_buckets_and_never_deletes() {
        let mut local = advert(&[("live/a", 1), ("live/b", 2)]);
        let mut state = NodeState::for_test();
        local.apply(&mut state);
        let version = state.max_version();
        local.apply(&mut state);
        assert_eq!(state.max_version(), version, "re-applying is a no-op");

        local.streams.remove("live/a");
        local.apply(&mut state);
        assert_eq!(state.max_version(), version + 1, "one bucket changed");
        let emptied = bucket_key(bucket_of("live/a"));
        assert_eq!(state.get(&emptied), Some(""));
        assert!(state
            .key_values_including_deleted()
            .all(|(_, v)| !v.is_deleted()));

        let previous = Advert::parse(&state, None);
        local.streams.insert("live/c".into(), 3);
        local.apply(&mut state);
        let parsed = Advert::parse(&state, previous.as_ref());
        assert_eq!(parsed.as_ref().map(Advert::stream_count), Some(2));
        // Unchanged buckets are shared with the previous parse.
        if let (Some(previous), Some(parsed)) = (previous, parsed) {
            let b = bucket_of("live/b");
            if b != bucket_of("live/c") {
                let (old, new) = (&previous.buckets[b], &parsed.buckets[b]);
                assert!(matches!((old, new), (Some(o), Some(n)) if Arc::ptr_eq(&o.text, &n.text)));
            }
        }
    }

    #[test]
    fn malformed_peer_values_never_panic() {
        let mut kvs = advert(&[]).initial_key_values();
        kvs.push(("s/zz".into(), "garbage".into()));
        kvs.push(("s/1ff".into(), "1 out/of/range".into()));
        kvs.push(("load".into(), "1 2".into()));
        kvs.push((
            bucket_key(bucket_of("live/ok")),
            "nothex live/x\n\n5\n5 live/ok\n".into(),
        ));
        let state = node_state_with(&kvs);
        let parsed = Advert::parse(&state, None);
        assert_eq!(parsed.as_ref().map(|a| a.load), Some(Load::default()));
        assert_eq!(parsed.as_ref().and_then(|a| a.claim("live/ok")), Some(5));

        for (key, value) in [("v", "2"), ("role", "king"), ("ready", "yes")] {
            let mut kvs = advert(&[]).initial_key_values();
            kvs.retain(|(k, _)| k != key);
            kvs.push((key.into(), value.into()));
            assert_eq!(Advert::parse(&node_state_with(&kvs), None), None, "{key}");
        }
    }

    #[test]
    fn edge_tiers_round_trip_and_default_to_one() {
        let mut edge = advert(&[]);
        edge.role = NodeRole::Edge;
        edge.tier = 2;
        let kvs = edge.initial_key_values();
        let tier =
            |kvs: &[(String, String)]| Advert::parse(&node_state_with(kvs), None).map(|a| a.tier);
        assert_eq!(tier(&kvs), Some(2));
        // A peer that does not send the key (or sends garbage) is a tier-1 edge.
        for bad in [None, Some("x"), Some("0"), Some("300")] {
            let mut kvs = kvs.clone();
            kvs.retain(|(k, _)| k != KEY_TIER);
            if let Some(bad) = bad {
                kvs.push((KEY_TIER.into(), bad.into()));
            }
            assert_eq!(tier(&kvs), Some(1), "{bad:?}");
        }
        // Origins have no tier, whatever they send.
        let mut origin = advert(&[]);
        origin.tier = 2;
        assert_eq!(tier(&origin.initial_key_values()), Some(0));
    }

    #[test]
    fn stream_names_are_validated() {
        assert!(valid_stream_name("live/stream"));
        assert!(valid_stream_name("live/with space"));
        assert!(!valid_stream_name(""));
        assert!(!valid_stream_name("live/new\nline"));
        assert!(!valid_stream_name(&"x".repeat(MAX_STREAM_NAME + 1)));
    }

    #[test]
    fn full_buckets_drop_claims_instead_of_growing() {
        let mut local = advert(&[]);
        for i in 0..200_000u64 {
            local
                .streams
                .insert(format!("live/{}-{i}", "n".repeat(150)), i);
        }
        assert!(local
            .bucket_values()
            .iter()
            .all(|value| value.len() <= MAX_BUCKET_BYTES));
    }
}
