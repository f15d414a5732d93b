//! The accept loop: TCP → TLS → hyper (HTTP/1.1 or HTTP/2 by ALPN), one task per connection.
//! Limits live here: a cap on concurrent connections, a deadline on the handshake, on reading
//! request headers, on idleness (see [`watch`]: no connection holds a slot without serving a
//! request) and, in the pipeline, on the body. A connection that fails only ever takes itself
//! down.

pub(crate) mod body_end;
mod discard;
pub(crate) mod fd_limit;
pub(crate) mod linger;
pub(crate) mod protocol_error;
pub(crate) mod refusal;
pub(crate) mod watch;

pub(crate) use discard::discard_rest;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::Limits;
use crate::pipeline::{self, ConnectionInfo, ExchangeEvent, Proxy};

/// The flag that sets the listener's header timeout, named in a late head's 408.
const HEADER_TIMEOUT_FLAG: &str = "--header-timeout";

/// How long in-flight exchanges get to finish when the listener stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the accept loop needs.
pub struct Server {
    pub listener: TcpListener,
    pub tls: Arc<rustls::ServerConfig>,
    pub proxy: Arc<Proxy>,
    pub limits: Limits,
}

/// HTTP/1.1 and HTTP/2 settings of a public listener (this one and the relay's): limits on
/// headers and streams. `header_timeout` is enforced by [`refusal::Refusals`] (a late head
/// gets 408) and [`watch`] (idle connections); hyper's own, which closes without a word,
/// is only a backstop after it.
pub(crate) fn http_builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout + watch::CLOSE_GRACE)
        .preserve_header_case(true)
        .max_buf_size(256 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256)
        .max_header_list_size(256 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

impl Server {
    /// Accepts connections until `shutdown` turns true, then lets in-flight exchanges finish.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let acceptor = TlsAcceptor::from(self.tls.clone());
        let http = Arc::new(http_builder(self.limits.header_timeout));
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let mut warnings = Throttle::accept_failures();
        while let Some((permit, tcp, client_addr)) =
            accept_next(&self.listener, &slots, &mut shutdown, &mut warnings).await
        {
            let stop = shutdown.clone();
            let acceptor = acceptor.clone();
            let http = http.clone();
            let proxy = self.proxy.clone();
            let limits = self.limits;
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(reason) = serve_connection(
                    tcp,
                    client_addr,
                    acceptor,
                    http,
                    proxy.clone(),
                    limits,
                    stop,
                )
                .await
                {
                    tracing::info!("connection from {client_addr}: {reason}");
                    let _ = proxy.events.send(ExchangeEvent::ConnectionFailed {
                        client_addr: Some(client_addr),
                        reason,
                    });
                }
            });
        }
        drop(self.listener);
        if tokio::time::timeout(
            DRAIN_TIMEOUT,
            all_closed(&slots, self.limits.max_connections),
        )
        .await
        .is_err()
        {
            tracing::warn!(
                "some connections were still busy after {DRAIN_TIMEOUT:?}; closing them"
            );
        }
    }
}

/// Returns once every connection has ended (each holds one of the `max` slots while it runs).
pub(crate) async fn all_closed(slots: &Semaphore, max: usize) {
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// How often a failing `accept` is logged at most.
const ACCEPT_WARNING_EVERY: Duration = Duration::from_secs(5);

/// Lets a repeated warning through at most once per period, counting the ones held back.
pub(crate) struct Throttle {
    every: Duration,
    last: Option<std::time::Instant>,
    held_back: u64,
}

impl Throttle {
    /// For failed accepts: once per [`ACCEPT_WARNING_EVERY`].
    pub(crate) fn accept_failures() -> Throttle {
        Throttle::every(ACCEPT_WARNING_EVERY)
    }

    fn every(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// Another occurrence at `now`: `Some(how many were held back since the last one let
    /// through)` if this one is to be logged.
    fn due(&mut self, now: std::time::Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// Waits for a free connection slot, then the next connection; `None` once `shutdown` turns
/// true. A failed accept (usually out of file descriptors) backs off instead of spinning, and
/// is logged through `warnings` (the accept loop's own, one for its whole life: see
/// [`Throttle::accept_failures`]), not 20 times a second.
pub(crate) async fn accept_next(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    warnings: &mut Throttle,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.ok()?,
            _ = shutdown.changed() => return None,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return None,
        };
        match accepted {
            Ok((tcp, addr)) => return Some((permit, tcp, addr)),
            Err(e) => {
                if let Some(held_back) = warnings.due(std::time::Instant::now()) {
                    let more = match held_back {
                        0 => String::new(),
                        n => format!(" ({n} more failed since the last warning)"),
                    };
                    tracing::warn!(
                        "accepting a connection on {:?} failed: {e}{more}",
                        listener.local_addr().ok()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Looks at a new connection's first bytes, within `timeout`: the connection back if they
/// may start a TLS handshake, `None` if it closed without a byte (a port check), an error if
/// it stayed silent or spoke plain HTTP (answered 400 with a hint, as `speaker`; `stop` ends
/// the wait for the rest of that request when the server stops).
pub(crate) async fn expect_tls(
    tcp: TcpStream,
    timeout: Duration,
    speaker: &str,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Option<TcpStream>, String> {
    let _ = tcp.set_nodelay(true);
    let mut first = [0u8; 4];
    let peeked = tokio::time::timeout(timeout, tcp.peek(&mut first))
        .await
        .map_err(|_| "sent nothing before the handshake timeout".to_string())?
        .map_err(|e| format!("connection failed before the handshake: {e}"))?;
    if peeked == 0 {
        return Ok(None);
    }
    if looks_like_plain_http(&first[..peeked]) {
        answer_plain_http(tcp, speaker, stop.clone()).await;
        return Err("sent plain HTTP to the HTTPS port (answered 400 with a hint)".into());
    }
    Ok(Some(tcp))
}

/// A status with no standard reason phrase gets none in its HTTP/1 status line (`299 `), not
/// hyper's placeholder: a `299` from the local server would reach its sender as `299 <none>`.
pub(crate) fn without_made_up_reason<B>(response: &mut hyper::Response<B>) {
    if response.status().canonical_reason().is_none() {
        response
            .extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b""));
    }
}

/// Whether the first bytes look like a plain-text HTTP request rather than a TLS record.
pub(crate) fn looks_like_plain_http(first: &[u8]) -> bool {
    first.first().is_some_and(u8::is_ascii_uppercase)
        && first.iter().all(|&b| b.is_ascii_uppercase() || b == b' ')
}

async fn serve_connection(
    tcp: TcpStream,
    client_addr: SocketAddr,
    acceptor: TlsAcceptor,
    http: Arc<auto::Builder<TokioExecutor>>,
    proxy: Arc<Proxy>,
    limits: Limits,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let Some(tcp) = expect_tls(tcp, limits.handshake_timeout, "vobiz-tunnel", &stop).await? else {
        return Ok(()); // opened and closed: a port check
    };
    let tls_stream = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let closing = linger::Closing::of(tls_stream.get_ref().0);
    let lingering_stop = stop.clone();
    let request_start = Arc::new(refusal::RequestStart::default());
    let served = serve_http(
        tls_stream,
        client_addr,
        http,
        proxy,
        limits,
        stop,
        request_start.clone(),
    )
    .await;
    if let Some(closing) = closing {
        // A sender whose body was not all read, or whose request was refused, may still be
        // sending even if nothing is waiting at this instant.
        let patient = request_start.body_unread() || served.is_err();
        closing.close(Some(lingering_stop), patient).await;
    }
    served
}

/// HTTP on a connection, once its TLS handshake is done; `request_start` keeps the start of
/// each request (see [`refusal`]).
async fn serve_http(
    tls_stream: tokio_rustls::server::TlsStream<TcpStream>,
    client_addr: SocketAddr,
    http: Arc<auto::Builder<TokioExecutor>>,
    proxy: Arc<Proxy>,
    limits: Limits,
    stop: tokio::sync::watch::Receiver<bool>,
    request_start: Arc<refusal::RequestStart>,
) -> Result<(), String> {
    let info = Arc::new(ConnectionInfo {
        client_addr: Some(client_addr),
        tls: crate::tls::session_info(tls_stream.get_ref().1),
        relayed: false,
    });
    let activity = watch::Activity::new();
    let counter = activity.clone();
    let recorder = (proxy.clone(), info.clone());
    let received = request_start.clone();
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        // The head as it came, for the header names' case (HTTP/1 only; empty for HTTP/2).
        if let Some(headers) = received.take_for(&request) {
            request
                .extensions_mut()
                .insert(refusal::ReceivedHead(headers));
        }
        watch::counted(
            &counter,
            pipeline::handle(proxy.clone(), info.clone(), request),
        )
    });
    let refused = Arc::new(refusal::RefusalSlot::default());
    let stream = refusal::Refusals::new(
        tls_stream,
        activity.clone(),
        refused.clone(),
        Some(request_start),
        "vobiz-tunnel",
    )
    .speaking_h2(recorder.1.tls.alpn.as_deref() == Some("h2"))
    .answering_late_heads(limits.header_timeout, Some(HEADER_TIMEOUT_FLAG));
    let connection = http.serve_connection(TokioIo::new(stream), service);
    let ended = watch::serve(connection, &activity, limits.header_timeout, stop).await;
    // A request hyper refused (malformed, too large a head) is recorded like any other.
    if let Some(refusal) = refused.take() {
        // hyper's error says why it refused; a late head is ours (hyper saw the stream end).
        let reason = match &ended {
            watch::Ended::Finished(Err(e)) if !refusal.late_head() => {
                crate::forward::error_chain(e.as_ref())
            }
            _ => refusal.reason.clone(),
        };
        let status = refusal.status;
        refusal::record_refused(&recorder.0, &recorder.1, refusal, &reason).await;
        return Err(format!("HTTP error: {reason} (answered {status})"));
    }
    match ended {
        watch::Ended::Idle => {
            tracing::debug!("connection from {client_addr} closed: idle");
            Ok(())
        }
        watch::Ended::Finished(Ok(())) => Ok(()),
        watch::Ended::Finished(Err(e)) => {
            let reason = crate::forward::error_chain(e.as_ref());
            if is_ordinary_close(&reason) {
                tracing::debug!("connection from {client_addr} ended: {reason}");
                Ok(())
            } else {
                Err(protocol_error::describe(e.as_ref()))
            }
        }
    }
}

/// Idle keep-alive connections timing out and peers hanging up are how connections end;
/// only protocol errors deserve a line in the log.
pub(crate) fn is_ordinary_close(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "timeout",
        "timed out",
        "connection closed",
        "channel closed",
        "reset",
        "broken pipe",
        "close_notify",
        // HTTP/2's NO_ERROR, a client's GOAWAY on its way out.
        "not a result of an error",
    ]
    .iter()
    .any(|needle| reason.contains(needle))
}

/// Someone spoke plain HTTP to the TLS port: tell them so instead of a TLS alert they can't
/// read. `speaker` names who answers (`vobiz-tunnel`, `vobiz-tunnel relay`).
pub(crate) async fn answer_plain_http(
    mut tcp: TcpStream,
    speaker: &str,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let body = format!("{speaker}: this port speaks HTTPS; use an https:// URL\n");
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let written = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(response.as_bytes()));
    if let Ok(Ok(())) = written.await {
        // The rest of their request is unread: closed gently, or they would get a reset.
        if let Some(closing) = linger::Closing::owned(tcp) {
            closing.close(Some(stop), true).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{looks_like_plain_http, Duration, Throttle};

    #[test]
    fn a_repeated_warning_goes_through_once_per_period_with_the_count_held_back() {
        let start = std::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut warnings = Throttle::every(Duration::from_secs(5));
        assert_eq!(warnings.due(at(0)), Some(0));
        for ms in (50..5000).step_by(50) {
            assert_eq!(warnings.due(at(ms)), None, "{ms} ms");
        }
        assert_eq!(
            warnings.due(at(5000)),
            Some(99),
            "20 a second for 5 s, less the first"
        );
        assert_eq!(warnings.due(at(5001)), None);
        assert_eq!(warnings.due(at(60_000)), Some(1));
    }

    #[test]
    fn plain_http_is_told_apart_from_tls() {
        assert!(looks_like_plain_http(b"POST"));
        assert!(looks_like_plain_http(b"GE"));
        assert!(looks_like_plain_http(b"GET "));
        assert!(!looks_like_plain_http(&[0x16, 0x03, 0x01, 0x02]));
        assert!(!looks_like_plain_http(b"\x00\x01"));
        assert!(!looks_like_plain_http(b""));
    }
}
