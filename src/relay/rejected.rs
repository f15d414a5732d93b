//! The laptop's record of a callback the relay answered itself (see [`super::notice`]): its
//! body was over the relay's limit, cut short or too slow, so it never came through the
//! tunnel. What the relay knew of it (method, target, headers, the URL Vobiz called, the
//! sender) is recorded with the answer the sender got, like any exchange that failed here.

use std::time::Duration;

use bytes::Bytes;
use hyper::Request;

use super::envelope;
use crate::exchange::{now_micros, Exchange, Outcome, RequestRecord};
use crate::forward;
use crate::pipeline::Proxy;
use crate::signature::{self, VerdictStatus};

/// Records the callback `request` carries (a "rejected" notice) with `status` and `reason`,
/// answered `after` it reached the relay (its duration: the wait its sender had).
pub async fn record<B>(
    proxy: &Proxy,
    request: Request<B>,
    status: u16,
    reason: &str,
    after: Option<Duration>,
) {
    let (mut parts, _) = request.into_parts();
    let target = parts
        .headers
        .get(&super::notice::REJECTED_TARGET)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("/")
        .to_string();
    super::notice::strip(&mut parts.headers);
    let envelope = envelope::take(&mut parts.headers);
    let host = envelope
        .public_url
        .as_deref()
        .and_then(|url| url.split_once("://"))
        .and_then(|(_, rest)| rest.split('/').next())
        .map(String::from);
    let public_url = envelope
        .public_url
        .unwrap_or_else(|| format!("https://{}{target}", host.as_deref().unwrap_or("localhost")));
    let request = RequestRecord {
        method: parts.method.as_str().to_string(),
        target,
        http_version: envelope
            .http_version
            .clone()
            .unwrap_or_else(|| "HTTP/2.0".into()),
        host,
        public_url,
        headers: forward::headers_named(&parts.headers, &envelope.header_names),
        body: Bytes::new(),
        body_truncated: true,
        client_addr: envelope.client_addr.map(|a| a.to_string()),
        tls: envelope.tls,
    };
    // The URL-only schemes (V2, V3 in the documented form) still verify without the body.
    let mut verdict = signature::verify_record(&request, &proxy.keys);
    if verdict.status == VerdictStatus::Invalid {
        // Forms that sign the body could not be checked without it: not proof of a forgery.
        verdict = signature::Verdict::bare(VerdictStatus::Unchecked);
        verdict.explanation = vec![
            "Not checked: the body did not reach this laptop, and no signature verified on the \
             URL alone."
                .into(),
        ];
    }
    let outcome = match status {
        413 => Outcome::TooLarge,
        403 if verdict.status != VerdictStatus::Valid => Outcome::Rejected,
        _ => Outcome::ClientError,
    };
    let now = now_micros();
    let after_us = after.map_or(0, |after| i64::try_from(after.as_micros()).unwrap_or(0));
    let mut exchange = Exchange::received(request, verdict, now - after_us);
    exchange.failed_answering(
        outcome,
        status,
        format!("the relay answered this callback itself: {reason}; it never reached this laptop"),
        reason.to_string(),
    );
    // The sender's answer came from the relay, in its words.
    if let Some(answer) = &mut exchange.response {
        answer.body = Bytes::from(format!("vobiz-tunnel relay: {reason}\n"));
    }
    exchange.done();
    proxy.record_answered(exchange).await;
}
