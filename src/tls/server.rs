//! The server's certificate, swapped in place on reload, and the acceptor built on it.
//!
//! A reload reads both files again and, only when the pair is usable, replaces the certificate
//! that new handshakes get. Connections already open keep the keys they agreed on: nothing
//! here can reach them.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::TlsError;

/// Accepts TLS on a connection (tokio-rustls).
pub type TlsAcceptor = tokio_rustls::TlsAcceptor;

const CERT_KEY: &str = "rtmp.tls_cert";
const KEY_KEY: &str = "rtmp.tls_key";

/// `rtmp.tls_cert` and `rtmp.tls_key`, loaded; [`ServerCert::reload`] re-reads them.
pub struct ServerCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ServerCert {
    /// Loads the pair; an error names the key whose file is at fault.
    pub fn load(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Result<Arc<ServerCert>, TlsError> {
        let (cert_path, key_path) = (cert_path.into(), key_path.into());
        let key = super::load_certified_key((CERT_KEY, &cert_path), (KEY_KEY, &key_path))?;
        Ok(Arc::new(ServerCert {
            cert_path,
            key_path,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads both files again; on success new handshakes get the new certificate, on error
    /// the old one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key =
            super::load_certified_key((CERT_KEY, &self.cert_path), (KEY_KEY, &self.key_path))?;
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(key),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(key),
        }
        Ok(())
    }

    /// The PEM file of the certificate chain.
    pub fn cert_path(&self) -> &std::path::Path {
        &self.cert_path
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// An acceptor that serves whatever certificate is current at each handshake (TLS 1.2
    /// and 1.3, no client certificates).
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let config = ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config {
                key: CERT_KEY,
                message: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// A directory removed when dropped.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> TempDir {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("ringcast-tls-{name}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }

        pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).expect("write");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A self-signed certificate for `names` and its key, as `NAME.crt` and `NAME.key`.
    pub(crate) fn self_signed(dir: &TempDir, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
        (
            dir.write(&format!("{name}.crt"), ck.cert.pem().as_bytes()),
            dir.write(
                &format!("{name}.key"),
                ck.signing_key.serialize_pem().as_bytes(),
            ),
        )
    }

    #[test]
    fn reload_swaps_only_a_usable_pair() {
        let dir = TempDir::new("reload");
        let (cert, key) = self_signed(&dir, "live", &["localhost"]);
        let server = ServerCert::load(&cert, &key).expect("loads");
        let first = server.current().cert[0].clone();
        // A new pair in the same files: the next handshake gets it.
        let (new_cert, new_key) = self_signed(&dir, "next", &["localhost"]);
        std::fs::copy(&new_cert, &cert).expect("copy");
        std::fs::copy(&new_key, &key).expect("copy");
        server.reload().expect("reloads");
        let second = server.current().cert[0].clone();
        assert_ne!(first, second);
        // A broken file: the error names the key, the current pair stays.
        std::fs::write(&cert, b"garbage").expect("write");
        let err = server.reload().expect_err("broken");
        assert_eq!(err.key(), "rtmp.tls_cert");
        assert_eq!(server.current().cert[0], second);
        assert!(server.acceptor().is_ok());
    }
}
