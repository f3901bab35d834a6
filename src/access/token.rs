//! Signed URLs: an HMAC-SHA256 over what the URL allows, carried in its query as
//! `expires=UNIX&sig=HEX`.
//!
//! Owns: the signed message's format, signing ([`sign`], [`query`], [`token_url`] for the
//! `ringcast token` command) and checking ([`TokenChecker`]). Must never: accept a signature
//! that was not compared in constant time, extend an expiry (the issuer chose it: no clock
//! skew allowance), or allow a request it cannot verify (connect has no stream, so a token
//! cannot allow it).
//!
//! The signed message, for issuers that sign on their own (a web backend):
//!
//! ```text
//! HEX_LOWER(HMAC-SHA256(key, "ringcast-token-v1\n" ACTION "\n" APP/STREAM "\n" EXPIRES "\n" IP))
//! ```
//!
//! `ACTION` is `publish` or `play`; `APP/STREAM` is the stream key (no query, no leading or
//! trailing `/`); `EXPIRES` is the unix time in decimal, the first second at which the URL no
//! longer works; `IP` is the client address (IPv4 dotted, IPv6 as Rust prints it, an
//! IPv4-mapped IPv6 address as its IPv4 form) when `bind_ip` is set, else empty. Stream keys
//! never contain a newline (the session refuses control characters), so the message is
//! unambiguous.
//!
//! Keys rotate: the first of `token.keys` signs, every one of them verifies, so a new key is
//! put first and the old one removed once the URLs it signed have expired.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Action, Checker, Outcome, Request};

/// The query argument with the expiry (unix seconds).
pub const PARAM_EXPIRES: &str = "expires";
/// The query argument with the signature (64 hex digits).
pub const PARAM_SIG: &str = "sig";
/// Shortest key accepted in `token.keys`, in bytes.
pub const MIN_KEY_LEN: usize = 16;

const DOMAIN: &str = "ringcast-token-v1";
const SIG_HEX_LEN: usize = 64;

/// `[token]`: the keys of signed URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct TokenConfig {
    /// The first signs, any verifies (rotation). Each at least [`MIN_KEY_LEN`] bytes.
    pub keys: Vec<String>,
    /// The signature also covers the client's IP address: a URL works from that address only.
    pub bind_ip: bool,
}

/// The signed message (see the module documentation).
fn message(action: Action, stream_key: &str, expires_unix: u64, ip: Option<IpAddr>) -> String {
    let ip = ip
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_default();
    format!(
        "{DOMAIN}\n{}\n{stream_key}\n{expires_unix}\n{ip}",
        action.as_str()
    )
}

fn mac(key: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// The signature of `action` on `stream_key` (`APP/STREAM`) until `expires_unix`, bound to
/// `ip` if given: 64 lowercase hex digits.
pub fn sign(
    key: &str,
    action: Action,
    stream_key: &str,
    expires_unix: u64,
    ip: Option<IpAddr>,
) -> String {
    let mut mac = mac(key);
    mac.update(message(action, stream_key, expires_unix, ip).as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The query that carries a signature: `expires=...&sig=...`.
pub fn query(
    key: &str,
    action: Action,
    stream_key: &str,
    expires_unix: u64,
    ip: Option<IpAddr>,
) -> String {
    let sig = sign(key, action, stream_key, expires_unix, ip);
    format!("{PARAM_EXPIRES}={expires_unix}&{PARAM_SIG}={sig}")
}

/// A URL made by [`token_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    /// `BASE/APP/STREAM?expires=...&sig=...`, ready to paste.
    pub url: String,
    /// `BASE/APP`: the "server" field of encoders that want server and stream key apart.
    pub server: String,
    /// `STREAM?expires=...&sig=...`: their "stream key" field.
    pub stream: String,
    /// Unix seconds at which it stops working.
    pub expires: u64,
}

/// A ready-to-paste signed URL for `ringcast token`: signed with the first of `keys`,
/// allowing `action` (publish or play) on `stream_key` (`APP/STREAM`) for `ttl` from
/// `now_unix`, from `ip` only if given. `base` is `rtmp://HOST[:PORT]` (or `rtmps://`).
/// Errors say what is wrong with the input, for the command line.
pub fn token_url(
    keys: &[String],
    action: Action,
    stream_key: &str,
    base: &str,
    ttl: Duration,
    ip: Option<IpAddr>,
    now_unix: u64,
) -> Result<SignedUrl, String> {
    let key = match keys.first() {
        Some(k) => k,
        None => return Err("no signing key: give --key or set token.keys".to_owned()),
    };
    check_key("the signing key", key)?;
    if action == Action::Connect {
        return Err("signed URLs apply to publish and play".to_owned());
    }
    let (app, stream) = split_stream_key(stream_key)?;
    let base = base.trim_end_matches('/');
    let lower = base.to_ascii_lowercase();
    if !(lower.starts_with("rtmp://") || lower.starts_with("rtmps://")) || base.contains('?') {
        return Err(format!(
            "{base:?} is not a base URL like rtmp://HOST:1935 (no app, no query)"
        ));
    }
    if ttl.is_zero() {
        return Err("the lifetime must be more than 0 seconds".to_owned());
    }
    let expires = now_unix
        .checked_add(ttl.as_secs())
        .ok_or_else(|| "the lifetime is too long".to_owned())?;
    let key_norm = format!("{app}/{stream}");
    let q = query(key, action, &key_norm, expires, ip);
    Ok(SignedUrl {
        url: format!("{base}/{key_norm}?{q}"),
        server: format!("{base}/{app}"),
        stream: format!("{stream}?{q}"),
        expires,
    })
}

/// `APP/STREAM` (outer `/` trimmed) into its parts, as the session makes stream keys.
fn split_stream_key(stream_key: &str) -> Result<(&str, &str), String> {
    let trimmed = stream_key.trim_matches('/');
    let bad = |why: &str| {
        Err(format!(
            "{stream_key:?} is not a stream key APP/STREAM: {why}"
        ))
    };
    if trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("it contains spaces or control characters");
    }
    if trimmed.contains('?') {
        return bad("it contains a query");
    }
    match trimmed.split_once('/') {
        Some((app, stream)) if !app.is_empty() && !stream.trim_matches('/').is_empty() => {
            Ok((app, stream.trim_matches('/')))
        }
        _ => bad("it needs an app and a stream name"),
    }
}

fn check_key(what: &str, key: &str) -> Result<(), String> {
    if key.to_ascii_lowercase().starts_with("replace-me") {
        return Err(format!(
            "{what} is the placeholder of the sample configuration; use a random string \
             (e.g. `openssl rand -hex 32`)"
        ));
    }
    if key.len() < MIN_KEY_LEN {
        return Err(format!(
            "{what} is {} bytes, at least {MIN_KEY_LEN} are needed (a random string, e.g. \
             `openssl rand -hex 32`)",
            key.len()
        ));
    }
    Ok(())
}

/// Parses a lifetime: a whole number with a unit `s`, `m`, `h` or `d` (`30s`, `15m`, `1h`,
/// `7d`); a bare number is seconds.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let bad = || format!("{s:?} is not a lifetime like 30s, 15m, 1h or 7d");
    if digits.is_empty() || digits.len() > 12 {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit_s = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(unit_s).ok_or_else(bad)?;
    if secs == 0 {
        return Err("the lifetime must be more than 0 seconds".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`, for telling an operator when a URL expires.
pub fn format_utc(unix: u64) -> String {
    let days = unix / 86_400;
    let rem = unix % 86_400;
    // Civil from days (Howard Hinnant's algorithm), for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Checks signed URLs (checker name `token`). For publish and play only: on connect it
/// denies, so per-app rules should not list `token` for connect.
#[derive(Debug, Clone)]
pub struct TokenChecker {
    keys: Vec<String>,
    bind_ip: bool,
}

impl TokenChecker {
    /// Refuses an empty key list and keys shorter than [`MIN_KEY_LEN`] bytes.
    pub fn new(cfg: TokenConfig) -> Result<TokenChecker, String> {
        if cfg.keys.is_empty() {
            return Err("token.keys is empty: signed URLs need at least one key".to_owned());
        }
        for (i, key) in cfg.keys.iter().enumerate() {
            check_key(&format!("token.keys[{i}]"), key)?;
        }
        Ok(TokenChecker {
            keys: cfg.keys,
            bind_ip: cfg.bind_ip,
        })
    }

    /// The decision at `now_unix` (what [`Checker::check`] does with the system clock).
    pub fn verify(&self, request: &Request, now_unix: u64) -> Outcome {
        if request.action == Action::Connect {
            return Outcome::Deny("signed URLs apply to publish and play".to_owned());
        }
        let (Some(expires), Some(sig)) = (request.arg(PARAM_EXPIRES), request.arg(PARAM_SIG))
        else {
            return Outcome::Deny(format!(
                "no signed URL: the query needs {PARAM_EXPIRES} and {PARAM_SIG}"
            ));
        };
        let expires = match parse_unix(expires) {
            Some(e) => e,
            None => return Outcome::Deny(format!("malformed {PARAM_EXPIRES}")),
        };
        let sig = match unhex(sig) {
            Some(s) => s,
            None => return Outcome::Deny("bad or mismatched signature".to_owned()),
        };
        // Checked before the expiry, so an expired URL for another stream is not told apart
        // from a forged one.
        if request.key.contains('\n') {
            return Outcome::Deny("bad or mismatched signature".to_owned());
        }
        let ip = self.bind_ip.then(|| request.client.ip());
        let msg = message(request.action, &request.key, expires, ip);
        let valid = self.keys.iter().any(|key| {
            let mut mac = mac(key);
            mac.update(msg.as_bytes());
            mac.verify_slice(&sig).is_ok()
        });
        if !valid {
            return Outcome::Deny("bad or mismatched signature".to_owned());
        }
        if now_unix >= expires {
            return Outcome::Deny(format!("signed URL expired at {}", format_utc(expires)));
        }
        Outcome::Allow
    }
}

#[async_trait]
impl Checker for TokenChecker {
    fn name(&self) -> &'static str {
        "token"
    }

    async fn check(&self, request: &Request) -> Outcome {
        self.verify(request, now_unix())
    }
}

/// The system clock in unix seconds (0 before 1970, which then denies every URL).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Decimal digits only (no sign, no spaces), at most 20 of them.
fn parse_unix(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Exactly [`SIG_HEX_LEN`] hex digits (either case) into bytes.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != SIG_HEX_LEN {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::SocketAddr;

    const K1: &str = "0123456789abcdef-first";
    const K2: &str = "fedcba9876543210-second";
    const NOW: u64 = 1_700_000_000;

    /// A request for the checkers' tests.
    pub(crate) fn request(action: Action, key: &str, query: &[(&str, &str)]) -> Request {
        let (app, stream) = key.split_once('/').unwrap_or((key, ""));
        Request {
            node_id: "n1".into(),
            role: "origin",
            action,
            app: app.into(),
            stream: stream.into(),
            key: if action == Action::Connect {
                String::new()
            } else {
                key.into()
            },
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tc_url: format!("rtmp://127.0.0.1:1935/{app}"),
            client: "192.0.2.7:50000".parse::<SocketAddr>().unwrap(),
            flash_ver: "FMLE/3.0".into(),
            swf_url: String::new(),
            page_url: String::new(),
            conn_id: 42,
        }
    }

    fn signed(
        key: &str,
        action: Action,
        stream: &str,
        expires: u64,
        ip: Option<IpAddr>,
    ) -> Request {
        let sig = sign(key, action, stream, expires, ip);
        request(
            action,
            stream,
            &[("expires", &expires.to_string()), ("sig", &sig)],
        )
    }

    fn checker(keys: &[&str], bind_ip: bool) -> TokenChecker {
        TokenChecker::new(TokenConfig {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            bind_ip,
        })
        .unwrap()
    }

    #[test]
    fn signature_is_stable_lowercase_hex() {
        let s = sign(K1, Action::Publish, "live/cam1", 1_700_003_600, None);
        assert_eq!(s.len(), 64);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // Fixed vector: the message format is a contract with issuers; this pins it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(K1.as_bytes()).unwrap();
        mac.update(b"ringcast-token-v1\npublish\nlive/cam1\n1700003600\n");
        assert_eq!(s, hex(&mac.finalize().into_bytes()));
        assert_eq!(
            query(K1, Action::Publish, "live/cam1", 1_700_003_600, None),
            format!("expires=1700003600&sig={s}")
        );
    }

    #[test]
    fn round_trip_allows_until_expiry() {
        let c = checker(&[K1], false);
        let r = signed(K1, Action::Publish, "live/cam1", NOW + 60, None);
        assert_eq!(c.verify(&r, NOW), Outcome::Allow);
        assert_eq!(c.verify(&r, NOW + 59), Outcome::Allow);
        let Outcome::Deny(why) = c.verify(&r, NOW + 60) else {
            panic!("expired must deny");
        };
        assert!(why.contains("expired"), "{why}");
        let r = signed(K1, Action::Play, "live/cam1", NOW + 60, None);
        assert_eq!(c.verify(&r, NOW), Outcome::Allow);
    }

    #[test]
    fn rotation_any_key_verifies() {
        let c = checker(&[K2, K1], false);
        for key in [K1, K2] {
            let r = signed(key, Action::Play, "live/cam1", NOW + 60, None);
            assert_eq!(c.verify(&r, NOW), Outcome::Allow, "{key}");
        }
        let r = signed(
            "not-a-configured-key-at-all",
            Action::Play,
            "live/cam1",
            NOW + 60,
            None,
        );
        assert_eq!(
            c.verify(&r, NOW),
            Outcome::Deny("bad or mismatched signature".into())
        );
    }

    #[test]
    fn wrong_stream_action_expiry_or_sig_deny() {
        let c = checker(&[K1], false);
        let bad = Outcome::Deny("bad or mismatched signature".into());
        let sig = sign(K1, Action::Play, "live/cam1", NOW + 60, None);
        let exp = (NOW + 60).to_string();
        let args = [("expires", exp.as_str()), ("sig", sig.as_str())];
        assert_eq!(
            c.verify(&request(Action::Play, "live/cam2", &args), NOW),
            bad
        );
        assert_eq!(
            c.verify(&request(Action::Publish, "live/cam1", &args), NOW),
            bad
        );
        assert_eq!(
            c.verify(&request(Action::Play, "other/cam1", &args), NOW),
            bad
        );
        // A later expiry than signed.
        let later = (NOW + 3_600).to_string();
        let args2 = [("expires", later.as_str()), ("sig", sig.as_str())];
        assert_eq!(
            c.verify(&request(Action::Play, "live/cam1", &args2), NOW),
            bad
        );
        // Upper-case hex is the same signature.
        let upper = sig.to_ascii_uppercase();
        let args3 = [("expires", exp.as_str()), ("sig", upper.as_str())];
        assert_eq!(
            c.verify(&request(Action::Play, "live/cam1", &args3), NOW),
            Outcome::Allow
        );
        // Truncated or non-hex signatures.
        for s in [&sig[..63], "zz", "", &format!("{}g", &sig[..63])] {
            let args = [("expires", exp.as_str()), ("sig", s)];
            assert_eq!(
                c.verify(&request(Action::Play, "live/cam1", &args), NOW),
                bad
            );
        }
    }

    #[test]
    fn missing_or_malformed_params_deny() {
        let c = checker(&[K1], false);
        for q in [
            &[][..],
            &[("expires", "1700000060")][..],
            &[("sig", "00")][..],
        ] {
            let Outcome::Deny(why) = c.verify(&request(Action::Play, "live/cam1", q), NOW) else {
                panic!("{q:?} must deny");
            };
            assert!(why.contains("expires and sig"), "{why}");
        }
        let sig = sign(K1, Action::Play, "live/cam1", NOW + 60, None);
        for e in [
            "-1",
            "+1700000060",
            " 1700000060",
            "1e9",
            "",
            "99999999999999999999999",
        ] {
            let r = request(Action::Play, "live/cam1", &[("expires", e), ("sig", &sig)]);
            assert_eq!(
                c.verify(&r, NOW),
                Outcome::Deny("malformed expires".into()),
                "{e}"
            );
        }
    }

    #[test]
    fn connect_is_denied() {
        let c = checker(&[K1], false);
        assert_eq!(
            c.verify(&request(Action::Connect, "live", &[]), NOW),
            Outcome::Deny("signed URLs apply to publish and play".into())
        );
    }

    #[test]
    fn bind_ip_covers_the_client_address() {
        let c = checker(&[K1], true);
        let me: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let r = signed(K1, Action::Play, "live/cam1", NOW + 60, Some(me));
        assert_eq!(c.verify(&r, NOW), Outcome::Allow);
        let r = signed(K1, Action::Play, "live/cam1", NOW + 60, Some(other));
        assert!(matches!(c.verify(&r, NOW), Outcome::Deny(_)));
        let r = signed(K1, Action::Play, "live/cam1", NOW + 60, None);
        assert!(matches!(c.verify(&r, NOW), Outcome::Deny(_)));
        // The same client seen as IPv4-mapped IPv6 (a dual-stack listener).
        let mut r = signed(K1, Action::Play, "live/cam1", NOW + 60, Some(me));
        r.client = "[::ffff:192.0.2.7]:50000".parse().unwrap();
        assert_eq!(c.verify(&r, NOW), Outcome::Allow);
        // Without bind_ip, an IP-bound signature does not verify (the message differs).
        let unbound = checker(&[K1], false);
        let r = signed(K1, Action::Play, "live/cam1", NOW + 60, Some(me));
        assert!(matches!(unbound.verify(&r, NOW), Outcome::Deny(_)));
    }

    #[test]
    fn config_is_checked() {
        let err = TokenChecker::new(TokenConfig::default()).unwrap_err();
        assert!(err.contains("token.keys"), "{err}");
        let err = TokenChecker::new(TokenConfig {
            keys: vec![K1.into(), "short".into()],
            bind_ip: false,
        })
        .unwrap_err();
        assert!(err.contains("token.keys[1]") && err.contains("16"), "{err}");
    }

    #[test]
    fn token_url_is_ready_to_paste_and_verifies() {
        let keys = vec![K1.to_string(), K2.to_string()];
        let u = token_url(
            &keys,
            Action::Publish,
            "/live/cam1/",
            "rtmp://media.example:1935/",
            Duration::from_secs(3_600),
            None,
            NOW,
        )
        .unwrap();
        assert_eq!(u.expires, NOW + 3_600);
        let sig = sign(K1, Action::Publish, "live/cam1", NOW + 3_600, None);
        assert_eq!(
            u.url,
            format!(
                "rtmp://media.example:1935/live/cam1?expires={}&sig={sig}",
                NOW + 3_600
            )
        );
        assert_eq!(u.server, "rtmp://media.example:1935/live");
        assert_eq!(u.stream, format!("cam1?expires={}&sig={sig}", NOW + 3_600));
        let r = signed(K1, Action::Publish, "live/cam1", u.expires, None);
        assert_eq!(checker(&[K2, K1], false).verify(&r, NOW), Outcome::Allow);
    }

    #[test]
    fn token_url_refuses_bad_input() {
        let keys = vec![K1.to_string()];
        let hour = Duration::from_secs(3_600);
        let base = "rtmp://127.0.0.1:1935";
        let cases: Vec<(Vec<String>, Action, &str, &str, Duration)> = vec![
            (vec![], Action::Play, "live/cam1", base, hour),
            (vec!["short".into()], Action::Play, "live/cam1", base, hour),
            (keys.clone(), Action::Connect, "live/cam1", base, hour),
            (keys.clone(), Action::Play, "cam1", base, hour),
            (keys.clone(), Action::Play, "live/", base, hour),
            (keys.clone(), Action::Play, "live/cam 1", base, hour),
            (keys.clone(), Action::Play, "live/cam1?x=1", base, hour),
            (keys.clone(), Action::Play, "live/cam1", "http://x", hour),
            (
                keys.clone(),
                Action::Play,
                "live/cam1",
                "rtmp://x/live?a",
                hour,
            ),
            (
                keys.clone(),
                Action::Play,
                "live/cam1",
                base,
                Duration::ZERO,
            ),
        ];
        for (keys, action, key, base, ttl) in cases {
            assert!(
                token_url(&keys, action, key, base, ttl, None, NOW).is_err(),
                "{keys:?} {action:?} {key} {base} {ttl:?}"
            );
        }
    }

    #[test]
    fn ttl_parses() {
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        for bad in [
            "",
            "h",
            "1x",
            "1.5h",
            "-1h",
            "0s",
            "1h30m",
            "999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
