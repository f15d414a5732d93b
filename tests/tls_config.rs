//! The listener's TLS configuration, quickly: TLS 1.2 and 1.3 only, forward-secret AEAD
//! cipher suites only. `tests/tls/testssl.sh` checks the same from outside with testssl.sh
//! (slow, so not part of `cargo test`); these tests keep CI honest without it.
//!
//! rustls cannot offer what it does not implement (TLS 1.0, RSA key exchange, CBC), so the
//! refusals are checked with hand-written ClientHellos, each next to a control hello built the
//! same way that the server does accept.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::ServerName;
use rustls::{CipherSuite, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TLS10: u16 = 0x0301;
const TLS11: u16 = 0x0302;
const TLS12: u16 = 0x0303;
/// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: forward-secret AEAD, the control.
const GOOD: u16 = 0xc02b;
const ALERT: u8 = 0x15;
const HANDSHAKE: u8 = 0x16;
const PROTOCOL_VERSION: u8 = 70;
const HANDSHAKE_FAILURE: u8 = 40;

/// Suites that are not forward-secret AEAD: RSA key exchange, CBC, 3DES, RC4, NULL.
const REFUSED: &[(u16, &str)] = &[
    (
        0x009c,
        "TLS_RSA_WITH_AES_128_GCM_SHA256 (no forward secrecy)",
    ),
    (
        0x009d,
        "TLS_RSA_WITH_AES_256_GCM_SHA384 (no forward secrecy)",
    ),
    (0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA"),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    (0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    (0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA"),
    (0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"),
    (0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA (not AEAD)"),
    (0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA (not AEAD)"),
    (0xc023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 (not AEAD)"),
    (0xc024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384 (not AEAD)"),
    (0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA (not AEAD)"),
    (0xc027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256 (not AEAD)"),
    (0xc008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    (0xc007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"),
    (0xc006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA"),
    (0x0000, "TLS_NULL_WITH_NULL_NULL"),
];

/// Every suite the server may choose: TLS 1.3's (always ephemeral, always AEAD) and TLS 1.2's
/// ECDHE with GCM or ChaCha20-Poly1305.
const ALLOWED: &[CipherSuite] = &[
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend((data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn with_u16_length(data: Vec<u8>) -> Vec<u8> {
    let mut out = (data.len() as u16).to_be_bytes().to_vec();
    out.extend(data);
    out
}

/// A TLS 1.2-style ClientHello (no supported_versions, so `version` is the highest offered)
/// with the usual extensions of a real client: SNI localhost, the ECDHE groups, point
/// formats, signature algorithms, extended master secret, renegotiation info.
fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend([0x5a; 32]); // random
    body.push(0); // no session id
    body.extend(with_u16_length(u16s(suites)));
    body.extend([1, 0]); // compression: null only
    let name = b"localhost";
    let mut sni = vec![0]; // host_name
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let mut extensions = extension(0x0000, &with_u16_length(sni));
    extensions.extend(extension(
        0x000a,
        &with_u16_length(u16s(&[0x001d, 0x0017, 0x0018])),
    ));
    extensions.extend(extension(0x000b, &[1, 0]));
    extensions.extend(extension(
        0x000d,
        &with_u16_length(u16s(&[0x0403, 0x0503, 0x0804, 0x0805, 0x0401, 0x0501])),
    ));
    extensions.extend(extension(0x0017, &[]));
    extensions.extend(extension(0xff01, &[0]));
    body.extend(with_u16_length(extensions));

    let mut handshake = vec![1]; // client_hello
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![HANDSHAKE];
    record.extend(TLS10.to_be_bytes()); // the record version clients use for the first flight
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// How the server answered a ClientHello.
#[derive(Debug, PartialEq)]
enum Answer {
    ServerHello {
        version: u16,
        suite: u16,
    },
    Alert(u8),
    /// Closed (or nothing) without an alert.
    Nothing(Vec<u8>),
}

/// What the control hello gets: the good suite, over TLS 1.2.
const GOOD_OVER_TLS12: Answer = Answer::ServerHello {
    version: TLS12,
    suite: GOOD,
};

async fn answer_to(harness: &Harness, hello: &[u8]) -> Answer {
    let mut tcp = within(TcpStream::connect(harness.tunnel.local_addr))
        .await
        .unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        // Enough for the record header and the start of a ServerHello or an alert.
        while received.len() < 5 + 4 + 2 + 32 + 1 + 32 + 2 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    match received.as_slice() {
        [ALERT, _, _, _, _, _level, description, ..] => Answer::Alert(*description),
        [HANDSHAKE, _, _, _, _, 2, _, _, _, rest @ ..] if rest.len() >= 35 => {
            let version = u16::from_be_bytes([rest[0], rest[1]]);
            let session = rest[34] as usize;
            let at = 35 + session;
            match rest.get(at..at + 2) {
                Some(suite) => Answer::ServerHello {
                    version,
                    suite: u16::from_be_bytes([suite[0], suite[1]]),
                },
                None => Answer::Nothing(received),
            }
        }
        _ => Answer::Nothing(received),
    }
}

async fn listener() -> Harness {
    Harness::with_forward("http://127.0.0.1:9").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_hello_is_accepted_with_tls_1_2() {
    let harness = listener().await;
    let answer = answer_to(&harness, &client_hello(TLS12, &[GOOD])).await;
    assert_eq!(answer, GOOD_OVER_TLS12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_0_and_1_1_are_refused() {
    let harness = listener().await;
    // The good suite and the CBC ones a TLS 1.0 client would offer: refused for the version.
    let suites = [GOOD, 0xc009, 0xc013, 0x002f, 0x0035];
    for version in [TLS10, TLS11] {
        let answer = answer_to(&harness, &client_hello(version, &suites)).await;
        assert_eq!(
            answer,
            Answer::Alert(PROTOCOL_VERSION),
            "a ClientHello offering at most {version:#06x}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suites_without_forward_secrecy_or_aead_are_refused() {
    let harness = listener().await;
    for (suite, name) in REFUSED {
        let answer = answer_to(&harness, &client_hello(TLS12, &[*suite])).await;
        assert_eq!(answer, Answer::Alert(HANDSHAKE_FAILURE), "{name}");
    }
    // Offered together with a good one (in front of it), the good one is chosen.
    let mut all: Vec<u16> = REFUSED.iter().map(|(suite, _)| *suite).collect();
    all.push(GOOD);
    let answer = answer_to(&harness, &client_hello(TLS12, &all)).await;
    assert_eq!(answer, GOOD_OVER_TLS12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_negotiable_suite_is_forward_secret_aead_over_tls_1_2_or_1_3() {
    init_crypto();
    let harness = listener().await;
    let roots = {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(harness.ca_path()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        Arc::new(roots)
    };
    let mut negotiated = Vec::new();
    // One client per suite rustls implements, offering only it.
    for suite in rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES {
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: vec![*suite],
            ..rustls::crypto::aws_lc_rs::default_provider()
        };
        let versions: &[&rustls::SupportedProtocolVersion] = match suite.tls13() {
            Some(_) => &[&rustls::version::TLS13],
            None => &[&rustls::version::TLS12],
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let tcp = within(TcpStream::connect(harness.tunnel.local_addr))
            .await
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from("localhost").unwrap();
        let Ok(Ok(tls)) =
            tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp)).await
        else {
            continue; // e.g. an ECDHE_RSA suite with the ECDSA development certificate
        };
        let (_, connection) = tls.get_ref();
        let chosen = connection.negotiated_cipher_suite().unwrap().suite();
        let version = connection.protocol_version().unwrap();
        assert_eq!(chosen, suite.suite());
        assert!(ALLOWED.contains(&chosen), "{chosen:?} is not allowed");
        assert!(
            matches!(version, ProtocolVersion::TLSv1_2 | ProtocolVersion::TLSv1_3),
            "{version:?}"
        );
        negotiated.push((version, chosen));
    }
    for version in [ProtocolVersion::TLSv1_2, ProtocolVersion::TLSv1_3] {
        assert!(
            negotiated.iter().any(|(v, _)| *v == version),
            "{version:?} is offered: {negotiated:?}"
        );
    }
}
