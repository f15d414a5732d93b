//! What the relay tells a laptop about the tunnel itself (not about a callback): a request on
//! the tunnel marked with the [`NOTICE`] header, which the laptop answers itself and never
//! forwards or records. The relay strips the header from every public callback, so only the
//! relay can send one.
//!
//! The one notice so far is "replaced": another laptop connected with the same token, and the
//! newest wins. Without it the pushed-out laptop would see only a closed tunnel, reconnect,
//! push the other one out in turn, and the two would trade the route back and forth for ever.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};

/// Marks a notice; its value says which.
pub static NOTICE: HeaderName = HeaderName::from_static("x-vobiz-tunnel-notice");
/// On a "replaced" notice: the address of the laptop that took the tunnel.
pub static BY: HeaderName = HeaderName::from_static("x-vobiz-tunnel-replaced-by");

const REPLACED: &str = "replaced";

/// A notice the laptop understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Another laptop (at `by`, as the relay saw it) took this tunnel's route.
    Replaced { by: String },
}

impl Notice {
    /// The request that carries it to the laptop.
    pub fn request(&self) -> Request<Full<Bytes>> {
        let Notice::Replaced { by } = self;
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = hyper::Uri::from_static("https://vobiz-tunnel.invalid/");
        let headers = request.headers_mut();
        headers.insert(NOTICE.clone(), HeaderValue::from_static(REPLACED));
        if let Ok(by) = HeaderValue::from_str(by) {
            headers.insert(BY.clone(), by);
        }
        request
    }

    /// The notice `headers` carry, if they are one. An unknown notice (from a newer relay) is
    /// still a notice: see [`is_notice`].
    pub fn read(headers: &HeaderMap) -> Option<Notice> {
        match headers.get(&NOTICE)?.to_str().ok()? {
            REPLACED => {
                let by = headers.get(&BY).and_then(|v| v.to_str().ok());
                Some(Notice::Replaced {
                    by: by.unwrap_or("an unknown address").to_string(),
                })
            }
            _ => None,
        }
    }
}

/// Whether a request on the tunnel is a notice, understood or not: the laptop must never
/// forward one to its local server as if it were a callback.
pub fn is_notice(headers: &HeaderMap) -> bool {
    headers.contains_key(&NOTICE)
}

/// Removes anything a public sender wrote that only the relay may say.
pub fn strip(headers: &mut HeaderMap) {
    headers.remove(&NOTICE);
    headers.remove(&BY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_notice_round_trips_and_a_forged_one_is_stripped() {
        let notice = Notice::Replaced {
            by: "203.0.113.7:51234".into(),
        };
        let request = notice.request();
        assert!(is_notice(request.headers()));
        assert_eq!(Notice::read(request.headers()), Some(notice));

        let mut headers = request.headers().clone();
        strip(&mut headers);
        assert!(!is_notice(&headers) && headers.is_empty());

        let mut unknown = HeaderMap::new();
        unknown.insert(NOTICE.clone(), HeaderValue::from_static("paused"));
        assert!(is_notice(&unknown));
        assert_eq!(Notice::read(&unknown), None);
    }
}
