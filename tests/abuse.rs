//! Issue 6's reliability suite, abuse part: slow clients, garbage, upstream faults,
//! `--reject-invalid`, and secrets never leaking. Every case asserts what survived.

mod common;

#[path = "abuse/faults.rs"]
mod faults;
#[path = "abuse/garbage.rs"]
mod garbage;
#[path = "abuse/secrets.rs"]
mod secrets;
#[path = "abuse/slow.rs"]
mod slow;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vobiz_tunnel::exchange::{Exchange, Outcome};

/// Timing-sensitive cases take this exclusively; the others share it.
pub static LOAD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connector trusting the harness's development CA.
pub fn connector(harness: &Harness, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    tls_connector(&harness.ca_path(), alpn)
}

/// Completes a TLS handshake over `tcp`.
pub async fn handshake(connector: &tokio_rustls::TlsConnector, tcp: TcpStream) -> Tls {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// A new HTTP/1.1 TLS connection to the harness.
pub async fn raw_tls(harness: &Harness) -> Tls {
    let tcp = TcpStream::connect(harness.tunnel.local_addr).await.unwrap();
    handshake(&connector(harness, b"http/1.1"), tcp).await
}

/// Reads until the peer closes (EOF or reset) within `bound`; returns what arrived, or
/// `None` if the connection was still open at the bound.
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    bound: Duration,
) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let result = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    result.ok().map(|_| received)
}

/// Writes raw bytes over a new TLS connection and waits for the close; the bytes received.
pub async fn raw_exchange(harness: &Harness, bytes: &[u8], bound: Duration) -> Option<Vec<u8>> {
    let mut tls = raw_tls(harness).await;
    // The server may close while we are still writing: that is an answer too.
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    read_until_closed(&mut tls, bound).await
}

/// A normal signed callback on a new connection: (status, body, elapsed).
pub async fn signed_callback(harness: &Harness, path: &str) -> (u16, String, Duration) {
    let url = harness.url(path);
    let headers = vobiz_headers(&url, TOKEN, Some(MAIN_TOKEN));
    let started = Instant::now();
    let answer = harness
        .client()
        .send(form_post(harness, path, HANGUP_BODY, &headers))
        .await;
    (answer.status, answer.body, started.elapsed())
}

/// Every recorded exchange whose path starts with `prefix`, once none of them is pending.
pub async fn recorded_under(harness: &Harness, prefix: &str) -> Vec<Exchange> {
    settled_under(harness, prefix, DEADLINE).await
}

/// Like [`recorded_under`], waiting for at least one: a refused request is recorded once its
/// connection has ended, which its sender may see first.
pub async fn recorded_once_closed(harness: &Harness, prefix: &str) -> Vec<Exchange> {
    within(async {
        loop {
            let recorded = recorded_under(harness, prefix).await;
            if !recorded.is_empty() {
                return recorded;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Like [`recorded_under`], but returns what is recorded after `bound` even if some are
/// still pending.
pub async fn settled_under(harness: &Harness, prefix: &str, bound: Duration) -> Vec<Exchange> {
    let mut last = Vec::new();
    let _ = tokio::time::timeout(bound, async {
        loop {
            harness.tunnel.store.flush().await;
            let reader = harness.reader();
            let all: Vec<Exchange> = reader
                .latest(100_000)
                .unwrap()
                .into_iter()
                .filter(|s| s.path.starts_with(prefix))
                .filter_map(|s| reader.get(s.id?).unwrap())
                .collect();
            let settled = all.iter().all(|e| e.outcome != Outcome::Pending);
            last = all;
            if settled {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    last
}

/// A harness with the given limits tweaked.
pub async fn harness_with(
    forward: &str,
    tweak: impl FnOnce(&mut vobiz_tunnel::config::ListenConfig),
) -> Harness {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(&dir, forward);
    tweak(&mut config);
    Harness::start(config, dir).await
}

/// Resident memory of this process, in KiB (Linux).
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
