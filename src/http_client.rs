//! The outbound HTTP client: access checkers' HTTP hooks and JWKS fetches, and the cluster API
//! asking the other nodes.
//!
//! Owns: the one place that builds a `reqwest::Client` for them, and the process-wide rustls
//! crypto provider (ring) that such a client needs. Must never: follow a redirect (a hook's
//! 3xx is its answer, not a place to go), use a proxy from the environment, or pull in a
//! second TLS stack (aws-lc, OpenSSL).

use std::sync::Once;
use std::time::Duration;

/// How long a new connection to a hook server or JWKS host may take; the caller's own
/// timeout (per request) still bounds the whole call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle keep-alive connections are dropped after this.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per host (hooks are usually one host, asked often).
const POOL_MAX_IDLE: usize = 32;

/// Installs rustls' `ring` provider as the process default, once. reqwest is built with
/// `rustls-no-provider` and panics when it builds a client without one, so every client here
/// is built after this. Idempotent; if another provider was installed first (by someone
/// else), that one stays and is used.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed: fine, it is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client for hooks, JWKS and other nodes: no redirects, no proxies, HTTP/1.1, bounded connect time,
/// a `ringcast/VERSION` user agent. Requests set their own timeouts.
pub fn client() -> Result<reqwest::Client, String> {
    install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .http1_only()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .tcp_nodelay(true)
        .user_agent(concat!("ringcast/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A short description of why a request failed, fit for a client-facing reason: the kind of
/// failure (the innermost cause), never the URL (hook URLs may carry secrets).
pub fn describe_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut innermost: &dyn std::error::Error = &e;
    while let Some(source) = innermost.source() {
        if let Some(io) = source.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        innermost = source;
    }
    let mut text = innermost.to_string();
    if text.len() > 200 {
        let mut cut = 200;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_clients_build() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        client().expect("client");
        client().expect("a second client");
    }

    #[tokio::test]
    async fn a_refused_connection_is_described_without_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = client()
            .expect("client")
            .get(format!("http://{addr}/secret-path?token=hunter2"))
            .send()
            .await
            .expect_err("nothing listens");
        let text = describe_error(err);
        assert!(
            !text.contains("hunter2") && !text.contains("secret-path"),
            "{text}"
        );
        assert!(text.contains("refused"), "{text}");
    }
}
