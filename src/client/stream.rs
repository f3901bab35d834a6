//! The client's connection: TCP, or TLS over TCP for `rtmps://`.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_util::either::Either;

/// What [`super::RtmpClient`] reads and writes: tokio-util's `Either` passes every read, write,
/// vectored write and flush to the side in use.
pub(super) type ClientStream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// Plain TCP.
pub(super) fn tcp(socket: TcpStream) -> ClientStream {
    Either::Left(socket)
}

/// The client side of a TLS handshake with `host` (a DNS name or an IP address, checked
/// against the certificate as `config` says) over `socket`.
pub(super) async fn tls(
    socket: TcpStream,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<ClientStream, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a server name: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, socket)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Either::Right(Box::new(tls)))
}
