//! The "local server" the proxy forwards to: as fast as an HTTP/1.1 server on loopback gets,
//! so the benchmark measures the proxy rather than the app behind it. It reads each request
//! body (an app parses the callback before answering) and answers 200 with a small XML body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What a Vobiz app answers to a Hangup callback.
const ANSWER: &[u8] = b"<Response><Speak>hello</Speak></Response>";
/// A body that has not arrived by then never will; don't keep the task waiting for it.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running origin; dropping it does not stop it, [`Origin::stop`] does.
pub struct Origin {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Origin {
    /// Binds 127.0.0.1:0 (loopback only) and serves every connection with keep-alive.
    pub async fn start() -> std::io::Result<Origin> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    Err(_) => {
                        // Out of descriptors, usually: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(answer);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Origin { addr, accept })
    }

    /// Stops accepting; open connections end with the runtime.
    pub fn stop(self) {
        self.accept.abort();
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = tokio::time::timeout(BODY_TIMEOUT, request.into_body().collect()).await;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    Ok(response)
}
