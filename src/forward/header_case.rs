//! Header names written in the case they were sent or recorded in (`X-Vobiz-Signature-V3`):
//! by replays, and by the laptop for callbacks the relay carried (HTTP/2 between them has
//! only lower-case names; the relay says how the sender spelled them).
//!
//! hyper's client writes a request's header names in the case its extensions carry, and
//! only hyper's own HTTP/1 parser makes that record (its type is private). So the names are
//! put through that parser once, in memory, and the extensions it produces go with the
//! request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::exchange::Headers;

/// The extensions under which hyper's client writes `headers`' names as they are spelled;
/// empty (hyper's lower case) if the names cannot be read that way.
pub async fn extensions_for(headers: &Headers) -> hyper::http::Extensions {
    let synthetic = synthetic_head(headers);
    let parsed = tokio::time::timeout(Duration::from_secs(1), parse(synthetic)).await;
    parsed.ok().flatten().unwrap_or_default()
}

/// The same for a list of names alone (as spelled, in order, repeats included).
pub async fn extensions_for_names(names: &[String]) -> hyper::http::Extensions {
    let headers = Headers(
        names
            .iter()
            .map(|name| (name.clone(), b"x".to_vec()))
            .collect(),
    );
    extensions_for(&headers).await
}

/// How many lists of names [`CaseCache`] keeps before it starts afresh, and the longest
/// one it keeps.
const CACHED_LISTS: usize = 256;
const CACHED_LIST_BYTES: usize = 4 * 1024;

/// The extensions of the lists of names met lately. A sender's callbacks carry the same
/// headers each time, so hyper's parser runs once per list rather than once per callback.
#[derive(Debug, Default)]
pub struct CaseCache(Mutex<HashMap<String, hyper::http::Extensions>>);

impl CaseCache {
    pub async fn extensions_for(&self, names: &[String]) -> hyper::http::Extensions {
        let key = names.join(",");
        if let Some(known) = self.lock().get(&key) {
            return known.clone();
        }
        let made = extensions_for_names(names).await;
        if key.len() > CACHED_LIST_BYTES {
            return made; // kept small: the cache holds at most CACHED_LISTS of these
        }
        let mut cache = self.lock();
        if cache.len() >= CACHED_LISTS {
            cache.clear();
        }
        cache.insert(key, made.clone());
        made
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, hyper::http::Extensions>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request carrying the names. Framing headers get values hyper accepts whatever the
/// recorded ones say (their names matter here; hyper writes its own values).
fn synthetic_head(headers: &Headers) -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for (name, value) in &headers.0 {
        let value: &[u8] = if name.eq_ignore_ascii_case("content-length") {
            b"0"
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            b"chunked"
        } else {
            value
        };
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

async fn parse(head: Vec<u8>) -> Option<hyper::http::Extensions> {
    let (mut ours, theirs) = tokio::io::duplex(head.len() + 4096);
    let (found, mut parsed) = tokio::sync::oneshot::channel();
    let found = Mutex::new(Some(found));
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        if let Some(found) = found.lock().ok().and_then(|mut slot| slot.take()) {
            let _ = found.send(request.extensions().clone());
        }
        async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .max_buf_size(head.len().max(8192) + 1024)
        .serve_connection(TokioIo::new(theirs), service);
    ours.write_all(&head).await.ok()?;
    ours.shutdown().await.ok()?;
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        extensions = &mut parsed => extensions.ok(),
        // The connection ended without a request: the names did not parse.
        _ = &mut connection => parsed.try_recv().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hyper_writes_the_recorded_case_with_these_extensions() {
        let headers = Headers(vec![
            ("Host".into(), b"localhost".to_vec()),
            ("X-Vobiz-Signature-V3".into(), b"abc=".to_vec()),
            ("x-custom-CASE".into(), b"1".to_vec()),
            ("Content-Length".into(), b"3".to_vec()),
        ]);
        let extensions = extensions_for(&headers).await;

        // A client request with those extensions, written into a buffer.
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(ours))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = Request::post("/cb")
            .header("host", "localhost")
            .header("x-vobiz-signature-v3", "abc=")
            .header("x-custom-case", "1")
            .body(http_body_util::Full::new(Bytes::from_static(b"a=1")))
            .unwrap();
        *request.extensions_mut() = extensions;
        tokio::spawn(async move { sender.send_request(request).await });
        let mut written = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), async {
            use tokio::io::AsyncReadExt;
            theirs.read(&mut written).await.unwrap()
        })
        .await
        .unwrap();
        let written = String::from_utf8_lossy(&written[..n]);
        assert!(written.contains("\r\nHost: localhost\r\n"), "{written}");
        assert!(
            written.contains("\r\nX-Vobiz-Signature-V3: abc=\r\n"),
            "{written}"
        );
        assert!(written.contains("\r\nx-custom-CASE: 1\r\n"), "{written}");
        assert!(written.contains("\r\nContent-Length: 3\r\n"), "{written}");
    }

    #[tokio::test]
    async fn the_cache_answers_a_list_it_has_seen_and_stays_bounded() {
        let cache = CaseCache::default();
        let names = vec!["Host".to_string(), "X-Vobiz-Signature-V3".to_string()];
        assert!(!cache.extensions_for(&names).await.is_empty());
        cache.extensions_for(&names).await;
        assert_eq!(cache.lock().len(), 1);
        for i in 0..CACHED_LISTS + 10 {
            cache.extensions_for(&[format!("X-{i}")]).await;
        }
        assert!(cache.lock().len() <= CACHED_LISTS);
        let long = vec!["X".repeat(CACHED_LIST_BYTES + 1)];
        assert!(!cache.extensions_for(&long).await.is_empty());
        assert!(!cache.lock().contains_key(&long[0]), "too long to keep");
    }

    #[tokio::test]
    async fn names_hyper_cannot_read_leave_the_case_to_hyper() {
        let headers = Headers(vec![("bad name".into(), b"1".to_vec())]);
        assert!(extensions_for(&headers).await.is_empty());
    }
}
