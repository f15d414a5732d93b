//! URLs other than the one a callback is checked against that Vobiz may have called instead,
//! each with what to do if it is the one that verifies. Explanations try them first
//! ([`super::explain`]); the verdict never does, so nothing here can make a callback valid.
//!
//! Two mistakes are common and invisible from the signature alone:
//! - `--public-url` names another address than the one Vobiz called (an old ngrok URL, a
//!   staging host): the request's own Host header still says where it arrived;
//! - a proxy in front (ngrok with a rewritten Host, a load balancer) forwards to the listener
//!   without `--public-url`: its `X-Forwarded-Host` says what Vobiz called;
//! - the callback URL configured at Vobiz has credentials (`https://user:pass@host/cb`, which
//!   the docs' Python sample signs whole): they arrive as `Authorization: Basic`, not in the
//!   URL the listener sees. Shown with the password masked.

/// A URL Vobiz may have called instead; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherUrl {
    pub url: String,
    /// `url` as it may be shown and stored: with any password masked.
    pub shown: String,
    /// Where it comes from, e.g. "the URL this request reached (its Host header)".
    pub what: String,
    /// What to change when it verifies.
    pub advice: String,
}

/// What the listener knows about how a request reached it.
pub struct Arrival<'a> {
    /// The URL the signature is checked against.
    pub checked: &'a str,
    /// `--public-url`, when it set `checked`.
    pub public_url: Option<&'a str>,
    /// The Host header (or HTTP/2 authority).
    pub host: Option<&'a str>,
    /// `/path?query` as received.
    pub target: &'a str,
    pub forwarded_host: Option<&'a str>,
    pub forwarded_proto: Option<&'a str>,
    /// The Authorization header.
    pub authorization: Option<&'a str>,
}

/// The candidates for a request, without `checked` itself or duplicates (at most three).
pub fn other_urls(arrival: &Arrival<'_>) -> Vec<OtherUrl> {
    let mut out: Vec<OtherUrl> = Vec::new();
    let mut add = |url: String, shown: Option<String>, what: String, advice: String| {
        if url != arrival.checked && !out.iter().any(|o| o.url == url) {
            let shown = shown.unwrap_or_else(|| url.clone());
            out.push(OtherUrl {
                url,
                shown,
                what,
                advice,
            });
        }
    };
    if let (Some(public_url), Some(host)) = (arrival.public_url, plausible(arrival.host)) {
        add(
            format!("https://{host}{}", arrival.target),
            None,
            "the URL this request reached (its Host header)".into(),
            format!(
                "--public-url {public_url} is not the address Vobiz called; fix it or leave it out"
            ),
        );
    }
    if let Some(host) = plausible(arrival.forwarded_host) {
        let scheme = match arrival.forwarded_proto.map(str::trim) {
            Some(proto) if proto.eq_ignore_ascii_case("http") => "http",
            _ => "https",
        };
        let origin = format!("{scheme}://{host}");
        let advice = match arrival.public_url {
            Some(public_url) => format!("use --public-url {origin} instead of {public_url}"),
            None => format!("start the listener with --public-url {origin}"),
        };
        add(
            format!("{origin}{}", arrival.target),
            None,
            "the address the proxy in front reported (X-Forwarded-Host)".into(),
            advice,
        );
    }
    if let Some((user, password)) = arrival.authorization.and_then(basic_credentials) {
        if let Some((scheme, rest)) = arrival.checked.split_once("://") {
            add(
                format!("{scheme}://{user}:{password}@{rest}"),
                Some(format!("{scheme}://{user}:****@{rest}")),
                "the URL with the credentials of its Authorization header".into(),
                "Vobiz signed the callback URL with its user:password@ part, which reaches \
                 your server as an Authorization header, not in the URL: a check that rebuilds \
                 the URL from the request (this tool's, and most apps') must put it back"
                    .into(),
            );
        }
    }
    out
}

/// `user` and `password` of an `Authorization: Basic` header, when both are plain text that
/// can stand in a URL's user info as it is.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (user, password) = decode_basic(header)?;
    let plain = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'@' | b'/' | b'?' | b'#'))
    };
    (plain(&user) && !user.contains(':') && plain(&password)).then_some((user, password))
}

/// `user` and `password` of an `Authorization: Basic` header, whatever they hold.
pub fn decode_basic(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A host header value worth building a URL from: the first of a list (proxies append), with
/// nothing that could not be an authority.
fn plausible(host: Option<&str>) -> Option<&str> {
    let host = host?.split(',').next()?.trim();
    crate::config::plausible_host(host).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival<'a>(public_url: Option<&'a str>, checked: &'a str) -> Arrival<'a> {
        Arrival {
            checked,
            public_url,
            host: Some("abc.ngrok.app"),
            target: "/cb?x=1",
            forwarded_host: None,
            forwarded_proto: None,
            authorization: None,
        }
    }

    #[test]
    fn a_public_url_that_is_not_where_the_request_arrived_is_a_suspect() {
        let found = other_urls(&arrival(
            Some("https://old.example.com"),
            "https://old.example.com/cb?x=1",
        ));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].url, "https://abc.ngrok.app/cb?x=1");
        assert!(found[0]
            .advice
            .contains("--public-url https://old.example.com"));

        // Without --public-url the Host header is what was checked: nothing new to try.
        assert!(other_urls(&arrival(None, "https://abc.ngrok.app/cb?x=1")).is_empty());
    }

    #[test]
    fn a_proxy_reports_what_vobiz_called() {
        let mut behind = arrival(None, "https://localhost:8443/cb?x=1");
        behind.host = Some("localhost:8443");
        behind.forwarded_host = Some("hooks.example.com, 10.0.0.2");
        behind.forwarded_proto = Some("https");
        let found = other_urls(&behind);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].url, "https://hooks.example.com/cb?x=1");
        assert_eq!(
            found[0].advice,
            "start the listener with --public-url https://hooks.example.com"
        );

        behind.forwarded_host = Some("evil.example/\r\nX: y");
        assert!(other_urls(&behind).is_empty());
    }

    #[test]
    fn credentials_from_basic_auth_go_into_the_url_and_never_on_screen() {
        let mut with_auth = arrival(None, "https://abc.ngrok.app/cb?x=1");
        // base64("vobiz:s3cret!")
        with_auth.authorization = Some("Basic dm9iaXo6czNjcmV0IQ==");
        let found = other_urls(&with_auth);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].url, "https://vobiz:s3cret!@abc.ngrok.app/cb?x=1");
        assert_eq!(found[0].shown, "https://vobiz:****@abc.ngrok.app/cb?x=1");
        assert!(!found[0].advice.contains("s3cret") && !found[0].what.contains("s3cret"));

        for header in [
            "Bearer dm9iaXo6czNjcmV0IQ==",
            "Basic !!!",
            "Basic bm9jb2xvbg==",
        ] {
            with_auth.authorization = Some(header);
            assert!(other_urls(&with_auth).is_empty(), "{header}");
        }
    }
}
