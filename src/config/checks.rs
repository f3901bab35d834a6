//! Value checks, the rules that span keys, and `host:port` parsing.
//!
//! Owns: the check of each merged value against its [`Kind`] (ranges, choices, addresses), the
//! rules that involve several keys ([`check_cluster_addresses`]), [`parse_host_port`] and
//! [`parse_advertise`] (also used when a node starts), and the `node.id` fallback. Must never:
//! read the file or the environment itself (it is handed the merged values and the [`Layers`]
//! that say where each came from), or change a value it checks: it only refuses.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::ConfigError;
use super::layers::Layers;
use super::schema::{Config, Kind, Role};

/// Node id used when `node.id` is empty and no host name can be found.
pub const FALLBACK_NODE_ID: &str = "ringcast";

/// Checks the merged value of `key` against its [`Kind`]: ranges, choices, addresses.
pub(super) fn check_value(
    merged: &config::Config,
    key: &str,
    kind: Kind,
    layers: &Layers<'_>,
) -> Result<(), ConfigError> {
    let get_string = || merged.get_string(key).map_err(|e| layers.crate_error(e));
    match kind {
        Kind::Str { non_empty } => {
            if non_empty && get_string()?.trim().is_empty() {
                return Err(layers.invalid(key, "must not be empty"));
            }
        }
        Kind::Int { min, max } => {
            let value = merged.get_int(key).map_err(|e| layers.crate_error(e))?;
            if !(min..=max).contains(&value) {
                return Err(layers.invalid(
                    key,
                    format!("{value} is out of range, expected {min}..={max}"),
                ));
            }
        }
        Kind::Bool => {
            merged.get_bool(key).map_err(|e| layers.crate_error(e))?;
        }
        Kind::Choice(choices) => {
            let value = get_string()?;
            if !choices.contains(&value.as_str()) {
                return Err(layers.invalid(
                    key,
                    format!("unknown value {value:?}, expected {}", or_list(choices)),
                ));
            }
        }
        Kind::Listen => {
            let value = get_string()?;
            if value.parse::<SocketAddr>().is_err() {
                return Err(layers.invalid(
                    key,
                    format!("invalid socket address {value:?}, expected IP:port such as 0.0.0.0:1935 or [::]:1935"),
                ));
            }
        }
        Kind::OptionalListen => {
            let value = get_string()?;
            if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
                return Err(layers.invalid(
                    key,
                    format!("invalid socket address {value:?}, expected IP:port such as 0.0.0.0:1936 (or empty for off)"),
                ));
            }
        }
        Kind::OptionalAdvertise => {
            let value = get_string()?;
            if !value.is_empty() && parse_advertise(&value).is_none() {
                return Err(layers.invalid(
                    key,
                    format!("invalid host:port {value:?}, expected e.g. node-1.example.com:1935, 10.0.0.1:1935 or [::1]:1935 (or empty for not set)"),
                ));
            }
        }
        Kind::StrList => {
            let items = merged.get_array(key).map_err(|e| layers.crate_error(e))?;
            for item in items {
                item.into_string().map_err(|e| layers.crate_error(e))?;
            }
        }
        Kind::HostPortList => {
            let items = merged.get_array(key).map_err(|e| layers.crate_error(e))?;
            for (i, item) in items.into_iter().enumerate() {
                let value = item.into_string().map_err(|e| layers.crate_error(e))?;
                if parse_host_port(&value).is_none() {
                    return Err(layers.invalid(
                        key,
                        format!(
                            "invalid host:port {value:?} at entry {}, expected e.g. origin-0:7946",
                            i + 1
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// RTMPS needs a certificate and its key; relays over TLS need certificates to trust, and an
/// origin they are made to needs an RTMPS listener. (The files themselves are read when the
/// node starts, and by `--check-config`: see `tls::NodeTls`.)
pub(super) fn check_tls(config: &Config, layers: &Layers<'_>) -> Result<(), ConfigError> {
    let rtmp = &config.rtmp;
    if !rtmp.tls_listen.is_empty() {
        for (key, value) in [
            ("rtmp.tls_cert", &rtmp.tls_cert),
            ("rtmp.tls_key", &rtmp.tls_key),
        ] {
            if value.trim().is_empty() {
                return Err(layers.invalid(
                    key,
                    format!(
                        "required with rtmp.tls_listen ({}): the PEM file of the RTMPS certificate and of its key",
                        rtmp.tls_listen
                    ),
                ));
            }
        }
    }
    match (
        rtmp.tls_cert.trim().is_empty(),
        rtmp.tls_key.trim().is_empty(),
    ) {
        (false, true) => {
            return Err(layers.invalid("rtmp.tls_key", "required with rtmp.tls_cert"));
        }
        (true, false) => {
            return Err(layers.invalid("rtmp.tls_cert", "required with rtmp.tls_key"));
        }
        _ => {}
    }
    let cluster = &config.cluster;
    if cluster.relay_tls && config.cluster_enabled() {
        if cluster.relay_tls_ca.trim().is_empty() && rtmp.tls_cert.trim().is_empty() {
            return Err(layers.invalid(
                "cluster.relay_tls_ca",
                "required with cluster.relay_tls when rtmp.tls_cert is not set: the PEM file of the certificates relays trust",
            ));
        }
        if config.node.role == Role::Origin && rtmp.tls_listen.is_empty() {
            return Err(layers.invalid(
                "rtmp.tls_listen",
                "required on an origin with cluster.relay_tls: relays reach origins over RTMPS",
            ));
        }
    }
    Ok(())
}

/// Names a rule in `access.*` may use.
pub const CHECKERS: &[&str] = &["token", "jwt", "hook", "cidr"];

/// Every `access.default.*` and `access.apps.*.*` list names known checkers (`a|b` groups).
pub(super) fn check_access(config: &Config, layers: &Layers<'_>) -> Result<(), ConfigError> {
    let tables = std::iter::once(("access.default".to_string(), &config.access.default)).chain(
        config
            .access
            .apps
            .iter()
            .map(|(app, rules)| (format!("access.apps.{app}"), rules)),
    );
    for (prefix, rules) in tables {
        for (action, list) in [
            ("connect", &rules.connect),
            ("publish", &rules.publish),
            ("play", &rules.play),
        ] {
            for entry in list {
                let bad = entry
                    .split('|')
                    .map(str::trim)
                    .find(|name| !CHECKERS.contains(name));
                if let Some(name) = bad {
                    return Err(layers.invalid(
                        &format!("{prefix}.{action}"),
                        format!(
                            "unknown checker {name:?} in {entry:?}, expected {} (or several joined by |)",
                            or_list(CHECKERS)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The shortest cluster secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Secrets that ship in `conf/` or in documentation: a sample must not work as it is.
const PLACEHOLDER_SECRETS: &[&str] = &["replace-me", "changeme", "change-me", "secret"];

/// A cluster secret anyone could guess is no authentication: refuse short ones and the
/// placeholders of the samples.
fn check_secret(secret: &str, layers: &Layers<'_>) -> Result<(), ConfigError> {
    let lower = secret.trim().to_ascii_lowercase();
    if PLACEHOLDER_SECRETS.contains(&lower.as_str()) || lower.starts_with("replace-me") {
        return Err(layers.invalid(
            "cluster.secret",
            "is the placeholder of the sample configuration; generate a secret (e.g. `openssl rand -hex 32`) and give every node of the cluster the same one",
        ));
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(layers.invalid(
            "cluster.secret",
            format!(
                "is {} bytes; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 32`)",
                secret.len()
            ),
        ));
    }
    Ok(())
}

/// Rules that involve several keys: what a node in a cluster needs to be reachable.
///
/// - in a cluster, the secret must be long enough and not a sample's placeholder;
///
/// - an edge only makes sense in a cluster, so it needs `cluster.secret`;
/// - in a cluster, `node.id` is a gossip identity: no spaces or control characters;
/// - an advertised address must be one peers and clients can dial: never `0.0.0.0` or `::`;
/// - in a cluster, a wildcard `cluster.gossip_listen` needs `cluster.gossip_advertise`, and an
///   origin whose `rtmp.listen` is a wildcard needs `rtmp.advertise` (the cluster would refuse
///   both at start; refusing them here lets `--check-config` catch them too).
pub(super) fn check_cluster_addresses(
    config: &Config,
    layers: &Layers<'_>,
) -> Result<(), ConfigError> {
    if config
        .http
        .admin_token
        .to_ascii_lowercase()
        .starts_with("replace-me")
    {
        return Err(layers.invalid(
            "http.admin_token",
            "is the placeholder of the sample configuration; use a random string (e.g. `openssl rand -hex 32`)",
        ));
    }
    let zone = &config.node.zone;
    if zone.len() > 64 || zone.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(layers.invalid(
            "node.zone",
            "must be at most 64 characters without spaces or control characters",
        ));
    }
    if config.node.role == Role::Edge && !config.cluster_enabled() {
        return Err(layers.invalid(
            "node.role",
            "an edge needs a cluster; set cluster.secret and cluster.seeds",
        ));
    }
    for (key, value) in [
        ("rtmp.advertise", &config.rtmp.advertise),
        ("rtmp.tls_advertise", &config.rtmp.tls_advertise),
        ("cluster.gossip_advertise", &config.cluster.gossip_advertise),
    ] {
        let unspecified = parse_advertise(value)
            .and_then(|(host, _)| host.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_unspecified());
        if unspecified {
            return Err(layers.invalid(
                key,
                format!("{value:?} is not routable; advertise an address other nodes and clients can reach (the node's IP or DNS name)"),
            ));
        }
    }
    if !config.cluster_enabled() {
        return Ok(());
    }
    check_secret(&config.cluster.secret, layers)?;
    let id = &config.node.id;
    if id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(layers.invalid(
            "node.id",
            "in a cluster, must be 1-128 characters without spaces or control characters",
        ));
    }
    if config.cluster.gossip_advertise.is_empty()
        && config.cluster.gossip_listen.ip().is_unspecified()
    {
        return Err(layers.invalid(
            "cluster.gossip_advertise",
            format!(
                "required when cluster.gossip_listen ({}) is a wildcard address; set the host:port other nodes reach this node's gossip at",
                config.cluster.gossip_listen
            ),
        ));
    }
    if config.node.role == Role::Origin
        && config.rtmp.advertise.is_empty()
        && config.rtmp.listen.ip().is_unspecified()
    {
        return Err(layers.invalid(
            "rtmp.advertise",
            format!(
                "required for an origin in a cluster when rtmp.listen ({}) is a wildcard address; set the host:port edges and redirected clients reach this node at",
                config.rtmp.listen
            ),
        ));
    }
    Ok(())
}

/// ["a", "b", "c"] -> "a, b or c"
fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The `node.id` used when it is empty: the host name from `/proc/sys/kernel/hostname`, else
/// `$HOSTNAME`, else [`FALLBACK_NODE_ID`].
pub(super) fn pick_node_id(proc_hostname: Option<String>, hostname_env: Option<&str>) -> String {
    proc_hostname
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .or_else(|| hostname_env.map(str::trim).filter(|h| !h.is_empty()))
        .unwrap_or(FALLBACK_NODE_ID)
        .to_owned()
}

/// Splits a `host:port` address as accepted for `rtmp.advertise`, `cluster.gossip_advertise`
/// and `cluster.seeds`: a host name (letters, digits, `-`, `_`, dot-separated labels), an IPv4
/// address, or a bracketed IPv6 address (`[::1]:1935`, returned without brackets), then a port
/// 1..=65535.
pub fn parse_host_port(s: &str) -> Option<(&str, u16)> {
    split_host_port(s).filter(|(_, port)| *port != 0)
}

/// Splits an advertise address (`rtmp.advertise`, `cluster.gossip_advertise`): like
/// [`parse_host_port`], but port 0 is allowed and means "the port the matching listener bound"
/// (useful with `listen = "127.0.0.1:0"`).
pub fn parse_advertise(s: &str) -> Option<(&str, u16)> {
    split_host_port(s)
}

fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (host, port) = rest.split_once("]:")?;
            host.parse::<Ipv6Addr>().ok()?;
            (host, port)
        }
        None => {
            let (host, port) = s.rsplit_once(':')?;
            if !valid_host_name(host) {
                return None;
            }
            (host, port)
        }
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    Some((host, port))
}

fn valid_host_name(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    // All-numeric dotted names must be real IPv4 addresses (refuses 999.1.1.1).
    let numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    labels_ok && (!numeric || host.parse::<Ipv4Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parsing() {
        assert_eq!(parse_host_port("origin-0:7946"), Some(("origin-0", 7946)));
        assert_eq!(parse_host_port("10.0.0.1:1935"), Some(("10.0.0.1", 1935)));
        assert_eq!(parse_host_port("[::1]:1935"), Some(("::1", 1935)));
        assert_eq!(
            parse_host_port("a.b_c.example:1"),
            Some(("a.b_c.example", 1))
        );
        for bad in [
            "",
            "host",
            "host:",
            ":1935",
            "host:0",
            "host:65536",
            "host:+80",
            "::1:1935",
            "[::1]",
            "[nope]:1",
            "a..b:1",
            ".a:1",
            "a b:1",
            "999.1.1.1:1",
            "host:80x",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn or_list_formats() {
        assert_eq!(or_list(&["a"]), "a");
        assert_eq!(or_list(&["a", "b"]), "a or b");
        assert_eq!(or_list(&["a", "b", "c"]), "a, b or c");
    }
}
