//! JWT: a token in the query (`?jwt=...`, as MediaMTX does) whose claims list what its holder
//! may do, verified with `jsonwebtoken` (HS256, RS256 or ES256; keys from the config, a PEM
//! file, or a JWKS file or URL refreshed in the background).
//!
//! Owns: the key set and its refresh, the validation rules, and the permissions claim.
//! Must never: fetch or read keys on the connect path (the checker reads the latest key set
//! from memory; refreshes happen in a background task), drop good keys because a refresh
//! failed, accept a token signed with another algorithm than the configured one (no `alg`
//! confusion), extend `exp` or `nbf` (no leeway: the issuer chose them), or read more than a
//! bounded token, key file or JWKS document.
//!
//! Validation: signature with the configured algorithm; `exp` required; `nbf` when present;
//! `iss` required and checked when `jwt.issuer` is set, `aud` likewise with `jwt.audience`.
//! A token that names an audience is refused while `jwt.audience` is unset (RFC 7519 4.1.3).
//!
//! Permissions, in the claim named `jwt.claim` (default `ringcast`):
//!
//! ```json
//! "ringcast": [{"action": "publish", "stream": "live/*"}, {"action": "play", "stream": "*"}]
//! ```
//!
//! `stream` is a glob on `APP/STREAM`: `*` matches any run of characters (`/` included), `?`
//! one character; a permission without `stream` matches no stream. Publish and play need a
//! matching permission. Connect is allowed by any valid token that lists at least one
//! permission (so a publisher's token also lets it connect; `{"action": "connect"}` alone is
//! enough for a client that only connects); what it may then publish or play is checked
//! again on publish and play. Unknown actions are ignored.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Url;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Action, Checker, Outcome, Request};
use crate::http_client;

/// Longest token read from the query.
pub const MAX_TOKEN: usize = 8 * 1024;
/// Largest key file or JWKS document.
pub const MAX_KEY_DOCUMENT: u64 = 1024 * 1024;
/// Keys kept from one JWKS document at most.
pub const MAX_KEYS: usize = 64;
/// Permissions looked at in one token at most; more deny.
pub const MAX_PERMISSIONS: usize = 64;
/// Longest stream pattern in a permission; longer ones match nothing.
const MAX_PATTERN: usize = 512;
/// Shortest HS256 secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// One JWKS fetch (connect, answer and body) takes at most this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed refresh, the next try comes this soon (or at the refresh period if shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// A token with an unknown `kid` asks for an early refresh, at most this often.
const MIN_KICK_INTERVAL: Duration = Duration::from_secs(10);

/// `[jwt]`. Empty strings are "not set".
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct JwtConfig {
    /// `HS256`, `RS256` or `ES256`.
    pub algorithm: String,
    /// HS256: the shared secret (its bytes as written), at least [`MIN_SECRET_LEN`].
    pub secret: String,
    /// RS256/ES256: a PEM public key file (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY`).
    pub key_file: String,
    /// RS256/ES256: a JWKS file, re-read every `jwks_refresh_s`.
    pub jwks_file: String,
    /// RS256/ES256: a JWKS URL, fetched in the background every `jwks_refresh_s`.
    pub jwks_url: String,
    pub jwks_refresh_s: u64,
    /// The query argument with the token.
    pub param: String,
    /// The claim with the permissions.
    pub claim: String,
    /// Required `iss`, if set.
    pub issuer: String,
    /// Required `aud`, if set.
    pub audience: String,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            algorithm: String::new(),
            secret: String::new(),
            key_file: String::new(),
            jwks_file: String::new(),
            jwks_url: String::new(),
            jwks_refresh_s: 300,
            param: "jwt".to_owned(),
            claim: "ringcast".to_owned(),
            issuer: String::new(),
            audience: String::new(),
        }
    }
}

/// Selects `jsonwebtoken`'s RustCrypto provider for the process, once. With only the
/// `rust_crypto` feature the crate would pick it by itself; installing it explicitly keeps
/// that true should another crate in the tree ever enable `aws_lc_rs` as well (with both, the
/// crate has no default and panics on first use). Idempotent; called by [`JwtChecker::new`].
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err: a provider is installed already, which is then used.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

/// Keys to verify with. `kid` is `None` for a configured secret or PEM key.
#[derive(Default)]
struct KeySet {
    keys: Vec<(Option<String>, DecodingKey)>,
}

/// Where keys come from after construction.
enum Source {
    /// A secret or PEM file: never refreshed.
    Fixed,
    File(PathBuf),
    Url(Url, reqwest::Client),
}

/// One permission in the claim.
#[derive(Debug, Deserialize)]
struct Permission {
    action: String,
    #[serde(default)]
    stream: Option<String>,
}

/// Verifies JWTs (checker name `jwt`).
pub struct JwtChecker {
    algorithm: Algorithm,
    validation: Validation,
    param: String,
    claim: String,
    keys: RwLock<Arc<KeySet>>,
    source: Source,
    refresh: Duration,
    /// Wakes the refresh task early (a token named a `kid` we do not have)...
    kick: Arc<Notify>,
    /// ...at most this often.
    min_kick: Duration,
    /// In a streak of failed refreshes (logged once per streak).
    failing: AtomicBool,
}

impl JwtChecker {
    /// Checks the config, reads the PEM key or JWKS file, and installs the crypto provider.
    /// A JWKS URL is not fetched here: the key set is empty (every token is refused) until
    /// the task of [`JwtChecker::spawn_refresh`] fetched it, or [`JwtChecker::refresh_now`]
    /// was awaited.
    pub fn new(cfg: JwtConfig) -> Result<Arc<JwtChecker>, String> {
        install_crypto_provider();
        let algorithm = match cfg.algorithm.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(format!(
                    "jwt.algorithm: {other:?} is not one of HS256, RS256, ES256"
                ))
            }
        };
        if cfg.param.is_empty() {
            return Err("jwt.param: the query argument name is empty".to_owned());
        }
        if cfg.claim.is_empty() {
            return Err("jwt.claim: the claim name is empty".to_owned());
        }
        if cfg.jwks_refresh_s == 0 || cfg.jwks_refresh_s > 86_400 {
            return Err(format!(
                "jwt.jwks_refresh_s: {} is not in 1..=86400",
                cfg.jwks_refresh_s
            ));
        }
        let set: Vec<&str> = [
            ("jwt.key_file", &cfg.key_file),
            ("jwt.jwks_file", &cfg.jwks_file),
            ("jwt.jwks_url", &cfg.jwks_url),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| *k)
        .collect();
        let (keys, source) = if algorithm == Algorithm::HS256 {
            if !set.is_empty() {
                return Err(format!(
                    "{}: HS256 takes its key from jwt.secret only",
                    set.join(", ")
                ));
            }
            if cfg.secret.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "jwt.secret: HS256 needs a secret of at least {MIN_SECRET_LEN} bytes"
                ));
            }
            let key = DecodingKey::from_secret(cfg.secret.as_bytes())
                .map_err(|e| format!("jwt.secret: {e}"))?;
            (
                KeySet {
                    keys: vec![(None, key)],
                },
                Source::Fixed,
            )
        } else {
            if !cfg.secret.is_empty() {
                return Err(format!(
                    "jwt.secret: {} uses a public key, not a secret",
                    cfg.algorithm
                ));
            }
            if set.len() != 1 {
                return Err(format!(
                    "{} needs exactly one of jwt.key_file, jwt.jwks_file, jwt.jwks_url",
                    cfg.algorithm
                ));
            }
            if !cfg.key_file.is_empty() {
                let pem = read_bounded(Path::new(&cfg.key_file))
                    .map_err(|e| format!("jwt.key_file: {e}"))?;
                let key = match algorithm {
                    Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                    _ => DecodingKey::from_ec_pem(&pem),
                }
                .map_err(|e| {
                    format!(
                        "jwt.key_file: {:?} is not a {} public key in PEM ({e})",
                        cfg.key_file, cfg.algorithm
                    )
                })?;
                (
                    KeySet {
                        keys: vec![(None, key)],
                    },
                    Source::Fixed,
                )
            } else if !cfg.jwks_file.is_empty() {
                let path = PathBuf::from(&cfg.jwks_file);
                let doc = read_bounded(&path).map_err(|e| format!("jwt.jwks_file: {e}"))?;
                let keys = parse_jwks(&doc, algorithm)
                    .map_err(|e| format!("jwt.jwks_file: {:?}: {e}", cfg.jwks_file))?;
                (keys, Source::File(path))
            } else {
                let url = Url::parse(&cfg.jwks_url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or_else(|| {
                        format!("jwt.jwks_url: {:?} is not an http(s) URL", cfg.jwks_url)
                    })?;
                (KeySet::default(), Source::Url(url, http_client::client()?))
            }
        };

        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        let mut required = vec!["exp"];
        if !cfg.issuer.is_empty() {
            validation.set_issuer(&[&cfg.issuer]);
            required.push("iss");
        }
        if !cfg.audience.is_empty() {
            validation.set_audience(&[&cfg.audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);

        Ok(Arc::new(JwtChecker {
            algorithm,
            validation,
            param: cfg.param,
            claim: cfg.claim,
            keys: RwLock::new(Arc::new(keys)),
            source,
            refresh: Duration::from_secs(cfg.jwks_refresh_s),
            kick: Arc::new(Notify::new()),
            min_kick: MIN_KICK_INTERVAL,
            failing: AtomicBool::new(false),
        }))
    }

    /// Starts the background refresh of a JWKS file or URL (a URL is fetched at once, then
    /// every `jwks_refresh_s`; a file is re-read every `jwks_refresh_s`). `None` when the
    /// keys are fixed (secret or PEM file). The task ends on `stop` or when the checker is
    /// dropped.
    pub fn spawn_refresh(self: &Arc<Self>, stop: CancellationToken) -> Option<JoinHandle<()>> {
        let first_wait = match self.source {
            Source::Fixed => return None,
            Source::File(_) => self.refresh,
            Source::Url(..) => Duration::ZERO,
        };
        let me = Arc::downgrade(self);
        let kick = self.kick.clone();
        let refresh = self.refresh;
        let min_kick = self.min_kick.min(refresh);
        Some(tokio::spawn(async move {
            let mut next = Instant::now() + first_wait;
            let mut last_fetch: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(next) => {}
                    _ = kick.notified() => {
                        // Early, but not more often than `min_kick` (kicks come from clients).
                        if let Some(last) = last_fetch {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                _ = tokio::time::sleep_until(last + min_kick) => {}
                            }
                        }
                    }
                }
                let Some(checker) = me.upgrade() else {
                    return;
                };
                last_fetch = Some(Instant::now());
                let ok = checker.refresh_now().await.is_ok();
                drop(checker);
                next = Instant::now()
                    + if ok {
                        refresh
                    } else {
                        RETRY_AFTER_FAILURE.min(refresh)
                    };
            }
        }))
    }

    /// Loads the JWKS file or URL now and, if it holds usable keys, makes them the key set
    /// (the number of keys). On failure the old keys stay. Fixed keys: `Ok` with their count.
    /// For startup (to fail fast or wait for a JWKS URL) and for the refresh task; never
    /// called on the connect path.
    pub async fn refresh_now(&self) -> Result<usize, String> {
        let loaded = match &self.source {
            Source::Fixed => return Ok(self.current().keys.len()),
            Source::File(path) => {
                let path = path.clone();
                match tokio::task::spawn_blocking(move || read_bounded(&path)).await {
                    Ok(Ok(doc)) => parse_jwks(&doc, self.algorithm),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(format!("reading the JWKS file failed: {e}")),
                }
            }
            Source::Url(url, client) => match fetch(client, url).await {
                Ok(doc) => parse_jwks(&doc, self.algorithm),
                Err(e) => Err(e),
            },
        };
        match loaded {
            Ok(keys) => {
                let n = keys.keys.len();
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                if self.failing.swap(false, Ordering::Relaxed) {
                    info!(keys = n, "JWKS refreshed again");
                } else {
                    debug!(keys = n, "JWKS refreshed");
                }
                Ok(n)
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!(error = %e, "JWKS refresh failed; keeping the previous keys (further failures are not logged until one succeeds)");
                }
                Err(e)
            }
        }
    }

    /// How many keys are loaded now.
    pub fn key_count(&self) -> usize {
        self.current().keys.len()
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The decision on `request` (what [`Checker::check`] does).
    pub fn verify(&self, request: &Request) -> Outcome {
        let Some(token) = request.arg(&self.param) else {
            return Outcome::Deny(format!("no JWT: the query needs {}", self.param));
        };
        if token.len() > MAX_TOKEN {
            return Outcome::Deny("JWT too long".to_owned());
        }
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(_) => return Outcome::Deny("malformed JWT".to_owned()),
        };
        if header.alg != self.algorithm {
            return Outcome::Deny(format!(
                "JWT signed with {:?}, {:?} expected",
                header.alg, self.algorithm
            ));
        }
        let keys = self.current();
        if keys.keys.is_empty() {
            self.kick.notify_one();
            return Outcome::Deny("JWT keys not loaded yet".to_owned());
        }
        // A fixed key has no kid: the token's is irrelevant. In a JWKS, a kid picks its key.
        let by_kid = match header.kid.as_deref() {
            Some(kid) if keys.keys.iter().any(|(k, _)| k.is_some()) => Some(kid),
            _ => None,
        };
        let mut tried = false;
        for (kid, key) in &keys.keys {
            if by_kid.is_some() && kid.as_deref() != by_kid {
                continue;
            }
            tried = true;
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                key,
                &self.validation,
            ) {
                Ok(data) => return self.permit(&data.claims, request),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Outcome::Deny(describe(e.kind(), &self.claim)),
            }
        }
        if !tried {
            // Perhaps a key the issuer just published: fetch early (in the background).
            self.kick.notify_one();
            return Outcome::Deny("JWT signed with an unknown key (kid)".to_owned());
        }
        Outcome::Deny("JWT signature invalid".to_owned())
    }

    fn permit(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
        request: &Request,
    ) -> Outcome {
        let Some(value) = claims.get(&self.claim) else {
            return Outcome::Deny(format!("JWT has no {} claim", self.claim));
        };
        let list = match value.as_array() {
            Some(list) if list.len() <= MAX_PERMISSIONS => list,
            Some(_) => return Outcome::Deny(format!("JWT {} claim is too long", self.claim)),
            None => return Outcome::Deny(format!("JWT {} claim is not a list", self.claim)),
        };
        let mut permissions = Vec::with_capacity(list.len());
        for p in list {
            match Permission::deserialize(p) {
                Ok(p) => permissions.push(p),
                Err(_) => {
                    return Outcome::Deny(format!(
                        "JWT {} claim has a malformed permission",
                        self.claim
                    ))
                }
            }
        }
        let action = request.action.as_str();
        let allowed = match request.action {
            Action::Connect => !permissions.is_empty(),
            Action::Publish | Action::Play => permissions.iter().any(|p| {
                p.action == action
                    && p.stream
                        .as_deref()
                        .is_some_and(|pattern| glob(pattern, &request.key))
            }),
        };
        if allowed {
            Outcome::Allow
        } else if request.action == Action::Connect {
            Outcome::Deny("JWT lists no permissions".to_owned())
        } else {
            Outcome::Deny(format!("JWT does not allow {action} of {}", request.key))
        }
    }
}

#[async_trait]
impl Checker for JwtChecker {
    fn name(&self) -> &'static str {
        "jwt"
    }

    async fn check(&self, request: &Request) -> Outcome {
        self.verify(request)
    }
}

/// A client-facing reason for a token that failed after its signature was checked (or
/// before, for its shape).
fn describe(kind: &ErrorKind, claim: &str) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "JWT expired".to_owned(),
        ErrorKind::ImmatureSignature => "JWT not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidAudience => "JWT audience not accepted".to_owned(),
        ErrorKind::InvalidIssuer => "JWT issuer not accepted".to_owned(),
        ErrorKind::MissingRequiredClaim(c) => format!("JWT has no {c} claim"),
        ErrorKind::InvalidClaimFormat(c) => format!("JWT {c} claim is malformed"),
        ErrorKind::InvalidAlgorithm => "JWT algorithm not accepted".to_owned(),
        ErrorKind::Json(_) => format!("JWT claims are malformed (or {claim} is)"),
        _ => "malformed JWT".to_owned(),
    }
}

/// `*` matches any run of characters (`/` included), `?` exactly one; everything else
/// itself. Linear backtracking on the last `*`: O(pattern x text) at worst, both bounded.
pub fn glob(pattern: &str, text: &str) -> bool {
    if pattern.len() > MAX_PATTERN {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Reads a file of at most [`MAX_KEY_DOCUMENT`] bytes.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path:?}: {e}"))?;
    let mut doc = Vec::new();
    file.take(MAX_KEY_DOCUMENT + 1)
        .read_to_end(&mut doc)
        .map_err(|e| format!("{path:?}: {e}"))?;
    if doc.len() as u64 > MAX_KEY_DOCUMENT {
        return Err(format!("{path:?} is larger than {MAX_KEY_DOCUMENT} bytes"));
    }
    Ok(doc)
}

/// GETs a JWKS document: a 2xx, at most [`MAX_KEY_DOCUMENT`] bytes, within
/// [`FETCH_TIMEOUT`] in all.
async fn fetch(client: &reqwest::Client, url: &Url) -> Result<Vec<u8>, String> {
    let get = async {
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("JWKS unreachable: {}", http_client::describe_error(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("JWKS URL answered {}", status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_KEY_DOCUMENT)
        {
            return Err(format!("JWKS larger than {MAX_KEY_DOCUMENT} bytes"));
        }
        let mut doc = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("JWKS body: {}", http_client::describe_error(e)))?
        {
            if (doc.len() + chunk.len()) as u64 > MAX_KEY_DOCUMENT {
                return Err(format!("JWKS larger than {MAX_KEY_DOCUMENT} bytes"));
            }
            doc.extend_from_slice(&chunk);
        }
        Ok(doc)
    };
    tokio::time::timeout(FETCH_TIMEOUT, get)
        .await
        .map_err(|_| format!("JWKS fetch timed out after {} s", FETCH_TIMEOUT.as_secs()))?
}

/// The keys of a JWKS document usable for `algorithm`: RSA keys for RS256, P-256 keys for
/// ES256, without a `use` other than `sig` or an `alg` other than `algorithm`. Keys that do
/// not parse are skipped (a set may hold key types we do not know); none usable is an error.
fn parse_jwks(doc: &[u8], algorithm: Algorithm) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(doc).map_err(|e| format!("not a JWKS document ({e})"))?;
    let wanted = match algorithm {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        _ => KeyAlgorithm::HS256,
    };
    let mut keys = Vec::new();
    let mut kids: HashSet<String> = HashSet::new();
    for value in doc.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let fits = match (&jwk.algorithm, algorithm) {
            (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
            (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
                ec.curve == EllipticCurve::P256
            }
            _ => false,
        };
        let use_ok = match &jwk.common.public_key_use {
            None | Some(PublicKeyUse::Signature) => true,
            Some(_) => false,
        };
        let alg_ok = jwk.common.key_algorithm.is_none_or(|a| a == wanted);
        if !(fits && use_ok && alg_ok) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let kid = jwk.common.key_id.clone();
        if let Some(k) = &kid {
            // A repeated kid is ambiguous: keep the first.
            if !kids.insert(k.clone()) {
                continue;
            }
        }
        keys.push((kid, key));
        if keys.len() == MAX_KEYS {
            break;
        }
    }
    if keys.is_empty() {
        return Err(format!("no {wanted:?} signing key in the JWKS"));
    }
    Ok(KeySet { keys })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::token::tests::request;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;
    use std::sync::Mutex;

    const SECRET: &str = "a-test-secret-of-some-length";
    const RSA1: &str = include_str!("testdata/rsa1.key.pem");
    const RSA2: &str = include_str!("testdata/rsa2.key.pem");
    const EC1: &str = include_str!("testdata/ec1.key.pem");

    fn testdata(name: &str) -> String {
        format!("{}/src/access/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn now() -> u64 {
        crate::access::token::now_unix()
    }

    fn claims(perms: serde_json::Value) -> serde_json::Value {
        json!({"exp": now() + 600, "sub": "cam", "ringcast": perms})
    }

    fn token(
        alg: Algorithm,
        key: &EncodingKey,
        kid: Option<&str>,
        claims: &serde_json::Value,
    ) -> String {
        install_crypto_provider();
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, key).unwrap()
    }

    fn hs() -> EncodingKey {
        EncodingKey::from_secret(SECRET.as_bytes()).unwrap()
    }

    fn rsa(pem: &str) -> EncodingKey {
        EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
    }

    fn ec() -> EncodingKey {
        EncodingKey::from_ec_pem(EC1.as_bytes()).unwrap()
    }

    fn hs_checker(f: impl FnOnce(&mut JwtConfig)) -> Arc<JwtChecker> {
        let mut cfg = JwtConfig {
            algorithm: "HS256".into(),
            secret: SECRET.into(),
            ..JwtConfig::default()
        };
        f(&mut cfg);
        JwtChecker::new(cfg).unwrap()
    }

    fn with_jwt(action: Action, key: &str, jwt: &str) -> Request {
        request(action, key, &[("jwt", jwt)])
    }

    fn deny_reason(o: Outcome) -> String {
        match o {
            Outcome::Deny(why) => why,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn jwks(keys: &[(&str, &EncodingKey, Algorithm)]) -> String {
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|(kid, key, alg)| {
                let mut jwk = Jwk::from_encoding_key(key, *alg).unwrap();
                jwk.common.key_id = Some(kid.to_string());
                serde_json::to_value(jwk).unwrap()
            })
            .collect();
        json!({ "keys": keys }).to_string()
    }

    #[test]
    fn globs() {
        assert!(glob("*", "live/cam1"));
        assert!(glob("live/*", "live/cam1"));
        assert!(glob("live/*", "live/a/b"));
        assert!(!glob("live/*", "other/cam1"));
        assert!(glob("live/cam?", "live/cam1"));
        assert!(!glob("live/cam?", "live/cam12"));
        assert!(glob("*/cam1", "live/cam1"));
        assert!(glob("l*e/*1", "live/cam1"));
        assert!(!glob("l*e/*2", "live/cam1"));
        assert!(glob("live/cam1", "live/cam1"));
        assert!(!glob("live/cam", "live/cam1"));
        assert!(glob("**a**", "bab"));
        assert!(!glob("", "x"));
        assert!(glob("", ""));
        assert!(glob("*", ""));
        assert!(!glob("?", ""));
        assert!(glob("live/é?", "live/éa"));
        assert!(!glob(&"*a".repeat(300), &"a".repeat(100)));
        // Worst case stays quick (bounded lengths).
        assert!(!glob(&format!("{}b", "*a".repeat(200)), &"a".repeat(300)));
    }

    #[test]
    fn hs256_permissions() {
        let c = hs_checker(|_| {});
        let t = token(
            Algorithm::HS256,
            &hs(),
            None,
            &claims(json!([
                {"action": "publish", "stream": "live/*"},
                {"action": "play", "stream": "*"},
                {"action": "fly", "stream": "*"},
            ])),
        );
        assert_eq!(
            c.verify(&with_jwt(Action::Publish, "live/cam1", &t)),
            Outcome::Allow
        );
        assert_eq!(
            c.verify(&with_jwt(Action::Play, "other/x", &t)),
            Outcome::Allow
        );
        assert_eq!(
            c.verify(&with_jwt(Action::Connect, "live", &t)),
            Outcome::Allow
        );
        assert_eq!(
            deny_reason(c.verify(&with_jwt(Action::Publish, "other/cam1", &t))),
            "JWT does not allow publish of other/cam1"
        );
        // A permission without stream matches nothing; connect needs some permission.
        let t = token(
            Algorithm::HS256,
            &hs(),
            None,
            &claims(json!([{"action": "publish"}])),
        );
        assert!(matches!(
            c.verify(&with_jwt(Action::Publish, "live/x", &t)),
            Outcome::Deny(_)
        ));
        assert_eq!(
            c.verify(&with_jwt(Action::Connect, "live", &t)),
            Outcome::Allow
        );
        let t = token(Algorithm::HS256, &hs(), None, &claims(json!([])));
        assert_eq!(
            deny_reason(c.verify(&with_jwt(Action::Connect, "live", &t))),
            "JWT lists no permissions"
        );
        let t = token(
            Algorithm::HS256,
            &hs(),
            None,
            &claims(json!([{"action": "connect"}])),
        );
        assert_eq!(
            c.verify(&with_jwt(Action::Connect, "live", &t)),
            Outcome::Allow
        );
        assert!(matches!(
            c.verify(&with_jwt(Action::Play, "live/x", &t)),
            Outcome::Deny(_)
        ));
    }

    #[test]
    fn bad_tokens_deny_with_reasons() {
        let c = hs_checker(|_| {});
        let perms = json!([{"action": "play", "stream": "*"}]);
        let play = |t: &str| deny_reason(c.verify(&with_jwt(Action::Play, "live/cam1", t)));
        assert_eq!(
            deny_reason(c.verify(&request(Action::Play, "live/cam1", &[]))),
            "no JWT: the query needs jwt"
        );
        assert_eq!(play("not.a.jwt"), "malformed JWT");
        assert_eq!(play(&"a".repeat(MAX_TOKEN + 1)), "JWT too long");
        let expired = json!({"exp": now() - 1, "ringcast": perms});
        assert_eq!(
            play(&token(Algorithm::HS256, &hs(), None, &expired)),
            "JWT expired"
        );
        let early = json!({"exp": now() + 600, "nbf": now() + 300, "ringcast": perms});
        assert_eq!(
            play(&token(Algorithm::HS256, &hs(), None, &early)),
            "JWT not valid yet (nbf)"
        );
        let no_exp = json!({"ringcast": perms});
        assert_eq!(
            play(&token(Algorithm::HS256, &hs(), None, &no_exp)),
            "JWT has no exp claim"
        );
        let other = EncodingKey::from_secret(b"another-secret-entirely").unwrap();
        assert_eq!(
            play(&token(
                Algorithm::HS256,
                &other,
                None,
                &claims(perms.clone())
            )),
            "JWT signature invalid"
        );
        // Another algorithm than configured, even with a valid signature of its own.
        assert!(play(&token(
            Algorithm::RS256,
            &rsa(RSA1),
            None,
            &claims(perms.clone())
        ))
        .contains("expected"));
        let t = token(Algorithm::HS256, &hs(), None, &json!({"exp": now() + 60}));
        assert_eq!(play(&t), "JWT has no ringcast claim");
        let t = token(
            Algorithm::HS256,
            &hs(),
            None,
            &claims(json!({"action": "play"})),
        );
        assert_eq!(play(&t), "JWT ringcast claim is not a list");
        let t = token(
            Algorithm::HS256,
            &hs(),
            None,
            &claims(json!([{"action": 5}])),
        );
        assert_eq!(play(&t), "JWT ringcast claim has a malformed permission");
        let many: Vec<_> = (0..MAX_PERMISSIONS + 1)
            .map(|_| json!({"action": "play", "stream": "*"}))
            .collect();
        let t = token(Algorithm::HS256, &hs(), None, &claims(json!(many)));
        assert_eq!(play(&t), "JWT ringcast claim is too long");
        // A tampered payload.
        let good = token(Algorithm::HS256, &hs(), None, &claims(perms.clone()));
        let parts: Vec<&str> = good.split('.').collect();
        let forged_claims = token(
            Algorithm::HS256,
            &other,
            None,
            &claims(json!([{"action": "publish", "stream": "*"}])),
        );
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            forged_claims.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(play(&forged), "JWT signature invalid");
    }

    #[test]
    fn issuer_and_audience() {
        let c = hs_checker(|cfg| {
            cfg.issuer = "https://idp.example".into();
            cfg.audience = "ringcast".into();
        });
        let perms = json!([{"action": "play", "stream": "*"}]);
        let mk = |extra: serde_json::Value| {
            let mut v = claims(perms.clone());
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            token(Algorithm::HS256, &hs(), None, &v)
        };
        let play = |t: &str| c.verify(&with_jwt(Action::Play, "live/cam1", t));
        assert_eq!(
            play(&mk(
                json!({"iss": "https://idp.example", "aud": "ringcast"})
            )),
            Outcome::Allow
        );
        assert_eq!(
            play(&mk(
                json!({"iss": "https://idp.example", "aud": ["x", "ringcast"]})
            )),
            Outcome::Allow
        );
        assert_eq!(
            deny_reason(play(&mk(
                json!({"iss": "https://idp.example", "aud": "other"})
            ))),
            "JWT audience not accepted"
        );
        assert_eq!(
            deny_reason(play(&mk(
                json!({"iss": "https://evil.example", "aud": "ringcast"})
            ))),
            "JWT issuer not accepted"
        );
        assert_eq!(
            deny_reason(play(&mk(json!({"aud": "ringcast"})))),
            "JWT has no iss claim"
        );
        assert_eq!(
            deny_reason(play(&mk(json!({"iss": "https://idp.example"})))),
            "JWT has no aud claim"
        );
        // Without jwt.audience, a token naming an audience is refused.
        let plain = hs_checker(|_| {});
        let t = mk(json!({"aud": "ringcast"}));
        assert_eq!(
            deny_reason(plain.verify(&with_jwt(Action::Play, "live/cam1", &t))),
            "JWT audience not accepted"
        );
    }

    #[test]
    fn rs256_and_es256_with_pem_files() {
        let perms = json!([{"action": "publish", "stream": "live/cam?"}]);
        let rs = JwtChecker::new(JwtConfig {
            algorithm: "RS256".into(),
            key_file: testdata("rsa1.pub.pem"),
            ..JwtConfig::default()
        })
        .unwrap();
        assert!(rs.spawn_refresh(CancellationToken::new()).is_none());
        let t = token(
            Algorithm::RS256,
            &rsa(RSA1),
            Some("ignored"),
            &claims(perms.clone()),
        );
        assert_eq!(
            rs.verify(&with_jwt(Action::Publish, "live/cam1", &t)),
            Outcome::Allow
        );
        let t = token(Algorithm::RS256, &rsa(RSA2), None, &claims(perms.clone()));
        assert_eq!(
            deny_reason(rs.verify(&with_jwt(Action::Publish, "live/cam1", &t))),
            "JWT signature invalid"
        );

        let es = JwtChecker::new(JwtConfig {
            algorithm: "ES256".into(),
            key_file: testdata("ec1.pub.pem"),
            ..JwtConfig::default()
        })
        .unwrap();
        let t = token(Algorithm::ES256, &ec(), None, &claims(perms.clone()));
        assert_eq!(
            es.verify(&with_jwt(Action::Publish, "live/cam2", &t)),
            Outcome::Allow
        );
        assert!(matches!(
            es.verify(&with_jwt(Action::Publish, "live/cam10", &t)),
            Outcome::Deny(_)
        ));
        // An HS256 token made with the public key as secret (the classic confusion).
        let pubkey = std::fs::read(testdata("ec1.pub.pem")).unwrap();
        let confused = token(
            Algorithm::HS256,
            &EncodingKey::from_secret(&pubkey).unwrap(),
            None,
            &claims(perms),
        );
        assert!(
            deny_reason(es.verify(&with_jwt(Action::Publish, "live/cam2", &confused)))
                .contains("expected")
        );
    }

    #[test]
    fn config_is_checked() {
        let cases = [
            (JwtConfig::default(), "jwt.algorithm"),
            (
                JwtConfig {
                    algorithm: "HS256".into(),
                    secret: "short".into(),
                    ..JwtConfig::default()
                },
                "jwt.secret",
            ),
            (
                JwtConfig {
                    algorithm: "HS256".into(),
                    secret: SECRET.into(),
                    key_file: testdata("rsa1.pub.pem"),
                    ..JwtConfig::default()
                },
                "jwt.key_file",
            ),
            (
                JwtConfig {
                    algorithm: "RS256".into(),
                    ..JwtConfig::default()
                },
                "RS256 needs exactly one",
            ),
            (
                JwtConfig {
                    algorithm: "RS256".into(),
                    key_file: testdata("rsa1.pub.pem"),
                    jwks_url: "http://127.0.0.1:1/jwks".into(),
                    ..JwtConfig::default()
                },
                "RS256 needs exactly one",
            ),
            (
                JwtConfig {
                    algorithm: "RS256".into(),
                    key_file: "/nonexistent/key.pem".into(),
                    ..JwtConfig::default()
                },
                "jwt.key_file",
            ),
            (
                JwtConfig {
                    algorithm: "ES256".into(),
                    key_file: testdata("rsa1.pub.pem"),
                    ..JwtConfig::default()
                },
                "jwt.key_file",
            ),
            (
                JwtConfig {
                    algorithm: "RS256".into(),
                    jwks_url: "ftp://x/jwks".into(),
                    ..JwtConfig::default()
                },
                "jwt.jwks_url",
            ),
            (
                JwtConfig {
                    algorithm: "RS256".into(),
                    jwks_file: testdata("README.md"),
                    ..JwtConfig::default()
                },
                "jwt.jwks_file",
            ),
            (
                JwtConfig {
                    algorithm: "HS256".into(),
                    secret: SECRET.into(),
                    jwks_refresh_s: 0,
                    ..JwtConfig::default()
                },
                "jwt.jwks_refresh_s",
            ),
        ];
        for (cfg, want) in cases {
            let err = JwtChecker::new(cfg.clone())
                .err()
                .unwrap_or_else(|| panic!("{cfg:?}"));
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringcast-jwt-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[tokio::test]
    async fn jwks_file_selects_by_kid_and_is_reread() {
        let (k1, k2) = (rsa(RSA1), rsa(RSA2));
        let path = temp_file("file", &jwks(&[("one", &k1, Algorithm::RS256)]));
        let c = JwtChecker::new(JwtConfig {
            algorithm: "RS256".into(),
            jwks_file: path.to_string_lossy().into_owned(),
            jwks_refresh_s: 1,
            ..JwtConfig::default()
        })
        .unwrap();
        let perms = json!([{"action": "play", "stream": "*"}]);
        let play = |t: &str| c.verify(&with_jwt(Action::Play, "live/cam1", t));
        assert_eq!(c.key_count(), 1);
        assert_eq!(
            play(&token(
                Algorithm::RS256,
                &k1,
                Some("one"),
                &claims(perms.clone())
            )),
            Outcome::Allow
        );
        // Without a kid, every key is tried.
        assert_eq!(
            play(&token(Algorithm::RS256, &k1, None, &claims(perms.clone()))),
            Outcome::Allow
        );
        let t2 = token(Algorithm::RS256, &k2, Some("two"), &claims(perms.clone()));
        assert_eq!(
            deny_reason(play(&t2)),
            "JWT signed with an unknown key (kid)"
        );
        // A kid naming the wrong key does not fall back to the others.
        let wrong = token(Algorithm::RS256, &k2, Some("one"), &claims(perms.clone()));
        assert_eq!(deny_reason(play(&wrong)), "JWT signature invalid");

        // Rotation: the file gains key two; the refresh task picks it up.
        std::fs::write(
            &path,
            jwks(&[
                ("one", &k1, Algorithm::RS256),
                ("two", &k2, Algorithm::RS256),
            ]),
        )
        .unwrap();
        let stop = CancellationToken::new();
        let task = c
            .spawn_refresh(stop.clone())
            .expect("a JWKS file is refreshed");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while c.key_count() != 2 {
            assert!(std::time::Instant::now() < deadline, "refresh never came");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(play(&t2), Outcome::Allow);
        // A broken file keeps the keys.
        std::fs::write(&path, "{not json").unwrap();
        assert!(c.refresh_now().await.is_err());
        assert_eq!(c.key_count(), 2);
        assert_eq!(play(&t2), Outcome::Allow);
        stop.cancel();
        task.await.unwrap();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn jwks_parsing_filters_keys() {
        let (k1, e1) = (rsa(RSA1), ec());
        let mut doc: serde_json::Value = serde_json::from_str(&jwks(&[
            ("r", &k1, Algorithm::RS256),
            ("e", &e1, Algorithm::ES256),
        ]))
        .unwrap();
        let keys = doc["keys"].as_array_mut().unwrap();
        keys.push(json!({"kty": "OKP", "crv": "X448", "x": "AAAA", "kid": "weird"}));
        keys.push(json!({"kty": "whatever"}));
        let mut enc = keys[0].clone();
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc");
        keys.push(enc);
        let doc = doc.to_string();
        let rs = parse_jwks(doc.as_bytes(), Algorithm::RS256).unwrap();
        assert_eq!(rs.keys.len(), 1);
        assert_eq!(rs.keys[0].0.as_deref(), Some("r"));
        let es = parse_jwks(doc.as_bytes(), Algorithm::ES256).unwrap();
        assert_eq!(es.keys.len(), 1);
        assert_eq!(es.keys[0].0.as_deref(), Some("e"));
        assert!(parse_jwks(b"{\"keys\": []}", Algorithm::RS256).is_err());
        assert!(parse_jwks(b"[]", Algorithm::RS256).is_err());
    }

    /// A JWKS server whose document the test can change.
    async fn jwks_server(doc: Arc<Mutex<String>>) -> std::net::SocketAddr {
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { doc.lock().unwrap().clone() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    #[tokio::test]
    async fn jwks_url_is_fetched_in_the_background_and_refreshed() {
        let (k1, k2) = (rsa(RSA1), rsa(RSA2));
        let doc = Arc::new(Mutex::new(jwks(&[("one", &k1, Algorithm::RS256)])));
        let addr = jwks_server(doc.clone()).await;
        let c = JwtChecker::new(JwtConfig {
            algorithm: "RS256".into(),
            jwks_url: format!("http://{addr}/jwks"),
            jwks_refresh_s: 1,
            ..JwtConfig::default()
        })
        .unwrap();
        let perms = json!([{"action": "play", "stream": "*"}]);
        let t1 = token(Algorithm::RS256, &k1, Some("one"), &claims(perms.clone()));
        let t2 = token(Algorithm::RS256, &k2, Some("two"), &claims(perms.clone()));
        let play = |t: &str| c.verify(&with_jwt(Action::Play, "live/cam1", t));
        // Nothing fetched yet: refused, and the check did not fetch.
        assert_eq!(deny_reason(play(&t1)), "JWT keys not loaded yet");
        let stop = CancellationToken::new();
        let task = c.spawn_refresh(stop.clone()).unwrap();
        let wait_for = |n: usize| {
            let c = c.clone();
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while c.key_count() != n {
                    assert!(std::time::Instant::now() < deadline, "never {n} keys");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        wait_for(1).await;
        assert_eq!(play(&t1), Outcome::Allow);
        assert!(matches!(play(&t2), Outcome::Deny(_)));
        // The issuer rotates: key two replaces key one.
        *doc.lock().unwrap() = jwks(&[("two", &k2, Algorithm::RS256)]);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while play(&t2) != Outcome::Allow {
            assert!(std::time::Instant::now() < deadline, "rotation never seen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(matches!(play(&t1), Outcome::Deny(_)));
        // The server breaks: the keys stay.
        *doc.lock().unwrap() = "oops".into();
        assert!(c.refresh_now().await.is_err());
        assert_eq!(play(&t2), Outcome::Allow);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn an_unknown_kid_asks_for_an_early_refresh() {
        let (k1, k2) = (rsa(RSA1), rsa(RSA2));
        let doc = Arc::new(Mutex::new(jwks(&[("one", &k1, Algorithm::RS256)])));
        let addr = jwks_server(doc.clone()).await;
        let mut c = JwtChecker::new(JwtConfig {
            algorithm: "RS256".into(),
            jwks_url: format!("http://{addr}/jwks"),
            jwks_refresh_s: 3_600,
            ..JwtConfig::default()
        })
        .unwrap();
        Arc::get_mut(&mut c).unwrap().min_kick = Duration::from_millis(100);
        let stop = CancellationToken::new();
        let _task = c.spawn_refresh(stop.clone()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while c.key_count() != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "first fetch never came"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        *doc.lock().unwrap() = jwks(&[
            ("one", &k1, Algorithm::RS256),
            ("two", &k2, Algorithm::RS256),
        ]);
        let perms = json!([{"action": "play", "stream": "*"}]);
        let t2 = token(Algorithm::RS256, &k2, Some("two"), &claims(perms));
        let play = || c.verify(&with_jwt(Action::Play, "live/cam1", &t2));
        // Refused now (the check never fetches), allowed once the kicked refresh is in.
        assert_eq!(deny_reason(play()), "JWT signed with an unknown key (kid)");
        while play() != Outcome::Allow {
            assert!(
                std::time::Instant::now() < deadline,
                "kicked refresh never came"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn an_unreachable_jwks_url_denies_and_keeps_trying() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let c = JwtChecker::new(JwtConfig {
            algorithm: "ES256".into(),
            jwks_url: format!("http://{addr}/jwks"),
            ..JwtConfig::default()
        })
        .unwrap();
        let err = c.refresh_now().await.unwrap_err();
        assert!(err.contains("unreachable"), "{err}");
        let t = token(
            Algorithm::ES256,
            &ec(),
            None,
            &claims(json!([{"action": "play", "stream": "*"}])),
        );
        assert!(matches!(
            c.check(&with_jwt(Action::Play, "live/cam1", &t)).await,
            Outcome::Deny(_)
        ));
        assert_eq!(c.name(), "jwt");
    }
}
