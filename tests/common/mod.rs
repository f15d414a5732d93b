//! Shared fixtures for the integration tests: a real upstream on loopback that reports every
//! request it receives, an in-process listener with its own certificate folder and store, and
//! a real TLS client that trusts the generated development CA.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use vobiz_tunnel::cli::{HostHeader, LogFormat};
use vobiz_tunnel::config::{CertSource, Limits, ListenConfig};
use vobiz_tunnel::signature::{AuthToken, Keys};
use vobiz_tunnel::tunnel::Tunnel;

pub const TOKEN: &str = "TESTAUTHTOKENnotReal0123456789abcdefXYZ";
pub const MAIN_TOKEN: &str = "PARENTtokenNOTreal9876543210zyxwvutsrqpo";
/// Every await in a test is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A realistic Vobiz Hangup body (keys in byte order, as Vobiz sends them).
pub const HANGUP_BODY: &str =
    "AnswerTime=2026-06-08+11%3A41%3A24&BillDuration=120&BillRate=0.00500\
&CallStatus=completed&CallUUID=7d1c2c5e-5b0a-4c59-9d1e-3f0e2b7a9c11&Direction=inbound&Duration=118\
&EndTime=2026-06-08+11%3A43%3A22&Event=Hangup&From=919876543210&HangupCause=NORMAL_CLEARING\
&HangupCauseCode=4000&HangupCauseName=Normal+Hangup&HangupSource=Caller&ParentAuthID=MA_XXXXXXXX\
&SessionStart=2026-06-08+11%3A41%3A20.130248&StartTime=2026-06-08+11%3A41%3A20&To=918000000000\
&TotalCost=0.01000";

pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Bounds a future by [`DEADLINE`]; a hang fails the test instead of stalling CI.
pub async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .expect("the test timed out")
}

/// What the upstream fixture saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    /// Header names as they arrived on the wire (original case kept by hyper's extension is
    /// not visible here, so names are lower-case), in order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the upstream fixture answers.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: &'static str,
    pub delay: Duration,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            status: 200,
            content_type: "application/xml",
            body: "<Response><Speak>hello</Speak></Response>",
            delay: Duration::ZERO,
        }
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn next(&mut self) -> Seen {
        within(self.seen.recv())
            .await
            .expect("upstream channel closed")
    }

    /// Nothing arrives within `wait`.
    pub async fn assert_nothing(&mut self, wait: Duration) {
        if let Ok(Some(seen)) = tokio::time::timeout(wait, self.seen.recv()).await {
            panic!("the upstream received an unexpected request: {seen:?}");
        }
    }
}

/// Starts an HTTP/1.1 upstream on 127.0.0.1:0 that records and answers every request.
pub async fn upstream(reply: Reply) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    let reply = reply.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let _ = tx.send(Seen {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(n, v)| {
                                    (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                                })
                                .collect(),
                            body,
                        });
                        tokio::time::sleep(reply.delay).await;
                        let mut response =
                            Response::new(Full::new(Bytes::from_static(reply.body.as_bytes())));
                        *response.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap();
                        response
                            .headers_mut()
                            .insert("content-type", reply.content_type.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Upstream { addr, seen }
}

/// A listener under test with its own temporary folder (certificates, store).
pub struct Harness {
    pub tunnel: Tunnel,
    pub dir: Arc<tempfile::TempDir>,
    pub config: ListenConfig,
}

pub fn config(dir: &tempfile::TempDir, forward: &str) -> ListenConfig {
    let certs = dir.path().join("certs");
    ListenConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        forward: parse_base(forward),
        upstream_roots: vec![certs.join("dev-ca.pem")],
        certs: CertSource::Dev { dir: certs },
        keys: Keys {
            auth_tokens: vec![AuthToken::new(TOKEN)],
            main_auth_tokens: vec![AuthToken::new(MAIN_TOKEN)],
        },
        public_url: None,
        store: dir.path().join("exchanges.db"),
        reject_invalid: false,
        reject_replays: false,
        vobiz_ips_warning: false,
        host_header: HostHeader::Keep,
        log_format: LogFormat::Json,
        tui: false,
        relay: None,
        limits: Limits {
            max_connections: 256,
            max_body_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            forward_timeout: Duration::from_secs(5),
        },
    }
}

/// Parses a base URL the way the command line does.
pub fn parse_base(url: &str) -> vobiz_tunnel::config::BaseUrl {
    use clap::Parser;
    let cli = vobiz_tunnel::cli::Cli::parse_from(["vobiz-tunnel", "--forward", url]);
    ListenConfig::from_args(&cli.listen).unwrap().forward
}

impl Harness {
    pub async fn start(config: ListenConfig, dir: Arc<tempfile::TempDir>) -> Harness {
        init_crypto();
        let tunnel = within(Tunnel::start(&config))
            .await
            .expect("the listener starts");
        Harness {
            tunnel,
            dir,
            config,
        }
    }

    /// A listener forwarding to `forward`, with default test settings.
    pub async fn with_forward(forward: &str) -> Harness {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let config = config(&dir, forward);
        Harness::start(config, dir).await
    }

    pub fn port(&self) -> u16 {
        self.tunnel.local_addr.port()
    }

    /// The URL Vobiz would have called: `https://localhost:PORT` + path.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port())
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("certs").join("dev-ca.pem")
    }

    pub fn client(&self) -> TlsClient {
        TlsClient::new(self.tunnel.local_addr, self.ca_path())
    }

    pub fn reader(&self) -> vobiz_tunnel::store::StoreReader {
        self.tunnel.store.reader().unwrap()
    }

    /// The recorded exchange with `id`, once its completion is committed.
    pub async fn recorded(&self, id: i64) -> vobiz_tunnel::exchange::Exchange {
        within(async {
            loop {
                self.tunnel.store.flush().await;
                if let Some(exchange) = self.reader().get(id).unwrap() {
                    if exchange.outcome != vobiz_tunnel::exchange::Outcome::Pending {
                        return exchange;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// The newest recorded exchange.
    pub async fn last_recorded(&self) -> vobiz_tunnel::exchange::Exchange {
        self.tunnel.store.flush().await;
        let latest = self.reader().latest(1).unwrap();
        let id = latest
            .last()
            .and_then(|s| s.id)
            .expect("something was recorded");
        self.recorded(id).await
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

/// A real TLS client trusting the development CA; SNI `localhost`.
pub struct TlsClient {
    addr: SocketAddr,
    ca: PathBuf,
}

/// A TLS client connector that trusts the CA in the PEM file `ca` and offers `alpn`.
pub fn tls_connector(ca: &std::path::Path, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    init_crypto();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

impl TlsClient {
    pub fn new(addr: SocketAddr, ca: PathBuf) -> TlsClient {
        TlsClient { addr, ca }
    }

    pub async fn tls_stream(&self, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        tls_connector(&self.ca, alpn)
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    }

    /// Sends one request over a new HTTP/1.1 connection.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        within(async {
            let stream = self.tls_stream(b"http/1.1").await;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            read_answer(sender.send_request(request).await.unwrap()).await
        })
        .await
    }

    /// Like [`TlsClient::send`], but a failure (refused, reset, cut off) is `None`, not a
    /// panic: for tests where the server goes away on purpose.
    pub async fn try_send(&self, request: Request<Full<Bytes>>) -> Option<u16> {
        let tcp = TcpStream::connect(self.addr).await.ok()?;
        let name = ServerName::try_from("localhost").ok()?;
        let stream = tls_connector(&self.ca, b"http/1.1")
            .connect(name, tcp)
            .await
            .ok()?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(connection);
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        response.into_body().collect().await.ok()?;
        Some(status)
    }

    /// Sends one request over a new HTTP/2 connection.
    pub async fn send_h2(&self, request: Request<Full<Bytes>>) -> Answer {
        within(async {
            let stream = self.tls_stream(b"h2").await;
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            read_answer(sender.send_request(request).await.unwrap()).await
        })
        .await
    }
}

async fn read_answer(response: Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A form POST with the given extra headers; `Host` is `localhost:PORT`.
pub fn form_post(
    harness: &Harness,
    path: &str,
    body: &str,
    headers: &[(String, String)],
) -> Request<Full<Bytes>> {
    let mut builder = Request::post(path)
        .header("host", format!("localhost:{}", harness.port()))
        .header("user-agent", "Vobiz")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "*/*");
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Vobiz's V2/V3 headers for `url`, computed here with HMAC directly (independently of the
/// crate's signing code): V3 = base64(HMAC-SHA256(token, url + "." + nonce)),
/// V2 = base64(HMAC-SHA256(token, url + nonce)).
pub fn vobiz_headers(url: &str, token: &str, main_token: Option<&str>) -> Vec<(String, String)> {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mac = |key: &str, message: &str| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    let base = url.split(['?', '#']).next().unwrap();
    let nonce_v2 = "70156338169542605402";
    let nonce_v3 = "12345678901234567890";
    let mut headers = vec![
        (
            "X-Vobiz-Signature-V2".to_string(),
            mac(token, &format!("{base}{nonce_v2}")),
        ),
        (
            "X-Vobiz-Signature-V2-Nonce".to_string(),
            nonce_v2.to_string(),
        ),
        (
            "X-Vobiz-Signature-V3".to_string(),
            mac(token, &format!("{base}.{nonce_v3}")),
        ),
        (
            "X-Vobiz-Signature-V3-Nonce".to_string(),
            nonce_v3.to_string(),
        ),
    ];
    if let Some(main) = main_token {
        headers.push((
            "X-Vobiz-Signature-MA-V2".into(),
            mac(main, &format!("{base}{nonce_v2}")),
        ));
        headers.push((
            "X-Vobiz-Signature-MA-V3".into(),
            mac(main, &format!("{base}.{nonce_v3}")),
        ));
    }
    headers
}

/// Like [`vobiz_headers`] but with fresh nonces so that two requests never share one.
pub fn vobiz_headers_fresh(url: &str, token: &str, seed: u64) -> Vec<(String, String)> {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mac = |message: &str| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    let nonce = format!("{:020}", 10_000_000_000_000_000_000u64.wrapping_add(seed));
    vec![
        (
            "X-Vobiz-Signature-V3".into(),
            mac(&format!("{url}.{nonce}")),
        ),
        ("X-Vobiz-Signature-V3-Nonce".into(), nonce),
    ]
}

/// How an HTTP/2 upload the server refused ended, seen from the sender.
#[derive(Debug)]
pub struct RefusedUpload {
    pub status: u16,
    pub body: String,
    /// Set when the server reset the stream instead of letting the sender finish: clients
    /// such as curl then report a protocol error rather than the answer.
    pub reset: Option<String>,
}

/// POSTs `declared` bytes to `url` over an HTTP/2 connection on `io`, the way a sender does
/// that keeps writing its body while the answer arrives: a first chunk, then the answer, then
/// the rest. Uses the `h2` crate directly, since hyper does not say how a stream ended.
pub async fn upload_refused_midway<T>(io: T, url: &str, declared: usize) -> RefusedUpload
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    within(async {
        let (client, connection) = h2::client::handshake(io).await.expect("h2 handshake");
        tokio::spawn(connection);
        let mut client = client.ready().await.expect("h2 ready");
        let request = Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-length", declared)
            .body(())
            .unwrap();
        let (response, mut upload) = client.send_request(request, false).expect("request");
        let chunk = 16 * 1024;
        let _ = upload.send_data(Bytes::from(vec![b'a'; chunk]), false);
        let response = response.await.expect("an answer, not a reset");
        let status = response.status().as_u16();
        let mut answer = response.into_body();
        let mut body = Vec::new();
        while let Some(data) = answer.data().await {
            let data = data.expect("the answer's body");
            let _ = answer.flow_control().release_capacity(data.len());
            body.extend_from_slice(&data);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut reset = None;
        let mut left = declared.saturating_sub(chunk);
        while left > 0 && reset.is_none() {
            let n = left.min(chunk);
            left -= n;
            if let Err(e) = upload.send_data(Bytes::from(vec![b'a'; n]), left == 0) {
                reset = Some(e.to_string());
            }
        }
        if reset.is_none() {
            let watch = std::future::poll_fn(|cx| upload.poll_reset(cx));
            if let Ok(reason) = tokio::time::timeout(Duration::from_millis(500), watch).await {
                reset = Some(format!("{reason:?}"));
            }
        }
        RefusedUpload {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            reset,
        }
    })
    .await
}

/// Reads one HTTP/1.1 request (head and Content-Length body) from a raw socket, answers 200.
pub async fn raw_upstream() -> (String, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut socket, &mut buf)
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                if received.len() >= end + 4 + length {
                    break;
                }
            }
        }
        tokio::io::AsyncWriteExt::write_all(
            &mut socket,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 11\r\n\r\n<Response/>")
            .await
            .unwrap();
        let _ = tx.send(received);
    });
    (url, rx)
}
