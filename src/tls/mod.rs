//! Certificates and TLS settings: loading PEM files, the generated development CA and
//! certificate, and the rustls configurations (server, and clients that trust the dev CA).
//! The relay's certificates (PEM files reloaded on change, ACME) are in [`reload`] and
//! [`acme`], put together by [`relay_server_config`].

pub mod acme;
mod dev;
pub mod reload;

pub use dev::ensure_dev_identity;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerSessionMemoryCache;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Names the generated certificate is valid for.
pub const DEV_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];
/// File names inside the certificate folder.
pub const DEV_CA_FILE: &str = "dev-ca.pem";
pub(crate) const DEV_CA_KEY_FILE: &str = "dev-ca-key.pem";
pub const DEV_CERT_FILE: &str = "dev-cert.pem";
pub const DEV_KEY_FILE: &str = "dev-key.pem";

/// Why certificates could not be loaded or made. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {reason}")]
    Chain { path: PathBuf, reason: String },
    #[error("no certificate found in {0}")]
    EmptyChain(PathBuf),
    #[error("cannot read the private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the certificate and key do not go together: {}", mismatch_reason(.0))]
    Mismatch(rustls::Error),
    #[error("cannot write the development certificate into {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA answered, and refused (its problem document, or an unusable answer).
    #[error("ACME: the CA at {directory} said: {reason}")]
    AcmeCa { directory: String, reason: String },
    /// We could not talk to the CA at all.
    #[error("ACME: cannot reach the CA at {directory}: {reason}")]
    AcmeUnreachable { directory: String, reason: String },
    /// The CA tried to validate our answer to a challenge and could not.
    #[error("ACME: the {challenge} challenge for {domain} failed: {reason}")]
    AcmeChallenge {
        domain: String,
        challenge: String,
        reason: String,
    },
    #[error("ACME: no certificate for {domains} within {seconds} s")]
    AcmeTimeout { domains: String, seconds: u64 },
    /// A problem on our side: settings, the cache folder, the HTTP-01 listener.
    #[error("ACME: {0}")]
    Acme(String),
}

/// Why a certificate and a key were refused, in words (rustls says `KeyMismatch`).
fn mismatch_reason(error: &rustls::Error) -> String {
    use rustls::InconsistentKeys;
    match error {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            "the key is not the one the certificate was issued for (a renewed certificate \
             beside an old key, or the files of two certificates?)"
                .into()
        }
        rustls::Error::InconsistentKeys(InconsistentKeys::Unknown) => {
            "the key's type cannot be checked against the certificate".into()
        }
        other => other.to_string(),
    }
}

/// A certificate chain and its private key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Loads a PEM chain (leaf first, as certbot's `fullchain.pem`) and a PEM key.
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Chain {
                path: cert.to_path_buf(),
                reason: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::EmptyChain(cert.to_path_buf()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
            path: key.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Identity { chain, key })
    }
}

/// The listener's TLS settings: TLS 1.2 and 1.3 only (rustls offers only forward-secret AEAD
/// suites), ALPN `h2` and `http/1.1`, session resumption by cache and by tickets so that
/// senders opening one connection per callback pay for a full handshake only once. Checked by
/// `tests/tls_config.rs` and, from outside with testssl.sh, by `tests/tls/testssl.sh`.
pub fn server_config(identity: Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_single_cert(identity.chain, identity.key)
    .map_err(TlsError::Mismatch)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(16 * 1024);
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// The relay's TLS settings: like [`server_config`] (TLS 1.2 and 1.3, session resumption by
/// cache and tickets) with the caller's `alpn` list, and the certificate from `certs`:
///
/// - `Files`: the PEM pair, reloaded when either file changes (see [`reload`]); an error
///   now if they cannot be used now.
/// - `Acme`: see [`acme`]; `acme-tls/1` is added to the ALPN list so the CA's TLS-ALPN-01
///   handshakes succeed (close those connections after the handshake). Waits for a first
///   certificate only when HTTP-01 can obtain it without the relay's listener.
/// - `Dev`: the generated development certificate.
pub async fn relay_server_config(
    certs: &crate::relay::config::RelayCerts,
    mut alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    use crate::relay::config::RelayCerts;
    let builder = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth();
    let mut config = match certs {
        RelayCerts::Files { cert, key } => builder.with_cert_resolver(
            reload::ReloadingResolver::watch(cert, key, reload::POLL_EVERY)?,
        ),
        RelayCerts::Acme {
            domains,
            email,
            directory,
            directory_ca,
            cache,
            http_listen,
            https_port,
        } => {
            let settings = acme::AcmeSettings {
                domains: domains.clone(),
                email: email.clone(),
                directory: directory.clone(),
                directory_ca: directory_ca.clone(),
                cache: cache.clone(),
                http_listen: *http_listen,
                https_port: *https_port,
            };
            if !alpn.iter().any(|p| p == acme::ACME_TLS_ALPN) {
                alpn.push(acme::ACME_TLS_ALPN.to_vec());
            }
            builder.with_cert_resolver(acme::AcmeCertificates::start(settings).await?)
        }
        RelayCerts::Dev { dir } => {
            let identity = ensure_dev_identity(dir)?;
            builder
                .with_single_cert(identity.chain, identity.key)
                .map_err(TlsError::Mismatch)?
        }
    };
    config.alpn_protocols = alpn;
    config.session_storage = ServerSessionMemoryCache::new(16 * 1024);
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// Root certificates for outgoing connections: the public web PKI plus the development CA
/// and any extra PEM files given (a local https server, a private relay).
/// What an exchange records of the TLS session it came over.
pub fn session_info(session: &rustls::ServerConnection) -> crate::exchange::TlsInfo {
    crate::exchange::TlsInfo {
        version: session.protocol_version().map(|v| {
            v.as_str()
                .map(|s| s.replace('_', "."))
                .unwrap_or_else(|| format!("{v:?}"))
        }),
        alpn: session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        sni: session.server_name().map(str::to_string),
    }
}

pub fn root_store(extra_pem_files: &[PathBuf]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra_pem_files {
        match CertificateDer::pem_file_iter(path) {
            Ok(certs) => {
                for cert in certs.flatten() {
                    if let Err(e) = roots.add(cert) {
                        tracing::warn!("ignoring a certificate in {}: {e}", path.display());
                    }
                }
            }
            Err(e) => tracing::debug!("no extra roots from {}: {e}", path.display()),
        }
    }
    roots
}

/// Why the CA file a user named (`--relay-ca`, `--forward-ca`) cannot be trusted: unreadable,
/// or without a PEM certificate in it (a key given by mistake). `None` when it can. Checked at
/// start-up: [`root_store`] skips what it cannot read, and a TLS error on every connection
/// would not name the file.
pub fn ca_file_problem(path: &std::path::Path) -> Option<String> {
    match CertificateDer::pem_file_iter(path) {
        Err(e) => Some(format!("cannot read it: {e}")),
        Ok(certs) => match certs.flatten().count() {
            0 => Some("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()),
            _ => None,
        },
    }
}

/// A client configuration trusting [`root_store`], offering `alpn`.
pub fn client_config(extra_pem_files: &[PathBuf], alpn: &[&[u8]]) -> ClientConfig {
    let mut config = ClientConfig::builder()
        .with_root_certificates(root_store(extra_pem_files))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_identity_is_generated_once_and_reused() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_dev_identity(dir.path()).unwrap();
        assert_eq!(first.chain.len(), 2, "leaf followed by the CA");
        let second = ensure_dev_identity(dir.path()).unwrap();
        assert_eq!(first.chain, second.chain);
        assert!(server_config(second).is_ok());
    }

    #[test]
    fn unreadable_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = Identity::load(&missing, &missing)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("nope.pem"), "{err}");
    }
}
