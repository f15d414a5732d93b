//! The answers to ACME challenges while an order is being validated: TLS-ALPN-01
//! certificates by domain (served by the relay's own resolver) and HTTP-01 key
//! authorizations by token (served by the HTTP-01 listener). Answers are removed when the
//! order is over, by the [`Provisioned`] guard, whatever the outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use instant_acme::KeyAuthorization;
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::super::TlsError;

/// Challenge answers currently published.
#[derive(Debug, Default)]
pub struct Challenges {
    tls_alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    http: Mutex<HashMap<String, String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain map inserts and removes cannot leave a map half-updated, so a poisoned lock
    // still holds usable data.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Challenges {
    /// The TLS-ALPN-01 certificate for `domain` (the SNI of the validation handshake).
    pub fn tls_alpn(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        lock(&self.tls_alpn)
            .get(&domain.to_ascii_lowercase())
            .cloned()
    }

    /// The HTTP-01 response body for `token`.
    pub fn http(&self, token: &str) -> Option<String> {
        lock(&self.http).get(token).cloned()
    }
}

/// RFC 8737: a self-signed certificate naming only `domain` and carrying the critical
/// acmeIdentifier extension with the SHA-256 of the key authorization.
pub fn tls_alpn_certificate(
    domain: &str,
    key_authorization: &KeyAuthorization,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let mut params = CertificateParams::new(vec![domain.to_string()])?;
    params.distinguished_name = DistinguishedName::new();
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(
        key_authorization.digest().as_ref(),
    )];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer =
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).map_err(TlsError::Mismatch)?;
    // Not `reload::certified_key`: its key check parses the certificate with webpki, which
    // rejects the critical acmeIdentifier extension. The pair was made together just above.
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signer,
    )))
}

/// The answers one order published; dropping it unpublishes them.
pub struct Provisioned<'a> {
    challenges: &'a Challenges,
    domains: Vec<String>,
    tokens: Vec<String>,
}

impl<'a> Provisioned<'a> {
    pub fn new(challenges: &'a Challenges) -> Self {
        Provisioned {
            challenges,
            domains: Vec::new(),
            tokens: Vec::new(),
        }
    }

    pub fn tls_alpn(
        &mut self,
        domain: &str,
        key_authorization: &KeyAuthorization,
    ) -> Result<(), TlsError> {
        let domain = domain.to_ascii_lowercase();
        let cert = tls_alpn_certificate(&domain, key_authorization)?;
        lock(&self.challenges.tls_alpn).insert(domain.clone(), cert);
        self.domains.push(domain);
        Ok(())
    }

    pub fn http(&mut self, token: &str, key_authorization: &KeyAuthorization) {
        lock(&self.challenges.http)
            .insert(token.to_string(), key_authorization.as_str().to_string());
        self.tokens.push(token.to_string());
    }
}

impl Drop for Provisioned<'_> {
    fn drop(&mut self) {
        let mut certs = lock(&self.challenges.tls_alpn);
        for domain in &self.domains {
            certs.remove(domain);
        }
        drop(certs);
        let mut http = lock(&self.challenges.http);
        for token in &self.tokens {
            http.remove(token);
        }
    }
}
