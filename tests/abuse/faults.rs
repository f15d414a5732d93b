//! Case 3: upstream faults, and case 4: `--reject-invalid` never forwards.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vobiz_tunnel::exchange::Outcome;
use vobiz_tunnel::signature::VerdictStatus;

use super::*;

const FORWARD_TIMEOUT: Duration = Duration::from_millis(300);
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

/// Reads one request head (and its Content-Length body); the path, or `None` at EOF.
async fn read_request(tcp: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).await.ok()?;
    head.split_whitespace().nth(1).map(String::from)
}

/// An upstream that misbehaves by path: `/refuse` is not handled here (no listener).
async fn faulty_upstream(listener: TcpListener) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            while let Some(path) = read_request(&mut tcp).await {
                let tail = path.rsplit('/').next().unwrap_or_default().to_string();
                match tail.as_str() {
                    "reset" => {
                        let _ = tcp
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
                            .await;
                        return; // dropped mid-response (1000 bytes promised)
                    }
                    "hang" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    "slow-ok" => {
                        tokio::time::sleep(FORWARD_TIMEOUT / 2).await;
                        let _ = tcp.write_all(OK).await;
                    }
                    "trickle" => {
                        let _ = tcp
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")
                            .await;
                        for _ in 0..20 {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            if tcp.write_all(b"x").await.is_err() {
                                return;
                            }
                        }
                    }
                    "garbage" => {
                        let _ = tcp
                            .write_all(b"\x00\x01 this is not HTTP at all\r\n\r\n")
                            .await;
                        return;
                    }
                    "switch" => {
                        // An upgrade nobody asked for, then a closed connection.
                        let _ = tcp
                            .write_all(
                                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\
                                  Upgrade: websocket\r\n\r\n",
                            )
                            .await;
                        return;
                    }
                    "hop" => {
                        // Names a header in `Connection`: it is for this hop only.
                        let _ = tcp
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: s\r\n\
                                  Content-Length: 2\r\n\r\nok",
                            )
                            .await;
                    }
                    "keepalive-then-close" => {
                        // A normal keep-alive answer, then the connection is dropped while
                        // the proxy's pool still holds it.
                        let _ = tcp.write_all(OK).await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                    _ => {
                        if tcp.write_all(OK).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

async fn timed(harness: &Harness, path: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let answer = harness
        .client()
        .send(form_post(harness, path, "Event=Hangup&CallUUID=fault", &[]))
        .await;
    (answer.status, answer.body, started.elapsed())
}

/// A fault gives a timely `expected` with our body and is recorded; the next request works.
async fn assert_fault(harness: &Harness, path: &str, expected: u16, outcome: Outcome) {
    let (status, body, elapsed) = timed(harness, path).await;
    assert_eq!(status, expected, "{path}: {body}");
    assert!(body.starts_with("vobiz-tunnel: "), "{path}: {body}");
    assert!(
        elapsed < FORWARD_TIMEOUT + Duration::from_millis(700),
        "{path}: answered after {elapsed:?}"
    );
    let recorded = recorded_under(harness, path).await;
    assert_eq!(recorded.len(), 1, "{path}");
    assert_eq!(recorded[0].outcome, outcome, "{path}: {:?}", recorded[0]);
    assert_eq!(recorded[0].status(), Some(expected));
    assert!(recorded[0].error.is_some(), "{path}: no error recorded");

    let next = format!("{path}-next/ok");
    let (status, body, elapsed) = timed(harness, &next).await;
    assert_eq!(status, 200, "after {path}: {body}");
    assert_eq!(body, "ok");
    assert!(
        elapsed < Duration::from_secs(1),
        "after {path}: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_give_timely_502_or_504_and_the_next_request_works() {
    let _shared = LOAD.read().await;
    // Refused: nothing listens on the port yet.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    let harness = harness_with(&format!("http://{addr}"), |c| {
        c.limits.forward_timeout = FORWARD_TIMEOUT;
    })
    .await;
    let (status, body, elapsed) = timed(&harness, "/abuse/fault/refuse").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.starts_with("vobiz-tunnel: ") && body.contains("cannot reach"),
        "{body}"
    );
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    let refused = recorded_under(&harness, "/abuse/fault/refuse").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].outcome, Outcome::UpstreamError);

    // Now the local server comes up on that port, and misbehaves in every other way.
    let listener = TcpListener::bind(addr)
        .await
        .expect("the port is free again");
    tokio::spawn(faulty_upstream(listener));
    let (status, body, _) = timed(&harness, "/abuse/fault/refuse-next/ok").await;
    assert_eq!(status, 200, "{body}");

    assert_fault(&harness, "/abuse/fault/reset", 502, Outcome::UpstreamError).await;
    assert_fault(&harness, "/abuse/fault/hang", 504, Outcome::UpstreamTimeout).await;
    assert_fault(
        &harness,
        "/abuse/fault/trickle",
        504,
        Outcome::UpstreamTimeout,
    )
    .await;
    assert_fault(
        &harness,
        "/abuse/fault/garbage",
        502,
        Outcome::UpstreamError,
    )
    .await;
    assert_fault(&harness, "/abuse/fault/switch", 502, Outcome::UpstreamError).await;
    let switched = &recorded_under(&harness, "/abuse/fault/switch").await[0];
    let error = switched.error.as_deref().unwrap_or_default();
    assert!(error.contains("101 Switching Protocols"), "{error}");
    let answer = harness
        .client()
        .send(form_post(&harness, "/abuse/fault/hop", "a=b", &[]))
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.headers.get("x-secret").is_none(),
        "{:?}",
        answer.headers
    );

    // Slow but within the forward timeout: answered and forwarded.
    let (status, body, elapsed) = timed(&harness, "/abuse/fault/slow-ok").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(elapsed < FORWARD_TIMEOUT + Duration::from_millis(500));

    // Keep-alive connections closed by the local server between requests, repeatedly.
    for i in 0..5 {
        let (status, body, _) =
            timed(&harness, &format!("/abuse/ka/{i}/keepalive-then-close")).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (status, body, elapsed) = timed(&harness, &format!("/abuse/ka/{i}/ok")).await;
        assert_eq!(
            status, 200,
            "a request after a closed keep-alive connection: {body}"
        );
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    }
    for exchange in recorded_under(&harness, "/abuse/ka/").await {
        assert_eq!(exchange.outcome, Outcome::Forwarded, "{exchange:?}");
    }
    harness.tunnel.shutdown().await;
}

/// One HTTP/2 connection carries many requests, each holding a connection to the local
/// server: past `--max-connections` of them in flight, the next is answered 503 at once
/// (recorded) rather than running the process out of file descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_to_the_local_server_are_capped_like_connections() {
    let _shared = LOAD.read().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(faulty_upstream(listener));
    let harness = harness_with(&format!("http://{addr}"), |c| {
        c.limits.max_connections = 3;
        c.limits.forward_timeout = Duration::from_millis(1500);
    })
    .await;
    let tcp = TcpStream::connect(harness.tunnel.local_addr).await.unwrap();
    let tls = handshake(&connector(&harness, b"h2"), tcp).await;
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let started = Instant::now();
    let mut streams = Vec::new();
    for i in 0..6 {
        let request = form_post(&harness, &format!("/abuse/cap/{i}/hang"), "a=b", &[]);
        let mut sender = sender.clone();
        streams.push(tokio::spawn(async move {
            sender.ready().await.unwrap();
            let answer = sender.send_request(request).await.unwrap();
            (answer.status().as_u16(), started.elapsed())
        }));
    }
    let mut answers = Vec::new();
    for stream in streams {
        answers.push(within(stream).await.unwrap());
    }
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 503)
        .collect();
    let timed_out = answers.iter().filter(|(status, _)| *status == 504).count();
    assert_eq!((refused.len(), timed_out), (3, 3), "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|(_, after)| *after < Duration::from_secs(1)),
        "refused at once: {answers:?}"
    );
    let recorded = recorded_under(&harness, "/abuse/cap/").await;
    let busy: Vec<_> = recorded
        .iter()
        .filter(|e| e.status() == Some(503))
        .collect();
    assert_eq!(busy.len(), 3);
    let error = busy[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("--max-connections"), "{error}");
    assert_eq!(
        busy[0].outcome,
        Outcome::Rejected,
        "never sent: not the server's error"
    );
    // Once they are answered, the next callback goes through.
    let (status, body, _) = timed(&harness, "/abuse/cap/after/ok").await;
    assert_eq!(status, 200, "{body}");
    harness.tunnel.shutdown().await;
}

/// A local server that answers `answered` requests per connection, then reads the next
/// one and closes without an answer (as if its idle timeout fired just then); every path it
/// read goes to `seen`.
async fn closing_upstream(
    listener: TcpListener,
    answered: usize,
    seen: tokio::sync::mpsc::UnboundedSender<String>,
) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            for served in 0.. {
                let Some(path) = read_request(&mut tcp).await else {
                    return;
                };
                let _ = seen.send(path);
                if served == answered {
                    return; // dropped unanswered
                }
                if tcp.write_all(OK).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A kept-alive connection that the local server drops under a callback (a POST) after
/// reading it: the sender gets a timely 502, the failure is recorded, and the server saw the
/// callback once. It may have acted on it, so it is never sent twice. An idempotent request
/// dropped the same way is tried once more on a new connection (the server may have closed
/// it while idle, just then); on a new connection a drop is the server's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_dropped_by_a_kept_alive_connection_is_never_sent_twice() {
    let _shared = LOAD.read().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(closing_upstream(listener, 1, seen_tx));
    let harness = harness_with(&format!("http://{addr}"), |_| {}).await;
    let seen_so_far = |seen: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
        let mut paths = Vec::new();
        while let Ok(path) = seen.try_recv() {
            paths.push(path);
        }
        paths
    };

    let (status, body, _) = timed(&harness, "/abuse/race/first").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    // The same kept-alive connection takes the next callback, reads it and drops it.
    let (status, body, elapsed) = timed(&harness, "/abuse/race/second").await;
    assert_eq!(status, 502, "{body}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen_so_far(&mut seen),
        ["/abuse/race/first", "/abuse/race/second"],
        "the dropped callback reached the server once"
    );
    let dropped = recorded_under(&harness, "/abuse/race/second").await;
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        dropped[0].outcome,
        Outcome::UpstreamError,
        "{:?}",
        dropped[0]
    );
    let (status, _, _) = timed(&harness, "/abuse/race/third").await;
    assert_eq!(status, 200, "the next callback works");

    // The connection that answered the third drops the next request, a GET: sent again.
    let get = hyper::Request::get("/abuse/race/get")
        .header("host", format!("localhost:{}", harness.port()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let answer = harness.client().send(get).await;
    assert_eq!(answer.status, 200, "answered on a new connection");
    assert_eq!(
        seen_so_far(&mut seen),
        ["/abuse/race/third", "/abuse/race/get", "/abuse/race/get"],
        "the GET dropped once, sent again once"
    );
    // A GET callback (a signed answer URL) is a callback all the same: not sent twice.
    let signed_get = |path: &str| {
        hyper::Request::get(path)
            .header("host", format!("localhost:{}", harness.port()))
            .header("X-Vobiz-Signature-V3", "c2lnbmVk")
            .header("X-Vobiz-Signature-V3-Nonce", "12345678901234567890")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let answer = harness
        .client()
        .send(signed_get("/abuse/race/answer-1"))
        .await;
    assert_eq!(answer.status, 200, "the new connection's first request");
    let answer = harness
        .client()
        .send(signed_get("/abuse/race/answer-2"))
        .await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen_so_far(&mut seen),
        ["/abuse/race/answer-1", "/abuse/race/answer-2"],
        "the signed GET reached the server once"
    );
    harness.tunnel.shutdown().await;

    // A server that drops every request: a new connection's failure is not repeated.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(closing_upstream(listener, 0, seen_tx));
    let harness = harness_with(&format!("http://{addr}"), |_| {}).await;
    let (status, body, _) = timed(&harness, "/abuse/race/dropped").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(seen.recv().await.as_deref(), Some("/abuse/race/dropped"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(seen.try_recv().is_err(), "sent once only");
    harness.tunnel.shutdown().await;
}

/// Only a sub-account token configured: `-MA-` headers cannot be checked, and a junk one
/// (alone, or next to a bad V3) must not be a way past `--reject-invalid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_invalid_refuses_what_no_configured_token_can_check() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |c| {
        c.reject_invalid = true;
        c.keys.main_auth_tokens.clear();
    })
    .await;
    let nonce = ("X-Vobiz-Signature-V3-Nonce", "12345678901234567890");
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("ma-v3", vec![("X-Vobiz-Signature-MA-V3", "AAAA"), nonce]),
        (
            "ma-v2",
            vec![
                ("X-Vobiz-Signature-MA-V2", "AAAA"),
                ("X-Vobiz-Signature-V2-Nonce", "12345678901234567890"),
            ],
        ),
        (
            "ma-and-bad-v3",
            vec![
                ("X-Vobiz-Signature-MA-V3", "AAAA"),
                ("X-Vobiz-Signature-V3", "AAAA"),
                nonce,
            ],
        ),
        ("v1", vec![("X-Vobiz-Signature", "AAAA")]),
    ];
    for (name, headers) in cases {
        let path = format!("/abuse/unchecked/{name}");
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let answer = harness
            .client()
            .send(form_post(&harness, &path, HANGUP_BODY, &headers))
            .await;
        assert_eq!(answer.status, 403, "{name}: {}", answer.body);
        assert!(answer.body.starts_with("vobiz-tunnel: "), "{}", answer.body);
    }
    let path = "/abuse/unchecked/valid";
    let headers = vobiz_headers_fresh(&harness.url(path), TOKEN, 1);
    let answer = harness
        .client()
        .send(form_post(&harness, path, HANGUP_BODY, &headers))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(upstream.next().await.uri, path, "only the valid one");
    upstream.assert_nothing(Duration::from_millis(300)).await;
    for exchange in recorded_under(&harness, "/abuse/unchecked/").await {
        let valid = exchange.request.target.ends_with("/valid");
        let expected = if valid {
            Outcome::Forwarded
        } else {
            Outcome::Rejected
        };
        assert_eq!(exchange.outcome, expected, "{exchange:?}");
    }
    harness.tunnel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_invalid_never_forwards_invalid_unsigned_or_wrong_token_callbacks() {
    let _shared = LOAD.read().await;
    let mut upstream = upstream(Reply::default()).await;
    let harness = harness_with(&upstream.url(), |c| c.reject_invalid = true).await;
    let kinds = ["valid", "tampered", "unsigned", "wrong-token"];
    let mut tasks = Vec::new();
    let harness = Arc::new(harness);
    for i in 0..100u64 {
        let kind = kinds[(i % 4) as usize];
        let path = format!("/abuse/reject/{kind}/{i}");
        let url = harness.url(&path);
        let headers = match kind {
            "valid" => vobiz_headers_fresh(&url, TOKEN, i),
            "tampered" => {
                let mut headers = vobiz_headers_fresh(&url, TOKEN, i);
                let signature = &mut headers[0].1;
                let flipped = if signature.starts_with('A') { "B" } else { "A" };
                signature.replace_range(0..1, flipped);
                headers
            }
            "unsigned" => vec![],
            _ => vobiz_headers_fresh(&url, "SOMEONEelsesTOKEN0123456789abcdefXYZ", i),
        };
        let harness = harness.clone();
        tasks.push(tokio::spawn(async move {
            let answer = harness
                .client()
                .send(form_post(&harness, &path, HANGUP_BODY, &headers))
                .await;
            (kind, answer)
        }));
    }
    for task in tasks {
        let (kind, answer) = within(task).await.unwrap();
        if kind == "valid" {
            assert_eq!(answer.status, 200, "{kind}: {}", answer.body);
        } else {
            assert_eq!(answer.status, 403, "{kind}: {}", answer.body);
            assert!(answer.body.starts_with("vobiz-tunnel: "), "{}", answer.body);
        }
    }
    let mut forwarded = Vec::new();
    for _ in 0..25 {
        forwarded.push(upstream.next().await.uri);
    }
    upstream.assert_nothing(Duration::from_millis(300)).await;
    assert!(
        forwarded
            .iter()
            .all(|uri| uri.starts_with("/abuse/reject/valid/")),
        "{forwarded:?}"
    );
    let recorded = recorded_under(&harness, "/abuse/reject/").await;
    assert_eq!(recorded.len(), 100);
    for exchange in &recorded {
        let valid = exchange.request.target.starts_with("/abuse/reject/valid/");
        if valid {
            assert_eq!(exchange.verdict.status, VerdictStatus::Valid);
            assert_eq!(exchange.outcome, Outcome::Forwarded);
        } else {
            assert_ne!(
                exchange.verdict.status,
                VerdictStatus::Valid,
                "{exchange:?}"
            );
            assert_eq!(exchange.outcome, Outcome::Rejected, "{exchange:?}");
        }
    }
    match Arc::try_unwrap(harness) {
        Ok(harness) => harness.tunnel.shutdown().await,
        Err(_) => panic!("the harness is still shared"),
    }
}
