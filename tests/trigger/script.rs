//! A scripted Vobiz-XML server for `trigger call` tests: answers each path from a table,
//! records every request (method, path, form fields, headers) for the test to inspect.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request the script server received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    pub path: String,
    /// The full URL as the client was asked to call it (`http://127.0.0.1:PORT/path`).
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub fields: Vec<(String, String)>,
    pub body: Bytes,
}

impl Hit {
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A route: the path's answer, or a required field (`Digits=1`) and a status to fail with.
#[derive(Clone)]
pub struct Route {
    pub body: &'static str,
    pub require: Option<(&'static str, &'static str)>,
    pub content_type: &'static str,
    /// Refuse (403) a callback whose signature does not verify with the test tokens, as an
    /// app should.
    pub signed_only: bool,
    /// How long the answer takes.
    pub delay: std::time::Duration,
}

pub struct Script {
    pub addr: SocketAddr,
    pub hits: mpsc::UnboundedReceiver<Hit>,
}

impl Script {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far (the call has ended when this is read).
    pub fn drain(&mut self) -> Vec<Hit> {
        let mut hits = Vec::new();
        while let Ok(hit) = self.hits.try_recv() {
            hits.push(hit);
        }
        hits
    }
}

/// Starts the server; unknown paths get 404.
pub async fn start(routes: &[(&'static str, Route)]) -> Script {
    let routes: Arc<HashMap<&'static str, Route>> = Arc::new(routes.iter().cloned().collect());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, hits) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tx, routes) = (tx.clone(), routes.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (tx, routes) = (tx.clone(), routes.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let query = parts.uri.query().unwrap_or("").as_bytes().to_vec();
                        let form = if parts.method == hyper::Method::GET {
                            &query[..]
                        } else {
                            &body[..]
                        };
                        let fields: Vec<(String, String)> =
                            serde_urlencoded::from_bytes(form).unwrap_or_default();
                        let path = parts.uri.path().to_string();
                        let hit = Hit {
                            method: parts.method.to_string(),
                            url: format!("http://{addr}{path}"),
                            path: path.clone(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(n, v)| {
                                    (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                                })
                                .collect(),
                            fields,
                            body,
                        };
                        let (status, text, content_type) = match routes.get(path.as_str()) {
                            Some(route) if route.signed_only && !signed(&hit) => {
                                (403, "signature does not verify", "text/plain")
                            }
                            Some(route) => match route.require {
                                Some((k, v)) if hit.field(k) != Some(v) => {
                                    (400, "missing input", "text/plain")
                                }
                                _ => (200, route.body, route.content_type),
                            },
                            None => (404, "not found", "text/plain"),
                        };
                        let delay = routes.get(path.as_str()).map(|route| route.delay);
                        tokio::time::sleep(delay.unwrap_or_default()).await;
                        let _ = tx.send(hit);
                        let mut response =
                            Response::new(Full::new(Bytes::from_static(text.as_bytes())));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        response
                            .headers_mut()
                            .insert("content-type", content_type.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Script { addr, hits }
}

/// A route answering `body`.
pub fn route(body: &'static str) -> Route {
    Route {
        body,
        require: None,
        content_type: "application/xml",
        signed_only: false,
        delay: std::time::Duration::ZERO,
    }
}

/// Whether the hit's signature verifies, the way an app checks it: URL and nonce.
fn signed(hit: &Hit) -> bool {
    let request = vobiz_tunnel::signature::CallbackRequest {
        method: &hit.method,
        url: &hit.url,
        headers: &hit.headers,
        body: &hit.body,
        extra_ports: &[],
        other_urls: &[],
    };
    let verdict = vobiz_tunnel::signature::verify(&request, &super::keys());
    verdict.status == vobiz_tunnel::signature::VerdictStatus::Valid
}
