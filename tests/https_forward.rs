//! An https local server whose certificate a CA of the developer's own issued (mkcert's, or a
//! self-signed one): trusted with `--forward-ca`, a 502 that names the flag without it, and a
//! CA file that cannot be used stops the start with the reason.

mod common;
#[path = "certs_support/pki.rs"]
mod pki;

use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use common::{config, form_post, Harness};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use vobiz_tunnel::cli::Cli;
use vobiz_tunnel::config::ListenConfig;

/// An https server on 127.0.0.1 answering every request 200 "hello", with a certificate for
/// localhost issued by `ca`.
async fn https_server(ca: &pki::TestCa) -> u16 {
    common::init_crypto();
    let leaf = ca.leaf(&["localhost"], "local server");
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes());
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<_> = chain.map(Result::unwrap).collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(|_: Request<hyper::body::Incoming>| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            "hello",
                        ))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

/// `listen` parsed from `args` (after the program name), as the command line gives it.
fn parsed(args: &[&str]) -> Result<ListenConfig, String> {
    let cli = Cli::try_parse_from(std::iter::once("vobiz-tunnel").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    ListenConfig::from_args(&cli.listen).map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_local_server_with_its_own_ca_is_trusted_with_forward_ca() {
    let ca = pki::TestCa::new("the developer's CA");
    let port = https_server(&ca).await;
    let forward = format!("https://localhost:{port}");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let ca_file = dir.path().join("rootCA.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    for trusted in [false, true] {
        let mut args = vec!["--forward", &forward];
        let ca_path = ca_file.to_str().unwrap();
        if trusted {
            args.extend(["--forward-ca", ca_path]);
        }
        let from_cli = parsed(&args).unwrap();
        let mut settings = config(&dir, &forward);
        // The listener's own dev CA first, as from the command line, then --forward-ca's.
        settings
            .upstream_roots
            .extend(from_cli.upstream_roots.into_iter().skip(1));
        let harness = Harness::start(settings, dir.clone()).await;
        let answer = harness
            .client()
            .send(form_post(&harness, "/cb", "Event=Hangup", &[]))
            .await;
        let recorded = harness.last_recorded().await;
        match trusted {
            true => {
                assert_eq!(answer.status, 200, "{}", answer.body);
                assert_eq!(answer.body, "hello");
            }
            false => {
                assert_eq!(answer.status, 502, "{}", answer.body);
                let error = recorded.error.unwrap_or_default();
                assert!(error.contains("give it with --forward-ca"), "{error}");
            }
        }
        harness.tunnel.shutdown().await;
    }
}

#[test]
fn a_ca_file_that_cannot_be_used_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(
        &key,
        pki::TestCa::new("x").leaf(&["localhost"], "x").key_pem,
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for (flag, path, reason) in [
        ("--forward-ca", &missing, "cannot read it"),
        ("--forward-ca", &key, "it holds no PEM certificate"),
        ("--relay-ca", &missing, "cannot read it"),
        ("--relay-ca", &key, "it holds no PEM certificate"),
    ] {
        let path = path.to_str().unwrap();
        let mut args = vec![flag, path];
        if flag == "--relay-ca" {
            args.extend(["--relay", "relay.example.com", "--relay-token", "t"]);
        }
        let error = parsed(&args).unwrap_err();
        assert!(
            error.contains(&format!("{flag} {path}: {reason}")),
            "{flag}: {error}"
        );
    }
}
