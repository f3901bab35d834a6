//! HTTP hooks, compatible with nginx-rtmp's `on_connect`, `on_publish`, `on_play` (decisions)
//! and `on_publish_done`, `on_play_done`, `on_disconnect` (notifications), so that operators
//! keep their existing backends.
//!
//! Owns: the form each hook is sent ([`form`]), the reading of the answer, the answer cache,
//! the notification queue and its sender task, and the hook counters and latency histograms.
//! Must never: allow on anything but a 2xx (a refused connection, a timeout, a 5xx, a 3xx
//! without a usable `Location` all deny), follow a redirect, read a response body (the status
//! line and `Location` are the answer), let one slow hook server delay anything but the
//! connection waiting on it, wait for a notification, or let a query argument pose as a field
//! ringcast sets.
//!
//! The form, `application/x-www-form-urlencoded`, in nginx-rtmp's order: `app`, `flashver`,
//! `swfurl`, `tcurl`, `pageurl`, `addr` (the client IP, without port), `clientid` (the
//! connection id), `call` (`connect`, `publish`, `play`, `publish_done`, `play_done`,
//! `disconnect`), `name` (the stream name without query; not for `connect` and
//! `disconnect`), `type=live` (publish only), the caller's extra fields (notifications), then
//! every query argument in order. Unlike nginx-rtmp, a query argument named like one of the
//! fields before it is left out (otherwise a client could send `?name=other` and a backend that
//! reads the last value would judge another stream), and `epoch` (connect) and
//! `start`/`duration`/`reset` (play) are not sent.
//!
//! The answer: 2xx allows; 3xx with a `Location` redirects (`Outcome::Redirect` with the
//! header as given: nginx-rtmp takes a bare name as the new stream name, or the new app on
//! connect, and an `rtmp://` URL as a relay target); everything else denies. Unlike nginx-rtmp,
//! a 3xx without a `Location` denies rather than allows.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Url;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Action, Checker, Notice, Outcome, Request};
use crate::http_client;
use crate::hub::lock;

/// Notifications waiting to be sent; more are dropped (and counted).
pub const QUEUE: usize = 4_096;
/// Cached answers at most; the oldest goes first.
pub const CACHE_ENTRIES: usize = 10_000;
/// Notifications being delivered at once.
const IN_FLIGHT: usize = 32;
/// Longest `Location` taken from a 3xx.
const MAX_LOCATION: usize = 1_024;
/// First wait before a notification is sent again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Upper bounds (ms) of the latency histogram's buckets; a last one, +Inf, follows.
pub const LATENCY_BUCKETS_MS: [u64; 10] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000];

/// `[hooks]`: URLs (`""` = no hook) and how they are called.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct HooksConfig {
    pub on_connect: String,
    pub on_publish: String,
    pub on_play: String,
    pub on_publish_done: String,
    pub on_play_done: String,
    pub on_disconnect: String,
    /// Per attempt, 1..=60000.
    pub timeout_ms: u64,
    /// Decisions are cached this long; 0 = not cached. 0..=86400.
    pub cache_s: u64,
    /// A notification is sent again this many times at most after a failed attempt. 0..=10.
    pub retries: u32,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            on_connect: String::new(),
            on_publish: String::new(),
            on_play: String::new(),
            on_publish_done: String::new(),
            on_play_done: String::new(),
            on_disconnect: String::new(),
            timeout_ms: 3_000,
            cache_s: 0,
            retries: 3,
        }
    }
}

/// A latency histogram snapshot, ready to render as Prometheus text (`le` buckets are
/// [`LATENCY_BUCKETS_MS`] and +Inf).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Cumulative: `le[i]` calls took at most `LATENCY_BUCKETS_MS[i]` ms.
    pub le: [u64; LATENCY_BUCKETS_MS.len()],
    /// All calls (the +Inf bucket).
    pub count: u64,
    /// Total time of all calls, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// The sum in seconds (Prometheus' unit).
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    fn add(&mut self, other: &Histogram) {
        for (a, b) in self.le.iter_mut().zip(other.le.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us += other.sum_us;
    }
}

#[derive(Default)]
struct LatencyCell {
    /// Not cumulative; the last is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    sum_us: AtomicU64,
}

impl LatencyCell {
    fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|&ms| us <= ms * 1_000)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Histogram {
        let mut h = Histogram {
            sum_us: self.sum_us.load(Ordering::Relaxed),
            ..Histogram::default()
        };
        let mut running = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            running += b.load(Ordering::Relaxed);
            if let Some(slot) = h.le.get_mut(i) {
                *slot = running;
            }
        }
        h.count = running;
        h
    }
}

/// Notification counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// Delivered (answered 2xx).
    pub sent: u64,
    /// Given up on: every attempt failed, or answered 3xx/4xx (not worth repeating).
    pub failed: u64,
    /// Never queued: the queue was full (or the sender task is gone).
    pub dropped: u64,
}

/// What a hook server said, or why it said nothing.
#[derive(Debug)]
enum Answer {
    Status(u16, Option<String>),
    TimedOut,
    Failed(String),
}

/// POSTs `form` and reads the status line and `Location`, within `timeout` in all.
async fn post(
    client: &reqwest::Client,
    url: &Url,
    form: &[(String, String)],
    timeout: Duration,
) -> Answer {
    let send = client.post(url.clone()).form(form).timeout(timeout).send();
    match tokio::time::timeout(timeout, send).await {
        Err(_) => Answer::TimedOut,
        Ok(Err(e)) if e.is_timeout() => Answer::TimedOut,
        Ok(Err(e)) => Answer::Failed(http_client::describe_error(e)),
        Ok(Ok(response)) => {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= MAX_LOCATION)
                .filter(|v| !v.chars().any(char::is_control))
                .map(str::to_owned);
            // The body is never read: dropping the response closes the connection if the
            // server sent one.
            Answer::Status(response.status().as_u16(), location)
        }
    }
}

/// The form sent for `call` (see the module documentation).
pub fn form(call: &str, request: &Request, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = Vec::with_capacity(10 + extra.len() + request.query.len());
    let mut put = |k: &str, v: &str| f.push((k.to_owned(), v.to_owned()));
    put("app", &request.app);
    put("flashver", &request.flash_ver);
    put("swfurl", &request.swf_url);
    put("tcurl", &request.tc_url);
    put("pageurl", &request.page_url);
    put("addr", &request.client.ip().to_canonical().to_string());
    put("clientid", &request.conn_id.to_string());
    put("call", call);
    if call != "connect" && call != "disconnect" && !request.stream.is_empty() {
        put("name", &request.stream);
    }
    if call == "publish" {
        // ringcast publishes live only (nginx-rtmp sends the client's publish type).
        put("type", "live");
    }
    for (k, v) in extra {
        put(k, v);
    }
    let ours = f.len();
    for (k, v) in &request.query {
        if !f[..ours].iter().any(|(name, _)| name == k) {
            f.push((k.clone(), v.clone()));
        }
    }
    f
}

/// The cache key of a decision: every field but `clientid` (which is new on every
/// connection, so a key with it would never be asked twice), hashed so an entry is small.
fn cache_key(form: &[(String, String)]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (k, v) in form.iter().filter(|(k, _)| k != "clientid") {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    h.finalize().into()
}

/// Decisions by cache key, for `ttl`, at most [`CACHE_ENTRIES`] of them.
struct Cache {
    ttl: Duration,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<[u8; 32], (Instant, u64, Outcome)>,
    /// Insertion order (oldest first) as (sequence, key); an item whose sequence is not its
    /// entry's any more was overwritten and is skipped.
    order: VecDeque<(u64, [u8; 32])>,
    next: u64,
}

impl Cache {
    fn get(&self, key: &[u8; 32], now: Instant) -> Option<Outcome> {
        let inner = lock(&self.inner);
        let (at, _, outcome) = inner.entries.get(key)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| outcome.clone())
    }

    fn put(&self, key: [u8; 32], outcome: Outcome, now: Instant) {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        // Everything older than the TTL is at the front: drop it.
        while let Some(&(seq, k)) = inner.order.front() {
            let stale = match inner.entries.get(&k) {
                Some((at, s, _)) if *s == seq => now.saturating_duration_since(*at) >= self.ttl,
                _ => true,
            };
            if !stale {
                break;
            }
            inner.order.pop_front();
            if inner.entries.get(&k).is_some_and(|(_, s, _)| *s == seq) {
                inner.entries.remove(&k);
            }
        }
        let seq = inner.next;
        inner.next += 1;
        inner.entries.insert(key, (now, seq, outcome));
        inner.order.push_back((seq, key));
        while inner.entries.len() > CACHE_ENTRIES {
            let Some((seq, k)) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&k).is_some_and(|(_, s, _)| *s == seq) {
                inner.entries.remove(&k);
            }
        }
        // Concurrent misses of one key leave extra order items; keep them bounded.
        if inner.order.len() > 2 * CACHE_ENTRIES {
            let entries = &inner.entries;
            inner
                .order
                .retain(|(seq, k)| entries.get(k).is_some_and(|(_, s, _)| s == seq));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.inner).entries.len()
    }
}

/// A notification to send.
struct Job {
    call: &'static str,
    url: Url,
    form: Vec<(String, String)>,
}

/// What the notification sender task shares with the checker.
struct Notifier {
    client: reqwest::Client,
    timeout: Duration,
    retries: u32,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// In a streak of failed deliveries (logged once per streak).
    failing: AtomicBool,
}

impl Notifier {
    async fn run(self: Arc<Self>, mut queue: mpsc::Receiver<Job>, stop: CancellationToken) {
        let mut in_flight = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                job = queue.recv(), if in_flight.len() < IN_FLIGHT => match job {
                    Some(job) => {
                        in_flight.spawn(self.clone().deliver(job));
                    }
                    None => break,
                },
            }
        }
        // The checker is gone: finish what is under way, unless told to stop.
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                done = in_flight.join_next() => if done.is_none() { return },
            }
        }
    }

    async fn deliver(self: Arc<Self>, job: Job) {
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            match post(&self.client, &job.url, &job.form, self.timeout).await {
                Answer::Status(s, _) if (200..300).contains(&s) => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    if self.failing.swap(false, Ordering::Relaxed) {
                        info!(call = job.call, "hook notifications delivered again");
                    }
                    return;
                }
                Answer::Status(s, _) if s >= 500 || s == 408 || s == 429 => {
                    last = format!("answered {s}");
                }
                Answer::Status(s, _) => {
                    // The server understood and refused: asking again will not change that.
                    last = format!("answered {s}");
                    break;
                }
                Answer::TimedOut => {
                    last = format!("timed out after {} ms", self.timeout.as_millis());
                }
                Answer::Failed(why) => last = format!("unreachable: {why}"),
            }
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::Relaxed) {
            warn!(call = job.call, error = %last, "hook notification not delivered (further failures are counted, not logged)");
        } else {
            debug!(call = job.call, error = %last, "hook notification not delivered");
        }
    }
}

/// The `call` name and config key of each hook, by index: decisions 0..3 in [`Action`] order,
/// notifications 3..6 in [`Notice`] order.
const HOOKS: [(&str, &str); 6] = [
    ("connect", "on_connect"),
    ("publish", "on_publish"),
    ("play", "on_play"),
    ("publish_done", "on_publish_done"),
    ("play_done", "on_play_done"),
    ("disconnect", "on_disconnect"),
];

fn action_index(action: Action) -> usize {
    match action {
        Action::Connect => 0,
        Action::Publish => 1,
        Action::Play => 2,
    }
}

fn notice_index(notice: Notice) -> usize {
    match notice {
        Notice::PublishDone => 3,
        Notice::PlayDone => 4,
        Notice::Disconnect => 5,
    }
}

fn parse_url(key: &str, value: &str) -> Result<Option<Url>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let url =
        Url::parse(value).map_err(|e| format!("hooks.{key}: {value:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "hooks.{key}: {value:?} is not an http:// or https:// URL with a host"
        ));
    }
    Ok(Some(url))
}

/// Decides with HTTP hooks (checker name `hook`) and sends the notifications.
///
/// Decisions are made inside [`Checker::check`], per request. Notifications are queued by
/// [`HookChecker::notify`] and sent by a task started with [`HookChecker::spawn`]; until it
/// runs they wait in the queue.
pub struct HookChecker {
    client: reqwest::Client,
    urls: [Option<Url>; 6],
    timeout: Duration,
    cache: Option<Cache>,
    latency: [LatencyCell; 3],
    queue: mpsc::Sender<Job>,
    pending: Mutex<Option<mpsc::Receiver<Job>>>,
    notifier: Arc<Notifier>,
}

impl HookChecker {
    /// Checks the config (a bad URL or value is an error naming its key, `hooks.on_publish`)
    /// and builds the HTTP client. Starts nothing: see [`HookChecker::spawn`].
    pub fn new(cfg: HooksConfig) -> Result<Arc<HookChecker>, String> {
        if !(1..=60_000).contains(&cfg.timeout_ms) {
            return Err(format!(
                "hooks.timeout_ms: {} is not in 1..=60000",
                cfg.timeout_ms
            ));
        }
        if cfg.cache_s > 86_400 {
            return Err(format!(
                "hooks.cache_s: {} is not in 0..=86400",
                cfg.cache_s
            ));
        }
        if cfg.retries > 10 {
            return Err(format!("hooks.retries: {} is not in 0..=10", cfg.retries));
        }
        let values = [
            &cfg.on_connect,
            &cfg.on_publish,
            &cfg.on_play,
            &cfg.on_publish_done,
            &cfg.on_play_done,
            &cfg.on_disconnect,
        ];
        let mut urls: [Option<Url>; 6] = Default::default();
        for (i, value) in values.iter().enumerate() {
            urls[i] = parse_url(HOOKS[i].1, value)?;
        }
        let client = http_client::client()?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let (queue, pending) = mpsc::channel(QUEUE);
        Ok(Arc::new(HookChecker {
            notifier: Arc::new(Notifier {
                client: client.clone(),
                timeout,
                retries: cfg.retries,
                sent: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                failing: AtomicBool::new(false),
            }),
            client,
            urls,
            timeout,
            cache: (cfg.cache_s > 0).then(|| Cache {
                ttl: Duration::from_secs(cfg.cache_s),
                inner: Mutex::new(CacheInner::default()),
            }),
            latency: Default::default(),
            queue,
            pending: Mutex::new(Some(pending)),
        }))
    }

    /// Starts the notification sender; it runs until `stop` (notifications still queued or
    /// being retried then are dropped) or until the checker is dropped and the queue is sent.
    /// `None` if it was started already.
    pub fn spawn(&self, stop: CancellationToken) -> Option<JoinHandle<()>> {
        let queue = lock(&self.pending).take()?;
        Some(tokio::spawn(self.notifier.clone().run(queue, stop)))
    }

    /// Queues the notification for `notice` (if its hook is set), never waiting: when the
    /// queue is full it is dropped and counted. `extra` fields go after the standard ones
    /// (e.g. byte counts); they are trusted, so they must not come from the client.
    pub fn notify(&self, notice: Notice, request: &Request, extra: &[(&str, String)]) {
        let i = notice_index(notice);
        let Some(url) = &self.urls[i] else {
            return;
        };
        let job = Job {
            call: notice.as_str(),
            url: url.clone(),
            form: form(notice.as_str(), request, extra),
        };
        if self.queue.try_send(job).is_err() {
            self.notifier.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether a hook is set for `action` (without one, [`Checker::check`] allows).
    pub fn has_hook(&self, action: Action) -> bool {
        self.urls[action_index(action)].is_some()
    }

    /// Latency of the decision calls for `action` (answered or not; cache hits are not calls).
    pub fn latency_of(&self, action: Action) -> Histogram {
        self.latency[action_index(action)].snapshot()
    }

    /// Latency of all decision calls.
    pub fn latency(&self) -> Histogram {
        let mut h = Histogram::default();
        for cell in &self.latency {
            h.add(&cell.snapshot());
        }
        h
    }

    /// Notification counters.
    pub fn notify_stats(&self) -> NotifyStats {
        NotifyStats {
            sent: self.notifier.sent.load(Ordering::Relaxed),
            failed: self.notifier.failed.load(Ordering::Relaxed),
            dropped: self.notifier.dropped.load(Ordering::Relaxed),
        }
    }

    /// The outcome of an answer, and whether it may be cached (answers that came from the
    /// hook's decision, not from its trouble: 2xx, 3xx, 4xx).
    fn outcome(&self, hook: &str, answer: Answer) -> (Outcome, bool) {
        match answer {
            Answer::Status(s, _) if (200..300).contains(&s) => (Outcome::Allow, true),
            Answer::Status(s, Some(location)) if (300..400).contains(&s) => {
                (Outcome::Redirect(location), true)
            }
            Answer::Status(s, None) if (300..400).contains(&s) => (
                Outcome::Deny(format!("hook {hook} answered {s} without a Location")),
                true,
            ),
            Answer::Status(s, _) => (
                Outcome::Deny(format!("hook {hook} answered {s}")),
                (400..500).contains(&s),
            ),
            Answer::TimedOut => (
                Outcome::Deny(format!(
                    "hook {hook} timed out after {} ms",
                    self.timeout.as_millis()
                )),
                false,
            ),
            Answer::Failed(why) => (
                Outcome::Deny(format!("hook {hook} unreachable: {why}")),
                false,
            ),
        }
    }
}

#[async_trait]
impl Checker for HookChecker {
    fn name(&self) -> &'static str {
        "hook"
    }

    async fn check(&self, request: &Request) -> Outcome {
        let i = action_index(request.action);
        let Some(url) = &self.urls[i] else {
            return Outcome::Allow;
        };
        let (call, hook) = HOOKS[i];
        let form = form(call, request, &[]);
        let key = self.cache.as_ref().map(|_| cache_key(&form));
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            if let Some(outcome) = cache.get(key, Instant::now()) {
                return outcome;
            }
        }
        let started = Instant::now();
        let answer = post(&self.client, url, &form, self.timeout).await;
        self.latency[i].observe(started.elapsed());
        let (outcome, cacheable) = self.outcome(hook, answer);
        if let (Some(cache), Some(key), true) = (&self.cache, key, cacheable) {
            cache.put(key, outcome.clone(), Instant::now());
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::token::tests::request;

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    /// (path, form) of every request a test server was sent.
    type Seen = Vec<(String, Vec<(String, String)>)>;

    /// A hook server: answers by path, records every form it was sent.
    #[derive(Default)]
    struct Srv {
        seen: Mutex<Seen>,
        flaky_failures: AtomicUsize,
    }

    fn decode(s: &str) -> String {
        let s = s.replace('+', " ");
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn parse_form(body: &str) -> Vec<(String, String)> {
        body.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    async fn handler(
        State(srv): State<Arc<Srv>>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let path = uri.path().to_owned();
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/x-www-form-urlencoded")
        );
        let form = parse_form(std::str::from_utf8(&body).unwrap());
        lock(&srv.seen).push((path.clone(), form));
        match path.as_str() {
            "/ok" => StatusCode::OK.into_response(),
            "/created" => StatusCode::NO_CONTENT.into_response(),
            "/deny" => StatusCode::FORBIDDEN.into_response(),
            "/error" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            "/redirect" => (StatusCode::FOUND, [("location", "other")]).into_response(),
            "/redirect-rtmp" => (
                StatusCode::MOVED_PERMANENTLY,
                [("location", "rtmp://edge2:1935/live/cam1")],
            )
                .into_response(),
            "/redirect-bare" => StatusCode::FOUND.into_response(),
            "/big" => (StatusCode::OK, "x".repeat(1 << 20)).into_response(),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK.into_response()
            }
            "/flaky" => {
                if srv.flaky_failures.load(Ordering::SeqCst) > 0 {
                    srv.flaky_failures.fetch_sub(1, Ordering::SeqCst);
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    StatusCode::OK.into_response()
                }
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    async fn server() -> (SocketAddr, Arc<Srv>) {
        let srv = Arc::new(Srv::default());
        let app = axum::Router::new()
            .fallback(handler)
            .with_state(srv.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, srv)
    }

    fn closed_port() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        addr
    }

    fn hooks(addr: SocketAddr, publish: &str, play: &str) -> HooksConfig {
        HooksConfig {
            on_publish: format!("http://{addr}{publish}"),
            on_play: if play.is_empty() {
                String::new()
            } else {
                format!("http://{addr}{play}")
            },
            timeout_ms: 500,
            ..HooksConfig::default()
        }
    }

    fn seen(srv: &Srv) -> Seen {
        lock(&srv.seen).clone()
    }

    /// Waits (generously) until `f` holds.
    async fn eventually(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn answers_map_to_outcomes() {
        let (addr, _srv) = server().await;
        let publish = request(Action::Publish, "live/cam1", &[]);
        for (path, want) in [
            ("/ok", Outcome::Allow),
            ("/created", Outcome::Allow),
            ("/big", Outcome::Allow),
            (
                "/deny",
                Outcome::Deny("hook on_publish answered 403".into()),
            ),
            (
                "/error",
                Outcome::Deny("hook on_publish answered 500".into()),
            ),
            (
                "/nowhere",
                Outcome::Deny("hook on_publish answered 404".into()),
            ),
            ("/redirect", Outcome::Redirect("other".into())),
            (
                "/redirect-rtmp",
                Outcome::Redirect("rtmp://edge2:1935/live/cam1".into()),
            ),
            (
                "/redirect-bare",
                Outcome::Deny("hook on_publish answered 302 without a Location".into()),
            ),
        ] {
            let c = HookChecker::new(hooks(addr, path, "")).unwrap();
            assert_eq!(c.check(&publish).await, want, "{path}");
        }
    }

    #[tokio::test]
    async fn no_hook_for_an_action_allows() {
        let (addr, srv) = server().await;
        let c = HookChecker::new(hooks(addr, "/deny", "")).unwrap();
        assert_eq!(c.name(), "hook");
        assert!(c.has_hook(Action::Publish) && !c.has_hook(Action::Play));
        assert_eq!(
            c.check(&request(Action::Play, "live/cam1", &[])).await,
            Outcome::Allow
        );
        assert_eq!(
            c.check(&request(Action::Connect, "live", &[])).await,
            Outcome::Allow
        );
        assert!(seen(&srv).is_empty());
    }

    #[tokio::test]
    async fn a_slow_hook_denies_within_its_timeout() {
        let (addr, _srv) = server().await;
        let c = HookChecker::new(hooks(addr, "/slow", "")).unwrap();
        let started = Instant::now();
        let outcome = c.check(&request(Action::Publish, "live/cam1", &[])).await;
        let took = started.elapsed();
        assert_eq!(
            outcome,
            Outcome::Deny("hook on_publish timed out after 500 ms".into())
        );
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let h = c.latency_of(Action::Publish);
        assert_eq!(h.count, 1);
        assert_eq!(h.le[5], 0, "not under 250 ms: {h:?}");
        assert_eq!(h.le[9], 1, "under 5 s: {h:?}");
    }

    #[tokio::test]
    async fn a_slow_hook_delays_only_its_own_connection() {
        let (addr, _srv) = server().await;
        let c = HookChecker::new(HooksConfig {
            timeout_ms: 3_000,
            ..hooks(addr, "/slow", "/ok")
        })
        .unwrap();
        let slow = {
            let c = c.clone();
            tokio::spawn(async move { c.check(&request(Action::Publish, "live/cam1", &[])).await })
        };
        let started = Instant::now();
        assert_eq!(
            c.check(&request(Action::Play, "live/cam1", &[])).await,
            Outcome::Allow
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(slow.await.unwrap(), Outcome::Deny(_)));
    }

    #[tokio::test]
    async fn a_refused_connection_denies() {
        let addr = closed_port();
        let c = HookChecker::new(hooks(addr, "/ok", "")).unwrap();
        let Outcome::Deny(why) = c.check(&request(Action::Publish, "live/cam1", &[])).await else {
            panic!("must deny");
        };
        assert!(why.starts_with("hook on_publish unreachable: "), "{why}");
        assert!(why.contains("refused"), "{why}");
        assert!(
            !why.contains(&addr.to_string()),
            "no URL in a client-facing reason: {why}"
        );
        assert_eq!(c.latency().count, 1);
    }

    #[tokio::test]
    async fn forms_carry_the_nginx_fields_and_the_query() {
        let (addr, srv) = server().await;
        let c = HookChecker::new(HooksConfig {
            on_connect: format!("http://{addr}/ok"),
            ..hooks(addr, "/ok", "/ok")
        })
        .unwrap();
        let mut r = request(
            Action::Publish,
            "live/cam 1",
            &[
                ("token", "a b&c=d"),
                ("name", "other"),
                ("x", "1"),
                ("x", "2"),
            ],
        );
        r.client = "[::ffff:198.51.100.4]:40000".parse().unwrap();
        r.swf_url = "http://swf".into();
        assert_eq!(c.check(&r).await, Outcome::Allow);
        let mut connect = request(Action::Connect, "live", &[("token", "t")]);
        connect.conn_id = 7;
        assert_eq!(c.check(&connect).await, Outcome::Allow);
        let play = request(Action::Play, "live/cam1", &[]);
        assert_eq!(c.check(&play).await, Outcome::Allow);

        let s = seen(&srv);
        assert_eq!(s.len(), 3);
        let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            s[0].1,
            owned(&[
                ("app", "live"),
                ("flashver", "FMLE/3.0"),
                ("swfurl", "http://swf"),
                ("tcurl", "rtmp://127.0.0.1:1935/live"),
                ("pageurl", ""),
                ("addr", "198.51.100.4"),
                ("clientid", "42"),
                ("call", "publish"),
                ("name", "cam 1"),
                ("type", "live"),
                ("token", "a b&c=d"),
                ("x", "1"),
                ("x", "2"),
            ])
        );
        assert_eq!(
            s[1].1,
            owned(&[
                ("app", "live"),
                ("flashver", "FMLE/3.0"),
                ("swfurl", ""),
                ("tcurl", "rtmp://127.0.0.1:1935/live"),
                ("pageurl", ""),
                ("addr", "192.0.2.7"),
                ("clientid", "7"),
                ("call", "connect"),
                ("token", "t"),
            ])
        );
        let play_form = &s[2].1;
        assert!(play_form.contains(&("call".into(), "play".into())));
        assert!(play_form.contains(&("name".into(), "cam1".into())));
        assert!(!play_form.iter().any(|(k, _)| k == "type"));
    }

    #[tokio::test]
    async fn answers_are_cached_for_cache_s() {
        let (addr, srv) = server().await;
        let c = HookChecker::new(HooksConfig {
            cache_s: 3_600,
            ..hooks(addr, "/deny", "/error")
        })
        .unwrap();
        let mut r = request(Action::Publish, "live/cam1", &[("k", "v")]);
        let denied = Outcome::Deny("hook on_publish answered 403".into());
        assert_eq!(c.check(&r).await, denied);
        // Another connection (new clientid), same everything else: a hit.
        r.conn_id = 43;
        assert_eq!(c.check(&r).await, denied);
        assert_eq!(seen(&srv).len(), 1);
        // Another query: a miss.
        let r2 = request(Action::Publish, "live/cam1", &[("k", "w")]);
        assert_eq!(c.check(&r2).await, denied);
        assert_eq!(seen(&srv).len(), 2);
        // 5xx answers are not cached.
        let p = request(Action::Play, "live/cam1", &[]);
        c.check(&p).await;
        c.check(&p).await;
        assert_eq!(seen(&srv).len(), 4);
        assert_eq!(c.latency().count, 4, "hits are not calls");
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let addr = closed_port();
        let c = HookChecker::new(HooksConfig {
            cache_s: 3_600,
            ..hooks(addr, "/ok", "")
        })
        .unwrap();
        let r = request(Action::Publish, "live/cam1", &[]);
        c.check(&r).await;
        c.check(&r).await;
        assert_eq!(c.latency().count, 2);
        assert_eq!(c.cache.as_ref().unwrap().len(), 0);
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let cache = Cache {
            ttl: Duration::from_secs(10),
            inner: Mutex::new(CacheInner::default()),
        };
        let t0 = Instant::now();
        let key = |i: usize| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            k
        };
        cache.put(key(0), Outcome::Allow, t0);
        assert_eq!(
            cache.get(&key(0), t0 + Duration::from_secs(9)),
            Some(Outcome::Allow)
        );
        assert_eq!(cache.get(&key(0), t0 + Duration::from_secs(10)), None);
        for i in 1..=CACHE_ENTRIES + 50 {
            cache.put(key(i), Outcome::Allow, t0 + Duration::from_secs(1));
        }
        assert_eq!(cache.len(), CACHE_ENTRIES);
        assert_eq!(
            cache.get(&key(1), t0 + Duration::from_secs(2)),
            None,
            "oldest evicted"
        );
        assert!(cache
            .get(&key(CACHE_ENTRIES + 50), t0 + Duration::from_secs(2))
            .is_some());
        // Re-putting one key many times keeps the order queue bounded.
        for _ in 0..3 * CACHE_ENTRIES {
            cache.put(key(7), Outcome::Allow, t0 + Duration::from_secs(2));
        }
        assert!(lock(&cache.inner).order.len() <= 2 * CACHE_ENTRIES + 1);
        // Later, everything expired is dropped on the next put.
        cache.put(key(1), Outcome::Allow, t0 + Duration::from_secs(60));
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn notifications_are_sent_after_the_fact_with_retries() {
        let (addr, srv) = server().await;
        srv.flaky_failures.store(2, Ordering::SeqCst);
        let c = HookChecker::new(HooksConfig {
            on_publish_done: format!("http://{addr}/flaky"),
            on_disconnect: format!("http://{addr}/ok"),
            retries: 3,
            ..hooks(addr, "/ok", "")
        })
        .unwrap();
        let r = request(Action::Publish, "live/cam1", &[("token", "t")]);
        // Queued before the sender runs: nothing is sent yet, nothing waits.
        c.notify(Notice::PublishDone, &r, &[("bytes_in", "1234".into())]);
        c.notify(Notice::PlayDone, &r, &[]); // no hook: ignored
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(seen(&srv).is_empty());
        let stop = CancellationToken::new();
        let task = c.spawn(stop.clone()).expect("first spawn");
        assert!(c.spawn(stop.clone()).is_none(), "started once");
        c.notify(Notice::Disconnect, &r, &[]);
        eventually("delivery", || c.notify_stats().sent == 2).await;
        let s = seen(&srv);
        let flaky: Vec<_> = s.iter().filter(|(p, _)| p == "/flaky").collect();
        assert_eq!(flaky.len(), 3, "two failures, then delivered");
        let f = &flaky[2].1;
        let at = |k: &str| f.iter().position(|(n, _)| n == k).unwrap();
        assert_eq!(f[at("call")].1, "publish_done");
        assert_eq!(f[at("name")].1, "cam1");
        assert_eq!(f[at("bytes_in")].1, "1234");
        assert!(at("bytes_in") < at("token"));
        let d = &s.iter().find(|(p, _)| p == "/ok").unwrap().1;
        assert!(d.contains(&("call".into(), "disconnect".into())));
        assert!(!d.iter().any(|(k, _)| k == "name"));
        assert_eq!(
            c.notify_stats(),
            NotifyStats {
                sent: 2,
                failed: 0,
                dropped: 0
            }
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn notifications_give_up_after_the_retries() {
        let (addr, srv) = server().await;
        let c = HookChecker::new(HooksConfig {
            on_play_done: format!("http://{addr}/error"),
            on_publish_done: format!("http://{addr}/deny"),
            retries: 2,
            ..hooks(addr, "/ok", "")
        })
        .unwrap();
        let stop = CancellationToken::new();
        let _task = c.spawn(stop.clone());
        let r = request(Action::Play, "live/cam1", &[]);
        c.notify(Notice::PlayDone, &r, &[]);
        c.notify(Notice::PublishDone, &r, &[]);
        eventually("giving up", || c.notify_stats().failed == 2).await;
        let s = seen(&srv);
        assert_eq!(
            s.iter().filter(|(p, _)| p == "/error").count(),
            3,
            "1 + 2 retries"
        );
        assert_eq!(
            s.iter().filter(|(p, _)| p == "/deny").count(),
            1,
            "4xx is not retried"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let c = HookChecker::new(HooksConfig {
            on_disconnect: "http://127.0.0.1:9/never".into(),
            ..HooksConfig::default()
        })
        .unwrap();
        let r = request(Action::Play, "live/cam1", &[]);
        for _ in 0..QUEUE + 10 {
            c.notify(Notice::Disconnect, &r, &[]);
        }
        assert_eq!(c.notify_stats().dropped, 10);
    }

    #[test]
    fn config_is_checked() {
        for (cfg, key) in [
            (
                HooksConfig {
                    on_publish: "not a url".into(),
                    ..HooksConfig::default()
                },
                "hooks.on_publish",
            ),
            (
                HooksConfig {
                    on_play_done: "ftp://host/x".into(),
                    ..HooksConfig::default()
                },
                "hooks.on_play_done",
            ),
            (
                HooksConfig {
                    timeout_ms: 0,
                    ..HooksConfig::default()
                },
                "hooks.timeout_ms",
            ),
            (
                HooksConfig {
                    retries: 11,
                    ..HooksConfig::default()
                },
                "hooks.retries",
            ),
        ] {
            let err = HookChecker::new(cfg).err().expect("refused");
            assert!(err.starts_with(key), "{key}: {err}");
        }
        assert!(HookChecker::new(HooksConfig::default()).is_ok());
    }

    #[test]
    fn latency_buckets_are_cumulative() {
        let cell = LatencyCell::default();
        cell.observe(Duration::from_millis(3));
        cell.observe(Duration::from_millis(5));
        cell.observe(Duration::from_millis(60));
        cell.observe(Duration::from_secs(10));
        let h = cell.snapshot();
        assert_eq!(h.le, [2, 2, 2, 2, 3, 3, 3, 3, 3, 3]);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum_us, 10_068_000);
        assert!((h.sum_seconds() - 10.068).abs() < 1e-9);
    }
}
