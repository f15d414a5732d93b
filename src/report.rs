//! Human-readable and JSON reports of one exchange (`show`) and of one signature verdict
//! (`show`, `verify`). The UI's detail tabs present the same facts.

use std::fmt::Write;

use serde_json::{json, Value};
use time::UtcOffset;

use crate::exchange::{Exchange, Headers};
use crate::output::{date_time, printable, verdict_mark};
use crate::signature::{CheckResult, Verdict};

/// The signature section: verdict, explanation, each header with every attempt.
pub fn verdict_text(verdict: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Signature: {}  {}",
        verdict_mark(verdict.status),
        verdict.summary()
    );
    for sentence in verdict.explanation_beyond_summary() {
        let _ = writeln!(out, "  {sentence}");
    }
    for check in &verdict.checks {
        let result = match check.result {
            CheckResult::Valid => "valid",
            CheckResult::Invalid => "invalid",
            CheckResult::Unchecked => "unchecked (no token of this kind configured)",
            CheckResult::Malformed => "malformed",
            CheckResult::Informational => "shown only (V1 is never decisive)",
        };
        let _ = writeln!(out, "  {}: {}", check.header, check.value);
        if let Some(nonce) = &check.nonce {
            let _ = writeln!(out, "      nonce {nonce}");
        }
        let _ = writeln!(out, "      -> {result}");
        for attempt in &check.attempts {
            let mark = if attempt.matched {
                "matches"
            } else {
                "differs"
            };
            let _ = writeln!(
                out,
                "      {} with {}: signed {:?} -> {} ({mark})",
                attempt.form.describe(),
                attempt.key,
                attempt.string_to_sign,
                attempt.expected
            );
        }
    }
    printable(&out, true).into_owned()
}

/// At most this much of a gzipped answer is unzipped for `show` (a small bomb stays small).
const SHOWN_UNZIPPED: usize = 64 * 1024 * 1024;

fn body_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => text.to_string(),
        Err(_) => format!(
            "({} bytes, not UTF-8) {}",
            body.len(),
            String::from_utf8_lossy(body).escape_debug()
        ),
    }
}

fn headers_text(out: &mut String, headers: &Headers) {
    for (name, value) in &headers.0 {
        let _ = writeln!(out, "  {name}: {}", Headers::shown_value(name, value));
    }
}

/// Everything about one exchange, for `vobiz-tunnel show ID`.
pub fn exchange_text(exchange: &Exchange, offset: UtcOffset) -> String {
    let mut out = String::new();
    let request = &exchange.request;
    let id = exchange.id.map_or("?".into(), |id| id.to_string());
    let _ = write!(out, "Exchange #{id}");
    match (exchange.replay_of, &exchange.sent_to) {
        (Some(original), Some(url)) => {
            let _ = write!(out, "  (replay of #{original}, sent to {url})");
        }
        (Some(original), None) => {
            let _ = write!(out, "  (replay of #{original})");
        }
        // A replay imported without its original.
        (None, Some(url)) => {
            let _ = write!(out, "  (a replay, sent to {url})");
        }
        (None, None) => {}
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {} {}  {}",
        request.method, request.target, request.http_version
    );
    let _ = writeln!(out, "  public URL  {}", request.public_url);
    let _ = writeln!(
        out,
        "  received    {}",
        date_time(exchange.timings.received_us, offset)
    );
    let _ = writeln!(
        out,
        "  from        {}",
        request.client_addr.as_deref().unwrap_or("-")
    );
    let tls = &request.tls;
    let _ = writeln!(
        out,
        "  TLS         {}  ALPN {}  SNI {}",
        tls.version.as_deref().unwrap_or("-"),
        tls.alpn.as_deref().unwrap_or("-"),
        tls.sni.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "  Event       {}   CallUUID {}",
        // One line each: a sender's line feed must not start a line of the report.
        printable(exchange.event.as_deref().unwrap_or("-"), false),
        printable(exchange.call_uuid.as_deref().unwrap_or("-"), false)
    );
    let status = exchange.status().map_or("-".into(), |s| s.to_string());
    let _ = writeln!(
        out,
        "  outcome     {} (status {status})",
        exchange.outcome.as_str()
    );
    if !exchange.flags.is_empty() {
        let flags: Vec<_> = exchange.flags.iter().map(|f| f.as_str()).collect();
        let _ = writeln!(out, "  flags       {}", flags.join(", "));
    }
    if let Some(earlier) = exchange.nonce_reused_of {
        let _ = writeln!(
            out,
            "  nonce       already seen in exchange #{earlier}: a replayed request"
        );
    }
    if let Some(error) = &exchange.error {
        let _ = writeln!(out, "  error       {error}");
    }

    if !exchange.findings.is_empty() {
        let _ = writeln!(out, "\nVobiz checks");
        for finding in &exchange.findings {
            let _ = writeln!(
                out,
                "  {:<7}  {}: {}",
                finding.severity.as_str(),
                finding.rule,
                finding.message
            );
        }
    }

    let _ = writeln!(out, "\n{}", verdict_text(&exchange.verdict).trim_end());

    let _ = writeln!(out, "\nRequest headers");
    headers_text(&mut out, &request.headers);
    let fields = exchange.form_fields();
    if !fields.is_empty() {
        let _ = writeln!(out, "\nForm fields");
        let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in &fields {
            let (key, value) = (printable(key, false), printable(value, false));
            let _ = writeln!(out, "  {key:<width$}  {value}");
        }
    }
    let truncated = if request.body_truncated {
        ", truncated"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "\nRequest body ({} bytes{truncated})",
        request.body.len()
    );
    if !request.body.is_empty() {
        let _ = writeln!(out, "  {}", body_text(&request.body));
    }

    match &exchange.response {
        Some(response) => {
            let _ = writeln!(out, "\nResponse {}", response.status);
            headers_text(&mut out, &response.headers);
            let _ = writeln!(out, "\nResponse body ({} bytes)", response.body.len());
            // Gzipped (Vobiz asks for gzip): shown unzipped, as the inspector shows it.
            let coding = response.headers.get_str("content-encoding");
            let unzipped = coding
                .filter(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity"))
                .and_then(|c| {
                    crate::checks::encoding::decoded(Some(c), &response.body, SHOWN_UNZIPPED).ok()
                });
            match unzipped {
                Some(plain) => {
                    let _ = writeln!(
                        out,
                        "({}, unzipped: {} bytes)",
                        coding.unwrap_or_default(),
                        plain.len()
                    );
                    let _ = writeln!(out, "{}", body_text(&plain));
                }
                None if !response.body.is_empty() => {
                    let _ = writeln!(out, "{}", body_text(&response.body));
                }
                None => {}
            }
        }
        None => {
            let _ = writeln!(out, "\nNo response recorded.");
        }
    }

    let timings = &exchange.timings;
    let since = |at: Option<i64>| {
        at.map_or("-".into(), |t| {
            format!(
                "+{:.3} ms",
                t.saturating_sub(timings.received_us) as f64 / 1000.0
            )
        })
    };
    let _ = writeln!(out, "\nTimings");
    let _ = writeln!(
        out,
        "  received    {}",
        date_time(timings.received_us, offset)
    );
    let _ = writeln!(out, "  forwarded   {}", since(timings.forwarded_us));
    let _ = writeln!(out, "  first byte  {}", since(timings.first_byte_us));
    let _ = writeln!(out, "  done        {}", since(timings.done_us));
    printable(&out, true).into_owned()
}

fn headers_json(headers: &Headers) -> Value {
    Value::Array(
        headers
            .0
            .iter()
            .map(|(n, v)| json!([n, Headers::shown_value(n, v)]))
            .collect(),
    )
}

fn body_json(body: &[u8]) -> Value {
    use base64::Engine;
    match std::str::from_utf8(body) {
        Ok(text) => json!({"text": text, "size": body.len()}),
        Err(_) => json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(body),
            "size": body.len(),
        }),
    }
}

/// The whole exchange as JSON, for `show --json`.
pub fn exchange_json(exchange: &Exchange) -> Value {
    let request = &exchange.request;
    json!({
        "id": exchange.id,
        "replay_of": exchange.replay_of,
        "sent_to": exchange.sent_to,
        "nonce_reused_of": exchange.nonce_reused_of,
        "method": request.method,
        "target": request.target,
        "path": request.path(),
        "http_version": request.http_version,
        "host": request.host,
        "public_url": request.public_url,
        "client_addr": request.client_addr,
        "tls": request.tls,
        "event": exchange.event,
        "call_uuid": exchange.call_uuid,
        "request": {
            "headers": headers_json(&request.headers),
            "form": exchange.form_fields(),
            "body": body_json(&request.body),
            "body_truncated": request.body_truncated,
        },
        "response": exchange.response.as_ref().map(|r| json!({
            "status": r.status,
            "headers": headers_json(&r.headers),
            "body": body_json(&r.body),
        })),
        "status": exchange.status(),
        "outcome": exchange.outcome,
        "error": exchange.error,
        "flags": exchange.flags,
        "findings": exchange.findings,
        "timings": exchange.timings,
        "duration_ms": exchange.timings.duration_ms(),
        "signature": exchange.verdict.status,
        "signature_scheme": exchange.verdict.scheme,
        "signature_detail": exchange.verdict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzipped answer (Vobiz asks for gzip) is printed unzipped, as the inspector shows it.
    #[test]
    fn a_gzipped_answer_is_shown_unzipped() {
        let zipped = crate::checks::encoding::gzip(b"<Response><Speak>hi</Speak></Response>");
        let mut exchange = crate::checks::delivery_tests::callback("/answer", "Event=StartApp");
        crate::checks::delivery_tests::answer(&mut exchange, 200, "application/xml", "");
        let response = exchange.response.as_mut().unwrap();
        response
            .headers
            .0
            .push(("Content-Encoding".into(), b"gzip".to_vec()));
        response.body = zipped.into();
        let text = exchange_text(&exchange, UtcOffset::UTC);
        assert!(text.contains("(gzip, unzipped: 38 bytes)"), "{text}");
        assert!(
            text.contains("<Response><Speak>hi</Speak></Response>"),
            "{text}"
        );
    }
}
