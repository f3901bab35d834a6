//! TLS for RTMPS: the server's certificate and the client configurations.
//!
//! Owns: reading PEM certificates and keys (`pem`), the server certificate that a SIGHUP
//! reloads without touching open connections (`server`), and the client side: which servers a
//! relay or the load tool trusts (`client`). Must never: do IO on a connection (the server's
//! sessions and the client wrap their sockets themselves), log (callers decide what a failed
//! reload means), or fall back to an unverified connection unless told to (`insecure`).
//!
//! The crypto provider is rustls' `ring`, passed explicitly everywhere (no process default is
//! installed or read here): it builds in seconds where aws-lc-rs needs cmake and a C build.

mod client;
mod pem;
mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use client::{
    ca_client_config, insecure_client_config, platform_client_config, TrustedCertificates,
};
pub use pem::{load_certificates, load_certified_key};
pub use server::{ServerCert, TlsAcceptor};

/// Why a certificate, a key or a TLS configuration is unusable. Every message names the
/// config key it came from (the load tool names its flag instead).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named by `key` cannot be read or holds nothing usable.
    #[error("{key}: {path}: {message}")]
    File {
        key: &'static str,
        path: String,
        message: String,
    },
    /// rustls refused the configuration (not expected with the ring provider).
    #[error("{key}: {message}")]
    Config { key: &'static str, message: String },
}

impl TlsError {
    /// The config key (or flag) the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::File { key, .. } | TlsError::Config { key, .. } => key,
        }
    }
}

/// rustls' `ring` provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a node's config asks of TLS, loaded: the RTMPS certificate (`rtmp.tls_listen`) and
/// what relays trust (`cluster.relay_tls`). Building it reads every file, so a bad one stops
/// the start (and `--check-config`) with an error naming its key.
pub struct NodeTls {
    pub server: Option<Arc<ServerCert>>,
    /// What relays trust, when they use RTMPS.
    pub relay: Option<Arc<TrustedCertificates>>,
}

impl NodeTls {
    pub fn from_config(cfg: &crate::config::Config) -> Result<NodeTls, TlsError> {
        let server = if cfg.rtmp.tls_listen.is_empty() {
            None
        } else {
            Some(ServerCert::load(&cfg.rtmp.tls_cert, &cfg.rtmp.tls_key)?)
        };
        let relay = if cfg.cluster.relay_tls && cfg.cluster_enabled() {
            let (key, path) = if cfg.cluster.relay_tls_ca.is_empty() {
                ("rtmp.tls_cert", &cfg.rtmp.tls_cert)
            } else {
                ("cluster.relay_tls_ca", &cfg.cluster.relay_tls_ca)
            };
            Some(TrustedCertificates::load(key, path)?)
        } else {
            None
        };
        Ok(NodeTls { server, relay })
    }
}
