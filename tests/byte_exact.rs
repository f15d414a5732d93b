//! Byte-exactness on the wire: a raw TLS client writes a request exactly as Vobiz would, and a
//! raw TCP upstream reads what arrives. Header names keep their case and order; the body is
//! the same bytes; only the X-Forwarded-* headers are added. The record, and an as-is replay
//! of it, keep them too.

mod common;

use std::sync::Arc;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn header_case_order_and_body_bytes_survive_the_proxy() {
    let (upstream_url, received) = raw_upstream().await;
    let harness = Harness::with_forward(&upstream_url).await;
    let port = harness.port();
    let url = harness.url("/vobiz/hangup");
    let signatures = vobiz_headers(&url, TOKEN, Some(MAIN_TOKEN));
    let mut head = format!(
        "POST /vobiz/hangup HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: Vobiz\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n"
    );
    for (name, value) in &signatures {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        HANGUP_BODY.len()
    ));
    let sent_head = head.clone();

    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(harness.ca_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(harness.tunnel.local_addr)
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(HANGUP_BODY.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within(tls.read_to_end(&mut answer)).await.ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("<Response/>"), "{answer}");

    let received = within(received).await.unwrap();
    let split = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let got_head = String::from_utf8_lossy(&received[..split]).into_owned();
    assert_eq!(
        &received[split + 4..],
        HANGUP_BODY.as_bytes(),
        "body bytes unchanged"
    );

    let got_lines: Vec<&str> = got_head.lines().collect();
    assert_eq!(got_lines[0], "POST /vobiz/hangup HTTP/1.1");
    // Every header the sender sent (except the hop-by-hop Connection) arrives with the same
    // name case and value, in the same order.
    let sent_lines: Vec<&str> = sent_head
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with("Connection:"))
        .collect();
    let positions: Vec<usize> = sent_lines
        .iter()
        .map(|line| {
            got_lines
                .iter()
                .position(|got| got == line)
                .unwrap_or_else(|| panic!("{line:?} did not arrive as sent:\n{got_head}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "order kept:\n{got_head}"
    );
    assert!(
        !got_head.to_ascii_lowercase().contains("connection: close"),
        "{got_head}"
    );
    for added in ["x-forwarded-for: 127.0.0.1", "x-forwarded-proto: https"] {
        assert!(
            got_head.to_ascii_lowercase().contains(added),
            "{added}:\n{got_head}"
        );
    }

    // The record holds the headers as they were sent: names in their case, in their order.
    let recorded = harness.last_recorded().await;
    let recorded_lines: Vec<String> = recorded
        .request
        .headers
        .0
        .iter()
        .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value)))
        .collect();
    let all_sent: Vec<&str> = sent_head
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(recorded_lines, all_sent);
    assert_eq!(
        recorded.verdict.status,
        vobiz_tunnel::signature::VerdictStatus::Valid,
        "{:?}",
        recorded.verdict
    );

    // An as-is replay sends them so again, with the original sender in X-Forwarded-For.
    let (replay_url, replayed) = raw_upstream().await;
    let id = recorded.id.unwrap().to_string();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vobiz-tunnel"))
        .args(["replay", &id, "--forward", &replay_url])
        .args(["--store", harness.config.store.to_str().unwrap()])
        .env_remove("VOBIZ_AUTH_TOKEN")
        .output();
    let output = within(output).await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let replayed = within(replayed).await.unwrap();
    let replayed = String::from_utf8_lossy(&replayed).into_owned();
    for line in all_sent
        .iter()
        .filter(|l| !l.starts_with("Connection:") && !l.starts_with("Host:"))
    {
        assert!(
            replayed.contains(&format!("\r\n{line}\r\n")),
            "{line:?}:\n{replayed}"
        );
    }
    assert!(
        replayed
            .to_ascii_lowercase()
            .contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{replayed}"
    );
    harness.tunnel.shutdown().await;
}

/// A status the local server chose outside the standard ones reaches the sender with an empty
/// reason phrase, not a placeholder of the proxy's (`299 <none>`).
#[tokio::test]
async fn a_status_without_a_standard_reason_gets_no_made_up_one() {
    let upstream = upstream(Reply {
        status: 299,
        ..Reply::default()
    })
    .await;
    let harness = Harness::with_forward(&upstream.url()).await;
    let mut tls = harness.client().tls_stream(b"http/1.1").await;
    let port = harness.port();
    let request = format!(
        "POST /cb HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Length: 3\r\n\
         Connection: close\r\n\r\na=b"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within(tls.read_to_end(&mut answer)).await.ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 299 \r\n"), "{answer}");
    assert!(!answer.contains("<none>"), "{answer}");
    harness.tunnel.shutdown().await;
}
