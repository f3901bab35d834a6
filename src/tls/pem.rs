//! PEM files: certificate chains, private keys, and the pair checked against each other.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::TlsError;

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(key, path, format!("cannot read: {e}")))
}

fn file_error(key: &'static str, path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        key,
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Every `CERTIFICATE` block of the PEM file at `path` (the config key `key` named it), in
/// order: for a server, its certificate first, then the intermediates.
pub fn load_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, format!("not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            key,
            path,
            "no certificate in it (expected PEM with -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The first private key of the PEM file at `path` (PKCS#8, PKCS#1 RSA or SEC1 EC).
fn load_private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => file_error(
            key,
            path,
            "no private key in it (expected PEM with -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
        ),
        e => file_error(key, path, format!("not a PEM file: {e}")),
    })
}

/// The certificate chain at `cert_path` (key `cert_key`) with the private key at `key_path`
/// (key `key_key`), checked to belong together.
pub fn load_certified_key(
    (cert_key, cert_path): (&'static str, &Path),
    (key_key, key_path): (&'static str, &Path),
) -> Result<CertifiedKey, TlsError> {
    let chain = load_certificates(cert_key, cert_path)?;
    let private = load_private_key(key_key, key_path)?;
    CertifiedKey::from_der(chain, private, &super::provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => file_error(
            key_key,
            key_path,
            format!(
                "does not match the certificate of {cert_key} ({})",
                cert_path.display()
            ),
        ),
        rustls::Error::InvalidCertificate(e) => file_error(
            cert_key,
            cert_path,
            format!("not a usable X.509 certificate: {e:?}"),
        ),
        e => file_error(key_key, key_path, format!("unusable private key: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::server::tests::{self_signed, TempDir};

    #[test]
    fn loads_a_matching_pair() {
        let dir = TempDir::new("pem-ok");
        let (cert, key) = self_signed(&dir, "a", &["localhost"]);
        let ck =
            load_certified_key(("rtmp.tls_cert", &cert), ("rtmp.tls_key", &key)).expect("loads");
        assert_eq!(ck.cert.len(), 1);
    }

    #[test]
    fn each_bad_file_names_its_key() {
        let dir = TempDir::new("pem-bad");
        let (cert, key) = self_signed(&dir, "a", &["localhost"]);
        let (_, other_key) = self_signed(&dir, "b", &["localhost"]);
        let garbage = dir.write("garbage.pem", b"hello, not a certificate\n");
        let missing = dir.path().join("missing.pem");
        let load = |c: &Path, k: &Path| {
            load_certified_key(("rtmp.tls_cert", c), ("rtmp.tls_key", k))
                .map(|_| ())
                .map_err(|e| (e.key(), e.to_string()))
        };
        let (k, msg) = load(&missing, &key).expect_err("missing cert");
        assert_eq!(k, "rtmp.tls_cert");
        assert!(msg.contains("cannot read"), "{msg}");
        let (k, msg) = load(&garbage, &key).expect_err("not PEM");
        assert_eq!(k, "rtmp.tls_cert");
        assert!(msg.contains("no certificate"), "{msg}");
        let (k, msg) = load(&cert, &garbage).expect_err("key not PEM");
        assert_eq!(k, "rtmp.tls_key");
        assert!(msg.contains("no private key"), "{msg}");
        let (k, msg) = load(&cert, &cert).expect_err("a certificate is no key");
        assert_eq!(k, "rtmp.tls_key");
        assert!(msg.contains("no private key"), "{msg}");
        let (k, msg) = load(&cert, &other_key).expect_err("mismatch");
        assert_eq!(k, "rtmp.tls_key");
        assert!(msg.contains("does not match"), "{msg}");
        let broken = dir.write(
            "broken.pem",
            b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        );
        let (k, msg) = load(&broken, &key).expect_err("broken PEM");
        assert_eq!(k, "rtmp.tls_cert");
        assert!(msg.contains("not a PEM file"), "{msg}");
    }
}
