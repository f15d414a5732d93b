//! Why a callback got no answer, in plain words and with what to do: the server could not be
//! reached; it was reached but TLS failed (the certificate not trusted, or made for another
//! name); or what came back was not HTTP. The libraries' own words follow as the details.

use std::error::Error;
use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::forward::error_chain;

/// What https targets are checked against besides the public roots, to say why a server's
/// certificate was not trusted.
#[derive(Clone, Debug)]
pub struct Trust {
    /// The development CA file `listen` writes (`<certs dir>/dev-ca.pem`).
    pub dev_ca: PathBuf,
    /// Whether a certificate could be read from it.
    pub dev_ca_found: bool,
}

impl Trust {
    /// The trust the dev CA at `dev_ca` gives, if a certificate can be read from it.
    pub fn new(dev_ca: PathBuf) -> Trust {
        let dev_ca_found = CertificateDer::pem_file_iter(&dev_ca)
            .map(|mut certificates| certificates.any(|certificate| certificate.is_ok()))
            .unwrap_or(false);
        Trust {
            dev_ca,
            dev_ca_found,
        }
    }
}

/// The message for a request to `url` that got no answer because of `error`: what went wrong
/// and what to do, then the details. "cannot reach" only when no connection was made.
pub fn explain(url: &str, error: &(dyn Error + 'static), trust: &Trust) -> String {
    let details = error_chain(error);
    if let Some(tls) = first::<rustls::Error>(error) {
        let host = url
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|uri| uri.host().map(str::to_owned))
            .unwrap_or_default();
        let why = tls_failure(tls, &host, trust);
        return format!("{url}: {why} (details: {details})");
    }
    // The legacy client says whether the connection failed (TLS included); past it, the
    // server was reached.
    let connecting =
        first::<hyper_util::client::legacy::Error>(error).is_none_or(|client| client.is_connect());
    let cut_short = |io: &std::io::Error| io.kind() == std::io::ErrorKind::UnexpectedEof;
    if connecting && url.starts_with("https://") && first_where(error, &cut_short).is_some() {
        return format!(
            "{url}: the server closed the connection during the TLS handshake: does it speak \
             TLS? (details: {details})"
        );
    }
    // A TLS server answers plain HTTP with TLS records, or resets the connection.
    let hint = match url.starts_with("http://") {
        true => "; an https server? then use https://",
        false => "",
    };
    if let Some(http) = first::<hyper::Error>(error) {
        if http.is_parse() || http.is_parse_status() {
            return format!("{url} answered something that is not HTTP{hint} (details: {details})");
        }
        if http.is_incomplete_message() {
            return format!("{url} closed the connection without answering (details: {details})");
        }
    }
    match connecting {
        true => format!("cannot reach {url}: {details}"),
        false => format!("{url} was reached, but the exchange failed{hint} (details: {details})"),
    }
}

/// The first error of type `E` in `error`'s chain.
fn first<'a, E: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a E> {
    first_where(error, &|_: &E| true)
}

/// The first error of type `E` in `error`'s chain for which `wanted` holds.
fn first_where<'a, E: Error + 'static>(
    error: &'a (dyn Error + 'static),
    wanted: &dyn Fn(&E) -> bool,
) -> Option<&'a E> {
    if let Some(found) = error.downcast_ref::<E>().filter(|found| wanted(found)) {
        return Some(found);
    }
    // An io::Error's `source` is the source of the error it wraps, not that error: the
    // rustls error the TLS stream wraps (itself wrapped again by the connector) is only
    // reached through `get_ref`.
    if let Some(wrapped) = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return first_where(wrapped, wanted);
    }
    error
        .source()
        .and_then(|source| first_where(source, wanted))
}

/// What to do about a certificate no trusted CA signed.
fn untrusted_fix(trust: &Trust) -> String {
    let dev_ca = trust.dev_ca.display();
    match trust.dev_ca_found {
        false => format!(
            "no dev CA found at {dev_ca}; pass --certs-dir DIR where `listen` wrote its \
             certificates, or --insecure to skip the check"
        ),
        true => format!(
            "it is signed neither by a public CA nor by the dev CA at {dev_ca}; pass \
             --certs-dir DIR where the `listen` serving it wrote its certificates, or \
             --insecure to skip the check"
        ),
    }
}

/// Why the TLS handshake with `host` failed, and what to do.
fn tls_failure(error: &rustls::Error, host: &str, trust: &Trust) -> String {
    use rustls::CertificateError as Certificate;
    let certificate = match error {
        rustls::Error::InvalidCertificate(certificate) => certificate,
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            return "the server does not speak TLS (an http:// server? then use http://)".into()
        }
        rustls::Error::AlertReceived(alert) => {
            return format!("the server ended the TLS handshake with the alert {alert:?}")
        }
        rustls::Error::PeerIncompatible(_) => {
            return "the server and vobiz-tunnel have no TLS version or cipher suite in common"
                .into()
        }
        _ => return "the TLS handshake failed".into(),
    };
    let untrusted = "the server's certificate is not trusted";
    match certificate {
        Certificate::UnknownIssuer => format!("{untrusted}: {}", untrusted_fix(trust)),
        // webpki's CaUsedAsEndEntity, which rustls passes on as an opaque error: the usual
        // self-signed certificate made with the CA flag.
        Certificate::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => format!(
            "{untrusted}: it is a CA's certificate, not a server's (self-signed?); {}",
            untrusted_fix(trust)
        ),
        Certificate::NotValidForName => format!(
            "the server's certificate is not valid for the host name {host}; call it by a \
             name the certificate lists, or pass --insecure to skip the check"
        ),
        Certificate::NotValidForNameContext { presented, .. } => format!(
            "the server's certificate is not valid for the host name {host}: it names {}; \
             call it by one of those, or pass --insecure to skip the check",
            presented
                .iter()
                .map(|name| bare_name(name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        // A CA of the name of the trusted one, which did not sign it: another folder's dev
        // CA, as every `listen` names its CA alike.
        Certificate::BadSignature if trust.dev_ca_found => format!(
            "{untrusted}: it was signed by a CA that has the name of the dev CA at {} but is \
             another one (another `listen`'s?); pass --certs-dir DIR where the `listen` \
             serving it wrote its certificates, or --insecure to skip the check",
            trust.dev_ca.display()
        ),
        Certificate::Expired | Certificate::ExpiredContext { .. } => {
            "the server's certificate has expired; renew it, or pass --insecure to skip the \
             check"
                .into()
        }
        Certificate::NotValidYet | Certificate::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (is this machine's clock right?)".into()
        }
        _ => "the server's certificate was refused; pass --insecure to skip the check".into(),
    }
}

/// A name as the certificate gives it, from webpki's `DnsName("example.com")` or
/// `IpAddress(192.0.2.1)`.
fn bare_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })
        .unwrap_or(presented)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError as Certificate;

    fn trust(found: bool) -> Trust {
        Trust {
            dev_ca: PathBuf::from("/elsewhere/dev-ca.pem"),
            dev_ca_found: found,
        }
    }

    /// A rustls error as the client meets it: inside an io::Error inside a connect error.
    #[derive(Debug)]
    struct Connect(std::io::Error);

    impl std::fmt::Display for Connect {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl Error for Connect {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    fn explained(error: rustls::Error, found: bool) -> String {
        let wrapped = Connect(std::io::Error::new(std::io::ErrorKind::InvalidData, error));
        explain("https://127.0.0.1:8443/cb", &wrapped, &trust(found))
    }

    #[test]
    fn an_unknown_issuer_says_where_the_dev_ca_was_looked_for() {
        let unknown = || rustls::Error::InvalidCertificate(Certificate::UnknownIssuer);
        let missing = explained(unknown(), false);
        assert!(
            missing.starts_with(
                "https://127.0.0.1:8443/cb: the server's certificate is not trusted: no dev CA \
                 found at /elsewhere/dev-ca.pem; pass --certs-dir DIR"
            ),
            "{missing}"
        );
        assert!(!missing.contains("cannot reach"), "{missing}");
        assert!(
            missing.ends_with(
                "(details: client error (Connect): invalid peer certificate: UnknownIssuer)"
            ),
            "{missing}"
        );
        let other = explained(unknown(), true);
        assert!(
            other.contains("signed neither by a public CA nor by the dev CA at /elsewhere"),
            "{other}"
        );
    }

    #[test]
    fn a_name_mismatch_is_named() {
        let mismatch = rustls::Error::InvalidCertificate(Certificate::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            presented: vec![
                "DnsName(\"other.example\")".into(),
                "IpAddress(192.0.2.1)".into(),
            ],
        });
        let message = explained(mismatch, true);
        assert!(
            message.contains(
                "not valid for the host name 127.0.0.1: it names other.example, 192.0.2.1; \
                 call it by one"
            ),
            "{message}"
        );
    }

    #[test]
    fn plain_http_is_not_tls() {
        let message = explained(
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            true,
        );
        assert!(message.contains("does not speak TLS"), "{message}");
    }

    #[test]
    fn no_tls_error_means_not_reached() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let message = explain("http://127.0.0.1:1/x", &refused, &trust(false));
        assert!(
            message.starts_with("cannot reach http://127.0.0.1:1/x: "),
            "{message}"
        );
    }
}
