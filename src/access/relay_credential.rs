//! Relay credentials: how a node proves to another that a connection is its relay, so that
//! access rules (decided once, where the client entered the cluster) are not applied again.
//!
//! Owns the credential format and its check. Must never: accept a credential for another
//! stream than the one it names, an expired one, or one made without the cluster secret; a
//! connection that only says `ringcastHops` is an ordinary client.
//!
//! A relay sends, as the `ringcastRelay` property of its connect object,
//! `"{expires} {node_id} {mac} {APP/STREAM}"`, where `mac` is the hex HMAC-SHA256, under a key
//! derived from the cluster secret and id, of `"ringcast-relay-v1\n{expires}\n{node_id}\n{APP/STREAM}"`.
//! It is valid for [`TTL`] after it is made (a relay makes a new one for every connect), with
//! [`SKEW`] of clock difference between the nodes. Within that minute a captured credential
//! could be replayed for the same stream; relays over untrusted networks should use TLS.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The connect property that carries the credential.
pub const PROPERTY: &str = "ringcastRelay";
/// How long a credential is valid after it is made.
pub const TTL_SECS: u64 = 60;
/// Clock difference between nodes tolerated on top (gossip already requires clocks within a
/// minute).
pub const SKEW_SECS: u64 = 60;
/// A credential longer than this is not looked at.
const MAX_LEN: usize = 512;

type HmacSha256 = Hmac<Sha256>;

/// The key of one cluster's relay credentials.
#[derive(Clone)]
pub struct RelayKey([u8; 32]);

impl std::fmt::Debug for RelayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayKey(..)")
    }
}

/// A verified credential: which node relays which stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub node_id: String,
    pub stream: String,
}

impl RelayKey {
    pub fn derive(secret: &str, cluster_id: &str) -> RelayKey {
        let mut mac = Self::hmac(secret.as_bytes());
        mac.update(b"ringcast/relay/v1\0");
        mac.update(cluster_id.as_bytes());
        RelayKey(mac.finalize().into_bytes().into())
    }

    fn hmac(key: &[u8]) -> HmacSha256 {
        match HmacSha256::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
        }
    }

    fn mac_of(&self, expires: u64, node_id: &str, stream: &str) -> HmacSha256 {
        let mut mac = Self::hmac(&self.0);
        mac.update(format!("ringcast-relay-v1\n{expires}\n{node_id}\n{stream}").as_bytes());
        mac
    }

    /// A credential for `node_id` relaying `stream`, valid for [`TTL_SECS`] from `now`.
    pub fn issue(&self, node_id: &str, stream: &str, now_unix: u64) -> String {
        let expires = now_unix + TTL_SECS;
        let mac = self
            .mac_of(expires, node_id, stream)
            .finalize()
            .into_bytes();
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        format!("{expires} {node_id} {hex} {stream}")
    }

    /// The relay a credential proves, if it is valid at `now`.
    pub fn verify(&self, credential: &str, now_unix: u64) -> Result<Relay, &'static str> {
        if credential.len() > MAX_LEN {
            return Err("relay credential too long");
        }
        let mut parts = credential.splitn(4, ' ');
        let (Some(expires), Some(node_id), Some(hex), Some(stream)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed relay credential");
        };
        let expires: u64 = expires.parse().map_err(|_| "malformed relay credential")?;
        let tag = decode_hex(hex).ok_or("malformed relay credential")?;
        // The tag first: nothing about an unauthenticated credential is worth reporting.
        self.mac_of(expires, node_id, stream)
            .verify_slice(&tag)
            .map_err(|_| "relay credential does not verify")?;
        if now_unix > expires + SKEW_SECS {
            return Err("relay credential expired");
        }
        if expires > now_unix + TTL_SECS + SKEW_SECS {
            return Err("relay credential valid for too long");
        }
        Ok(Relay {
            node_id: node_id.to_string(),
            stream: stream.to_string(),
        })
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Seconds since the Unix epoch (0 before 1970).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_credential_proves_one_node_relaying_one_stream_for_a_minute() {
        let key = RelayKey::derive("cluster-secret-0123456789", "ringcast");
        let cred = key.issue("edge-1", "live/cam 1", NOW);
        assert_eq!(
            key.verify(&cred, NOW),
            Ok(Relay {
                node_id: "edge-1".into(),
                stream: "live/cam 1".into()
            })
        );
        assert!(key.verify(&cred, NOW + TTL_SECS + SKEW_SECS).is_ok());
        assert_eq!(
            key.verify(&cred, NOW + TTL_SECS + SKEW_SECS + 1),
            Err("relay credential expired")
        );
        // Another cluster's key, another stream, another node: not valid.
        let other = RelayKey::derive("cluster-secret-0123456789", "other");
        assert!(other.verify(&cred, NOW).is_err());
        let tampered = cred.replace("live/cam 1", "live/cam 2");
        assert_eq!(
            key.verify(&tampered, NOW),
            Err("relay credential does not verify")
        );
        let tampered = cred.replacen("edge-1", "edge-2", 1);
        assert!(key.verify(&tampered, NOW).is_err());
        // Garbage, and a far-future expiry made with the right key.
        for junk in ["", "1 2 3", "x edge zz live/a", &"a ".repeat(600)] {
            assert!(key.verify(junk, NOW).is_err(), "{junk:?}");
        }
        let far = key.issue("edge-1", "live/a", NOW + 3600);
        assert_eq!(
            key.verify(&far, NOW),
            Err("relay credential valid for too long")
        );
    }
}
