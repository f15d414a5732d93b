//! Certificates from an ACME CA (RFC 8555: Let's Encrypt, or `--acme-directory` for another
//! CA or a test CA such as Pebble) for the relay's `--domain`s.
//!
//! [`AcmeCertificates`] is the relay's certificate resolver. It serves the current
//! certificate, answers TLS-ALPN-01 validation handshakes (ALPN `acme-tls/1`, RFC 8737) with
//! the challenge certificate, and keeps the certificate fresh:
//!
//! - on start, a cached certificate with more than [`RENEW_BEFORE`] left is used as is (no
//!   contact with the CA at all);
//! - otherwise one is ordered: by HTTP-01 when `--acme-http-listen` is given (its listener
//!   does not depend on the relay's, so [`AcmeCertificates::start`] waits for the
//!   certificate, within [`FIRST_CERTIFICATE_TIMEOUT`]); by TLS-ALPN-01 otherwise, which
//!   needs the relay's own listener to be accepting, so `start` returns at once and the
//!   order runs in the background (handshakes other than the CA's fail until it is done);
//! - every [`CHECK_EVERY`], a task renews when less than [`RENEW_BEFORE`] remains and swaps
//!   the new certificate in for new connections. Failures are logged and retried with
//!   backoff, while the old certificate keeps being served.
//!
//! Submodules: `cache` (disk), `order` (the CA), `challenge` (answers), `http01` (port 80).

mod cache;
mod challenge;
mod http01;
mod order;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::{oneshot, watch};

use super::TlsError;
use cache::{Cache, Stored};
use challenge::Challenges;

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737). The relay's `ServerConfig` must
/// list it, and the relay should close such connections after the handshake.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// Renew when less than this remains (or a third of the lifetime, for short-lived
/// certificates, whichever is less).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the renewal task looks at the expiry date.
pub const CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);
/// How long [`AcmeCertificates::start`] waits for a first certificate by HTTP-01; also the
/// bound on every single order.
pub const FIRST_CERTIFICATE_TIMEOUT: Duration = Duration::from_secs(180);
/// After a failed order: 1, 2, 4 ... minutes, at most an hour (CAs limit failed
/// validations; Let's Encrypt allows 5 per hour per name).
const RETRY_FIRST: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// What `--acme` needs; see `RelayCerts::Acme`.
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory: String,
    pub directory_ca: Option<PathBuf>,
    pub cache: PathBuf,
    pub http_listen: Option<SocketAddr>,
    /// The relay's HTTPS port, for HTTP-01's redirects (443 and 0 are left out of them).
    pub https_port: u16,
}

impl AcmeSettings {
    /// Where the certificate for these settings is cached: (key, chain). For operators who
    /// want to look at it, and for tests that plant one.
    pub fn cached_certificate(&self) -> Result<(PathBuf, PathBuf), TlsError> {
        let domains = check_domains(&self.domains)?;
        Ok(Cache::open(&self.cache, &self.directory)?.certificate_paths(&domains))
    }
}

/// The relay's ACME-managed certificate; see the module documentation.
pub struct AcmeCertificates {
    settings: AcmeSettings,
    cache: Cache,
    challenges: Arc<Challenges>,
    current: RwLock<Option<Stored>>,
    /// Orders one at a time (a renewal never races a first order).
    ordering: tokio::sync::Mutex<()>,
    ready: watch::Sender<bool>,
    /// Dropping it stops the HTTP-01 listener.
    _http01: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for AcmeCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeCertificates")
            .field("domains", &self.settings.domains)
            .field("directory", &self.settings.directory)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// When a certificate should be replaced (unix seconds).
fn renew_at(stored: &Stored) -> i64 {
    let lifetime = (stored.not_after - stored.not_before).max(0);
    let margin = i64::try_from(RENEW_BEFORE.as_secs())
        .unwrap_or(i64::MAX)
        .min(lifetime / 3);
    stored.not_after - margin
}

fn check_domains(domains: &[String]) -> Result<Vec<String>, TlsError> {
    if domains.is_empty() {
        return Err(TlsError::Acme("give at least one --domain".into()));
    }
    domains
        .iter()
        .map(|d| {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if d.starts_with("*.") {
                return Err(TlsError::Acme(format!(
                    "--domain {d}: wildcards need DNS-01, which the relay does not answer"
                )));
            }
            match rustls::pki_types::DnsName::try_from(d.as_str()) {
                Ok(_) => Ok(d),
                Err(_) => Err(TlsError::Acme(format!("--domain {d:?} is not a DNS name"))),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|mut domains| {
            // One cache entry per set of names, whatever order the flags came in.
            domains.sort();
            domains.dedup();
            domains
        })
}

impl AcmeCertificates {
    /// Opens the cache, starts the HTTP-01 listener if configured, and gets a certificate
    /// going as the module documentation describes. Fails on settings or local problems,
    /// and (HTTP-01 only) when the first certificate cannot be obtained.
    pub async fn start(mut settings: AcmeSettings) -> Result<Arc<Self>, TlsError> {
        settings.domains = check_domains(&settings.domains)?;
        let cache = Cache::open(&settings.cache, &settings.directory)?;
        let challenges = Arc::new(Challenges::default());
        let http01 = match settings.http_listen {
            Some(addr) => Some(http01::serve(addr, challenges.clone(), settings.https_port).await?),
            None => None,
        };
        let cached = cache.load_certificate(&settings.domains);
        let now = unix_now();
        let cached = cached.filter(|c| c.not_after > now);
        let renew_now = cached.as_ref().is_none_or(|c| renew_at(c) <= now);
        let (ready, _) = watch::channel(cached.is_some());
        if let Some(c) = &cached {
            tracing::info!(
                "using the cached certificate for {} from {}",
                settings.domains.join(", "),
                cache.dir().display()
            );
            if renew_now {
                tracing::info!(
                    "it expires in {} day(s); renewing in the background",
                    (c.not_after - now) / 86_400
                );
            }
        }
        let me = Arc::new(AcmeCertificates {
            settings,
            cache,
            challenges,
            current: RwLock::new(cached),
            ordering: tokio::sync::Mutex::new(()),
            ready,
            _http01: http01,
        });

        // A second's delay before any background order, so that a TLS-ALPN-01 validation
        // finds the caller's listener up.
        let mut first_check = if renew_now {
            Duration::from_secs(1)
        } else {
            CHECK_EVERY
        };
        if me.current().is_none() {
            if me.settings.http_listen.is_some() {
                match tokio::time::timeout(FIRST_CERTIFICATE_TIMEOUT, me.renew()).await {
                    Ok(result) => result?,
                    Err(_) => return Err(me.timeout()),
                }
                first_check = CHECK_EVERY;
            } else {
                tracing::warn!(
                    "no certificate yet for {}: ordering one from {} by TLS-ALPN-01 on the \
                     relay's listener; HTTPS handshakes fail until it arrives",
                    me.settings.domains.join(", "),
                    me.settings.directory
                );
            }
        }
        tokio::spawn(maintain(Arc::downgrade(&me), first_check));
        Ok(me)
    }

    /// The certificate being served, if any.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.as_ref().map(|c| c.key.clone())
    }

    /// Waits until a certificate is being served; false if `timeout` passes first.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut ready = self.ready.subscribe();
        tokio::time::timeout(timeout, ready.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn timeout(&self) -> TlsError {
        TlsError::AcmeTimeout {
            domains: self.settings.domains.join(", "),
            seconds: FIRST_CERTIFICATE_TIMEOUT.as_secs(),
        }
    }

    fn needs_renewal(&self) -> bool {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.as_ref().is_none_or(|c| renew_at(c) <= unix_now())
    }

    /// Orders a certificate, caches it and serves it from now on.
    async fn renew(&self) -> Result<(), TlsError> {
        let _one_at_a_time = self.ordering.lock().await;
        let use_http01 = self.settings.http_listen.is_some();
        let (chain, key) =
            order::obtain(&self.settings, &self.cache, &self.challenges, use_http01).await?;
        let stored = Stored::from_pem(&chain, &key, &self.settings.domains).map_err(|e| {
            TlsError::AcmeCa {
                directory: self.settings.directory.clone(),
                reason: format!("issued an unusable certificate: {e}"),
            }
        })?;
        self.cache
            .store_certificate(&self.settings.domains, &chain, &key)?;
        tracing::info!(
            "obtained a certificate for {} (cached in {})",
            self.settings.domains.join(", "),
            self.cache.dir().display()
        );
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(stored);
        self.ready.send_replace(true);
        Ok(())
    }
}

impl ResolvesServerCert for AcmeCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if validation {
            // Only the CA offers acme-tls/1; it gets the challenge certificate or nothing.
            return hello
                .server_name()
                .and_then(|name| self.challenges.tls_alpn(name));
        }
        self.current()
    }
}

/// The renewal task: holds only a weak reference, so it ends with the relay's config.
async fn maintain(me: Weak<AcmeCertificates>, first: Duration) {
    let mut wait = first;
    let mut retry = RETRY_FIRST;
    loop {
        tokio::time::sleep(wait).await;
        let Some(me) = me.upgrade() else {
            return;
        };
        wait = CHECK_EVERY;
        if !me.needs_renewal() {
            continue;
        }
        let result = match tokio::time::timeout(FIRST_CERTIFICATE_TIMEOUT, me.renew()).await {
            Ok(result) => result,
            Err(_) => Err(me.timeout()),
        };
        match result {
            Ok(()) => retry = RETRY_FIRST,
            Err(e) => {
                let serving = if me.current().is_some() {
                    "still serving the current certificate"
                } else {
                    "no certificate to serve yet"
                };
                tracing::error!(
                    "{e}; {serving}; trying again in {} min",
                    retry.as_secs() / 60
                );
                wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(not_before: i64, not_after: i64) -> Stored {
        let made = rcgen::generate_simple_self_signed(vec!["a.example".to_string()])
            .expect("test certificate");
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).expect("test key");
        Stored {
            key: Arc::new(CertifiedKey::new(vec![made.cert.der().clone()], signer)),
            not_before,
            not_after,
        }
    }

    #[test]
    fn renewal_starts_thirty_days_early_or_a_third_of_a_short_lifetime() {
        let day = 24 * 3600;
        // Let's Encrypt's 90 days: renew with 30 left.
        assert_eq!(renew_at(&stored(0, 90 * day)), 60 * day);
        // A six-day certificate: renew with two left, not at once.
        assert_eq!(renew_at(&stored(0, 6 * day)), 4 * day);
    }

    #[test]
    fn domains_are_normalised_and_wildcards_refused() {
        let given = [
            "b.example".into(),
            "Hooks.Example.COM.".into(),
            "b.example".into(),
        ];
        let ok = check_domains(&given).expect("DNS names");
        assert_eq!(
            ok,
            vec!["b.example".to_string(), "hooks.example.com".to_string()]
        );
        let err = check_domains(&["*.example.com".into()]).expect_err("wildcard");
        assert!(err.to_string().contains("DNS-01"), "{err}");
        assert!(check_domains(&[]).is_err());
        assert!(check_domains(&["not a name".into()]).is_err());
    }
}
