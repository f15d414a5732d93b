//! The relay's listener: TCP → TLS → by ALPN either a laptop's tunnel (`vobiz-tunnel/1`:
//! hello, token check, `OK`, then HTTP/2 with the relay as the client, kept in the
//! [`Registry`]) or a public callback connection (`h2`/`http/1.1`, served by
//! [`super::public`]). The limits follow `crate::server`: a connection cap, a handshake
//! deadline, a hint for plain HTTP on the HTTPS port, and a graceful drain when stopping.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::config::{RelayConfig, RouteMatch};
use super::log::{RelayLog, TunnelEvent};
use super::notice::Notice;
use super::protocol::{self, Answer, PING_INTERVAL, PING_TIMEOUT};
use super::public;
use super::registry::{Link, Registry};
use crate::server::{accept_next, all_closed, expect_tls, fd_limit, Throttle};

/// After the drain, how long the relay's own 503s to the callbacks still in flight get to be
/// written before the relay exits.
const LAST_ANSWERS_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on writing a protocol line and on the HTTP/2 handshake.
const PROTOCOL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a replaced laptop gets to take note before its tunnel is dropped.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(1);

/// What every connection task needs.
pub(super) struct Shared {
    pub config: RelayConfig,
    pub registry: Arc<Registry>,
    pub log: RelayLog,
    /// The port Vobiz calls (the listener's), written into public URLs unless it is 443.
    pub public_port: u16,
    /// "Rejected" notices on their way to laptops: a sender can cause one per request without
    /// sending a body, so past this many at once the next ones are dropped (the relay's log
    /// line still has each rejection).
    pub telling: Arc<tokio::sync::Semaphore>,
    /// Turns true when a stop has waited its `drain_timeout`: callbacks still waiting for a
    /// laptop are then answered 503 (see [`Shared::drain_over`]).
    drained: watch::Sender<bool>,
}

/// How many "rejected" notices may be under way at once.
const TELLING_AT_ONCE: usize = 32;

impl Shared {
    /// Resolves once a stop has waited for the callbacks in flight as long as it will.
    pub async fn drain_over(&self) {
        let mut drained = self.drained.subscribe();
        let _ = drained.wait_for(|over| *over).await;
    }

    /// `:port`, or nothing for 443.
    pub fn port_suffix(&self) -> String {
        match self.public_port {
            443 => String::new(),
            port => format!(":{port}"),
        }
    }

    /// The public base URL announced to a laptop on `route`: its hostname route, else the
    /// first `--domain`, else the name the laptop reached the relay by (SNI), else the address.
    fn public_base(&self, route: usize, sni: Option<&str>, local: IpAddr) -> String {
        let matcher = self.registry.route(route).map(|r| r.matcher.clone());
        let host = match (&matcher, self.config.domains.first(), sni) {
            (Some(RouteMatch::Host(host)), _, _) => host.clone(),
            (_, Some(domain), _) => domain.clone(),
            (_, None, Some(sni)) => sni.to_string(),
            (_, None, None) if local.is_ipv6() => format!("[{local}]"),
            (_, None, None) => local.to_string(),
        };
        let prefix = match matcher {
            Some(RouteMatch::Prefix(prefix)) => prefix,
            _ => String::new(),
        };
        format!("https://{host}{}{prefix}", self.port_suffix())
    }
}

/// A running relay.
pub struct RelayServer {
    pub local_addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// `tls` with the listener's ALPN protocols added (others it has, such as `acme-tls/1`, stay).
fn with_listener_alpn(tls: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    let has = |p: &[u8]| tls.alpn_protocols.iter().any(|q| q == p);
    if protocol::LISTENER_ALPN.iter().all(|p| has(p)) {
        return tls;
    }
    let mut config = (*tls).clone();
    for p in protocol::LISTENER_ALPN {
        if !config.alpn_protocols.iter().any(|q| q == p) {
            config.alpn_protocols.push(p.to_vec());
        }
    }
    Arc::new(config)
}

impl RelayServer {
    /// Binds `config.listen` and starts accepting callbacks and tunnels.
    pub async fn start(
        mut config: RelayConfig,
        tls: Arc<rustls::ServerConfig>,
        log: RelayLog,
    ) -> std::io::Result<RelayServer> {
        config.max_connections =
            fd_limit::cap_connections(config.max_connections, "--max-connections");
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let registry = Arc::new(Registry::new(config.routes.clone()));
        let shared = Arc::new(Shared {
            config,
            registry: registry.clone(),
            log,
            public_port: local_addr.port(),
            telling: Arc::new(tokio::sync::Semaphore::new(TELLING_AT_ONCE)),
            drained: watch::channel(false).0,
        });
        let (shutdown, stop) = watch::channel(false);
        let acceptor = TlsAcceptor::from(with_listener_alpn(tls));
        let task = tokio::spawn(accept_loop(listener, acceptor, shared, stop));
        Ok(RelayServer {
            local_addr,
            registry,
            shutdown,
            task,
        })
    }

    /// Drops every tunnel now (the laptops reconnect); how many there were. Used by tests to
    /// simulate a network drop, and when stopping.
    pub fn disconnect_all(&self) -> usize {
        self.registry.close_all("disconnected by the relay")
    }

    /// Waits up to `within` for a laptop on the route named `route` ("default", a host or a
    /// prefix); whether one is connected.
    pub async fn wait_for_tunnel(&self, route: &str, within: Duration) -> bool {
        match self.registry.index_of(route) {
            Some(index) => self.registry.wait(index, within).await.is_some(),
            None => false,
        }
    }

    /// Whether a laptop is connected on the route named `route`.
    pub fn is_connected(&self, route: &str) -> bool {
        self.registry
            .index_of(route)
            .is_some_and(|index| self.registry.is_connected(index))
    }

    /// Stops accepting, lets in-flight callbacks finish, then closes the tunnels.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.registry.close_all("the relay is stopping");
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let http = Arc::new(public::http_builder(shared.config.header_timeout));
    let max = shared.config.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    // What a stop waits for: every connection but the laptops' tunnels, which must stay up
    // until the callbacks in flight through them are answered, and close after.
    let callers = Arc::new(Semaphore::new(max));
    let mut warnings = Throttle::accept_failures();
    while let Some((permit, tcp, peer)) =
        accept_next(&listener, &slots, &mut shutdown, &mut warnings).await
    {
        let (acceptor, http, shared) = (acceptor.clone(), http.clone(), shared.clone());
        let stop = shutdown.clone();
        // Never fails: there are no more connections than slots.
        let caller = callers.clone().try_acquire_owned().ok();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(reason) = connection(tcp, peer, acceptor, http, shared, stop, caller).await {
                tracing::info!("relay: connection from {peer}: {reason}");
            }
        });
    }
    drop(listener);
    let drain = shared.config.drain_timeout;
    if tokio::time::timeout(drain, all_closed(&callers, max))
        .await
        .is_ok()
    {
        return;
    }
    // Answered by the relay, and logged, rather than cut off with no answer at all.
    tracing::warn!("relay: callbacks still in flight after {drain:?}; answering them 503");
    shared.drained.send_replace(true);
    let _ = tokio::time::timeout(LAST_ANSWERS_TIMEOUT, all_closed(&callers, max)).await;
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    http: Arc<public::HttpBuilder>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    caller: Option<OwnedSemaphorePermit>,
) -> Result<(), String> {
    let deadline = shared.config.handshake_timeout;
    let Some(tcp) = expect_tls(tcp, deadline, "vobiz-tunnel relay", &stop).await? else {
        return Ok(()); // opened and closed: a port check
    };
    let tls = tokio::time::timeout(deadline, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    match tls.get_ref().1.alpn_protocol() {
        Some(alpn) if alpn == protocol::ALPN => {
            drop(caller); // a tunnel, not a caller: see `accept_loop`
            accept_tunnel(tls, peer, shared).await;
            Ok(())
        }
        // A TLS-ALPN-01 validation: the handshake itself was the answer.
        Some(alpn) if alpn == crate::tls::acme::ACME_TLS_ALPN => Ok(()),
        _ => {
            let served = public::serve(tls, peer, http, shared, stop).await;
            drop(caller);
            served
        }
    }
}

/// Tells a replaced laptop so (see [`super::notice`]), while still driving its connection; a laptop
/// that does not answer within [`NOTICE_TIMEOUT`] (it is often gone: the newer tunnel is
/// the same laptop back after a network change) is dropped without it.
async fn tell_replaced<C: Future>(link: &Link, by: SocketAddr, connection: Pin<&mut C>) {
    let notice = Notice::replaced_request(&by.to_string());
    let mut sender = link.sender();
    let told = async move {
        if sender.ready().await.is_ok() {
            let _ = sender.send_request(notice).await;
        }
    };
    let _ = tokio::time::timeout(NOTICE_TIMEOUT, async {
        tokio::select! {
            _ = told => {}
            _ = connection => {}
        }
    })
    .await;
}

/// Writes `REFUSED <reason>` (bounded in time) and lets the connection close.
async fn refuse(io: &mut BufReader<TlsStream<TcpStream>>, reason: &str) {
    let line = Answer::Refused {
        reason: reason.into(),
    }
    .line();
    let _ = tokio::time::timeout(PROTOCOL_WRITE_TIMEOUT, async {
        let _ = protocol::write_line(io, &line).await;
        let _ = io.shutdown().await;
    })
    .await;
}

/// A laptop's tunnel, from hello to hang-up. Everything it logs is free of the token.
async fn accept_tunnel(tls: TlsStream<TcpStream>, peer: SocketAddr, shared: Arc<Shared>) {
    let (log, registry) = (&shared.log, &shared.registry);
    let sni = tls.get_ref().1.server_name().map(str::to_string);
    let local_ip = tls
        .get_ref()
        .0
        .local_addr()
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    let mut io = BufReader::new(tls);
    let auth_timeout = shared.config.auth_timeout;
    let line = match tokio::time::timeout(auth_timeout, protocol::read_line(&mut io)).await {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => {
            log.tunnel(
                TunnelEvent::Dropped,
                None,
                peer,
                &format!("no valid hello: {e}"),
            );
            refuse(&mut io, "malformed hello").await;
            return;
        }
        Err(_) => {
            let detail = format!("sent no hello within {:.1} s", auth_timeout.as_secs_f64());
            log.tunnel(TunnelEvent::Dropped, None, peer, &detail);
            return;
        }
    };
    let Some(token) = protocol::parse_hello(&line) else {
        log.tunnel(TunnelEvent::Refused, None, peer, "not a vobiz-tunnel hello");
        refuse(&mut io, "not a vobiz-tunnel hello").await;
        return;
    };
    let Some(route) = registry.authenticate(token) else {
        log.tunnel(TunnelEvent::Refused, None, peer, "unknown token");
        refuse(&mut io, "unknown token").await;
        return;
    };
    drop(line);
    let route_name = registry.route(route).map(|r| r.name());
    let route_name = route_name.as_deref();
    let public_base = shared.public_base(route, sni.as_deref(), local_ip);
    let ok = Answer::Ok {
        public_base: public_base.clone(),
    }
    .line();
    let handshake = async {
        protocol::write_line(&mut io, &ok)
            .await
            .map_err(|e| e.to_string())?;
        hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(8 << 20)
            .max_header_list_size(256 * 1024)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| crate::forward::error_chain(&e))
    };
    let (sender, connection) = match tokio::time::timeout(PROTOCOL_WRITE_TIMEOUT, handshake).await {
        Ok(Ok(parts)) => parts,
        Ok(Err(reason)) => {
            log.tunnel(TunnelEvent::Dropped, route_name, peer, &reason);
            return;
        }
        Err(_) => {
            log.tunnel(
                TunnelEvent::Dropped,
                route_name,
                peer,
                "HTTP/2 handshake timed out",
            );
            return;
        }
    };
    let link = Arc::new(Link::new(
        registry.next_id(),
        route,
        peer,
        public_base,
        sender,
    ));
    if let Some(old) = registry.register(link.clone()) {
        let detail = format!("the tunnel from {} was closed (newest wins)", old.peer);
        log.tunnel(TunnelEvent::Replaced, route_name, peer, &detail);
    }
    let detail = format!("callbacks to {} go to this laptop", link.public_base);
    log.tunnel(TunnelEvent::Connected, route_name, peer, &detail);
    tokio::pin!(connection);
    let reason = tokio::select! {
        ended = connection.as_mut() => match ended {
            Ok(()) => "the laptop closed the tunnel".to_string(),
            Err(e) => crate::forward::error_chain(&e),
        },
        reason = link.closed() => {
            if let Some(by) = link.replaced_by() {
                tell_replaced(&link, by, connection.as_mut()).await;
            }
            reason.to_string()
        }
    };
    registry.unregister(&link);
    let detail = format!(
        "after {:.1} s: {reason}",
        link.since.elapsed().as_secs_f64()
    );
    log.tunnel(TunnelEvent::Disconnected, route_name, peer, &detail);
}
