//! Address rules: CIDR allow and deny lists per action.
//!
//! Owns: parsing the lists ([`Cidr`]) and the decision on a client address
//! ([`CidrChecker`]). Must never: let an allow list be bypassed by the spelling of an address
//! (an IPv4 client seen as `::ffff:a.b.c.d` on a dual-stack socket is matched as the IPv4
//! address), or accept a rule it did not fully understand (a bad entry is a config error).
//!
//! Per action: a deny list wins; then a non-empty allow list means the address must be in it;
//! empty lists allow everyone.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use async_trait::async_trait;

use super::{Action, Checker, Outcome, Request};

/// `[cidr]`: address rules, each entry `10.0.0.0/8`, `192.168.1.7` (one address),
/// `::1/128` or `fd00::/8`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct CidrConfig {
    pub connect_allow: Vec<String>,
    pub connect_deny: Vec<String>,
    pub publish_allow: Vec<String>,
    pub publish_deny: Vec<String>,
    pub play_allow: Vec<String>,
    pub play_deny: Vec<String>,
}

/// An address block. IPv4-mapped IPv6 blocks (`::ffff:10.0.0.0/104`) are kept as the IPv4
/// block they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block (an IPv4-mapped IPv6 `ip` is matched as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the top `prefix` bits of `a` and `b` are equal.
fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(prefix.min(128)));
    a & mask == b & mask
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR block (like 10.0.0.0/8)"))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(format!("{s:?}: the prefix length must be 0..={max}")),
                }
            }
            Some(_) => return Err(format!("{s:?}: the prefix length must be 0..={max}")),
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (IpAddr::V6(v6).to_canonical(), prefix - 96)
            }
            a => (a, prefix),
        };
        let block = Cidr { addr, prefix };
        // Host bits set is most often a typo (10.0.0.1/8 for 10.0.0.0/8, or a wrong length).
        if block.network() != addr {
            return Err(format!(
                "{s:?} has address bits set beyond its prefix length: did you mean {}?",
                block.masked()
            ));
        }
        Ok(block)
    }
}

impl Cidr {
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    fn masked(&self) -> Cidr {
        Cidr {
            addr: self.network(),
            prefix: self.prefix,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One action's lists.
#[derive(Debug, Clone, Default)]
struct Rules {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

fn parse_list(key: &str, entries: &[String]) -> Result<Vec<Cidr>, String> {
    entries
        .iter()
        .map(|e| {
            e.trim()
                .parse::<Cidr>()
                .map_err(|why| format!("{key}: {why}"))
        })
        .collect()
}

/// Decides on the client address (checker name `cidr`).
#[derive(Debug, Clone)]
pub struct CidrChecker {
    connect: Rules,
    publish: Rules,
    play: Rules,
}

impl CidrChecker {
    /// A bad entry is an error naming its key (`cidr.publish_deny: "10.0.0.300/8" is not ...`).
    pub fn new(cfg: CidrConfig) -> Result<CidrChecker, String> {
        let rules = |action: &str, allow: &[String], deny: &[String]| -> Result<Rules, String> {
            Ok(Rules {
                allow: parse_list(&format!("cidr.{action}_allow"), allow)?,
                deny: parse_list(&format!("cidr.{action}_deny"), deny)?,
            })
        };
        Ok(CidrChecker {
            connect: rules("connect", &cfg.connect_allow, &cfg.connect_deny)?,
            publish: rules("publish", &cfg.publish_allow, &cfg.publish_deny)?,
            play: rules("play", &cfg.play_allow, &cfg.play_deny)?,
        })
    }

    /// The decision for `ip` doing `action`.
    pub fn decide(&self, action: Action, ip: IpAddr) -> Outcome {
        let rules = match action {
            Action::Connect => &self.connect,
            Action::Publish => &self.publish,
            Action::Play => &self.play,
        };
        let ip = ip.to_canonical();
        let denied = rules.deny.iter().any(|c| c.contains(ip));
        let allowed = rules.allow.is_empty() || rules.allow.iter().any(|c| c.contains(ip));
        if denied || !allowed {
            return Outcome::Deny(format!("address {ip} may not {}", action.as_str()));
        }
        Outcome::Allow
    }
}

#[async_trait]
impl Checker for CidrChecker {
    fn name(&self) -> &'static str {
        "cidr"
    }

    async fn check(&self, request: &Request) -> Outcome {
        self.decide(request.action, request.client.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_and_matches_blocks() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(!cidr("192.168.1.7").contains(ip("192.168.1.8")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert!(cidr("::1").contains(ip("::1")));
        assert!(cidr("fd00::/8").contains(ip("fd12:3456::1")));
        assert!(!cidr("fd00::/8").contains(ip("fe80::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(cidr("172.16.0.0/12").contains(ip("172.31.255.255")));
        assert!(!cidr("172.16.0.0/12").contains(ip("172.32.0.0")));
        assert_eq!(cidr(" 10.0.0.0/8".trim()).to_string(), "10.0.0.0/8");
    }

    #[test]
    fn mapped_addresses_match_ipv4_rules() {
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!cidr("10.0.0.0/8").contains(ip("::ffff:11.1.2.3")));
        // A mapped rule is the IPv4 rule.
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.9.9.9")));
        // IPv4 rules never match other IPv6 addresses (::a.b.c.d compatible form included).
        assert!(!cidr("0.0.0.0/0").contains(ip("::10.1.2.3")));
    }

    #[test]
    fn refuses_bad_entries() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.300/8",
            "10.0.0.0/+8",
            "10.0.0.0/08x",
            "::/129",
            "10.0.0.1/8",
            "fd00::1/8",
            "example.com",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let err = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert!(err.contains("10.0.0.0/8"), "{err}");
        let err = CidrChecker::new(CidrConfig {
            publish_deny: list(&["10.0.0.0/8", "10.0.0.300/8"]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.starts_with("cidr.publish_deny:") && err.contains("10.0.0.300/8"),
            "{err}"
        );
    }

    #[test]
    fn deny_wins_and_allow_lists_restrict() {
        let c = CidrChecker::new(CidrConfig {
            publish_allow: list(&["10.0.0.0/8", "fd00::/8"]),
            publish_deny: list(&["10.0.0.66"]),
            play_deny: list(&["203.0.113.0/24"]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.decide(Action::Publish, ip("10.1.1.1")), Outcome::Allow);
        assert_eq!(
            c.decide(Action::Publish, ip("::ffff:10.1.1.1")),
            Outcome::Allow
        );
        assert_eq!(c.decide(Action::Publish, ip("fd00::5")), Outcome::Allow);
        assert_eq!(
            c.decide(Action::Publish, ip("10.0.0.66")),
            Outcome::Deny("address 10.0.0.66 may not publish".into())
        );
        assert!(matches!(
            c.decide(Action::Publish, ip("::ffff:10.0.0.66")),
            Outcome::Deny(_)
        ));
        assert!(matches!(
            c.decide(Action::Publish, ip("192.0.2.1")),
            Outcome::Deny(_)
        ));
        assert!(matches!(
            c.decide(Action::Publish, ip("2001:db8::1")),
            Outcome::Deny(_)
        ));
        // Play: only a deny list.
        assert_eq!(c.decide(Action::Play, ip("192.0.2.1")), Outcome::Allow);
        assert!(matches!(
            c.decide(Action::Play, ip("203.0.113.7")),
            Outcome::Deny(_)
        ));
        // Connect: no rules at all.
        assert_eq!(c.decide(Action::Connect, ip("203.0.113.7")), Outcome::Allow);
    }

    #[tokio::test]
    async fn checks_the_request_client() {
        let c = CidrChecker::new(CidrConfig {
            connect_allow: list(&["127.0.0.0/8"]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.name(), "cidr");
        // The test request's client is 192.0.2.7.
        let r = crate::access::token::tests::request(Action::Connect, "live", &[]);
        assert!(matches!(c.check(&r).await, Outcome::Deny(_)));
    }
}
