//! `trigger` against servers it cannot trust or understand: each failure is said in plain
//! words with what to do, the library's words after it, and "cannot reach" only for a
//! server that was not reached. A --certs-dir without a dev CA is warned about.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::common::{self, Reply, TOKEN};
use super::run_binary;

/// A server certificate for `names` and the PEM of the CA that signed it.
struct Signed {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// Every `listen` names its dev CA alike; rcgen too, unless told otherwise.
const DEV_CA_NAME: &str = "vobiz-tunnel development CA";

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

fn signed_for(names: &[&str]) -> Signed {
    signed_by_ca_named(DEV_CA_NAME, names)
}

fn signed_by_ca_named(ca_name: &str, names: &[&str]) -> Signed {
    let ca_key = KeyPair::generate().unwrap();
    let params = ca_params(ca_name);
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Signed {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

/// A self-signed certificate made with the CA flag, as many quick recipes make them.
fn self_signed_ca_for(name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let mut params = ca_params(name);
    params.subject_alt_names = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .subject_alt_names;
    let certificate = params.self_signed(&key).unwrap();
    (
        vec![certificate.der().clone()],
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
}

/// A TLS server on loopback presenting `chain`, answering 200 to whoever trusts it.
async fn tls_server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> SocketAddr {
    common::init_crypto();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = tls.read(&mut [0; 8192]).await;
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// A folder holding `ca_pem` as the dev CA.
fn certs_dir_with(ca_pem: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dev-ca.pem"), ca_pem).unwrap();
    dir
}

/// `trigger hangup --to url`, with `--certs-dir` when given; (status, stdout, stderr).
async fn hangup_to(url: &str, certs_dir: Option<&Path>) -> (i32, String, String) {
    let mut args = vec!["trigger", "hangup", "--to", url, "--auth-token", TOKEN];
    if let Some(certs_dir) = certs_dir {
        args.extend(["--certs-dir", certs_dir.to_str().unwrap()]);
    }
    run_binary(&args).await
}

fn assert_reached(out: &str) {
    assert!(
        !out.contains("cannot reach"),
        "the server was reached:\n{out}"
    );
    assert!(
        out.contains("(details: "),
        "the library's words follow:\n{out}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_says_where_the_dev_ca_was_looked_for() {
    let server = signed_for(&["127.0.0.1"]);
    let url = format!("https://{}/x", tls_server(server.chain, server.key).await);

    // Not given, the folder is ./certs, which has no dev CA: nothing to warn about before.
    let (code, out, err) = hangup_to(&url, None).await;
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "FAILED: {url}: the server's certificate is not trusted: no dev CA found at \
             certs/dev-ca.pem; pass --certs-dir DIR where `listen` wrote its certificates, \
             or --insecure"
        )),
        "{out}"
    );
    assert_reached(&out);
    assert!(!err.contains("warning"), "{err}");

    // Given, and missing or empty: warned about at once.
    let (code, out, err) = hangup_to(&url, Some(Path::new("/nonexistent/certs"))).await;
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "warning: the certificate folder /nonexistent/certs (--certs-dir or \
             VOBIZ_TUNNEL_CERTS_DIR) does not exist"
        ),
        "{err}"
    );
    assert!(
        out.contains("no dev CA found at /nonexistent/certs/dev-ca.pem"),
        "{out}"
    );
    let empty = tempfile::tempdir().unwrap();
    let (_, _, err) = hangup_to(&url, Some(empty.path())).await;
    assert!(
        err.contains("(--certs-dir or VOBIZ_TUNNEL_CERTS_DIR) has no dev CA ("),
        "{err}"
    );

    // Another listener's dev CA, of the same name, does not vouch for this server.
    let other = certs_dir_with(&signed_for(&["127.0.0.1"]).ca_pem);
    let (code, out, err) = hangup_to(&url, Some(other.path())).await;
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "not trusted: it was signed by a CA that has the name of the dev CA at \
             {}/dev-ca.pem but is another one (another `listen`'s?); pass --certs-dir DIR"
                .replace("{}", other.path().to_str().unwrap())
                .as_str()
        ),
        "{out}"
    );
    assert_reached(&out);
    assert!(!err.contains("warning"), "{err}");
    // Nor does a CA of another name.
    let unrelated = certs_dir_with(&signed_by_ca_named("Some CA", &["127.0.0.1"]).ca_pem);
    let (code, out, _) = hangup_to(&url, Some(unrelated.path())).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("not trusted: it is signed neither by a public CA nor by the dev CA at"),
        "{out}"
    );
    assert_reached(&out);

    // Its own CA does.
    let own = certs_dir_with(&server.ca_pem);
    let (code, out, _) = hangup_to(&url, Some(own.path())).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_named() {
    let server = signed_for(&["other.example"]);
    let trusted = certs_dir_with(&server.ca_pem);
    let url = format!("https://{}/x", tls_server(server.chain, server.key).await);
    let (code, out, _) = hangup_to(&url, Some(trusted.path())).await;
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "the server's certificate is not valid for the host name 127.0.0.1: it names \
             other.example; call it by one of those, or pass --insecure"
        ),
        "{out}"
    );
    assert_reached(&out);
}

#[tokio::test]
async fn a_self_signed_ca_certificate_is_untrusted_in_plain_words() {
    let (chain, key) = self_signed_ca_for("127.0.0.1");
    let url = format!("https://{}/x", tls_server(chain, key).await);
    let (code, out, _) = hangup_to(&url, None).await;
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "the server's certificate is not trusted: it is a CA's certificate, not a \
             server's (self-signed?); no dev CA found at"
        ),
        "{out}"
    );
    assert_reached(&out);
}

#[tokio::test]
async fn a_server_that_does_not_speak_what_the_url_says() {
    // https:// to a plain HTTP server.
    let plain = common::upstream(Reply::default()).await;
    let url = format!("https://{}/x", plain.addr);
    let (code, out, _) = hangup_to(&url, None).await;
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "{url}: the server does not speak TLS (an http:// server? then use http://)"
        )),
        "{out}"
    );
    assert_reached(&out);

    // Garbage instead of an HTTP answer.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            // After the request, as a server that is not HTTP would answer it.
            let _ = tcp.read(&mut [0; 4096]).await;
            let _ = tcp.write_all(b"garbage\r\n\r\n").await;
        }
    });
    let url = format!("http://{addr}/x");
    let (code, out, _) = hangup_to(&url, None).await;
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("{url} answered something that is not HTTP")),
        "{out}"
    );
    assert_reached(&out);

    // http:// to a TLS server.
    let tls = signed_for(&["127.0.0.1"]);
    let url = format!("http://{}/x", tls_server(tls.chain, tls.key).await);
    let (code, out, _) = hangup_to(&url, None).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("; an https server? then use https://"),
        "{out}"
    );
    assert_reached(&out);

    // A server that hangs up at once, in the TLS handshake or before answering.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp.read(&mut [0; 4096]).await;
        }
    });
    let (code, out, _) = hangup_to(&format!("https://{addr}/x"), None).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("the server closed the connection during the TLS handshake"),
        "{out}"
    );
    assert_reached(&out);
    let url = format!("http://{addr}/x");
    let (code, out, _) = hangup_to(&url, None).await;
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("{url} closed the connection without answering")),
        "{out}"
    );
    assert_reached(&out);

    // Nothing listening: that one is not reached.
    drop(plain);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/x", closed.local_addr().unwrap());
    drop(closed);
    let (code, out, _) = hangup_to(&url, None).await;
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("FAILED: cannot reach {url}: ")),
        "{out}"
    );
}
