//! Which upstream connection a request went out on: one opened for it, or one kept alive
//! from earlier requests. A local server closes idle keep-alive connections (Node and
//! uvicorn after 5 s); a request written to one in the instant the server closes it fails
//! before any answer, though the server never saw it. Such a failure on a kept-alive
//! connection is worth one more try on a new connection, as nginx does; on a new connection
//! a failure is the server's doing and is not repeated.
//!
//! hyper-util does not say whether it reused a connection, so the connector stamps each
//! connection it opens with the time, and a request compares that stamp with its own start.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};

/// When an upstream connection was opened (in the connection's extras).
#[derive(Clone, Copy, Debug)]
pub struct OpenedAt(pub Instant);

/// A connector whose connections carry [`OpenedAt`].
#[derive(Clone, Debug)]
pub struct Stamped<C>(pub C);

impl<C> tower_service::Service<Uri> for Stamped<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Unpin,
{
    type Response = StampedIo<C::Response>;
    type Error = C::Error;
    type Future = Stamping<C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        Stamping(self.0.call(destination))
    }
}

/// The connector's future, stamping the connection it yields.
pub struct Stamping<F>(F);

impl<F, T, E> Future for Stamping<F>
where
    F: Future<Output = Result<T, E>> + Unpin,
{
    type Output = Result<StampedIo<T>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_ok(|io| StampedIo {
            io,
            opened: OpenedAt(Instant::now()),
        })
    }
}

/// A connection and when it was opened; reads and writes go straight through.
pub struct StampedIo<T> {
    io: T,
    opened: OpenedAt,
}

impl<T: Connection> Connection for StampedIo<T> {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.opened)
    }
}

impl<T: Read + Unpin> Read for StampedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for StampedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

/// Whether the connection `connected` describes was opened before `started`: kept alive
/// from an earlier request.
pub fn was_reused(connected: &Connected, started: Instant) -> bool {
    let mut extras = hyper::http::Extensions::new();
    connected.get_extras(&mut extras);
    extras
        .get::<OpenedAt>()
        .is_some_and(|opened| opened.0 < started)
}

/// Whether a request failed because its connection closed under it before any answer (not
/// a refusal, a timeout or an answer that is not HTTP).
pub fn closed_before_answer(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_canceled() {
                return true;
            }
        }
        if let Some(io) = error.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            );
        }
        cause = error.source();
    }
    false
}
