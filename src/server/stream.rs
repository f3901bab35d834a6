//! The byte stream under a session: TCP, or TLS over TCP (RTMPS).
//!
//! Owns: the two halves a session reads and writes, and the switch of a TCP connection to TLS
//! (after a PROXY protocol header, whose trailing bytes are the start of the TLS handshake).
//! Must never: buffer or copy what passes through on plain TCP (each call is one `match` away
//! from the socket's own), or log (the session's close line says how a handshake failed).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::tls::TlsAcceptor;

/// A server-side TLS connection.
type ServerTls = tokio_rustls::server::TlsStream<Prefixed>;

/// What a session reads from.
pub(super) enum Reader {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<ServerTls>),
    /// Only while [`start_tls`] holds the socket; reads fail.
    Detached,
}

/// What a session writes to.
pub(super) enum Writer {
    Tcp(OwnedWriteHalf),
    Tls(WriteHalf<ServerTls>),
    /// Only while [`start_tls`] holds the socket; writes fail.
    Detached,
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection is being switched to TLS",
    )
}

/// The halves of a plain TCP connection.
pub(super) fn tcp(socket: TcpStream) -> (Reader, Writer) {
    let (rd, wr) = socket.into_split();
    (Reader::Tcp(rd), Writer::Tcp(wr))
}

/// Runs the server side of a TLS handshake on the TCP connection behind `rd` and `wr`, with
/// `prefix` (bytes already read, e.g. after a PROXY header) as the first bytes of it, and
/// replaces both halves with the TLS ones. Not cancel-safe: a cancelled or failed handshake
/// leaves both halves detached, and the connection must close.
pub(super) async fn start_tls(
    rd: &mut Reader,
    wr: &mut Writer,
    prefix: Bytes,
    acceptor: &TlsAcceptor,
) -> io::Result<()> {
    let (Reader::Tcp(r), Writer::Tcp(w)) = (
        std::mem::replace(rd, Reader::Detached),
        std::mem::replace(wr, Writer::Detached),
    ) else {
        return Err(io::Error::other("TLS started twice"));
    };
    let socket = r
        .reunite(w)
        .map_err(|_| io::Error::other("halves of two sockets"))?;
    let tls = acceptor.accept(Prefixed { prefix, socket }).await?;
    let (r, w) = tokio::io::split(tls);
    *rd = Reader::Tls(r);
    *wr = Writer::Tls(w);
    Ok(())
}

impl Reader {
    /// How many bytes must wait in the socket before it counts as readable (SO_RCVLOWAT):
    /// raised while a publisher's read is paused, so that the packets arriving meanwhile do
    /// not wake the node, and set back to 1 to resume (which signals at once if enough
    /// waits). Plain TCP only; best effort: where it fails the node just wakes more often.
    pub(super) fn set_wake_threshold(&self, bytes: usize) {
        use std::os::fd::AsRawFd;
        let Reader::Tcp(r) = self else {
            return;
        };
        let fd = r.as_ref().as_raw_fd();
        let value = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fd` is the open socket `r` owns, and the option value is a c_int that
        // lives across the call, with its size passed alongside.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Tls(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            Writer::Tls(w) => Pin::new(w).poll_write(cx, buf),
            Writer::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Writer::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Writer::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Writer::Tcp(w) => w.is_write_vectored(),
            Writer::Tls(w) => w.is_write_vectored(),
            Writer::Detached => false,
        }
    }

    /// TLS holds records it could not write yet until a flush: every batch of writes ends
    /// with one. A no-op on TCP.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_flush(cx),
            Writer::Tls(w) => Pin::new(w).poll_flush(cx),
            Writer::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            Writer::Tls(w) => Pin::new(w).poll_shutdown(cx),
            Writer::Detached => Poll::Ready(Ok(())),
        }
    }
}

/// A TCP stream whose first bytes were already read (`prefix`), handed out again first.
pub(super) struct Prefixed {
    prefix: Bytes,
    socket: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}
