//! Replaying a recorded exchange: as it was (byte-exact, same nonce), re-signed (fresh nonces
//! and signatures for the public URL), edited (a raw HTTP request the user changed), or to
//! another target. A replay is a new exchange linked to its original by `replay_of`; the
//! original is never changed. Used by the UI's keys and by `vobiz-tunnel replay`.

mod command;
pub mod edit;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::broadcast;

pub use command::replay_command;
pub use edit::{parse_raw, to_raw, with_notes, without_notes, EditError, EditedRequest};

use crate::cli::HostHeader;
use crate::config::BaseUrl;
use crate::exchange::{now_micros, Exchange, Flag, Headers, Outcome, RequestRecord};
use crate::forward::{header_case, Outgoing, PublicOrigin, Upstream};
use crate::pipeline::{record_end, ExchangeEvent};
use crate::signature::{self, Form, Keys, SigningKeys};
use crate::store::Store;

/// What to change when replaying.
#[derive(Clone, Debug, Default)]
pub struct ReplayPlan {
    /// Fresh nonces and signatures computed with the configured tokens.
    pub resign: bool,
    /// Send to this base instead of the local server (path and query kept).
    pub target: Option<BaseUrl>,
    /// Send this request instead of the recorded one.
    pub edited: Option<EditedRequest>,
}

impl ReplayPlan {
    /// A word for what this replay does, for status lines.
    pub fn describe(&self) -> String {
        let mut words = vec![match (&self.edited, self.resign) {
            (Some(_), true) => "edited, re-signed",
            (Some(_), false) => "edited",
            (None, true) => "re-signed",
            (None, false) => "as-is",
        }
        .to_string()];
        if let Some(target) = &self.target {
            words.push(format!("to {target}"));
        }
        words.join(" ")
    }
}

/// Why a replay could not be sent (a failed answer is not an error: it is recorded).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("re-signing needs an auth token (--auth-token or VOBIZ_AUTH_TOKEN)")]
    NoToken,
    #[error("exchange #{0} has no id in the store")]
    Unrecorded(String),
    #[error("the recorded request cannot be sent: {0}")]
    Invalid(String),
    /// Sent as it was recorded, it would be another request than the one received: say so
    /// rather than replay something else under its name.
    #[error(
        "exchange #{id} cannot be replayed as recorded: {why}; edit it (the inspector's `e`) \
         to send a request of your own"
    )]
    NotWhole { id: i64, why: &'static str },
}

/// Everything replays need; shared by the UI and the command line.
#[derive(Clone)]
pub struct Replayer {
    pub store: Store,
    /// The local server.
    pub upstream: Upstream,
    pub keys: Keys,
    /// Base of the public URL re-signed requests are signed for; `None`: the original's.
    pub public_url: Option<BaseUrl>,
    /// Published to (a running UI) when set.
    pub events: Option<broadcast::Sender<ExchangeEvent>>,
    pub timeout: Duration,
    pub tls: rustls::ClientConfig,
}

/// Signature headers a re-sign replaces.
fn is_signature_header(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with("x-vobiz-signature")
}

/// The public URL of a (possibly edited) request: the configured base, or the original's
/// scheme and authority, joined with the target.
fn public_url_for(original: &RequestRecord, base: Option<&BaseUrl>, target: &str) -> String {
    if let Some(base) = base {
        return base.join(target);
    }
    let public = &original.public_url;
    let origin_end = public
        .find("://")
        .and_then(|scheme_end| {
            public[scheme_end + 3..]
                .find('/')
                .map(|i| scheme_end + 3 + i)
        })
        .unwrap_or(public.len());
    format!("{}{}", &public[..origin_end], target)
}

impl Replayer {
    /// Sends a replay of `original` and records it as a new exchange. Returns it once ended.
    pub async fn replay(
        &self,
        original: &Exchange,
        plan: &ReplayPlan,
    ) -> Result<Arc<Exchange>, ReplayError> {
        let original_id = original
            .id
            .ok_or_else(|| ReplayError::Unrecorded(original.request.target.clone()))?;
        if plan.edited.is_none() {
            let why = if original.request.body_truncated {
                Some(
                    "its body was not received whole (over --max-body, or the sender stopped \
                     sending), and only what was received is recorded",
                )
            } else if original.body_is_the_raw_request() {
                Some("it was refused as invalid HTTP, and its body is the raw bytes received")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ReplayError::NotWhole {
                    id: original_id,
                    why,
                });
            }
        }
        let mut request = original.request.clone();
        if let Some(edited) = &plan.edited {
            request.method = edited.method.clone();
            request.target = edited.target.clone();
            request.headers = edited.headers.clone();
            request.body = edited.body.clone();
            request.body_truncated = false;
        }
        request.public_url =
            public_url_for(&original.request, self.public_url.as_ref(), &request.target);
        if plan.resign {
            self.resign(&mut request)?;
        }
        // The local server sees the original sender in X-Forwarded-For, as it did then; the
        // replay's own record has no sender address (the tool sent it).
        let original_sender = request
            .client_addr
            .take()
            .and_then(|addr| addr.parse::<std::net::SocketAddr>().ok())
            .map(|addr| addr.ip());
        request.tls = Default::default();
        let verdict = signature::verify_record(&request, &self.keys);
        let mut exchange = Exchange::received(request, verdict, now_micros());
        exchange.replay_of = Some(original_id);
        exchange.add_flag(Flag::Replay);
        self.send(exchange, plan, original_sender).await
    }

    fn resign(&self, request: &mut RequestRecord) -> Result<(), ReplayError> {
        let auth = self.keys.auth_tokens.first().ok_or(ReplayError::NoToken)?;
        let keys = SigningKeys {
            auth_token: auth.clone(),
            main_auth_token: self.keys.main_auth_tokens.first().cloned(),
        };
        let fresh = signature::signed_headers(
            &request.method,
            &request.public_url,
            &request.body,
            &keys,
            Form::Docs,
        );
        // Fresh values replace the signature headers the request had, under the same names
        // and in the same places. A request that had none gets the V2/V3 (and -MA-) set;
        // the legacy V1 only when the original carried one.
        let had_signatures = request
            .headers
            .0
            .iter()
            .any(|(n, _)| is_signature_header(n));
        let mut fresh: Vec<(String, Option<String>)> =
            fresh.into_iter().map(|(n, v)| (n, Some(v))).collect();
        let mut take = |name: &str| {
            fresh
                .iter_mut()
                .find(|(n, v)| v.is_some() && n.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.take())
        };
        let mut headers: Vec<(String, Vec<u8>)> = Vec::with_capacity(request.headers.0.len() + 7);
        for (name, value) in request.headers.0.drain(..) {
            if !is_signature_header(&name) {
                headers.push((name, value));
            } else if let Some(new) = take(&name) {
                headers.push((name, new.into_bytes()));
            }
        }
        if !had_signatures {
            for (name, value) in fresh {
                if let Some(value) =
                    value.filter(|_| !name.eq_ignore_ascii_case("x-vobiz-signature"))
                {
                    headers.push((name, value.into_bytes()));
                }
            }
        }
        request.headers = Headers(headers);
        Ok(())
    }

    async fn send(
        &self,
        mut exchange: Exchange,
        plan: &ReplayPlan,
        original_sender: Option<std::net::IpAddr>,
    ) -> Result<Arc<Exchange>, ReplayError> {
        // Recorded as sent: hyper writes the body's real length (see `header_map`).
        true_length(&mut exchange.request.headers, exchange.request.body.len());
        let header_map = header_map(&exchange.request.headers)?;
        let method = exchange.request.method.clone();
        let target = exchange.request.target.clone();
        let host = exchange.request.host.clone();
        // As near as the record tells how the listener forwarded it: the public URL's origin
        // when it was not the `Host` (`--public-url`, the relay), else the recorded headers.
        let called = exchange.request.public_url.clone();
        let public =
            PublicOrigin::of(&called).filter(|origin| host.as_deref() != Some(origin.authority));
        let body: Bytes = exchange.request.body.clone();
        // Header names in the case they were recorded in, as the local server saw them.
        let case = header_case::extensions_for(&exchange.request.headers).await;

        exchange.sent_to = plan.target.as_ref().map(|base| base.join(&target));
        let mut exchange = Arc::new(exchange);
        match self.store.insert(exchange.clone()).await {
            Ok(inserted) => {
                let record = Arc::make_mut(&mut exchange);
                record.id = Some(inserted.id);
                if let Some(earlier) = inserted.nonce_reused_of {
                    record.nonce_reused_of = Some(earlier);
                    record.add_flag(Flag::NonceReused);
                }
            }
            Err(e) => tracing::error!("the replay of {target} could not be recorded: {e}"),
        }
        let upstream = match &plan.target {
            Some(base) => Upstream::new(
                base.clone(),
                HostHeader::Keep,
                self.timeout,
                64 * 1024 * 1024,
                self.tls.clone(),
            ),
            None => self.upstream.clone(),
        };
        Arc::make_mut(&mut exchange).timings.forwarded_us = Some(now_micros());
        let unanswered = Unanswered::watch(&self.store, &exchange);
        let outgoing = Outgoing {
            method: &method,
            target: &target,
            headers: header_map,
            body,
            original_host: host.as_deref(),
            client_ip: original_sender,
            public,
            extensions: case,
            relay_waits: None,
        };
        let result = upstream.send(outgoing).await;
        unanswered.answered();
        let record = Arc::make_mut(&mut exchange);
        match result {
            Ok(answer) => record.answered(answer.response, answer.first_byte_us),
            Err(error) => record.failed(error.outcome(), error.status(), error.to_string()),
        }
        record.done();
        match &self.events {
            Some(events) => record_end(&self.store, events, exchange.clone()),
            None => self.store.complete(exchange.clone()),
        }
        Ok(exchange)
    }
}

/// A recorded replay waiting for the local server. Dropped before its answer (the inspector
/// quit, the runtime stopped), it still writes the replay's end: its row would otherwise say
/// `pending` for good, with no word of why.
struct Unanswered {
    waiting: Option<(Store, Exchange)>,
}

impl Unanswered {
    fn watch(store: &Store, exchange: &Exchange) -> Unanswered {
        Unanswered {
            // Without an id it has no row to end.
            waiting: exchange
                .id
                .is_some()
                .then(|| (store.clone(), exchange.clone())),
        }
    }

    fn answered(mut self) {
        self.waiting = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some((store, mut exchange)) = self.waiting.take() {
            // Ended, with no answer: not `pending`, which readers take for one still running.
            exchange.outcome = Outcome::UpstreamError;
            exchange.add_flag(Flag::UpstreamError);
            exchange.error =
                Some("vobiz-tunnel stopped before the local server answered this replay".into());
            exchange.done();
            store.complete(Arc::new(exchange));
        }
    }
}

/// `Content-Length` as hyper will send it: the body's length, in place of any value an edit
/// left stale (or added at the end, for a body that had none and is not chunked).
fn true_length(headers: &mut Headers, length: usize) {
    let value = length.to_string().into_bytes();
    let mut found = false;
    for (name, current) in headers.0.iter_mut() {
        if name.eq_ignore_ascii_case("content-length") {
            *current = value.clone();
            found = true;
        }
    }
    let chunked = headers
        .0
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"));
    if !found && !chunked && length > 0 {
        headers.0.push(("content-length".into(), value));
    }
}

/// The recorded header list as a map for sending, in order.
fn header_map(headers: &Headers) -> Result<HeaderMap, ReplayError> {
    let mut map = HeaderMap::with_capacity(headers.0.len());
    for (name, value) in &headers.0 {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ReplayError::Invalid(format!("header name {name:?}: {e}")))?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|e| ReplayError::Invalid(format!("value of {name}: {e}")))?;
        // Hyper computes the length of what is sent; a stale one from an edit must not survive.
        if name == hyper::header::CONTENT_LENGTH {
            continue;
        }
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_length_is_the_length_sent() {
        let mut headers = Headers(vec![
            ("Content-Length".into(), b"554".to_vec()),
            ("x-a".into(), b"1".to_vec()),
        ]);
        true_length(&mut headers, 540);
        assert_eq!(headers.0[0], ("Content-Length".into(), b"540".to_vec()));
        let mut none = Headers(vec![("x-a".into(), b"1".to_vec())]);
        true_length(&mut none, 3);
        assert_eq!(none.0[1], ("content-length".into(), b"3".to_vec()));
        let mut empty = Headers(Vec::new());
        true_length(&mut empty, 0);
        assert!(empty.0.is_empty());
    }

    #[test]
    fn the_public_url_keeps_the_original_origin_with_a_new_target() {
        let original = RequestRecord {
            public_url: "https://hooks.example.com:8443/vobiz/answer?x=1".into(),
            ..RequestRecord::default()
        };
        assert_eq!(
            public_url_for(&original, None, "/other?y=2"),
            "https://hooks.example.com:8443/other?y=2"
        );
        let bare = RequestRecord {
            public_url: "https://h".into(),
            ..RequestRecord::default()
        };
        assert_eq!(public_url_for(&bare, None, "/cb"), "https://h/cb");
    }

    #[test]
    fn plans_describe_themselves() {
        assert_eq!(ReplayPlan::default().describe(), "as-is");
        let plan = ReplayPlan {
            resign: true,
            ..ReplayPlan::default()
        };
        assert_eq!(plan.describe(), "re-signed");
    }

    #[test]
    fn content_length_is_left_to_hyper() {
        let headers = Headers(vec![
            ("content-length".into(), b"999".to_vec()),
            ("x-a".into(), b"1".to_vec()),
        ]);
        let map = header_map(&headers).unwrap();
        assert!(map.get("content-length").is_none());
        assert_eq!(map["x-a"], "1");
    }
}
