//! Who may use the relay: tokens (refused, silent and malformed clients), the source
//! allow-list, what the log may contain (JSON too), and the `relay` command line.

use std::process::Command;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vobiz_tunnel::cli::LogFormat;
use vobiz_tunnel::relay::config::IpBlock;
use vobiz_tunnel::relay::{protocol, RelayClient, RelayState};

use crate::common::{self, within};
use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_vobiz-tunnel");

/// A raw TLS connection to the relay asking for the tunnel protocol.
async fn raw_tunnel(relay: &Relay) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(relay.server.local_addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connector = common::tls_connector(&relay.ca, protocol::ALPN);
    let stream = within(connector.connect(name, tcp)).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(protocol::ALPN));
    stream
}

/// Reads until the relay closes; what it said.
async fn read_to_close(stream: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
    let mut said = Vec::new();
    let _ = within(stream.read_to_end(&mut said)).await;
    String::from_utf8_lossy(&said).into_owned()
}

/// A relay whose certificate this laptop does not trust is a setting to fix, not an outage:
/// the state says which flag fixes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_relay_certificate_names_the_flag_that_trusts_it() {
    let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |_| {}).await;
    let laptop = Laptop::without_relay().await;
    let mut events = laptop.events();
    let address = format!("localhost:{}", relay.port());
    let untrusting =
        vobiz_tunnel::relay::config::RelayClientConfig::parse(&address, Some(RELAY_TOKEN), None)
            .unwrap();
    let client = RelayClient::spawn(untrusting, laptop.harness.tunnel.proxy.clone());
    let state = relay_state(&mut events, |s| !matches!(s, RelayState::Connecting { .. })).await;
    let described = state.describe();
    assert!(
        described.contains("UnknownIssuer")
            && described.contains("give the relay's CA with --relay-ca"),
        "{described}"
    );
    within(client.stop()).await;
    relay.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_logged_without_the_token() {
    let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |_| {}).await;
    let laptop = Laptop::without_relay().await;
    let mut events = laptop.events();
    let wrong = "WRONG-token-zzzzzzzzzzzz";
    let client = RelayClient::spawn(
        relay.client_config(wrong),
        laptop.harness.tunnel.proxy.clone(),
    );
    let state = relay_state(&mut events, |s| !matches!(s, RelayState::Connecting { .. })).await;
    match &state {
        RelayState::Refused {
            reason,
            retry_in_secs,
            ..
        } => {
            assert_eq!(reason, "unknown token");
            let wait = vobiz_tunnel::relay::client::REFUSED_RETRY.as_secs_f64();
            assert!(
                *retry_in_secs >= wait / 2.0,
                "refusals retry slowly (with jitter): {retry_in_secs}"
            );
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(!relay.server.is_connected("default"));
    relay.log_line(&["tunnel refused", "unknown token"]).await;
    let log = relay.log().join("\n");
    assert!(!log.contains(wrong) && !log.contains(RELAY_TOKEN), "{log}");
    within(client.stop()).await;
    relay.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_malformed_tunnel_clients_are_dropped() {
    let timeout = Duration::from_millis(300);
    let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |c| c.auth_timeout = timeout).await;

    let mut silent = raw_tunnel(&relay).await;
    let started = Instant::now();
    let said = read_to_close(&mut silent).await;
    assert!(said.is_empty(), "{said:?}");
    assert!(started.elapsed() >= timeout && started.elapsed() < Duration::from_secs(3));
    relay
        .log_line(&["tunnel dropped", "sent no hello within 0.3 s"])
        .await;

    let mut long = raw_tunnel(&relay).await;
    let _ = long.write_all(&vec![b'A'; protocol::MAX_LINE + 10]).await;
    let said = read_to_close(&mut long).await;
    assert_eq!(said, "REFUSED malformed hello\n");

    let mut http = raw_tunnel(&relay).await;
    http.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(
        read_to_close(&mut http).await,
        "REFUSED not a vobiz-tunnel hello\n"
    );

    // The right token gets OK and the public base URL.
    let mut good = raw_tunnel(&relay).await;
    good.write_all(protocol::hello_line(RELAY_TOKEN).as_bytes())
        .await
        .unwrap();
    let mut reader = tokio::io::BufReader::new(good);
    let answer = within(protocol::read_answer(&mut reader)).await.unwrap();
    let public_base = relay.url("");
    assert_eq!(answer, protocol::Answer::Ok { public_base });
    relay.server.shutdown().await;
}

/// A public connection that never carries a request (silent after the handshake, or HTTP/2
/// without a stream, whose client answers keep-alive pings) is closed at the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_connections_without_requests_are_closed() {
    let timeout = Duration::from_millis(500);
    let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |c| c.header_timeout = timeout).await;
    let public = |alpn: &[u8]| common::tls_connector(&relay.ca, alpn);
    let name = ServerName::try_from("localhost").unwrap();
    let addr = relay.server.local_addr;

    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut silent = within(public(b"http/1.1").connect(name.clone(), tcp))
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(read_to_close(&mut silent).await, "");
    let closed = started.elapsed();
    assert!(
        closed >= timeout && closed < Duration::from_secs(3),
        "{closed:?}"
    );

    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = within(public(b"h2").connect(name, tcp)).await.unwrap();
    let (_sender, connection) = within(hyper::client::conn::http2::handshake::<
        _,
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    ))
    .await
    .unwrap();
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(3), connection).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection is still open");
    assert!(started.elapsed() >= timeout / 2, "{:?}", started.elapsed());
    relay.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_turns_other_senders_away() {
    for (allowed, status) in [("10.0.0.0/8", 403), ("127.0.0.1", 200)] {
        let block = IpBlock::parse(allowed).unwrap();
        let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |c| {
            c.allow = Some(vec![block])
        })
        .await;
        let mut laptop = Laptop::start(&relay, RELAY_TOKEN).await;
        relay.connected("default").await;
        let url = relay.url("/cb");
        let request = callback(
            &format!("localhost:{}", relay.port()),
            "/cb",
            hangup(1),
            &url,
            1,
            &[],
        );
        let answer = relay.vobiz().send(request).await;
        assert_eq!(answer.status, status, "allow {allowed}: {}", answer.body);
        if status == 403 {
            assert!(
                answer
                    .body
                    .contains("127.0.0.1 is not an allowed callback source"),
                "{}",
                answer.body
            );
            laptop
                .upstream
                .assert_nothing(Duration::from_millis(100))
                .await;
            relay.log_line(&["POST /cb 403", "not an allowed"]).await;
        } else {
            laptop.upstream.next().await;
        }
        laptop.harness.tunnel.shutdown().await;
        relay.server.shutdown().await;
    }
}

/// Answers the relay gives before reading the body (403, 413) reach an HTTP/2 sender as
/// answers: the stream ends when the sender has sent what it declared, not in a reset. A
/// rejection for a route (413) is recorded by that route's laptop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_an_http2_sender_as_answers() {
    let not_us = IpBlock::parse("10.0.0.0/8").unwrap();
    for status in [403, 413] {
        let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |c| match status {
            403 => c.allow = Some(vec![not_us]),
            _ => c.max_body_bytes = 64 * 1024,
        })
        .await;
        let mut laptop = Laptop::start(&relay, RELAY_TOKEN).await;
        relay.connected("default").await;
        let stream = relay.vobiz().tls(true).await;
        let upload = common::upload_refused_midway(stream, &relay.url("/cb"), 200 * 1024).await;
        assert_eq!(upload.status, status, "{upload:?}");
        assert!(
            upload.body.starts_with("vobiz-tunnel relay: "),
            "{upload:?}"
        );
        assert_eq!(upload.reset, None, "{status}: the sender sees a reset");
        laptop
            .upstream
            .assert_nothing(Duration::from_millis(100))
            .await;
        if status == 413 {
            // The route's laptop is told (in the background), and records what the sender got.
            common::within(async {
                loop {
                    laptop.harness.tunnel.store.flush().await;
                    if !laptop.harness.reader().latest(1).unwrap().is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            let recorded = laptop.harness.last_recorded().await;
            assert_eq!(recorded.status(), Some(413));
            assert_eq!(recorded.outcome, vobiz_tunnel::exchange::Outcome::TooLarge);
            assert_eq!(recorded.request.target, "/cb");
            assert!(recorded.request.public_url.ends_with("/cb"));
            let error = recorded.error.as_deref().unwrap_or_default();
            assert!(
                error.starts_with("the relay answered this callback itself: body over 65536"),
                "{error}"
            );
            assert!(
                recorded.request.client_addr.is_some(),
                "the sender, as the relay saw it"
            );
            let answer = recorded.response.as_ref().unwrap();
            assert!(
                answer.body.starts_with(b"vobiz-tunnel relay: body over"),
                "{answer:?}"
            );
            assert_ne!(
                recorded.verdict.status,
                vobiz_tunnel::signature::VerdictStatus::Invalid,
                "not checkable without the body, so not called a forgery"
            );
            // Nothing reached the local server: not the notice either.
            laptop
                .upstream
                .assert_nothing(Duration::from_millis(100))
                .await;
        }
        laptop.harness.tunnel.shutdown().await;
        relay.server.shutdown().await;
    }
}

/// An HTTP/1 sender that goes on writing its body after the relay's 413 (as curl does) is
/// not reset: it reads the answer once it is done writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_sender_writing_on_after_the_relays_413_is_not_reset() {
    let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |c| {
        c.max_body_bytes = 64 * 1024
    })
    .await;
    let laptop = Laptop::start(&relay, RELAY_TOKEN).await;
    relay.connected("default").await;
    let mut tls = relay.vobiz().tls(false).await;
    let head = "POST /cb HTTP/1.1\r\nhost: x\r\ncontent-length: 4000000\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&[b'a'; 64 * 1024]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..16 {
        within(tls.write_all(&[b'a'; 16 * 1024]))
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
        answer.starts_with("HTTP/1.1 413") && answer.contains("vobiz-tunnel relay: body over"),
        "{answer:?}"
    );
    laptop.harness.tunnel.shutdown().await;
    relay.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_have_the_facts_and_no_body_or_secret() {
    let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |c| {
        c.log_format = LogFormat::Json
    })
    .await;
    let laptop = Laptop::start(&relay, RELAY_TOKEN).await;
    relay.connected("default").await;
    let url = relay.url("/vobiz/hangup");
    let body = format!("{}&Secret={RELAY_TOKEN}", hangup(7));
    let request = callback(
        &format!("localhost:{}", relay.port()),
        "/vobiz/hangup?k=QUERYSECRET",
        body,
        &url,
        7,
        &[],
    );
    assert_eq!(relay.vobiz().send(request).await.status, 200);
    let line = relay.log_line(&["\"callback\""]).await;
    let value: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["path"], "/vobiz/hangup");
    assert_eq!(value["status"], 200);
    assert_eq!(value["route"], "default");
    assert!(value["duration_ms"].as_f64().is_some() && value["time"].is_string());
    let connected = relay.log_line(&["\"tunnel\"", "connected"]).await;
    assert!(
        serde_json::from_str::<Value>(&connected).is_ok(),
        "{connected}"
    );
    let log = relay.log().join("\n");
    for secret in [RELAY_TOKEN, "QUERYSECRET", "CallUUID", common::TOKEN] {
        assert!(!log.contains(secret), "the relay logged {secret:?}:\n{log}");
    }
    laptop.harness.tunnel.shutdown().await;
    relay.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_relay_gets_a_hint() {
    let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |_| {}).await;
    let mut tcp = TcpStream::connect(relay.server.local_addr).await.unwrap();
    tcp.write_all(b"POST /cb HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    within(tcp.read_to_string(&mut answer)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("use an https:// URL"), "{answer}");
    relay.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_to_the_relay_is_told_what_was_wrong() {
    let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |_| {}).await;
    let mut tls = relay.vobiz().tls(false).await;
    tls.write_all(b"POST /cb HTTP/1.1\r\nhost: x\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = within(tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("vobiz-tunnel relay: the request is not valid HTTP/1.1"),
        "{answer}"
    );
    relay.server.shutdown().await;
}

fn relay_cli(args: &[&str], token_env: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .arg("relay")
        .args(args)
        .env_remove("VOBIZ_TUNNEL_RELAY_TOKEN");
    if let Some(token) = token_env {
        command.env("VOBIZ_TUNNEL_RELAY_TOKEN", token);
    }
    let output = command.output().expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_relay_command_needs_a_token_and_never_shows_it() {
    let (code, out, err) = relay_cli(&["--listen", "127.0.0.1:0"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("--token") && err.contains("VOBIZ_TUNNEL_RELAY_TOKEN"),
        "{err}"
    );

    let secret = "ENV-relay-secret-should-not-show";
    let (code, out, err) = relay_cli(&["--help"], Some(secret));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("--token"), "{out}");
    assert!(!out.contains(secret) && !err.contains(secret), "{out}");
}

#[test]
fn routes_that_would_shadow_each_other_are_refused_at_start() {
    let (code, _, err) = relay_cli(
        &[
            "--listen",
            "127.0.0.1:0",
            "--route",
            "/x=T1",
            "--route",
            "/x/=T2",
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("two routes claim /x"), "{err}");
    let (code, _, err) = relay_cli(
        &[
            "--listen",
            "127.0.0.1:0",
            "--route",
            "A.example.com=T1",
            "--route",
            "a.example.com=T2",
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("two routes claim"), "{err}");
    // An allow-list without the switch that turns it on would silently allow everyone.
    let (code, _, err) = relay_cli(
        &["--listen", "127.0.0.1:0", "--allow-ip", "10.0.0.1"],
        Some("relay-token"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--vobiz-ips-only"), "{err}");
    // `/` would take every path from the default route.
    let route = "/=ROOT-route-token-0123456789";
    let (code, _, err) = relay_cli(&["--listen", "127.0.0.1:0", "--route", route], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("would take every path"), "{err}");
    assert!(!err.contains("ROOT-route-token-0123456789"), "{err}");
}

/// Durations past any sane wait are refused with the flag's name (they used to panic), and
/// what is allowed but risky is said before the relay starts.
#[test]
fn out_of_range_waits_are_refused_and_risky_settings_are_warned_about() {
    for flag in ["--hold", "--forward-timeout", "--auth-timeout"] {
        let (code, _, err) = relay_cli(&["--listen", "127.0.0.1:0", flag, "1e20"], Some("t"));
        assert_eq!(code, 1, "{flag}: {err}");
        assert!(err.contains(flag) && err.contains("86400"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Warned, then refused for the address in use, so the test never leaves a relay running.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let args = ["--listen", &address, "--hold", "5", "--route", "/x=short"];
    let (code, _, err) = relay_cli(&args, Some("tiny"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot listen"), "{err}");
    assert!(
        err.contains("token of route default is 4 characters long")
            && err.contains("token of route /x is 5 characters long"),
        "{err}"
    );
    assert!(err.contains("--hold 5.0 s: Vobiz stops waiting"), "{err}");
    assert!(!err.contains("tiny") && !err.contains("short"), "{err}");
}

/// A laptop that froze with its tunnel open (asleep, stopped, stuck) sends no FIN: only the
/// tunnel's pings notice it. A callback must not wait for it past Vobiz's ~3 s budget by much.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_laptop_costs_a_callback_seconds_not_tens_of_seconds() {
    let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |_| {}).await;
    // Says hello, takes the tunnel, then never reads or writes again.
    let mut frozen = raw_tunnel(&relay).await;
    frozen
        .write_all(protocol::hello_line(RELAY_TOKEN).as_bytes())
        .await
        .unwrap();
    relay.connected("default").await;
    let authority = format!("localhost:{}", relay.port());
    let url = relay.url("/vobiz/hangup");
    let request = callback(&authority, "/vobiz/hangup", hangup(1), &url, 1, &[]);
    let started = Instant::now();
    let answer = relay.vobiz().send(request).await;
    let waited = started.elapsed();
    assert!(
        answer.status == 502 || answer.status == 503,
        "{} {}",
        answer.status,
        answer.body
    );
    // Interval + timeout is 3 s; 20 s before. The margin is for a loaded CI machine.
    assert!(waited < Duration::from_secs(6), "answered after {waited:?}");
    assert!(!relay.server.is_connected("default"));
    if answer.status == 502 {
        // Whoever called a public URL reads the reason; the library's words go to the log.
        let said = "vobiz-tunnel relay: the tunnel to the laptop broke while carrying this \
                    callback\n";
        assert_eq!(answer.body, said);
        relay
            .log_line(&["/vobiz/hangup", "502", "broke while carrying", "keep-alive"])
            .await;
    }
    drop(frozen);
    relay.server.shutdown().await;
}

/// A callback the relay answered itself only after a wait (a body over the limit, sent
/// slowly, with no length declared) is recorded by the laptop as taking that wait, not as
/// answered the instant the relay's notice arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_after_a_wait_is_recorded_on_the_laptop_with_that_wait() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = Relay::start(vec![any_route(RELAY_TOKEN)], |c| c.max_body_bytes = 1024).await;
    let laptop = Laptop::start(&relay, RELAY_TOKEN).await;
    relay.connected("default").await;
    let mut stream = relay.vobiz().tls(false).await;
    let head = "POST /slow-and-big HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/x-www-form-urlencoded\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"200\r\n").await.unwrap();
    stream.write_all(&[b'a'; 0x200]).await.unwrap();
    stream.write_all(b"\r\n").await.unwrap();
    stream.flush().await.unwrap();
    let wait = Duration::from_millis(600);
    tokio::time::sleep(wait).await;
    stream.write_all(b"400\r\n").await.unwrap();
    stream.write_all(&[b'a'; 0x400]).await.unwrap();
    stream.write_all(b"\r\n").await.unwrap();
    stream.flush().await.unwrap();
    let mut answer = [0u8; 12];
    common::within(stream.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");

    let recorded = common::within(async {
        loop {
            laptop.harness.tunnel.store.flush().await;
            if !laptop.harness.reader().latest(1).unwrap().is_empty() {
                return laptop.harness.last_recorded().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(recorded.status(), Some(413));
    assert_eq!(recorded.request.target, "/slow-and-big");
    // The relay's clock starts when it has read the head, a moment after the sender wrote it.
    let took = recorded.timings.duration_ms().unwrap();
    assert!(
        took >= (wait.as_millis() - 100) as f64 && took < 10_000.0,
        "recorded as taking {took} ms"
    );
    laptop.harness.tunnel.shutdown().await;
    relay.server.shutdown().await;
}
