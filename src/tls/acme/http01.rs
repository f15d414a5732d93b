//! The plain-HTTP listener of `--acme-http-listen`: answers ACME HTTP-01 validation requests
//! (`GET /.well-known/acme-challenge/<token>`) and redirects everything else to https with
//! 308, which keeps the method and body, so a callback URL mistakenly set to http:// still
//! arrives as a POST.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST, LOCATION};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};

use super::super::TlsError;
use super::challenge::Challenges;

const PREFIX: &str = "/.well-known/acme-challenge/";
/// Connections served at once; more are closed at once. Validation needs a handful.
const MAX_CONNECTIONS: usize = 256;
/// A connection gets this long in total: requests here are tiny.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(20);

/// Binds `addr` and serves until the returned sender is dropped.
/// Redirects name `https_port` unless it is 443 (or 0: not known).
pub async fn serve(
    addr: SocketAddr,
    challenges: Arc<Challenges>,
    https_port: u16,
) -> Result<oneshot::Sender<()>, TlsError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        TlsError::Acme(format!(
            "cannot listen for HTTP-01 on {addr} (--acme-http-listen): {e}"
        ))
    })?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                // Resolves (with an error) when the sender is dropped.
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors and the like: pause rather than spin.
                        tracing::warn!("HTTP-01 listener on {addr}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                continue;
            };
            let challenges = challenges.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let answer = answer(&request, &challenges, https_port);
                    async move { Ok::<_, Infallible>(answer) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                drop(permit);
            });
        }
    });
    Ok(stop)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The `Host` header without its port, if it is a plausible host name or address literal
/// (it goes into a `Location` header, so nothing else is let through).
fn redirect_host(host: &str) -> Option<String> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() => {
            // `[::1]:80` → `[::1]`; a bare `::1` has no brackets and is left whole below.
            if name.starts_with('[') || !name.contains(':') {
                name
            } else {
                host
            }
        }
        _ => host,
    };
    crate::config::plausible_host(host).then(|| host.to_ascii_lowercase())
}

/// Where a plain-HTTP request for `host` and `target` goes instead: the same on https, at the
/// relay's port. `None` when the host is not one to put in a header.
fn redirect_location(host: &str, https_port: u16, target: &str) -> Option<String> {
    let host = redirect_host(host)?;
    let port = match https_port {
        0 | 443 => String::new(),
        port => format!(":{port}"),
    };
    Some(format!("https://{host}{port}{target}"))
}

fn answer(
    request: &Request<Incoming>,
    challenges: &Challenges,
    https_port: u16,
) -> Response<Full<Bytes>> {
    if let Some(token) = request.uri().path().strip_prefix(PREFIX) {
        return match challenges.http(token) {
            Some(key_authorization) => text(StatusCode::OK, key_authorization),
            None => text(StatusCode::NOT_FOUND, "no such ACME challenge here\n"),
        };
    }
    let host = request
        .headers()
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().host());
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let Some(location) = host.and_then(|host| redirect_location(host, https_port, target)) else {
        return text(StatusCode::BAD_REQUEST, "missing or invalid Host header\n");
    };
    let mut response = text(StatusCode::PERMANENT_REDIRECT, "use https\n");
    match hyper::header::HeaderValue::try_from(location) {
        Ok(location) => {
            response.headers_mut().insert(LOCATION, location);
            response
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "invalid request target\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_the_target_and_name_a_port_other_than_443() {
        let at = |host, port| redirect_location(host, port, "/hook?a=1");
        assert_eq!(
            at("Hooks.Example.com:80", 443).as_deref(),
            Some("https://hooks.example.com/hook?a=1")
        );
        assert_eq!(
            at("hooks.example.com", 8443).as_deref(),
            Some("https://hooks.example.com:8443/hook?a=1")
        );
        assert_eq!(
            at("[::1]:80", 8443).as_deref(),
            Some("https://[::1]:8443/hook?a=1")
        );
        assert_eq!(
            at("hooks.example.com", 0).as_deref(),
            Some("https://hooks.example.com/hook?a=1")
        );
        assert_eq!(at("evil.example/\r\nX: y", 443), None);
        assert_eq!(at("", 443), None);
    }
}
