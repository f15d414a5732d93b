//! Case 2: garbage at every layer. Each gets a clear error or a close, and the listener
//! still serves a normal callback afterwards.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use vobiz_tunnel::exchange::{Flag, Outcome};

use super::*;

const CLOSE_BOUND: Duration = Duration::from_secs(3);

/// A 4xx status line, or nothing at all (a close), and never a 2xx/5xx.
fn assert_refused(what: &str, received: Option<Vec<u8>>) -> String {
    let received = received.unwrap_or_else(|| panic!("{what}: still open after {CLOSE_BOUND:?}"));
    let text = String::from_utf8_lossy(&received).into_owned();
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 4"),
        "{what}: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_an_error_or_a_close_and_the_listener_survives() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |c| {
        c.limits.handshake_timeout = Duration::from_secs(1);
        c.limits.header_timeout = Duration::from_secs(1);
        c.limits.body_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = harness.tunnel.local_addr;

    // Random bytes to the TLS port (not starting like plain HTTP).
    let mut noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    noise[0] = 0x8f;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(&noise).await;
    assert!(
        read_until_closed(&mut tcp, CLOSE_BOUND).await.is_some(),
        "random bytes: the connection stayed open"
    );

    // A truncated ClientHello: the handshake timeout (1 s) closes it.
    let hello = client_hello(&harness);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&hello[..hello.len() / 2]).await.unwrap();
    let started = std::time::Instant::now();
    assert!(
        read_until_closed(&mut tcp, CLOSE_BOUND).await.is_some(),
        "truncated ClientHello: the connection stayed open"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Malformed request line and headers.
    for (what, bytes) in [
        ("request line", &b"GARBAGE\x01\x02 / HTTP/9.9\r\n\r\n"[..]),
        ("no version", &b"POST /abuse/x\r\n\r\n"[..]),
        (
            "header without colon",
            &b"POST /abuse/x HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n"[..],
        ),
        (
            "NUL in header value",
            &b"POST /abuse/x HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n"[..],
        ),
        (
            "two content-lengths",
            &b"POST /abuse/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\
               Content-Length: 2\r\n\r\nab"[..],
        ),
    ] {
        let text = assert_refused(what, raw_exchange(&harness, bytes, CLOSE_BOUND).await);
        assert!(!text.is_empty(), "{what}: closed without a 4xx");
        // The answer says what was wrong, not only a status line.
        assert!(
            text.contains("\r\n\r\nvobiz-tunnel: the request is not valid HTTP/1.1"),
            "{what}: {text}"
        );
    }

    // Bad chunked encoding: the headers reached the pipeline, the body did not.
    let bad_chunked = b"POST /abuse/bad-chunked HTTP/1.1\r\nHost: localhost\r\n\
        Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\nZZZ\r\nxyz\r\n0\r\n\r\n";
    let text = assert_refused(
        "bad chunked",
        raw_exchange(&harness, bad_chunked, CLOSE_BOUND).await,
    );
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("vobiz-tunnel: "), "{text}");

    // A header flood: thousands of headers, and one 1 MB header.
    let mut many = b"POST /abuse/many HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..5000 {
        many.extend_from_slice(format!("X-Flood-{i}: {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let text = assert_refused(
        "5000 headers",
        raw_exchange(&harness, &many, CLOSE_BOUND).await,
    );
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431") || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    let mut huge = b"POST /abuse/huge HTTP/1.1\r\nHost: localhost\r\nX-Huge: ".to_vec();
    huge.extend(std::iter::repeat_n(b'h', 1024 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    assert_refused(
        "1 MB header",
        raw_exchange(&harness, &huge, CLOSE_BOUND).await,
    );

    // Survived so far?
    let (status, body, _) = signed_callback(&harness, "/abuse/alive-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.next().await.uri, "/abuse/alive-1");

    // The exchanges that reached the pipeline are recorded with their outcome; so are the
    // malformed ones hyper refused, with what was received (their start, for the floods).
    let refused = recorded_under(&harness, "/abuse/x").await;
    assert_eq!(refused.len(), 4, "{refused:#?}");
    for exchange in &refused {
        assert_eq!(exchange.outcome, Outcome::ClientError);
        assert_eq!(exchange.status(), Some(400));
        assert!(exchange.request.body.starts_with(b"POST /abuse/x"));
        let error = exchange.error.as_deref().unwrap_or_default();
        assert!(error.starts_with("refused before forwarding: "), "{error}");
        // The recorded answer is the one the sender got.
        let answer = exchange.response.as_ref().unwrap();
        assert!(
            answer
                .body
                .starts_with(b"vobiz-tunnel: the request is not valid HTTP/1.1"),
            "{answer:?}"
        );
    }
    for flood in ["/abuse/many", "/abuse/huge"] {
        let recorded = recorded_under(&harness, flood).await;
        assert_eq!(recorded.len(), 1, "{flood}");
        assert!(
            recorded[0].request.body.len() <= 16 * 1024,
            "only the start is kept"
        );
        assert!(matches!(recorded[0].status(), Some(400 | 431)));
    }
    let chunked = recorded_under(&harness, "/abuse/bad-chunked").await;
    assert_eq!(chunked.len(), 1);
    assert_eq!(chunked[0].outcome, Outcome::ClientError);
    assert!(chunked[0].has_flag(Flag::ClientError));
    assert_eq!(chunked[0].request.body, &b"abcde"[..], "the prefix is kept");
    upstream.assert_nothing(Duration::from_millis(100)).await;
    harness.tunnel.shutdown().await;
}

/// A complete TLS ClientHello for `localhost`, as bytes on the wire.
fn client_hello(harness: &Harness) -> Vec<u8> {
    init_crypto();
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(harness.ca_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client = rustls::ClientConnection::new(
        Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    assert!(hello.len() > 100);
    hello
}

/// A tunnel request and a question about the server itself name no path on the local server:
/// refused with 501 (not implemented: no Allow to offer) and recorded, never rewritten into a request it would misread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_asterisk_requests_are_refused_not_rewritten() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |_| {}).await;
    for (what, bytes) in [
        (
            "CONNECT evil.example:443",
            &b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n"[..],
        ),
        (
            "OPTIONS *",
            &b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"[..],
        ),
    ] {
        let received = raw_exchange(&harness, bytes, CLOSE_BOUND).await;
        let text = String::from_utf8_lossy(&received.unwrap_or_default()).into_owned();
        assert!(text.starts_with("HTTP/1.1 501"), "{what}: {text}");
        assert!(text.contains("is not forwarded"), "{what}: {text}");
    }
    upstream.assert_nothing(Duration::from_millis(200)).await;
    harness.tunnel.store.flush().await;
    let rows = harness.reader().latest(10).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows
        .iter()
        .all(|row| row.outcome == Outcome::ClientError && row.status == Some(501)));
    harness.tunnel.shutdown().await;
}

/// HTTP/2 gets the limits HTTP/1 has (at most 100 headers), and an HTTP/1.1 request without
/// the Host it must have is refused: both answered and recorded, neither forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_floods_over_http2_and_a_missing_host_are_refused_and_recorded() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |_| {}).await;
    let tcp = TcpStream::connect(harness.tunnel.local_addr).await.unwrap();
    let tls = handshake(&connector(&harness, b"h2"), tcp).await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut request = form_post(&harness, "/abuse/h2-headers", "a=b", &[]);
    for i in 0..150 {
        let name = hyper::header::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap();
        request.headers_mut().insert(name, "v".parse().unwrap());
    }
    let answer = within(sender.send_request(request)).await.unwrap();
    assert_eq!(answer.status(), 431);

    let no_host =
        b"POST /abuse/no-host HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\na=b";
    let received = raw_exchange(&harness, no_host, CLOSE_BOUND).await;
    let text = String::from_utf8_lossy(&received.unwrap_or_default()).into_owned();
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("Host header"), "{text}");

    upstream.assert_nothing(Duration::from_millis(200)).await;
    let flood = recorded_under(&harness, "/abuse/h2-headers").await;
    assert_eq!((flood.len(), flood[0].status()), (1, Some(431)));
    assert_eq!(flood[0].outcome, Outcome::ClientError);
    let hostless = recorded_under(&harness, "/abuse/no-host").await;
    assert_eq!((hostless.len(), hostless[0].status()), (1, Some(400)));
    harness.tunnel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_gets_413_without_being_buffered_or_forwarded() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |c| {
        c.limits.max_body_bytes = 64 * 1024;
    })
    .await;
    let rss_before = rss_kib();
    let tls = raw_tls(&harness).await;
    let (mut read_half, mut write_half) = tokio::io::split(tls);
    let reader =
        tokio::spawn(
            async move { read_until_closed(&mut read_half, Duration::from_secs(10)).await },
        );
    // Up to 64 MB in 16 KiB chunks, no Content-Length; stop when the server stops reading.
    let chunk = vec![b'x'; 16 * 1024];
    let mut sent = 0usize;
    let head = b"POST /abuse/endless HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n";
    let total = 64 * 1024 * 1024;
    let writing = async {
        write_half.write_all(head).await?;
        while sent < total {
            write_half
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write_half.write_all(&chunk).await?;
            write_half.write_all(b"\r\n").await?;
            sent += chunk.len();
        }
        write_half.write_all(b"0\r\n\r\n").await
    };
    // The write side blocks or fails once the server stops reading; either is fine.
    let _ = tokio::time::timeout(Duration::from_secs(3), writing).await;
    let received = within(reader).await.unwrap();
    let text = String::from_utf8_lossy(received.as_deref().unwrap_or_default()).into_owned();
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    assert!(
        text.contains("vobiz-tunnel: ") && text.contains("--max-body"),
        "{text}"
    );
    assert!(
        sent < total,
        "the server read the whole {total} bytes before answering"
    );

    let recorded = recorded_under(&harness, "/abuse/endless").await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].outcome, Outcome::TooLarge);
    assert_eq!(recorded[0].request.body.len(), 64 * 1024, "the prefix only");
    assert!(recorded[0].request.body_truncated);
    upstream.assert_nothing(Duration::from_millis(200)).await;
    if let (Some(before), Some(after)) = (rss_before, rss_kib()) {
        assert!(
            after < before + 48 * 1024,
            "resident memory grew from {before} KiB to {after} KiB"
        );
    }
    let (status, _, _) = signed_callback(&harness, "/abuse/alive-2").await;
    assert_eq!(status, 200);
    harness.tunnel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_flood_with_resets_leaves_the_listener_serving() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |c| {
        c.limits.body_timeout = Duration::from_secs(2);
    })
    .await;
    let tcp = TcpStream::connect(harness.tunnel.local_addr).await.unwrap();
    let tls = handshake(&connector(&harness, b"h2"), tcp).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .max_concurrent_reset_streams(1024)
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);

    // 400 streams: each sends its headers and a first byte, then its body fails, which makes
    // the client reset the stream (RST_STREAM); the response futures are dropped too.
    let mut streams = Vec::new();
    for i in 0..400 {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"E"))),
            Err(std::io::Error::other("cancelled by the test")),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let request = hyper::Request::post(format!("/abuse/h2flood/{i}"))
            .header("host", format!("localhost:{}", harness.port()))
            .body(body)
            .unwrap();
        let mut sender = sender.clone();
        streams.push(tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), sender.send_request(request))
                .await;
        }));
    }
    for stream in streams {
        within(stream).await.unwrap();
    }
    drop(sender);
    // The connection ends (GOAWAY or close) or stays usable; it must not hang the test.
    let _ = tokio::time::timeout(Duration::from_secs(3), connection).await;

    // A normal callback, over HTTP/2 and HTTP/1.1.
    let url = harness.url("/abuse/alive-h2");
    let answer = harness
        .client()
        .send_h2(form_post(
            &harness,
            "/abuse/alive-h2",
            HANGUP_BODY,
            &vobiz_headers(&url, TOKEN, None),
        ))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(upstream.next().await.uri, "/abuse/alive-h2");
    let (status, _, _) = signed_callback(&harness, "/abuse/alive-h1").await;
    assert_eq!(status, 200);
    assert_eq!(upstream.next().await.uri, "/abuse/alive-h1");

    // Streams that reached the pipeline are recorded as client errors, never forwarded.
    let flood = settled_under(&harness, "/abuse/h2flood/", Duration::from_secs(3)).await;
    let pending = flood
        .iter()
        .filter(|e| e.outcome == Outcome::Pending)
        .count();
    assert_eq!(
        pending,
        0,
        "{pending} of {} recorded streams stayed pending forever",
        flood.len()
    );
    for exchange in &flood {
        assert_eq!(exchange.outcome, Outcome::ClientError, "{exchange:?}");
        assert!(exchange.request.body_truncated);
    }
    upstream.assert_nothing(Duration::from_millis(100)).await;
    harness.tunnel.shutdown().await;
}

/// An answer given before the body was read (413 on the declared length) reaches a sender
/// that goes on sending the body: the listener reads and drops the rest for a moment after
/// answering, instead of closing on unread bytes, which makes the kernel send a reset that
/// can destroy the answer before the sender reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_reaches_a_sender_still_sending_its_body() {
    use tokio::io::AsyncReadExt;
    let _shared = LOAD.read().await;
    let upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |c| c.limits.max_body_bytes = 64 * 1024).await;
    for round in 0..5 {
        let mut tls = raw_tls(&harness).await;
        let head = format!(
            "POST /abuse/early-{round} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4000000\r\n\r\n"
        );
        let _ = tls.write_all(head.as_bytes()).await;
        // The body keeps coming after the answer was sent.
        let chunk = vec![b'x'; 16 * 1024];
        for _ in 0..32 {
            if tls.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = tls.flush().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut answer = Vec::new();
        let _ = within(tls.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 413") && answer.contains("--max-body"),
            "round {round}: {answer:?}"
        );
    }
    harness.tunnel.shutdown().await;
}

/// The way curl uploads: it goes on writing its body after the answer came, and reads the
/// answer only once a write fails or the body is sent. A connection closed with the body's
/// rest unread is reset, and the write fails with "connection reset by peer" instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_writing_on_after_an_early_answer_is_not_reset() {
    use tokio::io::AsyncReadExt;
    let _shared = LOAD.read().await;
    let upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |c| c.limits.max_body_bytes = 64 * 1024).await;
    let mut tls = raw_tls(&harness).await;
    let head =
        "POST /abuse/writes-on HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4000000\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&[b'x'; 64 * 1024]).await.unwrap();
    tls.flush().await.unwrap();
    // The 413 is written and the connection let go meanwhile, with this body unread.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..16 {
        within(tls.write_all(&[b'y'; 16 * 1024]))
            .await
            .expect("writing on after the answer is not reset");
    }
    within(tls.flush()).await.unwrap();
    let mut answer = Vec::new();
    // The end may lack TLS's close_notify, but it is not a reset.
    if let Err(e) = within(tls.read_to_end(&mut answer)).await {
        assert_ne!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413") && answer.contains("--max-body"),
        "{answer:?}"
    );
    harness.tunnel.shutdown().await;
}

/// Plain HTTP with a body to the TLS port: the hint is read, not lost to a reset caused by
/// the request behind it, which nobody reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_request_with_a_body_reads_its_hint() {
    use tokio::io::AsyncReadExt;
    let _shared = LOAD.read().await;
    let upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |_| {}).await;
    let mut tcp = TcpStream::connect(harness.tunnel.local_addr).await.unwrap();
    let head = "POST /plain HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&[b'x'; 32 * 1024]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    within(tcp.write_all(&[b'y'; 64 * 1024]))
        .await
        .expect("writing on after the hint is not reset");
    let mut answer = Vec::new();
    within(tcp.read_to_end(&mut answer))
        .await
        .expect("the hint, then an orderly close");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("this port speaks HTTPS"),
        "{answer:?}"
    );
    harness.tunnel.shutdown().await;
}

/// Stopping does not wait out a plain-HTTP sender that got its hint and keeps its
/// connection open: the wait for the rest of its request ends with the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_ends_the_wait_for_a_plain_http_sender() {
    use tokio::io::AsyncReadExt;
    let _shared = LOAD.read().await;
    let upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |_| {}).await;
    let mut tcp = TcpStream::connect(harness.tunnel.local_addr).await.unwrap();
    let head = "POST /plain HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut hint = [0u8; 12];
    within(tcp.read_exact(&mut hint)).await.unwrap();
    assert_eq!(&hint, b"HTTP/1.1 400");
    // The sender stays, its body unsent: the listener waits for it (up to 2 s) unless told
    // to stop.
    let stopping = Instant::now();
    within(harness.tunnel.shutdown()).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "stopping waited {:?} for a sender that was answered",
        stopping.elapsed()
    );
    drop(tcp);
}

/// What a connection got for a good request with a malformed one pipelined behind it: the
/// good one's 200, then the explained 400 (`what` names the case in a failure).
fn assert_served_then_explained(received: &[u8], what: &str) {
    let text = String::from_utf8_lossy(received);
    assert!(text.starts_with("HTTP/1.1 200"), "{what}: {text}");
    let second = text
        .find("HTTP/1.1 400")
        .unwrap_or_else(|| panic!("{what}: no 400 after the 200: {text}"));
    assert!(
        text[second..].contains("\r\n\r\nvobiz-tunnel: the request is not valid HTTP/1.1"),
        "{what}: {text}"
    );
}

/// A malformed request pipelined behind a good one (both in one write) gets the same
/// explained 400 and record as one sent alone; the good one is served first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_pipelined_behind_a_good_one_is_explained_and_recorded() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |_| {}).await;
    let mut events = harness.tunnel.events.subscribe();
    // The good one's body declared by its length, or sent in chunks.
    for (framing, body) in [
        ("Content-Length: 3", &b"a=1"[..]),
        ("Transfer-Encoding: chunked", b"3\r\na=1\r\n0\r\n\r\n"),
    ] {
        let kind = framing.split(':').next().unwrap().to_ascii_lowercase();
        let good = format!(
            "POST /abuse/pipelined-good-{kind} HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n"
        );
        let bad = format!(
            "POST /abuse/pipelined-bad-{kind} HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n"
        );
        let both = [good.as_bytes(), body, bad.as_bytes()].concat();
        let received = raw_exchange(&harness, &both, CLOSE_BOUND)
            .await
            .expect("closed after the refusal");
        assert_served_then_explained(&received, framing);
        let forwarded = upstream.next().await;
        assert_eq!(forwarded.uri, format!("/abuse/pipelined-good-{kind}"));
        assert_eq!(&forwarded.body[..], b"a=1");
        let refused = recorded_once_closed(&harness, &format!("/abuse/pipelined-bad-{kind}")).await;
        assert_eq!(refused.len(), 1, "{refused:#?}");
        assert_eq!(refused[0].outcome, Outcome::ClientError);
        assert_eq!(refused[0].request.body, bad.as_bytes());
        // The log line and the inspector hear of it with the id it has in the store.
        let told = within(async {
            loop {
                if let Ok(vobiz_tunnel::pipeline::ExchangeEvent::Finished(exchange)) =
                    events.recv().await
                {
                    if exchange.request.target.starts_with("/abuse/pipelined-bad") {
                        return exchange;
                    }
                }
            }
        })
        .await;
        assert_eq!(told.id, refused[0].id, "{framing}");
    }
    upstream.assert_nothing(Duration::from_millis(100)).await;
    harness.tunnel.shutdown().await;
}

/// A client that negotiates `h2` and then speaks HTTP/1 is served HTTP/1 (hyper goes by the
/// bytes), and its malformed request is explained like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_after_an_h2_alpn_is_explained_too() {
    let _shared = LOAD.read().await;
    let upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |_| {}).await;
    let tcp = TcpStream::connect(harness.tunnel.local_addr).await.unwrap();
    let mut tls = handshake(&connector(&harness, b"h2"), tcp).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let _ = tls
        .write_all(b"POST /abuse/alpn-h2 HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n")
        .await;
    let received = read_until_closed(&mut tls, CLOSE_BOUND)
        .await
        .expect("closed");
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 400")
            && text.contains("\r\n\r\nvobiz-tunnel: the request is not valid HTTP/1.1"),
        "{text}"
    );
    let refused = recorded_once_closed(&harness, "/abuse/alpn-h2").await;
    assert_eq!(refused[0].outcome, Outcome::ClientError);
    harness.tunnel.shutdown().await;
}

/// The same with the malformed request in a piece of its own, sent while the good one is
/// still being served (its body was not complete before that piece).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_in_a_later_piece_behind_a_good_one_is_explained() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |_| {}).await;
    let mut tls = raw_tls(&harness).await;
    tls.write_all(
        b"POST /abuse/later-good HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\n\r\na=",
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bad = b"POST /abuse/later-bad HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n";
    tls.write_all(&[&b"1&b="[..], &bad[..]].concat())
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let received = read_until_closed(&mut tls, CLOSE_BOUND)
        .await
        .expect("closed");
    assert_served_then_explained(&received, "in a later piece");
    assert_eq!(upstream.next().await.body, &b"a=1&b="[..]);
    let refused = recorded_once_closed(&harness, "/abuse/later-bad").await;
    assert_eq!(refused[0].request.body, &bad[..]);
    harness.tunnel.shutdown().await;
}

/// A Vobiz callback refused as invalid HTTP (here a control character in a header) is
/// recorded with every byte received as its body; its Event, CallUUID and form fields are
/// those of what followed the head, not a form read from the head's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_callback_shows_the_fields_of_its_body_not_of_its_head() {
    let _shared = LOAD.read().await;
    let upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |_| {}).await;
    let body = "CallUUID=refused-1&Event=Hangup&F=x";
    let request = format!(
        "POST /abuse/refused-form HTTP/1.1\r\nHost: localhost\r\nX-Evil: a\x01b\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_exchange(&harness, request.as_bytes(), CLOSE_BOUND)
        .await
        .expect("closed after the refusal");
    let refused = recorded_once_closed(&harness, "/abuse/refused-form").await;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    let exchange = &refused[0];
    assert_eq!(exchange.outcome, Outcome::ClientError);
    assert_eq!(
        exchange.request.body,
        request.as_bytes(),
        "every byte received"
    );
    assert_eq!(exchange.event.as_deref(), Some("Hangup"));
    assert_eq!(exchange.call_uuid.as_deref(), Some("refused-1"));
    let fields = exchange.form_fields();
    assert_eq!(
        fields,
        [("CallUUID", "refused-1"), ("Event", "Hangup"), ("F", "x")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    harness.tunnel.shutdown().await;
}

/// One HTTP/2 frame: type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A HEADERS block of literal fields (HPACK, never indexed, no Huffman; short strings).
fn h2_fields(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x10);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// The error code of the first GOAWAY frame among HTTP/2 `frames`.
fn goaway_code(frames: &[u8]) -> Option<u32> {
    let mut rest = frames;
    while rest.len() >= 9 {
        let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let payload = rest.get(9..9 + length)?;
        if rest[3] == 7 {
            return Some(u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?));
        }
        rest = &rest[9 + length..];
    }
    None
}

/// The reason of the next failed connection the listener reports, within the deadline.
async fn next_connection_failure(
    events: &mut tokio::sync::broadcast::Receiver<vobiz_tunnel::pipeline::ExchangeEvent>,
) -> String {
    within(async {
        loop {
            match events.recv().await {
                Ok(vobiz_tunnel::pipeline::ExchangeEvent::ConnectionFailed { reason, .. }) => {
                    return reason
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_protocol_errors_are_explained_with_the_code_the_client_got() {
    let _shared = LOAD.read().await;
    let upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |_| {}).await;
    let mut events = harness.tunnel.events.subscribe();
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let request = |name: &str| {
        h2_fields(&[
            (":method", "POST"),
            (":scheme", "https"),
            (":path", "/abuse/h2-error"),
            (":authority", "localhost"),
            (name, "1"),
        ])
    };
    let rapid_resets: Vec<u8> = (0..2000u32)
        .flat_map(|i| {
            let stream = 1 + 2 * i;
            let mut frames = h2_frame(1, 0x4, stream, &request("x-n"));
            frames.extend(h2_frame(3, 0, stream, &8u32.to_be_bytes())); // RST_STREAM CANCEL
            frames
        })
        .collect();
    let cases: [(&str, Vec<u8>, u32, &str, &str); 3] = [
        (
            "an upper-case header name",
            h2_frame(1, 0x5, 1, &request("X-Upper")),
            1,
            "GOAWAY PROTOCOL_ERROR",
            "upper case",
        ),
        (
            "an even stream id",
            h2_frame(1, 0x5, 2, &request("x-even")),
            1,
            "GOAWAY PROTOCOL_ERROR",
            "stream id even",
        ),
        (
            "2000 streams reset as soon as opened",
            rapid_resets,
            11,
            "GOAWAY ENHANCE_YOUR_CALM",
            "flood",
        ),
    ];
    for (what, frames, code_number, code, explained) in cases {
        let tcp = TcpStream::connect(harness.tunnel.local_addr).await.unwrap();
        let mut tls = handshake(&connector(&harness, b"h2"), tcp).await;
        let mut bytes = PREFACE.to_vec();
        bytes.extend(h2_frame(4, 0, 0, &[])); // SETTINGS
        bytes.extend(frames);
        let _ = tls.write_all(&bytes).await;
        let _ = tls.flush().await;
        let received = read_until_closed(&mut tls, CLOSE_BOUND)
            .await
            .unwrap_or_else(|| panic!("{what}: still open after {CLOSE_BOUND:?}"));
        // The client got a GOAWAY with the code the listener reports.
        let sent = goaway_code(&received).unwrap_or_else(|| panic!("{what}: no GOAWAY"));
        assert_eq!(sent, code_number, "{what}");
        let reason = next_connection_failure(&mut events).await;
        assert!(
            reason.starts_with("HTTP/2 protocol error: "),
            "{what}: {reason}"
        );
        assert!(reason.contains(code), "{what}: {reason}");
        assert!(reason.contains(explained), "{what}: {reason}");
    }
    let (status, _, _) = signed_callback(&harness, "/abuse/after-h2-errors").await;
    assert_eq!(status, 200);
    harness.tunnel.shutdown().await;
}
