//! What the relay tells a laptop outside the callbacks it carries: a request on the tunnel
//! marked with the [`NOTICE`] header, which the laptop answers itself and never forwards. The
//! relay strips the notice headers from every public callback, so only the relay can send one.
//!
//! "replaced": another laptop connected with the same token, and the newest wins. Without it
//! the pushed-out laptop would see only a closed tunnel, reconnect, push the other one out in
//! turn, and the two would trade the route back and forth for ever.
//!
//! "rejected": the relay answered a callback for this laptop's route itself (its body was over
//! the relay's limit, cut short or too slow), so it never came through the tunnel. The notice
//! carries the callback's method, target, headers and envelope (no body), and the laptop
//! records it, so that a callback the relay turned away is not one the developer never sees.
//! It also says how long the relay had it before answering (a body too slow took 30 s, which
//! the laptop would otherwise record as no time at all): a duration, as the two clocks differ.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use std::time::Duration;

/// Marks a notice; its value says which.
pub static NOTICE: HeaderName = HeaderName::from_static("x-vobiz-tunnel-notice");
/// On a "replaced" notice: the address of the laptop that took the tunnel.
pub static BY: HeaderName = HeaderName::from_static("x-vobiz-tunnel-replaced-by");

/// On a "rejected" notice: the status the sender got, and why.
pub static REJECTED_STATUS: HeaderName = HeaderName::from_static("x-vobiz-tunnel-rejected-status");
pub static REJECTED_REASON: HeaderName = HeaderName::from_static("x-vobiz-tunnel-rejected-reason");
/// On a "rejected" notice: the callback's path and query (the notice's own URL is the relay's).
pub static REJECTED_TARGET: HeaderName = HeaderName::from_static("x-vobiz-tunnel-rejected-target");
/// On a "rejected" notice: microseconds from the callback's arrival at the relay to its answer.
pub static REJECTED_AFTER: HeaderName = HeaderName::from_static("x-vobiz-tunnel-rejected-after-us");

/// The longest a relay holds a callback before answering it that a notice is believed: a
/// day (no relay waits that long; a larger number is a mistake, not a time).
const MAX_AFTER: Duration = Duration::from_secs(86_400);

const REPLACED: &str = "replaced";
const REJECTED: &str = "rejected";

/// A notice the laptop understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Another laptop (at `by`, as the relay saw it) took this tunnel's route.
    Replaced { by: String },
    /// The relay answered this callback itself with `status`, for `reason`, `after` it
    /// arrived there (unknown from a relay too old to say).
    Rejected {
        status: u16,
        reason: String,
        after: Option<Duration>,
    },
}

/// A "rejected" notice: the callback's method and headers (with the envelope), without its
/// body, sent to the relay's own `.invalid` URL like every notice (its target travels in a
/// header), so that a laptop too old to know notices does not take it for the callback.
pub fn rejected_request(
    method: &Method,
    uri: &hyper::Uri,
    headers: HeaderMap,
    status: u16,
    reason: &str,
    after: Duration,
) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = hyper::Uri::from_static("https://vobiz-tunnel.invalid/");
    *request.headers_mut() = headers;
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Ok(target) = HeaderValue::from_str(target) {
        request
            .headers_mut()
            .insert(REJECTED_TARGET.clone(), target);
    }
    mark_rejected(&mut request, status, reason);
    let after_us = u64::try_from(after.as_micros()).unwrap_or(u64::MAX);
    request
        .headers_mut()
        .insert(REJECTED_AFTER.clone(), HeaderValue::from(after_us));
    request
}

/// Marks `request` as a "rejected" notice for `status` and `reason`.
fn mark_rejected<B>(request: &mut Request<B>, status: u16, reason: &str) {
    let headers = request.headers_mut();
    headers.insert(NOTICE.clone(), HeaderValue::from_static(REJECTED));
    headers.insert(REJECTED_STATUS.clone(), HeaderValue::from(status));
    // A reason is the relay's own text; one that is not a header value is cut to what is.
    let reason: String = reason.chars().filter(|c| (' '..='~').contains(c)).collect();
    if let Ok(reason) = HeaderValue::from_str(&reason) {
        headers.insert(REJECTED_REASON.clone(), reason);
    }
}

impl Notice {
    /// The request that carries a "replaced" notice to the laptop ("rejected" notices are
    /// callbacks marked by [`mark_rejected`]).
    pub fn replaced_request(by: &str) -> Request<Full<Bytes>> {
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
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        match text(&NOTICE)? {
            REPLACED => Some(Notice::Replaced {
                by: text(&BY).unwrap_or("an unknown address").to_string(),
            }),
            REJECTED => Some(Notice::Rejected {
                status: text(&REJECTED_STATUS)?.parse().ok()?,
                reason: text(&REJECTED_REASON)
                    .unwrap_or("no reason given")
                    .to_string(),
                after: text(&REJECTED_AFTER)
                    .and_then(|us| us.parse().ok())
                    .map(Duration::from_micros)
                    .filter(|&after| after <= MAX_AFTER),
            }),
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
    for name in [
        &NOTICE,
        &BY,
        &REJECTED_STATUS,
        &REJECTED_REASON,
        &REJECTED_TARGET,
        &REJECTED_AFTER,
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_notice_round_trips_and_a_forged_one_is_stripped() {
        let notice = Notice::Replaced {
            by: "203.0.113.7:51234".into(),
        };
        let request = Notice::replaced_request("203.0.113.7:51234");
        assert!(is_notice(request.headers()));
        assert_eq!(Notice::read(request.headers()), Some(notice));

        let mut headers = request.headers().clone();
        strip(&mut headers);
        assert!(!is_notice(&headers) && headers.is_empty());

        let rejected = rejected_request(
            &Method::POST,
            &hyper::Uri::from_static("https://h.example/cb?x=1"),
            HeaderMap::new(),
            413,
            "body over 65536 bytes\n\u{1}",
            Duration::from_millis(1500),
        );
        assert_eq!(rejected.uri().host(), Some("vobiz-tunnel.invalid"));
        assert_eq!(rejected.headers()[&REJECTED_TARGET], "/cb?x=1");
        assert_eq!(
            Notice::read(rejected.headers()),
            Some(Notice::Rejected {
                status: 413,
                reason: "body over 65536 bytes".into(),
                after: Some(Duration::from_millis(1500)),
            })
        );
        // A relay too old to say how long it had the callback, or one that says nonsense.
        for after in [None, Some("many"), Some("99999999999999999")] {
            let mut headers = rejected.headers().clone();
            headers.remove(&REJECTED_AFTER);
            if let Some(after) = after {
                headers.insert(REJECTED_AFTER.clone(), HeaderValue::from_static(after));
            }
            assert!(matches!(
                Notice::read(&headers),
                Some(Notice::Rejected { after: None, .. })
            ));
        }
        let mut forged = rejected.headers().clone();
        strip(&mut forged);
        assert!(forged.is_empty());

        let mut unknown = HeaderMap::new();
        unknown.insert(NOTICE.clone(), HeaderValue::from_static("paused"));
        assert!(is_notice(&unknown));
        assert_eq!(Notice::read(&unknown), None);
    }
}
