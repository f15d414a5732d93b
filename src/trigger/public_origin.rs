//! `trigger call --public-url`: the URL Vobiz calls when it is not the one the simulated
//! call reaches (a tunnel or a proxy in front of the app, which the app's XML names). Vobiz
//! signs the URL it calls, so a request to the local origin is signed for the public URL; an
//! app builds its action URLs from its public address, so a URL of the XML under the public
//! URL is sent to the local origin. A path prefix in the public URL is one a proxy in front
//! strips, as for `listen --public-url`: `https://h/app` + `/gather` is `/gather` locally.

use crate::config::BaseUrl;

/// The public origin and path prefix, and the local origin they stand for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicOrigin {
    /// `scheme://authority`, in lower case.
    public: String,
    /// Without a trailing slash; empty for none.
    prefix: String,
    local: String,
}

impl PublicOrigin {
    /// `public_url` (`https://hooks.example.com[/prefix]`) in front of the origin of
    /// `answer_url`; the error says what is wrong with the option.
    pub fn new(public_url: &str, answer_url: &str) -> Result<PublicOrigin, String> {
        let public = BaseUrl::parse(public_url)?;
        let local = origin_of(answer_url)
            .ok_or_else(|| format!("{answer_url} is not an absolute http(s) URL"))?
            .0;
        Ok(PublicOrigin {
            public: format!(
                "{}://{}",
                public.scheme,
                public.authority.to_ascii_lowercase()
            ),
            prefix: public.prefix,
            local,
        })
    }

    /// Where a request to `url` goes: under the public URL, to the local origin (without
    /// the prefix).
    pub fn to_local(&self, url: &str) -> String {
        match origin_of(url) {
            Some((origin, rest)) if origin == self.public => {
                match strip_prefix(rest, &self.prefix) {
                    Some(rest) => format!("{}{rest}", self.local),
                    None => url.to_owned(),
                }
            }
            _ => url.to_owned(),
        }
    }

    /// The URL Vobiz would have signed for a request sent to `url`: at the local origin,
    /// under the public URL.
    pub fn to_public(&self, url: &str) -> String {
        match origin_of(url) {
            Some((origin, rest)) if origin == self.local => {
                format!("{}{}{rest}", self.public, self.prefix)
            }
            _ => url.to_owned(),
        }
    }

    /// The public URL (origin and prefix), for the timeline.
    pub fn public(&self) -> String {
        format!("{}{}", self.public, self.prefix)
    }

    /// The local origin it stands for.
    pub fn local(&self) -> &str {
        &self.local
    }
}

/// `rest` (`/path?q`) without `prefix` when it starts with it as whole segments.
fn strip_prefix(rest: &str, prefix: &str) -> Option<String> {
    let after = rest.strip_prefix(prefix)?;
    match after.chars().next() {
        None => Some("/".into()),
        Some('/') => Some(after.into()),
        Some('?') => Some(format!("/{after}")),
        Some(_) => None,
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
            "http://127.0.0.1:3000/"
        );
        // Elsewhere: sent and signed as it is.
        for other in ["https://other.example.com/x", "http://127.0.0.1:3001/x"] {
            assert_eq!(origin.to_local(other), other);
            assert_eq!(origin.to_public(other), other);
        }
    }

    /// A prefix a proxy in front strips: added to what is signed, taken from what is sent.
    #[test]
    fn a_path_prefix_is_the_proxys_to_strip() {
        let origin =
            PublicOrigin::new("https://h.example.com/app/", "http://127.0.0.1:3000/answer")
                .unwrap();
        assert_eq!(origin.public(), "https://h.example.com/app");
        assert_eq!(
            origin.to_public("http://127.0.0.1:3000/gather?x=1"),
            "https://h.example.com/app/gather?x=1"
        );
        assert_eq!(
            origin.to_local("https://h.example.com/app/gather?x=1"),
            "http://127.0.0.1:3000/gather?x=1"
        );
        assert_eq!(
            origin.to_local("https://h.example.com/app"),
            "http://127.0.0.1:3000/"
        );
        // Not under the prefix (or only spelled like it): sent as it is.
        for other in ["https://h.example.com/other", "https://h.example.com/apple"] {
            assert_eq!(origin.to_local(other), other);
        }
        assert!(PublicOrigin::new("ftp://h", "http://l/answer").is_err());
    }
}
