//! Talking to the CA (RFC 8555, through instant-acme): the HTTPS client, the account
//! (cached, created on first use) and one certificate order from new-order to download.
//!
//! Errors say which side failed: [`TlsError::AcmeUnreachable`] (we could not talk to the
//! CA), [`TlsError::AcmeCa`] (the CA refused, with its problem document), or
//! [`TlsError::AcmeChallenge`] (the CA could not validate our challenge answer, with the
//! reason it gave, e.g. "connection refused" when port 80/443 is not reachable).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, Error, HttpClient,
    Identifier, NewAccount, NewOrder, Order, OrderStatus, Problem, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::super::TlsError;
use super::cache::Cache;
use super::challenge::{Challenges, Provisioned};
use super::AcmeSettings;

/// One HTTP exchange with the CA; the whole order has its own, longer bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the CA may take to validate, then to issue.
const POLL_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(500))
    .backoff(1.5)
    .timeout(POLL_TIMEOUT);

/// A transport failure, kept apart from the CA's own answers so the message can say
/// "cannot reach" rather than "the CA said".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unreachable(String);

struct AcmeHttp(Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>);

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let response = self.0.request(request);
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, response).await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(e)) => {
                    // The legacy client's Display is terse ("client error (Connect)"); the
                    // source chain has the useful part (refused, certificate unknown...).
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        text = format!("{text}: {cause}");
                        source = cause.source();
                    }
                    Err(Error::Other(Box::new(Unreachable(text))))
                }
                Err(_) => Err(Error::Other(Box::new(Unreachable(format!(
                    "no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ))))),
            }
        })
    }
}

/// HTTPS to the CA, trusting the public web PKI plus `--acme-directory-ca` if given.
fn http_client(directory_ca: Option<&Path>) -> Result<Box<dyn HttpClient>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = directory_ca {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Chain {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::EmptyChain(path.to_path_buf()));
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Ok(Box::new(AcmeHttp(
        Client::builder(TokioExecutor::new()).build(connector),
    )))
}

/// Classifies an instant-acme error by the side that failed.
pub(super) fn ca_error(directory: &str, error: Error) -> TlsError {
    let directory = directory.to_string();
    match error {
        Error::Api(problem) => TlsError::AcmeCa {
            directory,
            reason: describe(&problem),
        },
        Error::Other(inner) if inner.is::<Unreachable>() => TlsError::AcmeUnreachable {
            directory,
            reason: inner.to_string(),
        },
        Error::Timeout(_) => TlsError::AcmeCa {
            directory,
            reason: format!(
                "the order did not progress within {} s",
                POLL_TIMEOUT.as_secs()
            ),
        },
        Error::Json(e) => TlsError::AcmeCa {
            directory,
            reason: format!("an answer that is not ACME JSON (is this an ACME directory?): {e}"),
        },
        other => TlsError::AcmeCa {
            directory,
            reason: other.to_string(),
        },
    }
}

/// RFC 8555's names for challenge types, as people read them in CA documentation.
fn name(kind: &ChallengeType) -> String {
    match kind {
        ChallengeType::Http01 => "http-01".into(),
        ChallengeType::TlsAlpn01 => "tls-alpn-01".into(),
        ChallengeType::Dns01 => "dns-01".into(),
        other => format!("{other:?}"),
    }
}

/// "detail (type)" without instant-acme's "API error" prefix.
fn describe(problem: &Problem) -> String {
    let mut text = problem.detail.clone().unwrap_or_else(|| "no detail".into());
    if let Some(kind) = &problem.r#type {
        text.push_str(&format!(" ({kind})"));
    }
    for sub in &problem.subproblems {
        text.push_str(&format!("; {sub}"));
    }
    text
}

fn is_problem(error: &TlsError, kind: &str) -> bool {
    matches!(error, TlsError::AcmeCa { reason, .. } if reason.contains(kind))
}

/// The cached account, or a new one registered now (and cached).
pub(super) async fn account(settings: &AcmeSettings, cache: &Cache) -> Result<Account, TlsError> {
    let ca = |e| ca_error(&settings.directory, e);
    let client = http_client(settings.directory_ca.as_deref())?;
    if let Some(credentials) = cache.load_account() {
        return Account::builder_with_http(client)
            .from_credentials(credentials)
            .await
            .map_err(ca);
    }
    let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contacts,
        // Using --acme is agreeing to the CA's terms; the README says so.
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = Account::builder_with_http(client)
        .create(&new, settings.directory.clone(), None)
        .await
        .map_err(ca)?;
    cache.store_account(&credentials)?;
    tracing::info!(
        "registered ACME account {} at {}",
        account.id(),
        settings.directory
    );
    Ok(account)
}

/// Orders a certificate for the settings' domains and returns (chain PEM, key PEM).
/// `http01`: answer by HTTP-01 where offered (the HTTP-01 listener is up); otherwise
/// TLS-ALPN-01, answered by the relay's listener.
pub(super) async fn obtain(
    settings: &AcmeSettings,
    cache: &Cache,
    challenges: &Challenges,
    http01: bool,
) -> Result<(String, String), TlsError> {
    let mut account = account(settings, cache).await?;
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let ca = |e| ca_error(&settings.directory, e);
    let mut order = match account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(ca)
    {
        // The CA forgot us (a test CA restarted, an account deactivated): register anew.
        Err(e) if is_problem(&e, "accountDoesNotExist") => {
            tracing::warn!("the ACME account is unknown to the CA; registering a new one");
            let _ = std::fs::remove_file(cache.dir().join("account.json"));
            account = self::account(settings, cache).await?;
            account
                .new_order(&NewOrder::new(&identifiers))
                .await
                .map_err(ca)?
        }
        other => other?,
    };
    let mut provisioned = Provisioned::new(challenges);
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(ca)?;
        let domain = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(TlsError::AcmeCa {
                    directory: settings.directory.clone(),
                    reason: format!("the authorization for {domain} is {status:?}"),
                })
            }
        }
        let offers =
            |kind: &ChallengeType| authorization.challenges.iter().any(|c| &c.r#type == kind);
        let kind = if http01 && offers(&ChallengeType::Http01) {
            ChallengeType::Http01
        } else if offers(&ChallengeType::TlsAlpn01) {
            ChallengeType::TlsAlpn01
        } else {
            let offered: Vec<String> = authorization
                .challenges
                .iter()
                .map(|c| name(&c.r#type))
                .collect();
            return Err(TlsError::AcmeCa {
                directory: settings.directory.clone(),
                reason: format!(
                    "for {domain} it offers only {} — we answer TLS-ALPN-01, and HTTP-01 \
                     with --acme-http-listen",
                    offered.join(", ")
                ),
            });
        };
        let mut challenge = authorization
            .challenge(kind.clone())
            .ok_or_else(|| TlsError::Acme(format!("the {} challenge vanished", name(&kind))))?;
        let key_authorization = challenge.key_authorization();
        if kind == ChallengeType::Http01 {
            provisioned.http(&challenge.token, &key_authorization);
        } else {
            provisioned.tls_alpn(&domain, &key_authorization)?;
        }
        tracing::info!("answering {} for {domain}", name(&kind));
        challenge.set_ready().await.map_err(ca)?;
    }

    let status = order.poll_ready(&POLL).await;
    if !matches!(status, Ok(OrderStatus::Ready)) {
        // Whatever the order says, the authorizations carry the real reason.
        if let Some(failed) = failed_challenge(&mut order).await {
            return Err(failed);
        }
        return Err(match status {
            Ok(status) => TlsError::AcmeCa {
                directory: settings.directory.clone(),
                reason: format!("the order is {status:?} without saying why"),
            },
            Err(e) => ca(e),
        });
    }
    drop(provisioned);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(settings.domains.clone())?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await.map_err(ca)?;
    let chain = order.poll_certificate(&POLL).await.map_err(ca)?;
    Ok((chain, key.serialize_pem()))
}

/// The first challenge the CA marked with an error, as "the challenge failed because".
async fn failed_challenge(order: &mut Order) -> Option<TlsError> {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        let domain = state.identifier().to_string();
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                // The usual cause is reachability; say what the CA needed to reach.
                let hint = match challenge.r#type {
                    ChallengeType::Http01 => {
                        format!(" — the CA must reach --acme-http-listen as http://{domain}:80")
                    }
                    ChallengeType::TlsAlpn01 => {
                        format!(" — the CA must reach the relay's listener as {domain}:443")
                    }
                    _ => String::new(),
                };
                return Some(TlsError::AcmeChallenge {
                    reason: format!("{}{hint}", describe(problem)),
                    challenge: name(&challenge.r#type),
                    domain,
                });
            }
        }
    }
    None
}
