//! What the relay tells the laptop about each callback it carries: the public URL Vobiz
//! called (so signatures verify against it), the sender's address, the TLS facts of the
//! public connection, and how long the relay waits for the answer. They travel as request headers on the tunnel; the relay overwrites any
//! a sender supplied, and the laptop trusts them only on a tunnel connection and removes them
//! before verifying, recording and forwarding.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::BaseUrl;
use crate::exchange::TlsInfo;

/// The exact URL Vobiz called (`https://host[:port]/path?query`), prefix included.
pub static PUBLIC_URL: HeaderName = HeaderName::from_static("x-vobiz-tunnel-public-url");
/// The sender's address as the relay saw it.
pub static CLIENT_ADDR: HeaderName = HeaderName::from_static("x-vobiz-tunnel-client-addr");
/// `version;alpn;sni` of the public TLS connection (empty parts when unknown).
pub static TLS: HeaderName = HeaderName::from_static("x-vobiz-tunnel-tls");
/// Milliseconds the relay waits for the answer (its `--forward-timeout`).
pub static ANSWER_WITHIN: HeaderName = HeaderName::from_static("x-vobiz-tunnel-answer-within-ms");
/// The names of the sender's headers as it spelled them, in order, comma-separated (an
/// HTTP/1 sender's `X-Vobiz-Signature-V3`; the tunnel itself carries only lower case).
pub static HEADER_NAMES: HeaderName = HeaderName::from_static("x-vobiz-tunnel-header-names");
/// The HTTP version the sender spoke to the relay (`HTTP/1.1`); the tunnel is HTTP/2.
pub static HTTP_VERSION: HeaderName = HeaderName::from_static("x-vobiz-tunnel-http-version");

/// The versions a sender may speak, as records spell them.
const VERSIONS: [&str; 4] = ["HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"];

/// The facts of one relayed callback.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The URL Vobiz called, exactly (the signature covers it).
    pub public_url: Option<String>,
    pub client_addr: Option<SocketAddr>,
    pub tls: TlsInfo,
    /// The relay answers the sender itself (504) after this long: a later answer from the
    /// local server would be recorded as delivered when the sender never got it, so the
    /// laptop waits no longer.
    pub answer_within: Option<Duration>,
    /// The sender's header names as spelled, in order (empty: not known, e.g. HTTP/2).
    pub header_names: Vec<String>,
    /// The HTTP version the sender spoke, as records spell it (`HTTP/1.1`).
    pub http_version: Option<String>,
}

fn some_nonempty(part: Option<&str>) -> Option<String> {
    part.filter(|p| !p.is_empty()).map(str::to_string)
}

/// Removes the envelope headers from `headers` and reads them.
pub fn take(headers: &mut HeaderMap) -> Envelope {
    let text = |headers: &mut HeaderMap, name: &HeaderName| {
        headers
            .remove(name)
            .and_then(|v| v.to_str().ok().map(str::to_string))
    };
    // Only scheme://authority/... is accepted: anything else is not a URL the relay made.
    let public_url = text(headers, &PUBLIC_URL).filter(|url| {
        url.split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .is_some_and(|authority| BaseUrl::parse(&format!("https://{authority}")).is_ok())
            && (url.starts_with("https://") || url.starts_with("http://"))
    });
    let client_addr = text(headers, &CLIENT_ADDR).and_then(|a| a.parse().ok());
    let tls = text(headers, &TLS).map_or_else(TlsInfo::default, |value| {
        let mut parts = value.split(';');
        TlsInfo {
            version: some_nonempty(parts.next()),
            alpn: some_nonempty(parts.next()),
            sni: some_nonempty(parts.next()),
        }
    });
    let answer_within = text(headers, &ANSWER_WITHIN)
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis);
    // Names only (tokens: no commas, no spaces), or nothing at all.
    let header_names = text(headers, &HEADER_NAMES)
        .map(|names| names.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|names| {
            names
                .iter()
                .all(|name| HeaderName::from_bytes(name.as_bytes()).is_ok())
        })
        .unwrap_or_default();
    let http_version = text(headers, &HTTP_VERSION).filter(|v| VERSIONS.contains(&v.as_str()));
    Envelope {
        public_url,
        client_addr,
        tls,
        answer_within,
        header_names,
        http_version,
    }
}

/// Sets the envelope headers on a request the relay carries, replacing any the sender sent.
pub fn put(headers: &mut HeaderMap, envelope: &Envelope) {
    for name in [
        &PUBLIC_URL,
        &CLIENT_ADDR,
        &TLS,
        &ANSWER_WITHIN,
        &HEADER_NAMES,
        &HTTP_VERSION,
    ] {
        headers.remove(name);
    }
    let mut set = |name: &HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name.clone(), value);
        }
    };
    if let Some(url) = &envelope.public_url {
        set(&PUBLIC_URL, url.clone());
    }
    if let Some(addr) = envelope.client_addr {
        set(&CLIENT_ADDR, addr.to_string());
    }
    let tls = &envelope.tls;
    let part = |p: &Option<String>| p.clone().unwrap_or_default().replace(';', "");
    set(
        &TLS,
        format!(
            "{};{};{}",
            part(&tls.version),
            part(&tls.alpn),
            part(&tls.sni)
        ),
    );
    if let Some(within) = envelope.answer_within {
        set(&ANSWER_WITHIN, within.as_millis().to_string());
    }
    if !envelope.header_names.is_empty() {
        set(&HEADER_NAMES, envelope.header_names.join(","));
    }
    if let Some(version) = &envelope.http_version {
        set(&HTTP_VERSION, version.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_round_trips_and_replaces_what_a_sender_forged() {
        let envelope = Envelope {
            public_url: Some("https://hooks.example.com/alice/cb?x=1".into()),
            client_addr: Some("15.206.6.156:40112".parse().unwrap()),
            tls: TlsInfo {
                version: Some("TLSv1.3".into()),
                alpn: None,
                sni: Some("hooks.example.com".into()),
            },
            answer_within: Some(Duration::from_millis(2500)),
            header_names: vec!["Host".into(), "X-Vobiz-Signature-V3".into()],
            http_version: Some("HTTP/1.1".into()),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            PUBLIC_URL.clone(),
            HeaderValue::from_static("https://evil.example"),
        );
        headers.insert("x-other", HeaderValue::from_static("kept"));
        put(&mut headers, &envelope);
        assert_eq!(headers.get_all(&PUBLIC_URL).iter().count(), 1);
        assert_eq!(take(&mut headers), envelope);
        assert!(headers.get(&PUBLIC_URL).is_none() && headers.get(&TLS).is_none());
        assert!(headers.get(&ANSWER_WITHIN).is_none() && headers.get(&HEADER_NAMES).is_none());
        assert!(headers.get(&HTTP_VERSION).is_none());
        assert_eq!(headers["x-other"], "kept");
    }

    #[test]
    fn garbage_reads_as_unknown() {
        let mut headers = HeaderMap::new();
        headers.insert(PUBLIC_URL.clone(), HeaderValue::from_static("not a url"));
        headers.insert(CLIENT_ADDR.clone(), HeaderValue::from_static("nowhere"));
        headers.insert(ANSWER_WITHIN.clone(), HeaderValue::from_static("-1"));
        headers.insert(
            HEADER_NAMES.clone(),
            HeaderValue::from_static("Host,Bad Name"),
        );
        headers.insert(HTTP_VERSION.clone(), HeaderValue::from_static("HTTP/9"));
        assert_eq!(take(&mut headers), Envelope::default());
        assert!(headers.is_empty(), "{headers:?}");
    }
}
