//! Fixtures for the relay tests: a relay on 127.0.0.1:0 with its own development CA and a
//! captured log, laptops (in-process listeners with `config.relay` set, each with its own
//! upstream and store), a TLS client playing Vobiz that knows its own address, and waits on
//! the laptop's relay state events. Every wait is bounded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use vobiz_tunnel::cli::LogFormat;
use vobiz_tunnel::pipeline::ExchangeEvent;
use vobiz_tunnel::relay::config::{RelayCerts, RelayClientConfig, RelayConfig, Route, RouteMatch};
use vobiz_tunnel::relay::{RelayLog, RelayServer, RelayState};
use vobiz_tunnel::signature::AuthToken;
use vobiz_tunnel::tls;

use crate::common::{self, within, Answer, Harness, Reply, Upstream};

/// The catch-all route's token.
pub const RELAY_TOKEN: &str = "relay-secret-TOKEN-0123456789";

pub fn any_route(token: &str) -> Route {
    Route {
        matcher: RouteMatch::Any,
        token: AuthToken::new(token),
    }
}

pub fn route(matcher: RouteMatch, token: &str) -> Route {
    Route {
        matcher,
        token: AuthToken::new(token),
    }
}

/// A running relay and what it logged.
pub struct Relay {
    pub server: RelayServer,
    pub ca: PathBuf,
    pub lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Relay {
    /// A relay with `routes` and test settings, adjusted by `tweak`.
    pub async fn start(routes: Vec<Route>, tweak: impl FnOnce(&mut RelayConfig)) -> Relay {
        common::init_crypto();
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("relay-certs");
        let mut config = RelayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            domains: Vec::new(),
            certs: RelayCerts::Dev { dir: certs.clone() },
            routes,
            hold: Duration::ZERO,
            allow: None,
            auth_timeout: Duration::from_secs(5),
            forward_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            max_connections: 512,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
            log_format: LogFormat::Text,
        };
        tweak(&mut config);
        let tls = tls::server_config(tls::ensure_dev_identity(&certs).unwrap()).unwrap();
        let (log, mut receiver) = RelayLog::channel(config.log_format);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Some(line) = receiver.recv().await {
                sink.lock().unwrap().push(line);
            }
        });
        let server = within(RelayServer::start(config, tls, log)).await.unwrap();
        Relay {
            server,
            ca: certs.join("dev-ca.pem"),
            lines,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.server.local_addr.port()
    }

    /// The public URL Vobiz calls for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port())
    }

    /// `--relay` for a laptop.
    pub fn client_config(&self, token: &str) -> RelayClientConfig {
        let address = format!("localhost:{}", self.port());
        RelayClientConfig::parse(&address, Some(token), Some(self.ca.clone())).unwrap()
    }

    pub fn vobiz(&self) -> Vobiz {
        Vobiz::new(self.server.local_addr, &self.ca)
    }

    /// Waits for the route to have a laptop.
    pub async fn connected(&self, route: &str) {
        assert!(
            self.server.wait_for_tunnel(route, common::DEADLINE).await,
            "no laptop connected on route {route}; log: {:#?}",
            self.log()
        );
    }

    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first log line containing every one of `needles`, waiting for it.
    pub async fn log_line(&self, needles: &[&str]) -> String {
        let found = tokio::time::timeout(common::DEADLINE, async {
            loop {
                let hit = self
                    .log()
                    .into_iter()
                    .find(|line| needles.iter().all(|n| line.contains(n)));
                if let Some(line) = hit {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no log line with {needles:?}: {:#?}", self.log()))
    }
}

/// A laptop: a listener whose `config.relay` points at the relay, and its local server.
pub struct Laptop {
    pub harness: Harness,
    pub upstream: Upstream,
}

impl Laptop {
    pub async fn start(relay: &Relay, token: &str) -> Laptop {
        Laptop::answering(relay, token, Reply::default()).await
    }

    /// A laptop whose local server answers with `reply`.
    pub async fn answering(relay: &Relay, token: &str, reply: Reply) -> Laptop {
        let upstream = common::upstream(reply).await;
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = common::config(&dir, &upstream.url());
        config.relay = Some(relay.client_config(token));
        let harness = Harness::start(config, dir).await;
        Laptop { harness, upstream }
    }

    /// A laptop whose local server is at `url` (one the test reads itself), and its
    /// listener.
    pub async fn forwarding_to(relay: &Relay, token: &str, url: &str) -> Harness {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = common::config(&dir, url);
        config.relay = Some(relay.client_config(token));
        Harness::start(config, dir).await
    }

    /// A laptop without `--relay` (its client is started by the test).
    pub async fn without_relay() -> Laptop {
        let upstream = common::upstream(Reply::default()).await;
        let harness = Harness::with_forward(&upstream.url()).await;
        Laptop { harness, upstream }
    }

    pub fn events(&self) -> broadcast::Receiver<ExchangeEvent> {
        self.harness.tunnel.events.subscribe()
    }

    /// Every recorded exchange's CallUUID, once the store has committed.
    pub async fn recorded_call_uuids(&self) -> Vec<String> {
        self.harness.tunnel.store.flush().await;
        let reader = self.harness.reader();
        let mut uuids: Vec<String> = reader
            .latest(100_000)
            .unwrap()
            .into_iter()
            .filter_map(|summary| summary.call_uuid)
            .collect();
        uuids.sort();
        uuids
    }
}

/// The next relay state on `events` that satisfies `wanted`, within the deadline.
pub async fn relay_state(
    events: &mut broadcast::Receiver<ExchangeEvent>,
    wanted: impl Fn(&RelayState) -> bool,
) -> RelayState {
    within(async {
        loop {
            match events.recv().await {
                Ok(ExchangeEvent::Relay(state)) if wanted(&state) => return state,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("events closed"),
            }
        }
    })
    .await
}

/// Vobiz: a TLS client trusting the relay's CA, one connection per callback.
#[derive(Clone)]
pub struct Vobiz {
    addr: SocketAddr,
    roots: Arc<rustls::RootCertStore>,
}

impl Vobiz {
    pub fn new(addr: SocketAddr, ca: &std::path::Path) -> Vobiz {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        Vobiz {
            addr,
            roots: Arc::new(roots),
        }
    }

    /// Offers only the protocol the call speaks, as a real client's ALPN would.
    fn connector(&self, h2: bool) -> tokio_rustls::TlsConnector {
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![match h2 {
            true => b"h2".to_vec(),
            false => b"http/1.1".to_vec(),
        }];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// A TLS connection to the relay speaking HTTP/1.1 (or HTTP/2 when `h2`).
    pub async fn tls(&self, h2: bool) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        self.connector(h2).connect(name, tcp).await.unwrap()
    }

    /// Sends one callback over HTTP/1.1 (or HTTP/2 when `h2`); the answer and the address the
    /// callback was sent from.
    pub async fn send_from(&self, request: Request<Full<Bytes>>, h2: bool) -> (Answer, SocketAddr) {
        within(async {
            let stream = self.tls(h2).await;
            let local = stream.get_ref().0.local_addr().unwrap();
            let response = match h2 {
                false => {
                    let io = TokioIo::new(stream);
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(io).await.unwrap();
                    tokio::spawn(conn);
                    sender.send_request(request).await.unwrap()
                }
                true => {
                    let io = TokioIo::new(stream);
                    let (mut sender, conn) =
                        hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                            .await
                            .unwrap();
                    tokio::spawn(conn);
                    sender.send_request(request).await.unwrap()
                }
            };
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let answer = Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            (answer, local)
        })
        .await
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        self.send_from(request, false).await.0
    }
}

/// A Hangup body for call `n` (its CallUUID names it in the store).
pub fn hangup(n: u64) -> String {
    common::HANGUP_BODY.replace("7d1c2c5e-5b0a-4c59-9d1e-3f0e2b7a9c11", &call_uuid(n))
}

pub fn call_uuid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A callback to `authority` + `path`, V3-signed (fresh nonce `seed`) for `signed_url`.
pub fn callback(
    authority: &str,
    path: &str,
    body: String,
    signed_url: &str,
    seed: u64,
    extra: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut builder = Request::post(path)
        .header("host", authority)
        .header("user-agent", "Vobiz")
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in common::vobiz_headers_fresh(signed_url, common::TOKEN, seed) {
        builder = builder.header(name, value);
    }
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::from(body))).unwrap()
}
