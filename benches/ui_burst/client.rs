//! The sender: signed Vobiz Hangup callbacks (V2 + V3, fresh nonces, for the URL the proxy
//! sees) over keep-alive TLS connections, as fast as they are answered.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use vobiz_tunnel::signature::AuthToken;

use crate::common;

/// Bound on one request (connect, handshake, send, read the answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a whole burst.
const BURST_TIMEOUT: Duration = Duration::from_secs(600);

/// Nonces and CallUUIDs, unique across both runs.
static SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// What one burst did.
#[derive(Default)]
pub struct Burst {
    pub answered: u64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Per-request latency, microseconds.
    pub latencies_us: Vec<u32>,
}

impl Burst {
    pub fn req_per_s(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub struct Client {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    host: String,
    sign_url: String,
    token: AuthToken,
}

impl Client {
    pub fn new(addr: SocketAddr, ca: &Path) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("the dev CA") {
            roots.add(cert.expect("a PEM certificate")).expect("a CA");
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let port = addr.port();
        Client {
            addr,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            // Vobiz calls `https://localhost:PORT/...`: the proxy rebuilds that URL from Host.
            host: format!("localhost:{port}"),
            sign_url: common::url(port),
            token: AuthToken::new(common::TOKEN),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let work = async {
            let tcp = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from("localhost").expect("a valid name");
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(sender)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(format!("no connection within {REQUEST_TIMEOUT:?}")))
    }

    /// A signed Hangup callback, number `n`, with its own CallUUID and nonces.
    fn request(&self, n: u64) -> Request<Full<Bytes>> {
        let body = common::hangup_body(&common::call_uuid(n));
        let builder = common::hangup_request(&self.host, &self.token, &self.sign_url, n);
        builder
            .body(Full::new(Bytes::from(body)))
            .expect("a well-formed request")
    }

    /// Takes callbacks from `issued` until `total` are taken; reconnects once after a failure.
    async fn worker(
        self: Arc<Self>,
        mut sender: SendRequest<Full<Bytes>>,
        issued: Arc<AtomicU64>,
        total: u64,
    ) -> (Burst, Option<Instant>) {
        let mut tally = Burst::default();
        let mut last = None;
        while issued.fetch_add(1, Ordering::Relaxed) < total {
            let request = self.request(SEQUENCE.fetch_add(1, Ordering::Relaxed));
            let start = Instant::now();
            let exchange = async {
                sender
                    .ready()
                    .await
                    .map_err(|e| format!("connection: {e}"))?;
                common::answer_status(sender.send_request(request).await).await
            };
            let result = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")));
            let done = Instant::now();
            match result {
                Ok(status) => {
                    tally.answered += 1;
                    tally.ok += u64::from(status == 200);
                    let micros = (done - start).as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    last = Some(done);
                }
                Err(reason) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(reason);
                    match self.connect().await {
                        Ok(fresh) => sender = fresh,
                        Err(reason) => {
                            tally.first_error.get_or_insert(reason);
                            break;
                        }
                    }
                }
            }
        }
        (tally, last)
    }
}

/// Opens `conns` connections, then sends `total` callbacks over them as fast as they are
/// answered. The clock starts once every connection is open.
pub async fn burst(client: Arc<Client>, conns: usize, total: u64) -> Burst {
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        senders.push(client.connect().await.expect("a connection to the proxy"));
    }
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(client.clone().worker(sender, issued.clone(), total)))
        .collect();
    let deadline = tokio::time::Instant::now() + BURST_TIMEOUT;
    let mut merged = Burst::default();
    let mut end = start;
    for mut worker in workers {
        let (tally, last) = match tokio::time::timeout_at(deadline, &mut worker).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => panic!("a sender failed: {e}"),
            Err(_) => {
                worker.abort();
                panic!("the burst did not finish within {BURST_TIMEOUT:?}");
            }
        };
        merged.answered += tally.answered;
        merged.ok += tally.ok;
        merged.errors += tally.errors;
        merged.first_error = merged.first_error.or(tally.first_error);
        merged.latencies_us.extend(tally.latencies_us);
        end = end.max(last.unwrap_or(start));
    }
    merged.elapsed = end - start;
    merged.latencies_us.sort_unstable();
    merged
}
