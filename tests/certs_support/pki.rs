//! Test helpers for the relay's certificates: a throw-away CA issuing leaf certificates, a
//! TLS listener serving a `ServerConfig`, and a client that reports which certificate it was
//! shown. Included with `#[path]` by `cert_reload.rs` and `acme.rs`.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};

/// A CA made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate: `chain_pem` is leaf then CA, like certbot's fullchain.pem.
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf for `names` (DNS names or IP literals), its common name `label` so that two
    /// leaves are told apart in failure messages.
    pub fn leaf(&self, names: &[&str], label: &str) -> Leaf {
        self.leaf_with(names, label, |_| {})
    }

    /// A leaf issued 80 days ago that expires in `days_left` days.
    pub fn leaf_expiring(&self, names: &[&str], label: &str, days_left: i64) -> Leaf {
        let now = time::OffsetDateTime::now_utc();
        self.leaf_with(names, label, |params| {
            params.not_before = now - time::Duration::days(80);
            params.not_after = now + time::Duration::days(days_left);
        })
    }

    fn leaf_with(
        &self,
        names: &[&str],
        label: &str,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let mut params = CertificateParams::new(Vec::new()).expect("leaf params");
        for name in names {
            params.subject_alt_names.push(match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().expect("DNS name")),
            });
        }
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, label);
        adjust(&mut params);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// A client trusting only `roots`, offering `alpn`, without resumption: a resumed TLS 1.3
/// session shows no certificate, and every connection here must show the current one.
pub fn client_config(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("root certificate");
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// What one handshake showed: the leaf certificate and the negotiated protocol.
pub struct Shown {
    pub leaf: CertificateDer<'static>,
    pub alpn: Option<Vec<u8>>,
}

/// Connects to `addr` as `name` and completes a verified handshake, within 10 s.
pub async fn handshake(
    addr: SocketAddr,
    name: &str,
    config: Arc<ClientConfig>,
) -> Result<Shown, String> {
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (_, session) = tls.get_ref();
        let leaf = session
            .peer_certificates()
            .and_then(|certs| certs.first().cloned())
            .ok_or("no certificate shown")?;
        Ok(Shown {
            leaf: leaf.into_owned(),
            alpn: session.alpn_protocol().map(<[u8]>::to_vec),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("no handshake within 10 s".into()))
}

/// Serves TLS handshakes with `config` on `listener` (then drops each connection), the way
/// the relay's accept loop would; ends with the test's runtime.
pub fn serve_on(listener: TcpListener, config: Arc<ServerConfig>) -> SocketAddr {
    serve_recording(listener, config).0
}

/// [`serve_on`], also recording the protocol negotiated by each completed handshake (so a
/// test can see the CA's `acme-tls/1` validation connections succeed).
pub fn serve_recording(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let addr = listener.local_addr().expect("listener address");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let accepted = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                if let Ok(Ok(tls)) = accepted.await {
                    let alpn = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
                    record.lock().expect("record lock").push(alpn);
                }
            });
        }
    });
    (addr, seen)
}

/// [`serve_on`] a new listener on 127.0.0.1:0.
pub async fn serve(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    serve_on(listener, config)
}

/// Polls `check` every 250 ms until it yields a value; panics after `limit`, saying
/// what was awaited and the last complaint.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if start.elapsed() > limit => {
                panic!("{what}: not within {} s; last: {last}", limit.as_secs())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The common name of a certificate, for readable assertions.
pub fn label(der: &CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, cert)| {
            cert.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok().map(str::to_string))
        })
        .unwrap_or_else(|| "<unnamed>".into())
}
