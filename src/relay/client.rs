//! The laptop's side of the tunnel (`listen --relay`): connect out to the relay over TLS (its
//! certificate verified), say hello with the token, then serve HTTP/2 on that connection with
//! the same pipeline as the local listener. When the tunnel drops, reconnect with capped
//! exponential backoff and jitter, unless the relay said another laptop took the route
//! ([`super::notice`]); every change of state is published as
//! [`ExchangeEvent::Relay`](crate::pipeline::ExchangeEvent::Relay) for the log and the inspector.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::config::RelayClientConfig;
use super::notice::{self, Notice};
use super::protocol::{self, Answer, PING_INTERVAL, PING_TIMEOUT};
use super::RelayState;
use crate::exchange::TlsInfo;
use crate::pipeline::{self, ConnectionInfo, Proxy};

/// First retry delay, doubled after each failure up to [`BACKOFF_CAP`].
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
/// At most this between attempts: a relay back from a restart is reached again within it
/// (each callback meanwhile gets 503), and an attempt costs it one handshake.
pub const BACKOFF_CAP: Duration = Duration::from_secs(8);
/// Between attempts after the relay refused the token: a setting to fix, not an outage to
/// ride out, so the relay is not asked much more often than someone can fix it.
pub const REFUSED_RETRY: Duration = Duration::from_secs(30);
/// A tunnel that stayed up this long was healthy: the next drop starts the backoff afresh.
/// Shorter tunnels that keep dropping back off among themselves (see [`Reconnect`]).
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Bound on TCP connect + TLS handshake, and on the relay's answer to the hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight callbacks get to finish when the listener stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Capped exponential backoff with "equal jitter": each delay is drawn from [d/2, d], so
/// laptops dropped together by a relay restart do not reconnect in lockstep.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_INITIAL,
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1].
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

impl Backoff {
    /// The delay before the next attempt; later ones grow.
    pub fn next_delay(&mut self) -> Duration {
        let delay = jitter(self.next);
        self.next = (self.next * 2).min(BACKOFF_CAP);
        delay
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_INITIAL;
    }
}

/// When to try again, after a failed attempt or after a tunnel that ended.
///
/// Failed attempts and ended tunnels back off separately: the delays that piled up while the
/// relay was down (a restart) say nothing about a tunnel that then worked for a while, so the
/// first drop after it is retried at once. Tunnels that keep ending soon after they start
/// (a flapping network) still back off among themselves.
#[derive(Debug, Default)]
pub struct Reconnect {
    failures: Backoff,
    drops: Backoff,
}

impl Reconnect {
    /// The delay after an attempt that never got as far as the relay's `OK`.
    pub fn after_failure(&mut self) -> Duration {
        self.failures.next_delay()
    }

    /// The delay after a tunnel that was up for `lasted`.
    pub fn after_drop(&mut self, lasted: Duration) -> Duration {
        self.failures.reset();
        if lasted >= STABLE_AFTER {
            self.drops.reset();
        }
        self.drops.next_delay()
    }
}

/// How one connection attempt ended.
enum Session {
    /// The listener is stopping.
    Stopped,
    /// The relay refused the token (retried at the cap).
    Refused(String),
    /// Never got as far as `OK`.
    Failed(String),
    /// Was connected, then the tunnel ended.
    Ended { reason: String, lasted: Duration },
    /// Another laptop (at `by`) connected with the same token and took the route: reconnecting
    /// would only take it back, and the two would push each other out for ever.
    Replaced { by: String },
}

/// The running tunnel client.
pub struct RelayClient {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayClient {
    /// Starts connecting to the relay; callbacks it carries go through `proxy`'s pipeline.
    pub fn spawn(config: RelayClientConfig, proxy: Arc<Proxy>) -> RelayClient {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(config, proxy, stopped));
        RelayClient { stop, task }
    }

    /// Stops reconnecting and closes the tunnel, letting in-flight callbacks finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(DRAIN_TIMEOUT * 2, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

fn publish(proxy: &Proxy, state: RelayState) {
    tracing::debug!("{}", state.describe());
    proxy.relay_state.publish(&proxy.events, state);
}

async fn run(config: RelayClientConfig, proxy: Arc<Proxy>, mut stop: watch::Receiver<bool>) {
    let extra_roots: Vec<_> = config.ca.iter().cloned().collect();
    let tls = Arc::new(crate::tls::client_config(&extra_roots, &[protocol::ALPN]));
    let relay = config.address.clone();
    let mut reconnect = Reconnect::default();
    publish(
        &proxy,
        RelayState::Connecting {
            relay: relay.clone(),
        },
    );
    loop {
        let session = session(&config, &tls, &proxy, &mut stop).await;
        let (state, delay) = match session {
            Session::Stopped => return,
            Session::Replaced { by } => {
                let relay = relay.clone();
                publish(&proxy, RelayState::Replaced { relay, by });
                return;
            }
            Session::Refused(reason) => {
                let delay = jitter(REFUSED_RETRY);
                let retry_in_secs = delay.as_secs_f64();
                let relay = relay.clone();
                let state = RelayState::Refused {
                    relay,
                    reason,
                    retry_in_secs,
                };
                (state, delay)
            }
            Session::Failed(reason) => {
                let delay = reconnect.after_failure();
                (reconnecting(&relay, reason, delay), delay)
            }
            Session::Ended { reason, lasted } => {
                let delay = reconnect.after_drop(lasted);
                (reconnecting(&relay, reason, delay), delay)
            }
        };
        publish(&proxy, state);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Resolves once the listener is stopping (the guard `wait_for` returns is dropped here, so
/// callers stay `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

fn reconnecting(relay: &str, reason: String, delay: Duration) -> RelayState {
    RelayState::Reconnecting {
        relay: relay.to_string(),
        reason,
        retry_in_secs: delay.as_secs_f64(),
    }
}

/// Why the TLS handshake with the relay failed, with what to do when it is a setting (these
/// do not pass by waiting).
fn tls_failure(error: &std::io::Error, config: &RelayClientConfig) -> String {
    use rustls::{AlertDescription, CertificateError};
    let text = format!("TLS: {error}");
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return text;
    };
    let advice = match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "its certificate is not from a CA this laptop trusts: give the relay's CA with \
             --relay-ca{}",
            match &config.ca {
                Some(ca) => format!(" (now {})", ca.display()),
                None => String::new(),
            }
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            format!(
                "its certificate is not for {}: check the host in --relay",
                config.server_name
            )
        }
        rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol) => {
            "it is not a vobiz-tunnel relay (it does not speak the tunnel's protocol): check \
             the address in --relay"
                .into()
        }
        _ => return text,
    };
    format!("{text}: {advice}")
}

/// Connects, authenticates, and serves until the tunnel ends or the listener stops.
async fn session(
    config: &RelayClientConfig,
    tls: &Arc<rustls::ClientConfig>,
    proxy: &Arc<Proxy>,
    stop: &mut watch::Receiver<bool>,
) -> Session {
    let connect = async {
        let server_name = ServerName::try_from(config.server_name.clone())
            .map_err(|_| format!("{:?} is not a valid host name", config.server_name))?;
        let tcp = TcpStream::connect(&config.address)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream = TlsConnector::from(tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| tls_failure(&e, config))?;
        if stream.get_ref().1.alpn_protocol() != Some(protocol::ALPN) {
            return Err("the server is not a vobiz-tunnel relay (no vobiz-tunnel/1 ALPN)".into());
        }
        let mut io = BufReader::new(stream);
        let hello = protocol::hello_line(config.token.expose());
        protocol::write_line(&mut io, &hello)
            .await
            .map_err(|e| format!("sending the hello: {e}"))?;
        let answer = protocol::read_answer(&mut io).await?;
        Ok((io, answer))
    };
    let attempt = async { tokio::time::timeout(CONNECT_TIMEOUT, connect).await };
    let (io, public_base) = tokio::select! {
        result = attempt => match result {
            Ok(Ok((io, Answer::Ok { public_base }))) => (io, public_base),
            Ok(Ok((_, Answer::Refused { reason }))) => return Session::Refused(reason),
            Ok(Err(reason)) => return Session::Failed(reason),
            Err(_) => {
                let secs = CONNECT_TIMEOUT.as_secs();
                return Session::Failed(format!("no answer within {secs} s"));
            }
        },
        _ = stopped(stop) => return Session::Stopped,
    };
    let connected_at = Instant::now();
    publish(
        proxy,
        RelayState::Connected {
            relay: config.address.clone(),
            public_url: public_base,
        },
    );

    // The relay's word about each callback (public URL, sender) is in its envelope.
    let info = Arc::new(ConnectionInfo {
        client_addr: None,
        tls: TlsInfo::default(),
        relayed: true,
    });
    let proxy = proxy.clone();
    let replaced: Arc<OnceLock<String>> = Arc::default();
    let heard = replaced.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let (proxy, info, heard) = (proxy.clone(), info.clone(), heard.clone());
        async move {
            if !notice::is_notice(request.headers()) {
                return pipeline::handle(proxy, info, request).await;
            }
            match Notice::read(request.headers()) {
                Some(Notice::Replaced { by }) => {
                    let _ = heard.set(by);
                }
                Some(Notice::Rejected {
                    status,
                    reason,
                    after,
                }) => {
                    super::rejected::record(&proxy, request, status, &reason, after).await;
                }
                None => tracing::debug!("relay: ignored a notice this version does not know"),
            }
            let mut answer = Response::new(Full::new(Bytes::new()));
            *answer.status_mut() = StatusCode::NO_CONTENT;
            Ok(answer)
        }
    });
    let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .max_concurrent_streams(1024)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .max_header_list_size(256 * 1024);
    let connection = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => {
            if let Some(by) = replaced.get() {
                return Session::Replaced { by: by.clone() };
            }
            let reason = match ended {
                Ok(()) => "the relay closed the tunnel".to_string(),
                Err(e) => crate::forward::error_chain(&e),
            };
            Session::Ended { reason, lasted: connected_at.elapsed() }
        }
        _ = stopped(stop) => {
            // GOAWAY: the relay sends nothing new; callbacks in flight get their answers.
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection).await;
            Session::Stopped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let mut nominal = BACKOFF_INITIAL;
        for _ in 0..12 {
            let delay = backoff.next_delay();
            assert!(
                delay >= nominal / 2 && delay <= nominal,
                "{delay:?} vs {nominal:?}"
            );
            nominal = (nominal * 2).min(BACKOFF_CAP);
        }
        assert!(backoff.next_delay() <= BACKOFF_CAP);
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_INITIAL);
    }

    #[test]
    fn a_tunnel_that_worked_is_retried_at_once_whatever_failed_before() {
        let mut reconnect = Reconnect::default();
        // The relay restarts: a dozen failed attempts push the delay to the cap.
        for _ in 0..12 {
            reconnect.after_failure();
        }
        assert!(reconnect.after_failure() > BACKOFF_CAP / 4);
        // Then a tunnel works for 18 s and drops: retried within the first delay.
        assert!(reconnect.after_drop(Duration::from_secs(18)) <= BACKOFF_INITIAL);
        // The next failure starts afresh too.
        assert!(reconnect.after_failure() <= BACKOFF_INITIAL);
        // Tunnels that keep dropping within seconds back off among themselves...
        let flaps: Vec<Duration> = (0..6)
            .map(|_| reconnect.after_drop(Duration::from_secs(1)))
            .collect();
        assert!(flaps[5] >= BACKOFF_INITIAL * 8, "{flaps:?}");
        // ...until one stays up.
        assert!(reconnect.after_drop(STABLE_AFTER) <= BACKOFF_INITIAL);
    }
}
