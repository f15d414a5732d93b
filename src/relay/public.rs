//! A public callback's way through the relay: allow-list → route → body → the route's tunnel
//! (waiting up to `--hold` for a laptop) → the laptop's answer → one log line. The relay
//! keeps nothing; when it cannot deliver it answers itself, promptly, with a plain-text
//! `vobiz-tunnel relay: …` reason (403, 404, 413, 502, 503, 504).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::config::{RelayConfig, RouteMatch};
use super::envelope::{self, Envelope};
use super::log::CallbackLine;
use super::notice;
use super::server::Shared;
use crate::config::BaseUrl;
use crate::exchange::TlsInfo;
use crate::forward::{error_chain, is_hop_by_hop};
use crate::server::refusal::{ReceivedHead, RequestStart};
use crate::server::{linger, watch};

/// How long a sender may take over a request's body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer carried back from a laptop.
const MAX_ANSWER_BYTES: usize = 16 << 20;
/// Longest list of the sender's header names carried to the laptop (comma-separated); a head
/// with more is carried in lower case, as HTTP/2 writes it.
const MAX_NAMES_BYTES: usize = 4 * 1024;
/// Deliveries of one callback: a request the tunnel never took (it closed just then) is sent
/// again on the next tunnel; one it may have taken is not (the laptop may have recorded it).
const MAX_ATTEMPTS: u32 = 3;

pub(super) type HttpBuilder = auto::Builder<TokioExecutor>;

/// The public side's HTTP settings: those of the laptop's own listener.
pub(super) fn http_builder(header_timeout: Duration) -> HttpBuilder {
    crate::server::http_builder(header_timeout)
}

/// Facts of one public connection, for every request on it.
struct PublicConn {
    peer: SocketAddr,
    tls: TlsInfo,
}

/// Serves one public connection until it ends, then closes it gently (see [`linger`]).
pub(super) async fn serve(
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    http: Arc<HttpBuilder>,
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let closing = linger::Closing::of(tls.get_ref().0);
    let lingering_stop = stop.clone();
    let conn = Arc::new(PublicConn {
        peer,
        tls: crate::tls::session_info(tls.get_ref().1),
    });
    let h2 = conn.tls.alpn.as_deref() == Some("h2");
    let activity = watch::Activity::new();
    let counter = activity.clone();
    let idle_timeout = shared.config.header_timeout;
    let request_start = Arc::new(RequestStart::default());
    let received = request_start.clone();
    let service = service_fn(move |mut request: Request<Incoming>| {
        // The head as it came, for the header names' case (HTTP/1 only; empty for HTTP/2).
        if let Some(headers) = received.take_for(&request) {
            request.extensions_mut().insert(ReceivedHead(headers));
        }
        watch::counted(&counter, handle(shared.clone(), conn.clone(), request))
    });
    // hyper's refusals (a malformed request) get a body that says what was wrong.
    let refusals = crate::server::refusal::Refusals::new(
        tls,
        activity.clone(),
        Arc::default(),
        Some(request_start.clone()),
        "vobiz-tunnel relay",
    )
    .speaking_h2(h2)
    .answering_late_heads(idle_timeout, None);
    let connection = http.serve_connection(TokioIo::new(refusals), service);
    let ended = watch::serve(connection, &activity, idle_timeout, stop).await;
    if let Some(closing) = closing {
        // A sender whose body was not all read may still be sending it.
        let patient = request_start.body_unread();
        closing.close(Some(lingering_stop), patient).await;
    }
    match ended {
        watch::Ended::Idle => Ok(()),
        watch::Ended::Finished(Ok(())) => Ok(()),
        watch::Ended::Finished(Err(e)) => {
            match crate::server::is_ordinary_close(&error_chain(e.as_ref())) {
                true => Ok(()),
                false => Err(crate::server::protocol_error::describe(e.as_ref())),
            }
        }
    }
}

/// How a callback ended, for the response and the log line.
struct Delivery {
    response: Response<Full<Bytes>>,
    route: Option<String>,
    reason: Option<String>,
}

impl Delivery {
    /// An answer of the relay's own.
    fn local(status: u16, route: Option<String>, reason: String) -> Delivery {
        Delivery::local_with_detail(status, route, reason, None)
    }

    /// An answer of the relay's own whose `detail` (a library's error chain: versions, URLs
    /// of its docs) is for the relay's log, not for whoever called a public URL.
    fn local_with_detail(
        status: u16,
        route: Option<String>,
        reason: String,
        detail: Option<String>,
    ) -> Delivery {
        let body = format!("vobiz-tunnel relay: {reason}\n");
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let reason = match detail {
            Some(detail) => format!("{reason}: {detail}"),
            None => reason,
        };
        Delivery {
            response,
            route,
            reason: Some(reason),
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    conn: Arc<PublicConn>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let mut line = LogLine {
        shared: &shared,
        client: conn.peer,
        method: &method,
        path: &path,
        started: Instant::now(),
        route: None,
        written: false,
    };
    let (parts, mut body) = request.into_parts();
    let delivery = deliver(&shared, &conn, &parts, &mut body, &mut line.route).await;
    crate::server::discard_rest(body, parts.version);
    line.route = delivery.route.clone();
    line.write(
        delivery.response.status().as_u16(),
        delivery.reason.as_deref(),
    );
    Ok(delivery.response)
}

/// Status logged for a callback whose sender left before its answer was ready (nginx's 499,
/// "client closed request": no status was sent).
const SENDER_LEFT: u16 = 499;

/// A callback's log line, written however its handling ends. hyper drops the request's
/// future when its sender leaves (Vobiz gives up after about 3 s), and that callback's line
/// matters most: dropped unwritten, it says so.
struct LogLine<'a> {
    shared: &'a Shared,
    client: std::net::SocketAddr,
    method: &'a str,
    path: &'a str,
    started: Instant,
    /// The route it matched, once known.
    route: Option<String>,
    written: bool,
}

impl LogLine<'_> {
    fn write(&mut self, status: u16, reason: Option<&str>) {
        self.written = true;
        self.shared.log.callback(&CallbackLine {
            method: self.method,
            path: self.path,
            status,
            duration: self.started.elapsed(),
            route: self.route.as_deref(),
            client: self.client,
            reason,
        });
    }
}

impl Drop for LogLine<'_> {
    fn drop(&mut self) {
        if !self.written {
            let reason = format!(
                "the sender left after {:.2} s, before its answer was ready",
                self.started.elapsed().as_secs_f64()
            );
            self.write(SENDER_LEFT, Some(&reason));
        }
    }
}

/// The answer to a callback still in flight when a stop has waited its `drain_timeout`.
fn stopping(config: &RelayConfig, route: Option<String>) -> Delivery {
    let reason = format!(
        "the relay is stopping, and this callback was not answered within the {:.1} s it \
         gives callbacks in flight",
        config.drain_timeout.as_secs_f64()
    );
    Delivery::local(503, route, reason)
}

/// How long telling a laptop about a rejected callback may take.
const TELL_TIMEOUT: Duration = Duration::from_secs(5);

/// A callback the relay answered itself, as its laptop is told of it.
struct Rejection<'a> {
    method: &'a hyper::Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    status: u16,
    reason: &'a str,
    /// From its arrival at the relay to the answer.
    after: Duration,
}

/// Tells the laptop connected for `route`, if there is one, about a callback the relay
/// answered itself (a "rejected" notice: the callback without its body). In the background:
/// the sender's answer does not wait for it.
fn tell_laptop(shared: &Shared, route: usize, rejection: Rejection<'_>) {
    let Some(link) = shared.registry.connected(route) else {
        return;
    };
    let Ok(permit) = shared.telling.clone().try_acquire_owned() else {
        return; // a flood of rejections: the log has them
    };
    let mut headers = rejection.headers.clone();
    // The body stays behind: a length it does not have would make HTTP/2 refuse the request.
    headers.remove(CONTENT_LENGTH);
    let request = notice::rejected_request(
        rejection.method,
        rejection.uri,
        headers,
        rejection.status,
        rejection.reason,
        rejection.after,
    );
    let mut sender = link.sender();
    tokio::spawn(async move {
        let told = async {
            sender.ready().await.ok()?;
            sender.send_request(request).await.ok()
        };
        let _ = tokio::time::timeout(TELL_TIMEOUT, told).await;
        drop(permit);
    });
}

/// The headers the laptop receives: the sender's, minus those that describe the public
/// connection only (hop-by-hop) and any notice header (only the relay speaks those), plus the
/// envelope (replacing any the sender forged).
fn tunnel_headers(incoming: &HeaderMap, envelope: &Envelope) -> HeaderMap {
    let tokens: Vec<String> = incoming
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut headers = HeaderMap::with_capacity(incoming.len() + 3);
    for (name, value) in incoming {
        if !is_hop_by_hop(name, &tokens) {
            headers.append(name.clone(), value.clone());
        }
    }
    notice::strip(&mut headers);
    envelope::put(&mut headers, envelope);
    headers
}

/// Carries a callback to its route's laptop, or answers it; `matched` learns the route as
/// soon as it is known (for the log line, should the sender leave meanwhile).
async fn deliver(
    shared: &Shared,
    conn: &PublicConn,
    parts: &hyper::http::request::Parts,
    body: &mut Incoming,
    matched: &mut Option<String>,
) -> Delivery {
    let started = Instant::now();
    let config = &shared.config;
    if let Some(allow) = &config.allow {
        let ip = conn.peer.ip();
        if !allow.iter().any(|block| block.contains(ip)) {
            let reason = format!("{ip} is not an allowed callback source (--vobiz-ips-only)");
            return Delivery::local(403, None, reason);
        }
    }
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            let host = parts.headers.get(HOST)?.to_str().ok()?;
            Some(host.to_string())
        });
    let path = parts.uri.path();
    let registry = &shared.registry;
    let Some((route, matcher)) = registry
        .match_request(authority.as_deref(), path)
        .and_then(|i| Some((i, registry.route(i)?)))
    else {
        return Delivery::local(404, None, "no laptop route for this host or path".into());
    };
    let route_name = Some(matcher.name());
    matched.clone_from(&route_name);
    let prefix = match &matcher.matcher {
        RouteMatch::Prefix(prefix) => prefix.as_str(),
        _ => "",
    };
    // The laptop sees the path without the route's prefix; the prefix moves to the public URL.
    let rest = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .get(prefix.len()..)
        .unwrap_or("");
    let target = match rest.starts_with('/') {
        true => rest.to_string(),
        false => format!("/{rest}"),
    };
    // What Vobiz called: its Host (or HTTP/2 authority), else the name it reached us by.
    let fallback = conn.tls.sni.clone().unwrap_or_else(|| "localhost".into());
    let fallback = format!("{fallback}{}", shared.port_suffix());
    // The exact URL Vobiz called (prefix and all): the laptop verifies the signature on it.
    let called = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let public = [authority.as_deref(), Some(fallback.as_str())]
        .into_iter()
        .flatten()
        .find_map(|a| {
            BaseUrl::parse(&format!("https://{a}")).ok()?;
            let uri = format!("https://{a}{target}").parse::<Uri>().ok()?;
            Some((format!("https://{a}{called}"), uri))
        });
    let Some((public_url, uri)) = public else {
        return Delivery::local(
            400,
            route_name,
            "the request target is not a valid URL".into(),
        );
    };
    // How the sender spelled its header names, which the tunnel (HTTP/2) cannot carry:
    // only from a head that is this request's, and within bounds (it rides in a header).
    let header_names = parts
        .extensions
        .get::<ReceivedHead>()
        .map(|head| {
            head.0
                 .0
                .iter()
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>()
        })
        .filter(|names| names.iter().map(|name| name.len() + 1).sum::<usize>() <= MAX_NAMES_BYTES)
        .unwrap_or_default();
    let envelope = Envelope {
        public_url: Some(public_url),
        client_addr: Some(conn.peer),
        tls: conn.tls.clone(),
        answer_within: Some(config.forward_timeout),
        header_names,
        http_version: Some(format!("{:?}", parts.version)),
    };
    let headers = tunnel_headers(&parts.headers, &envelope);
    let rejected = |status: u16, reason: String| {
        let rejection = Rejection {
            method: &parts.method,
            uri: &uri,
            headers: &headers,
            status,
            reason: &reason,
            after: started.elapsed(),
        };
        tell_laptop(shared, route, rejection);
        Delivery::local(status, route_name.clone(), reason)
    };

    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limit = config.max_body_bytes;
    // What the relay answers itself from here on is told to the route's laptop too.
    if declared.is_some_and(|n| n > limit as u64) {
        return rejected(413, format!("body over {limit} bytes"));
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return rejected(413, format!("body over {limit} bytes"));
        }
        Ok(Err(e)) => {
            let reason = format!("the body did not arrive whole: {}", error_chain(e.as_ref()));
            return rejected(400, reason);
        }
        Err(_) => {
            let reason = format!("the body took over {} s", BODY_TIMEOUT.as_secs());
            return rejected(408, reason);
        }
    };
    let make_request = || {
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri.clone();
        *request.version_mut() = Version::HTTP_2;
        *request.headers_mut() = headers.clone();
        request
    };

    let hold_until = started + config.hold;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let hold = hold_until.saturating_duration_since(Instant::now());
        let waited = tokio::select! {
            link = registry.wait(route, hold) => link,
            () = shared.drain_over() => return stopping(config, route_name),
        };
        let Some(link) = waited else {
            let reason = match config.hold.is_zero() {
                true => "no laptop is connected for this route".to_string(),
                false => format!(
                    "no laptop connected for this route within {:.1} s (--hold)",
                    config.hold.as_secs_f64()
                ),
            };
            return Delivery::local(503, route_name, reason);
        };
        let mut sender = link.sender();
        let exchange = async {
            let response = sender.try_send_request(make_request()).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await;
            Ok::<_, hyper::client::conn::TrySendError<_>>(body.map(|b| (parts, b.to_bytes())))
        };
        let answered = tokio::select! {
            answered = tokio::time::timeout(config.forward_timeout, exchange) => answered,
            () = shared.drain_over() => return stopping(config, route_name),
        };
        let error = match answered {
            Ok(Ok(Ok((mut parts, body)))) => {
                // The tunnel's HTTP/2 says nothing about the public connection's version.
                parts.version = Version::default();
                let mut response = Response::from_parts(parts, Full::new(body));
                crate::server::without_made_up_reason(&mut response);
                return Delivery {
                    response,
                    route: route_name,
                    reason: None,
                };
            }
            Ok(Ok(Err(e))) => error_chain(e.as_ref()),
            Ok(Err(mut e)) => {
                let reason = error_chain(e.error());
                // Not taken by the tunnel (closed under us, or refused by a laptop going away):
                // safe to offer to the next one.
                let untouched = e.take_message().is_some()
                    || reason.contains("refused stream before processing");
                if untouched && attempt < MAX_ATTEMPTS {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                reason
            }
            Err(_) => {
                let reason = format!(
                    "the laptop did not answer within {:.1} s",
                    config.forward_timeout.as_secs_f64()
                );
                return Delivery::local(504, route_name, reason);
            }
        };
        let reason = "the tunnel to the laptop broke while carrying this callback".to_string();
        return Delivery::local_with_detail(502, route_name, reason, Some(error));
    }
}
