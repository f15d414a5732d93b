//! Whether a request went out on a connection kept alive from earlier requests. A local
//! server closes idle keep-alive connections (Node and uvicorn after 5 s); a request written
//! to one in the instant the server closes it fails before any answer, though the server
//! never read it. Such a failure on a kept-alive connection is worth one more try on a new
//! connection, as nginx does, for an idempotent request that is not a callback only: from
//! here the race cannot be told from a server that read the request, acted on it and then
//! dropped the connection, and a callback must not be handled twice. The pool lets idle
//! connections go before such servers close them (see `POOL_IDLE`), so the race is rare. On
//! a new connection a failure is the server's doing and is not repeated.
//!
//! hyper-util does not say whether it reused a connection, and asking it per request
//! (`capture_connection`, per-response connection extras) cost ~6% of keep-alive
//! throughput. The connector counts the connections it starts instead: if none started
//! while a request was out, the request took one from the pool. (If another request started
//! one meanwhile, this one is not retried: a missed retry, never a wrong one.)

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;

/// A connector that counts the connections it starts.
#[derive(Clone, Debug)]
pub struct Counted<C> {
    inner: C,
    started: Arc<AtomicU64>,
}

/// A reading of a [`Counted`] connector's count, taken before a request.
#[derive(Clone, Copy, Debug)]
pub struct Mark(u64);

impl<C> Counted<C> {
    pub fn new(inner: C) -> Counted<C> {
        Counted {
            inner,
            started: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The count now, to compare with after a request.
    pub fn mark(&self) -> Mark {
        Mark(self.started.load(Ordering::Acquire))
    }

    /// No connection started since `mark`: a request sent meanwhile went out on a pooled,
    /// kept-alive connection.
    pub fn none_started_since(&self, mark: Mark) -> bool {
        self.started.load(Ordering::Acquire) == mark.0
    }
}

impl<C> tower_service::Service<Uri> for Counted<C>
where
    C: tower_service::Service<Uri>,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.inner.call(destination)
    }
}

/// Whether `request` may go to the local server a second time: idempotent (RFC 9110
/// §9.2.2), and not a Vobiz callback, which an app handles once per delivery whatever its
/// method (answer and action URLs may be GET).
pub fn may_send_again<B>(request: &hyper::Request<B>) -> bool {
    request.method().is_idempotent()
        && !request
            .headers()
            .keys()
            .any(|name| name.as_str().starts_with("x-vobiz-signature"))
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
