//! Case 1: slow clients (slowloris headers, trickled bodies) and the connection cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vobiz_tunnel::exchange::Outcome;

use super::*;

const TICK: Duration = Duration::from_millis(200);

/// How a trickling connection ended.
#[derive(Debug)]
struct Trickled {
    /// From the end of the TLS handshake to the close, if it closed within the bound.
    closed_after: Option<Duration>,
    received: Vec<u8>,
}

/// Sends `prefix` at once, then one byte of `drip` every [`TICK`] until the server closes
/// (EOF, reset or a failed write) or `bound` passes.
async fn trickle(mut tls: Tls, prefix: Vec<u8>, drip: u8, bound: Duration) -> Trickled {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    if !prefix.is_empty() && tls.write_all(&prefix).await.is_err() {
        return Trickled {
            closed_after: Some(started.elapsed()),
            received,
        };
    }
    while started.elapsed() < bound {
        if tls.write_all(&[drip]).await.is_err() || tls.flush().await.is_err() {
            return Trickled {
                closed_after: Some(started.elapsed()),
                received,
            };
        }
        let deadline = Instant::now() + TICK;
        loop {
            match tokio::time::timeout_at(deadline.into(), tls.read(&mut buf)).await {
                Err(_) => break, // nothing to read this tick: drip again
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return Trickled {
                        closed_after: Some(started.elapsed()),
                        received,
                    }
                }
                Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            }
        }
    }
    Trickled {
        closed_after: None,
        received,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_timed_out_while_a_normal_callback_gets_through() {
    let _exclusive = LOAD.write().await;
    let mut upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |c| {
        c.limits.max_connections = 1024;
        c.limits.header_timeout = Duration::from_secs(1);
        c.limits.body_timeout = Duration::from_secs(1);
        c.limits.handshake_timeout = Duration::from_secs(2);
    })
    .await;
    let connector = connector(&harness, b"http/1.1");
    let addr = harness.tunnel.local_addr;
    let bound = Duration::from_secs(6);
    let open = Arc::new(AtomicUsize::new(0));
    let handshaken = Arc::new(AtomicUsize::new(0));

    // 500 slowloris connections and 20 trickled bodies, handshakes 64 at a time.
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..520usize {
        let connector = connector.clone();
        let gate = gate.clone();
        let open = open.clone();
        let handshaken = handshaken.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let tcp = TcpStream::connect(addr).await.unwrap();
            let tls = handshake(&connector, tcp).await;
            drop(permit);
            open.fetch_add(1, Ordering::SeqCst);
            handshaken.fetch_add(1, Ordering::SeqCst);
            let body = i >= 500;
            let prefix = if body {
                b"POST /abuse/trickle-body HTTP/1.1\r\nHost: localhost\r\n\
                  Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
                    .to_vec()
            } else {
                b"POST /abuse/slowloris HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".to_vec()
            };
            let outcome = trickle(tls, prefix, b'a', bound).await;
            open.fetch_sub(1, Ordering::SeqCst);
            (body, outcome)
        }));
    }
    // Wait until all have handshaken (counting the ones already closed). Free permits alone
    // said nothing: on a busy machine most tasks had not even started to wait for one.
    within(async {
        while handshaken.load(Ordering::SeqCst) < 520 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let open_at_start = open.load(Ordering::SeqCst);
    let (status, body, elapsed) = signed_callback(&harness, "/abuse/normal").await;
    let open_at_end = open.load(Ordering::SeqCst);
    assert_eq!(status, 200, "{body}");
    assert!(
        elapsed < Duration::from_secs(1),
        "a normal callback took {elapsed:?} with {open_at_start} slow clients connected"
    );
    assert!(
        open_at_start >= 400 && open_at_end >= 400,
        "the callback was not sent under load: {open_at_start} → {open_at_end} attackers open"
    );
    assert_eq!(upstream.next().await.uri, "/abuse/normal");

    let mut closed_headers = 0;
    let mut closed_bodies = 0;
    for task in tasks {
        let (body, outcome) = within(task).await.unwrap();
        let after = outcome.closed_after.unwrap_or_else(|| {
            panic!("a trickling connection (body: {body}) was still open after {bound:?}")
        });
        // 1 s deadline + a tick of slack for the drip and scheduling on a loaded machine.
        assert!(
            after < Duration::from_millis(2500),
            "closed only after {after:?} (body: {body})"
        );
        if body {
            let text = String::from_utf8_lossy(&outcome.received);
            assert!(text.starts_with("HTTP/1.1 400"), "{text}");
            assert!(text.contains("vobiz-tunnel: "), "{text}");
            assert!(text.contains("--body-timeout"), "{text}");
            closed_bodies += 1;
        } else {
            // Told why, rather than closed without a word.
            let text = String::from_utf8_lossy(&outcome.received);
            assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            assert!(text.contains("vobiz-tunnel: "), "{text}");
            assert!(text.contains("--header-timeout"), "{text}");
            closed_headers += 1;
        }
    }
    assert_eq!((closed_headers, closed_bodies), (500, 20));
    // The trickled bodies reached the pipeline: recorded as client errors with their prefix.
    let recorded = recorded_under(&harness, "/abuse/trickle-body").await;
    assert_eq!(recorded.len(), 20);
    for exchange in &recorded {
        assert_eq!(exchange.outcome, Outcome::ClientError, "{exchange:?}");
        assert_eq!(exchange.status(), Some(400));
        assert!(exchange.request.body_truncated);
        assert!(!exchange.request.body.is_empty() && exchange.request.body.len() < 100);
    }
    // Slowloris never got a request through, but what each sent is recorded with its 408
    // (once its connection has ended, which the sender may see first).
    let recorded = within(async {
        loop {
            let recorded = recorded_under(&harness, "/abuse/slowloris").await;
            if recorded.len() >= 500 {
                return recorded;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(recorded.len(), 500);
    for exchange in &recorded {
        assert_eq!(exchange.outcome, Outcome::ClientError, "{exchange:?}");
        assert_eq!(exchange.status(), Some(408));
        let received = String::from_utf8_lossy(&exchange.request.body);
        assert!(
            received.starts_with("POST /abuse/slowloris HTTP/1.1\r\nHost: localhost\r\nX-Slow: a"),
            "{received:?}"
        );
        let error = exchange.error.as_deref().unwrap_or_default();
        assert!(error.contains("--header-timeout"), "{error}");
    }
    upstream.assert_nothing(Duration::from_millis(100)).await;

    // And the listener serves normally afterwards.
    let (status, _, elapsed) = signed_callback(&harness, "/abuse/after").await;
    assert_eq!(status, 200);
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    harness.tunnel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_late_on_a_kept_alive_connection_gets_408_and_one_in_time_is_served() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let header_timeout = Duration::from_secs(2);
    let harness = harness_with(&upstream.url(), |c| {
        c.limits.header_timeout = header_timeout
    })
    .await;
    let mut tls = raw_tls(&harness).await;
    // A head trickled over a good part of the timeout still arrives in time, and is served.
    let pieces = [
        &b"GET /abuse/in-time HTTP/1.1\r\n"[..],
        b"Host: localhost\r\n",
        b"\r\n",
    ];
    for (i, piece) in pieces.into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        tls.write_all(piece).await.unwrap();
        tls.flush().await.unwrap();
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(Reply::default().body.as_bytes()) {
        let n = within(tls.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    assert_eq!(upstream.next().await.uri, "/abuse/in-time");

    // The next head on the same connection stalls: its clock starts at that answer (a
    // moment before it was read here).
    let answered_at = Instant::now();
    tls.write_all(b"POST /abuse/late HTTP/1.1\r\nHost: localhost\r\nContent-Le")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let received = read_until_closed(&mut tls, header_timeout * 4).await;
    let waited = answered_at.elapsed();
    let text = String::from_utf8_lossy(received.as_deref().expect("still open"));
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.contains("--header-timeout"), "{text}");
    assert!(
        waited >= header_timeout / 2 && waited < header_timeout * 3,
        "answered after {waited:?}"
    );
    let recorded = recorded_once_closed(&harness, "/abuse/late").await;
    assert_eq!(recorded.len(), 1);
    let late = &recorded[0];
    assert_eq!(
        (late.outcome, late.status()),
        (Outcome::ClientError, Some(408))
    );
    assert_eq!(late.request.method, "POST");
    assert_eq!(
        &late.request.body[..],
        b"POST /abuse/late HTTP/1.1\r\nHost: localhost\r\nContent-Le"
    );
    upstream.assert_nothing(Duration::from_millis(100)).await;
    harness.tunnel.shutdown().await;
}

/// Blank lines after a body (which hyper skips, as RFC 9112 §2.2 allows) are no request:
/// the connection is closed as idle, without a 408 or a record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_lines_after_a_body_are_not_a_late_head() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let header_timeout = Duration::from_secs(1);
    let harness = harness_with(&upstream.url(), |c| {
        c.limits.header_timeout = header_timeout
    })
    .await;
    let mut tls = raw_tls(&harness).await;
    tls.write_all(
        b"POST /abuse/crlf HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\na=1\r\n",
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    assert_eq!(upstream.next().await.uri, "/abuse/crlf");
    let received = read_until_closed(&mut tls, header_timeout * 4)
        .await
        .expect("still open");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("408"), "{text}");
    let recorded = recorded_under(&harness, "/").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    harness.tunnel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_the_listener_recovers() {
    let _exclusive = LOAD.write().await;
    let mut upstream = upstream(Reply::default()).await;
    // Long header timeout: the attackers hold their slots until we let go of them.
    let harness = harness_with(&upstream.url(), |c| {
        c.limits.max_connections = 50;
        c.limits.header_timeout = Duration::from_secs(10);
        c.limits.handshake_timeout = Duration::from_secs(10);
    })
    .await;
    let connector = connector(&harness, b"http/1.1");
    let addr = harness.tunnel.local_addr;

    let mut attackers = Vec::new();
    for _ in 0..50 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = within(handshake(&connector, tcp)).await;
        tls.write_all(b"POST /abuse/held HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        attackers.push(tls);
    }

    // The 51st: TCP connects (the kernel's backlog), the handshake waits for a slot.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector51 = connector.clone();
    let mut pending = tokio::spawn(async move { handshake(&connector51, tcp).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut pending)
            .await
            .is_err(),
        "the 51st connection was served while 50 were held"
    );

    // One attacker leaves: its slot goes to the 51st, which is then served normally.
    drop(attackers.pop());
    let tls = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .expect("the 51st handshake completes once a slot frees")
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let url = harness.url("/abuse/fifty-first");
    let request = form_post(
        &harness,
        "/abuse/fifty-first",
        HANGUP_BODY,
        &vobiz_headers(&url, TOKEN, None),
    );
    let response = within(sender.send_request(request)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.next().await.uri, "/abuse/fifty-first");

    // Still at the cap (49 attackers + this one): a 52nd waits too.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector52 = connector.clone();
    let mut pending = tokio::spawn(async move { handshake(&connector52, tcp).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut pending)
            .await
            .is_err(),
        "the cap did not hold after a slot was reused"
    );

    // Everyone leaves: the listener recovers fully.
    drop(attackers);
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .expect("the 52nd handshake completes once slots free");
    let (status, _, elapsed) = signed_callback(&harness, "/abuse/recovered").await;
    assert_eq!(status, 200);
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    harness.tunnel.shutdown().await;
}

/// Reads until the server closes the connection; how long that took, if within `bound`.
async fn closed_within(tls: &mut Tls, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(bound, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {} // a GOAWAY or SETTINGS frame: keep reading
            }
        }
    })
    .await
    .ok()
}

/// Connections that hold a slot without ever serving a request: silent after the TLS
/// handshake, stopped halfway through the HTTP/2 preface, or HTTP/2 without a stream (its
/// client answers the server's pings, so keep-alive alone never ends it). Each is closed at
/// the header timeout, so a cap full of them keeps callbacks out for no longer than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_requests_are_closed_and_cannot_hold_the_cap() {
    const EACH: usize = 4;
    let _exclusive = LOAD.write().await;
    let mut upstream = upstream(Reply::default()).await;
    let header_timeout = Duration::from_secs(1);
    let harness = harness_with(&upstream.url(), |c| {
        c.limits.max_connections = 3 * EACH;
        c.limits.header_timeout = header_timeout;
    })
    .await;
    let addr = harness.tunnel.local_addr;
    let (h1, h2) = (connector(&harness, b"http/1.1"), connector(&harness, b"h2"));

    let opened = Instant::now();
    let mut silent = Vec::new();
    let mut half_preface = Vec::new();
    let mut idle_h2 = Vec::new();
    for _ in 0..EACH {
        let tcp = TcpStream::connect(addr).await.unwrap();
        silent.push(within(handshake(&h1, tcp)).await);

        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = within(handshake(&h2, tcp)).await;
        tls.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        tls.flush().await.unwrap();
        half_preface.push(tls);

        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = within(handshake(&h2, tcp)).await;
        let (sender, connection) = within(hyper::client::conn::http2::handshake::<
            _,
            _,
            http_body_util::Empty<bytes::Bytes>,
        >(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        ))
        .await
        .expect("an HTTP/2 connection");
        idle_h2.push((sender, tokio::spawn(connection)));
    }

    // The cap is full: this callback waits in the kernel's backlog until the idle ones go.
    let (status, body, _) = signed_callback(&harness, "/abuse/after-idle").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.next().await.uri, "/abuse/after-idle");
    let waited = opened.elapsed();
    println!("a callback behind a cap full of idle connections waited {waited:?}");
    assert!(
        waited < header_timeout + Duration::from_secs(2),
        "waited {waited:?}"
    );

    let bound = header_timeout + Duration::from_secs(2);
    for (kind, group) in [("silent", &mut silent), ("half preface", &mut half_preface)] {
        for tls in group.iter_mut() {
            let closed = closed_within(tls, bound).await;
            assert!(closed.is_some(), "a {kind} connection is still open");
        }
    }
    for (_sender, connection) in idle_h2 {
        let ended = tokio::time::timeout(bound, connection).await;
        assert!(ended.is_ok(), "an idle HTTP/2 connection is still open");
    }
    harness.tunnel.shutdown().await;
}
