//! One request, top to bottom: read → verify → forward → record → respond → publish (and, for
//! a slow answer, record and publish it as pending while forwarding).
//! Every way out of [`handle`] goes through [`Proxy::finish`], so failed, rejected and oversized
//! exchanges are recorded and published exactly like successful ones.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Request, Response, StatusCode};
use tokio::sync::broadcast;

use crate::checks;
use crate::config::{BaseUrl, Limits};
use crate::exchange::{
    detached, now_micros, Exchange, Flag, Outcome, RequestRecord, TlsInfo, WhoLeft,
};
use crate::forward::header_case::CaseCache;
use crate::forward::{self, Outgoing, PublicOrigin, Upstream};
use crate::relay::{self, envelope::Envelope, state::LatestRelayState};
use crate::sender_watch::{Departure, SenderWatch};
use crate::signature::{self, CallbackRequest, Keys, VerdictStatus};
use crate::slow_answers::SlowAnswers;
use crate::slow_commits::SlowCommits;
use crate::store::{Inserted, Store, StoreError};

/// How long a forwarded request may wait for its answer before it is written to the store as
/// pending (see `serve`); [`Proxy::slow_answers`] watches it.
pub const RECORD_PENDING_AFTER: std::time::Duration = std::time::Duration::from_millis(5);

/// What the pipeline tells its subscribers (the log printer, the UI).
#[derive(Clone, Debug)]
pub enum ExchangeEvent {
    /// An exchange ended (in any way) and its record is queued for the store.
    Finished(Arc<Exchange>),
    /// A request still waiting on the local server was recorded as pending (see `serve`):
    /// the inspector shows it now; its `Finished` follows with the same id.
    Pending(Arc<Exchange>),
    /// The store could not record something; the proxy keeps forwarding.
    StoreError(String),
    /// A connection failed before any request (TLS garbage, plain HTTP, a timeout).
    ConnectionFailed {
        client_addr: Option<SocketAddr>,
        reason: String,
    },
    /// The tunnel to the relay changed state.
    Relay(crate::relay::RelayState),
}

/// Facts about the connection a request arrived on.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub client_addr: Option<SocketAddr>,
    pub tls: TlsInfo,
    /// The connection is the tunnel from the relay: each request carries an envelope with
    /// the public URL, the sender's address and TLS facts (trusted only here).
    pub relayed: bool,
}

/// Everything a request needs, shared by all connections of a listener.
pub struct Proxy {
    pub store: Store,
    pub upstream: Upstream,
    pub keys: Keys,
    pub public_url: Option<BaseUrl>,
    pub reject_invalid: bool,
    /// With `--reject-replays`: the nonces already seen.
    pub replay_guard: Option<crate::replay_guard::ReplayGuard>,
    pub limits: Limits,
    /// The listener's port, offered to the signature explanation as a likely variant.
    pub listen_port: u16,
    pub events: broadcast::Sender<ExchangeEvent>,
    /// The Vobiz checks' shared state: recent deliveries and the optional source allow-list.
    pub checks: checks::Context,
    /// Tells a forwarded request when to record itself as pending ([`RECORD_PENDING_AFTER`]).
    pub slow_answers: SlowAnswers,
    /// How to write the header names of relayed callbacks as their senders spelled them.
    pub header_cases: CaseCache,
    /// Commits that held an answer back, reported once per stall.
    pub slow_commits: SlowCommits,
    /// The relay tunnel's latest state (`listen --relay`), for subscribers that come late.
    pub relay_state: LatestRelayState,
    /// Requests in flight to the local server, at most `--max-connections` (see
    /// [`forward::in_flight`]).
    pub forwarding: forward::in_flight::InFlight,
}

/// The most request headers forwarded, over HTTP/1 (hyper's limit) and HTTP/2 alike.
const MAX_HEADERS: usize = 100;

/// Why a request the sender got whole cannot go to the local server (status, message), if
/// it cannot.
fn not_forwardable(parts: &hyper::http::request::Parts, relayed: bool) -> Option<(u16, String)> {
    // HTTP/1 refuses more headers than this before the pipeline sees them (hyper's limit,
    // answered and recorded by `server::refusal`); HTTP/2 leaves it to us.
    if parts.headers.len() > MAX_HEADERS {
        let message = format!(
            "{} request headers, more than the {MAX_HEADERS} this listener takes",
            parts.headers.len()
        );
        return Some((431, message));
    }
    // HTTP/1.1 requires a Host (RFC 9112 §3.2); without one the URL the signature is checked
    // against would be a guess.
    if parts.version == hyper::Version::HTTP_11 && !relayed && !parts.headers.contains_key(HOST) {
        return Some((400, "an HTTP/1.1 request must have a Host header".into()));
    }
    // A tunnel (CONNECT) or a question about the server itself (`OPTIONS *`) names no URL
    // on the local server: rewritten to one, it would reach the server as something else.
    // 501, not 405: a 405 must list the methods allowed, and the target has none.
    if parts.method == hyper::Method::CONNECT || parts.uri.path() == "*" {
        let message = format!(
            "{} {} is not forwarded: this is a reverse proxy for callbacks, which name a path",
            parts.method, parts.uri
        );
        return Some((501, message));
    }
    None
}

/// How reading the request body ended.
enum BodyRead {
    Complete(Bytes),
    TooLarge {
        prefix: Bytes,
        declared: Option<u64>,
    },
    Failed {
        prefix: Bytes,
        reason: String,
    },
}

/// Serves one request. Never fails: errors become responses of our own, and records.
///
/// The work runs in a task of its own: hyper drops a request's future when the sender resets
/// the stream or closes the connection, and a record half-way through would then stay
/// `pending` forever. In its own task the exchange always reaches its end (the body read
/// fails, or the answer comes back to nobody) and is recorded.
pub async fn handle(
    proxy: Arc<Proxy>,
    connection: Arc<ConnectionInfo>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let who = match connection.relayed {
        true => WhoLeft::Relay,
        false => WhoLeft::Sender,
    };
    let watch = SenderWatch::new(who);
    let rerecord = {
        let proxy = proxy.clone();
        move |mut record: Arc<Exchange>, gone_us| {
            // Without an id the first write failed and the writer still retries it: a second
            // write would be a second row.
            if record.id.is_some() {
                Arc::make_mut(&mut record).sender_gone(gone_us, who);
                record_end(&proxy.store, &proxy.events, record);
            }
        }
    };
    // Dropped with this future if the sender leaves first (see `sender_watch`).
    let departure = Departure::new(watch.clone(), rerecord);
    let result = tokio::spawn(serve(proxy, connection, request, watch)).await;
    departure.answered();
    match result {
        Ok(response) => Ok(response),
        Err(e) => {
            tracing::error!("a request's task failed: {e}");
            Ok(plain(
                500,
                "vobiz-tunnel: internal error while handling this request\n",
            ))
        }
    }
}

async fn serve(
    proxy: Arc<Proxy>,
    connection: Arc<ConnectionInfo>,
    request: Request<Incoming>,
    watch: Arc<SenderWatch>,
) -> Response<Full<Bytes>> {
    let received_us = now_micros();
    let (mut parts, mut incoming) = request.into_parts();
    let received_head = parts
        .extensions
        .remove::<crate::server::refusal::ReceivedHead>();
    let envelope = match connection.relayed {
        true => relay::envelope::take(&mut parts.headers),
        false => Envelope::default(),
    };
    // The sender's side of the exchange: the relay's word for a tunnelled request.
    let (client_addr, tls) = match connection.relayed {
        true => (envelope.client_addr, envelope.tls.clone()),
        false => (connection.client_addr, connection.tls.clone()),
    };
    let body = read_body(&mut incoming, &parts.headers, &proxy.limits).await;
    crate::server::discard_rest(incoming, parts.version);

    let original_host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(String::from)
        });
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    // Only a relayed request has one: an allocation for the relay's hop alone.
    let called_by_relay = envelope.public_url.clone();
    let public_url = proxy.public_url_of(envelope.public_url, original_host.as_deref(), &target);
    let body_bytes = match &body {
        BodyRead::Complete(bytes) => bytes.clone(),
        BodyRead::TooLarge { prefix, .. } | BodyRead::Failed { prefix, .. } => prefix.clone(),
    };
    let request_record = RequestRecord {
        method: parts.method.as_str().to_string(),
        target: target.clone(),
        // Through the relay: the version its sender spoke, not the tunnel's HTTP/2.
        http_version: envelope
            .http_version
            .clone()
            .unwrap_or_else(|| format!("{:?}", parts.version)),
        host: original_host.clone(),
        public_url,
        headers: match envelope.header_names.is_empty() {
            true => {
                received_head.map_or_else(|| forward::headers_record(&parts.headers), |head| head.0)
            }
            false => forward::headers_named(&parts.headers, &envelope.header_names),
        },
        body: body_bytes.clone(),
        body_truncated: !matches!(body, BodyRead::Complete(_)),
        client_addr: client_addr.map(|a| a.to_string()),
        tls,
    };
    let verdict = {
        let header_pairs = request_record
            .headers
            .text_pairs_where(signature::reads_header);
        let check = |other_urls: &[signature::OtherUrl]| {
            signature::verify(
                &CallbackRequest {
                    method: &request_record.method,
                    url: &request_record.public_url,
                    headers: &header_pairs,
                    body: &request_record.body,
                    extra_ports: &[proxy.listen_port],
                    other_urls,
                },
                &proxy.keys,
            )
        };
        let verdict = check(&[]);
        // Only a failure is worth the other URLs Vobiz may have called (explanations only):
        // they are looked for then, not on every callback.
        if verdict.status != VerdictStatus::Invalid {
            verdict
        } else {
            let public_url = proxy.public_url.as_ref().map(BaseUrl::to_string);
            let other_urls = signature::other_urls::other_urls(&signature::other_urls::Arrival {
                checked: &request_record.public_url,
                public_url: public_url.as_deref(),
                host: original_host.as_deref(),
                target: &target,
                forwarded_host: request_record.headers.get_str("x-forwarded-host"),
                forwarded_proto: request_record.headers.get_str("x-forwarded-proto"),
                authorization: request_record.headers.get_str("authorization"),
            });
            match other_urls.is_empty() {
                true => verdict,
                false => check(&other_urls),
            }
        }
    };
    let mut exchange = Arc::new(Exchange::received(request_record, verdict, received_us));

    // Duplicates are judged in arrival order, here, not at the end: a Vobiz retry usually
    // arrives while the slow first delivery is still waiting on the local server.
    let checks::Receipt {
        findings: early,
        delivery,
    } = checks::on_received(&exchange, &proxy.checks);
    if !early.is_empty() {
        let record = Arc::make_mut(&mut exchange);
        if early
            .iter()
            .any(|f| f.rule == checks::delivery::DUPLICATE_DELIVERY)
        {
            record.add_flag(Flag::Duplicate);
        }
        record.findings.extend(early);
    }

    match body {
        BodyRead::TooLarge { declared, .. } => {
            let size = declared
                .map(|n| format!(" ({n} bytes)"))
                .unwrap_or_default();
            let message = format!(
                "the request body{size} is over the limit of {} bytes (--max-body)",
                proxy.limits.max_body_bytes
            );
            return proxy
                .finish_locally(exchange, delivery, &watch, Outcome::TooLarge, 413, message)
                .await;
        }
        BodyRead::Failed { reason, .. } => {
            let message = format!("the sender did not deliver the whole request body: {reason}");
            return proxy
                .finish_locally(
                    exchange,
                    delivery,
                    &watch,
                    Outcome::ClientError,
                    400,
                    message,
                )
                .await;
        }
        BodyRead::Complete(_) => {}
    }

    if let Some((status, message)) = not_forwardable(&parts, connection.relayed) {
        return proxy
            .finish_locally(
                exchange,
                delivery,
                &watch,
                Outcome::ClientError,
                status,
                message,
            )
            .await;
    }

    // Only what a configured token verified goes through: `unchecked` (signed only with a
    // kind of token that is not configured, e.g. `-MA-` headers without a main token) proves
    // nothing either, and a junk header of that kind must not be a way past the check.
    // With `--reject-replays`, a valid callback that came before is refused too.
    let valid = exchange.verdict.status == VerdictStatus::Valid;
    let refusal = match (&proxy.replay_guard, valid) {
        _ if proxy.reject_invalid && !valid => {
            Some(format!("signature {}", exchange.verdict.summary()))
        }
        (Some(guard), true) => {
            let replay = guard.admit(&exchange);
            if replay.is_some() {
                // Flagged now: the copy let through may be recorded after this one (its
                // answer is slower), and the store alone would not know this one as a replay.
                Arc::make_mut(&mut exchange).add_flag(Flag::NonceReused);
            }
            replay
        }
        _ => None,
    };
    if let Some(message) = refusal {
        return proxy
            .finish_locally(exchange, delivery, &watch, Outcome::Rejected, 403, message)
            .await;
    }

    if !envelope.header_names.is_empty() {
        // Relayed: the local server sees the names as the sender spelled them.
        let case = proxy.header_cases.extensions_for(&envelope.header_names);
        parts.extensions.extend(case.await);
    }
    let Some(in_flight) = proxy.forwarding.try_take() else {
        // Refused here: the local server was never asked, so not its error.
        let message = format!(
            "not forwarded: {} requests are already waiting for the local server, as many as \
             this listener keeps open at once (--max-connections)",
            proxy.forwarding.max()
        );
        return proxy
            .finish_locally(exchange, delivery, &watch, Outcome::Rejected, 503, message)
            .await;
    };
    Arc::make_mut(&mut exchange).timings.forwarded_us = Some(now_micros());
    let sender_is_the_developer = is_local_sender(connection.relayed, client_addr, &parts.headers);
    let public = told_public(
        proxy.public_url.as_ref(),
        called_by_relay.as_deref(),
        client_addr,
        original_host.as_deref(),
    );
    let outgoing = Outgoing {
        method: parts.method.as_str(),
        target: &target,
        headers: parts.headers,
        body: body_bytes,
        original_host: original_host.as_deref(),
        client_ip: client_addr.map(|a| a.ip()),
        public,
        extensions: parts.extensions,
        relay_waits: envelope.answer_within,
    };
    let forwarded = proxy.upstream.send(outgoing);
    let mut forwarded = std::pin::pin!(forwarded);
    // Most answers come back within a few milliseconds: the exchange is then written once,
    // whole, at its end. A slower one is written now, as pending, so that what was received
    // survives a crash while the local server thinks.
    let slow = proxy.slow_answers.wait();
    let result = tokio::select! {
        biased;
        result = &mut forwarded => result,
        () = slow => {
            let record_pending = async {
                let inserted = proxy.store.insert(exchange.clone()).await;
                proxy.recorded(&mut exchange, delivery, inserted);
                if exchange.id.is_some() {
                    let _ = proxy.events.send(ExchangeEvent::Pending(exchange.clone()));
                }
            };
            tokio::join!(record_pending, forwarded).1
        }
    };
    // Its connection is back in the pool (or closed): a slow commit must not hold the slot.
    drop(in_flight);
    match result {
        Ok(answer) => {
            Arc::make_mut(&mut exchange).answered(answer.response, answer.first_byte_us);
            proxy.finish(exchange, delivery, &watch).await
        }
        Err(error) => {
            if matches!(error, forward::ForwardError::RelayGaveUp { .. }) {
                watch.relay_answered();
            }
            let (outcome, status) = (error.outcome(), error.status());
            // A sender that may be anyone on the internet is not told where the developer's
            // server listens; the record keeps the whole message.
            let answer = match sender_is_the_developer {
                true => error.to_string(),
                false => error.without_target(),
            };
            let record = Arc::make_mut(&mut exchange);
            record.failed_answering(outcome, status, error.to_string(), answer);
            proxy.finish(exchange, delivery, &watch).await
        }
    }
}

impl Proxy {
    /// The URL a request to `target` is taken to have reached, for its signature: an explicit
    /// `--public-url` wins; then what the relay says Vobiz called (`called`); then the Host.
    pub(crate) fn public_url_of(
        &self,
        called: Option<String>,
        host: Option<&str>,
        target: &str,
    ) -> String {
        match (&self.public_url, called) {
            (Some(base), _) => base.join(target),
            (None, Some(called)) => called,
            (None, None) => format!("https://{}{target}", host.unwrap_or("localhost")),
        }
    }

    /// Ends an exchange with an answer of our own (see [`Exchange::failed`]).
    async fn finish_locally(
        &self,
        mut exchange: Arc<Exchange>,
        delivery: Option<u64>,
        watch: &SenderWatch,
        outcome: Outcome,
        status: u16,
        message: String,
    ) -> Response<Full<Bytes>> {
        Arc::make_mut(&mut exchange).failed(outcome, status, message);
        self.finish(exchange, delivery, watch).await
    }

    /// The one exit: the end stamped, the record committed, the event published, the
    /// response. The sender is answered only after the commit, so every answered callback is
    /// in the store, even if the process is killed the next instant.
    /// `delivery` is the key [`checks::on_received`] remembered the callback by; `watch`
    /// tells whether the sender is still there to get the answer.
    async fn finish(
        &self,
        mut exchange: Arc<Exchange>,
        delivery: Option<u64>,
        watch: &SenderWatch,
    ) -> Response<Full<Bytes>> {
        let record = Arc::make_mut(&mut exchange);
        record.done();
        if let Some(gone_us) = watch.gone_at() {
            record.sender_gone(gone_us, watch.who());
        }
        // After `done` (slow-answer needs the duration), before the record is written.
        let found = checks::findings(record, &self.checks);
        record.findings.extend(found);
        let response = match &record.response {
            Some(answer) => {
                let mut response = Response::new(Full::new(answer.body.clone()));
                *response.status_mut() =
                    StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
                *response.headers_mut() = forward::downstream_headers(&answer.headers);
                crate::server::without_made_up_reason(&mut response);
                response
            }
            None => plain(502, "vobiz-tunnel: no response was produced\n"),
        };
        let committing = std::time::Instant::now();
        let written = self.store.finish(exchange.clone()).await;
        let held_back = committing.elapsed();
        // A write that failed is reported as such (`recorded`); one that succeeded late, here.
        let committed = written.is_ok();
        self.recorded(&mut exchange, delivery, written);
        if committed {
            let request = &exchange.request;
            let what = || format!("{} {}", request.method, request.target);
            if let Some(message) = self.slow_commits.note(held_back, what) {
                tracing::warn!("{message}");
                let _ = self.events.send(ExchangeEvent::StoreError(message));
            }
        }
        if let Some(gone_us) = watch.recorded(&exchange) {
            // The sender left during the commit: the record is written again, flagged (if
            // it was written at all: see `handle`).
            if exchange.id.is_some() && !exchange.has_flag(Flag::SenderGone) {
                Arc::make_mut(&mut exchange).sender_gone(gone_us, watch.who());
                self.store.complete(exchange.clone());
            }
        }
        let _ = self.events.send(ExchangeEvent::Finished(exchange));
        response
    }

    /// Commits an exchange answered outside the pipeline (a request hyper refused, a callback
    /// the relay answered itself), then tells the subscribers, with the id the store gave it.
    /// Its sender has its answer already: the commit holds nobody back.
    pub async fn record_answered(&self, exchange: Exchange) {
        let mut exchange = Arc::new(exchange);
        let written = self.store.finish(exchange.clone()).await;
        self.recorded(&mut exchange, None, written);
        let _ = self.events.send(ExchangeEvent::Finished(exchange));
    }

    /// Takes in what the store answered for an exchange: its id and whether its nonce was
    /// seen before, or the failure, which the writer has logged and the subscribers hear.
    fn recorded(
        &self,
        exchange: &mut Arc<Exchange>,
        delivery: Option<u64>,
        written: Result<Inserted, StoreError>,
    ) {
        match written {
            Ok(inserted) => {
                if let Some(notice) = self.store.health().take_notice() {
                    let _ = self.events.send(ExchangeEvent::StoreError(notice));
                }
                let record = Arc::make_mut(exchange);
                record.id = Some(inserted.id);
                if let Some(earlier) = inserted.nonce_reused_of {
                    record.nonce_reused_of = Some(earlier);
                    record.add_flag(Flag::NonceReused);
                }
                checks::identify(record, delivery, &self.checks);
            }
            Err(e) => {
                let request = &exchange.request;
                let message = format!(
                    "could not record a {} {}: {e}",
                    request.method, request.target
                );
                let _ = self.events.send(ExchangeEvent::StoreError(message));
            }
        }
    }
}

/// Whether a sender may read where the local server listens in a failure's answer: only one
/// on this machine that no proxy (ngrok, a load balancer: they add `Forwarded` or
/// `X-Forwarded-For`) relayed from elsewhere, and never one through our own relay.
fn is_local_sender(
    relayed: bool,
    client_addr: Option<SocketAddr>,
    headers: &hyper::HeaderMap,
) -> bool {
    !relayed
        && client_addr.is_some_and(|addr| addr.ip().is_loopback())
        && !headers.contains_key("x-forwarded-for")
        && !headers.contains_key("forwarded")
}

/// What the local server is told the sender called (`X-Forwarded-Proto`, `-Host`): what
/// `--public-url` or the relay says; else the Host, over what a sender's own headers claim,
/// unless the sender is a proxy of the developer's (`None`: its headers stand).
fn told_public<'a>(
    public_url: Option<&'a BaseUrl>,
    called_by_relay: Option<&'a str>,
    sender: Option<SocketAddr>,
    host: Option<&'a str>,
) -> Option<PublicOrigin<'a>> {
    match (public_url, called_by_relay) {
        (Some(base), _) => Some(PublicOrigin {
            scheme: &base.scheme,
            authority: &base.authority,
        }),
        (None, Some(called)) => PublicOrigin::of(called),
        (None, None) if sender.is_some_and(|a| is_a_developers_proxy(a.ip())) => None,
        (None, None) => host.map(|host| PublicOrigin {
            scheme: "https",
            authority: host,
        }),
    }
}

/// A sender whose own `X-Forwarded-Proto`/`-Host` reach the local server as it set them: on
/// this machine or a private network (ngrok's agent, cloudflared, the developer's nginx).
/// From anywhere else they are the sender's word about the tool's own address.
fn is_a_developers_proxy(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_a_developers_proxy(v4.into()),
            // Loopback, unique local (fc00::/7), link-local (fe80::/10).
            None => {
                let first = v6.segments()[0];
                v6.is_loopback() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
            }
        },
    }
}

/// Queues the end of an exchange for the store and tells the subscribers.
pub fn record_end(
    store: &Store,
    events: &broadcast::Sender<ExchangeEvent>,
    exchange: Arc<Exchange>,
) {
    store.complete(exchange.clone());
    let _ = events.send(ExchangeEvent::Finished(exchange));
}

/// A plain-text response of our own.
pub fn plain(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Reads the body within the size limit and the body timeout. A declared length over the
/// limit is refused before reading; an undeclared one stops at the limit. What arrived is
/// kept in every case, for the record.
async fn read_body(body: &mut Incoming, headers: &hyper::HeaderMap, limits: &Limits) -> BodyRead {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return BodyRead::TooLarge {
            prefix: Bytes::new(),
            declared,
        };
    }
    let mut single: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let collect = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| forward::error_chain(&e))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers carry nothing we forward
            };
            let so_far = single.as_ref().map_or(joined.len(), Bytes::len);
            if so_far + data.len() > limits.max_body_bytes {
                let room = limits.max_body_bytes - so_far;
                if let Some(first) = single.take() {
                    joined.extend_from_slice(&first);
                }
                joined.extend_from_slice(&data[..room]);
                return Ok(false);
            }
            // The common case is one frame: kept as it is, not joined (and detached below).
            match single.take() {
                None if joined.is_empty() => single = Some(data),
                None => joined.extend_from_slice(&data),
                Some(first) => {
                    joined.extend_from_slice(&first);
                    joined.extend_from_slice(&data);
                }
            }
        }
        Ok::<bool, String>(true)
    };
    let result = tokio::time::timeout(limits.body_timeout, collect).await;
    let received = match single {
        Some(frame) => detached(&frame),
        None => joined.freeze(),
    };
    match result {
        Ok(Ok(true)) => BodyRead::Complete(received),
        Ok(Ok(false)) => BodyRead::TooLarge {
            prefix: received,
            declared,
        },
        Ok(Err(reason)) => BodyRead::Failed {
            prefix: received,
            reason,
        },
        Err(_) => BodyRead::Failed {
            prefix: received,
            reason: format!(
                "it was still sending after {} s (--body-timeout)",
                limits.body_timeout.as_secs_f64()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_server_is_told_the_public_address_a_sender_cannot_choose() {
        let at = |addr: &str| Some(addr.parse::<SocketAddr>().unwrap());
        let origin =
            |o: Option<PublicOrigin<'_>>| o.map(|o| (o.scheme.to_owned(), o.authority.to_owned()));
        let https = |host: &str| Some(("https".to_owned(), host.to_owned()));
        let base = BaseUrl::parse("https://hooks.example.com/app").unwrap();
        let host = Some("localhost:8443");
        // --public-url, then the relay's word, decide whatever the sender.
        let told = told_public(
            Some(&base),
            Some("https://relay.example/x"),
            at("127.0.0.1:1"),
            host,
        );
        assert_eq!(origin(told), https("hooks.example.com"));
        let told = told_public(
            None,
            Some("https://relay.example:8443/x"),
            at("10.0.0.2:1"),
            host,
        );
        assert_eq!(origin(told), https("relay.example:8443"));
        // Neither: a proxy of the developer's keeps its own X-Forwarded-*; anyone else is
        // told over by the Host.
        for proxy in [
            "127.0.0.1:1",
            "[::1]:1",
            "10.1.2.3:1",
            "172.16.0.9:1",
            "192.168.1.20:1",
            "[fd00::1]:1",
            "[fe80::1]:1",
            "[::ffff:192.168.1.2]:1",
        ] {
            assert_eq!(
                origin(told_public(None, None, at(proxy), host)),
                None,
                "{proxy}"
            );
        }
        for sender in [
            "203.0.113.7:1",
            "[2001:db8::1]:1",
            "[::ffff:203.0.113.7]:1",
            "172.32.0.1:1",
        ] {
            assert_eq!(
                origin(told_public(None, None, at(sender), host)),
                https("localhost:8443"),
                "{sender}"
            );
        }
    }

    #[test]
    fn only_a_sender_on_this_machine_learns_the_local_server_s_address() {
        let none = hyper::HeaderMap::new();
        let loopback: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let v6_loopback: SocketAddr = "[::1]:40000".parse().unwrap();
        let public: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let lan: SocketAddr = "192.168.1.20:40000".parse().unwrap();
        assert!(is_local_sender(false, Some(loopback), &none));
        assert!(is_local_sender(false, Some(v6_loopback), &none));
        assert!(!is_local_sender(false, Some(public), &none));
        assert!(!is_local_sender(false, Some(lan), &none));
        assert!(!is_local_sender(false, None, &none));
        assert!(
            !is_local_sender(true, Some(loopback), &none),
            "through the relay"
        );
        for proxied in ["x-forwarded-for", "forwarded"] {
            let mut headers = hyper::HeaderMap::new();
            headers.insert(
                proxied,
                hyper::header::HeaderValue::from_static("for=198.51.100.1"),
            );
            assert!(
                !is_local_sender(false, Some(loopback), &headers),
                "{proxied}: an ngrok agent on this machine relays senders from anywhere"
            );
        }
    }
}
