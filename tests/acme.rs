//! ACME for real, against Pebble (the ACME test server; Debian package `pebble`): the relay's
//! `relay_server_config(RelayCerts::Acme)` obtains a certificate by TLS-ALPN-01 and by
//! HTTP-01, serves it, a client trusting Pebble's root accepts it, and a second start uses
//! the cache without Pebble. Errors say which side failed. Tests skip loudly when Pebble
//! is not installed (see `certs_support/pebble.rs`).

#[path = "certs_support/pebble.rs"]
mod pebble;
#[path = "certs_support/pki.rs"]
mod pki;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pebble::{free_port, skip, Pebble};
use pki::{client_config, handshake, serve, serve_on, serve_recording, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vobiz_tunnel::relay::config::RelayCerts;
use vobiz_tunnel::tls::acme::{AcmeSettings, ACME_TLS_ALPN};
use vobiz_tunnel::tls::relay_server_config;

/// Pebble validates at once (`PEBBLE_VA_NOSLEEP`); this is slack for a busy machine.
const ISSUE_LIMIT: Duration = Duration::from_secs(90);

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The ACME module explains itself in log lines; show them with a failing test.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("vobiz_tunnel=debug")
        .with_test_writer()
        .try_init();
}

fn acme(pebble: &Pebble, domain: &str, cache: &Path, http: Option<SocketAddr>) -> RelayCerts {
    RelayCerts::Acme {
        domains: vec![domain.to_string()],
        email: Some("relay-tests@vobiz-tunnel.test".into()),
        directory: pebble.directory.clone(),
        directory_ca: Some(pebble.https_ca_file.clone()),
        cache: cache.to_path_buf(),
        http_listen: http,
        // As for `relay --listen 0.0.0.0:8443`: redirects to https must name the port.
        https_port: 8443,
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_in(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[cfg(unix)]
fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .expect("cached file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{} must be 0600", path.display());
}

#[cfg(not(unix))]
fn assert_private(_: &Path) {}

#[tokio::test]
async fn tls_alpn_01_obtains_serves_and_caches_a_certificate() {
    init();
    let domain = "alpn.vobiz-tunnel.test";
    // The relay's listener exists first: Pebble validates TLS-ALPN-01 on its port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let tls_port = listener.local_addr().expect("address").port();
    let pebble = match Pebble::start(free_port(), tls_port) {
        Ok(pebble) => pebble,
        Err(reason) => {
            return skip(
                "tls_alpn_01_obtains_serves_and_caches_a_certificate",
                &reason,
            )
        }
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let certs = acme(&pebble, domain, cache.path(), None);

    // Without HTTP-01 the order needs the relay's listener, so this returns at once.
    let config = tokio::time::timeout(
        Duration::from_secs(20),
        relay_server_config(&certs, vec![b"http/1.1".to_vec()]),
    )
    .await
    .expect("returns without waiting for the CA")
    .expect("ACME config");
    assert_eq!(
        config.alpn_protocols,
        vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()]
    );
    let (addr, negotiated) = serve_recording(listener, config);

    let root = pebble.root().await;
    let client = client_config(std::slice::from_ref(&root), &[b"http/1.1"]);
    let shown = wait_for(
        "a certificate from Pebble by TLS-ALPN-01",
        ISSUE_LIMIT,
        || async {
            handshake(addr, domain, client.clone())
                .await
                .map_err(|e| format!("{e}\n--- pebble log ---\n{}", pebble.log_text()))
        },
    )
    .await;
    assert_eq!(shown.alpn.as_deref(), Some(&b"http/1.1"[..]));
    // Pebble's validation handshakes (acme-tls/1) completed on our listener; nothing
    // listened on its HTTP-01 port, so TLS-ALPN-01 is what proved the domain.
    let validations = negotiated
        .lock()
        .expect("lock")
        .iter()
        .filter(|p| p == &ACME_TLS_ALPN)
        .count();
    assert!(
        validations > 0,
        "no acme-tls/1 handshake reached the relay's listener"
    );

    // Outside a validation, an acme-tls/1 handshake gets no certificate at all.
    let prober = client_config(std::slice::from_ref(&root), &[ACME_TLS_ALPN]);
    assert!(handshake(addr, domain, prober).await.is_err());

    // The cache holds the account and the certificate, keys private.
    let files = files_in(cache.path());
    let named = |suffix: &str| files.iter().find(|p| p.to_string_lossy().ends_with(suffix));
    for private in ["account.json", ".key.pem"] {
        assert_private(named(private).unwrap_or_else(|| panic!("no {private} in {files:?}")));
    }
    assert!(named(".crt.pem").is_some(), "no certificate in {files:?}");

    // A second start uses the cache: Pebble is gone, and the same certificate is served.
    drop(pebble);
    let config = tokio::time::timeout(
        Duration::from_secs(10),
        relay_server_config(&certs, vec![b"http/1.1".to_vec()]),
    )
    .await
    .expect("a cached start does not wait")
    .expect("config from the cache");
    let again = handshake(serve(config).await, domain, client)
        .await
        .expect("the cached certificate is served at once");
    assert_eq!(
        again.leaf, shown.leaf,
        "the very certificate obtained before"
    );
}

#[tokio::test]
async fn a_cached_certificate_near_expiry_is_served_then_renewed_live() {
    init();
    let domain = "renew.vobiz-tunnel.test";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let tls_port = listener.local_addr().expect("address").port();
    let pebble = match Pebble::start(free_port(), tls_port) {
        Ok(pebble) => pebble,
        Err(reason) => {
            return skip(
                "a_cached_certificate_near_expiry_is_served_then_renewed_live",
                &reason,
            )
        }
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let certs = acme(&pebble, domain, cache.path(), None);

    // Plant a certificate from another CA, ten days from expiry, where the cache keeps it.
    let old_ca = pki::TestCa::new("previous CA");
    let old = old_ca.leaf_expiring(&[domain], "expiring", 10);
    let settings = AcmeSettings {
        domains: vec![domain.to_string()],
        email: None,
        directory: pebble.directory.clone(),
        directory_ca: None,
        cache: cache.path().to_path_buf(),
        http_listen: None,
        https_port: 443,
    };
    let (key_path, chain_path) = settings.cached_certificate().expect("cache paths");
    std::fs::write(&key_path, &old.key_pem).expect("plant key");
    std::fs::write(&chain_path, &old.chain_pem).expect("plant chain");

    let config = tokio::time::timeout(
        Duration::from_secs(10),
        relay_server_config(&certs, vec![b"http/1.1".to_vec()]),
    )
    .await
    .expect("a cached start does not wait")
    .expect("config from the cache");
    let addr = serve_on(listener, config);
    let shown = handshake(addr, domain, client_config(&[old_ca.der()], &[]))
        .await
        .expect("the cached certificate is served at once");
    assert_eq!(shown.leaf, old.der);

    // Within 30 days of expiry: renewed in the background and swapped in, same listener.
    let root = pebble.root().await;
    let client = client_config(std::slice::from_ref(&root), &[]);
    let renewed = wait_for("the renewed certificate", ISSUE_LIMIT, || async {
        handshake(addr, domain, client.clone()).await
    })
    .await;
    assert_ne!(renewed.leaf, old.der);
    let cached = std::fs::read_to_string(&chain_path).expect("cached chain");
    assert_ne!(
        cached, old.chain_pem,
        "the renewed certificate replaced the cached one"
    );
}

#[tokio::test]
async fn http_01_obtains_the_certificate_before_returning() {
    init();
    let domain = "http.vobiz-tunnel.test";
    let http_port = free_port();
    // Nothing listens on Pebble's TLS-ALPN-01 port: only HTTP-01 can succeed.
    let pebble = match Pebble::start(http_port, free_port()) {
        Ok(pebble) => pebble,
        Err(reason) => return skip("http_01_obtains_the_certificate_before_returning", &reason),
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let certs = acme(&pebble, domain, cache.path(), Some(loopback(http_port)));
    let config = tokio::time::timeout(ISSUE_LIMIT, relay_server_config(&certs, Vec::new()))
        .await
        .expect("a certificate within the limit")
        .unwrap_or_else(|e| panic!("{e}\n--- pebble log ---\n{}", pebble.log_text()));
    let addr = serve(config.clone()).await;
    let root = pebble.root().await;
    handshake(addr, domain, client_config(&[root], &[]))
        .await
        .expect("served at once, trusted through Pebble's root");
    let log = pebble.log_text();
    assert!(
        log.contains("validate w/ HTTP"),
        "Pebble validated HTTP-01:\n{log}"
    );

    // The HTTP-01 listener stays up, answering unknown tokens with 404 and redirecting
    // everything else to https with the method kept (308).
    let raw = |request: &'static str| async move {
        let mut tcp = tokio::net::TcpStream::connect(loopback(http_port))
            .await
            .expect("connect");
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        let read = tcp.read_to_string(&mut response);
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
        response
    };
    let response = raw("GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let response = raw(
        "POST /hook?a=1 HTTP/1.1\r\nHost: Http.Vobiz-Tunnel.test:80\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 308"), "{response}");
    assert!(
        response.contains("location: https://http.vobiz-tunnel.test:8443/hook?a=1\r\n"),
        "{response}"
    );
    drop(config);
}

#[tokio::test]
async fn a_failed_challenge_is_reported_as_the_challenge_failing() {
    init();
    let domain = "unreachable.vobiz-tunnel.test";
    // We answer HTTP-01 on one port; Pebble looks on another, where nobody listens.
    let (ours, pebbles) = (free_port(), free_port());
    let pebble = match Pebble::start(pebbles, free_port()) {
        Ok(pebble) => pebble,
        Err(reason) => {
            return skip(
                "a_failed_challenge_is_reported_as_the_challenge_failing",
                &reason,
            )
        }
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let certs = acme(&pebble, domain, cache.path(), Some(loopback(ours)));
    let err = tokio::time::timeout(ISSUE_LIMIT, relay_server_config(&certs, Vec::new()))
        .await
        .expect("an answer within the limit")
        .expect_err("no certificate: the challenge cannot succeed")
        .to_string();
    eprintln!("reported: {err}");
    assert!(
        err.contains(&format!("the http-01 challenge for {domain} failed")),
        "{err}"
    );
    assert!(
        err.contains("refused"),
        "Pebble's reason is passed on: {err}"
    );
}

#[tokio::test]
async fn a_refusal_by_the_ca_is_reported_as_the_ca_saying_so() {
    init();
    let pebble = match Pebble::start(free_port(), free_port()) {
        Ok(pebble) => pebble,
        Err(reason) => {
            return skip(
                "a_refusal_by_the_ca_is_reported_as_the_ca_saying_so",
                &reason,
            )
        }
    };
    let cache = tempfile::tempdir().expect("temp dir");
    let mut certs = acme(
        &pebble,
        "refused.vobiz-tunnel.test",
        cache.path(),
        Some(loopback(free_port())),
    );
    if let RelayCerts::Acme { email, .. } = &mut certs {
        *email = Some("not an address".into());
    }
    let err = tokio::time::timeout(ISSUE_LIMIT, relay_server_config(&certs, Vec::new()))
        .await
        .expect("an answer within the limit")
        .expect_err("Pebble refuses the account")
        .to_string();
    eprintln!("reported: {err}");
    assert!(
        err.contains(&format!("the CA at {} said", pebble.directory)),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_ca_is_reported_as_unreachable() {
    // No Pebble needed: nothing listens at the directory address.
    init();
    let cache = tempfile::tempdir().expect("temp dir");
    let directory = format!("https://127.0.0.1:{}/dir", free_port());
    let certs = RelayCerts::Acme {
        domains: vec!["nowhere.vobiz-tunnel.test".into()],
        email: None,
        directory: directory.clone(),
        directory_ca: None,
        cache: cache.path().to_path_buf(),
        http_listen: Some(loopback(free_port())),
        https_port: 443,
    };
    let err = tokio::time::timeout(ISSUE_LIMIT, relay_server_config(&certs, Vec::new()))
        .await
        .expect("an answer within the limit")
        .expect_err("no CA, no certificate")
        .to_string();
    eprintln!("reported: {err}");
    assert!(
        err.contains(&format!("cannot reach the CA at {directory}")),
        "{err}"
    );
}
