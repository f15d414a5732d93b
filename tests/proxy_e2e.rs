//! End to end through real sockets: a TLS client (as Vobiz) → the listener → a real upstream
//! on loopback, with the store checked afterwards.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;
use vobiz_tunnel::exchange::{Flag, Outcome};
use vobiz_tunnel::signature::{Scheme, VerdictStatus};

#[tokio::test]
async fn a_signed_callback_is_verified_recorded_and_forwarded_unchanged() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let url = harness.url("/vobiz/hangup");
    let signature_headers = vobiz_headers(&url, TOKEN, Some(MAIN_TOKEN));
    let request = form_post(&harness, "/vobiz/hangup", HANGUP_BODY, &signature_headers);

    let answer = harness.client().send(request).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "<Response><Speak>hello</Speak></Response>");
    assert_eq!(answer.headers["content-type"], "application/xml");

    let seen = upstream.next().await;
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/vobiz/hangup");
    assert_eq!(
        seen.body,
        Bytes::from(HANGUP_BODY),
        "body bytes arrive unchanged"
    );
    for (name, value) in &signature_headers {
        assert_eq!(
            seen.header(name),
            Some(value.as_str()),
            "{name} is forwarded unchanged"
        );
    }
    assert_eq!(
        seen.header("host"),
        Some(format!("localhost:{}", harness.port()).as_str())
    );
    assert_eq!(seen.header("user-agent"), Some("Vobiz"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(format!("localhost:{}", harness.port()).as_str())
    );
    // Order of the sender's headers is kept.
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    let position = |name: &str| {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .unwrap()
    };
    assert!(position("user-agent") < position("content-type"));
    assert!(position("content-type") < position("x-vobiz-signature-v2"));
    assert!(position("x-vobiz-signature-v2") < position("x-vobiz-signature-v3"));

    let exchange = harness.last_recorded().await;
    assert_eq!(
        exchange.verdict.status,
        VerdictStatus::Valid,
        "{:?}",
        exchange.verdict
    );
    assert_eq!(exchange.verdict.scheme, Some(Scheme::V3));
    assert_eq!(exchange.event.as_deref(), Some("Hangup"));
    assert_eq!(
        exchange.call_uuid.as_deref(),
        Some("7d1c2c5e-5b0a-4c59-9d1e-3f0e2b7a9c11")
    );
    assert_eq!(exchange.outcome, Outcome::Forwarded);
    assert_eq!(exchange.status(), Some(200));
    assert_eq!(exchange.request.body, HANGUP_BODY.as_bytes());
    assert_eq!(exchange.request.public_url, url);
    assert_eq!(exchange.request.tls.alpn.as_deref(), Some("http/1.1"));
    assert!(exchange
        .request
        .tls
        .version
        .as_deref()
        .unwrap_or("")
        .contains("1.3"));
    let timings = exchange.timings;
    assert!(timings.forwarded_us.unwrap() >= timings.received_us);
    assert!(timings.first_byte_us.unwrap() >= timings.forwarded_us.unwrap());
    assert!(timings.done_us.unwrap() >= timings.first_byte_us.unwrap());
    assert_eq!(
        exchange.response.unwrap().body,
        &b"<Response><Speak>hello</Speak></Response>"[..]
    );
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn an_invalid_signature_is_forwarded_and_explained_with_the_matching_variant() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    // Signed for the URL without the port: what a load balancer on 443 in front would do.
    let signed_for = "https://localhost/vobiz/answer";
    let request = form_post(
        &harness,
        "/vobiz/answer",
        "CallUUID=abc&Event=StartApp",
        &vobiz_headers(signed_for, TOKEN, None),
    );
    assert_eq!(harness.client().send(request).await.status, 200);
    upstream.next().await;
    let exchange = harness.last_recorded().await;
    let verdict = &exchange.verdict;
    assert_eq!(verdict.status, VerdictStatus::Invalid);
    let near = verdict
        .would_match
        .as_ref()
        .expect("a nearby variant matched");
    assert_eq!(near.url, signed_for);
    assert!(near.sentence.contains(signed_for), "{}", near.sentence);
    assert!(
        verdict.summary().contains(signed_for),
        "{}",
        verdict.summary()
    );
    // The exact string that was signed for each form tried is part of the verdict.
    let attempts: Vec<_> = verdict.checks.iter().flat_map(|c| &c.attempts).collect();
    assert!(attempts
        .iter()
        .any(|a| a.string_to_sign
            == format!("{}.12345678901234567890", harness.url("/vobiz/answer"))));
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn http_instead_of_https_is_named_in_the_explanation() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let signed_for = format!("http://localhost:{}/cb", harness.port());
    let request = form_post(
        &harness,
        "/cb",
        "Event=Hangup",
        &vobiz_headers(&signed_for, TOKEN, None),
    );
    harness.client().send(request).await;
    upstream.next().await;
    let exchange = harness.last_recorded().await;
    let near = exchange.verdict.would_match.expect("http variant found");
    assert_eq!(near.url, signed_for);
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn unsigned_and_main_account_only_callbacks_get_their_verdicts() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;

    let unsigned = form_post(&harness, "/cb", "Event=Ring", &[]);
    assert_eq!(harness.client().send(unsigned).await.status, 200);
    upstream.next().await;
    let exchange = harness.last_recorded().await;
    assert_eq!(exchange.verdict.status, VerdictStatus::Unsigned);
    assert!(
        exchange
            .verdict
            .explanation
            .iter()
            .any(|s| s.contains("credentials")),
        "unsigned is explained: {:?}",
        exchange.verdict.explanation
    );

    // Only the -MA- headers, keyed with the parent account's token.
    let url = harness.url("/cb");
    let ma_only: Vec<_> = vobiz_headers(&url, "not-the-sub-account-token", Some(MAIN_TOKEN))
        .into_iter()
        .filter(|(n, _)| n.contains("-MA-") || n.ends_with("Nonce"))
        .collect();
    let request = form_post(&harness, "/cb", "Event=Ring", &ma_only);
    harness.client().send(request).await;
    upstream.next().await;
    let exchange = harness.last_recorded().await;
    assert_eq!(
        exchange.verdict.status,
        VerdictStatus::Valid,
        "{:?}",
        exchange.verdict
    );
    assert!(matches!(
        exchange.verdict.scheme,
        Some(Scheme::MaV3 | Scheme::MaV2)
    ));
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn without_tokens_the_verdict_is_unchecked_and_says_how_to_configure() {
    let mut upstream = upstream(Reply::default()).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(&dir, &upstream.url());
    config.keys = Default::default();
    let harness = Harness::start(config, dir).await;
    let request = form_post(
        &harness,
        "/cb",
        "Event=Ring",
        &vobiz_headers(&harness.url("/cb"), TOKEN, None),
    );
    harness.client().send(request).await;
    upstream.next().await;
    let exchange = harness.last_recorded().await;
    assert_eq!(exchange.verdict.status, VerdictStatus::Unchecked);
    assert!(exchange
        .verdict
        .explanation
        .iter()
        .any(|s| s.contains("VOBIZ_AUTH_TOKEN")));
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn upstream_down_gives_502_and_is_recorded() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let harness = Harness::with_forward(&format!("http://127.0.0.1:{port}")).await;
    let answer = harness
        .client()
        .send(form_post(&harness, "/cb", "Event=Hangup", &[]))
        .await;
    assert_eq!(answer.status, 502);
    assert!(
        answer
            .body
            .starts_with("vobiz-tunnel: cannot reach your local server"),
        "{}",
        answer.body
    );
    let exchange = harness.last_recorded().await;
    assert_eq!(exchange.outcome, Outcome::UpstreamError);
    assert!(exchange.has_flag(Flag::UpstreamError));
    assert_eq!(exchange.status(), Some(502));
    assert!(exchange.error.unwrap().contains(&port.to_string()));
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_gives_504_and_is_recorded() {
    let mut upstream = upstream(Reply {
        delay: Duration::from_secs(3),
        ..Reply::default()
    })
    .await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(&dir, &upstream.url());
    config.limits.forward_timeout = Duration::from_millis(300);
    let harness = Harness::start(config, dir).await;
    let answer = harness
        .client()
        .send(form_post(&harness, "/cb", "Event=Hangup", &[]))
        .await;
    assert_eq!(answer.status, 504);
    assert!(
        answer.body.contains("did not answer within 0.3 s"),
        "{}",
        answer.body
    );
    upstream.next().await;
    let exchange = harness.last_recorded().await;
    assert_eq!(exchange.outcome, Outcome::UpstreamTimeout);
    assert_eq!(exchange.status(), Some(504));
    harness.tunnel.shutdown().await;
}

/// A sender that stops waiting (Vobiz's own timeout, `curl --max-time`) never gets the
/// answer: the record says so instead of claiming a delivered 200. Over HTTP/1 it closes the
/// connection; over HTTP/2 it resets the stream.
#[tokio::test]
async fn a_sender_that_gives_up_is_recorded_as_gone_not_as_answered() {
    use tokio::io::AsyncWriteExt;
    let mut upstream = upstream(Reply {
        delay: Duration::from_millis(900),
        ..Reply::default()
    })
    .await;
    let harness = Harness::with_forward(&upstream.url()).await;

    let body = "CallUUID=gone-1&Event=Hangup";
    let mut stream = harness.client().tls_stream(b"http/1.1").await;
    let request = format!(
        "POST /cb HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        harness.port(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    upstream.next().await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let exchange = harness.last_recorded().await;
    assert!(exchange.has_flag(Flag::SenderGone), "{exchange:?}");
    assert_eq!(
        exchange.outcome,
        Outcome::Forwarded,
        "the local server did answer"
    );
    assert_eq!(exchange.status(), Some(200));
    let error = exchange.error.unwrap_or_default();
    assert!(
        error.contains("the sender gave up") && error.contains("never got this 200"),
        "{error}"
    );

    // HTTP/2: the stream is reset while the local server thinks.
    let stream = harness.client().tls_stream(b"h2").await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut request = form_post(&harness, "/cb", "CallUUID=gone-2&Event=Hangup", &[]);
    request.headers_mut().remove("host");
    *request.uri_mut() = harness.url("/cb").parse().unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(300), sender.send_request(request));
    assert!(waiting.await.is_err(), "gave up before the answer");
    upstream.next().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let exchange = harness.last_recorded().await;
    assert!(exchange.request.body.ends_with(b"gone-2&Event=Hangup"));
    assert!(exchange.has_flag(Flag::SenderGone), "{exchange:?}");

    // A sender that waits is not flagged.
    let answer = harness
        .client()
        .send(form_post(
            &harness,
            "/cb",
            "CallUUID=stays&Event=Hangup",
            &[],
        ))
        .await;
    assert_eq!(answer.status, 200);
    upstream.next().await;
    let exchange = harness.last_recorded().await;
    assert!(!exchange.has_flag(Flag::SenderGone), "{exchange:?}");
    assert_eq!(exchange.error, None);
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn answers_slower_than_three_seconds_are_flagged() {
    let mut upstream = upstream(Reply {
        delay: Duration::from_millis(3100),
        ..Reply::default()
    })
    .await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let answer = harness
        .client()
        .send(form_post(&harness, "/cb", "Event=Hangup", &[]))
        .await;
    assert_eq!(answer.status, 200);
    upstream.next().await;
    let exchange = harness.last_recorded().await;
    assert!(exchange.has_flag(Flag::Slow), "{:?}", exchange.flags);
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_is_recorded_without_reaching_the_upstream() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let big = "a".repeat(200 * 1024);
    let answer = harness
        .client()
        .send(form_post(&harness, "/cb", &big, &[]))
        .await;
    assert_eq!(answer.status, 413);
    assert!(answer.body.contains("--max-body"), "{}", answer.body);
    let exchange = harness.last_recorded().await;
    assert_eq!(exchange.outcome, Outcome::TooLarge);
    assert!(exchange.has_flag(Flag::TooLarge));
    assert!(exchange.request.body_truncated);
    upstream.assert_nothing(Duration::from_millis(200)).await;

    // A chunked body without a declared length is cut at the limit too.
    let chunks = futures_stream_body(vec![Bytes::from(vec![b'x'; 40 * 1024]); 3]);
    let request = Request::post("/cb")
        .header("host", format!("localhost:{}", harness.port()))
        .body(chunks)
        .unwrap();
    let answer = within(send_streaming(&harness, request)).await;
    assert_eq!(answer, 413);
    let exchange = harness.last_recorded().await;
    assert_eq!(exchange.outcome, Outcome::TooLarge);
    assert_eq!(
        exchange.request.body.len(),
        64 * 1024,
        "the prefix up to the limit is kept"
    );
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn over_http2_an_oversized_body_is_answered_413_and_the_stream_ends_cleanly() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let stream = harness.client().tls_stream(b"h2").await;
    let url = format!("https://localhost:{}/cb", harness.port());
    let upload = upload_refused_midway(stream, &url, 200 * 1024).await;
    assert_eq!(upload.status, 413, "{upload:?}");
    assert!(upload.body.contains("--max-body"), "{upload:?}");
    assert_eq!(upload.reset, None, "the sender sees a reset, not the 413");
    let exchange = harness.last_recorded().await;
    assert_eq!(exchange.outcome, Outcome::TooLarge);
    upstream.assert_nothing(Duration::from_millis(100)).await;
    harness.tunnel.shutdown().await;
}

/// A body sent in chunks, without a declared length.
fn futures_stream_body(
    chunks: Vec<Bytes>,
) -> http_body_util::StreamBody<
    impl futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>,
> {
    let frames = chunks.into_iter().map(|c| Ok(hyper::body::Frame::data(c)));
    http_body_util::StreamBody::new(futures_util::stream::iter(frames))
}

async fn send_streaming<B>(harness: &Harness, request: Request<B>) -> u16
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::TokioIo;
    let ca = harness.ca_path();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(harness.tunnel.local_addr)
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn plain_http_and_garbage_do_not_disturb_the_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let addr = harness.tunnel.local_addr;

    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    within(plain.read_to_string(&mut reply)).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("speaks HTTPS"), "{reply}");

    let mut garbage = tokio::net::TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = within(garbage.read_to_end(&mut sink)).await;

    let answer = harness
        .client()
        .send(form_post(&harness, "/still-alive", "Event=Ring", &[]))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(upstream.next().await.uri, "/still-alive");
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn http2_callbacks_are_forwarded_with_a_host_header() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let url = harness.url("/vobiz/answer");
    let mut builder =
        Request::post(url.clone()).header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in vobiz_headers(&url, TOKEN, None) {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(Bytes::from_static(b"Event=StartApp")))
        .unwrap();
    let answer = harness.client().send_h2(request).await;
    assert_eq!(answer.status, 200);
    let seen = upstream.next().await;
    assert_eq!(
        seen.header("host"),
        Some(format!("localhost:{}", harness.port()).as_str())
    );
    assert_eq!(seen.body, Bytes::from_static(b"Event=StartApp"));
    let exchange = harness.last_recorded().await;
    assert_eq!(exchange.request.tls.alpn.as_deref(), Some("h2"));
    assert_eq!(
        exchange.verdict.status,
        VerdictStatus::Valid,
        "{:?}",
        exchange.verdict
    );
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn reject_invalid_answers_403_and_never_forwards() {
    let mut upstream = upstream(Reply::default()).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(&dir, &upstream.url());
    config.reject_invalid = true;
    let harness = Harness::start(config, dir).await;

    let unsigned = harness
        .client()
        .send(form_post(&harness, "/cb", "Event=Ring", &[]))
        .await;
    assert_eq!(unsigned.status, 403);
    assert!(unsigned.body.contains("unsigned"), "{}", unsigned.body);
    let forged = vobiz_headers(&harness.url("/cb"), "WRONGtoken", None);
    let invalid = harness
        .client()
        .send(form_post(&harness, "/cb", "Event=Ring", &forged))
        .await;
    assert_eq!(invalid.status, 403);
    assert!(invalid.body.contains("invalid"), "{}", invalid.body);
    // Signed for the address without its port: the answer says so, and what differs.
    let near_miss = vobiz_headers("https://localhost/cb", TOKEN, None);
    let port_removed = harness
        .client()
        .send(form_post(&harness, "/cb", "Event=Ring", &near_miss))
        .await;
    assert_eq!(port_removed.status, 403);
    let expected = format!(
        "would be valid if Vobiz had called https://localhost/cb (port {} removed)",
        harness.port()
    );
    assert!(
        port_removed.body.contains(&expected),
        "{}",
        port_removed.body
    );
    upstream.assert_nothing(Duration::from_millis(200)).await;
    let exchange = harness.last_recorded().await;
    assert_eq!(exchange.outcome, Outcome::Rejected);

    let good = vobiz_headers(&harness.url("/cb"), TOKEN, None);
    let valid = harness
        .client()
        .send(form_post(&harness, "/cb", "Event=Ring", &good))
        .await;
    assert_eq!(valid.status, 200);
    upstream.next().await;
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn a_second_run_on_the_same_store_sees_the_first_and_flags_a_reused_nonce() {
    let mut upstream = upstream(Reply::default()).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let first = Harness::start(config(&dir, &upstream.url()), dir.clone()).await;
    let url = first.url("/cb");
    let headers = vobiz_headers(&url, TOKEN, None);
    first
        .client()
        .send(form_post(&first, "/cb", "Event=Hangup", &headers))
        .await;
    upstream.next().await;
    let original = first.last_recorded().await;
    let original_id = original.id.unwrap();
    assert!(!original.has_flag(Flag::NonceReused));
    first.tunnel.shutdown().await;

    // Same store; the port changes, so sign the replay for the new URL with the same nonce.
    let second = Harness::start(config(&dir, &upstream.url()), dir.clone()).await;
    assert_eq!(
        second.reader().count().unwrap(),
        1,
        "the first run's exchange is there"
    );
    assert!(second.reader().get(original_id).unwrap().is_some());
    first_run_replayed(&second, &mut upstream, &headers, original_id).await;
    // With only its V2 header, which the store does not index, and another body: known from
    // the latest callbacks' keys, read back when the run started.
    let v2_only: Vec<_> = headers
        .iter()
        .filter(|(name, _)| name.starts_with("X-Vobiz-Signature-V2"))
        .cloned()
        .collect();
    let request = form_post(&second, "/cb", "Event=Hangup&Injected=1", &v2_only);
    second.client().send(request).await;
    upstream.next().await;
    let replayed = second.last_recorded().await;
    assert!(replayed.has_flag(Flag::NonceReused), "{:?}", replayed.flags);
    assert_eq!(replayed.nonce_reused_of, Some(original_id));
    second.tunnel.shutdown().await;
}

/// With `--reject-replays`, a captured callback sent again (another body, or only one of
/// its signature headers) is refused 403 before the local server sees it, and recorded.
/// After a restart on the same store it is still refused: the store's index remembers.
#[tokio::test]
async fn with_reject_replays_a_callback_sent_again_never_reaches_the_local_server() {
    let mut upstream = upstream(Reply::default()).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let start = |dir: &Arc<tempfile::TempDir>, forward: &str| {
        let mut config = config(dir, forward);
        config.reject_replays = true;
        // The URL Vobiz signs stays the same across the restart (the port does not).
        config.public_url = Some(parse_base("https://hooks.example.com"));
        Harness::start(config, dir.clone())
    };
    let harness = start(&dir, &upstream.url()).await;
    let headers = vobiz_headers("https://hooks.example.com/cb", TOKEN, Some(MAIN_TOKEN));
    let send = |harness: &Harness, body: &str, headers: &[(String, String)]| {
        let request = form_post(harness, "/cb", body, headers);
        let client = harness.client();
        async move { client.send(request).await }
    };
    let first = send(&harness, "Event=Hangup", &headers).await;
    assert_eq!(first.status, 200, "{}", first.body);
    upstream.next().await;

    let injected = send(&harness, "Event=Hangup&Injected=1", &headers).await;
    assert_eq!(injected.status, 403, "{}", injected.body);
    assert!(injected.body.contains("a replay"), "{}", injected.body);
    let v3_only: Vec<_> = headers
        .iter()
        .filter(|(name, _)| name.starts_with("X-Vobiz-Signature-V3"))
        .cloned()
        .collect();
    let resent = send(&harness, "Event=Hangup", &v3_only).await;
    assert_eq!(resent.status, 403, "{}", resent.body);
    upstream.assert_nothing(Duration::from_millis(200)).await;
    let refused = harness.last_recorded().await;
    assert_eq!(refused.outcome, Outcome::Rejected, "{refused:?}");
    assert!(refused.has_flag(Flag::NonceReused), "{refused:?}");
    // A new callback (another URL, so another signature with the fixture's nonces) goes
    // through.
    let fresh = vobiz_headers("https://hooks.example.com/cb2", TOKEN, None);
    let request = form_post(&harness, "/cb2", "Event=Hangup", &fresh);
    assert_eq!(harness.client().send(request).await.status, 200);
    upstream.next().await;
    harness.tunnel.shutdown().await;

    let restarted = start(&dir, &upstream.url()).await;
    let guard = restarted.tunnel.proxy.replay_guard.as_ref().unwrap();
    // Once the store's keys are summed up in memory, the replay is still found (the latest
    // callbacks' keys are read back at the start; an older one's would be looked up in the
    // store, as the replaced-store test shows), and a new callback is let through without a
    // store lookup.
    within(async {
        while !guard.is_summarised() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let again = send(&restarted, "Event=Hangup", &headers).await;
    assert_eq!(again.status, 403, "{}", again.body);
    upstream.assert_nothing(Duration::from_millis(200)).await;
    let looked_up = guard.store_lookups();
    // Resent with only a header the store does not index (V2, or the -MA- pair), and another
    // body: the latest callbacks' keys were read back at the start, so it is still known, and
    // its record names the original.
    for kept in [
        ["X-Vobiz-Signature-V2", "X-Vobiz-Signature-V2-Nonce"],
        ["X-Vobiz-Signature-MA-V3", "X-Vobiz-Signature-V3-Nonce"],
    ] {
        let only: Vec<_> = headers
            .iter()
            .filter(|(name, _)| kept.contains(&name.as_str()))
            .cloned()
            .collect();
        assert_eq!(only.len(), 2, "{kept:?}: {only:?}");
        let resent = send(&restarted, "Event=Hangup&Injected=1", &only).await;
        assert_eq!(resent.status, 403, "{kept:?}: {}", resent.body);
        upstream.assert_nothing(Duration::from_millis(200)).await;
        let refused = restarted.last_recorded().await;
        assert_eq!(refused.nonce_reused_of, Some(1), "{kept:?}: {refused:?}");
    }
    let fresh = vobiz_headers("https://hooks.example.com/cb3", TOKEN, None);
    let request = form_post(&restarted, "/cb3", "Event=Hangup", &fresh);
    assert_eq!(restarted.client().send(request).await.status, 200);
    upstream.next().await;
    let judged = restarted.last_recorded().await;
    assert_eq!(judged.verdict.status, VerdictStatus::Valid, "{judged:?}");
    assert_eq!(
        guard.store_lookups(),
        looked_up,
        "a new callback cost a store lookup"
    );

    // A callback recorded but never let through (its body was over the limit; the V2
    // signature does not cover the body, so it verified) came before all the same.
    let big_body = format!("Event=Hangup&Pad={}", "x".repeat(64 * 1024));
    let headers_4 = vobiz_headers("https://hooks.example.com/cb4", TOKEN, None);
    let too_large = form_post(&restarted, "/cb4", &big_body, &headers_4);
    let too_large = restarted.client().send(too_large).await;
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    let recorded = restarted.last_recorded().await;
    assert_eq!(
        recorded.verdict.status,
        VerdictStatus::Valid,
        "{recorded:?}"
    );
    let resent = form_post(&restarted, "/cb4", "Event=Hangup", &headers_4);
    let resent = restarted.client().send(resent).await;
    assert_eq!(resent.status, 403, "{}", resent.body);
    upstream.assert_nothing(Duration::from_millis(200)).await;
    restarted.tunnel.shutdown().await;
}

/// Copies of one callback arriving at once: one goes through, and every copy refused is
/// flagged a replay in its record, even when the one let through is recorded after it (its
/// local server answers slowly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reject_replays_every_copy_refused_at_once_is_flagged() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = upstream(Reply {
        delay: Duration::from_millis(300),
        ..Reply::default()
    })
    .await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = config(&dir, &slow.url());
    settings.reject_replays = true;
    let harness = Harness::start(settings, dir).await;
    let headers = vobiz_headers(&harness.url("/cb"), TOKEN, None);
    // One more, received first but with its body late: the copy let through then came after
    // it, and the store alone would call this one the original.
    let mut early = harness.client().tls_stream(b"http/1.1").await;
    let body = "Event=Hangup&CallUUID=c1";
    let mut head = format!(
        "POST /cb HTTP/1.1\r\nHost: localhost:{}\r\nContent-Length: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n",
        harness.port(),
        body.len()
    );
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    early.write_all(head.as_bytes()).await.unwrap();
    early.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut copies = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let request = form_post(&harness, "/cb", body, &headers);
        let client = harness.client();
        copies.spawn(async move { client.send(request).await.status });
    }
    // Once one copy has reached the local server and is recorded as pending (with the three
    // refused), the early one's body comes: its record is written after the one let through.
    slow.next().await;
    within(async {
        while harness.reader().count().unwrap() < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    early.write_all(body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within(early.read_to_end(&mut answer)).await.ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let mut statuses = within(copies.join_all()).await;
    statuses.sort();
    assert_eq!(statuses, [200, 403, 403, 403]);
    for id in 1..=5 {
        let exchange = harness.recorded(id).await;
        if exchange.outcome == Outcome::Rejected {
            assert!(exchange.has_flag(Flag::NonceReused), "#{id}: {exchange:?}");
        }
        // The copy let through was received after the early one: it names it, and keeps the
        // flag through its own end.
        if exchange.nonce_reused_of.is_some() {
            assert!(exchange.has_flag(Flag::NonceReused), "#{id}: {exchange:?}");
        }
    }
    harness.tunnel.shutdown().await;
}

/// With `--reject-replays`, a store file replaced while the listener runs is judged by what
/// the new file holds: a callback recorded in it elsewhere is refused here, although this
/// listener never saw it and its summary of the old file did not hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reject_replays_a_replaced_store_is_judged_by_its_own_callbacks() {
    let mut upstream = upstream(Reply::default()).await;
    let start = |dir: &Arc<tempfile::TempDir>, reject_replays: bool| {
        let mut config = config(dir, &upstream.url());
        config.reject_replays = reject_replays;
        config.public_url = Some(parse_base("https://hooks.example.com"));
        Harness::start(config, dir.clone())
    };
    let guarded_dir = Arc::new(tempfile::tempdir().unwrap());
    let guarded = start(&guarded_dir, true).await;
    let guard = guarded.tunnel.proxy.replay_guard.as_ref().unwrap();
    within(async {
        while !guard.is_summarised() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // Elsewhere, another listener records a callback; its store is then moved over this one's.
    let other_dir = Arc::new(tempfile::tempdir().unwrap());
    let other = start(&other_dir, false).await;
    let headers = vobiz_headers("https://hooks.example.com/elsewhere", TOKEN, None);
    let request = form_post(&other, "/elsewhere", "Event=Hangup", &headers);
    assert_eq!(other.client().send(request).await.status, 200);
    upstream.next().await;
    let other_store = other.config.store.clone();
    other.tunnel.shutdown().await;
    let store = guarded.config.store.clone();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    let copy = store.with_extension("copy");
    std::fs::copy(&other_store, &copy).unwrap();
    std::fs::rename(&copy, &store).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let request = form_post(&guarded, "/elsewhere", "Event=Hangup", &headers);
    let answer = guarded.client().send(request).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("a replay"), "{}", answer.body);
    assert!(
        guard.store_lookups() >= 1,
        "found in the store, not in memory"
    );
    upstream.assert_nothing(Duration::from_millis(200)).await;
    guarded.tunnel.shutdown().await;
}

/// Vobiz sends V2, V3 and (for a sub-account) -MA- headers together, each with a nonce. A
/// captured callback resent with any one of them, and any body, repeats that header's nonce
/// and signature: it is flagged as reusing the original's, whichever header it kept (the
/// store indexes the deciding header's; the listener remembers the others lately).
#[tokio::test]
async fn a_callback_resent_with_only_one_of_its_signature_headers_reuses_a_nonce() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let url = harness.url("/cb");
    let captured = vobiz_headers(&url, TOKEN, Some(MAIN_TOKEN));
    harness
        .client()
        .send(form_post(
            &harness,
            "/cb",
            "Event=Hangup&CallUUID=c",
            &captured,
        ))
        .await;
    upstream.next().await;
    let original = harness.last_recorded().await.id.unwrap();
    let pair = |names: &[&str]| -> Vec<(String, String)> {
        captured
            .iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .cloned()
            .collect()
    };
    let kept_alone = [
        ["X-Vobiz-Signature-V2", "X-Vobiz-Signature-V2-Nonce"],
        ["X-Vobiz-Signature-V3", "X-Vobiz-Signature-V3-Nonce"],
        ["X-Vobiz-Signature-MA-V2", "X-Vobiz-Signature-V2-Nonce"],
        ["X-Vobiz-Signature-MA-V3", "X-Vobiz-Signature-V3-Nonce"],
    ];
    for names in kept_alone {
        let headers = pair(&names);
        assert_eq!(headers.len(), 2);
        let body = "Event=Hangup&CallUUID=forged";
        harness
            .client()
            .send(form_post(&harness, "/cb", body, &headers))
            .await;
        upstream.next().await;
        let resent = harness.last_recorded().await;
        assert_eq!(resent.verdict.status, VerdictStatus::Valid, "{names:?}");
        assert!(
            resent.has_flag(Flag::NonceReused),
            "{names:?}: {:?}",
            resent.flags
        );
        assert_eq!(resent.nonce_reused_of, Some(original), "{names:?}");
    }
    // Fresh nonces are not a replay.
    let fresh = vobiz_headers_fresh(&url, TOKEN, 7);
    harness
        .client()
        .send(form_post(
            &harness,
            "/cb",
            "Event=Hangup&CallUUID=d",
            &fresh,
        ))
        .await;
    upstream.next().await;
    let fresh = harness.last_recorded().await;
    assert_eq!(fresh.verdict.status, VerdictStatus::Valid);
    assert_eq!(fresh.nonce_reused_of, None);
    harness.tunnel.shutdown().await;
}

async fn first_run_replayed(
    harness: &Harness,
    upstream: &mut Upstream,
    headers: &[(String, String)],
    original_id: i64,
) {
    // The captured request, sent again byte for byte (same nonce, same signature).
    harness
        .client()
        .send(form_post(harness, "/cb", "Event=Hangup", headers))
        .await;
    upstream.next().await;
    let replayed = harness.last_recorded().await;
    assert_ne!(replayed.id, Some(original_id));
    assert!(replayed.has_flag(Flag::NonceReused), "{:?}", replayed.flags);
    assert_eq!(replayed.nonce_reused_of, Some(original_id));
}

#[tokio::test]
async fn a_path_prefix_in_forward_is_kept_and_the_query_too() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&format!("{}/api/", upstream.url())).await;
    harness
        .client()
        .send(form_post(
            &harness,
            "/cb?tenant=acme&b=2",
            "Event=Ring",
            &[],
        ))
        .await;
    assert_eq!(upstream.next().await.uri, "/api/cb?tenant=acme&b=2");
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn public_url_overrides_the_host_for_verification_and_forwarding() {
    let mut upstream = upstream(Reply::default()).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(&dir, &upstream.url());
    config.public_url = Some(parse_base("https://hooks.example.com"));
    let harness = Harness::start(config, dir).await;
    let mut headers = vobiz_headers("https://hooks.example.com/vobiz/hangup", TOKEN, None);
    // A proxy in front said something else; the developer's --public-url is what counts.
    headers.push(("X-Forwarded-Host".into(), "proxy.example.net".into()));
    headers.push(("X-Forwarded-Proto".into(), "http".into()));
    harness
        .client()
        .send(form_post(&harness, "/vobiz/hangup", HANGUP_BODY, &headers))
        .await;
    // The local server can rebuild the URL Vobiz signed from what it gets.
    let seen = upstream.next().await;
    assert_eq!(seen.header("x-forwarded-host"), Some("hooks.example.com"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        seen.header("host"),
        Some(format!("localhost:{}", harness.port()).as_str())
    );
    let exchange = harness.last_recorded().await;
    assert_eq!(
        exchange.request.public_url,
        "https://hooks.example.com/vobiz/hangup"
    );
    assert_eq!(
        exchange.verdict.status,
        VerdictStatus::Valid,
        "{:?}",
        exchange.verdict
    );
    harness.tunnel.shutdown().await;
}

/// Three things the signature alone cannot show: a `--public-url` that is not the address
/// Vobiz called, no `--public-url` behind a proxy that rewrote Host, and credentials in the
/// callback URL (sent as Basic auth). The explanation names the URL that verifies and what to
/// change, never the password.
#[tokio::test]
async fn a_wrong_public_url_a_proxys_address_and_url_credentials_are_explained() {
    // --public-url points at an old address; Vobiz called the one the request reached.
    let mut upstream = upstream(Reply::default()).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = config(&dir, &upstream.url());
    config.public_url = Some(parse_base("https://old.example.com"));
    let harness = Harness::start(config, dir).await;
    let reached = harness.url("/vobiz/hangup");
    let headers = vobiz_headers(&reached, TOKEN, None);
    let request = form_post(&harness, "/vobiz/hangup", HANGUP_BODY, &headers);
    harness.client().send(request).await;
    upstream.next().await;
    let verdict = harness.last_recorded().await.verdict;
    assert_eq!(verdict.status, VerdictStatus::Invalid);
    let near = verdict.would_match.as_ref().expect("explained");
    assert_eq!(near.url, reached);
    assert!(
        near.sentence
            .contains("--public-url https://old.example.com is not the address Vobiz called"),
        "{}",
        near.sentence
    );
    harness.tunnel.shutdown().await;

    // No --public-url, behind a proxy that says what Vobiz called.
    let mut upstream = common::upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let called = "https://hooks.example.com/vobiz/hangup";
    let mut headers = vobiz_headers(called, TOKEN, None);
    headers.push(("X-Forwarded-Host".into(), "hooks.example.com".into()));
    headers.push(("X-Forwarded-Proto".into(), "https".into()));
    let request = form_post(&harness, "/vobiz/hangup", HANGUP_BODY, &headers);
    harness.client().send(request).await;
    upstream.next().await;
    let verdict = harness.last_recorded().await.verdict;
    let near = verdict.would_match.as_ref().expect("explained");
    assert_eq!(near.url, called);
    assert!(
        near.sentence
            .ends_with("start the listener with --public-url https://hooks.example.com"),
        "{}",
        near.sentence
    );

    // The callback URL at Vobiz is https://vobiz:s3cret@host/...: signed with it, sent as
    // Basic auth.
    let reached = harness.url("/vobiz/hangup");
    let with_credentials = reached.replacen("https://", "https://vobiz:s3cret@", 1);
    let mut headers = vobiz_headers(&with_credentials, TOKEN, None);
    // base64("vobiz:s3cret")
    headers.push(("Authorization".into(), "Basic dm9iaXo6czNjcmV0".into()));
    let request = form_post(&harness, "/vobiz/hangup", HANGUP_BODY, &headers);
    harness.client().send(request).await;
    upstream.next().await;
    let verdict = harness.last_recorded().await.verdict;
    let near = verdict.would_match.as_ref().expect("explained");
    assert_eq!(
        near.url,
        reached.replacen("https://", "https://vobiz:****@", 1)
    );
    assert!(
        near.sentence.contains("user:password@")
            && near.sentence.contains("Authorization header")
            && near.sentence.contains("must put it back"),
        "says where the credentials went and what a check must do: {}",
        near.sentence
    );
    let json = serde_json::to_string(&verdict).unwrap();
    assert!(!json.contains("s3cret"), "{json}");
    harness.tunnel.shutdown().await;
}

#[tokio::test]
async fn concurrent_callbacks_are_all_recorded() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Arc::new(Harness::with_forward(&upstream.url()).await);
    let url = harness.url("/cb");
    let mut tasks = Vec::new();
    for seed in 0..40u64 {
        let harness = harness.clone();
        let headers = vobiz_headers_fresh(&url, TOKEN, seed);
        tasks.push(tokio::spawn(async move {
            let body = format!("Event=Hangup&CallUUID={seed}");
            harness
                .client()
                .send(form_post(&harness, "/cb", &body, &headers))
                .await
                .status
        }));
    }
    for task in tasks {
        assert_eq!(within(task).await.unwrap(), 200);
    }
    for _ in 0..40 {
        upstream.next().await;
    }
    harness.tunnel.store.flush().await;
    let reader = harness.reader();
    assert_eq!(reader.count().unwrap(), 40);
    let rows = reader.latest(100).unwrap();
    assert!(rows
        .iter()
        .all(|r| r.signature == VerdictStatus::Valid && r.status == Some(200)));
    assert!(rows.iter().all(|r| !r.flags.contains(&Flag::NonceReused)));
}

#[tokio::test]
async fn every_answered_callback_is_already_in_the_store_with_its_answer() {
    let origin = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&origin.url()).await;
    let url = harness.url("/cb");
    let reader = harness.reader();
    for seed in 0..20u64 {
        let headers = vobiz_headers_fresh(&url, TOKEN, seed);
        let body = format!("Event=Hangup&CallUUID=answered-{seed}");
        let answer = harness
            .client()
            .send(form_post(&harness, "/cb", &body, &headers))
            .await;
        assert_eq!(answer.status, 200);
        // No flush, no wait: the answer left only after the commit.
        let rows = reader.latest(1).unwrap();
        let row = rows.last().expect("the answered exchange is in the store");
        assert_eq!(row.status, Some(200), "{row:?}");
        assert_eq!(row.outcome, Outcome::Forwarded, "{row:?}");
    }
    assert_eq!(reader.count().unwrap(), 20);
}

#[tokio::test]
async fn a_callback_waiting_on_a_slow_server_is_recorded_as_pending_then_completed() {
    let mut upstream = upstream(Reply {
        delay: Duration::from_millis(1500),
        ..Reply::default()
    })
    .await;
    let harness = Arc::new(Harness::with_forward(&upstream.url()).await);
    let mut events = harness.tunnel.events.subscribe();
    let sending = {
        let harness = harness.clone();
        tokio::spawn(async move {
            let body = "Event=Hangup&CallUUID=slow-1";
            harness
                .client()
                .send(form_post(&harness, "/slow", body, &[]))
                .await
                .status
        })
    };
    upstream.next().await;
    // While the local server thinks, what was received is already durable.
    let reader = harness.reader();
    let pending = within(async {
        loop {
            if let Some(row) = reader.latest(1).unwrap().pop() {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(pending.outcome, Outcome::Pending, "{pending:?}");
    assert_eq!(pending.status, None);
    assert!(!sending.is_finished(), "the answer came before the check");

    // The inspector hears of it now, with its id, not only when it ends.
    use vobiz_tunnel::pipeline::ExchangeEvent;
    let shown = within(async {
        loop {
            match events.recv().await.unwrap() {
                ExchangeEvent::Pending(exchange) => return exchange,
                ExchangeEvent::Finished(_) => panic!("finished before it was shown"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(shown.id, pending.id);
    assert!(!sending.is_finished());

    assert_eq!(within(sending).await.unwrap(), 200);
    let finished = loop {
        if let ExchangeEvent::Finished(exchange) = within(events.recv()).await.unwrap() {
            break exchange;
        }
    };
    assert_eq!(finished.id, pending.id, "the same row, completed");
    let stored = reader.get(pending.id.unwrap()).unwrap().unwrap();
    assert_eq!(stored.outcome, Outcome::Forwarded);
    assert_eq!(stored.status(), Some(200));
    assert_eq!(reader.count().unwrap(), 1);
}

#[tokio::test]
async fn a_locked_store_does_not_stop_forwarding_and_is_reported() {
    let mut upstream = upstream(Reply::default()).await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let mut events = harness.tunnel.events.subscribe();
    let locker = rusqlite::Connection::open(&harness.config.store).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let answer = harness
        .client()
        .send(form_post(&harness, "/cb", "Event=Hangup", &[]))
        .await;
    assert_eq!(answer.status, 200, "forwarded although the store is locked");
    upstream.next().await;
    let reported = within(async {
        loop {
            match events.recv().await {
                Ok(vobiz_tunnel::pipeline::ExchangeEvent::StoreError(message)) => return message,
                Ok(_) => continue,
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await;
    assert!(reported.contains("could not record"), "{reported}");
    assert!(harness.tunnel.store.health().failed_writes() >= 1);

    locker.execute_batch("COMMIT").unwrap();
    let answer = harness
        .client()
        .send(form_post(&harness, "/after", "Event=Hangup", &[]))
        .await;
    assert_eq!(answer.status, 200);
    upstream.next().await;
    assert_eq!(harness.last_recorded().await.request.target, "/after");
    harness.tunnel.shutdown().await;
}
