//! Putting a listener together: certificates, store, upstream client, socket, accept loop.
//! [`Tunnel::start`] is what `vobiz-tunnel listen` runs and what the tests start in-process.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::{CertSource, ListenConfig};
use crate::forward::Upstream;
use crate::pipeline::{ExchangeEvent, Proxy};
use crate::relay::RelayClient;
use crate::server::{fd_limit, Server};
use crate::slow_answers::SlowAnswers;
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsError};

/// Events kept for slow subscribers before they start missing some (the printer says how
/// many, the inspector reloads from the store). Each holds its whole exchange alive until
/// overwritten, so this is most of the proxy's memory at load: 16 384 held ~50 MB; 2 048 is
/// ~8 MB, and still over 100 ms of events at full speed.
const EVENT_BACKLOG: usize = 2 * 1024;

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running listener.
pub struct Tunnel {
    pub local_addr: SocketAddr,
    pub store: Store,
    pub events: broadcast::Sender<ExchangeEvent>,
    /// The certificate file the listener serves.
    pub cert_path: std::path::PathBuf,
    /// The pipeline's shared state (the relay tunnel serves requests with it too).
    pub proxy: Arc<Proxy>,
    /// The tunnel to the relay (`--relay`), when configured.
    relay: Option<RelayClient>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Tunnel {
    /// Loads or generates the certificate, opens the store, binds the socket and starts
    /// accepting. Every failure here is a start-up error with the file or address named.
    pub async fn start(config: &ListenConfig) -> Result<Tunnel, StartError> {
        let (identity, cert_path) = match &config.certs {
            CertSource::Files { cert, key } => (tls::Identity::load(cert, key)?, cert.clone()),
            CertSource::Dev { dir } => {
                (tls::ensure_dev_identity(dir)?, dir.join(tls::DEV_CERT_FILE))
            }
        };
        let tls_config = tls::server_config(identity)?;
        let mut limits = config.limits;
        limits.max_connections =
            fd_limit::cap_connections(limits.max_connections, "--max-connections");
        let store = match config.reject_replays {
            true => Store::open_summing_up_nonces(&config.store)?,
            false => Store::open(&config.store)?,
        };
        let upstream = Upstream::new(
            config.forward.clone(),
            config.host_header,
            config.limits.forward_timeout,
            config.limits.max_body_bytes.max(16 * 1024 * 1024),
            tls::client_config(&config.upstream_roots, &[]),
        );
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let proxy = Arc::new(Proxy {
            store: store.clone(),
            upstream,
            keys: config.keys.clone(),
            public_url: config.public_url.clone(),
            reject_invalid: config.reject_invalid,
            replay_guard: match store.nonce_summary() {
                Some(summary) => Some(crate::replay_guard::ReplayGuard::new(
                    store.reader()?,
                    summary.clone(),
                )),
                None => None,
            },
            limits,
            listen_port: local_addr.port(),
            events: events.clone(),
            checks: crate::checks::Context::new(config.vobiz_ips_warning),
            slow_answers: SlowAnswers::start(crate::pipeline::RECORD_PENDING_AFTER),
            header_cases: Default::default(),
            slow_commits: Default::default(),
            relay_state: Default::default(),
            forwarding: crate::forward::in_flight::InFlight::new(limits.max_connections),
        });
        let (shutdown, stop) = watch::channel(false);
        let server = Server {
            listener,
            tls: tls_config,
            proxy: proxy.clone(),
            limits,
        };
        let task = tokio::spawn(server.run(stop));
        let relay = config
            .relay
            .clone()
            .map(|relay| RelayClient::spawn(relay, proxy.clone()));
        Ok(Tunnel {
            local_addr,
            store,
            events,
            cert_path,
            proxy,
            relay,
            shutdown,
            task,
        })
    }

    /// A subscription to the events, with the relay tunnel's state before it (the log printer
    /// and the inspector start after the tunnel's first states were sent).
    pub fn subscribe(
        &self,
    ) -> (
        broadcast::Receiver<ExchangeEvent>,
        Option<crate::relay::state::RelayState>,
    ) {
        self.proxy.relay_state.subscribe(&self.events)
    }

    /// The URL to call the listener on from this machine.
    pub fn url(&self) -> String {
        let ip = self.local_addr.ip();
        let host = match ip {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
            ip if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            std::net::IpAddr::V4(v4) => v4.to_string(),
        };
        format!("https://{host}:{}", self.local_addr.port())
    }

    /// Stops accepting, lets in-flight exchanges finish, and commits everything recorded.
    pub async fn shutdown(self) {
        // The relay first: it stops sending new callbacks, and those in flight finish.
        if let Some(relay) = self.relay {
            relay.stop().await;
        }
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.store.flush_into_file().await;
    }
}
