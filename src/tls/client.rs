//! Which servers a client trusts: a cluster's own certificates, the system's roots, or (for
//! benchmarks against self-signed servers) anyone.
//!
//! A relay trusts the certificates of `cluster.relay_tls_ca` (default: the node's own
//! `rtmp.tls_cert`) two ways: a server presenting exactly one of them is trusted as it is
//! (pinned: a cluster sharing one self-signed certificate works, whatever its names, dates or
//! CA flag), and any other must chain to one of them and name the host the relay dialed.
//! Either way the server proves it holds the certificate's key in the handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::TlsError;

fn config(
    key: &'static str,
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            key,
            message: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Trusts the certificates of the PEM file at `path` (named by `key`), pinned or as roots.
pub fn ca_client_config(key: &'static str, path: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = super::provider();
    let pinned = super::load_certificates(key, path)?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(pinned.iter().cloned());
    let chained = if added > 0 {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::File {
                    key,
                    path: path.display().to_string(),
                    message: format!("unusable as trusted certificates: {e}"),
                })?;
        Some(verifier)
    } else {
        None
    };
    let verifier = Arc::new(PinnedOrChained {
        pinned,
        chained,
        provider: provider.clone(),
    });
    config(key, provider, verifier)
}

/// The certificates of a PEM file as a client configuration, re-read on [`reload`]: what
/// relays trust (`cluster.relay_tls_ca`, or `rtmp.tls_cert`), rotated with the certificates.
///
/// [`reload`]: TrustedCertificates::reload
pub struct TrustedCertificates {
    key: &'static str,
    path: PathBuf,
    current: RwLock<Arc<ClientConfig>>,
}

impl TrustedCertificates {
    pub fn load(
        key: &'static str,
        path: impl Into<PathBuf>,
    ) -> Result<Arc<TrustedCertificates>, TlsError> {
        let path = path.into();
        let config = ca_client_config(key, &path)?;
        Ok(Arc::new(TrustedCertificates {
            key,
            path,
            current: RwLock::new(config),
        }))
    }

    /// Reads the file again; on error the certificates in use stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = ca_client_config(self.key, &self.path)?;
        match self.current.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// The PEM file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration new connections use.
    pub fn config(&self) -> Arc<ClientConfig> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Trusts the operating system's roots (the load tool's default for `rtmps://`).
pub fn platform_client_config() -> Result<Arc<ClientConfig>, TlsError> {
    let provider = super::provider();
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| {
        TlsError::Config {
            key: "system trust store",
            message: e.to_string(),
        }
    })?;
    config("system trust store", provider, Arc::new(verifier))
}

/// Trusts any certificate (the handshake's signatures are still checked against it): for
/// benchmarks and tests against self-signed servers only.
pub fn insecure_client_config() -> Result<Arc<ClientConfig>, TlsError> {
    let provider = super::provider();
    let verifier = Arc::new(AnyCertificate {
        provider: provider.clone(),
    });
    config("--insecure", provider, verifier)
}

fn check_tls12(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls12_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn check_tls13(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// Exactly one of `pinned`, or a chain to one of them naming the host.
#[derive(Debug)]
struct PinnedOrChained {
    pinned: Vec<CertificateDer<'static>>,
    /// `None` when no pinned certificate parses as a trust anchor.
    chained: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedOrChained {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.chained {
            Some(webpki) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_tls12(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Any certificate at all.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_tls12(&self.provider, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::server::tests::{self_signed, TempDir};

    #[test]
    fn trusted_certificates_reload_keeps_the_old_ones_on_error() {
        let dir = TempDir::new("trusted");
        let (cert, _) = self_signed(&dir, "a", &["localhost"]);
        let trusted = TrustedCertificates::load("cluster.relay_tls_ca", &cert).expect("loads");
        let first = trusted.config();
        trusted.reload().expect("reloads");
        assert!(!Arc::ptr_eq(&first, &trusted.config()));
        let kept = trusted.config();
        std::fs::write(&cert, b"not PEM").expect("write");
        let err = trusted.reload().expect_err("broken");
        assert_eq!(err.key(), "cluster.relay_tls_ca");
        assert!(Arc::ptr_eq(&kept, &trusted.config()));
        assert_eq!(trusted.path(), cert.as_path());
    }

    /// A server serving `cert`/`key` over an in-memory pipe, and a client trusting the PEM
    /// file `trust`, dialing `name`: whether the handshake succeeds.
    async fn handshake(cert: &str, key: &str, trust: &Path, name: &str) -> bool {
        let dir = TempDir::new("hs");
        let cert = dir.write("c.pem", cert.as_bytes());
        let key = dir.write("k.pem", key.as_bytes());
        let server = crate::tls::ServerCert::load(&cert, &key).expect("server pair");
        let acceptor = server.acceptor().expect("acceptor");
        let connector =
            tokio_rustls::TlsConnector::from(ca_client_config("test", trust).expect("trust"));
        let (a, b) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(async move { acceptor.accept(a).await.is_ok() });
        let name = ServerName::try_from(name.to_string()).expect("name");
        let client = connector.connect(name, b).await.is_ok();
        let _ = served.await;
        client
    }

    #[tokio::test]
    async fn pinned_certificates_and_chains_to_them() {
        let dir = TempDir::new("verify");
        // A self-signed CA certificate used as a server's own (what `openssl req -x509` makes
        // by default): pinned, it is trusted whatever name was dialed.
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params =
            rcgen::CertificateParams::new(vec!["ca.example".to_string()]).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let ca_file = dir.write("ca.pem", ca.pem().as_bytes());
        let ca_key_pem = ca_key.serialize_pem();
        assert!(handshake(&ca.pem(), &ca_key_pem, &ca_file, "anything.example").await);

        // A leaf signed by that CA: trusted through the chain, for its own names only.
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["node-1.example".to_string()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf");
        let leaf_key_pem = leaf_key.serialize_pem();
        assert!(handshake(&leaf.pem(), &leaf_key_pem, &ca_file, "node-1.example").await);
        assert!(!handshake(&leaf.pem(), &leaf_key_pem, &ca_file, "node-2.example").await);

        // Anything else is refused.
        let (other_cert, other_key) = self_signed(&dir, "other", &["node-1.example"]);
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert!(
            !handshake(
                &read(&other_cert),
                &read(&other_key),
                &ca_file,
                "node-1.example"
            )
            .await
        );
    }
}
