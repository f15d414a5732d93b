//! The load generator's sender: tokio tasks, each one hyper HTTP/1.1 client over tokio-rustls
//! (or plain TCP for the direct-to-origin baseline), sending signed Vobiz Hangup POSTs.
//!
//! Each request gets fresh V2/V3 nonces and its own CallUUID from one process-wide counter, so
//! the proxy sees what it would see from Vobiz: every callback valid, no nonce ever reused.
//! Signing happens before the clock starts: the latency is the receiver's, not the sender's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::header::CONNECTION;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use vobiz_tunnel::signature::AuthToken;

use crate::common;

/// Bound on one whole request (connect, handshake, send, read); a hung request fails, never
/// stalls the run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on closing a connection gracefully before it is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Source of nonces and CallUUIDs, unique across every run of the process.
static SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// Requests started so far by every worker of the process (a progress gauge).
pub fn requests_started() -> u64 {
    SEQUENCE.load(Ordering::Relaxed) - 1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One connection per worker, reused for every request.
    KeepAlive,
    /// A new connection (and, over TLS, a handshake) for every request, `Connection: close`.
    NewConnection,
}

/// Where requests go: the proxy (TLS, trusting the dev CA) or the origin (plain HTTP).
pub struct Target {
    pub addr: SocketAddr,
    /// Trusted roots for TLS; `None` for plain HTTP.
    pub roots: Option<Arc<RootCertStore>>,
    /// The `Host` header to send.
    pub host: String,
    /// The URL the requests are signed for (the proxy's public URL, also for the origin, so
    /// both receive identical bytes apart from `Host`).
    pub sign_url: String,
    pub token: AuthToken,
}

/// One worker's schedule: requests started before `warm_end` are not measured; no request
/// starts after `end` or beyond `max_requests`.
#[derive(Clone, Copy)]
pub struct Plan {
    pub mode: Mode,
    pub warm_end: Instant,
    pub end: Instant,
    pub max_requests: u64,
}

/// What one worker saw.
#[derive(Default)]
pub struct Tally {
    /// Per-request latency of measured requests, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Requests handed to the connection (warm-up included).
    pub sent: u64,
    /// Requests answered with a whole response, any status (warm-up included).
    pub answered: u64,
    /// Answers other than 200.
    pub not_ok: u64,
    /// Failures: connect, TLS, HTTP or timeout.
    pub errors: u64,
    pub first_error: Option<String>,
    /// TLS handshakes by kind (resumption is what a one-connection-per-callback sender needs).
    pub resumed: u64,
    pub full_handshakes: u64,
    /// When the last measured request ended.
    pub finished: Option<Instant>,
}

/// A client connection and the task driving it.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Conn {
    /// Drops the sender so hyper closes the connection (TLS close_notify included), waiting
    /// a bounded time for it.
    async fn close(self) {
        let Conn { sender, mut driver } = self;
        drop(sender);
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut driver)
            .await
            .is_err()
        {
            driver.abort();
        }
    }
}

impl Target {
    /// A client configuration per worker: with rustls's default in-memory session cache, so a
    /// worker that opens a connection per request resumes its earlier sessions like a real
    /// sender would. Offers only HTTP/1.1 (Vobiz sends HTTP/1.1).
    fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.roots.as_ref().map(|roots| {
            let mut config = ClientConfig::builder()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
    }

    /// A signed Hangup callback, number `n`.
    fn request(&self, n: u64, close: bool) -> Request<Full<Bytes>> {
        let body = common::hangup_body(&common::call_uuid(n));
        let mut builder = common::hangup_request(&self.host, &self.token, &self.sign_url, n);
        if close {
            builder = builder.header(CONNECTION, "close");
        }
        builder
            .body(Full::new(Bytes::from(body)))
            .expect("a well-formed request")
    }

    async fn open(
        &self,
        tls: Option<&Arc<ClientConfig>>,
        tally: &mut Tally,
    ) -> Result<Conn, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let Some(config) = tls else {
            return handshake(tcp).await;
        };
        let name = ServerName::try_from("localhost").expect("a valid name");
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        match stream.get_ref().1.handshake_kind() {
            Some(HandshakeKind::Resumed) => tally.resumed += 1,
            _ => tally.full_handshakes += 1,
        }
        handshake(stream).await
    }

    /// Sends one request on `conn` (opening it if needed); the status of a whole answer.
    async fn exchange(
        &self,
        tls: Option<&Arc<ClientConfig>>,
        conn: &mut Option<Conn>,
        request: Request<Full<Bytes>>,
        tally: &mut Tally,
    ) -> Result<u16, String> {
        let open = match conn.take() {
            Some(open) => open,
            None => self.open(tls, tally).await?,
        };
        let Conn { mut sender, driver } = open;
        sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        tally.sent += 1;
        let response = sender.send_request(request).await;
        *conn = Some(Conn { sender, driver });
        let status = common::answer_status(response).await?;
        tally.answered += 1;
        Ok(status)
    }

    /// Sends requests until the plan says stop; see [`Plan`].
    pub async fn worker(self: Arc<Self>, plan: Plan) -> Tally {
        let tls = self.client_config();
        let mut tally = Tally::default();
        let mut conn: Option<Conn> = None;
        let close = plan.mode == Mode::NewConnection;
        let mut started = 0u64;
        while started < plan.max_requests && Instant::now() < plan.end {
            started += 1;
            let request = self.request(SEQUENCE.fetch_add(1, Ordering::Relaxed), close);
            let start = Instant::now();
            let work = self.exchange(tls.as_ref(), &mut conn, request, &mut tally);
            let result = match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
            };
            let done = Instant::now();
            match result {
                Ok(status) => {
                    if status != 200 {
                        tally.not_ok += 1;
                    }
                    if start >= plan.warm_end {
                        let micros = (done - start).as_micros();
                        tally
                            .latencies_us
                            .push(u32::try_from(micros).unwrap_or(u32::MAX));
                        tally.finished = Some(done);
                    }
                }
                Err(reason) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(reason);
                    // A broken connection is not reused; back off so a dead peer isn't spun on.
                    if let Some(broken) = conn.take() {
                        broken.driver.abort();
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            if close {
                if let Some(used) = conn.take() {
                    used.close().await;
                }
            }
        }
        if let Some(open) = conn.take() {
            open.close().await;
        }
        tally
    }
}

/// HTTP/1.1 client handshake over `io`; the connection is driven by its own task.
async fn handshake<IO>(io: IO) -> Result<Conn, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { sender, driver })
}
