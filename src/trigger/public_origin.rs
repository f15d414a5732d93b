//! `trigger call --public-url`: the origin Vobiz calls when it is not the one the simulated
//! call reaches (a tunnel or a proxy in front of the app, which the app's XML names). Vobiz
//! signs the URL it calls, so a request to the local origin is signed for the public one; an
//! app builds its action URLs from its public address, so a URL of the XML at the public
//! origin is sent to the local one.

use crate::config::BaseUrl;

/// The public origin and the local one it stands for, each `scheme://authority`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicOrigin {
    public: String,
    local: String,
}

impl PublicOrigin {
    /// `public_url` (an origin: `https://hooks.example.com`) in front of the origin of
    /// `answer_url`; the error says what is wrong with the option.
    pub fn new(public_url: &str, answer_url: &str) -> Result<PublicOrigin, String> {
        let public = BaseUrl::parse(public_url)?;
        if !public.prefix.is_empty() {
            return Err(format!(
                "{public_url} has a path: give the origin Vobiz calls \
                 (https://host[:port]); each request keeps the path of its own URL"
            ));
        }
        let local = origin_of(answer_url)
            .ok_or_else(|| format!("{answer_url} is not an absolute http(s) URL"))?
            .0;
        Ok(PublicOrigin {
            public: format!(
                "{}://{}",
                public.scheme,
                public.authority.to_ascii_lowercase()
            ),
            local,
        })
    }

    /// Where a request to `url` goes: at the public origin, to the local one.
    pub fn to_local(&self, url: &str) -> String {
        Self::moved(url, &self.public, &self.local)
    }

    /// The URL Vobiz would have signed for a request sent to `url`: at the local origin,
    /// the public one.
    pub fn to_public(&self, url: &str) -> String {
        Self::moved(url, &self.local, &self.public)
    }

    /// The public origin, for the timeline.
    pub fn public(&self) -> &str {
        &self.public
    }

    /// The local origin it stands for.
    pub fn local(&self) -> &str {
        &self.local
    }

    fn moved(url: &str, from: &str, to: &str) -> String {
        match origin_of(url) {
            Some((origin, rest)) if origin == from => format!("{to}{rest}"),
            _ => url.to_owned(),
        }
    }
}

/// `scheme://authority` of an absolute http(s) URL, in lower case, and the rest (`/path?q`).
fn origin_of(url: &str) -> Option<(String, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    (!authority.is_empty()).then(|| {
        let origin = format!("{scheme}://{}", authority.to_ascii_lowercase());
        (origin, rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_requests_are_signed_for_the_public_origin_and_public_urls_sent_locally() {
        let origin =
            PublicOrigin::new("https://Hooks.example.com", "http://127.0.0.1:3000/answer").unwrap();
        assert_eq!(
            origin.to_public("http://127.0.0.1:3000/gather?x=1"),
            "https://hooks.example.com/gather?x=1"
        );
        assert_eq!(
            origin.to_local("https://hooks.example.com/dial"),
            "http://127.0.0.1:3000/dial"
        );
        assert_eq!(
            origin.to_local("HTTPS://HOOKS.example.com"),
            "http://127.0.0.1:3000"
        );
        // Elsewhere: sent and signed as it is.
        for other in ["https://other.example.com/x", "http://127.0.0.1:3001/x"] {
            assert_eq!(origin.to_local(other), other);
            assert_eq!(origin.to_public(other), other);
        }
    }

    #[test]
    fn the_public_url_is_an_origin() {
        let error = PublicOrigin::new("https://h.example.com/app", "http://l/answer").unwrap_err();
        assert!(error.contains("has a path"), "{error}");
        assert!(PublicOrigin::new("https://h.example.com/", "http://l/answer").is_ok());
        assert!(PublicOrigin::new("ftp://h", "http://l/answer").is_err());
    }
}
