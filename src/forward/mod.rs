//! The upstream side: sends a recorded request to the developer's local server through a
//! keep-alive pool and reads its answer. Header rules live here: what is hop-by-hop, what
//! `X-Forwarded-*` says, which `Host` the local server sees. A request that a kept-alive
//! connection dropped before any answer is sent once more on a new one ([`reuse`]).

pub mod header_case;
pub mod in_flight;
mod reuse;

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::{Request, Response, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cli::HostHeader;
use crate::config::BaseUrl;
use crate::exchange::{detached, now_micros, Headers, ResponseRecord};
use reuse::Counted;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1); never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// How forwarding failed, named from the point of view of the failing side.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot reach your local server at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("your local server at {target} did not answer within {seconds} s")]
    Timeout { target: String, seconds: f64 },
    #[error(
        "your local server at {target} did not answer within {seconds} s, when the relay \
         stops waiting (its --forward-timeout) and answers the sender 504 itself"
    )]
    RelayGaveUp { target: String, seconds: f64 },
    #[error("your local server at {target} broke the exchange: {reason}")]
    Broken { target: String, reason: String },
    #[error("your local server at {target} answered with a body over {limit} bytes")]
    TooLarge { target: String, limit: usize },
    #[error("cannot build the request for {target}: {reason}")]
    Invalid { target: String, reason: String },
}

impl ForwardError {
    /// The failure without the local server's address: what a sender on the far side of the
    /// relay is told (anyone on the internet can send to a public relay URL; the developer
    /// reads the whole message in the inspector and the log).
    pub fn without_target(&self) -> String {
        match self {
            ForwardError::Unreachable { reason, .. } => {
                format!("cannot reach the developer's local server: {reason}")
            }
            ForwardError::Timeout { seconds, .. } | ForwardError::RelayGaveUp { seconds, .. } => {
                format!("the developer's local server did not answer within {seconds} s")
            }
            ForwardError::Broken { reason, .. } => {
                format!("the developer's local server broke the exchange: {reason}")
            }
            ForwardError::TooLarge { limit, .. } => {
                format!("the developer's local server answered with a body over {limit} bytes")
            }
            ForwardError::Invalid { .. } => {
                "the request cannot be forwarded to the developer's local server".into()
            }
        }
    }

    /// The status the sender gets: 504 for a timeout, 502 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            ForwardError::Timeout { .. } | ForwardError::RelayGaveUp { .. } => 504,
            _ => 502,
        }
    }

    /// How the exchange is recorded.
    pub fn outcome(&self) -> crate::exchange::Outcome {
        match self {
            ForwardError::Timeout { .. } | ForwardError::RelayGaveUp { .. } => {
                crate::exchange::Outcome::UpstreamTimeout
            }
            _ => crate::exchange::Outcome::UpstreamError,
        }
    }
}

/// The local server's answer, fully read.
pub struct UpstreamAnswer {
    pub response: ResponseRecord,
    /// When the response head arrived (µs since the epoch).
    pub first_byte_us: i64,
}

/// The scheme and authority of the public URL a callback was sent to, when the tool knows it
/// for sure (`--public-url`, or the relay's word): the local server gets them as
/// `X-Forwarded-Proto` and `-Host`, in place of any a proxy in front set, so that an app can
/// rebuild the URL Vobiz signed. Without it, a proxy's are kept, and `https` and the `Host`
/// the sender used fill in for missing ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicOrigin<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
}

impl<'a> PublicOrigin<'a> {
    /// The origin of an absolute `url` (`https://hooks.example.com:8443/cb?x` gives `https`
    /// and `hooks.example.com:8443`); `None` for anything else.
    pub fn of(url: &'a str) -> Option<PublicOrigin<'a>> {
        let (scheme, rest) = url.split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        // Credentials are not part of where a request goes (and not for a header).
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        (!scheme.is_empty() && !authority.is_empty()).then_some(PublicOrigin { scheme, authority })
    }
}

/// A request ready to send: the parts a recorded exchange holds.
pub struct Outgoing<'a> {
    pub method: &'a str,
    /// Origin-form target (`/path?query`) as received.
    pub target: &'a str,
    /// The received headers, made into the forwarded ones (see [`upstream_headers`]).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The Host the sender used (the `Host` header, or the HTTP/2 authority).
    pub original_host: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    /// What the sender called, when known for sure (see [`PublicOrigin`]).
    pub public: Option<PublicOrigin<'a>>,
    /// Hyper's per-request extensions; carrying them keeps the sender's header-name case on
    /// HTTP/1 (hyper stores it there).
    pub extensions: hyper::http::Extensions,
    /// How long the relay that carried the request waits for its answer, when it did.
    pub relay_waits: Option<Duration>,
}

/// The developer's local server and how to talk to it.
#[derive(Clone)]
pub struct Upstream {
    client: Client<Counted<HttpsConnector<HttpConnector>>, Full<Bytes>>,
    /// The same, without a pool: for the one retry, which must go on a new connection.
    fresh: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The pooled client's connector, which counts the connections it starts.
    connections: Counted<HttpsConnector<HttpConnector>>,
    base: BaseUrl,
    host_header: HostHeader,
    timeout: Duration,
    max_response_bytes: usize,
}

/// How long an idle connection to the local server is kept: under the 5 s after which Node
/// and uvicorn close theirs, so a callback is rarely written to one the server is closing
/// (it would get a 502: callbacks are not sent twice). Under load connections never idle.
const POOL_IDLE: Duration = Duration::from_secs(4);

impl Upstream {
    /// A pooled client for `base`. `tls` (without ALPN: the connector sets it) is used for
    /// https upstreams.
    pub fn new(
        base: BaseUrl,
        host_header: HostHeader,
        timeout: Duration,
        max_response_bytes: usize,
        tls: rustls::ClientConfig,
    ) -> Upstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(10))));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let counted = Counted::new(connector.clone());
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(1024)
            // Not `http1_preserve_header_case`: hyper writes a request's header names in the
            // case its extensions carry (`Outgoing::extensions`) whatever that flag says; the
            // flag only makes it remember the case of each response's names, which nothing
            // reads (answers are recorded and passed on from their header map).
            .build(counted.clone());
        let fresh = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Upstream {
            client,
            fresh,
            connections: counted,
            base,
            host_header,
            timeout,
            max_response_bytes,
        }
    }

    pub fn base(&self) -> &BaseUrl {
        &self.base
    }

    /// The URL a request target is sent to.
    pub fn url_for(&self, target: &str) -> String {
        self.base.join(target)
    }

    /// Sends the request and reads the whole answer, within the forward timeout.
    pub async fn send(&self, outgoing: Outgoing<'_>) -> Result<UpstreamAnswer, ForwardError> {
        let target = self.url_for(outgoing.target);
        let invalid = |reason: String| ForwardError::Invalid {
            target: target.clone(),
            reason,
        };
        let uri: Uri = target.parse().map_err(|e| invalid(format!("{e}")))?;
        let method = hyper::Method::from_bytes(outgoing.method.as_bytes())
            .map_err(|e| invalid(format!("{e}")))?;
        let headers = upstream_headers(
            outgoing.headers,
            outgoing.original_host,
            outgoing.client_ip,
            outgoing.public,
            match self.host_header {
                HostHeader::Keep => None,
                HostHeader::Rewrite => Some(self.base.authority.as_str()),
            },
        );
        let mut request = Request::new(Full::new(outgoing.body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        *request.extensions_mut() = outgoing.extensions;

        let exchange = async {
            let response = self
                .request_once_more_if_dropped(request)
                .await
                .map_err(|e| {
                    let mut reason = error_chain(&e);
                    if reason.contains("UnknownIssuer") {
                        // mkcert, a self-signed certificate: a CA only the developer knows.
                        reason.push_str(
                            " (its certificate's CA is not trusted: give it with --forward-ca)",
                        );
                    }
                    if e.is_connect() {
                        ForwardError::Unreachable {
                            target: target.clone(),
                            reason,
                        }
                    } else {
                        ForwardError::Broken {
                            target: target.clone(),
                            reason,
                        }
                    }
                })?;
            let first_byte_us = now_micros();
            read_response(response, self.max_response_bytes, &target)
                .await
                .map(|response| UpstreamAnswer {
                    response,
                    first_byte_us,
                })
        };
        // Past the relay's wait, an answer would be recorded as delivered when the sender
        // got the relay's 504 instead.
        let relay_first = outgoing.relay_waits.filter(|&wait| wait < self.timeout);
        let wait = relay_first.unwrap_or(self.timeout);
        match tokio::time::timeout(wait, exchange).await {
            Ok(result) => result,
            Err(_) => {
                let seconds = wait.as_secs_f64();
                Err(match relay_first {
                    Some(_) => ForwardError::RelayGaveUp { target, seconds },
                    None => ForwardError::Timeout { target, seconds },
                })
            }
        }
    }
}

impl Upstream {
    /// Sends `request`; if a kept-alive connection drops an idempotent one before any
    /// answer, sends it again on a new connection (see [`reuse`]).
    async fn request_once_more_if_dropped(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        // A callback or a POST the server may have read and acted on is never sent twice:
        // handled twice is worse than a 502 (nginx and Go's client do not resend a written
        // POST either). One never written at all hyper-util sends again itself.
        if !reuse::may_send_again(&request) {
            return self.client.request(request).await;
        }
        let again = {
            let mut copy = Request::new(request.body().clone());
            *copy.method_mut() = request.method().clone();
            *copy.uri_mut() = request.uri().clone();
            *copy.version_mut() = request.version();
            *copy.headers_mut() = request.headers().clone();
            *copy.extensions_mut() = request.extensions().clone();
            copy
        };
        let mark = self.connections.mark();
        let error = match self.client.request(request).await {
            Ok(response) => return Ok(response),
            Err(error) => error,
        };
        let reused = self.connections.none_started_since(mark);
        if !(reused && !error.is_connect() && reuse::closed_before_answer(&error)) {
            return Err(error);
        }
        tracing::debug!(
            "a kept-alive connection to the local server dropped {} {} ({}): sending it again \
             on a new connection",
            again.method(),
            again.uri(),
            error_chain(&error)
        );
        // Not through the pool: it may hold more connections the server has closed.
        self.fresh.request(again).await
    }
}

async fn read_response(
    response: Response<hyper::body::Incoming>,
    limit: usize,
    target: &str,
) -> Result<ResponseRecord, ForwardError> {
    let (parts, body) = response.into_parts();
    if parts.status == hyper::StatusCode::SWITCHING_PROTOCOLS {
        // Nothing asked for an upgrade; passed on, it would end the sender's connection
        // (HTTP/1) or its stream (HTTP/2) with no answer.
        return Err(ForwardError::Broken {
            target: target.to_string(),
            reason: "it answered 101 Switching Protocols to a request that asked for no \
                     upgrade"
                .into(),
        });
    }
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ForwardError::TooLarge {
                    target: target.to_string(),
                    limit,
                }
            } else {
                ForwardError::Broken {
                    target: target.to_string(),
                    reason: error_chain(e.as_ref()),
                }
            }
        })?
        .to_bytes();
    Ok(ResponseRecord {
        body: detached(&body),
        status: parts.status.as_u16(),
        headers: headers_record(&parts.headers),
    })
}

/// An error and its causes on one line: "connection refused" is usually three levels down.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The request's headers in the order and case of `names` (what the relay says the sender
/// sent, hop-by-hop ones included); headers `names` does not list follow in the map's order.
pub fn headers_named(map: &HeaderMap, names: &[String]) -> Headers {
    let mut used: std::collections::HashMap<HeaderName, usize> = Default::default();
    let mut headers = Vec::with_capacity(map.len());
    for name in names {
        let Ok(key) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        let nth = used.get(&key).copied().unwrap_or(0);
        if let Some(value) = map.get_all(&key).iter().nth(nth) {
            headers.push((name.clone(), value.as_bytes().to_vec()));
            used.insert(key, nth + 1);
        }
    }
    for name in map.keys() {
        let skip = used.get(name).copied().unwrap_or(0);
        for value in map.get_all(name).iter().skip(skip) {
            headers.push((name.as_str().to_string(), value.as_bytes().to_vec()));
        }
    }
    Headers(headers)
}

/// Converts a header map into the recorded form, in the map's order.
pub fn headers_record(map: &HeaderMap) -> Headers {
    Headers(
        map.iter()
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect(),
    )
}

/// Whether a header must not cross this proxy: hop-by-hop, or named in `Connection`.
pub fn is_hop_by_hop(name: &HeaderName, connection_tokens: &[String]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || connection_tokens.iter().any(|t| t == name.as_str())
}

fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    named_in_connection(
        headers
            .get_all(CONNECTION)
            .iter()
            .map(HeaderValue::as_bytes),
    )
}

/// The header names `Connection` values list, lower-cased, leaving out those that are
/// hop-by-hop anyway: for the usual `keep-alive` or `close`, nothing is allocated.
fn named_in_connection<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    let mut named = Vec::new();
    for value in values {
        for token in value.split(|&b| b == b',') {
            let token = token.trim_ascii();
            let hop_by_hop = HOP_BY_HOP
                .iter()
                .any(|name| name.as_bytes().eq_ignore_ascii_case(token));
            if !token.is_empty() && !hop_by_hop {
                named.push(String::from_utf8_lossy(token).to_ascii_lowercase());
            }
        }
    }
    named
}

/// The headers the local server receives: everything the sender sent, in order, minus
/// hop-by-hop headers; `Host` kept (or rewritten to `rewrite_host`); `X-Forwarded-For`
/// extended with the client; `X-Forwarded-Proto` and `-Host` as [`PublicOrigin`] says.
pub fn upstream_headers(
    mut incoming: HeaderMap,
    original_host: Option<&str>,
    client_ip: Option<IpAddr>,
    public: Option<PublicOrigin<'_>>,
    rewrite_host: Option<&str>,
) -> HeaderMap {
    let replaced = |name: &HeaderName| {
        HOP_BY_HOP.contains(&name.as_str())
            || name == X_FORWARDED_FOR
            || (public.is_some() && (name == X_FORWARDED_PROTO || name == X_FORWARDED_HOST))
    };
    if rewrite_host.is_some() || incoming.keys().any(replaced) {
        return rebuilt_upstream_headers(&incoming, original_host, client_ip, public, rewrite_host);
    }
    // The usual callback: nothing to drop or replace, so the received map is extended in
    // place (the same result as rebuilding it, without copying every header).
    if let Some(host) = original_host.filter(|_| !incoming.contains_key(HOST)) {
        if let Ok(value) = HeaderValue::from_str(host) {
            incoming.insert(HOST, value);
        }
    }
    add_forwarded(&mut incoming, original_host, client_ip, public, &[]);
    incoming
}

/// [`upstream_headers`] when headers must be dropped or replaced: a new map, in order.
fn rebuilt_upstream_headers(
    incoming: &HeaderMap,
    original_host: Option<&str>,
    client_ip: Option<IpAddr>,
    public: Option<PublicOrigin<'_>>,
    rewrite_host: Option<&str>,
) -> HeaderMap {
    let tokens = connection_tokens(incoming);
    let mut headers = HeaderMap::with_capacity(incoming.len() + 3);
    for (name, value) in incoming {
        if is_hop_by_hop(name, &tokens) {
            continue;
        }
        if name == HOST && rewrite_host.is_some() {
            continue;
        }
        let ours = name == X_FORWARDED_FOR
            || (public.is_some() && (name == X_FORWARDED_PROTO || name == X_FORWARDED_HOST));
        if ours {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    let host = rewrite_host.or(original_host);
    if let Some(host) = host {
        if !headers.contains_key(HOST) || rewrite_host.is_some() {
            if let Ok(value) = HeaderValue::from_str(host) {
                headers.insert(HOST, value);
            }
        }
    }
    let prior: Vec<&str> = incoming
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    add_forwarded(&mut headers, original_host, client_ip, public, &prior);
    headers
}

/// Sets `X-Forwarded-For` (`prior` hops, then the client); `-Proto` and `-Host` from
/// `public`, or where missing from `https` and `original_host`.
fn add_forwarded(
    headers: &mut HeaderMap,
    original_host: Option<&str>,
    client_ip: Option<IpAddr>,
    public: Option<PublicOrigin<'_>>,
    prior: &[&str],
) {
    if let Some(ip) = client_ip {
        let mut chain = prior.join(", ");
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(&ip.to_string());
        if let Ok(value) = HeaderValue::from_str(&chain) {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
    }
    let (proto, host) = match public {
        Some(public) => (public.scheme, Some(public.authority)),
        None => ("https", original_host),
    };
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        let value = match proto {
            "https" => Ok(HeaderValue::from_static("https")),
            "http" => Ok(HeaderValue::from_static("http")),
            other => HeaderValue::from_str(other),
        };
        if let Ok(value) = value {
            headers.insert(X_FORWARDED_PROTO.clone(), value);
        }
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(value) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(X_FORWARDED_HOST.clone(), value);
        }
    }
}

/// The headers the sender gets back from the local server's answer (hop-by-hop removed).
pub fn downstream_headers(upstream: &Headers) -> HeaderMap {
    // Names the local server's `Connection` header lists are for this hop only (RFC 9110
    // §7.6.1), as in the other direction.
    let named = named_in_connection(
        upstream
            .0
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
            .map(|(_, value)| value.as_slice()),
    );
    let mut headers = HeaderMap::with_capacity(upstream.0.len());
    for (name, value) in &upstream.0 {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        if is_hop_by_hop(&name, &named) {
            continue;
        }
        headers.append(name, value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_headers_follow_the_names_then_the_rest() {
        let received = map(&[
            ("host", "x"),
            ("x-a", "1"),
            ("x-a", "2"),
            ("x-vobiz-signature-v3", "s"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        // As sent: the repeat interleaved, a hop-by-hop name the relay dropped, a bad name.
        let names: Vec<String> = [
            "Host",
            "X-A",
            "X-Vobiz-Signature-V3",
            "Connection",
            "X-A",
            "bad name",
        ]
        .map(String::from)
        .to_vec();
        let headers = headers_named(&received, &names);
        let got: Vec<(&str, &[u8])> = headers
            .0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("Host", &b"x"[..]),
                ("X-A", b"1"),
                ("X-Vobiz-Signature-V3", b"s"),
                ("X-A", b"2"),
                ("x-forwarded-for", b"1.2.3.4"),
            ]
        );
        assert_eq!(headers_named(&received, &[]), headers_record(&received));
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let incoming = map(&[
            ("host", "example.com"),
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("x-vobiz-signature-v3", "abc="),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        let out = upstream_headers(incoming, Some("example.com"), None, None, None);
        assert!(out.get("connection").is_none());
        assert!(out.get("x-secret-hop").is_none());
        assert!(out.get("transfer-encoding").is_none());
        assert_eq!(out["x-vobiz-signature-v3"], "abc=");
        assert_eq!(out["host"], "example.com");
    }

    #[test]
    fn order_and_repeated_values_are_kept() {
        let incoming = map(&[("x-b", "1"), ("x-a", "2"), ("x-b", "3")]);
        let out = upstream_headers(incoming, None, None, None, None);
        let names: Vec<_> = out
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(names[..3], [("x-b", "1"), ("x-b", "3"), ("x-a", "2")]);
    }

    #[test]
    fn forwarded_headers_are_added_and_extended() {
        let incoming = map(&[
            ("host", "hooks.example.com"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let out = upstream_headers(incoming, Some("hooks.example.com"), Some(ip), None, None);
        assert_eq!(out["x-forwarded-for"], "10.0.0.1, 203.0.113.9");
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out["x-forwarded-host"], "hooks.example.com");
        assert_eq!(out["host"], "hooks.example.com");
    }

    #[test]
    fn the_public_origin_replaces_a_proxys_forwarded_host_and_proto_and_else_they_stay() {
        let incoming = || {
            map(&[
                ("host", "localhost:8443"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "proxy.example.net"),
            ])
        };
        // `--public-url https://hooks.example.com`: what Vobiz signed, whatever came before.
        let public = PublicOrigin::of("https://hooks.example.com/vobiz/answer?x=1");
        let out = upstream_headers(incoming(), Some("localhost:8443"), None, public, None);
        assert_eq!(out["x-forwarded-host"], "hooks.example.com");
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out.get_all("x-forwarded-host").iter().count(), 1);
        assert_eq!(out["host"], "localhost:8443", "Host itself is kept");
        // Without it, a proxy in front knows better than this tool's own socket.
        let out = upstream_headers(incoming(), Some("localhost:8443"), None, None, None);
        assert_eq!(out["x-forwarded-host"], "proxy.example.net");
        assert_eq!(out["x-forwarded-proto"], "http");
    }

    #[test]
    fn a_public_origin_is_the_scheme_and_authority_of_a_url() {
        let origin = |url| PublicOrigin::of(url).map(|o| (o.scheme, o.authority));
        assert_eq!(
            origin("https://hooks.example.com:8443/a?b#c"),
            Some(("https", "hooks.example.com:8443"))
        );
        assert_eq!(origin("https://h.example"), Some(("https", "h.example")));
        assert_eq!(
            origin("https://u:p@h.example/x"),
            Some(("https", "h.example"))
        );
        assert_eq!(
            origin("https://[::1]:8443?q"),
            Some(("https", "[::1]:8443"))
        );
        assert_eq!(origin("/relative"), None);
        assert_eq!(origin("https:///x"), None);
    }

    #[test]
    fn host_is_rewritten_on_request_and_filled_in_for_http2() {
        let incoming = map(&[("host", "hooks.example.com")]);
        let out = upstream_headers(
            incoming,
            Some("hooks.example.com"),
            None,
            None,
            Some("localhost:3000"),
        );
        assert_eq!(out["host"], "localhost:3000");
        assert_eq!(out["x-forwarded-host"], "hooks.example.com");
        // HTTP/2 requests carry no Host header: the authority becomes one.
        let out = upstream_headers(
            HeaderMap::new(),
            Some("h2.example.com:8443"),
            None,
            None,
            None,
        );
        assert_eq!(out["host"], "h2.example.com:8443");
    }

    #[test]
    fn extending_in_place_gives_what_rebuilding_gives() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let cases = [
            map(&[
                ("host", "hooks.example.com"),
                ("x-vobiz-signature-v3", "abc="),
                ("x-b", "1"),
                ("x-a", "2"),
                ("x-b", "3"),
            ]),
            map(&[("content-type", "application/x-www-form-urlencoded")]),
            HeaderMap::new(),
        ];
        let pairs = |map: &HeaderMap| {
            map.iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect::<Vec<_>>()
        };
        let public = PublicOrigin::of("https://public.example.com/cb");
        for incoming in cases {
            for (host, client) in [(Some("hooks.example.com:8443"), Some(ip)), (None, None)] {
                for public in [None, public] {
                    let rebuilt = rebuilt_upstream_headers(&incoming, host, client, public, None);
                    let extended = upstream_headers(incoming.clone(), host, client, public, None);
                    assert_eq!(pairs(&extended), pairs(&rebuilt));
                }
            }
        }
    }

    #[test]
    fn downstream_drops_hop_by_hop() {
        let upstream = Headers(vec![
            ("content-type".into(), b"text/xml".to_vec()),
            ("connection".into(), b"close".to_vec()),
            ("transfer-encoding".into(), b"chunked".to_vec()),
        ]);
        let out = downstream_headers(&upstream);
        assert_eq!(out.len(), 1);
        assert_eq!(out["content-type"], "text/xml");
    }

    #[test]
    fn downstream_drops_what_the_local_servers_connection_header_names() {
        let upstream = Headers(vec![
            ("Connection".into(), b"X-Secret, keep-alive".to_vec()),
            ("X-Secret".into(), b"s".to_vec()),
            ("x-kept".into(), b"k".to_vec()),
        ]);
        let out = downstream_headers(&upstream);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out["x-kept"], "k");
    }
}
